/* Path helpers. */
#include "basic.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>

const char *path_base_name(const char *path) {
        const char *slash = strrchr(path, '/');
        return slash ? slash + 1 : path;
}

char *path_join_many(const char *first, ...) {
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        va_list ap;
        va_start(ap, first);
        for (const char *p = first; p; p = va_arg(ap, const char *)) {
                if (!*p)
                        continue;
                if (b.len > 0 && b.data[b.len - 1] != '/' && p[0] != '/')
                        buf_append(&b, "/", 1);
                else if (b.len > 0 && b.data[b.len - 1] == '/' && p[0] == '/')
                        p++;
                buf_appends(&b, p);
        }
        va_end(ap);
        return buf_steal(&b);
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = xstrdup(path);
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int dir_fdopen(int fd, DIR **ret) {
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = d;
        return 0;
}

/* rm_rf holds one directory fd (and one stack frame) per level it is
 * below. A tree any process may write (a run's output dir: one mkdir and
 * one chdir per level, 100 000 levels in a few seconds) can be deeper than
 * the fds the process has: the walk failed with EMFILE, the tree stayed on
 * disk for good, and meanwhile the daemon had no fd left for anything
 * else. So below this depth a directory is not walked into: it is moved
 * up into the top directory (a rename, O(1) on one file system) and
 * removed on a later pass over the top. */
#define RM_RF_MAX_DEPTH 32

typedef struct RmRf {
        int top;             /* the directory being removed */
        dev_t dev;           /* its file system: nothing else is removed */
        unsigned long moved; /* subtrees moved up to top during this pass */
        unsigned long seq;   /* names them */
} RmRf;

static int rm_rf_entry(RmRf *t, int parent_fd, const char *name, unsigned depth);

/* Removes what directory fd (consumed) holds. */
static int rm_rf_children(RmRf *t, int fd, unsigned depth) {
        DIR *d = NULL;
        int r = dir_fdopen(fd, &d);
        if (r < 0)
                return r;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int k = rm_rf_entry(t, dirfd(d), de->d_name, depth);
                if (k < 0 && r == 0)
                        r = k;
        }
        closedir(d);
        return r;
}

/* Moves directory name (too deep to walk into) up into the top directory,
 * under a name no entry there has. */
static int rm_rf_move_up(RmRf *t, int parent_fd, const char *name) {
        for (int tries = 0; tries < 1000; tries++) {
                char to[64];
                (void) snprintf(to, sizeof(to), ".rm-rf-%lu", t->seq++);
                if (renameat2(parent_fd, name, t->top, to, RENAME_NOREPLACE) == 0) {
                        t->moved++;
                        return 0;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

static int rm_rf_entry(RmRf *t, int parent_fd, const char *name, unsigned depth) {
        struct stat st;
        if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        if (st.st_dev != t->dev)
                return -EXDEV;
        /* Read-only store dirs must become writable before their entries go
         * (and before they can be moved: rename writes its ".."). */
        (void) fchmodat(parent_fd, name, 0700, 0);
        if (depth >= RM_RF_MAX_DEPTH)
                return rm_rf_move_up(t, parent_fd, name);
        int r = rm_rf_children(t, openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), depth + 1);
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int rm_rf(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
        (void) chmod(path, 0700);
        _cleanup_close_ int top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (top < 0)
                return -errno;
        RmRf t = { .top = top, .dev = st.st_dev };
        int r = 0;
        /* Each pass removes what lies within RM_RF_MAX_DEPTH of the top and
         * moves what lies below up: a pass that moved nothing was the last
         * (a tree N levels deep takes about N / RM_RF_MAX_DEPTH passes). A
         * pass that failed somewhere (another file system inside) still
         * lets the next one remove what it moved. */
        do {
                t.moved = 0;
                int k = rm_rf_children(&t, openat(top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0);
                if (k < 0 && r == 0)
                        r = k;
        } while (t.moved > 0);
        if (rmdir(path) < 0 && errno != ENOENT && r >= 0)
                r = -errno;
        return r;
}

int exe_dir(char **ret) {
        char buf[4096];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        *ret = xstrdup(dirname(buf));
        return 0;
}

char *data_dir_default(void) {
        const char *e = getenv("PYSPRINTER_HOME");
        if (e && *e)
                return xstrdup(e);
        e = getenv("XDG_DATA_HOME");
        if (e && *e == '/')
                return path_join(e, "pysprinter");
        e = getenv("HOME");
        return path_join(e && *e ? e : "/root", ".local/share/pysprinter");
}

static uint64_t tree_bytes_at_depth(int dfd, const char *name, int depth) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0;
        uint64_t total = (uint64_t) st.st_blocks * 512;
        if (!S_ISDIR(st.st_mode) || depth > 64)
                return total;
        DIR *d = NULL;
        if (dir_fdopen(openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), &d) < 0)
                return total;
        struct dirent *de;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        total += tree_bytes_at_depth(dirfd(d), de->d_name, depth + 1);
        closedir(d);
        return total;
}

uint64_t path_tree_bytes_at(int dfd, const char *name) {
        return tree_bytes_at_depth(dfd, name, 0);
}

static uint64_t tree_newest_mtime_at_depth(int dfd, const char *name, int depth) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0;
        uint64_t newest = (uint64_t) MAX(st.st_mtim.tv_sec, (time_t) 0);
        if (!S_ISDIR(st.st_mode) || depth > 64)
                return newest;
        DIR *d = NULL;
        if (dir_fdopen(openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), &d) < 0)
                return newest;
        struct dirent *de;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        newest = MAX(newest, tree_newest_mtime_at_depth(dirfd(d), de->d_name, depth + 1));
        closedir(d);
        return newest;
}

uint64_t path_tree_newest_mtime_at(int dfd, const char *name) {
        return tree_newest_mtime_at_depth(dfd, name, 0);
}

uint64_t path_tree_bytes(const char *path) {
        return tree_bytes_at_depth(AT_FDCWD, path, 0);
}

uint64_t path_file_bytes(const char *path) {
        struct stat st;
        return path && stat(path, &st) == 0 ? (uint64_t) st.st_size : 0;
}
