/* Inside the cluster module only: the hiredis connection (cluster-conn.c)
 * and the argument vectors commands are built from. */
#pragma once

#include <assert.h>
#include <hiredis/hiredis.h>
#include <pthread.h>

#include "cluster.h"

#define CLUSTER_PREFIX "ps:"
#define CLUSTER_GROUP "workers"

/* One Redis connection that reconnects: a restarted Redis (same AOF) is
 * picked up by the next command. */
typedef struct Conn {
        char *host;        /* NULL with a unix socket */
        int port;
        char *socket_path;
        char *user;     /* the ACL user AUTH names; NULL: the default user */
        char *password; /* NULL: no AUTH */
        redisContext *ctx;
} Conn;

/* Parses redis://[USER:PASSWORD@]HOST[:PORT][/DB] (USER may be empty:
 * redis://:PASSWORD@HOST; %XX escapes decoded) or unix:PATH (also
 * unix://PATH). -EINVAL. */
int conn_parse_url(const char *url, Conn *ret);
/* Gives c the password (cluster.redis_password) when its URL named none. */
int conn_set_password(Conn *c, const char *password);
void conn_done(Conn *c);
/* Runs one command (argv of n strings, NUL-terminated); on an I/O error
 * reconnects and retries once. Returns the reply (freeReplyObject it) or
 * NULL with *ret_error when Redis cannot be reached: -ECONNREFUSED when the
 * command was never sent, -ECOMM when it was and no answer came (it
 * may have run), -EACCES when Redis refused the password; a Redis error
 * reply is returned as the reply (REDIS_REPLY_ERROR). */
redisReply *conn_command(Conn *c, size_t n, const char *const *argv, int *ret_error);
/* Each connection authenticates itself with c's password (AUTH) before its
 * first command: -EACCES when Redis refuses it. */
/* The same with each argument's length (NULL: strlen of each). */
redisReply *conn_command_len(Conn *c, size_t n, const char *const *argv, const size_t *lens, int *ret_error);

/* A growable argument vector. */
typedef struct Args {
        char **v;
        size_t *len;    /* each argument's length: an argument may hold NUL bytes (log output) */
        size_t n;
        const char *script; /* an EVALSHA's script text (args_eval()), sent once Redis lacks it */
} Args;
void args_add(Args *a, const char *s);
/* Adds len bytes of s (binary-safe). */
void args_addb(Args *a, const char *s, size_t len);
void args_addf(Args *a, const char *fmt, ...) _printf_(2, 3);
void args_done(Args *a);
/* Starts a with EVALSHA of one embedded script (cluster-scripts.h: its
 * text and SHA-1) and its number of keys; keys then argv follow.
 * cluster_cmd() sends the text (EVAL) only when Redis answers NOSCRIPT (a
 * fresh or restarted Redis): the scripts are 1-5 KB, sent and hashed by
 * Redis on every call before. ARGS_EVAL(a, submit, 6) names both. */
void args_eval(Args *a, const char *script, const char *sha1, int nkeys);
#define ARGS_EVAL(a, name, nkeys) args_eval((a), cluster_script_##name, cluster_script_##name##_sha1, (nkeys))

/* Adds the (kind, data) pairs of v, then the end marker when end, to a
 * (log_append.lua's and finish.lua's log arguments). */
void cluster_log_args(Args *a, const ClusterLogEntry *v, size_t n, bool end);

/* The Redis run queue's state (cluster-redis.c); cluster-logs.c uses its
 * connection and options too. */
typedef struct ClusterQueue {
        RunQueue base;
        char *node_id;
        char *url;            /* for the events connection (cluster_events_listen) and log readers */
        char *password;       /* ClusterOptions.password: used where the URL names none */
        unsigned claim_timeout_ms, lease_ttl_ms, record_ttl_s, affinity_delay_ms, warm_ms;
        char *k_own;          /* runs:<node>: this node's own stream (placement) */
        pthread_mutex_t lock; /* guards conn */
        Conn conn;
        Conn claim_conn;      /* the claiming thread's own (XREADGROUP blocks) */
        unsigned reclaim_interval_ms;
        usec_t reclaim_due; /* monotonic: the claim's next reclaim scan (claiming thread only) */
} ClusterQueue;

static inline ClusterQueue *cq(RunQueue *q) {
        assert(q);
        return (ClusterQueue *) q;
}

/* A new connection to c's Redis, as its URL and password say (not yet
 * connected: the first command connects). -EINVAL. */
int cq_conn_parse(ClusterQueue *c, Conn *ret);

/* A command on conn (the shared one is locked; cluster-conn.c). NULL with *ret_error on I/O
 * errors; an error reply becomes NULL with -EIO (-ENOENT for NOGROUP), logged;
 * one that Redis answers without running it (cluster_reply_refused_unrun())
 * -ECONNREFUSED, as a Redis out of reach: nothing was done. */
redisReply *cluster_cmd(ClusterQueue *c, Conn *conn, const Args *a, int *ret_error);
/* cluster_cmd() of a on c's shared connection, a emptied after: its
 * integer reply in *ret (-EBADMSG for another reply), or its string reply
 * copied, NUL-terminated (-ENOENT for none). */
int cluster_cmd_int(ClusterQueue *c, Args *a, long long *ret);
int cluster_cmd_bytes(ClusterQueue *c, Args *a, uint8_t **ret, size_t *ret_len);

/* Whether Redis's error reply (its text, "LOADING Redis is loading …")
 * refuses a command before running it: LOADING (reading its AOF after a
 * start), BUSY (a script past its time limit), MASTERDOWN. Not BUSYGROUP,
 * NOSCRIPT, WRONGTYPE or a script's own error. */
bool cluster_reply_refused_unrun(const char *error);
