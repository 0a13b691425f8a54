/* store: the SQLite job store ($DATA/pysprinter.db, WAL mode) and its
 * migrations. Runs now; functions, DAG runs and datasets add their tables
 * through migrations in store-migrate.c.
 *
 * Depends on: basic (sqlite3 inside the module only). A Store handle is
 * safe to use from several threads (serialized internally). Several
 * processes may open the same database at once (busy timeout). */
#pragma once

#include "basic.h"

typedef struct Store Store;

/* Opens (creating and migrating) the database at path. */
int store_open(const char *path, Store **ret_store);
Store *store_close(Store *s);

typedef struct RunRecord {
        char *id;
        char *tenant;
        char *filename;
        char *function;
        char *args_json;
        char *kwargs_json;
        char *status;        /* run_status_to_string() */
        int exit_code;       /* -1 while not final */
        char *value_json;
        char *value_repr;
        char *error_type;
        char *error_message;
        char *traceback;
        char *timings_json;  /* {"validate_ms":…, …} */
        char *log_path;
        usec_t created;      /* realtime µs */
        usec_t started;
        usec_t finished;
} RunRecord;
RunRecord *run_record_free(RunRecord *r);
void run_record_freep(RunRecord **r);

/* Insert a new record (id must be unique). */
int store_run_insert(Store *s, const RunRecord *r);
/* Overwrite the mutable fields of the record with r->id. -ENOENT if none. */
int store_run_update(Store *s, const RunRecord *r);
/* Look a run up by full id or unique prefix, within tenant (NULL: any).
 * -ENOENT none, -EEXIST prefix ambiguous. */
int store_run_get(Store *s, const char *tenant, const char *id_or_prefix, RunRecord **ret);
/* Most recent first. */
int store_run_list(Store *s, const char *tenant, size_t limit, RunRecord ***ret_records, size_t *ret_n);
void run_record_list_free(RunRecord **v, size_t n);
/* Mark every queued/running run as lost (called at startup by the one
 * process that owns in-flight runs, i.e. the daemon). Returns how many. */
int store_runs_mark_lost(Store *s, const char *message);

/* Generic key/value cache table (lock cache, metadata). value NULL deletes. */
int store_kv_get(Store *s, const char *ns, const char *key, char **ret_value);
int store_kv_put(Store *s, const char *ns, const char *key, const char *value);

/* ---- deployed functions (store-functions.c) ------------------------------ */

/* One version of a deployed function. Versions of (tenant, name) count up
 * from 1; each deploy adds one and never changes an older one. */
typedef struct FunctionRecord {
        char *tenant;
        char *name;
        int version;
        char *filename;
        char *function;          /* NULL: the @requirements-decorated one */
        char *source;
        size_t source_len;
        char *requirements_json; /* extra requirements object, or NULL */
        char *limits_json;       /* the deploy's limits object, or NULL */
        char *description;
        usec_t created;
} FunctionRecord;
FunctionRecord *function_record_free(FunctionRecord *f);
void function_record_list_free(FunctionRecord **v, size_t n);

/* Stores f as the next version of (f->tenant, f->name); the version it got
 * goes to *ret_version (f->version is ignored). */
int store_function_put(Store *s, const FunctionRecord *f, int *ret_version);
/* version 0: the latest. -ENOENT when there is no such function/version. */
int store_function_get(Store *s, const char *tenant, const char *name, int version, FunctionRecord **ret);
/* The latest version of each of tenant's functions, by name. */
int store_function_list(Store *s, const char *tenant, FunctionRecord ***ret, size_t *ret_n);
/* Ascending version numbers of (tenant, name); -ENOENT when none. */
int store_function_versions(Store *s, const char *tenant, const char *name, int **ret, size_t *ret_n);
/* Deletes every version. -ENOENT when none. */
int store_function_delete(Store *s, const char *tenant, const char *name);
