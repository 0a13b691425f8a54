/* pysprinterd: the shared runner over HTTP (DESIGN §7). main() parses the
 * command line, loads the config, runs again what a previous instance
 * accepted and did not finish (docs/api.md "Delivery"), serves, and handles
 * SIGHUP (reload) and SIGTERM (drain). */
#include <getopt.h>
#include <signal.h>

#include "config.h"
#include "daemon.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: pysprinterd [OPTIONS]\n"
                "\n"
                "Serves the pysprinter API (docs/api.md) and the AWS Lambda Invoke API.\n"
                "\n"
                "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080)\n"
                "  --config FILE          YAML configuration (default $PYSPRINTER_DAEMON_CONFIG)\n"
                "  --data-dir DIR         data directory (default $PYSPRINTER_HOME or ~/.local/share/pysprinter)\n"
                "  --no-auth              single local user, no tokens; loopback addresses only\n"
                "  --sandbox=full|none    isolation of runs (default full; none is for trusted code)\n"
                "  --drain-timeout SEC    on SIGTERM, wait this long for runs to finish (default 60)\n"
                "  --verbose              log every request\n"
                "  --version, --help\n");
}

/* SIGHUP: the tokens, limits and server caps take effect for new requests;
 * listen address and data directory need a restart. */
static void reload(Daemon *d, const char *path) {
        DaemonConfig n;
        _cleanup_free_ char *err = NULL;

        daemon_config_init(&n);
        if (daemon_config_load(&n, path, &err) < 0) {
                log_error("reload failed, keeping the old configuration: %s", err);
                daemon_config_done(&n);
                return;
        }
        pthread_rwlock_wrlock(&d->cfg_lock);
        if (!streq(n.listen, d->cfg.listen))
                log_warn("reload: 'listen' changes need a restart");
        /* Swap everything but what is bound at start. */
        free(n.listen);
        n.listen = d->cfg.listen;
        d->cfg.listen = NULL;
        free(n.data_dir);
        n.data_dir = d->cfg.data_dir;
        d->cfg.data_dir = NULL;
        n.sandbox = d->cfg.sandbox;
        pthread_mutex_lock(&d->lock);
        DaemonConfig old = d->cfg;
        d->cfg = n;
        pthread_cond_broadcast(&d->sched_cond); /* limits may have grown */
        pthread_mutex_unlock(&d->lock);
        pthread_rwlock_unlock(&d->cfg_lock);
        daemon_config_done(&old);
        log_info("configuration reloaded from %s (%zu tokens)", path, d->cfg.n_tokens);
}

int main(int argc, char **argv) {
        enum { ARG_LISTEN = 0x100, ARG_CONFIG, ARG_DATA_DIR, ARG_NO_AUTH, ARG_SANDBOX, ARG_DRAIN, ARG_VERSION, ARG_VERBOSE };
        static const struct option options[] = {
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "data-dir", required_argument, NULL, ARG_DATA_DIR },
                { "no-auth", no_argument, NULL, ARG_NO_AUTH },
                { "sandbox", required_argument, NULL, ARG_SANDBOX },
                { "drain-timeout", required_argument, NULL, ARG_DRAIN },
                { "verbose", no_argument, NULL, ARG_VERBOSE },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        static Daemon daemon;
        Daemon *d = &daemon;
        const char *listen = NULL, *config = getenv("PYSPRINTER_DAEMON_CONFIG"), *data_dir = NULL, *sandbox = NULL;
        unsigned long drain = 60;
        _cleanup_free_ char *err = NULL;
        void *mhd = NULL;
        int c, r;

        log_set_prefix("pysprinterd");
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

        daemon_config_init(&d->cfg);
        if (config && *config && daemon_config_load(&d->cfg, config, &err) < 0) {
                log_error("%s", err);
                return EXIT_USAGE;
        }
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
                .prewarm = true,
                .prewarm_mode = d->cfg.sandbox,
                .pool_memory_budget = d->cfg.pool_memory_budget,
                .worker_idle_timeout_ms = d->cfg.pool_worker_idle_s * 1000,
                .instance_ttl_ms = d->cfg.pool_instance_ttl_s * 1000,
        };
        r = engine_new(&ec, &d->engine, &err);
        if (r < 0) {
                log_error("cannot start the engine: %s", err ? err : strerror(-r));
                return EXIT_INTERNAL;
        }
        d->store = engine_store(d->engine);
        d->queue = run_queue_sqlite_new(d->store);

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

        free(err);
        err = NULL;
        r = daemon_http_start(d, d->cfg.listen, &mhd, &err);
        if (r < 0) {
                log_error("%s", err);
                engine_free(d->engine);
                return r == -EINVAL || r == -EPERM ? EXIT_USAGE : EXIT_SERVER;
        }

        for (;;) {
                int sig;
                if (sigwait(&set, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        if (config && *config)
                                reload(d, config);
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
        pthread_mutex_lock(&d->lock);
        d->draining = true;
        pthread_mutex_unlock(&d->lock);
        daemon_runs_drain(d, (usec_t) drain * USEC_PER_SEC);

        /* What is still running after the grace period is cancelled, so its
         * record ends as cancelled rather than lost; what never started
         * stays queued for the next start. */
        pthread_mutex_lock(&d->lock);
        d->leave_queued = true;
        char **ids = NULL;
        for (DRun *x = d->runs; x; x = x->next)
                if (x->status == RUN_RUNNING) {
                        x->cancel_requested = true;
                        ids = strv_append(ids, x->id);
                }
        pthread_cond_broadcast(&d->sched_cond);
        pthread_mutex_unlock(&d->lock);
        for (char **i = ids; i && *i; i++)
                (void) engine_cancel(d->engine, *i);
        strv_free(ids);
        daemon_runs_drain(d, 10 * USEC_PER_SEC);

        /* DAG runs still going stay recorded as running: the next start
         * resumes them. Their threads use the engine, so it is not freed. */
        unsigned dags_left = daemon_dags_drain(d, (usec_t) drain * USEC_PER_SEC);
        daemon_http_stop(mhd);
        if (dags_left > 0) {
                log_info("stopped; %u DAG run(s) resume at the next start", dags_left);
                _exit(0);
        }
        engine_free(d->engine);
        log_info("stopped");
        return 0;
}
