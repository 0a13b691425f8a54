/* Opening and closing a Store: the connection, its migrations, the read
 * connection and the full-disk reserve, and on close the writer's stop. It
 * stands above the writer (store-writer.c) and the migrations, which stand
 * on store.c's statement helpers: calls run one way, down. */
#include <assert.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "store-internal.h"

sqlite3 *store_reader_open(const char *path) {
        sqlite3 *db = NULL;
        if (!path || !*path ||
            sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, store_vfs()) != SQLITE_OK) {
                sqlite3_close(db);
                return NULL;
        }
        sqlite3_busy_timeout(db, 10000);
        return db;
}

/* The database holds every tenant's arguments, results and sources, so
 * like the logs and the journal beside it it is its owner's: SQLite's unix
 * VFS creates it 0644 (less the umask), and a data directory an operator
 * made 0755 let any local user read it. A database this open created
 * becomes 0600; one that was there (an older binary's 0644) loses its
 * world bits only, so a group the operator granted stays. Before the first
 * statement: SQLite creates the -wal and -shm files then, with the
 * database's mode; ones a crash left are changed too. chmod() by path,
 * never open()+close(): closing a descriptor of the database would drop
 * the POSIX locks another connection of this process holds on it. */
static void store_files_private(const char *path, bool created) {
        static const char *const suffixes[] = { "", "-wal", "-shm" };
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *p = xasprintf("%s%s", path, suffixes[i]);
                struct stat st;
                if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                mode_t want = created && i == 0 ? 0600 : st.st_mode & 07770;
                if ((st.st_mode & 07777) != want)
                        (void) chmod(p, want);
        }
}

char *store_immutable_uri(const char *path) {
        Buf b;
        buf_init(&b, SIZE_MAX);
        (void) buf_appends(&b, "file:");
        for (const char *p = path; *p; p++)
                (void) (*p == '%' || *p == '?' || *p == '#' ? buf_printf(&b, "%%%02X", (unsigned char) *p)
                                                            : buf_append(&b, p, 1));
        (void) buf_appends(&b, "?immutable=1");
        return buf_steal(&b);
}

bool store_read_only_and_whole(const char *db_path) {
        struct statvfs v;
        if (statvfs(db_path, &v) < 0 || !(v.f_flag & ST_RDONLY))
                return false;
        _cleanup_free_ char *wal = xasprintf("%s-wal", db_path), *shm = xasprintf("%s-shm", db_path);
        return access(wal, F_OK) < 0 && errno == ENOENT && access(shm, F_OK) < 0 && errno == ENOENT;
}

/* Why this thread's last store_open() of a path failed in a migration,
 * for store_open_message(): its callers hold only the errno, and the
 * errno of a step's failed SQL (-EUCLEAN) says nothing ("Structure needs
 * cleaning").
 * Replaced by the next failure, dropped by the next open of that path. */
static _Thread_local struct {
        char *path;
        int r;
        char *message;
} migrate_failure;

static void migrate_failure_set(const char *path, int r, char *message) {
        free(migrate_failure.path);
        free(migrate_failure.message);
        migrate_failure.path = path ? xstrdup(path) : NULL;
        migrate_failure.r = r;
        migrate_failure.message = message;
}

static int open_store_once(const char *path, bool allocate_wal, Store **ret_store) {
        sqlite3 *db = NULL;
        bool on_disk = !streq(path, ":memory:") && !startswith(path, "file:");
        bool created = on_disk && access(path, F_OK) < 0 && errno == ENOENT;
        /* On a read-only file system SQLite opens the file read-only, and
         * reads it through the -wal and -shm a crash left there; with
         * neither (a clean close) it could not read it at all ("unable to
         * open database file"), so `ps`, `show` and `logs` of a home on a
         * disk remounted read-only failed. Such a file is immutable. */
        bool immutable = on_disk && !created && store_read_only_and_whole(path);
        _cleanup_free_ char *uri = immutable ? store_immutable_uri(path) : NULL;
        int rc = immutable ? sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_FULLMUTEX,
                                             store_vfs())
                           : sqlite3_open_v2(path, &db,
                                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                             store_vfs());
        if (rc != SQLITE_OK) {
                sqlite3_close(db);
                return store_sqlite_errno(rc);
        }
        if (on_disk && !immutable)
                store_files_private(path, created);
        sqlite3_busy_timeout(db, 10000);
        /* WAL + synchronous=NORMAL: a crash loses at most the last
         * transactions, never the database (DESIGN §7: kill -9 safe). */
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                     NULL, NULL, NULL);
        /* A database a daemon of an older release serves is not upgraded
         * under it: that daemon would go on beside a schema it does not
         * know, and could not start on it again (a container of the
         * older release, a rollback). Looked at only when a migration is
         * due, which a database a daemon of this release serves never is. */
        int version = on_disk && !created && !immutable ? store_db_schema_version(db) : 0;
        if (version > 0 && version < store_schema_version() && store_db_older_daemon(path) > 0) {
                sqlite3_close(db);
                return -EBUSY;
        }
        _cleanup_free_ char *err = NULL;
        int r = store_migrate(db, &err);
        if (r < 0) {
                sqlite3_close(db);
                /* A step's SQL that failed: its errno says nothing; nor
                 * does a schema version that could not be read (a locked
                 * or unreadable file: which read, SQLite's reason). An
                 * I/O error or a full disk keeps the errno's words (the
                 * reserve's retry, -ENOSPC: "No space left on device"). */
                if (r != -EIO && r != -ENOSPC)
                        migrate_failure_set(path, r, TAKE_PTR(err));
                return r;
        }
        Store *s = xcalloc(1, sizeof(Store));
        s->db = db;
        s->cfd_db = -1;
        s->jfd[0] = s->jfd[1] = -1;
        s->wguard_fd = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->wlock, NULL);
        pthread_mutex_init(&s->wprio, NULL);
        pthread_cond_init(&s->wcond, NULL);
        pthread_cond_init(&s->wdone, NULL);
        pthread_mutex_init(&s->rlock, NULL);
        /* After the migrations: the reader sees the final schema. Not for
         * a private (in-memory) database, which a second connection would
         * not share. */
        /* An immutable one is read through its one connection: nothing
         * to checkpoint, journal or keep room for. */
        if (on_disk && !immutable) {
                s->rdb = store_reader_open(path);
                store_checkpointer_start(s, path, allocate_wal);
                s->jpath = store_journal_path(path);
        }
        s->reserve_path = xasprintf("%s-reserve", path);
        if (!immutable)
                store_reserve_make(s);
        *ret_store = s;
        return 0;
}

/* Free bytes of the file system holding path (a file, maybe absent: its
 * directory is asked); UINT64_MAX when that cannot be known. */
static uint64_t free_bytes_beside(const char *path) {
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = 0;
        struct statvfs v;
        if (statvfs(slash ? dir : ".", &v) < 0)
                return UINT64_MAX;
        return (uint64_t) v.f_bavail * v.f_frsize;
}

/* Opens, and on a full disk gives the reserve back and tries once more.
 * SQLite creates a WAL database's -wal and -shm files at its open (the
 * last clean close removed them); with no room for them the open fails
 * with an I/O error (SQLITE_IOERR_SHMSIZE), not SQLITE_FULL, and so did
 * every command on a full disk, `ps` and `gc` included, while the reserve
 * kept for a full disk stayed unused. An open that still fails where the
 * disk has less than the reserve's size free is -ENOSPC: what callers
 * print then says why. */
static int open_store(const char *path, bool allocate_wal, Store **ret_store) {
        migrate_failure_set(NULL, 0, NULL);
        int r = open_store_once(path, allocate_wal, ret_store);
        if ((r != -EIO && r != -ENOSPC) || streq(path, ":memory:") || startswith(path, "file:"))
                return r;
        _cleanup_free_ char *reserve = xasprintf("%s-reserve", path);
        if (store_reserve_release_path(reserve)) {
                r = open_store_once(path, allocate_wal, ret_store);
                if (r >= 0) {
                        (*ret_store)->reserve_released = true;
                        (*ret_store)->reserve_checked = now_monotonic();
                        return r;
                }
        }
        if (free_bytes_beside(path) < STORE_RESERVE_BYTES)
                return -ENOSPC;
        return r;
}

bool store_read_only(Store *s) {
        assert(s);
        return sqlite3_db_readonly(s->db, "main") == 1;
}

int store_open(const char *path, Store **ret_store) {
        return open_store(path, true, ret_store);
}

int store_open_short_lived(const char *path, Store **ret_store) {
        return open_store(path, false, ret_store);
}

char *store_open_message(const char *path, int r) {
        assert(path && r < 0);
        int version = -1;
        if (r == -EPROTONOSUPPORT && store_file_schema_version(path, &version) >= 0)
                return xasprintf("cannot open the run database %s: its schema is version %d, newer than this "
                                 "pysprinter knows (%d): a newer release upgraded it; run that release, or restore "
                                 "a backup made by this one (docs/operations.md \"Upgrades\")",
                                 path, version, store_schema_version());
        pid_t older = r == -EBUSY ? store_db_older_daemon(path) : 0;
        if (older > 0 && store_file_schema_version(path, &version) >= 0)
                return xasprintf("cannot open the run database %s: pysprinterd (pid %d), of an older release, serves "
                                 "it (schema %d); this pysprinter (schema %d) would upgrade it under that daemon, "
                                 "which could then not start on it again: ask that daemon (--server URL), or stop it "
                                 "and start this release's pysprinterd first (docs/operations.md \"Upgrades\")",
                                 path, (int) older, version, store_schema_version());
        /* A migration's own words: which step and SQLite's reason. */
        if (migrate_failure.path && streq(migrate_failure.path, path) && migrate_failure.r == r &&
            migrate_failure.message)
                return xasprintf("cannot open the run database %s: %s; restore a backup (docs/operations.md "
                                 "\"Upgrades\") or report it",
                                 path, migrate_failure.message);
        if (r == -EPROTONOSUPPORT)
                return xasprintf("cannot open the run database %s: its schema is newer than this pysprinter knows "
                                 "(%d): a newer release upgraded it; run that release, or restore a backup made by "
                                 "this one (docs/operations.md \"Upgrades\")",
                                 path, store_schema_version());
        return xasprintf("cannot open the run database %s: %s", path, strerror(-r));
}

Store *store_close(Store *s) {
        if (!s)
                return NULL;
        /* Whatever is enqueued is committed before the connection goes. */
        store_writer_stop(s);
        store_writer_guard_stop(s);
        /* Every journaled run is committed now: its files are empty. */
        store_journal_close(s);
        store_checkpointer_stop(s);
        for (size_t i = 0; i < s->n_cache; i++)
                sqlite3_finalize(s->cache[i].st);
        for (size_t i = 0; i < s->n_rcache; i++)
                sqlite3_finalize(s->rcache[i].st);
        sqlite3_close_v2(s->rdb);
        sqlite3_close_v2(s->db);
        /* After the connections: closing a descriptor of the database
         * drops every POSIX lock this process holds on it. */
        store_checkpointer_release(s);
        pthread_mutex_destroy(&s->rlock);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->wlock);
        pthread_mutex_destroy(&s->wprio);
        pthread_cond_destroy(&s->wcond);
        pthread_cond_destroy(&s->wdone);
        if (s->secrets)
                s->secrets->ops->free(s->secrets);
        if (s->tokens)
                s->tokens->ops->free(s->tokens);
        free(s->secrets_key_path);
        explicit_bzero(s->secrets_key_alt, sizeof s->secrets_key_alt);
        free(s->reserve_path);
        free(s->copy_log_dir);
        free(s->jpath);
        free(s);
        return NULL;
}

