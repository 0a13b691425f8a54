/* pkg-lock.c: the lock file format (JSON). */
#include "pkg-mgr.h"

#include <assert.h>
#include <jansson.h>

PkgLock *pkg_lock_free(PkgLock *l) {
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n_entries; i++) {
                PkgLockEntry *e = &l->entries[i];
                free(e->name);
                free(e->version);
                free(e->filename);
                free(e->url);
                free(e->sha256);
                strv_free(e->dependencies);
        }
        free(l->entries);
        strv_free(l->requirements);
        strv_free(l->ignored);
        strv_free(l->ignored_markers);
        strv_free(l->warnings);
        free(l);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgLock *, pkg_lock_free);

char *pkg_lock_to_json(const PkgLock *l, bool pretty) {
        json_t *root = json_object();
        json_object_set_new(root, "version", json_integer(1));
        json_object_set_new(root, "requirements", json_strv_new(l->requirements));
        if (l->ignored) {
                json_t *ig = json_array();
                for (size_t i = 0; l->ignored[i]; i++)
                        json_array_append_new(
                                ig, json_pack("{s:s, s:s}", "name", l->ignored[i], "marker", l->ignored_markers[i]));
                json_object_set_new(root, "ignored", ig);
        }
        json_t *pk = json_array();
        for (size_t i = 0; i < l->n_entries; i++) {
                const PkgLockEntry *e = &l->entries[i];
                json_array_append_new(pk, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "name", e->name, "version",
                                                    e->version, "filename", e->filename, "url", e->url, "sha256",
                                                    e->sha256, "dependencies", json_strv_new(e->dependencies)));
        }
        json_object_set_new(root, "packages", pk);
        char *s = json_dumps(root, (pretty ? JSON_INDENT(2) : JSON_COMPACT) | JSON_PRESERVE_ORDER);
        json_decref(root);
        char *out = xstrdup(s ? s : "{}");
        free(s);
        return out;
}

char *pkg_lock_files_json(const PkgLock *l) {
        assert(l);
        PkgLockEntry *v = xcalloc(l->n_entries + 1, sizeof(PkgLockEntry));
        for (size_t i = 0; i < l->n_entries; i++) {
                v[i] = l->entries[i];
                v[i].url = (char *) "";
        }
        PkgLock files = *l;
        files.entries = v;
        char *text = pkg_lock_to_json(&files, false);
        free(v);
        return text;
}

json_t *pkg_lock_shown(const char *lock_json) {
        _cleanup_free_ char *shown = pkg_url_redact(lock_json);
        return json_parse_or_string(shown);
}

static bool entry_in(const PkgLock *l, const PkgLockEntry *e) {
        for (size_t i = 0; i < l->n_entries; i++)
                if (streq(l->entries[i].sha256, e->sha256) && streq(l->entries[i].name, e->name) &&
                    streq(l->entries[i].version, e->version))
                        return true;
        return false;
}

bool pkg_lock_json_same_files(const char *a, const char *b) {
        if (!a || !b)
                return !a && !b;
        if (streq(a, b))
                return true;
        _cleanup_(pkg_lock_freep) PkgLock *x = NULL, *y = NULL;
        _cleanup_free_ char *ex = NULL, *ey = NULL;
        if (pkg_lock_from_json(a, &x, &ex) < 0 || pkg_lock_from_json(b, &y, &ey) < 0)
                return false;
        size_t nx = strv_length(x->requirements);
        if (x->n_entries != y->n_entries || nx != strv_length(y->requirements))
                return false;
        for (size_t i = 0; i < nx; i++)
                if (!streq(x->requirements[i], y->requirements[i]))
                        return false;
        for (size_t i = 0; i < x->n_entries; i++)
                if (!entry_in(y, &x->entries[i]) || !entry_in(x, &y->entries[i]))
                        return false;
        return true;
}

/* An absent list is an empty one; the callers word the error. */
static int json_strv(json_t *a, char ***ret) {
        _cleanup_free_ char *ignored = NULL;
        return a ? json_want_strv(a, "list", ret, &ignored) : 0;
}

int pkg_lock_from_json(const char *json, PkgLock **ret_lock, char **ret_error) {
        json_error_t jerr;
        json_t *root = json_loads(json, 0, &jerr);
        if (!root) {
                *ret_error = xasprintf("lock: invalid JSON: %s (line %d)", jerr.text, jerr.line);
                return -EBADMSG;
        }
        _cleanup_(pkg_lock_freep) PkgLock *l = xcalloc(1, sizeof(*l));
        int r = 0;
        json_t *pk = json_object_get(root, "packages");
        if (json_integer_value(json_object_get(root, "version")) != 1 || !json_is_array(pk) ||
            json_strv(json_object_get(root, "requirements"), &l->requirements) < 0) {
                *ret_error = xstrdup("lock: not a version 1 lock (needs \"version\": 1 and a \"packages\" list)");
                r = -EBADMSG;
                goto out;
        }
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(root, "ignored"), i, it) {
                const char *n = json_get_string(it, "name"), *m = json_get_string(it, "marker");
                if (!n || !m) {
                        *ret_error = xasprintf("lock: ignored requirement %zu lacks a name or a marker", i);
                        r = -EBADMSG;
                        goto out;
                }
                l->ignored = strv_append(l->ignored, n);
                l->ignored_markers = strv_append(l->ignored_markers, m);
        }
        l->entries = xcalloc(json_array_size(pk) + 1, sizeof(PkgLockEntry));
        json_array_foreach(pk, i, it) {
                const char *f[5] = {
                        json_get_string(it, "name"), json_get_string(it, "version"), json_get_string(it, "filename"),
                        json_get_string(it, "url"),  json_get_string(it, "sha256"),
                };
                if (!f[0] || !f[1] || !f[2] || !f[3] || !sha256_hex_is_valid(f[4]) || strchr(f[2], '/')) {
                        *ret_error = xasprintf("lock: package %zu lacks name, version, filename, url or a sha256", i);
                        r = -EBADMSG;
                        goto out;
                }
                PkgLockEntry *e = &l->entries[l->n_entries++];
                *e = (PkgLockEntry) { xstrdup(f[0]), xstrdup(f[1]), xstrdup(f[2]), xstrdup(f[3]), xstrdup(f[4]), NULL };
                if (json_strv(json_object_get(it, "dependencies"), &e->dependencies) < 0) {
                        *ret_error = xasprintf("lock: package %s: dependencies must be a list of names", f[0]);
                        r = -EBADMSG;
                        goto out;
                }
        }
        *ret_lock = TAKE_PTR(l);
out:
        json_decref(root);
        return r;
}
