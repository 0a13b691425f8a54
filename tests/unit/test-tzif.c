/* Unit tests for src/basic/basic-tzif.c: zone names that must never open a
 * file, TZif parsing (the system tz database and hand-built files), and
 * UTC offsets checked against values computed once with Python's zoneinfo
 * (/usr/bin/python3, from the same /usr/share/zoneinfo) and written here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "basic.h"

static int64_t utc(const char *s) {
        struct tm t = {};
        int n = sscanf(s, "%d-%d-%d %d:%d:%d", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour, &t.tm_min, &t.tm_sec);
        assert_true(n >= 5);
        t.tm_year -= 1900;
        t.tm_mon -= 1;
        return (int64_t) timegm(&t);
}

static bool have_tzdata(void) {
        struct stat st;
        return stat("/usr/share/zoneinfo/Europe/Paris", &st) == 0;
}

static void test_names(void **state) {
        static const char *const good[] = { "Europe/Paris", "America/New_York", "America/Argentina/Buenos_Aires",
                                            "Etc/GMT+5", "EST5EDT", "UTC", NULL };
        static const char *const bad[] = { "", "/etc/passwd", "../../etc/passwd", "Europe/../../etc/passwd",
                                           "Europe/..", "..", ".", "./Europe/Paris", ".hidden", "Europe//Paris",
                                           "Europe/", "Europe/Paris ", "Europe\\Paris", "Europe/Paris\n",
                                           "a/b/../c", NULL };
        for (size_t i = 0; good[i]; i++)
                assert_true(tz_name_is_valid(good[i]));
        for (size_t i = 0; bad[i]; i++) {
                TzZone *z = NULL;
                assert_false(tz_name_is_valid(bad[i]));
                assert_int_equal(tz_zone_load(bad[i], &z), -EINVAL);
                assert_null(z);
        }
        (void) state;
}

static void test_load_refusals(void **state) {
        if (!have_tzdata())
                skip();
        TzZone *z = NULL;
        assert_int_equal(tz_zone_load("Mars/Olympus_Mons", &z), -ENOENT);
        assert_int_equal(tz_zone_load("Europe", &z), -ENOENT); /* a directory */
        /* Debian's zoneinfo/localtime is the host's zone (a link to
         * /etc/localtime): not a zone name. */
        assert_int_equal(tz_zone_load("localtime", &z), -ENOENT);
        /* Leap-second zones would shift Unix time. */
        struct stat st;
        if (stat("/usr/share/zoneinfo/right/UTC", &st) == 0)
                assert_int_equal(tz_zone_load("right/UTC", &z), -EPROTONOSUPPORT);
        assert_null(z);
        (void) state;
}

static void test_offsets(void **state) {
        if (!have_tzdata())
                skip();
        static const struct {
                const char *zone, *at;
                int offset;
        } rows[] = {
                { "Europe/Paris", "1900-01-01 00:00", 561 },
                { "Europe/Paris", "2026-03-29 00:59:59", 3600 },
                { "Europe/Paris", "2026-03-29 01:00", 7200 },
                { "Europe/Paris", "2026-10-25 00:59:59", 7200 },
                { "Europe/Paris", "2026-10-25 01:00", 3600 },
                { "Europe/Paris", "2100-07-01 00:00", 7200 },
                { "Europe/Paris", "2100-12-01 00:00", 3600 },
                { "America/New_York", "2026-03-08 06:59:59", -18000 },
                { "America/New_York", "2026-03-08 07:00", -14400 },
                { "America/New_York", "2100-11-07 05:59:59", -14400 },
                { "America/New_York", "2100-11-07 06:00", -18000 },
                { "Australia/Lord_Howe", "2026-10-03 15:29:59", 37800 },
                { "Australia/Lord_Howe", "2026-10-03 15:30", 39600 },
                { "Australia/Lord_Howe", "2101-01-01 00:00", 39600 },
                { "Australia/Lord_Howe", "2100-07-01 00:00", 37800 },
                { "Asia/Kathmandu", "2026-06-01 00:00", 20700 },
                { "Asia/Kathmandu", "1980-01-01 00:00", 19800 },
                { "America/Nuuk", "2100-03-28 00:59:59", -7200 },
                { "America/Nuuk", "2100-03-28 01:00", -3600 },
                { "America/Nuuk", "2100-06-01 00:00", -3600 },
                { "Australia/Sydney", "2100-01-01 00:00", 39600 },
                { "Australia/Sydney", "2100-06-01 00:00", 36000 },
                { "Asia/Jerusalem", "2100-03-25 23:59:59", 7200 },
                { "Asia/Jerusalem", "2100-03-26 00:00", 10800 },
                { "UTC", "2100-01-01 00:00", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_(tz_zone_freep) TzZone *z = NULL;
                assert_int_equal(tz_zone_load(rows[i].zone, &z), 0);
                int got = tz_zone_offset(z, utc(rows[i].at));
                if (got != rows[i].offset)
                        fail_msg("%s at %s: got %d, want %d", rows[i].zone, rows[i].at, got, rows[i].offset);
        }
        (void) state;
}

/* A TZif v2 file with no transitions, one type (offset type_off) and the
 * footer "\n<footer>\n": the footer rule decides every instant. */
static size_t tzif_build(uint8_t *buf, size_t cap, int32_t type_off, const char *footer, char version) {
        size_t n = 0;
        for (int block = 0; block < 2; block++) {
                uint8_t h[44] = { 'T', 'Z', 'i', 'f', (uint8_t) version };
                h[39] = 1; /* typecnt */
                h[43] = 1; /* charcnt */
                memcpy(buf + n, h, 44);
                n += 44;
                uint32_t o = (uint32_t) type_off;
                uint8_t t[7] = { o >> 24, o >> 16, o >> 8, o, 0, 0, 0 };
                memcpy(buf + n, t, 7);
                n += 7;
        }
        n += (size_t) snprintf((char *) buf + n, cap - n, "\n%s\n", footer);
        return n;
}

static void test_footer_rules(void **state) {
        static const struct {
                const char *footer, *at;
                int offset;
        } rows[] = {
                { "EST5EDT,M3.2.0,M11.1.0", "2026-03-08 06:59:59", -18000 },
                { "EST5EDT,M3.2.0,M11.1.0", "2026-03-08 07:00", -14400 },
                { "EST5EDT,M3.2.0,M11.1.0", "2026-11-01 05:59:59", -14400 },
                { "EST5EDT,M3.2.0,M11.1.0", "2026-11-01 06:00", -18000 },
                { "EST5EDT", "2026-07-01 00:00", -14400 }, /* POSIX default rule */
                { "CET-1CEST,M3.5.0,M10.5.0/3", "2026-03-29 00:59:59", 3600 },
                { "CET-1CEST,M3.5.0,M10.5.0/3", "2026-03-29 01:00", 7200 },
                { "<+0545>-5:45", "2026-01-01 00:00", 20700 },
                { "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", "2026-10-03 15:29:59", 37800 },
                { "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", "2026-10-03 15:30", 39600 },
                { "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", "2027-01-15 00:00", 39600 },
                { "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", "2026-07-01 00:00", 37800 },
                /* Negative and past-24h change times (RFC 8536 3.3.1). */
                { "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", "2100-03-28 00:59:59", -7200 },
                { "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", "2100-03-28 01:00", -3600 },
                { "IST-2IDT,M3.4.4/26,M10.5.0", "2100-03-25 23:59:59", 7200 },
                { "IST-2IDT,M3.4.4/26,M10.5.0", "2100-03-26 00:00", 10800 },
                /* Julian days: J60 is March 1 even in a leap year; 59 is March 1 in a common year only. */
                { "XST-1XDT,J60/0,J300/0", "2028-02-29 22:59:59", 3600 },
                { "XST-1XDT,J60/0,J300/0", "2028-02-29 23:00", 7200 },
                { "XST-1XDT,J60/0,J300/0", "2028-03-01 00:00", 7200 },
                { "XST-1XDT,59/0,300/0", "2028-02-29 00:00", 7200 },
                { "XST-1XDT,59/0,300/0", "2027-02-28 23:00", 7200 },
                { "XST-1XDT,59/0,300/0", "2027-02-28 22:59:59", 3600 },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                uint8_t buf[512];
                size_t n = tzif_build(buf, sizeof(buf), 0, rows[i].footer, '3');
                _cleanup_(tz_zone_freep) TzZone *z = NULL;
                assert_int_equal(tz_zone_parse(buf, n, &z), 0);
                int got = tz_zone_offset(z, utc(rows[i].at));
                if (got != rows[i].offset)
                        fail_msg("'%s' at %s: got %d, want %d", rows[i].footer, rows[i].at, got, rows[i].offset);
        }
        (void) state;
}

static void test_bad_files(void **state) {
        uint8_t buf[512];
        TzZone *z = NULL;
        size_t n = tzif_build(buf, sizeof(buf), 3600, "CET-1", '2');
        assert_int_equal(tz_zone_parse(buf, n, &z), 0);
        assert_int_equal(tz_zone_offset(z, 0), 3600);
        z = tz_zone_free(z);
        n = tzif_build(buf, sizeof(buf), 3600, "", '2'); /* empty footer: the last type holds */
        assert_int_equal(tz_zone_parse(buf, n, &z), 0);
        assert_int_equal(tz_zone_offset(z, 4102444800), 3600);
        z = tz_zone_free(z);
        n = tzif_build(buf, sizeof(buf), 0, "CET-1", 0); /* version 1: no 64-bit data */
        assert_int_equal(tz_zone_parse(buf, n, &z), -EPROTONOSUPPORT);
        static const char *const footers[] = { "C-1", "CET", "CET-1CEST,M13.1.0,M10.5.0", "CET-1CEST,M3.5.0",
                                               "CET-1CEST,M3.5.0,M10.5.0/200", "<+05-5", "CET-1CEST,J0,J10", NULL };
        for (size_t i = 0; footers[i]; i++) {
                n = tzif_build(buf, sizeof(buf), 0, footers[i], '2');
                if (tz_zone_parse(buf, n, &z) != -EBADMSG)
                        fail_msg("footer '%s' accepted", footers[i]);
        }
        n = tzif_build(buf, sizeof(buf), 0, "CET-1", '2');
        for (size_t cut = 0; cut < n; cut++)
                assert_int_equal(tz_zone_parse(buf, cut, &z) < 0, 1); /* every truncation refused */
        memcpy(buf, "TZjf", 4);
        assert_int_equal(tz_zone_parse(buf, n, &z), -EBADMSG);
        assert_null(z);
        (void) state;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),         cmocka_unit_test(test_load_refusals),
                cmocka_unit_test(test_offsets),       cmocka_unit_test(test_footer_rules),
                cmocka_unit_test(test_bad_files),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
