/* dag: the pipeline parser, references, cycle messages (no engine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

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
        { "tasks:\n  a: {file: f.py}\n  a: {file: f.py}\n", "defined twice" },
        { "tasks:\n  a: {file: f.py, args: ['${a b}']}\n", "not a reference" },
        { "tasks:\n  a: {file: f.py, args: ['${x']}\n", "unterminated" },
        { "tasks:\n  a: {file: f.py, limits: {timeout: soon}}\n", "bad value 'soon'" },
        { "tasks:\n  a: {file: f.py, retries: 99}\n", "retries must be" },
        { "tasks: {}\n", "1 to" },
        { "tasks:\n  a: [1\n", "YAML error" },
        { "- 1\n", "a pipeline is a mapping" },
        { "tasks:\n  params: {file: f.py}\n", "not valid" },
        { "tasks:\n  a: {file: f.py, depends: [b]}\n", "unknown task 'b'" },
};

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

static void test_cycle_names_tasks(void **state) {
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        int r = parse("tasks:\n  x: {file: f.py, depends: [z]}\n  y: {file: f.py, depends: [x]}\n"
                      "  z: {file: f.py, depends: [y]}\n",
                      NULL, &d, &err);
        assert_true(r < 0);
        /* Execution order (a -> b: b needs a), from wherever the search met it. */
        assert_true(strstr(err, "x -> y -> z -> x") || strstr(err, "y -> z -> x -> y") || strstr(err, "z -> x -> y -> z"));
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

static void test_states(void **state) {
        for (int s = 0; s < _DAG_TASK_STATE_MAX; s++)
                assert_int_equal(dag_task_state_from_string(dag_task_state_to_string((DagTaskState) s)), s);
        assert_false(dag_task_state_is_done(DAG_TASK_RUNNING));
        assert_true(dag_task_state_is_done(DAG_TASK_CACHED));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_diamond), cmocka_unit_test(test_bad), cmocka_unit_test(test_cycle_names_tasks),
                cmocka_unit_test(test_params), cmocka_unit_test(test_states),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
