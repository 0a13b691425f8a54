/* The route table: every endpoint of the API once, as {methods, path
 * pattern, handler, who may call it}. The router (daemon-http.c) reads it
 * for both decisions: an unknown path is 404, a known path with another
 * method is 405 with the Allow header built from the same rows, and the
 * matching row's handler answers. Adding an endpoint is adding a row
 * (docs/api.md lists them). */
#include <assert.h>

#include "daemon.h"
#include "daemon-ui.h"

/* A function URL takes every method Lambda's function URLs hand their
 * function, PATCH and OPTIONS (a CORS preflight) included. */
#define ROUTE_FN_METHODS (ROUTE_GET | ROUTE_POST | ROUTE_PUT | ROUTE_DELETE | ROUTE_PATCH | ROUTE_OPTIONS)

/* "*" matches one non-empty segment. Rows of one path sit together; GET
 * covers HEAD. */
static const DaemonRoute routes[] = {
        { ROUTE_GET, "/healthz", daemon_api_healthz, ROUTE_HEALTH },
        { ROUTE_GET, "/metrics", daemon_api_metrics, ROUTE_METRICS },

        { ROUTE_GET, "/v1/runs", daemon_api_runs_list, ROUTE_USER },
        { ROUTE_POST, "/v1/runs", daemon_api_runs_submit, ROUTE_USER },
        { ROUTE_GET, "/v1/runs/*", daemon_api_run_get, ROUTE_USER },
        { ROUTE_DELETE, "/v1/runs/*", daemon_api_run_cancel, ROUTE_USER },
        { ROUTE_GET, "/v1/runs/*/logs", daemon_api_run_logs, ROUTE_USER },
        { ROUTE_GET, "/v1/runs/*/lock", daemon_api_run_lock, ROUTE_USER },
        { ROUTE_POST, "/v1/validate", daemon_api_validate, ROUTE_USER },

        { ROUTE_POST, "/v1/stacks", daemon_api_stack, ROUTE_USER },
        { ROUTE_GET, "/v1/functions", daemon_api_functions_list, ROUTE_USER },
        { ROUTE_POST, "/v1/functions", daemon_api_function_deploy, ROUTE_USER },
        { ROUTE_GET, "/v1/functions/*", daemon_api_function_get, ROUTE_USER },
        { ROUTE_DELETE, "/v1/functions/*", daemon_api_function_delete, ROUTE_USER },
        { ROUTE_POST, "/v1/functions/*/invoke", daemon_api_function_invoke, ROUTE_USER },
        { ROUTE_GET, "/v1/functions/*/runs", daemon_api_function_runs, ROUTE_USER },
        { ROUTE_GET, "/v1/functions/*/aliases", daemon_api_function_aliases, ROUTE_USER },
        { ROUTE_GET | ROUTE_PUT | ROUTE_DELETE, "/v1/functions/*/aliases/*", daemon_api_function_alias, ROUTE_USER },

        /* Function URLs (docs/endpoints.md): the handler authenticates,
         * as an endpoint may be public. */
        { ROUTE_FN_METHODS, "/fn/*/*", daemon_api_endpoint, ROUTE_PUBLIC },
        { ROUTE_FN_METHODS, "/fn/*/*/**", daemon_api_endpoint, ROUTE_PUBLIC },

        { ROUTE_GET | ROUTE_POST, "/v1/schedules", daemon_api_schedules, ROUTE_USER },
        { ROUTE_GET | ROUTE_DELETE, "/v1/schedules/*", daemon_api_schedule, ROUTE_USER },
        { ROUTE_POST, "/v1/schedules/*/pause", daemon_api_schedule, ROUTE_USER },
        { ROUTE_POST, "/v1/schedules/*/resume", daemon_api_schedule, ROUTE_USER },

        { ROUTE_GET, "/v1/workers", daemon_api_workers, ROUTE_USER },
        { ROUTE_GET, "/v1/envs", daemon_api_envs, ROUTE_USER },

        /* Cluster mode (docs/cluster.md); 404 on a single node. */
        { ROUTE_GET, "/v1/cluster", daemon_api_cluster_status, ROUTE_USER },
        { ROUTE_POST, "/v1/cluster/nodes/*/drain", daemon_api_cluster_drain, ROUTE_USER },

        { ROUTE_GET | ROUTE_POST, "/v1/dags", daemon_dag_handle, ROUTE_USER },
        { ROUTE_GET | ROUTE_DELETE, "/v1/dags/*", daemon_dag_handle, ROUTE_USER },
        { ROUTE_GET, "/v1/dags/*/tasks/*/logs", daemon_dag_handle, ROUTE_USER },

        { ROUTE_GET, "/v1/data", daemon_data_handle, ROUTE_USER },
        { ROUTE_GET | ROUTE_PUT | ROUTE_DELETE, "/v1/data/*", daemon_data_handle, ROUTE_USER,
          &daemon_data_upload_sink },
        { ROUTE_GET, "/v1/data/*/content", daemon_data_handle, ROUTE_USER },
        { ROUTE_GET, "/v1/data/*/usage", daemon_data_usage, ROUTE_USER },

        { ROUTE_GET, "/v1/secrets", daemon_api_secrets_list, ROUTE_USER },
        { ROUTE_PUT | ROUTE_DELETE, "/v1/secrets/*", daemon_api_secret_put_or_delete, ROUTE_USER },

        /* Admin tokens only (the handlers check the role). */
        { ROUTE_GET, "/v1/tokens", daemon_api_tokens_list, ROUTE_USER },
        { ROUTE_POST, "/v1/tokens", daemon_api_token_create, ROUTE_USER },
        { ROUTE_DELETE, "/v1/tokens/*", daemon_api_token_revoke, ROUTE_USER },

        /* The dashboard (docs/ui.md): pages and assets carry no data; the
         * login checks a token itself; its API reads need a session. */
        { ROUTE_GET, "/ui", daemon_ui_handle, ROUTE_PUBLIC },
        { ROUTE_GET, "/ui/**", daemon_ui_handle, ROUTE_PUBLIC },
        { ROUTE_GET | ROUTE_POST, "/login", daemon_ui_handle, ROUTE_PUBLIC },
        { ROUTE_POST, "/logout", daemon_ui_handle, ROUTE_PUBLIC },
        { ROUTE_GET, "/v1/events", daemon_ui_events_handle, ROUTE_USER },
        { ROUTE_GET, "/v1/dags/*/graph", daemon_dag_graph_handle, ROUTE_USER },
        { ROUTE_GET, "/v1/dags/*/events", daemon_dag_events_handle, ROUTE_USER },

        /* Between the nodes of a cluster (docs/cluster.md "Internal routes"). */
        { ROUTE_GET, "/internal/v1/objects/*", daemon_api_cluster_object, ROUTE_CLUSTER },
        { ROUTE_GET, "/internal/v1/wheels/*", daemon_api_cluster_wheel, ROUTE_CLUSTER },

        /* The AWS Lambda API (docs/api.md "Lambda"): AWS error bodies. */
        { ROUTE_GET, "/2015-03-31/functions", daemon_api_lambda_list, ROUTE_LAMBDA },
        { ROUTE_GET, "/2015-03-31/functions/*", daemon_api_lambda_get, ROUTE_LAMBDA },
        { ROUTE_DELETE, "/2015-03-31/functions/*", daemon_api_lambda_delete, ROUTE_LAMBDA },
        { ROUTE_GET, "/2015-03-31/functions/*/configuration", daemon_api_lambda_configuration, ROUTE_LAMBDA },
        { ROUTE_GET, "/2015-03-31/functions/*/versions", daemon_api_lambda_versions, ROUTE_LAMBDA },
        { ROUTE_GET | ROUTE_POST, "/2015-03-31/functions/*/aliases", daemon_api_lambda_aliases, ROUTE_LAMBDA },
        { ROUTE_GET | ROUTE_PUT | ROUTE_DELETE, "/2015-03-31/functions/*/aliases/*", daemon_api_lambda_alias,
          ROUTE_LAMBDA },
        { ROUTE_POST, "/2015-03-31/functions/*/invocations", daemon_api_lambda_invoke, ROUTE_LAMBDA },
        { ROUTE_POST, "/2014-11-13/functions/*/invoke-async", daemon_api_lambda_invoke_async, ROUTE_LAMBDA },
};

const DaemonRoute *daemon_routes(size_t *ret_n) {
        *ret_n = ELEMENTSOF(routes);
        return routes;
}

unsigned daemon_route_method(const char *method) {
        static const struct {
                const char *name;
                unsigned bit;
        } m[] = {
                { "GET", ROUTE_GET },         { "HEAD", ROUTE_GET },      { "POST", ROUTE_POST },
                { "PUT", ROUTE_PUT },         { "DELETE", ROUTE_DELETE }, { "PATCH", ROUTE_PATCH },
                { "OPTIONS", ROUTE_OPTIONS },
        };
        for (size_t i = 0; method && i < ELEMENTSOF(m); i++)
                if (streq(method, m[i].name))
                        return m[i].bit;
        return 0;
}

char *daemon_route_allow(unsigned methods, char buf[static DAEMON_ALLOW_MAX]) {
        /* HEAD is served wherever GET is (daemon_route_method()). */
        static const char *const names[] = { "GET, HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS" };
        size_t n = 0;
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (methods & (1U << i))
                        n += (size_t) snprintf(buf + n, DAEMON_ALLOW_MAX - n, "%s%s", n ? ", " : "", names[i]);
        return buf;
}

/* Splits "/a/b/c" (percent-encoded as sent) into at most max segments,
 * each decoded; returns the count, or -1 when there are more or a segment
 * is empty, too long or holds a NUL. A trailing slash is
 * allowed (AWS SDKs list functions at "/2015-03-31/functions/"). With
 * tail, whatever follows the max-th segment (past a '/', not only a
 * trailing one) is one more segment, left empty, whatever its length,
 * depth or empty segments: a "**" row matches it. */
static int split_path(const char *url, char seg[][DAEMON_SEGMENT_MAX], int max, bool tail) {
        int n = 0;
        const char *p = url;
        if (!p || *p != '/')
                return -1;
        while (*p) {
                p++;
                if (!*p)
                        break;
                if (tail && n == max) {
                        seg[n][0] = 0;
                        return n + 1;
                }
                const char *e = strchr(p, '/');
                size_t len = e ? (size_t) (e - p) : strlen(p), out = 0;
                if (len == 0 || n >= max)
                        return -1;
                /* Decoded after the split: an encoded '/' is the
                 * segment's own byte, not a separator. */
                for (size_t i = 0; i < len; i++) {
                        char ch = p[i];
                        if (ch == '%' && i + 2 < len && hex_digit_value(p[i + 1]) >= 0 &&
                            hex_digit_value(p[i + 2]) >= 0) {
                                ch = (char) (hex_digit_value(p[i + 1]) * 16 + hex_digit_value(p[i + 2]));
                                i += 2;
                        }
                        if (ch == 0 || out + 1 >= DAEMON_SEGMENT_MAX)
                                return -1;
                        seg[n][out++] = ch;
                }
                seg[n][out] = 0;
                n++;
                p += len;
        }
        return n;
}

/* Whether the pattern matches the request's segments: "*" matches any one
 * segment; a last "**" (the dashboard's asset tree) matches one or more.
 * The pattern is walked in place, not split into copies: every request
 * tried the table's rows in order, and splitting each row's pattern cost
 * ~50k instructions per request for a row near the end (the Lambda
 * route's; docs/internals/performance-log.md "Invoke path: round 7"). */
static bool pattern_matches(const char *pattern, char seg[][DAEMON_SEGMENT_MAX], int n) {
        const char *p = pattern;
        int i = 0;
        while (*p == '/' && p[1]) {
                p++;
                if (p[0] == '*' && p[1] == '*' && !p[2])
                        return n > i;
                if (i >= n)
                        return false;
                if (p[0] == '*' && (p[1] == '/' || !p[1])) {
                        p++;
                        i++;
                        continue;
                }
                /* The segment, compared in place up to the next '/'. */
                const char *s = seg[i];
                while (*p && *p != '/' && *p == *s)
                        p++, s++;
                if ((*p && *p != '/') || *s)
                        return false;
                i++;
        }
        return i == n;
}

int daemon_route_find(const char *method, const char *path, char seg[][DAEMON_SEGMENT_MAX], int *ret_n_seg,
                      const DaemonRoute **ret, unsigned *ret_allow) {
        assert(path);
        assert(ret);
        unsigned want = daemon_route_method(method), allow = 0;
        /* A function URL's path below /fn/TENANT/NAME is the function's
         * own (its event's rawPath, from the raw target): any depth or
         * length, "//" too, as a Lambda function URL passes it on. The
         * router's limits held it to 3 segments of 255 bytes, none empty. */
        bool fn = startswith(path, "/fn/");
        int n = split_path(path, seg, fn ? 3 : DAEMON_MAX_SEGMENTS, fn);
        if (n < 0)
                return -ENOENT;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!pattern_matches(routes[i].pattern, seg, n))
                        continue;
                if (routes[i].methods & want) {
                        *ret = &routes[i];
                        *ret_n_seg = n;
                        return 0;
                }
                allow |= routes[i].methods;
        }
        if (!allow)
                return -ENOENT;
        if (ret_allow)
                *ret_allow = allow;
        return -EOPNOTSUPP;
}
