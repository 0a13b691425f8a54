/* Kept output dirs of full-sandbox runs (docs/data.md "Outputs"): an
 * empty, untouched dir is renamed to the next run's name instead of being
 * removed and made again. The run's side (which runs, when) is in
 * engine-run.c; this file knows dirs and tenants only. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "engine-internal.h"
#include "sandbox.h"

/* Kept output dirs (issue 15). Making a run's dir and removing it cost
 * ~0.15 ms of the daemon's CPU per ad-hoc run on ext4 (mkdir's inode
 * allocation skips the many recently deleted inodes this churn leaves,
 * `find_inode_bit` / `recently_deleted`), on the run's critical path. A
 * full-sandbox run's dir that it left exactly as it was made — empty, 0700,
 * the sandbox's owner, no extended attributes (so no ACL), the inode
 * flags of a fresh dir — is kept and renamed to the next run's name, for a
 * run of the same tenant in the same worker only (a dir's timestamps and
 * inode are its own, never another tenant's to see). Every process of the
 * run is gone by then (its pid namespace's init was reaped), so nothing can
 * hold it open.
 *
 * A dir the pool made for a sealed spare (engine-pool.c) was born before
 * any tenant was known: its birth time is the daemon's. Kept, it is
 * tenant-free (tenant NULL) and goes to the next spare of the same worker,
 * whoever that spare's run is for: what a run could read of it is reset
 * first (atime and mtime set to the moment it is kept, so neither when the
 * last run listed it nor when it wrote and removed a file shows), and a
 * dir whose size grew (entries made and removed) is not kept at all. That
 * saves the spare's mkdir + chown and the rmdir of the dir it replaces:
 * ~20 µs of the janitor's CPU per run in a fresh $DATA on ext4, ~115 µs
 * in one with a long history, as inode allocation walks the recently
 * deleted inodes this churn leaves (docs/internals/performance-log.md). */
#define OUT_SPARES_MAX 64

struct OutSpare {
        char *parent, *tenant, *path; /* tenant NULL: tenant-free (born of a spare) */
};

void engine_out_spares_free(Engine *e) {
        for (size_t i = 0; i < e->n_out_spares; i++) {
                free(e->out_spares[i].parent);
                free(e->out_spares[i].tenant);
                free(e->out_spares[i].path);
        }
        free(e->out_spares);
        e->out_spares = NULL;
        e->n_out_spares = 0;
}

static char *path_parent(const char *path) {
        const char *slash = strrchr(path, '/');
        return slash && slash > path ? xstrndup(path, (size_t) (slash - path)) : xstrdup("/");
}

/* tenant NULL: only a tenant-free dir; else the tenant's own or a
 * tenant-free one (*daemon_born then says which). */
static bool kept_take(Engine *e, const char *tenant, const char *dir, bool *daemon_born) {
        _cleanup_free_ char *parent = path_parent(dir), *path = NULL;
        pthread_mutex_lock(&e->out_spare_lock);
        for (size_t i = 0; i < e->n_out_spares; i++) {
                struct OutSpare *sp = &e->out_spares[i];
                if (!streq(sp->parent, parent) || !(sp->tenant ? tenant && streq(sp->tenant, tenant) : true))
                        continue;
                *daemon_born = !sp->tenant;
                path = sp->path;
                free(sp->parent);
                free(sp->tenant);
                e->out_spares[i] = e->out_spares[--e->n_out_spares];
                break;
        }
        pthread_mutex_unlock(&e->out_spare_lock);
        if (!path)
                return false;
        if (rename(path, dir) == 0)
                return true;
        (void) rmdir(path); /* its worker's root is gone, or it was touched */
        return false;
}

bool engine_out_kept_take(Engine *e, const char *tenant, const char *dir, bool *daemon_born) {
        *daemon_born = false;
        return kept_take(e, tenant, dir, daemon_born);
}

bool engine_out_kept_take_free(Engine *e, const char *dir) {
        bool born = false;
        return kept_take(e, NULL, dir, &born);
}

/* The inode flags (chattr) of the dir fd, 0 where the file system has none. */
static long dir_flags(int fd) {
        int flags = 0;
        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
                return errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL ? 0 : -1;
        return flags;
}

/* Exactly as made, and its atime and mtime reset to now (they are what a
 * run could have changed in an empty dir without changing anything else). */
static bool out_dir_pristine(Engine *e, const char *dir) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 07777) != 0700 ||
            st.st_nlink != 2)
                return false;
        /* Entries made and removed grow an ext4 dir for good. */
        long fresh_size = __atomic_load_n(&e->out_fresh_size, __ATOMIC_RELAXED);
        if (fresh_size < 0 || st.st_size != fresh_size)
                return false;
        /* One geteuid() per run, not two (syscalls per run, issue 15). */
        uid_t euid = geteuid();
        /* A worker's uid or one of its runs' (sandbox.h "uids"): the run
         * that had it made it its own, and the next one will too. */
        if (!sandbox_host_uid_is_run(euid, st.st_uid) || st.st_gid != (euid == 0 ? (gid_t) st.st_uid : getegid()))
                return false;
        long fresh = __atomic_load_n(&e->out_fresh_flags, __ATOMIC_RELAXED);
        if (fresh < 0 || dir_flags(fd) != fresh)
                return false;
        if (flistxattr(fd, NULL, 0) != 0)
                return false;
        /* Only "." and "..": both fit in the buffer with room to spare. */
        char buf[512];
        ssize_t n = getdents64(fd, buf, sizeof buf);
        if (n <= 0)
                return false;
        for (ssize_t off = 0; off < n;) {
                struct dirent64 *de = (struct dirent64 *) (buf + off);
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        return false;
                off += de->d_reclen;
        }
        return futimens(fd, NULL) == 0;
}

bool engine_out_kept_keep(Engine *e, const char *tenant, char **dir) {
        if (!*dir || !out_dir_pristine(e, *dir))
                return false;
        _cleanup_free_ char *parent = path_parent(*dir);
        if (tenant) {
                /* Named after its run until now: a finished run's id names
                 * no dir (docs/data.md), so it waits under a name of its
                 * own. A spare's dir is named after the spare already. */
                static uint64_t counter;
                char name[32];
                snprintf(name, sizeof(name), "k%llu",
                         (unsigned long long) __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
                _cleanup_free_ char *to = path_join(parent, name);
                if (rename(*dir, to) < 0)
                        return false;
                free(*dir);
                *dir = TAKE_PTR(to);
        }
        struct OutSpare sp = { TAKE_PTR(parent), tenant ? xstrdup(tenant) : NULL, TAKE_PTR(*dir) };
        struct OutSpare old = { 0 };
        pthread_mutex_lock(&e->out_spare_lock);
        if (e->n_out_spares == OUT_SPARES_MAX) {
                old = e->out_spares[0];
                e->out_spares[0] = e->out_spares[--e->n_out_spares];
        }
        if (!e->out_spares)
                e->out_spares = xcalloc(OUT_SPARES_MAX, sizeof(struct OutSpare));
        e->out_spares[e->n_out_spares++] = sp;
        pthread_mutex_unlock(&e->out_spare_lock);
        if (old.path)
                (void) rmdir(old.path);
        free(old.parent);
        free(old.tenant);
        free(old.path);
        return true;
}

void engine_out_fresh_flags_learn(Engine *e, const char *dir) {
        if (__atomic_load_n(&e->out_fresh_flags, __ATOMIC_RELAXED) >= 0)
                return;
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        long f = fd >= 0 ? dir_flags(fd) : -1;
        struct stat st;
        if (f < 0 || fstat(fd, &st) < 0)
                return;
        __atomic_store_n(&e->out_fresh_size, (long) st.st_size, __ATOMIC_RELAXED);
        __atomic_store_n(&e->out_fresh_flags, f, __ATOMIC_RELAXED);
}

