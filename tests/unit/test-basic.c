/* Unit tests for src/basic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "basic.h"

static void test_buf_cap(void **state) {
        Buf b;
        buf_init(&b, 8);
        assert_int_equal(buf_appends(&b, "1234"), 0);
        assert_int_equal(buf_appends(&b, "5678"), 0);
        assert_int_equal(buf_appends(&b, "9"), -ENOBUFS);
        assert_int_equal(b.len, 8);
        assert_string_equal(b.data, "12345678");
        _cleanup_free_ char *s = buf_steal(&b);
        assert_string_equal(s, "12345678");
        assert_null(b.data);
}

static void test_buf_printf_and_reset(void **state) {
        Buf b;
        buf_init(&b, 1024);
        assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
        assert_string_equal(b.data, "42-x");
        buf_reset(&b);
        assert_int_equal(b.len, 0);
        assert_string_equal(b.data, "");
        buf_free(&b);
        Buf empty;
        buf_init(&empty, 4);
        _cleanup_free_ char *s = buf_steal(&empty);
        assert_string_equal(s, "");
}

static void test_strings(void **state) {
        assert_true(startswith("pysprinter", "py"));
        assert_false(startswith("py", "pysprinter"));
        assert_true(endswith("file.py", ".py"));
        assert_false(endswith("py", "file.py"));
        char s[] = "  \t hello world \n";
        assert_string_equal(strstrip(s), "hello world");
        char **v = NULL;
        v = strv_append(v, "a");
        v = strv_append(v, "b");
        assert_int_equal(strv_length(v), 2);
        assert_true(strv_contains(v, "b"));
        assert_false(strv_contains(v, "c"));
        /* strv_append_take owns what it is given (ASan: no leak, no double free). */
        v = strv_append_take(v, xasprintf("%s-%d", "c", 3));
        assert_int_equal(strv_length(v), 3);
        assert_string_equal(v[2], "c-3");
        assert_null(v[3]);
        strv_free(v);
        /* xmemdupz keeps what follows a NUL (xstrndup stops there). */
        _cleanup_free_ char *m = xmemdupz("a\0b", 3), *e = xmemdupz(NULL, 0);
        assert_memory_equal(m, "a\0b", 4);
        assert_string_equal(e, "");
}

/* A filter's set of choices ("failed,killed"), as ps --status and
 * ?status= read it. */
static void test_percent_decode(void **state) {
        (void) state;
        size_t n = 0;
        _cleanup_free_ char *a = percent_decode("a%41b+%2f", 9, false, &n);
        assert_string_equal(a, "aAb+/");
        assert_int_equal(n, 5);
        /* Broken escapes stay as written when lenient; a sign is no hex
         * digit (strtol read "%-1" as 0xff). */
        const char *kept[] = { "%4", "%zz", "%-1", "% 1", "100%", "%" };
        for (size_t i = 0; i < ELEMENTSOF(kept); i++) {
                _cleanup_free_ char *k = percent_decode(kept[i], strlen(kept[i]), false, NULL);
                assert_string_equal(k, kept[i]);
                assert_null(percent_decode(kept[i], strlen(kept[i]), true, NULL));
        }
        /* %00: a byte like another when lenient (the length says so), a
         * refusal when strict. */
        _cleanup_free_ char *z = percent_decode("x%00y", 5, false, &n);
        assert_int_equal(n, 3);
        assert_memory_equal(z, "x\0y", 3);
        assert_null(percent_decode("x%00y", 5, true, NULL));
        _cleanup_free_ char *p = percent_decode("p%3Aw%40d", 9, true, NULL);
        assert_string_equal(p, "p:w@d");
        /* Only n bytes are read: an escape cut by n is broken. */
        _cleanup_free_ char *cut = percent_decode("%41", 2, false, NULL);
        assert_string_equal(cut, "%4");
}

static void test_strv_extend_choices(void **state) {
        static const char *const names[] = { "queued", "failed", "killed", "lost", NULL };
        static const struct {
                const char *list;
                bool any_case;
                const char *want; /* the set joined by '|', or NULL: refused */
                const char *bad;
        } rows[] = {
                { "failed", false, "failed", NULL },
                { "failed,killed", false, "failed|killed", NULL },
                { "killed,failed,killed", false, "killed|failed", NULL },
                { "FAILED,Lost", true, "failed|lost", NULL },
                { "FAILED", false, NULL, "FAILED" },
                { "failed,", false, NULL, "" },
                { ",failed", false, NULL, "" },
                { "", false, NULL, "" },
                { "failed,bogus,lost", false, NULL, "bogus" },
                { "fail", true, NULL, "fail" },
                { "failed ", false, NULL, "failed " },
                { "failedx", true, NULL, "failedx" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                char **set = strv_append(NULL, "queued"); /* kept, not added twice */
                _cleanup_free_ char *bad = NULL;
                int r = strv_extend_choices(&set, rows[i].list, names, rows[i].any_case, &bad);
                char got[256] = "";
                for (size_t k = 1; set[k]; k++)
                        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k > 1 ? "|" : "", set[k]);
                if (rows[i].want) {
                        assert_int_equal(r, 0);
                        assert_string_equal(got, rows[i].want);
                        assert_null(bad);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_int_equal(strv_length(set), 1);
                        assert_string_equal(bad, rows[i].bad);
                }
                strv_free(set);
        }
        char **set = NULL;
        _cleanup_free_ char *bad = NULL;
        assert_int_equal(strv_extend_choices(&set, "queued,lost", names, false, &bad), 0);
        assert_int_equal(strv_extend_choices(&set, "lost,failed", names, false, &bad), 0);
        assert_int_equal(strv_length(set), 3);
        assert_string_equal(set[2], "failed");
        strv_free(set);
}

static void test_path_join(void **state) {
        const struct {
                const char *a, *b, *want;
        } rows[] = {
                { "/a", "b", "/a/b" },   { "/a/", "b", "/a/b" }, { "/a", "/b", "/a/b" },
                { "/a/", "/b", "/a/b" }, { "a", "", "a" },       { "", "b", "b" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *p = path_join(rows[i].a, rows[i].b);
                assert_string_equal(p, rows[i].want);
        }
}

/* Lambda's alias rule: (?!^[0-9]+$)([a-zA-Z0-9-_]+), 1..128. */
static void test_function_alias_name(void **state) {
        static const struct {
                const char *name;
                bool ok;
        } rows[] = {
                { "prod", true }, { "v-1_b", true }, { "1a", true },   { "a1", true },   { "_", true },
                { "-", true },    { "", false },     { "1", false },   { "123", false }, { "$LATEST", false },
                { "a.b", false }, { "a b", false },  { "a:b", false }, { "a/b", false }, { "é", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                assert_int_equal(function_alias_name_is_valid(rows[i].name), rows[i].ok);
        char n[130];
        memset(n, 'x', sizeof(n));
        n[128] = 0;
        assert_true(function_alias_name_is_valid(n));
        n[128] = 'x';
        n[129] = 0;
        assert_false(function_alias_name_is_valid(n));
        assert_false(function_alias_name_is_valid(NULL));
}

static void test_path_base_name(void **state) {
        const struct {
                const char *path, *want;
        } rows[] = {
                { "f.py", "f.py" }, { "t/f.py", "f.py" }, { "/tmp/t/f.py", "f.py" }, { "d/", "" }, { "", "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                assert_string_equal(path_base_name(rows[i].path), rows[i].want);
}

static void test_identifier_is_valid(void **state) {
        const char *good[] = { "a", "_", "a1", "A_b", "\xc3\xa9", "na\xc3\xafve", "_\xe5\x90\x8d" };
        const char *bad[] = { "", "1a", "a-b", "a b", "a.b", "\xff", "a\xc3", "\xed\xa0\x80" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_true(identifier_is_valid(good[i]));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_false(identifier_is_valid(bad[i]));
}

static void test_mkdir_rm_rf_and_files(void **state) {
        char tmpl[] = "/tmp/basic-test-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *deep = path_join(tmpl, "a/b/c");
        assert_int_equal(mkdir_p(deep, 0755), 0);
        assert_int_equal(mkdir_p(deep, 0755), 0); /* idempotent */
        _cleanup_free_ char *f = path_join(deep, "f.txt");
        assert_int_equal(write_file_atomic(f, "hello", 5, 0444), 0);
        _cleanup_free_ char *got = NULL;
        size_t n = 0;
        assert_int_equal(read_file(f, 100, &got, &n), 0);
        assert_int_equal(n, 5);
        assert_string_equal(got, "hello");
        _cleanup_free_ char *small = NULL;
        assert_int_equal(read_file(f, 3, &small, NULL), -EFBIG);
        /* A read-only directory is still removed. */
        _cleanup_free_ char *ro = path_join(tmpl, "a/b");
        assert_int_equal(chmod(ro, 0555), 0);
        /* A symlink to outside must be removed, never followed. */
        _cleanup_free_ char *outside = path_join("/tmp", "basic-test-outside");
        mkdir(outside, 0755);
        _cleanup_free_ char *link = path_join(tmpl, "a/link");
        assert_int_equal(symlink(outside, link), 0);
        assert_int_equal(rm_rf(tmpl), 0);
        struct stat st;
        assert_int_equal(stat(tmpl, &st), -1);
        assert_int_equal(stat(outside, &st), 0);
        rmdir(outside);
        assert_int_equal(rm_rf("/tmp/does-not-exist-basic-test"), 0);
}

/* A tree deeper than the fds a process has (a run's /out, one mkdir and
 * chdir per level) is removed all the same, with a handful of fds: before,
 * rm_rf held one per level and failed with EMFILE, leaving it on disk. */
static void test_rm_rf_deeper_than_the_fd_limit(void **state) {
        char tmpl[] = "/tmp/basic-deep-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        int fd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        for (int i = 0; i < 3000; i++) {
                assert_int_equal(mkdirat(fd, "a", 0700), 0);
                if (i % 500 == 0) {
                        int f = openat(fd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                        assert_true(f >= 0);
                        close(f);
                }
                int sub = openat(fd, "a", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(sub >= 0);
                close(fd);
                fd = sub;
        }
        close(fd);
        struct rlimit saved, low;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
        low = saved;
        low.rlim_cur = 64;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        int r = rm_rf(tmpl);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
        assert_int_equal(r, 0);
        struct stat st;
        assert_int_equal(stat(tmpl, &st), -1);
}

static void test_ids_sort_by_time(void **state) {
        _cleanup_free_ char *a = id_new("r");
        usleep(2000);
        _cleanup_free_ char *b = id_new("r");
        assert_int_equal(strlen(a), 17);
        assert_true(a[0] == 'r');
        assert_true(strcmp(a, b) < 0);
        _cleanup_free_ char *h = NULL;
        assert_int_equal(random_hex(16, &h), 0);
        assert_int_equal(strlen(h), 32);
}

/* Ids made in one millisecond differ in their random half (many per
 * getrandom() call, handed out once each), in every thread, and a fork()ed
 * child never hands out the ids its parent will. */
static void test_ids_unique(void **state) {
        (void) state;
        enum { N = 2000 };
        char **ids = xcalloc(N, sizeof(char *));
        for (int i = 0; i < N; i++)
                ids[i] = id_new("r");
        for (int i = 0; i < N; i++)
                for (int j = i + 1; j < N; j++)
                        assert_true(strcmp(ids[i] + 9, ids[j] + 9) != 0);
        for (int i = 0; i < N; i++)
                free(ids[i]);
        free(ids);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        _cleanup_free_ char *first = id_new("r"); /* the pool is filled */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char *mine[4];
                for (int i = 0; i < 4; i++) {
                        mine[i] = id_new("r");
                        if (write(pfd[1], mine[i] + 9, 8) != 8)
                                _exit(1);
                }
                _exit(0);
        }
        close(pfd[1]);
        char theirs[4][9] = {};
        for (int i = 0; i < 4; i++)
                assert_int_equal(read(pfd[0], theirs[i], 8), 8);
        close(pfd[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        for (int i = 0; i < 4; i++) {
                _cleanup_free_ char *ours = id_new("r");
                for (int j = 0; j < 4; j++)
                        assert_true(memcmp(ours + 9, theirs[j], 8) != 0);
        }
}

static void test_timestamp(void **state) {
        char buf[32];
        assert_string_equal(format_timestamp(0, buf), "1970-01-01T00:00:00.000Z");
        assert_string_equal(format_timestamp(1500 * USEC_PER_MSEC, buf), "1970-01-01T00:00:01.500Z");
        /* The digit-by-digit path agrees with strftime's spelling. */
        assert_string_equal(format_timestamp(1764528723123456ULL, buf), "2025-11-30T18:52:03.123Z");
        assert_string_equal(format_timestamp(951782400999999ULL, buf), "2000-02-29T00:00:00.999Z");
        assert_string_equal(format_timestamp(253402300799001000ULL, buf), "9999-12-31T23:59:59.001Z");
        assert_string_equal(format_timestamp(253402300800000000ULL, buf), "10000-01-01T00:00:00.000Z");
}

/* Milliseconds exact to the microsecond, shortest spelling: the runs'
 * timings (engine-run.c) and the store's binary form of them both spell
 * with it, so the store gives the engine's text back byte for byte. */
static void test_format_ms(void **state) {
        static const struct {
                usec_t us;
                const char *text;
        } cases[] = {
                { 0, "0.0" },          { 1, "0.001" },       { 10, "0.01" },        { 100, "0.1" },
                { 120, "0.12" },       { 1000, "1.0" },      { 1001, "1.001" },     { 44000, "44.0" },
                { 1234567, "1234.567" }, { 10000000, "10000.0" },
                { UINT64_MAX, "18446744073709551.615" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[FORMAT_MS_MAX];
                assert_int_equal(format_ms(cases[i].us, buf), strlen(cases[i].text));
                assert_string_equal(buf, cases[i].text);
        }
}

static void test_data_dir(void **state) {
        setenv("PYSPRINTER_HOME", "/x/home", 1);
        _cleanup_free_ char *a = data_dir_default();
        assert_string_equal(a, "/x/home");
        unsetenv("PYSPRINTER_HOME");
        setenv("XDG_DATA_HOME", "/xdg", 1);
        _cleanup_free_ char *b = data_dir_default();
        assert_string_equal(b, "/xdg/pysprinter");
        unsetenv("XDG_DATA_HOME");
        setenv("HOME", "/home/u", 1);
        _cleanup_free_ char *c = data_dir_default();
        assert_string_equal(c, "/home/u/.local/share/pysprinter");
}

/* json_shorten_reals(in) is want; so is json_shorten_reals_take(), which
 * gives in itself back when nothing is respelled (no copy of a large
 * answer). */
static void check_shorten(size_t row, const char *in, const char *want) {
        _cleanup_free_ char *got = json_shorten_reals(in);
        if (!streq(got, want))
                fail_msg("row %zu: %s -> %s, want %s", row, in, got, want);
        char *mine = xstrdup(in);
        _cleanup_free_ char *took = json_shorten_reals_take(mine);
        if (!streq(took, want))
                fail_msg("row %zu: %s -> %s (taken), want %s", row, in, took, want);
        assert_true((took == mine) == streq(in, want));
}

static void test_json_shorten_reals(void **state) {
        const struct {
                const char *in, *want;
        } rows[] = {
                { "0.10000000000000001", "0.1" },
                { "[3.1415926535897931,2.5,-0.0,1e+16]", "[3.141592653589793,2.5,-0.0,1e+16]" },
                { "{\"a\":4.2000000000000002,\"s\":\"0.10000000000000001\"}",
                  "{\"a\":4.2,\"s\":\"0.10000000000000001\"}" },
                { "[1,-7,123456789012345678]", "[1,-7,123456789012345678]" },
                { "1.0", "1.0" },
                { "100.0", "100.0" },
                { "2.2250738585072014e-308", "2.2250738585072014e-308" },
                { "\"\\\"1.50\"", "\"\\\"1.50\"" },
                { "", "" },
                { "[1.0000000000000001e-05,0.0001,123456789.123,5e-324]", "[1e-05,0.0001,123456789.123,5e-324]" },
                { "[1.7976931348623157e+308,1.5e+16,12345678901234567.0]",
                  "[1.7976931348623157e+308,1.5e+16,1.2345678901234568e+16]" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                check_shorten(i, rows[i].in, rows[i].want);
        assert_null(json_shorten_reals_take(NULL));
}

/* The respelling without json_shorten_reals()'s pass-through of reals
 * already spelled shortest: the oracle the pass-through must agree with. */
static void shortest_ref(double v, char out[static 64]) {
        char e[40];
        int p;
        for (p = 1; p <= 17; p++) {
                snprintf(e, sizeof(e), "%.*e", p - 1, v);
                if (strtod(e, NULL) == v)
                        break;
        }
        int x = atoi(strchr(e, 'e') + 1);
        if (x >= -4 && x < 16) {
                int n = snprintf(out, 64, "%.*f", p - 1 - x > 0 ? p - 1 - x : 0, v);
                if (!strchr(out, '.'))
                        memcpy(out + n, ".0", 3);
        } else
                snprintf(out, 64, "%.*e", p - 1, v);
}

static void test_json_shorten_reals_pass_through_agrees(void **state) {
        /* Reals as jansson prints them (%.17g, ".0" added when integral):
         * timings in ms exact to the µs, money, small and large values,
         * and random bit patterns. */
        uint64_t seed = 88172645463325252ULL;
        for (int i = 0; i < 200000; i++) {
                double v;
                seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                switch (i % 5) {
                case 0: v = (double) (seed % 100000000) / 1000.0; break;        /* 12345.678 */
                case 1: v = (double) (seed % 1000000) / 100.0; break;           /* 9999.99 */
                case 2: v = (double) (int64_t) (seed % 2000000000000000ULL) / 10.0 - 1e14; break;
                case 3: v = (double) (seed % 100000) * 1e-7; break;             /* around 1e-4 */
                default: {
                        memcpy(&v, &seed, sizeof v);
                        if (!isfinite(v))
                                continue;
                }
                }
                char in[64], want[64];
                int n = snprintf(in, sizeof in, "%.17g", v);
                if (!strpbrk(in, ".eEn"))
                        memcpy(in + n, ".0", 3);
                shortest_ref(v, want);
                _cleanup_free_ char *got = json_shorten_reals(in);
                if (!streq(got, want))
                        fail_msg("%s -> %s, want %s", in, got, want);
        }
        /* Spellings jansson never makes are respelled, not passed through. */
        const struct {
                const char *in, *want;
        } rows[] = {
                { "1.50", "1.5" }, { "007.5", "7.5" }, { "0.00001", "1e-05" }, { "0.0001", "0.0001" },
                { "1234567890123456.0", "1234567890123456.0" }, { "10000000000000000.0", "1e+16" },
                { "0.123456789012345", "0.123456789012345" }, { "-0.0", "-0.0" }, { "0.0", "0.0" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                check_shorten(i, rows[i].in, rows[i].want);
        assert_null(json_shorten_reals_take(NULL));
}

static void test_utf8(void **state) {
        const struct {
                const char *in;
                size_t len, bad; /* bad == len: valid */
        } rows[] = {
                { "", 0, 0 },
                { "plain ascii", 11, 11 },
                { "caf\xc3\xa9", 5, 5 },                    /* é */
                { "caf\xe9", 4, 3 },                          /* Latin-1 é */
                { "\xff", 1, 0 },
                { "ab\xc0\xaf", 4, 2 },                      /* overlong '/' */
                { "\xe0\x80\xaf", 3, 0 },                    /* overlong 3-byte */
                { "x\xed\xa0\x80", 4, 1 },                   /* surrogate U+D800 */
                { "\xed\x9f\xbf", 3, 3 },                    /* U+D7FF */
                { "\xf0\x9f\x98\x80!", 5, 5 },               /* U+1F600 */
                { "\xf4\x8f\xbf\xbf", 4, 4 },                /* U+10FFFF */
                { "\xf4\x90\x80\x80", 4, 0 },                /* above U+10FFFF */
                { "\xf5\x80\x80\x80", 4, 0 },
                { "ok\xe2\x82", 4, 2 },                       /* truncated */
                { "\xc3(", 2, 0 },                             /* bad continuation */
                { "\x80", 1, 0 },                              /* lone continuation */
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                size_t got = utf8_invalid_offset(rows[i].in, rows[i].len);
                if (got != rows[i].bad)
                        fail_msg("row %zu: offset %zu, want %zu", i, got, rows[i].bad);
        }
        assert_true(utf8_is_valid("h\xc3\xa9"));
        assert_false(utf8_is_valid("h\xe9"));

        size_t line, col;
        const char *src = "a\n\xc3\xa9t\xc3\xa9 \xe9";
        utf8_line_col(src, 0, &line, &col);
        assert_int_equal(line, 1);
        assert_int_equal(col, 1);
        utf8_line_col(src, strlen(src) - 1, &line, &col); /* the \xe9: after "été " */
        assert_int_equal(line, 2);
        assert_int_equal(col, 5);
}

/* Output written in pieces: a cut never splits a character, and what a
 * lossy reader shows keeps every valid character. */
static void test_utf8_pieces(void **state) {
        const struct {
                const char *in;
                size_t len, keep;
        } cuts[] = {
                { "", 0, 0 },
                { "abc", 3, 3 },
                { "a\xc3", 2, 1 },                       /* é cut after its lead byte */
                { "a\xc3\xa9", 3, 3 },
                { "\xe2\x82", 2, 0 },                    /* € cut after 2 of 3 */
                { "x\xe2\x82\xac", 4, 4 },
                { "x\xf0\x9f\x98", 4, 1 },               /* U+1F600 cut after 3 of 4 */
                { "x\xf0\x9f\x98\x80", 5, 5 },
                { "a\xff", 2, 2 },                       /* never a lead byte: nothing to wait for */
                { "a\x80\x80\x80", 4, 4 },               /* continuations with no lead in reach */
                { "\xc3\xa9\xc3", 3, 2 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cuts); i++) {
                size_t got = utf8_complete_prefix(cuts[i].in, cuts[i].len);
                if (got != cuts[i].keep)
                        fail_msg("cut %zu: %zu, want %zu", i, got, cuts[i].keep);
        }

        const struct {
                const char *in;
                size_t len;
                const char *want;
                size_t want_len;
        } lossy[] = {
                { "", 0, "", 0 },
                { "caf\xc3\xa9", 5, "caf\xc3\xa9", 5 },
                { "\xff\xfe bad\n", 7, "\xef\xbf\xbd\xef\xbf\xbd bad\n", 11 },
                { "ok\xe2\x82", 4, "ok\xef\xbf\xbd\xef\xbf\xbd", 8 },
                { "a\0\xff" "b", 4, "a\0\xef\xbf\xbd" "b", 6 },   /* a NUL is valid: kept */
        };
        for (size_t i = 0; i < ELEMENTSOF(lossy); i++) {
                size_t n = 0;
                _cleanup_free_ char *got = utf8_replace_invalid(lossy[i].in, lossy[i].len, &n);
                if (n != lossy[i].want_len || memcmp(got, lossy[i].want, n) != 0)
                        fail_msg("lossy %zu: '%s' (%zu bytes), want '%s'", i, got, n, lossy[i].want);
                assert_int_equal(got[n], 0);
                assert_int_equal(utf8_invalid_offset(got, n), n);
        }
}

static void test_idempotency_key_is_valid(void **state) {
        (void) state;
        char max[IDEMPOTENCY_KEY_MAX + 2];
        memset(max, 'k', sizeof(max));
        max[IDEMPOTENCY_KEY_MAX] = 0;
        static const struct {
                const char *key;
                bool valid;
        } rows[] = {
                { "order-42", true },      { "a", true },     { "!~", true },    { "550e8400-e29b-41d4", true },
                { "a:b/c=d+e_f.g", true }, { "", false },     { " ", false },    { "a b", false },
                { " a", false },           { "a ", false },   { "a\tb", false }, { "a\r\nX-Evil: 1", false },
                { "caf\xc3\xa9", false },  { "\x7f", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                assert_int_equal(idempotency_key_is_valid(rows[i].key), rows[i].valid);
        assert_false(idempotency_key_is_valid(NULL));
        assert_true(idempotency_key_is_valid(max));
        max[IDEMPOTENCY_KEY_MAX] = 'k';
        max[IDEMPOTENCY_KEY_MAX + 1] = 0;
        assert_false(idempotency_key_is_valid(max));
}

static void test_parse_int(void **state) {
        int x = 7;
        assert_int_equal(parse_int("42", &x), 0);
        assert_int_equal(x, 42);
        assert_int_equal(parse_int("-3", &x), 0);
        assert_int_equal(x, -3);
        static const char *const bad[] = { "", "4x", " 4", "0x10", "--1" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_int(bad[i], &x), -EINVAL);
        assert_int_equal(parse_int("99999999999", &x), -ERANGE);
        assert_int_equal(x, -3); /* untouched on failure */
}

static void test_parse_uint64(void **state) {
        uint64_t x = 7;
        assert_int_equal(parse_uint64("100000", &x), 0);
        assert_int_equal(x, 100000);
        assert_int_equal(parse_uint64("18446744073709551615", &x), 0);
        assert_true(x == UINT64_MAX);
        static const char *const bad[] = { "", "4x", " 4", "-1", "+1", "1e3", "10 " };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_uint64(bad[i], &x), -EINVAL);
        assert_int_equal(parse_uint64("18446744073709551616", &x), -ERANGE);
        assert_true(x == UINT64_MAX); /* untouched on failure */
}

/* A zombie holds its pid but is not running: the cgroup sweep must treat
 * what it owned as an orphan's. */
static void test_pid_is_running(void **state) {
        uint64_t t;
        assert_true(pid_is_running(getpid()));
        assert_int_equal(pid_start_time(getpid(), &t), 0);
        assert_true(pid_alive_since(getpid(), t));
        assert_false(pid_alive_since(getpid(), t + 1)); /* a reused pid */
        assert_false(pid_is_running(1 << 23));
        assert_false(pid_alive_since(1 << 23, t));
        assert_false(pid_alive_since(0, 0));
        assert_int_equal(pid_start_time(1 << 23, &t), -ESRCH);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0)
                _exit(0);
        /* Not reaped yet: a zombie once it has exited. */
        siginfo_t si;
        assert_int_equal(waitid(P_PID, child, &si, WEXITED | WNOWAIT), 0);
        assert_false(pid_is_running(child));
        assert_int_equal(pid_start_time(child, &t), 0);
        assert_false(pid_alive_since(child, t));
        assert_int_equal(waitpid(child, NULL, 0), child);
        assert_false(pid_is_running(child));
        /* A process that cannot be looked at is not taken for gone: the
         * cgroup sweep removes what a gone pid made, and a sweeper out of
         * descriptors took every live engine's groups for orphans. */
        struct rlimit old;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        int fds[4096], n = 0;
        struct rlimit low = { .rlim_cur = 64, .rlim_max = old.rlim_max };
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        while (n < (int) ELEMENTSOF(fds) && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
                n++;
        assert_int_equal(errno, EMFILE);
        bool seen = pid_is_running(getppid());
        bool seen_since = pid_alive_since(getppid(), 12345);
        while (n > 0)
                close(fds[--n]);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        assert_true(seen);
        assert_true(seen_since);
}

/* A daemon started at systemd's soft 1024 raises itself to the hard limit
 * (or the cap), and never lowers a limit already above the cap. */
static void test_fd_limit_raise(void **state) {
        struct rlimit saved, rl;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
        if (saved.rlim_max < 256) {
                skip();
                return;
        }
        rl = (struct rlimit) { .rlim_cur = 64, .rlim_max = saved.rlim_max };
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
        assert_int_equal(fd_limit_raise(100), 100);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
        assert_int_equal(rl.rlim_cur, 100);
        assert_int_equal(rl.rlim_max, saved.rlim_max);
        /* Above the cap already: left as it is. */
        assert_int_equal(fd_limit_raise(80), 100);
        /* Up to the hard limit, never past it. */
        assert_int_equal(fd_limit_raise(ULONG_MAX), (long) saved.rlim_max);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

static void test_str_escape_controls(void **state) {
        static const struct {
                const char *in;
                bool keep_tab;
                size_t size;
                const char *out;
        } rows[] = {
                { "plain é", false, 64, "plain é" },
                { "a\nb\rc\td", false, 64, "a\\nb\\rc\\td" },
                { "a\td", true, 64, "a\td" },
                { "\x1b]0;t\x07\x1b[2J\x7f", false, 64, "\\x1b]0;t\\x07\\x1b[2J\\x7f" },
                { "ab\x1b", false, 5, "ab" }, /* an escape is never cut */
                { "a\xc3\xa9"
                  "b",
                  false, 3, "a" }, /* nor a character */
                { "a\xc3\xa9"
                  "b",
                  false, 4, "a\xc3\xa9" },
                { "", false, 1, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                char buf[64];
                size_t n = str_escape_controls(rows[i].in, rows[i].keep_tab, buf, rows[i].size);
                assert_string_equal(buf, rows[i].out);
                assert_int_equal(n, strlen(rows[i].out));
        }
}

/* A log message is one line whatever it carries: control bytes are
 * escaped, a tab and UTF-8 stay. */
static void test_log_msg_is_one_line(void **state) {
        char path[] = "/tmp/test-basic-log-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        (void) unlink(path);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);
        log_set_prefix("t");
        log_set_level(LOG_INFO);
        assert_false(log_level_enabled(LOG_DEBUG));
        assert_true(log_level_enabled(LOG_WARN));
        errno = EIO;
        log_warn("a\nt: error: forged\r\x1b[31m\x7f\tend \xc3\xa9");
        assert_int_equal(errno, EIO);
        log_debug("not written");
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        char got[256] = {};
        assert_true(pread(fd, got, sizeof(got) - 1, 0) > 0);
        close(fd);
        assert_string_equal(got, "t: warning: a\\nt: error: forged\\r\\x1b[31m\\x7f\tend \xc3\xa9\n");
        log_set_prefix("pysprinter");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_buf_cap),
                cmocka_unit_test(test_fd_limit_raise),
                cmocka_unit_test(test_buf_printf_and_reset),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_percent_decode),
                cmocka_unit_test(test_strv_extend_choices),
                cmocka_unit_test(test_path_join),
                cmocka_unit_test(test_path_base_name),
                cmocka_unit_test(test_function_alias_name),
                cmocka_unit_test(test_identifier_is_valid),
                cmocka_unit_test(test_mkdir_rm_rf_and_files),
                cmocka_unit_test(test_rm_rf_deeper_than_the_fd_limit),
                cmocka_unit_test(test_ids_sort_by_time),
                cmocka_unit_test(test_ids_unique),
                cmocka_unit_test(test_timestamp),
                cmocka_unit_test(test_format_ms),
                cmocka_unit_test(test_data_dir),
                cmocka_unit_test(test_json_shorten_reals),
                cmocka_unit_test(test_utf8),
                cmocka_unit_test(test_utf8_pieces),
                cmocka_unit_test(test_json_shorten_reals_pass_through_agrees),
                cmocka_unit_test(test_parse_int),
                cmocka_unit_test(test_parse_uint64),
                cmocka_unit_test(test_idempotency_key_is_valid),
                cmocka_unit_test(test_pid_is_running),
                cmocka_unit_test(test_log_msg_is_one_line),
                cmocka_unit_test(test_str_escape_controls),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
