/* pkg-index.c: index configuration and the simple-repository client
 * (PEP 691 JSON with content negotiation, PEP 503 HTML fallback, PEP 658/714
 * metadata files) plus local find-links directories. */
#include "pkg-mgr.h"
#include "pkg-html5-entities.h"

#include <ctype.h>
#include <dirent.h>
#include <jansson.h>
#include <sys/file.h>
#include <sys/stat.h>

#define ACCEPT_SIMPLE \
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"

/* ---- configuration ----------------------------------------------------- */

PkgIndexConfig *pkg_index_config_free(PkgIndexConfig *c) {
        if (!c)
                return NULL;
        strv_free(c->index_urls);
        strv_free(c->find_links);
        free(c);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgIndexConfig *, pkg_index_config_free);

static char *with_slash(const char *u) {
        return endswith(u, "/") ? xstrdup(u) : xasprintf("%s/", u);
}

static char **split_ws(const char *s, char **v) {
        for (const char *p = s; *p;) {
                p += strspn(p, " \t\n");
                size_t n = strcspn(p, " \t\n");
                if (n == 0)
                        break;
                _cleanup_free_ char *tok = xstrndup(p, n);
                v = strv_append(v, tok);
                p += n;
        }
        return v;
}

static const char *env_nonempty(const char *name) {
        const char *v = getenv(name);
        return v && *v ? v : NULL;
}

int pkg_index_config_new(const char *index_url, char *const *extra_index_urls, char *const *find_links,
                         PkgIndexConfig **ret_config, char **ret_error) {
        _cleanup_(pkg_index_config_freep) PkgIndexConfig *c = xcalloc(1, sizeof(*c));
        c->timeout_ms = PKG_DEFAULT_TIMEOUT_MS;
        c->retries = PKG_DEFAULT_RETRIES;
        const char *primary = index_url;
        if (!primary)
                primary = env_nonempty("PYSPRINTER_INDEX_URL");
        if (!primary)
                primary = env_nonempty("PIP_INDEX_URL");
        if (!primary)
                primary = PKG_DEFAULT_INDEX_URL;
        _cleanup_strv_free_ char **urls = split_ws(primary, NULL);
        if (extra_index_urls)
                for (char *const *e = extra_index_urls; *e; e++)
                        urls = strv_append(urls, *e);
        else if (env_nonempty("PIP_EXTRA_INDEX_URL"))
                urls = split_ws(getenv("PIP_EXTRA_INDEX_URL"), urls);
        for (char **u = urls; u && *u; u++) {
                int r = pkg_index_url_check(*u, ret_error);
                if (r < 0)
                        return r;
                _cleanup_free_ char *s = with_slash(*u);
                if (!strv_contains(c->index_urls, s))
                        c->index_urls = strv_append(c->index_urls, s);
        }
        _cleanup_strv_free_ char **fl = NULL;
        if (find_links)
                for (char *const *f = find_links; *f; f++)
                        fl = strv_append(fl, *f);
        else if (env_nonempty("PIP_FIND_LINKS"))
                fl = split_ws(getenv("PIP_FIND_LINKS"), NULL);
        for (char **f = fl; f && *f; f++) {
                _cleanup_free_ char *local = startswith(*f, "file://") ? pkg_file_url_path(*f) : NULL;
                const char *d = local ?: *f;
                if (strstr(d, "://")) {
                        *ret_error = xasprintf("--find-links '%s': only local directories are supported", *f);
                        return -EINVAL;
                }
                char *abs = realpath(d, NULL);
                if (!abs) {
                        int r = -errno;
                        *ret_error = xasprintf("--find-links '%s': %s", *f, strerror(-r));
                        return -ENOENT;
                }
                c->find_links = strv_append(c->find_links, abs);
                free(abs);
        }
        *ret_config = TAKE_PTR(c);
        return 0;
}

char *pkg_index_config_fingerprint(const PkgIndexConfig *c) {
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        for (char **f = c->find_links; f && *f; f++)
                buf_printf(&b, "find-links %s\n", *f);
        for (char **u = c->index_urls; u && *u; u++)
                buf_printf(&b, "index %s\n", *u);
        return buf_steal(&b);
}

/* "find-links DIR; index URL": where a project was looked for, in an error. */
static char *sources_described(const PkgIndexConfig *c) {
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        for (char **f = c->find_links; f && *f; f++)
                buf_printf(&b, "%sfind-links %s", b.len ? "; " : "", *f);
        for (char **u = c->index_urls; u && *u; u++)
                buf_printf(&b, "%sindex %s", b.len ? "; " : "", *u);
        return buf_steal(&b);
}

/* ---- the client ---------------------------------------------------------- */

typedef struct Meta {
        char *url;
        char *text;
} Meta;

struct PkgIndex {
        PkgIndexConfig cfg;      /* borrowed strv pointers are copied */
        char *cache_dir;
        bool own_cache_dir;
        PkgProject **projects;   /* fetched, including negative results */
        size_t n_projects;
        char **missing;          /* names no source has */
        Meta *metas;
        size_t n_metas;
        const bool *cancel; /* pkg_index_set_cancel() */
        bool no_ranges;     /* a wheel server answered a range with the whole file */
        bool pin_only;      /* pkg_index_set_pin_only() */
        char *data_dir;     /* pkg_index_set_data_dir() */
};

void pkg_index_set_data_dir(PkgIndex *ix, const char *data_dir) {
        free(ix->data_dir);
        ix->data_dir = data_dir ? xstrdup(data_dir) : NULL;
}

void pkg_index_set_pin_only(PkgIndex *ix, bool pin_only) {
        ix->pin_only = pin_only;
}

void pkg_index_set_cancel(PkgIndex *ix, const bool *cancel) {
        ix->cancel = cancel;
}

static void file_done(PkgFile *f) {
        free(f->filename);
        free(f->url);
        free(f->sha256);
        strv_free(f->hashes);
        free(f->requires_python);
        free(f->yanked);
        free(f->metadata_url);
        free(f->metadata_sha256);
        strv_free(f->metadata_hashes);
}

static PkgProject *project_free(PkgProject *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_files; i++)
                file_done(&p->files[i]);
        free(p->files);
        free(p->name);
        free(p->source);
        free(p);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgProject *, project_free);

int pkg_index_new(const PkgIndexConfig *cfg, const char *cache_dir, PkgIndex **ret_index) {
        PkgIndex *ix = xcalloc(1, sizeof(*ix));
        ix->cfg.timeout_ms = cfg->timeout_ms;
        ix->cfg.retries = cfg->retries;
        for (char **u = cfg->index_urls; u && *u; u++)
                ix->cfg.index_urls = strv_append(ix->cfg.index_urls, *u);
        for (char **f = cfg->find_links; f && *f; f++)
                ix->cfg.find_links = strv_append(ix->cfg.find_links, *f);
        ix->cache_dir = cache_dir ? xstrdup(cache_dir) : NULL;
        *ret_index = ix;
        return 0;
}

PkgIndex *pkg_index_free(PkgIndex *ix) {
        if (!ix)
                return NULL;
        strv_free(ix->cfg.index_urls);
        strv_free(ix->cfg.find_links);
        for (size_t i = 0; i < ix->n_projects; i++)
                project_free(ix->projects[i]);
        free(ix->projects);
        strv_free(ix->missing);
        for (size_t i = 0; i < ix->n_metas; i++) {
                free(ix->metas[i].url);
                free(ix->metas[i].text);
        }
        free(ix->metas);
        if (ix->own_cache_dir && ix->cache_dir)
                (void) rm_rf(ix->cache_dir);
        free(ix->cache_dir);
        free(ix->data_dir);
        free(ix);
        return NULL;
}

static PkgHttpOptions http_opts(const PkgIndex *ix) {
        return (PkgHttpOptions){ .timeout_ms = ix->cfg.timeout_ms,
                                 .retries = ix->cfg.retries,
                                 .cancel_all = ix->cancel };
}

static void project_add_file(PkgProject *p, PkgFile f) {
        p->files = xrealloc(p->files, (p->n_files + 1) * sizeof(PkgFile));
        p->files[p->n_files++] = f;
}

/* An index's sha256 (n bytes of h) in the lower-case hex every comparison
 * uses; NULL when h is NULL, and NULL with *malformed set when it is not
 * a sha256 at all. PEP 503 and 691 say "hex digest", not which case: an
 * upper-case one dropped here would leave the file (or its metadata)
 * unverified, and so would a garbled one taken for "no hash". */
static char *index_sha256n(const char *h, size_t n, bool *malformed) {
        if (!h)
                return NULL;
        char *s = xstrndup(h, n);
        for (char *q = s; *q; q++)
                if (*q >= 'A' && *q <= 'F')
                        *q = (char) (*q - 'A' + 'a');
        if (sha256_hex_is_valid(s))
                return s;
        free(s);
        *malformed = true;
        return NULL;
}

static char *index_sha256(const char *h, bool *malformed) {
        return h ? index_sha256n(h, strlen(h), malformed) : NULL;
}

/* One of the page's hashes of a file's metadata, "algo=hex" (name n bytes
 * of algo, hex m bytes of hex): sha256 as the file's own, any other kept
 * in lower case for pkg_index_metadata() to check or refuse. */
static void add_metadata_hash(PkgFile *pf, const char *algo, size_t n, const char *hex, size_t m) {
        if (n == 6 && strneq(algo, "sha256", 6)) {
                if (!pf->metadata_sha256 && !pf->metadata_sha256_malformed)
                        pf->metadata_sha256 = index_sha256n(hex, m, &pf->metadata_sha256_malformed);
                return;
        }
        if (n == 0)
                return;
        _cleanup_free_ char *h = xasprintf("%.*s=%.*s", (int) n, algo, (int) m, hex);
        for (char *q = h; *q; q++)
                if (*q >= 'A' && *q <= 'Z')
                        *q = (char) (*q - 'A' + 'a');
        pf->metadata_hashes = strv_append(pf->metadata_hashes, h);
}

/* Whether hashes ("algo=hex") has one of algo (n bytes). */
static bool hashes_have_algo(char *const *hashes, const char *algo, size_t n) {
        for (char *const *h = hashes; h && *h; h++)
                if (strneq(*h, algo, n) && (*h)[n] == '=')
                        return true;
        return false;
}

/* One of the page's hashes of a file other than its sha256, "algo=hex"
 * (name n bytes of algo, hex m bytes of hex), kept in lower case for the
 * download to check (pkg_http_download_many()); one of an algo already
 * given is not (pip takes the "hashes" object's over the URL's). */
static void add_file_hash(char ***hashes, const char *algo, size_t n, const char *hex, size_t m) {
        if (n == 0 || hashes_have_algo(*hashes, algo, n))
                return;
        _cleanup_free_ char *h = xasprintf("%.*s=%.*s", (int) n, algo, (int) m, hex);
        for (char *q = h; *q; q++)
                if (*q >= 'A' && *q <= 'Z')
                        *q = (char) (*q - 'A' + 'a');
        *hashes = strv_append(*hashes, h);
}

/* Cuts the fragment off a file's URL and takes its hashes: pip reads
 * "#sha256=…" (or any hashlib name's) anywhere among '&'-separated
 * parameters ("#egg=x&sha512=…"); the sha256 into *ret_sha256, the
 * others into *hashes, each checked against the downloaded file. */
static void split_hash_fragment(char *url, char **ret_sha256, bool *malformed, char ***hashes) {
        char *hash = strchr(url, '#');
        if (!hash)
                return;
        *hash = 0;
        for (const char *p = hash + 1; *p;) {
                size_t n = strcspn(p, "&");
                size_t a = strcspn(p, "=&");
                if (n > 7 && !*ret_sha256 && startswith(p, "sha256="))
                        *ret_sha256 = index_sha256n(p + 7, n - 7, malformed);
                else if (n == 7 && startswith(p, "sha256="))
                        *malformed = true;
                else if (a < n && !(a == 6 && startswith(p, "sha256")))
                        /* egg=, subdirectory= too: names no digest has */
                        add_file_hash(hashes, p, a, p + a + 1, n - a - 1);
                p += n + (p[n] == '&');
        }
}

static char *url_basename_unquoted(const char *url) {
        size_t end = strcspn(url, "?#");
        const char *start = url;
        for (size_t i = 0; i < end; i++)
                if (url[i] == '/')
                        start = url + i + 1;
        return percent_decode(start, (size_t) (url + end - start), false, NULL);
}

/* PEP 691 JSON project page. */
/* A page fetched over http(s) links files over http(s) only: a file://
 * link (or any other scheme) on it would have this host's files opened as
 * wheels, at a remote page's word. A local (file://) index may use them. */
static bool link_allowed(const char *base, const char *url) {
        bool remote = strncasecmp(base, "http://", 7) == 0 || strncasecmp(base, "https://", 8) == 0;
        return !remote || strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* PEP 629: a client must refuse a major version it does not know (a newer
 * minor is compatible). The JSON form says it in meta.api-version, the
 * HTML form in <meta name="pypi:repository-version">; none is 1.0. */
static int api_version_check(const char *base, const char *version, char **ret_error) {
        if (!version || strtoul(version, NULL, 10) == 1)
                return 0;
        *ret_error = xasprintf("%s: simple API version %s is not supported (this client reads 1.x, PEP 629)", base,
                               version);
        return -EPROTONOSUPPORT;
}

/* A JSON value as Python's bool() reads it once parsed (absent: false). */
static bool json_truthy(const json_t *v) {
        if (json_is_string(v))
                return json_string_length(v) > 0;
        if (json_is_integer(v))
                return json_integer_value(v) != 0;
        if (json_is_real(v))
                return json_real_value(v) != 0;
        if (json_is_array(v))
                return json_array_size(v) > 0;
        if (json_is_object(v))
                return json_object_size(v) > 0;
        return json_is_true(v);
}

static int parse_json_page(const char *body, const char *base, PkgProject *p, char **ret_error) {
        json_error_t jerr;
        json_t *root = json_loads(body, 0, &jerr);
        if (!root || !json_is_object(root)) {
                *ret_error = xasprintf("%s: malformed PEP 691 JSON (%s)", base, root ? "not an object" : jerr.text);
                json_decref(root);
                return -EBADMSG;
        }
        int r = api_version_check(base, json_get_string(json_object_get(root, "meta"), "api-version"), ret_error);
        if (r < 0) {
                json_decref(root);
                return r;
        }
        json_t *files = json_object_get(root, "files");
        if (!json_is_array(files)) {
                json_decref(root);
                *ret_error = xasprintf("%s: PEP 691 JSON without a files list", base);
                return -EBADMSG;
        }
        size_t i;
        json_t *f;
        json_array_foreach(files, i, f) {
                const char *fn = json_get_string(f, "filename");
                const char *url = json_get_string(f, "url");
                if (!fn || !url || strchr(fn, '/'))
                        continue;
                _cleanup_free_ char *joined = pkg_url_join(base, url);
                if (!link_allowed(base, joined))
                        continue;
                PkgFile pf = { .filename = xstrdup(fn) };
                pf.url = TAKE_PTR(joined);
                /* A #sha256= on the URL counts when "hashes" lacks one, as
                 * pip merges them: a page's only hash is never dropped. */
                _cleanup_free_ char *frag = NULL;
                _cleanup_strv_free_ char **frag_hashes = NULL;
                bool frag_malformed = false;
                split_hash_fragment(pf.url, &frag, &frag_malformed, &frag_hashes);
                json_t *hashes = json_object_get(f, "hashes");
                pf.sha256 = index_sha256(json_get_string(hashes, "sha256"), &pf.sha256_malformed);
                const char *halgo;
                json_t *hv;
                json_object_foreach(hashes, halgo, hv)
                        if (json_is_string(hv) && strcasecmp(halgo, "sha256") != 0)
                                add_file_hash(&pf.hashes, halgo, strlen(halgo), json_string_value(hv),
                                              strlen(json_string_value(hv)));
                for (char **h = frag_hashes; h && *h; h++) {
                        size_t a = strcspn(*h, "=");
                        add_file_hash(&pf.hashes, *h, a, *h + a + 1, strlen(*h + a + 1));
                }
                if (!pf.sha256 && !pf.sha256_malformed) {
                        pf.sha256 = TAKE_PTR(frag);
                        pf.sha256_malformed = frag_malformed;
                }
                const char *rp = json_get_string(f, "requires-python");
                if (rp && *rp)
                        pf.requires_python = xstrdup(rp);
                /* PEP 691: yanked when the value is truthy, a non-empty
                 * string being the reason; "" and false are not yanked,
                 * as pip reads them (Link.from_json). */
                json_t *y = json_object_get(f, "yanked");
                if (json_is_string(y) && json_string_length(y) > 0)
                        pf.yanked = xstrdup(json_string_value(y));
                else if (json_truthy(y))
                        pf.yanked = xstrdup("");
                /* PEP 714: the new key when present, false included (an
                 * index that says false has no file, whatever the legacy
                 * key says); the legacy one only in its absence. */
                json_t *cm = json_object_get(f, "core-metadata");
                if (!cm)
                        cm = json_object_get(f, "dist-info-metadata");
                if (cm && (json_is_true(cm) || json_is_object(cm))) {
                        pf.metadata_url = xasprintf("%s.metadata", pf.url);
                        const char *algo;
                        json_t *v;
                        json_object_foreach(cm, algo, v) {
                                if (json_is_string(v))
                                        add_metadata_hash(&pf, algo, strlen(algo), json_string_value(v),
                                                          json_string_length(v));
                        }
                }
                project_add_file(p, pf);
        }
        json_decref(root);
        return 0;
}

/* The HTML5 named character reference [s, s+n): its UTF-8, or NULL. With
 * `legacy`, only a name HTML5 also reads without its ';' (`&gt=3.8`,
 * `&ampb`); else only one it reads with it. The table is all of
 * html.entities.html5, which Python's html.unescape (pip's parser) reads:
 * before, only the legacy names and a few longer ones were known, and
 * `&hellip;` or `&NewLine;` stayed as text. */
static const char *html_entity(const char *s, size_t n, bool legacy) {
        size_t lo = 0, hi = ELEMENTSOF(html5_entities);
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const char *name = html5_entities[mid].name;
                size_t len = strlen(name);
                int c = memcmp(name, s, MIN(len, n));
                if (c == 0)
                        c = len < n ? -1 : len > n ? 1 : 0;
                if (c == 0)
                        return (legacy ? html5_entities[mid].legacy : html5_entities[mid].semicolon)
                                       ? html5_entities[mid].utf8
                                       : NULL;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* A numeric reference at s[i] == '&', s[i+1] == '#', its ';' optional, as
 * html.unescape reads it: appends its character (UTF-8; HTML5's
 * windows-1252 fix-ups for &#128;…&#159;, U+FFFD for &#0;, a surrogate or
 * past U+10FFFF, nothing for the code points HTML5 calls invalid) and
 * returns the index of its last byte, or returns i when it is not one. */
static size_t html_numeric_ref(Buf *b, const char *s, size_t n, size_t i) {
        size_t j = i + 2;
        bool hex = j < n && (s[j] == 'x' || s[j] == 'X');
        if (hex)
                j++;
        size_t d = j;
        uint32_t v = 0;
        for (; j < n && (hex ? isxdigit((unsigned char) s[j]) : isdigit((unsigned char) s[j])); j++)
                if (v < 0x110000)
                        v = v * (hex ? 16 : 10) + (uint32_t) (isdigit((unsigned char) s[j])
                                                                      ? s[j] - '0'
                                                                      : tolower((unsigned char) s[j]) - 'a' + 10);
        if (j == d)
                return i;
        size_t end = j < n && s[j] == ';' ? j : j - 1;
        for (size_t k = 0; k < ELEMENTSOF(html5_charref_fixups); k++)
                if (html5_charref_fixups[k].code == v) {
                        buf_appends(b, html5_charref_fixups[k].utf8);
                        return end;
                }
        if ((v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff) {
                buf_appends(b, "\xef\xbf\xbd");
                return end;
        }
        for (size_t k = 0; k < ELEMENTSOF(html5_charref_dropped); k++)
                if (html5_charref_dropped[k] == v)
                        return end;
        char u[4];
        size_t len = utf8_encode(v, u);
        buf_append(b, u, len);
        return end;
}

char *pkg_html_unescape(const char *s, size_t n) {
        Buf b;
        buf_init(&b, n + 1);
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '&' || i + 1 == n) {
                        buf_append(&b, s + i, 1);
                        continue;
                }
                if (s[i + 1] == '#') {
                        size_t e = html_numeric_ref(&b, s, n, i);
                        if (e == i)
                                buf_append(&b, s + i, 1);
                        i = e;
                        continue;
                }
                /* The name as html.unescape takes it: up to 32 bytes that
                 * are not space, '<', '&', '#' or ';'. */
                size_t m = 0;
                while (i + 1 + m < n && m < 32 && !memchr("\t\n\f <&#;", s[i + 1 + m], 8))
                        m++;
                const char *name = s + i + 1, *u = NULL;
                size_t used = 0;
                if (m > 0 && i + 1 + m < n && s[i + 1 + m] == ';' && (u = html_entity(name, m, false)))
                        used = m + 1;
                for (size_t x = m; !u && x >= 2; x--)
                        if ((u = html_entity(name, x, true)))
                                used = x;
                if (!u) {
                        buf_append(&b, s + i, 1);
                        continue;
                }
                buf_appends(&b, u);
                i += used;
        }
        return buf_steal(&b);
}

static bool html_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* The '>' that ends the tag whose text starts at s (just after its '<'),
 * or NULL when the page ends first. One inside a quoted attribute value
 * does not end it: data-requires-python=">=3.8" left unescaped is legal
 * HTML, which pip reads as browsers do (the first '>' ended the tag: the
 * value read "" and the attributes after it were lost). */
static const char *html_tag_end(const char *s) {
        for (const char *p = s; *p; p++) {
                if (*p == '>')
                        return p;
                if (*p != '=')
                        continue;
                const char *q = p + 1;
                while (html_space(*q))
                        q++;
                if (*q == '"' || *q == '\'') {
                        p = strchr(q + 1, *q);
                        if (!p)
                                return NULL;
                }
        }
        return NULL;
}

/* Finds attribute `name` inside a tag's text [tag, end), end at its '>'
 * (html_tag_end()), reading the attributes one after the other as HTML
 * does: a name inside another's quoted value is not an attribute.
 * Returns its unescaped value ("" for a bare attribute) or NULL if absent.
 * A bare attribute may be the tag's last (`<a href=… data-yanked>`, PEP
 * 592's yanked file without a reason). The first of a name counts. */
static char *html_attr(const char *tag, const char *end, const char *name) {
        size_t nl = strlen(name);
        const char *p = tag;
        while (p < end && !html_space(*p) && *p != '/')
                p++; /* the tag's own name */
        while (p < end) {
                while (p < end && (html_space(*p) || *p == '/'))
                        p++;
                const char *an = p;
                while (p < end && !html_space(*p) && *p != '=' && *p != '/')
                        p++;
                if (p == an) {
                        if (p < end)
                                p++; /* a stray '=' */
                        continue;
                }
                size_t al = (size_t) (p - an);
                const char *q = p, *v = NULL;
                size_t vl = 0;
                while (q < end && html_space(*q))
                        q++;
                if (q < end && *q == '=') {
                        q++;
                        while (q < end && html_space(*q))
                                q++;
                        if (q < end && (*q == '"' || *q == '\'')) {
                                const char *e = memchr(q + 1, *q, (size_t) (end - q - 1));
                                if (!e)
                                        return NULL;
                                v = q + 1;
                                vl = (size_t) (e - v);
                                p = e + 1;
                        } else {
                                const char *e = q;
                                while (e < end && !html_space(*e))
                                        e++;
                                v = q;
                                vl = (size_t) (e - q);
                                p = e;
                        }
                }
                if (al == nl && strncasecmp(an, name, nl) == 0)
                        return v ? pkg_html_unescape(v, vl) : xstrdup("");
        }
        return NULL;
}

static bool tag_is(const char *s, const char *name) {
        size_t n = strlen(name);
        return strncasecmp(s, name, n) == 0 && html_space(s[n]);
}

/* A <meta> of the page's head: refused if it names an API version this
 * client does not read. */
static int html_meta_check(const char *tag, const char *end, const char *base, char **ret_error) {
        _cleanup_free_ char *name = html_attr(tag, end, "name");
        if (!name || strcasecmp(name, "pypi:repository-version") != 0)
                return 0;
        _cleanup_free_ char *content = html_attr(tag, end, "content");
        return api_version_check(base, content, ret_error);
}

/* PEP 503 HTML project page: every <a href> is a file. */
static int parse_html_page(const char *body, const char *base, PkgProject *p, char **ret_error) {
        /* <base href>: what the links are relative to, as for pip and
         * browsers. Which links are allowed is still the page's say. */
        _cleanup_free_ char *links_base = NULL;
        for (const char *s = body; (s = strchr(s, '<'));) {
                s++;
                /* A link commented out of the page (a withdrawn wheel on a
                 * hand-kept index) is not a file, as for pip's parser. */
                if (startswith(s, "!--")) {
                        const char *close = strstr(s + 3, "-->");
                        if (!close)
                                break;
                        s = close + 3;
                        continue;
                }
                bool meta = tag_is(s, "meta"), base_tag = tag_is(s, "base");
                if (!meta && !base_tag && !tag_is(s, "a"))
                        continue;
                const char *end = html_tag_end(s);
                if (!end)
                        break;
                if (base_tag) {
                        _cleanup_free_ char *h = links_base ? NULL : html_attr(s, end, "href");
                        if (h && *h)
                                links_base = pkg_url_join(base, h);
                        s = end;
                        continue;
                }
                if (meta) {
                        int r = html_meta_check(s, end, base, ret_error);
                        if (r < 0)
                                return r;
                        s = end;
                        continue;
                }
                _cleanup_free_ char *href = html_attr(s, end, "href");
                if (!href || !*href) {
                        s = end;
                        continue;
                }
                _cleanup_free_ char *joined = pkg_url_join(links_base ?: base, href);
                if (!link_allowed(base, joined)) {
                        s = end;
                        continue;
                }
                PkgFile pf = {};
                pf.url = TAKE_PTR(joined);
                split_hash_fragment(pf.url, &pf.sha256, &pf.sha256_malformed, &pf.hashes);
                pf.filename = url_basename_unquoted(pf.url);
                pf.requires_python = html_attr(s, end, "data-requires-python");
                if (pf.requires_python && !*pf.requires_python) {
                        free(pf.requires_python);
                        pf.requires_python = NULL;
                }
                pf.yanked = html_attr(s, end, "data-yanked");
                _cleanup_free_ char *cm = html_attr(s, end, "data-core-metadata");
                if (!cm)
                        cm = html_attr(s, end, "data-dist-info-metadata");
                if (cm && !streq(cm, "false")) {
                        pf.metadata_url = xasprintf("%s.metadata", pf.url);
                        /* "ALGO=hex" (pip's partition("=")); "true" or a
                         * bare attribute has no hash. */
                        const char *eq = strchr(cm, '=');
                        if (eq)
                                add_metadata_hash(&pf, cm, (size_t) (eq - cm), eq + 1, strlen(eq + 1));
                }
                if (!*pf.filename || strchr(pf.filename, '/'))
                        file_done(&pf);
                else
                        project_add_file(p, pf);
                s = end;
        }
        return 0;
}

static bool is_json_type(const char *ct) {
        return ct && startswith(ct, "application/vnd.pypi.simple.v1+json");
}

/* Project name of a distribution file name, normalised; NULL if unknown. */
static char *file_project(const char *fn) {
        if (endswith(fn, ".whl")) {
                PkgWheelName *w = NULL;
                if (pkg_wheel_name_parse(fn, &w) < 0)
                        return NULL;
                char *n = pkg_name_normalize(w->name);
                pkg_wheel_name_free(w);
                return n;
        }
        /* sdist: name-version.tar.gz|zip; the version is after the last '-'. */
        const char *ext = endswith(fn, ".tar.gz") ? ".tar.gz" : endswith(fn, ".zip") ? ".zip" : NULL;
        if (!ext)
                return NULL;
        size_t stem = strlen(fn) - strlen(ext);
        const char *dash = NULL;
        for (const char *q = fn; q < fn + stem; q++)
                if (*q == '-')
                        dash = q;
        if (!dash)
                return NULL;
        _cleanup_free_ char *n = xstrndup(fn, (size_t) (dash - fn));
        return pkg_name_normalize(n);
}

static int find_links_project(const char *dir, const char *name, PkgProject *p) {
        DIR *d = opendir(dir);
        if (!d)
                return -errno;
        struct dirent *de;
        char **names = NULL;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *pn = file_project(de->d_name);
                if (pn && streq(pn, name))
                        names = strv_append(names, de->d_name);
        }
        closedir(d);
        /* Directory order is arbitrary: sort for determinism. */
        size_t n = strv_length(names);
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
                        char *t = names[j];
                        names[j] = names[j - 1];
                        names[j - 1] = t;
                }
        for (size_t i = 0; i < n; i++) {
                PkgFile pf = { .filename = xstrdup(names[i]) };
                _cleanup_free_ char *path = path_join(dir, names[i]);
                pf.url = pkg_file_url_from_path(path);
                project_add_file(p, pf);
        }
        strv_free(names);
        return 0;
}

int pkg_index_project(PkgIndex *ix, const char *name, const PkgProject **ret_project, char **ret_error) {
        _cleanup_free_ char *norm = pkg_name_normalize(name);
        if (!norm || !pkg_name_is_valid(name)) {
                *ret_error = xasprintf("'%s' is not a valid project name", name);
                return -EINVAL;
        }
        for (size_t i = 0; i < ix->n_projects; i++)
                if (streq(ix->projects[i]->name, norm)) {
                        *ret_project = ix->projects[i];
                        return 0;
                }
        if (strv_contains(ix->missing, norm)) {
                *ret_error = xasprintf("no project named '%s' on any configured index", norm);
                return -ENOENT;
        }
        _cleanup_(project_freep) PkgProject *p = xcalloc(1, sizeof(*p));
        p->name = xstrdup(norm);
        for (char **f = ix->cfg.find_links; f && *f; f++) {
                (void) find_links_project(*f, norm, p);
                if (p->n_files > 0) {
                        p->source = xstrdup(*f);
                        goto found;
                }
        }
        PkgHttpOptions o = http_opts(ix);
        for (char **u = ix->cfg.index_urls; u && *u; u++) {
                _cleanup_free_ char *url = xasprintf("%s%s/", *u, norm);
                PkgHttpResponse resp = {};
                _cleanup_free_ char *err = NULL;
                int r = pkg_http_get(url, ACCEPT_SIMPLE, PKG_PAGE_MAX, &o, &resp, &err);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        *ret_error = TAKE_PTR(err);
                        return r;
                }
                if (is_json_type(resp.content_type))
                        r = parse_json_page(resp.body, resp.effective_url, p, ret_error);
                else
                        r = parse_html_page(resp.body, resp.effective_url, p, ret_error);
                pkg_http_response_done(&resp);
                if (r < 0)
                        return r;
                /* An index that knows the name but lists no files still
                 * "has" it: the first index that answers wins. */
                p->source = xstrdup(*u);
                goto found;
        }
        ix->missing = strv_append(ix->missing, norm);
        {
                _cleanup_free_ char *where = sources_described(&ix->cfg);
                *ret_error = xasprintf("no project named '%s' on any configured source (%s)", norm, where);
        }
        return -ENOENT;
found:
        ix->projects = xrealloc(ix->projects, (ix->n_projects + 1) * sizeof(PkgProject *));
        ix->projects[ix->n_projects++] = p;
        *ret_project = TAKE_PTR(p);
        return 0;
}

static int ensure_cache_dir(PkgIndex *ix) {
        if (ix->cache_dir)
                return mkdir_p(ix->cache_dir, 0755);
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *t = xasprintf("%s/pysprinter-wheels-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(t))
                return -errno;
        ix->cache_dir = TAKE_PTR(t);
        ix->own_cache_dir = true;
        return 0;
}

static int refuse_malformed_hash(const PkgFile *f, bool metadata, char **ret_error) {
        *ret_error = xasprintf("the index's sha256 for %s%s is not a sha256 (64 hex digits): not used unverified",
                               f->filename, metadata ? "'s metadata" : "");
        return -EBADMSG;
}

/* The wheel's lock when the index's cache is the store's
 * (pkg_index_set_data_dir()): *ret_fd, or -EBADF left there without one. */
static int wheel_lock(PkgIndex *ix, const PkgFile *f, int *ret_fd, char **ret_error) {
        if (!ix->data_dir || !ix->cache_dir || !f->sha256 || !sha256_hex_is_valid(f->sha256))
                return 0;
        int r = pkg_wheel_lock(ix->data_dir, f->sha256, LOCK_EX, ix->cancel, ret_fd);
        if (r < 0)
                *ret_error = r == -ECANCELED ? xstrdup("cancelled")
                                             : xasprintf("cannot lock %s/cache/locks/%s: %s", ix->data_dir, f->sha256,
                                                         strerror(-r));
        return r;
}

/* pkg_index_file_path(); locked: the caller holds the wheel's lock
 * (wheel_lock()), else it is taken here around a download. */
static int file_path(PkgIndex *ix, const PkgFile *f, bool locked, char **ret_path, char **ret_error) {
        if (f->sha256_malformed)
                return refuse_malformed_hash(f, false, ret_error);
        if (startswith(f->url, "file://")) {
                _cleanup_free_ char *path = pkg_file_url_path(f->url);
                int r = f->hashes_checked ? 0
                                          : pkg_file_check_page_hashes(path, f->hashes, f->filename, f->url, ret_error);
                if (r < 0)
                        return r;
                ((PkgFile *) f)->hashes_checked = true;
                *ret_path = TAKE_PTR(path);
                return 0;
        }
        int r = ensure_cache_dir(ix);
        if (r < 0) {
                *ret_error = xasprintf("cannot create the wheel cache %s: %s", ix->cache_dir ? ix->cache_dir : "",
                                       strerror(-r));
                return r;
        }
        if (f->sha256) {
                _cleanup_free_ char *dest = xasprintf("%s/%s.whl", ix->cache_dir, f->sha256);
                _cleanup_close_ int lock = -EBADF;
                if (access(dest, F_OK) < 0 && !locked) {
                        /* The store's wheel cache: fetched under the
                         * wheel's lock, as an installer fetches it
                         * (another one may be writing it now). */
                        r = wheel_lock(ix, f, &lock, ret_error);
                        if (r < 0)
                                return r;
                }
                if (access(dest, F_OK) == 0) {
                        /* Its sha256 was checked when it came; the page's
                         * other hashes may not have been (one more read,
                         * only when the page gives any). */
                        if (!f->hashes_checked) {
                                r = pkg_file_check_page_hashes(dest, f->hashes, f->filename, f->url, ret_error);
                                if (r < 0)
                                        return r;
                                ((PkgFile *) f)->hashes_checked = true;
                        }
                        *ret_path = TAKE_PTR(dest);
                        return 0;
                }
                /* Under the lock, a download cut short stays as the
                 * wheel's part file, which this one resumes, and so would
                 * the install's own download (pkg_store_part_path()). */
                _cleanup_free_ char *part = ix->data_dir && (locked || lock >= 0)
                                                    ? pkg_store_part_path(ix->data_dir, f->sha256)
                                                    : NULL;
                PkgDownload d = { .url = f->url,
                                  .dest = dest,
                                  .sha256 = f->sha256,
                                  .hashes = f->hashes,
                                  .what = f->filename,
                                  .resume = part };
                PkgHttpOptions o = http_opts(ix);
                r = pkg_http_download_many(&d, 1, &o, NULL, NULL, ret_error);
                if (r < 0)
                        return r;
                ((PkgFile *) f)->hashes_checked = true;
                *ret_path = TAKE_PTR(dest);
                return 0;
        }
        /* No hash from the index: download, then name the file by its hash. */
        _cleanup_free_ char *rnd = NULL;
        r = random_hex(8, &rnd);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = xasprintf("%s/nohash-%s.whl", ix->cache_dir, rnd);
        /* Its sha256 computed as it arrives, with any other hash the page
         * gives (a sha512-only index): one read of the bytes. */
        char hex[SHA256_HEX_SIZE];
        PkgDownload d = { .url = f->url, .dest = tmp, .hashes = f->hashes, .what = f->filename, .ret_sha256 = hex };
        PkgHttpOptions o = http_opts(ix);
        r = pkg_http_download_many(&d, 1, &o, NULL, NULL, ret_error);
        if (r < 0)
                return r;
        _cleanup_free_ char *dest = xasprintf("%s/%s.whl", ix->cache_dir, hex);
        if (rename(tmp, dest) < 0)
                return -errno;
        ((PkgFile *) f)->sha256 = xstrdup(hex);
        ((PkgFile *) f)->hashes_checked = true;
        *ret_path = TAKE_PTR(dest);
        return 0;
}

int pkg_index_file_path(PkgIndex *ix, const PkgFile *f, char **ret_path, char **ret_error) {
        return file_path(ix, f, false, ret_path, ret_error);
}

int pkg_index_file_sha256(PkgIndex *ix, const PkgFile *f, const char **ret_sha256, char **ret_error) {
        if (f->sha256_malformed)
                return refuse_malformed_hash(f, false, ret_error);
        /* A sha256 from the page pins the bytes, but a page that also gives
         * a sha512 (say) those bytes do not have contradicts itself: for an
         * install, the wheel is fetched now (into the cache the install
         * then uses: the lock it installs from keeps only the sha256) and
         * checked against every hash, as pip does. A lock alone (pin_only)
         * fetches no wheel with PEP 658 metadata (issue 15), as pip-compile
         * does not; whoever fetches the bytes checks them. */
        if (!ix->pin_only && (f->sha256 || startswith(f->url, "file://")) && !f->hashes_checked &&
            pkg_page_hashes_computable(f->hashes)) {
                _cleanup_free_ char *path = NULL;
                int r = pkg_index_file_path(ix, f, &path, ret_error);
                if (r < 0)
                        return r;
        }
        if (!f->sha256) {
                if (startswith(f->url, "file://")) {
                        char hex[SHA256_HEX_SIZE];
                        _cleanup_free_ char *path = pkg_file_url_path(f->url);
                        int r = sha256_file_hex(path, hex);
                        if (r < 0) {
                                *ret_error = xasprintf("%s: %s", path, strerror(-r));
                                return r;
                        }
                        ((PkgFile *) f)->sha256 = xstrdup(hex);
                } else {
                        _cleanup_free_ char *path = NULL;
                        int r = pkg_index_file_path(ix, f, &path, ret_error);
                        if (r < 0)
                                return r;
                }
        }
        *ret_sha256 = f->sha256;
        return 0;
}

const char *pkg_index_cache_dir(const PkgIndex *ix) {
        return ix->cache_dir;
}

/* No PEP 658 file: the wheel's METADATA read by HTTP ranges (uv's way),
 * unless the wheel is here already or its server answered a range request
 * with the whole file once (then every wheel is downloaded whole, as before:
 * one aborted GET per client, not one per wheel). Any failure leaves the
 * caller to download the wheel, which also reports what is wrong with it. */
static int metadata_by_ranges(PkgIndex *ix, const PkgFile *f, char **ret_text) {
        if (ix->no_ranges || f->sha256_malformed || !(startswith(f->url, "http://") || startswith(f->url, "https://")))
                return -EOPNOTSUPP;
        if (f->sha256 && ix->cache_dir) {
                _cleanup_free_ char *cached = xasprintf("%s/%s.whl", ix->cache_dir, f->sha256);
                if (access(cached, F_OK) == 0)
                        return -EEXIST;
        }
        /* A download of the whole wheel was cut short (a part file is
         * kept): finishing it costs the rest of it, which the install
         * needs anyway, where ranges would cost their GETs and then the
         * install the rest. */
        if (f->sha256 && ix->data_dir) {
                _cleanup_free_ char *part = pkg_store_part_path(ix->data_dir, f->sha256);
                if (access(part, F_OK) == 0)
                        return -EEXIST;
        }
        _cleanup_free_ char *err = NULL;
        PkgHttpOptions o = http_opts(ix);
        int r = pkg_wheel_read_metadata_ranged(f->url, &o, ret_text, &err);
        if (r == -EOPNOTSUPP)
                ix->no_ranges = true;
        return r;
}

/* No PEP 658 file, and the wheel is in the store already (installed for
 * another environment): its METADATA is there, no byte asked of the
 * index. Without the wheel's lock (a read that a prune cuts short fails,
 * and the caller asks the index). */
static int metadata_from_store(PkgIndex *ix, const PkgFile *f, char **ret_text) {
        if (!ix->data_dir || f->sha256_malformed || !f->sha256 || !sha256_hex_is_valid(f->sha256))
                return -ENOENT;
        _cleanup_free_ char *dir = pkg_store_dir(ix->data_dir, f->sha256);
        return pkg_store_read_metadata(dir, ret_text);
}

/* The metadata's bytes against each of the page's other hashes that can
 * be computed: every one must match (a page that gives two hashes of the
 * same bytes and one is wrong is not trusted for either). */
static int check_metadata_hashes(const PkgFile *f, const void *data, size_t n, char **ret_error) {
        PkgHashMismatch m = {};
        int r = pkg_bytes_check_page_hashes(data, n, f->metadata_hashes, &m);
        if (r == -EBADMSG)
                *ret_error = xasprintf("%s: %s %s does not match the index's %s", f->metadata_url, m.algo, m.got,
                                       m.want);
        else if (r < 0)
                *ret_error = xasprintf("%s: cannot compute its %s", f->metadata_url, m.algo ? m.algo : "hashes");
        free(m.algo);
        return r;
}

int pkg_index_metadata(PkgIndex *ix, const PkgFile *f, char **ret_text, char **ret_error) {
        for (size_t i = 0; i < ix->n_metas; i++)
                if (streq(ix->metas[i].url, f->url)) {
                        *ret_text = xstrdup(ix->metas[i].text);
                        return 0;
                }
        char *text = NULL;
        int r;
        if (f->metadata_url && f->metadata_sha256_malformed)
                return refuse_malformed_hash(f, true, ret_error);
        if (f->metadata_url) {
                PkgHttpResponse resp = {};
                PkgHttpOptions o = http_opts(ix);
                o.identity = true;
                r = pkg_http_get(f->metadata_url, NULL, PKG_METADATA_MAX, &o, &resp, ret_error);
                if (r < 0)
                        return r;
                if (f->metadata_sha256) {
                        char h[SHA256_HEX_SIZE];
                        sha256_hex(resp.body, resp.len, h);
                        if (!streq(h, f->metadata_sha256)) {
                                *ret_error = xasprintf("%s: sha256 %s does not match the index's %s", f->metadata_url, h,
                                                       f->metadata_sha256);
                                pkg_http_response_done(&resp);
                                return -EBADMSG;
                        }
                }
                r = check_metadata_hashes(f, resp.body, resp.len, ret_error);
                if (r < 0) {
                        pkg_http_response_done(&resp);
                        return r;
                }
                text = TAKE_PTR(resp.body);
                pkg_http_response_done(&resp);
        } else if (metadata_from_store(ix, f, &text) < 0 && metadata_by_ranges(ix, f, &text) < 0) {
                /* The wheel itself, under its lock: the early fetch of
                 * the same wheel (pkg_prefetch_add(), queued as the page
                 * was read) may hold it, and unpack it into the store
                 * without leaving the file: its METADATA is read there
                 * then, rather than a second download. */
                _cleanup_close_ int lock = -EBADF;
                r = wheel_lock(ix, f, &lock, ret_error);
                if (r < 0)
                        return r;
                _cleanup_free_ char *cached = lock >= 0 ? xasprintf("%s/%s.whl", ix->cache_dir, f->sha256) : NULL;
                _cleanup_free_ char *dir = lock >= 0 ? pkg_store_dir(ix->data_dir, f->sha256) : NULL;
                if (!dir || access(cached, F_OK) == 0 || pkg_store_read_metadata(dir, &text) < 0) {
                        _cleanup_free_ char *path = NULL;
                        r = file_path(ix, f, lock >= 0, &path, ret_error);
                        if (r < 0)
                                return r;
                        r = pkg_wheel_read_metadata(path, &text, ret_error);
                        if (r < 0)
                                return r;
                }
        }
        ix->metas = xrealloc(ix->metas, (ix->n_metas + 1) * sizeof(Meta));
        ix->metas[ix->n_metas++] = (Meta) { .url = xstrdup(f->url), .text = xstrdup(text) };
        *ret_text = text;
        return 0;
}

int pkg_index_names(PkgIndex *ix, char ***ret_names, char **ret_error) {
        char **names = NULL;
        for (char **f = ix->cfg.find_links; f && *f; f++) {
                DIR *d = opendir(*f);
                if (!d)
                        continue;
                struct dirent *de;
                while ((de = readdir(d))) {
                        _cleanup_free_ char *pn = file_project(de->d_name);
                        if (pn && !strv_contains(names, pn))
                                names = strv_append(names, pn);
                }
                closedir(d);
        }
        PkgHttpOptions o = http_opts(ix);
        o.retries = 0;
        for (char **u = ix->cfg.index_urls; u && *u; u++) {
                PkgHttpResponse resp = {};
                _cleanup_free_ char *err = NULL;
                if (pkg_http_get(*u, ACCEPT_SIMPLE, PKG_PAGE_MAX, &o, &resp, &err) < 0)
                        continue;
                if (is_json_type(resp.content_type)) {
                        json_t *root = json_loads(resp.body, 0, NULL);
                        size_t i;
                        json_t *pj;
                        json_array_foreach(json_object_get(root, "projects"), i, pj) {
                                const char *n = json_get_string(pj, "name");
                                if (n)
                                        names = strv_append(names, n);
                        }
                        json_decref(root);
                } else {
                        for (const char *s = resp.body; (s = strstr(s, "<a"));) {
                                const char *gt = html_tag_end(s);
                                if (!gt)
                                        break;
                                const char *lt = strchr(gt, '<');
                                if (!lt)
                                        break;
                                _cleanup_free_ char *t = pkg_html_unescape(gt + 1, (size_t) (lt - gt - 1));
                                names = strv_append(names, strstrip(t));
                                s = lt;
                        }
                }
                pkg_http_response_done(&resp);
        }
        *ret_names = names;
        return 0;
}

/* Optimal string alignment distance (Damerau-Levenshtein without
 * repeated edits of one substring): typos are mostly one swap or one key. */
static size_t osa_distance(const char *a, const char *b, size_t cap) {
        size_t la = strlen(a), lb = strlen(b);
        if ((la > lb ? la - lb : lb - la) > cap)
                return cap + 1;
        size_t *d = xcalloc((la + 1) * (lb + 1), sizeof(size_t));
#define D(i, j) d[(i) * (lb + 1) + (j)]
        for (size_t i = 0; i <= la; i++)
                D(i, 0) = i;
        for (size_t j = 0; j <= lb; j++)
                D(0, j) = j;
        for (size_t i = 1; i <= la; i++)
                for (size_t j = 1; j <= lb; j++) {
                        size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
                        size_t v = MIN(D(i - 1, j) + 1, D(i, j - 1) + 1);
                        v = MIN(v, D(i - 1, j - 1) + cost);
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                                v = MIN(v, D(i - 2, j - 2) + 1);
                        D(i, j) = v;
                }
        size_t r = D(la, lb);
#undef D
        free(d);
        return r;
}

char **pkg_close_names(const char *name, char *const *candidates, size_t max) {
        _cleanup_free_ char *n = pkg_name_normalize(name);
        if (!n)
                return NULL;
        size_t cap = strlen(n) <= 4 ? 1 : strlen(n) <= 8 ? 2 : 3;
        size_t nc = strv_length(candidates);
        typedef struct {
                size_t dist;
                char *name;
        } Hit;
        Hit *hits = xcalloc(nc + 1, sizeof(Hit));
        size_t nh = 0;
        for (size_t i = 0; i < nc; i++) {
                _cleanup_free_ char *c = pkg_name_normalize(candidates[i]);
                if (!c || streq(c, n))
                        continue;
                size_t dist = osa_distance(n, c, cap);
                /* A name that only differs by separators or a prefix like
                 * "python-" is also worth suggesting. */
                if (dist > cap && (startswith(c, n) || startswith(n, c)) && MIN(strlen(c), strlen(n)) >= 4)
                        dist = cap;
                if (dist > cap)
                        continue;
                bool dup = false;
                for (size_t k = 0; k < nh; k++)
                        if (streq(hits[k].name, c))
                                dup = true;
                if (dup)
                        continue;
                hits[nh++] = (Hit) { dist, TAKE_PTR(c) };
        }
        for (size_t i = 1; i < nh; i++)
                for (size_t j = i; j > 0 && (hits[j - 1].dist > hits[j].dist ||
                                             (hits[j - 1].dist == hits[j].dist && strcmp(hits[j - 1].name, hits[j].name) > 0));
                     j--) {
                        Hit t = hits[j];
                        hits[j] = hits[j - 1];
                        hits[j - 1] = t;
                }
        char **out = NULL;
        for (size_t i = 0; i < nh; i++) {
                if (i < max)
                        out = strv_append(out, hits[i].name);
                free(hits[i].name);
        }
        free(hits);
        return out;
}
