/* `pysprinter cluster status|drain NODE` (docs/cluster.md): a cluster is
 * pysprinterd nodes sharing Redis, so this verb always talks to a server
 * (GET /v1/cluster, POST /v1/cluster/nodes/NODE/drain). */
#include "cli-backend.h"

static const char cluster_help[] =
        "Usage: pysprinter cluster status [--json]\n"
        "       pysprinter cluster drain NODE\n"
        "\n"
        "status: the nodes (role, lease age, slots busy/free), the runs pending on\n"
        "nodes, queued, dead-lettered, and late results dropped as stale.\n"
        "drain: NODE claims no more runs and finishes the ones it has (admin token).\n"
        "Needs --server (or PYSPRINTER_SERVER): a pysprinterd started with --redis.\n";

static void print_status(json_t *s) {
        printf("%-20s %-8s %-6s %10s %6s %6s\n", "NODE", "ROLE", "ALIVE", "LEASE AGE", "BUSY", "FREE");
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(s, "nodes"), i, n) {
                json_t *age = json_object_get(n, "lease_age_ms");
                char agebuf[32] = "-";
                if (json_is_integer(age))
                        snprintf(agebuf, sizeof(agebuf), "%lldms", (long long) json_integer_value(age));
                printf("%-20s %-8s %-6s %10s %6lld %6lld%s\n", json_string_value(json_object_get(n, "id")) ?: "?",
                       json_string_value(json_object_get(n, "role")) ?: "?",
                       json_is_true(json_object_get(n, "alive")) ? "yes" : "no", agebuf,
                       (long long) json_integer_value(json_object_get(n, "busy")),
                       (long long) json_integer_value(json_object_get(n, "free")),
                       json_is_true(json_object_get(n, "draining")) ? "  draining" : "");
        }
        printf("\n%lld pending on nodes, %lld queued, %lld dead letters, %lld stale results dropped\n",
               (long long) json_integer_value(json_object_get(s, "pending")),
               (long long) json_integer_value(json_object_get(s, "queued")),
               (long long) json_integer_value(json_object_get(s, "dead_letters")),
               (long long) json_integer_value(json_object_get(s, "stale_results")));
}

int verb_cluster(int argc, char **argv) {
        if (argc == 0 || streq(argv[0], "-h") || streq(argv[0], "--help")) {
                fputs(cluster_help, argc == 0 ? stderr : stdout);
                return argc == 0 ? EXIT_USAGE : 0;
        }
        bool status = streq(argv[0], "status"), drain = streq(argv[0], "drain");
        if ((!status && !drain) || (status && argc != 1) || (drain && argc != 2)) {
                cli_error("cluster: expected 'status' or 'drain NODE'\n%s", cluster_help);
                return EXIT_USAGE;
        }
        /* `cluster drain "$NODE"` with an unset variable: no node has no
         * name (it was "no such endpoint: /v1/cluster/nodes//drain"). */
        if (drain && !*argv[1]) {
                cli_error("cluster drain needs a NODE id (see `pysprinter cluster status`)");
                return EXIT_USAGE;
        }
        Backend *b = NULL;
        int code = backend_open_listing(false, &b); /* embedded: no engine to say it needs a server */
        if (code)
                return code;
        if (!b->remote) {
                backend_free(b);
                cli_error("cluster needs a server (--server URL or PYSPRINTER_SERVER): a cluster is pysprinterd "
                          "nodes started with --redis");
                return EXIT_USAGE;
        }
        json_t *ans = NULL;
        _cleanup_free_ char *err = NULL, *node = drain ? http_escape(argv[1]) : NULL,
                            *path = drain ? xasprintf("/v1/cluster/nodes/%s/drain", node) : xstrdup("/v1/cluster");
        int r = http_json(&b->http, drain ? "POST" : "GET", path, NULL, &ans, &err);
        if (r < 0) {
                cli_error("%s", err ? err : strerror(-r));
                code = cli_exit_code(r);
        } else if (cli_globals.json)
                render_json(ans);
        else if (drain)
                printf("node %s drains: it claims no more runs and finishes the ones it has\n", argv[1]);
        else
                print_status(ans);
        json_decref(ans);
        backend_free(b);
        return code;
}
