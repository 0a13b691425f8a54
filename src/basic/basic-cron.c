/* Schedules' time arithmetic (docs/schedules.md): the standard 5-field cron
 * expression with its @-macros, "@every DURATION", fixed UTC offsets, and
 * the next fire time after a given instant. libc only: the daemon's
 * scheduler and the CLI's check of a spec both link it.
 *
 * Time zones are UTC, a fixed offset ("+05:30") or an IANA zone read by
 * basic-tzif.c. The next-fire search walks the zone's wall clock over the
 * calendar fields, then maps the matching wall time to an instant, which
 * is where daylight saving's skipped and repeated wall times are decided
 * (wall_to_instant()). */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "basic.h"

typedef struct CronField {
        const char *what;
        int lo, hi;
        const char *const *names; /* names[i] is value lo+i, or NULL */
} CronField;

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec", NULL };
static const char *const dow_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };

static const CronField fields[5] = {
        { "minute", 0, 59, NULL },
        { "hour", 0, 23, NULL },
        { "day of month", 1, 31, NULL },
        { "month", 1, 12, month_names },
        /* 7 is Sunday too (Vixie cron); folded onto 0 below. */
        { "day of week", 0, 7, dow_names },
};

static int value_parse(const CronField *f, const char *s, size_t len, int *ret) {
        if (len == 0)
                return -EINVAL;
        if (f->names && len == 3 && isalpha((unsigned char) s[0])) {
                for (int i = 0; f->names[i]; i++)
                        if (strncasecmp(s, f->names[i], 3) == 0) {
                                *ret = f->lo + i;
                                return 0;
                        }
                return -EINVAL;
        }
        int v = 0;
        for (size_t i = 0; i < len; i++) {
                if (!isdigit((unsigned char) s[i]) || v > 1000)
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        if (v < f->lo || v > f->hi)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* One comma-separated item: "*", "N", "N-M", each with an optional "/STEP"
 * ("N/STEP" runs from N to the field's end). */
static int item_parse(const CronField *f, const char *s, size_t len, uint64_t *bits, char **ret_error) {
        const char *slash = memchr(s, '/', len);
        size_t range_len = slash ? (size_t) (slash - s) : len;
        int lo, hi, step = 1, r;
        if (slash) {
                const CronField stepf = { f->what, 1, f->hi - f->lo + 1, NULL };
                r = value_parse(&stepf, slash + 1, len - range_len - 1, &step);
                if (r < 0) {
                        *ret_error = xasprintf("%s: bad step '%.*s'", f->what, (int) (len - range_len - 1), slash + 1);
                        return -EINVAL;
                }
        }
        if (range_len == 1 && s[0] == '*') {
                lo = f->lo;
                hi = f->hi;
        } else {
                const char *dash = memchr(s, '-', range_len);
                r = value_parse(f, s, dash ? (size_t) (dash - s) : range_len, &lo);
                if (r >= 0 && dash)
                        r = value_parse(f, dash + 1, range_len - (size_t) (dash - s) - 1, &hi);
                else
                        hi = slash ? f->hi : lo;
                if (r < 0 || hi < lo) {
                        *ret_error = xasprintf("%s: '%.*s' is not a value or range within %d-%d", f->what,
                                               (int) range_len, s, f->lo, f->hi);
                        return -EINVAL;
                }
        }
        for (int v = lo; v <= hi; v += step)
                *bits |= 1ULL << v;
        return 0;
}

static int field_parse(const CronField *f, const char *s, uint64_t *ret, bool *ret_star, char **ret_error) {
        uint64_t bits = 0;
        *ret_star = streq(s, "*") || streq(s, "?");
        if (*ret_star)
                s = "*";
        for (const char *p = s;;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t) (comma - p) : strlen(p);
                if (len == 0) {
                        *ret_error = xasprintf("%s: empty list item in '%s'", f->what, s);
                        return -EINVAL;
                }
                int r = item_parse(f, p, len, &bits, ret_error);
                if (r < 0)
                        return r;
                if (!comma)
                        break;
                p = comma + 1;
        }
        *ret = bits;
        return 0;
}

static const struct {
        const char *name, *expr;
} macros[] = {
        { "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
        { "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
        { "@hourly", "0 * * * *" },
};

/* What to write instead of EventBridge's rate(N unit) or cron(6 fields),
 * which a serverless.yml or EventBridge user writes by habit. */
static char *eventbridge_hint(const char *spec) {
        if (startswith(spec, "rate(")) {
                unsigned long long v = 0;
                char unit[16] = "";
                /* minute(s), hour(s), day(s): --every takes s, m, h. */
                if (sscanf(spec + 5, "%llu %15[a-z])", &v, unit) == 2 && v > 0 && v < 1000000) {
                        bool day = startswith(unit, "day");
                        char u = day || startswith(unit, "hour") ? 'h' : startswith(unit, "minute") ? 'm' : 0;
                        if (u)
                                return xasprintf("'%s' is EventBridge's syntax: an interval here is --every %llu%c "
                                                 "(in a stack file, every: %llu%c)",
                                                 spec, day ? v * 24 : v, u, day ? v * 24 : v, u);
                }
                return xasprintf("'%s' is EventBridge's syntax: an interval here is --every 10m (in a stack "
                                 "file, every: 10m)",
                                 spec);
        }
        /* cron(M H DOM MON DOW YEAR): its first five fields are ours. */
        _cleanup_free_ char *inner = xstrdup(spec + 5);
        char *close = strrchr(inner, ')');
        if (close)
                *close = 0;
        size_t end = 0;
        for (int f = 0; f < 5 && inner[end]; f++) {
                end += strspn(inner + end, " \t");
                end += strcspn(inner + end, " \t");
        }
        inner[end] = 0;
        return xasprintf("'%s' is EventBridge's syntax: give its first 5 fields, '%s' (its 6th, the year, is not "
                         "read)",
                         spec, inner + strspn(inner, " \t"));
}

/* Whether some day of c's months is one of its days: only a restricted
 * day of month with an unrestricted day of week can miss (with both
 * restricted, any matching weekday fires: Vixie's either rule). Known
 * from the fields alone, so "0 0 30 2 *" is a parse error, the same to
 * every caller, rather than a search that finds nothing. */
static bool cron_days_meet(const CronSpec *c) {
        static const int month_days[13] = { 0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        if (c->dom_star || !c->dow_star)
                return true;
        for (int m = 1; m <= 12; m++)
                if ((c->month & (1U << m)) && (c->dom & (uint32_t) ((2ULL << month_days[m]) - 2)))
                        return true;
        return false;
}

int cron_parse(const char *spec, CronSpec *ret, char **ret_error) {
        assert(spec);
        assert(ret);
        CronSpec c = {};
        char *err = NULL;
        while (*spec == ' ')
                spec++;
        if (strncmp(spec, "@every ", 7) == 0) {
                uint64_t ms;
                if (parse_duration_ms(spec + 7, false, &ms) < 0 || ms < USEC_PER_MSEC || ms % 1000) {
                        if (ret_error)
                                *ret_error = xasprintf("'%s': @every takes a whole number of seconds, at least 1s "
                                                       "(\"30s\", \"10m\", \"1h\")",
                                                       spec + 7);
                        return -EINVAL;
                }
                c.every_s = ms / 1000;
                *ret = c;
                return 0;
        }
        if (spec[0] == '@') {
                const char *expr = NULL;
                for (size_t i = 0; i < ELEMENTSOF(macros); i++)
                        if (streq(spec, macros[i].name))
                                expr = macros[i].expr;
                if (!expr) {
                        if (ret_error)
                                *ret_error = xasprintf("'%s' is not one of @yearly, @annually, @monthly, @weekly, "
                                                       "@daily, @midnight, @hourly or @every DURATION",
                                                       spec);
                        return -EINVAL;
                }
                spec = expr;
        }
        if (startswith(spec, "rate(") || startswith(spec, "cron(")) {
                if (ret_error)
                        *ret_error = eventbridge_hint(spec);
                return -EINVAL;
        }
        char part[5][64];
        int n = 0;
        for (const char *p = spec; *p;) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                size_t len = strcspn(p, " \t");
                if (n == 5 || len >= sizeof(part[0])) {
                        n = 6;
                        break;
                }
                memcpy(part[n], p, len);
                part[n][len] = 0;
                n++;
                p += len;
        }
        if (n != 5) {
                if (ret_error)
                        *ret_error = xasprintf("'%s': a cron expression has 5 fields (minute hour day-of-month "
                                               "month day-of-week) or is an @-macro%s",
                                               spec,
                                               n == 6 ? "; a 6th field (seconds first, as Quartz has, or a year "
                                                        "last, as EventBridge has) is not read"
                                                      : "");
                return -EINVAL;
        }
        uint64_t bits[5];
        bool star[5];
        for (int i = 0; i < 5; i++) {
                int r = field_parse(&fields[i], part[i], &bits[i], &star[i], &err);
                if (r < 0) {
                        if (ret_error)
                                *ret_error = err;
                        else
                                free(err);
                        return r;
                }
        }
        c.minute = bits[0];
        c.hour = (uint32_t) bits[1];
        c.dom = (uint32_t) bits[2];
        c.month = (uint16_t) bits[3];
        c.dow = (uint8_t) ((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 -> 0 */
        c.dom_star = star[2];
        c.dow_star = star[4];
        if (!cron_days_meet(&c)) {
                if (ret_error)
                        *ret_error = xasprintf("'%s' never fires: no month it names has the day of month it names "
                                               "(February has 29 days at most; April, June, September and "
                                               "November 30)",
                                               spec);
                return -EINVAL;
        }
        *ret = c;
        return 0;
}

int cron_tz_parse(const char *tz, int *ret_offset_s, char **ret_error) {
        assert(ret_offset_s);
        const char *p = tz;
        if (!p || !*p || streq(p, "UTC") || streq(p, "Z") || streq(p, "GMT")) {
                *ret_offset_s = 0;
                return 0;
        }
        if (strncmp(p, "UTC", 3) == 0)
                p += 3;
        int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0, h = 0, m = 0;
        size_t digits = sign ? strspn(p + 1, "0123456789") : 0;
        if (sign && (digits == 1 || digits == 2) && p[1 + digits] == 0)
                h = (int) strtol(p + 1, NULL, 10);
        else if (sign && digits == 2 && p[3] == ':' && strspn(p + 4, "0123456789") == 2 && p[6] == 0) {
                h = (p[1] - '0') * 10 + (p[2] - '0');
                m = (p[4] - '0') * 10 + (p[5] - '0');
        } else if (sign && digits == 4 && p[5] == 0) {
                h = (p[1] - '0') * 10 + (p[2] - '0');
                m = (p[3] - '0') * 10 + (p[4] - '0');
        } else
                sign = 0;
        if (!sign || h > 14 || m > 59) {
                if (ret_error)
                        *ret_error = xasprintf("time zone '%s': give UTC or a fixed offset such as +02:00 or "
                                               "-0530 (named zones: cron_zone_load())",
                                               tz);
                return -EINVAL;
        }
        *ret_offset_s = sign * (h * 3600 + m * 60);
        return 0;
}

static bool day_matches(const CronSpec *c, const struct tm *t) {
        bool dom = c->dom & (1U << t->tm_mday), dow = c->dow & (1U << t->tm_wday);
        /* Vixie cron: when both day fields are restricted, either may match. */
        if (!c->dom_star && !c->dow_star)
                return dom || dow;
        return dom && dow;
}

/* The instant wall time `local` (seconds, as if UTC) fires at in z, or -1
 * when it does not fire after `after`. Offsets a day either side of it are
 * the candidates (a zone's offset changes far less often than that):
 * - one of them maps back onto itself: the wall time exists once;
 * - both do: it exists twice (fall-back) and fires at the first only,
 *   so once that has passed it does not fire again;
 * - neither: it was skipped (spring-forward) and fires at the first
 *   instant after the gap, the transition itself. */
static int64_t wall_to_instant(const TzZone *z, int64_t local, int64_t after) {
        int ob = tz_zone_offset(z, local - 86400), oa = tz_zone_offset(z, local + 86400);
        int64_t ua = local - ob, ub = local - oa, u;
        bool va = tz_zone_offset(z, ua) == ob, vb = tz_zone_offset(z, ub) == oa;
        if (va && vb)
                u = MIN(ua, ub);
        else if (va || vb)
                u = va ? ua : ub;
        else if (oa > ob) {
                /* The gap: ub is before the transition, ua after it. */
                int64_t lo = ub, hi = ua;
                while (hi - lo > 1) {
                        int64_t mid = lo + (hi - lo) / 2;
                        if (tz_zone_offset(z, mid) == ob)
                                lo = mid;
                        else
                                hi = mid;
                }
                u = hi;
        } else
                u = ua;
        return u > after ? u : -1;
}

int cron_next_zone(const CronSpec *c, const TzZone *z, int64_t after, int64_t *ret) {
        assert(c);
        assert(z);
        assert(ret);
        if (c->every_s) {
                /* Aligned to the epoch, so a restart keeps the same grid. */
                *ret = (after / (int64_t) c->every_s + 1) * (int64_t) c->every_s;
                return 0;
        }
        /* Walk the wall clock from the next whole minute; each miss jumps to
         * the start of the next month, day, hour or minute. Nine years bound
         * the search ("0 0 30 2 *" never fires): the longest wait is Feb 29's
         * across a century year that is not a leap year (2096 to 2104, eight
         * years); five years made "0 0 29 2 *" pause itself after 2096-02-29. */
        int64_t wall = after + tz_zone_offset(z, after);
        time_t local = (time_t) ((wall - ((wall % 60) + 60) % 60) + 60);
        struct tm t;
        if (!gmtime_r(&local, &t))
                return -ERANGE;
        int last_year = t.tm_year + 9;
        while (t.tm_year <= last_year) {
                if (!(c->month & (1U << (t.tm_mon + 1)))) {
                        t.tm_mon++;
                        t.tm_mday = 1;
                        t.tm_hour = t.tm_min = 0;
                } else if (!day_matches(c, &t)) {
                        t.tm_mday++;
                        t.tm_hour = t.tm_min = 0;
                } else if (!(c->hour & (1U << t.tm_hour))) {
                        t.tm_hour++;
                        t.tm_min = 0;
                } else if (!(c->minute & (1ULL << t.tm_min))) {
                        t.tm_min++;
                } else {
                        int64_t u = wall_to_instant(z, (int64_t) timegm(&t), after);
                        if (u >= 0) {
                                *ret = u;
                                return 0;
                        }
                        t.tm_min++; /* fired already (repeated or skipped wall time) */
                }
                /* timegm() normalises overflowing fields (day 32, hour 24)
                 * and fills tm_wday. */
                t.tm_sec = 0;
                time_t n = timegm(&t);
                if (n == (time_t) -1 || !gmtime_r(&n, &t))
                        return -ERANGE;
        }
        return -ENOENT;
}

int cron_next(const CronSpec *c, int offset_s, int64_t after, int64_t *ret) {
        _cleanup_(tz_zone_freep) TzZone *z = tz_zone_new_fixed(offset_s);
        return cron_next_zone(c, z, after, ret);
}

int cron_zone_load(const char *tz, TzZone **ret, char **ret_error) {
        assert(ret);
        int off;
        if (cron_tz_parse(tz, &off, NULL) >= 0) {
                *ret = tz_zone_new_fixed(off);
                return 0;
        }
        int r = tz_zone_load(tz, ret);
        if (r >= 0)
                return 0;
        if (ret_error) {
                if (r == -EINVAL)
                        *ret_error = xasprintf("time zone '%s': give UTC, a fixed offset such as +02:00 or -0530, "
                                               "or an IANA zone name such as Europe/Paris",
                                               tz);
                else if (r == -ENOENT)
                        *ret_error = xasprintf("time zone '%s' is not in the tz database (/usr/share/zoneinfo)", tz);
                else if (r == -EPROTONOSUPPORT && startswith(tz, "right/"))
                        /* tz_zone_parse(): the file counts leap seconds, Unix time does not. */
                        *ret_error = xasprintf("time zone '%s': leap-second zones (right/…) are not supported; "
                                               "use the zone without 'right/'",
                                               tz);
                else
                        *ret_error = xasprintf("time zone '%s': its tz database file cannot be used: %s", tz,
                                               strerror(-r));
        }
        return r == -ENOENT ? -ENOENT : -EINVAL;
}

int cron_format_local(const TzZone *z, int64_t t, char buf[static CRON_LOCAL_MAX]) {
        assert(z);
        int off = tz_zone_offset(z, t), a = off < 0 ? -off : off;
        time_t local = (time_t) (t + off);
        struct tm tm;
        if (!gmtime_r(&local, &tm))
                return -ERANGE;
        size_t n = strftime(buf, CRON_LOCAL_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0)
                return -ERANGE;
        snprintf(buf + n, CRON_LOCAL_MAX - n, "%c%02d:%02d", off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
        return 0;
}
