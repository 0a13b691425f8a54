/* File descriptor helpers. Every fd we open is O_CLOEXEC. */
#include "basic.h"

#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/stat.h>

int fd_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -EBADF;
}

void closep(int *fd) {
        *fd = fd_close(*fd);
}

int fd_nonblock(int fd, bool nonblock) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        int nflags = nonblock ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
        if (nflags != flags && fcntl(fd, F_SETFL, nflags) < 0)
                return -errno;
        return 0;
}

int fd_cloexec(int fd, bool cloexec) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0)
                return -errno;
        int nflags = cloexec ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
        if (nflags != flags && fcntl(fd, F_SETFD, nflags) < 0)
                return -errno;
        return 0;
}

long fd_limit_raise(unsigned long cap) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        rlim_t want = MIN(rl.rlim_max, (rlim_t) cap);
        if (rl.rlim_cur >= want)
                return (long) MIN(rl.rlim_cur, (rlim_t) LONG_MAX);
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        return (long) want;
}

ssize_t read_full(int fd, void *buf, size_t n) {
        size_t done = 0;
        while (done < n) {
                ssize_t k = read(fd, (char *) buf + done, n - done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        return (ssize_t) done;
}

int write_full(int fd, const void *buf, size_t n) {
        size_t done = 0;
        while (done < n) {
                ssize_t k = write(fd, (const char *) buf + done, n - done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) k;
        }
        return 0;
}

int read_fd_all(int fd, size_t max, char **ret, size_t *ret_len) {
        Buf b;
        buf_init(&b, max);
        char chunk[65536];
        for (;;) {
                ssize_t k = read(fd, chunk, sizeof(chunk));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        buf_free(&b);
                        return r;
                }
                if (k == 0)
                        break;
                if (buf_append(&b, chunk, (size_t) k) < 0) {
                        buf_free(&b);
                        return -EFBIG;
                }
        }
        if (ret_len)
                *ret_len = b.len;
        *ret = buf_steal(&b);
        return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        return read_fd_all(fd, max, ret, ret_len);
}

int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode) {
        /* pid and thread id: two threads of one process (DAG tasks, daemon
         * requests) writing the same path must not share a temp file. */
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d.%d", path, (int) getpid(), (int) gettid());
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        int r = write_full(fd, data, n);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

/* /proc/PID/stat read whole; *ret_fields points just past the comm field
 * (which is in parentheses and may hold spaces and ')': so from the last
 * ')'), at " STATE PPID …". */
static int read_pid_stat(pid_t pid, char **ret_text, const char **ret_fields) {
        assert(pid > 0);
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        char *text = NULL;
        size_t len = 0;
        int r = read_file(path, 64 * 1024, &text, &len);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;
        const char *p = strrchr(text, ')');
        if (!p || p[1] != ' ' || !p[2]) {
                free(text);
                return -EIO;
        }
        *ret_text = text;
        *ret_fields = p + 1;
        return 0;
}

/* Field 22 (starttime) of the fields after the command's ')'. */
static int stat_start_time(const char *p, uint64_t *ret) {
        for (int field = 3; field < 22; field++) {
                p = strchr(p + 1, ' ');
                if (!p)
                        return -EIO;
        }
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p + 1, &end, 10);
        if (errno || end == p + 1)
                return -EIO;
        *ret = v;
        return 0;
}

/* A zombie (Z) or dead (X) process holds its pid but runs nothing: what
 * it owned is an orphan's. */
static bool stat_is_running(const char *p) {
        return p[1] != 'Z' && p[1] != 'X';
}

int pid_start_time(pid_t pid, uint64_t *ret) {
        _cleanup_free_ char *text = NULL;
        const char *p;
        int r = read_pid_stat(pid, &text, &p);
        if (r < 0)
                return r;
        return stat_start_time(p, ret);
}

bool pid_is_running(pid_t pid) {
        _cleanup_free_ char *text = NULL;
        const char *p;
        if (pid <= 0)
                return false;
        int r = read_pid_stat(pid, &text, &p);
        if (r == -ESRCH)
                return false;
        /* Not known gone (out of descriptors or memory, a /proc mounted
         * hidepid): what asks is about to remove what a gone pid owned,
         * and must not take a live owner's for an orphan's. */
        if (r < 0)
                return true;
        return stat_is_running(p);
}

bool pid_alive_since(pid_t pid, uint64_t start) {
        _cleanup_free_ char *text = NULL;
        const char *p;
        uint64_t now_start;
        if (pid <= 0)
                return false;
        int r = read_pid_stat(pid, &text, &p);
        if (r == -ESRCH)
                return false;
        if (r < 0) /* not known gone: as pid_is_running() */
                return true;
        if (stat_start_time(p, &now_start) < 0)
                return true;
        return now_start == start && stat_is_running(p);
}

unsigned long long pid_namespace_id(void) {
        struct stat st;
        return stat("/proc/self/ns/pid", &st) == 0 ? (unsigned long long) st.st_ino : 0;
}

int thread_start_detached(void *(*fn)(void *), void *arg) {
        pthread_attr_t attr;
        pthread_t tid;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int k = pthread_create(&tid, &attr, fn, arg);
        pthread_attr_destroy(&attr);
        return k;
}
