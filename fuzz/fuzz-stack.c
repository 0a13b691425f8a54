/* libFuzzer target for stack files (docs/stack.md): the YAML a user hands
 * `pysprinter deploy -f`, checked against docs/stack.schema.json (compiled
 * in, as the CLI does) by the schema checker (src/shared/shared-schema.c,
 * schema_check_yaml) — types, patterns, formats (durations, sizes, cron),
 * oneOf over schedules, unknown keys.
 *
 * Built with -Dfuzz=true (clang) and run by `make fuzz`
 * (tools/run-fuzzers.sh, seeds in fuzz/seeds/fuzz-stack/).
 *
 * Invariants: no crash, leak or undefined behaviour; a refused file always
 * says why, with a position; the schema itself is never the problem
 * (-ENOTSUP would mean the checker meets a keyword of it that it lacks). */
#include <stdlib.h>
#include <string.h>

#include "shared.h"

extern const char cli_stack_schema[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static json_t *schema;
        if (!schema && !(schema = json_loads(cli_stack_schema, 0, NULL)))
                abort();
        YamlDoc *doc = NULL;
        char *err = NULL;
        int r = yaml_doc_load((const char *) data, size, "stack.yaml", 10000, &doc, &err);
        if (r >= 0) {
                r = schema_check_yaml(schema, doc, NULL, &err);
                if (r == -ENOTSUP)
                        abort(); /* the schema uses what the checker lacks */
                if (r < 0 && (!err || !strstr(err, "stack.yaml:")))
                        abort(); /* a refusal always says where */
                if (r >= 0 && err)
                        abort();
        }
        free(err);
        yaml_doc_free(doc);
        return 0;
}
