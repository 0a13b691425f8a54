/* The runs of a deployed function (`pysprinter logs --function`): runs
 * carry the function's name in runs.fn_name (migration 8's trigger), which
 * outlives the request retention drops. */
#include "store-internal.h"

static int function_run_ids_read(Store *s, const char *tenant, const char *name, size_t limit, char ***ret) {
        return store_list_ids(s,
                              "SELECT id FROM runs WHERE tenant=?1 AND fn_name=?2 "
                              "ORDER BY created DESC, id DESC LIMIT ?3",
                              tenant, name, limit, ret);
}

int store_function_run_ids(Store *s, const char *tenant, const char *name, size_t limit, char ***ret) {
        store_runs_settle(s);
        return function_run_ids_read(s, tenant, name, limit, ret);
}

int store_function_run_ids_settled(Store *s, uint64_t ticket, const char *tenant, const char *name, size_t limit,
                                   char ***ret) {
        store_runs_settle_through(s, ticket);
        return function_run_ids_read(s, tenant, name, limit, ret);
}
