/* libFuzzer target for the zip reader behind `pysprinter lock`'s range
 * requests (pkg_zip_read_metadata(), src/pkg/pkg-wheel.c): the input is a
 * whole wheel file, its last bytes are the tail the first range request
 * would get and every other range is served from the input itself, so the
 * end records, ZIP64 records, central directory and local header all come
 * from the fuzzer. Built with -Dfuzz=true and run by `make fuzz` (seeds in
 * fuzz/seeds/fuzz-zipmeta/: small real wheels, one ZIP64, one with a data
 * descriptor).
 *
 * Invariants checked: no crash, leak or sanitizer report; a range is only
 * asked for inside the file; success returns a NUL-terminated text of at
 * most PKG_METADATA_MAX bytes and no error; failure returns no text and
 * one of the documented errors. */
#include "basic.h"
#include "pkg-mgr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Input {
        const uint8_t *data;
        size_t size;
} Input;

static int serve(void *userdata, uint64_t first, uint64_t len, PkgHttpResponse *ret, char **ret_error) {
        const Input *in = userdata;
        (void) ret_error;
        if (first >= in->size || len > PKG_RANGE_MAX)
                __builtin_trap();
        size_t n = (size_t) MIN(len, in->size - first);
        *ret = (PkgHttpResponse){ .status = 206, .body = xmalloc(n + 1), .len = n };
        memcpy(ret->body, in->data + first, n);
        ret->body[n] = 0;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* The tail one request reads (pkg_wheel_read_metadata_ranged()
         * asks for 128 KiB; a smaller one here makes the fuzzer reach the
         * requests for the ZIP64 record and the central directory). */
        enum {
                TAIL = 512
        };
        if (size > (1U << 20))
                return 0;
        Input in = { data, size };
        size_t n = MIN(size, (size_t) TAIL);
        /* A copy of its own, so a read past the tail is caught. */
        uint8_t *tail = xmalloc(n ?: 1);
        if (n)
                memcpy(tail, data + size - n, n);
        char *text = NULL, *error = NULL;
        int r = pkg_zip_read_metadata(tail, n, size, serve, &in, &text, &error);
        if (r >= 0) {
                if (!text || error || strlen(text) > PKG_METADATA_MAX)
                        __builtin_trap();
        } else if (text || error || (r != -EBADMSG && r != -ENOENT && r != -EFBIG && r != -ENOMEM))
                __builtin_trap();
        free(text);
        free(error);
        free(tail);
        return 0;
}
