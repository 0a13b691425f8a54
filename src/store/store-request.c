/* The fields of a run's request that the runs table keeps beside it
 * (fn_name, idem_key), read in C for the common request: the submit's and
 * the ended record's INSERT computed them with json_valid()/json_extract(),
 * whose parse of the request was ~25% of the store writer's instructions
 * per run (docs/performance.md "Invoke path: the -c1 tail (round 13)").
 *
 * Only a request whose answer is certain is read here: strictly valid JSON
 * (RFC 8259, which SQLite's json_valid() accepts), an object at the top,
 * no escape in its top-level keys, each wanted key at most once, a string
 * value without escapes for each, and no "data" (its text is re-rendered
 * by json_extract()). Anything else is left to the SQL, as before. */
#include <assert.h>
#include <string.h>

#include "store-internal.h"

#define REQUEST_MAX_DEPTH 32

typedef struct Scan {
        const char *p;
        unsigned depth;
} Scan;

static void skip_space(Scan *c) {
        while (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')
                c->p++;
}

/* Steps over ch when it is next (never over the text's end). */
static bool take_char(Scan *c, char ch) {
        if (*c->p != ch)
                return false;
        c->p++;
        return true;
}

static bool is_digit(char ch) {
        return ch >= '0' && ch <= '9';
}

static bool is_hex(char ch) {
        return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* The bytes a string holds as they are: not its quote, not an escape's
 * backslash, not a control character (nor the text's end). A table: the
 * request's strings are most of its bytes. */
static const bool plain_byte[256] = { [0x20 ... '"' - 1] = true, ['"' + 1 ... '\\' - 1] = true, ['\\' + 1 ... 0xff] = true };

static bool scan_escape(Scan *c) {
        switch (*++c->p) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
                return true;
        case 'u':
                for (int i = 1; i <= 4; i++)
                        if (!is_hex(c->p[i]))
                                return false;
                c->p += 4;
                return true;
        default:
                return false;
        }
}

/* A string at c->p (its opening quote): its text without the quotes in
 * ret_text/ret_len, and whether it held an escape. */
static bool scan_string(Scan *c, const char **ret_text, size_t *ret_len, bool *ret_escaped) {
        if (*c->p != '"')
                return false;
        const char *start = ++c->p;
        bool escaped = false;
        for (;;) {
                const char *p = c->p; /* a local: c->p, a char *, may alias any byte */
                while (plain_byte[(unsigned char) *p])
                        p++;
                c->p = p;
                if (*c->p == '"')
                        break;
                if (*c->p != '\\' || !scan_escape(c)) /* a control character, the text's end */
                        return false;
                escaped = true;
                c->p++;
        }
        *ret_text = start;
        *ret_len = (size_t) (c->p - start);
        *ret_escaped = escaped;
        c->p++;
        return true;
}

static bool scan_digits(Scan *c) {
        if (!is_digit(*c->p))
                return false;
        while (is_digit(*c->p))
                c->p++;
        return true;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool scan_number(Scan *c) {
        if (*c->p == '-')
                c->p++;
        if (*c->p == '0')
                c->p++;
        else if (!scan_digits(c))
                return false;
        if (*c->p == '.') {
                c->p++;
                if (!scan_digits(c))
                        return false;
        }
        if (*c->p == 'e' || *c->p == 'E') {
                c->p++;
                if (*c->p == '+' || *c->p == '-')
                        c->p++;
                if (!scan_digits(c))
                        return false;
        }
        return true;
}

static bool scan_word(Scan *c, const char *word) {
        size_t n = strlen(word);
        if (strncmp(c->p, word, n) != 0)
                return false;
        c->p += n;
        return true;
}

static bool scan_value(Scan *c);

/* An array or an object at c->p, its members' values scanned. */
static bool scan_container(Scan *c) {
        char close = *c->p == '[' ? ']' : '}';
        if (++c->depth > REQUEST_MAX_DEPTH)
                return false;
        c->p++;
        skip_space(c);
        if (*c->p == close) {
                c->p++;
                c->depth--;
                return true;
        }
        for (;;) {
                if (close == '}') {
                        const char *key;
                        size_t len;
                        bool escaped;
                        if (!scan_string(c, &key, &len, &escaped))
                                return false;
                        skip_space(c);
                        if (!take_char(c, ':'))
                                return false;
                }
                if (!scan_value(c))
                        return false;
                skip_space(c);
                if (*c->p == close)
                        break;
                if (!take_char(c, ','))
                        return false;
                skip_space(c);
        }
        c->p++;
        c->depth--;
        return true;
}

/* One value with the space around it. */
static bool scan_value(Scan *c) {
        skip_space(c);
        const char *text;
        size_t len;
        bool escaped, ok;
        switch (*c->p) {
        case '{':
        case '[':
                ok = scan_container(c);
                break;
        case '"':
                ok = scan_string(c, &text, &len, &escaped);
                break;
        case 't':
                ok = scan_word(c, "true");
                break;
        case 'f':
                ok = scan_word(c, "false");
                break;
        case 'n':
                ok = scan_word(c, "null");
                break;
        default:
                ok = scan_number(c);
        }
        if (ok)
                skip_space(c);
        return ok;
}

/* With key the top-level member just read and c->p at its value: keeps
 * the value of fn_name or idem_key; false when the SQL must answer. */
static bool take_member(Scan *c, const char *key, size_t len, StoreRequestFields *f) {
        const char **slot = NULL;
        size_t *slot_len = NULL;
        if (len == 7 && memcmp(key, "fn_name", 7) == 0) {
                slot = &f->fn_name;
                slot_len = &f->fn_name_len;
        } else if (len == 8 && memcmp(key, "idem_key", 8) == 0) {
                slot = &f->idem_key;
                slot_len = &f->idem_key_len;
        } else if (len == 4 && memcmp(key, "data", 4) == 0)
                return false;
        if (!slot)
                return scan_value(c);
        skip_space(c);
        const char *text;
        bool escaped;
        if (*slot || *c->p != '"' || !scan_string(c, &text, slot_len, &escaped) || escaped)
                return false;
        *slot = text;
        skip_space(c);
        return true;
}

bool store_request_fields(const char *request, StoreRequestFields *ret) {
        assert(ret);
        StoreRequestFields f = {};
        if (!request)
                return false;
        Scan c = { .p = request, .depth = 1 };
        skip_space(&c);
        if (!take_char(&c, '{'))
                return false;
        skip_space(&c);
        if (*c.p == '}')
                c.p++;
        else
                for (;;) {
                        const char *key;
                        size_t len;
                        bool escaped;
                        if (!scan_string(&c, &key, &len, &escaped) || escaped)
                                return false;
                        skip_space(&c);
                        if (!take_char(&c, ':') || !take_member(&c, key, len, &f))
                                return false;
                        if (*c.p == '}') {
                                c.p++;
                                break;
                        }
                        if (!take_char(&c, ','))
                                return false;
                        skip_space(&c);
                }
        skip_space(&c);
        if (*c.p)
                return false;
        *ret = f;
        return true;
}
