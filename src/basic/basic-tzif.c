/* Named time zones for schedules (docs/schedules.md): a reader of the
 * system tz database's TZif files (RFC 8536) and of the POSIX TZ rule in
 * their footer. libc only, no global state: glibc's localtime_r() reads the
 * process-wide TZ (setenv("TZ") + tzset() is not thread-safe), and the
 * daemon's scheduler thread must compute another zone's offsets while
 * request threads do the same.
 *
 * Only the version 2+ 64-bit block is used (the 32-bit block ends in
 * 2038); instants after the last transition follow the footer's rule, so a
 * fire time in 2100 gets the right offset. */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "basic.h"

#define TZ_DIR "/usr/share/zoneinfo"
#define TZIF_MAX_BYTES (256 * 1024) /* the largest zone in tzdata is ~4 KiB */

typedef struct TzRuleDate {
        char kind;        /* 'J' (1..365, no Feb 29), 'N' (0..365), 'M' */
        int n, m, w, d;   /* Jn / n: n; Mm.w.d: m, w, d */
        int time_s;       /* local time of the change, may be < 0 or > 24h */
} TzRuleDate;

struct TzZone {
        int fixed_offset_s;     /* used when n_types == 0 */
        size_t n_trans, n_types;
        int64_t *trans;         /* ascending UTC instants */
        uint8_t *trans_type;    /* index into type_offset */
        int32_t *type_offset;   /* seconds east of UTC */
        bool has_rule;          /* footer rule for instants past the last transition */
        int rule_std_s, rule_dst_s;
        bool rule_has_dst;
        TzRuleDate rule_start, rule_end;
};

TzZone *tz_zone_free(TzZone *z) {
        if (!z)
                return NULL;
        free(z->trans);
        free(z->trans_type);
        free(z->type_offset);
        free(z);
        return NULL;
}

void tz_zone_freep(TzZone **z) {
        *z = tz_zone_free(*z);
}

TzZone *tz_zone_new_fixed(int offset_s) {
        TzZone *z = xcalloc(1, sizeof(TzZone));
        z->fixed_offset_s = offset_s;
        return z;
}

/* ---- calendar arithmetic (proleptic Gregorian, no libc time zone) -------- */

static int64_t days_from_civil(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static int64_t year_of_days(int64_t z) {
        z += 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int m = (int) (mp < 10 ? mp + 3 : mp - 9);
        return yoe + era * 400 + (m <= 2);
}

static bool is_leap(int64_t y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int64_t floor_div(int64_t a, int64_t b) {
        return a / b - (a % b != 0 && ((a < 0) != (b < 0)));
}

/* Local seconds since the epoch (as if UTC) of a rule's change in year y. */
static int64_t rule_local(const TzRuleDate *r, int64_t y) {
        int64_t day;
        if (r->kind == 'J')
                day = days_from_civil(y, 1, 1) + r->n - 1 + (is_leap(y) && r->n >= 60);
        else if (r->kind == 'N')
                day = days_from_civil(y, 1, 1) + r->n;
        else {
                static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
                int64_t first = days_from_civil(y, r->m, 1);
                int wday1 = (int) ((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
                int dom = 1 + (r->d - wday1 + 7) % 7 + (r->w - 1) * 7;
                int len = mdays[r->m - 1] + (r->m == 2 && is_leap(y));
                while (dom > len)
                        dom -= 7; /* week 5 = the last such weekday */
                day = first + dom - 1;
        }
        return day * 86400 + r->time_s;
}

static int rule_offset(const TzZone *z, int64_t t) {
        if (!z->rule_has_dst)
                return z->rule_std_s;
        int64_t y = year_of_days(floor_div(t + z->rule_std_s, 86400));
        /* The start is given in standard local time, the end in DST. */
        int64_t start = rule_local(&z->rule_start, y) - z->rule_std_s;
        int64_t end = rule_local(&z->rule_end, y) - z->rule_dst_s;
        bool dst = start < end ? t >= start && t < end : !(t >= end && t < start);
        return dst ? z->rule_dst_s : z->rule_std_s;
}

int tz_zone_offset(const TzZone *z, int64_t t) {
        assert(z);
        if (z->n_types == 0)
                return z->fixed_offset_s;
        if (z->n_trans == 0 || t >= z->trans[z->n_trans - 1]) {
                if (z->has_rule)
                        return rule_offset(z, t);
                return z->type_offset[z->n_trans ? z->trans_type[z->n_trans - 1] : 0];
        }
        if (t < z->trans[0])
                return z->type_offset[0]; /* RFC 8536 3.2: type 0 before the first transition */
        size_t lo = 0, hi = z->n_trans - 1; /* trans[lo] <= t < trans[hi] */
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (z->trans[mid] <= t)
                        lo = mid;
                else
                        hi = mid;
        }
        return z->type_offset[z->trans_type[lo]];
}

/* ---- the POSIX TZ footer ("CET-1CEST,M3.5.0,M10.5.0/3") ------------------- */

static bool posix_name(const char **p) {
        const char *s = *p;
        if (*s == '<') {
                const char *e = strchr(s, '>');
                if (!e || e - s < 4)
                        return false;
                *p = e + 1;
                return true;
        }
        size_t n = 0;
        while ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z'))
                n++;
        if (n < 3)
                return false;
        *p = s + n;
        return true;
}

/* [+-]hh[:mm[:ss]] with hh up to max_h; seconds, signed as written. */
static bool posix_time(const char **p, int max_h, int *ret) {
        const char *s = *p;
        int sign = 1;
        if (*s == '+' || *s == '-')
                sign = *s++ == '-' ? -1 : 1;
        int part[3] = { 0, 0, 0 }, n = 0;
        for (; n < 3; n++) {
                if (n > 0) {
                        if (*s != ':')
                                break;
                        s++;
                }
                int digits = 0, v = 0;
                while (*s >= '0' && *s <= '9' && digits < 3) {
                        v = v * 10 + (*s++ - '0');
                        digits++;
                }
                if (digits == 0 || (n > 0 && (digits != 2 || v > 59)))
                        return false;
                part[n] = v;
        }
        if (part[0] > max_h)
                return false;
        *ret = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
        *p = s;
        return true;
}

static bool posix_number(const char **p, int lo, int hi, int *ret) {
        const char *s = *p;
        int v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
                v = v * 10 + (*s++ - '0');
                digits++;
        }
        if (digits == 0 || v < lo || v > hi)
                return false;
        *ret = v;
        *p = s;
        return true;
}

static bool posix_date(const char **p, TzRuleDate *ret) {
        const char *s = *p;
        TzRuleDate r = { .time_s = 7200 }; /* default change at 02:00 */
        bool ok;
        if (*s == 'J') {
                s++;
                r.kind = 'J';
                ok = posix_number(&s, 1, 365, &r.n);
        } else if (*s == 'M') {
                s++;
                r.kind = 'M';
                ok = posix_number(&s, 1, 12, &r.m) && *s++ == '.' && posix_number(&s, 1, 5, &r.w) && *s++ == '.' &&
                     posix_number(&s, 0, 6, &r.d);
        } else {
                r.kind = 'N';
                ok = posix_number(&s, 0, 365, &r.n);
        }
        /* RFC 8536 3.3.1 extends the time to -167..167 hours. */
        if (ok && *s == '/') {
                s++;
                ok = posix_time(&s, 167, &r.time_s);
        }
        if (!ok)
                return false;
        *ret = r;
        *p = s;
        return true;
}

/* Parses the footer's TZ string into z's rule; false when it is not one. */
static bool posix_rule_parse(TzZone *z, const char *s) {
        int west;
        if (!posix_name(&s) || !posix_time(&s, 24, &west))
                return false;
        z->rule_std_s = -west;
        z->rule_dst_s = z->rule_std_s + 3600;
        z->rule_has_dst = false;
        if (*s == 0)
                return true;
        if (!posix_name(&s))
                return false;
        z->rule_has_dst = true;
        if (*s && *s != ',') {
                if (!posix_time(&s, 24, &west))
                        return false;
                z->rule_dst_s = -west;
        }
        if (*s == 0) /* POSIX's implementation-defined default: the US rule */
                return posix_date(&(const char *) { "M3.2.0" }, &z->rule_start) &&
                       posix_date(&(const char *) { "M11.1.0" }, &z->rule_end);
        return *s++ == ',' && posix_date(&s, &z->rule_start) && *s++ == ',' && posix_date(&s, &z->rule_end) &&
               *s == 0;
}

/* ---- TZif ----------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p) {
        return (int64_t) ((uint64_t) be32(p) << 32 | be32(p + 4));
}

typedef struct TzifHeader {
        uint32_t isut, isstd, leap, timecnt, typecnt, charcnt;
} TzifHeader;

static int header_read(const uint8_t *p, size_t len, TzifHeader *h) {
        if (len < 44 || memcmp(p, "TZif", 4) != 0)
                return -EBADMSG;
        h->isut = be32(p + 20);
        h->isstd = be32(p + 24);
        h->leap = be32(p + 28);
        h->timecnt = be32(p + 32);
        h->typecnt = be32(p + 36);
        h->charcnt = be32(p + 40);
        /* Caps far above any real zone keep the size arithmetic in range. */
        if (h->timecnt > 100000 || h->typecnt == 0 || h->typecnt > 256 || h->charcnt == 0 || h->charcnt > 100000 ||
            h->leap > 100000 || (h->isut != 0 && h->isut != h->typecnt) ||
            (h->isstd != 0 && h->isstd != h->typecnt))
                return -EBADMSG;
        return 0;
}

static size_t block_size(const TzifHeader *h, size_t time_size) {
        return h->timecnt * time_size + h->timecnt + h->typecnt * 6 + h->charcnt + h->leap * (time_size + 4) +
               h->isstd + h->isut;
}

int tz_zone_parse(const void *data, size_t len, TzZone **ret) {
        assert(data);
        assert(ret);
        const uint8_t *p = data;
        TzifHeader h1, h;
        int r = header_read(p, len, &h1);
        if (r < 0)
                return r;
        if (p[4] < '2') /* version 1 has only 32-bit times and no footer */
                return -EPROTONOSUPPORT;
        size_t off = 44 + block_size(&h1, 4);
        if (off > len || (r = header_read(p + off, len - off, &h)) < 0)
                return -EBADMSG;
        if (h.leap > 0) /* "right/" zones count leap seconds: Unix time does not */
                return -EPROTONOSUPPORT;
        const uint8_t *b = p + off + 44;
        size_t size = block_size(&h, 8);
        if (size > len - off - 44)
                return -EBADMSG;
        const uint8_t *footer = b + size, *end = p + len;
        TzZone *z = xcalloc(1, sizeof(TzZone));
        z->n_trans = h.timecnt;
        z->n_types = h.typecnt;
        z->trans = xcalloc(MAX(h.timecnt, 1u), sizeof(int64_t));
        z->trans_type = xcalloc(MAX(h.timecnt, 1u), 1);
        z->type_offset = xcalloc(h.typecnt, sizeof(int32_t));
        r = -EBADMSG;
        for (size_t i = 0; i < h.timecnt; i++) {
                z->trans[i] = be64(b + 8 * i);
                z->trans_type[i] = b[8 * h.timecnt + i];
                if (z->trans_type[i] >= h.typecnt || (i > 0 && z->trans[i] <= z->trans[i - 1]))
                        goto fail;
        }
        const uint8_t *types = b + 9 * h.timecnt;
        for (size_t i = 0; i < h.typecnt; i++) {
                int32_t o = (int32_t) be32(types + 6 * i);
                if (o <= -25 * 3600 || o >= 26 * 3600 || types[6 * i + 5] >= h.charcnt)
                        goto fail;
                z->type_offset[i] = o;
        }
        /* The footer: "\nTZ\n"; empty means "no rule" (the last type holds). */
        if (footer >= end || *footer != '\n')
                goto fail;
        const uint8_t *nl = memchr(footer + 1, '\n', (size_t) (end - footer - 1));
        if (!nl || nl - footer - 1 > 255)
                goto fail;
        if (nl > footer + 1) {
                char tz[256];
                memcpy(tz, footer + 1, (size_t) (nl - footer - 1));
                tz[nl - footer - 1] = 0;
                if (!posix_rule_parse(z, tz))
                        goto fail;
                z->has_rule = true;
        }
        *ret = z;
        return 0;
fail:
        tz_zone_free(z);
        return r;
}

bool tz_name_is_valid(const char *name) {
        if (!name || !*name || strlen(name) > 255 || name[0] == '/')
                return false;
        /* Components of [A-Za-z0-9_+-], none starting with '.': no "..",
         * no absolute path, no hidden file. */
        for (const char *c = name; *c;) {
                size_t n = strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-");
                if (n == 0 || (c[n] != '/' && c[n] != 0))
                        return false;
                c += n;
                if (*c == '/' && *++c == 0)
                        return false;
        }
        return true;
}

int tz_zone_load(const char *name, TzZone **ret) {
        assert(ret);
        if (!tz_name_is_valid(name))
                return -EINVAL;
        /* The host's own zone, not a zone: a schedule must not change
         * meaning when it moves to another machine. */
        if (streq(name, "localtime"))
                return -ENOENT;
        /* A valid name cannot climb out, but the database has symlinks
         * (Debian's "localtime" points at /etc/localtime): the resolved
         * path must still be inside the database. */
        _cleanup_free_ char *path = xasprintf("%s/%s", TZ_DIR, name);
        char real[PATH_MAX], dir[PATH_MAX];
        if (!realpath(TZ_DIR, dir) || !realpath(path, real))
                return -ENOENT;
        size_t dl = strlen(dir);
        if (strncmp(real, dir, dl) != 0 || real[dl] != '/')
                return -ENOENT;
        _cleanup_close_ int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -ENOENT;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return -ENOENT;
        if (st.st_size > TZIF_MAX_BYTES)
                return -EBADMSG;
        _cleanup_free_ uint8_t *buf = xmalloc((size_t) st.st_size + 1);
        size_t got = 0;
        while (got < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t) st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EBADMSG;
                got += (size_t) n;
        }
        return tz_zone_parse(buf, got, ret);
}
