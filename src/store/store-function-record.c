/* A deployed function's record in memory: shared by reference between the
 * function cache, a request and its run (no SQLite here, so the request
 * parser links it alone: fuzz/, tests/e2e/test_daemon_fuzz.py). */
#include <stdlib.h>

#include "store.h"

FunctionRecord *function_record_ref(FunctionRecord *f) {
        __atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
        return f;
}

FunctionRecord *function_record_free(FunctionRecord *f) {
        if (!f)
                return NULL;
        /* refs counts the other holders: nonzero, this one is not the last.
         * Two holders dropping at once both see 1; the one whose decrement
         * finds 0 frees. */
        if (__atomic_load_n(&f->refs, __ATOMIC_ACQUIRE) > 0 && __atomic_fetch_sub(&f->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        free(f->tenant);
        free(f->name);
        free(f->filename);
        free(f->function);
        free(f->source);
        free(f->requirements_json);
        free(f->limits_json);
        free(f->params_json);
        free(f->signature);
        free(f->doc);
        free(f->description);
        free(f->env_json);
        free(f->lock_json);
        free(f);
        return NULL;
}

void function_record_list_free(FunctionRecord **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                function_record_free(v[i]);
        free(v);
}
