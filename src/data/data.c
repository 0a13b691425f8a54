/* The data catalog: puts stage content under root/tmp, hash it, and move
 * it to root/objects/<hash> with one rename (same file system), so a
 * half-written object is never visible; the catalog rows follow. */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <assert.h>

#include "data-internal.h"

/* $DATA/data and data/objects hold every tenant's datasets: searchable
 * (a run's sandbox, whose uid is another, reaches its objects by
 * their path), never listable by another user. They were 0755, so in a
 * data directory made 0755 any local user listed and read every tenant's
 * objects; one an older binary made loses its read bits for group and
 * others. */
static void unlist(const char *dir) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0044))
                (void) chmod(dir, st.st_mode & 07711);
}

int data_catalog_new(Store *store, const DataConfig *cfg, DataCatalog **ret, char **ret_error) {
        if (!store || !cfg || !cfg->root)
                return -EINVAL;
        DataCatalog *c = xcalloc(1, sizeof(DataCatalog));
        c->store = store;
        c->ds = dataset_store_sqlite_new(store);
        c->cfg = *cfg;
        c->cfg.root = NULL;
        pthread_mutex_init(&c->url_allow_lock, NULL);
        pthread_mutex_init(&c->quota_lock, NULL);
        for (char *const *a = cfg->url_allow; a && *a; a++)
                c->url_allow = strv_append(c->url_allow, *a);
        c->cfg.url_allow = NULL; /* c->url_allow is the one copy */
        if (!c->cfg.max_dataset_bytes)
                c->cfg.max_dataset_bytes = DATA_DEFAULT_MAX_DATASET_BYTES;
        if (!c->cfg.max_tenant_bytes)
                c->cfg.max_tenant_bytes = DATA_DEFAULT_MAX_TENANT_BYTES;
        if (!c->cfg.max_files)
                c->cfg.max_files = DATA_DEFAULT_MAX_FILES;
        c->objects = path_join(cfg->root, "objects");
        c->tmp = path_join(cfg->root, "tmp");
        int r = mkdir_p(c->objects, 0711);
        if (r >= 0) {
                unlist(cfg->root);
                unlist(c->objects);
                r = mkdir_p(c->tmp, 0700);
        }
        if (r < 0) {
                *ret_error = xasprintf("cannot create %s: %s", cfg->root, strerror(-r));
                data_catalog_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void data_catalog_quota_lock(DataCatalog *c) {
        assert(c);
        pthread_mutex_lock(&c->quota_lock);
}

void data_catalog_quota_unlock(DataCatalog *c) {
        assert(c);
        pthread_mutex_unlock(&c->quota_lock);
}

int data_tenant_bytes(DataCatalog *c, const char *tenant, uint64_t *ret) {
        assert(c && ret);
        return c->ds->ops->tenant_bytes(c->ds, tenant, NULL, 0, ret);
}

DataCatalog *data_catalog_free(DataCatalog *c) {
        if (!c)
                return NULL;
        free(c->objects);
        free(c->tmp);
        strv_free(c->url_allow);
        pthread_mutex_destroy(&c->url_allow_lock);
        pthread_mutex_destroy(&c->quota_lock);
        dataset_store_free(c->ds);
        free(c);
        return NULL;
}

bool data_name_valid(const char *name) {
        if (!name || !*name || strlen(name) > DATA_NAME_MAX)
                return false;
        for (const char *p = name; *p; p++) {
                char ch = *p;
                bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
                if (!alnum && (p == name || !(ch == '.' || ch == '_' || ch == '-')))
                        return false;
        }
        return true;
}

char *data_tree_error(int r, const char *source, const char *bad) {
        bad = bad ?: "?";
        switch (r) {
        case -ELOOP:
                return xasprintf("%s: symbolic links are not supported in datasets (%s)", source, bad);
        case -EPERM:
                return xasprintf("%s: only regular files and directories can be stored (%s)", source, bad);
        case -EILSEQ:
                return xasprintf("%s: a name holding a newline cannot be stored in a dataset (%s)", source, bad);
        case -ENAMETOOLONG:
                return xasprintf("%s: nested deeper than %d directories (%s)", source, DATA_MAX_DEPTH, bad);
        default:
                return NULL;
        }
}

char *data_name_error(const char *name) {
        if (data_name_valid(name))
                return NULL;
        return xasprintf("'%s' is not a valid dataset name (letters, digits, '.', '_', '-'; at most %d characters, "
                         "starting with a letter or digit)",
                         name ?: "", DATA_NAME_MAX);
}

int data_parse_ref(const char *ref, char **ret_name, int *ret_version) {
        if (!ref)
                return -EINVAL;
        const char *at = strchr(ref, '@');
        _cleanup_free_ char *name = at ? xstrndup(ref, (size_t) (at - ref)) : xstrdup(ref);
        int version = 0;
        if (at) {
                char *end;
                errno = 0;
                long v = strtol(at + 1, &end, 10);
                if (errno || end == at + 1 || *end || v < 1 || v > 1000000000)
                        return -EINVAL;
                version = (int) v;
        }
        if (!data_name_valid(name))
                return -EINVAL;
        *ret_name = TAKE_PTR(name);
        *ret_version = version;
        return 0;
}

bool data_source_is_url(const char *source) {
        return source && (startswith(source, "http://") || startswith(source, "https://"));
}

DataInfo *data_info_free(DataInfo *d) {
        if (!d)
                return NULL;
        free(d->name);
        free(d->hash);
        free(d->kind);
        free(d->source);
        free(d->path);
        free(d->file);
        free(d);
        return NULL;
}

/* The file name a URL's content gets: its last path segment, made safe. */
static char *url_leaf(const char *url) {
        const char *p = strstr(url, "://");
        p = p ? p + 3 : url;
        size_t end = strcspn(p, "?#");
        _cleanup_free_ char *path = xstrndup(p, end);
        char *slash = strchr(path, '/');
        const char *leaf = "";
        if (slash) {
                char *last = strrchr(slash, '/');
                leaf = last + 1;
        }
        Buf b;
        buf_init(&b, 128);
        for (const char *q = leaf; *q && b.len < 100; q++) {
                char ch = *q;
                bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                          ch == '.' || ch == '_' || ch == '-';
                buf_append(&b, ok ? &ch : "_", 1);
        }
        if (b.len == 0 || streq(b.data, ".") || streq(b.data, "..")) {
                buf_free(&b);
                return xstrdup("data");
        }
        return buf_steal(&b);
}

char *data_staging_dir(DataCatalog *c) {
        _cleanup_free_ char *rnd = NULL;
        if (random_hex(8, &rnd) < 0)
                rnd = xasprintf("%d-%llu", (int) getpid(), (unsigned long long) now_monotonic());
        return path_join(c->tmp, rnd);
}

/* What a failed write of staged content tells the user: the dataset, not
 * the server's paths. */
static char *data_write_error(const char *what, int r) {
        if (r == -ENOSPC || r == -EDQUOT)
                return xasprintf("%s: no space left on the device holding the data directory (ENOSPC)", what);
        return xasprintf("%s: cannot store it: %s", what, strerror(-r));
}

void data_staging_remove(const char *dir) {
        if (!dir)
                return;
        (void) tree_set_readonly(dir, false);
        (void) rm_rf(dir);
}

/* A shared lock on the object dst for a put that records a version of it:
 * dst as it is (another put's content) or, when it is not there, staged
 * moved into its place. A gc_object() (a `data rm` of another name holding
 * this content) counts no reference to it until the version is recorded:
 * without the lock it moved the content away under the put, whose new
 * version then named bytes that were gone. The gc holds its exclusive lock
 * while it moves the object aside, so the put waits for it and then stores
 * its own copy. Returns the fd holding the lock. */
static int hold_or_publish(const char *staged, const char *dst, char **ret_error) {
        for (int attempt = 0; attempt < 100; attempt++) {
                _cleanup_close_ int fd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd >= 0) {
                        struct stat held, now;
                        if (flock(fd, LOCK_SH) == 0 && fstat(fd, &held) == 0 && stat(dst, &now) == 0 &&
                            held.st_ino == now.st_ino && held.st_dev == now.st_dev)
                                return TAKE_FD(fd);
                        continue; /* moved aside meanwhile: store ours */
                }
                int r = -errno;
                if (r != -ENOENT) {
                        *ret_error = xasprintf("cannot open %s: %s", dst, strerror(-r));
                        return r;
                }
                /* Locked before it enters the store: the lock is the
                 * inode's, and no gc can take it between the two. */
                fd = open(staged, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0 || flock(fd, LOCK_SH) < 0) {
                        r = -errno;
                        *ret_error = xasprintf("cannot lock the staged content: %s", strerror(-r));
                        return r;
                }
                r = tree_publish(staged, dst);
                if (r >= 0)
                        return TAKE_FD(fd);
                if (r != -ENOTEMPTY && r != -EEXIST) {
                        *ret_error = xasprintf("cannot move the content into %s: %s", dst, strerror(-r));
                        return r;
                }
                /* Another put of the same content came first: hold its. */
        }
        *ret_error = xasprintf("cannot store the content in %s: it keeps being removed", dst);
        return -EBUSY;
}

/* Checks the tenant cap for the staged tree (hashed by the caller) and
 * moves it into the object store (or drops it when that content is there
 * already). Called under c->quota_lock. ret_hold: an fd with a shared lock
 * on the stored object, which the caller closes once the version naming it
 * is recorded (hold_or_publish). */
static int commit_staged(DataCatalog *c, const char *tenant, const char *staged, const char *hash, uint64_t size,
                         int *ret_hold, char **ret_error) {
        uint64_t held = 0;
        int r = c->ds->ops->tenant_bytes(c->ds, tenant, hash, size, &held);
        if (r < 0) {
                *ret_error = xasprintf("cannot read the data catalog: %s", strerror(-r));
                return r;
        }
        if (c->cfg.quota) {
                /* What the tenant holds without this put, for the
                 * message: the content is new to it or costs nothing. */
                uint64_t before = 0;
                r = c->ds->ops->tenant_bytes(c->ds, tenant, NULL, 0, &before);
                if (r < 0) {
                        *ret_error = xasprintf("cannot read the data catalog: %s", strerror(-r));
                        return r;
                }
                r = c->cfg.quota(c->cfg.quota_userdata, tenant ? tenant : "local", before,
                                 held > before ? held - before : 0, ret_error);
                if (r < 0)
                        return r;
        } else if (held > c->cfg.max_tenant_bytes) {
                *ret_error = xasprintf("tenant '%s' would hold %llu bytes of data, over its cap of %llu bytes; "
                                       "remove old datasets or versions (pysprinter data rm)",
                                       tenant ? tenant : "local", (unsigned long long) held,
                                       (unsigned long long) c->cfg.max_tenant_bytes);
                return -EDQUOT;
        }
        _cleanup_free_ char *dst = path_join(c->objects, hash);
        int hold = hold_or_publish(staged, dst, ret_error);
        if (hold < 0)
                return hold;
        *ret_hold = hold;
        return 0;
}

static DataInfo *info_new(DataCatalog *c, const DatasetRecord *d, const DatasetVersion *v) {
        DataInfo *i = xcalloc(1, sizeof(DataInfo));
        i->name = xstrdup(d->name);
        i->version = v->version;
        i->hash = xstrdup(v->hash);
        i->size = v->size;
        i->files = v->files;
        i->kind = xstrdup(d->kind);
        i->source = xstrdup(d->source);
        i->path = path_join(c->objects, v->hash);
        if (!streq(d->kind, "dir"))
                (void) tree_single_file(i->path, &i->file);
        return i;
}

static int fetch_url_staged(DataCatalog *c, const char *url, const char *etag, const char *lm, char **ret_staged,
                            FetchResult *ret_fetch, char **ret_error) {
        _cleanup_free_ char *staged = data_staging_dir(c);
        if (mkdir(staged, 0755) < 0) {
                int r = -errno;
                *ret_error = xasprintf("cannot create %s: %s", staged, strerror(-r));
                return r;
        }
        _cleanup_free_ char *leaf = url_leaf(url);
        _cleanup_free_ char *file = path_join(staged, leaf);
        FetchResult f = {};
        int r = data_fetch(c, url, file, etag, lm, &f, ret_error);
        if (r < 0) {
                data_staging_remove(staged);
                return r;
        }
        if (f.status == 304) {
                data_staging_remove(staged);
                *ret_staged = NULL;
        } else
                *ret_staged = TAKE_PTR(staged);
        *ret_fetch = f;
        return 0;
}

/* A dataset's kind is the dataset's, not a version's: every version is
 * mounted, fetched and shown as one file or as a directory by it. A put
 * of the other kind made every earlier version the new kind (`data get
 * NAME@1` of a file printed a directory's path); it is refused. */
static int check_same_kind(DataCatalog *c, const char *tenant, const DatasetRecord *d, char **ret_error) {
        DatasetRecord *had = NULL;
        DatasetVersion *v = NULL;
        size_t n = 0;
        /* No version left (`data rm NAME@N` of each): nothing to keep. */
        if (c->ds->ops->versions(c->ds, tenant, d->name, &v, &n) < 0 || n == 0)
                return 0;
        dataset_version_list_free(v, n);
        if (c->ds->ops->get(c->ds, tenant, d->name, &had) < 0 || !had)
                return 0;
        bool was_dir = had->kind && streq(had->kind, "dir"), is_dir = d->kind && streq(d->kind, "dir");
        dataset_record_free(had);
        if (was_dir == is_dir)
                return 0;
        const char *held = was_dir ? "a directory" : "a single file", *put = is_dir ? "a directory" : "a single file";
        *ret_error = xasprintf("dataset '%s' holds %s, not %s: store %s under another name, or remove the dataset "
                               "first (pysprinter data rm %s)",
                               d->name, held, put, put, d->name);
        return -EINVAL;
}

/* Records the staged content as a version of (tenant, name) and returns it. */
static int add_staged_version(DataCatalog *c, const char *tenant, const DatasetRecord *d, const char *staged,
                              DataInfo **ret, char **ret_error) {
        int k = check_same_kind(c, tenant, d, ret_error);
        if (k < 0)
                return k;
        _cleanup_free_ char *hash = NULL;
        uint64_t size = 0, files = 0;
        _cleanup_close_ int hold = -EBADF; /* until the version is recorded */
        int r = tree_hash(staged, &hash, &size, &files);
        if (r < 0) {
                *ret_error = xasprintf("cannot hash the staged content: %s", strerror(-r));
                return r;
        }
        /* From the quota check until the version is recorded: another put
         * (or a deploy) checked meanwhile would count without this one. */
        pthread_mutex_lock(&c->quota_lock);
        r = commit_staged(c, tenant, staged, hash, size, &hold, ret_error);
        int version = 0;
        bool is_new = false;
        if (r >= 0) {
                r = c->ds->ops->put(c->ds, d);
                if (r >= 0)
                        r = c->ds->ops->add_version(c->ds, tenant, d->name, hash, size, files, &version, &is_new);
                if (r < 0)
                        *ret_error = xasprintf("cannot record dataset '%s': %s", d->name, strerror(-r));
        }
        pthread_mutex_unlock(&c->quota_lock);
        if (r < 0)
                return r;
        DatasetVersion v = { .version = version, .hash = hash, .size = size, .files = files };
        DataInfo *i = info_new(c, d, &v);
        i->is_new = is_new;
        *ret = i;
        return 0;
}

int data_put(DataCatalog *c, const char *tenant, const char *name, const char *source, DataInfo **ret,
             char **ret_error) {
        return data_put_as(c, tenant, name, source, NULL, ret, ret_error);
}

/* A single-file dataset's file name: a plain name, in UTF-8 because a
 * run's data paths reach it as JSON text (which holds nothing else; such
 * a name used to leave the dataset silently unattached). NULL when it is
 * one, else the message. */
char *data_file_name_error(const char *filename) {
        assert(filename);
        if (!*filename || strchr(filename, '/') || streq(filename, ".") || streq(filename, "..") ||
            strlen(filename) > 255)
                return xasprintf("'%s' is not a plain file name (no '/', not '.' or '..', at most 255 bytes)",
                                 filename);
        /* A newline would break the content hash's listing (one line per
         * entry), and no control character survives a daemon's query
         * string: refused on both paths alike. */
        for (const char *p = filename; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return xstrdup("a file name holding a control character (a newline, a tab…) cannot be "
                                       "stored: store the file under another (--as FILENAME)");
        if (!utf8_is_valid(filename)) {
                _cleanup_free_ char *shown = utf8_replace_invalid(filename, strlen(filename), NULL);
                return xasprintf("the file name '%s' is not UTF-8: store the file under another (--as FILENAME)",
                                 shown);
        }
        return NULL;
}

char *data_source_error(const char *source) {
        return source && *source ? NULL : xstrdup("no source given (a file, a directory or an http(s) URL)");
}

int data_put_as(DataCatalog *c, const char *tenant, const char *name, const char *source, const char *filename,
                DataInfo **ret, char **ret_error) {
        tenant = tenant ?: "local";
        if ((*ret_error = data_name_error(name)))
                return -EINVAL;
        if ((*ret_error = data_source_error(source)))
                return -EINVAL;
        _cleanup_free_ char *staged = NULL;
        _cleanup_free_ char *abs_source = NULL;
        DatasetRecord d = { .tenant = (char *) tenant, .name = (char *) name, .checked = now_realtime() };
        FetchResult f = {};
        int r;
        if (data_source_is_url(source)) {
                d.kind = "url";
                d.source = (char *) source;
                r = fetch_url_staged(c, source, NULL, NULL, &staged, &f, ret_error);
                if (r < 0)
                        return r;
                if (!staged) {
                        /* 304 to an unconditional GET: nothing to store. */
                        fetch_result_done(&f);
                        *ret_error = xasprintf("cannot fetch %s: the server answered 304 without a cached copy", source);
                        return -EIO;
                }
                d.etag = f.etag;
                d.last_modified = f.last_modified;
        } else {
                struct stat st;
                if (stat(source, &st) < 0) {
                        r = -errno;
                        *ret_error = xasprintf("cannot read %s: %s", source, strerror(-r));
                        return r;
                }
                d.kind = S_ISDIR(st.st_mode) ? "dir" : "file";
                abs_source = realpath(source, NULL);
                d.source = abs_source ? abs_source : (char *) source;
                staged = data_staging_dir(c);
                const char *slash = strrchr(d.source, '/');
                TreeBudget b = { .max_bytes = c->cfg.max_dataset_bytes, .max_files = c->cfg.max_files };
                _cleanup_free_ char *bad = NULL;
                const char *as = filename && d.kind[0] == 'f' ? filename : slash ? slash + 1 : d.source;
                if (d.kind[0] == 'f' && (*ret_error = data_file_name_error(as)))
                        return -EINVAL;
                r = tree_copy_in(source, staged, as, &b, &bad);
                if (r < 0) {
                        if (r == -EFBIG)
                                *ret_error = xasprintf("%s is larger than the dataset cap of %llu bytes", source,
                                                       (unsigned long long) c->cfg.max_dataset_bytes);
                        else if (r == -EMFILE)
                                *ret_error = xasprintf("%s has more than %llu files", source,
                                                       (unsigned long long) c->cfg.max_files);
                        else if ((*ret_error = data_tree_error(r, source, bad)))
                                ;
                        else
                                *ret_error = xasprintf("cannot copy %s: %s", bad ?: source, strerror(-r));
                        data_staging_remove(staged);
                        return r;
                }
        }
        r = add_staged_version(c, tenant, &d, staged, ret, ret_error);
        data_staging_remove(staged);
        fetch_result_done(&f);
        return r;
}

struct DataUpload {
        DataCatalog *c;
        char *path;     /* the staging file under tmp/ */
        int fd;
        uint64_t size;
        int error;      /* sticky: the first failed write */
};

int data_upload_new(DataCatalog *c, DataUpload **ret, char **ret_error) {
        assert(c && ret && ret_error);
        _cleanup_free_ char *dir = data_staging_dir(c);
        DataUpload *u = xcalloc(1, sizeof(DataUpload));
        u->c = c;
        u->path = xasprintf("%s.upload", dir);
        u->fd = open(u->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (u->fd < 0) {
                int r = -errno;
                *ret_error = data_write_error("upload", r);
                free(u->path);
                free(u);
                return r;
        }
        *ret = u;
        return 0;
}

uint64_t data_upload_max_bytes(const DataUpload *u) {
        return u->c->cfg.max_dataset_bytes;
}

int data_upload_write(DataUpload *u, const void *data, size_t len) {
        assert(u && (data || len == 0));
        if (u->error < 0)
                return u->error;
        if (u->c->cfg.max_dataset_bytes && u->size + len > u->c->cfg.max_dataset_bytes)
                return u->error = -EFBIG;
        int r = write_full(u->fd, data, len);
        if (r < 0)
                return u->error = r;
        u->size += len;
        return 0;
}

DataUpload *data_upload_free(DataUpload *u) {
        if (!u)
                return NULL;
        if (u->fd >= 0)
                close(u->fd);
        if (u->path)
                (void) unlink(u->path);
        free(u->path);
        free(u);
        return NULL;
}

/* The uploaded file, moved (one rename: same file system) into the new
 * staging directory staged as filename. */
static int upload_stage_file(DataUpload *u, const char *staged, const char *filename, char **ret_error) {
        _cleanup_free_ char *path = path_join(staged, filename);
        int r = 0;
        if (fsync(u->fd) < 0 || mkdir(staged, 0755) < 0 || rename(u->path, path) < 0)
                r = -errno;
        if (r < 0) {
                *ret_error = data_write_error(filename, r);
                return r;
        }
        (void) fchmod(u->fd, 0644);
        return 0;
}

static int upload_stage_tar(DataUpload *u, const char *staged, char **ret_error) {
        if (lseek(u->fd, 0, SEEK_SET) < 0)
                return -errno;
        DataTarCaps caps = { .max_files = u->c->cfg.max_files, .max_bytes = u->c->cfg.max_dataset_bytes };
        return data_tar_extract(u->fd, staged, &caps, ret_error);
}

int data_upload_commit(DataUpload *u, const char *tenant, const char *name, const char *filename, DataInfo **ret,
                       char **ret_error) {
        assert(u && ret && ret_error);
        tenant = tenant ?: "local";
        if ((*ret_error = data_name_error(name)))
                return -EINVAL;
        if (filename && (*ret_error = data_file_name_error(filename)))
                return -EINVAL;
        if (u->error == -EFBIG) {
                *ret_error = xasprintf("%s is larger than the dataset cap of %llu bytes", filename ?: "the archive",
                                       (unsigned long long) u->c->cfg.max_dataset_bytes);
                return -EFBIG;
        }
        if (u->error < 0) {
                *ret_error = data_write_error(filename ?: "the archive", u->error);
                return u->error;
        }
        _cleanup_free_ char *staged = data_staging_dir(u->c);
        int r = filename ? upload_stage_file(u, staged, filename, ret_error) : upload_stage_tar(u, staged, ret_error);
        if (r < 0) {
                data_staging_remove(staged);
                return r;
        }
        /* A file keeps its name as its source; a directory has none the
         * daemon could show (record_json shows only URLs). */
        DatasetRecord d = { .tenant = (char *) tenant, .name = (char *) name, .kind = filename ? "file" : "dir",
                            .source = (char *) (filename ?: "upload"), .checked = now_realtime() };
        r = add_staged_version(u->c, tenant, &d, staged, ret, ret_error);
        data_staging_remove(staged);
        return r;
}

int data_put_bytes(DataCatalog *c, const char *tenant, const char *name, const char *filename, const void *data,
                   size_t len, DataInfo **ret, char **ret_error) {
        assert(c && filename && (data || len == 0) && ret && ret_error);
        DataUpload *u = NULL;
        int r = data_upload_new(c, &u, ret_error);
        if (r < 0)
                return r;
        (void) data_upload_write(u, data, len); /* a failure is sticky: commit reports it */
        r = data_upload_commit(u, tenant, name, filename, ret, ret_error);
        data_upload_free(u);
        return r;
}

/* Conditional GET of a URL dataset; a new body becomes (or re-selects) a
 * version. Returns <0 when the server could not be asked. */
static int revalidate(DataCatalog *c, const char *tenant, DatasetRecord *d, char **ret_error) {
        _cleanup_free_ char *staged = NULL;
        FetchResult f = {};
        int r = fetch_url_staged(c, d->source, d->etag, d->last_modified, &staged, &f, ret_error);
        if (r < 0)
                return r;
        d->checked = now_realtime();
        if (!staged) {
                /* 304: keep the validators we have unless the server sent new ones. */
                if (f.etag) {
                        free(d->etag);
                        d->etag = TAKE_PTR(f.etag);
                }
                if (f.last_modified) {
                        free(d->last_modified);
                        d->last_modified = TAKE_PTR(f.last_modified);
                }
                fetch_result_done(&f);
                return c->ds->ops->put(c->ds, d);
        }
        free(d->etag);
        free(d->last_modified);
        d->etag = TAKE_PTR(f.etag);
        d->last_modified = TAKE_PTR(f.last_modified);
        fetch_result_done(&f);
        DataInfo *i = NULL;
        r = add_staged_version(c, tenant, d, staged, &i, ret_error);
        data_staging_remove(staged);
        if (r >= 0) {
                d->current = i->version;
                data_info_free(i);
        }
        return r;
}

int data_ref_unknown(const char *ref, char **ret_error) {
        assert(ret_error);
        _cleanup_free_ char *name = NULL;
        int version = 0;
        if (data_parse_ref(ref, &name, &version) < 0) {
                *ret_error = xasprintf("'%s' is not a dataset reference (NAME or NAME@VERSION)", ref ?: "");
                return -EINVAL;
        }
        *ret_error = xasprintf("no dataset named '%s' (add it with: pysprinter data put %s PATH|URL)", name, name);
        return -ENOENT;
}

int data_use(DataCatalog *c, const char *tenant, const char *ref, DataInfo **ret, char **ret_warning,
             char **ret_error) {
        tenant = tenant ?: "local";
        _cleanup_free_ char *name = NULL;
        int version = 0;
        if (data_parse_ref(ref, &name, &version) < 0)
                return data_ref_unknown(ref, ret_error);
        DatasetRecord *d = NULL;
        int r = c->ds->ops->get(c->ds, tenant, name, &d);
        if (r == -ENOENT)
                return data_ref_unknown(ref, ret_error);
        if (r < 0) {
                *ret_error = xasprintf("cannot read the data catalog: %s", strerror(-r));
                return r;
        }
        if (version == 0 && streq(d->kind, "url") &&
            (c->cfg.url_ttl_sec == 0 || now_realtime() - d->checked >= c->cfg.url_ttl_sec * USEC_PER_SEC)) {
                _cleanup_free_ char *err = NULL;
                r = revalidate(c, tenant, d, &err);
                if (r < 0 && ret_warning) {
                        char stamp[32];
                        *ret_warning = xasprintf("dataset '%s': could not revalidate %s (%s); using the cached copy "
                                                 "(version %d, checked %s)",
                                                 name, d->source, err ?: strerror(-r), d->current,
                                                 format_timestamp(d->checked, stamp));
                }
        }
        DatasetVersion v = {};
        r = c->ds->ops->version_get(c->ds, tenant, name, version, &v);
        if (r < 0) {
                if (r == -ENOENT)
                        *ret_error = version ? xasprintf("dataset '%s' has no version %d (see `pysprinter data ls %s`)",
                                                         name, version, name)
                                             : xasprintf("dataset '%s' has no versions", name);
                else
                        *ret_error = xasprintf("cannot read the data catalog: %s", strerror(-r));
                dataset_record_free(d);
                return r;
        }
        DataInfo *i = info_new(c, d, &v);
        free(v.hash);
        dataset_record_free(d);
        struct stat st;
        /* In a cluster the content may be on another node only: the
         * source fetches it (verified against its hash) first. */
        if (stat(i->path, &st) < 0 && errno == ENOENT && c->source) {
                _cleanup_free_ char *why = NULL;
                r = c->source(c, i->hash, c->source_userdata, &why);
                if (r < 0) {
                        *ret_error = xasprintf("the content of dataset '%s' version %d is on no reachable node: %s",
                                               name, i->version, why ?: strerror(-r));
                        data_info_free(i);
                        return r;
                }
                /* Its single file is known now that it is here. */
                if (!i->file && !streq(i->kind, "dir"))
                        (void) tree_single_file(i->path, &i->file);
        }
        if (stat(i->path, &st) < 0) {
                r = -errno;
                *ret_error = xasprintf("the content of dataset '%s' version %d is missing from %s", name, i->version,
                                       i->path);
                data_info_free(i);
                return r;
        }
        *ret = i;
        return 0;
}

int data_export(DataCatalog *c, const char *tenant, const char *ref, const char *out_path, char **ret_warning,
                char **ret_error) {
        DataInfo *i = NULL;
        /* Held while it is copied: a `data rm` meanwhile deleted the files
         * not copied yet. */
        _cleanup_(data_holds_releasep) DataHolds *holds = NULL;
        int r = data_use_held(c, tenant, ref, &i, &holds, ret_warning, ret_error);
        if (r < 0)
                return r;
        struct stat st;
        bool out_is_dir = stat(out_path, &st) >= 0 && S_ISDIR(st.st_mode);
        if (i->file) {
                /* Streamed: a dataset may hold GiBs, which a read whole
                 * took from the CLI's memory (or killed it). */
                _cleanup_free_ char *dst = out_is_dir ? path_join(out_path, strrchr(i->file, '/') + 1) : xstrdup(out_path);
                r = tree_copy_file_out(i->file, dst);
                if (r < 0)
                        *ret_error = xasprintf("cannot write %s: %s", dst, strerror(-r));
        } else {
                r = tree_copy_out(i->path, out_path);
                if (r < 0)
                        *ret_error = xasprintf("cannot copy dataset '%s' to %s: %s (the target must not hold "
                                               "files of the same names)",
                                               i->name, out_path, strerror(-r));
        }
        data_info_free(i);
        return r;
}

/* Deletes the object when no version references it any more. */
static void gc_object(DataCatalog *c, const char *hash) {
        uint64_t refs = 1;
        if (c->ds->ops->hash_refs(c->ds, hash, &refs) < 0 || refs > 0)
                return;
        _cleanup_free_ char *dir = path_join(c->objects, hash);
        /* A run's hold (a shared lock) keeps it: the release of the last
         * one, or the retention gc, comes back for it. */
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
                return;
        /* Move it aside first so a concurrent put of the same content
         * either sees it whole or not at all. Writable for the move: a
         * directory going to another parent gets a new "..", which
         * without CAP_DAC_OVERRIDE (any user but root) needs write
         * access to it; the move failed and the bytes stayed. */
        _cleanup_free_ char *aside = data_staging_dir(c);
        if (fchmod(fd, 0755) < 0)
                return;
        if (rename(dir, aside) < 0) {
                (void) fchmod(fd, 0555);
                return;
        }
        data_staging_remove(aside);
}

struct DataHolds {
        DataCatalog *catalog;
        char **hashes;
        int *fds;
        size_t n;
};

/* A shared lock on the object's directory. A gc holding the exclusive one
 * is moving it away (-ENOENT), and one that moved it between the open and
 * the lock leaves this fd on a directory no longer at its path. */
static int hold_object(DataCatalog *c, const char *hash, DataHolds *h) {
        _cleanup_free_ char *dir = path_join(c->objects, hash);
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat held, now;
        if (flock(fd, LOCK_SH | LOCK_NB) < 0 || fstat(fd, &held) < 0 || stat(dir, &now) < 0 ||
            held.st_ino != now.st_ino || held.st_dev != now.st_dev)
                return -ENOENT;
        h->hashes = strv_append(h->hashes, hash);
        h->fds = xrealloc(h->fds, (h->n + 1) * sizeof(int));
        h->fds[h->n++] = TAKE_FD(fd);
        return 0;
}

void data_holds_release(DataHolds *h) {
        if (!h)
                return;
        for (size_t i = 0; i < h->n; i++) {
                (void) fd_close(h->fds[i]);
                gc_object(h->catalog, h->hashes[i]);
        }
        strv_free(h->hashes);
        free(h->fds);
        free(h);
}

int data_use_held(DataCatalog *c, const char *tenant, const char *ref, DataInfo **ret, DataHolds **ret_holds,
                  char **ret_warning, char **ret_error) {
        assert(c && ref && ret && ret_holds && ret_error);
        /* The lookup and the lock are two steps: a removal between them
         * moved the content away (hold_object() says -ENOENT); the next
         * lookup sees the catalogue after it. */
        for (int attempt = 0;; attempt++) {
                DataInfo *i = NULL;
                _cleanup_free_ char *warning = NULL;
                int r = data_use(c, tenant, ref, &i, &warning, ret_error);
                if (r < 0)
                        return r;
                DataHolds *h = xcalloc(1, sizeof(DataHolds));
                h->catalog = c;
                r = hold_object(c, i->hash, h);
                if (r >= 0) {
                        *ret = i;
                        *ret_holds = h;
                        if (ret_warning)
                                *ret_warning = TAKE_PTR(warning);
                        return 0;
                }
                data_holds_release(h);
                if (attempt == 2) {
                        *ret_error = xasprintf("dataset '%s' was removed while it was read", i->name);
                        data_info_free(i);
                        return -ENOENT;
                }
                data_info_free(i);
        }
}

int data_remove_unknown(const char *ref, char **ret_error) {
        assert(ret_error);
        _cleanup_free_ char *name = NULL;
        int version = 0;
        if (data_parse_ref(ref, &name, &version) < 0)
                return data_ref_unknown(ref, ret_error); /* the same -EINVAL and words */
        *ret_error = version ? xasprintf("dataset '%s' has no version %d", name, version)
                             : xasprintf("no dataset named '%s'", name);
        return -ENOENT;
}

int data_remove(DataCatalog *c, const char *tenant, const char *ref, char **ret_error) {
        tenant = tenant ?: "local";
        _cleanup_free_ char *name = NULL;
        int version = 0;
        if (data_parse_ref(ref, &name, &version) < 0)
                return data_remove_unknown(ref, ret_error);
        DatasetVersion *v = NULL;
        size_t n = 0;
        int r = c->ds->ops->versions(c->ds, tenant, name, &v, &n);
        if (r >= 0)
                r = c->ds->ops->remove(c->ds, tenant, name, version);
        if (r == -ENOENT)
                (void) data_remove_unknown(ref, ret_error);
        else if (r < 0)
                *ret_error = xasprintf("cannot update the data catalog: %s", strerror(-r));
        if (r >= 0)
                for (size_t i = 0; i < n; i++)
                        if (version == 0 || v[i].version == version)
                                gc_object(c, v[i].hash);
        dataset_version_list_free(v, n);
        return r;
}

int data_list(DataCatalog *c, const char *tenant, DatasetRecord ***ret, size_t *ret_n) {
        return c->ds->ops->list(c->ds, tenant ?: "local", ret, ret_n);
}

int data_versions(DataCatalog *c, const char *tenant, const char *name, DatasetVersion **ret, size_t *ret_n) {
        return c->ds->ops->versions(c->ds, tenant ?: "local", name, ret, ret_n);
}

int data_resolve_mounts(DataCatalog *c, const char *tenant, char *const *refs, char ***ret_mounts,
                        DataHolds **ret_holds, char **ret_fingerprint, char **ret_warning, char **ret_error) {
        char **mounts = NULL;
        DataHolds *holds = NULL;
        if (ret_holds) {
                holds = xcalloc(1, sizeof(DataHolds));
                holds->catalog = c;
        }
        Buf fp, warn;
        buf_init(&fp, 1 << 20);
        buf_init(&warn, 1 << 20);
        int r = 0;
        for (char *const *p = refs; p && *p; p++) {
                DataInfo *i = NULL;
                _cleanup_free_ char *w = NULL;
                r = data_use(c, tenant, *p, &i, &w, ret_error);
                if (r < 0)
                        break;
                for (char **m = mounts; m && *m; m++)
                        if (startswith(*m, i->name) && (*m)[strlen(i->name)] == '=') {
                                *ret_error = xasprintf("dataset '%s' is asked for twice", i->name);
                                r = -EINVAL;
                        }
                if (r >= 0 && holds && !strv_contains(holds->hashes, i->hash)) {
                        r = hold_object(c, i->hash, holds);
                        if (r < 0)
                                *ret_error = xasprintf("dataset '%s' was removed while the run started", i->name);
                }
                if (r < 0) {
                        data_info_free(i);
                        break;
                }
                /* A single-file dataset (a file or a URL) names its file: the
                 * run's data_path() is then that file (RunSpec.data). */
                _cleanup_free_ char *m = xasprintf("%s=%s", i->name, i->file ? i->file : i->path);
                mounts = strv_append(mounts, m);
                buf_printf(&fp, "%s%s@%s", fp.len ? "," : "", i->name, i->hash);
                if (w)
                        buf_printf(&warn, "%s%s", warn.len ? "\n" : "", w);
                data_info_free(i);
        }
        if (r < 0) {
                strv_free(mounts);
                data_holds_release(holds);
                buf_free(&fp);
                buf_free(&warn);
                return r;
        }
        *ret_mounts = mounts ?: xcalloc(1, sizeof(char *));
        if (ret_holds)
                *ret_holds = holds;
        if (ret_fingerprint)
                *ret_fingerprint = buf_steal(&fp);
        else
                buf_free(&fp);
        if (ret_warning && warn.len)
                *ret_warning = buf_steal(&warn);
        else
                buf_free(&warn);
        return 0;
}

/* data_put()'s message names the directory it stored: for a run's output
 * that is a host path the run never saw (a daemon's data dir). The run
 * knows it as output_dir(). */
static char *output_error(const char *dir, char *error) {
        if (!error)
                return NULL;
        size_t n = strlen(dir);
        if (strncmp(error, dir, n) != 0)
                return error;
        const char *rest = error + n;
        char *m = startswith(rest, ": ") ? xstrdup(rest + 2) : xasprintf("output_dir()%s", rest);
        free(error);
        return m;
}

int data_store_output(const char *dir, void *userdata, char **ret_outputs_json, char **ret_error) {
        DataOutput *o = userdata;
        assert(dir && o && o->catalog && o->name);
        DataInfo *i = NULL;
        /* What the function made unreadable (chmod 000) is still its
         * output: without CAP_DAC_OVERRIDE (a daemon that is not root)
         * the copy failed as an internal error. The modes are not data:
         * a dataset's files are 0444 whatever they were. */
        tree_make_owner_readable(dir);
        int r = data_put(o->catalog, o->tenant, o->name, dir, &i, ret_error);
        if (r < 0) {
                *ret_error = output_error(dir, *ret_error);
                return r;
        }
        o->version = i->version;
        free(o->hash);
        o->hash = xstrdup(i->hash);
        json_t *j = json_pack("{s:i}", o->name, i->version);
        *ret_outputs_json = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        data_info_free(i);
        return 0;
}
