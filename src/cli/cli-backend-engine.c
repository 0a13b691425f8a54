/* The embedded backend: runs in this process's engine, records in
 * $PYSPRINTER_HOME. It answers with the API's objects (docs/api.md) so the
 * verbs and the renderer cannot tell it from a daemon. */
#include <signal.h>

#include "cli-backend.h"
#include "data.h"
#include "store.h"

/* Index settings: the flags, else the environment (the package manager
 * reads PYSPRINTER_INDEX_URL and pip's variables), else the config file. */
static void index_from_config(const RunArgs *a, char **ret_index, char ***ret_extra, char ***ret_links) {
        *ret_index = NULL;
        *ret_extra = *ret_links = NULL;
        if ((!a || !a->index_url) && !getenv("PYSPRINTER_INDEX_URL") && !getenv("PIP_INDEX_URL"))
                *ret_index = cli_config_value("index_url");
        if (!getenv("PIP_EXTRA_INDEX_URL")) {
                _cleanup_free_ char *v = cli_config_value("extra_index_url");
                if (v && *v)
                        *ret_extra = strv_append(NULL, v);
        }
        if ((!a || !a->find_links) && !getenv("PIP_FIND_LINKS")) {
                _cleanup_free_ char *v = cli_config_value("find_links");
                if (v && *v)
                        *ret_links = strv_append(NULL, v);
        }
}

int cli_engine_open(const RunArgs *a, Engine **ret) {
        _cleanup_free_ char *cfg_index = NULL;
        _cleanup_strv_free_ char **cfg_extra = NULL, **cfg_links = NULL;
        index_from_config(a, &cfg_index, &cfg_extra, &cfg_links);
        EngineConfig cfg = {
                /* One run per CLI process: a spare child would be wasted. */
                .no_spares = true,
                /* A run whose CLI dies (terminal closed, kill -9) is marked
                 * lost by the next CLI instead of staying running. */
                .record_owner = true,
                .index_url = a && a->index_url ? a->index_url : cfg_index,
                .extra_index_urls = cfg_extra,
                .find_links = a && a->find_links ? a->find_links : cfg_links,
        };
        _cleanup_free_ char *err = NULL;
        int r = engine_new(&cfg, ret, &err);
        if (r < 0) {
                cli_error("%s", err ? err : strerror(-r));
                return EXIT_INTERNAL;
        }
        return 0;
}

static json_t *json_or_null(const char *text) {
        json_t *j = text ? json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
        return j ? j : json_null();
}

static json_t *error_json(const char *type, const char *message, const char *traceback) {
        if (!type && !message)
                return json_null();
        return json_pack("{s:s?, s:s?, s:s?}", "type", type, "message", message, "traceback", traceback);
}

json_t *cli_run_record_json(const RunRecord *r) {
        assert(r);
        _cleanup_free_ char *text = run_record_to_json(r, NULL);
        json_t *j = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
        return j ?: json_pack("{s:s, s:s}", "id", r->id, "status", r->status ?: "queued");
}

/* The outcome fields of the run object, from a finished engine run. */
static json_t *result_json(const RunResult *res) {
        return json_pack("{s:s, s:s, s:i, s:s?, s:o, s:s?, s:o}", "id", res->id ?: "", "status",
                         run_status_to_string(res->status), "exit_code", res->exit_code, "function", res->function,
                         "result", json_or_null(res->value_json), "result_repr", res->value_repr, "error",
                         error_json(res->error_type, res->error_message, res->traceback));
}

static Engine *running_engine;
static const char *running_id;

static void on_interrupt(int sig) {
        /* The engine reports the cancelled run; the verb exits 130 after. */
        cli_interrupted = 1;
        if (running_engine && running_id)
                (void) engine_cancel(running_engine, running_id);
}

/* --data NAME[@VERSION] -> read-only content dirs. */
static int resolve_data(Backend *b, char *const *refs, char ***ret_mounts) {
        _cleanup_free_ char *root = path_join(engine_data_dir(b->engine), "data");
        DataConfig cfg = { .root = root };
        DataCatalog *dc = NULL;
        _cleanup_free_ char *err = NULL, *warn = NULL;
        data_config_from_env(&cfg, engine_data_dir(b->engine));
        int r = data_catalog_new(engine_store(b->engine), &cfg, &dc, &err);
        if (r >= 0)
                r = data_resolve_mounts(dc, NULL, refs, ret_mounts, NULL, &warn, &err);
        if (warn)
                cli_warning("%s", warn);
        if (r < 0) {
                backend_set_error(b, "%s", err ?: strerror(-r));
                r = r == -ENOENT ? -EBADMSG : r;
        }
        data_catalog_free(dc);
        return r;
}

static int engine_run_op(Backend *b, const RunRequest *q, Renderer *rd, json_t **ret) {
        const RunArgs *a = q->a;
        if (q->deployed) {
                backend_set_error(b, "invoke needs a server: deployed functions live in pysprinterd "
                                     "(--server URL or PYSPRINTER_SERVER)");
                return -EOPNOTSUPP;
        }
        _cleanup_strv_free_ char **mounts = NULL;
        if (a->data && !q->validate_only) {
                int r = resolve_data(b, a->data, &mounts);
                if (r < 0)
                        return r;
        }
        _cleanup_free_ char *id = id_new("r"), *args = NULL;
        if (q->prev_result)
                args = xasprintf("[{\"value\": %s}]", q->prev_result);
        RunSpec spec = {
                .run_id = id,
                .data = mounts,
                .source = q->source,
                .source_len = q->source_len,
                .filename = q->filename,
                .function = a->function,
                .args_json = args ?: a->args_json,
                .kwargs_json = args ? NULL : a->kwargs_json,
                .limits = a->limits,
                .sandbox = a->sandbox,
                .validate_only = q->validate_only,
                .no_record = q->validate_only,
        };
        struct sigaction sa = { .sa_handler = on_interrupt }, old_int, old_term;
        running_engine = b->engine;
        running_id = id;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        RunResult *res = NULL;
        int r = engine_run(b->engine, &spec, renderer_event, rd, &res);
        running_engine = NULL;
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (r < 0) {
                backend_set_error(b, "%s", strerror(-r));
                return r;
        }
        *ret = result_json(res);
        run_result_free(res);
        return 0;
}

static int store_error(Backend *b, int r, const char *id) {
        if (r == -ENOENT)
                backend_set_error(b, "no run '%s' (see `pysprinter ps`)", id);
        else if (r == -EEXIST) {
                backend_set_error(b, "'%s' matches several runs; give more of the id", id);
                r = -EINVAL;
        } else
                backend_set_error(b, "cannot read run '%s': %s", id, strerror(-r));
        return r;
}

static int engine_run_get(Backend *b, const char *id, json_t **ret) {
        RunRecord *rec = NULL;
        int r = store_run_get(engine_store(b->engine), NULL, id, &rec);
        if (r < 0)
                return store_error(b, r, id);
        *ret = cli_run_record_json(rec);
        run_record_free(rec);
        return 0;
}

static int engine_run_list(Backend *b, long limit, json_t **ret) {
        RunRecord **v = NULL;
        size_t n = 0;
        int r = store_run_list(engine_store(b->engine), NULL, (size_t) limit, &v, &n);
        if (r < 0) {
                backend_set_error(b, "cannot list runs: %s", strerror(-r));
                return r;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, cli_run_record_json(v[i]));
        run_record_list_free(v, n);
        *ret = arr;
        return 0;
}

static int engine_run_logs(Backend *b, const char *id, bool follow, Renderer *rd) {
        RunRecord *rec = NULL;
        int r = store_run_get(engine_store(b->engine), NULL, id, &rec);
        if (r < 0)
                return store_error(b, r, id);
        if (rec->log_path) {
                r = engine_log_replay(rec->log_path, renderer_event, rd);
                if (r == -ENOENT)
                        r = 0;
                else if (r < 0)
                        backend_set_error(b, "the log of %s is damaged: %s", rec->id, strerror(-r));
        }
        run_record_free(rec);
        return r;
}

static int engine_unsupported(Backend *b) {
        backend_set_error(b, "this needs a server: deployed functions and warm workers live in pysprinterd "
                             "(--server URL or PYSPRINTER_SERVER)");
        return -EOPNOTSUPP;
}

static int engine_deploy(Backend *b, json_t *req, json_t **ret) {
        return engine_unsupported(b);
}

static int engine_function(Backend *b, const char *method, const char *name, json_t **ret) {
        return engine_unsupported(b);
}

static int engine_workers(Backend *b, json_t **ret) {
        return engine_unsupported(b);
}

static void engine_backend_free(Backend *b) {
        engine_free(b->engine);
}

static const BackendOps engine_ops = {
        .run = engine_run_op,
        .run_get = engine_run_get,
        .run_list = engine_run_list,
        .run_logs = engine_run_logs,
        .deploy = engine_deploy,
        .function = engine_function,
        .workers = engine_workers,
        .free = engine_backend_free,
};

int backend_engine_new(Engine *e, Backend **ret) {
        assert(e);
        Backend *b = xcalloc(1, sizeof(Backend));
        *b = (Backend) { .ops = &engine_ops, .engine = e };
        *ret = b;
        return 0;
}
