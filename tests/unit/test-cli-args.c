/* Unit tests for the run argument grammar (src/cli/cli-args.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cli.h"

typedef struct Row {
        const char *argv[12];
        int ok;
        const char *file, *function, *args, *kwargs;
} Row;

static const Row rows[] = {
        { { "f.py", "-a", "5" }, 1, "f.py", NULL, "[{\"raw\":\"5\"}]", "{}" },
        { { "kwargs.py", "-a", "5", "-arg1", "this", "--arg2", "that" },
          1,
          "kwargs.py",
          NULL,
          "[{\"raw\":\"5\"}]",
          "{\"arg1\":{\"raw\":\"this\"},\"arg2\":{\"raw\":\"that\"}}" },
        { { "f.py::g", "--x=1" }, 1, "f.py", "g", "[]", "{\"x\":{\"raw\":\"1\"}}" },
        { { "f.py", "-k", "a=1", "-k", "json=2", "-k", "timeout=3" },
          1,
          "f.py",
          NULL,
          "[]",
          "{\"a\":{\"raw\":\"1\"},\"json\":{\"raw\":\"2\"},\"timeout\":{\"raw\":\"3\"}}" },
        { { "f.py", "-k", "k=x=y" }, 1, "f.py", NULL, "[]", "{\"k\":{\"raw\":\"x=y\"}}" },
        { { "f.py", "--json-args", "[1, \"a\"]" }, 1, "f.py", NULL, "[{\"value\":1},{\"value\":\"a\"}]", "{}" },
        { { "f.py", "--json-kwargs", "{\"n\": [1]}" }, 1, "f.py", NULL, "[]", "{\"n\":{\"value\":[1]}}" },
        { { "f.py", "-a", "1", "2", "-a", "3" },
          1,
          "f.py",
          NULL,
          "[{\"raw\":\"1\"},{\"raw\":\"2\"},{\"raw\":\"3\"}]",
          "{}" },
        { { "f.py", "-a", "-5" }, 1, "f.py", NULL, "[{\"raw\":\"-5\"}]", "{}" },
        { { "f.py", "--n", "-5" }, 1, "f.py", NULL, "[]", "{\"n\":{\"raw\":\"-5\"}}" },
        { { "f.py", "--arg-name", "v" }, 1, "f.py", NULL, "[]", "{\"arg_name\":{\"raw\":\"v\"}}" },
        { { "--timeout", "5", "f.py", "--json" }, 1, "f.py", NULL, "[]", "{}" },
        { { "f.py", "--", "--not-an-option" }, 1, "f.py", NULL, "[{\"raw\":\"--not-an-option\"}]", "{}" },
        { { "f.py", "-a" }, 0 },
        /* --NAME with nothing after it, or an option next: a flag */
        { { "f.py", "--x" }, 1, "f.py", NULL, "[]", "{\"x\":{\"bare\":true}}" },
        { { "f.py", "--dry-run", "-a", "1", "--x", "--", "-y" },
          1,
          "f.py",
          NULL,
          "[{\"raw\":\"1\"},{\"raw\":\"-y\"}]",
          "{\"dry_run\":{\"bare\":true},\"x\":{\"bare\":true}}" },
        { { "f.py", "--x", "-", "--y", "-0.5" },
          1,
          "f.py",
          NULL,
          "[]",
          "{\"x\":{\"raw\":\"-\"},\"y\":{\"raw\":\"-0.5\"}}" },
        /* "-.5" is a number too (float("-.5")); no name starts with '.' */
        { { "f.py", "--y", "-.5", "-.25" }, 1, "f.py", NULL, "[{\"raw\":\"-.25\"}]", "{\"y\":{\"raw\":\"-.5\"}}" },
        /* float()'s -inf and -nan are values, as -5 is */
        { { "f.py", "--x", "-inf", "--y=-1", "-NaN", "-a", "-Infinity" },
          1,
          "f.py",
          NULL,
          "[{\"raw\":\"-NaN\"},{\"raw\":\"-Infinity\"}]",
          "{\"x\":{\"raw\":\"-inf\"},\"y\":{\"raw\":\"-1\"}}" },
        /* A flag given again is one; the last of --x and --no-x comes
         * last (runner.py: the last one wins). */
        { { "f.py", "--x", "--x" }, 1, "f.py", NULL, "[]", "{\"x\":{\"bare\":true}}" },
        { { "f.py", "--x", "--no-x", "--x" }, 1, "f.py", NULL, "[]", "{\"no_x\":{\"bare\":true},\"x\":{\"bare\":true}}" },
        { { "f.py", "--no-x", "--x", "--y", "1", "--no-x" },
          1,
          "f.py",
          NULL,
          "[]",
          "{\"x\":{\"bare\":true},\"y\":{\"raw\":\"1\"},\"no_x\":{\"bare\":true}}" },
        /* A flag and a value of one name: given twice. */
        { { "f.py", "--x=1", "--x" }, 0 },
        { { "f.py", "-k", "x=1", "--x" }, 0 },
        { { "f.py", "-k", "novalue" }, 0 },
        { { "f.py", "-k", "1bad=2" }, 0 },
        /* A keyword given again is one more element (argparse's append):
         * the signature decides whether the parameter takes several. */
        { { "f.py", "--x", "1", "--x", "2" }, 1, "f.py", NULL, "[]", "{\"x\":{\"raw\":[\"1\",\"2\"]}}" },
        { { "f.py", "--x", "1", "-k", "x=2", "--x=3", "--y", "4" },
          1,
          "f.py",
          NULL,
          "[]",
          "{\"x\":{\"raw\":[\"1\",\"2\",\"3\"]},\"y\":{\"raw\":\"4\"}}" },
        { { "f.py", "--x", "1", "--json-kwargs", "{\"x\": 2}" }, 0 },
        { { "f.py", "--x", "--x", "1" }, 0 },
        { { "f.py", "--json-args", "{}" }, 0 },
        /* raw after typed: the API has no way to say it (raw_args come first) */
        { { "f.py", "--json-args", "[1]", "-a", "q" }, 0 },
        { { "f.py", "--json-args", "[1]", "q" }, 0 },
        { { "f.py", "-a", "q", "--json-args", "[1]" }, 1, "f.py", NULL, "[{\"raw\":\"q\"},{\"value\":1}]", "{}" },
        { { "f.py", "--json-kwargs", "[1]" }, 0 },
        { { "f.py", "--json-args", "not json" }, 0 },
        { { "f.py", "--timeout", "abc" }, 0 },
        { { "f.py", "--timeout", "-1" }, 0 },
        { { "f.py", "--memory", "1K" }, 0 },
        { { "f.py", "--sandbox", "maybe" }, 0 },
        { { "f.py::1x" }, 0 },
        { { "--json" }, 0 },
        { { "f.py", "--json=1" }, 0 },
        /* a value that is not UTF-8 is refused, not dropped (JSON text) */
        { { "f.py", "-a", "\xff" }, 0 },
        { { "f.py", "--x",
            "a\xff"
            "b" },
          0 },
        { { "f.py", "-k", "x=\xff" }, 0 },
        { { "f.py", "--x=\xff" }, 0 },
        { { "f.py", "--env",
            "MODE=a\xff"
            "b" },
          0 },
        { { "f.py", "-a", "caf\xc3\xa9", "--env", "MODE=\xc3\xa9" },
          1,
          "f.py",
          NULL,
          "[{\"raw\":\"caf\xc3\xa9\"}]",
          "{}" },
};

static void test_rows(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                const Row *row = &rows[i];
                int argc = 0;
                while (argc < 12 && row->argv[argc])
                        argc++;
                RunArgs a;
                _cleanup_free_ char *err = NULL;
                int r = cli_parse_run_args(argc, (char **) row->argv, &a, &err);
                if (!row->ok) {
                        if (r >= 0)
                                fail_msg("row %zu (%s …) parsed but should not", i, row->argv[0]);
                        assert_non_null(err);
                        continue;
                }
                if (r < 0)
                        fail_msg("row %zu: %s", i, err);
                assert_string_equal(a.file, row->file);
                if (row->function)
                        assert_string_equal(a.function, row->function);
                else
                        assert_null(a.function);
                assert_string_equal(a.args_json, row->args);
                assert_string_equal(a.kwargs_json, row->kwargs);
                run_args_done(&a);
        }
}

static void test_options(void **state) {
        const char *argv[] = { "f.py", "--timeout", "2.5s", "--memory", "256M", "--max-output", "1K",
                               "--max-procs", "8", "--network", "--sandbox=none", "--json" };
        RunArgs a;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(cli_parse_run_args(ELEMENTSOF(argv), (char **) argv, &a, &err), 0);
        assert_int_equal(a.limits.timeout_ms, 2500);
        assert_int_equal(a.limits.memory_bytes, 256ULL << 20);
        assert_int_equal(a.limits.max_output_bytes, 1024);
        assert_int_equal(a.limits.max_procs, 8);
        assert_true(a.limits.network);
        assert_false(a.limits.network_off);
        assert_int_equal(a.sandbox, SANDBOX_MODE_NONE);
        assert_true(a.json_output);
        run_args_done(&a);
}

/* The runner's --NAME options a parameter may share the name of, as
 * triples (parameter, as written, -k's value); a refused value of one
 * says how such a parameter is given. */
static void test_shadowing(void **state) {
        const char *argv[] = { "--timeout",   "7",   "f.py", "--env=A=1", "--allow-sdist", "-a", "1",
                               "--json-args", "[2]", "-k",   "n=3" };
        RunArgs a;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(cli_parse_run_args(ELEMENTSOF(argv), (char **) argv, &a, &err), 0);
        const char *want[] = { "timeout",     "--timeout 7",   "7",   "env", "--env=A=1", "A=1",
                               "allow_sdist", "--allow-sdist", "true" };
        assert_int_equal(strv_length(a.shadowing), ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                assert_string_equal(a.shadowing[i], want[i]);
        run_args_done(&a);

        /* The refusals a parameter's value would get; a value of the
         * option's own kind, refused (--env 1A=b, --max-procs many), is
         * said in the option's words alone. */
        const char *bad[][2] = { { "--env", "prod" },
                                 { "--timeout", NULL },
                                 { "--network=yes", NULL },
                                 { "--env", "1A=b" },
                                 { "--max-procs", "many" } };
        const char *hint[] = { "(a parameter 'env' of the function is given as -k env=VALUE)",
                               "(a parameter 'timeout' of the function is given as -k timeout=VALUE)",
                               "(a parameter 'network' of the function is given as -k network=VALUE)", NULL, NULL };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                const char *v[] = { "f.py", bad[i][0], bad[i][1] };
                char *e = NULL;
                assert_true(cli_parse_run_args(bad[i][1] ? 3 : 2, (char **) v, &a, &e) < 0);
                if (hint[i] ? !endswith(e, hint[i]) : strstr(e, "-k ") != NULL)
                        fail_msg("%s: %s", bad[i][0], e);
                free(e);
        }
}

static void test_json_error(void **state) {
        json_error_t e;
        assert_null(json_loads("{\"a\":\n  1,,}", 0, &e));
        _cleanup_free_ char *m = cli_json_error("ev.json", "{\"a\":\n  1,,}", &e);
        assert_string_equal(m, "ev.json is not JSON: line 2, column 5: string or '}' expected near ','");
        assert_null(json_loads(" \n", JSON_DECODE_ANY, &e));
        _cleanup_free_ char *empty = cli_json_error("--json-kwargs", " \n", &e);
        assert_string_equal(empty, "--json-kwargs is empty: give a JSON value");
}

/* --idempotency-key: the daemon's rule (idempotency_key_is_valid()),
 * refused as a usage error that does not echo the key; a later one wins;
 * -k idempotency_key=V stays the function's keyword. */
static void test_idempotency_key(void **state) {
        RunArgs a;
        char *err = NULL;
        const char *ok[] = { "f.py", "--idempotency-key",  "k1", "--idempotency-key=order-42",
                             "-k",   "idempotency_key=x y" };
        assert_int_equal(cli_parse_run_args(ELEMENTSOF(ok), (char **) ok, &a, &err), 0);
        assert_string_equal(a.idempotency_key, "order-42");
        assert_string_equal(a.kwargs_json, "{\"idempotency_key\":{\"raw\":\"x y\"}}");
        run_args_done(&a);
        const char *bad[] = { "", "two words", "a\nb", "caf\xc3\xa9" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                const char *argv[] = { "f.py", "--idempotency-key", bad[i] };
                assert_int_equal(cli_parse_run_args(ELEMENTSOF(argv), (char **) argv, &a, &err), -EINVAL);
                assert_string_equal(err, "--idempotency-key takes 1..200 visible ASCII characters (no spaces)");
                free(err);
                err = NULL;
        }
        const char *none[] = { "f.py", "--idempotency-key" };
        assert_int_equal(cli_parse_run_args(ELEMENTSOF(none), (char **) none, &a, &err), -EINVAL);
        free(err);
}

/* chain's grammar: a word naming a step starts the next one wherever it
 * stands ("t.py::two -a 1 -a 2 t.py::two" was one step given
 * "t.py::two" as its third argument); a value stays a value. */
typedef struct ChainRow {
        const char *argv[12];
        int ok;
        const char *steps[4];
        const char *args, *kwargs;
} ChainRow;

static const ChainRow chain_rows[] = {
        { { "t.py::two", "-a", "1", "-a", "2", "t.py::two" },
          1,
          { "t.py::two", "t.py::two" },
          "[{\"raw\":\"1\"},{\"raw\":\"2\"}]",
          "{}" },
        { { "a.py", "b.py", "-a", "5" }, 1, { "a.py", "b.py" }, "[{\"raw\":\"5\"}]", "{}" },
        /* a step is a pipeline task: one word per keyword */
        { { "a.py", "b.py", "--xs", "1", "--xs", "2" }, 0 },
        { { "a.py", "b.py", "5", "c.py::f" }, 1, { "a.py", "b.py", "c.py::f" }, "[{\"raw\":\"5\"}]", "{}" },
        { { "a.py", "--timeout", "5s", "dir/b.py" }, 1, { "a.py", "dir/b.py" }, "[]", "{}" },
        /* A value stays a value: after -a, after --NAME, after --. */
        { { "a.py", "-a", "x.py", "--name", "y.py", "--", "z.py" },
          1,
          { "a.py" },
          "[{\"raw\":\"x.py\"},{\"raw\":\"z.py\"}]",
          "{\"name\":{\"raw\":\"y.py\"}}" },
        { { "a.py", "-k", "f=b.py::g" }, 1, { "a.py" }, "[]", "{\"f\":{\"raw\":\"b.py::g\"}}" },
        /* --no-NAME takes no value: before a step it is the flag
         * (`chain a.py --no-x b.py`); --no-NAME=WORD is a value. */
        { { "a.py", "--no-x", "b.py" }, 1, { "a.py", "b.py" }, "[]", "{\"no_x\":{\"bare\":true}}" },
        { { "a.py", "--x", "--no-x", "b.py::g" },
          1,
          { "a.py", "b.py::g" },
          "[]",
          "{\"x\":{\"bare\":true},\"no_x\":{\"bare\":true}}" },
        { { "a.py", "--no-x", "word" }, 1, { "a.py" }, "[]", "{\"no_x\":{\"raw\":\"word\"}}" },
        { { "a.py", "--no-x=b.py" }, 1, { "a.py" }, "[]", "{\"no_x\":{\"raw\":\"b.py\"}}" },
        /* The first word is the first step whatever its form; a bare
         * word that names no step is a value. */
        { { "script", "word", "b.py" }, 1, { "script", "b.py" }, "[{\"raw\":\"word\"}]", "{}" },
        { { "a.py", "b.py::not-a-name" }, 0 },
        { { "a.py", "::f" }, 0 },
        { { "-a", "1" }, 0 },
};

static void test_chain_rows(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(chain_rows); i++) {
                const ChainRow *row = &chain_rows[i];
                int argc = 0;
                while (argc < 12 && row->argv[argc])
                        argc++;
                RunArgs a;
                _cleanup_free_ char *err = NULL;
                int r = cli_parse_chain_args(argc, (char **) row->argv, &a, &err);
                if (!row->ok) {
                        if (r >= 0)
                                fail_msg("chain row %zu (%s …) parsed but should not", i, row->argv[0]);
                        assert_non_null(err);
                        continue;
                }
                if (r < 0)
                        fail_msg("chain row %zu: %s", i, err);
                size_t n = 0;
                for (; n < 4 && row->steps[n]; n++)
                        assert_string_equal(a.steps[n], row->steps[n]);
                assert_int_equal(strv_length(a.steps), n);
                assert_string_equal(a.target, a.steps[0]);
                assert_string_equal(a.args_json, row->args);
                assert_string_equal(a.kwargs_json, row->kwargs);
                run_args_done(&a);
        }
        /* run's grammar has no steps: the word is a value. */
        const char *argv[] = { "a.py", "b.py" };
        RunArgs a;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(cli_parse_run_args(ELEMENTSOF(argv), (char **) argv, &a, &err), 0);
        assert_null(a.steps);
        assert_string_equal(a.args_json, "[{\"raw\":\"b.py\"}]");
        run_args_done(&a);
}

static void test_durations_and_sizes(void **state) {
        uint64_t v;
        assert_int_equal(cli_parse_duration_ms("30", &v), 0);
        assert_int_equal(v, 30000);
        assert_int_equal(cli_parse_duration_ms("500ms", &v), 0);
        assert_int_equal(v, 500);
        assert_int_equal(cli_parse_duration_ms("2m", &v), 0);
        assert_int_equal(v, 120000);
        assert_int_equal(cli_parse_duration_ms("0", &v), -EINVAL);
        assert_int_equal(cli_parse_duration_ms("1x", &v), -EINVAL);
        assert_int_equal(cli_parse_size("256", &v), 0);
        assert_int_equal(v, 256ULL << 20);
        assert_int_equal(cli_parse_size("1G", &v), 0);
        assert_int_equal(v, 1ULL << 30);
        assert_int_equal(cli_parse_size("512KiB", &v), 0);
        assert_int_equal(v, 512ULL << 10);
        assert_int_equal(cli_parse_size("100b", &v), 0);
        assert_int_equal(v, 100);
        assert_int_equal(cli_parse_size("1T", &v), -EINVAL);
        assert_int_equal(cli_parse_size("", &v), -EINVAL);
}

/* `ps --status`: the run object's statuses, any case, and nothing else. */
/* RUN_STATUS_NAMES is the status table's names in order: the messages'
 * list cannot drift from what is accepted. */
static void test_run_status_names(void **state) {
        Buf b;
        buf_init(&b, 1024);
        for (int i = 0; i < _RUN_STATUS_MAX; i++)
                buf_printf(&b, "%s%s", i ? ", " : "", run_status_to_string((RunStatus) i));
        assert_string_equal(b.data, RUN_STATUS_NAMES);
        buf_free(&b);
}

static void test_run_status(void **state) {
        static const struct {
                const char *word, *want; /* want: the set joined by ','; NULL: refused */
        } states[] = {
                { "queued", "queued" },
                { "running", "running" },
                { "succeeded", "succeeded" },
                { "failed", "failed" },
                { "invalid", "invalid" },
                { "deps_failed", "deps_failed" },
                { "killed", "killed" },
                { "cancelled", "cancelled" },
                { "error", "error" },
                { "lost", "lost" },
                { "FAILED", "failed" },
                { "Deps_Failed", "deps_failed" },
                { "succeeded,failed", "succeeded,failed" },
                { "failed,KILLED,failed", "failed,killed" },
                { "", NULL },
                { "fail", NULL },
                { "failed ", NULL },
                { "canceled", NULL },
                { "deps-failed", NULL },
                { "failed,", NULL },
                { "failed, killed", NULL },
                { "validating", NULL },
                { "pending", NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                _cleanup_strv_free_ char **got = NULL;
                _cleanup_free_ char *err = NULL;
                int r = cli_parse_states(states[i].word, run_status_table(), RUN_STATUS_NAMES, &got, &err);
                if (states[i].want) {
                        char joined[256] = "";
                        for (size_t k = 0; got && got[k]; k++)
                                snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", k ? "," : "",
                                         got[k]);
                        assert_int_equal(r, 0);
                        assert_string_equal(joined, states[i].want);
                        assert_null(err);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_null(got);
                        assert_non_null(strstr(err, "(queued, running, succeeded, failed, invalid, deps_failed, "
                                                    "killed, cancelled, error, lost)"));
                }
        }
        _cleanup_free_ char *err = NULL;
        _cleanup_strv_free_ char **got = NULL;
        assert_int_equal(cli_parse_states(NULL, run_status_table(), RUN_STATUS_NAMES, &got, &err), -EINVAL);
        assert_non_null(strstr(err, "--status needs a state"));
        free(err);
        err = NULL;
        /* Another table (dag ls's): its names, and its list in the message. */
        static const char *const dag[] = { "validating", "failed", NULL };
        assert_int_equal(cli_parse_states("Validating,failed", dag, "validating, failed", &got, &err), 0);
        assert_int_equal(strv_length(got), 2);
        assert_string_equal(got[0], "validating");
        assert_int_equal(cli_parse_states("lost", dag, "validating, failed", &got, &err), -EINVAL);
        assert_string_equal(err, "unknown state 'lost' (validating, failed)");
}

static bool declares(const char *text) {
        return cli_source_declares_requirements(text, strlen(text));
}

static void test_source_declares_requirements(void **state) {
        assert_true(declares("@requirements({'six': '1.16.0'})\ndef f():\n    pass\n"));
        assert_true(declares("import pysprinter\n\n    @pysprinter.requirements({})\ndef f(): pass"));
        assert_true(declares("x = 1\n\t@ pysprinter . requirements ({\n  'six': '*'})"));
        assert_true(declares("@requirements(")); /* the last line, no newline */
        assert_true(declares("\r\n@requirements({})\r\n"));
        assert_false(declares("# no requirements({...}) here\ndef main(): pass\n"));
        assert_false(declares("#@requirements({})\n"));
        assert_false(declares("s = 'requirements({})'\n"));
        assert_false(declares("@requirements\ndef f(): pass\n")); /* the validator refuses it anyway */
        assert_false(declares("@my_requirements({})\n"));
        assert_false(declares("@pysprinter.requirement({})\n"));
        assert_false(declares("@pysprinter.\nrequirements({})\n"));
        assert_false(declares(""));
        assert_false(cli_source_declares_requirements("@requirements(", 13)); /* cut before its ( */
}

static void test_deployed_name(void **state) {
        static const struct {
                const char *word, *name;
                long version;
        } ok[] = { { "hook", "hook", 0 },
                   { "hook::2", "hook", 2 },
                   { "hook:2", "hook", 2 },
                   { "hook::$LATEST", "hook", 0 },
                   { "hook:$LATEST", "hook", 0 },
                   { "hook::10", "hook", 10 },
                   { "arn:aws:lambda:eu-west-1:123456789012:function:hook:3", "hook", 3 },
                   { "123456789012:function:hook", "hook", 0 } };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                char *name = NULL;
                long v = -1;
                assert_int_equal(cli_parse_deployed_name(ok[i].word, &name, &v), 0);
                assert_string_equal(name, ok[i].name);
                assert_int_equal(v, ok[i].version);
                free(name);
        }
        static const char *const bad[] = { "hook::01", "hook:+1", "hook:: 1", "hook::x",           "hook:",
                                           "hook::",   "hook::0", "hook::-1", "hook::99999999999", "hook::$latest" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *name = NULL;
                long v = -1;
                assert_int_equal(cli_parse_deployed_name(bad[i], &name, &v), -EINVAL);
                assert_null(name);
                assert_int_equal(v, -1);
        }
}

/* cli_parse_deployed_ref(): invoke's NAME::ALIAS as well; a number is
 * still a version, and what is neither is still refused. */
static void test_deployed_ref(void **state) {
        static const struct {
                const char *word, *name, *alias;
                long version;
        } ok[] = { { "hook", "hook", NULL, 0 },
                   { "hook::2", "hook", NULL, 2 },
                   { "hook::$LATEST", "hook", NULL, 0 },
                   { "hook::prod", "hook", "prod", 0 },
                   { "hook:prod", "hook", "prod", 0 },
                   { "hook::x", "hook", "x", 0 },
                   { "hook::1a", "hook", "1a", 0 },
                   { "arn:aws:lambda:eu-west-1:123456789012:function:hook:live", "hook", "live", 0 } };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                char *name = NULL, *alias = (char *) "unset";
                long v = -1;
                assert_int_equal(cli_parse_deployed_ref(ok[i].word, &name, &v, &alias), 0);
                assert_string_equal(name, ok[i].name);
                assert_int_equal(v, ok[i].version);
                if (ok[i].alias)
                        assert_string_equal(alias, ok[i].alias);
                else
                        assert_null(alias);
                free(name);
                free(alias);
        }
        static const char *const bad[] = { "hook::01", "hook:", "hook::0", "hook::$latest", "hook::a.b", "hook::a b" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *name = NULL, *alias = NULL;
                long v = -1;
                assert_int_equal(cli_parse_deployed_ref(bad[i], &name, &v, &alias), -EINVAL);
                assert_null(name);
                assert_null(alias);
        }
}

static void test_invoke_over_words(void **state) {
        (void) state;
        static const struct {
                const char *words[6];
                bool over;
                const char *payload; /* the word cli_payload_word() finds */
        } words_rows[] = {
                { { "f" }, false, NULL },
                { { "f", "--over", "in.jsonl" }, true, NULL },
                { { "f", "--over=in.jsonl" }, true, NULL },
                { { "f", "-j", "2", "--over", "-" }, true, NULL },
                { { "f", "--", "--over", "x" }, false, NULL }, /* an argument after -- */
                { { "f", "--overs", "x" }, false, NULL },      /* a keyword argument 'overs' */
                { { "--over", "x", "f" }, true, NULL },
                { { "f", "--payload", "{}" }, false, "--payload" },
                { { "f", "--payload={}" }, false, "--payload={}" },
                { { "f", "--payload-file", "e.json" }, false, "--payload-file" },
                { { "f", "--payload-file=e.json" }, false, "--payload-file=e.json" },
                { { "f", "-" }, false, "-" },
                { { "f", "--over", "-", "-" }, true, "-" },
                { { "-" }, false, NULL }, /* NAME, not the event */
                { { "f", "--", "-" }, false, NULL },
                { { "f", "--payloads", "x" }, false, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(words_rows); i++) {
                int n = 0;
                while (n < 6 && words_rows[i].words[n])
                        n++;
                char **argv = (char **) words_rows[i].words;
                assert_int_equal(cli_over_given(n, argv), words_rows[i].over);
                const char *w = cli_payload_word(n, argv);
                if (words_rows[i].payload)
                        assert_string_equal(w, words_rows[i].payload);
                else
                        assert_null(w);
        }
        assert_false(cli_over_given(0, NULL));
        assert_null(cli_payload_word(0, NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rows),
                cmocka_unit_test(test_options),
                cmocka_unit_test(test_shadowing),
                cmocka_unit_test(test_json_error),
                cmocka_unit_test(test_idempotency_key),
                cmocka_unit_test(test_chain_rows),
                cmocka_unit_test(test_durations_and_sizes),
                cmocka_unit_test(test_run_status),
                cmocka_unit_test(test_run_status_names),
                cmocka_unit_test(test_source_declares_requirements),
                cmocka_unit_test(test_deployed_name),
                cmocka_unit_test(test_deployed_ref),
                cmocka_unit_test(test_invoke_over_words),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
