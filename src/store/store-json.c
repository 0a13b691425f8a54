/* A run record as the API's run object (docs/api.md "The run object"), a
 * DAG run as the API's DAG object: the one schema the daemon answers with
 * and the CLI prints on both of its backends. */
#include <jansson.h>

#include "shared.h"
#include "store-internal.h"

static json_t *time_json(usec_t t) {
        char buf[32];
        return t ? json_string(format_timestamp(t, buf)) : json_null();
}

/* Engine-format arguments ([{"raw"|"value": x}] / {k: {…}}) as the values
 * a user gave. */
static json_t *args_as_given(const char *text, bool keyword) {
        json_t *a = json_parse_or_string(text), *out = keyword ? json_object() : json_array(), *v;
        size_t i;
        const char *k;
        if (keyword && json_is_object(a))
                json_object_foreach(a, k, v) json_object_set(out, k, json_object_get(v, "value") ?: json_object_get(v, "raw") ?: v);
        else if (!keyword && json_is_array(a))
                json_array_foreach(a, i, v) json_array_append(out, json_object_get(v, "value") ?: json_object_get(v, "raw") ?: v);
        json_decref(a);
        return out;
}

json_t *run_record_json(const RunRecord *r, const char *phase) {
        json_t *j = json_object();
        json_object_set_new(j, "id", json_string(r->id));
        json_object_set_new(j, "status", json_string(r->status ?: "queued"));
        if (phase)
                json_object_set_new(j, "phase", json_string(phase));
        json_object_set_new(j, "exit_code", r->exit_code >= 0 ? json_integer(r->exit_code) : json_null());
        json_object_set_new(j, "filename", r->filename ? json_string(r->filename) : json_null());
        json_object_set_new(j, "function", r->function ? json_string(r->function) : json_null());
        json_object_set_new(j, "args", args_as_given(r->args_json, false));
        json_object_set_new(j, "kwargs", args_as_given(r->kwargs_json, true));
        json_object_set_new(j, "result", json_parse_or_string(r->value_json));
        json_object_set_new(j, "result_repr", r->value_repr ? json_string(r->value_repr) : json_null());
        json_object_set_new(j, "error", r->error_type || r->error_message
                                                ? json_pack("{s:s?, s:s?, s:s?}", "type", r->error_type, "message",
                                                            r->error_message, "traceback", r->traceback)
                                                : json_null());
        json_object_set_new(j, "timings", json_parse_or_string(r->timings_json));
        if (r->outputs_json)
                json_object_set_new(j, "outputs", json_parse_or_string(r->outputs_json));
        json_object_set_new(j, "attempt", json_integer(r->attempt));
        json_object_set_new(j, "max_attempts", json_integer(r->max_attempts));
        json_object_set_new(j, "created_at", time_json(r->created));
        json_object_set_new(j, "started_at", time_json(r->started));
        json_object_set_new(j, "finished_at", time_json(r->finished));
        return j;
}

char *run_record_to_json(const RunRecord *r, const char *phase) {
        json_t *j = run_record_json(r, phase);
        char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        return text;
}

static json_t *ms_between(usec_t a, usec_t b) {
        return a && b && b >= a ? json_real((double) (b - a) / 1000.0) : json_null();
}

static json_t *task_json(const DagTaskRecord *t) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "state", json_string(t->state ?: "pending"));
        json_object_set_new(o, "attempts", json_integer(t->attempts));
        json_object_set_new(o, "cached", json_boolean(t->cached));
        json_object_set_new(o, "run_id", t->run_id ? json_string(t->run_id) : json_null());
        json_object_set_new(o, "exit_code", t->finished ? json_integer(t->exit_code) : json_null());
        json_object_set_new(o, "result", json_parse_or_string(t->value_json));
        json_object_set_new(o, "error", t->error ? json_string(t->error) : json_null());
        json_object_set_new(o, "started_at", time_json(t->started));
        json_object_set_new(o, "finished_at", time_json(t->finished));
        json_object_set_new(o, "started_us", t->started ? json_integer((json_int_t) t->started) : json_null());
        json_object_set_new(o, "finished_us", t->finished ? json_integer((json_int_t) t->finished) : json_null());
        json_object_set_new(o, "duration_ms", ms_between(t->started, t->finished));
        return o;
}

char *dag_record_to_json(const DagRunRecord *r, DagTaskRecord *const *tasks, size_t n_tasks, bool with_tasks) {
        json_t *j = json_object();
        json_object_set_new(j, "id", json_string(r->id));
        json_object_set_new(j, "name", r->name ? json_string(r->name) : json_null());
        json_object_set_new(j, "status", json_string(r->status ?: "running"));
        json_object_set_new(j, "schedule", r->schedule ? json_string(r->schedule) : json_null());
        json_object_set_new(j, "error", r->error ? json_string(r->error) : json_null());
        json_object_set_new(j, "created_at", time_json(r->created));
        json_object_set_new(j, "started_at", time_json(r->started));
        json_object_set_new(j, "finished_at", time_json(r->finished));
        json_object_set_new(j, "duration_ms", ms_between(r->started, r->finished));
        json_object_set_new(j, "options", json_parse_or_string(r->options_json));
        json_object_set_new(j, "params", json_parse_or_string(r->params_json));
        if (with_tasks) {
                json_t *a = json_array(), *counts = json_object();
                for (size_t i = 0; i < n_tasks; i++) {
                        json_array_append_new(a, task_json(tasks[i]));
                        const char *st = tasks[i]->state ?: "pending";
                        json_object_set_new(counts, st, json_integer(json_integer_value(json_object_get(counts, st)) + 1));
                }
                json_object_set_new(j, "tasks", a);
                json_object_set_new(j, "counts", counts);
        }
        char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        return text;
}
