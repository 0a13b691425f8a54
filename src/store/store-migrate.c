/* Schema migrations, applied in order; PRAGMA user_version records how far a
 * database got. Append only: never edit a migration that has shipped. */
#include "store-internal.h"

static const char *const migrations[] = {
        /* 1: run records */
        "CREATE TABLE runs ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  filename TEXT,"
        "  function TEXT,"
        "  args_json TEXT,"
        "  kwargs_json TEXT,"
        "  status TEXT NOT NULL,"
        "  exit_code INTEGER NOT NULL DEFAULT -1,"
        "  value_json TEXT,"
        "  value_repr TEXT,"
        "  error_type TEXT,"
        "  error_message TEXT,"
        "  traceback TEXT,"
        "  timings_json TEXT,"
        "  log_path TEXT,"
        "  created INTEGER NOT NULL,"
        "  started INTEGER NOT NULL DEFAULT 0,"
        "  finished INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX runs_tenant_created ON runs(tenant, created DESC);"
        "CREATE INDEX runs_status ON runs(status);"
        "CREATE TABLE kv (ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        "  updated INTEGER NOT NULL, PRIMARY KEY (ns, key));",
        /* 2: deployed functions, one row per version (store-functions.c) */
        "CREATE TABLE functions ("
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  version INTEGER NOT NULL,"
        "  filename TEXT NOT NULL,"
        "  function TEXT,"
        "  source TEXT NOT NULL,"
        "  requirements_json TEXT,"
        "  limits_json TEXT,"
        "  description TEXT,"
        "  created INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, name, version));",
        /* 3: DAG runs, their tasks, and the task memo (store-dag.c) */
        "CREATE TABLE dag_runs ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  name TEXT,"
        "  file TEXT,"
        "  base_dir TEXT,"
        "  spec_text TEXT NOT NULL,"
        "  params_json TEXT,"
        "  options_json TEXT,"
        "  status TEXT NOT NULL,"
        "  error TEXT,"
        "  owner TEXT,"
        "  created INTEGER NOT NULL,"
        "  started INTEGER NOT NULL DEFAULT 0,"
        "  finished INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX dag_runs_tenant_created ON dag_runs(tenant, created DESC);"
        "CREATE TABLE dag_tasks ("
        "  dag_id TEXT NOT NULL REFERENCES dag_runs(id) ON DELETE CASCADE,"
        "  name TEXT NOT NULL,"
        "  position INTEGER NOT NULL,"
        "  state TEXT NOT NULL,"
        "  run_id TEXT,"
        "  attempts INTEGER NOT NULL DEFAULT 0,"
        "  memo_key TEXT,"
        "  cached INTEGER NOT NULL DEFAULT 0,"
        "  value_json TEXT,"
        "  error TEXT,"
        "  exit_code INTEGER NOT NULL DEFAULT -1,"
        "  started INTEGER NOT NULL DEFAULT 0,"
        "  finished INTEGER NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (dag_id, name));"
        "CREATE TABLE dag_memo ("
        "  tenant TEXT NOT NULL,"
        "  key TEXT NOT NULL,"
        "  value_json TEXT NOT NULL,"
        "  run_id TEXT,"
        "  created INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, key));",
        /* 4: the data catalog: named datasets and their content-addressed
         * versions (store-data.c) */
        "CREATE TABLE datasets ("
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  source TEXT NOT NULL,"
        "  current INTEGER NOT NULL DEFAULT 0,"
        "  etag TEXT,"
        "  last_modified TEXT,"
        "  checked INTEGER NOT NULL DEFAULT 0,"
        "  created INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, name));"
        "CREATE TABLE dataset_versions ("
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  version INTEGER NOT NULL,"
        "  hash TEXT NOT NULL,"
        "  size INTEGER NOT NULL,"
        "  files INTEGER NOT NULL,"
        "  created INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, name, version));"
        "CREATE INDEX dataset_versions_hash ON dataset_versions(hash);",
        /* 5: the durable run queue (store-queue.c): what a run needs to be
         * run again after a crash, and its attempts (the fencing token) */
        "ALTER TABLE runs ADD COLUMN request_json TEXT;"
        "ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE runs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;"
        "CREATE INDEX runs_pending ON runs(status, created) WHERE status IN ('queued','running');",
        /* 6: a deployed function's parameters, as its validation read them
         * (the Lambda calling rule), kept beside its source */
        "ALTER TABLE functions ADD COLUMN params_json TEXT;",
        /* 7: the owner of an embedded run (the CLI process running it): its
         * pid and start time (/proc/PID/stat field 22), so a run whose CLI
         * died can be told lost (store_runs_mark_orphaned). 0: none (a
         * daemon's runs, recovered by the queue). */
        "ALTER TABLE runs ADD COLUMN owner_pid INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE runs ADD COLUMN owner_start INTEGER NOT NULL DEFAULT 0;",
        /* 8: retention (store-retention.c). Ages are judged by created; a
         * run of a deployed function keeps the function's name after its
         * request_json is dropped at the end, so runs of a deleted function
         * can be found. The trigger fills it on insert (every writer of
         * runs, old code paths included, goes through INSERT). */
        "CREATE INDEX runs_created ON runs(created);"
        "ALTER TABLE runs ADD COLUMN fn_name TEXT;"
        "CREATE INDEX runs_fn_name ON runs(tenant, fn_name) WHERE fn_name IS NOT NULL;"
        "CREATE TRIGGER runs_fn_name AFTER INSERT ON runs"
        "  WHEN NEW.request_json IS NOT NULL AND json_valid(NEW.request_json)"
        "  BEGIN UPDATE runs SET fn_name = json_extract(NEW.request_json, '$.fn_name') WHERE id = NEW.id; END;",
        /* 9: secrets (store-secrets.c: a row holds nonce || ciphertext ||
         * tag, never the value) and tokens made with `pysprinterd token`
         * (store-tokens.c: only the token's sha256 is kept). */
        "CREATE TABLE secrets ("
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  sealed BLOB NOT NULL,"
        "  created INTEGER NOT NULL,"
        "  updated INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, name));"
        "CREATE TABLE tokens ("
        "  id TEXT PRIMARY KEY,"
        "  sha256 TEXT NOT NULL UNIQUE,"
        "  tenant TEXT NOT NULL,"
        "  role TEXT NOT NULL,"
        "  created INTEGER NOT NULL,"
        "  expires INTEGER NOT NULL DEFAULT 0,"
        "  last_used INTEGER NOT NULL DEFAULT 0);"
        /* a deployed function's secret names and plain variables,
         * {"secrets": [NAME…], "env": {KEY: VALUE}} (never a value) */
        "ALTER TABLE functions ADD COLUMN env_json TEXT;",
        /* 10: schedules and the runs they started (store-schedules.c), and
         * function endpoints */
        "CREATE TABLE schedules ("
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  function TEXT NOT NULL,"
        "  spec TEXT NOT NULL,"
        "  tz TEXT,"
        "  invoke_json TEXT,"
        "  catch_up INTEGER NOT NULL DEFAULT 1,"
        "  allow_overlap INTEGER NOT NULL DEFAULT 0,"
        "  paused INTEGER NOT NULL DEFAULT 0,"
        "  next_fire INTEGER NOT NULL,"
        "  last_fire INTEGER NOT NULL DEFAULT 0,"
        "  last_run_id TEXT,"
        "  last_note TEXT,"
        "  created INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, name));"
        "CREATE TABLE schedule_runs ("
        "  tenant TEXT NOT NULL,"
        "  schedule TEXT NOT NULL,"
        "  run_id TEXT NOT NULL,"
        "  fired INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, schedule, run_id));"
        /* and deployed functions' HTTP endpoints (store-endpoints.c) */
        "CREATE TABLE endpoints ("
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  mode INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, name));",
        /* 11: schedules that fire a DAG file (dag_json: the POST /v1/dags
         * body captured at `schedule add`), and the DAG runs' schedule tag */
        "ALTER TABLE schedules ADD COLUMN dag_json TEXT;"
        "ALTER TABLE dag_runs ADD COLUMN schedule TEXT;",
        /* 12: the datasets a run's output_dir() became, {"NAME": VERSION}
         * (docs/data.md "Outputs") */
        "ALTER TABLE runs ADD COLUMN outputs_json TEXT;",
        /* 13: the dashboard (docs/ui.md). A run's environment lock as the
         * engine resolved it (store_run_set_lock), and the datasets its
         * request mounted, kept after request_json is dropped so "where is
         * this dataset used" needs no scan of sources. One trigger now
         * fills both fn_name and data_json from the request: it is parsed
         * once per insert, as before. */
        "ALTER TABLE runs ADD COLUMN lock_json TEXT;"
        "ALTER TABLE runs ADD COLUMN data_json TEXT;"
        "UPDATE runs SET data_json = json_extract(request_json, '$.data')"
        "  WHERE request_json IS NOT NULL AND json_valid(request_json);"
        "CREATE INDEX runs_data ON runs(tenant, created) WHERE data_json IS NOT NULL;"
        "CREATE INDEX dag_tasks_run ON dag_tasks(run_id) WHERE run_id IS NOT NULL;"
        "DROP TRIGGER runs_fn_name;"
        "CREATE TRIGGER runs_request_fields AFTER INSERT ON runs"
        "  WHEN NEW.request_json IS NOT NULL AND json_valid(NEW.request_json)"
        "  BEGIN UPDATE runs SET fn_name = json_extract(NEW.request_json, '$.fn_name'),"
        "    data_json = json_extract(NEW.request_json, '$.data') WHERE id = NEW.id; END;",
        /* 14: each distinct environment lock once (store-writer.c): a
         * run keeps the sha256 of its lock's text, the text is in locks.
         * Runs recorded before keep theirs in runs.lock_json, which
         * store_run_get_lock still reads. */
        "CREATE TABLE locks (sha256 TEXT PRIMARY KEY, text TEXT NOT NULL) WITHOUT ROWID;"
        "ALTER TABLE runs ADD COLUMN lock_sha256 TEXT;",
        /* 15: no index on runs.status alone: every query by status asks
         * for queued/running runs, which runs_pending holds; the index
         * cost each run ~2 WAL pages per status change (issue 15 b). */
        "DROP INDEX runs_status;",
        /* 16: fewer pages per run (docs/internals/performance-log.md "Run records: pages
         * per run (round 5)"). The submit's INSERT fills fn_name and
         * data_json itself (store-queue.c): the trigger's UPDATE of the
         * row just inserted parsed the request and sought the row again.
         * runs_created goes: every query by created names a tenant
         * (runs_tenant_created), and the list of every tenant's runs walks
         * the tenants through that index (store_run_list); it cost each
         * submit a page. runs_fn_name gains created: the newest runs of
         * a function are then a seek (without it SQLite walked the
         * tenant's runs through runs_tenant_created, filtering). */
        "DROP TRIGGER runs_request_fields;"
        "DROP INDEX runs_created;"
        "DROP INDEX runs_fn_name;"
        "CREATE INDEX runs_fn_name ON runs(tenant, fn_name, created) WHERE fn_name IS NOT NULL;",
        /* 17: a single node honours Idempotency-Key (docs/api.md
         * "Idempotency"): the submit's INSERT keeps the key from the
         * request (store-queue.c). The index is partial, so a run without
         * a key writes no page of it. */
        "ALTER TABLE runs ADD COLUMN idem_key TEXT;"
        "CREATE INDEX runs_idem_key ON runs(tenant, idem_key, created) WHERE idem_key IS NOT NULL;",
        /* 18: runs_tenant_created ascending. Runs arrive in created order,
         * so each new entry of a (tenant, created DESC) index went to the
         * left end of its tenant's range, where SQLite splits a full page
         * in halves: the index's pages stayed half empty (618 pages for
         * 56k runs against 311), and each batch rewrote more of them
         * (docs/internals/performance-log.md "Invoke path: bytes to the disk per invoke
         * (round 15)"). Appended at the right end, a full page is left
         * full; the queries walk it backwards for created DESC (the same
         * plans, EXPLAIN QUERY PLAN). */
        "DROP INDEX runs_tenant_created;"
        "CREATE INDEX runs_tenant_created ON runs(tenant, created);",
        /* 19: changes nothing in the schema; new rows keep their timings
         * as a BLOB (store-timings.c) and started/finished relative to
         * created (STORE_TIME_ENC, store-internal.h), which a pysprinter
         * before them would read wrong. The version makes such a binary
         * refuse the database (newer than it knows) instead. */
        "SELECT 19;",
        /* 20: a deployed version's signature and docstring, from its
         * deploy's validation (`invoke NAME --help`, GET
         * /v1/functions/NAME). Versions deployed before have NULL: the
         * help shows what the record has (the parameters' names). */
        "ALTER TABLE functions ADD COLUMN signature TEXT;"
        "ALTER TABLE functions ADD COLUMN doc TEXT;",
        /* 21: the pid namespace of an embedded run's owner
         * (pid_namespace_id()): its pid means something only there. A CLI
         * in another (a container mounting the host's home, `unshare
         * --pid`) took every other CLI's running run for a gone owner's and
         * marked it lost. 0: written before, judged by pid alone. */
        "ALTER TABLE runs ADD COLUMN owner_pidns INTEGER NOT NULL DEFAULT 0;",
        /* 22: the highest version each dataset name ever had
         * (store-data.c's kv "dataset-last-version", which `data rm`
         * leaves alone), for a database from before it was kept: the
         * highest a record names — a version there is, a run's output
         * (outputs_json, what a memoised DAG outputs: task hands on) or
         * a pinned NAME@N a run read (data_json). Without it the first
         * put after the upgrade gave a removed version's number again,
         * and those records named other bytes. A number nothing names
         * any more cannot be known. */
        "INSERT INTO kv (ns, key, value, updated)"
        "  SELECT 'dataset-last-version', k, CAST(MAX(v) AS TEXT),"
        "         CAST(strftime('%s','now') AS INTEGER) * 1000000 FROM ("
        "    SELECT tenant || '/' || name AS k, version AS v FROM dataset_versions"
        "    UNION ALL"
        "    SELECT r.tenant || '/' || j.key, j.value FROM runs r, json_each(r.outputs_json) j"
        "      WHERE r.outputs_json IS NOT NULL AND json_valid(r.outputs_json) AND j.type = 'integer'"
        "    UNION ALL"
        "    SELECT r.tenant || '/' || substr(j.value, 1, instr(j.value, '@') - 1),"
        "           CAST(substr(j.value, instr(j.value, '@') + 1) AS INTEGER)"
        "      FROM runs r, json_each(r.data_json) j"
        "      WHERE r.data_json IS NOT NULL AND json_valid(r.data_json) AND j.type = 'text'"
        "        AND instr(j.value, '@') > 1)"
        "  WHERE k IS NOT NULL AND v > 0 GROUP BY k"
        "  ON CONFLICT (ns, key) DO UPDATE SET"
        "    value = CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT);",
        /* 23: where a run came from, beside fn_name (8): the deployed
         * version an invoke ran and the schedule that fired it (the run
         * object's fn_version and schedule, docs/api.md). Rows written
         * before have NULL: their version and schedule were not kept
         * past the run's end (request_json), and are not known. */
        "ALTER TABLE runs ADD COLUMN fn_version INTEGER;"
        "ALTER TABLE runs ADD COLUMN schedule TEXT;",
        /* 24: the limits a run was given (the run object's "limits"),
         * which its request_json held only until its end. NULL: recorded
         * before, or by an embedded CLI. */
        "ALTER TABLE runs ADD COLUMN limits_json TEXT;",
        /* 25: the lock a deployed version's requirements resolved to at
         * its deploy (FunctionRecord.lock_json): its invokes install it
         * and never resolve again. Versions deployed before have NULL and
         * resolve at their invokes, as they did. */
        "ALTER TABLE functions ADD COLUMN lock_json TEXT;",
        /* 26: a schedule's runs are a seek (GET /v1/runs?schedule=NAME,
         * `ps --schedule`), as a function's are in runs_fn_name (16):
         * without it the list walked every run of the tenant for a
         * schedule's few. Partial, so a run no schedule fired writes no
         * page of it. */
        "CREATE INDEX runs_schedule ON runs(tenant, schedule, created) WHERE schedule IS NOT NULL;",
        /* 27: the runs' search index (store-search.c, docs/internals/run-search.md):
         * the five fields a search looks in, by trigram, for the runs up to
         * the mark (kv 'search'/'rowid'); it starts empty, at 0, and a
         * search or a collection indexes the runs in chunks (a rebuild
         * here held the upgrade ~6 s per million runs). The triggers keep
         * the indexed runs in step: a deleted one leaves the index, and the
         * mark comes down to the highest rowid left (SQLite gives a new run
         * the highest rowid + 1, which the mark must not cover); a searched
         * field that changes is written again. A new run writes nothing
         * here (about 6 more WAL pages per commit). */
        "CREATE VIRTUAL TABLE runs_search USING fts5(id, filename, function, fn_name, schedule, content='runs',"
        "  content_rowid='rowid', tokenize='trigram', detail='none', columnsize=0);"
        "INSERT INTO kv (ns, key, value, updated) VALUES ('search', 'rowid', '0', 0);"
        "CREATE TRIGGER runs_search_delete AFTER DELETE ON runs"
        "  WHEN old.rowid <= (SELECT CAST(value AS INTEGER) FROM kv WHERE ns = 'search' AND key = 'rowid')"
        "  BEGIN"
        "    INSERT INTO runs_search (runs_search, rowid, id, filename, function, fn_name, schedule)"
        "      VALUES ('delete', old.rowid, old.id, old.filename, old.function, old.fn_name, old.schedule);"
        "    UPDATE kv SET value = CAST(coalesce((SELECT max(rowid) FROM runs), 0) AS TEXT)"
        "      WHERE ns = 'search' AND key = 'rowid'"
        "        AND CAST(value AS INTEGER) > coalesce((SELECT max(rowid) FROM runs), 0);"
        "  END;"
        "CREATE TRIGGER runs_search_update AFTER UPDATE OF id, filename, function, fn_name, schedule ON runs"
        "  WHEN old.rowid <= (SELECT CAST(value AS INTEGER) FROM kv WHERE ns = 'search' AND key = 'rowid')"
        "    AND (old.id IS NOT new.id OR old.filename IS NOT new.filename OR old.function IS NOT new.function"
        "      OR old.fn_name IS NOT new.fn_name OR old.schedule IS NOT new.schedule)"
        "  BEGIN"
        "    INSERT INTO runs_search (runs_search, rowid, id, filename, function, fn_name, schedule)"
        "      VALUES ('delete', old.rowid, old.id, old.filename, old.function, old.fn_name, old.schedule);"
        "    INSERT INTO runs_search (rowid, id, filename, function, fn_name, schedule)"
        "      VALUES (new.rowid, new.id, new.filename, new.function, new.fn_name, new.schedule);"
        "  END;", /* 28: a function URL's CORS settings (docs/endpoints.md "CORS"),
         * Lambda's Cors object as the daemon validated it; NULL: none,
         * the URL's answers as before. A row's removal (the URL's) takes
         * them with it. */
        "ALTER TABLE endpoints ADD COLUMN cors_json TEXT;",
        /* 29: a deployed function's aliases (store-functions.c, docs/api.md
         * "Aliases"): a name pointing at one of its versions. */
        "CREATE TABLE IF NOT EXISTS function_aliases ("
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  alias TEXT NOT NULL,"
        "  version INTEGER NOT NULL,"
        "  description TEXT NOT NULL DEFAULT '',"
        "  updated INTEGER NOT NULL,"
        "  PRIMARY KEY (tenant, name, alias));",
};

int store_schema_version(void) {
        return (int) ELEMENTSOF(migrations);
}

/* Reads PRAGMA user_version into *ret_version; returns SQLite's code
 * (SQLITE_OK or why it could not be read: a locked file, an I/O error). */
static int user_version_read(sqlite3 *db, int *ret_version) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        *ret_version = sqlite3_column_int(st, 0);
                        rc = SQLITE_OK;
                } else if (rc == SQLITE_DONE)
                        rc = SQLITE_ERROR;
        }
        sqlite3_finalize(st);
        return rc;
}

static int user_version(sqlite3 *db) {
        int version = -1;
        return user_version_read(db, &version) == SQLITE_OK ? version : -1;
}

int store_db_schema_version(sqlite3 *db) {
        return user_version(db);
}

int store_file_schema_version(const char *path, int *ret_version) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
        if (rc != SQLITE_OK) {
                sqlite3_close(db);
                return store_sqlite_errno(rc);
        }
        /* A file that is not a database fails here, not at open. */
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        sqlite3_finalize(st);
        int v = user_version(db);
        sqlite3_close(db);
        if (rc != SQLITE_ROW)
                return store_rc_errno(rc);
        if (v < 0)
                return -EBADMSG;
        *ret_version = v;
        return 0;
}

/* A step's SQL that fails as SQL (SQLITE_ERROR: a column that is there
 * already, a table that is not) is -EUCLEAN, not the -EIO of an I/O
 * error: nothing about the disk, and the opener must not take it for a
 * full one (store-open.c gives the reserve back on -EIO). */
static int migrate_errno(int rc) {
        return (rc & 0xff) == SQLITE_ERROR ? -EUCLEAN : store_rc_errno(rc);
}

/* A version that cannot be read is not 0: taken for it, every step would
 * be replayed from schema 1 on a database that has them all. */
static int version_unread(sqlite3 *db, int rc, char **ret_error) {
        *ret_error = xasprintf("its schema version (PRAGMA user_version) could not be read: %s", sqlite3_errmsg(db));
        return store_rc_errno(rc);
}

int store_migrate(sqlite3 *db, char **ret_error) {
        int version = 0;
        int rc = user_version_read(db, &version);
        if (rc != SQLITE_OK)
                return version_unread(db, rc, ret_error);
        if (version > store_schema_version()) {
                *ret_error = xasprintf("the database's schema is version %d, newer than this pysprinter knows (%d): "
                                       "upgrade pysprinter, or restore a backup made by this version",
                                       version, store_schema_version());
                return -EPROTONOSUPPORT;
        }
        for (int i = MAX(version, 0); i < store_schema_version(); i++) {
                /* Forward only, one transaction per step. The version is read
                 * again under the write lock: another process opening the
                 * same database may have applied this step meanwhile. */
                rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
                if (rc != SQLITE_OK) {
                        *ret_error = xasprintf("the database could not be upgraded to schema %d: %s", i + 1,
                                               sqlite3_errmsg(db));
                        return migrate_errno(rc);
                }
                int now = 0;
                rc = user_version_read(db, &now);
                if (rc != SQLITE_OK) {
                        int r = version_unread(db, rc, ret_error);
                        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                        return r;
                }
                if (now > i) {
                        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
                        continue;
                }
                char *err = NULL;
                _cleanup_free_ char *sql = xasprintf("%s; PRAGMA user_version = %d; COMMIT;", migrations[i], i + 1);
                rc = sqlite3_exec(db, sql, NULL, NULL, &err);
                if (rc != SQLITE_OK) {
                        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                        *ret_error = xasprintf("the database could not be upgraded to schema %d: %s", i + 1,
                                               err ? err : sqlite3_errstr(rc));
                        sqlite3_free(err);
                        return migrate_errno(rc);
                }
        }
        return 0;
}
