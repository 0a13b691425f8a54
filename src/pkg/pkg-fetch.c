/* pkg-fetch.c: the libcurl client of the package manager — single GETs for
 * index pages and metadata, parallel verified downloads for wheels.
 * CURLcode and CURL handles never leave this file. */
#include "pkg-mgr.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

/* One connection cache (and DNS cache) for every pkg_http_get of the
 * process: the resolver's ~15 GETs of pages and metadata to one index reuse
 * one keep-alive connection instead of a TCP handshake (and, on a real
 * index, a TLS one) each. libcurl locks it through share_lock(). */
static CURLSH *curl_share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *userdata) {
        (void) c, (void) access, (void) userdata;
        pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *userdata) {
        (void) c, (void) userdata;
        pthread_mutex_unlock(&share_locks[data]);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        for (size_t i = 0; i < ELEMENTSOF(share_locks); i++)
                pthread_mutex_init(&share_locks[i], NULL);
        curl_share = curl_share_init();
        if (!curl_share)
                return; /* no sharing: a connection per GET, as before */
        curl_share_setopt(curl_share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(curl_share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(curl_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
        curl_share_setopt(curl_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
}

static const char *user_agent(void) {
        return "pysprinter/0.1 (+native package manager)";
}

void pkg_http_response_done(PkgHttpResponse *r) {
        free(r->body);
        free(r->content_type);
        free(r->effective_url);
        *r = (PkgHttpResponse) {};
}

static void sleep_ms(long ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static long backoff_ms(unsigned attempt) {
        long ms = 200L << MIN(attempt, 5U);
        return MIN(ms, 5000L);
}

/* Ask for a file's bytes as stored, as pip asks for package files: no
 * Accept-Encoding would let the server pick any coding (RFC 9110), and
 * libcurl's own list (gzip, br, ...) had a server or proxy that compresses
 * on the fly send a representation whose offsets are not the file's, so a
 * resume's Range (of the bytes written) cut into the compressed ones.
 * Nothing is decoded either: a server that compresses anyway sends bytes
 * whose hash is not the file's, a mismatch, as with pip. */
static struct curl_slist *ask_identity(CURL *c, struct curl_slist *hdrs) {
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL);
        return curl_slist_append(hdrs, "Accept-Encoding: identity");
}

static void setup_common(CURL *c, const char *url, const PkgHttpOptions *o) {
        long timeout = o && o->timeout_ms > 0 ? o->timeout_ms : PKG_DEFAULT_TIMEOUT_MS;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent());
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout);
        /* A stalled transfer (under 1 byte/s for the timeout) is an error,
         * but a large wheel on a slow link may take longer than timeout. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, MAX(1L, timeout / 1000));
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
        /* Proxies: libcurl reads http_proxy/https_proxy/no_proxy itself. */
}

typedef struct MemSink {
        Buf buf;
        bool overflow;
} MemSink;

static size_t mem_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        MemSink *s = userdata;
        if (buf_append(&s->buf, ptr, size * nmemb) < 0) {
                s->overflow = true;
                return 0;
        }
        return size * nmemb;
}

/* A GET's libcurl progress callback: nonzero aborts the transfer
 * (CURLE_ABORTED_BY_CALLBACK) once the caller cancelled. */
static int get_xferinfo(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        return pkg_cancelled(userdata) ? 1 : 0;
}

static int cancelled_error(char **ret_error) {
        free(*ret_error);
        *ret_error = xstrdup("cancelled");
        return -ECANCELED;
}

static bool status_retryable(long status) {
        return status == 429 || status >= 500;
}

static bool code_retryable(CURLcode cc) {
        switch (cc) {
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return true;
        default:
                return false;
        }
}

typedef struct ContentRange {
        uint64_t first, total; /* total 0: no (readable) Content-Range */
        bool unsatisfied;      /* "bytes * /TOTAL" (a 416's): first unset */
} ContentRange;

/* Digits only, at most UINT64_MAX: the next byte after them in *p. */
static int parse_u64(const char **p, const char *end, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;
        if (s >= end || *s < '0' || *s > '9')
                return -EINVAL;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                unsigned d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }
        *p = s;
        *ret = v;
        return 0;
}

int pkg_http_content_range_parse(const char *v, size_t n, uint64_t *ret_first, uint64_t *ret_total) {
        assert(v || n == 0);
        const char *p = v, *end = v + n;
        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
        if (end - p < 6 || strncasecmp(p, "bytes ", 6) != 0)
                return -EINVAL;
        p += 6;
        while (p < end && *p == ' ')
                p++;
        uint64_t first = 0, last = 0, total = 0;
        bool star = p < end && *p == '*';
        if (star)
                p++;
        else if (parse_u64(&p, end, &first) < 0 || p >= end || *p++ != '-' || parse_u64(&p, end, &last) < 0)
                return -EINVAL;
        if (p >= end || *p++ != '/' || parse_u64(&p, end, &total) < 0 || p != end)
                return -EINVAL;
        if (star) {
                *ret_total = total;
                return 1;
        }
        if (first > last || last >= total)
                return -EINVAL;
        *ret_first = first;
        *ret_total = total;
        return 0;
}

/* A ranged GET's "Content-Range: bytes FIRST-LAST/TOTAL" (or a 416's
 * "bytes * /TOTAL"). */
static size_t range_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
        size_t n = size * nmemb;
        ContentRange *cr = userdata;
        if (n > 14 && strncasecmp(ptr, "content-range:", 14) == 0) {
                uint64_t first = 0, total = 0;
                int r = pkg_http_content_range_parse(ptr + 14, n - 14, &first, &total);
                if (r >= 0 && total > 0)
                        *cr = (ContentRange){ .first = first, .total = total, .unsatisfied = r == 1 };
        }
        return n;
}

/* pkg_http_get(), or with range ("FIRST-LAST" or "-SUFFIX") the part of
 * the file a 206 answers, its file's size in *ret_total. */
static int http_get(const char *url, const char *accept, const char *range, size_t max, const PkgHttpOptions *o,
                    PkgHttpResponse *ret, ContentRange *ret_range, char **ret_error) {
        pthread_once(&curl_once, curl_init_once);
        unsigned retries = o ? o->retries : PKG_DEFAULT_RETRIES;
        bool is_file = startswith(url, "file://");
        char errbuf[CURL_ERROR_SIZE];

        for (unsigned attempt = 0;; attempt++) {
                CURL *c = curl_easy_init();
                if (!c)
                        return -ENOMEM;
                MemSink sink = {};
                buf_init(&sink.buf, max);
                struct curl_slist *hdrs = NULL;
                if (accept) {
                        _cleanup_free_ char *h = xasprintf("Accept: %s", accept);
                        hdrs = curl_slist_append(hdrs, h);
                }
                setup_common(c, url, o);
                if (curl_share)
                        curl_easy_setopt(c, CURLOPT_SHARE, curl_share);
                errbuf[0] = 0;
                curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
                ContentRange cr = {};
                /* Ranges of the file's bytes, not of a compressed
                 * representation of them; a package file as stored. */
                if (range || (o && o->identity))
                        hdrs = ask_identity(c, hdrs);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
                if (range) {
                        curl_easy_setopt(c, CURLOPT_RANGE, range);
                        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, range_header);
                        curl_easy_setopt(c, CURLOPT_HEADERDATA, &cr);
                }
                if (o && o->cancel_all) {
                        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, get_xferinfo);
                        curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *) o->cancel_all);
                        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
                }
                CURLcode cc = curl_easy_perform(c);
                long status = 0;
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                int r = 0;
                bool retry = false;
                if (range && !is_file && (status == 200 || (sink.overflow && status < 300))) {
                        /* The server sends the whole file (or had to be
                         * cut off sending it): it does not serve ranges. */
                        *ret_error = xasprintf("GET %s: the server does not answer range requests", url);
                        r = -EOPNOTSUPP;
                } else if (range && !is_file && status == 206 && (cr.total == 0 || cr.unsatisfied)) {
                        *ret_error = xasprintf("GET %s: HTTP 206 without a Content-Range size", url);
                        r = -EOPNOTSUPP;
                } else if (sink.overflow) {
                        *ret_error = xasprintf("GET %s: response larger than %zu bytes", url, max);
                        r = -EFBIG;
                } else if (cc != CURLE_OK) {
                        if (is_file && (cc == CURLE_FILE_COULDNT_READ_FILE)) {
                                *ret_error = xasprintf("%s: no such file", url);
                                r = -ENOENT;
                        } else {
                                retry = code_retryable(cc);
                                *ret_error = xasprintf("GET %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
                                r = -EIO;
                        }
                } else if (!is_file && (status < 200 || status >= 300)) {
                        *ret_error = xasprintf("GET %s: HTTP %ld", url, status);
                        r = status == 404 || status == 410 ? -ENOENT : -EIO;
                        retry = status_retryable(status);
                }
                if (r == 0) {
                        char *ct = NULL, *eff = NULL;
                        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
                        curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff);
                        ret->status = status;
                        ret->len = sink.buf.len;
                        ret->body = buf_steal(&sink.buf);
                        ret->content_type = ct ? xstrdup(ct) : NULL;
                        ret->effective_url = xstrdup(eff ? eff : url);
                        if (ret_range)
                                *ret_range = cr;
                }
                buf_free(&sink.buf);
                curl_slist_free_all(hdrs);
                curl_easy_cleanup(c);
                if (r == 0)
                        return 0;
                if (o && pkg_cancelled(o->cancel_all))
                        return cancelled_error(ret_error);
                if (!retry || attempt >= retries) {
                        if (retry && attempt > 0) {
                                char *m = xasprintf("%s (after %u attempts)", *ret_error, attempt + 1);
                                free(*ret_error);
                                *ret_error = m;
                        }
                        return r;
                }
                free(*ret_error);
                *ret_error = NULL;
                sleep_ms(backoff_ms(attempt));
                if (o && pkg_cancelled(o->cancel_all))
                        return cancelled_error(ret_error);
        }
}

int pkg_http_get(const char *url, const char *accept, size_t max, const PkgHttpOptions *o, PkgHttpResponse *ret,
                 char **ret_error) {
        /* A file:// index is a tree of directories: the page of one is its
         * index.html, as pip and uv read it (curl reads a directory as
         * nothing: every project of such an index had no files). */
        _cleanup_free_ char *page = startswith(url, "file://") && endswith(url, "/") ? xasprintf("%sindex.html", url)
                                                                                     : NULL;
        return http_get(page ?: url, accept, NULL, max, o, ret, NULL, ret_error);
}

int pkg_http_get_range(const char *url, int64_t first, uint64_t len, const PkgHttpOptions *o, PkgHttpResponse *ret,
                       uint64_t *ret_total, char **ret_error) {
        assert(url && len > 0 && len <= PKG_RANGE_MAX && ret && ret_total && ret_error);
        if (!startswith(url, "http://") && !startswith(url, "https://")) {
                *ret_error = xasprintf("%s: ranges are read over HTTP only", url);
                return -EOPNOTSUPP;
        }
        _cleanup_free_ char *range = first < 0 ? xasprintf("-%" PRIu64, len)
                                               : xasprintf("%" PRId64 "-%" PRIu64, first, (uint64_t) first + len - 1);
        ContentRange cr = {};
        int r = http_get(url, NULL, range, (size_t) len, o, ret, &cr, ret_error);
        if (r < 0)
                return r;
        /* The bytes must be the ones asked for: a suffix ends the file. */
        uint64_t want = first >= 0 ? (uint64_t) first : cr.total - MIN(len, cr.total);
        if (cr.first != want || ret->len > cr.total - cr.first) {
                pkg_http_response_done(ret);
                *ret_error = xasprintf("GET %s: HTTP 206 with bytes %" PRIu64 "- of %" PRIu64
                                       ", not the range asked for",
                                       url, cr.first, cr.total);
                return -EOPNOTSUPP;
        }
        *ret_total = cr.total;
        return 0;
}

char *pkg_sha256_mismatch_message(const char *what, const char *from, const char *want, const char *verb,
                                  const char *url, const char *got) {
        assert(what && want && verb && url && got);
        if (from)
                return xasprintf("%s: sha256 mismatch: %s says %s, the file %s %s has %s (not the file locked: "
                                 "a corrupt download, or the file was replaced or tampered with since it was "
                                 "locked)",
                                 what, from, want, verb, url, got);
        return xasprintf("%s: sha256 mismatch: the index says %s, the file %s %s has %s "
                         "(corrupt download or tampered file)",
                         what, want, verb, url, got);
}

/* ---- a page's other hashes of a file ------------------------------------ */

/* pkg-mgr.h; RECORD's check (pkg-wheel.c) asks it too. */
const char *pkg_hash_evp_name(const char *name) {
        static const char *const map[][2] = {
                { "sha224", "SHA224" },     { "sha384", "SHA384" },      { "sha512", "SHA512" },
                { "sha3_224", "SHA3-224" }, { "sha3_256", "SHA3-256" },  { "sha3_384", "SHA3-384" },
                { "sha3_512", "SHA3-512" }, { "blake2b", "BLAKE2B512" }, { "blake2s", "BLAKE2S256" },
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq(name, map[i][0]))
                        return map[i][1];
        return NULL;
}

const char *pkg_page_hash_evp_name(const char *algo) {
        const char *n = pkg_hash_evp_name(algo);
        return n ? n : streq(algo, "md5") ? "MD5" : streq(algo, "sha1") ? "SHA1" : NULL;
}

/* The EVP digest of "algo=hex" h, NULL when it names none computed here;
 * *ret_algo is the name (freed by the caller). */
static const EVP_MD *page_hash_md(const char *h, char **ret_algo) {
        const char *eq = strchr(h, '=');
        if (!eq)
                return NULL;
        _cleanup_free_ char *algo = xstrndup(h, (size_t) (eq - h));
        const char *evp_name = pkg_page_hash_evp_name(algo);
        const EVP_MD *md = evp_name ? EVP_get_digestbyname(evp_name) : NULL;
        if (md && ret_algo)
                *ret_algo = TAKE_PTR(algo);
        return md;
}

bool pkg_page_hashes_computable(char *const *hashes) {
        for (char *const *h = hashes; h && *h; h++)
                if (page_hash_md(*h, NULL))
                        return true;
        return false;
}

/* The digests of one file's bytes for each of a page's hashes that can be
 * computed, fed alongside its sha256; nothing at all when there is none,
 * so a file the page gives only a sha256 for costs no more than before. */
typedef struct PageHashes {
        char *const *want;
        EVP_MD_CTX **ctx; /* one per want (NULL: not computed); NULL if none is */
        size_t n;
} PageHashes;

static void page_hashes_done(PageHashes *ph) {
        for (size_t i = 0; i < ph->n; i++)
                EVP_MD_CTX_free(ph->ctx[i]);
        free(ph->ctx);
        *ph = (PageHashes){};
}

/* (Re)starts ph over want: a download started over from byte 0 hashes
 * again from nothing. */
static int page_hashes_start(PageHashes *ph, char *const *want) {
        page_hashes_done(ph);
        if (!pkg_page_hashes_computable(want))
                return 0;
        ph->want = want;
        while (want[ph->n])
                ph->n++;
        ph->ctx = xcalloc(ph->n, sizeof(EVP_MD_CTX *));
        for (size_t i = 0; i < ph->n; i++) {
                const EVP_MD *md = page_hash_md(want[i], NULL);
                if (!md)
                        continue;
                ph->ctx[i] = EVP_MD_CTX_new();
                if (!ph->ctx[i] || !EVP_DigestInit_ex(ph->ctx[i], md, NULL))
                        return -ENOMEM;
        }
        return 0;
}

static int page_hashes_update(PageHashes *ph, const void *p, size_t n) {
        for (size_t i = 0; i < ph->n; i++)
                if (ph->ctx[i] && !EVP_DigestUpdate(ph->ctx[i], p, n))
                        return -EIO;
        return 0;
}

/* Every computed digest against the page's: the first that differs is
 * -EBADMSG with *ret_mismatch filled (its algo freed by the caller). */
static int page_hashes_mismatch(PageHashes *ph, PkgHashMismatch *ret_mismatch) {
        for (size_t i = 0; i < ph->n; i++) {
                if (!ph->ctx[i])
                        continue;
                _cleanup_free_ char *algo = NULL;
                (void) page_hash_md(ph->want[i], &algo);
                unsigned char dg[EVP_MAX_MD_SIZE];
                unsigned dn = 0;
                if (!EVP_DigestFinal_ex(ph->ctx[i], dg, &dn)) {
                        *ret_mismatch = (PkgHashMismatch){ .algo = TAKE_PTR(algo) };
                        return -EIO;
                }
                char hex[2 * EVP_MAX_MD_SIZE + 1];
                for (unsigned k = 0; k < dn; k++)
                        snprintf(hex + 2 * k, 3, "%02x", dg[k]);
                hex[2 * dn] = 0;
                const char *want = strchr(ph->want[i], '=') + 1;
                if (!streq(hex, want)) {
                        *ret_mismatch = (PkgHashMismatch){ .algo = TAKE_PTR(algo), .want = want };
                        snprintf(ret_mismatch->got, sizeof ret_mismatch->got, "%s", hex);
                        return -EBADMSG;
                }
        }
        return 0;
}

/* page_hashes_mismatch() worded as the sha256 mismatch of a download is. */
static int page_hashes_check(PageHashes *ph, const char *what, const char *url, char **ret_error) {
        PkgHashMismatch m = {};
        int r = page_hashes_mismatch(ph, &m);
        if (r == -EIO)
                *ret_error = xasprintf("%s: cannot compute its %s", what, m.algo);
        else if (r < 0)
                *ret_error = xasprintf("%s: %s mismatch: the index says %s, the file downloaded from %s has %s "
                                       "(corrupt download or tampered file)",
                                       what, m.algo, m.want, url, m.got);
        free(m.algo);
        return r;
}

int pkg_bytes_check_page_hashes(const void *data, size_t n, char *const *hashes, PkgHashMismatch *ret_mismatch) {
        *ret_mismatch = (PkgHashMismatch){};
        PageHashes ph = {};
        int r = page_hashes_start(&ph, hashes);
        if (r >= 0)
                r = page_hashes_update(&ph, data, n);
        if (r >= 0)
                r = page_hashes_mismatch(&ph, ret_mismatch);
        page_hashes_done(&ph);
        return r;
}

int pkg_file_check_page_hashes(const char *path, char *const *hashes, const char *what, const char *url,
                               char **ret_error) {
        assert(path);
        if (!pkg_page_hashes_computable(hashes))
                return 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                *ret_error = xasprintf("%s: %s", path, strerror(-r));
                return r;
        }
        PageHashes ph = {};
        _cleanup_free_ uint8_t *buf = xmalloc(1 << 16);
        int r = page_hashes_start(&ph, hashes);
        if (r < 0)
                *ret_error = xasprintf("%s: cannot compute its hashes", what);
        while (r >= 0) {
                ssize_t k = read(fd, buf, 1 << 16);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        *ret_error = xasprintf("%s: %s", path, strerror(-r));
                        break;
                }
                if (k == 0) {
                        r = page_hashes_check(&ph, what, url, ret_error);
                        break;
                }
                r = page_hashes_update(&ph, buf, (size_t) k);
                if (r < 0)
                        *ret_error = xasprintf("%s: cannot compute its hashes", what);
        }
        page_hashes_done(&ph);
        return r;
}

/* ---- parallel downloads ------------------------------------------------ */

typedef struct Transfer {
        const PkgDownload *d;
        CURL *easy;
        char *part;            /* temp path */
        int fd;
        Sha256 *hash;
        PageHashes page;       /* the page's other hashes, when it gives any */
        uint64_t written;      /* bytes in the part file */
        uint64_t expected;     /* content length when known */
        unsigned attempts;
        bool first_write;      /* decide on truncate vs append at first byte */
        bool done;
        bool too_big;
        int write_errno;       /* a failed write of the part file (ENOSPC…) */
        usec_t not_before;     /* retry backoff */
        bool waiting;
        uint64_t cut_got, cut_of; /* the last attempt the server cut short */
        struct curl_slist *hdrs;  /* the easy handle's headers */
        bool resumed;             /* the part file's bytes began with a ranged answer */
        bool restarted;           /* a resumed file already started over from 0 once */
        bool discard;             /* d->resume: its bytes are known bad, not kept */
        bool bad_range;           /* a 206 of other bytes than asked for */
        bool whole;               /* d->resume held the whole file already */
        char *validator;          /* If-Range for the bytes in the part file, or NULL */
        char *got_etag, *got_modified; /* of the answer coming in */
        ContentRange got_range;
} Transfer;

typedef struct Downloads {
        Transfer *t;
        size_t n;
        uint64_t done_bytes, total_bytes;
        usec_t last_report;
        PkgProgressFn progress;
        void *userdata;
        const bool *cancel;
        const bool *cancel_all;
} Downloads;

static bool downloads_cancelled(const Downloads *ds) {
        return ds && (pkg_cancelled(ds->cancel) || pkg_cancelled(ds->cancel_all));
}

static Downloads *current_downloads_for(Transfer *t);

/* Empties the part file: the download starts over from byte 0, its
 * digests from nothing. */
static int transfer_reset(Transfer *t) {
        if (ftruncate(t->fd, 0) < 0 || lseek(t->fd, 0, SEEK_SET) < 0)
                return -errno;
        Downloads *ds = current_downloads_for(t);
        if (ds)
                ds->done_bytes -= MIN(ds->done_bytes, t->written);
        t->written = 0;
        t->resumed = false;
        sha256_free(t->hash);
        t->hash = sha256_new();
        free(t->validator);
        t->validator = NULL;
        return page_hashes_start(&t->page, t->d->hashes) < 0 ? -ENOMEM : 0;
}

static char *ifrange_path(const Transfer *t) {
        return xasprintf("%s" PKG_PART_IFRANGE_SUFFIX, t->d->resume);
}

/* The value of header `name` ("etag:") in the header line ptr (n bytes),
 * trimmed, into *ret; left alone when the line is another header or the
 * value is not one to send back (a control byte, over 256 bytes). */
static void header_value(const char *ptr, size_t n, const char *name, char **ret) {
        size_t k = strlen(name);
        if (n <= k || strncasecmp(ptr, name, k) != 0)
                return;
        const char *v = ptr + k, *end = ptr + n;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
        if (end == v || end - v > 256)
                return;
        for (const char *c = v; c < end; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        return;
        free(*ret);
        *ret = xstrndup(v, (size_t) (end - v));
}

/* Headers of each answer (a redirect's come first, then the file's): its
 * Content-Range and the validators a later resume sends back. */
static size_t transfer_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Transfer *t = userdata;
        size_t n = size * nmemb;
        if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
                free(t->got_etag);
                free(t->got_modified);
                t->got_etag = t->got_modified = NULL;
                t->got_range = (ContentRange){};
                return n;
        }
        (void) range_header(ptr, size, nmemb, &t->got_range);
        header_value(ptr, n, "etag:", &t->got_etag);
        header_value(ptr, n, "last-modified:", &t->got_modified);
        return n;
}

/* An answer with the file from byte 0 came: its validator is the one a
 * resume of these bytes sends as If-Range (RFC 9110 13.1.5: a strong
 * ETag, else the Last-Modified date), kept beside a resume's part file
 * for the install that resumes it. */
static void transfer_take_validator(Transfer *t) {
        free(t->validator);
        t->validator = NULL;
        if (t->got_etag && !startswith(t->got_etag, "W/"))
                t->validator = xstrdup(t->got_etag);
        else if (t->got_modified)
                t->validator = xstrdup(t->got_modified);
        if (!t->d->resume)
                return;
        _cleanup_free_ char *path = ifrange_path(t);
        if (!t->validator) {
                (void) unlink(path);
                return;
        }
        /* Best effort: without it, the resume asks for the rest without a
         * condition, and the digest still tells bad bytes. */
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 || write_full(fd, t->validator, strlen(t->validator)) < 0)
                (void) unlink(path);
}

static size_t file_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Transfer *t = userdata;
        size_t n = size * nmemb;
        if (t->first_write) {
                t->first_write = false;
                long status = 0;
                curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
                if (t->written > 0 && status == 206 && t->got_range.first != t->written) {
                        /* Bytes from elsewhere than the end of ours. */
                        t->bad_range = true;
                        return 0;
                }
                /* A server that ignored our Range, or whose file changed
                 * since (If-Range), sends the whole file: start over
                 * rather than append. */
                if (t->written > 0 && status != 206) {
                        int r = transfer_reset(t);
                        if (r < 0) {
                                t->write_errno = -r;
                                return 0;
                        }
                }
                if (status != 206)
                        transfer_take_validator(t);
                curl_off_t cl = -1;
                curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
                if (cl >= 0 && t->expected == 0) {
                        t->expected = t->written + (uint64_t) cl;
                        Downloads *ds = current_downloads_for(t);
                        if (ds)
                                ds->total_bytes += t->expected;
                }
        }
        if (t->written + n > PKG_WHEEL_MAX_DOWNLOAD_BYTES) {
                t->too_big = true;
                return 0;
        }
        int wr = write_full(t->fd, ptr, n);
        if (wr < 0) {
                /* libcurl only says "failed writing received data": keep
                 * the reason (ENOSPC above all) for the message. */
                t->write_errno = -wr;
                return 0;
        }
        sha256_update(t->hash, ptr, n);
        if (page_hashes_update(&t->page, ptr, n) < 0) {
                t->write_errno = EIO;
                return 0;
        }
        t->written += n;
        Downloads *ds = current_downloads_for(t);
        if (downloads_cancelled(ds)) {
                t->write_errno = ECANCELED; /* the caller no longer wants it */
                return 0;
        }
        if (ds) {
                ds->done_bytes += n;
                usec_t now = now_monotonic();
                if (ds->progress && now - ds->last_report > 50 * USEC_PER_MSEC) {
                        ds->last_report = now;
                        ds->progress("downloading", t->d->what, ds->done_bytes, ds->total_bytes, ds->userdata);
                }
        }
        return n;
}

/* The write callback only gets the Transfer; downloads run one batch per
 * thread, so a thread-local back pointer finds the batch. */
static __thread Downloads *tls_downloads;
static Downloads *current_downloads_for(Transfer *t) {
        return tls_downloads;
}

/* Called by libcurl about once a second even while no byte arrives (a
 * server that stalls): a cancelled transfer stops here, not at a timeout. */
static int transfer_xferinfo(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                             curl_off_t ulnow) {
        Transfer *t = userdata;
        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        Downloads *ds = current_downloads_for(t);
        if (downloads_cancelled(ds)) {
                t->write_errno = ECANCELED;
                return 1;
        }
        return 0;
}

static int transfer_start(Transfer *t, const PkgHttpOptions *o) {
        t->easy = curl_easy_init();
        if (!t->easy)
                return -ENOMEM;
        setup_common(t->easy, t->d->url, o);
        /* The file's bytes: a resume's Range counts them (ask_identity()). */
        curl_slist_free_all(t->hdrs);
        t->hdrs = ask_identity(t->easy, NULL);
        if (t->written > 0 && t->validator) {
                _cleanup_free_ char *h = xasprintf("If-Range: %s", t->validator);
                t->hdrs = curl_slist_append(t->hdrs, h);
        }
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->hdrs);
        curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, transfer_header);
        curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
        curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, file_write);
        curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
        curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
        curl_easy_setopt(t->easy, CURLOPT_FAILONERROR, 1L);
        if (o && (o->cancel || o->cancel_all)) {
                curl_easy_setopt(t->easy, CURLOPT_XFERINFOFUNCTION, transfer_xferinfo);
                curl_easy_setopt(t->easy, CURLOPT_XFERINFODATA, t);
                curl_easy_setopt(t->easy, CURLOPT_NOPROGRESS, 0L);
        }
        /* A Range of our own, not CURLOPT_RESUME_FROM: with that, libcurl
         * fails a 200 answer (CURLE_RANGE_ERROR), so a server that ignores
         * ranges, or whose file changed (If-Range), costs a second GET of
         * the bytes the first one was already sending. file_write() takes
         * a 200 from byte 0, a 206 only from where ours end. */
        _cleanup_free_ char *range = t->written > 0 ? xasprintf("%" PRIu64 "-", t->written) : NULL;
        curl_easy_setopt(t->easy, CURLOPT_RANGE, range);
        t->resumed = t->written > 0;
        t->bad_range = false;
        t->first_write = true;
        return 0;
}

/* Opens d->resume, the part file an earlier download of the same wheel
 * left, and hashes the bytes it holds (read once) so the download goes on
 * from its end; a file that cannot be read whole is emptied. */
static int transfer_open_resume(Transfer *t, Downloads *ds) {
        t->part = xstrdup(t->d->resume);
        t->fd = open(t->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (t->fd < 0)
                return -errno;
        struct stat st;
        if (fstat(t->fd, &st) < 0)
                return -errno;
        if (st.st_size == 0 || (uint64_t) st.st_size > PKG_WHEEL_MAX_DOWNLOAD_BYTES)
                return transfer_reset(t);
        _cleanup_free_ uint8_t *buf = xmalloc(1 << 20);
        for (;;) {
                ssize_t k = read(t->fd, buf, 1 << 20);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return transfer_reset(t);
                if (k == 0)
                        break;
                sha256_update(t->hash, buf, (size_t) k);
                if (page_hashes_update(&t->page, buf, (size_t) k) < 0)
                        return -ENOMEM;
                t->written += (uint64_t) k;
        }
        ds->done_bytes += t->written;
        /* A process killed after the last byte but before its rename left
         * the whole file: its sha256 (the bytes were just hashed, and a
         * sha256 names one file) is the one wanted. It is taken as it is,
         * without asking the server anything: a Range from its end would
         * only get a 416, and the file again from byte 0. */
        _cleanup_(sha256_freep) Sha256 *copy = sha256_dup(t->hash);
        char hex[SHA256_HEX_SIZE];
        sha256_final_hex(copy, hex);
        if (streq(hex, t->d->sha256)) {
                t->whole = true;
                t->resumed = true;
                ds->total_bytes += t->written;
        }
        /* The validator of the answer these bytes came from, if it gave
         * one (transfer_take_validator()). */
        _cleanup_free_ char *path = ifrange_path(t);
        _cleanup_close_ int vfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char v[257];
        ssize_t k = vfd >= 0 ? read_full(vfd, v, sizeof(v) - 1) : -1;
        if (k > 0) {
                v[k] = 0;
                char *dup = NULL;
                header_value(v, (size_t) k, "", &dup);
                t->validator = dup;
        }
        return 0;
}

/* The message for a download that could not be stored; it names the
 * wheel, never the server's paths. */
static char *download_write_error(const char *what, int err) {
        if (err == ENOSPC || err == EDQUOT)
                return xasprintf("%s: no space left on the device holding the package store (free some space, "
                                 "then run again)",
                                 what);
        return xasprintf("%s: cannot store the download: %s", what, strerror(err));
}

/* Every byte of t is in its file (its answer ended, or the part file a
 * killed install left was the whole file): checked against the sha256 and
 * the page's other hashes, then flushed and renamed into place (t->done).
 * A resumed file that fails the check is emptied instead, once, to be
 * fetched again from byte 0 (0, t->done unset); otherwise a negative errno
 * with *ret_error set, the bytes marked bad (t->discard). */
static int transfer_finish(Transfer *t, char **ret_error) {
        char hex[SHA256_HEX_SIZE];
        sha256_final_hex(t->hash, hex);
        t->hash = sha256_free(t->hash);
        int r = 0;
        if (t->d->sha256 && !streq(hex, t->d->sha256)) {
                *ret_error = pkg_sha256_mismatch_message(t->d->what, t->d->sha256_from, t->d->sha256, "downloaded from",
                                                         t->d->url, hex);
                r = -EBADMSG;
        } else
                r = page_hashes_check(&t->page, t->d->what, t->d->url, ret_error);
        if (r < 0 && t->resumed && !t->restarted) {
                /* A resumed file: the bytes kept may be what went bad (a
                 * crash, a disk, a file changed with no validator to
                 * tell). Once more from 0. */
                free(*ret_error);
                *ret_error = NULL;
                t->restarted = true;
                t->whole = false;
                r = transfer_reset(t);
                if (r < 0)
                        *ret_error = download_write_error(t->d->what, -r);
                return r;
        }
        if (r < 0) {
                t->discard = true;
                return r;
        }
        if (t->d->ret_sha256)
                memcpy(t->d->ret_sha256, hex, SHA256_HEX_SIZE);
        /* A transient download is unpacked and deleted at once: flushing
         * it to disk first would only write its bytes twice. */
        if ((!t->d->transient && fsync(t->fd) < 0) || close(t->fd) < 0) {
                r = -errno;
                t->fd = -EBADF;
                *ret_error = download_write_error(t->d->what, -r);
                return r;
        }
        t->fd = -EBADF;
        if (rename(t->part, t->d->dest) < 0) {
                r = -errno;
                *ret_error = xasprintf("rename %s: %s", t->d->dest, strerror(-r));
                return r;
        }
        t->done = true;
        return 0;
}

int pkg_http_download_many(const PkgDownload *d, size_t n, const PkgHttpOptions *o, PkgProgressFn progress,
                           void *userdata, char **ret_error) {
        pthread_once(&curl_once, curl_init_once);
        if (n == 0)
                return 0;
        unsigned retries = o ? o->retries : PKG_DEFAULT_RETRIES;
        Downloads ds = { .n = n,
                         .progress = progress,
                         .userdata = userdata,
                         .cancel = o ? o->cancel : NULL,
                         .cancel_all = o ? o->cancel_all : NULL };
        ds.t = xcalloc(n, sizeof(Transfer));
        CURLM *multi = curl_multi_init();
        int r = 0;
        size_t running = 0, finished = 0;
        tls_downloads = &ds;
        if (!multi) {
                r = -ENOMEM;
                goto out;
        }
        curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) PKG_MAX_PARALLEL_DOWNLOADS);

        for (size_t i = 0; i < n; i++) {
                Transfer *t = &ds.t[i];
                t->d = &d[i];
                t->fd = -EBADF;
                assert(!d[i].resume || d[i].sha256);
                t->hash = sha256_new();
                r = page_hashes_start(&t->page, d[i].hashes);
                if (r < 0) {
                        *ret_error = xasprintf("%s: cannot compute its hashes", d[i].what);
                        goto out;
                }
                if (d[i].resume) {
                        r = transfer_open_resume(t, &ds);
                        if (r < 0) {
                                *ret_error = download_write_error(d[i].what, -r);
                                goto out;
                        }
                        if (t->whole) {
                                /* Verified and renamed as an answer that
                                 * just ended would be; one that fails
                                 * starts over from byte 0 below. */
                                r = transfer_finish(t, ret_error);
                                if (r < 0)
                                        goto out;
                                if (t->done)
                                        finished++;
                        }
                        continue;
                }
                _cleanup_free_ char *rnd = NULL;
                r = random_hex(6, &rnd);
                if (r < 0)
                        goto out;
                t->part = xasprintf("%s.part-%s", d[i].dest, rnd);
                t->fd = open(t->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (t->fd < 0) {
                        r = -errno;
                        *ret_error = download_write_error(d[i].what, -r);
                        goto out;
                }
        }

        while (finished < n) {
                usec_t now = now_monotonic();
                /* Fill the parallel slots, oldest first (deterministic). */
                for (size_t i = 0; i < n && running < PKG_MAX_PARALLEL_DOWNLOADS; i++) {
                        Transfer *t = &ds.t[i];
                        if (t->done || t->easy)
                                continue;
                        if (t->waiting && now < t->not_before)
                                continue;
                        t->waiting = false;
                        r = transfer_start(t, o);
                        if (r < 0)
                                goto out;
                        curl_multi_add_handle(multi, t->easy);
                        running++;
                }
                int still = 0;
                CURLMcode mc = curl_multi_perform(multi, &still);
                if (mc != CURLM_OK) {
                        *ret_error = xasprintf("download: %s", curl_multi_strerror(mc));
                        r = -EIO;
                        goto out;
                }
                CURLMsg *m;
                int q;
                while ((m = curl_multi_info_read(multi, &q))) {
                        if (m->msg != CURLMSG_DONE)
                                continue;
                        Transfer *t = NULL;
                        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &t);
                        CURLcode cc = m->data.result;
                        long status = 0;
                        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
                        curl_multi_remove_handle(multi, t->easy);
                        curl_easy_cleanup(t->easy);
                        t->easy = NULL;
                        running--;
                        if (cc == CURLE_OK) {
                                r = transfer_finish(t, ret_error);
                                if (r < 0)
                                        goto out;
                                if (t->done)
                                        finished++;
                                continue;
                        }
                        if (t->resumed && !t->restarted &&
                            (t->bad_range || (cc == CURLE_HTTP_RETURNED_ERROR && status == 416))) {
                                /* Our part file is as long as the file or
                                 * longer (416), or the server sent other
                                 * bytes than the rest: start over, once. */
                                t->restarted = true;
                                r = transfer_reset(t);
                                if (r < 0) {
                                        *ret_error = download_write_error(t->d->what, -r);
                                        goto out;
                                }
                                continue;
                        }
                        bool retry = code_retryable(cc) ||
                                     (cc == CURLE_HTTP_RETURNED_ERROR && status_retryable(status)) ||
                                     cc == CURLE_RANGE_ERROR || t->bad_range;
                        if (cc == CURLE_PARTIAL_FILE) {
                                t->cut_got = t->written;
                                t->cut_of = t->expected;
                        }
                        if (cc == CURLE_RANGE_ERROR || cc == CURLE_BAD_DOWNLOAD_RESUME || t->bad_range) {
                                /* Range not honoured: start from zero. */
                                r = transfer_reset(t);
                                if (r < 0) {
                                        *ret_error = download_write_error(t->d->what, -r);
                                        goto out;
                                }
                        }
                        if (t->write_errno == ECANCELED || (o && pkg_cancelled(o->cancel_all))) {
                                /* A wheel the resolver dropped is not
                                 * wanted again; a stopped install is. */
                                t->discard = o && !pkg_cancelled(o->cancel_all) && pkg_cancelled(o->cancel);
                                r = cancelled_error(ret_error);
                                goto out;
                        }
                        if (t->write_errno) {
                                /* A full disk does not get better by retrying now;
                                 * and the bytes kept would hold the space. */
                                t->discard = true;
                                *ret_error = download_write_error(t->d->what, t->write_errno);
                                r = -t->write_errno;
                                goto out;
                        }
                        if (t->too_big || !retry || t->attempts >= retries) {
                                t->discard = t->discard || t->too_big;
                                if (t->too_big)
                                        *ret_error = xasprintf("GET %s: larger than %llu bytes", t->d->url,
                                                               (unsigned long long) PKG_WHEEL_MAX_DOWNLOAD_BYTES);
                                else if (t->cut_of > 0)
                                        /* Say what happened, not how the
                                         * last resume attempt failed. */
                                        *ret_error = xasprintf(
                                                "GET %s: the download was cut short (partial file: "
                                                "%llu of %llu bytes)%s%s",
                                                t->d->url, (unsigned long long) t->cut_got,
                                                (unsigned long long) t->cut_of, t->attempts ? " (after retries)" : "",
                                                t->d->resume && t->written > 0 ? "; kept: the next install resumes it"
                                                                               : "");
                                else if (cc == CURLE_HTTP_RETURNED_ERROR)
                                        *ret_error = xasprintf("GET %s: HTTP %ld%s", t->d->url, status,
                                                               t->attempts ? " (after retries)" : "");
                                else
                                        *ret_error = xasprintf("GET %s: %s%s", t->d->url, curl_easy_strerror(cc),
                                                               t->attempts ? " (after retries)" : "");
                                r = status == 404 ? -ENOENT : -EIO;
                                goto out;
                        }
                        t->attempts++;
                        t->waiting = true;
                        t->not_before = now_monotonic() + (usec_t) backoff_ms(t->attempts - 1) * USEC_PER_MSEC;
                }
                if (finished < n && o && pkg_cancelled(o->cancel_all)) {
                        /* Between transfers (a retry's backoff): nothing
                         * of curl's would notice. */
                        r = cancelled_error(ret_error);
                        goto out;
                }
                if (finished < n) {
                        int numfds;
                        curl_multi_poll(multi, NULL, 0, running > 0 ? 100 : 20, &numfds);
                }
        }
        if (progress)
                progress("downloading", "", ds.done_bytes, MAX(ds.total_bytes, ds.done_bytes), userdata);

out:
        for (size_t i = 0; i < n; i++) {
                Transfer *t = &ds.t[i];
                if (t->easy) {
                        curl_multi_remove_handle(multi, t->easy);
                        curl_easy_cleanup(t->easy);
                }
                if (t->fd >= 0)
                        close(t->fd);
                /* A resume's bytes stay for the next install of the wheel,
                 * unless known bad (or none). */
                bool keep = t->d && t->d->resume && !t->discard && t->written > 0;
                if (t->part && !t->done && !keep)
                        (void) unlink(t->part);
                if (t->d && t->d->resume && (t->done || !keep)) {
                        _cleanup_free_ char *v = ifrange_path(t);
                        (void) unlink(v);
                }
                sha256_free(t->hash);
                page_hashes_done(&t->page);
                curl_slist_free_all(t->hdrs);
                free(t->part);
                free(t->validator);
                free(t->got_etag);
                free(t->got_modified);
        }
        if (multi)
                curl_multi_cleanup(multi);
        free(ds.t);
        tls_downloads = NULL;
        return r;
}
