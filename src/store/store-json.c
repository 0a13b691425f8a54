/* A run record as the API's run object (docs/api.md "The run object"):
 * the one schema the daemon answers with and `ps`/`show --json` print on
 * both of the CLI's backends. */
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

char *run_record_to_json(const RunRecord *r, const char *phase) {
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
        json_object_set_new(j, "attempt", json_integer(r->attempt));
        json_object_set_new(j, "max_attempts", json_integer(r->max_attempts));
        json_object_set_new(j, "created_at", time_json(r->created));
        json_object_set_new(j, "started_at", time_json(r->started));
        json_object_set_new(j, "finished_at", time_json(r->finished));
        char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        return text;
}
