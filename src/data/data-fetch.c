/* URL sources: one GET with libcurl, conditional on the cached validators,
 * streamed to a file with a byte cap. CURLcode stays in this file. */
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>

#include "data-internal.h"

typedef struct Sink {
        int fd;
        uint64_t written, max;
        bool too_big;
        int write_error;
        char *etag, *last_modified;
} Sink;

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

int data_fetch(const char *url, const char *path, const char *etag, const char *last_modified, uint64_t max_bytes,
               uint64_t timeout_ms, FetchResult *ret, char **ret_error) {
        pthread_once(&curl_once, curl_init_once);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        Sink s = { .fd = fd, .max = max_bytes };
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
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
        /* Only http(s), also after redirects: a file:// or other scheme
         * would read the runner's own files. */
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) (timeout_ms ? timeout_ms : DATA_DEFAULT_URL_TIMEOUT_MS));
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "pysprinter-data/1");
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdrs);
        int r = 0;
        if (s.too_big) {
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
