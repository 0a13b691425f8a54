/* Backup and restore of the database (docs/operations.md "Backup").
 *
 * Backup: SQLite's online backup API copying the whole database in one
 * step. In WAL mode that step is one read transaction: it sees one
 * committed state while the daemon keeps writing (writers never wait for a
 * WAL reader), so the copy is consistent without stopping anything.
 *
 * Restore: the backup is checked (a database, integrity_check "ok", a
 * schema this binary can migrate), copied next to the live file with the
 * same API, and renamed over it; the old WAL and shared-memory files go
 * first so SQLite cannot replay them onto the restored content. */
#include <assert.h>
#include <fcntl.h>
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
                *ret_error = xasprintf("backup failed: %s", sqlite3_errstr(rc));
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

int store_backup(const char *db_path, const char *dest, char **ret_error) {
        assert(db_path && dest && ret_error);
        if (access(db_path, F_OK) < 0) {
                int r = -errno;
                *ret_error = xasprintf("%s: %s (is the data directory right?)", db_path, strerror(-r));
                return r;
        }
        if (access(dest, F_OK) == 0) {
                *ret_error = xasprintf("%s exists; a backup never overwrites a file", dest);
                return -EEXIST;
        }
        sqlite3 *from = NULL, *to = NULL;
        /* Read-write open of the source: a reader of a WAL database needs
         * the -shm file, which a read-only open cannot create. */
        int r = open_db(db_path, SQLITE_OPEN_READWRITE, &from, ret_error);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = xasprintf("%s.partial", dest);
        (void) unlink(tmp);
        r = open_db(tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &to, ret_error);
        if (r >= 0)
                r = copy_db(from, to, ret_error);
        /* The copy is a plain rollback-journal file: one file to carry. */
        if (r >= 0 && sqlite3_exec(to, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
                *ret_error = xasprintf("%s: %s", tmp, sqlite3_errmsg(to));
                r = -EIO;
        }
        sqlite3_close(from);
        sqlite3_close(to);
        if (r >= 0 && (chmod(tmp, 0600) < 0 || rename(tmp, dest) < 0)) {
                r = -errno;
                *ret_error = xasprintf("cannot write %s: %s", dest, strerror(-r));
        }
        if (r < 0)
                (void) unlink(tmp);
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

int store_restore(const char *src, const char *db_path, char **ret_error) {
        assert(src && db_path && ret_error);
        int r = check_backup(src, ret_error);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = xasprintf("%s.restore", db_path);
        (void) unlink(tmp);
        sqlite3 *from = NULL, *to = NULL;
        r = open_db(src, SQLITE_OPEN_READONLY, &from, ret_error);
        if (r >= 0)
                r = open_db(tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &to, ret_error);
        if (r >= 0)
                r = copy_db(from, to, ret_error);
        if (r >= 0 && sqlite3_exec(to, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
                *ret_error = xasprintf("%s: %s", tmp, sqlite3_errmsg(to));
                r = -EIO;
        }
        sqlite3_close(from);
        sqlite3_close(to);
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        const char *suffixes[] = { "-wal", "-shm" };
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *p = xasprintf("%s%s", db_path, suffixes[i]);
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
