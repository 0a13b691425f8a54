/* Objects across a cluster's nodes (data.h "across a cluster's nodes"): the
 * wire form a node serves its objects in, and the fetch that stores a
 * peer's object only once every byte matches the hash it was asked for. */
#include <assert.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "data-internal.h"

#define WIRE_MAGIC "PSOBJ1 "
/* A listing longer than this is refused (a million files' lines fit). */
#define LISTING_MAX (128U << 20)

void data_catalog_set_shared(DataCatalog *c, DatasetStore *ds, DataObjectSource source, void *userdata) {
        assert(c && ds);
        dataset_store_free(c->ds);
        c->ds = ds;
        c->source = source;
        c->source_userdata = userdata;
}

int data_dataset_get(DataCatalog *c, const char *tenant, const char *name, DatasetRecord **ret) {
        return c->ds->ops->get(c->ds, tenant ?: "local", name, ret);
}

static bool hash_valid(const char *hash) {
        size_t n = 0;
        for (; hash && hash[n]; n++)
                if (!((hash[n] >= '0' && hash[n] <= '9') || (hash[n] >= 'a' && hash[n] <= 'f')))
                        return false;
        return n == SHA256_HEX_SIZE - 1;
}

bool data_object_present(DataCatalog *c, const char *hash) {
        if (!hash_valid(hash))
                return false;
        _cleanup_free_ char *dir = path_join(c->objects, hash);
        struct stat st;
        return stat(dir, &st) >= 0 && S_ISDIR(st.st_mode);
}

/* ---- serving ---------------------------------------------------------------- */

struct DataObjectReader {
        char *dir;
        Buf head;            /* magic, length, listing */
        size_t head_off;
        char **files;        /* relative paths, in listing order */
        uint64_t *sizes;
        size_t n_files, next;
        int fd;
        uint64_t left;       /* bytes of the open file still to send */
};

DataObjectReader *data_object_reader_free(DataObjectReader *r) {
        if (!r)
                return NULL;
        free(r->dir);
        buf_free(&r->head);
        strv_free(r->files);
        free(r->sizes);
        if (r->fd >= 0)
                close(r->fd);
        free(r);
        return NULL;
}

/* "f PATH SIZE SHA\n" -> PATH, SIZE, SHA (parsed from the right: a path
 * may hold spaces). */
static int file_line(const char *line, size_t len, char **ret_path, uint64_t *ret_size, char ret_sha[static 65]) {
        if (len < 2 + 1 + 1 + 1 + 64 || line[0] != 'f' || line[1] != ' ')
                return -EBADMSG;
        const char *sha = line + len - 64;
        if (sha[-1] != ' ')
                return -EBADMSG;
        const char *p = sha - 2;
        while (p > line + 2 && p[-1] != ' ')
                p--;
        if (p <= line + 2 || p[-1] != ' ')
                return -EBADMSG;
        uint64_t size = 0;
        for (const char *q = p; q < sha - 1; q++) {
                if (*q < '0' || *q > '9' || size > UINT64_MAX / 10)
                        return -EBADMSG;
                size = size * 10 + (uint64_t) (*q - '0');
        }
        memcpy(ret_sha, sha, 64);
        ret_sha[64] = 0;
        *ret_path = xstrndup(line + 2, (size_t) (p - 1 - (line + 2)));
        *ret_size = size;
        return 0;
}

int data_object_reader_new(DataCatalog *c, const char *hash, DataObjectReader **ret) {
        assert(c && ret);
        if (!hash_valid(hash))
                return -EINVAL;
        DataObjectReader *r = xcalloc(1, sizeof(DataObjectReader));
        r->fd = -EBADF;
        r->dir = path_join(c->objects, hash);
        Buf listing;
        buf_init(&listing, LISTING_MAX);
        char *hex = NULL;
        uint64_t size = 0, files = 0;
        int k = tree_listing(r->dir, &hex, &size, &files, &listing);
        if (k >= 0 && !streq(hex, hash))
                k = -EIO; /* a damaged object is not served */
        free(hex);
        if (k < 0) {
                buf_free(&listing);
                data_object_reader_free(r);
                return k;
        }
        buf_init(&r->head, SIZE_MAX);
        buf_printf(&r->head, WIRE_MAGIC "%zu\n", listing.len);
        (void) buf_append(&r->head, listing.data ? listing.data : "", listing.len);
        for (size_t off = 0; off < listing.len;) {
                const char *line = listing.data + off, *nl = memchr(line, '\n', listing.len - off);
                size_t len = (size_t) (nl - line);
                char sha[65];
                char *path = NULL;
                uint64_t fsize;
                if (file_line(line, len, &path, &fsize, sha) >= 0) {
                        r->files = strv_append(r->files, path);
                        r->sizes = xrealloc(r->sizes, (r->n_files + 1) * sizeof(uint64_t));
                        r->sizes[r->n_files++] = fsize;
                        free(path);
                }
                off += len + 1;
        }
        buf_free(&listing);
        *ret = r;
        return 0;
}

ssize_t data_object_reader_read(DataObjectReader *r, char *buf, size_t max) {
        assert(r && buf);
        if (r->head_off < r->head.len) {
                size_t n = MIN(max, r->head.len - r->head_off);
                memcpy(buf, r->head.data + r->head_off, n);
                r->head_off += n;
                return (ssize_t) n;
        }
        while (r->fd < 0) {
                if (r->next >= r->n_files)
                        return 0;
                _cleanup_free_ char *p = path_join(r->dir, r->files[r->next]);
                r->fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (r->fd < 0)
                        return -EIO;
                r->left = r->sizes[r->next++];
                if (r->left == 0) {
                        close(r->fd);
                        r->fd = -EBADF;
                }
        }
        ssize_t n = read(r->fd, buf, (size_t) MIN((uint64_t) max, r->left));
        if (n <= 0)
                return -EIO; /* shorter than listed: the object changed */
        r->left -= (uint64_t) n;
        if (r->left == 0) {
                close(r->fd);
                r->fd = -EBADF;
        }
        return n;
}

/* ---- fetching --------------------------------------------------------------- */

/* A listed path is stored only when it stays inside the object: relative,
 * no empty, "." or ".." component. */
static bool rel_ok(const char *rel) {
        if (!*rel || *rel == '/' || strchr(rel, '\n'))
                return false;
        for (const char *p = rel; p;) {
                const char *e = strchr(p, '/');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p = e ? e + 1 : NULL;
        }
        return true;
}

/* Copies size bytes of in to the new file path, checking their sha256. */
static int copy_checked(int in, const char *path, uint64_t size, const char *sha) {
        _cleanup_close_ int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (out < 0)
                return -errno;
        _cleanup_(sha256_freep) Sha256 *h = sha256_new();
        char buf[64 * 1024];
        while (size > 0) {
                ssize_t n = read_full(in, buf, (size_t) MIN(size, (uint64_t) sizeof(buf)));
                if (n <= 0)
                        return -EBADMSG; /* shorter than its listing says */
                sha256_update(h, buf, (size_t) n);
                int k = write_full(out, buf, (size_t) n);
                if (k < 0)
                        return k;
                size -= (uint64_t) n;
        }
        char hex[SHA256_HEX_SIZE];
        sha256_final_hex(h, hex);
        return streq(hex, sha) ? 0 : -EBADMSG;
}

/* Unpacks the wire form in file into the new directory dir, verifying it
 * against hash as it goes. */
static int unpack(const char *file, const char *dir, const char *hash, char **ret_error) {
        _cleanup_close_ int in = open(file, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        char head[32];
        size_t hn = 0;
        while (hn < sizeof(head) - 1) {
                if (read_full(in, head + hn, 1) != 1)
                        break;
                if (head[hn++] == '\n')
                        break;
        }
        head[hn] = 0;
        int len = -1;
        if (hn > 0 && head[hn - 1] == '\n')
                head[hn - 1] = 0;
        if (!startswith(head, WIRE_MAGIC) || parse_int(head + strlen(WIRE_MAGIC), &len) < 0 || len < 0 ||
            (unsigned) len > LISTING_MAX) {
                *ret_error = xstrdup("the peer's answer is not an object");
                return -EBADMSG;
        }
        _cleanup_free_ char *listing = xmalloc((size_t) len + 1);
        if (read_full(in, listing, (size_t) len) != (ssize_t) len) {
                *ret_error = xstrdup("the peer's answer ends inside the listing");
                return -EBADMSG;
        }
        listing[len] = 0;
        char hex[SHA256_HEX_SIZE];
        sha256_hex(listing, (size_t) len, hex);
        if (!streq(hex, hash)) {
                *ret_error = xasprintf("the peer's listing hashes to %s, not %s", hex, hash);
                return -EBADMSG;
        }
        if (mkdir(dir, 0755) < 0)
                return -errno;
        for (char *line = listing; *line;) {
                char *nl = strchr(line, '\n');
                if (!nl) {
                        *ret_error = xstrdup("the listing's last line is cut");
                        return -EBADMSG;
                }
                *nl = 0;
                int k;
                if (line[0] == 'd' && line[1] == ' ') {
                        _cleanup_free_ char *p = rel_ok(line + 2) ? path_join(dir, line + 2) : NULL;
                        k = p ? (mkdir(p, 0755) < 0 ? -errno : 0) : -EBADMSG;
                } else {
                        _cleanup_free_ char *rel = NULL;
                        uint64_t size;
                        char sha[65];
                        k = file_line(line, strlen(line), &rel, &size, sha);
                        if (k >= 0 && !rel_ok(rel))
                                k = -EBADMSG;
                        if (k >= 0) {
                                _cleanup_free_ char *p = path_join(dir, rel);
                                k = copy_checked(in, p, size, sha);
                        }
                }
                if (k < 0) {
                        *ret_error = xasprintf("entry '%s' of the peer's object: %s", line,
                                               k == -EBADMSG ? "its bytes do not match the listing" : strerror(-k));
                        return k;
                }
                line = nl + 1;
        }
        char extra;
        if (read(in, &extra, 1) != 0) {
                *ret_error = xstrdup("the peer sent more than the listing holds");
                return -EBADMSG;
        }
        return 0;
}

int data_object_fetch(DataCatalog *c, const char *base_url, const char *secret, const char *hash, char **ret_error) {
        assert(c && base_url && ret_error);
        if (!hash_valid(hash)) {
                *ret_error = xasprintf("'%s' is not a content hash", hash ?: "");
                return -EINVAL;
        }
        if (data_object_present(c, hash))
                return 0;
        _cleanup_free_ char *staged = data_staging_dir(c), *file = xasprintf("%s.wire", staged);
        _cleanup_free_ char *url = endswith(base_url, "/") ? xasprintf("%sinternal/v1/objects/%s", base_url, hash)
                                                           : xasprintf("%s/internal/v1/objects/%s", base_url, hash);
        int k = data_fetch_peer(c, url, secret, file, c->cfg.max_dataset_bytes + LISTING_MAX + 64, ret_error);
        if (k >= 0)
                k = data_object_import(c, hash, file, ret_error);
        (void) unlink(file);
        return k;
}

int data_object_import(DataCatalog *c, const char *hash, const char *file, char **ret_error) {
        assert(c && file && ret_error);
        if (!hash_valid(hash)) {
                *ret_error = xasprintf("'%s' is not a content hash", hash ?: "");
                return -EINVAL;
        }
        if (data_object_present(c, hash))
                return 0;
        _cleanup_free_ char *staged = data_staging_dir(c);
        int k = unpack(file, staged, hash, ret_error);
        /* Belt and braces: the tree as stored hashes as asked. */
        char *hex = NULL;
        uint64_t size, files;
        if (k >= 0 && (tree_hash(staged, &hex, &size, &files) < 0 || !streq(hex, hash))) {
                *ret_error = xstrdup("the stored copy does not hash as the listing did");
                k = -EBADMSG;
        }
        free(hex);
        if (k >= 0) {
                _cleanup_free_ char *dst = path_join(c->objects, hash);
                k = tree_publish(staged, dst);
                if (k < 0) {
                        /* Another fetch of the same content won: fine. */
                        if (data_object_present(c, hash))
                                k = 0;
                        else if (!*ret_error)
                                *ret_error = xasprintf("cannot store the object: %s", strerror(-k));
                }
        }
        data_staging_remove(staged);
        return k;
}
