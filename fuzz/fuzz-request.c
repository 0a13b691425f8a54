/* libFuzzer target for pysprinterd's request parsing: every byte a client
 * or an operator controls before anything else looks at it — API request
 * bodies of each kind (runs, validate, deploy, invoke), the Lambda event
 * parser with its depth/size caps, the YAML config, and the Python
 * signature sniffing used by the Lambda calling rule.
 *
 * Built with -Dfuzz=true and run by `make fuzz` (seeds in
 * fuzz/seeds/fuzz-request/), and for a bounded time by
 * tests/e2e/test_daemon_fuzz.py, which builds it by hand:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Isrc/basic -Isrc/engine -Isrc/store -Isrc/daemon fuzz/fuzz-request.c \
 *     src/daemon/daemon-request.c src/daemon/daemon-config.c src/daemon/daemon-gc-config.c \
 *     src/store/store-retention-config.c src/basic/basic-*.c \
 *     -ljansson -lyaml -lcrypto -o fuzz-request
 *   ./fuzz-request -max_total_time=30
 *
 * The first byte picks the parser; the rest is its input. Invariants: no
 * crash, leak or undefined behaviour; a failure always comes with a message
 * and a success with a well-formed result. */
#include <jansson.h>

#include "daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        RequestCaps caps = { .max_depth = 64, .max_values = 100000 };
        _cleanup_free_ char *err = NULL;
        const char *body;
        size_t len;
        int r;

        if (size < 1 || size > 1 << 20)
                return 0;
        body = (const char *) data + 1;
        len = size - 1;

        switch (data[0] % 6) {
        case 0:
        case 1:
        case 2:
        case 3: {
                RunRequest req = {};
                r = request_parse((RequestKind) (data[0] % 4), body, len, &caps, &req, &err);
                if (r < 0) {
                        if (!err)
                                __builtin_trap();
                } else {
                        /* Whatever was accepted is valid JSON for the engine
                         * (which reads arguments with their NULs, as here). */
                        if (req.args_json) {
                                json_t *j = json_loads(req.args_json, JSON_ALLOW_NUL, NULL);
                                if (!json_is_array(j))
                                        __builtin_trap();
                                json_decref(j);
                        }
                        if (req.kwargs_json) {
                                json_t *j = json_loads(req.kwargs_json, JSON_ALLOW_NUL, NULL);
                                if (!json_is_object(j))
                                        __builtin_trap();
                                json_decref(j);
                        }
                        if (req.source && req.source_len > RUN_MAX_SOURCE_BYTES)
                                __builtin_trap();
                        /* Whatever was asked, a granted run stays under the maxima. */
                        DaemonConfig gc;
                        daemon_config_init(&gc);
                        gc.maxima.timeout_ms = 600000;
                        RunLimits granted;
                        char *gerr = NULL;
                        if (daemon_limits_grant(&gc, "t", &req.limits, &granted, &gerr) >= 0 &&
                            (granted.timeout_ms > 600000 || granted.network))
                                __builtin_trap();
                        free(gerr);
                        daemon_config_done(&gc);
                }
                run_request_done(&req);
                break;
        }
        case 4: {
                DaemonConfig cfg;
                daemon_config_init(&cfg);
                r = daemon_config_parse(&cfg, body, len, "fuzz.yaml", &err);
                if (r < 0 && !err)
                        __builtin_trap();
                if (r >= 0)
                        for (size_t i = 0; i < cfg.n_tokens; i++)
                                (void) daemon_config_find_token(&cfg, cfg.tokens[i].tenant);
                daemon_config_done(&cfg);
                break;
        }
        case 5:
        default: {
                /* The Lambda API's function names and calling rule (the
                 * route table is a unit test: it links every handler). */
                _cleanup_free_ char *path = xstrndup(body, len), *name = NULL, *qualifier = NULL;
                if (lambda_function_ref_parse(path, &name, &qualifier) >= 0 && !function_name_is_valid(name))
                        __builtin_trap();
                (void) lambda_call_rule(path);
                break;
        }
        }
        return 0;
}
