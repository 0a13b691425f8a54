/* The store's VFS: SQLite's "unix" VFS with each WAL frame written in one
 * system call instead of two (issue 15 b, docs/internals/performance-log.md "Run
 * records: syscalls per commit (round 8)").
 *
 * SQLite writes a WAL frame as two xWrite calls: its 24-byte header, then
 * the page right after it (wal.c walWriteOneFrame). Each is a pwrite64,
 * and on ext4 each pays the write path's fixed cost (inode lock, page
 * cache lookup, mtime) whatever its size: an invoke's commit writes 4
 * frames, so 8 pwrite64 where 4 do. Here a WAL file holds a frame
 * header back and writes it together with the page that follows it, as
 * one write of header + page at the header's offset.
 *
 * Exactly equivalent to the plain writes, by construction:
 *  - only a write of exactly a frame header's size past the WAL header is
 *    held, and only the write that starts where it ends joins it;
 *  - every other call on the file (a read, another write, sync, size,
 *    truncate, lock, file control, close) first writes the held header
 *    out, as the plain write would have, so whatever SQLite does next
 *    sees the file as without the shim;
 *  - an error of a held header's write is reported on the call that
 *    wrote it (the joined write, or the call that flushed it): SQLite
 *    fails that frame's commit the same way, as the header and its page
 *    are written back to back in one function and checked together.
 * The main database file passes every call to the unix VFS's file,
 * except that one marked with STORE_FCNTL_SYNC_PACER (the checkpointer's
 * own connection) lets its pacer write the pages back before SQLite's
 * sync at the end of a checkpoint (round 17; the sync itself still
 * comes, before SQLite publishes what it copied). Everything else, the
 * -shm and its locks, the bytes, is the "unix" VFS's own: another process
 * (pysprinterd token|backup|gc, the embedded CLI, sqlite3) opening the
 * same files with any VFS sees the same bytes and takes the same locks. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "shared.h"
#include "store-internal.h"

#define WAL_HEADER_SIZE 32
#define WAL_FRAME_HEADER_SIZE 24
#define WAL_MAX_PAGE 65536

typedef struct WalFile {
        sqlite3_file base;      /* our methods */
        sqlite3_file *real;     /* the unix VFS's file, right after this struct */
        sqlite3_int64 held_off; /* offset of the held frame header; -1: none */
        unsigned char held[WAL_FRAME_HEADER_SIZE];
        unsigned char *join;    /* header + page, allocated at the first join */
} WalFile;

/* The unix file follows ours, 8-aligned. */
#define WAL_FILE_SIZE ((sizeof(WalFile) + 7) & ~(size_t) 7)

static sqlite3_vfs *unix_vfs;
static sqlite3_vfs store_vfs_def;
static pthread_once_t vfs_once = PTHREAD_ONCE_INIT;
static int vfs_registered = SQLITE_ERROR;
static atomic_uint_fast64_t joined_writes;
/* xSync calls on WAL and main database files: each a device flush on a
 * disk (the checkpointer's restart counts its own, round 18). */
static atomic_uint_fast64_t syncs;

static int held_flush(WalFile *w) {
        if (w->held_off < 0)
                return SQLITE_OK;
        sqlite3_int64 off = w->held_off;
        w->held_off = -1;
        return w->real->pMethods->xWrite(w->real, w->held, WAL_FRAME_HEADER_SIZE, off);
}

static int wal_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off) {
        WalFile *w = (WalFile *) f;
        if (w->held_off >= 0 && off == w->held_off + WAL_FRAME_HEADER_SIZE && amt > 0 && amt <= WAL_MAX_PAGE) {
                if (!w->join) {
                        w->join = sqlite3_malloc(WAL_FRAME_HEADER_SIZE + WAL_MAX_PAGE);
                        if (!w->join) {
                                int rc = held_flush(w);
                                return rc != SQLITE_OK ? rc : w->real->pMethods->xWrite(w->real, buf, amt, off);
                        }
                }
                memcpy(w->join, w->held, WAL_FRAME_HEADER_SIZE);
                memcpy(w->join + WAL_FRAME_HEADER_SIZE, buf, (size_t) amt);
                sqlite3_int64 at = w->held_off;
                w->held_off = -1;
                atomic_fetch_add_explicit(&joined_writes, 1, memory_order_relaxed);
                return w->real->pMethods->xWrite(w->real, w->join, WAL_FRAME_HEADER_SIZE + amt, at);
        }
        int rc = held_flush(w);
        if (rc != SQLITE_OK)
                return rc;
        if (amt == WAL_FRAME_HEADER_SIZE && off >= WAL_HEADER_SIZE) {
                memcpy(w->held, buf, WAL_FRAME_HEADER_SIZE);
                w->held_off = off;
                return SQLITE_OK;
        }
        return w->real->pMethods->xWrite(w->real, buf, amt, off);
}

static int wal_close(sqlite3_file *f) {
        WalFile *w = (WalFile *) f;
        int rc = held_flush(w);
        int k = w->real->pMethods->xClose(w->real);
        sqlite3_free(w->join);
        w->join = NULL;
        return rc != SQLITE_OK ? rc : k;
}

/* The calls that pass through once the held header is written. */
#define FLUSH_OR_RETURN(w)                        \
        do {                                      \
                int rc_ = held_flush(w);          \
                if (rc_ != SQLITE_OK)             \
                        return rc_;               \
        } while (0)

static int wal_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        return w->real->pMethods->xRead(w->real, buf, amt, off);
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        return w->real->pMethods->xTruncate(w->real, size);
}

static int wal_sync(sqlite3_file *f, int flags) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        atomic_fetch_add_explicit(&syncs, 1, memory_order_relaxed);
        return w->real->pMethods->xSync(w->real, flags);
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *ret) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        return w->real->pMethods->xFileSize(w->real, ret);
}

static int wal_lock(sqlite3_file *f, int level) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        return w->real->pMethods->xLock(w->real, level);
}

static int wal_unlock(sqlite3_file *f, int level) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        return w->real->pMethods->xUnlock(w->real, level);
}

static int wal_check_reserved(sqlite3_file *f, int *ret) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        return w->real->pMethods->xCheckReservedLock(w->real, ret);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg) {
        WalFile *w = (WalFile *) f;
        FLUSH_OR_RETURN(w);
        return w->real->pMethods->xFileControl(w->real, op, arg);
}

/* No side effect on the file: nothing to write out first. */
static int wal_sector_size(sqlite3_file *f) {
        WalFile *w = (WalFile *) f;
        return w->real->pMethods->xSectorSize(w->real);
}

static int wal_device_characteristics(sqlite3_file *f) {
        WalFile *w = (WalFile *) f;
        return w->real->pMethods->xDeviceCharacteristics(w->real);
}

/* Version 1: a WAL file has no shared memory and is never memory-mapped
 * (both are the database file's). */
static const sqlite3_io_methods wal_methods = {
        .iVersion = 1,
        .xClose = wal_close,
        .xRead = wal_read,
        .xWrite = wal_write,
        .xTruncate = wal_truncate,
        .xSync = wal_sync,
        .xFileSize = wal_file_size,
        .xLock = wal_lock,
        .xUnlock = wal_unlock,
        .xCheckReservedLock = wal_check_reserved,
        .xFileControl = wal_file_control,
        .xSectorSize = wal_sector_size,
        .xDeviceCharacteristics = wal_device_characteristics,
};

/* ---- the main database file ------------------------------------------------
 *
 * SQLite syncs the database in a checkpoint that copied every frame (wal.c
 * walCheckpoint: xFileControl(SQLITE_FCNTL_CKPT_DONE), then xTruncate and
 * xSync), and that sync sends every page the pass copied in at once: ~10
 * MiB in one 100 ms at wrk -c8, the largest burst the host paused the VM
 * for (docs/internals/performance-log.md "the database's sync paced"). A file marked by
 * its connection calls its pacer before that sync; every other call, and
 * every unmarked file, is the unix file's own. */
typedef struct DbFile {
        sqlite3_file base;
        sqlite3_file *real;
        StoreSyncPacer pacer;
        bool ckpt_done; /* a checkpoint's copy ended, no write or sync since */
} DbFile;

#define DB_FILE_SIZE ((sizeof(DbFile) + 7) & ~(size_t) 7)
#define SHIM_FILE_SIZE MAX(WAL_FILE_SIZE, DB_FILE_SIZE)

static int db_close(sqlite3_file *f) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xClose(d->real);
}

static int db_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xRead(d->real, buf, amt, off);
}

/* A write is a new transaction's or checkpoint's: the last copy's sync is past. */
static int db_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off) {
        DbFile *d = (DbFile *) f;
        d->ckpt_done = false;
        return d->real->pMethods->xWrite(d->real, buf, amt, off);
}

static int db_truncate(sqlite3_file *f, sqlite3_int64 size) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xTruncate(d->real, size);
}

static int db_sync(sqlite3_file *f, int flags) {
        DbFile *d = (DbFile *) f;
        if (d->ckpt_done && d->pacer.pace)
                d->pacer.pace(d->pacer.arg);
        d->ckpt_done = false;
        atomic_fetch_add_explicit(&syncs, 1, memory_order_relaxed);
        return d->real->pMethods->xSync(d->real, flags);
}

static int db_file_size(sqlite3_file *f, sqlite3_int64 *ret) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xFileSize(d->real, ret);
}

static int db_lock(sqlite3_file *f, int level) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xLock(d->real, level);
}

static int db_unlock(sqlite3_file *f, int level) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xUnlock(d->real, level);
}

static int db_check_reserved(sqlite3_file *f, int *ret) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xCheckReservedLock(d->real, ret);
}

static int db_file_control(sqlite3_file *f, int op, void *arg) {
        DbFile *d = (DbFile *) f;
        if (op == STORE_FCNTL_SYNC_PACER) {
                d->pacer = *(const StoreSyncPacer *) arg;
                return SQLITE_OK;
        }
        if (op == SQLITE_FCNTL_CKPT_DONE)
                d->ckpt_done = true;
        return d->real->pMethods->xFileControl(d->real, op, arg);
}

static int db_sector_size(sqlite3_file *f) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xSectorSize(d->real);
}

static int db_device_characteristics(sqlite3_file *f) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xDeviceCharacteristics(d->real);
}

static int db_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **ret) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xShmMap(d->real, region, size, extend, ret);
}

static int db_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xShmLock(d->real, offset, n, flags);
}

static void db_shm_barrier(sqlite3_file *f) {
        DbFile *d = (DbFile *) f;
        d->real->pMethods->xShmBarrier(d->real);
}

static int db_shm_unmap(sqlite3_file *f, int delete_flag) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xShmUnmap(d->real, delete_flag);
}

static int db_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **ret) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xFetch(d->real, off, amt, ret);
}

static int db_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
        DbFile *d = (DbFile *) f;
        return d->real->pMethods->xUnfetch(d->real, off, p);
}

/* By the unix file's version (3 on Linux; a test's wrapping VFS may
 * offer less): SQLite calls the shared-memory and fetch methods only
 * where the version has them. */
#define DB_METHODS(version)                                       \
        {                                                         \
                .iVersion = (version),                            \
                .xClose = db_close,                               \
                .xRead = db_read,                                 \
                .xWrite = db_write,                               \
                .xTruncate = db_truncate,                         \
                .xSync = db_sync,                                 \
                .xFileSize = db_file_size,                        \
                .xLock = db_lock,                                 \
                .xUnlock = db_unlock,                             \
                .xCheckReservedLock = db_check_reserved,          \
                .xFileControl = db_file_control,                  \
                .xSectorSize = db_sector_size,                    \
                .xDeviceCharacteristics = db_device_characteristics, \
                .xShmMap = db_shm_map,                            \
                .xShmLock = db_shm_lock,                          \
                .xShmBarrier = db_shm_barrier,                    \
                .xShmUnmap = db_shm_unmap,                        \
                .xFetch = db_fetch,                               \
                .xUnfetch = db_unfetch,                           \
        }
static const sqlite3_io_methods db_methods[] = { DB_METHODS(1), DB_METHODS(1), DB_METHODS(2), DB_METHODS(3) };

/* The unix VFS's file opened in the slot after the shim's struct
 * (*ret_real): true when the shim may take methods; else the shim has
 * none, as SQLite calls no xClose on a file whose open failed. */
static bool open_real(sqlite3_file *shim, sqlite3_file **ret_real, const char *name, int flags, int *ret_flags,
                      int *ret_rc) {
        *ret_real = (sqlite3_file *) ((char *) shim + SHIM_FILE_SIZE);
        *ret_rc = unix_vfs->xOpen(unix_vfs, name, *ret_real, flags, ret_flags);
        shim->pMethods = NULL;
        return *ret_rc == SQLITE_OK && (*ret_real)->pMethods;
}

static int db_open(const char *name, DbFile *d, int flags, int *ret_flags) {
        int rc;
        memset(d, 0, sizeof(*d));
        if (open_real(&d->base, &d->real, name, flags, ret_flags, &rc))
                d->base.pMethods = &db_methods[MIN(MAX(d->real->pMethods->iVersion, 1), 3)];
        return rc;
}

static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *ret_flags) {
        (void) vfs;
        if (flags & SQLITE_OPEN_MAIN_DB)
                return db_open(name, (DbFile *) f, flags, ret_flags);
        if (!(flags & SQLITE_OPEN_WAL))
                /* Neither: the unix VFS's file, in our slot. */
                return unix_vfs->xOpen(unix_vfs, name, f, flags, ret_flags);
        WalFile *w = (WalFile *) f;
        int rc;
        memset(w, 0, sizeof(*w));
        w->held_off = -1;
        if (open_real(&w->base, &w->real, name, flags, ret_flags, &rc))
                w->base.pMethods = &wal_methods;
        return rc;
}

static void vfs_register(void) {
        /* The default VFS ("unix" on Linux; a test may have wrapped it). */
        unix_vfs = sqlite3_vfs_find(NULL);
        if (!unix_vfs)
                return;
        /* Every other method is the unix VFS's own (they take no file). */
        store_vfs_def = *unix_vfs;
        store_vfs_def.zName = STORE_VFS_NAME;
        store_vfs_def.pNext = NULL;
        store_vfs_def.szOsFile = (int) SHIM_FILE_SIZE + unix_vfs->szOsFile;
        store_vfs_def.xOpen = vfs_open;
        vfs_registered = sqlite3_vfs_register(&store_vfs_def, 0);
}

const char *store_vfs(void) {
        (void) pthread_once(&vfs_once, vfs_register);
        /* Without it: SQLite's default, as before. */
        return vfs_registered == SQLITE_OK ? STORE_VFS_NAME : NULL;
}

uint64_t store_vfs_joined_writes(void) {
        return atomic_load_explicit(&joined_writes, memory_order_relaxed);
}

uint64_t store_vfs_syncs(void) {
        return atomic_load_explicit(&syncs, memory_order_relaxed);
}
