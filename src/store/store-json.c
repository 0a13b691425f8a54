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
                json_object_foreach(a, k, v)
                        json_object_set(out, k, json_object_get(v, "value") ?: json_object_get(v, "raw") ?: json_object_get(v, "bare") ?: v);
        else if (!keyword && json_is_array(a))
                json_array_foreach(a, i, v) json_array_append(out, json_object_get(v, "value") ?: json_object_get(v, "raw") ?: v);
        json_decref(a);
        return out;
}

/* The phase a record shows: "queued" is the phase a run is made with, a
 * queued run's alone. A run answered as started (a submit that starts it
 * at once is stored running) shows the engine's first phase until the
 * engine says its own, never "running" with "queued". */
static const char *phase_shown(const RunRecord *r, const char *phase) {
        if (phase && streq(phase, "queued") && r->status && streq(r->status, "running"))
                return "validate";
        return phase;
}

/* The run object's fields before "timings" (id … error). */
static json_t *run_record_head(const RunRecord *r, const char *phase) {
        json_t *j = json_object();
        phase = phase_shown(r, phase);
        json_object_set_new(j, "id", json_string(r->id));
        json_object_set_new(j, "status", json_string(r->status ?: "queued"));
        if (phase)
                json_object_set_new(j, "phase", json_string(phase));
        json_object_set_new(j, "exit_code", r->exit_code >= 0 ? json_integer(r->exit_code) : json_null());
        json_object_set_new(j, "filename", r->filename ? json_string(r->filename) : json_null());
        json_object_set_new(j, "function", r->function ? json_string(r->function) : json_null());
        json_object_set_new(j, "args", args_as_given(r->args_json, false));
        json_object_set_new(j, "kwargs", args_as_given(r->kwargs_json, true));
        /* Held (shared.h): a large result stays its text. */
        json_object_set_new(j, "result", json_held_or_parse(r->value_json));
        json_object_set_new(j, "result_repr", r->value_repr ? json_string(r->value_repr) : json_null());
        json_object_set_new(j, "error", r->error_type || r->error_message
                                                ? json_pack("{s:s?, s:s?, s:s?}", "type", r->error_type, "message",
                                                            r->error_message, "traceback", r->traceback)
                                                : json_null());
        return j;
}

/* The fields after "timings" (outputs … finished_at), added to j. */
static json_t *run_record_tail(json_t *j, const RunRecord *r) {
        if (r->outputs_json)
                json_object_set_new(j, "outputs", json_parse_or_string(r->outputs_json));
        json_object_set_new(j, "attempt", json_integer(r->attempt));
        json_object_set_new(j, "max_attempts", json_integer(r->max_attempts));
        json_object_set_new(j, "fn_name", r->fn_name ? json_string(r->fn_name) : json_null());
        json_object_set_new(j, "fn_version", r->fn_version > 0 ? json_integer(r->fn_version) : json_null());
        json_object_set_new(j, "schedule", r->schedule ? json_string(r->schedule) : json_null());
        json_object_set_new(j, "limits", json_parse_or_string(r->limits_json));
        json_object_set_new(j, "created_at", time_json(r->created));
        json_object_set_new(j, "started_at", time_json(r->started));
        json_object_set_new(j, "finished_at", time_json(r->finished));
        return j;
}

json_t *run_record_json(const RunRecord *r, const char *phase) {
        json_t *j = run_record_head(r, phase);
        json_object_set_new(j, "timings", json_parse_or_string(r->timings_json));
        return run_record_tail(j, r);
}

/* A dotted name is a field of the run object's "error". */
static const char *const elidable[] = { "args", "kwargs", "result", "result_repr", "error.message", "error.traceback" };

/* store.h. */
unsigned run_record_elide(const RunRecord *r, RunRecord *ret) {
        *ret = *r;
        /* A listing's read left these out already (RUN_LIST_COLUMNS). */
        unsigned mask = r->elided;
        char **texts[] = { &ret->args_json,  &ret->kwargs_json,   &ret->value_json,
                           &ret->value_repr, &ret->error_message, &ret->traceback };
        _Static_assert(ELEMENTSOF(texts) == ELEMENTSOF(elidable), "one name per text");
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                if (*texts[i] && strlen(*texts[i]) > RUN_LIST_VALUE_MAX) {
                        *texts[i] = NULL;
                        mask |= 1u << i;
                }
        return mask;
}

/* store.h. */
void run_json_mark_elided(json_t *j, unsigned mask) {
        if (!j || !mask)
                return;
        json_t *names = json_array();
        for (size_t i = 0; i < ELEMENTSOF(elidable); i++)
                if (mask & (1u << i)) {
                        if (startswith(elidable[i], "error.")) {
                                json_t *err = json_object_get(j, "error");
                                if (!json_is_object(err)) {
                                        /* A message with no type: the object the
                                         * run has, its field null. */
                                        err = json_pack("{s:n, s:n, s:n}", "type", "message", "traceback");
                                        json_object_set_new(j, "error", err);
                                }
                                json_object_set_new(err, elidable[i] + strlen("error."), json_null());
                        } else
                                json_object_set_new(j, elidable[i], json_null());
                        json_array_append_new(names, json_string(elidable[i]));
                }
        json_object_set_new(j, "elided", names);
}

/* Timings text fit to go into an answer as it is: what the engine writes
 * (timings_json() in engine-run.c) and what older records hold, one flat
 * object {"name":number|true|false|null,…} with names of [a-z_0-9]. A
 * number is checked to be a JSON number, so the text is exactly a value
 * jansson would have parsed; its reals are then respelled by
 * json_shorten_reals() in the answer, as the re-printed ones were. Any
 * other text (none is written today) takes the parse-and-print way. */
static bool timings_spliceable(const char *t) {
        if (!t || *t++ != '{')
                return false;
        if (*t == '}')
                return t[1] == 0;
        for (;;) {
                if (*t++ != '"' || !((*t >= 'a' && *t <= 'z') || *t == '_'))
                        return false;
                while ((*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') || *t == '_')
                        t++;
                if (*t++ != '"' || *t++ != ':')
                        return false;
                if (!store_json_scalar_at(&t))
                        return false;
                if (*t == '}')
                        return t[1] == 0;
                if (*t++ != ',')
                        return false;
        }
}

/* run_record_tail() as text when it holds no outputs: integers,
 * timestamps (format_timestamp(): digits, '-', ':', '.', 'T', 'Z') and the
 * origin's names (escaped as jansson prints them), so no JSON tree and no
 * json_dumps (~18k instructions). */
static void append_time(Buf *b, const char *name, usec_t t) {
        char buf[32];
        (void) buf_appends(b, name);
        if (!t) {
                (void) buf_append(b, "null", 4);
                return;
        }
        (void) buf_append(b, "\"", 1);
        (void) buf_appends(b, format_timestamp(t, buf));
        (void) buf_append(b, "\"", 1);
}

/* Limits text fit to go into an answer as it is: what the daemon writes
 * (drun_limits_json()), one flat object of names [a-z_] and integers or
 * booleans, which jansson would print back the same. */
static bool limits_spliceable(const char *t) {
        if (!t)
                return true;
        if (*t++ != '{')
                return false;
        if (*t == '}')
                return t[1] == 0;
        for (;;) {
                if (*t++ != '"')
                        return false;
                size_t n = strspn(t, "abcdefghijklmnopqrstuvwxyz_");
                if (n == 0 || t[n] != '"' || t[n + 1] != ':')
                        return false;
                t += n + 2;
                size_t d = strspn(t, "0123456789");
                if (d > 0 && d <= 18 && (*t != '0' || d == 1))
                        t += d;
                else if (startswith(t, "true"))
                        t += 4;
                else if (startswith(t, "false"))
                        t += 5;
                else
                        return false;
                if (*t == '}')
                        return t[1] == 0;
                if (*t++ != ',')
                        return false;
        }
}

static char *tail_text(const RunRecord *r) {
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        (void) buf_printf(&b, "{\"attempt\":%d,\"max_attempts\":%d", r->attempt, r->max_attempts);
        (void) json_buf_append_member(&b, ",\"fn_name\":", r->fn_name);
        if (r->fn_version > 0)
                (void) buf_printf(&b, ",\"fn_version\":%d", r->fn_version);
        else
                (void) buf_appends(&b, ",\"fn_version\":null");
        (void) json_buf_append_member(&b, ",\"schedule\":", r->schedule);
        (void) buf_appends(&b, ",\"limits\":");
        (void) buf_appends(&b, r->limits_json ?: "null");
        append_time(&b, ",\"created_at\":", r->created);
        append_time(&b, ",\"started_at\":", r->started);
        append_time(&b, ",\"finished_at\":", r->finished);
        (void) buf_append(&b, "}", 1);
        return buf_steal(&b);
}

static char *dump17(json_t *j) {
        char *s = j ? json_dumps_held(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        json_decref(j);
        return s;
}

/* An integer as JSON spells it and jansson prints it again: optional '-',
 * no leading zero, at most 18 digits (within json_int_t). */
static bool plain_integer(const char *t) {
        if (!t)
                return false;
        const char *p = t + (*t == '-');
        size_t n = strspn(p, "0123456789");
        return n > 0 && n <= 18 && p[n] == 0 && (*p != '0' || (n == 1 && p == t)); /* "-0" prints as 0 */
}

/* A value of the head as text: what dump17() of the same jansson value
 * gives, without one when the stored text is already that (no arguments,
 * an integer result). */
static int append_value(Buf *b, json_t *v) {
        _cleanup_free_ char *t = dump17(v);
        return t ? buf_appends(b, t) : -ENOMEM;
}

/* run_record_head() written as text: its strings escaped by the helper
 * jansson's printer agrees with (json_buf_append_string()), its JSON
 * values printed alone. The whole head as one jansson object and one
 * json_dumps() cost ~25k instructions per answer (loop check and a hash
 * per container; docs/internals/performance-log.md "Invoke path: round 7"). NULL when a
 * string is not UTF-8 (jansson would drop the field): the caller takes
 * the jansson way then. */
/* The result as dump17() of its parsed value writes it, written from its
 * text straight into b (json_text_dump()): parsing it first cost a 10 MiB
 * string result two more copies (jansson's string and its lexer's text),
 * and holding an array or object one. */
static int append_result(Buf *b, const char *value_json) {
        if (plain_integer(value_json))
                return buf_appends(b, value_json);
        size_t at = b->len;
        int k = json_text_dump(value_json, JSON_COMPACT | JSON_REAL_PRECISION(17), json_buf_dump, b);
        if (k != -EINVAL)
                return k < 0 ? -ENOMEM : 0;
        /* Not JSON jansson reads (a record of another version): its
         * string, as json_parse_or_string() makes it. */
        b->len = at;
        return append_value(b, json_held_or_parse(value_json));
}

static char *run_record_head_text(const RunRecord *r, const char *phase) {
        phase = phase_shown(r, phase);
        const char *texts[] = { r->status,     phase,         r->filename, r->function,
                                r->value_repr, r->error_type, r->error_message, r->traceback };
        if (!r->id || !utf8_is_valid(r->id))
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                if (!utf8_is_valid_or_null(texts[i]))
                        return NULL;
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        int k = json_buf_append_member(&b, "{\"id\":", r->id);
        if (k >= 0)
                k = json_buf_append_member(&b, ",\"status\":", r->status ?: "queued");
        if (k >= 0 && phase)
                k = json_buf_append_member(&b, ",\"phase\":", phase);
        if (k >= 0)
                k = r->exit_code >= 0 ? buf_printf(&b, ",\"exit_code\":%d", r->exit_code)
                                      : buf_appends(&b, ",\"exit_code\":null");
        if (k >= 0)
                k = json_buf_append_member(&b, ",\"filename\":", r->filename);
        if (k >= 0)
                k = json_buf_append_member(&b, ",\"function\":", r->function);
        if (k >= 0)
                k = buf_appends(&b, ",\"args\":");
        if (k >= 0)
                k = !r->args_json || streq(r->args_json, "[]") ? buf_appends(&b, "[]")
                                                                : append_value(&b, args_as_given(r->args_json, false));
        if (k >= 0)
                k = buf_appends(&b, ",\"kwargs\":");
        if (k >= 0)
                k = !r->kwargs_json || streq(r->kwargs_json, "{}") ? buf_appends(&b, "{}")
                                                                    : append_value(&b, args_as_given(r->kwargs_json, true));
        if (k >= 0)
                k = buf_appends(&b, ",\"result\":");
        if (k >= 0)
                k = !r->value_json ? buf_appends(&b, "null") : append_result(&b, r->value_json);
        if (k >= 0)
                k = json_buf_append_member(&b, ",\"result_repr\":", r->value_repr);
        if (k >= 0)
                k = buf_appends(&b, ",\"error\":");
        if (k >= 0 && !r->error_type && !r->error_message)
                k = buf_appends(&b, "null");
        else if (k >= 0) {
                /* json_pack's "s?": a NULL member is null. */
                k = json_buf_append_member(&b, "{\"type\":", r->error_type);
                if (k >= 0)
                        k = json_buf_append_member(&b, ",\"message\":", r->error_message);
                if (k >= 0)
                        k = json_buf_append_member(&b, ",\"traceback\":", r->traceback);
                if (k >= 0)
                        k = buf_append(&b, "}", 1);
        }
        if (k >= 0)
                k = buf_append(&b, "}", 1);
        if (k < 0) {
                buf_free(&b);
                return NULL;
        }
        return buf_steal(&b);
}

char *run_record_to_json(const RunRecord *r, const char *phase) {
        /* Every invoke's answer carries the stored timings text; parsing it
         * and printing its ten reals again with 17 digits (strtod,
         * __printf_fp) was ~2% of the daemon's CPU per invoke. The text goes
         * in as stored, between the fields before and after it. */
        if (!timings_spliceable(r->timings_json) || !limits_spliceable(r->limits_json))
                return dump17(run_record_json(r, phase));
        _cleanup_free_ char *head = run_record_head_text(r, phase);
        if (!head)
                head = dump17(run_record_head(r, phase));
        _cleanup_free_ char *tail = r->outputs_json ? dump17(run_record_tail(json_object(), r)) : tail_text(r);
        if (!head || !tail)
                return NULL;
        /* head is "{…}" with at least "id"; tail "{…}" with at least
         * "attempt". The rest goes on after head in its own allocation
         * (a large result's head is mmap()ed: realloc() moves its pages,
         * not its bytes), not into a new text of both. */
        size_t hn = strlen(head) - 1, tn = strlen(r->timings_json), rn = strlen(tail + 1);
        char *out = xrealloc(TAKE_PTR(head), hn + 11 + tn + 1 + rn + 1), *p = out + hn;
        p = mempcpy(p, ",\"timings\":", 11);
        p = mempcpy(p, r->timings_json, tn);
        *p++ = ',';
        memcpy(p, tail + 1, rn + 1);
        return out;
}

static json_t *ms_between(usec_t a, usec_t b) {
        return a && b && b >= a ? json_real((double) (b - a) / 1000.0) : json_null();
}

/* Takes t->value_json (NULL after): the result's text becomes the value. */
static json_t *task_json(DagTaskRecord *t) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "state", json_string(t->state ?: "pending"));
        json_object_set_new(o, "attempts", json_integer(t->attempts));
        json_object_set_new(o, "cached", json_boolean(t->cached));
        json_object_set_new(o, "run_id", t->run_id ? json_string(t->run_id) : json_null());
        json_object_set_new(o, "exit_code", t->finished ? json_integer(t->exit_code) : json_null());
        json_object_set_new(o, "result", json_held_or_parse_take(&t->value_json));
        json_object_set_new(o, "error", t->error ? json_string(t->error) : json_null());
        json_object_set_new(o, "started_at", time_json(t->started));
        json_object_set_new(o, "finished_at", time_json(t->finished));
        json_object_set_new(o, "started_us", t->started ? json_integer((json_int_t) t->started) : json_null());
        json_object_set_new(o, "finished_us", t->finished ? json_integer((json_int_t) t->finished) : json_null());
        json_object_set_new(o, "duration_ms", ms_between(t->started, t->finished));
        return o;
}

json_t *dag_record_object(const DagRunRecord *r, DagTaskRecord *const *tasks, size_t n_tasks, bool with_tasks) {
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
        return j;
}

char *dag_record_to_json(const DagRunRecord *r, DagTaskRecord *const *tasks, size_t n_tasks, bool with_tasks) {
        json_t *j = dag_record_object(r, tasks, n_tasks, with_tasks);
        char *text = json_dumps_held(j, JSON_COMPACT);
        json_decref(j);
        return text;
}
