/* AWS Signature Version 4 verification (the Lambda API's clients sign with
 * it). The access key id is public — it only says whose secret to use; the
 * request is authentic when the HMAC-SHA256 chain keyed by that secret over
 * the canonical request matches the signature. See AWS's "Create a signed
 * AWS API request" (canonical request, string to sign, signing key). */
#include <assert.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

#include "daemon.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_MAX_SKEW_USEC (15 * 60 * USEC_PER_SEC)

void sigv4_auth_done(SigV4Auth *a) {
        free(a->access_key_id);
        free(a->date);
        free(a->region);
        free(a->service);
        strv_free(a->signed_headers);
        free(a->signature);
        *a = (SigV4Auth) {};
}

/* Value of "Name=" inside the comma-separated parameter list, up to the next
 * ',' (NULL when absent). */
static char *auth_param(const char *params, const char *name) {
        size_t n = strlen(name);
        for (const char *p = params; p && *p;) {
                while (*p == ' ' || *p == ',')
                        p++;
                size_t len = strcspn(p, ",");
                if (len > n && strneq(p, name, n) && p[n] == '=') {
                        const char *v = p + n + 1, *e = p + len;
                        while (e > v && e[-1] == ' ')
                                e--;
                        return xstrndup(v, (size_t) (e - v));
                }
                p += len;
        }
        return NULL;
}

int sigv4_parse_authorization(const char *h, SigV4Auth *ret, char **ret_error) {
        SigV4Auth a = {};
        _cleanup_free_ char *cred = NULL, *signed_h = NULL;

        assert(h);
        if (!startswith(h, SIGV4_ALGORITHM " ")) {
                *ret_error = xstrdup("the Authorization is not " SIGV4_ALGORITHM);
                return -EINVAL;
        }
        const char *params = h + strlen(SIGV4_ALGORITHM) + 1;
        cred = auth_param(params, "Credential");
        signed_h = auth_param(params, "SignedHeaders");
        a.signature = auth_param(params, "Signature");
        if (!cred || !signed_h || !a.signature) {
                sigv4_auth_done(&a);
                *ret_error = xstrdup("the SigV4 Authorization needs Credential, SignedHeaders and Signature");
                return -EINVAL;
        }
        /* Credential=KEYID/YYYYMMDD/REGION/SERVICE/aws4_request */
        char *parts[5] = {};
        size_t np = 0;
        for (char *p = cred; np < 5;) {
                parts[np++] = p;
                char *slash = strchr(p, '/');
                if (!slash)
                        break;
                *slash = 0;
                p = slash + 1;
        }
        if (np != 5 || !*parts[0] || strlen(parts[1]) != 8 || !*parts[2] || !*parts[3] ||
            !streq(parts[4], "aws4_request")) {
                sigv4_auth_done(&a);
                *ret_error = xstrdup("the SigV4 Credential must be KEYID/YYYYMMDD/REGION/SERVICE/aws4_request");
                return -EINVAL;
        }
        a.access_key_id = xstrdup(parts[0]);
        a.date = xstrdup(parts[1]);
        a.region = xstrdup(parts[2]);
        a.service = xstrdup(parts[3]);
        for (char *p = signed_h; *p;) {
                size_t len = strcspn(p, ";");
                _cleanup_free_ char *name = xstrndup(p, len);
                for (char *q = name; *q; q++)
                        *q = (char) tolower((unsigned char) *q);
                if (*name)
                        a.signed_headers = strv_append(a.signed_headers, name);
                p += len + (p[len] == ';');
        }
        if (!a.signed_headers || !strv_contains(a.signed_headers, "host") || strlen(a.signature) != 64) {
                sigv4_auth_done(&a);
                *ret_error = xstrdup("the SigV4 SignedHeaders must include host, and the Signature be 64 hex digits");
                return -EINVAL;
        }
        *ret = a;
        return 0;
}

static void hex(const uint8_t *md, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void hmac(const void *key, size_t key_len, const char *data, uint8_t out[32]) {
        unsigned len = 32;
        HMAC(EVP_sha256(), key, (int) key_len, (const unsigned char *) data, strlen(data), out, &len);
}

/* AWS's URI encoding: unreserved characters as they are, every other byte
 * %XX (uppercase); '/' kept when keep_slash. */
static void uri_encode(Buf *b, const char *s, size_t n, bool keep_slash) {
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) s[i];
                if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/'))
                        buf_append(b, (const char *) &ch, 1);
                else
                        buf_printf(b, "%%%02X", ch);
        }
}

typedef struct QueryPair {
        char *key, *value; /* encoded the canonical way */
} QueryPair;

static int pair_cmp(const void *x, const void *y) {
        const QueryPair *a = x, *b = y;
        int c = strcmp(a->key, b->key);
        return c ? c : strcmp(a->value, b->value);
}

/* key=value pairs, each decoded then encoded again the canonical way,
 * sorted by key then value. */
static void canonical_query(Buf *out, const char *query) {
        QueryPair *v = NULL;
        size_t n = 0;
        for (const char *p = query; p && *p;) {
                size_t len = strcspn(p, "&");
                if (len > 0) {
                        size_t klen = strcspn(p, "=&"), kn, vn;
                        const char *val = klen < len ? p + klen + 1 : p + len;
                        size_t vlen = klen < len ? len - klen - 1 : 0;
                        _cleanup_free_ char *k = percent_decode(p, klen, false, &kn),
                                            *vv = percent_decode(val, vlen, false, &vn);
                        Buf kb, vb;
                        buf_init(&kb, SIZE_MAX);
                        buf_init(&vb, SIZE_MAX);
                        uri_encode(&kb, k, kn, false);
                        uri_encode(&vb, vv, vn, false);
                        v = xrealloc(v, (n + 1) * sizeof(QueryPair));
                        v[n].key = kb.data ? buf_steal(&kb) : xstrdup("");
                        v[n].value = vb.data ? buf_steal(&vb) : xstrdup("");
                        n++;
                }
                p += len + (p[len] == '&');
        }
        if (n)
                qsort(v, n, sizeof(QueryPair), pair_cmp);
        for (size_t i = 0; i < n; i++) {
                buf_printf(out, "%s%s=%s", i ? "&" : "", v[i].key, v[i].value);
                free(v[i].key);
                free(v[i].value);
        }
        free(v);
}

/* Header value trimmed, inner runs of spaces collapsed to one. */
static void canonical_header_value(Buf *out, const char *v) {
        while (*v == ' ' || *v == '\t')
                v++;
        bool space = false;
        for (; *v; v++) {
                if (*v == ' ' || *v == '\t') {
                        space = true;
                        continue;
                }
                if (space)
                        buf_appends(out, " ");
                space = false;
                buf_append(out, v, 1);
        }
}

static bool amz_date_parse(const char *s, usec_t *ret) {
        struct tm tm = {};
        if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
                return false;
        const char *end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
        if (!end || *end)
                return false;
        time_t t = timegm(&tm);
        if (t == (time_t) -1)
                return false;
        *ret = (usec_t) t * USEC_PER_SEC;
        return true;
}

int sigv4_verify(const SigV4Request *rq, const SigV4Auth *a, const char *secret, usec_t now, char **ret_error) {
        assert(rq && a && secret && rq->header);
        const char *amz_date = rq->header(rq->userdata, "x-amz-date");
        usec_t t;

        /* The clock window bounds how long a captured request can be
         * replayed. */
        if (!amz_date_parse(amz_date, &t)) {
                *ret_error = xstrdup("SigV4 needs an X-Amz-Date header (YYYYMMDDTHHMMSSZ)");
                return -EPERM;
        }
        if (!strneq(amz_date, a->date, 8)) {
                *ret_error = xstrdup("the SigV4 Credential's date is not the X-Amz-Date's");
                return -EPERM;
        }
        if (now && (t > now + SIGV4_MAX_SKEW_USEC || t + SIGV4_MAX_SKEW_USEC < now)) {
                *ret_error = xasprintf("the request was signed at %s, more than 15 minutes from the server's clock",
                                       amz_date);
                return -EPERM;
        }

        /* The payload hash: the body's sha256, or what the client declared
         * (which then must be the body's, unless it is UNSIGNED-PAYLOAD). */
        char body_hash[65];
        sha256_hex(rq->body ? rq->body : "", rq->body_len, body_hash);
        const char *declared = rq->header(rq->userdata, "x-amz-content-sha256");
        const char *payload_hash = body_hash;
        if (declared) {
                if (streq(declared, "UNSIGNED-PAYLOAD"))
                        payload_hash = declared;
                else if (strcasecmp(declared, body_hash) != 0) {
                        *ret_error = xstrdup("X-Amz-Content-Sha256 is not the body's sha256");
                        return -EPERM;
                }
        }

        Buf cr;
        buf_init(&cr, SIZE_MAX);
        buf_printf(&cr, "%s\n", rq->method);
        const char *q = strchr(rq->raw_target, '?');
        size_t path_len = q ? (size_t) (q - rq->raw_target) : strlen(rq->raw_target);
        /* Non-S3 services encode the (already encoded) path once more. */
        if (path_len == 0)
                buf_appends(&cr, "/");
        uri_encode(&cr, rq->raw_target, path_len, true);
        buf_appends(&cr, "\n");
        canonical_query(&cr, q ? q + 1 : NULL);
        buf_appends(&cr, "\n");
        for (char **h = a->signed_headers; *h; h++) {
                const char *v = rq->header(rq->userdata, *h);
                if (!v) {
                        buf_free(&cr);
                        *ret_error = xasprintf("signed header '%s' is missing", *h);
                        return -EPERM;
                }
                buf_printf(&cr, "%s:", *h);
                canonical_header_value(&cr, v);
                buf_appends(&cr, "\n");
        }
        buf_appends(&cr, "\n");
        for (char **h = a->signed_headers; *h; h++)
                buf_printf(&cr, "%s%s", h == a->signed_headers ? "" : ";", *h);
        buf_printf(&cr, "\n%s", payload_hash);

        char cr_hash[65];
        sha256_hex(cr.data, cr.len, cr_hash);
        buf_free(&cr);
        _cleanup_free_ char *scope = xasprintf("%s/%s/%s/aws4_request", a->date, a->region, a->service);
        _cleanup_free_ char *to_sign = xasprintf(SIGV4_ALGORITHM "\n%s\n%s\n%s", amz_date, scope, cr_hash);

        _cleanup_free_ char *k0 = xasprintf("AWS4%s", secret);
        uint8_t k_date[32], k_region[32], k_service[32], k_signing[32], sig[32];
        hmac(k0, strlen(k0), a->date, k_date);
        hmac(k_date, 32, a->region, k_region);
        hmac(k_region, 32, a->service, k_service);
        hmac(k_service, 32, "aws4_request", k_signing);
        hmac(k_signing, 32, to_sign, sig);
        OPENSSL_cleanse(k0, strlen(k0));
        char sig_hex[65];
        hex(sig, 32, sig_hex);

        char given[65];
        for (size_t i = 0; i < 64; i++)
                given[i] = (char) tolower((unsigned char) a->signature[i]);
        given[64] = 0;
        if (CRYPTO_memcmp(sig_hex, given, 64) != 0) {
                *ret_error = xstrdup("the SigV4 signature does not match (wrong secret, or the request was altered)");
                return -EPERM;
        }
        return 0;
}
