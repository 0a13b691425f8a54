/* libFuzzer target for the Content-Range parser of ranged downloads
 * (pkg_http_content_range_parse(), src/pkg/pkg-fetch.c): the input is the
 * header's value as a server sends it. Built with -Dfuzz=true and run by
 * `make fuzz` (seeds in fuzz/seeds/fuzz-content-range/).
 *
 * Invariants checked: no crash or sanitizer report, no read past the n
 * bytes given (the copy has no NUL); 0 means FIRST < TOTAL, 1 a TOTAL
 * alone, anything else is -EINVAL and writes nothing; the value printed
 * back from what was parsed parses to the same. */
#include <inttypes.h>

#include "basic.h"
#include "pkg-mgr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 4096)
                return 0;
        char *v = xmalloc(size ?: 1);
        if (size)
                memcpy(v, data, size);
        uint64_t first = 7, total = 7;
        int r = pkg_http_content_range_parse(v, size, &first, &total);
        free(v);
        if (r == 0 && first >= total)
                __builtin_trap();
        if (r == 1 && first != 7)
                __builtin_trap();
        if (r < 0 && (r != -EINVAL || first != 7 || total != 7))
                __builtin_trap();
        if (r >= 0) {
                char again[96];
                int k = r == 1 ? snprintf(again, sizeof again, "bytes */%" PRIu64, total)
                               : snprintf(again, sizeof again, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, first,
                                          total);
                uint64_t f2 = 0, t2 = 0;
                if (pkg_http_content_range_parse(again, (size_t) k, &f2, &t2) != r || t2 != total ||
                    (r == 0 && f2 != first))
                        __builtin_trap();
        }
        return 0;
}
