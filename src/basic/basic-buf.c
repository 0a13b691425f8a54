/* Capped growable buffer: every user-controlled growth has a ceiling. */
#include <assert.h>

#include "basic.h"

void buf_init(Buf *b, size_t max) {
        *b = (Buf) { .max = max };
}

void buf_free(Buf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->alloc = 0;
}

void buf_reset(Buf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

int buf_extend(Buf *b, size_t n, char **ret_tail) {
        assert(ret_tail);
        if (n > b->max || b->len > b->max - n)
                return -ENOBUFS;
        if (b->len + n + 1 > b->alloc) {
                size_t a = b->alloc ? b->alloc : 256;
                while (a < b->len + n + 1)
                        a *= 2;
                b->data = xrealloc(b->data, a);
                b->alloc = a;
        }
        *ret_tail = b->data + b->len;
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int buf_append(Buf *b, const void *data, size_t n) {
        char *tail;
        int r = buf_extend(b, n, &tail);
        if (r < 0)
                return r;
        if (n)
                memcpy(tail, data, n);
        return 0;
}

int buf_appends(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        char *s;
        va_start(ap, fmt);
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        r = buf_append(b, s, (size_t) r);
        free(s);
        return r;
}

char *buf_steal(Buf *b) {
        char *s = b->data ? b->data : xstrdup("");
        b->data = NULL;
        b->len = b->alloc = 0;
        return s;
}

char *buf_steal_fit(Buf *b) {
        size_t n = b->len;
        return xrealloc(buf_steal(b), n + 1);
}
