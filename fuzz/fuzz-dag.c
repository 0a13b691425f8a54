/* libFuzzer target for pipeline files (src/dag, dag_parse): the YAML a user
 * hands `pysprinter dag run` or POST /v1/dags — structure, references
 * (${task.key}, ${params.name}, $${), retries/timeouts/sizes, cycles — and
 * a `-p NAME=VALUE` override read as a YAML scalar.
 *
 * Built with -Dfuzz=true (clang) and run by `make fuzz`
 * (tools/run-fuzzers.sh, seeds in fuzz/seeds/fuzz-dag/).
 *
 * Input: the pipeline's text; when the first byte is 0x01, the first line
 * after it is one parameter override instead. Task files are read from a
 * private directory holding f.py. Invariants: no crash, leak or undefined
 * behaviour; a failure always says why; a success has at least one task. */
#include <stdlib.h>

#include "basic.h"
#include "dag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *task_dir(void) {
        static char dir[] = "/tmp/fuzz-dag-XXXXXX";
        static bool made;
        if (!made) {
                if (!mkdtemp(dir))
                        abort();
                _cleanup_free_ char *f = path_join(dir, "f.py");
                const char *src = "def f(x=None, y=None):\n    return x\n";
                if (write_file_atomic(f, src, strlen(src), 0644) < 0)
                        abort();
                made = true;
        }
        return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        size_t len = size;
        _cleanup_free_ char *param = NULL;
        char *params[2] = { NULL, NULL };

        if (size > 0 && data[0] == 1) {
                const char *nl = memchr(text + 1, '\n', size - 1);
                size_t n = nl ? (size_t) (nl - text - 1) : size - 1;
                param = xstrndup(text + 1, n);
                params[0] = param;
                text += 1 + n + (nl ? 1 : 0);
                len = size - 1 - n - (nl ? 1 : 0);
        }
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        int r = dag_parse(text, len, "fuzz.yaml", task_dir(), params, &d, &err);
        if (r < 0) {
                if (!err || !*err)
                        abort(); /* a refusal must say why */
                return 0;
        }
        if (!d || dag_n_tasks(d) == 0 || !dag_name(d))
                abort();
        dag_free(d);
        return 0;
}
