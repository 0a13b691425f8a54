/* daemon-dag-view: what the dashboard's DAG page reads besides the DAG
 * object (docs/ui.md): the graph of a DAG run's tasks and a stream of its
 * task states. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <string.h>

#include "dag.h"
#include "daemon.h"

/* ---- GET /v1/dags/{id}/events ----------------------------------------------------
 *
 * A DAG run's page follows its task states here instead of polling: the
 * DAG object (as GET /v1/dags/{id}) when the stream opens and whenever it
 * changes, then "end" once the DAG run has ended. Between checks the
 * connection is suspended (daemon-wait.c) until any change is kicked — a
 * task's run, the DAG driver (daemon-dag.c dag_changed); every run's output
 * kicks too, so a check is at most every DAG_STREAM_MIN_GAP, and at least
 * every second. No MHD thread is held meanwhile. */

#define DAG_STREAM_MIN_GAP (100 * USEC_PER_MSEC)

typedef struct DagStream {
        Daemon *d;
        DaemonWaiter w;         /* parked between checks (daemon-wait.c) */
        struct MHD_Connection *conn;
        char *tenant;
        char *id;
        bool show_paths;        /* the caller is an admin */
        char *last;             /* the DAG object as last sent */
        SseOut out;
        usec_t last_check, last_write; /* monotonic */
        DaemonCred cred;               /* what opened the stream: its end ends the stream */
        bool ended;
} DagStream;

static void dag_stream_free(void *cls) {
        DagStream *s = cls;
        daemon_waiter_done(&s->w);
        free(s->tenant);
        free(s->id);
        free(s->last);
        buf_free(&s->out.buf);
        free(s);
}

/* Appends a "dag" event when the DAG object differs from the last one sent,
 * and "end" once the DAG run is over (or gone). */
static void dag_stream_check(DagStream *s) {
        json_t *j = NULL;
        int r = daemon_dag_json(s->d, s->tenant, s->id, &j);
        s->last_check = now_monotonic();
        if (r < 0) {
                daemon_sse_event(&s->out.buf, "end", "{}");
                s->ended = true;
                return;
        }
        const char *status = json_string_value(json_object_get(j, "status"));
        bool over = !status || dag_status_ended(status);
        char *text = daemon_json_text(j, s->show_paths);
        json_decref(j);
        if (!text)
                return;
        if (!s->last || !streq(s->last, text)) {
                free(s->last);
                s->last = xstrdup(text);
                daemon_sse_event(&s->out.buf, "dag", text);
        }
        free(text);
        if (over) {
                daemon_sse_event(&s->out.buf, "end", "{}");
                s->ended = true;
        }
}

static ssize_t dag_stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        DagStream *s = cls;

        while (daemon_sse_drained(&s->out)) {
                if (s->ended)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                ssize_t woken = daemon_sse_woken(&s->w, s->conn, buf, max);
                if (woken)
                        return woken;
                if (daemon_sse_cred_revoked(s->d, &s->cred, s->tenant, &s->out.buf)) {
                        s->ended = true;
                        continue;
                }
                uint64_t gen = daemon_wait_arm(); /* before looking: no lost change */
                usec_t now = now_monotonic();
                if (s->last && now - s->last_check < DAG_STREAM_MIN_GAP) {
                        /* Checked a moment ago: the store is read at most
                         * every DAG_STREAM_MIN_GAP, however busy the runs. */
                        if (daemon_wait_park(&s->w, s->conn, NULL, gen, s->last_check + DAG_STREAM_MIN_GAP))
                                return 0;
                        continue;
                }
                dag_stream_check(s);
                /* Nothing new: any change (a task's run, the DAG driver:
                 * daemon-dag.c dag_changed) wakes it, a second at most. */
                if (!daemon_sse_ready(&s->out, &s->last_write, now, 15 * USEC_PER_SEC) &&
                    daemon_wait_park(&s->w, s->conn, NULL, gen, now + USEC_PER_SEC))
                        return 0; /* suspended; MHD calls again once resumed */
        }
        return daemon_sse_take(&s->out, buf, max);
}

struct MHD_Response *daemon_dag_events_handle(const DaemonCall *call, unsigned *ret_status) {
        assert(call && call->tenant && ret_status);
        json_t *j = NULL;
        /* Unknown (or another tenant's) DAG run: a plain 404, not a stream. */
        int r = daemon_dag_json(call->d, call->tenant, call->seg[2], &j);
        if (r < 0)
                return daemon_call_errno(call, r, "DAG run", ret_status);
        DagStream *s = xcalloc(1, sizeof(DagStream));
        daemon_waiter_init(&s->w);
        s->conn = call->conn;
        s->d = call->d;
        s->tenant = xstrdup(call->tenant);
        s->show_paths = daemon_call_shows_paths(call);
        s->cred = call->cred;
        /* The full id: the client may have given a prefix. */
        s->id = xstrdup(json_string_value(json_object_get(j, "id")) ?: call->seg[2]);
        json_decref(j);
        s->last_write = now_monotonic();
        buf_init(&s->out.buf, 64U << 20);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, dag_stream_read, s,
                                                                      dag_stream_free);
        if (!resp) {
                dag_stream_free(s);
                return NULL;
        }
        *ret_status = 200;
        return daemon_sse_response(resp);
}

/* ---- GET /v1/dags/{id}/graph ------------------------------------------------------ */

struct MHD_Response *daemon_dag_graph_handle(const DaemonCall *call, unsigned *ret_status) {
        assert(call && call->tenant && ret_status);
        DagRunRecord *rec = NULL;
        int r = daemon_dag_get(call->d, call->tenant, call->seg[2], &rec);
        if (r == -ENOENT)
                return daemon_error_response(404, "not_found", ret_status, "DAG run not found");
        if (r < 0)
                return daemon_error_response(r == -EEXIST ? 400 : 500, "bad_request", ret_status, "DAG run: %s",
                                             strerror(-r));
        Dag *g = NULL;
        _cleanup_free_ char *err = NULL;
        r = daemon_dag_parse_recorded(call->d, rec, &g, &err);
        dag_run_record_free(rec);
        if (r < 0 && !err)
                return daemon_call_errno(call, r, "DAG run", ret_status);
        if (r < 0)
                return daemon_error_response(409, "conflict", ret_status, "the pipeline does not parse any more: %s",
                                             err ? err : strerror(-r));
        json_t *tasks = json_array();
        for (size_t i = 0; i < dag_n_tasks(g); i++) {
                DagTaskInfo info;
                dag_task_info(g, i, &info);
                json_t *deps = json_array();
                for (size_t k = 0; k < info.n_deps; k++) {
                        DagTaskInfo dep;
                        dag_task_info(g, info.deps[k], &dep);
                        json_array_append_new(deps, json_string(dep.name));
                }
                json_array_append_new(tasks, json_pack("{s:s, s:s?, s:i, s:o}", "name", info.name, "file", info.file,
                                                       "depth", info.depth, "deps", deps));
        }
        dag_free(g);
        return daemon_json_response(200, json_pack("{s:o}", "tasks", tasks), ret_status);
}
