/* libFuzzer target for the request fields the store reads in C
 * (src/store/store-request.c, store_request_fields()): a differential test
 * against SQLite, whose json_valid()/json_extract() read them before and
 * still do for every request the C reader leaves to them.
 *
 * Built with -Dfuzz=true (clang) and run by `make fuzz`
 * (tools/run-fuzzers.sh, seeds in fuzz/seeds/fuzz-store-request/).
 *
 * Invariants: no crash or undefined behaviour; a request read in C is one
 * SQLite calls valid JSON, an object, with no "data", and whose fn_name
 * and idem_key json_extract() gives as the same text (or NULL when
 * absent). */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "store-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sqlite3_stmt *check(void) {
        static sqlite3 *db;
        static sqlite3_stmt *st;
        if (!st && (sqlite3_open(":memory:", &db) != SQLITE_OK ||
                    sqlite3_prepare_v2(db,
                                       "SELECT json_valid(?1) AND json_type(?1) = 'object' "
                                       "AND json_extract(?1, '$.data') IS NULL "
                                       "AND json_type(?1, '$.data') IS NULL, "
                                       "json_extract(?1, '$.fn_name'), json_type(?1, '$.fn_name'), "
                                       "json_extract(?1, '$.idem_key'), json_type(?1, '$.idem_key')",
                                       -1, &st, NULL) != SQLITE_OK))
                abort();
        return st;
}

/* Column i is what the C reader found: text (len bytes) or NULL. */
static bool same_field(sqlite3_stmt *st, int i, const char *text, size_t len) {
        if (!text)
                return sqlite3_column_type(st, i) == SQLITE_NULL && sqlite3_column_type(st, i + 1) == SQLITE_NULL;
        const char *type = (const char *) sqlite3_column_text(st, i + 1);
        return type && strcmp(type, "text") == 0 && (size_t) sqlite3_column_bytes(st, i) == len &&
               memcmp(sqlite3_column_text(st, i), text, len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *request = malloc(size + 1);
        if (!request)
                return 0;
        memcpy(request, data, size);
        request[size] = '\0';
        StoreRequestFields f;
        if (store_request_fields(request, &f)) {
                sqlite3_stmt *st = check();
                sqlite3_bind_text(st, 1, request, -1, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != 1 ||
                    !same_field(st, 1, f.fn_name, f.fn_name_len) || !same_field(st, 3, f.idem_key, f.idem_key_len))
                        abort();
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
        }
        free(request);
        return 0;
}
