/* Directory datasets as tar streams (docs/data.md "Against a daemon"):
 * a pull-based writer (the daemon's download response and the CLI's
 * upload both ask it for the next bytes, so a tree of any size is never
 * held in memory) and a safe extractor for tars that come from a client
 * or a server. libarchive stays inside this file. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <assert.h>

#include "data-internal.h"

#define TAR_CHUNK (64U * 1024)

/* ---- the writer ------------------------------------------------------------- */

struct DataTarStream {
        struct archive *a;
        int root;               /* the tree's directory */
        char **paths;           /* relative paths, parents before children */
        size_t n, next;
        int fd;                 /* the file being written, -1 between files */
        uint64_t remaining;     /* bytes of it the header promised */
        Buf out;                /* tar bytes not handed out yet */
        size_t out_off;
        bool closed;
};

static la_ssize_t tar_out(struct archive *a, void *userdata, const void *p, size_t n) {
        DataTarStream *s = userdata;
        if (buf_append(&s->out, p, n) < 0) {
                archive_set_error(a, ENOBUFS, "tar output buffer full");
                return -1;
        }
        return (la_ssize_t) n;
}

/* Appends the paths under the directory open at dirfd (rel its path) to s. */
static int tar_walk(DataTarStream *s, int dirfd, const char *rel, int depth) {
        if (depth > DATA_MAX_DEPTH)
                return -ENAMETOOLONG;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r = tree_list_sorted(dirfd, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char *path = *rel ? path_join(rel, names[i]) : xstrdup(names[i]);
                s->paths = xrealloc(s->paths, (s->n + 1) * sizeof(char *));
                s->paths[s->n++] = path;
                struct stat st;
                if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                if (strchr(names[i], '\n'))
                        return -EILSEQ;
                if (S_ISLNK(st.st_mode))
                        return -ELOOP;
                if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
                        return -EPERM;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0)
                                return -errno;
                        r = tar_walk(s, sub, path, depth + 1);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int data_tar_stream_new(const char *dir, DataTarStream **ret, char **ret_path) {
        assert(dir && ret);
        DataTarStream *s = xcalloc(1, sizeof(DataTarStream));
        s->fd = -1;
        /* One file chunk and its header at most, plus libarchive's block. */
        buf_init(&s->out, 4 * TAR_CHUNK);
        s->root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = s->root < 0 ? -errno : tar_walk(s, s->root, "", 0);
        if (r < 0) {
                if (ret_path && s->n)
                        *ret_path = xstrdup(s->paths[s->n - 1]);
                data_tar_stream_free(s);
                return r;
        }
        s->a = archive_write_new();
        /* hdrcharset=BINARY: names go as the bytes the file system holds.
         * Otherwise pax converts them from the locale's charset to UTF-8,
         * and a name that is not in it (b"a\xffb") failed the whole put
         * that embedded stores as it is. */
        if (!s->a || archive_write_set_format_pax_restricted(s->a) != ARCHIVE_OK ||
            archive_write_set_format_option(s->a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK ||
            archive_write_set_bytes_per_block(s->a, 0) != ARCHIVE_OK ||
            archive_write_open(s->a, s, NULL, tar_out, NULL) != ARCHIVE_OK) {
                data_tar_stream_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

DataTarStream *data_tar_stream_free(DataTarStream *s) {
        if (!s)
                return NULL;
        if (s->a)
                archive_write_free(s->a); /* closes it if still open */
        if (s->fd >= 0)
                close(s->fd);
        if (s->root >= 0)
                close(s->root);
        for (size_t i = 0; i < s->n; i++)
                free(s->paths[i]);
        free(s->paths);
        buf_free(&s->out);
        free(s);
        return NULL;
}

/* Produces the next piece of the archive into s->out: a header, a chunk
 * of the current file, or the end. */
static int tar_step(DataTarStream *s) {
        if (s->fd >= 0) {
                char chunk[TAR_CHUNK];
                size_t want = (size_t) MIN((uint64_t) sizeof(chunk), s->remaining);
                ssize_t n = want ? read(s->fd, chunk, want) : 0;
                if (n < 0)
                        return -errno;
                if (n == 0 && s->remaining > 0)
                        return -EIO; /* the file shrank after its header was written */
                if (n > 0) {
                        if (archive_write_data(s->a, chunk, (size_t) n) != n)
                                return -EIO;
                        s->remaining -= (uint64_t) n;
                }
                if (s->remaining == 0)
                        s->fd = fd_close(s->fd);
                return 0;
        }
        if (s->next == s->n) {
                if (archive_write_close(s->a) != ARCHIVE_OK)
                        return -EIO;
                s->closed = true;
                return 0;
        }
        const char *path = s->paths[s->next++];
        struct stat st;
        if (fstatat(s->root, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
                return -EPERM;
        if (S_ISREG(st.st_mode)) {
                s->fd = openat(s->root, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (s->fd < 0)
                        return -errno;
                if (fstat(s->fd, &st) < 0)
                        return -errno;
                s->remaining = (uint64_t) st.st_size;
        }
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, S_ISDIR(st.st_mode) ? AE_IFDIR : AE_IFREG);
        archive_entry_set_perm(e, S_ISDIR(st.st_mode) ? 0755 : 0644);
        archive_entry_set_size(e, S_ISDIR(st.st_mode) ? 0 : st.st_size);
        archive_entry_set_mtime(e, st.st_mtim.tv_sec, 0);
        int k = archive_write_header(s->a, e);
        archive_entry_free(e);
        if (k != ARCHIVE_OK)
                return -EIO;
        if (s->fd >= 0 && s->remaining == 0)
                s->fd = fd_close(s->fd);
        return 0;
}

ssize_t data_tar_stream_read(DataTarStream *s, void *buf, size_t len) {
        assert(s && buf);
        while (s->out_off == s->out.len) {
                buf_reset(&s->out);
                s->out_off = 0;
                if (s->closed)
                        return 0;
                int r = tar_step(s);
                if (r < 0)
                        return r;
        }
        size_t n = MIN(len, s->out.len - s->out_off);
        memcpy(buf, s->out.data + s->out_off, n);
        s->out_off += n;
        return (ssize_t) n;
}

/* ---- the extractor ------------------------------------------------------------ */

/* An archive member's path made relative and plain: "./a//b" -> "a/b".
 * NULL for an absolute path, a ".." component or a newline (the content
 * hash's listing is line based); "" for the archive's root itself. */
static char *member_path(const char *p) {
        if (!p || p[0] == '/' || strchr(p, '\n'))
                return NULL;
        Buf b;
        buf_init(&b, 4096);
        const char *s = p;
        while (*s) {
                size_t n = strcspn(s, "/");
                if (n == 2 && s[0] == '.' && s[1] == '.') {
                        buf_free(&b);
                        return NULL;
                }
                if (n > 0 && !(n == 1 && s[0] == '.')) {
                        if ((b.len && buf_append(&b, "/", 1) < 0) || buf_append(&b, s, n) < 0) {
                                buf_free(&b);
                                return NULL;
                        }
                }
                s += n;
                while (*s == '/')
                        s++;
        }
        return buf_steal(&b);
}

/* The directories rel (a member_path()) lies in, itself included when it
 * is one: what DATA_MAX_DEPTH bounds. */
static size_t member_levels(const char *rel, bool is_dir) {
        size_t n = is_dir ? 1 : 0;
        for (const char *p = rel; *p; p++)
                n += *p == '/';
        return n;
}

/* mkdir -p of rel's parent directories inside dirfd. Only this extractor
 * wrote the tree, and it makes no symlinks, so no component can lead out. */
static int make_parents(int dirfd, const char *rel) {
        _cleanup_free_ char *p = xstrdup(rel);
        for (char *slash = strchr(p, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = 0;
                struct stat st;
                if (mkdirat(dirfd, p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                if (fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
                *slash = '/';
        }
        return 0;
}

/* A member's bytes into fd. A sparse member (GNU or PAX sparse) comes as
 * data blocks at offsets with holes between them: it counts against
 * max_bytes for the size it unpacks to (its end), not for the bytes its
 * blocks hold — a few KiB of tar once made a file of any size, past the
 * dataset's cap, that the content hash and every reader then read whole.
 * A member that ends in a hole is extended to its declared size. */
static int extract_data(struct archive *a, struct archive_entry *e, int fd, uint64_t *bytes, uint64_t max_bytes) {
        const uint64_t before = *bytes;
        uint64_t end = 0;
        const void *p;
        size_t n;
        la_int64_t off;
        for (;;) {
                int k = archive_read_data_block(a, &p, &n, &off);
                if (k == ARCHIVE_EOF)
                        break;
                if (k != ARCHIVE_OK || off < 0 || (uint64_t) off > UINT64_MAX - n)
                        return -EINVAL;
                end = MAX(end, (uint64_t) off + n);
                if (end > UINT64_MAX - before || (max_bytes && before + end > max_bytes))
                        return -EFBIG;
                *bytes = before + end;
                /* Sparse members come with offsets: honour them. */
                if (lseek(fd, (off_t) off, SEEK_SET) < 0)
                        return -errno;
                int r = write_full(fd, p, n);
                if (r < 0)
                        return r;
        }
        if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0 && (uint64_t) archive_entry_size(e) > end) {
                end = (uint64_t) archive_entry_size(e);
                if (end > UINT64_MAX - before || (max_bytes && before + end > max_bytes))
                        return -EFBIG;
                *bytes = before + end;
                if (ftruncate(fd, (off_t) end) < 0)
                        return -errno;
        }
        return 0;
}

/* One member into dirfd; *ret_error says why it is refused. */

static int too_big(const DataTarCaps *caps, char **ret_error) {
        *ret_error = xasprintf("the archive holds more than %llu bytes (the dataset's cap)",
                               (unsigned long long) caps->max_bytes);
        return -EFBIG;
}

static int extract_member(struct archive *a, struct archive_entry *e, int dirfd, const DataTarCaps *caps,
                          uint64_t *files, uint64_t *bytes, char **ret_error) {
        const char *raw = archive_entry_pathname(e);
        _cleanup_free_ char *rel = member_path(raw);
        if (!rel && raw && strchr(raw, '\n')) {
                *ret_error = xasprintf("the archive member '%s' has a newline in its name: a dataset cannot hold it "
                                       "(its hash lists one entry per line)",
                                       raw);
                return -EINVAL;
        }
        if (!rel) {
                *ret_error = xasprintf("the archive member '%s' is an absolute path or leads out of the directory "
                                       "('..')", raw ?: "");
                return -EINVAL;
        }
        const char *link = archive_entry_hardlink(e);
        mode_t type = archive_entry_filetype(e);
        if (!link && type == AE_IFLNK) {
                *ret_error = xasprintf("the archive member '%s' is a symbolic link: not supported in datasets", raw);
                return -EINVAL;
        }
        if (!link && type != AE_IFREG && type != AE_IFDIR) {
                *ret_error = xasprintf("the archive member '%s' is a device, FIFO or socket: only regular files and "
                                       "directories can be stored", raw);
                return -EINVAL;
        }
        if (!*rel) /* "./": the root itself */
                return type == AE_IFDIR ? 0 : -EINVAL;
        if (member_levels(rel, type == AE_IFDIR) > DATA_MAX_DEPTH) {
                /* Refused here, not by the hash after the whole tar was
                 * unpacked ("Too many levels of symbolic links"). */
                *ret_error = xasprintf("the archive member '%s' is nested deeper than %d directories", raw,
                                       DATA_MAX_DEPTH);
                return -EINVAL;
        }
        (*files)++;
        if (caps->max_files && *files > caps->max_files) {
                *ret_error = xasprintf("the archive has more than %llu members (the dataset's file cap)",
                                       (unsigned long long) caps->max_files);
                return -EMFILE;
        }
        int r = make_parents(dirfd, rel);
        if (r < 0) {
                *ret_error = xasprintf("the archive member '%s' cannot be placed: %s", raw, strerror(-r));
                return r == -ENOTDIR ? -EINVAL : r;
        }
        if (link) {
                /* A hard link is the bytes of a member extracted before,
                 * inside the same tree. */
                _cleanup_free_ char *target = member_path(link);
                struct stat st;
                if (!target || !*target || fstatat(dirfd, target, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
                        *ret_error = xasprintf("the archive member '%s' is a hard link to '%s', which is not a file "
                                               "earlier in the archive", raw, link);
                        return -EINVAL;
                }
                *bytes += (uint64_t) st.st_size;
                if (caps->max_bytes && *bytes > caps->max_bytes)
                        return too_big(caps, ret_error);
                if (linkat(dirfd, target, dirfd, rel, 0) < 0) {
                        r = -errno;
                        *ret_error = xasprintf("the archive member '%s': %s", raw,
                                               r == -EEXIST ? "appears twice" : strerror(-r));
                        return r == -EEXIST ? -EINVAL : r;
                }
                return 0;
        }
        if (type == AE_IFDIR) {
                struct stat st;
                if (mkdirat(dirfd, rel, 0755) < 0 && errno != EEXIST)
                        r = -errno;
                else if (fstatat(dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        r = -EINVAL;
                if (r < 0)
                        *ret_error = xasprintf("the archive member '%s' cannot be created: %s", raw,
                                               r == -EINVAL ? "a file of that name came before" : strerror(-r));
                return r;
        }
        _cleanup_close_ int fd = openat(dirfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
                r = -errno;
                *ret_error = xasprintf("the archive member '%s': %s", raw,
                                       r == -EEXIST ? "appears twice" : strerror(-r));
                return r == -EEXIST ? -EINVAL : r;
        }
        r = extract_data(a, e, fd, bytes, caps->max_bytes);
        if (r == -EFBIG)
                return too_big(caps, ret_error);
        if (r == -EINVAL)
                *ret_error = xasprintf("the archive is truncated or damaged at '%s'", raw);
        else if (r < 0)
                *ret_error = xasprintf("cannot write '%s': %s", raw, strerror(-r));
        return r;
}

int data_tar_extract(int fd, const char *dst, const DataTarCaps *caps, char **ret_error) {
        assert(fd >= 0 && dst && caps && ret_error);
        if (mkdir(dst, 0755) < 0) {
                int r = -errno;
                *ret_error = xasprintf("cannot create %s: %s", dst, strerror(-r));
                return r;
        }
        _cleanup_close_ int dirfd = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct archive *a = archive_read_new();
        int r = dirfd < 0 ? -errno : 0;
        if (r >= 0 && (!a || archive_read_support_format_tar(a) != ARCHIVE_OK ||
                       archive_read_support_filter_gzip(a) != ARCHIVE_OK))
                r = -ENOMEM;
        if (r >= 0 && archive_read_open_fd(a, fd, TAR_CHUNK) != ARCHIVE_OK) {
                *ret_error = xasprintf("the body is not a tar archive: %s", archive_error_string(a) ?: "?");
                r = -EINVAL;
        }
        uint64_t files = 0, bytes = 0;
        while (r >= 0) {
                struct archive_entry *e;
                int k = archive_read_next_header(a, &e);
                if (k == ARCHIVE_EOF)
                        break;
                if (k != ARCHIVE_OK && k != ARCHIVE_WARN) {
                        *ret_error = xasprintf("the body is not a tar archive, or a damaged one: %s",
                                               archive_error_string(a) ?: "?");
                        r = -EINVAL;
                        break;
                }
                r = extract_member(a, e, dirfd, caps, &files, &bytes, ret_error);
        }
        if (a)
                archive_read_free(a);
        if (r < 0) {
                if (!*ret_error)
                        *ret_error = xasprintf("cannot unpack the archive: %s", strerror(-r));
                (void) rm_rf(dst);
        }
        return r;
}

static bool dir_is_empty(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        return fd >= 0 && tree_list_sorted(fd, &names, &n) >= 0 && n == 0;
}

int data_tar_unpack_to(int fd, const char *out_path, const DataTarCaps *caps, char **ret_error) {
        assert(fd >= 0 && out_path && caps && ret_error);
        _cleanup_free_ char *rnd = NULL;
        if (random_hex(6, &rnd) < 0)
                rnd = xasprintf("%d", (int) getpid());
        _cleanup_free_ char *tmp = xasprintf("%s.pysprinter-%s", out_path, rnd);
        int r = data_tar_extract(fd, tmp, caps, ret_error);
        if (r < 0)
                return r;
        struct stat st;
        bool absent = stat(out_path, &st) < 0 && errno == ENOENT;
        if ((absent || (S_ISDIR(st.st_mode) && dir_is_empty(out_path))) && rename(tmp, out_path) >= 0)
                return 0;
        r = tree_copy_out(tmp, out_path);
        if (r < 0)
                *ret_error = xasprintf("cannot copy to %s: %s", out_path, strerror(-r));
        (void) rm_rf(tmp);
        return r;
}
