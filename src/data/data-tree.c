/* Trees on disk: import copies with caps, the content hash, read-only
 * marking, export copies. Every walk uses dir fds and O_NOFOLLOW so a
 * symlink swapped in mid-walk is never followed. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "data-internal.h"

#define COPY_CHUNK (128 * 1024)

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted entry names of an open directory (not . and ..). Consumes no fd:
 * dirfd is duplicated for fdopendir. */
int tree_list_sorted(int dirfd, char ***ret, size_t *ret_n) {
        DIR *d = NULL;
        int r = dir_fdopen(fcntl(dirfd, F_DUPFD_CLOEXEC, 3), &d);
        if (r < 0)
                return r;
        rewinddir(d);
        char **v = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                v = xrealloc(v, (n + 2) * sizeof(char *));
                v[n++] = xstrdup(de->d_name);
                v[n] = NULL;
        }
        closedir(d);
        if (n)
                qsort(v, n, sizeof(char *), cmp_str);
        else
                v = xcalloc(1, sizeof(char *));
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Copies one open regular file to (dirfd, name), counting against b. */
static int copy_fd(int in, int dirfd, const char *name, mode_t mode, TreeBudget *b) {
        _cleanup_close_ int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (out < 0)
                return -errno;
        _cleanup_free_ char *buf = xmalloc(COPY_CHUNK);
        for (;;) {
                ssize_t n = read(in, buf, COPY_CHUNK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                if (b) {
                        b->bytes += (uint64_t) n;
                        if (b->max_bytes && b->bytes > b->max_bytes)
                                return -EFBIG;
                }
                int r = write_full(out, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool name_ok(const char *name) {
        /* The hash listing is line based; a newline in a name would make two
         * trees hash alike. */
        return !strchr(name, '\n');
}

/* Recursive copy of the directory open at src into the directory open at
 * dst. rel is the path shown in errors. */
static int copy_dir(int src, int dst, const char *rel, int depth, TreeBudget *b, char **ret_path) {
        if (depth > DATA_MAX_DEPTH) {
                *ret_path = xstrdup(rel);
                return -ENAMETOOLONG;
        }
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r = tree_list_sorted(src, &names, &n);
        if (r < 0) {
                *ret_path = xstrdup(rel);
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = *rel ? path_join(rel, names[i]) : xstrdup(names[i]);
                struct stat st;
                if (fstatat(src, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        *ret_path = TAKE_PTR(path);
                        return -errno;
                }
                if (!name_ok(names[i])) {
                        *ret_path = TAKE_PTR(path);
                        return -EILSEQ;
                }
                if (b) {
                        b->files++;
                        if (b->max_files && b->files > b->max_files) {
                                *ret_path = TAKE_PTR(path);
                                return -EMFILE;
                        }
                }
                if (S_ISDIR(st.st_mode)) {
                        if (mkdirat(dst, names[i], 0755) < 0) {
                                *ret_path = TAKE_PTR(path);
                                return -errno;
                        }
                        _cleanup_close_ int s2 = openat(src, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        _cleanup_close_ int d2 = openat(dst, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (s2 < 0 || d2 < 0) {
                                *ret_path = TAKE_PTR(path);
                                return -errno;
                        }
                        r = copy_dir(s2, d2, path, depth + 1, b, ret_path);
                        if (r < 0)
                                return r;
                } else if (S_ISREG(st.st_mode)) {
                        _cleanup_close_ int in = openat(src, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        if (in < 0) {
                                *ret_path = TAKE_PTR(path);
                                return -errno;
                        }
                        r = copy_fd(in, dst, names[i], 0644, b);
                        if (r < 0) {
                                *ret_path = TAKE_PTR(path);
                                return r;
                        }
                } else {
                        /* Symlinks could point outside the dataset (and
                         * outside the sandbox's view); devices and fifos are
                         * not data. */
                        *ret_path = TAKE_PTR(path);
                        return S_ISLNK(st.st_mode) ? -ELOOP : -EPERM;
                }
        }
        return 0;
}

int tree_copy_in(const char *src, const char *dst, const char *leaf, TreeBudget *b, char **ret_path) {
        /* O_NONBLOCK: opening a FIFO for reading otherwise waits for a
         * writer, and `data put x FIFO` hung before fstat() could refuse
         * it. It changes nothing for a regular file or a directory. */
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (in < 0) {
                *ret_path = xstrdup(src);
                return -errno;
        }
        struct stat st;
        if (fstat(in, &st) < 0) {
                *ret_path = xstrdup(src);
                return -errno;
        }
        if (mkdir(dst, 0755) < 0) {
                *ret_path = xstrdup(dst);
                return -errno;
        }
        _cleanup_close_ int out = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (out < 0) {
                *ret_path = xstrdup(dst);
                return -errno;
        }
        if (S_ISDIR(st.st_mode))
                return copy_dir(in, out, "", 0, b, ret_path);
        if (!S_ISREG(st.st_mode)) {
                *ret_path = xstrdup(src);
                return -EPERM;
        }
        if (b) {
                b->files++;
        }
        int r = copy_fd(in, out, leaf, 0644, b);
        if (r < 0)
                *ret_path = xstrdup(src);
        return r;
}

static int hash_file(int dirfd, const char *name, char hex[static SHA256_HEX_SIZE], uint64_t *ret_size) {
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return sha256_fd_hex(fd, hex, ret_size);
}

static int hash_dir(int dirfd, const char *rel, int depth, Sha256 *ctx, uint64_t *size, uint64_t *files, Buf *listing) {
        if (depth > DATA_MAX_DEPTH)
                return -ELOOP;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r = tree_list_sorted(dirfd, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = *rel ? path_join(rel, names[i]) : xstrdup(names[i]);
                struct stat st;
                if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                Buf line;
                buf_init(&line, 8192);
                if (S_ISDIR(st.st_mode)) {
                        buf_printf(&line, "d %s\n", path);
                        sha256_update(ctx, line.data, line.len);
                        if (listing && buf_append(listing, line.data, line.len) < 0) {
                                buf_free(&line);
                                return -EFBIG;
                        }
                        buf_free(&line);
                        _cleanup_close_ int sub = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0)
                                return -errno;
                        r = hash_dir(sub, path, depth + 1, ctx, size, files, listing);
                        if (r < 0)
                                return r;
                } else if (S_ISREG(st.st_mode)) {
                        char hex[SHA256_HEX_SIZE];
                        uint64_t fsize = 0;
                        r = hash_file(dirfd, names[i], hex, &fsize);
                        if (r < 0) {
                                buf_free(&line);
                                return r;
                        }
                        buf_printf(&line, "f %s %llu %s\n", path, (unsigned long long) fsize, hex);
                        sha256_update(ctx, line.data, line.len);
                        if (listing && buf_append(listing, line.data, line.len) < 0) {
                                buf_free(&line);
                                return -EFBIG;
                        }
                        buf_free(&line);
                        *size += fsize;
                        (*files)++;
                } else {
                        buf_free(&line);
                        return -EPERM;
                }
        }
        return 0;
}

int tree_hash(const char *dir, char **ret_hex, uint64_t *ret_size, uint64_t *ret_files) {
        return tree_listing(dir, ret_hex, ret_size, ret_files, NULL);
}

int tree_listing(const char *dir, char **ret_hex, uint64_t *ret_size, uint64_t *ret_files, Buf *listing) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_(sha256_freep) Sha256 *ctx = sha256_new();
        uint64_t size = 0, files = 0;
        int r = hash_dir(fd, "", 0, ctx, &size, &files, listing);
        if (r < 0)
                return r;
        char *hex = xmalloc(SHA256_HEX_SIZE);
        sha256_final_hex(ctx, hex);
        *ret_hex = hex;
        *ret_size = size;
        *ret_files = files;
        return 0;
}

static int chmod_dir(int dirfd, bool readonly, int depth) {
        if (depth > DATA_MAX_DEPTH)
                return -ELOOP;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        /* Writable first so a read-only directory can be listed and its
         * children changed; read-only last, after the children. */
        if (!readonly && fchmod(dirfd, 0755) < 0)
                return -errno;
        int r = tree_list_sorted(dirfd, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0)
                                return -errno;
                        r = chmod_dir(sub, readonly, depth + 1);
                        if (r < 0)
                                return r;
                } else if (S_ISREG(st.st_mode)) {
                        if (fchmodat(dirfd, names[i], readonly ? 0444 : 0644, 0) < 0)
                                return -errno;
                }
        }
        if (readonly && fchmod(dirfd, 0555) < 0)
                return -errno;
        return 0;
}

int tree_publish(const char *staged, const char *dst) {
        int r = tree_set_readonly(staged, true);
        if (r < 0)
                return r;
        /* rename(2) of a directory to another parent updates its "..": the
         * mover needs write access to it, which root has anyway; any other
         * user (every embedded CLI but root's, a daemon not run as root)
         * failed every put with EACCES. So the top stays writable until it
         * is in place. */
        if (chmod(staged, 0755) < 0 || rename(staged, dst) < 0)
                return -errno;
        (void) chmod(dst, 0555);
        return 0;
}

/* Adds the owner's read (and, on directories, write and search) bits to
 * what the directory dirfd holds; best effort, to the depth a dataset may
 * have and one level more (deeper is refused by the copy anyway). */
static void owner_readable_dir(int dirfd, int depth) {
        if (depth > DATA_MAX_DEPTH + 1)
                return;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        if (tree_list_sorted(dirfd, &names, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        if ((st.st_mode & 0700) != 0700)
                                (void) fchmodat(dirfd, names[i], (st.st_mode & 07777) | 0700, 0);
                        _cleanup_close_ int sub = openat(dirfd, names[i],
                                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                owner_readable_dir(sub, depth + 1);
                } else if (S_ISREG(st.st_mode) && !(st.st_mode & 0400))
                        (void) fchmodat(dirfd, names[i], (st.st_mode & 07777) | 0400, 0);
        }
}

void tree_make_owner_readable(const char *dir) {
        struct stat st;
        if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return;
        if ((st.st_mode & 0700) != 0700)
                (void) chmod(dir, (st.st_mode & 07777) | 0700);
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
                owner_readable_dir(fd, 0);
}

int tree_set_readonly(const char *dir, bool readonly) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return chmod_dir(fd, readonly, 0);
}

int tree_copy_out(const char *src, const char *dst) {
        _cleanup_close_ int in = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int out = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (out < 0)
                return -errno;
        _cleanup_free_ char *bad = NULL;
        return copy_dir(in, out, "", 0, NULL, &bad);
}

int tree_copy_file_out(const char *src, const char *dst) {
        assert(src && dst);
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        /* pid and thread id, as write_file_atomic(): two threads of one
         * process writing the same path must not share a temp file. */
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d.%d", dst, (int) getpid(), (int) gettid());
        int r = copy_fd(in, AT_FDCWD, tmp, 0644, NULL);
        if (r >= 0) {
                _cleanup_close_ int out = open(tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
                if (out < 0 || fsync(out) < 0 || rename(tmp, dst) < 0)
                        r = -errno;
        }
        if (r < 0 && r != -EEXIST)
                (void) unlink(tmp);
        return r;
}

int tree_single_file(const char *dir, char **ret_path) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r = tree_list_sorted(fd, &names, &n);
        if (r < 0)
                return r;
        struct stat st;
        if (n != 1 || fstatat(fd, names[0], &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return -ENOENT;
        *ret_path = path_join(dir, names[0]);
        return 0;
}
