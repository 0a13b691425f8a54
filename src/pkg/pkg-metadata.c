/* pkg-metadata.c: core metadata (METADATA / PKG-INFO, RFC 822 headers). Only
 * the fields resolution needs are kept. */
#include "pkg-mgr.h"

#include <strings.h>

PkgMetadata *pkg_metadata_free(PkgMetadata *m) {
        if (!m)
                return NULL;
        free(m->name);
        free(m->version);
        free(m->requires_python);
        strv_free(m->requires_dist);
        strv_free(m->provides_extra);
        free(m);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgMetadata *, pkg_metadata_free);

int pkg_metadata_parse(const char *text, PkgMetadata **ret_metadata, char **ret_error) {
        _cleanup_(pkg_metadata_freep) PkgMetadata *m = xcalloc(1, sizeof(*m));
        /* Headers end at the first empty line; the body is the description. */
        const char *p = text;
        char *field = NULL;
        Buf value;
        buf_init(&value, PKG_METADATA_MAX);
        int r = 0;
        for (;;) {
                const char *eol = strchr(p, '\n');
                size_t len = eol ? (size_t) (eol - p) : strlen(p);
                if (len > 0 && p[len - 1] == '\r')
                        len--;
                bool cont = len > 0 && (p[0] == ' ' || p[0] == '\t');
                if (field && !cont) {
                        /* Flush the previous header. */
                        char *v = strstrip(value.data ? value.data : (char *) "");
                        if (strcasecmp(field, "Name") == 0 && !m->name)
                                m->name = xstrdup(v);
                        else if (strcasecmp(field, "Version") == 0 && !m->version)
                                m->version = xstrdup(v);
                        else if (strcasecmp(field, "Requires-Python") == 0 && !m->requires_python && *v)
                                m->requires_python = xstrdup(v);
                        else if (strcasecmp(field, "Requires-Dist") == 0 && *v)
                                m->requires_dist = strv_append(m->requires_dist, v);
                        else if (strcasecmp(field, "Provides-Extra") == 0 && *v) {
                                _cleanup_free_ char *n = pkg_name_normalize(v);
                                if (n && !strv_contains(m->provides_extra, n))
                                        m->provides_extra = strv_append(m->provides_extra, n);
                        }
                        free(field);
                        field = NULL;
                        buf_reset(&value);
                }
                if (len == 0 || (!eol && !*p))
                        break;
                if (cont) {
                        if (field) {
                                buf_appends(&value, " ");
                                buf_append(&value, p, len);
                        }
                } else {
                        const char *colon = memchr(p, ':', len);
                        if (!colon) {
                                r = -EBADMSG;
                                if (ret_error)
                                        *ret_error = xasprintf("malformed metadata header line: %.*s", (int) MIN(len, 80), p);
                                break;
                        }
                        field = xstrndup(p, (size_t) (colon - p));
                        if (buf_append(&value, colon + 1, len - (size_t) (colon - p) - 1) < 0) {
                                r = -EFBIG;
                                break;
                        }
                }
                /* At EOF go round once more with an empty line to flush. */
                p = eol ? eol + 1 : "";
        }
        free(field);
        buf_free(&value);
        if (r < 0)
                return r;
        if (!m->name || !m->version) {
                if (ret_error)
                        *ret_error = xstrdup("metadata lacks Name or Version");
                return -EBADMSG;
        }
        *ret_metadata = TAKE_PTR(m);
        return 0;
}
