/* URL sources: one GET with libcurl, conditional on the cached validators,
 * streamed to a file with a byte cap. CURLcode stays in this file. */
#include <arpa/inet.h>
#include <assert.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "data-internal.h"

/* ---- the address policy ------------------------------------------------------
 *
 * A URL source is fetched by the daemon, from the daemon's host: without a
 * policy a tenant reads whatever that host can reach (the daemon's own API,
 * cloud metadata at 169.254.169.254, services on the private network). The
 * check runs on the address each connection is about to use (libcurl's
 * open-socket callback), so a name that resolves differently the second
 * time (DNS rebinding) or a redirect to an internal address is caught too. */

typedef struct Cidr {
        int family;
        uint8_t addr[16];
        unsigned prefix;
} Cidr;

static int cidr_parse(const char *s, Cidr *ret) {
        Cidr c = {};
        _cleanup_free_ char *host = xstrdup(s);
        char *slash = strchr(host, '/');
        long prefix = -1;
        if (slash) {
                char *end;
                *slash = 0;
                errno = 0;
                prefix = strtol(slash + 1, &end, 10);
                if (errno || end == slash + 1 || *end || prefix < 0)
                        return -EINVAL;
        }
        if (inet_pton(AF_INET, host, c.addr) == 1) {
                c.family = AF_INET;
                if (prefix > 32)
                        return -EINVAL;
                c.prefix = prefix < 0 ? 32 : (unsigned) prefix;
        } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
                c.family = AF_INET6;
                if (prefix > 128)
                        return -EINVAL;
                c.prefix = prefix < 0 ? 128 : (unsigned) prefix;
        } else
                return -EINVAL;
        *ret = c;
        return 0;
}

int data_cidr_valid(const char *cidr) {
        Cidr c;
        return cidr ? cidr_parse(cidr, &c) : -EINVAL;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits) {
        unsigned whole = bits / 8, rest = bits % 8;
        if (memcmp(a, net, whole) != 0)
                return false;
        if (!rest)
                return true;
        uint8_t mask = (uint8_t) (0xff << (8 - rest));
        return (a[whole] & mask) == (net[whole] & mask);
}

static bool in_allow(int family, const uint8_t *a, char *const *allow) {
        for (char *const *p = allow; p && *p; p++) {
                Cidr c;
                if (cidr_parse(*p, &c) >= 0 && c.family == family && prefix_match(a, c.addr, c.prefix))
                        return true;
        }
        return false;
}

/* NULL for a public address, else the class that refuses it. */
static const char *ipv4_class(const uint8_t a[4]) {
        static const struct {
                uint8_t net[4];
                unsigned bits;
                const char *why;
        } t[] = {
                { { 0, 0, 0, 0 }, 8, "unspecified" },          { { 10, 0, 0, 0 }, 8, "private" },
                { { 100, 64, 0, 0 }, 10, "shared (CGNAT)" },    { { 127, 0, 0, 0 }, 8, "loopback" },
                { { 169, 254, 0, 0 }, 16, "link-local" },       { { 172, 16, 0, 0 }, 12, "private" },
                { { 192, 0, 0, 0 }, 24, "IETF protocol" },      { { 192, 168, 0, 0 }, 16, "private" },
                { { 198, 18, 0, 0 }, 15, "benchmarking" },      { { 224, 0, 0, 0 }, 4, "multicast" },
                { { 240, 0, 0, 0 }, 4, "reserved or broadcast" },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                if (prefix_match(a, t[i].net, t[i].bits))
                        return t[i].why;
        return NULL;
}

static const char *ipv6_class(const uint8_t a[16], const uint8_t **ret_v4) {
        static const uint8_t zero[16] = {}, mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff },
                             nat64[12] = { 0, 0x64, 0xff, 0x9b }, nat64_local[6] = { 0, 0x64, 0xff, 0x9b, 0, 1 };
        *ret_v4 = NULL;
        if (memcmp(a, zero, 16) == 0)
                return "unspecified";
        if (memcmp(a, zero, 15) == 0 && a[15] == 1)
                return "loopback";
        /* ::ffff:a.b.c.d, ::a.b.c.d and 64:ff9b::a.b.c.d reach an IPv4
         * address: judge that one. */
        if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero, 12) == 0 || memcmp(a, nat64, 12) == 0) {
                *ret_v4 = a + 12;
                return ipv4_class(a + 12);
        }
        /* 6to4 (2002::/16) carries its IPv4 in bits 16-47: judge that. */
        if (a[0] == 0x20 && a[1] == 0x02) {
                *ret_v4 = a + 2;
                return ipv4_class(a + 2);
        }
        /* Local-use NAT64 (64:ff9b:1::/48, RFC 8215): a translator on the
         * local network, which may reach its private IPv4 addresses; where
         * the IPv4 sits depends on the prefix length it was given, which
         * the daemon cannot know. */
        if (memcmp(a, nat64_local, 6) == 0)
                return "local-use NAT64";
        if ((a[0] & 0xfe) == 0xfc)
                return "private (unique local)";
        if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
                return "link-local";
        if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
                return "site-local";
        if (a[0] == 0xff)
                return "multicast";
        return NULL;
}

bool data_address_allowed(const struct sockaddr *sa, char *const *allow, const char **ret_why) {
        const char *why = "not IPv4 or IPv6";
        assert(sa);
        if (sa->sa_family == AF_INET) {
                const uint8_t *a = (const uint8_t *) &((const struct sockaddr_in *) sa)->sin_addr;
                if (in_allow(AF_INET, a, allow))
                        return true;
                why = ipv4_class(a);
        } else if (sa->sa_family == AF_INET6) {
                const uint8_t *a = (const uint8_t *) &((const struct sockaddr_in6 *) sa)->sin6_addr, *v4;
                if (in_allow(AF_INET6, a, allow))
                        return true;
                why = ipv6_class(a, &v4);
                if (v4 && in_allow(AF_INET, v4, allow))
                        return true;
        }
        if (ret_why)
                *ret_why = why;
        return why == NULL;
}

/* ---- the transfer ------------------------------------------------------------ */

typedef struct Sink {
        int fd;
        uint64_t written, max;
        bool too_big;
        int write_error;
        char *etag, *last_modified;
        /* the address policy */
        bool restrict_addresses;
        char *const *allow;
        char refused[INET6_ADDRSTRLEN + 64];
} Sink;

/* libcurl's open-socket hook: every connection (each redirect, each address
 * happy-eyeballs tries) passes here with the address it will connect to. */
static curl_socket_t on_open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *address) {
        Sink *s = userdata;
        const char *why = NULL;
        if (purpose != CURLSOCKTYPE_IPCXN)
                return CURL_SOCKET_BAD;
        if (s->restrict_addresses && !data_address_allowed(&address->addr, s->allow, &why)) {
                char host[INET6_ADDRSTRLEN] = "?";
                const void *a = address->family == AF_INET6 ? (const void *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr
                                                            : (const void *) &((struct sockaddr_in *) &address->addr)->sin_addr;
                (void) inet_ntop(address->family, a, host, sizeof(host));
                snprintf(s->refused, sizeof(s->refused), "%s is a %s address", host, why);
                return CURL_SOCKET_BAD;
        }
        int fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Sink *s = userdata;
        size_t n = size * nmemb;
        if (s->max && s->written + n > s->max) {
                s->too_big = true;
                return 0; /* aborts the transfer */
        }
        int r = write_full(s->fd, ptr, n);
        if (r < 0) {
                s->write_error = r;
                return 0;
        }
        s->written += n;
        return n;
}

/* Header value of "Name: value\r\n" when the line is that header. */
static char *header_value(const char *line, size_t n, const char *name) {
        size_t k = strlen(name);
        if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
                return NULL;
        const char *v = line + k + 1, *end = line + n;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        return xstrndup(v, (size_t) (end - v));
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata) {
        Sink *s = userdata;
        size_t n = size * nmemb;
        /* A new status line (redirects, 100-continue) starts a new header set. */
        if (n >= 5 && strneq(line, "HTTP/", 5)) {
                free(s->etag);
                free(s->last_modified);
                s->etag = s->last_modified = NULL;
        }
        char *v;
        if ((v = header_value(line, n, "ETag"))) {
                free(s->etag);
                s->etag = v;
        } else if ((v = header_value(line, n, "Last-Modified"))) {
                free(s->last_modified);
                s->last_modified = v;
        }
        return n;
}

void fetch_result_done(FetchResult *f) {
        free(f->etag);
        free(f->last_modified);
        *f = (FetchResult) {};
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Here, not in data.c: the request fuzzer links this file alone. */
void data_catalog_set_url_allow(DataCatalog *c, char *const *url_allow) {
        char **n = NULL;
        for (char *const *a = url_allow; a && *a; a++)
                n = strv_append(n, *a);
        pthread_mutex_lock(&c->url_allow_lock);
        char **old = c->url_allow;
        c->url_allow = n;
        pthread_mutex_unlock(&c->url_allow_lock);
        strv_free(old);
}

char **data_catalog_url_allow(const DataCatalog *c) {
        /* The lock, not the list, is mutable in a const catalog. */
        pthread_mutex_t *lock = (pthread_mutex_t *) &c->url_allow_lock;
        char **copy = NULL;
        pthread_mutex_lock(lock);
        for (char *const *a = c->url_allow; a && *a; a++)
                copy = strv_append(copy, *a);
        pthread_mutex_unlock(lock);
        return copy;
}

/* What both fetchers set the same way: the body into a Sink, http(s) only
 * (also after a redirect: a file:// or other scheme would read the
 * runner's own files), no signals, a deadline, an error text; then the
 * transfer and its status. The handle and the header list are freed. */
static CURLcode perform_into_sink(CURL *h, const char *url, struct curl_slist *hdrs, Sink *s, long connect_ms,
                                  uint64_t timeout_ms, const char *agent, char *errbuf, long *ret_status) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) (timeout_ms ? timeout_ms : DATA_DEFAULT_URL_TIMEOUT_MS));
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_USERAGENT, agent);
        CURLcode cc = curl_easy_perform(h);
        *ret_status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_status);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdrs);
        return cc;
}

int data_fetch(const DataCatalog *c, const char *url, const char *path, const char *etag, const char *last_modified,
               FetchResult *ret, char **ret_error) {
        uint64_t max_bytes = c->cfg.max_dataset_bytes, timeout_ms = c->cfg.url_timeout_ms;
        pthread_once(&curl_once, curl_init_once);
        /* (not data_source_is_url(): this file links alone into the
         * request fuzzer, which checks the config's url_allow) */
        if (!startswith(url, "http://") && !startswith(url, "https://")) {
                *ret_error = xstrdup("a URL source must be http:// or https://");
                return -EINVAL;
        }
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        _cleanup_strv_free_ char **allow = data_catalog_url_allow(c);
        Sink s = { .fd = fd, .max = max_bytes, .restrict_addresses = c->cfg.url_restrict, .allow = allow };
        CURL *h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        struct curl_slist *hdrs = NULL;
        if (etag) {
                _cleanup_free_ char *l = xasprintf("If-None-Match: %s", etag);
                hdrs = curl_slist_append(hdrs, l);
        }
        if (last_modified) {
                _cleanup_free_ char *l = xasprintf("If-Modified-Since: %s", last_modified);
                hdrs = curl_slist_append(hdrs, l);
        }
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &s);
        if (s.restrict_addresses) {
                /* A proxy from the environment (http_proxy, …) would be the
                 * address connected, not the URL's host: no proxies. */
                curl_easy_setopt(h, CURLOPT_PROXY, "");
                curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
        }
        long status;
        CURLcode cc = perform_into_sink(h, url, hdrs, &s, 15000L, timeout_ms, "pysprinter-data/1", errbuf, &status);
        int r = 0;
        if (*s.refused) {
                *ret_error = xasprintf("refused to fetch %s: %s (the operator can allow it with config 'data.url_allow')",
                                       url, s.refused);
                r = -EACCES;
        } else if (s.too_big) {
                *ret_error = xasprintf("%s is larger than the dataset cap (%llu bytes)", url, (unsigned long long) max_bytes);
                r = -EFBIG;
        } else if (s.write_error) {
                *ret_error = xasprintf("cannot write the download of %s: %s", url, strerror(-s.write_error));
                r = s.write_error;
        } else if (cc != CURLE_OK) {
                *ret_error = xasprintf("cannot fetch %s: %s", url, *errbuf ? errbuf : curl_easy_strerror(cc));
                r = -EIO;
        } else if (status != 304 && (status < 200 || status > 299)) {
                *ret_error = xasprintf("cannot fetch %s: HTTP status %ld", url, status);
                r = -EIO;
        }
        if (r < 0) {
                free(s.etag);
                free(s.last_modified);
                return r;
        }
        *ret = (FetchResult) { .status = status, .etag = s.etag, .last_modified = s.last_modified };
        return 0;
}

int data_fetch_peer(const DataCatalog *c, const char *url, const char *bearer, const char *path, uint64_t max,
                    char **ret_error) {
        return data_peer_download(url, bearer, path, max, c->cfg.url_timeout_ms, ret_error);
}

int data_peer_download(const char *url, const char *bearer, const char *path, uint64_t max, uint64_t timeout_ms,
                       char **ret_error) {
        pthread_once(&curl_once, curl_init_once);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        Sink s = { .fd = fd, .max = max };
        CURL *h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", bearer ? bearer : "");
        struct curl_slist *hdrs = curl_slist_append(NULL, auth);
        char errbuf[CURL_ERROR_SIZE] = "";
        /* The secret goes to the advertised address only. */
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROXY, "");
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
        long status;
        CURLcode cc = perform_into_sink(h, url, hdrs, &s, 5000L, timeout_ms, "pysprinter-peer/1", errbuf, &status);
        if (s.too_big) {
                *ret_error = xasprintf("%s is larger than %llu bytes", url, (unsigned long long) max);
                return -EFBIG;
        }
        if (s.write_error) {
                *ret_error = xasprintf("cannot write the download of %s: %s", url, strerror(-s.write_error));
                return s.write_error;
        }
        if (cc != CURLE_OK) {
                *ret_error = xasprintf("cannot fetch %s: %s", url, *errbuf ? errbuf : curl_easy_strerror(cc));
                return -EIO;
        }
        if (status != 200) {
                *ret_error = xasprintf("cannot fetch %s: HTTP status %ld", url, status);
                return status == 404 ? -ENOENT : status == 401 || status == 403 ? -EACCES : -EIO;
        }
        return 0;
}
