/* Who serves a home (docs/operations.md): the lock a daemon and the
 * commands that must not run beside it take on pysprinterd.lock, and the
 * daemon of an older release, which takes no such lock, found in /proc by
 * the database it holds open. Apart from backup and restore, which use
 * the lock, and from the store's open, which asks for an older daemon
 * before it migrates. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-internal.h"

int store_home_lock(const char *data_dir, bool exclusive) {
        assert(data_dir);
        _cleanup_free_ char *path = path_join(data_dir, "pysprinterd.lock");
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        /* A home on a read-only file system (a disk remounted read-only
         * after errors, a backup mounted ro) can still be read (`ps`,
         * `show`, `logs`): a shared lock is taken on what is there, the
         * lock file or the directory. Nothing can restore into it there. */
        if (fd < 0 && errno == EROFS && !exclusive) {
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 && errno == ENOENT)
                        fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (fd < 0)
                return -errno;
        if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* /proc/PID/NAME's first bytes, NUL-terminated, into buf; their count,
 * or -1. */
static ssize_t proc_read(int procfd, const char *pid, const char *name, char *buf, size_t size) {
        _cleanup_free_ char *path = xasprintf("%s/%s", pid, name);
        _cleanup_close_ int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);
        buf[MAX(n, (ssize_t) 0)] = 0;
        return n;
}

/* Whether /proc/PID is a pysprinterd serving: its command line, not one of
 * its operations subcommands (which open the database for a moment), and
 * not a child of this process between its fork and its exec (a worker
 * being spawned still has our command line and our database's fd). */
static bool proc_is_daemon(int procfd, const char *pid) {
        char stat[512];
        const char *close_paren = proc_read(procfd, pid, "stat", stat, sizeof stat) > 0 ? strrchr(stat, ')') : NULL;
        int ppid = 0;
        if (!close_paren || sscanf(close_paren, ") %*c %d", &ppid) != 1 || ppid == (int) getpid())
                return false;
        char buf[4096];
        ssize_t n = proc_read(procfd, pid, "cmdline", buf, sizeof buf);
        if (n <= 0)
                return false;
        const char *argv0 = buf, *slash = strrchr(argv0, '/');
        if (!streq(slash ? slash + 1 : argv0, "pysprinterd"))
                return false;
        for (const char *a = buf + strlen(buf) + 1; a < buf + n; a += strlen(a) + 1)
                if (streq(a, "gc") || streq(a, "backup") || streq(a, "restore") || streq(a, "token") ||
                    streq(a, "--check-config"))
                        return false;
        return true;
}

pid_t store_home_older_daemon(const char *data_dir) {
        assert(data_dir);
        _cleanup_free_ char *db = path_join(data_dir, "pysprinter.db");
        return store_db_older_daemon(db);
}

pid_t store_db_older_daemon(const char *db) {
        assert(db);
        struct stat want;
        if (stat(db, &want) < 0)
                return 0;
        DIR *proc = opendir("/proc");
        if (!proc)
                return 0;
        pid_t found = 0, self = getpid();
        struct dirent *de;
        while (!found && (de = readdir(proc))) {
                int pid = 0;
                if (parse_int(de->d_name, &pid) < 0 || pid <= 0 || pid == self)
                        continue;
                _cleanup_free_ char *fds = xasprintf("%s/fd", de->d_name);
                int dfd = openat(dirfd(proc), fds, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
                if (!d) {
                        if (dfd >= 0)
                                close(dfd);
                        continue; /* gone, or another user's */
                }
                bool holds = false;
                struct dirent *f;
                while (!holds && (f = readdir(d))) {
                        struct stat st;
                        /* Follows the magic link to the open file. */
                        holds = f->d_name[0] != '.' && fstatat(dirfd(d), f->d_name, &st, 0) == 0 &&
                                st.st_dev == want.st_dev && st.st_ino == want.st_ino;
                }
                closedir(d);
                if (holds && proc_is_daemon(dirfd(proc), de->d_name))
                        found = (pid_t) pid;
        }
        closedir(proc);
        return found;
}

bool store_home_daemon(const char *data_dir, pid_t *ret_pid, char **ret_config) {
        assert(data_dir && ret_pid);
        _cleanup_free_ char *path = path_join(data_dir, STORE_HOME_PID_FILE);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        /* A shared lock conflicts with the daemon's exclusive one only;
         * taken, it is dropped at once by the close. */
        if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
                /* Unlocked: no daemon of this release; one of a release
                 * before the pid file may still serve the directory. */
                pid_t older = store_home_older_daemon(data_dir);
                if (older <= 0)
                        return false;
                *ret_pid = older;
                if (ret_config)
                        *ret_config = NULL;
                return true;
        }
        char buf[PATH_MAX + 64] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[MAX(n, (ssize_t) 0)] = 0;
        char *end = NULL;
        long pid = n > 0 ? strtol(buf, &end, 10) : 0;
        *ret_pid = pid > 0 && pid <= INT_MAX && end && (*end == '\n' || !*end) ? (pid_t) pid : 0;
        if (ret_config) {
                const char *c = strstr(buf, "\nconfig=");
                size_t len = c ? strcspn(c + 8, "\n") : 0;
                *ret_config = len > 0 && c[8] == '/' && c[8 + len] == '\n' ? xstrndup(c + 8, len) : NULL;
        }
        return true;
}

char *store_home_lock_message(const char *data_dir, int r) {
        assert(r < 0);
        return r == -EWOULDBLOCK
                       ? xasprintf("%s is being restored (pysprinterd restore): try again when it is done", data_dir)
                       : xasprintf("cannot lock %s: %s", data_dir, strerror(-r));
}
