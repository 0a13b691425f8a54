/* Clocks, timestamps and ids. */
#include "basic.h"

#include <assert.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

usec_t now_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

usec_t now_realtime(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static char *digits(char *p, unsigned v, int n) {
        for (int i = n - 1; i >= 0; i--, v /= 10)
                p[i] = (char) ('0' + v % 10);
        return p + n;
}

char *format_timestamp(usec_t t, char buf[static 32]) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&sec, &tm);
        unsigned year = (unsigned) tm.tm_year + 1900;
        if (tm.tm_year >= -1900 && year <= 9999) {
                /* Digit by digit: strftime + snprintf were ~2k instructions a
                 * timestamp, three per answer (docs/internals/performance-log.md "Invoke
                 * path: round 7"). */
                char *p = digits(buf, year, 4);
                *p++ = '-';
                p = digits(p, (unsigned) tm.tm_mon + 1, 2);
                *p++ = '-';
                p = digits(p, (unsigned) tm.tm_mday, 2);
                *p++ = 'T';
                p = digits(p, (unsigned) tm.tm_hour, 2);
                *p++ = ':';
                p = digits(p, (unsigned) tm.tm_min, 2);
                *p++ = ':';
                p = digits(p, (unsigned) tm.tm_sec, 2);
                *p++ = '.';
                p = digits(p, (unsigned) ((t % USEC_PER_SEC) / 1000), 3);
                *p++ = 'Z';
                *p = 0;
                return buf;
        }
        size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + n, 32 - n, ".%03uZ", (unsigned) ((t % USEC_PER_SEC) / 1000));
        return buf;
}

size_t format_ms(usec_t us, char buf[static FORMAT_MS_MAX]) {
        /* Digit by digit from the integer: two printf calls per field cost
         * ~27k instructions per run (docs/internals/performance-log.md "Invoke path:
         * round 7"). Built from the end, then moved to the front. */
        char t[FORMAT_MS_MAX], *e = t + sizeof(t), *p = e;
        unsigned f = (unsigned) (us % 1000);
        usec_t whole = us / 1000;
        char fd[3] = { (char) ('0' + f / 100), (char) ('0' + f / 10 % 10), (char) ('0' + f % 10) };
        int n = 3;
        while (n > 1 && fd[n - 1] == '0')
                n--;
        while (n > 0)
                *--p = fd[--n];
        *--p = '.';
        do
                *--p = (char) ('0' + whole % 10);
        while ((whole /= 10) > 0);
        size_t len = (size_t) (e - p);
        memcpy(buf, p, len);
        buf[len] = 0;
        return len;
}

static int fill_random(void *p, size_t n) {
        size_t done = 0;
        while (done < n) {
                ssize_t k = getrandom((char *) p + done, n - done, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) k;
        }
        return 0;
}

/* An id's random bits come from a per-thread pool filled by one
 * getrandom() for ID_POOL_IDS ids: a getrandom() per id was a system call
 * per invoke on the daemon's request path (docs/internals/performance-log.md "Invoke
 * path: the kernel's share per invoke (round 11)"). The bytes are the
 * kernel's CSPRNG output either way. A fork()ed child (the forking thread
 * is its only thread) forgets its copy of the pool, so parent and child
 * never hand out the same bytes. */
#define ID_POOL_IDS 32
static _Thread_local struct {
        uint64_t rnd[ID_POOL_IDS];
        unsigned left;
} id_pool;
static pthread_once_t id_pool_once = PTHREAD_ONCE_INIT;

static void id_pool_forget(void) {
        id_pool.left = 0;
}

static void id_pool_register(void) {
        (void) pthread_atfork(NULL, NULL, id_pool_forget);
}

static uint64_t id_random(void) {
        (void) pthread_once(&id_pool_once, id_pool_register);
        if (id_pool.left == 0) {
                if (fill_random(id_pool.rnd, sizeof(id_pool.rnd)) < 0) {
                        uint64_t rnd = 0;
                        (void) fill_random(&rnd, sizeof(rnd));
                        return rnd;
                }
                id_pool.left = ID_POOL_IDS;
        }
        uint64_t rnd = id_pool.rnd[--id_pool.left];
        id_pool.rnd[id_pool.left] = 0; /* handed out once */
        return rnd;
}

char *id_new(const char *prefix) {
        /* 40 bits of milliseconds (sortable for ~35 years) + 40 random bits,
         * in Crockford-style base32 so ids sort as strings. */
        static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
        uint64_t ms = now_realtime() / USEC_PER_MSEC;
        uint64_t rnd = id_random();
        char out[17];
        for (int i = 7; i >= 0; i--) {
                out[i] = alphabet[ms & 31];
                ms >>= 5;
        }
        for (int i = 15; i >= 8; i--) {
                out[i] = alphabet[rnd & 31];
                rnd >>= 5;
        }
        out[16] = 0;
        return xasprintf("%s%s", prefix ? prefix : "", out);
}

int hex_digit_value(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

char *percent_decode(const char *s, size_t n, bool strict, size_t *ret_len) {
        char *out = xmalloc(n + 1);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                int hi = s[i] == '%' && i + 2 < n ? hex_digit_value(s[i + 1]) : -1;
                int lo = hi >= 0 ? hex_digit_value(s[i + 2]) : -1;
                bool bad = s[i] == '%' && (hi < 0 || lo < 0 || (hi == 0 && lo == 0));
                if (bad && strict) {
                        free(out);
                        return NULL;
                }
                if (s[i] != '%' || hi < 0 || lo < 0) {
                        out[k++] = s[i];
                        continue;
                }
                out[k++] = (char) (hi * 16 + lo);
                i += 2;
        }
        out[k] = 0;
        if (ret_len)
                *ret_len = k;
        return out;
}

void hex_encode(const void *data, size_t n, char *ret) {
        static const char digits[] = "0123456789abcdef";
        const uint8_t *p = data;
        for (size_t i = 0; i < n; i++) {
                ret[2 * i] = digits[p[i] >> 4];
                ret[2 * i + 1] = digits[p[i] & 15];
        }
        ret[2 * n] = 0;
}

int random_hex(size_t n, char **ret) {
        unsigned char *b = xmalloc(n);
        int r = fill_random(b, n);
        if (r < 0) {
                free(b);
                return r;
        }
        char *s = xmalloc(2 * n + 1);
        hex_encode(b, n, s);
        free(b);
        *ret = s;
        return 0;
}

int cond_wait_usec(pthread_cond_t *cond, pthread_mutex_t *lock, usec_t timeout) {
        assert(cond && lock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long) (timeout % USEC_PER_SEC) * 1000;
        ts.tv_sec += (time_t) (timeout / USEC_PER_SEC) + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        return pthread_cond_clockwait(cond, lock, CLOCK_MONOTONIC, &ts);
}

/* glibc's mktime() and localtime() call tzset(), which with TZ unset
 * stat()s /etc/localtime on every call to see whether it changed (with TZ
 * set it compares the string with the last one and returns). libarchive's
 * zip reader calls mktime() for every entry's DOS time: a first install of
 * requests + numpy + six made 5,623 of those stats, its unpacking threads
 * taking glibc's time-zone lock in turn, ~10% of the install's wall time
 * (113 -> 99 ms, docs/internals/performance-log.md round 27). The zone is the same file,
 * read once; a change of the machine's zone is seen at the next start. */
void tz_local_pin(void) {
        if (!getenv("TZ"))
                (void) setenv("TZ", ":/etc/localtime", 0);
}
