/* pkg-mgr.h: helpers shared by the package-manager files of the pkg module
 * (index client, store, resolver). Nothing outside src/pkg/ includes this;
 * libcurl types stay inside pkg-fetch.c. */
#pragma once

#include "basic.h"
#include "pkg.h"
#include "shared.h"

/* Largest index page / metadata file we accept (PyPI's biggest project
 * pages are a few MiB; the root listing is tens of MiB). */
#define PKG_PAGE_MAX (64U << 20)
#define PKG_METADATA_MAX (8U << 20)
#define PKG_DEFAULT_TIMEOUT_MS 30000L
#define PKG_DEFAULT_RETRIES 3U
#define PKG_MAX_PARALLEL_DOWNLOADS 8

typedef struct PkgHttpOptions {
        long timeout_ms;
        unsigned retries;
        const bool *cancel; /* downloads: read atomically; once true, a
                                 * transfer stops at its next write (NULL:
                                 * never); the caller no longer wants the
                                 * file, so a PkgDownload.resume part goes
                                 * too (one cancel_all stops is kept) */
        /* The caller's whole step was cancelled (PkgEnvOptions.cancel):
         * read atomically by every transfer (GETs too) at each write and
         * in libcurl's progress callback, and before a retry; the call
         * then fails with -ECANCELED and "cancelled". NULL: never. */
        const bool *cancel_all;
        /* GETs: ask for the file's bytes as stored (Accept-Encoding:
         * identity, nothing decoded), as pip asks for package files — a
         * `.metadata` file. Downloads and ranged GETs always do; an index
         * page may come compressed. */
        bool identity;
} PkgHttpOptions;

/* The n bytes at s with their HTML character references decoded as Python's
 * html.unescape (pip's index parser) decodes them: every HTML5 named
 * reference (pkg-html5-entities.h), the legacy ones also without their
 * ';', numeric ones with HTML5's fix-ups. Returns a new NUL-terminated
 * string (a decoded &#0; is U+FFFD, so it holds no NUL unless s did). */
char *pkg_html_unescape(const char *s, size_t n);

/* Whether a cancel flag (PkgEnvOptions.cancel and its copies) is set. */
static inline bool pkg_cancelled(const bool *cancel) {
        return cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE);
}

/* flock(fd, op) (LOCK_SH or LOCK_EX) that gives up with -ECANCELED once
 * *cancel is set, looked at every 50 ms while another process holds the
 * lock (no cancel: a plain blocking flock). Other failures are negative
 * errno. */
int pkg_flock_cancellable(int fd, int op, const bool *cancel);

/* The wheel lock of sha256, flock(op) on <data_dir>/cache/locks/<sha256>
 * (made if missing), the lock that orders everything that puts the wheel's
 * store dir in place, decides it is there, or removes it (docs/packages.md
 * "Environments"): installers take LOCK_EX to install a missing wheel and
 * LOCK_SH on one present until the record naming it is written; removers
 * take LOCK_EX | LOCK_NB. op may carry LOCK_NB: -EWOULDBLOCK while another
 * holds it; without it, pkg_flock_cancellable(). A file prune's sweep
 * unlinked between the open and the lock is opened again. *ret_fd: the
 * locked fd, closing it unlocks. */
int pkg_wheel_lock(const char *data_dir, const char *sha256, int op, const bool *cancel, int *ret_fd);

/* Tests only (tests/unit/test-pkg-manager.c): when set, called at the points
 * of the store's locking where another process may come between two steps,
 * so a test can be that process, deterministically. NULL in every binary. */
typedef enum PkgTestPoint {
        PKG_TEST_STORE_REMOVE, /* a remover chose store dirs to remove, before it locked any */
        PKG_TEST_STORE_LOCKED, /* ... locked them and read the records, before it moved any */
        PKG_TEST_RECORD_WRITE, /* an installer's wheels are in the store, its record not yet written */
        PKG_TEST_STORE_MOVED,  /* a remover moved a store dir aside, before it emptied it */
} PkgTestPoint;
extern void (*pkg_test_hook)(PkgTestPoint point, void *userdata);
extern void *pkg_test_hook_userdata;

static inline void pkg_test_point(PkgTestPoint point) {
        if (pkg_test_hook)
                pkg_test_hook(point, pkg_test_hook_userdata);
}

typedef struct PkgHttpResponse {
        long status;            /* 0 for file:// */
        char *body;             /* NUL-terminated */
        size_t len;
        char *content_type;     /* may be NULL */
        char *effective_url;    /* after redirects */
} PkgHttpResponse;
void pkg_http_response_done(PkgHttpResponse *r);

/* GET url into memory (at most max bytes). Network errors, 429 and 5xx are
 * retried with exponential backoff. 404/410 (or a missing file://) is
 * -ENOENT; any other failure is -EIO with "GET <url>: HTTP <status>" or
 * the transport error in ret_error. */
int pkg_http_get(const char *url, const char *accept, size_t max, const PkgHttpOptions *o, PkgHttpResponse *ret,
                 char **ret_error);

/* libcrypto's name for a hash algorithm other than sha256 (a RECORD's, a
 * page's for a .metadata file) when it is one of hashlib's guaranteed ones
 * that is "sha256 or better" (sha224, sha384, sha512, sha3_*, blake2b,
 * blake2s), or NULL: md5 and sha1 are refused by PEP 427, shake_* has no
 * fixed length to compare. */
const char *pkg_hash_evp_name(const char *name);

/* The libcrypto name of a hash algorithm an index page gives for a file
 * (a wheel, a .metadata file): pkg_hash_evp_name()'s, and md5 and sha1,
 * which RECORD may not use (PEP 427) but which an index may give and pip
 * checks: a truncated or corrupted transfer is caught by either; NULL for
 * a name not known (that hash is not checked). */
const char *pkg_page_hash_evp_name(const char *algo);

/* Whether any of a page's "algo=hex" hashes (PkgFile.hashes; NULL: none)
 * is one pkg_page_hash_evp_name() knows: only then is another digest
 * computed over a file's bytes. */
bool pkg_page_hashes_computable(char *const *hashes);

/* Reads the file at path once and checks it against each of hashes that
 * can be computed: -EBADMSG with "WHAT: ALGO mismatch: the index says …,
 * the file downloaded from URL has …" on the first that differs, a
 * negative errno when the file cannot be read. */
int pkg_file_check_page_hashes(const char *path, char *const *hashes, const char *what, const char *url,
                               char **ret_error);

/* The first page hash a file's bytes do not match: its algorithm's name
 * (owned), the page's hex digest (points into the page's string, valid
 * while it is) and the computed one. */
typedef struct PkgHashMismatch {
        char *algo;
        const char *want;
        char got[2 * 64 + 1];
} PkgHashMismatch;

/* Checks data..n against each of hashes that can be computed, as
 * pkg_file_check_page_hashes() checks a file: 0 when all match (or none
 * can be computed), -EBADMSG with *ret_mismatch filled on the first that
 * differs, -EIO/-ENOMEM when a digest cannot be computed (ret_mismatch's
 * algo may name it). The caller words the error and frees algo. */
int pkg_bytes_check_page_hashes(const void *data, size_t n, char *const *hashes, PkgHashMismatch *ret_mismatch);

/* The most one pkg_http_get_range() reads. */
#define PKG_RANGE_MAX (64U << 20)

/* GET the len bytes of url from offset first (first < 0: its last len
 * bytes) with an HTTP range request; the file's whole size in *ret_total.
 * A server that answers with the whole file (200), or a URL that is not
 * http(s), is -EOPNOTSUPP without reading more than len bytes of it; other
 * errors as pkg_http_get()'s. A 206 may hold fewer bytes than asked (the
 * file's end). */
int pkg_http_get_range(const char *url, int64_t first, uint64_t len, const PkgHttpOptions *o, PkgHttpResponse *ret,
                       uint64_t *ret_total, char **ret_error);

/* A Content-Range header's value (what follows "Content-Range:", n bytes,
 * blanks and CRLF around it allowed; RFC 9110 14.4): "bytes FIRST-LAST/TOTAL"
 * with FIRST <= LAST < TOTAL gives 0, FIRST in *ret_first and TOTAL in
 * *ret_total; "bytes * /TOTAL" (without the blank: a 416's, the file's
 * size) gives 1, TOTAL in *ret_total. Anything else (an unknown size
 * "/ *", a sign, an overflow, trailing bytes, another unit) is -EINVAL and
 * writes nothing. */
int pkg_http_content_range_parse(const char *v, size_t n, uint64_t *ret_first, uint64_t *ret_total);

/* The .dist-info/METADATA of the wheel at url, read with HTTP range
 * requests (its zip end records, its central directory, that one entry:
 * two or three small GETs, whatever the wheel's size), as uv reads a wheel
 * an index gives no PEP 658 file for. -EOPNOTSUPP when the server does not
 * answer ranges; -EBADMSG, -ENOENT or -EFBIG when the zip cannot be read
 * this way (the caller then downloads it); network errors as
 * pkg_http_get()'s. The bytes are not verified against the wheel's sha256
 * (only the whole file can be): the installer verifies the wheel. */
int pkg_wheel_read_metadata_ranged(const char *url, const PkgHttpOptions *o, char **ret_text, char **ret_error);

/* Where pkg_wheel_read_metadata_ranged() gets the bytes it parses, apart
 * so the parser can be tested and fuzzed without a server: len bytes of
 * the file from offset first into *ret (body malloc'd and NUL-terminated,
 * freed with pkg_http_response_done(); fewer bytes at the file's end), or
 * a negative errno with *ret_error optionally set. */
typedef int (*PkgZipRead)(void *userdata, uint64_t first, uint64_t len, PkgHttpResponse *ret, char **ret_error);

/* The parsing half of pkg_wheel_read_metadata_ranged(): tail is the file's
 * last n bytes, total its size; other bytes come from read(). Every
 * length and offset in the zip is untrusted. The METADATA text (at most
 * PKG_METADATA_MAX bytes) in *ret_text; -EBADMSG, -ENOENT or -EFBIG as
 * that function's (*ret_error left for the caller to set), or read()'s
 * error. */
int pkg_zip_read_metadata(const uint8_t *tail, size_t n, uint64_t total, PkgZipRead read, void *userdata,
                          char **ret_text, char **ret_error);

typedef struct PkgDownload {
        const char *url;
        const char *dest;      /* final path; written via dest.part-XXXX + rename */
        const char *sha256;    /* verified before the rename; NULL: none known */
        /* Where sha256 came from, for a mismatch's message: "the lock"
         * (a lock read back: "the lock says X, …", worded as pip words a
         * --require-hashes mismatch); NULL: the index's page. */
        const char *sha256_from;
        /* The page's other hashes, "algo=hex" (PkgFile.hashes), NULL if
         * none: each one that can be computed is, as the bytes arrive
         * (no second read), and must match before the rename. */
        char *const *hashes;
        /* When not NULL: the file's sha256 (lower-case hex), written on
         * success, computed as it arrived. */
        char *ret_sha256;
        const char *what;      /* for progress and errors (a file name) */
        bool transient;        /* read once right after and deleted: not
                                * fsync'ed (a crash leaves a private file
                                * nobody reuses) */
        /* When not NULL (sha256 must be set): the fixed path of the
         * partial file, used instead of dest.part-XXXX and kept when the
         * download fails (cut, cancelled, killed), so that a later call
         * with the same path resumes it: its bytes are hashed once to seed
         * the running digests, the rest is asked for with
         * "Range: bytes=SIZE-" and, when the first answer gave a strong
         * ETag or a Last-Modified (kept in resume + ".ifrange"), If-Range.
         * A 200 answer starts over from byte 0, so does a 416 or a digest
         * mismatch of a resumed file (once). The caller must hold the
         * wheel's lock (pkg_wheel_lock(), LOCK_EX) for the whole call: no
         * one else writes or removes the file meanwhile. */
        const char *resume;
} PkgDownload;

/* The message of a file whose sha256 is got, not want: "WHAT: sha256
 * mismatch: FROM says WANT, the file VERB URL has GOT (…)", FROM "the
 * index" when NULL (PkgDownload.sha256_from). Caller frees. */
char *pkg_sha256_mismatch_message(const char *what, const char *from, const char *want, const char *verb,
                                  const char *url, const char *got);

/* Downloads all of d in parallel (curl multi, at most
 * PKG_MAX_PARALLEL_DOWNLOADS at once), each verified against its sha256.
 * A retry resumes a partial file when the server honours Range, and so
 * does a later call for a PkgDownload.resume file. Fails with the first
 * error (naming url and status, or the hash mismatch). */
int pkg_http_download_many(const PkgDownload *d, size_t n, const PkgHttpOptions *o, PkgProgressFn progress,
                           void *userdata, char **ret_error);

/* RECORD-style "sha256=<urlsafe base64, no padding>" (sha256 itself is
 * src/shared's). */
char *pkg_record_hash(const uint8_t digest[32]);

/* Resolve a (possibly relative) href against base. Caller frees. */
char *pkg_url_join(const char *base, const char *href);
/* The local path a file:// URL names, as pip's url_to_path() reads it:
 * "localhost" as host allowed, query and fragment cut, %XX escapes
 * decoded (an index page's quote(filename): "%2B" for a local version's
 * "+"). A lock written before find-links URLs were encoded may name a
 * path with a literal '%': that one when the decoded path does not
 * exist and it does. Caller frees. */
char *pkg_file_url_path(const char *url);
/* "file://" and path with every byte but unreserved ones and '/'
 * percent-encoded (pip's path_to_url()). Caller frees. */
char *pkg_file_url_from_path(const char *path);

/* The index's transfers stop once *cancel is set (PkgEnvOptions.cancel):
 * its calls then fail with -ECANCELED. Not owned; NULL: never. */
void pkg_index_set_cancel(PkgIndex *ix, const bool *cancel);
/* A resolution for a lock only (`pysprinter lock`): a wheel the page gives
 * a sha256 for is pinned by it without its bytes, its other hashes left to
 * whoever fetches it; otherwise such a wheel is fetched (into the cache the
 * install uses) and checked against every hash the page gives. */
void pkg_index_set_pin_only(PkgIndex *ix, bool pin_only);
/* The METADATA of the wheel unpacked in the store dir dir (its one
 * .dist-info: pkg_wheel_unpack() refuses a second), at most
 * PKG_METADATA_MAX bytes, NUL-terminated; -ENOENT without one, -errno of
 * the reads. The caller holds the wheel's lock, or knows the dir stays. */
int pkg_store_read_metadata(const char *dir, char **ret_text);

/* The index's cache dir is <data_dir>/cache/wheels, the store's: a wheel
 * it downloads (for its METADATA, an index without PEP 658 files nor
 * ranges) is fetched under the wheel's lock (pkg_wheel_lock()), from the
 * wheel's part file when one was kept and into it when cut short
 * (PkgDownload.resume), as an installer does; the install then takes the
 * file from the cache. NULL (the default): a private cache, no lock. */
void pkg_index_set_data_dir(PkgIndex *ix, const char *data_dir);

/* Local path of a file's wheel: the find-links file itself, or a copy
 * downloaded (sha256-verified) into the index's cache dir. */
int pkg_index_file_path(PkgIndex *ix, const PkgFile *f, char **ret_path, char **ret_error);
/* The file's sha256, computed (by hashing or downloading) when the source
 * gave none. *ret_sha256 is owned by the index. */
int pkg_index_file_sha256(PkgIndex *ix, const PkgFile *f, const char **ret_sha256, char **ret_error);
/* The index's wheel cache dir, or NULL if it never needed one. */
const char *pkg_index_cache_dir(const PkgIndex *ix);

/* pkg_store_materialize(), returning with the wheel locks of the lock's
 * wheels still held (*ret_locks, on success only): an installer writes the
 * record naming the wheels before it lets go of them, so a remover, which
 * takes each lock exclusively and then reads the records, sees the record
 * or finds the dir gone before the installer decided. */
int pkg_store_materialize_held(const char *data_dir, const PkgIndexConfig *cfg, const PkgLock *lock,
                               PkgProgressFn progress, void *userdata, PkgCompileFn compile, void *compile_userdata,
                               const bool *cancel, char ***ret_dirs, int **ret_locks, char **ret_error);
/* Releases the locks pkg_store_materialize_held() returned (NULL: none);
 * returns NULL. */
int *pkg_store_unlock(int *locks);

/* "<data_dir>/store/<sha256>". Caller frees. */
char *pkg_store_dir(const char *data_dir, const char *sha256);

/* "<data_dir>/cache/wheels/<sha256>.whl.part": the bytes an interrupted
 * download of that wheel got, which the next install of it resumes
 * (PkgDownload.resume), written and removed only under the wheel's lock;
 * beside it, PKG_PART_IFRANGE_SUFFIX appended, the If-Range to send. */
#define PKG_PART_SUFFIX ".whl.part"
#define PKG_PART_IFRANGE_SUFFIX ".ifrange"
char *pkg_store_part_path(const char *data_dir, const char *sha256);

/* Early fetch (issue 15 (e)): the installer's half of the pipeline with the
 * resolver. Each wheel the resolver pins is downloaded, verified and
 * unpacked into the store on a pool thread while the resolver goes on, so
 * the critical path is max(resolve, the biggest wheel's download+unpack),
 * not their sum. Only the store changes (content-addressed, published by
 * rename after verification, under the wheel's flock like
 * pkg_store_materialize): an env record is written by the caller from the
 * final lock only, so a version fetched early then dropped by a backtrack
 * is never part of an env (prune collects its store dir). Failures here
 * are silent: pkg_store_materialize does the wheel again and reports. */
typedef struct PkgPrefetch PkgPrefetch;
/* cancel (not owned, may be NULL): once set, running downloads and unpacks
 * stop and queued wheels are dropped (PkgEnvOptions.cancel). */
PkgPrefetch *pkg_prefetch_new(const char *data_dir, const PkgIndexConfig *cfg, PkgCompileFn compile,
                              void *compile_userdata, const bool *cancel);
/* Queues f (http(s) with a sha256 from the index; others are left to
 * pkg_store_materialize). Matches PkgResolveOptions.pinned. */
void pkg_prefetch_pinned(void *prefetch, const PkgFile *f);
/* Drops the queued wheels the lock does not name (lock NULL: all), waits
 * for the rest (reporting their downloads and unpacks through progress, on
 * the caller's thread, when not NULL), frees. */
void pkg_prefetch_finish(PkgPrefetch *pf, const PkgLock *lock, PkgProgressFn progress, void *userdata);
