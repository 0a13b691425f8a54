/* The bytes-in-use snapshot of the daemon's /metrics (store_usage()): per
 * tenant its runs, their logs' bytes and its datasets' bytes; the
 * database's, the data objects', the packages' and the DAG folders' bytes.
 *
 * The daemon refreshes it every 30 s, while invokes run, over a store that
 * may hold millions of runs. So the walk:
 * - reads on a read-only connection of its own, in batches: it never takes
 *   the write connection's lock (Store.lock), which every group commit
 *   takes. It did, for each batch of 2,000 rows, and every answered invoke
 *   waited for it: 2–7 ms stalls of all of them at once, a -c8 phase's p99
 *   from 1.5 to 3–5 ms whenever a walk fell in it (docs/internals/performance-log.md,
 *   round 28). WAL: the reader sees the last commit; each batch is a read
 *   transaction of its own, so the walk does not hold the WAL back either;
 * - lists the logs directory once instead of stat()ing each run's log
 *   path: most runs print nothing and have no log file, and 850,000 failed
 *   path lookups were most of the walk's CPU. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "store-internal.h"

/* Rows per batch, each its own read transaction. */
#define USAGE_BATCH 2000

void store_usage_done(StoreUsage *u) {
        if (!u)
                return;
        for (size_t i = 0; i < u->n_tenants; i++)
                free(u->tenants[i].tenant);
        free(u->tenants);
        *u = (StoreUsage) {};
}

/* The index of tenant's entry in u (made when missing). hint: the index
 * the previous row used (rows of one tenant come in runs). */
static size_t usage_tenant(StoreUsage *u, const char *tenant, size_t hint) {
        if (hint < u->n_tenants && streq(u->tenants[hint].tenant, tenant))
                return hint;
        for (size_t i = 0; i < u->n_tenants; i++)
                if (streq(u->tenants[i].tenant, tenant))
                        return i;
        u->tenants = xrealloc(u->tenants, (u->n_tenants + 1) * sizeof(UsageTenant));
        u->tenants[u->n_tenants] = (UsageTenant) { .tenant = xstrdup(tenant) };
        return u->n_tenants++;
}

/* ---- the logs directory, listed once --------------------------------------- */

typedef struct LogFile {
        char *id;
        uint64_t bytes;
} LogFile;

typedef struct LogIndex {
        LogFile *v;
        size_t n, alloc;
} LogIndex;

static int log_file_compare(const void *a, const void *b) {
        return strcmp(((const LogFile *) a)->id, ((const LogFile *) b)->id);
}

/* The regular files ID.log in dir, sorted by ID: what the engine writes
 * there (engine_run_log_path(), opened O_NOFOLLOW). */
static LogIndex log_index_read(const char *dir) {
        LogIndex x = {};
        DIR *d = dir ? opendir(dir) : NULL;
        if (!d)
                return x;
        struct dirent *de;
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                struct stat st;
                if (len <= 4 || !endswith(de->d_name, ".log") ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (x.n == x.alloc) {
                        x.alloc = x.alloc ? x.alloc * 2 : 256;
                        x.v = xrealloc(x.v, x.alloc * sizeof(LogFile));
                }
                x.v[x.n++] = (LogFile) { .id = xstrndup(de->d_name, len - 4), .bytes = (uint64_t) st.st_size };
        }
        closedir(d);
        if (x.n)
                qsort(x.v, x.n, sizeof(LogFile), log_file_compare);
        return x;
}

static uint64_t log_index_bytes(const LogIndex *x, const char *id) {
        if (!x->n || !id)
                return 0;
        LogFile key = { .id = (char *) id };
        const LogFile *f = bsearch(&key, x->v, x->n, sizeof(LogFile), log_file_compare);
        return f ? f->bytes : 0;
}

static void log_index_done(LogIndex *x) {
        for (size_t i = 0; i < x->n; i++)
                free(x->v[i].id);
        free(x->v);
        *x = (LogIndex) {};
}

/* ---- the walk ------------------------------------------------------------- */

/* A read-only connection of the walk's own, or NULL for a store with no
 * file (":memory:", which a second connection would not share): then the
 * walk reads s->db under s->lock, a batch at a time. */
static sqlite3 *walk_db_open(Store *s) {
        /* s->rdb is made exactly for stores with a file (store-open.c). */
        return s->rdb ? store_reader_open(sqlite3_db_filename(s->rdb, "main")) : NULL;
}

static void walk_lock(Store *s, sqlite3 *db) {
        if (db == s->db)
                store_lock(s);
}

static void walk_unlock(Store *s, sqlite3 *db) {
        if (db == s->db)
                pthread_mutex_unlock(&s->lock);
}

/* The runs with rowid > *last, at most USAGE_BATCH of them, added to u;
 * *ret_rows: how many. */
static int usage_runs_batch(Store *s, sqlite3 *db, const LogIndex *logs, StoreUsage *u, int64_t *last,
                            size_t *ret_rows) {
        sqlite3_stmt *st = NULL;
        size_t rows = 0, t = SIZE_MAX;
        walk_lock(s, db);
        int rc = sqlite3_prepare_v2(db,
                                    "SELECT rowid, tenant, log_path, id FROM runs WHERE rowid > ?1 ORDER BY rowid "
                                    "LIMIT ?2",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, *last);
                sqlite3_bind_int(st, 2, USAGE_BATCH);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        *last = sqlite3_column_int64(st, 0);
                        const char *tenant = (const char *) sqlite3_column_text(st, 1);
                        const char *log_path = (const char *) sqlite3_column_text(st, 2);
                        const char *id = (const char *) sqlite3_column_text(st, 3);
                        /* '': the engine's own path, DATA_DIR/logs/ID.log
                         * (store-log-path.c); NULL: no log. */
                        uint64_t b = !log_path ? 0 : !*log_path ? log_index_bytes(logs, id) : path_file_bytes(log_path);
                        t = usage_tenant(u, tenant ?: "", t);
                        u->tenants[t].runs++;
                        u->tenants[t].log_bytes += b;
                        u->log_bytes += b;
                        rows++;
                }
        }
        sqlite3_finalize(st);
        walk_unlock(s, db);
        *ret_rows = rows;
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

/* Each tenant's dataset bytes: the distinct contents its versions name. */
static int usage_datasets(Store *s, sqlite3 *db, StoreUsage *u) {
        sqlite3_stmt *st = NULL;
        walk_lock(s, db);
        int rc = sqlite3_prepare_v2(db,
                                    "SELECT tenant, sum(size) FROM (SELECT DISTINCT tenant, hash, size FROM "
                                    "dataset_versions) GROUP BY tenant",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK)
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        const char *tenant = (const char *) sqlite3_column_text(st, 0);
                        size_t t = usage_tenant(u, tenant ?: "", SIZE_MAX);
                        u->tenants[t].data_bytes = (uint64_t) sqlite3_column_int64(st, 1);
                }
        sqlite3_finalize(st);
        walk_unlock(s, db);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

int store_usage(Store *s, const char *data_dir, StoreUsage *ret) {
        assert(s && data_dir && ret);
        store_runs_settle(s);
        StoreUsage u = {};
        _cleanup_free_ char *dbpath = path_join(data_dir, "pysprinter.db");
        _cleanup_free_ char *wal = path_join(data_dir, "pysprinter.db-wal");
        u.db_bytes = path_file_bytes(dbpath) + path_file_bytes(wal);

        sqlite3 *own = walk_db_open(s);
        sqlite3 *db = own ?: s->db;
        _cleanup_free_ char *logs_dir = store_log_dir(db);
        LogIndex logs = log_index_read(logs_dir);
        int r = 0;
        int64_t last = 0;
        for (size_t rows = USAGE_BATCH; r >= 0 && rows == USAGE_BATCH;)
                r = usage_runs_batch(s, db, &logs, &u, &last, &rows);
        log_index_done(&logs);
        if (r >= 0)
                r = usage_datasets(s, db, &u);
        sqlite3_close_v2(own);
        if (r < 0) {
                store_usage_done(&u);
                return r;
        }

        _cleanup_free_ char *objects = path_join_many(data_dir, "data", "objects", NULL);
        _cleanup_free_ char *packages = path_join(data_dir, "store");
        _cleanup_free_ char *dags = path_join(data_dir, "dags");
        u.data_bytes = path_tree_bytes(objects);
        /* The package store and the wheels cache/wheels keeps (a cluster
         * node's for its peers, those read for their metadata): both are
         * what `env prune` and the collector free as packages. */
        _cleanup_free_ char *wheels = path_join_many(data_dir, "cache", "wheels", NULL);
        u.package_bytes = path_tree_bytes(packages) + path_tree_bytes(wheels);
        u.dag_bytes = path_tree_bytes(dags);
        *ret = u;
        return 0;
}
