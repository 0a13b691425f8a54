/* pkg-wheel.c: PEP 427 wheels unpacked with libarchive. A wheel is hostile
 * input: every entry name, type and size is checked before a byte lands on
 * disk, and the RECORD is verified against what was actually written. */
#include "pkg-mgr.h"

#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct Entry {
        char *path;        /* as in the archive */
        char *dest;        /* relative path written under dest_dir */
        bool dir;
        uint64_t size;
        char *hash;        /* "sha256=…" of what was written */
        mode_t mode;       /* of a file: 0755 if any x bit, else 0644 */
        bool claimed;      /* atomic: a thread is extracting it */
} Entry;

typedef struct Unpack {
        Entry *entries;
        size_t n, alloc;
} Unpack;

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgWheelName *, pkg_wheel_name_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgMetadata *, pkg_metadata_free);

static void unpack_done(Unpack *u) {
        for (size_t i = 0; i < u->n; i++) {
                free(u->entries[i].path);
                free(u->entries[i].dest);
                free(u->entries[i].hash);
        }
        free(u->entries);
}

static int entry_cmp(const void *a, const void *b) {
        return strcmp(((const Entry *) a)->path, ((const Entry *) b)->path);
}

static const Entry *find_entry(const Unpack *u, const char *path) {
        Entry key = { .path = (char *) path };
        return bsearch(&key, u->entries, u->n, sizeof(Entry), entry_cmp);
}

/* Checks an archive path and returns its destination (".data/purelib|
 * platlib" stripped) or NULL with *why set. */
static char *map_path(const char *path, bool *ret_dir, const char **why) {
        size_t len = strlen(path);
        if (len == 0) {
                *why = "empty name";
                return NULL;
        }
        if (path[0] == '/') {
                *why = "absolute path";
                return NULL;
        }
        if (strchr(path, '\\')) {
                *why = "backslash in path";
                return NULL;
        }
        if (len > 4096) {
                *why = "name too long";
                return NULL;
        }
        bool dir = path[len - 1] == '/';
        _cleanup_free_ char *p = xstrndup(path, dir ? len - 1 : len);
        if (!*p) {
                *why = "empty name";
                return NULL;
        }
        /* Component checks: no "..", no ".", no empty component ("a//b"). */
        for (char *s = p;;) {
                char *slash = strchr(s, '/');
                size_t n = slash ? (size_t) (slash - s) : strlen(s);
                if (n == 0) {
                        *why = "empty path component";
                        return NULL;
                }
                if ((n == 2 && strneq(s, "..", 2)) || (n == 1 && s[0] == '.')) {
                        *why = "path traversal ('..' or '.' component)";
                        return NULL;
                }
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char) s[i] < 0x20) {
                                *why = "control character in name";
                                return NULL;
                        }
                if (!slash)
                        break;
                s = slash + 1;
        }
        *ret_dir = dir;
        /* NAME-VER.data/purelib/x and .../platlib/x install into the root;
         * other .data schemes (scripts, headers, data) stay where they are,
         * off sys.path. */
        char *first = strchr(p, '/');
        if (first && first - p > 5 && strneq(first - 5, ".data", 5)) {
                const char *rest = first + 1;
                if (startswith(rest, "purelib/") || startswith(rest, "platlib/"))
                        return xstrdup(rest + 8);
                if (streq(rest, "purelib") || streq(rest, "platlib")) {
                        *ret_dir = true;
                        return xstrdup("");
                }
        }
        return TAKE_PTR(p);
}

/* mkdir -p of rel under dirfd. *made lists the directories this unpack
 * made already (the staging dir is private and new): each is made once,
 * with no stat (numpy: 2,890 mkdirat and as many fstatat became ~100
 * mkdirat). Something that exists without being listed is checked to be a
 * directory we can open without following symlinks. */
static int mkdirs_at(int dirfd, const char *rel, char ***made) {
        if (!*rel || strv_contains(*made, rel))
                return 0;
        _cleanup_free_ char *p = xstrdup(rel);
        for (char *s = p;; s++) {
                bool end = *s == 0;
                if (*s == '/' || end) {
                        char c = *s;
                        *s = 0;
                        if (!strv_contains(*made, p)) {
                                if (mkdirat(dirfd, p, 0755) < 0) {
                                        if (errno != EEXIST)
                                                return -errno;
                                        struct stat st;
                                        if (fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                                return -errno;
                                        if (!S_ISDIR(st.st_mode))
                                                return -ENOTDIR;
                                }
                                *made = strv_append(*made, p);
                        }
                        *s = c;
                        if (end)
                                break;
                }
        }
        return 0;
}

static int fail(char **ret_error, int r, const char *wheel, const char *entry, const char *fmt, ...)
        _printf_(5, 6);
static int fail(char **ret_error, int r, const char *wheel, const char *entry, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *why = NULL;
        if (vasprintf(&why, fmt, ap) < 0)
                why = NULL;
        va_end(ap);
        if (entry)
                *ret_error = xasprintf("wheel %s: entry '%s': %s", wheel, entry, why ? why : "invalid");
        else
                *ret_error = xasprintf("wheel %s: %s", wheel, why ? why : "invalid");
        return r;
}

/* One RECORD row: path,hash,size with RFC 4180 quoting. Returns the number
 * of fields (up to 3) or -EBADMSG. */
static int csv_row(const char **pp, char *fields[3]) {
        const char *p = *pp;
        int nf = 0;
        Buf f;
        buf_init(&f, 1 << 16);
        for (;;) {
                bool quoted = *p == '"';
                if (quoted) {
                        p++;
                        for (;;) {
                                if (!*p) {
                                        buf_free(&f);
                                        return -EBADMSG;
                                }
                                if (*p == '"' && p[1] == '"') {
                                        buf_append(&f, "\"", 1);
                                        p += 2;
                                } else if (*p == '"') {
                                        p++;
                                        break;
                                } else
                                        buf_append(&f, p++, 1);
                        }
                } else
                        while (*p && *p != ',' && *p != '\n' && *p != '\r')
                                buf_append(&f, p++, 1);
                if (nf < 3)
                        fields[nf] = buf_steal(&f);
                else
                        buf_reset(&f);
                nf++;
                if (*p == ',') {
                        p++;
                        continue;
                }
                if (*p == '\r')
                        p++;
                if (*p == '\n')
                        p++;
                else if (*p) {
                        buf_free(&f);
                        return -EBADMSG;
                }
                break;
        }
        buf_free(&f);
        *pp = p;
        return MIN(nf, 3);
}

static bool is_record_sig(const char *path, const char *distinfo) {
        const char *slash = strchr(path, '/');
        if (!slash || (size_t) (slash - path) != strlen(distinfo) || !strneq(path, distinfo, strlen(distinfo)))
                return false;
        return streq(slash + 1, "RECORD") || streq(slash + 1, "RECORD.jws") || streq(slash + 1, "RECORD.p7s");
}

/* RECORD's "ALGO=urlsafe-b64" of a file already written under dfd, for
 * an algorithm other than the sha256 every entry is hashed with as it is
 * written: read back (such wheels are rare), so the unpack stays one pass. */
static int record_hash_of_written(int dfd, const char *dest, const char *algo, const char *evp_name, char **ret) {
        const EVP_MD *md = EVP_get_digestbyname(evp_name);
        if (!md)
                return -EOPNOTSUPP;
        _cleanup_close_ int fd = openat(dfd, dest, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx || !EVP_DigestInit_ex(ctx, md, NULL)) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        uint8_t buf[65536];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                EVP_DigestUpdate(ctx, buf, (size_t) n);
        unsigned char dg[EVP_MAX_MD_SIZE];
        unsigned dn = 0;
        int ok = n == 0 && EVP_DigestFinal_ex(ctx, dg, &dn);
        EVP_MD_CTX_free(ctx);
        if (!ok)
                return n < 0 ? -errno : -EIO;
        unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
        int bn = EVP_EncodeBlock(b64, dg, (int) dn);
        while (bn > 0 && b64[bn - 1] == '=')
                bn--;
        for (int i = 0; i < bn; i++)
                b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
        *ret = xasprintf("%s=%.*s", algo, bn, (const char *) b64);
        return 0;
}

/* Checks one RECORD hash against entry e: sha256 from what the unpack
 * computed, another allowed algorithm by reading the file back. */
static int check_record_hash(const Entry *e, int dfd, const char *hash, const char *wheel, char **ret_error) {
        if (startswith(hash, "sha256=")) {
                if (!streq(hash, e->hash))
                        return fail(ret_error, -EBADMSG, wheel, e->path,
                                    "content does not match RECORD (%s, RECORD says %s)", e->hash, hash);
                return 0;
        }
        const char *eq = strchr(hash, '=');
        _cleanup_free_ char *algo = eq ? xstrndup(hash, (size_t) (eq - hash)) : NULL;
        const char *evp_name = algo ? pkg_hash_evp_name(algo) : NULL;
        if (!evp_name)
                return fail(ret_error, -EBADMSG, wheel, e->path,
                            "RECORD hash '%s' is not sha256 or better (PEP 427: not md5 or sha1)", hash);
        _cleanup_free_ char *got = NULL;
        int r = record_hash_of_written(dfd, e->dest, algo, evp_name, &got);
        if (r < 0)
                return fail(ret_error, r == -EOPNOTSUPP ? -EBADMSG : r, wheel, e->path,
                            "cannot check its RECORD hash '%s': %s", hash, strerror(-r));
        if (!streq(hash, got))
                return fail(ret_error, -EBADMSG, wheel, e->path, "content does not match RECORD (%s, RECORD says %s)",
                            got, hash);
        return 0;
}

static int verify_record(const Unpack *u, int dfd, const char *distinfo, const char *wheel, char **ret_error) {
        _cleanup_free_ char *rec_path = xasprintf("%s/RECORD", distinfo);
        _cleanup_close_ int fd = openat(dfd, rec_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return fail(ret_error, -EBADMSG, wheel, NULL, "no %s (every wheel must carry one)", rec_path);
        _cleanup_free_ char *text = NULL;
        int r = read_fd_all(fd, 64U << 20, &text, NULL);
        if (r < 0)
                return fail(ret_error, r, wheel, NULL, "cannot read %s: %s", rec_path, strerror(-r));
        /* listed[i]: entry i appears in RECORD. */
        _cleanup_free_ bool *listed = xcalloc(u->n + 1, sizeof(bool));
        const char *p = text;
        while (*p) {
                char *fields[3] = {};
                int nf = csv_row(&p, fields);
                if (nf < 0)
                        return fail(ret_error, -EBADMSG, wheel, NULL, "malformed RECORD");
                _cleanup_free_ char *path = fields[0], *hash = nf > 1 ? fields[1] : NULL,
                                    *size = nf > 2 ? fields[2] : NULL;
                if (!path || !*path)
                        continue;
                const Entry *e = find_entry(u, path);
                if (!e || e->dir)
                        return fail(ret_error, -EBADMSG, wheel, path, "listed in RECORD but not in the wheel");
                listed[e - u->entries] = true;
                if (is_record_sig(path, distinfo))
                        continue;
                if (!hash || !*hash)
                        return fail(ret_error, -EBADMSG, wheel, path, "RECORD gives no hash");
                r = check_record_hash(e, dfd, hash, wheel, ret_error);
                if (r < 0)
                        return r;
                if (size && *size) {
                        char *end;
                        errno = 0;
                        unsigned long long sz = strtoull(size, &end, 10);
                        if (errno || *end || sz != e->size)
                                return fail(ret_error, -EBADMSG, wheel, path, "size %llu does not match RECORD (%s)",
                                            (unsigned long long) e->size, size);
                }
        }
        for (size_t i = 0; i < u->n; i++)
                if (!u->entries[i].dir && !listed[i] && !is_record_sig(u->entries[i].path, distinfo))
                        return fail(ret_error, -EBADMSG, wheel, u->entries[i].path, "not listed in RECORD");
        return 0;
}

/* The number of entries the zip's central directory declares, read from
 * its end records before libarchive walks it, so a wheel over the cap is
 * refused without a byte extracted (ZIP64 past 65,535 entries). */
static int zip_entry_count(const char *path, uint64_t *ret) {
        /* End of central directory: 22 bytes plus a comment of at most
         * 65,535, preceded by the 20-byte ZIP64 locator when there is one. */
        enum { EOCD = 22, LOCATOR = 20, ZIP64_EOCD = 56, TAIL = EOCD + 65535 + LOCATOR };
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        size_t n = (size_t) MIN((uint64_t) st.st_size, (uint64_t) TAIL);
        _cleanup_free_ uint8_t *tail = xmalloc(n ? n : 1);
        if (pread(fd, tail, n, st.st_size - (off_t) n) != (ssize_t) n)
                return -EBADMSG;
        for (size_t i = n >= EOCD ? n - EOCD + 1 : 0; i-- > 0;) {
                const uint8_t *e = tail + i;
                if (!(e[0] == 'P' && e[1] == 'K' && e[2] == 5 && e[3] == 6))
                        continue;
                uint64_t count = (uint64_t) e[10] | (uint64_t) e[11] << 8;
                if (count != 0xFFFF) {
                        *ret = count;
                        return 0;
                }
                /* ZIP64: the locator points at the ZIP64 end record, whose
                 * total entry count is a 64-bit field at offset 32. */
                if (i < LOCATOR)
                        return -EBADMSG;
                const uint8_t *l = e - LOCATOR;
                if (!(l[0] == 'P' && l[1] == 'K' && l[2] == 6 && l[3] == 7))
                        return -EBADMSG;
                uint64_t off = 0;
                for (int k = 7; k >= 0; k--)
                        off = off << 8 | l[8 + k];
                uint8_t z[ZIP64_EOCD];
                if (off > (uint64_t) st.st_size || pread(fd, z, sizeof(z), (off_t) off) != (ssize_t) sizeof(z) ||
                    !(z[0] == 'P' && z[1] == 'K' && z[2] == 6 && z[3] == 6))
                        return -EBADMSG;
                count = 0;
                for (int k = 7; k >= 0; k--)
                        count = count << 8 | z[32 + k];
                *ret = count;
                return 0;
        }
        return -EBADMSG;
}

/* Whether the .dist-info directory `distinfo` ("{name}-{version}.dist-info")
 * belongs to the project the wheel's file name gives. pip refuses a wheel
 * whose .dist-info names another project: installed, it would claim that
 * project's modules and metadata (e_otherdist-1.0-….whl carrying
 * requests-1.0.dist-info and requests/ shadows the real requests). */
static bool distinfo_matches(const char *distinfo, const char *project) {
        /* The name is what precedes the version; neither holds a '-'
         * (PEP 427 escapes them), "dist-info" does. */
        _cleanup_free_ char *stem = xstrndup(distinfo, strlen(distinfo) - strlen(".dist-info"));
        const char *dash = strrchr(stem, '-');
        if (!dash || dash == stem)
                return false;
        _cleanup_free_ char *name = xstrndup(stem, (size_t) (dash - stem));
        _cleanup_free_ char *a = pkg_name_normalize(name), *b = pkg_name_normalize(project);
        return a && b && streq(a, b);
}

/* Equal as PEP 440 versions ("1.0" is "1.0.0"); unparsable ones as text. */
static bool versions_equal(const char *a, const char *b) {
        if (!a || !b)
                return false;
        PkgVersion *va = NULL, *vb = NULL;
        bool eq = pkg_version_parse(a, &va) >= 0 && pkg_version_parse(b, &vb) >= 0 ? pkg_version_compare(va, vb) == 0
                                                                                   : streq(a, b);
        pkg_version_free(va);
        pkg_version_free(vb);
        return eq;
}

static struct archive *open_wheel(const char *path) {
        struct archive *a = archive_read_new();
        if (!a)
                return NULL;
        /* The seekable reader trusts the central directory, as installers
         * must: streaming local headers can disagree with it. */
        archive_read_support_format_zip_seekable(a);
        if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
                archive_read_free(a);
                return NULL;
        }
        return a;
}

/* The extraction of a wheel's files, shared by its threads. The entry list
 * is complete (every header checked, every directory made) before a byte of
 * data is read; each thread then walks the same central directory with its
 * own reader and claims the files nobody has taken yet. The seekable zip
 * reader skips an unread entry by seeking to the next local header, so a
 * walk costs little beyond the data the thread inflates. */
typedef struct Extract {
        const char *wheel_path, *wheel;
        int dfd;
        Unpack *u;
        uint64_t total, total_cap, wheel_size;  /* total: atomic */
        int stop;                               /* atomic: an error was seen */
        const bool *cancel;                     /* the caller's (atomic), may be NULL */
        pthread_mutex_t lock;
        int r;                                  /* the first error */
        char *error;
} Extract;

static void extract_fail(Extract *x, int r, char *error) {
        pthread_mutex_lock(&x->lock);
        if (x->r == 0) {
                x->r = r;
                x->error = error;
                error = NULL;
        }
        pthread_mutex_unlock(&x->lock);
        free(error);
        __atomic_store_n(&x->stop, 1, __ATOMIC_RELEASE);
}

/* The caller cancelled: every thread stops at its next entry or chunk. */
static bool extract_cancelled(Extract *x) {
        if (!x->cancel || !__atomic_load_n(x->cancel, __ATOMIC_ACQUIRE))
                return false;
        extract_fail(x, -ECANCELED, xstrdup("cancelled"));
        return true;
}

/* Inflates one entry into its file, hashing what it writes (RECORD). */
static int extract_one(Extract *x, struct archive *a, Entry *e, uint8_t *buf, char **ret_error) {
        /* Created with its final, read-only mode: the fd O_CREAT returns is
         * writable all the same, and the store needs no chmod per file
         * afterwards (numpy: 1,083 fchmodat and as many fstatat saved). */
        _cleanup_close_ int fd = openat(x->dfd, e->dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                        e->mode & 0555);
        if (fd < 0) {
                int r = -errno;
                return fail(ret_error, r, x->wheel, e->path, "%s",
                            r == -EEXIST ? "duplicate entry (two entries install the same file)" : strerror(-r));
        }
        _cleanup_(sha256_freep) Sha256 *h = sha256_new();
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, 1 << 16);
                if (n == 0)
                        break;
                if (n < 0)
                        return fail(ret_error, -EBADMSG, x->wheel, e->path, "corrupt data: %s", archive_error_string(a));
                e->size += (uint64_t) n;
                uint64_t total = __atomic_add_fetch(&x->total, (uint64_t) n, __ATOMIC_RELAXED);
                if (e->size > PKG_WHEEL_MAX_ENTRY_BYTES || total > x->total_cap)
                        return fail(ret_error, -EFBIG, x->wheel, e->path,
                                    "unpacked size over the cap (%llu bytes for a %llu-byte wheel): zip bomb?",
                                    (unsigned long long) x->total_cap, (unsigned long long) x->wheel_size);
                if (__atomic_load_n(&x->stop, __ATOMIC_ACQUIRE) || extract_cancelled(x))
                        return -ECANCELED;
                sha256_update(h, buf, (size_t) n);
                int r = write_full(fd, buf, (size_t) n);
                if (r < 0)
                        return fail(ret_error, r, x->wheel, e->path, "write failed: %s", strerror(-r));
        }
        uint8_t dg[32];
        sha256_final(h, dg);
        e->hash = pkg_record_hash(dg);
        return 0;
}

static void *extract_thread(void *userdata) {
        Extract *x = userdata;
        struct archive *a = open_wheel(x->wheel_path);
        _cleanup_free_ uint8_t *buf = xmalloc(1 << 16);
        char *error = NULL;
        int r = 0;
        if (!a) {
                r = fail(&error, -EBADMSG, x->wheel, NULL, "not a readable zip archive");
                goto out;
        }
        for (size_t i = 0; i < x->u->n && !__atomic_load_n(&x->stop, __ATOMIC_ACQUIRE); i++) {
                struct archive_entry *ae;
                int ar = archive_read_next_header(a, &ae);
                const char *path = ar == ARCHIVE_OK || ar == ARCHIVE_WARN ? archive_entry_pathname(ae) : NULL;
                Entry *e = &x->u->entries[i];
                /* The same file read by the same reader: the same entries. */
                if (!path || !streq(path, e->path)) {
                        r = fail(&error, -EBADMSG, x->wheel, NULL, "corrupt archive: its entries changed while read");
                        goto out;
                }
                if (e->dir || __atomic_exchange_n(&e->claimed, true, __ATOMIC_ACQ_REL))
                        continue;
                if (extract_cancelled(x))
                        break;
                r = extract_one(x, a, e, buf, &error);
                if (r < 0)
                        goto out;
        }
out:
        if (r < 0 && r != -ECANCELED)
                extract_fail(x, r, error);
        else
                free(error);
        if (a)
                archive_read_free(a);
        return NULL;
}

/* How many threads inflate one wheel: one per CPU (at most 4), one for a
 * small wheel (threads cost more than they save under a few MiB). */
static unsigned extract_threads(uint64_t wheel_size, size_t n_entries) {
        if (wheel_size < (4ULL << 20) || n_entries < 2)
                return 1;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        return (unsigned) MIN((long) MIN(n_entries, (size_t) 4), MAX(cpus, 1L));
}

/* Walks the central directory once, without reading data: every name,
 * type, declared size and the .dist-info directory checked, directories
 * made. Fills u in archive order. */
static int scan_entries(struct archive *a, int dfd, const char *wheel, const PkgWheelName *wn, Unpack *u,
                        const bool *cancel, char **ret_distinfo, char **ret_error) {
        _cleanup_free_ char *distinfo = NULL;
        _cleanup_strv_free_ char **made = NULL;
        for (;;) {
                struct archive_entry *ae;
                int ar = archive_read_next_header(a, &ae);
                if (ar == ARCHIVE_EOF)
                        break;
                if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN)
                        return fail(ret_error, -EBADMSG, wheel, NULL, "corrupt archive: %s", archive_error_string(a));
                if (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE)) {
                        free(*ret_error);
                        *ret_error = xstrdup("cancelled");
                        return -ECANCELED;
                }
                const char *path = archive_entry_pathname(ae);
                if (!path)
                        return fail(ret_error, -EBADMSG, wheel, NULL, "entry without a name");
                if (u->n >= PKG_WHEEL_MAX_ENTRIES)
                        return fail(ret_error, -EFBIG, wheel, NULL, "more than %d entries", PKG_WHEEL_MAX_ENTRIES);
                mode_t type = archive_entry_filetype(ae);
                if (archive_entry_hardlink(ae) || archive_entry_symlink(ae) || type == AE_IFLNK)
                        return fail(ret_error, -EPERM, wheel, path, "links are not allowed in wheels");
                if (type != AE_IFREG && type != AE_IFDIR)
                        return fail(ret_error, -EPERM, wheel, path, "not a regular file or directory (device, fifo or socket)");
                const char *why = NULL;
                bool isdir = false;
                _cleanup_free_ char *dest = map_path(path, &isdir, &why);
                if (!dest)
                        return fail(ret_error, -EPERM, wheel, path, "%s", why);
                isdir = isdir || type == AE_IFDIR;
                if (archive_entry_size_is_set(ae) && (uint64_t) archive_entry_size(ae) > PKG_WHEEL_MAX_ENTRY_BYTES)
                        return fail(ret_error, -EFBIG, wheel, path, "declared size over the %llu-byte cap",
                                    (unsigned long long) PKG_WHEEL_MAX_ENTRY_BYTES);
                /* Where it lands decides, not its archive path: a
                 * NAME.data/purelib/OTHER.dist-info/ lands beside the
                 * wheel's own and would pass for another project. */
                size_t top = strcspn(dest, "/");
                bool in_distinfo = top > 10 && strneq(dest + top - 10, ".dist-info", 10) && (dest[top] == '/' || isdir);
                if (in_distinfo && !distinfo) {
                        distinfo = xstrndup(dest, top);
                        if (!distinfo_matches(distinfo, wn->name))
                                return fail(ret_error, -EBADMSG, wheel, path,
                                            "its .dist-info directory %s is not the project %s the file name gives",
                                            distinfo, wn->name);
                } else if (in_distinfo && !(strlen(distinfo) == top && strneq(dest, distinfo, top)))
                        return fail(ret_error, -EBADMSG, wheel, path, "second .dist-info directory (%s already seen)",
                                    distinfo);
                char *last = isdir ? NULL : strrchr(dest, '/');
                _cleanup_free_ char *parent = isdir ? xstrdup(dest) : xstrndup(dest, last ? (size_t) (last - dest) : 0);
                int r = mkdirs_at(dfd, parent, &made);
                if (r < 0)
                        return fail(ret_error, r, wheel, path, isdir ? "cannot create directory: %s" :
                                                                       "cannot create its directory: %s",
                                    strerror(-r));
                if (u->n == u->alloc) {
                        u->alloc = u->alloc ? u->alloc * 2 : 64;
                        u->entries = xrealloc(u->entries, u->alloc * sizeof(Entry));
                }
                u->entries[u->n++] = (Entry) { .path = xstrdup(path), .dest = TAKE_PTR(dest), .dir = isdir,
                                               .mode = (archive_entry_perm(ae) & 0111) ? 0755 : 0644 };
        }
        *ret_distinfo = TAKE_PTR(distinfo);
        return 0;
}

/* Inflates every file of u with extract_threads() threads; the first error
 * stops them all. */
static int extract_all(Extract *x, char **ret_error) {
        unsigned n = extract_threads(x->wheel_size, x->u->n);
        pthread_t tids[4];
        unsigned started = 0;
        for (unsigned i = 1; i < n; i++) {
                if (pthread_create(&tids[started], NULL, extract_thread, x) != 0)
                        break; /* fewer threads: slower, not wrong */
                started++;
        }
        extract_thread(x);
        for (unsigned i = 0; i < started; i++)
                pthread_join(tids[i], NULL);
        if (x->r < 0) {
                *ret_error = TAKE_PTR(x->error);
                return x->r;
        }
        return 0;
}

int pkg_wheel_unpack(const char *wheel_path, const char *display_name, const char *dest_dir, char **ret_error) {
        return pkg_wheel_unpack_cancellable(wheel_path, display_name, dest_dir, NULL, ret_error);
}

int pkg_wheel_unpack_cancellable(const char *wheel_path, const char *display_name, const char *dest_dir,
                                 const bool *cancel, char **ret_error) {
        const char *wheel = display_name ? display_name : wheel_path;
        struct stat wst;
        if (stat(wheel_path, &wst) < 0) {
                int r = -errno;
                return fail(ret_error, r, wheel, NULL, "%s", strerror(-r));
        }
        /* Zip bombs: the whole wheel may expand to at most RATIO times its
         * size (and never past the absolute cap). */
        uint64_t total_cap = MIN((uint64_t) PKG_WHEEL_MAX_TOTAL_BYTES,
                                 MAX((uint64_t) wst.st_size * PKG_WHEEL_MAX_RATIO, (uint64_t) 16 << 20));
        const char *base = strrchr(wheel, '/') ? strrchr(wheel, '/') + 1 : wheel;
        _cleanup_(pkg_wheel_name_freep) PkgWheelName *wn = NULL;
        if (pkg_wheel_name_parse(base, &wn) < 0)
                return fail(ret_error, -EINVAL, wheel, NULL, "not a wheel file name (PEP 427)");
        uint64_t n_entries = 0;
        int k = zip_entry_count(wheel_path, &n_entries);
        if (k < 0)
                return fail(ret_error, -EBADMSG, wheel, NULL, "not a readable zip archive (no central directory)");
        if (n_entries > PKG_WHEEL_MAX_ENTRIES)
                return fail(ret_error, -EFBIG, wheel, NULL, "more than %d entries (%llu in its central directory)",
                            PKG_WHEEL_MAX_ENTRIES, (unsigned long long) n_entries);
        struct archive *a = open_wheel(wheel_path);
        if (!a)
                return fail(ret_error, -EBADMSG, wheel, NULL, "not a readable zip archive");
        if (mkdir(dest_dir, 0755) < 0) {
                int r = -errno;
                archive_read_free(a);
                return fail(ret_error, r, wheel, NULL, "cannot create %s: %s", dest_dir, strerror(-r));
        }
        int dfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        Unpack u = {};
        int r = 0;
        _cleanup_free_ char *distinfo = NULL;
        if (dfd < 0) {
                r = fail(ret_error, -errno, wheel, NULL, "cannot open %s", dest_dir);
                goto out;
        }
        r = scan_entries(a, dfd, wheel, wn, &u, cancel, &distinfo, ret_error);
        if (r < 0)
                goto out;
        if (!distinfo) {
                r = fail(ret_error, -EBADMSG, wheel, NULL, "no .dist-info directory");
                goto out;
        }
        Extract x = { .wheel_path = wheel_path,
                      .wheel = wheel,
                      .dfd = dfd,
                      .u = &u,
                      .total_cap = total_cap,
                      .wheel_size = (uint64_t) wst.st_size,
                      .cancel = cancel,
                      .lock = PTHREAD_MUTEX_INITIALIZER };
        r = extract_all(&x, ret_error);
        if (r < 0)
                goto out;
        qsort(u.entries, u.n, sizeof(Entry), entry_cmp);
        for (size_t i = 1; i < u.n; i++)
                if (streq(u.entries[i].path, u.entries[i - 1].path) && !u.entries[i].dir) {
                        r = fail(ret_error, -EBADMSG, wheel, u.entries[i].path, "duplicate entry");
                        goto out;
                }
        {
                _cleanup_free_ char *wp = xasprintf("%s/WHEEL", distinfo);
                _cleanup_free_ char *wtext = NULL;
                _cleanup_close_ int wfd = openat(dfd, wp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (wfd < 0 || read_fd_all(wfd, 1 << 20, &wtext, NULL) < 0) {
                        r = fail(ret_error, -EBADMSG, wheel, NULL, "no %s", wp);
                        goto out;
                }
                const char *wv = strstr(wtext, "Wheel-Version:");
                if (!wv) {
                        r = fail(ret_error, -EBADMSG, wheel, NULL, "%s has no Wheel-Version", wp);
                        goto out;
                }
                wv += strlen("Wheel-Version:");
                while (*wv == ' ')
                        wv++;
                if (!startswith(wv, "1.")) {
                        r = fail(ret_error, -EPROTONOSUPPORT, wheel, NULL, "unsupported Wheel-Version %.10s", wv);
                        goto out;
                }
        }
        {
                /* The index's metadata (PEP 658) was checked by the resolver;
                 * the copy that gets installed must name the same project. */
                _cleanup_free_ char *mp = xasprintf("%s/METADATA", distinfo);
                _cleanup_free_ char *mtext = NULL, *merr = NULL;
                _cleanup_(pkg_metadata_freep) PkgMetadata *m = NULL;
                _cleanup_close_ int mfd = openat(dfd, mp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (mfd < 0 || read_fd_all(mfd, PKG_METADATA_MAX, &mtext, NULL) < 0 ||
                    pkg_metadata_parse(mtext, &m, &merr) < 0) {
                        r = fail(ret_error, -EBADMSG, wheel, NULL, "no readable %s%s%s", mp, merr ? ": " : "",
                                 merr ?: "");
                        goto out;
                }
                _cleanup_free_ char *got = pkg_name_normalize(m->name), *want = pkg_name_normalize(wn->name);
                if (!got || !want || !streq(got, want)) {
                        r = fail(ret_error, -EBADMSG, wheel, NULL,
                                 "its metadata names a different project (%s) than the file name (%s)", m->name,
                                 wn->name);
                        goto out;
                }
                /* And the same version: the lock says what the file name
                 * (and the index) said; importlib.metadata would say
                 * otherwise (pip: "inconsistent version"). */
                if (!versions_equal(m->version, wn->version)) {
                        r = fail(ret_error, -EBADMSG, wheel, NULL,
                                 "its metadata gives version %s, the file name %s (an inconsistent wheel)",
                                 m->version ?: "(none)", wn->version);
                        goto out;
                }
        }
        r = verify_record(&u, dfd, distinfo, wheel, ret_error);
out:
        archive_read_free(a);
        if (dfd >= 0)
                close(dfd);
        unpack_done(&u);
        if (r < 0)
                (void) rm_rf(dest_dir);
        return r;
}

int pkg_wheel_read_metadata(const char *wheel_path, char **ret_text, char **ret_error) {
        struct archive *a = open_wheel(wheel_path);
        if (!a)
                return fail(ret_error, -EBADMSG, wheel_path, NULL, "not a readable zip archive");
        int r = -ENOENT;
        for (;;) {
                struct archive_entry *ae;
                int ar = archive_read_next_header(a, &ae);
                if (ar == ARCHIVE_EOF)
                        break;
                if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
                        r = fail(ret_error, -EBADMSG, wheel_path, NULL, "corrupt archive: %s", archive_error_string(a));
                        break;
                }
                const char *path = archive_entry_pathname(ae);
                const char *slash = path ? strchr(path, '/') : NULL;
                if (!slash || !streq(slash + 1, "METADATA") || slash - path <= 10 ||
                    !strneq(slash - 10, ".dist-info", 10))
                        continue;
                Buf b;
                buf_init(&b, PKG_METADATA_MAX);
                char chunk[16384];
                r = 0;
                for (;;) {
                        la_ssize_t n = archive_read_data(a, chunk, sizeof(chunk));
                        if (n == 0)
                                break;
                        if (n < 0 || buf_append(&b, chunk, (size_t) n) < 0) {
                                r = fail(ret_error, n < 0 ? -EBADMSG : -EFBIG, wheel_path, path,
                                         n < 0 ? "corrupt data" : "METADATA too large");
                                break;
                        }
                }
                if (r == 0)
                        *ret_text = buf_steal(&b);
                buf_free(&b);
                archive_read_free(a);
                return r;
        }
        archive_read_free(a);
        if (r == -ENOENT)
                return fail(ret_error, -EBADMSG, wheel_path, NULL, "no .dist-info/METADATA");
        return r;
}

/* ---- the METADATA of a wheel on a server, read by ranges ---- */

static uint64_t le_field(const uint8_t *p, unsigned n) {
        uint64_t v = 0;
        for (unsigned k = n; k-- > 0;)
                v = v << 8 | p[k];
        return v;
}

static void le_put32(uint8_t *p, uint32_t v) {
        for (unsigned k = 0; k < 4; k++)
                p[k] = (uint8_t) (v >> (8 * k));
}

static bool is_metadata_path(const uint8_t *name, size_t n) {
        const uint8_t *slash = memchr(name, '/', n);
        size_t dir = slash ? (size_t) (slash - name) : 0;
        return slash && dir > 10 && memcmp(slash - 10, ".dist-info", 10) == 0 && n - dir - 1 == 8 &&
               memcmp(slash + 1, "METADATA", 8) == 0;
}

typedef struct CdEntry {
        uint64_t csize, usize, offset;
        uint32_t crc;
        char *name;
} CdEntry;

/* The first NAME.dist-info/METADATA of a central directory [cd, cd + n),
 * its sizes and local header offset (a ZIP64 extra field's when the
 * 32-bit fields say 0xFFFFFFFF). */
static int cd_find_metadata(const uint8_t *cd, size_t n, CdEntry *ret) {
        enum {
                CDH = 46
        };
        for (size_t i = 0; i + CDH <= n;) {
                const uint8_t *h = cd + i;
                if (le_field(h, 4) != 0x02014b50)
                        return -EBADMSG;
                size_t nl = le_field(h + 28, 2), xl = le_field(h + 30, 2), cl = le_field(h + 32, 2);
                if (i + CDH + nl + xl + cl > n)
                        return -EBADMSG;
                if (is_metadata_path(h + CDH, nl)) {
                        CdEntry e = { .csize = le_field(h + 20, 4),
                                      .usize = le_field(h + 24, 4),
                                      .offset = le_field(h + 42, 4),
                                      .crc = (uint32_t) le_field(h + 16, 4) };
                        const uint8_t *x = h + CDH + nl, *xe = x + xl;
                        while (x + 4 <= xe) {
                                size_t id = le_field(x, 2), len = le_field(x + 2, 2);
                                const uint8_t *v = x + 4, *ve = v + len;
                                if (ve > xe)
                                        break;
                                if (id == 0x0001) {
                                        uint64_t *fields[] = { &e.usize, &e.csize, &e.offset };
                                        for (size_t k = 0; k < ELEMENTSOF(fields); k++)
                                                if (*fields[k] == 0xFFFFFFFF && v + 8 <= ve) {
                                                        *fields[k] = le_field(v, 8);
                                                        v += 8;
                                                }
                                }
                                x = ve;
                        }
                        e.name = xstrndup((const char *) h + CDH, nl);
                        *ret = e;
                        return 0;
                }
                i += CDH + nl + xl + cl;
        }
        return -ENOENT;
}

/* The zip's central directory [*ret_offset, + *ret_size) from its end
 * records in tail (the file's last bytes). */
static int zip_central_directory(const uint8_t *tail, size_t n, uint64_t total, PkgZipRead read, void *userdata,
                                 uint64_t *ret_offset, uint64_t *ret_size, char **ret_error) {
        enum {
                EOCD = 22,
                LOCATOR = 20,
                ZIP64_EOCD = 56
        };
        uint64_t tail_first = total - n;
        for (size_t i = n >= EOCD ? n - EOCD + 1 : 0; i-- > 0;) {
                const uint8_t *e = tail + i;
                if (le_field(e, 4) != 0x06054b50)
                        continue;
                uint64_t size = le_field(e + 12, 4), offset = le_field(e + 16, 4);
                if (size == 0xFFFFFFFF || offset == 0xFFFFFFFF) {
                        if (i < LOCATOR || le_field(e - LOCATOR, 4) != 0x07064b50)
                                return -EBADMSG;
                        uint64_t z64 = le_field(e - LOCATOR + 8, 8);
                        if (total < ZIP64_EOCD || z64 > total - ZIP64_EOCD)
                                return -EBADMSG;
                        PkgHttpResponse zr = {};
                        const uint8_t *z;
                        if (z64 >= tail_first)
                                z = tail + (z64 - tail_first);
                        else {
                                int r = read(userdata, z64, ZIP64_EOCD, &zr, ret_error);
                                if (r < 0)
                                        return r;
                                if (zr.len < ZIP64_EOCD) {
                                        pkg_http_response_done(&zr);
                                        return -EBADMSG;
                                }
                                z = (const uint8_t *) zr.body;
                        }
                        bool ok = le_field(z, 4) == 0x06064b50;
                        size = le_field(z + 40, 8);
                        offset = le_field(z + 48, 8);
                        pkg_http_response_done(&zr);
                        if (!ok)
                                return -EBADMSG;
                }
                if (offset > total || size > total - offset)
                        return -EBADMSG;
                *ret_offset = offset;
                *ret_size = size;
                return 0;
        }
        return -EBADMSG;
}

int pkg_zip_read_metadata(const uint8_t *tail, size_t n, uint64_t total, PkgZipRead read, void *userdata,
                          char **ret_text, char **ret_error) {
        assert((tail || n == 0) && read && ret_text && ret_error);
        enum {
                LFH = 30,
                SLACK = 1024
        };
        PkgHttpResponse cr = {}, er = {};
        struct archive *a = NULL;
        CdEntry e = {};
        uint64_t cd_off = 0, cd_size = 0;
        int r;
        if (n > total) {
                r = -EBADMSG;
                goto out;
        }
        r = zip_central_directory(tail, n, total, read, userdata, &cd_off, &cd_size, ret_error);
        if (r < 0)
                goto out;
        const uint8_t *cd;
        if (cd_off >= total - n)
                cd = tail + (cd_off - (total - n));
        else if (cd_size > PKG_RANGE_MAX) {
                r = -EFBIG;
                goto out;
        } else {
                r = read(userdata, cd_off, cd_size, &cr, ret_error);
                if (r < 0)
                        goto out;
                if (cr.len < cd_size) {
                        r = -EBADMSG;
                        goto out;
                }
                cd = (const uint8_t *) cr.body;
        }
        r = cd_find_metadata(cd, cd_size, &e);
        if (r < 0)
                goto out;
        if (e.csize > PKG_METADATA_MAX || e.usize > PKG_METADATA_MAX || e.offset >= total) {
                r = -EFBIG;
                goto out;
        }
        /* The local header's extra field may differ from the central
         * directory's: ask for some slack, and again if it was not enough. */
        uint64_t want = MIN(total - e.offset, LFH + strlen(e.name) + SLACK + e.csize);
        for (int attempt = 0; attempt < 2; attempt++) {
                r = read(userdata, e.offset, want, &er, ret_error);
                if (r < 0)
                        goto out;
                if (er.len < LFH || le_field((uint8_t *) er.body, 4) != 0x04034b50) {
                        r = -EBADMSG;
                        goto out;
                }
                uint64_t need = LFH + le_field((uint8_t *) er.body + 26, 2) + le_field((uint8_t *) er.body + 28, 2) +
                                e.csize;
                if (need <= er.len) {
                        er.len = need;
                        break;
                }
                pkg_http_response_done(&er);
                if (attempt == 1 || need > total - e.offset) {
                        r = -EBADMSG;
                        goto out;
                }
                want = need;
        }
        /* The central directory's sizes and CRC (the local header's may be
         * deferred to a data descriptor), so the streaming reader stops at
         * the entry's end and checks its CRC. */
        uint8_t *lh = (uint8_t *) er.body;
        lh[6] &= (uint8_t) ~0x08;
        le_put32(lh + 14, e.crc);
        le_put32(lh + 18, (uint32_t) e.csize);
        le_put32(lh + 22, (uint32_t) e.usize);
        a = archive_read_new();
        if (!a) {
                r = -ENOMEM;
                goto out;
        }
        archive_read_support_format_zip_streamable(a);
        struct archive_entry *ae;
        if (archive_read_open_memory(a, er.body, er.len) != ARCHIVE_OK ||
            archive_read_next_header(a, &ae) != ARCHIVE_OK || !streq(archive_entry_pathname(ae) ?: "", e.name)) {
                r = -EBADMSG;
                goto out;
        }
        Buf b;
        buf_init(&b, PKG_METADATA_MAX);
        char chunk[16384];
        for (;;) {
                la_ssize_t got = archive_read_data(a, chunk, sizeof(chunk));
                if (got == 0)
                        break;
                if (got < 0 || buf_append(&b, chunk, (size_t) got) < 0) {
                        buf_free(&b);
                        r = got < 0 ? -EBADMSG : -EFBIG;
                        goto out;
                }
        }
        *ret_text = buf_steal(&b);
        buf_free(&b);
        r = 0;
out:
        if (a)
                archive_read_free(a);
        free(e.name);
        pkg_http_response_done(&cr);
        pkg_http_response_done(&er);
        return r;
}

typedef struct RangeSource {
        const char *url;
        const PkgHttpOptions *o;
} RangeSource;

static int read_range(void *userdata, uint64_t first, uint64_t len, PkgHttpResponse *ret, char **ret_error) {
        const RangeSource *s = userdata;
        uint64_t total = 0;
        return pkg_http_get_range(s->url, (int64_t) first, len, s->o, ret, &total, ret_error);
}

int pkg_wheel_read_metadata_ranged(const char *url, const PkgHttpOptions *o, char **ret_text, char **ret_error) {
        assert(url && ret_text && ret_error);
        /* The end record with the longest comment, the ZIP64 locator and
         * end record, and most wheels' whole central directory. */
        enum {
                TAIL = 128 * 1024
        };
        PkgHttpResponse tr = {};
        uint64_t total = 0;
        int r = pkg_http_get_range(url, -1, TAIL, o, &tr, &total, ret_error);
        if (r < 0)
                return r;
        RangeSource s = { .url = url, .o = o };
        r = pkg_zip_read_metadata((const uint8_t *) tr.body, tr.len, total, read_range, &s, ret_text, ret_error);
        if (r < 0 && !*ret_error)
                *ret_error = xasprintf("%s: %s", url,
                                       r == -ENOENT  ? "no .dist-info/METADATA in its central directory"
                                       : r == -EFBIG ? "METADATA or central directory too large to read by ranges"
                                                     : "not a zip archive read by ranges");
        pkg_http_response_done(&tr);
        return r;
}

/* ---- an installed wheel checked again (env verify) ---- */

/* The one NAME-VERSION.dist-info directory at the root of an installed
 * wheel (pkg_wheel_unpack() refuses a second one), or NULL. */
static char *installed_distinfo(int dfd) {
        int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return NULL;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return NULL;
        }
        char *found = NULL;
        struct dirent *de;
        while ((de = readdir(d)) && !found)
                if (endswith(de->d_name, ".dist-info") && strlen(de->d_name) > strlen(".dist-info"))
                        found = xstrdup(de->d_name);
        closedir(d);
        return found;
}

int pkg_store_read_metadata(const char *dir, char **ret_text) {
        assert(dir && ret_text);
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return -errno;
        _cleanup_free_ char *distinfo = installed_distinfo(dfd);
        if (!distinfo)
                return -ENOENT;
        _cleanup_free_ char *path = xasprintf("%s/%s/METADATA", dir, distinfo);
        size_t len = 0;
        return read_file(path, PKG_METADATA_MAX, ret_text, &len);
}

/* The directory holding path's last component (*ret_base) under dfd,
 * opened one component at a time without following a symlink: openat()'s
 * O_NOFOLLOW looks at the last component only, and a directory of the
 * package replaced by a symlink had verify read (and call sound) files
 * outside the store. A wheel installs no symlink (pkg_wheel_unpack()
 * refuses them). -ELOOP when a component is one. path holds no empty,
 * "." or ".." component (map_path()). */
static int open_parent_beneath(int dfd, const char *path, const char **ret_base) {
        const char *last = strrchr(path, '/');
        *ret_base = last ? last + 1 : path;
        int cur = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return -errno;
        for (const char *s = path; last && s < last;) {
                size_t n = strcspn(s, "/");
                _cleanup_free_ char *name = xstrndup(s, n);
                int next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0) {
                        int r = -errno;
                        struct stat st;
                        if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) >= 0 && S_ISLNK(st.st_mode))
                                r = -ELOOP;
                        close(cur);
                        return r;
                }
                close(cur);
                cur = next;
                s += n + 1;
        }
        return cur;
}

static const char *open_problem(int r) {
        return r == -ELOOP                     ? "its path goes through a symlink"
               : r == -ENOENT || r == -ENOTDIR ? "missing"
                                               : "cannot be read";
}

/* Whether the file dest under dfd is RECORD's: a regular file of its size
 * and hash. NULL when it is, else what is wrong. */
static const char *installed_file_problem(int dfd, const char *dest, const char *hash, const char *size) {
        const char *base;
        _cleanup_close_ int pfd = open_parent_beneath(dfd, dest, &base);
        if (pfd < 0)
                return open_problem(pfd);
        struct stat st;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT || errno == ENOTDIR ? "missing" : "cannot be read";
        if (!S_ISREG(st.st_mode))
                return "not a regular file";
        if (size && *size) {
                char *end;
                errno = 0;
                unsigned long long sz = strtoull(size, &end, 10);
                if (errno || *end || sz != (unsigned long long) st.st_size)
                        return "content does not match RECORD";
        }
        const char *eq = strchr(hash, '=');
        _cleanup_free_ char *algo = eq ? xstrndup(hash, (size_t) (eq - hash)) : NULL;
        const char *evp_name = !algo ? NULL : streq(algo, "sha256") ? "SHA256" : pkg_hash_evp_name(algo);
        if (!evp_name)
                return "its RECORD hash cannot be checked";
        _cleanup_free_ char *got = NULL;
        int r = record_hash_of_written(pfd, base, algo, evp_name, &got);
        if (r < 0)
                return r == -ENOENT ? "missing" : "cannot be read";
        return streq(got, hash) ? NULL : "content does not match RECORD";
}

int pkg_wheel_verify_installed(const char *dir, char **ret_name, char **ret_version, char **ret_problem) {
        assert(dir && ret_name && ret_version && ret_problem);
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0) {
                int r = -errno;
                *ret_problem = xasprintf("cannot open %s: %s", dir, strerror(-r));
                return r;
        }
        _cleanup_free_ char *distinfo = installed_distinfo(dfd);
        if (!distinfo) {
                *ret_problem = xstrdup("no .dist-info directory");
                return -EBADMSG;
        }
        /* NAME-VERSION.dist-info: the name's '-' are '_' there (PEP 427). */
        size_t stem = strlen(distinfo) - strlen(".dist-info");
        const char *dash = memchr(distinfo, '-', stem);
        *ret_name = xstrndup(distinfo, dash ? (size_t) (dash - distinfo) : stem);
        *ret_version = dash ? xstrndup(dash + 1, (size_t) (distinfo + stem - dash - 1)) : NULL;
        _cleanup_free_ char *rec_path = xasprintf("%s/RECORD", distinfo);
        const char *rec_base;
        _cleanup_close_ int rec_dfd = open_parent_beneath(dfd, rec_path, &rec_base);
        if (rec_dfd < 0) {
                *ret_problem = xasprintf("%s: %s", rec_path, open_problem(rec_dfd));
                return -EBADMSG;
        }
        _cleanup_close_ int fd = openat(rec_dfd, rec_base, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_free_ char *text = NULL;
        if (fd < 0 || read_fd_all(fd, 64U << 20, &text, NULL) < 0) {
                *ret_problem = xasprintf("%s: %s", rec_path, fd < 0 && errno == ENOENT ? "missing" : "cannot be read");
                return -EBADMSG;
        }
        const char *p = text;
        while (*p) {
                char *fields[3] = {};
                int nf = csv_row(&p, fields);
                if (nf < 0) {
                        *ret_problem = xasprintf("%s: malformed", rec_path);
                        return -EBADMSG;
                }
                _cleanup_free_ char *path = fields[0], *hash = nf > 1 ? fields[1] : NULL,
                                    *size = nf > 2 ? fields[2] : NULL;
                /* RECORD itself and its signatures carry no hash. */
                if (!path || !*path || !hash || !*hash || is_record_sig(path, distinfo))
                        continue;
                bool is_dir = false;
                const char *why = NULL;
                _cleanup_free_ char *dest = map_path(path, &is_dir, &why);
                if (!dest || is_dir || !*dest) {
                        *ret_problem = xasprintf("%s: %s", rec_path, why ? why : "malformed");
                        return -EBADMSG;
                }
                why = installed_file_problem(dfd, dest, hash, size);
                if (why) {
                        *ret_problem = xasprintf("%s: %s", dest, why);
                        return -EBADMSG;
                }
        }
        return 0;
}
