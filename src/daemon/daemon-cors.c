/* A function URL's CORS settings (docs/endpoints.md "CORS"): Lambda's Cors
 * object (AllowOrigins, AllowMethods, AllowHeaders, ExposeHeaders, MaxAge,
 * AllowCredentials), validated as Lambda validates it, and whether a
 * request's origin is allowed (the headers themselves are added where the
 * answers are made, daemon-endpoints.c). No MHD here: the deploy request's
 * parser (and its fuzzer) takes these without the HTTP layer.
 *
 * Every value that reaches a header is checked here, at deploy: an origin
 * is "*" or scheme://host[:port], a method one a function URL serves, a
 * header name a token; none can hold CR, LF or a comma that would make two
 * fields or two list items of one. A request's Origin is never copied
 * into an answer unless it equals a listed origin. */
#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "daemon.h"

/* Lambda's limits (CreateFunctionUrlConfig's Cors). */
#define CORS_MAX_ORIGINS 100
#define CORS_MAX_ORIGIN_LEN 253
#define CORS_MAX_HEADERS 100
#define CORS_MAX_HEADER_LEN 1024
#define CORS_MAX_AGE 86400
/* The methods a function URL serves (daemon-routes.c ROUTE_FN_METHODS). */
static const char *const cors_methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", NULL };

bool daemon_header_name_is_valid(const char *name, size_t len) {
        if (!len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) name[i]) && !strchr("!#$%&'*+-.^_`|~", name[i]))
                        return false;
        return true;
}

bool daemon_cors_origin_is_valid(const char *o) {
        assert(o);
        size_t len = strlen(o);
        if (streq(o, "*"))
                return true;
        if (len > CORS_MAX_ORIGIN_LEN)
                return false;
        const char *sep = strstr(o, "://");
        if (!sep || sep == o || !isalpha((unsigned char) *o))
                return false;
        for (const char *p = o; p < sep; p++)
                if (!isalnum((unsigned char) *p) && !strchr("+-.", *p))
                        return false;
        const char *host = sep + 3, *end = o + len;
        const char *port = NULL;
        if (*host == '[') {
                /* An IPv6 literal: hex digits, ':' and '.' in brackets. */
                const char *close = strchr(host, ']');
                if (!close || close == host + 1)
                        return false;
                for (const char *p = host + 1; p < close; p++)
                        if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.')
                                return false;
                if (close[1] && close[1] != ':')
                        return false;
                port = close[1] ? close + 1 : NULL;
        } else {
                const char *colon = strchr(host, ':');
                const char *hend = colon ?: end;
                if (hend == host || *host == '.' || hend[-1] == '.')
                        return false;
                for (const char *p = host; p < hend; p++)
                        if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.')
                                return false;
                port = colon;
        }
        if (port) {
                /* ":" then 1 to 5 digits, 1..65535, and nothing after. */
                size_t n = strspn(port + 1, "0123456789");
                if (n < 1 || n > 5 || port[1 + n])
                        return false;
                long v = strtol(port + 1, NULL, 10);
                if (v < 1 || v > 65535)
                        return false;
        }
        return true;
}

/* cors[key] as a list of strings each passing check (and at most max_len
 * bytes), at most max_n, each through norm (when not NULL) into the
 * canonical object out. */
static int parse_list(json_t *cors, const char *key, size_t max_n, size_t max_len, bool (*check)(const char *),
                      void (*norm)(char *), const char *what, json_t *out, char **ret_error) {
        json_t *v = json_object_get(cors, key);
        if (!v)
                return 0;
        if (!json_is_array(v)) {
                *ret_error = xasprintf("field 'cors.%s' must be a list of strings (%s)", key, what);
                return -EINVAL;
        }
        if (json_array_size(v) > max_n) {
                *ret_error = xasprintf("field 'cors.%s' has %zu items, at most %zu", key, json_array_size(v), max_n);
                return -EINVAL;
        }
        json_t *list = json_array();
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
                const char *s = json_string_value(item);
                if (!s || json_string_length(item) > max_len || strlen(s) != json_string_length(item) || !check(s)) {
                        *ret_error = xasprintf("field 'cors.%s[%zu]' is not %s (at most %zu bytes)", key, i, what,
                                               max_len);
                        json_decref(list);
                        return -EINVAL;
                }
                _cleanup_free_ char *c = xstrdup(s);
                if (norm)
                        norm(c);
                json_array_append_new(list, json_string(c));
        }
        json_object_set_new(out, key, list);
        return 0;
}

static bool check_method(const char *s) {
        if (streq(s, "*"))
                return true;
        for (size_t i = 0; cors_methods[i]; i++)
                if (strcasecmp(s, cors_methods[i]) == 0)
                        return true;
        return false;
}

static bool check_header(const char *s) {
        return daemon_header_name_is_valid(s, strlen(s));
}

static void lower(char *s) {
        for (; *s; s++)
                *s = (char) tolower((unsigned char) *s);
}

static void upper(char *s) {
        for (; *s; s++)
                *s = (char) toupper((unsigned char) *s);
}

int daemon_cors_parse(json_t *cors, char **ret_json, char **ret_error) {
        assert(ret_json && ret_error);
        static const char *const keys[] = {
                "AllowOrigins", "AllowMethods", "AllowHeaders", "ExposeHeaders", "MaxAge", "AllowCredentials", NULL
        };
        if (!json_is_object(cors)) {
                *ret_error = xstrdup("field 'cors' must be an object in Lambda's Cors shape ({\"AllowOrigins\": "
                                     "[…], \"AllowMethods\": […], \"AllowHeaders\": […], \"ExposeHeaders\": […], "
                                     "\"MaxAge\": S, \"AllowCredentials\": B}), or null to remove it");
                return -EINVAL;
        }
        const char *k;
        json_t *v;
        json_object_foreach(cors, k, v) {
                bool known = false;
                for (size_t i = 0; keys[i]; i++)
                        known |= streq(k, keys[i]);
                if (!known) {
                        json_t *key = json_string(k);
                        _cleanup_free_ char *q = key ? json_dumps(key, JSON_ENCODE_ANY) : NULL;
                        json_decref(key);
                        *ret_error = xasprintf("field 'cors': unknown key %.80s (Lambda's Cors keys: AllowOrigins, "
                                               "AllowMethods, AllowHeaders, ExposeHeaders, MaxAge, AllowCredentials)",
                                               q ?: "?");
                        return -EINVAL;
                }
        }
        json_t *out = json_object();
        int r = parse_list(cors, "AllowOrigins", CORS_MAX_ORIGINS, CORS_MAX_ORIGIN_LEN, daemon_cors_origin_is_valid,
                           lower, "\"*\" or an origin, scheme://host[:port] without a path", out, ret_error);
        if (r >= 0)
                r = parse_list(cors, "AllowMethods", ELEMENTSOF(cors_methods) - 1, 7, check_method, upper,
                               "\"*\" or a method a function URL serves (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS)",
                               out, ret_error);
        if (r >= 0)
                r = parse_list(cors, "AllowHeaders", CORS_MAX_HEADERS, CORS_MAX_HEADER_LEN, check_header, NULL,
                               "\"*\" or a header name (a token: no space, ',', ':' or control character)", out,
                               ret_error);
        if (r >= 0)
                r = parse_list(cors, "ExposeHeaders", CORS_MAX_HEADERS, CORS_MAX_HEADER_LEN, check_header, NULL,
                               "\"*\" or a header name (a token: no space, ',', ':' or control character)", out,
                               ret_error);
        json_t *age = json_object_get(cors, "MaxAge");
        if (r >= 0 && age) {
                if (!json_is_integer(age) || json_integer_value(age) < 0 || json_integer_value(age) > CORS_MAX_AGE) {
                        *ret_error = xasprintf("field 'cors.MaxAge' must be a number of seconds from 0 to %d",
                                               CORS_MAX_AGE);
                        r = -EINVAL;
                } else
                        json_object_set(out, "MaxAge", age);
        }
        json_t *cred = json_object_get(cors, "AllowCredentials");
        if (r >= 0 && cred) {
                if (!json_is_boolean(cred)) {
                        *ret_error = xstrdup("field 'cors.AllowCredentials' must be true or false");
                        r = -EINVAL;
                } else
                        json_object_set(out, "AllowCredentials", cred);
        }
        /* A browser refuses credentials with "*" (Fetch's CORS check), and
         * Lambda refuses the pair: the origins must be named. */
        if (r >= 0 && json_is_true(cred) && daemon_cors_origin_allowed(out, "*")) {
                *ret_error = xstrdup("field 'cors.AllowCredentials' cannot be true with \"*\" in AllowOrigins: "
                                     "name the origins that may send credentials");
                r = -EINVAL;
        }
        if (r >= 0) {
                *ret_json = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
                r = *ret_json ? 0 : -ENOMEM;
        }
        json_decref(out);
        return r;
}

bool daemon_cors_origin_allowed(json_t *cors, const char *origin) {
        if (!cors || !origin)
                return false;
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(cors, "AllowOrigins"), i, o) {
                const char *s = json_string_value(o);
                if (s && (streq(s, "*") || strcasecmp(s, origin) == 0))
                        return true;
        }
        return false;
}
