/* Unit tests for src/basic/basic-cron.c: the cron grammar and the next
 * fire time, as tables. Instants are written as UTC "YYYY-MM-DD HH:MM". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
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

static void test_never(void **state) {
        CronSpec c;
        int64_t next;
        assert_int_equal(cron_parse("0 0 30 2 *", &c, NULL), 0);
        assert_int_equal(cron_next(&c, 0, utc("2026-01-01 00:00"), &next), -ENOENT);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_next_table),
                cmocka_unit_test(test_never),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_tz),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
