/* Retention and garbage collection (docs/operations.md "Retention").
 *
 * A collection is a list of passes, each "select a batch of victims, delete
 * them in one transaction, let go of the store, pause": the daemon's
 * requests share the one connection (Store.lock), so a pass never holds it
 * for more than one batch. Files (logs, DAG folders, data objects) are
 * removed after their rows are gone and outside the lock: a crash in between
 * leaves an orphan file, never a record pointing at nothing. A dry run does
 * the same deletes on an in-memory copy of the database (one snapshot via
 * the backup API) and only counts files: its numbers are exactly what a
 * real run at that moment would remove. */
#include <dirent.h>
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "store-internal.h"

/* A run still owed to a client is never a victim: the queue (store-queue.c)
 * holds queued and running ones. */
#define RUN_FINISHED "status NOT IN ('queued','running')"
#define DAG_FINISHED "status NOT IN ('queued','pending','running')"

char *gc_stats_summary(const GcStats *st, bool dry_run, bool json) {
        assert(st);
        if (json) {
                json_t *j = json_pack("{sbsIsIsIsIsIsIsIsIsIsIsIsIsf}", "dry_run", dry_run, "runs",
                                      (json_int_t) st->runs, "dag_runs", (json_int_t) st->dag_runs, "memo_entries",
                                      (json_int_t) st->memo_entries, "logs", (json_int_t) st->logs, "log_bytes",
                                      (json_int_t) st->log_bytes, "dag_dirs", (json_int_t) st->dag_dirs,
                                      "dag_dir_bytes", (json_int_t) st->dag_dir_bytes, "data_objects",
                                      (json_int_t) st->data_objects, "data_bytes", (json_int_t) st->data_bytes,
                                      "cancel_requests", (json_int_t) st->cancel_requests, "package_bytes",
                                      (json_int_t) st->package_bytes, "freed_bytes", (json_int_t) gc_stats_bytes(st),
                                      "duration_s", (double) st->duration_usec / USEC_PER_SEC);
                char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(4));
                json_decref(j);
                char *line = xasprintf("%s\n", text ?: "{}");
                free(text);
                return line;
        }
        char b1[32], b2[32], b3[32], b4[32], b5[32];
        return xasprintf("%s %" PRIu64 " runs (%" PRIu64 " logs, %s), %" PRIu64 " DAG runs (%" PRIu64
                         " folders, %s), %" PRIu64 " memo entries, %" PRIu64 " data objects (%s), %" PRIu64
                         " cancel requests; unreferenced packages: %s\n"
                         "%s %s in %.1fs\n",
                         dry_run ? "would remove" : "removed", st->runs, st->logs, format_size(st->log_bytes, b1),
                         st->dag_runs, st->dag_dirs, format_size(st->dag_dir_bytes, b2), st->memo_entries,
                         st->data_objects, format_size(st->data_bytes, b3), st->cancel_requests,
                         format_size(st->package_bytes, b4), dry_run ? "would free" : "freed",
                         format_size(gc_stats_bytes(st), b5), (double) st->duration_usec / USEC_PER_SEC);
}

usec_t retention_now(void) {
        const char *t = getenv("PYSPRINTER_TEST_NOW");
        if (t && *t) {
                char *end;
                errno = 0;
                unsigned long long s = strtoull(t, &end, 10);
                if (errno == 0 && *end == 0)
                        return (usec_t) s * USEC_PER_SEC;
        }
        return now_realtime();
}

/* ---- victims: (id, log path) pairs --------------------------------------- */

typedef struct Victims {
        char **ids;
        char **logs;  /* parallel to ids; entries may be NULL */
        size_t n, alloc;
} Victims;

static void victims_add(Victims *v, char *id, char *log) {
        if (v->n == v->alloc) {
                v->alloc = v->alloc ? v->alloc * 2 : 64;
                v->ids = xrealloc(v->ids, v->alloc * sizeof(char *));
                v->logs = xrealloc(v->logs, v->alloc * sizeof(char *));
        }
        v->ids[v->n] = id;
        v->logs[v->n++] = log;
}

static void victims_clear(Victims *v) {
        for (size_t i = 0; i < v->n; i++) {
                free(v->ids[i]);
                free(v->logs[i]);
        }
        v->n = 0;
}

static void victims_done(Victims *v) {
        victims_clear(v);
        free(v->ids);
        free(v->logs);
        *v = (Victims) {};
}

/* Runs sql (binds: ?1 text a, ?2 int64 b, ?3 limit, ?4 offset), appending
 * (column 0, column 1) of each row to v. Returns the rows read. */
static int select_victims(Store *s, const char *sql, const char *a, int64_t b, unsigned limit, uint64_t offset,
                          Victims *v) {
        sqlite3_stmt *st = NULL;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK) {
                pthread_mutex_unlock(&s->lock);
                return store_rc_errno(rc);
        }
        store_bind_text(st, 1, a);
        sqlite3_bind_int64(st, 2, b);
        sqlite3_bind_int64(st, 3, limit);
        sqlite3_bind_int64(st, 4, (int64_t) offset);
        int n = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *id = (const char *) sqlite3_column_text(st, 0);
                char *log = store_log_path_col(st, 1, id);
                if (log && !*log && s->copy_log_dir && id) {
                        /* The default path, which a copy cannot derive. */
                        free(log);
                        log = xasprintf("%s/%s.log", s->copy_log_dir, id);
                }
                victims_add(v, store_col_text(st, 0), log);
                n++;
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? n : store_rc_errno(rc);
}

/* Deletes rows `DELETE ... WHERE key=?1` for every id of ids in one
 * transaction; with `then` (or NULL), that statement too for each id. */
static int delete_ids(Store *s, const char *sql, const char *then, char **ids, size_t n) {
        store_lock(s);
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        sqlite3_stmt *st = NULL, *st2 = NULL;
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK && then)
                rc = sqlite3_prepare_v2(s->db, then, -1, &st2, NULL);
        for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
                sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
                sqlite3_reset(st);
                if (rc == SQLITE_OK && st2) {
                        sqlite3_bind_text(st2, 1, ids[i], -1, SQLITE_STATIC);
                        rc = sqlite3_step(st2);
                        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
                        sqlite3_reset(st2);
                }
        }
        sqlite3_finalize(st);
        sqlite3_finalize(st2);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_OK ? 0 : store_rc_errno(rc);
}

/* A removed run (or DAG run) is no longer one of its schedule's runs
 * (GET /v1/schedules/NAME listed it for good). The table holds at most
 * STORE_SCHEDULE_RUNS_MAX rows per schedule (store-schedules.c), so a
 * look-up by run id without an index of its own stays small. */
#define DELETE_SCHEDULE_TAG "DELETE FROM schedule_runs WHERE run_id=?1"

typedef struct Gc {
        Store *s;
        const RetentionConfig *cfg;
        const char *data_dir;
        usec_t now;
        bool dry_run;
        const volatile bool *stop;
        GcStats *st;
} Gc;

static bool gc_stopped(const Gc *g) {
        return g->stop && *g->stop;
}

static void gc_pause(const Gc *g) {
        if (!g->dry_run && g->cfg->batch_pause_usec)
                (void) usleep((useconds_t) MIN(g->cfg->batch_pause_usec, 10 * USEC_PER_SEC));
}

/* Counts (and unless dry-run, removes) the runs of v and their logs. */
static int gc_take_runs(Gc *g, Victims *v) {
        if (v->n == 0)
                return 0;
        int r = delete_ids(g->s, "DELETE FROM runs WHERE id=?1 AND " RUN_FINISHED, DELETE_SCHEDULE_TAG, v->ids, v->n);
        if (r < 0)
                return r;
        g->st->runs += v->n;
        for (size_t i = 0; i < v->n; i++) {
                uint64_t size = path_file_bytes(v->logs[i]);
                if (!v->logs[i] || (size == 0 && access(v->logs[i], F_OK) < 0))
                        continue;
                if (!g->dry_run && unlink(v->logs[i]) < 0 && errno != ENOENT)
                        continue;
                g->st->logs++;
                g->st->log_bytes += size;
        }
        return 0;
}

/* One query's victims, batch by batch: sql selects (id, log_path) with
 * ?1 a, ?2 b, LIMIT ?3 OFFSET ?4. */
static int gc_runs_query(Gc *g, const char *sql, const char *a, int64_t b) {
        Victims v = {};
        int r = 0;
        while (!gc_stopped(g)) {
                r = select_victims(g->s, sql, a, b, g->cfg->batch_rows, 0, &v);
                if (r <= 0)
                        break;
                size_t got = (size_t) r;
                r = gc_take_runs(g, &v);
                victims_clear(&v);
                if (r < 0 || got < g->cfg->batch_rows)
                        break;
                gc_pause(g);
        }
        victims_done(&v);
        return r < 0 ? r : 0;
}

static int distinct_tenants(Store *s, const char *sql, char ***ret) {
        sqlite3_stmt *st = NULL;
        char **v = NULL;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
                while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                        v = strv_append(v, (const char *) sqlite3_column_text(st, 0) ?: "");
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                strv_free(v);
                return store_rc_errno(rc);
        }
        *ret = v ?: xcalloc(1, sizeof(char *));
        return 0;
}

static int64_t cutoff(const Gc *g, uint64_t max_age) {
        return max_age && max_age < g->now ? (int64_t) (g->now - max_age) : (max_age ? 0 : INT64_MIN);
}

/* A run a DAG run's task names goes with the last DAG run that names it
 * (gc_dags), not by its own age: a memo hit makes a new DAG run's task
 * name the run an older DAG run made, and that run, older than the DAG
 * run that shows it, went while the newer DAG run was kept (`dag logs` of
 * it lost the task's output). A task's own run is never older than its
 * DAG run, so for the others nothing changes. */
#define RUN_NOT_A_TASKS "NOT EXISTS (SELECT 1 FROM dag_tasks t WHERE t.run_id=runs.id)"

/* Finished runs older than their tenant's max_age. */
static int gc_runs_by_age(Gc *g) {
        _cleanup_strv_free_ char **tenants = NULL;
        int r = distinct_tenants(g->s, "SELECT DISTINCT tenant FROM runs", &tenants);
        for (char **t = tenants; r >= 0 && t && *t && !gc_stopped(g); t++) {
                RetentionPolicy p = retention_policy_for(g->cfg, *t);
                if (!p.max_age_usec)
                        continue;
                r = gc_runs_query(g,
                                  "SELECT id, log_path FROM runs WHERE tenant=?1 AND created < ?2 AND " RUN_FINISHED
                                  " AND " RUN_NOT_A_TASKS " ORDER BY created LIMIT ?3 OFFSET ?4",
                                  *t, cutoff(g, p.max_age_usec));
        }
        return r;
}

/* The oldest finished runs of each tenant whose logs, counted newest first,
 * go past its max_log_bytes. */
static int gc_runs_by_log_bytes(Gc *g) {
        _cleanup_strv_free_ char **tenants = NULL;
        int r = distinct_tenants(g->s, "SELECT DISTINCT tenant FROM runs", &tenants);
        for (char **t = tenants; r >= 0 && t && *t && !gc_stopped(g); t++) {
                RetentionPolicy p = retention_policy_for(g->cfg, *t);
                if (!p.max_log_bytes)
                        continue;
                Victims all = {}, v = {};
                r = select_victims(g->s,
                                   "SELECT id, log_path FROM runs WHERE tenant=?1 AND log_path IS NOT NULL AND ?2=?2 AND "
                                   RUN_FINISHED " ORDER BY created DESC LIMIT ?3 OFFSET ?4",
                                   *t, 0, UINT32_MAX, 0, &all);
                uint64_t total = 0;
                for (size_t i = 0; r >= 0 && i < all.n; i++) {
                        total += path_file_bytes(all.logs[i]);
                        if (total > p.max_log_bytes)
                                victims_add(&v, TAKE_PTR(all.ids[i]), TAKE_PTR(all.logs[i]));
                }
                victims_done(&all);
                /* Oldest first, a batch at a time. */
                for (size_t done = 0; r >= 0 && done < v.n && !gc_stopped(g);) {
                        size_t k = MIN((size_t) g->cfg->batch_rows, v.n - done);
                        Victims b = { .ids = v.ids + v.n - done - k, .logs = v.logs + v.n - done - k, .n = k };
                        r = gc_take_runs(g, &b);
                        done += k;
                        gc_pause(g);
                }
                victims_done(&v);
        }
        return r < 0 ? r : 0;
}

/* Finished runs of a deployed function that no longer exists. */
static int gc_runs_of_deleted_functions(Gc *g) {
        return gc_runs_query(g,
                             "SELECT id, log_path FROM runs r WHERE fn_name IS NOT NULL AND ?1 IS NULL AND ?2=?2 AND "
                             RUN_FINISHED " AND NOT EXISTS (SELECT 1 FROM functions f WHERE f.tenant=r.tenant AND "
                             "f.name=r.fn_name) LIMIT ?3 OFFSET ?4",
                             NULL, 0);
}

/* A DAG run's folder is removed only when it is DATA/dags/<id> (a DAG run
 * of the CLI names the user's own directory as its base). */
static void gc_dag_dir(Gc *g, const char *id, const char *base_dir) {
        _cleanup_free_ char *mine = path_join_many(g->data_dir, "dags", id, NULL);
        if (!base_dir || !streq(base_dir, mine) || strchr(id, '/') || startswith(id, "."))
                return;
        uint64_t bytes = path_tree_bytes(mine);
        if (bytes == 0 && access(mine, F_OK) < 0)
                return;
        if (!g->dry_run && rm_rf(mine) < 0)
                return;
        g->st->dag_dirs++;
        g->st->dag_dir_bytes += bytes;
}

/* Finished DAG runs past their tenant's age, with their task runs and
 * folder. */
/* The lock texts (migration 14) no run refers to any more. The writer's
 * cache of known hashes is dropped with them, under the same lock, so the
 * next run that uses one writes its row again. */
static int gc_locks(Gc *g) {
        if (g->dry_run)
                return 0;
        Store *s = g->s;
        store_lock(s);
        int rc = sqlite3_exec(s->db,
                              "DELETE FROM locks WHERE sha256 NOT IN "
                              "(SELECT lock_sha256 FROM runs WHERE lock_sha256 IS NOT NULL)",
                              NULL, NULL, NULL);
        store_locks_forget(s);
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_OK ? 0 : store_rc_errno(rc);
}

/* Tokens (`pysprinterd token`, POST /v1/tokens) past their expiry: they
 * authenticate nothing any more (daemon_token_lookup_hash()), and were
 * kept for ever. A listing no longer shows them. */
static int gc_tokens(Gc *g) {
        Store *s = g->s;
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "DELETE FROM tokens WHERE expires > 0 AND expires <= ?1", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, (sqlite3_int64) g->now);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : store_rc_errno(rc);
}

static int gc_dags(Gc *g) {
        _cleanup_strv_free_ char **tenants = NULL;
        int r = distinct_tenants(g->s, "SELECT DISTINCT tenant FROM dag_runs", &tenants);
        for (char **t = tenants; r >= 0 && t && *t && !gc_stopped(g); t++) {
                RetentionPolicy p = retention_policy_for(g->cfg, *t);
                if (!p.max_age_usec)
                        continue;
                for (;;) {
                        Victims dags = {};
                        r = select_victims(g->s,
                                           "SELECT id, base_dir FROM dag_runs WHERE tenant=?1 AND created < ?2 AND "
                                           DAG_FINISHED " ORDER BY created LIMIT ?3 OFFSET ?4",
                                           *t, cutoff(g, p.max_age_usec), MAX(g->cfg->batch_rows / 10, 1U), 0, &dags);
                        size_t got = r > 0 ? (size_t) r : 0;
                        for (size_t i = 0; r >= 0 && i < dags.n; i++) {
                                Victims runs = {};
                                /* Not a run another DAG run's task names
                                 * (a memo hit): it goes with the last. */
                                r = select_victims(g->s,
                                                   "SELECT t.run_id, r.log_path FROM dag_tasks t JOIN runs r ON "
                                                   "r.id=t.run_id WHERE t.dag_id=?1 AND ?2=?2 AND NOT EXISTS (SELECT 1 "
                                                   "FROM dag_tasks o WHERE o.run_id=t.run_id AND o.dag_id<>t.dag_id) "
                                                   "LIMIT ?3 OFFSET ?4",
                                                   dags.ids[i], 0, UINT32_MAX, 0, &runs);
                                if (r >= 0)
                                        r = gc_take_runs(g, &runs);
                                victims_done(&runs);
                                if (r >= 0)
                                        r = delete_ids(g->s, "DELETE FROM dag_runs WHERE id=?1", DELETE_SCHEDULE_TAG,
                                                       &dags.ids[i], 1);
                                if (r >= 0) {
                                        g->st->dag_runs++;
                                        gc_dag_dir(g, dags.ids[i], dags.logs[i]);
                                }
                        }
                        victims_done(&dags);
                        if (r < 0 || got < MAX(g->cfg->batch_rows / 10, 1U) || gc_stopped(g))
                                break;
                        gc_pause(g);
                }
        }
        return r < 0 ? r : 0;
}

/* Removes each entry of dir (a file or a tree) that no write touched for
 * the grace period (RETENTION_OBJECT_GRACE_USEC) and keep() (NULL: none)
 * does not claim, adding to *ret_n and *ret_bytes what went (a dry run:
 * what would go). The sweeps of what a killed process left behind, whose
 * live counterparts keep writing their entry. */
static int gc_stale_entries(Gc *g, const char *dir, bool (*keep)(Gc *, const char *), uint64_t *ret_n,
                            uint64_t *ret_bytes) {
        DIR *d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        struct dirent *de;
        while ((de = readdir(d)) && !gc_stopped(g)) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                usec_t mtime = path_tree_newest_mtime_at(dirfd(d), de->d_name) * USEC_PER_SEC;
                if (mtime + RETENTION_OBJECT_GRACE_USEC > g->now || (keep && keep(g, de->d_name)))
                        continue;
                uint64_t bytes = path_tree_bytes_at(dirfd(d), de->d_name);
                if (!g->dry_run) {
                        _cleanup_free_ char *p = path_join(dir, de->d_name);
                        if (rm_rf(p) < 0)
                                continue;
                }
                (*ret_n)++;
                *ret_bytes += bytes;
        }
        closedir(d);
        return 0;
}

/* Whether sql (`SELECT 1 FROM … WHERE id=?1`) may find id: true also on
 * an error, so that only a record known absent lets a file go. */
static bool maybe_recorded(Gc *g, const char *sql, const char *id) {
        sqlite3_stmt *st = NULL;
        store_lock(g->s);
        int rc = sqlite3_prepare_v2(g->s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, id);
                rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&g->s->lock);
        return rc != SQLITE_DONE;
}

/* Whether name, in DATA/dags, is a DAG run's folder to keep: a dot name
 * (none of ours), or one a record names. */
static bool dag_dir_recorded(Gc *g, const char *name) {
        return name[0] == '.' || maybe_recorded(g, "SELECT 1 FROM dag_runs WHERE id=?1", name);
}

/* A folder $DATA/dags/<id> no DAG run record names: a daemon makes it,
 * writes the pipeline's files into it and only then records the DAG run
 * (a cluster node taking a DAG run over fetches its files first too), so
 * a daemon killed in between left it, and the pass above, which goes by
 * records, never removed it. One that no write touched for the grace
 * period (data/tmp's rule) belongs to no submit in progress: those take
 * milliseconds. Counted as a DAG folder. */
static int gc_dag_leftovers(Gc *g) {
        _cleanup_free_ char *root = path_join(g->data_dir, "dags");
        return gc_stale_entries(g, root, dag_dir_recorded, &g->st->dag_dirs, &g->st->dag_dir_bytes);
}

/* Whether name, in the logs directory, is to keep: anything but ID.log,
 * or the log of a run the store has. */
static bool log_of_a_run(Gc *g, const char *name) {
        size_t len = strlen(name);
        if (name[0] == '.' || len <= 4 || !endswith(name, ".log"))
                return true;
        _cleanup_free_ char *id = xstrndup(name, len - 4);
        return maybe_recorded(g, "SELECT 1 FROM runs WHERE id=?1", id);
}

/* Logs (DATA/logs/ID.log) whose run the store no longer has: a run's row
 * is deleted before its log file, outside the store's lock, so a
 * collection killed in between (a daemon's kill -9 during a pass over
 * thousands of runs) left the log for good, counted in no area of the
 * disk metrics, and no later pass went by files. One no write touched for
 * the grace period belongs to no run being recorded now. Runs first, so
 * that a dry run, whose copy of the database loses the runs it would
 * remove, counts each log once. Counted among the logs removed. */
static int gc_log_orphans(Gc *g) {
        if (g->cfg->keep_data_objects)
                return 0; /* a cluster's runs are not in this store */
        _cleanup_free_ char *dir = g->s->copy_log_dir ? xstrdup(g->s->copy_log_dir) : store_log_dir(g->s->db);
        DIR *d = dir ? opendir(dir) : NULL;
        if (!d)
                return !dir || errno == ENOENT ? 0 : -errno;
        struct dirent *de;
        while ((de = readdir(d)) && !gc_stopped(g)) {
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
                    (usec_t) st.st_mtim.tv_sec * USEC_PER_SEC + RETENTION_OBJECT_GRACE_USEC > g->now ||
                    log_of_a_run(g, de->d_name))
                        continue;
                if (!g->dry_run && unlinkat(dirfd(d), de->d_name, 0) < 0)
                        continue;
                /* Bytes as the runs' logs count them: their length. */
                g->st->logs++;
                g->st->log_bytes += (uint64_t) st.st_size;
        }
        closedir(d);
        return 0;
}

/* Memo entries whose run is gone: nothing can show where they came from. */
static int gc_memo(Gc *g) {
        for (;;) {
                sqlite3_stmt *st = NULL;
                pthread_mutex_lock(&g->s->lock);
                int rc = sqlite3_prepare_v2(g->s->db,
                                            "DELETE FROM dag_memo WHERE rowid IN (SELECT rowid FROM dag_memo m WHERE "
                                            "run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs WHERE id=m.run_id) "
                                            "LIMIT ?1)",
                                            -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        sqlite3_bind_int(st, 1, (int) g->cfg->batch_rows);
                        rc = sqlite3_step(st);
                }
                uint64_t n = rc == SQLITE_DONE ? (uint64_t) sqlite3_changes(g->s->db) : 0;
                sqlite3_finalize(st);
                pthread_mutex_unlock(&g->s->lock);
                if (rc != SQLITE_DONE)
                        return store_rc_errno(rc);
                g->st->memo_entries += n;
                if (n < g->cfg->batch_rows || gc_stopped(g))
                        return 0;
                gc_pause(g);
        }
}

/* An object a collection moved aside (.gc-<hash>) and did not finish
 * removing: that collection was killed (a daemon's kill -9 during its
 * collector's pass over a large object), and nothing else would ever
 * remove it. The collection that moves an object aside holds its flock
 * until it removed it or moved it back (a put reused it), so an aside
 * object we can lock has no live collection behind it: its references
 * were counted as none after the move. */
static void gc_data_object_aside(Gc *g, const char *objects, int dfd, const char *name) {
        _cleanup_close_ int held = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (held < 0 || flock(held, LOCK_EX | LOCK_NB) < 0)
                return;
        uint64_t bytes = path_tree_bytes_at(dfd, name);
        if (!g->dry_run) {
                _cleanup_free_ char *p = path_join(objects, name);
                (void) chmod(p, 0755); /* objects are read-only trees */
                if (rm_rf(p) < 0)
                        return;
        }
        g->st->data_objects++;
        g->st->data_bytes += bytes;
}

/* Content no dataset version references. The object is moved aside before
 * the references are counted again, so a put that reuses it right now
 * either finds it back in place or stores it afresh. */
static int gc_data_objects(Gc *g) {
        if (g->cfg->keep_data_objects)
                return 0;
        _cleanup_free_ char *objects = path_join_many(g->data_dir, "data", "objects", NULL);
        DIR *d = opendir(objects);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        struct dirent *de;
        while ((de = readdir(d)) && !gc_stopped(g)) {
                if (startswith(de->d_name, ".gc-")) {
                        gc_data_object_aside(g, objects, dirfd(d), de->d_name);
                        continue;
                }
                if (de->d_name[0] == '.')
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                usec_t mtime = (usec_t) st.st_mtim.tv_sec * USEC_PER_SEC;
                uint64_t refs = 1;
                if (mtime + RETENTION_OBJECT_GRACE_USEC > g->now ||
                    store_dataset_hash_refs(g->s, de->d_name, &refs) < 0 || refs > 0)
                        continue;
                /* A run's hold (data.h DataHolds) keeps content a removed
                 * dataset named while that run reads it. */
                _cleanup_close_ int held = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (held < 0 || flock(held, LOCK_EX | LOCK_NB) < 0)
                        continue;
                uint64_t bytes = path_tree_bytes_at(dirfd(d), de->d_name);
                if (!g->dry_run) {
                        _cleanup_free_ char *aside = xasprintf(".gc-%s", de->d_name);
                        if (renameat(dirfd(d), de->d_name, dirfd(d), aside) < 0)
                                continue;
                        if (store_dataset_hash_refs(g->s, de->d_name, &refs) < 0 || refs > 0) {
                                (void) renameat(dirfd(d), aside, dirfd(d), de->d_name);
                                continue;
                        }
                        _cleanup_free_ char *p = path_join(objects, aside);
                        (void) chmod(p, 0755); /* objects are read-only trees */
                        if (rm_rf(p) < 0)
                                continue;
                }
                g->st->data_objects++;
                g->st->data_bytes += bytes;
        }
        closedir(d);
        return 0;
}

/* Staging leftovers of puts that died: a put stages its content in
 * $DATA/data/tmp/ (a random name, `.upload` for an HTTP body) and moves it
 * into objects/ or removes it before it returns, so an entry is left there
 * only by a process killed mid-put (kill -9, a crash, a power loss), and
 * nothing else would ever remove it. One that no write touched for the
 * grace period belongs to no live put: a put copying or receiving keeps
 * writing the newest file of its tree. Counted as freed data bytes. */
static int gc_data_staging(Gc *g) {
        _cleanup_free_ char *tmp = path_join_many(g->data_dir, "data", "tmp", NULL);
        uint64_t n = 0;
        return gc_stale_entries(g, tmp, NULL, &n, &g->st->data_bytes);
}

/* An in-memory copy of s's database, as one snapshot (the dry run's
 * scratch copy). */
/* The runs the search index does not hold yet (store-search.c), so that
 * a search walks few runs of its own: four batches' worth of runs per
 * transaction (~6 us each: 12 ms at the default 500), the store free for
 * requests between them, as between the batches of deletes. */
static int gc_search_index(Gc *g) {
        if (g->dry_run)
                return 0;
        for (;;) {
                if (gc_stopped(g))
                        return 0;
                int64_t n = store_search_index_tail(g->s, (size_t) g->cfg->batch_rows * 4);
                if (n <= 0)
                        return n < 0 ? (int) n : 0;
                gc_pause(g);
        }
}

static int store_snapshot(Store *s, Store **ret) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
                sqlite3_close(db);
                return store_rc_errno(rc);
        }
        store_lock(s);
        sqlite3_backup *b = sqlite3_backup_init(db, "main", s->db, "main");
        rc = b ? sqlite3_backup_step(b, -1) : sqlite3_errcode(db);
        if (b)
                sqlite3_backup_finish(b);
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                sqlite3_close(db);
                return store_rc_errno(rc);
        }
        sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
        Store *c = xcalloc(1, sizeof(Store));
        c->db = db;
        c->copy_log_dir = store_log_dir(s->db);
        pthread_mutex_init(&c->lock, NULL);
        *ret = c;
        return 0;
}

int store_gc(Store *s, const RetentionConfig *cfg, const char *data_dir, usec_t now, bool dry_run,
             const volatile bool *stop, GcStats *ret) {
        assert(s && cfg && data_dir && ret);
        store_runs_settle(s);
        Store *scratch = NULL;
        if (dry_run) {
                int k = store_snapshot(s, &scratch);
                if (k < 0)
                        return k;
                s = scratch;
        }
        Gc g = { .s = s, .cfg = cfg, .data_dir = data_dir, .now = now, .dry_run = dry_run, .stop = stop, .st = ret };
        RetentionConfig safe = *cfg;
        if (safe.batch_rows == 0)
                safe.batch_rows = RETENTION_DEFAULT_BATCH;
        g.cfg = &safe;
        usec_t t0 = now_monotonic();
        ret->started = now_realtime();
        int (*const passes[])(Gc *) = {
                gc_log_orphans,
                gc_dags,
                gc_dag_leftovers,
                gc_runs_by_age,
                gc_runs_by_log_bytes,
                gc_runs_of_deleted_functions,
                gc_locks,
                gc_tokens,
                gc_memo,
                gc_data_objects,
                gc_data_staging,
                gc_search_index,
        };
        int r = 0;
        for (size_t i = 0; i < ELEMENTSOF(passes) && !gc_stopped(&g); i++) {
                int k = passes[i](&g);
                if (k < 0 && r == 0)
                        r = k; /* the next passes still run: one bad area does not stop the others */
        }
        ret->duration_usec += now_monotonic() - t0;
        store_close(scratch);
        return r;
}
