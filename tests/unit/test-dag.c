/* dag: the pipeline parser, references, cycle messages (no engine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

#include <jansson.h>

#include "dag-internal.h"
#include "dag.h"

static char dir[] = "/tmp/test-dag-XXXXXX";

static int setup(void **state) {
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *p = path_join(dir, "f.py");
        const char *src = "def f(x=None, y=None):\n    return x\n";
        assert_int_equal(write_file_atomic(p, src, strlen(src), 0644), 0);
        return 0;
}

static int teardown(void **state) {
        rm_rf(dir);
        return 0;
}

static int parse(const char *text, char *const *params, Dag **ret, char **err) {
        return dag_parse(text, strlen(text), "p.yaml", dir, params, ret, err);
}

static void test_diamond(void **state) {
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        int r = parse("tasks:\n"
                      "  a: {file: f.py}\n"
                      "  b: {file: f.py, args: ['${a}']}\n"
                      "  c: {file: f.py, kwargs: {x: 'n=${a.k.0}'}}\n"
                      "  d: {file: f.py, args: ['${b}', '${c}'], depends: [a]}\n",
                      NULL, &d, &err);
        assert_int_equal(r, 0);
        assert_int_equal(dag_n_tasks(d), 4);
        DagTaskInfo t;
        dag_task_info(d, 3, &t);
        assert_string_equal(t.name, "d");
        assert_int_equal(t.n_deps, 3);
        assert_int_equal(t.depth, 2);
        dag_task_info(d, 0, &t);
        assert_int_equal(t.depth, 0);
        assert_int_equal(t.n_dependents, 3);
        dag_free(d);
}

static const struct {
        const char *yaml;
        const char *message;
} bad[] = {
        { "tasks:\n  a: {file: f.py, args: ['${b}']}\n  b: {file: f.py, args: ['${a}']}\n", "cycle: " },
        { "tasks:\n  a: {file: f.py, args: ['${zz}']}\n", "unknown task 'zz'" },
        { "tasks:\n  a: {file: f.py, args: ['${params.q}']}\n", "unknown parameter 'q'" },
        { "tasks:\n  a: {file: f.py, args: ['${a}']}\n", "its own result" },
        { "tasks:\n  a: {file: nope.py}\n", "cannot read nope.py" },
        { "tasks:\n  a: {file: f.py, wat: 1}\n", "unknown key 'wat'" },
        /* The message names the bad key after the env's JSON is freed: it
         * read freed memory (found by fuzz/fuzz-dag.c; the ASan unit build
         * sees it). */
        { "tasks:\n  a: {file: f.py, env: {x@: \"1\"}}\n", "'x@' is not one" },
        /* A task name twice: in a mapping a YAML key given twice, in a
         * list the same name: field. */
        { "tasks:\n  a: {file: f.py}\n  a: {file: f.py}\n", "p.yaml:3:3: duplicate key 'a' (first at line 2)" },
        { "tasks:\n  - {name: a, file: f.py}\n  - {name: a, file: f.py}\n",
          "p.yaml:3:5: task 'a' is defined twice (first at line 2)" },
        /* FILE::FUNC and another function: ran whichever key came last. */
        { "tasks:\n  a: {file: f.py::x, function: y}\n", "file names function 'x' and function: 'y'" },
        { "tasks:\n  a: {function: y, file: f.py::x}\n", "file names function 'x' and function: 'y'" },
        { "tasks:\n  a: {file: f.py, args: ['${a b}']}\n", "not a reference" },
        { "tasks:\n  a: {file: f.py, args: ['${x']}\n", "unterminated" },
        { "tasks:\n  a: {file: f.py, limits: {timeout: soon}}\n", "bad value 'soon'" },
        { "tasks:\n  a: {file: f.py, retries: 99}\n", "retries must be" },
        { "tasks: {}\n", "1 to" },
        { "tasks:\n  a: [1\n", "YAML error" },
        { "- 1\n", "a pipeline is a mapping" },
        { "tasks:\n  params: {file: f.py}\n", "not valid" },
        { "tasks:\n  a: {file: f.py, depends: [b]}\n", "unknown task 'b'" },
        { "tasks:\n  a: {file: f.py, outputs: [x, y]}\n", "outputs takes one dataset name" },
        { "tasks:\n  a: {file: f.py, outputs: 'no/slash'}\n", "is not a dataset name" },
        { "tasks:\n  a: {file: f.py, outputs: x, data: [x]}\n", "reads the dataset 'x' it outputs" },
        { "tasks:\n  a: {file: f.py, outputs: x}\n  b: {file: f.py, outputs: x}\n  c: {file: f.py, data: [x]}\n",
          "two tasks output the dataset 'x'" },
        /* raw_kwargs: the API's (a word, words, or true for a flag). */
        { "tasks:\n  a: {file: f.py, raw_kwargs: [x]}\n", "raw_kwargs must be a mapping" },
        { "tasks:\n  a: {file: f.py, raw_kwargs: {x: false}}\n", "raw_kwargs 'x' must be a string" },
        { "tasks:\n  a: {file: f.py, raw_kwargs: {x: 5}}\n", "raw_kwargs 'x' must be a string" },
        { "tasks:\n  a: {file: f.py, raw_kwargs: {x: []}}\n", "raw_kwargs 'x' must be a string" },
        { "tasks:\n  a: {file: f.py, raw_kwargs: {x-y: true}}\n", "'x-y' is not a Python identifier" },
        { "tasks:\n  a: {file: f.py, raw_kwargs: {x: true}, kwargs: {x: 1}}\n",
          "keyword argument 'x' given in both raw_kwargs and kwargs" },
};

/* raw_kwargs is kept as written (its order is its meaning: the later of
 * `flag: true` and `no_flag: true` wins in the worker). */
static void test_raw_kwargs(void **state) {
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(parse("tasks:\n  a: {file: f.py, raw_kwargs: {y: true, no_y: true, x: [\"1\", \"2\"]}}\n",
                               NULL, &d, &err),
                         0);
        _cleanup_free_ char *text = json_dumps(d->tasks[0].raw_kwargs, JSON_COMPACT);
        assert_string_equal(text, "{\"y\":true,\"no_y\":true,\"x\":[\"1\",\"2\"]}");
        dag_free(d);
}

/* data: [NAME] of a dataset another task outputs is an edge to that task
 * (data: [NAME@V] is not: it names a fixed version). */
static void test_outputs_make_edges(void **state) {
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        int r = parse("tasks:\n  make: {file: f.py, outputs: parts}\n  use: {file: f.py, data: [parts]}\n"
                      "  pinned: {file: f.py, data: ['parts@1']}\n",
                      NULL, &d, &err);
        assert_int_equal(r, 0);
        DagTaskInfo t;
        dag_task_info(d, 1, &t);
        assert_int_equal(t.n_deps, 1);
        assert_int_equal(t.depth, 1);
        dag_task_info(d, 2, &t);
        assert_int_equal(t.n_deps, 0);
        dag_free(d);
}

static void test_bad(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Dag *d = NULL;
                _cleanup_free_ char *err = NULL;
                int r = parse(bad[i].yaml, NULL, &d, &err);
                if (r >= 0 || !err || !strstr(err, bad[i].message))
                        fail_msg("row %zu: r=%d err=%s (wanted %s)", i, r, err ?: "(null)", bad[i].message);
                assert_true(startswith(err, "p.yaml"));
        }
}

/* A --param the pipeline neither declares nor references is refused
 * (dag_check_params); a referenced undeclared one is a parameter. */
static void test_given_params(void **state) {
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        char *typo[] = { (char *) "limt=5", NULL }, *used[] = { (char *) "n=5", (char *) "limit=2", NULL };
        const char *yaml = "params: {limit: 3}\ntasks:\n  a: {file: f.py, args: ['${params.limit}', 'x${params.n}']}\n";
        assert_int_equal(
                parse("params: {limit: 3}\ntasks:\n  a: {file: f.py, args: ['${params.limit}']}\n", typo, &d, &err), 0);
        assert_int_equal(dag_check_params(d, typo, &err), -ENOENT);
        assert_string_equal(
                err, "cannot set parameter 'limt': p.yaml has no parameter of that name (its parameters: limit)");
        d = dag_free(d);
        free(err);
        err = NULL;
        assert_int_equal(parse(yaml, used, &d, &err), 0);
        assert_int_equal(dag_check_params(d, used, &err), 0);
        dag_free(d);
}

static void test_cycle_names_tasks(void **state) {
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        int r = parse("tasks:\n  x: {file: f.py, depends: [z]}\n  y: {file: f.py, depends: [x]}\n"
                      "  z: {file: f.py, depends: [y]}\n",
                      NULL, &d, &err);
        assert_true(r < 0);
        /* Execution order (a -> b: b needs a), from wherever the search met it. */
        assert_true(strstr(err, "x -> y -> z -> x") || strstr(err, "y -> z -> x -> y") || strstr(err, "z -> x -> y -> z"));
        /* FILE:LINE:COL like every other refusal (docs/dag.md): the
         * cycle's first named task. */
        assert_true(startswith(err, "p.yaml:2:6: the tasks form a cycle: x -> ") ||
                    startswith(err, "p.yaml:3:6: the tasks form a cycle: y -> ") ||
                    startswith(err, "p.yaml:4:6: the tasks form a cycle: z -> "));
        free(err);
        err = NULL;
        /* The search starts outside the cycle: still a task of it. */
        r = parse("tasks:\n  w: {file: f.py, depends: [u]}\n  u: {file: f.py, depends: [v]}\n"
                  "  v: {file: f.py, depends: [u]}\n",
                  NULL, &d, &err);
        assert_true(r < 0);
        assert_true(startswith(err, "p.yaml:3:6: the tasks form a cycle: u -> ") ||
                    startswith(err, "p.yaml:4:6: the tasks form a cycle: v -> "));
}

static void test_params(void **state) {
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        char *params[] = { (char *) "n=7", NULL };
        assert_int_equal(parse("params: {n: 1}\ntasks:\n  a: {file: f.py, args: ['${params.n}']}\n", params, &d, &err), 0);
        dag_free(d);
        char *bad_params[] = { (char *) "=7", NULL };
        assert_true(parse("tasks:\n  a: {file: f.py}\n", bad_params, &d, &err) < 0);
}

static void test_key_given_twice(void **state) {
        /* Refused, not "the last one wins" (docs/internals/yaml.md): the
         * reader never sees the first one dropped. */
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(parse("tasks:\n  a: {file: nope.py, file: f.py}\n  b: {file: f.py}\n", NULL, &d, &err),
                         -EINVAL);
        assert_string_equal(err, "p.yaml:2:22: duplicate key 'file' (first at line 2, column 7)");
        assert_null(d);
        free(err);
        err = NULL;
        assert_int_equal(parse("tasks:\n  a:\n    file: f.py\n    data: [x]\n    data: [y]\n", NULL, &d, &err),
                         -EINVAL);
        assert_string_equal(err, "p.yaml:5:5: duplicate key 'data' (first at line 4)");
}

static void test_states(void **state) {
        for (int s = 0; s < _DAG_TASK_STATE_MAX; s++)
                assert_int_equal(dag_task_state_from_string(dag_task_state_to_string((DagTaskState) s)), s);
        assert_false(dag_task_state_is_done(DAG_TASK_RUNNING));
        assert_true(dag_task_state_is_done(DAG_TASK_CACHED));
}

/* ---- template substitution: ${task}, ${task.key…}, ${params.NAME}, $${ ---- */

/* Results the references resolve against: task "a" and parameter "n". */
static const char *const RESULTS = "{\"a\": {\"x\": 1, \"s\": \"str\", \"l\": [1, 2], \"f\": 2.5, \"t\": true, "
                                   "\"z\": null, \"o\": {\"k\": \"v\"}}}";

static json_t *test_lookup(const Ref *r, void *ud, char **ret_error) {
        json_t *results = ud;
        if (r->param) {
                if (streq(r->task, "n"))
                        return json_object_get(json_object_get(results, "params"), "n");
                *ret_error = xasprintf("unknown parameter '%s'", r->task);
                return NULL;
        }
        json_t *v = json_object_get(results, r->task);
        if (!v) {
                *ret_error = xasprintf("unknown task '%s'", r->task);
                return NULL;
        }
        for (char **k = r->path; k && *k && v; k++)
                v = json_is_array(v) ? json_array_get(v, strtoul(*k, NULL, 10)) : json_object_get(v, *k);
        if (!v)
                *ret_error = xstrdup("no such key");
        return v;
}

static void test_template_subst(void **state) {
        static const struct {
                const char *tmpl; /* a JSON value as the YAML gives it */
                const char *want; /* the JSON value after substitution, or NULL */
                const char *error; /* with want NULL: a substring of the error */
        } rows[] = {
                /* A whole-string reference keeps the value's JSON type. */
                { "\"${a}\"", "{\"x\": 1, \"s\": \"str\", \"l\": [1, 2], \"f\": 2.5, \"t\": true, \"z\": null, "
                              "\"o\": {\"k\": \"v\"}}", NULL },
                { "\"${a.x}\"", "1", NULL },
                { "\"${a.f}\"", "2.5", NULL },
                { "\"${a.t}\"", "true", NULL },
                { "\"${a.z}\"", "null", NULL },
                { "\"${a.s}\"", "\"str\"", NULL },
                { "\"${a.l}\"", "[1, 2]", NULL },
                { "\"${a.l.1}\"", "2", NULL },
                { "\"${a.o.k}\"", "\"v\"", NULL },
                { "\"${params.n}\"", "3", NULL },
                /* Embedded references are stringified: strings as they are,
                 * anything else as compact JSON. */
                { "\"n=${a.x}\"", "\"n=1\"", NULL },
                { "\"${a.s}-${a.x}\"", "\"str-1\"", NULL },
                { "\"${a.x}${a.x}\"", "\"11\"", NULL },
                { "\"l=${a.l}\"", "\"l=[1,2]\"", NULL },
                { "\"o=${a.o}\"", "\"o={\\\"k\\\":\\\"v\\\"}\"", NULL },
                { "\"z=${a.z} t=${a.t}\"", "\"z=null t=true\"", NULL },
                { "\"p${params.n}\"", "\"p3\"", NULL },
                { "\" ${a.x}\"", "\" 1\"", NULL }, /* not whole: a space before */
                /* $${ is a literal ${; a lone $ is nothing special. */
                { "\"$${a}\"", "\"${a}\"", NULL },
                { "\"$${a.x} is ${a.x}\"", "\"${a.x} is 1\"", NULL },
                { "\"cost $5, {braces}\"", "\"cost $5, {braces}\"", NULL },
                { "\"\"", "\"\"", NULL },
                /* Containers are walked; other values pass through. */
                { "[\"${a.x}\", {\"k\": \"${a.s}!\", \"n\": 7}, 7, null, false]",
                  "[1, {\"k\": \"str!\", \"n\": 7}, 7, null, false]", NULL },
                { "{\"deep\": [[\"${a.l}\"]]}", "{\"deep\": [[[1, 2]]]}", NULL },
                { "42", "42", NULL },
                /* Malformed references. */
                { "\"${a\"", NULL, "unterminated reference" },
                { "\"x ${a.x\"", NULL, "unterminated reference" },
                { "\"${}\"", NULL, "is not a reference" },
                { "\"${1a}\"", NULL, "is not a reference" },
                { "\"${a b}\"", NULL, "is not a reference" },
                { "\"${a..x}\"", NULL, "empty or too deep key path" },
                { "\"${a.}\"", NULL, "empty or too deep key path" },
                { "\"${a.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30.31.32.33}\"",
                  NULL, "empty or too deep key path" },
                { "\"${params}\"", NULL, "${params.NAME}" },
                { "\"${params.n.x}\"", NULL, "${params.NAME}" },
                /* References that do not resolve: the lookup's error. */
                { "\"${nope}\"", NULL, "unknown task 'nope'" },
                { "\"in ${nope.x} text\"", NULL, "unknown task 'nope'" },
                { "[1, \"${params.m}\"]", NULL, "unknown parameter 'm'" },
        };
        json_t *results = json_loads(RESULTS, 0, NULL);
        assert_non_null(results);
        json_object_set_new(results, "params", json_pack("{s:i}", "n", 3));
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                json_t *tmpl = json_loads(rows[i].tmpl, JSON_DECODE_ANY, NULL);
                if (!tmpl)
                        fail_msg("row %zu: bad template JSON %s", i, rows[i].tmpl);
                _cleanup_free_ char *err = NULL;
                json_t *got = template_subst(tmpl, test_lookup, results, &err);
                if (rows[i].want) {
                        json_t *want = json_loads(rows[i].want, JSON_DECODE_ANY, NULL);
                        _cleanup_free_ char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                        if (!want || !got || !json_equal(got, want))
                                fail_msg("row %zu: %s -> %s (error %s), want %s", i, rows[i].tmpl, g ?: "NULL",
                                         err ?: "-", rows[i].want);
                        json_decref(want);
                } else if (got || !err || !strstr(err, rows[i].error))
                        fail_msg("row %zu: %s: want an error with \"%s\", got %s", i, rows[i].tmpl, rows[i].error,
                                 err ?: "success");
                json_decref(got);
                json_decref(tmpl);
        }
        json_decref(results);
}

/* The one path rule for confined pipelines (dag_file_check). */
static void test_file_check_table(void **state) {
        static const struct {
                const char *file;
                int want;
        } rows[] = {
                { "f.py", 0 },          { "lib/f.py", 0 },     { "a.b/c_d-e.py", 0 },  { "", -EINVAL },
                { "/etc/passwd", -EINVAL }, { "../f.py", -EINVAL }, { "a/../../f.py", -EINVAL },
                { "a/./f.py", -EINVAL }, { "./f.py", -EINVAL },  { "a//f.py", -EINVAL }, { "lib/", -EINVAL },
                { "..", -EINVAL },      { ".", -EINVAL },      { "f.py\nx", -EINVAL }, { "..f.py", 0 },
                { "f..py", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *err = NULL;
                int r = dag_file_check(NULL, rows[i].file, &err);
                if (r != rows[i].want)
                        fail_msg("'%s': got %d, want %d", rows[i].file, r, rows[i].want);
                if (r < 0)
                        assert_non_null(strstr(err, "relative path"));
        }
        _cleanup_free_ char *err = NULL;
        assert_int_equal(dag_file_check(NULL, NULL, &err), -EINVAL);
}

/* With a base directory: real paths, so a symlink cannot lead out; and the
 * confined loader refuses before it reads. */
static void test_file_check_symlink_and_loader(void **state) {
        _cleanup_free_ char *link = path_join(dir, "out.py");
        (void) unlink(link);
        assert_int_equal(symlink("/etc/hostname", link), 0);
        _cleanup_free_ char *err = NULL;
        assert_int_equal(dag_file_check(dir, "out.py", &err), -EINVAL);
        assert_non_null(strstr(err, "outside"));
        free(err);
        err = NULL;
        assert_int_equal(dag_file_check(dir, "f.py", &err), 0);
        assert_int_equal(dag_file_check(dir, "missing.py", &err), -ENOENT);
        free(err);
        err = NULL;
        /* Every file is inside "/" (the base of a chain's steps that share
         * no deeper directory): "/etc" was compared as "/" + 'e'. */
        assert_int_equal(dag_file_check("/", "etc/hostname", &err), 0);
        Dag *d = NULL;
        const char *text = "tasks:\n  a: {file: /etc/hostname}\n";
        assert_int_equal(dag_parse_with(text, strlen(text), "p.yaml", dir, NULL, dag_load_confined, NULL, &d, &err),
                         -EINVAL);
        assert_non_null(strstr(err, "p.yaml:2:"));
        assert_non_null(strstr(err, ": task 'a': task file '/etc/hostname' must be a relative path"));
        free(err);
        err = NULL;
        /* The CLI's default loader reads any file its user can. */
        text = "tasks:\n  a: {file: out.py}\n";
        int r = dag_parse_with(text, strlen(text), "p.yaml", dir, NULL, NULL, NULL, &d, &err);
        if (access("/etc/hostname", R_OK) == 0) {
                assert_int_equal(r, 0);
                d = dag_free(d);
        }
        (void) unlink(link);
}

/* DAG_STATUS_NAMES is the DAG table's names in order, as
 * RUN_STATUS_NAMES is the run table's. */
static void test_dag_status_names(void **state) {
        Buf b;
        buf_init(&b, 1024);
        const char *const *t = dag_status_table();
        for (size_t i = 0; t[i]; i++)
                buf_printf(&b, "%s%s", i ? ", " : "", t[i]);
        assert_string_equal(b.data, DAG_STATUS_NAMES);
        buf_free(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_diamond),
                cmocka_unit_test(test_bad),
                cmocka_unit_test(test_raw_kwargs),
                cmocka_unit_test(test_outputs_make_edges),
                cmocka_unit_test(test_given_params),
                cmocka_unit_test(test_cycle_names_tasks),
                cmocka_unit_test(test_params),
                cmocka_unit_test(test_states),
                cmocka_unit_test(test_dag_status_names),
                cmocka_unit_test(test_template_subst),
                cmocka_unit_test(test_key_given_twice),
                cmocka_unit_test(test_file_check_table),
                cmocka_unit_test(test_file_check_symlink_and_loader),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
