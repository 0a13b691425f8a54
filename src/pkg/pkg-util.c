/* pkg-util.c: the RECORD hash spelling and URL helpers of the package manager. */
#include "pkg-mgr.h"

#include <assert.h>
#include <string.h>
#include <unistd.h>

/* The end of a URL's authority (after "scheme://"): where its path,
 * query or fragment begins, or where the text around it goes on. */
static size_t authority_length(const char *a) {
        return strcspn(a, "/?#\"' \t\r\n<>()[]{}`,;");
}

char *pkg_url_redact(const char *text) {
        if (!text)
                return NULL;
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        const char *p = text;
        for (const char *at; (at = strstr(p, "://"));) {
                const char *auth = at + 3;
                size_t n = authority_length(auth);
                const char *userinfo_end = memrchr(auth, '@', n);
                buf_append(&b, p, (size_t) (auth - p));
                if (userinfo_end) {
                        const char *colon = memchr(auth, ':', (size_t) (userinfo_end - auth));
                        if (colon)
                                buf_append(&b, auth, (size_t) (colon - auth) + 1);
                        buf_appends(&b, "****");
                        p = userinfo_end;
                } else
                        p = auth;
        }
        buf_appends(&b, p);
        return buf_steal(&b) ?: xstrdup("");
}

/* In this file of URL helpers, which links alone (the daemon's config
 * checker and its fuzzer use it without the index client). */
int pkg_index_url_check(const char *u, char **ret_error) {
        bool scheme = startswith(u, "http://") || startswith(u, "https://") || startswith(u, "file://");
        /* A URL has no white space: "--index-url 'A B'" used to be split
         * into two sources and refused for its second word alone. */
        if (scheme && !u[strcspn(u, " \t\n\r\f\v")])
                return 0;
        _cleanup_free_ char *shown = pkg_url_redact(u);
        *ret_error = xasprintf("index URL '%s' %s", shown,
                               scheme ? "has white space in it: give one URL per option"
                                      : "must start with http://, https:// or file://");
        return -EINVAL;
}

char *pkg_record_hash(const uint8_t digest[32]) {
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char out[64] = "sha256=";
        size_t o = strlen(out);
        for (size_t i = 0; i < 32; i += 3) {
                uint32_t v = (uint32_t) digest[i] << 16;
                size_t take = MIN((size_t) 3, 32 - i);
                if (take > 1)
                        v |= (uint32_t) digest[i + 1] << 8;
                if (take > 2)
                        v |= digest[i + 2];
                out[o++] = b64[(v >> 18) & 63];
                out[o++] = b64[(v >> 12) & 63];
                if (take > 1)
                        out[o++] = b64[(v >> 6) & 63];
                if (take > 2)
                        out[o++] = b64[v & 63];
        }
        out[o] = 0;
        return xstrdup(out);
}

/* Removes "." and ".." segments of an absolute path (RFC 3986 5.2.4). */
static char *remove_dot_segments(const char *path) {
        size_t n = strlen(path);
        char **segs = xcalloc(n + 2, sizeof(char *));
        size_t ns = 0;
        _cleanup_free_ char *p = xstrdup(path);
        bool trailing = n > 0 && (path[n - 1] == '/' || endswith(path, "/.") || endswith(path, "/.."));
        char *save = p;
        for (char *s = p; save; s = save) {
                char *slash = strchr(s, '/');
                save = slash ? slash + 1 : NULL;
                if (slash)
                        *slash = 0;
                if (!*s || streq(s, "."))
                        continue;
                if (streq(s, "..")) {
                        if (ns > 0)
                                ns--;
                        continue;
                }
                segs[ns++] = s;
        }
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        for (size_t i = 0; i < ns; i++) {
                buf_appends(&b, "/");
                buf_appends(&b, segs[i]);
        }
        if (trailing || ns == 0)
                buf_appends(&b, "/");
        free(segs);
        return buf_steal(&b);
}

char *pkg_file_url_path(const char *url) {
        assert(url && startswith(url, "file://"));
        const char *p = url + 7;
        if (startswith(p, "localhost/"))
                p += strlen("localhost");
        size_t n = strcspn(p, "?#");
        _cleanup_free_ char *raw = xstrndup(p, n);
        char *decoded = percent_decode(p, n, false, NULL);
        if (!streq(raw, decoded) && access(decoded, F_OK) < 0 && access(raw, F_OK) == 0) {
                free(decoded);
                return TAKE_PTR(raw);
        }
        return decoded;
}

char *pkg_file_url_from_path(const char *path) {
        assert(path);
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        buf_appends(&b, "file://");
        for (const unsigned char *c = (const unsigned char *) path; *c; c++) {
                bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                             strchr("-._~/", *c);
                if (plain)
                        buf_append(&b, c, 1);
                else
                        buf_printf(&b, "%%%02X", *c);
        }
        return buf_steal(&b);
}

char *pkg_url_join(const char *base, const char *href) {
        const char *colon = strstr(href, "://");
        const char *firstslash = strchr(href, '/');
        if (colon && (!firstslash || colon < firstslash))
                return xstrdup(href);
        const char *sep = strstr(base, "://");
        if (!sep)
                return xstrdup(href);
        if (startswith(href, "//"))
                return xasprintf("%.*s:%s", (int) (sep - base), base, href);
        const char *hoststart = sep + 3;
        const char *pathstart = strchr(hoststart, '/');
        size_t origin_len = pathstart ? (size_t) (pathstart - base) : strlen(base);
        _cleanup_free_ char *basepath = xstrdup(pathstart ? pathstart : "/");
        char *q = strpbrk(basepath, "?#");
        if (q)
                *q = 0;
        /* Split off the href's query/fragment so dot-segment removal sees
         * only the path. */
        size_t hp = strcspn(href, "?#");
        _cleanup_free_ char *hpath = xstrndup(href, hp);
        _cleanup_free_ char *merged = NULL;
        if (hpath[0] == '/')
                merged = xstrdup(hpath);
        else if (!hpath[0])
                merged = xstrdup(basepath);
        else {
                char *last = strrchr(basepath, '/');
                merged = xasprintf("%.*s/%s", (int) (last ? last - basepath : 0), basepath, hpath);
        }
        _cleanup_free_ char *clean = remove_dot_segments(merged);
        return xasprintf("%.*s%s%s", (int) origin_len, base, clean, href + hp);
}
