/* Unit tests for src/cluster: the Redis run queue against a real
 * redis-server (AOF on) that the test starts on a unix socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "cluster.h"
#include "cluster-internal.h"

/* On tmpfs where there is one: the AOF is still written and fsync'd on
 * every write, but no fsync waits for a disk that the other unit tests
 * running beside this one keep busy (a 100 ms stall of Redis is a lease
 * refresh 100 ms late, and the timing tests below read it as a bug). */
static char dir[64] = "/tmp/cluster-test-XXXXXX";
static char url[256];
static pid_t redis_pid = -1;

static void redis_start(void) {
        char sock[200];
        snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
        snprintf(url, sizeof(url), "unix:%s", sock);
        redis_pid = fork();
        assert_true(redis_pid >= 0);
        if (redis_pid == 0) {
                /* Never outlive the test, never hold its output open. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                dup2(null, 1);
                dup2(null, 2);
                execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--appendonly", "yes",
                       "--appendfsync", "always", "--dir", dir, "--save", "", "--loglevel", "warning",
                       (char *) NULL);
                _exit(127);
        }
        /* Ready when it answers: a queue can be made (the group created). */
        usec_t deadline = now_monotonic() + 10 * USEC_PER_SEC;
        for (;;) {
                RunQueue *q = NULL;
                ClusterOptions o = { .url = url, .node_id = "probe" };
                if (cluster_queue_new(&o, &q, NULL) == 0) {
                        run_queue_free(q);
                        return;
                }
                assert_true(now_monotonic() < deadline);
                usleep(20000);
        }
}

static void redis_kill9(void) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
}

/* Changes the server's configuration as an operator would. */
static void redis_config(const char *name, const char *value) {
        _cleanup_free_ char *c = xasprintf("redis-cli -s %s/redis.sock CONFIG SET %s %s >/dev/null", dir, name, value);
        assert_int_equal(system(c), 0);
}

/* One redis-cli command whose answer does not matter. */
static void redis_cli(const char *command) {
        _cleanup_free_ char *c = xasprintf("redis-cli -s %s/redis.sock %s >/dev/null", dir, command);
        assert_int_equal(system(c), 0);
}

static RunQueue *queue_leased(const char *node, unsigned claim_timeout_ms, unsigned lease_ttl_ms) {
        RunQueue *q = NULL;
        ClusterOptions o = { .url = url, .node_id = node, .claim_timeout_ms = claim_timeout_ms,
                             .lease_ttl_ms = lease_ttl_ms };
        assert_int_equal(cluster_queue_new(&o, &q, NULL), 0);
        return q;
}

static RunQueue *queue(const char *node, unsigned claim_timeout_ms) {
        return queue_leased(node, claim_timeout_ms, 300);
}

static void submit(RunQueue *q, const char *id, int max_attempts) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) "t1", .filename = (char *) "main.py",
                        .status = (char *) "queued", .created = now_realtime(), .max_attempts = max_attempts };
        assert_int_equal(run_queue_submit(q, &r, "{\"v\":1,\"source\":\"x\"}"), 0);
}

static void finish_rec(RunRecord *r, const char *id, const char *status) {
        *r = (RunRecord) { .id = (char *) id, .tenant = (char *) "t1", .status = (char *) status, .exit_code = 0,
                           .value_json = (char *) "42", .finished = now_realtime() };
}

static char *status_of(RunQueue *q, const char *id) {
        RunRecord *r = NULL;
        assert_int_equal(cluster_run_get(q, "t1", id, &r), 0);
        char *s = xstrdup(r->status);
        run_record_free(r);
        return s;
}

/* Claims until ids holds want runs or the deadline passes. */
static size_t claim_until(RunQueue *q, size_t max, size_t want, PendingRun **ret) {
        usec_t deadline = now_monotonic() + 10 * USEC_PER_SEC;
        PendingRun *v = NULL;
        size_t n = 0;
        while (n < want && now_monotonic() < deadline) {
                PendingRun *w = NULL;
                size_t m = 0;
                assert_int_equal(cluster_claim(q, max - n, 50, NULL, &w, &m), 0);
                v = xrealloc(v, (n + m + 1) * sizeof(PendingRun));
                if (m > 0) /* an empty claim may hand back no array at all */
                        memcpy(v + n, w, m * sizeof(PendingRun));
                free(w);
                n += m;
        }
        *ret = v;
        return n;
}

/* A run submitted with max_attempts and claimed by q, not started. */
static void submit_claimed(RunQueue *q, const char *id, int max_attempts) {
        submit(q, id, max_attempts);
        PendingRun *v = NULL;
        assert_int_equal(claim_until(q, 1, 1, &v), 1);
        assert_string_equal(v[0].id, id);
        pending_run_list_free(v, 1);
}

static void test_submit_start_finish_fenced(void **state) {
        RunQueue *a = queue("a1", 5000);
        submit(a, "r-basic", 3);
        _cleanup_free_ char *s0 = status_of(a, "r-basic");
        assert_string_equal(s0, "queued");

        PendingRun *v = NULL;
        assert_int_equal(claim_until(a, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-basic");
        assert_string_equal(v[0].tenant, "t1");
        assert_string_equal(v[0].request_json, "{\"v\":1,\"source\":\"x\"}");
        pending_run_list_free(v, 1);

        int attempt = 0;
        assert_int_equal(run_queue_start(a, "r-basic", now_realtime(), &attempt), 0);
        assert_int_equal(attempt, 1);
        /* a second start of a running run is refused */
        assert_int_equal(run_queue_start(a, "r-basic", now_realtime(), &attempt), -ESTALE);

        RunRecord f;
        finish_rec(&f, "r-basic", "succeeded");
        assert_int_equal(run_queue_finish(a, &f, 2), -ESTALE); /* not the current attempt */
        assert_int_equal(run_queue_finish(a, &f, 1), 0);
        assert_int_equal(run_queue_finish(a, &f, 1), -ESTALE); /* ended already */

        RunRecord *got = NULL;
        assert_int_equal(cluster_run_get(a, "t1", "r-basic", &got), 0);
        assert_string_equal(got->status, "succeeded");
        assert_string_equal(got->value_json, "42");
        assert_int_equal(got->attempt, 1);
        run_record_free(got);
        assert_int_equal(cluster_run_get(a, "other-tenant", "r-basic", &got), -ENOENT);

        _cleanup_free_ char *js = NULL;
        assert_int_equal(cluster_status_json(a, &js), 0);
        json_t *j = json_loads(js, 0, NULL);
        assert_int_equal(json_integer_value(json_object_get(j, "pending")), 0);
        assert_int_equal(json_integer_value(json_object_get(j, "stale_results")), 2);
        json_decref(j);
        run_queue_free(a);
}

/* Which error replies say Redis did not run the command (a gateway's 503,
 * asked again) rather than that it failed (500): LOADING was a 500. */
static void test_reply_refused_unrun(void **state) {
        (void) state;
        static const struct {
                const char *error;
                bool refused;
        } rows[] = {
                { "LOADING Redis is loading the dataset in memory", true },
                { "LOADING", true },
                { "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", true },
                { "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", true },
                { "BUSYGROUP Consumer Group name already exists", false },
                { "NOSCRIPT No matching script. Please use EVAL.", false },
                { "WRONGTYPE Operation against a key holding the wrong kind of value", false },
                { "ERR Error running script (call to f_x): @user_script:1: LOADING", false },
                { "LOADINGX", false },
                { "", false },
        };
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
                if (cluster_reply_refused_unrun(rows[i].error) != rows[i].refused)
                        fail_msg("'%s': expected %s", rows[i].error, rows[i].refused ? "refused" : "failed");
}

static void test_idempotency_key(void **state) {
        RunQueue *a = queue("a2", 5000);
        RunRecord r = { .id = (char *) "r-idem-1", .tenant = (char *) "t1", .status = (char *) "queued",
                        .created = 1, .max_attempts = 1 };
        _cleanup_free_ char *id1 = NULL, *id2 = NULL;
        assert_int_equal(cluster_submit(a, &r, "{}", "key-1", &id1), 0);
        r.id = (char *) "r-idem-2";
        assert_int_equal(cluster_submit(a, &r, "{}", "key-1", &id2), 1);
        assert_string_equal(id1, "r-idem-1");
        assert_string_equal(id2, "r-idem-1");
        RunRecord *got = NULL;
        assert_int_equal(cluster_run_get(a, NULL, "r-idem-2", &got), -ENOENT);
        assert_int_equal(run_queue_cancel(a, "r-idem-1", "no"), 0);
        run_queue_free(a);
}

/* Dashboard sessions: a token's past the cap drop its own oldest only; a
 * session ends with its del, once; a client queue makes no stream. */
static void test_ui_sessions(void **state) {
        RunQueue *q = NULL;
        ClusterOptions o = { .url = url, .node_id = "ui-client", .client = true };
        assert_int_equal(cluster_queue_new(&o, &q, NULL), 0);
        char ids[4][65], tok_a[65], tok_b[65], got[65];
        memset(tok_a, 'a', 64);
        memset(tok_b, 'b', 64);
        tok_a[64] = tok_b[64] = 0;
        for (int i = 0; i < 4; i++) {
                memset(ids[i], "0123"[i], 64);
                ids[i][64] = 0;
        }
        assert_int_equal(cluster_ui_session_put(q, ids[3], tok_b, 60000, 2), 0);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(cluster_ui_session_put(q, ids[i], tok_a, 60000, 2), 0);
                usleep(2000); /* a later expiry than the one before */
        }
        assert_int_equal(cluster_ui_session_get(q, ids[0], got), -ENOENT); /* a's oldest dropped */
        assert_int_equal(cluster_ui_session_get(q, ids[1], got), 0);
        assert_string_equal(got, tok_a);
        assert_int_equal(cluster_ui_session_get(q, ids[3], got), 0); /* b's untouched */
        assert_string_equal(got, tok_b);
        assert_int_equal(cluster_ui_session_del(q, ids[1]), 0);
        assert_int_equal(cluster_ui_session_del(q, ids[1]), -ENOENT);
        assert_int_equal(cluster_ui_session_get(q, ids[1], got), -ENOENT);
        assert_int_equal(cluster_ui_session_get(q, ids[2], got), 0);
        run_queue_free(q);
        _cleanup_free_ char *c = xasprintf("test \"$(redis-cli -s %s/redis.sock EXISTS ps:runs:ui-client)\" = 0", dir);
        assert_int_equal(system(c), 0);
}

/* A run by full id or unique prefix within its tenant (cluster_run_find()),
 * as store_run_get() finds one on a single node. */
static void test_run_find_by_prefix(void **state) {
        RunQueue *a = queue("a-find", 5000);
        const char *ids[] = { "rfind0aa", "rfind0ab", "rfind0ac", "rfind1xx" };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                RunRecord r = { .id = (char *) ids[i], .tenant = (char *) "tp", .status = (char *) "queued",
                                .created = i + 1, .max_attempts = 1 };
                assert_int_equal(cluster_submit(a, &r, "{}", NULL, NULL), 0);
                /* Ended records are found as well; nothing is left queued for the other tests. */
                assert_int_equal(run_queue_cancel(a, ids[i], "no"), 0);
        }
        static const struct {
                const char *tenant, *id;
                int want;
                const char *found;
        } rows[] = {
                { "tp", "rfind0aa", 0, "rfind0aa" },    /* a full id */
                { NULL, "rfind0ab", 0, "rfind0ab" },    /* a full id, any tenant */
                { "tp", "rfind1", 0, "rfind1xx" },      /* a unique prefix */
                { "tp", "r", -EEXIST, NULL },
                { "tp", "rfind0", -EEXIST, NULL },
                { "tp", "rfind0a", -EEXIST, NULL },
                { "tp", "rfind2", -ENOENT, NULL },
                { "tp", "rfind1xxx", -ENOENT, NULL },
                { "tq", "rfind1", -ENOENT, NULL },      /* another tenant's */
                { "tq", "rfind1xx", -ENOENT, NULL },
                { NULL, "rfind1", -ENOENT, NULL },      /* a prefix needs a tenant */
                { "tp", "", -EINVAL, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                RunRecord *got = NULL;
                int k = cluster_run_find(a, rows[i].tenant, rows[i].id, &got);
                if (k != rows[i].want)
                        fail_msg("row %zu (%s): %d, want %d", i, rows[i].id, k, rows[i].want);
                if (rows[i].found)
                        assert_string_equal(got->id, rows[i].found);
                run_record_free(got);
        }
        /* An expired record leaves the index when a look meets it, and
         * the look is made again: it hides no third run (rfind0ac); once
         * that one expired too, the prefix names rfind0ab alone. */
        _cleanup_free_ char *c = xasprintf("redis-cli -s %s/redis.sock DEL ps:run:rfind0aa >/dev/null", dir);
        assert_int_equal(system(c), 0);
        RunRecord *got = NULL;
        assert_int_equal(cluster_run_find(a, "tp", "rfind0a", &got), -EEXIST);
        _cleanup_free_ char *c2 = xasprintf("redis-cli -s %s/redis.sock DEL ps:run:rfind0ac >/dev/null", dir);
        assert_int_equal(system(c2), 0);
        assert_int_equal(cluster_run_find(a, "tp", "rfind0a", &got), 0);
        assert_string_equal(got->id, "rfind0ab");
        run_record_free(got);
        assert_int_equal(cluster_run_find(a, "tp", "rfind0aa", &got), -ENOENT);
        run_queue_free(a);
}

static void test_claim_counts_free_slots_only(void **state) {
        RunQueue *a = queue("a3", 5000);
        submit(a, "r-slot-1", 1);
        submit(a, "r-slot-2", 1);
        submit(a, "r-slot-3", 1);
        PendingRun *v = NULL;
        size_t n = 0;
        assert_int_equal(cluster_claim(a, 2, 0, NULL, &v, &n), 0);
        assert_int_equal(n, 2);
        pending_run_list_free(v, n);
        assert_int_equal(cluster_claim(a, 0, 0, NULL, &v, &n), 0);
        assert_int_equal(n, 0);
        /* a cancelled run is never handed out */
        assert_int_equal(run_queue_cancel(a, "r-slot-3", "cancelled"), 0);
        assert_int_equal(cluster_claim(a, 5, 0, NULL, &v, &n), 0);
        assert_int_equal(n, 0);
        _cleanup_free_ char *s = status_of(a, "r-slot-3");
        assert_string_equal(s, "cancelled");
        for (int i = 1; i <= 2; i++) {
                _cleanup_free_ char *id = xasprintf("r-slot-%d", i);
                assert_int_equal(run_queue_cancel(a, id, "cancelled"), 0);
        }
        run_queue_free(a);
}

/* A claimed run handed back (its tenant full on the claiming node) is
 * queued at the end of the shared stream, not started (attempt 0), and
 * another node claims it, request and all, at once; a run cancelled
 * after its claim is not handed back. */
static void run_to_end(RunQueue *q, const char *id);

static void test_hand_back(void **state) {
        RunQueue *a = queue("hb-a", 5000), *b = queue("hb-b", 5000);
        submit(a, "r-hb-1", 3);
        submit(a, "r-hb-2", 3);
        PendingRun *v = NULL;
        assert_int_equal(claim_until(a, 2, 2, &v), 2);
        assert_int_equal(cluster_hand_back(a, v[0].id), 1);
        assert_int_equal(run_queue_cancel(a, v[1].id, "cancelled"), 0);
        assert_int_equal(cluster_hand_back(a, v[1].id), 0);
        pending_run_list_free(v, 2);
        _cleanup_free_ char *s = status_of(a, "r-hb-1");
        assert_string_equal(s, "queued");
        PendingRun *w = NULL;
        assert_int_equal(claim_until(b, 2, 1, &w), 1);
        assert_string_equal(w[0].id, "r-hb-1");
        assert_string_equal(w[0].tenant, "t1");
        assert_non_null(w[0].request_json);
        assert_int_equal(w[0].attempt, 0);
        pending_run_list_free(w, 1);
        /* Nothing else is delivered: the first entry went with its hand-back. */
        PendingRun *x = NULL;
        size_t n = 0;
        assert_int_equal(cluster_claim(a, 2, 0, NULL, &x, &n), 0);
        assert_int_equal(n, 0);
        free(x);
        run_to_end(b, "r-hb-1");
        run_queue_free(a);
        run_queue_free(b);
}

/* An attempt is current only while the record names it running on the
 * asking node: not before its start, not for another attempt or node,
 * not once the run ended. */
static void test_attempt_current(void **state) {
        RunQueue *a = queue("ac-a", 5000), *b = queue("ac-b", 5000);
        submit_claimed(a, "r-ac-1", 3);
        assert_int_equal(cluster_run_attempt_current(a, "r-ac-1", 0), 0);
        int attempt = 0;
        assert_int_equal(run_queue_start(a, "r-ac-1", now_realtime(), &attempt), 0);
        assert_int_equal(cluster_run_attempt_current(a, "r-ac-1", attempt), 1);
        assert_int_equal(cluster_run_attempt_current(a, "r-ac-1", attempt + 1), 0);
        assert_int_equal(cluster_run_attempt_current(b, "r-ac-1", attempt), 0);
        assert_int_equal(cluster_run_attempt_current(a, "r-ac-nope", 1), 0);
        RunRecord f;
        finish_rec(&f, "r-ac-1", "succeeded");
        assert_int_equal(run_queue_finish(a, &f, attempt), 0);
        assert_int_equal(cluster_run_attempt_current(a, "r-ac-1", attempt), 0);
        run_queue_free(a);
        run_queue_free(b);
}

/* A node without a lease (dead, or stopped) loses its entries after the
 * claim timeout; its late result is STALE; the new node's lands. */
static void test_reclaim_from_dead_node(void **state) {
        RunQueue *a = queue("dead-a", 200), *b = queue("live-b", 200);
        PendingRun *v = NULL;
        submit_claimed(a, "r-reclaim", 3);
        int att_a = 0, att_b = 0;
        assert_int_equal(run_queue_start(a, "r-reclaim", now_realtime(), &att_a), 0);
        /* a's lease expires (300 ms) and the entry goes idle (200 ms) */
        assert_int_equal(claim_until(b, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-reclaim");
        pending_run_list_free(v, 1);
        assert_int_equal(run_queue_start(b, "r-reclaim", now_realtime(), &att_b), 0);
        assert_int_equal(att_b, 2);
        RunRecord f;
        finish_rec(&f, "r-reclaim", "succeeded");
        assert_int_equal(run_queue_finish(a, &f, att_a), -ESTALE);
        assert_int_equal(run_queue_finish(b, &f, att_b), 0);
        run_queue_free(a);
        run_queue_free(b);
}

/* A live node keeps its entries however long it runs. */
static void test_live_lease_keeps_entries(void **state) {
        /* A lease far longer than a refresh takes, even on a loaded machine
         * (300 ms once expired there between two refreshes ~60 ms apart),
         * and far longer than the claim timeout: only the lease keeps it.
         * It outlives the test: the next one starts from an empty Redis. */
        RunQueue *a = queue_leased("live-a", 200, 2000), *b = queue("other-b", 200);
        PendingRun *v = NULL;
        submit_claimed(a, "r-kept", 3);
        char *held[] = { (char *) "r-kept", NULL };
        usec_t until = now_monotonic() + 800 * USEC_PER_MSEC;
        while (now_monotonic() < until) {
                bool draining = true;
                assert_int_equal(cluster_lease_refresh(a, "{\"slots\":1}", held, &draining, NULL), 0);
                assert_false(draining);
                size_t n = 0;
                assert_int_equal(cluster_claim(b, 1, 50, NULL, &v, &n), 0);
                assert_int_equal(n, 0);
        }
        assert_int_equal(cluster_drain(b, "live-a"), 0);
        bool draining = false;
        assert_int_equal(cluster_lease_refresh(a, NULL, NULL, &draining, NULL), 0);
        assert_true(draining);
        assert_int_equal(cluster_drain(b, "no-such-node"), -ENOENT);
        assert_int_equal(run_queue_cancel(a, "r-kept", "x"), 0);
        run_queue_free(a);
        run_queue_free(b);
}

/* The lease keeps the entries of the runs its node holds fresh: once the
 * node dies, another takes its entry a claim timeout after the node's last
 * lease, not as soon as the lease expires. */
static void test_dead_nodes_entry_waits_the_claim_timeout(void **state) {
        RunQueue *a = queue("fresh-a", 1000), *b = queue("fresh-b", 1000);
        PendingRun *v = NULL;
        submit_claimed(a, "r-fresh", 3);
        char *held[] = { (char *) "r-fresh", NULL };
        usec_t until = now_monotonic() + 1200 * USEC_PER_MSEC, last = 0;
        while (now_monotonic() < until) {
                /* Before the call: Redis made the entry fresh at some point
                 * between it and the reply, which a slow reply delays. */
                last = now_monotonic();
                assert_int_equal(cluster_lease_refresh(a, "{}", held, NULL, NULL), 0);
                (void) usleep(50 * 1000);
        }
        /* a dies: its lease (300 ms) expires long before its entry is idle */
        assert_int_equal(claim_until(b, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-fresh");
        pending_run_list_free(v, 1);
        assert_true(now_monotonic() - last >= 900 * USEC_PER_MSEC);
        assert_int_equal(run_queue_cancel(b, "r-fresh", "x"), 0); /* nothing left for the next tests */
        run_queue_free(a);
        run_queue_free(b);
}

/* A start whose answer was lost (the connection dropped with the reply,
 * or Redis died after writing it) is asked again by its node: the same
 * start (node and time) gets its attempt again; any other start is still
 * refused. */
static void test_start_asked_again_gets_its_attempt(void **state) {
        RunQueue *a = queue("again-a", 5000), *b = queue("again-b", 5000);
        submit_claimed(a, "r-again", 3);
        usec_t t = now_realtime();
        int attempt = 0;
        assert_int_equal(run_queue_start(a, "r-again", t, &attempt), 0);
        assert_int_equal(attempt, 1);
        attempt = 0;
        assert_int_equal(run_queue_start(a, "r-again", t, &attempt), 0);
        assert_int_equal(attempt, 1);
        assert_int_equal(run_queue_start(a, "r-again", t + 1, &attempt), -ESTALE);
        assert_int_equal(run_queue_start(b, "r-again", t, &attempt), -ESTALE);
        RunRecord f;
        finish_rec(&f, "r-again", "succeeded");
        assert_int_equal(run_queue_finish(a, &f, 1), 0);
        /* ended: the same start is refused too */
        assert_int_equal(run_queue_start(a, "r-again", t, &attempt), -ESTALE);
        run_queue_free(a);
        run_queue_free(b);
}

/* Claims on q with held until it is handed a run or the deadline passes;
 * refreshes q's lease meanwhile, as a node does. */
static size_t claim_holding(RunQueue *q, char **held, usec_t for_usec, PendingRun **ret) {
        usec_t until = now_monotonic() + for_usec;
        size_t n = 0;
        *ret = NULL;
        while (n == 0 && now_monotonic() < until) {
                assert_int_equal(cluster_lease_refresh(q, "{}", held, NULL, NULL), 0);
                assert_int_equal(cluster_claim(q, 1, 50, held, ret, &n), 0);
        }
        return n;
}

/* An entry a live node holds without running it (its delivery's reply was
 * lost, its start failed, the run was dropped) goes idle, since the lease
 * keeps only the runs the node holds fresh: that node claims it again,
 * queued again when it was running, lost once its attempts are used up.
 * No other node takes it (its lease is alive), and a run the node holds
 * stays its own however long it runs. */
static void test_live_node_claims_again_what_it_dropped(void **state) {
        RunQueue *a = queue("drop-a", 200), *b = queue("drop-b", 200);
        PendingRun *v = NULL;
        submit_claimed(a, "r-dropped", 2);
        char *held[] = { (char *) "r-dropped", NULL };
        /* held: never handed out again, to a or to b */
        assert_int_equal(claim_holding(a, held, 700 * USEC_PER_MSEC, &v), 0);
        size_t n = 0;
        assert_int_equal(cluster_claim(b, 1, 0, NULL, &v, &n), 0);
        assert_int_equal(n, 0);
        /* held but idle, its lease not refreshed yet (as after a Redis
         * restart): still a's, left as it is */
        (void) usleep(250 * 1000);
        assert_int_equal(cluster_claim(a, 1, 0, held, &v, &n), 0);
        assert_int_equal(n, 0);

        /* dropped while queued (a delivery whose reply was lost) */
        assert_int_equal(claim_holding(a, NULL, 5 * USEC_PER_SEC, &v), 1);
        assert_string_equal(v[0].id, "r-dropped");
        assert_int_equal(v[0].attempt, 0);
        pending_run_list_free(v, 1);

        /* dropped while running: queued again, attempt 2 of 2 */
        int attempt = 0;
        assert_int_equal(run_queue_start(a, "r-dropped", now_realtime(), &attempt), 0);
        assert_int_equal(attempt, 1);
        assert_int_equal(claim_holding(a, NULL, 5 * USEC_PER_SEC, &v), 1);
        assert_string_equal(v[0].id, "r-dropped");
        assert_int_equal(v[0].attempt, 1);
        pending_run_list_free(v, 1);
        assert_int_equal(run_queue_start(a, "r-dropped", now_realtime(), &attempt), 0);
        assert_int_equal(attempt, 2);

        /* dropped again with its attempts used up: lost, said why */
        assert_int_equal(claim_holding(a, NULL, 700 * USEC_PER_MSEC, &v), 0);
        RunRecord *got = NULL;
        assert_int_equal(cluster_run_get(a, "t1", "r-dropped", &got), 0);
        assert_string_equal(got->status, "lost");
        assert_non_null(strstr(got->error_message, "node drop-a lost track of this run in flight (attempt 2 of 2)"));
        run_record_free(got);
        run_queue_free(a);
        run_queue_free(b);
}

/* The reclaim scan runs on a timer, not before every claim: a dead node's
 * entry, idle past the claim timeout, waits for the next scan, which is
 * due a reclaim interval after the last, or at once after a claim that
 * found nothing new. */
static void test_reclaim_runs_when_due(void **state) {
        RunQueue *a = queue("timer-dead", 200), *b = NULL;
        ClusterOptions o = { .url = url,
                             .node_id = "timer-b",
                             .claim_timeout_ms = 200,
                             .lease_ttl_ms = 300,
                             .reclaim_interval_ms = 900 };
        assert_int_equal(cluster_queue_new(&o, &b, NULL), 0);
        PendingRun *v = NULL;
        size_t n = 0;
        usec_t t0 = now_monotonic();
        assert_int_equal(cluster_claim(b, 1, 0, NULL, &v, &n), 0); /* the first claim scans */
        assert_int_equal(n, 0);
        submit_claimed(a, "r-timer-1", 3);
        int att = 0;
        assert_int_equal(run_queue_start(a, "r-timer-1", now_realtime(), &att), 0);
        /* timer-dead has no lease and its entry is idle past 200 ms: the
         * scan would take it, but none is due before t0 + 900 ms */
        (void) usleep(450 * 1000);
        assert_int_equal(cluster_claim(b, 1, 0, NULL, &v, &n), 0);
        assert_int_equal(n, 0);
        assert_true(now_monotonic() - t0 < 900 * USEC_PER_MSEC);
        _cleanup_free_ char *s1 = status_of(b, "r-timer-1");
        assert_string_equal(s1, "running");
        /* due by the timer */
        while (now_monotonic() - t0 < 950 * USEC_PER_MSEC)
                (void) usleep(20 * 1000);
        assert_int_equal(cluster_claim(b, 2, 0, NULL, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].id, "r-timer-1");
        assert_int_equal(v[0].attempt, 1);
        pending_run_list_free(v, n);
        usec_t t1 = now_monotonic();
        assert_int_equal(run_queue_cancel(b, "r-timer-1", "x"), 0);

        /* due at once after a claim that waited and found nothing */
        char **held = NULL;
        submit_claimed(a, "r-timer-2", 3);
        assert_int_equal(run_queue_start(a, "r-timer-2", now_realtime(), &att), 0);
        (void) usleep(300 * 1000);
        assert_int_equal(cluster_claim(b, 1, 0, held, &v, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(cluster_claim(b, 1, 50, held, &v, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(cluster_claim(b, 1, 0, held, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].id, "r-timer-2");
        assert_true(now_monotonic() - t1 < 900 * USEC_PER_MSEC);
        pending_run_list_free(v, n);
        assert_int_equal(run_queue_cancel(b, "r-timer-2", "x"), 0);
        run_queue_free(a);
        run_queue_free(b);
}

/* Attempts used up: the run ends lost and goes to the dead letters. */
static void test_dead_letter_after_max_attempts(void **state) {
        RunQueue *a = queue("dl-a", 200), *b = queue("dl-b", 200);
        PendingRun *v = NULL;
        submit_claimed(a, "r-once", 1);
        int att = 0;
        assert_int_equal(run_queue_start(a, "r-once", now_realtime(), &att), 0);
        usec_t deadline = now_monotonic() + 10 * USEC_PER_SEC;
        for (;;) {
                size_t n = 0;
                assert_int_equal(cluster_claim(b, 1, 50, NULL, &v, &n), 0);
                assert_int_equal(n, 0); /* never handed out again */
                _cleanup_free_ char *s = status_of(b, "r-once");
                if (streq(s, "lost"))
                        break;
                assert_true(now_monotonic() < deadline);
        }
        _cleanup_free_ char *js = NULL;
        assert_int_equal(cluster_status_json(b, &js), 0);
        json_t *j = json_loads(js, 0, NULL);
        assert_int_equal(json_integer_value(json_object_get(j, "dead_letters")), 1);
        json_decref(j);
        run_queue_free(a);
        run_queue_free(b);
}

static void test_durability_check(void **state) {
        RunQueue *a = queue("chk", 5000);
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;
        assert_int_equal(cluster_check_durability(a, &e1), 0);
        RunQueue *admin = a;
        /* switch eviction on, then AOF off: each is refused with why */
        redis_config("maxmemory-policy", "allkeys-lru");
        assert_int_equal(cluster_check_durability(admin, &e2), -EPERM);
        assert_non_null(strstr(e2, "maxmemory-policy"));
        redis_config("maxmemory-policy", "noeviction");
        redis_config("appendonly", "no");
        assert_int_equal(cluster_check_durability(admin, &e3), -EPERM);
        assert_non_null(strstr(e3, "AOF"));
        redis_config("appendonly", "yes");
        run_queue_free(a);
}

/* kill -9 of Redis and a restart on the same AOF: the queued run, its
 * entry and the group are there; the queue reconnects by itself. */
static void test_redis_restart_keeps_queue(void **state) {
        RunQueue *a = queue("rs-a", 5000);
        submit(a, "r-survives", 3);
        redis_kill9();
        redis_start();
        _cleanup_free_ char *s = status_of(a, "r-survives");
        assert_string_equal(s, "queued");
        PendingRun *v = NULL;
        assert_int_equal(claim_until(a, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-survives");
        pending_run_list_free(v, 1);
        run_queue_free(a);
}

/* One counter of INFO commandstats ("evalsha", "eval"): its calls. */
static long command_calls(const char *cmd) {
        _cleanup_free_ char *c = xasprintf("redis-cli -s %s/redis.sock INFO commandstats", dir);
        FILE *f = popen(c, "r");
        assert_non_null(f);
        _cleanup_free_ char *want = xasprintf("cmdstat_%s:calls=", cmd);
        char line[512];
        long calls = 0;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, want, strlen(want)) == 0)
                        calls = atol(line + strlen(want));
        pclose(f);
        return calls;
}

/* The scripts go by their SHA-1 (EVALSHA); their text only when Redis
 * lacks them: a fresh or flushed script cache costs one EVAL, and the
 * call still does its work. */
static void test_scripts_sent_by_sha1(void **state) {
        RunQueue *a = queue("sha-a", 5000);
        redis_cli("SCRIPT FLUSH");
        redis_cli("CONFIG RESETSTAT");
        submit(a, "r-sha-1", 3);
        assert_int_equal(command_calls("eval"), 1); /* NOSCRIPT, then the text */
        submit(a, "r-sha-2", 3);
        submit(a, "r-sha-3", 3);
        assert_int_equal(command_calls("eval"), 1);
        assert_int_equal(command_calls("evalsha"), 3);
        redis_cli("SCRIPT FLUSH");
        submit(a, "r-sha-4", 3);
        assert_int_equal(command_calls("eval"), 2);
        for (int i = 1; i <= 4; i++) {
                _cleanup_free_ char *id = xasprintf("r-sha-%d", i);
                _cleanup_free_ char *st = status_of(a, id);
                assert_string_equal(st, "queued");
                /* out of the stream the next tests claim from */
                assert_int_equal(run_queue_cancel(a, id, NULL), 0);
        }
        run_queue_free(a);
}

/* The first line redis-cli prints for args, as an operator would read it. */
static char *cli_line(const char *args) {
        _cleanup_free_ char *c = xasprintf("redis-cli -s %s/redis.sock %s", dir, args);
        FILE *f = popen(c, "r");
        assert_non_null(f);
        char line[256] = "";
        if (!fgets(line, sizeof line, f))
                line[0] = 0;
        pclose(f);
        line[strcspn(line, "\n")] = 0;
        return xstrdup(line);
}

/* One field of a record, read as an operator would (redis-cli). */
static char *hget(const char *key, const char *field) {
        _cleanup_free_ char *args = xasprintf("HGET %s %s", key, field);
        return cli_line(args);
}

static void run_to_end(RunQueue *q, const char *id) {
        int attempt = 0;
        assert_int_equal(run_queue_start(q, id, now_realtime(), &attempt), 0);
        RunRecord f;
        finish_rec(&f, id, "succeeded");
        assert_int_equal(run_queue_finish(q, &f, attempt), 0);
}

static void submit_env(RunQueue *q, const char *id, const char *env) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) "t1", .filename = (char *) "main.py",
                        .status = (char *) "queued", .created = now_realtime(), .max_attempts = 1 };
        assert_int_equal(cluster_submit_env(q, &r, "{\"v\":1,\"source\":\"x\"}", NULL, env, UINT_MAX, NULL), 0);
}

/* Placement: after a node ran an environment, the next run of it goes to
 * that node's own stream; left there unclaimed past the affinity delay,
 * another node takes it. */
/* A queued record that lost its tenant and request is delivered all the
 * same, with no request (the run manager ends it: daemon-runs.c
 * drun_end_unreadable()), not left pending to come back at every claim
 * timeout; its end at the attempt it has (0) acknowledges its entry. */
static void test_damaged_record_is_delivered_to_be_ended(void **state) {
        RunQueue *a = queue("a-dmg", 300), *dead = queue("dead-dmg", 300);
        submit(a, "r-damaged", 3);
        _cleanup_free_ char *c = xasprintf("redis-cli -s %s/redis.sock HDEL ps:run:r-damaged "
                                           "request_json tenant >/dev/null",
                                           dir);
        assert_int_equal(system(c), 0);
        /* A fresh entry carries what its run starts from (submit.lua): the
         * first claim does not read the record. */
        PendingRun *v = NULL;
        assert_int_equal(claim_until(dead, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-damaged");
        assert_string_equal(v[0].tenant, "t1");
        assert_string_equal(v[0].request_json, "{\"v\":1,\"source\":\"x\"}");
        pending_run_list_free(v, 1);
        /* That node dies; the reclaimed entry is read from the record. */
        assert_int_equal(claim_until(a, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-damaged");
        assert_null(v[0].request_json);
        assert_string_equal(v[0].tenant, "");
        assert_int_equal(v[0].attempt, 0);
        RunRecord f;
        finish_rec(&f, "r-damaged", "error");
        assert_int_equal(run_queue_finish(a, &f, v[0].attempt), 0);
        pending_run_list_free(v, 1);
        _cleanup_free_ char *st = hget("ps:run:r-damaged", "status");
        assert_string_equal(st, "error");
        _cleanup_free_ char *json = NULL;
        assert_int_equal(cluster_status_json(a, &json), 0);
        assert_non_null(strstr(json, "\"pending\":0"));
        run_queue_free(a);
        run_queue_free(dead);
}

/* Cancels the runs ids (out of the stream the next tests claim from) and
 * frees a. */
static void queue_cancel_and_free(RunQueue *a, const char *const *ids, size_t n) {
        for (size_t i = 0; i < n; i++)
                assert_int_equal(run_queue_cancel(a, ids[i], NULL), 0);
        run_queue_free(a);
}

/* A deployed function's runs are listed by its own index, newest first;
 * an ad-hoc run and another function's are not. */
static void test_function_run_list(void **state) {
        RunQueue *a = queue("a-fnl", 5000);
        const char *ids[] = { "r-fn-1", "r-adhoc", "r-fn-2", "r-other" };
        const char *fns[] = { "fx", NULL, "fx", "fy" };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                RunRecord r = { .id = (char *) ids[i], .tenant = (char *) "t-fnl", .filename = (char *) "main.py",
                                .status = (char *) "queued", .created = now_realtime() + i, .max_attempts = 3,
                                .request_given = true, .request_fn_name = (char *) fns[i] };
                assert_int_equal(run_queue_submit(a, &r, "{\"source\":\"x\"}"), 0);
        }
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(cluster_function_run_list(a, "t-fnl", "fx", 10, &v, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0]->id, "r-fn-2");
        assert_string_equal(v[1]->id, "r-fn-1");
        run_record_list_free(v, n);
        assert_int_equal(cluster_function_run_list(a, "t-fnl", "fx", 1, &v, &n), 0);
        assert_int_equal(n, 1);
        run_record_list_free(v, n);
        /* another tenant's function of that name has none */
        assert_int_equal(cluster_function_run_list(a, "t-other", "fx", 10, &v, &n), 0);
        assert_int_equal(n, 0);
        run_record_list_free(v, n);
        assert_int_equal(cluster_run_list(a, "t-fnl", 10, &v, &n), 0);
        assert_int_equal(n, 4);
        run_record_list_free(v, n);
        queue_cancel_and_free(a, ids, ELEMENTSOF(ids));
}

/* A listing reads a page of records in one call and leaves a value over
 * RUN_LIST_VALUE_MAX unread, named in r->elided, as the SQLite store's
 * listing does (listed.lua); a filtered one (search.lua) alike; the run
 * itself is whole. Another tenant's record is not listed. */
static void test_run_list_leaves_big_values_unread(void **state) {
        RunQueue *a = queue("a-big", 5000);
        _cleanup_free_ char *big = xmalloc(RUN_LIST_VALUE_MAX + 100);
        memset(big, 'x', RUN_LIST_VALUE_MAX + 99);
        big[RUN_LIST_VALUE_MAX + 99] = 0;
        big[0] = '"', big[RUN_LIST_VALUE_MAX + 98] = '"';
        const char *ids[] = { "r-big-1", "r-big-2", "r-big-3" };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                RunRecord r = { .id = (char *) ids[i],
                                .tenant = (char *) "t-big",
                                .filename = (char *) "main.py",
                                .status = (char *) "queued",
                                .created = now_realtime() + i,
                                .max_attempts = 3,
                                .args_json = (char *) "[1]",
                                .kwargs_json = (char *) (i == 1 ? big : "{}") };
                assert_int_equal(run_queue_submit(a, &r, "{\"source\":\"x\"}"), 0);
        }
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(cluster_run_list(a, "t-big", 10, &v, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(v[1]->id, "r-big-2");
        assert_null(v[1]->kwargs_json);
        assert_int_equal(v[1]->elided, 1u << 1); /* kwargs */
        assert_string_equal(v[1]->args_json, "[1]");
        assert_string_equal(v[0]->kwargs_json, "{}");
        assert_int_equal(v[0]->elided, 0);
        assert_string_equal(v[2]->status, "queued");
        run_record_list_free(v, n);
        RunFilter f = { .text = "big-2" };
        assert_int_equal(cluster_run_search(a, "t-big", &f, NULL, 10, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_null(v[0]->kwargs_json);
        assert_int_equal(v[0]->elided, 1u << 1);
        run_record_list_free(v, n);
        RunRecord *whole = NULL;
        assert_int_equal(cluster_run_get(a, "t-big", "r-big-2", &whole), 0);
        assert_string_equal(whole->kwargs_json, big);
        assert_int_equal(whole->elided, 0);
        run_record_free(whole);
        assert_int_equal(cluster_run_list(a, "t-big-other", 10, &v, &n), 0);
        assert_int_equal(n, 0);
        run_record_list_free(v, n);
        queue_cancel_and_free(a, ids, ELEMENTSOF(ids));
}

/* The ids of a tenant's newest runs: the index alone, newest first, at
 * most limit, another tenant's not among them. */
static void test_run_ids(void **state) {
        RunQueue *a = queue("a-ids", 5000);
        const char *ids[] = { "r-ids-1", "r-ids-2", "r-ids-3" };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                RunRecord r = { .id = (char *) ids[i], .tenant = (char *) (i == 1 ? "t-ids-b" : "t-ids"),
                                .filename = (char *) "main.py", .status = (char *) "queued",
                                .created = now_realtime() + i, .max_attempts = 3 };
                assert_int_equal(run_queue_submit(a, &r, "{\"source\":\"x\"}"), 0);
        }
        char **v = NULL;
        assert_int_equal(cluster_run_ids(a, "t-ids", 10, &v), 0);
        assert_int_equal(strv_length(v), 2);
        assert_string_equal(v[0], "r-ids-3");
        assert_string_equal(v[1], "r-ids-1");
        v = strv_free(v);
        assert_int_equal(cluster_run_ids(a, "t-ids", 1, &v), 0);
        assert_int_equal(strv_length(v), 1);
        assert_string_equal(v[0], "r-ids-3");
        v = strv_free(v);
        assert_int_equal(cluster_run_ids(a, "t-none", 10, &v), 0);
        assert_null(v);
        queue_cancel_and_free(a, ids, ELEMENTSOF(ids));
}

static void test_placement_warm_node_then_fallback(void **state) {
        RunQueue *q[2];
        const char *names[] = { "place-a", "place-b" };
        for (int i = 0; i < 2; i++) {
                ClusterOptions o = { .url = url, .node_id = names[i], .claim_timeout_ms = 5000, .lease_ttl_ms = 5000,
                                     .affinity_delay_ms = 300 };
                assert_int_equal(cluster_queue_new(&o, &q[i], NULL), 0);
                assert_int_equal(cluster_lease_refresh(q[i], "{\"slots\":2}", NULL, NULL, NULL), 0);
        }
        PendingRun *v = NULL;
        submit_env(q[0], "r-place-1", "envA");
        assert_int_equal(claim_until(q[0], 1, 1, &v), 1);
        pending_run_list_free(v, 1);
        run_to_end(q[0], "r-place-1");

        /* warm on place-a: the next run of envA is place-a's */
        submit_env(q[1], "r-place-2", "envA");
        _cleanup_free_ char *st = hget("ps:run:r-place-2", "stream");
        assert_string_equal(st, "ps:runs:place-a");
        size_t n = 0;
        assert_int_equal(cluster_claim(q[1], 2, 0, NULL, &v, &n), 0); /* not yet place-b's */
        assert_int_equal(n, 0);
        assert_int_equal(claim_until(q[0], 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-place-2");
        pending_run_list_free(v, 1);
        run_to_end(q[0], "r-place-2");

        /* another environment goes to the shared stream */
        submit_env(q[0], "r-place-3", "envB");
        _cleanup_free_ char *st3 = hget("ps:run:r-place-3", "stream");
        assert_string_equal(st3, "ps:runs");
        assert_int_equal(claim_until(q[1], 1, 1, &v), 1);
        pending_run_list_free(v, 1);
        run_to_end(q[1], "r-place-3");

        /* place-a does not claim: after the delay place-b takes the run */
        usec_t t0 = now_monotonic();
        submit_env(q[1], "r-place-4", "envA");
        _cleanup_free_ char *st4 = hget("ps:run:r-place-4", "stream");
        assert_string_equal(st4, "ps:runs:place-a");
        assert_int_equal(claim_until(q[1], 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-place-4");
        assert_true(now_monotonic() - t0 >= 300 * USEC_PER_MSEC);
        pending_run_list_free(v, 1);
        run_to_end(q[1], "r-place-4");
        for (int i = 0; i < 2; i++)
                run_queue_free(q[i]);
}

/* A claim reads this node's own stream and the shared one with COUNT per
 * stream: never more runs than free slots; the extra goes back. */
static void test_claim_over_two_streams_keeps_to_free_slots(void **state) {
        ClusterOptions o = { .url = url, .node_id = "two-a", .claim_timeout_ms = 5000, .lease_ttl_ms = 5000 };
        RunQueue *a = NULL, *b = queue("two-b", 5000);
        assert_int_equal(cluster_queue_new(&o, &a, NULL), 0);
        assert_int_equal(cluster_lease_refresh(a, "{\"slots\":1}", NULL, NULL, NULL), 0);
        PendingRun *v = NULL;
        submit_env(a, "r-two-1", "envC");
        assert_int_equal(claim_until(a, 1, 1, &v), 1);
        pending_run_list_free(v, 1);
        run_to_end(a, "r-two-1");
        submit_env(a, "r-two-2", "envC"); /* two-a's own stream */
        submit(a, "r-two-3", 1);          /* the shared stream */
        size_t n = 0;
        assert_int_equal(cluster_claim(a, 1, 0, NULL, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].id, "r-two-2");
        pending_run_list_free(v, n);
        assert_int_equal(claim_until(b, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-two-3");
        pending_run_list_free(v, 1);
        run_to_end(a, "r-two-2");
        run_to_end(b, "r-two-3");
        run_queue_free(a);
        run_queue_free(b);
}

/* Cancel of a running run: marked and sent to its node (1); a queued one
 * ends at once (0); an ended one is -ESTALE. */
static void test_cancel_running_marks_it(void **state) {
        RunQueue *a = queue("cancel-a", 5000);
        submit_claimed(a, "r-cancel-1", 1);
        int attempt = 0;
        assert_int_equal(run_queue_start(a, "r-cancel-1", now_realtime(), &attempt), 0);
        /* the queue's own cancel never touches a running run */
        assert_int_equal(run_queue_cancel(a, "r-cancel-1", "x"), -ESTALE);
        assert_int_equal(cluster_cancel(a, "r-cancel-1", "x"), 1);
        _cleanup_free_ char *m = hget("ps:run:r-cancel-1", "cancel_requested");
        assert_string_equal(m, "1");
        RunRecord f;
        finish_rec(&f, "r-cancel-1", "cancelled");
        assert_int_equal(run_queue_finish(a, &f, attempt), 0);
        assert_int_equal(cluster_cancel(a, "r-cancel-1", "x"), -ESTALE);
        submit(a, "r-cancel-2", 1);
        assert_int_equal(cluster_cancel(a, "r-cancel-2", "x"), 0);
        run_queue_free(a);
}

/* The Redis FunctionStore keeps the SQLite one's contract. */
static void test_function_store(void **state) {
        RunQueue *q = queue("fs", 0);
        FunctionStore *fs = cluster_function_store_new(q);
        FunctionRecord f = { .tenant = (char *) "t1", .name = (char *) "fn", .filename = (char *) "main.py",
                             .source = (char *) "def f(): pass\n", .description = (char *) "v1",
                             .limits_json = (char *) "{\"timeout_ms\":5}" };
        int v = 0;
        FunctionRecord *got = NULL;
        assert_int_equal(function_store_get(fs, "t1", "fn", 0, &got), -ENOENT);
        assert_int_equal(function_store_versions(fs, "t1", "fn", &(int *) { NULL }, &(size_t) { 0 }), -ENOENT);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 1);
        f.description = NULL;
        f.source = (char *) "def f(): return 2\n";
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 2);
        assert_int_equal(function_store_get(fs, "t1", "fn", 0, &got), 0);
        assert_int_equal(got->version, 2);
        assert_string_equal(got->source, "def f(): return 2\n");
        assert_null(got->description);
        function_record_free(got);
        assert_int_equal(function_store_get(fs, "t1", "fn", 1, &got), 0);
        assert_string_equal(got->description, "v1");
        assert_string_equal(got->limits_json, "{\"timeout_ms\":5}");
        function_record_free(got);
        assert_int_equal(function_store_get(fs, "t2", "fn", 0, &got), -ENOENT);
        int *vs = NULL;
        size_t n = 0;
        assert_int_equal(function_store_versions(fs, "t1", "fn", &vs, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(vs[0], 1);
        assert_int_equal(vs[1], 2);
        free(vs);
        FunctionRecord **all = NULL;
        assert_int_equal(function_store_list(fs, "t1", &all, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(all[0]->version, 2);
        function_record_list_free(all, n);
        assert_int_equal(function_store_delete(fs, "t1", "fn"), 0);
        assert_int_equal(function_store_delete(fs, "t1", "fn"), -ENOENT);
        assert_int_equal(function_store_list(fs, "t1", &all, &n), 0);
        assert_int_equal(n, 0);
        function_record_list_free(all, n);
        function_store_free(fs);
        run_queue_free(q);
}

/* One version deleted alone keeps the SQLite store's contract
 * (store_function_delete_version()): never the latest, and 'next' counts
 * on, so no number is given twice. */
static void test_function_store_delete_version(void **state) {
        RunQueue *q = queue("fsver", 0);
        FunctionStore *fs = cluster_function_store_new(q);
        FunctionRecord f = { .tenant = (char *) "t1", .name = (char *) "fn", .source = (char *) "def f(): pass\n" };
        int v = 0;
        assert_int_equal(function_store_delete_version(fs, "t1", "fn", 1), -ENOENT);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_delete_version(fs, "t1", "fn", 1), -EBUSY);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_delete_version(fs, "t2", "fn", 1), -ENOENT);
        assert_int_equal(function_store_delete_version(fs, "t1", "fn", 3), -EBUSY);
        assert_int_equal(function_store_delete_version(fs, "t1", "fn", 2), 0);
        assert_int_equal(function_store_delete_version(fs, "t1", "fn", 2), -ENOENT);
        FunctionRecord *got = NULL;
        assert_int_equal(function_store_get(fs, "t1", "fn", 2, &got), -ENOENT);
        char *sig = NULL, *doc = NULL;
        assert_int_equal(function_store_describe(fs, "t1", "fn", 2, &sig, &doc), -ENOENT);
        int *vs = NULL;
        size_t n = 0;
        assert_int_equal(function_store_versions(fs, "t1", "fn", &vs, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(vs[0], 1);
        assert_int_equal(vs[1], 3);
        free(vs);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 4);
        assert_int_equal(function_store_get(fs, "t1", "fn", 0, &got), 0);
        assert_int_equal(got->version, 4);
        function_record_free(got);
        assert_int_equal(function_store_delete(fs, "t1", "fn"), 0);
        function_store_free(fs);
        run_queue_free(q);
}

static char *next_message(redisContext *sub, size_t *ret_len);

/* A delete tells every node what it deleted ("f:<tenant>/<name>@<version>",
 * version 0 every one), in the script that deletes: each retires its warm
 * instances of it. A refused delete tells no one. */
static void test_function_delete_tells_every_node(void **state) {
        char sock[200];
        snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
        redisContext *sub = redisConnectUnix(sock);
        assert_true(sub && !sub->err);
        /* A message that never comes fails the test rather than hang it. */
        assert_int_equal(redisSetTimeout(sub, (struct timeval){ .tv_sec = 30 }), REDIS_OK);
        redisReply *ok = redisCommand(sub, "SUBSCRIBE ps:ev:n-fndel");
        assert_non_null(ok);
        freeReplyObject(ok);
        redis_cli("SADD ps:nodes n-fndel");
        RunQueue *q = queue("fsdel", 0);
        FunctionStore *fs = cluster_function_store_new(q);
        FunctionRecord f = { .tenant = (char *) "t1", .name = (char *) "fn", .source = (char *) "def f(): pass\n" };
        int v = 0;
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_delete_version(fs, "t1", "fn", 2), -EBUSY);
        assert_int_equal(function_store_delete_version(fs, "t1", "fn", 1), 0);
        size_t len = 0;
        _cleanup_free_ char *m1 = next_message(sub, &len);
        assert_string_equal(m1, "f:t1/fn@1");
        assert_int_equal(function_store_delete(fs, "t1", "fn"), 0);
        assert_int_equal(function_store_delete(fs, "t1", "fn"), -ENOENT);
        _cleanup_free_ char *m2 = next_message(sub, &len);
        assert_string_equal(m2, "f:t1/fn@0");
        /* Nothing more: the refused and the missing deletes said nothing. */
        redis_cli("PUBLISH ps:ev:n-fndel end");
        _cleanup_free_ char *m3 = next_message(sub, &len);
        assert_string_equal(m3, "end");
        redisFree(sub);
        function_store_free(fs);
        run_queue_free(q);
}

/* Aliases in the function's hash (fn_alias.lua): the same contract as
 * SQLite's (test-store.c test_function_aliases). */
static void test_function_store_aliases(void **state) {
#define T "t"
        RunQueue *q = queue("fsalias", 0);
        FunctionStore *fs = cluster_function_store_new(q);
        FunctionRecord f = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        int v = 0;
        bool created = false;
        for (int i = 0; i < 3; i++)
                assert_int_equal(function_store_put(fs, &f, &v), 0);
        /* The version must be there, checked with the write. */
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 9, NULL, ALIAS_PUT_ANY, NULL), -ENOENT);
        assert_int_equal(function_store_alias_put(fs, "other", "a", "prod", 1, NULL, ALIAS_PUT_ANY, NULL), -ENOENT);
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 1, "blue", ALIAS_PUT_ANY, &created), 0);
        assert_true(created);
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 2, "green", ALIAS_PUT_ANY, &created), 0);
        assert_false(created);
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 1, NULL, ALIAS_PUT_CREATE, NULL), -EEXIST);
        assert_int_equal(function_store_alias_put(fs, T, "a", "beta", 1, NULL, ALIAS_PUT_UPDATE, NULL), -ESRCH);
        assert_int_equal(function_store_alias_put(fs, T, "a", "beta", 1, NULL, ALIAS_PUT_CREATE, &created), 0);
        assert_true(created);
        FunctionAlias a = {};
        assert_int_equal(function_store_alias_get(fs, T, "a", "prod", &a), 0);
        assert_string_equal(a.alias, "prod");
        assert_int_equal(a.version, 2);
        assert_string_equal(a.description, "green");
        assert_true(a.updated > 0);
        function_alias_done(&a);
        assert_int_equal(function_store_alias_get(fs, "other", "a", "prod", &a), -ENOENT);
        assert_int_equal(function_store_alias_get(fs, T, "a", "nope", &a), -ENOENT);
        FunctionAlias *list = NULL;
        size_t n = 0;
        assert_int_equal(function_store_alias_list(fs, T, "a", &list, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].alias, "beta");
        assert_int_equal(list[0].version, 1);
        assert_string_equal(list[0].description, "");
        assert_string_equal(list[1].alias, "prod");
        function_alias_list_free(list, n);
        /* A version an alias points at stays; so does the latest. */
        assert_int_equal(function_store_delete_version(fs, T, "a", 2), -EMLINK);
        assert_int_equal(function_store_delete_version(fs, T, "a", 1), -EMLINK);
        assert_int_equal(function_store_delete_version(fs, T, "a", 3), -EBUSY);
        assert_int_equal(function_store_alias_delete(fs, T, "a", "beta"), 0);
        assert_int_equal(function_store_alias_delete(fs, T, "a", "beta"), -ENOENT);
        assert_int_equal(function_store_delete_version(fs, T, "a", 1), 0);
        /* The function's delete takes its aliases: a new version 1 is not
         * what they named. */
        assert_int_equal(function_store_delete(fs, T, "a"), 0);
        assert_int_equal(function_store_alias_list(fs, T, "a", &list, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(function_store_alias_get(fs, T, "a", "prod", &a), -ENOENT);
        assert_int_equal(function_store_delete_version(fs, T, "a", 1), -EBUSY);
        assert_int_equal(function_store_delete(fs, T, "a"), 0);
        function_store_free(fs);
        run_queue_free(q);
#undef T
}

/* A function's URL lives in its hash: kept by a new version, refused for
 * a function that is not there, removed by mode 0 and by the delete. */
static void test_function_store_url(void **state) {
        RunQueue *q = queue("fsurl", 0);
        FunctionStore *fs = cluster_function_store_new(q);
        FunctionRecord f = { .tenant = (char *) "t1", .name = (char *) "fn", .source = (char *) "def f(): pass\n" };
        int v = 0, mode = -1;
        assert_int_equal(function_store_url_put(fs, "t1", "fn", 2), -ENOENT);
        assert_int_equal(function_store_url_get(fs, "t1", "fn", &mode), -ENOENT);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_url_get(fs, "t1", "fn", &mode), -ENOENT);
        assert_int_equal(function_store_url_put(fs, "t1", "fn", 2), 0);
        assert_int_equal(function_store_url_get(fs, "t1", "fn", &mode), 0);
        assert_int_equal(mode, 2);
        assert_int_equal(function_store_url_get(fs, "t2", "fn", &mode), -ENOENT);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 2);
        mode = -1;
        assert_int_equal(function_store_url_get(fs, "t1", "fn", &mode), 0);
        assert_int_equal(mode, 2);
        /* The URL field is no version. */
        int *vs = NULL;
        size_t n = 0;
        assert_int_equal(function_store_versions(fs, "t1", "fn", &vs, &n), 0);
        assert_int_equal(n, 2);
        free(vs);
        assert_int_equal(function_store_url_put(fs, "t1", "fn", 1), 0);
        assert_int_equal(function_store_url_get(fs, "t1", "fn", &mode), 0);
        assert_int_equal(mode, 1);
        assert_int_equal(function_store_url_put(fs, "t1", "fn", 0), 0);
        assert_int_equal(function_store_url_get(fs, "t1", "fn", &mode), -ENOENT);
        assert_int_equal(function_store_url_put(fs, "t1", "fn", 2), 0);
        assert_int_equal(function_store_delete(fs, "t1", "fn"), 0);
        assert_int_equal(function_store_url_get(fs, "t1", "fn", &mode), -ENOENT);
        /* Removing the URL of a function that is gone is no error. */
        assert_int_equal(function_store_url_put(fs, "t1", "fn", 0), 0);
        function_store_free(fs);
        run_queue_free(q);
}

/* The Redis DatasetStore keeps the SQLite one's contract: a hash seen
 * before is its old version again; removing the current version makes the
 * newest remaining one current; references count versions. */
static void test_dataset_store(void **state) {
        RunQueue *q = queue("ds", 0);
        DatasetStore *ds = cluster_dataset_store_new(q);
        const char *h1 = "1111111111111111111111111111111111111111111111111111111111111111";
        const char *h2 = "2222222222222222222222222222222222222222222222222222222222222222";
        int v = 0;
        bool is_new = false;
        assert_int_equal(ds->ops->add_version(ds, "t1", "d", h1, 5, 1, &v, &is_new), -ENOENT);
        DatasetRecord d = { .tenant = (char *) "t1", .name = (char *) "d", .kind = (char *) "file",
                            .source = (char *) "x.txt" };
        assert_int_equal(ds->ops->put(ds, &d), 0);
        struct {
                const char *hash;
                int version;
                bool is_new;
        } adds[] = { { h1, 1, true }, { h2, 2, true }, { h1, 1, false } };
        for (size_t i = 0; i < ELEMENTSOF(adds); i++) {
                assert_int_equal(ds->ops->add_version(ds, "t1", "d", adds[i].hash, 5 + i, 1, &v, &is_new), 0);
                assert_int_equal(v, adds[i].version);
                assert_int_equal(is_new, adds[i].is_new);
        }
        DatasetRecord *got = NULL;
        assert_int_equal(ds->ops->get(ds, "t1", "d", &got), 0);
        assert_int_equal(got->current, 1);
        assert_string_equal(got->hash, h1);
        assert_int_equal(got->n_versions, 2);
        dataset_record_free(got);
        uint64_t refs = 0, bytes = 0;
        assert_int_equal(ds->ops->hash_refs(ds, h1, &refs), 0);
        assert_int_equal(refs, 1);
        assert_int_equal(ds->ops->tenant_bytes(ds, "t1", h1, 100, &bytes), 0);
        assert_int_equal(bytes, 5 + 6); /* h1 counted once, h2 once */
        assert_int_equal(ds->ops->remove(ds, "t1", "d", 1), 0);
        DatasetVersion cur = { 0 };
        assert_int_equal(ds->ops->version_get(ds, "t1", "d", 0, &cur), 0);
        assert_int_equal(cur.version, 2);
        free(cur.hash);
        assert_int_equal(ds->ops->hash_refs(ds, h1, &refs), 0);
        assert_int_equal(refs, 0);
        assert_int_equal(ds->ops->remove(ds, "t1", "d", 1), -ENOENT);
        assert_int_equal(ds->ops->remove(ds, "t1", "d", 0), 0);
        assert_int_equal(ds->ops->get(ds, "t1", "d", &got), -ENOENT);
        /* A number names one content for good (test-store.c's
         * test_dataset_numbers_never_come_back, the same rows). */
        const char *h3 = "3333333333333333333333333333333333333333333333333333333333333333";
        DatasetRecord n = {
                .tenant = (char *) "t1", .name = (char *) "nums", .kind = (char *) "file", .source = (char *) "x.txt"
        };
        DatasetRecord other = {
                .tenant = (char *) "t2", .name = (char *) "nums", .kind = (char *) "file", .source = (char *) "x.txt"
        };
        assert_int_equal(ds->ops->put(ds, &n), 0);
        static const struct {
                int remove; /* -1: none; 0: the dataset, then put again */
                int hash;
                int version;
        } rows[] = { { -1, 1, 1 }, { -1, 2, 2 }, { 2, 3, 3 }, { -1, 2, 4 }, { 0, 1, 5 } };
        const char *hashes[] = { NULL, h1, h2, h3 };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                if (rows[i].remove >= 0)
                        assert_int_equal(ds->ops->remove(ds, "t1", "nums", rows[i].remove), 0);
                if (rows[i].remove == 0)
                        assert_int_equal(ds->ops->put(ds, &n), 0);
                assert_int_equal(ds->ops->add_version(ds, "t1", "nums", hashes[rows[i].hash], 1, 1, &v, &is_new), 0);
                assert_int_equal(v, rows[i].version);
        }
        assert_int_equal(ds->ops->put(ds, &other), 0);
        assert_int_equal(ds->ops->add_version(ds, "t2", "nums", h1, 1, 1, &v, &is_new), 0);
        assert_int_equal(v, 1);
        dataset_store_free(ds);
        run_queue_free(q);
}

/* A run's log comes back in order, NUL bytes and all, then its end. */
/* What run id's log holds now, read by a new reader (its count). */
static size_t log_read_all(RunQueue *q, const char *id, ClusterLogEntry **ret) {
        ClusterLogReader *rd = NULL;
        assert_int_equal(cluster_log_reader_new(q, id, &rd), 0);
        size_t n = 0;
        assert_int_equal(cluster_log_read(rd, 0, ret, &n), 0);
        cluster_log_reader_free(rd);
        return n;
}

static void test_log_stream(void **state) {
        RunQueue *q = queue("logs", 0);
        ClusterLogEntry a[] = {
                { .kind = CLUSTER_LOG_PHASE, .data = (char *) "run", .len = 3 },
                { .kind = CLUSTER_LOG_STDOUT, .data = (char *) "a\0b\n", .len = 4, .timestamp = 1765000000123456 },
        };
        ClusterLogEntry b[] = { { .kind = CLUSTER_LOG_STDERR, .data = (char *) "oops\n", .len = 5 } };
        assert_int_equal(cluster_log_append(q, "r1", a, ELEMENTSOF(a), false), 0);
        ClusterLogReader *rd = NULL;
        assert_int_equal(cluster_log_reader_new(q, "r1", &rd), 0);
        ClusterLogEntry *v = NULL;
        size_t n = 0;
        assert_int_equal(cluster_log_read(rd, 0, &v, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(v[0].kind, CLUSTER_LOG_PHASE);
        assert_int_equal(v[1].len, 4);
        assert_memory_equal(v[1].data, "a\0b\n", 4);
        /* When the run wrote it comes along (a replay shows its times). */
        assert_true(v[1].timestamp == 1765000000123456);
        cluster_log_entries_free(v, n);
        /* Nothing new: a short block returns empty. */
        assert_int_equal(cluster_log_read(rd, 50, &v, &n), 0);
        assert_int_equal(n, 0);
        cluster_log_entries_free(v, n);
        assert_int_equal(cluster_log_append(q, "r1", b, 1, true), 0);
        assert_int_equal(cluster_log_read(rd, 1000, &v, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(v[0].kind, CLUSTER_LOG_STDERR);
        assert_int_equal(v[1].kind, CLUSTER_LOG_END);
        cluster_log_entries_free(v, n);
        cluster_log_reader_free(rd);
        /* A flush is one stream entry (its pairs in order), not one per
         * log entry. */
        _cleanup_free_ char *len = cli_line("XLEN ps:log:r1");
        assert_string_equal(len, "2");

        /* A large batch is split in Redis and read back whole, in order. */
        size_t big = 2500;
        ClusterLogEntry *w = xcalloc(big, sizeof(ClusterLogEntry));
        for (size_t i = 0; i < big; i++) {
                w[i].kind = i % 2 ? CLUSTER_LOG_STDERR : CLUSTER_LOG_STDOUT;
                w[i].data = xasprintf("line %zu\n", i);
                w[i].len = strlen(w[i].data);
        }
        assert_int_equal(cluster_log_append(q, "r2", w, big, true), 0);
        _cleanup_free_ char *len2 = cli_line("XLEN ps:log:r2");
        assert_string_equal(len2, "3");
        n = log_read_all(q, "r2", &v);
        assert_int_equal(n, big + 1);
        for (size_t i = 0; i < big; i++) {
                assert_int_equal(v[i].kind, w[i].kind);
                assert_int_equal(v[i].len, w[i].len);
                assert_memory_equal(v[i].data, w[i].data, w[i].len);
        }
        assert_int_equal(v[big].kind, CLUSTER_LOG_END);
        cluster_log_entries_free(v, n);
        cluster_log_entries_free(w, big);

        /* An entry an older node wrote (no time) is read, its time 0. */
        _cleanup_free_ char *added = cli_line("XADD ps:log:r3 '*' k 1 d old k 2 d err");
        assert_non_null(added);
        n = log_read_all(q, "r3", &v);
        assert_int_equal(n, 2);
        assert_memory_equal(v[0].data, "old", 3);
        assert_int_equal(v[1].kind, CLUSTER_LOG_STDERR);
        assert_true(v[0].timestamp == 0 && v[1].timestamp == 0);
        cluster_log_entries_free(v, n);
        run_queue_free(q);
}

/* A run claimed, started and ended by q with outputs and lock (NULL: none)
 * at its attempt; a late finish of attempt 2 with another lock is refused
 * and keeps no text. */
static void run_with(RunQueue *q, const char *id, const char *outputs, const char *lock) {
        submit_claimed(q, id, 1);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, id, now_realtime(), &attempt), 0);
        RunRecord f;
        finish_rec(&f, id, "succeeded");
        f.outputs_json = (char *) outputs;
        f.lock_json = (char *) lock;
        assert_int_equal(run_queue_finish(q, &f, attempt), 0);
        f.lock_json = (char *) "{\"stale\":true}";
        assert_int_equal(run_queue_finish(q, &f, attempt + 1), -ESTALE);
}

/* What a worker's engine produced besides the value (the datasets it
 * wrote, the lock it ran with) is in the record any gateway reads, and
 * the one renderer of a run shows the outputs as a single node's record
 * does. Each distinct lock text is kept once, as long as its records. */
/* A run's end carries the last of its log (one script call): the log goes
 * in first, also for a stale end; the same end asked again (its answer
 * lost) does not append it twice. */
static void test_finish_with_log(void **state) {
        RunQueue *a = queue("fl-a", 5000);
        submit_claimed(a, "r-fl", 3);
        int att = 0;
        assert_int_equal(run_queue_start(a, "r-fl", now_realtime(), &att), 0);
        ClusterLogEntry out[] = { { .kind = CLUSTER_LOG_PHASE, .data = (char *) "run", .len = 3 },
                                  { .kind = CLUSTER_LOG_STDOUT, .data = (char *) "hi\n", .len = 3 } };
        RunRecord f;
        finish_rec(&f, "r-fl", "succeeded");
        assert_int_equal(cluster_finish_with_log(a, &f, att, out, 2, true), 0);
        assert_int_equal(cluster_finish_with_log(a, &f, att, out, 2, true), -ESTALE);          /* asked again */
        assert_int_equal(cluster_finish_with_log(a, &f, att + 1, out + 1, 1, false), -ESTALE); /* another attempt */
        _cleanup_free_ char *s = status_of(a, "r-fl");
        assert_string_equal(s, "succeeded");
        ClusterLogEntry *v = NULL;
        size_t n = log_read_all(a, "r-fl", &v);
        assert_int_equal(n, 4);
        assert_int_equal(v[0].kind, CLUSTER_LOG_PHASE);
        assert_int_equal(v[1].kind, CLUSTER_LOG_STDOUT);
        assert_int_equal(v[2].kind, CLUSTER_LOG_END);
        assert_int_equal(v[3].kind, CLUSTER_LOG_STDOUT); /* the stale attempt's, after */
        cluster_log_entries_free(v, n);
        _cleanup_free_ char *ttl = cli_line("TTL ps:log:r-fl");
        assert_true(strtol(ttl, NULL, 10) > 86400);
        run_queue_free(a);
}

static void test_outputs_and_lock_round_trip(void **state) {
        RunQueue *q = queue("ol1", 5000);
        const char *lock = "{\"version\":1,\"requirements\":[\"a==1\"],\"packages\":[{\"name\":\"a\"}]}";
        run_with(q, "r-ol-1", "{\"parts\":2}", lock);
        run_with(q, "r-ol-2", "{\"parts\":3}", lock);
        run_with(q, "r-ol-3", NULL, NULL);

        RunRecord *got = NULL;
        assert_int_equal(cluster_run_get(q, "t1", "r-ol-1", &got), 0);
        assert_string_equal(got->outputs_json, "{\"parts\":2}");
        json_t *j = run_record_json(got, NULL);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "outputs"), "parts")), 2);
        json_decref(j);
        run_record_free(got);
        assert_int_equal(cluster_run_get(q, "t1", "r-ol-3", &got), 0);
        assert_null(got->outputs_json);
        run_record_free(got);

        char *text = NULL;
        assert_int_equal(cluster_run_get_lock(q, "t1", "r-ol-1", &text), 0);
        assert_string_equal(text, lock);
        free(text);
        assert_int_equal(cluster_run_get_lock(q, NULL, "r-ol-2", &text), 0);
        assert_string_equal(text, lock);
        free(text);
        text = (char *) "unset";
        assert_int_equal(cluster_run_get_lock(q, "t1", "r-ol-3", &text), 0);
        assert_null(text);
        assert_int_equal(cluster_run_get_lock(q, "other-tenant", "r-ol-1", &text), -ENOENT);
        assert_int_equal(cluster_run_get_lock(q, "t1", "r-ol-none", &text), -ENOENT);

        /* One text for both records, living as long as the newest. */
        _cleanup_free_ char *h1 = hget("ps:run:r-ol-1", "lock_sha1"), *h2 = hget("ps:run:r-ol-2", "lock_sha1");
        assert_int_equal(strlen(h1), 40);
        assert_string_equal(h1, h2);
        _cleanup_free_ char *n = cli_line("EVAL \"return #redis.call('KEYS', 'ps:runlock:*')\" 0");
        assert_string_equal(n, "1");
        _cleanup_free_ char *k = xasprintf("TTL ps:runlock:%s", h1);
        _cleanup_free_ char *ttl = cli_line(k), *rttl = cli_line("TTL ps:run:r-ol-2");
        assert_true(atoll(ttl) > 0 && atoll(ttl) >= atoll(rttl));
        run_queue_free(q);
}

/* A lease refresh drops the listing indexes' expired ids from the oldest
 * and stops at the first whose record is still there: it reads a handful
 * of records a second, not the 500 oldest of every index (2.5 ms of Redis
 * a second per node with a few thousand runs kept, docs/cluster.md). An
 * expired id behind a live one waits for it; a listing skips it. */
static void test_lease_trims_indexes_from_the_oldest(void **state) {
        RunQueue *a = queue("a-trim", 5000);
        enum { N = 200 };
        usec_t t0 = now_realtime();
        for (int i = 0; i < N; i++) {
                _cleanup_free_ char *id = xasprintf("r-trim-%03d", i);
                RunRecord r = { .id = id, .tenant = (char *) "t-trim", .filename = (char *) "main.py",
                                .status = (char *) "queued", .created = t0 + (usec_t) i, .max_attempts = 1 };
                assert_int_equal(run_queue_submit(a, &r, "{\"source\":\"x\"}"), 0);
        }
        /* Expired: the 10 oldest, and one behind a live record. */
        for (int i = 0; i < 10; i++) {
                _cleanup_free_ char *c = xasprintf("DEL " "ps:run:r-trim-%03d", i);
                redis_cli(c);
        }
        redis_cli("DEL ps:run:r-trim-100");
        redis_cli("CONFIG RESETSTAT");
        assert_int_equal(cluster_lease_refresh(a, "{}", NULL, NULL, NULL), 0);
        /* idx and ridx: 11 looks each, not 200; the script's own EXISTS
         * (the streams, the drain key) besides. */
        assert_in_range(command_calls("exists"), 22, 40);
        _cleanup_free_ char *n_idx = cli_line("ZCARD ps:idx:t-trim");
        _cleanup_free_ char *n_ridx = cli_line("ZCARD ps:ridx:t-trim");
        assert_string_equal(n_idx, "190");
        assert_string_equal(n_ridx, "190");
        _cleanup_free_ char *first = cli_line("ZRANGE ps:idx:t-trim 0 0");
        assert_string_equal(first, "r-trim-010");
        /* The one behind a live record is skipped by a listing. */
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(cluster_run_list(a, "t-trim", N, &v, &n), 0);
        assert_int_equal(n, N - 11);
        for (size_t i = 0; i < n; i++)
                assert_string_not_equal(v[i]->id, "r-trim-100");
        run_record_list_free(v, n);
        run_queue_free(a);
}

static void test_record_from_netstrings(void **state) {
        static const char good[] = "2:id5:r-net6:tenant2:t16:status9:succeeded10:value_json2:427:attempt1:1"
                                   "9:exit_code1:07:unknown0:";
        RunRecord *r = cluster_record_from_netstrings(good, strlen(good));
        assert_non_null(r);
        assert_string_equal(r->id, "r-net");
        assert_string_equal(r->tenant, "t1");
        assert_string_equal(r->status, "succeeded");
        assert_string_equal(r->value_json, "42");
        assert_int_equal(r->attempt, 1);
        assert_int_equal(r->exit_code, 0);
        run_record_free(r);
        /* A value holding the separators is taken by its length. */
        static const char colons[] = "2:id5:r-net6:tenant2:t16:status6:failed13:error_message5:a:1:b";
        r = cluster_record_from_netstrings(colons, strlen(colons));
        assert_non_null(r);
        assert_string_equal(r->error_message, "a:1:b");
        run_record_free(r);
        static const char *const bad[] = {
                "2:id5:r-net6:tenant2:t16:status",          /* a name without its value */
                "2:id5:r-net6:tenant2:t16:status99:x",      /* longer than what is left */
                "2:id5:r-net6:tenant2:t16:statusx:failed",  /* not a length */
                "2:id5:r-net6:tenant2:t16:status:failed",   /* no length */
                "2:id5:r-net6:tenant2:t1",                  /* no status */
                "2id5:r-net",                               /* no colon */
                "9999999999:x",                             /* a length past any message */
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_null(cluster_record_from_netstrings(bad[i], strlen(bad[i])));
        assert_null(cluster_record_from_netstrings("", 0));
}

/* The next message on a SUBSCRIBE connection, its payload copied. */
static char *next_message(redisContext *sub, size_t *ret_len) {
        redisReply *m = NULL;
        assert_int_equal(redisGetReply(sub, (void **) &m), REDIS_OK);
        assert_int_equal(m->type, REDIS_REPLY_ARRAY);
        assert_int_equal(m->elements, 3);
        char *s = xmalloc(m->element[2]->len + 1);
        memcpy(s, m->element[2]->str, m->element[2]->len);
        s[m->element[2]->len] = 0;
        *ret_len = m->element[2]->len;
        freeReplyObject(m);
        return s;
}

/* A run's finish tells the gateway that submitted it with its ended
 * record in the message, as the record reads in Redis; a record too big
 * for the message is named only ("d:<id>"), to be read. */
static void test_finish_publishes_its_record(void **state) {
        char sock[200];
        snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
        redisContext *sub = redisConnectUnix(sock);
        assert_true(sub && !sub->err);
        redisReply *ok = redisCommand(sub, "SUBSCRIBE ps:ev:gw-pub");
        assert_non_null(ok);
        freeReplyObject(ok);

        RunQueue *gw = queue("gw-pub", 5000), *w = queue("w-pub", 5000);
        submit(gw, "r-pub-1", 1);
        submit(gw, "r-pub-2", 1);
        PendingRun *v = NULL;
        assert_int_equal(claim_until(w, 2, 2, &v), 2);
        pending_run_list_free(v, 2);
        run_to_end(w, "r-pub-1");

        size_t len = 0;
        _cleanup_free_ char *m = next_message(sub, &len);
        assert_true(startswith(m, "r:r-pub-1\n"));
        RunRecord *sent = cluster_record_from_netstrings(m + strlen("r:r-pub-1\n"), len - strlen("r:r-pub-1\n"));
        assert_non_null(sent);
        RunRecord *read = NULL;
        assert_int_equal(cluster_run_get(gw, "t1", "r-pub-1", &read), 0);
        assert_string_equal(sent->status, "succeeded");
        assert_string_equal(sent->value_json, read->value_json);
        assert_string_equal(sent->tenant, read->tenant);
        assert_int_equal(sent->attempt, read->attempt);
        assert_int_equal(sent->finished, read->finished);
        run_record_free(sent);
        run_record_free(read);

        /* 70 KB of result: named only. */
        _cleanup_free_ char *big = xmalloc(70001);
        memset(big, '7', 70000);
        big[70000] = 0;
        int attempt = 0;
        assert_int_equal(run_queue_start(w, "r-pub-2", now_realtime(), &attempt), 0);
        RunRecord f;
        finish_rec(&f, "r-pub-2", "succeeded");
        f.value_json = big;
        assert_int_equal(run_queue_finish(w, &f, attempt), 0);
        _cleanup_free_ char *m2 = next_message(sub, &len);
        assert_string_equal(m2, "d:r-pub-2");
        redisFree(sub);
        run_queue_free(gw);
        run_queue_free(w);
}

/* A claim of fresh entries reads no record: each entry carries what its
 * run starts from (one round trip fewer per run). A run cancelled after
 * its entry was delivered is refused by its start. */
static void test_claim_reads_no_record_of_a_fresh_entry(void **state) {
        RunQueue *a = queue("a-fresh", 5000);
        submit(a, "r-fresh-1", 3);
        submit(a, "r-fresh-2", 2);
        redis_cli("CONFIG RESETSTAT");
        PendingRun *v = NULL;
        assert_int_equal(claim_until(a, 2, 2, &v), 2);
        assert_int_equal(command_calls("hmget"), 0);
        assert_int_equal(command_calls("hgetall"), 0);
        assert_string_equal(v[0].id, "r-fresh-1");
        assert_string_equal(v[0].tenant, "t1");
        assert_string_equal(v[0].request_json, "{\"v\":1,\"source\":\"x\"}");
        assert_int_equal(v[0].max_attempts, 3);
        assert_int_equal(v[1].max_attempts, 2);
        assert_int_equal(v[0].attempt, 0);
        assert_true(v[0].created > 0);
        pending_run_list_free(v, 2);
        assert_int_equal(run_queue_cancel(a, "r-fresh-2", NULL), 0);
        int attempt = 0;
        assert_int_equal(run_queue_start(a, "r-fresh-2", now_realtime(), &attempt), -ESTALE);
        run_to_end(a, "r-fresh-1");
        _cleanup_free_ char *st = status_of(a, "r-fresh-1");
        assert_string_equal(st, "succeeded");
        run_queue_free(a);
}

static void test_bad_url(void **state) {
        RunQueue *q = NULL;
        _cleanup_free_ char *err = NULL;
        ClusterOptions o = { .url = "http://x", .node_id = "n" };
        assert_int_equal(cluster_queue_new(&o, &q, &err), -EINVAL);
        assert_non_null(strstr(err, "redis://"));
        /* A userinfo must hold a password, its escapes must be whole, and
         * the message never repeats the password. */
        static const char *const bad[] = { "redis://user@127.0.0.1:1", "redis://:@127.0.0.1:1",
                                           "redis://:pw%zz-hidden@127.0.0.1:1", "redis://:pw%00-hidden@127.0.0.1:1" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *e = NULL;
                o.url = bad[i];
                assert_int_equal(cluster_queue_new(&o, &q, &e), -EINVAL);
                assert_null(strstr(e, "hidden"));
        }
}

static void test_url_redacted(void **state) {
        static const struct {
                const char *url, *shown;
        } rows[] = {
                { "redis://127.0.0.1:6379", "redis://127.0.0.1:6379" },
                { "unix:/run/redis.sock", "unix:/run/redis.sock" },
                { "redis://:pw@h:1", "redis://:***@h:1" },
                { "redis://alice:pw@h:1/0", "redis://alice:***@h:1/0" },
                { "redis://:p@ss@h", "redis://:***@h" },
                { "redis://:p%40ss@h:2", "redis://:***@h:2" },
                { "redis://:p/ss@h:2/0", "redis://:***@h:2/0" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *s = cluster_url_redacted(rows[i].url);
                assert_string_equal(s, rows[i].shown);
        }
}

/* One integer answer of Redis to a command (printf-like, hiredis's). */
static long long redis_int(const char *fmt, ...) {
        redisContext *c = redisConnectUnix(url + strlen("unix:"));
        assert_true(c && !c->err);
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = redisvCommand(c, fmt, ap);
        va_end(ap);
        assert_true(r && r->type == REDIS_REPLY_INTEGER);
        long long v = r->integer;
        freeReplyObject(r);
        redisFree(c);
        return v;
}

static long long queued_of(const char *tenant) {
        return redis_int("ZCARD ps:queued:%s", tenant);
}

/* A submit of tenant's run id with the tenant's share cap (UINT_MAX: none). */
static int submit_capped(RunQueue *q, const char *tenant, const char *id, const char *idem, unsigned cap,
                         char **ret_id) {
        RunRecord r = { .id = (char *) id,
                        .tenant = (char *) tenant,
                        .filename = (char *) "main.py",
                        .status = (char *) "queued",
                        .created = now_realtime(),
                        .max_attempts = 3 };
        return cluster_submit_env(q, &r, "{\"v\":1,\"source\":\"x\"}", idem, NULL, cap, ret_id);
}

/* A tenant's share of the queue counts its queued runs whichever node
 * submitted them (ps:queued:<tenant>, submit.lua): refused past it with
 * nothing written, another tenant not; a run leaves the count at its
 * start, cancel and end while queued, comes back to it when reclaimed, and
 * a member that is no queued run is dropped by the submit that finds the
 * share full. */
static void test_tenant_queued_share_counts_across_nodes(void **state) {
        RunQueue *a = queue("qs-a", 200), *b = queue("qs-b", 200);
        assert_int_equal(submit_capped(a, "tq", "r-qs-1", NULL, 2, NULL), 0);
        assert_int_equal(submit_capped(a, "tq", "r-qs-2", NULL, 2, NULL), 0);
        assert_int_equal(queued_of("tq"), 2);
        /* Through another node: refused, nothing written. */
        assert_int_equal(submit_capped(b, "tq", "r-qs-3", NULL, 2, NULL), -EUSERS);
        assert_int_equal(submit_capped(b, "tq", "r-qs-3", "k3", 2, NULL), -EUSERS);
        RunRecord *got = NULL;
        assert_int_equal(cluster_run_get(b, NULL, "r-qs-3", &got), -ENOENT);
        assert_int_equal(redis_int("EXISTS ps:idem:tq:k3"), 0);
        assert_int_equal(redis_int("XLEN ps:runs"), 2);
        assert_int_equal(redis_int("ZCARD ps:idx:tq"), 2);
        assert_int_equal(queued_of("tq"), 2);
        /* No cap given (a caller without one) counts, never refuses. */
        assert_int_equal(submit_capped(b, "tr", "r-qs-other", NULL, UINT_MAX, NULL), 0);
        assert_int_equal(queued_of("tr"), 1);
        assert_int_equal(run_queue_cancel(b, "r-qs-other", "no"), 0);
        assert_int_equal(queued_of("tr"), 0);
        assert_int_equal(redis_int("EXISTS ps:queued:tr"), 0); /* nothing left behind */

        /* A start makes room; its key was never taken. */
        PendingRun *v = NULL;
        assert_int_equal(claim_until(b, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-qs-1");
        pending_run_list_free(v, 1);
        int att = 0;
        assert_int_equal(run_queue_start(b, "r-qs-1", now_realtime(), &att), 0);
        assert_int_equal(queued_of("tq"), 1);
        _cleanup_free_ char *id3 = NULL;
        assert_int_equal(submit_capped(b, "tq", "r-qs-3", "k3", 2, &id3), 0);
        assert_string_equal(id3, "r-qs-3");
        assert_int_equal(queued_of("tq"), 2);
        /* At the share, an idempotent resubmission is still its run. */
        _cleanup_free_ char *again = NULL;
        assert_int_equal(submit_capped(a, "tq", "r-qs-3b", "k3", 2, &again), 1);
        assert_string_equal(again, "r-qs-3");
        /* A cancel of a queued run makes room; the end of a running one
         * changes nothing (it left at its start). */
        assert_int_equal(run_queue_cancel(a, "r-qs-2", "no"), 0);
        assert_int_equal(queued_of("tq"), 1);
        RunRecord f;
        finish_rec(&f, "r-qs-1", "succeeded");
        assert_int_equal(run_queue_finish(b, &f, att), 0);
        assert_int_equal(queued_of("tq"), 1);

        /* Reclaimed from a node gone (a never refreshes a lease): queued
         * again, counted again, until the new node starts it. */
        assert_int_equal(claim_until(a, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-qs-3");
        pending_run_list_free(v, 1);
        assert_int_equal(run_queue_start(a, "r-qs-3", now_realtime(), &att), 0);
        assert_int_equal(queued_of("tq"), 0);
        RunQueue *c = queue("qs-c", 200);
        assert_int_equal(claim_until(c, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-qs-3");
        pending_run_list_free(v, 1);
        assert_int_equal(queued_of("tq"), 1);
        run_to_end(c, "r-qs-3");
        assert_int_equal(queued_of("tq"), 0);

        /* A queued run ended by a finish (a request no node can read). */
        assert_int_equal(submit_capped(a, "tq", "r-qs-4", NULL, 2, NULL), 0);
        RunRecord e = { .id = (char *) "r-qs-4",
                        .tenant = (char *) "tq",
                        .status = (char *) "error",
                        .exit_code = 7,
                        .finished = now_realtime() };
        assert_int_equal(run_queue_finish(a, &e, 0), 0);
        assert_int_equal(queued_of("tq"), 0);

        /* Left behind: no record, an ended run's, a running run's. The
         * submit that finds the share full drops them, and is accepted. */
        assert_int_equal(submit_capped(a, "tq", "r-qs-5", NULL, 2, NULL), 0);
        assert_int_equal(claim_until(b, 1, 1, &v), 1);
        assert_string_equal(v[0].id, "r-qs-5");
        pending_run_list_free(v, 1);
        assert_int_equal(run_queue_start(b, "r-qs-5", now_realtime(), &att), 0);
        assert_int_equal(redis_int("ZADD ps:queued:tq 1 r-qs-gone 2 r-qs-1 3 r-qs-5"), 3);
        assert_int_equal(submit_capped(b, "tq", "r-qs-6", NULL, 2, NULL), 0);
        assert_int_equal(queued_of("tq"), 1);
        assert_int_equal(redis_int("ZRANK ps:queued:tq r-qs-6"), 0);
        assert_int_equal(submit_capped(b, "tq", "r-qs-7", NULL, 2, NULL), 0);
        assert_int_equal(submit_capped(b, "tq", "r-qs-8", NULL, 2, NULL), -EUSERS);
        /* A share of 0 refuses every new run. */
        assert_int_equal(submit_capped(b, "tz", "r-qs-9", NULL, 0, NULL), -EUSERS);
        run_queue_free(a);
        run_queue_free(b);
        run_queue_free(c);
}

/* Each test starts from an empty Redis: a run one test leaves in a stream
 * (submitted and never claimed, or claimed by a node that never holds a
 * lease) is otherwise handed out in a later test once its node's lease
 * and the claim timeout have passed, at a moment that depends on the
 * machine's speed (the reclaim scan runs on a timer). */
static int empty_redis(void **state) {
        (void) state;
        redisContext *c = redisConnectUnix(url + strlen("unix:"));
        assert_true(c && !c->err);
        redisReply *r = redisCommand(c, "FLUSHALL");
        assert_true(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        redisFree(c);
        return 0;
}
#define TEST(f) cmocka_unit_test_setup(f, empty_redis)

int main(void) {
        if (system("command -v redis-server >/dev/null 2>&1") != 0) {
                printf("SKIP: redis-server is not installed\n");
                return 77;
        }
        /* A write to a Redis that was just killed must fail, not kill us. */
        signal(SIGPIPE, SIG_IGN);
        struct stat shm;
        if (stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) && access("/dev/shm", W_OK) == 0)
                snprintf(dir, sizeof(dir), "/dev/shm/cluster-test-XXXXXX");
        if (!mkdtemp(dir))
                return 1;
        redis_start();
        const struct CMUnitTest tests[] = {
                TEST(test_submit_start_finish_fenced),
                TEST(test_idempotency_key),
                TEST(test_tenant_queued_share_counts_across_nodes),
                cmocka_unit_test(test_reply_refused_unrun),
                TEST(test_run_find_by_prefix),
                TEST(test_claim_counts_free_slots_only),
                TEST(test_hand_back),
                TEST(test_attempt_current),
                TEST(test_reclaim_from_dead_node),
                TEST(test_live_lease_keeps_entries),
                TEST(test_dead_letter_after_max_attempts),
                TEST(test_reclaim_runs_when_due),
                TEST(test_damaged_record_is_delivered_to_be_ended),
                TEST(test_function_run_list),
                TEST(test_run_list_leaves_big_values_unread),
                TEST(test_run_ids),
                TEST(test_dead_nodes_entry_waits_the_claim_timeout),
                TEST(test_start_asked_again_gets_its_attempt),
                TEST(test_live_node_claims_again_what_it_dropped),
                TEST(test_redis_restart_keeps_queue),
                TEST(test_scripts_sent_by_sha1),
                TEST(test_placement_warm_node_then_fallback),
                TEST(test_claim_over_two_streams_keeps_to_free_slots),
                TEST(test_cancel_running_marks_it),
                TEST(test_function_store),
                TEST(test_function_store_delete_version),
                TEST(test_function_delete_tells_every_node),
                TEST(test_function_store_aliases),
                TEST(test_function_store_url),
                TEST(test_dataset_store),
                TEST(test_log_stream),
                TEST(test_outputs_and_lock_round_trip),
                TEST(test_lease_trims_indexes_from_the_oldest),
                TEST(test_record_from_netstrings),
                TEST(test_claim_reads_no_record_of_a_fresh_entry),
                TEST(test_finish_publishes_its_record),
                TEST(test_finish_with_log),
                TEST(test_ui_sessions),
                /* last: switching AOF off and on leaves it rewriting */
                TEST(test_durability_check),
                TEST(test_bad_url),
                TEST(test_url_redacted),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        if (redis_pid > 0)
                redis_kill9();
        rm_rf(dir);
        return r;
}
