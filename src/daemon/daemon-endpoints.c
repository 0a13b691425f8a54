/* Function URLs (docs/endpoints.md): /fn/{tenant}/{name}[/path…] runs the
 * deployed function with the request as an AWS Lambda function-URL event
 * (payload format 2.0) and answers with what it returns.
 *
 * The prefix /fn/ is outside /v1/ and the Lambda API, so no function name
 * can shadow an API path. A token endpoint takes a bearer token of the
 * function's tenant (not read-only); a public one takes anyone, at most
 * server.endpoint_rate requests a second per client address (burst
 * server.endpoint_burst). The function's errors stay in its run: the
 * caller sees 502 and the run id, never a traceback. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <sys/random.h>

#include "daemon.h"
#include "daemon-ui.h" /* UI_SESSION_COOKIE: the dashboard's, never a function's */

/* ---- the per-address rate limit of public endpoints --------------------------
 *
 * Token buckets in a fixed table indexed by a hash of the client: memory
 * stays bounded whatever the number of clients. Two clients that share a
 * slot share a bucket (either may see a 429 early), never more requests.
 * The hash is keyed with a random seed, so that a client cannot pick
 * addresses whose slot is another client's (and starve it). */

#define RATE_SLOTS 4096

static struct {
        pthread_mutex_t lock;
        uint64_t seed;
        bool seeded;
        struct {
                uint8_t key[8];
                uint8_t key_len; /* 0: unused, or a client of no address */
                bool used;
                double tokens;
                usec_t last;
        } slot[RATE_SLOTS];
} rate = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The client a public endpoint's rate counts, into key: an IPv4 address
 * (an IPv4-mapped IPv6 one too), or an IPv6 address's /64 (the prefix a
 * network gives one host, which picks among its 2^64 addresses at will:
 * counted per address, one client had as many buckets as it liked). Its
 * length; 0 for a client of no address. */
static size_t rate_key(const struct sockaddr *sa, uint8_t key[static 8]) {
        if (sa && sa->sa_family == AF_INET) {
                memcpy(key, &((const struct sockaddr_in *) sa)->sin_addr, 4);
                return 4;
        }
        if (sa && sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a)) {
                        memcpy(key, a->s6_addr + 12, 4);
                        return 4;
                }
                memcpy(key, a->s6_addr, 8);
                return 8;
        }
        return 0;
}

void daemon_endpoint_rate_reset(uint64_t seed) {
        pthread_mutex_lock(&rate.lock);
        memset(rate.slot, 0, sizeof(rate.slot));
        rate.seed = seed;
        rate.seeded = true;
        pthread_mutex_unlock(&rate.lock);
}

/* With rate.lock held: key's slot. */
static size_t rate_slot(const uint8_t *key, size_t len) {
        if (!rate.seeded) {
                if (getrandom(&rate.seed, sizeof(rate.seed), GRND_NONBLOCK) != sizeof(rate.seed))
                        rate.seed = (uint64_t) now_realtime() ^ (uint64_t) getpid() << 32;
                rate.seeded = true;
        }
        return (size_t) (daemon_seeded_hash(rate.seed, key, len) % RATE_SLOTS);
}

bool daemon_endpoint_rate_allow(const struct sockaddr *client, unsigned per_s, unsigned burst) {
        uint8_t key[8];
        size_t len = rate_key(client, key);
        usec_t now = now_monotonic();
        pthread_mutex_lock(&rate.lock);
        typeof(rate.slot[0]) *s = &rate.slot[rate_slot(key, len)];
        bool mine = s->used && s->key_len == len && memcmp(s->key, key, len) == 0;
        if (!mine && (!s->used || now - s->last > USEC_PER_SEC * (burst / MAX(per_s, 1u) + 1))) {
                /* A slot idle long enough to be full again may change owner. */
                memcpy(s->key, key, len);
                s->key_len = (uint8_t) len;
                s->used = true;
                s->tokens = burst;
                s->last = now;
        }
        s->tokens += (double) (now - s->last) * per_s / USEC_PER_SEC;
        if (s->tokens > burst)
                s->tokens = burst;
        s->last = now;
        bool ok = s->tokens >= 1;
        if (ok)
                s->tokens -= 1;
        pthread_mutex_unlock(&rate.lock);
        return ok;
}

static const struct sockaddr *client_sockaddr(const DaemonCall *call) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(call->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        return ci ? ci->client_addr : NULL;
}

static void client_address(const DaemonCall *call, char buf[static INET6_ADDRSTRLEN]) {
        const struct sockaddr *sa = client_sockaddr(call);
        snprintf(buf, INET6_ADDRSTRLEN, "unknown");
        if (!sa)
                return;
        if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, buf, INET6_ADDRSTRLEN);
        else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, buf, INET6_ADDRSTRLEN);
}

/* ---- the event ------------------------------------------------------------------ */

/* Adds a header or query pair to obj, joining repeats with "," as
 * Lambda's payload 2.0 does. The event is JSON, which holds only UTF-8: a
 * byte that is not (a Latin-1 header value, "%FF" in the query) becomes
 * U+FFFD, as a lossy decoder shows it, rather than the whole value being
 * lost; rawQueryString keeps the query's bytes. */
static enum MHD_Result add_value(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        json_t *obj = cls;
        if (!key)
                return MHD_YES;
        /* "a=1&&b=2": the empty pair is a separator's repeat, not a
         * parameter named "" (parse_qs skips it too); "=x" is one. */
        if (kind == MHD_GET_ARGUMENT_KIND && !*key && (!value || !*value))
                return MHD_YES;
        _cleanup_free_ char *k = utf8_replace_invalid(key, strlen(key), NULL);
        if (kind == MHD_HEADER_KIND)
                for (char *p = k; *p; p++)
                        *p = (char) tolower((unsigned char) *p);
        /* The daemon's credential is not the function's to see. */
        if (kind == MHD_HEADER_KIND && streq(k, "authorization"))
                return MHD_YES;
        const char *old = json_string_value(json_object_get(obj, k));
        /* Two Cookie headers are two lists of cookies, not one value. */
        const char *sep = kind == MHD_HEADER_KIND && streq(k, "cookie") ? "; " : ",";
        _cleanup_free_ char *v = utf8_replace_invalid(value ?: "", strlen(value ?: ""), NULL);
        if (old) {
                char *joined = xasprintf("%s%s%s", old, sep, v);
                free(v);
                v = joined;
        }
        json_object_set_new(obj, k, json_string(v));
        return MHD_YES;
}

/* The request target's path or query as the event's text: as sent, but
 * each byte that does not begin a valid UTF-8 sequence (sent raw, not
 * percent-encoded) as "%XX", which JSON can hold and which decodes back
 * to the same bytes. Text that is UTF-8 already is returned unchanged. */
static char *target_text(const char *s, size_t n) {
        size_t off = utf8_invalid_offset(s, n);
        if (off == n)
                return xstrndup(s, n);
        Buf b;
        buf_init(&b, SIZE_MAX);
        while (n) {
                (void) buf_append(&b, s, off);
                if (off == n)
                        break;
                (void) buf_printf(&b, "%%%02X", (unsigned char) s[off]);
                s += off + 1;
                n -= off + 1;
                off = utf8_invalid_offset(s, n);
        }
        return buf_steal(&b);
}

/* Text bodies travel as strings, anything else in base64 (isBase64Encoded). */
static bool body_is_text(const char *ctype, const char *body, size_t len) {
        if (utf8_invalid_offset(body, len) != len || memchr(body, 0, len))
                return false;
        if (!ctype)
                return true;
        /* Media types are case-insensitive (RFC 9110 8.3.1). */
        _cleanup_free_ char *t = xstrdup(ctype);
        for (char *p = t; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return startswith(t, "text/") || startswith(t, "application/json") ||
               startswith(t, "application/x-www-form-urlencoded") || startswith(t, "application/xml") ||
               strstr(t, "+json") || strstr(t, "+xml");
}

/* The name of a cookie ("name=value" or a Set-Cookie line), trimmed: its
 * first byte, its length in *ret_len. */
static const char *cookie_name(const char *cookie, size_t len, size_t *ret_len) {
        while (len && (*cookie == ' ' || *cookie == '\t'))
                cookie++, len--;
        size_t n = 0;
        while (n < len && cookie[n] != '=' && cookie[n] != ';')
                n++;
        while (n && (cookie[n - 1] == ' ' || cookie[n - 1] == '\t'))
                n--;
        *ret_len = n;
        return cookie;
}

static bool cookie_is_named(const char *cookie, size_t len, const char *name) {
        size_t n;
        const char *c = cookie_name(cookie, len, &n);
        return n == strlen(name) && memcmp(c, name, n) == 0;
}

/* Whether a cookie a function sets (its Set-Cookie line) could come back
 * from a browser as the dashboard's session: named UI_SESSION_COOKIE in
 * any case (a browser keeps PYSPRINTER_SESSION beside ours, and sends the
 * one of the longer Path first), or nameless with a value that starts so
 * ("=pysprinter_session=…": a browser sends a nameless cookie as its value,
 * RFC 6265bis 5.7). */
static bool cookie_sets_session(const char *cookie, size_t len) {
        size_t blanks = strspn(cookie, " \t");
        if (blanks < len && cookie[blanks] == '=') {
                cookie += blanks + 1;
                len -= blanks + 1;
        }
        size_t n;
        const char *c = cookie_name(cookie, len, &n);
        return n == strlen(UI_SESSION_COOKIE) && strncasecmp(c, UI_SESSION_COOKIE, n) == 0;
}

/* Trims blanks (space, tab) from both ends of [*p, *end). */
static void trim_blanks(const char **p, const char **end) {
        while (*p < *end && (**p == ' ' || **p == '\t'))
                (*p)++;
        while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
                (*end)--;
}

/* Why a cookie a function sets reaches further than its tenant's /fn/
 * paths on this host, or NULL. Function URLs share the dashboard's origin:
 * - a Path outside /fn/TENANT: "/", "/v1", "/ui" sent it with every
 *   dashboard request (ten of 4 KB made each one's Cookie header larger
 *   than the daemon reads, 431: the visitor was locked out until she
 *   cleared the origin's cookies), "/fn/OTHER" planted it in another
 *   tenant's functions (a session fixed for their visitors). A Path whose
 *   value does not start with "/" is ignored by the browser (RFC 6265bis
 *   5.6.4), which keeps the cookie under the request's directory, inside
 *   /fn/TENANT; every Path attribute counts, not just the last;
 * - a Domain (a non-empty one: an empty one is ignored) sends it to every
 *   host under that name, other deployments' functions and dashboards. */
static const char *cookie_scope_problem(const char *cookie, size_t len, const char *tenant) {
        const char *end = cookie + len;
        const char *p = memchr(cookie, ';', len);
        size_t tlen = strlen(tenant);
        while (p && p < end) {
                p++;
                const char *semi = memchr(p, ';', (size_t) (end - p));
                const char *a = p, *aend = semi ?: end;
                const char *eq = memchr(a, '=', (size_t) (aend - a));
                const char *nend = eq ?: aend, *v = eq ? eq + 1 : aend, *vend = aend;
                trim_blanks(&a, &nend);
                trim_blanks(&v, &vend);
                size_t n = (size_t) (nend - a), vlen = (size_t) (vend - v);
                if (eq && n == 4 && strncasecmp(a, "path", 4) == 0 && vlen && *v == '/' &&
                    !(vlen >= 4 + tlen && memcmp(v, "/fn/", 4) == 0 && memcmp(v + 4, tenant, tlen) == 0 &&
                      (vlen == 4 + tlen || v[4 + tlen] == '/')))
                        return "its Path reaches past /fn/TENANT (the dashboard, or another tenant's functions, "
                               "on this origin): give no Path or one under the function's own";
                if (n == 6 && strncasecmp(a, "domain", 6) == 0 && vlen)
                        return "it names a Domain (every host under it would get it): give none";
                p = semi;
        }
        return NULL;
}

/* The request's cookies as the event's list. The dashboard's session
 * cookie is sent by a browser to every path of the daemon's origin, /fn
 * included: a function (another tenant's, a public one) must never see it,
 * or it could act as whoever opened its URL. */
static json_t *event_cookies(const char *header) {
        json_t *cookies = json_array();
        for (const char *p = header; p && *p;) {
                while (*p == ' ' || *p == ';')
                        p++;
                size_t n = strcspn(p, ";");
                if (n && !cookie_is_named(p, n, UI_SESSION_COOKIE))
                        json_array_append_new(cookies, json_stringn(p, n));
                p += n;
        }
        return cookies;
}

/* requestContext.time as AWS writes it in payload format 2.0
 * ("12/Mar/2020:19:03:58 +0000"), in UTC whatever the locale. */
static void format_clf_time(usec_t t, char buf[static 32]) {
        static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        time_t secs = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&secs, &tm);
        snprintf(buf, 32, "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static json_t *endpoint_event(const DaemonCall *call, const char *raw_path, const char *raw_query,
                              const char *request_id, const char *source_ip) {
        json_t *headers = json_object(), *query = json_object();
        MHD_get_connection_values(call->conn, MHD_HEADER_KIND, add_value, headers);
        MHD_get_connection_values(call->conn, MHD_GET_ARGUMENT_KIND, add_value, query);
        json_t *cookies = event_cookies(json_string_value(json_object_get(headers, "cookie")));
        json_object_del(headers, "cookie");
        const char *ctype = json_string_value(json_object_get(headers, "content-type"));
        bool text = body_is_text(ctype, call->body, call->body_len);
        _cleanup_free_ char *b64 = text ? NULL : base64_encode(call->body, call->body_len);
        char when[32];
        usec_t now = now_realtime();
        format_clf_time(now, when);
        /* domainPrefix is domainName's first label, as AWS's is the URL id. */
        const char *host = json_string_value(json_object_get(headers, "host"));
        _cleanup_free_ char *prefix = host ? xstrndup(host, strcspn(host, ".:")) : NULL;
        json_t *http = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "method", call->method, "path", raw_path, "protocol",
                                 "HTTP/1.1", "sourceIp", source_ip, "userAgent",
                                 json_string_value(json_object_get(headers, "user-agent")));
        json_t *ctx = json_pack("{s:s, s:s, s:s?, s:s?, s:o, s:s, s:s, s:s, s:s, s:I}", "accountId", "anonymous",
                                "apiId", call->seg[2], "domainName", host, "domainPrefix", prefix, "http", http,
                                "requestId", request_id, "routeKey", "$default", "stage", "$default", "time", when,
                                "timeEpoch", (json_int_t) (now / USEC_PER_MSEC));
        json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:b}", "version", "2.0", "routeKey", "$default",
                               "rawPath", raw_path, "rawQueryString", raw_query, "headers", headers, "requestContext",
                               ctx, "isBase64Encoded", !text);
        /* Absent without a cookie, as AWS sends it (it was []). */
        if (json_array_size(cookies))
                json_object_set_new(ev, "cookies", cookies);
        else
                json_decref(cookies);
        if (json_object_size(query))
                json_object_set_new(ev, "queryStringParameters", query);
        else
                json_decref(query);
        if (call->body_len)
                json_object_set_new(ev, "body", text ? json_stringn(call->body, call->body_len) : json_string(b64));
        return ev;
}

/* ---- the answer ----------------------------------------------------------------- */

static struct MHD_Response *bad_gateway(const char *request_id, unsigned *ret_status) {
        return daemon_endpoint_error(502, request_id, ret_status);
}

/* Headers that frame the connection or are the daemon's own: a function
 * does not set them (Lambda's function URLs drop them too). */
static bool header_is_reserved(const char *name) {
        static const char *const reserved[] = { "connection",
                                                "content-length",
                                                "date",
                                                "keep-alive",
                                                "proxy-connection",
                                                "te",
                                                "trailer",
                                                "transfer-encoding",
                                                "upgrade",
                                                "x-request-id",
                                                NULL };
        for (size_t i = 0; reserved[i]; i++)
                if (strcasecmp(name, reserved[i]) == 0)
                        return true;
        return false;
}

/* A field value holds no control character but tab (RFC 9110 5.5): no
 * NUL that would cut it, no CR or LF that would split the response. */
static bool header_value_is_valid(const char *value, size_t len) {
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) value[i];
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                        return false;
        }
        return true;
}

/* The value of a response header, NULL when it cannot be sent. */
static char *response_header_value(json_t *v) {
        if (json_is_string(v))
                return header_value_is_valid(json_string_value(v), json_string_length(v))
                               ? xstrdup(json_string_value(v))
                               : NULL;
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (s && !header_value_is_valid(s, strlen(s))) {
                free(s);
                return NULL;
        }
        return s;
}

/* A header name or a cookie as the error message shows it: JSON-quoted
 * (a control character or a byte that is not UTF-8 stays readable), cut. */
static char *quoted(const char *s, size_t len) {
        size_t n = len;
        if (n > 64)
                for (n = 64; n && ((unsigned char) s[n] & 0xc0) == 0x80; n--)
                        ;
        json_t *j = json_stringn(s, n);
        char *q = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
        json_decref(j);
        return q ?: xstrdup("\"?\"");
}

/* Checks the function's headers and cookies; -EINVAL with *ret_error
 * naming the malformed one. A Set-Cookie for the dashboard's session is
 * malformed too: a function must not log its visitor in or out of the
 * daemon; so is a cookie reaching past /fn/TENANT (cookie_scope_problem()). */
static int response_headers_check(json_t *headers, json_t *cookies, const char *tenant, char **ret_error) {
        const char *k;
        size_t klen;
        json_t *hv;
        json_object_keylen_foreach(headers, k, klen, hv) {
                _cleanup_free_ char *s = response_header_value(hv), *q = quoted(k, klen);
                if (!daemon_header_name_is_valid(k, klen)) {
                        *ret_error = xasprintf("header %s: not a valid field name (a token: no ':', space or "
                                               "control character)",
                                               q);
                        return -EINVAL;
                }
                if (!s) {
                        *ret_error = xasprintf("header %s: its value holds a control character", q);
                        return -EINVAL;
                }
                if (strcasecmp(k, "set-cookie") == 0 && cookie_sets_session(s, strlen(s))) {
                        *ret_error = xasprintf("header %s: sets the dashboard's cookie " UI_SESSION_COOKIE, q);
                        return -EINVAL;
                }
                const char *why = strcasecmp(k, "set-cookie") == 0 ? cookie_scope_problem(s, strlen(s), tenant) : NULL;
                if (why) {
                        *ret_error = xasprintf("header %s: %s", q, why);
                        return -EINVAL;
                }
                /* It names the whole host (includeSubDomains: every name
                 * under it too), the operator's choice: a tenant's would
                 * pin the domain to HTTPS, or lift the pin (max-age=0). */
                if (strcasecmp(k, "strict-transport-security") == 0) {
                        *ret_error = xasprintf("header %s: would set HTTPS-only for the whole host, which the "
                                               "dashboard and every function share",
                                               q);
                        return -EINVAL;
                }
                /* The browser clears what it names for the whole origin,
                 * the dashboard's session cookie and storage included: a
                 * function would log its visitor out. */
                if (strcasecmp(k, "clear-site-data") == 0) {
                        *ret_error = xasprintf("header %s: would clear the dashboard's session, which shares "
                                               "this origin",
                                               q);
                        return -EINVAL;
                }
                /* Field names are case-insensitive (RFC 9110 5.1): two
                 * keys of one name went out as two fields ("Content-Type:
                 * text/plain" and "content-type: text/html"), which a
                 * browser may read either way. */
                const char *k2;
                size_t k2len;
                json_t *hv2;
                json_object_keylen_foreach(headers, k2, k2len, hv2) {
                        if (k2 == k)
                                break;
                        if (k2len == klen && strncasecmp(k2, k, klen) == 0) {
                                _cleanup_free_ char *q2 = quoted(k2, k2len);
                                *ret_error = xasprintf("header %s: named twice (as %s too)", q, q2);
                                return -EINVAL;
                        }
                }
        }
        size_t i;
        json_array_foreach(cookies, i, hv) {
                if (!json_is_string(hv)) {
                        *ret_error = xasprintf("cookies[%zu]: not a string", i);
                        return -EINVAL;
                }
                if (!header_value_is_valid(json_string_value(hv), json_string_length(hv))) {
                        *ret_error = xasprintf("cookies[%zu]: the cookie holds a control character", i);
                        return -EINVAL;
                }
                if (cookie_sets_session(json_string_value(hv), json_string_length(hv))) {
                        *ret_error = xasprintf("cookies[%zu]: sets the dashboard's cookie " UI_SESSION_COOKIE, i);
                        return -EINVAL;
                }
                const char *why = cookie_scope_problem(json_string_value(hv), json_string_length(hv), tenant);
                if (why) {
                        *ret_error = xasprintf("cookies[%zu]: %s", i, why);
                        return -EINVAL;
                }
        }
        return 0;
}

/* The response body's bytes; -EINVAL for bad base64. */
static int response_body(json_t *body, bool b64, char **ret, size_t *ret_len) {
        if (!body || json_is_null(body)) {
                *ret = xstrdup("");
                *ret_len = 0;
        } else if (json_is_string(body) && b64) {
                if (base64_decode(json_string_value(body), json_string_length(body), ret, ret_len) < 0)
                        return -EINVAL;
        } else if (json_is_string(body)) {
                *ret = xmemdupz(json_string_value(body), json_string_length(body));
                *ret_len = json_string_length(body);
        } else {
                *ret = json_dumps(body, JSON_ENCODE_ANY | JSON_COMPACT);
                if (!*ret)
                        return -EINVAL;
                *ret_len = strlen(*ret);
        }
        return 0;
}

/* A function's return value read as its HTTP answer. */
typedef struct EndpointAnswer {
        json_t *v; /* the value (owned) */
        unsigned status;
        json_t *headers, *cookies; /* v's members (borrowed), NULL when absent */
        char *body;
        size_t body_len;
        bool has_ctype; /* headers name a content-type */
} EndpointAnswer;

static void endpoint_answer_done(EndpointAnswer *a) {
        json_decref(a->v);
        free(a->body);
        *a = (EndpointAnswer){};
}

/* The function's return value as the HTTP answer (Lambda's function-URL
 * rule): an object with "statusCode" is the response (statusCode, headers,
 * cookies, body, isBase64Encoded); any other JSON value is a 200
 * application/json body. -EINVAL with *ret_error saying what is wrong for
 * a malformed response object or a value with no JSON view. */
/* A value that is not a response object as its 200 answer's body: written
 * from its text as json_dumps(its value, JSON_ENCODE_ANY | JSON_COMPACT)
 * writes it (json_text_dump()), without the value (a result of 200,000
 * small objects was ~15 times its text in jansson's nodes, twice: once for
 * the run's check, once for its answer); with_body false: only checked. */
static int endpoint_answer_text(const char *value_json, bool with_body, EndpointAnswer *ret, char **ret_error) {
        if (!json_text_loadable(value_json)) {
                *ret_error = xstrdup("the return value is not JSON the daemon can read");
                return -EINVAL;
        }
        EndpointAnswer a = { .status = 200 };
        if (with_body) {
                Buf b;
                buf_init(&b, SIZE_MAX / 4);
                if (json_text_dump(value_json, JSON_COMPACT, json_buf_dump, &b) < 0) {
                        buf_free(&b);
                        *ret_error = xstrdup("the return value cannot be sent as JSON");
                        return -EINVAL;
                }
                a.body_len = b.len;
                a.body = buf_steal(&b);
        }
        *ret = a;
        return 0;
}

static int endpoint_answer_parse(const char *tenant, const char *value_json, const char *value_repr, bool with_body,
                                 EndpointAnswer *ret, char **ret_error) {
        assert(ret && ret_error);
        /* A value that is not JSON the daemon can read (a set, an integer
         * past 64 bits, a key holding NUL) has only its repr(): as Lambda
         * answers a value it cannot marshal, that is a 502, not the repr
         * sent as some other response. */
        if (!value_json && value_repr) {
                *ret_error = xstrdup("the return value has no JSON view (its repr() is kept)");
                return -EINVAL;
        }
        if (value_json && !json_text_names_member(value_json, "statusCode"))
                return endpoint_answer_text(value_json, with_body, ret, ret_error);
        EndpointAnswer a = { .status = 200 };
        a.v = value_json ? json_loads(value_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : json_null();
        if (!a.v) {
                *ret_error = xstrdup("the return value is not JSON the daemon can read");
                return -EINVAL;
        }
        json_t *sc = json_is_object(a.v) ? json_object_get(a.v, "statusCode") : NULL;
        if (!sc) {
                a.body = json_dumps(a.v, JSON_ENCODE_ANY | JSON_COMPACT);
                if (!a.body) {
                        endpoint_answer_done(&a);
                        *ret_error = xstrdup("the return value cannot be sent as JSON");
                        return -EINVAL;
                }
                a.body_len = strlen(a.body);
                *ret = a;
                return 0;
        }
        a.headers = json_object_get(a.v, "headers");
        a.cookies = json_object_get(a.v, "cookies");
        json_t *body = json_object_get(a.v, "body");
        bool b64 = json_is_true(json_object_get(a.v, "isBase64Encoded"));
        json_int_t status = json_integer_value(sc);
        int r = -EINVAL;
        /* Not 1xx: an interim response (RFC 9110 15.2) sent as the answer
         * left the client waiting for the final one (100) or reading a
         * protocol switch that never came (101). */
        if (!json_is_integer(sc) || status < 200 || status > 599) {
                _cleanup_free_ char *got = json_dumps(sc, JSON_ENCODE_ANY | JSON_COMPACT);
                *ret_error = xasprintf("statusCode must be an integer from 200 to 599, not %.64s", got ?: "?");
        } else if (a.headers && !json_is_object(a.headers))
                *ret_error = xstrdup("headers must be an object");
        else if (a.cookies && !json_is_array(a.cookies))
                *ret_error = xstrdup("cookies must be an array of strings");
        else if (b64 && !json_is_string(body))
                *ret_error = xstrdup("body must be a string when isBase64Encoded is true");
        else if (response_headers_check(a.headers, a.cookies, tenant, ret_error) < 0)
                ;
        else if (response_body(body, b64, &a.body, &a.body_len) < 0)
                *ret_error = xstrdup(b64 ? "body is not valid base64 (isBase64Encoded is true)"
                                         : "body cannot be sent as JSON");
        else
                r = 0;
        if (r < 0) {
                endpoint_answer_done(&a);
                return r;
        }
        a.status = (unsigned) status;
        const char *k;
        json_t *hv;
        json_object_foreach(a.headers, k, hv)
                if (strcasecmp(k, "content-type") == 0)
                        a.has_ctype = true;
        *ret = a;
        return 0;
}

int daemon_endpoint_response_check(const char *tenant, const char *value_json, const char *value_repr, char **ret_type,
                                   char **ret_message) {
        assert(ret_type && ret_message);
        EndpointAnswer a;
        _cleanup_free_ char *err = NULL;
        if (endpoint_answer_parse(tenant, value_json, value_repr, false, &a, &err) >= 0) {
                endpoint_answer_done(&a);
                return 0;
        }
        *ret_type = xstrdup(ENDPOINT_MALFORMED_RESPONSE);
        *ret_message = xasprintf("not a valid Function URL response: %s", err);
        return -EINVAL;
}

/* The HTTP answer of a run that succeeded; a malformed response (which
 * daemon_endpoint_response_check() failed the run for already, unless the
 * run was another node's) is a 502. With CORS settings (cors true), the
 * function's own Access-Control-* headers are dropped: the settings'
 * replace them (Lambda's rule; the caller adds them). */
static struct MHD_Response *endpoint_response(const char *tenant, const RunResult *res, const char *request_id,
                                              bool cors, unsigned *ret_status) {
        EndpointAnswer a;
        _cleanup_free_ char *err = NULL;
        if (endpoint_answer_parse(tenant, res->value_json, res->value_repr, true, &a, &err) < 0)
                return bad_gateway(request_id, ret_status);
        struct MHD_Response *resp = daemon_text_response(a.status, a.has_ctype ? NULL : "application/json",
                                                         TAKE_PTR(a.body), a.body_len, ret_status);
        const char *k;
        json_t *hv;
        json_object_foreach(a.headers, k, hv) {
                _cleanup_free_ char *s = response_header_value(hv);
                if (!header_is_reserved(k) && !(cors && strncasecmp(k, "access-control-", 15) == 0))
                        MHD_add_response_header(resp, k, s);
        }
        size_t i;
        json_array_foreach(a.cookies, i, hv)
                MHD_add_response_header(resp, "Set-Cookie", json_string_value(hv));
        daemon_endpoint_headers(resp, request_id);
        endpoint_answer_done(&a);
        return resp;
}

/* ---- the handler ------------------------------------------------------------------ */

/* "/fn/T/N/rest?q" -> rawPath "/rest" (or "/") and the raw query. */
static void split_target(const char *target, char **ret_path, char **ret_query) {
        const char *q = strchr(target, '?');
        size_t plen = q ? (size_t) (q - target) : strlen(target);
        const char *p = target;
        for (int slashes = 0; p < target + plen; p++)
                if (*p == '/' && ++slashes == 4)
                        break;
        *ret_path = p < target + plen ? target_text(p, plen - (size_t) (p - target)) : xstrdup("/");
        *ret_query = q ? target_text(q + 1, strlen(q + 1)) : xstrdup("");
}

/* A bearer token, or an access key's SigV4 signature (what an AWS_IAM
 * function URL's callers send), of tenant that may run functions; 0, or
 * the status: 401 without credentials or with an unknown token, 403 for a
 * signature that does not verify, another tenant's or a read-only one,
 * 503 when a token made through the API cannot be looked up (a cluster
 * node cut from the Redis it lives in: not an answer "unknown"). */
static unsigned endpoint_auth(const DaemonCall *call, const char *tenant) {
        /* --no-auth: one local user on a loopback address, no tokens. */
        if (call->d->no_auth)
                return 0;
        const char *h = daemon_call_header(call, "Authorization");
        if (h && startswith(h, "AWS4-HMAC-SHA256")) {
                SigV4Request rq = {
                        .method = call->method,
                        .raw_target = call->raw_target ? call->raw_target : "/",
                        .header = daemon_sigv4_header,
                        .userdata = call->conn,
                        .body = call->body,
                        .body_len = call->body_len,
                };
                _cleanup_free_ char *err = NULL;
                const char *type = NULL;
                char owner[72];
                TokenRole role = TOKEN_ROLE_READONLY;
                if (daemon_sigv4_authenticate(call->d, &rq, h, &role, owner, sizeof(owner), &type, &err) < 0)
                        return 403;
                return streq(owner, tenant) && role != TOKEN_ROLE_READONLY ? 0 : 403;
        }
        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return 401;
        _cleanup_free_ char *tok = xstrdup(h + 7);
        Daemon *d = call->d;
        char owner[128] = "";
        TokenRole role = TOKEN_ROLE_READONLY;
        pthread_rwlock_rdlock(&d->cfg_lock);
        const DaemonToken *t = daemon_config_find_token(&d->cfg, strstrip(tok));
        if (t) {
                snprintf(owner, sizeof(owner), "%s", t->tenant);
                role = t->role;
        }
        pthread_rwlock_unlock(&d->cfg_lock);
        /* Or one made by `pysprinterd token create` / POST /v1/tokens, as
         * the API's routes take it (before, only the config's were). */
        if (!t) {
                int k = daemon_token_lookup(d, strstrip(tok), &role, owner, sizeof(owner));
                if (k == -ECONNREFUSED)
                        return 503;
                if (k < 0)
                        return 401;
        }
        return streq(owner, tenant) && role != TOKEN_ROLE_READONLY ? 0 : 403;
}

/* ---- the CORS preflight of a URL that takes a token ---------------------------
 *
 * A browser asks before a cross-origin call that carries Authorization
 * (OPTIONS with Origin and Access-Control-Request-Method), and sends no
 * credentials with that question: a token URL answered it 401, so no page
 * of another origin could call one. As Lambda answers a function URL's
 * preflight itself from the URL's CORS settings, whatever its AuthType, the
 * daemon answers it here, without a token and without running the function;
 * for a URL without CORS settings (daemon-cors.c: those answer from them)
 * the answer is the one that lets the call be sent and nothing more
 * (docs/endpoints.md "CORS"). It grants nothing:
 * the call still needs the token, which a browser never adds by itself (no
 * Access-Control-Allow-Credentials, and the dashboard's cookie is no
 * credential here), and reading its answer still needs the function's own
 * Access-Control-Allow-Origin. Every name answers alike (a token URL, a
 * function without one, none at all, another tenant's), so a preflight
 * tells no more than the 401 does. */

/* Every method a function URL takes (daemon-routes.c ROUTE_FN_METHODS). */
#define ENDPOINT_METHODS "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"
/* How long a browser may keep the answer (Lambda's MaxAge; Chrome keeps
 * at most 7200 s). */
#define ENDPOINT_PREFLIGHT_MAX_AGE "600"
#define ENDPOINT_PREFLIGHT_MAX_FIELD 1024

static bool is_cors_preflight(const DaemonCall *call) {
        return streq(call->method, "OPTIONS") && daemon_call_header(call, "Origin") &&
               daemon_call_header(call, "Access-Control-Request-Method");
}

/* An Origin as browsers send it: "null" or scheme://host[:port] (RFC 6454
 * 6.1), nothing that could be more than one origin or another field. */
static bool origin_is_valid(const char *o) {
        if (streq(o, "null"))
                return true;
        const char *sep = strstr(o, "://");
        if (!sep || sep == o || strlen(o) > ENDPOINT_PREFLIGHT_MAX_FIELD)
                return false;
        for (const char *p = o; p < sep; p++)
                if (!isalnum((unsigned char) *p) && !strchr("+-.", *p))
                        return false;
        if (!sep[3])
                return false;
        for (const char *p = sep + 3; *p; p++)
                if (!isalnum((unsigned char) *p) && !strchr("-._~:[]%", *p))
                        return false;
        return true;
}

/* Access-Control-Request-Headers when it is a list of field names (tokens
 * separated by commas and blanks), to be allowed as asked; else NULL. */
static const char *requested_headers(const char *h) {
        if (!h || strlen(h) > ENDPOINT_PREFLIGHT_MAX_FIELD)
                return NULL;
        size_t names = 0;
        for (const char *p = h; *p;) {
                p += strspn(p, " \t,");
                size_t n = strcspn(p, " \t,");
                if (!n)
                        break;
                if (!daemon_header_name_is_valid(p, n))
                        return NULL;
                names++;
                p += n;
        }
        return names ? h : NULL;
}

/* The preflight of a URL with CORS settings, token or public, answered
 * from them (Lambda answers it so, whatever the AuthType, without running
 * the function). A token URL's answer then differs from a name without
 * settings: the deployer who gave a token URL settings made it known to
 * browsers, as Lambda's does (docs/endpoints.md "CORS"). */
static struct MHD_Response *endpoint_cors_preflight(const DaemonCall *call, json_t *cors, const char *request_id,
                                                    unsigned *ret_status) {
        struct MHD_Response *resp = daemon_text_response(204, NULL, xstrdup(""), 0, ret_status);
        daemon_endpoint_headers(resp, request_id);
        daemon_cors_preflight_headers(resp, cors, daemon_call_header(call, "Origin"));
        return resp;
}

static struct MHD_Response *endpoint_preflight(const DaemonCall *call, const char *request_id, unsigned *ret_status) {
        const char *origin = daemon_call_header(call, "Origin");
        struct MHD_Response *resp = daemon_text_response(204, NULL, xstrdup(""), 0, ret_status);
        daemon_endpoint_headers(resp, request_id);
        daemon_response_headers(
                resp,
                (const char *const[]){ "Access-Control-Allow-Origin", origin_is_valid(origin) ? origin : NULL,
                                       "Access-Control-Allow-Methods", ENDPOINT_METHODS, "Access-Control-Allow-Headers",
                                       requested_headers(daemon_call_header(call, "Access-Control-Request-Headers")),
                                       "Access-Control-Max-Age", ENDPOINT_PREFLIGHT_MAX_AGE, "Vary",
                                       "Origin, Access-Control-Request-Method, Access-Control-Request-Headers", NULL });
        return resp;
}

/* 503 with Retry-After: nothing was done, ask again (a draining daemon,
 * or a cluster node cut from its Redis, where the function, its URL and
 * the tokens made through the API are); what a load balancer and the
 * clients read as "retry, here later or on another instance". */
static struct MHD_Response *endpoint_unavailable(const char *request_id, unsigned *ret_status) {
        struct MHD_Response *resp = daemon_endpoint_error(503, request_id, ret_status);
        daemon_response_headers(resp, (const char *const[]){ "Retry-After", "5", NULL });
        return resp;
}

/* Redis (cluster-conn.c) that did not answer a read: asking again is safe. */
static bool redis_away(int r) {
        return r == -ECONNREFUSED || r == -ECOMM;
}

/* A public endpoint's request waiting for its run (daemon_call_wait()). */
typedef struct EndpointWait {
        Daemon *d;
        DRun *r;        /* a reference */
        char *id;
        char *fn; /* "tenant/name", for the daemon's log */
        json_t *cors; /* the URL's CORS settings, or NULL */
        char *origin; /* the request's Origin, or NULL */
} EndpointWait;

static void endpoint_wait_free(void *p) {
        EndpointWait *w = p;
        drun_unref(w->d, w->r);
        free(w->id);
        free(w->fn);
        json_decref(w->cors);
        free(w->origin);
        free(w);
}

/* The function's answer; 504 at max_wait_s; NULL when the client went
 * away (the run goes on to its end, as a Lambda function URL's does). */
static struct MHD_Response *endpoint_wait_answer(const DaemonCall *call, EndpointWait *w, DaemonWake why,
                                                 unsigned *ret_status) {
        Daemon *d = w->d;
        bool done = daemon_run_done(d, w->r);
        if (!done && why == DAEMON_WAKE_EVENT)
                return DAEMON_SUSPENDED;
        if (!done && why == DAEMON_WAKE_GONE) {
                log_info("run %s: its caller went away; the request's run goes on to its end", w->r->id);
                return NULL;
        }
        if (!done) {
                /* Its request id goes out with the 504: the record first. */
                daemon_run_reveal(d, w->r);
                return daemon_endpoint_error(504, w->id, ret_status);
        }
        pthread_mutex_lock(&d->lock);
        RunResult *res = w->r->result;
        pthread_mutex_unlock(&d->lock);
        if (res && res->status == RUN_SUCCEEDED)
                return endpoint_response(w->r->tenant, res, w->id, w->cors != NULL, ret_status);
        /* The function's own mistake in what it answered is in its run;
         * the log says it too, under the id the caller saw (the caller,
         * perhaps anyone, gets no more than the 502). */
        if (res && res->error_type && streq(res->error_type, ENDPOINT_MALFORMED_RESPONSE))
                log_warn("fn %s request %s answered 502: %s", w->fn, w->id, res->error_message);
        return bad_gateway(w->id, ret_status);
}

/* endpoint_wait_answer() with the URL's CORS headers on the function's
 * answer, its 502 and its 504 alike (a page reads which it was). */
static struct MHD_Response *endpoint_wait_then(const DaemonCall *call, void *p, DaemonWake why, unsigned *ret_status) {
        EndpointWait *w = p;
        struct MHD_Response *resp = endpoint_wait_answer(call, w, why, ret_status);
        if (w->cors && resp && resp != DAEMON_SUSPENDED)
                daemon_cors_answer_headers(resp, w->cors, w->origin);
        return resp;
}

struct MHD_Response *daemon_api_endpoint(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        const char *tenant = call->seg[1], *name = call->seg[2];
        _cleanup_free_ char *id = id_new("r"), *raw_path = NULL, *raw_query = NULL, *cors_text = NULL;
        int mode = 0;
        FunctionRecord *f = NULL;
        int k = function_name_is_valid(name)
                        ? function_store_url_cors_get(d->functions, tenant, name, &mode, &cors_text)
                        : -ENOENT;
        /* Whether the name has a URL, and which, is in a cluster's Redis:
         * without it, no answer about the name (a 401 or 404 is final to
         * a client), the same for every name and caller. */
        if (redis_away(k))
                return endpoint_unavailable(id, ret_status);
        bool has_url = k >= 0;
        char addr[INET6_ADDRSTRLEN];
        client_address(call, addr);
        /* The URL's CORS settings, as the deploy wrote them (unreadable
         * ones, which no deploy writes, count as none). */
        _cleanup_(json_decrefp) json_t *cors = has_url && cors_text ? json_loads(cors_text, 0, NULL) : NULL;
        if (cors && is_cors_preflight(call))
                return endpoint_cors_preflight(call, cors, id, ret_status);
        if (!has_url || mode != 2) {
                /* A browser's preflight carries no token: the daemon's
                 * answer (a public URL's function answers its own). */
                if (is_cors_preflight(call))
                        return endpoint_preflight(call, id, ret_status);
                /* The token is checked before existence: a caller without
                 * the tenant's token gets the same 401 or 403 for a token
                 * URL, a function without one and no function at all, so
                 * it cannot tell which names exist. */
                unsigned st = endpoint_auth(call, tenant);
                if (st == 503)
                        return endpoint_unavailable(id, ret_status);
                if (st) {
                        struct MHD_Response *resp = daemon_endpoint_error(st, id, ret_status);
                        if (st == 401)
                                daemon_response_headers(resp, (const char *const[]) { "WWW-Authenticate",
                                                                                      "Bearer realm=\"pysprinter\"",
                                                                                      NULL });
                        return resp;
                }
        }
        k = has_url ? function_store_get(d->functions, tenant, name, 0, &f) : -ENOENT;
        if (redis_away(k))
                return endpoint_unavailable(id, ret_status);
        if (k < 0)
                return daemon_endpoint_error(404, id, ret_status);
        if (mode == 2) {
                pthread_rwlock_rdlock(&d->cfg_lock);
                unsigned per_s = d->cfg.endpoint_rate, burst = d->cfg.endpoint_burst;
                pthread_rwlock_unlock(&d->cfg_lock);
                if (!daemon_endpoint_rate_allow(client_sockaddr(call), per_s, burst)) {
                        function_record_free(f);
                        struct MHD_Response *resp = daemon_endpoint_error(429, id, ret_status);
                        daemon_response_headers(resp, (const char *const[]){ "Retry-After", "1", NULL });
                        return resp;
                }
        }

        split_target(call->raw_target ? call->raw_target : "/", &raw_path, &raw_query);
        json_t *event = endpoint_event(call, raw_path, raw_query, id, addr);
        RunRequest req = {};
        struct MHD_Response *resp = NULL;
        _cleanup_free_ char *err = NULL;
        daemon_request_from_function(&req, f);
        req.endpoint = true;
        /* The caller waits for the answer, as a Lambda RequestResponse
         * does: the warm path's begin on this thread, and its record's
         * deferral (docs/api.md "Delivery"). */
        req.answer_waits = true;
        RunLimits granted;
        pthread_rwlock_rdlock(&d->cfg_lock);
        k = daemon_limits_grant(&d->cfg, tenant, &req.limits, &granted, &err);
        pthread_rwlock_unlock(&d->cfg_lock);
        if (k >= 0) {
                req.limits = granted;
                k = daemon_lambda_map_event(&req, f, event, id, NULL);
        } else
                /* The operator lowered the tenant's grant below what the
                 * version was deployed with: the caller may be anyone, so
                 * the reason goes to the daemon's log, under the id the
                 * caller sees. */
                log_warn("fn %s/%s request %s refused: %s", tenant, name, id, err ?: "limits not granted");
        DRun *r = NULL;
        if (k >= 0)
                k = daemon_run_submit(d, id, tenant, &req, f->name, f->version, true, &r);
        if (k == -EBUSY || k == -EUSERS) {
                resp = daemon_endpoint_error(429, id, ret_status);
                daemon_response_headers(resp, (const char *const[]) { "Retry-After", "1", NULL });
        } else if (k == -ESHUTDOWN || k == -ECONNREFUSED)
                /* As the API's drain answer; -ECONNREFUSED: the cluster's
                 * Redis refused the submit, nothing was queued (-ECOMM: it
                 * may have been, the 502 below). */
                resp = endpoint_unavailable(id, ret_status);
        else if (k == -EPERM)
                resp = daemon_endpoint_error(403, id, ret_status);
        else if (k < 0)
                resp = bad_gateway(id, ret_status);
        else {
                EndpointWait *w = xcalloc(1, sizeof(EndpointWait));
                const char *origin = daemon_call_header(call, "Origin");
                *w = (EndpointWait){ .d = d,
                                     .r = r,
                                     .id = xstrdup(id),
                                     .fn = xasprintf("%s/%s", tenant, name),
                                     .cors = json_incref(cors),
                                     .origin = origin ? xstrdup(origin) : NULL };
                resp = daemon_call_wait(call, DRUN_DONE_KEY(r), (usec_t) d->cfg.max_wait_s * USEC_PER_SEC, endpoint_wait_then, w,
                                        endpoint_wait_free);
        }
        json_decref(event);
        function_record_free(f);
        run_request_done(&req);
        return resp;
}

/* ---- a URL's CORS settings in its answers (daemon.h) ---- */

/* What Access-Control-Allow-Origin says to origin: "*" when the settings
 * list it (never with credentials: refused at deploy), else the origin
 * (which equals a listed one), else NULL. */
static const char *allow_origin(json_t *cors, const char *origin) {
        if (!origin || !daemon_cors_origin_allowed(cors, origin))
                return NULL;
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(cors, "AllowOrigins"), i, o)
                if (streq(json_string_value(o) ?: "", "*"))
                        return "*";
        return origin;
}

/* cors[key]'s items joined by ", ", NULL when there are none. */
static char *joined(json_t *cors, const char *key) {
        json_t *list = json_object_get(cors, key);
        if (!json_array_size(list))
                return NULL;
        Buf b;
        buf_init(&b, SIZE_MAX);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item)
                (void) buf_printf(&b, "%s%s", i ? ", " : "", json_string_value(item) ?: "");
        return buf_steal(&b);
}

void daemon_cors_preflight_headers(struct MHD_Response *resp, json_t *cors, const char *origin) {
        assert(resp && cors);
        const char *allow = allow_origin(cors, origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        if (!allow)
                return;
        _cleanup_free_ char *methods = joined(cors, "AllowMethods"), *headers = joined(cors, "AllowHeaders");
        json_t *age = json_object_get(cors, "MaxAge");
        _cleanup_free_ char *age_s = age ? xasprintf("%lld", (long long) json_integer_value(age)) : NULL;
        daemon_response_headers(
                resp,
                (const char *const[]){ "Access-Control-Allow-Origin", allow, "Access-Control-Allow-Methods", methods,
                                       "Access-Control-Allow-Headers", headers, "Access-Control-Max-Age", age_s,
                                       "Access-Control-Allow-Credentials",
                                       json_is_true(json_object_get(cors, "AllowCredentials")) ? "true" : NULL, NULL });
}

void daemon_cors_answer_headers(struct MHD_Response *resp, json_t *cors, const char *origin) {
        assert(resp && cors);
        const char *allow = allow_origin(cors, origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        if (!allow)
                return;
        _cleanup_free_ char *expose = joined(cors, "ExposeHeaders");
        daemon_response_headers(
                resp,
                (const char *const[]){ "Access-Control-Allow-Origin", allow, "Access-Control-Expose-Headers", expose,
                                       "Access-Control-Allow-Credentials",
                                       json_is_true(json_object_get(cors, "AllowCredentials")) ? "true" : NULL, NULL });
}
