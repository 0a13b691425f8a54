/* pysprinterd: the shared runner over HTTP (DESIGN §7). main() parses the
 * command line, loads the config, runs again what a previous instance
 * accepted and did not finish (docs/api.md "Delivery"), serves, and handles
 * SIGHUP (reload) and SIGTERM (drain). */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "cluster.h"
#include "config.h"
#include "daemon.h"
#include "data.h"
#include "sandbox.h"

/* The text as it prints: */
/* clang-format off */
static void usage(FILE *f) {
        fprintf(f,
                "Usage: pysprinterd [OPTIONS]\n"
                "       pysprinterd gc [--dry-run] [--json] [--config FILE] [--data-dir DIR]\n"
                "       pysprinterd backup FILE [--config FILE] [--data-dir DIR]\n"
                "       pysprinterd restore FILE [--config FILE] [--data-dir DIR]\n"
                "       pysprinterd token create --tenant NAME [--role user|readonly|admin] [--expires 30d]\n"
                "                         [--redis URL]\n"
                "       pysprinterd token ls | token revoke ID [--redis URL]\n"
                "       pysprinterd secret rotate-key [--redis URL] [--config FILE] [--data-dir DIR]\n"
                "       pysprinterd --check-config FILE\n"
                "\n"
                "Serves the pysprinter API (docs/api.md) and the AWS Lambda Invoke API.\n"
                "gc, backup, restore and --check-config: docs/operations.md; secret rotate-key:\n"
                "docs/secrets.md.\n"
                "\n"
                "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080)\n"
                "  --config FILE          YAML configuration (default $PYSPRINTER_DAEMON_CONFIG)\n"
                "  --data-dir DIR         data directory (default $PYSPRINTER_HOME or ~/.local/share/pysprinter)\n"
                "  --no-auth              single local user, no tokens; loopback addresses only\n"
                "  --sandbox=full|none    isolation of runs (default full; none is for trusted code)\n"
                "  --drain-timeout SEC    on SIGTERM, wait this long for runs to finish (default 60)\n"
                "  --redis URL            cluster mode: share runs through Redis (docs/cluster.md)\n"
                "  --role ROLE            gateway, worker or all (default all; with --redis)\n"
                "  --node-id ID           this node's name in the cluster (default HOSTNAME-PID)\n"
                "  --claim-timeout TIME   reclaim a dead node's runs after this (default 5s)\n"
                "  --record-ttl TIME      cluster: an ended run's record expires after this (default 7d)\n"
                "  --redis-volatile       accept a Redis without AOF or with eviction (may lose runs)\n"
                "  --advertise URL        where the other nodes reach this one (default http://LISTEN)\n"
                "  --verbose              log every request\n"
                "  --version, --help\n");
}
/* clang-format on */

/* A reload's value of a setting bound at start: warned about when the file
 * changed it, and the value in use carried into the new config, so that
 * what the daemon reports (/v1/envs, the next reload's "still") is what
 * it runs with (docs/api.md "Signals"). */
#define KEEP_STARTED(n, old, field, name)                                                         \
        do {                                                                                      \
                if ((n)->field != (old)->field) {                                                 \
                        log_warn("reload: '%s' changes need a restart (still %" PRIu64 ")", name, \
                                 (uint64_t) (old)->field);                                        \
                        (n)->field = (old)->field;                                                \
                }                                                                                 \
        } while (0)

static bool strv_equal(char *const *a, char *const *b) {
        size_t n = strv_length(a);
        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return true;
}

static void keep_started_strv(char ***n, char ***old, const char *name) {
        if (!strv_equal(*n, *old))
                log_warn("reload: '%s' changes need a restart", name);
        strv_free(*n);
        *n = *old;
        *old = NULL;
}

/* The settings a start took from its command line, where the file's
 * value is not in use: a reload that changes the file's says nothing. */
typedef struct FromCmdline {
        bool listen, data_dir, sandbox;
} FromCmdline;

/* What the HTTP server, the engine (the index, the package rules, the
 * pool, the sandbox mode) and the data catalog were started with, and
 * the data directory the daemon owns. */
static void keep_started(DaemonConfig *n, DaemonConfig *old, const FromCmdline *cmdline) {
        KEEP_STARTED(n, old, max_connections, "server.max_connections");
        KEEP_STARTED(n, old, max_connections_per_ip, "server.max_connections_per_ip");
        KEEP_STARTED(n, old, http_threads, "server.http_threads");
        KEEP_STARTED(n, old, read_timeout_s, "server.read_timeout_s");
        KEEP_STARTED(n, old, request_deadline_s, "server.request_deadline_s");
        KEEP_STARTED(n, old, data_max_bytes, "data.max_bytes");
        KEEP_STARTED(n, old, max_out_bytes, "data.max_output_bytes");
        KEEP_STARTED(n, old, max_out_files, "data.max_output_files");
        KEEP_STARTED(n, old, pool_spares, "pool.spares");
        KEEP_STARTED(n, old, pool_memory_budget, "pool.memory_budget_mb");
        KEEP_STARTED(n, old, pool_worker_idle_s, "pool.worker_idle_s");
        KEEP_STARTED(n, old, pool_instance_ttl_s, "pool.instance_ttl_s");
        KEEP_STARTED(n, old, pool_env_idle_s, "pool.env_idle_s");
        KEEP_STARTED(n, old, pool_validation_cache_bytes, "pool.validation_cache_mb");
        if (!(n->index_url && old->index_url ? streq(n->index_url, old->index_url) : n->index_url == old->index_url))
                log_warn("reload: 'index.url' changes need a restart");
        free(n->index_url);
        n->index_url = TAKE_PTR(old->index_url);
        keep_started_strv(&n->extra_index_urls, &old->extra_index_urls, "index.extra_urls");
        keep_started_strv(&n->find_links, &old->find_links, "index.find_links");
        keep_started_strv(&n->allow_packages, &old->allow_packages, "packages.allow");
        keep_started_strv(&n->deny_packages, &old->deny_packages, "packages.deny");
        /* --listen overrides the file's: the file's value is not in use. */
        if (!cmdline->listen && !streq(old->listen, n->listen))
                log_warn("reload: 'listen' changes need a restart");
        free(n->listen);
        n->listen = TAKE_PTR(old->listen);
        /* The engine, the store and the pid file's lock are the started
         * directory's; without a word, an operator who moved it believed
         * the daemon had. */
        if (!cmdline->data_dir && !streq(old->data_dir ?: "", n->data_dir ?: ""))
                log_warn("reload: 'data_dir' changes need a restart (still %s)", old->data_dir ?: "the default");
        free(n->data_dir);
        n->data_dir = TAKE_PTR(old->data_dir);
        /* The engine's workers were started in that mode: an operator who
         * hardened none to full and reloaded must hear that runs are still
         * not isolated. */
        if (!cmdline->sandbox && n->sandbox != old->sandbox)
                log_warn("reload: 'server.sandbox' changes need a restart (still %s)",
                         old->sandbox == SANDBOX_MODE_NONE ? "none" : "full");
        n->sandbox = old->sandbox;
        /* The key the secrets are opened with was read at start. */
        if (!streq(old->secrets_key_file ?: "", n->secrets_key_file ?: ""))
                log_warn("reload: 'secrets.key_file' changes need a restart");
        free(n->secrets_key_file);
        n->secrets_key_file = TAKE_PTR(old->secrets_key_file);
}

/* SIGHUP: the tokens, limits, server caps and data.url_allow take effect
 * for new requests; what was bound at start (keep_started) needs a
 * restart. */
static void reload(Daemon *d, const char *path, const FromCmdline *cmdline) {
        DaemonConfig n;
        _cleanup_free_ char *err = NULL;

        daemon_config_init(&n);
        if (daemon_config_check(&n, path, &err) < 0) {
                log_error("reload failed, keeping the old configuration: %s", err);
                daemon_config_done(&n);
                return;
        }
        /* A file being rewritten in place (truncated, then written) is
         * empty for a moment: taken, it dropped every token of the config
         * and locked all tenants out. All defaults is written '{}'. */
        if (n.empty_file) {
                log_error("reload failed, keeping the old configuration: %s: the file is empty (still being "
                          "written?); write '{}' for a configuration of defaults only",
                          path);
                daemon_config_done(&n);
                return;
        }
        for (char **w = n.warnings; w && *w; w++)
                log_warn("%s", *w);
        pthread_rwlock_wrlock(&d->cfg_lock);
        /* Swap everything but what is bound at start. */
        keep_started(&n, &d->cfg, cmdline);
        if (d->engine)
                engine_set_maxima(d->engine, &n.maxima);
        pthread_mutex_lock(&d->lock);
        DaemonConfig old = d->cfg;
        d->cfg = n;
        pthread_cond_broadcast(&d->sched_cond); /* limits may have grown */
        daemon_runs_kick(d);
        pthread_mutex_unlock(&d->lock);
        if (d->catalog)
                data_catalog_set_url_allow(d->catalog, d->cfg.data_url_allow);
        pthread_rwlock_unlock(&d->cfg_lock);
        daemon_config_done(&old);
        daemon_gc_wake(d);
        log_info("configuration reloaded from %s (%zu tokens)", path, d->cfg.n_tokens);
}

/* ---- one daemon per data directory ---------------------------------------- */

/* The kernel releases a killed daemon's lock only once its exit is done:
 * tens of ms for a process with many threads and children (measured 37 ms
 * here), and a supervisor may start the next one at once after a kill -9.
 * So a lock held is looked at again for a while before it means that
 * another daemon serves the directory. */
#define OWNER_LOCK_WAIT_USEC (5 * USEC_PER_SEC)

static int take_owner_lock(int fd) {
        usec_t deadline = now_monotonic() + OWNER_LOCK_WAIT_USEC;
        for (;;) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0)
                        return 0;
                int r = -errno;
                if (r != -EWOULDBLOCK || now_monotonic() >= deadline)
                        return r;
                (void) usleep(10 * 1000);
        }
}

/* Takes $DATA/pysprinterd.pid exclusively for the daemon's life and writes
 * our pid in it. A daemon owns its directory's run queue: at its start it
 * runs again every run left `running` (docs/api.md "Delivery"), so a second
 * daemon on the same directory would run again, or end `lost`, the runs
 * the first one is running. The flock is the truth (the kernel drops it
 * when the holder dies, kill -9 included); the pid is only for the message.
 * Returns the fd to keep open, or an exit code (negated) after logging. */
static int own_data_dir(const char *data_dir, const char *config) {
        _cleanup_free_ char *path = path_join(data_dir, STORE_HOME_PID_FILE);
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
                log_error("cannot open %s: %s", path, strerror(errno));
                return -EXIT_INTERNAL;
        }
        int r = take_owner_lock(fd);
        if (r < 0) {
                if (r != -EWOULDBLOCK) {
                        log_error("cannot lock %s: %s", path, strerror(-r));
                        return -EXIT_INTERNAL;
                }
                char buf[32] = "";
                ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
                long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
                _cleanup_free_ char *who = pid > 0 ? xasprintf("another pysprinterd (pid %ld)", pid)
                                                   : xstrdup("another pysprinterd");
                log_error("%s serves %s: two daemons on one data directory would each run again what the other "
                          "is running; stop it first, or give this one its own --data-dir",
                          who, data_dir);
                return -EXIT_USAGE;
        }
        /* A daemon of a release before this lock takes none: one that
         * still serves the directory (an upgrade that started us beside
         * it) holds its database open. Looked at for as long as our own
         * lock is: a killed one closes its files some ms late. */
        usec_t deadline = now_monotonic() + OWNER_LOCK_WAIT_USEC;
        pid_t older;
        while ((older = store_home_older_daemon(data_dir)) > 0 && now_monotonic() < deadline)
                (void) usleep(50 * 1000);
        if (older > 0) {
                log_error("pysprinterd (pid %d) serves %s, a daemon of an older release (it keeps no %s): two daemons "
                          "on one data directory would each run again what the other is running; stop it first, or "
                          "give this one its own --data-dir",
                          (int) older, data_dir, STORE_HOME_PID_FILE);
                return -EXIT_USAGE;
        }
        /* The config's absolute path too: `pysprinterd gc` beside us
         * collects with the retention we collect with (ops_gc()). */
        _cleanup_free_ char *abs = config && *config ? realpath(config, NULL) : NULL;
        _cleanup_free_ char *text = abs ? xasprintf("%d\nconfig=%s\n", (int) getpid(), abs)
                                        : xasprintf("%d\n", (int) getpid());
        ssize_t len = (ssize_t) strlen(text);
        if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t) len, 0) != len)
                log_warn("cannot write our pid to %s: %s", path, strerror(errno));
        return TAKE_FD(fd);
}

/* ---- operations subcommands (docs/operations.md) ------------------------- */

/* The config (when given) and the data directory an operations subcommand
 * works on: --data-dir, else the config's data_dir, else the default. */
static int ops_setup(const char *config, const char *data_dir, DaemonConfig *cfg, char **ret_data_dir) {
        _cleanup_free_ char *err = NULL;
        daemon_config_init(cfg);
        if (config && *config && daemon_config_check(cfg, config, &err) < 0) {
                log_error("%s", err);
                return EXIT_USAGE;
        }
        *ret_data_dir = data_dir ? xstrdup(data_dir) : cfg->data_dir ? xstrdup(cfg->data_dir) : data_dir_default();
        return 0;
}

static int ops_gc(const DaemonConfig *cfg, const char *data_dir, bool dry_run, bool json) {
        _cleanup_free_ char *db = path_join(data_dir, "pysprinter.db"), *err = NULL;
        if (access(db, F_OK) < 0) {
                log_error("%s: no database here (is --data-dir right?)", db);
                return EXIT_USAGE;
        }
        /* Held shared until exit, as engines do (store_home_lock). */
        _cleanup_close_ int lock = store_home_lock(data_dir, false);
        if (lock < 0) {
                _cleanup_free_ char *why = store_home_lock_message(data_dir, lock);
                log_error("%s", why);
                return lock == -EWOULDBLOCK ? EXIT_USAGE : EXIT_INTERNAL;
        }
        Store *s = NULL;
        int r = store_open(db, &s);
        if (r < 0) {
                _cleanup_free_ char *why = store_open_message(db, r);
                log_error("%s", why);
                return EXIT_INTERNAL;
        }
        if (!dry_run && store_read_only(s)) {
                log_error("%s is on a read-only file system: nothing can be collected there (--dry-run still counts)",
                          data_dir);
                store_close(s);
                return EXIT_INTERNAL;
        }
        GcStats st = {};
        RetentionConfig rc = cfg->retention;
        rc.batch_pause_usec = 0; /* on demand: no requests of ours to make room for */
        r = engine_gc(s, data_dir, &rc, dry_run, NULL, &st, &err);
        store_close(s);
        if (r < 0) {
                log_error("%s", err);
                return EXIT_INTERNAL;
        }
        _cleanup_free_ char *summary = gc_stats_summary(&st, dry_run, json);
        fputs(summary, stdout);
        return 0;
}

static int ops_backup(const DaemonConfig *cfg, const char *data_dir, const char *file) {
        _cleanup_free_ char *db = path_join(data_dir, "pysprinter.db"), *err = NULL;
        size_t replayed = 0;
        int r = store_backup(db, file, &replayed, &err);
        if (r < 0) {
                log_error("backup failed: %s", err);
                return r == -EEXIST || r == -ENOENT ? EXIT_USAGE : EXIT_INTERNAL;
        }
        struct stat st;
        printf("backed up %s to %s (%" PRIu64 " bytes)\n", db, file, stat(file, &st) == 0 ? (uint64_t) st.st_size : 0);
        /* The runs answered moments ago whose ends were still only in the
         * journal (docs/operations.md "Backup"): in the copy all the same. */
        if (replayed > 0)
                printf("%zu ended run(s) replayed from the ended-runs journal into the backup\n", replayed);
        printf("also copy %s/data/objects (datasets) and, when it exists, the secrets key; see docs/operations.md\n",
               data_dir);
        /* A rotation killed before its rename: the secrets in the copy
         * may be sealed with the next key, which the key file alone does
         * not hold (docs/secrets.md "Rotating the key"). */
        _cleanup_free_ char *named = cfg->secrets_key_file ? xstrdup(cfg->secrets_key_file)
                                                           : path_join(data_dir, "secrets.key");
        _cleanup_free_ char *key = seal_key_path(named);
        _cleanup_free_ char *next = store_secrets_rotation_unfinished(key);
        if (next)
                log_warn("%s exists: a key rotation did not finish, and the secrets in this backup may be sealed "
                         "with it: keep it with %s beside the backup, or finish the rotation (pysprinterd secret "
                         "rotate-key) and back up again",
                         next, key);
        return 0;
}

/* After a restore: the secrets in the database that the data directory's
 * key does not open (a database restored without its key, or onto a
 * machine with another), said now rather than by the runs that name them
 * after the next start, which makes a new key when there is none. */
static void restore_check_key(const DaemonConfig *cfg, const char *data_dir, const char *db) {
        _cleanup_free_ char *named = cfg->secrets_key_file ? xstrdup(cfg->secrets_key_file)
                                                           : path_join(data_dir, "secrets.key");
        _cleanup_free_ char *key_path = seal_key_path(named), *err = NULL;
        uint8_t key[SEAL_KEY_SIZE] = {};
        int k = seal_key_read(key_path, key, &err);
        if (k < 0 && k != -ENOENT) {
                log_warn("%s", err);
                return;
        }
        Store *s = NULL;
        if (store_open(db, &s) < 0)
                return;
        size_t bad = 0, n = 0;
        /* store_secrets_key_file(): a next key an unfinished rotation left. */
        if (k >= 0)
                store_secrets_key_file(s, key_path);
        int r = store_secret_count_unopenable(s, key, &bad, &n);
        store_close(s);
        explicit_bzero(key, sizeof key);
        if (r < 0 || n == 0)
                return;
        if (k == -ENOENT)
                log_warn("the restored database holds %zu secret(s) and there is no key at %s: copy the key backed "
                         "up with this database there before the next start (a start makes a new key, which opens "
                         "none of them)",
                         n, key_path);
        else if (bad > 0)
                log_warn("%zu of the %zu secrets in the restored database do not open with %s: copy the key backed up "
                         "with this database there (runs that name them fail until then; docs/operations.md "
                         "\"Backup and restore\")",
                         bad, n, key_path);
}

static int ops_restore(const DaemonConfig *cfg, const char *data_dir, const char *file) {
        int r = mkdir_p(data_dir, 0750);
        if (r < 0) {
                log_error("cannot create %s: %s", data_dir, strerror(-r));
                return EXIT_INTERNAL;
        }
        _cleanup_close_ int lock = store_home_lock(data_dir, true);
        if (lock < 0) {
                log_error(lock == -EWOULDBLOCK ? "%s is in use (a pysprinterd, or a pysprinter run embedded): stop it "
                                                 "before restoring"
                                               : "cannot lock %s: %s",
                          data_dir, strerror(-lock));
                return EXIT_USAGE;
        }
        _cleanup_free_ char *db = path_join(data_dir, "pysprinter.db"), *err = NULL;
        r = store_restore(file, db, &err);
        if (r < 0) {
                log_error("restore failed: %s", err);
                return r == -EPROTONOSUPPORT || r == -EBADMSG || r == -ENOENT ? EXIT_USAGE : EXIT_INTERNAL;
        }
        printf("restored %s from %s; the next start upgrades its schema when it is older\n", db, file);
        restore_check_key(cfg, data_dir, db);
        return 0;
}

/* pysprinterd secret rotate-key: re-seals the data directory's secrets
 * with a new key (docs/secrets.md "Rotating the key"), while a daemon
 * serves it or not: the daemon falls back to the key files as they are
 * (store_secrets_key_file()). */
static int ops_rotate_key(const DaemonConfig *cfg, const char *data_dir, const char *redis) {
        _cleanup_free_ char *db = path_join(data_dir, "pysprinter.db"), *err = NULL;
        _cleanup_free_ char *named = cfg->secrets_key_file ? xstrdup(cfg->secrets_key_file)
                                                           : path_join(data_dir, "secrets.key");
        /* The file a link names is the one rotated (its directory must
         * take the next key beside it); the link stays. */
        _cleanup_free_ char *key = seal_key_path(named);
        /* A cluster's secrets are its Redis's, reached as the nodes reach
         * it (as `pysprinterd token --redis`); this machine's database is
         * only the Store they are read through. */
        if (!redis && access(db, F_OK) < 0) {
                log_error("%s: no database here (is --data-dir right?)", db);
                return EXIT_USAGE;
        }
        RunQueue *q = NULL;
        if (redis) {
                ClusterOptions co = {
                        .url = redis,
                        .password = cfg->cluster_redis_password,
                        .node_id = "pysprinterd-secret",
                        .client = true,
                };
                int k = cluster_queue_new(&co, &q, &err);
                if (k < 0) {
                        log_error("%s", err);
                        return EXIT_INTERNAL;
                }
        }
        int r = mkdir_p(data_dir, 0750);
        _cleanup_close_ int lock = r < 0 ? r : store_home_lock(data_dir, false);
        if (lock < 0) {
                _cleanup_free_ char *why = store_home_lock_message(data_dir, lock);
                log_error("%s", why);
                run_queue_free(q);
                return lock == -EWOULDBLOCK ? EXIT_USAGE : EXIT_INTERNAL;
        }
        Store *s = NULL;
        r = store_open(db, &s);
        if (r < 0) {
                _cleanup_free_ char *why = store_open_message(db, r);
                log_error("%s", why);
                run_queue_free(q);
                return EXIT_INTERNAL;
        }
        if (q) {
                uint8_t k[SEAL_KEY_SIZE] = {};
                (void) seal_key_read(key, k, &err);
                free(err);
                err = NULL;
                store_secrets_key_file(s, key);
                (void) store_secrets_use(s, cluster_secret_store_new(q), k);
                explicit_bzero(k, sizeof k);
        }
        size_t n = 0;
        r = store_secrets_rotate_key(s, key, &n, &err);
        store_close(s);
        run_queue_free(q);
        if (r == -EAGAIN) {
                /* The cluster's first step: the next key made here. */
                printf("%s\n", err);
                return 0;
        }
        if (r < 0) {
                log_error("secret rotate-key: %s", err);
                return r == -ENOENT || r == -EKEYREJECTED || r == -EROFS ? EXIT_USAGE : EXIT_INTERNAL;
        }
        printf("rotated the secrets key %s: %zu secret(s) sealed with the new key\n", key, n);
        if (redis)
                printf("now on every other node: mv KEYFILE.next KEYFILE (its secrets key file; until then it opens "
                       "and seals with either)\n");
        printf("back the new key up now; a database backup made before this opens only with the old key\n");
        return 0;
}

/* pysprinterd gc|backup|restore|secret ... */
static int ops_main(int argc, char **argv) {
        enum {
                ARG_CONFIG = 0x100,
                ARG_DATA_DIR,
                ARG_DRY_RUN,
                ARG_JSON,
                ARG_REDIS
        };
        static const struct option options[] = {
                { "config", required_argument, NULL, ARG_CONFIG },
                { "redis", required_argument, NULL, ARG_REDIS },
                { "data-dir", required_argument, NULL, ARG_DATA_DIR },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "json", no_argument, NULL, ARG_JSON },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *verb = argv[0], *config = getenv("PYSPRINTER_DAEMON_CONFIG"), *data_dir = NULL, *redis = NULL;
        bool dry_run = false, json = false;
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_CONFIG:
                        config = optarg;
                        break;
                case ARG_DATA_DIR:
                        data_dir = optarg;
                        break;
                case ARG_DRY_RUN:
                        dry_run = true;
                        break;
                case ARG_JSON:
                        json = true;
                        break;
                case ARG_REDIS:
                        redis = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        bool takes_file = !streq(verb, "gc");
        if ((streq(verb, "secret") && (argc - optind != 1 || !streq(argv[optind], "rotate-key") || dry_run || json)) ||
            (redis && !streq(verb, "secret"))) {
                log_error(
                        streq(verb, "secret")
                                ? "usage: pysprinterd secret rotate-key [--redis URL] [--config FILE] [--data-dir DIR]"
                                : "usage: pysprinterd %s: unknown option --redis",
                        verb);
                return EXIT_USAGE;
        }
        if (argc - optind != (takes_file ? 1 : 0) || (dry_run && takes_file)) {
                log_error(takes_file ? "usage: pysprinterd %s FILE [--config FILE] [--data-dir DIR]"
                                     : "usage: pysprinterd %s [--dry-run] [--json] [--config FILE] [--data-dir DIR]",
                          verb);
                return EXIT_USAGE;
        }
        DaemonConfig cfg;
        _cleanup_free_ char *dir = NULL;
        int code = ops_setup(config, data_dir, &cfg, &dir);
        /* A gc given no config, of a directory a daemon serves: that
         * daemon's config, whose retention its own collector applies (a
         * tenant kept longer, or for ever). The defaults removed what it
         * keeps. */
        pid_t pid = 0;
        _cleanup_free_ char *served_config = NULL;
        if (code == 0 && streq(verb, "gc") && !(config && *config) && store_home_daemon(dir, &pid, &served_config) &&
            served_config) {
                fprintf(stderr, "pysprinterd gc: %s is served by pysprinterd (pid %d): collecting with its config %s\n",
                        dir, (int) pid, served_config);
                daemon_config_done(&cfg);
                _cleanup_free_ char *dir_again = NULL;
                code = ops_setup(served_config, dir, &cfg, &dir_again);
        }
        if (code == 0) {
                if (streq(verb, "gc"))
                        code = ops_gc(&cfg, dir, dry_run, json);
                else if (streq(verb, "backup"))
                        code = ops_backup(&cfg, dir, argv[optind]);
                else if (streq(verb, "secret"))
                        code = ops_rotate_key(&cfg, dir, redis);
                else
                        code = ops_restore(&cfg, dir, argv[optind]);
        }
        daemon_config_done(&cfg);
        return code;
}

static int check_config(const char *path) {
        DaemonConfig cfg;
        _cleanup_free_ char *err = NULL;
        daemon_config_init(&cfg);
        int r = daemon_config_check(&cfg, path, &err);
        if (r >= 0)
                r = daemon_config_check_key(&cfg, path, &err);
        for (char **w = cfg.warnings; w && *w; w++)
                log_warn("%s", *w);
        daemon_config_done(&cfg);
        if (r < 0) {
                fprintf(stderr, "%s\n", err);
                return EXIT_USAGE;
        }
        printf("%s: ok\n", path);
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_LISTEN = 0x100, ARG_CONFIG, ARG_DATA_DIR, ARG_NO_AUTH, ARG_SANDBOX, ARG_DRAIN, ARG_VERSION, ARG_VERBOSE,
               ARG_CHECK_CONFIG, ARG_REDIS, ARG_ROLE, ARG_NODE_ID, ARG_CLAIM_TIMEOUT, ARG_REDIS_VOLATILE,
               ARG_RECORD_TTL, ARG_ADVERTISE };
        static const struct option options[] = {
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "data-dir", required_argument, NULL, ARG_DATA_DIR },
                { "no-auth", no_argument, NULL, ARG_NO_AUTH },
                { "sandbox", required_argument, NULL, ARG_SANDBOX },
                { "drain-timeout", required_argument, NULL, ARG_DRAIN },
                { "verbose", no_argument, NULL, ARG_VERBOSE },
                { "check-config", required_argument, NULL, ARG_CHECK_CONFIG },
                { "redis", required_argument, NULL, ARG_REDIS },
                { "role", required_argument, NULL, ARG_ROLE },
                { "node-id", required_argument, NULL, ARG_NODE_ID },
                { "claim-timeout", required_argument, NULL, ARG_CLAIM_TIMEOUT },
                { "record-ttl", required_argument, NULL, ARG_RECORD_TTL },
                { "redis-volatile", no_argument, NULL, ARG_REDIS_VOLATILE },
                { "advertise", required_argument, NULL, ARG_ADVERTISE },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        static Daemon daemon;
        Daemon *d = &daemon;
        const char *listen = NULL, *config = getenv("PYSPRINTER_DAEMON_CONFIG"), *data_dir = NULL, *sandbox = NULL;
        unsigned long drain = 60;
        DaemonClusterOptions cluster = { .role = CLUSTER_ROLE_ALL };
        bool role_given = false;
        _cleanup_free_ char *err = NULL;
        void *mhd = NULL;
        int c, r;

        tz_local_pin();
        log_set_prefix("pysprinterd");
        if (argc > 1 &&
            (streq(argv[1], "gc") || streq(argv[1], "backup") || streq(argv[1], "restore") || streq(argv[1], "secret")))
                return ops_main(argc - 1, argv + 1);
        if (argc > 1 && streq(argv[1], "token"))
                return daemon_token_main(argc - 1, argv + 1);
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_LISTEN:
                        listen = optarg;
                        break;
                case ARG_CONFIG:
                        config = optarg;
                        break;
                case ARG_DATA_DIR:
                        data_dir = optarg;
                        break;
                case ARG_NO_AUTH:
                        d->no_auth = true;
                        break;
                case ARG_SANDBOX:
                        if (!streq(optarg, "full") && !streq(optarg, "none")) {
                                log_error("--sandbox must be full or none");
                                return EXIT_USAGE;
                        }
                        sandbox = optarg;
                        break;
                case ARG_DRAIN: {
                        char *end;
                        drain = strtoul(optarg, &end, 10);
                        if (*end || drain > 86400) {
                                log_error("--drain-timeout takes seconds (0..86400)");
                                return EXIT_USAGE;
                        }
                        break;
                }
                case ARG_VERBOSE:
                        log_set_level(LOG_DEBUG);
                        break;
                case ARG_REDIS:
                        cluster.url = optarg;
                        break;
                case ARG_ROLE:
                        if (daemon_cluster_role_from_string(optarg, &cluster.role) < 0) {
                                log_error("--role must be gateway, worker or all");
                                return EXIT_USAGE;
                        }
                        role_given = true;
                        break;
                case ARG_NODE_ID:
                        if (!*optarg || strlen(optarg) > 64 || strpbrk(optarg, " :/")) {
                                log_error("--node-id takes a name of 1..64 characters without spaces, ':' or '/'");
                                return EXIT_USAGE;
                        }
                        cluster.node_id = optarg;
                        break;
                case ARG_CLAIM_TIMEOUT: {
                        uint64_t ms;
                        if (parse_duration_ms(optarg, false, &ms) < 0 || ms > 3600 * 1000) {
                                log_error("--claim-timeout takes a duration (e.g. 5s or 1500ms)");
                                return EXIT_USAGE;
                        }
                        cluster.claim_timeout_ms = (unsigned) ms;
                        break;
                }
                case ARG_RECORD_TTL: {
                        uint64_t ms;
                        if (parse_duration_ms(optarg, false, &ms) < 0 || ms < 1000 || ms > 365ull * 86400 * 1000) {
                                log_error("--record-ttl takes a duration of 1s..365d (e.g. 7d or 10s)");
                                return EXIT_USAGE;
                        }
                        cluster.record_ttl_s = (unsigned) (ms / 1000);
                        break;
                }
                case ARG_REDIS_VOLATILE:
                        cluster.volatile_ok = true;
                        break;
                case ARG_ADVERTISE:
                        if (!startswith(optarg, "http://") && !startswith(optarg, "https://")) {
                                log_error("--advertise takes the URL other nodes reach this one at (http://HOST:PORT)");
                                return EXIT_USAGE;
                        }
                        cluster.advertise = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        return check_config(optarg);
                case ARG_VERSION:
                        printf("pysprinterd %s\n", PYSPRINTER_VERSION);
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                log_error("unexpected argument '%s'", argv[optind]);
                return EXIT_USAGE;
        }
        if (!cluster.url && (role_given || cluster.node_id || cluster.volatile_ok || cluster.claim_timeout_ms ||
                                 cluster.record_ttl_s || cluster.advertise)) {
                log_error("--role, --node-id, --claim-timeout, --record-ttl, --advertise and --redis-volatile need --redis URL");
                return EXIT_USAGE;
        }

        daemon_config_init(&d->cfg);
        if (config && *config && daemon_config_check(&d->cfg, config, &err) < 0) {
                log_error("%s", err);
                return EXIT_USAGE;
        }
        for (char **w = d->cfg.warnings; w && *w; w++)
                log_warn("%s", *w);
        if (listen) {
                free(d->cfg.listen);
                d->cfg.listen = xstrdup(listen);
        }
        if (data_dir) {
                free(d->cfg.data_dir);
                d->cfg.data_dir = xstrdup(data_dir);
        }
        if (sandbox)
                d->cfg.sandbox = streq(sandbox, "none") ? SANDBOX_MODE_NONE : SANDBOX_MODE_FULL;
        if (d->cfg.sandbox == SANDBOX_MODE_NONE)
                log_warn("--sandbox=none: runs are NOT isolated from this host; use only for trusted code");
        else {
                /* Said now, once, rather than by every run ("the worker
                 * did not start"): the sandbox's first step takes root
                 * (docs/operations.md "Running under systemd"). A kernel
                 * that lacks a feature is each run's to say (it names
                 * the feature). */
                r = sandbox_check_privileges(&err);
                if (r < 0) {
                        log_error("the full sandbox cannot be made by this process (uid %u): %s; it needs root "
                                  "(CAP_SYS_ADMIN over the host's namespaces: the sandbox maps each worker to an "
                                  "unprivileged uid of its own), so every run would fail; start pysprinterd as "
                                  "root (the shipped systemd unit does), or with --sandbox=none for trusted code "
                                  "only (docs/operations.md \"Running under systemd\")",
                                  (unsigned) geteuid(), err);
                        return EXIT_USAGE;
                }
        }
        if (!d->no_auth && d->cfg.n_tokens == 0)
                log_warn("no tokens configured and --no-auth not given: every API request will be refused (401)");
        if (d->no_auth && d->cfg.n_tokens > 0)
                log_warn("--no-auth: the configured tokens are ignored");

        d->data_dir = d->cfg.data_dir ? xstrdup(d->cfg.data_dir) : data_dir_default();
        r = mkdir_p(d->data_dir, 0750);
        if (r < 0) {
                log_error("cannot create %s: %s", d->data_dir, strerror(-r));
                return EXIT_INTERNAL;
        }
        /* Before anything reads the directory's runs (the journal's
         * replay, the recovery below): one daemon per data directory. */
        _cleanup_close_ int owner = own_data_dir(d->data_dir, config);
        if (owner < 0)
                return -owner;
        /* The secrets' key (docs/secrets.md): created, 0600, at first start
         * in the data directory; secrets.key_file names one that must be
         * there (the cluster's, copied to every node: made here, it would
         * be this node's only). */
        _cleanup_free_ char *named = d->cfg.secrets_key_file ? xstrdup(d->cfg.secrets_key_file)
                                                             : path_join(d->data_dir, "secrets.key");
        d->secret_key_path = seal_key_path(named);
        const char *key_path = d->secret_key_path;
        if (d->cfg.secrets_key_file && access(key_path, F_OK) < 0) {
                log_error("secrets.key_file %s: %s (it is never created: copy the key every node uses there, "
                          "docs/cluster.md \"Secrets\")",
                          key_path, strerror(errno));
                return EXIT_USAGE;
        }
        r = seal_key_load(key_path, d->secret_key, &err);
        if (r < 0) {
                log_error("%s", err);
                return EXIT_INTERNAL;
        }

        /* Connections, waiting requests, runs' pipes and the cgroup files
         * kept open (a quarter of the limit) all take fds: systemd starts
         * a service at soft 1024. Nothing here calls select(); a run's
         * own limit is set in its sandbox (1024, sandbox-rlimit.c). */
        long nofile = fd_limit_raise(DAEMON_NOFILE_CAP);
        if (nofile < 0)
                log_warn("cannot read or raise RLIMIT_NOFILE: %s", strerror((int) -nofile));

        /* Signals go to the main thread's sigwait(); block them before any
         * thread exists so every thread inherits the mask. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        EngineConfig ec = {
                .data_dir = d->data_dir,
                .defaults = d->cfg.defaults,
                .maxima = d->cfg.maxima,
                .index_url = d->cfg.index_url,
                .extra_index_urls = d->cfg.extra_index_urls,
                .find_links = d->cfg.find_links,
                .allow_packages = d->cfg.allow_packages,
                .deny_packages = d->cfg.deny_packages,
                .spares = d->cfg.pool_spares,
                .no_spares = d->cfg.pool_spares == 0, /* `pool: spares: 0`: every run forks */
                .validator_apart = true,
                .prewarm = true,
                .prewarm_mode = d->cfg.sandbox,
                .pool_memory_budget = d->cfg.pool_memory_budget,
                .worker_idle_timeout_ms = d->cfg.pool_worker_idle_s * 1000,
                .instance_ttl_ms = d->cfg.pool_instance_ttl_s * 1000,
                .env_idle_timeout_ms = d->cfg.pool_env_idle_s * 1000,
                .validation_cache_bytes = d->cfg.pool_validation_cache_bytes,
                .max_out_bytes = d->cfg.max_out_bytes,
                .max_out_files = d->cfg.max_out_files,
        };
        /* The engine holds the home's lock shared for the daemon's life
         * (store_home_lock): no restore under it, no start during one. */
        r = engine_new(&ec, &d->engine, &err);
        if (r < 0) {
                log_error("cannot start the engine: %s", err ? err : strerror(-r));
                return r == -EWOULDBLOCK ? EXIT_USAGE : EXIT_INTERNAL;
        }
        d->store = engine_store(d->engine);
        /* The key is kept in memory; a rotation (pysprinterd secret
         * rotate-key) meanwhile is followed through the files. */
        store_secrets_key_file(d->store, d->secret_key_path);
        /* Tests only: a long linger keeps a synchronous invoke's deferred
         * submit uncommitted while it runs (docs/api.md "Delivery"). */
        const char *linger = getenv("PYSPRINTER_TEST_STORE_LINGER_MS");
        if (linger)
                store_writer_set_linger(d->store, (usec_t) strtoull(linger, NULL, 10) * USEC_PER_MSEC);
        /* Tests only: the journal's batches held back, so that answered
         * runs' ends stay in the journal only (docs/operations.md "Backup"). */
        const char *jlinger = getenv("PYSPRINTER_TEST_JOURNAL_LINGER_MS");
        if (jlinger)
                store_journal_set_linger(d->store, (usec_t) strtoull(jlinger, NULL, 10) * USEC_PER_MSEC);
        /* Benchmarks only: the batch's size (bench/bench_journal_batch.py). */
        const char *jmax = getenv("PYSPRINTER_TEST_JOURNAL_MAX_RECORDS");
        if (jmax)
                store_journal_set_max_records(d->store, (unsigned) strtoul(jmax, NULL, 10));
        d->queue = run_queue_sqlite_new(d->store);
        /* Only this daemon writes its SQLite functions: their versions are kept
         * in memory (daemon-fncache.c). A cluster replaces the store. */
        d->functions = function_cache_new(function_store_sqlite_new(d->store));
        if (cluster.url) {
                char host[64] = "node";
                (void) gethostname(host, sizeof(host) - 1);
                _cleanup_free_ char *node = cluster.node_id ? NULL : xasprintf("%s-%d", host, (int) getpid());
                if (node)
                        cluster.node_id = node;
                free(err);
                err = NULL;
                cluster.hooks = (struct DaemonClusterHooks){
                        .adopt = daemon_run_adopt,
                        .ended_elsewhere = daemon_run_remote_ended,
                        .cancel_here = daemon_run_cancel_id,
                        .resync = daemon_runs_remote_resync,
                        .run_unref = drun_unref,
                        .lease_tick = daemon_dags_cluster_tick,
                        .secrets_changed = daemon_secrets_retire,
                        .function_deleted = daemon_function_retire,
                };
                r = daemon_cluster_start(d, &cluster, &err);
                if (r < 0) {
                        log_error("cluster: %s", err ? err : strerror(-r));
                        engine_free(d->engine);
                        return r == -EPERM || r == -EINVAL ? EXIT_USAGE : EXIT_SERVER;
                }
        }

        /* A database restored without its key, or a cluster node given
         * another key than the others': said now, not by each run that
         * names a secret (docs/secrets.md). */
        size_t unopenable = 0, n_secrets = 0;
        if (store_secret_count_unopenable(d->store, d->secret_key, &unopenable, &n_secrets) >= 0 && unopenable)
                log_warn("%zu of the %zu secrets in %s were sealed with another key than %s: runs that name them "
                         "fail (\"cannot be opened\"); %s",
                         unopenable, n_secrets, d->cluster ? "the cluster's Redis" : "the database", key_path,
                         d->cluster ? "give this node the other nodes' key (docs/cluster.md \"Secrets\")"
                                    : "restore the key backed up with this database, or set each again (pysprinter "
                                      "secret set NAME)");
        /* A rotation killed before its rename: the secrets open, but a
         * backup of the key file alone would not open them. */
        _cleanup_free_ char *next_key = store_secrets_rotation_unfinished(key_path);
        if (next_key)
                log_warn("%s exists: a key rotation did not finish; the secrets open meanwhile and a set is sealed "
                         "with it: run `pysprinterd secret rotate-key` again to finish it (until then, back up %s "
                         "with %s)",
                         next_key, next_key, key_path);

        pthread_rwlock_init(&d->cfg_lock, NULL);
        daemon_runs_init(d);
        r = daemon_dags_init(d, &err);
        if (r < 0) {
                log_error("cannot open the data catalog: %s", err ? err : strerror(-r));
                engine_free(d->engine);
                return EXIT_INTERNAL;
        }
        /* What the previous daemon accepted and did not finish runs now
         * (docs/api.md "Delivery"), before any new request is heard. */
        r = daemon_runs_recover(d);
        if (r < 0) {
                log_error("cannot read the run queue: %s", strerror(-r));
                engine_free(d->engine);
                return EXIT_INTERNAL;
        }
        r = daemon_dags_resume(d);
        if (r < 0) {
                log_error("cannot list DAG runs: %s", strerror(-r));
                engine_free(d->engine);
                return EXIT_INTERNAL;
        }

        daemon_env_noted_load(d);
        r = daemon_schedules_start(d);
        if (r < 0)
                log_warn("cannot start the scheduler: %s", strerror(-r));
        r = daemon_gc_start(d);
        if (r < 0)
                log_warn("cannot start the collector: %s (pysprinterd gc still works)", strerror(-r));

        free(err);
        err = NULL;
        /* Heard once the validating worker is ready, or 2 s (a hook of
         * round 9's cold env work: engine_prewarm_wait()). */
        (void) engine_prewarm_wait(d->engine, 2 * USEC_PER_SEC);
        r = daemon_http_start(d, d->cfg.listen, &mhd, &err);
        if (r < 0) {
                log_error("%s", err);
                engine_free(d->engine);
                return r == -EINVAL || r == -EPERM ? EXIT_USAGE : EXIT_SERVER;
        }

        const FromCmdline from_cmdline = { .listen = listen, .data_dir = data_dir, .sandbox = sandbox };
        for (;;) {
                int sig;
                if (sigwait(&set, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        if (config && *config)
                                reload(d, config, &from_cmdline);
                        else
                                log_info("SIGHUP: no --config file to reload");
                        continue;
                }
                break;
        }

        log_info("shutting down: no new runs; waiting up to %lus for %u run(s)", drain, d->threads);
        /* The listener stays open through the drain: a new run is answered
         * 503 with Retry-After (and /healthz 503 "draining"), which a load
         * balancer reads as "send it elsewhere" — a closed listener would
         * reset connections already in its backlog (docs/api.md "Drain"). */
        /* No fire during the drain: it would be refused (503) and its fire
         * time lost; a fire time that passes while stopped is caught up at
         * the next start (docs/schedules.md). */
        daemon_schedules_stop(d);
        pthread_mutex_lock(&d->lock);
        d->draining = true;
        pthread_mutex_unlock(&d->lock);
        daemon_runs_drain(d, (usec_t) drain * USEC_PER_SEC);

        /* What is still running after the grace period is cancelled, so its
         * record ends as cancelled rather than lost; what never started
         * stays queued for the next start. In a cluster a run claimed
         * from Redis is stopped with no end written instead: another node
         * takes it over once this node's lease expired (reclaim.lua) and
         * runs it again, as after this node's crash — before, a worker's
         * restart ended each run it held `cancelled`, for good. */
        pthread_mutex_lock(&d->lock);
        d->leave_queued = true;
        char **ids = NULL;
        for (DRun *x = d->runs; x; x = x->next)
                if (x->status == RUN_RUNNING) {
                        if (x->claimed && d->cluster && !x->cancel_requested) {
                                x->handed_back = true;
                                log_info("run %s: still running past the drain; handed back to the cluster (another "
                                         "node runs it again)",
                                         x->id);
                        } else
                                x->cancel_requested = true;
                        ids = strv_append(ids, x->id);
                }
        pthread_cond_broadcast(&d->sched_cond);
        daemon_runs_kick(d); /* the runs not started leave the pool, queued */
        pthread_mutex_unlock(&d->lock);
        for (char **i = ids; i && *i; i++)
                (void) engine_cancel(d->engine, *i);
        strv_free(ids);
        daemon_runs_drain(d, 10 * USEC_PER_SEC);

        /* DAG runs still going stay recorded as running: the next start
         * resumes them. Their threads use the engine, so it is not freed. */
        daemon_gc_stop(d);
        unsigned dags_left = daemon_dags_drain(d, (usec_t) drain * USEC_PER_SEC);
        daemon_http_stop(mhd);
        if (dags_left > 0) {
                log_info("stopped; %u DAG run(s) resume at the next start", dags_left);
                /* The store is not closed on this path: commit what its
                 * writer holds (runs' starts) first. */
                (void) store_flush(d->store);
                _exit(0);
        }
        engine_free(d->engine);
        strv_free(d->env_noted);
        for (size_t i = 0; i < ELEMENTSOF(d->env_note_recent); i++)
                free(d->env_note_recent[i]);
        log_info("stopped");
        return 0;
}
