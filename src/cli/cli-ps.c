/* Run records: `ps`, `show`, `logs`. */
#include <jansson.h>
#include <time.h>

#include "cli.h"
#include "cli-remote.h"
#include "store.h"

static int open_store(Engine **ret_e) {
        return cli_engine_open(NULL, ret_e);
}

static void fmt_time(usec_t t, char buf[static 32]) {
        if (!t) {
                snprintf(buf, 32, "-");
                return;
        }
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        localtime_r(&sec, &tm);
        strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

static void fmt_duration(const RunRecord *r, char buf[static 32]) {
        if (!r->finished || r->finished < r->created)
                snprintf(buf, 32, "-");
        else {
                double ms = (double) (r->finished - r->created) / 1000.0;
                if (ms < 1000)
                        snprintf(buf, 32, "%.0fms", ms);
                else
                        snprintf(buf, 32, "%.1fs", ms / 1000);
        }
}

static json_t *record_json(const RunRecord *r) {
        char c[32], s[32], f[32];
        json_t *o = json_pack("{s:s, s:s?, s:s?, s:s, s:i, s:s, s:s?, s:s?}", "id", r->id, "file", r->filename,
                              "function", r->function, "status", r->status, "exit_code", r->exit_code, "created",
                              format_timestamp(r->created, c), "started", r->started ? format_timestamp(r->started, s) : NULL,
                              "finished", r->finished ? format_timestamp(r->finished, f) : NULL);
        json_t *v;
        if (r->args_json && (v = json_loads(r->args_json, 0, NULL)))
                json_object_set_new(o, "args", v);
        if (r->kwargs_json && (v = json_loads(r->kwargs_json, 0, NULL)))
                json_object_set_new(o, "kwargs", v);
        if (r->value_json && (v = json_loads(r->value_json, JSON_DECODE_ANY, NULL)))
                json_object_set_new(o, "result", v);
        if (r->value_repr)
                json_object_set_new(o, "result_repr", json_string(r->value_repr));
        if (r->error_type || r->error_message)
                json_object_set_new(o, "error", json_pack("{s:s?, s:s?, s:s?}", "type", r->error_type, "message",
                                                          r->error_message, "traceback", r->traceback));
        if (r->timings_json && (v = json_loads(r->timings_json, 0, NULL)))
                json_object_set_new(o, "timings", v);
        return o;
}

int verb_ps(int argc, char **argv) {
        _cleanup_free_ char *server = NULL;
        if (cli_remote_take_server(&argc, argv, &server))
                return cli_remote_ps(server, argc, argv);
        bool json;
        long limit;
        int k = cli_parse_list_args(argc, argv, "ps", 100000, &json, &limit);
        if (k < 0) {
                printf("Usage: pysprinter ps [--json] [-n N]\n\nList the most recent runs (default 20).\n");
                return 0;
        }
        if (k)
                return k;
        Engine *e = NULL;
        int r = open_store(&e);
        if (r)
                return r;
        RunRecord **v = NULL;
        size_t n = 0;
        r = store_run_list(engine_store(e), NULL, (size_t) limit, &v, &n);
        if (r < 0) {
                fprintf(stderr, "pysprinter: cannot list runs: %s\n", strerror(-r));
                engine_free(e);
                return EXIT_INTERNAL;
        }
        if (json) {
                json_t *arr = json_array();
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(arr, record_json(v[i]));
                _cleanup_free_ char *t = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(17));
                _cleanup_free_ char *exact = json_shorten_reals(t ?: "[]");
                puts(exact);
                json_decref(arr);
        } else {
                printf("%-18s %-11s %4s %-19s %8s  %s\n", "ID", "STATUS", "EXIT", "CREATED", "DURATION", "TARGET");
                for (size_t i = 0; i < n; i++) {
                        char c[32], d[32];
                        fmt_time(v[i]->created, c);
                        fmt_duration(v[i], d);
                        char code[16] = "-";
                        if (v[i]->exit_code >= 0)
                                snprintf(code, sizeof(code), "%d", v[i]->exit_code);
                        printf("%-18s %-11s %4s %-19s %8s  %s::%s\n", v[i]->id, v[i]->status, code, c, d,
                               v[i]->filename ?: "?", v[i]->function ?: "?");
                }
        }
        run_record_list_free(v, n);
        engine_free(e);
        return 0;
}

static int get_record(const char *verb, int argc, char **argv, bool *json, Engine **ret_e, RunRecord **ret) {
        const char *id = NULL;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        *json = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter %s RUN [--json]\n\nRUN is a run id or a unique prefix of one (see `pysprinter ps`).\n", verb);
                        return -1;
                } else if (!id && argv[i][0] != '-')
                        id = argv[i];
                else {
                        fprintf(stderr, "pysprinter: %s: unexpected argument '%s'\n", verb, argv[i]);
                        return EXIT_USAGE;
                }
        }
        if (!id) {
                fprintf(stderr, "pysprinter: %s needs a run id (see `pysprinter ps`)\n", verb);
                return EXIT_USAGE;
        }
        int r = open_store(ret_e);
        if (r)
                return r;
        r = store_run_get(engine_store(*ret_e), NULL, id, ret);
        if (r < 0) {
                if (r == -ENOENT)
                        fprintf(stderr, "pysprinter: no run '%s' (see `pysprinter ps`)\n", id);
                else if (r == -EEXIST)
                        fprintf(stderr, "pysprinter: '%s' matches several runs; give more of the id\n", id);
                else
                        fprintf(stderr, "pysprinter: cannot read run '%s': %s\n", id, strerror(-r));
                *ret_e = engine_free(*ret_e);
                return EXIT_USAGE;
        }
        return 0;
}

int verb_show(int argc, char **argv) {
        _cleanup_free_ char *server = NULL;
        if (cli_remote_take_server(&argc, argv, &server))
                return cli_remote_show(server, argc, argv);
        bool json = false;
        Engine *e = NULL;
        RunRecord *rec = NULL;
        int r = get_record("show", argc, argv, &json, &e, &rec);
        if (r)
                return r < 0 ? 0 : r;
        json_t *o = record_json(rec);
        if (json) {
                _cleanup_free_ char *t = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
                _cleanup_free_ char *exact = json_shorten_reals(t ?: "{}");
                puts(exact);
        } else {
                char c[32], d[32];
                fmt_time(rec->created, c);
                fmt_duration(rec, d);
                printf("id:        %s\nfile:      %s\nfunction:  %s\nstatus:    %s\nexit code: %d\n"
                       "created:   %s\nduration:  %s\n",
                       rec->id, rec->filename ?: "-", rec->function ?: "-", rec->status, rec->exit_code, c, d);
                printf("args:      %s\nkwargs:    %s\n", rec->args_json ?: "[]", rec->kwargs_json ?: "{}");
                if (rec->value_json)
                        printf("result:    %s\n", rec->value_json);
                if (rec->value_repr)
                        printf("result:    %s (repr; not JSON)\n", rec->value_repr);
                if (rec->error_message)
                        printf("error:     %s%s%s\n", rec->error_type ?: "", rec->error_type ? ": " : "", rec->error_message);
                json_t *t = json_object_get(o, "timings");
                if (t) {
                        printf("timings:  ");
                        const char *k;
                        json_t *v;
                        json_object_foreach(t, k, v) printf(" %.*s=%.2fms", (int) (strlen(k) > 3 ? strlen(k) - 3 : strlen(k)), k,
                                                            json_number_value(v));
                        printf("\n");
                }
                if (rec->traceback)
                        printf("traceback:\n%s", rec->traceback);
        }
        json_decref(o);
        run_record_free(rec);
        engine_free(e);
        return 0;
}

int verb_logs(int argc, char **argv) {
        _cleanup_free_ char *server = NULL;
        if (cli_remote_take_server(&argc, argv, &server))
                return cli_remote_logs(server, argc, argv);
        bool json = false;
        Engine *e = NULL;
        RunRecord *rec = NULL;
        int r = get_record("logs", argc, argv, &json, &e, &rec);
        if (r)
                return r < 0 ? 0 : r;
        Renderer rd;
        renderer_init(&rd, json);
        if (rec->log_path) {
                r = engine_log_replay(rec->log_path, renderer_event, &rd);
                if (r < 0 && r != -ENOENT)
                        fprintf(stderr, "pysprinter: the log of %s is damaged: %s\n", rec->id, strerror(-r));
        }
        renderer_done(&rd);
        run_record_free(rec);
        engine_free(e);
        return 0;
}
