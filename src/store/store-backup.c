/* Backup and restore of the database (docs/operations.md "Backup").
 *
 * Backup: SQLite's online backup API copying the whole database in one
 * step. In WAL mode that step is one read transaction: it sees one
 * committed state while the daemon keeps writing (writers never wait for a
 * WAL reader), so the copy is consistent without stopping anything.
 *
 * The runs the daemon answered whose ends are still only in its journal
 * (store.h "the ended-runs journal": committed in batches, ~50 ms later
 * or, with its writer held back, later still) are in the backup too: the
 * journal's files are read BEFORE the snapshot, then replayed into the
 * copy as the daemon's start replays them. A record the read missed was
 * either appended after the backup began or emptied from its file, which
 * happens only after its commit, so before the snapshot: in the copy.
 * A record read whose batch committed meanwhile changes nothing (its
 * INSERT finds the row, its fenced UPDATE no pending row).
 *
 * Restore: the backup is checked (a database, integrity_check "ok", a
 * schema this binary can migrate), copied next to the live file with the
 * same API, and renamed over it; the old WAL and shared-memory files and
 * the old journal go first so nothing replays them onto the restored
 * content. */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "store-internal.h"

static int copy_db(sqlite3 *from, sqlite3 *to, char **ret_error) {
        sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
        if (!b) {
                *ret_error = xasprintf("cannot start the backup: %s", sqlite3_errmsg(to));
                return store_rc_errno(sqlite3_errcode(to));
        }
        int rc;
        /* -1: every page in one step, i.e. one snapshot. Busy only while a
         * checkpoint or a non-WAL writer holds the file: retry briefly. */
        for (unsigned i = 0; i < 200; i++) {
                rc = sqlite3_backup_step(b, -1);
                if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
                        break;
                (void) usleep(50 * 1000);
        }
        sqlite3_backup_finish(b);
        if (rc != SQLITE_DONE) {
                *ret_error = xasprintf("cannot copy the database: %s", sqlite3_errstr(rc));
                return store_rc_errno(rc);
        }
        return 0;
}

static int open_db(const char *path, int flags, sqlite3 **ret, char **ret_error) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(path, &db, flags, NULL);
        if (rc != SQLITE_OK) {
                *ret_error = xasprintf("%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
                sqlite3_close(db);
                return store_rc_errno(rc);
        }
        sqlite3_busy_timeout(db, 10000);
        *ret = db;
        return 0;
}

/* The copy at path as one file: a plain rollback-journal database. */
static int as_one_file(const char *path, char **ret_error) {
        sqlite3 *db = NULL;
        int r = open_db(path, SQLITE_OPEN_READWRITE, &db, ret_error);
        if (r >= 0 && sqlite3_exec(db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
                *ret_error = xasprintf("%s: %s", path, sqlite3_errmsg(db));
                r = -EIO;
        }
        sqlite3_close(db);
        return r;
}

/* from's database copied to the new file at path. */
static int copy_to(sqlite3 *from, const char *path, char **ret_error) {
        sqlite3 *to = NULL;
        (void) unlink(path);
        int r = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &to, ret_error);
        if (r >= 0)
                r = copy_db(from, to, ret_error);
        sqlite3_close(to);
        return r;
}

/* The journal's records replayed into the copy at path, with the replay
 * of the daemon's start (store_journal_replay_copy()). */
static int replay_into(const char *path, const StoreJournalCopy *j, size_t *ret_replayed, char **ret_error) {
        Store *t = NULL;
        int r = store_open_short_lived(path, &t);
        if (r < 0) {
                *ret_error = xasprintf("%s: %s", path, strerror(-r));
                return r;
        }
        /* The full-disk reserve store_open() made is no part of a copy. */
        (void) unlink(t->reserve_path);
        r = store_journal_replay_copy(t, j, ret_replayed);
        store_close(t);
        if (r < 0)
                *ret_error = xasprintf("cannot replay the journal's runs into %s: %s", path, strerror(-r));
        return r;
}

/* db_path copied to tmp: the journal read first (see the top), then the
 * snapshot, then the journal's records replayed into it (*ret_replayed). */
static int backup_to(const char *db_path, const char *tmp, size_t *ret_replayed, char **ret_error) {
        StoreJournalCopy j;
        int r = store_journal_copy(db_path, &j);
        if (r < 0) {
                *ret_error = xasprintf("cannot read the journal of %s: %s", db_path, strerror(-r));
                return r;
        }
        sqlite3 *from = NULL;
        /* Read-write open of the source: a reader of a WAL database needs
         * the -shm file, which a read-only open cannot create. (On a
         * read-only file system SQLite opens it read-only, and reads it
         * through the -wal and -shm a crash left there.) */
        if (store_read_only_and_whole(db_path)) {
                _cleanup_free_ char *uri = store_immutable_uri(db_path);
                r = open_db(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, &from, ret_error);
        } else
                r = open_db(db_path, SQLITE_OPEN_READWRITE, &from, ret_error);
        if (r >= 0)
                r = copy_to(from, tmp, ret_error);
        sqlite3_close(from);
        if (r >= 0 && j.size[0] + j.size[1] > 0)
                r = replay_into(tmp, &j, ret_replayed, ret_error);
        store_journal_copy_free(&j);
        return r < 0 ? r : as_one_file(tmp, ret_error);
}

/* rename() that never replaces dest (EEXIST): another backup may have
 * made it meanwhile. link() where the file system has no RENAME_NOREPLACE. */
static int publish_no_replace(const char *tmp, const char *dest) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_NOREPLACE) == 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return -1;
        if (link(tmp, dest) < 0)
                return -1;
        (void) unlink(tmp);
        return 0;
}

int store_backup(const char *db_path, const char *dest, size_t *ret_replayed, char **ret_error) {
        assert(db_path && dest && ret_error);
        size_t replayed = 0;
        if (access(db_path, F_OK) < 0) {
                int r = -errno;
                *ret_error = xasprintf("%s: %s (is the data directory right?)", db_path, strerror(-r));
                return r;
        }
        if (access(dest, F_OK) == 0) {
                *ret_error = xasprintf("%s exists; a backup never overwrites a file", dest);
                return -EEXIST;
        }
        /* A name of this process's own: two backups to one FILE at once
         * each write their copy whole, and the first to finish takes FILE
         * (they shared FILE.partial, and could all fail and leave none). */
        _cleanup_free_ char *tmp = xasprintf("%s.partial-%d", dest, (int) getpid());
        int r = backup_to(db_path, tmp, &replayed, ret_error);
        if (r >= 0 && (chmod(tmp, 0600) < 0 || publish_no_replace(tmp, dest) < 0)) {
                r = -errno;
                *ret_error = r == -EEXIST ? xasprintf("%s exists; a backup never overwrites a file", dest)
                                          : xasprintf("cannot write %s: %s", dest, strerror(-r));
        }
        if (r < 0)
                (void) unlink(tmp);
        if (r >= 0 && ret_replayed)
                *ret_replayed = replayed;
        return r;
}

static int check_backup(const char *src, char **ret_error) {
        int version = 0;
        int r = store_file_schema_version(src, &version);
        if (r < 0) {
                *ret_error = xasprintf("%s is not a pysprinter database: %s", src, strerror(-r));
                return r;
        }
        if (version > store_schema_version()) {
                *ret_error = xasprintf("%s has schema version %d, newer than this pysprinter knows (%d)", src, version,
                                       store_schema_version());
                return -EPROTONOSUPPORT;
        }
        sqlite3 *db = NULL;
        r = open_db(src, SQLITE_OPEN_READONLY, &db, ret_error);
        if (r < 0)
                return r;
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        bool ok = rc == SQLITE_ROW && streq((const char *) sqlite3_column_text(st, 0) ?: "", "ok");
        if (!ok)
                *ret_error = xasprintf("%s fails SQLite's integrity check: %s", src,
                                       rc == SQLITE_ROW ? (const char *) sqlite3_column_text(st, 0) : sqlite3_errstr(rc));
        sqlite3_finalize(st);
        /* Without a runs table it is some other application's database. */
        if (ok && sqlite3_exec(db, "SELECT 1 FROM runs LIMIT 0", NULL, NULL, NULL) != SQLITE_OK) {
                *ret_error = xasprintf("%s has no runs table: not a pysprinter database", src);
                ok = false;
        }
        sqlite3_close(db);
        return ok ? 0 : -EBADMSG;
}

/* The tokens `pysprinterd token create` made are credentials, not data:
 * the database being replaced has the ones valid now. Its table replaces
 * the backup's, so a token revoked after the backup stays revoked and one
 * created since keeps working. Nothing to keep when there is no current
 * database (or it has no tokens table yet). A backup older than the table
 * (schema 9) is upgraded here, as its next start would, so that it has one
 * to receive them: they were lost otherwise. */
static int keep_current_tokens(const char *restored, const char *current, char **ret_error) {
        if (access(current, F_OK) < 0)
                return 0;
        sqlite3 *db = NULL;
        int r = open_db(restored, SQLITE_OPEN_READWRITE, &db, ret_error);
        if (r < 0)
                return r;
        r = store_migrate(db, ret_error);
        if (r < 0) {
                sqlite3_close(db);
                return r;
        }
        char *attach = sqlite3_mprintf("ATTACH %Q AS cur", current);
        bool attached = attach && sqlite3_exec(db, attach, NULL, NULL, NULL) == SQLITE_OK;
        sqlite3_free(attach);
        bool both = attached && sqlite3_exec(db, "SELECT 1 FROM main.tokens LIMIT 0", NULL, NULL, NULL) == SQLITE_OK &&
                    sqlite3_exec(db, "SELECT 1 FROM cur.tokens LIMIT 0", NULL, NULL, NULL) == SQLITE_OK;
        if (both && sqlite3_exec(db,
                                 "BEGIN;"
                                 "DELETE FROM main.tokens;"
                                 "INSERT INTO main.tokens (id, sha256, tenant, role, created, expires, last_used) "
                                 "SELECT id, sha256, tenant, role, created, expires, last_used FROM cur.tokens;"
                                 "COMMIT;",
                                 NULL, NULL, NULL) != SQLITE_OK) {
                *ret_error = xasprintf("keeping the current tokens: %s", sqlite3_errmsg(db));
                r = -EIO;
        }
        sqlite3_close(db);
        return r;
}

int store_restore(const char *src, const char *db_path, char **ret_error) {
        assert(src && db_path && ret_error);
        int r = check_backup(src, ret_error);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = xasprintf("%s.restore", db_path);
        sqlite3 *from = NULL;
        r = open_db(src, SQLITE_OPEN_READONLY, &from, ret_error);
        if (r >= 0)
                r = copy_to(from, tmp, ret_error);
        sqlite3_close(from);
        if (r >= 0)
                r = as_one_file(tmp, ret_error);
        if (r >= 0)
                r = keep_current_tokens(tmp, db_path, ret_error);
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        /* The journal's records belong to the database replaced: the next
         * start would replay them onto the restored one. */
        _cleanup_free_ char *wal = xasprintf("%s-wal", db_path), *shm = xasprintf("%s-shm", db_path),
                            *jpath = store_journal_path(db_path), *j0 = store_journal_file(jpath, 0),
                            *j1 = store_journal_file(jpath, 1);
        const char *old[] = { wal, shm, j0, j1 };
        for (size_t i = 0; i < ELEMENTSOF(old); i++) {
                const char *p = old[i];
                if (unlink(p) < 0 && errno != ENOENT) {
                        r = -errno;
                        *ret_error = xasprintf("cannot remove %s: %s", p, strerror(-r));
                        (void) unlink(tmp);
                        return r;
                }
        }
        if (chmod(tmp, 0600) < 0 || rename(tmp, db_path) < 0) {
                r = -errno;
                *ret_error = xasprintf("cannot move the restored database to %s: %s", db_path, strerror(-r));
                (void) unlink(tmp);
                return r;
        }
        return 0;
}
