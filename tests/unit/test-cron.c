/* Unit tests for src/basic/basic-cron.c: the cron grammar and the next
 * fire time, as tables. Instants are written as UTC "YYYY-MM-DD HH:MM". */
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

static void test_next_table(void **state) {
        static const struct {
                const char *spec, *tz, *after, *next;
        } rows[] = {
                { "* * * * *", "UTC", "2026-03-01 10:00", "2026-03-01 10:01" },
                { "* * * * *", "UTC", "2026-03-01 10:00:59", "2026-03-01 10:01" },
                { "*/5 * * * *", "UTC", "2026-03-01 10:00", "2026-03-01 10:05" },
                { "*/5 * * * *", "UTC", "2026-03-01 10:03", "2026-03-01 10:05" },
                { "*/5 * * * *", "UTC", "2026-03-01 23:57", "2026-03-02 00:00" },
                { "0 * * * *", "UTC", "2026-03-01 10:00", "2026-03-01 11:00" },
                { "@hourly", "UTC", "2026-03-01 10:30", "2026-03-01 11:00" },
                { "@daily", "UTC", "2026-03-01 10:30", "2026-03-02 00:00" },
                { "@midnight", "UTC", "2026-12-31 23:59", "2027-01-01 00:00" },
                { "@weekly", "UTC", "2026-03-04 10:00", "2026-03-08 00:00" }, /* a Sunday */
                { "@monthly", "UTC", "2026-01-31 12:00", "2026-02-01 00:00" },
                { "@yearly", "UTC", "2026-03-01 00:00", "2027-01-01 00:00" },
                { "@annually", "UTC", "2026-03-01 00:00", "2027-01-01 00:00" },
                { "30 9 * * mon-fri", "UTC", "2026-03-06 09:30", "2026-03-09 09:30" }, /* Fri -> Mon */
                { "30 9 * * 1-5", "UTC", "2026-03-07 08:00", "2026-03-09 09:30" },
                { "0 0 * * 7", "UTC", "2026-03-02 00:00", "2026-03-08 00:00" }, /* 7 = Sunday */
                { "0 0 * * SUN", "UTC", "2026-03-02 00:00", "2026-03-08 00:00" },
                { "0 12 29 2 *", "UTC", "2026-03-01 00:00", "2028-02-29 12:00" }, /* leap day */
                /* 2100 is no leap year: eight years between two Feb 29 */
                { "0 12 29 2 *", "UTC", "2096-02-29 12:00", "2104-02-29 12:00" },
                { "0 0 29 2 *", "UTC", "2097-03-01 00:00", "2104-02-29 00:00" },
                { "0 0 31 * *", "UTC", "2026-04-01 00:00", "2026-05-31 00:00" }, /* April has 30 */
                { "0 0 1,15 * *", "UTC", "2026-03-02 00:00", "2026-03-15 00:00" },
                /* both day fields restricted: either matches (Vixie) */
                { "0 0 13 * 5", "UTC", "2026-03-01 00:00", "2026-03-06 00:00" },
                { "0 0 13 * 5", "UTC", "2026-03-12 00:00", "2026-03-13 00:00" },
                { "15-45/15 * * * *", "UTC", "2026-03-01 10:45", "2026-03-01 11:15" },
                { "5/20 * * * *", "UTC", "2026-03-01 10:45", "2026-03-01 11:05" },
                { "0 0 1 jan,JUL *", "UTC", "2026-03-01 00:00", "2026-07-01 00:00" },
                { "0 22 * 12 *", "UTC", "2026-12-31 22:00", "2027-12-01 22:00" },
                /* fixed offsets: 09:00 at +02:00 is 07:00 UTC */
                { "0 9 * * *", "+02:00", "2026-03-01 06:00", "2026-03-01 07:00" },
                { "0 9 * * *", "+02:00", "2026-03-01 07:00", "2026-03-02 07:00" },
                { "0 9 * * *", "-0530", "2026-03-01 12:00", "2026-03-01 14:30" },
                { "0 0 * * *", "UTC+14", "2026-03-01 09:00", "2026-03-01 10:00" },
                { "0 0 1 * *", "-05:00", "2026-03-01 04:59", "2026-03-01 05:00" },
                { "0 0 1 * *", "-05:00", "2026-03-01 05:00", "2026-04-01 05:00" },
                /* intervals sit on the epoch's grid */
                { "@every 10m", "UTC", "2026-03-01 10:03", "2026-03-01 10:10" },
                { "@every 10m", "UTC", "2026-03-01 10:10", "2026-03-01 10:20" },
                { "@every 1h", "UTC", "2026-03-01 10:00:01", "2026-03-01 11:00" },
                { "@every 30s", "UTC", "2026-03-01 10:00:10", "2026-03-01 10:00:30" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                CronSpec c;
                int off;
                _cleanup_free_ char *err = NULL;
                int64_t next = 0;
                print_message("%s (%s) after %s\n", rows[i].spec, rows[i].tz, rows[i].after);
                assert_int_equal(cron_parse(rows[i].spec, &c, &err), 0);
                assert_int_equal(cron_tz_parse(rows[i].tz, &off, NULL), 0);
                assert_int_equal(cron_next(&c, off, utc(rows[i].after), &next), 0);
                assert_int_equal(next, utc(rows[i].next));
        }
}

/* An expression whose day of month no month it names has is refused by
 * cron_parse itself, saying why, so every caller (schedule add, a stack
 * file's schema check, the stack's server) refuses it alike; one that may
 * fire on another day (the day of week, Vixie's either rule) is not. */
static void test_never(void **state) {
        static const char *const never[] = { "0 0 30 2 *",   "0 0 30,31 feb *", "0 12 31 4,6,9,11 *",
                                             "0 0 31 2-2 *", "0 0 31 2 ?",      NULL };
        static const char *const fires[] = { "0 0 29 2 *", "0 0 30 2 mon", "0 0 31 4,5 *", "0 0 30 * *", NULL };
        CronSpec c;
        for (size_t i = 0; never[i]; i++) {
                _cleanup_free_ char *err = NULL;
                assert_int_equal(cron_parse(never[i], &c, &err), -EINVAL);
                assert_non_null(strstr(err, "never fires"));
        }
        for (size_t i = 0; fires[i]; i++)
                assert_int_equal(cron_parse(fires[i], &c, NULL), 0);
        (void) state;
}

static void test_invalid(void **state) {
        static const char *const bad[] = {
                "", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *",
                "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *", "1,,2 * * * *",
                "* * * foo *", "@reboot", "@every", "@every 0s", "@every 1500ms", "@every x", "*/ * * * *",
                "-5 * * * *",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                CronSpec c;
                _cleanup_free_ char *err = NULL;
                print_message("'%s'\n", bad[i]);
                assert_int_equal(cron_parse(bad[i], &c, &err), -EINVAL);
                assert_non_null(err);
        }
        /* the message names the field */
        CronSpec c;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(cron_parse("0 25 * * *", &c, &err), -EINVAL);
        assert_non_null(strstr(err, "hour"));
        /* EventBridge's syntax: what to write instead */
        static const struct {
                const char *spec, *says;
        } aws[] = {
                { "rate(10 minutes)", "--every 10m" },    { "rate(1 hour)", "--every 1h" },
                { "rate(2 days)", "--every 48h" },        { "rate(soon)", "--every 10m" },
                { "cron(0 12 * * ? *)", "'0 12 * * ?'" }, { "cron(15 10 ? * 6L 2026)", "'15 10 ? * 6L'" },
                { "0 12 * * ? *", "6th field" },
        };
        for (size_t i = 0; i < ELEMENTSOF(aws); i++) {
                _cleanup_free_ char *e = NULL;
                print_message("'%s'\n", aws[i].spec);
                assert_int_equal(cron_parse(aws[i].spec, &c, &e), -EINVAL);
                assert_non_null(strstr(e, aws[i].says));
        }
}

static void test_tz(void **state) {
        static const struct {
                const char *tz;
                int ok, off;
        } rows[] = {
                { "UTC", 1, 0 },          { NULL, 1, 0 },           { "Z", 1, 0 },          { "+02:00", 1, 7200 },
                { "-0530", 1, -19800 },   { "+5", 1, 18000 },       { "UTC-03:30", 1, -12600 },
                { "Europe/Paris", 0, 0 }, { "+15:00", 0, 0 },       { "+02:60", 0, 0 },     { "02:00", 0, 0 },
                { "+2:00", 0, 0 },        { "+02:00x", 0, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                int off = 42;
                _cleanup_free_ char *err = NULL;
                int r = cron_tz_parse(rows[i].tz, &off, &err);
                print_message("%s\n", rows[i].tz ?: "(null)");
                assert_int_equal(r, rows[i].ok ? 0 : -EINVAL);
                if (rows[i].ok)
                        assert_int_equal(off, rows[i].off);
                else
                        assert_non_null(err);
        }
}

/* Named zones: the next fire instant, checked against values computed once
 * by an independent oracle (a scan of UTC minutes with /usr/bin/python3's
 * zoneinfo over the same tz database) and written here as constants.
 * Daylight saving (docs/schedules.md): a skipped wall time fires once at
 * the end of the gap; a repeated one fires once, at its first occurrence. */
static void test_zone_next_table(void **state) {
        struct stat st;
        if (stat("/usr/share/zoneinfo/Europe/Paris", &st) < 0)
                skip();
        static const struct {
                const char *spec, *tz, *after, *next;
        } rows[] = {
                { "30 2 * * *", "Europe/Paris", "2026-03-28 12:00", "2026-03-29 01:00" },
                { "30 2 * * *", "Europe/Paris", "2026-03-29 01:00", "2026-03-30 00:30" },
                { "0 2 * * *", "Europe/Paris", "2026-03-28 23:59", "2026-03-29 01:00" },
                { "*/15 * * * *", "Europe/Paris", "2026-03-29 00:50", "2026-03-29 01:00" },
                { "*/15 * * * *", "Europe/Paris", "2026-03-29 01:00", "2026-03-29 01:15" },
                { "0 3 * * *", "Europe/Paris", "2026-03-29 00:30", "2026-03-29 01:00" },
                { "30 2 * * *", "Europe/Paris", "2026-10-24 12:00", "2026-10-25 00:30" },
                { "30 2 * * *", "Europe/Paris", "2026-10-25 00:30", "2026-10-26 01:30" },
                { "*/30 * * * *", "Europe/Paris", "2026-10-25 01:10", "2026-10-25 02:00" },
                { "0 12 * * *", "Europe/Paris", "2026-07-01 00:00", "2026-07-01 10:00" },
                { "0 12 * * *", "Europe/Paris", "2026-01-15 00:00", "2026-01-15 11:00" },
                { "30 2 * * *", "America/New_York", "2026-03-07 12:00", "2026-03-08 07:00" },
                { "30 2 * * *", "America/New_York", "2026-03-08 07:00", "2026-03-09 06:30" },
                { "30 1 * * *", "America/New_York", "2026-10-31 12:00", "2026-11-01 05:30" },
                { "30 1 * * *", "America/New_York", "2026-11-01 05:30", "2026-11-02 06:30" },
                { "0 * * * *", "America/New_York", "2026-11-01 05:30", "2026-11-01 07:00" },
                { "0 9 * * 1-5", "America/New_York", "2026-11-06 15:00", "2026-11-09 14:00" },
                { "15 2 * * *", "Australia/Lord_Howe", "2026-10-03 00:00", "2026-10-03 15:30" },
                { "15 2 * * *", "Australia/Lord_Howe", "2026-10-03 15:30", "2026-10-04 15:15" },
                { "45 1 * * *", "Australia/Lord_Howe", "2026-04-04 00:00", "2026-04-04 14:45" },
                { "45 1 * * *", "Australia/Lord_Howe", "2026-04-04 14:45", "2026-04-05 15:15" },
                { "0 12 * * *", "Australia/Lord_Howe", "2026-07-01 00:00", "2026-07-01 01:30" },
                { "0 9 * * *", "Asia/Kathmandu", "2026-06-01 00:00", "2026-06-01 03:15" },
                { "30 0 1 1 *", "Asia/Kathmandu", "2026-06-01 00:00", "2026-12-31 18:45" },
                { "30 2 * * *", "Europe/Paris", "2100-03-27 12:00", "2100-03-28 01:00" },
                { "30 2 * * *", "Europe/Paris", "2100-10-30 12:00", "2100-10-31 00:30" },
                { "30 2 * * *", "Europe/Paris", "2100-10-31 00:30", "2100-11-01 01:30" },
                { "0 12 * * *", "America/New_York", "2100-07-04 00:00", "2100-07-04 16:00" },
                { "30 2 * * *", "America/New_York", "2100-03-13 12:00", "2100-03-14 07:00" },
                { "15 2 * * *", "Australia/Lord_Howe", "2100-10-02 00:00", "2100-10-02 15:30" },
                /* fixed offsets and UTC go through the same path */
                { "0 12 * * *", "+05:45", "2026-06-01 00:00", "2026-06-01 06:15" },
                { "0 12 * * *", "UTC", "2026-06-01 00:00", "2026-06-01 12:00" },
                { "@every 10m", "Europe/Paris", "2026-03-29 00:55", "2026-03-29 01:00" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                CronSpec c;
                _cleanup_(tz_zone_freep) TzZone *z = NULL;
                int64_t next = 0;
                assert_int_equal(cron_parse(rows[i].spec, &c, NULL), 0);
                assert_int_equal(cron_zone_load(rows[i].tz, &z, NULL), 0);
                assert_int_equal(cron_next_zone(&c, z, utc(rows[i].after), &next), 0);
                if (next != utc(rows[i].next)) {
                        time_t n = (time_t) next;
                        struct tm t;
                        char buf[32];
                        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", gmtime_r(&n, &t));
                        fail_msg("'%s' %s after %s: got %s, want %s", rows[i].spec, rows[i].tz, rows[i].after, buf,
                                 rows[i].next);
                }
        }
        (void) state;
}

/* Fires once through a whole fall-back and spring-forward day: walking
 * fire to fire gives each wall time of "every 30 minutes from 1 to 3 h" exactly once. */
static void test_zone_walk_once(void **state) {
        struct stat st;
        if (stat("/usr/share/zoneinfo/Europe/Paris", &st) < 0)
                skip();
        static const struct {
                const char *from, *to;
                int fires;
        } days[] = {
                /* 01:00 01:30 02:00 02:30 03:00 03:30 local, once each */
                { "2026-10-24 20:00", "2026-10-25 06:00", 6 },
                /* 01:00 01:30, then 02:00 and 02:30 (skipped) once at 03:00 CEST, then 03:30 */
                { "2026-03-28 20:00", "2026-03-29 06:00", 4 },
        };
        CronSpec c;
        _cleanup_(tz_zone_freep) TzZone *z = NULL;
        assert_int_equal(cron_parse("*/30 1-3 * * *", &c, NULL), 0);
        assert_int_equal(cron_zone_load("Europe/Paris", &z, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(days); i++) {
                int64_t t = utc(days[i].from), end = utc(days[i].to);
                int fires = 0;
                for (;;) {
                        int64_t next;
                        assert_int_equal(cron_next_zone(&c, z, t, &next), 0);
                        assert_true(next > t);
                        if (next > end)
                                break;
                        fires++;
                        t = next;
                }
                assert_int_equal(fires, days[i].fires);
        }
        (void) state;
}

static void test_zone_load(void **state) {
        static const char *const bad[] = { "../../etc/passwd", "/etc/passwd", "Europe/../../etc/shadow", "Mars/Base",
                                           "Europe/Paris/", NULL };
        for (size_t i = 0; bad[i]; i++) {
                TzZone *z = NULL;
                _cleanup_free_ char *err = NULL;
                int r = cron_zone_load(bad[i], &z, &err);
                assert_true(r == -EINVAL || r == -ENOENT);
                assert_null(z);
                assert_non_null(err);
        }
        (void) state;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_next_table),
                cmocka_unit_test(test_never),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_tz),
                cmocka_unit_test(test_zone_next_table),
                cmocka_unit_test(test_zone_walk_once),
                cmocka_unit_test(test_zone_load),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
