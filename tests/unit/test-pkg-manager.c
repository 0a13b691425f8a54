/* Unit tests of the package manager's pure parts: URL joining, typo
 * suggestions, core metadata, RECORD hashes, lock JSON, and the wheel
 * unpacker against hostile archives written here with libarchive; the
 * store's cancel (PkgEnvOptions.cancel) against a slow local HTTP server;
 * and prune against installers, each step of one played between two of
 * the other's (pkg_test_hook). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "basic.h"
#include "pkg-mgr.h"
#include "pkg.h"
#include "slow-http.h"

static void test_content_range_parse(void **state) {
        const struct {
                const char *v;
                int r;
                uint64_t first, total;
        } rows[] = {
                { " bytes 0-9/10\r\n", 0, 0, 10 },
                { "bytes 100-199/1000", 0, 100, 1000 },
                { "\tBYTES 5-5/6 ", 0, 5, 6 },
                { "bytes */2098942\r\n", 1, 0, 2098942 },
                { " bytes */0", 1, 0, 0 },
                { "bytes 18446744073709551614-18446744073709551614/18446744073709551615", 0,
                  UINT64_C(18446744073709551614), UINT64_C(18446744073709551615) },
                { "bytes 0-1/18446744073709551616", -EINVAL, 0, 0 }, /* overflow */
                { "bytes 0-9/*", -EINVAL, 0, 0 },                    /* size unknown */
                { "bytes 9-0/10", -EINVAL, 0, 0 },
                { "bytes 0-10/10", -EINVAL, 0, 0 },
                { "bytes -1-5/10", -EINVAL, 0, 0 },
                { "bytes 0-5/10x", -EINVAL, 0, 0 },
                { "bytes 0-5 /10", -EINVAL, 0, 0 },
                { "bytes */", -EINVAL, 0, 0 },
                { "bytes *", -EINVAL, 0, 0 },
                { "items 0-5/10", -EINVAL, 0, 0 },
                { "bytes=0-5/10", -EINVAL, 0, 0 },
                { "bytes", -EINVAL, 0, 0 },
                { "", -EINVAL, 0, 0 },
                { "bytes +1-5/10", -EINVAL, 0, 0 },
        };
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                uint64_t first = 77, total = 77;
                int r = pkg_http_content_range_parse(rows[i].v, strlen(rows[i].v), &first, &total);
                if (r != rows[i].r)
                        fail_msg("%s: %d, want %d", rows[i].v, r, rows[i].r);
                assert_int_equal(first, r == 0 ? rows[i].first : 77);
                assert_int_equal(total, r >= 0 ? rows[i].total : 77);
        }
}

/* The METADATA of a wheel unpacked in the store, which the resolver reads
 * instead of downloading the wheel again (an index without PEP 658). */
static void test_store_read_metadata(void **state) {
        (void) state;
        char tmpl[] = "/tmp/test-pkg-storemeta-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *text = NULL;
        assert_int_equal(pkg_store_read_metadata(tmpl, &text), -ENOENT); /* no .dist-info */
        _cleanup_free_ char *di = path_join(tmpl, "big-1.0.dist-info");
        assert_int_equal(mkdir_p(di, 0755), 0);
        assert_int_equal(pkg_store_read_metadata(tmpl, &text), -ENOENT); /* no METADATA */
        _cleanup_free_ char *meta = path_join(di, "METADATA");
        const char *m = "Metadata-Version: 2.1\nName: big\nVersion: 1.0\n";
        assert_int_equal(write_file_atomic(meta, m, strlen(m), 0644), 0);
        assert_int_equal(pkg_store_read_metadata(tmpl, &text), 0);
        assert_string_equal(text, m);
        _cleanup_free_ char *gone = path_join(tmpl, "nowhere");
        char *none = NULL;
        assert_int_equal(pkg_store_read_metadata(gone, &none), -ENOENT);
        assert_null(none);
        (void) rm_rf(tmpl);
}

static void test_url_redact(void **state) {
        const struct {
                const char *text, *want;
        } rows[] = {
                { "https://pypi.org/simple/", "https://pypi.org/simple/" },
                { "GET http://deploy:S3CRET@127.0.0.1:9/simple/x/: HTTP 500",
                  "GET http://deploy:****@127.0.0.1:9/simple/x/: HTTP 500" },
                { "(index https://TOKEN@host/simple/)", "(index https://****@host/simple/)" },
                { "a http://u:p@h b https://v:q@i/x", "a http://u:****@h b https://v:****@i/x" },
                { "http://h/path@not-userinfo", "http://h/path@not-userinfo" },
                { "http://u:p@a@h/", "http://u:****@h/" },
                { "file:///tmp/wheels", "file:///tmp/wheels" },
                { "", "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *got = pkg_url_redact(rows[i].text);
                assert_string_equal(got, rows[i].want);
        }
        assert_null(pkg_url_redact(NULL));
}

static void test_url_join(void **state) {
        static const struct {
                const char *base, *href, *want;
        } rows[] = {
                { "http://h/simple/requests/", "../../files/r.whl", "http://h/files/r.whl" },
                { "http://h/simple/requests/", "r.whl#sha256=ab", "http://h/simple/requests/r.whl#sha256=ab" },
                { "http://h:8080/simple/x/", "/files/a.whl", "http://h:8080/files/a.whl" },
                { "https://h/simple/x/", "//cdn/a.whl", "https://cdn/a.whl" },
                { "https://h/simple/x/", "https://files/a.whl", "https://files/a.whl" },
                { "http://h/simple/x/?q=1", "./a.whl", "http://h/simple/x/a.whl" },
                { "http://h/a/b/c", "../../../../x", "http://h/x" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *got = pkg_url_join(rows[i].base, rows[i].href);
                assert_string_equal(got, rows[i].want);
        }
}

static void test_file_url_path(void **state) {
        static const struct {
                const char *url, *path;
        } rows[] = {
                { "file:///srv/files/a-1.0%2Blocal-py3-none-any.whl", "/srv/files/a-1.0+local-py3-none-any.whl" },
                { "file://localhost/srv/a.whl", "/srv/a.whl" },
                { "file:///srv/my%20dir/a.whl#sha256=ab", "/srv/my dir/a.whl" },
                { "file:///srv/a.whl?x=1", "/srv/a.whl" },
                { "file:///srv/100%zz/a.whl", "/srv/100%zz/a.whl" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *got = pkg_file_url_path(rows[i].url);
                assert_string_equal(got, rows[i].path);
        }
        static const char *const paths[] = { "/srv/wheels 100%20/a-1.0+l-py3-none-any.whl", "/plain/a_b-1.0.whl",
                                             "/srv/\xc3\xa9t\xc3\xa9/x.whl" };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                _cleanup_free_ char *url = pkg_file_url_from_path(paths[i]);
                assert_true(startswith(url, "file:///"));
                assert_null(strpbrk(url + 7, " +"));
                _cleanup_free_ char *back = pkg_file_url_path(url);
                assert_string_equal(back, paths[i]);
        }
        _cleanup_free_ char *plain = pkg_file_url_from_path("/plain/a_b-1.0.whl");
        assert_string_equal(plain, "file:///plain/a_b-1.0.whl");
}

static void test_close_names(void **state) {
        char *cands[] = { "requests", "request", "urllib3", "numpy", "requests-oauthlib", "six", NULL };
        char **v = pkg_close_names("reqeusts", cands, 3);
        assert_non_null(v);
        assert_string_equal(v[0], "requests");
        strv_free(v);
        v = pkg_close_names("nunpy", cands, 3);
        assert_non_null(v);
        assert_string_equal(v[0], "numpy");
        strv_free(v);
        v = pkg_close_names("zzzzzzzz", cands, 3);
        assert_null(v);
}

static void test_metadata(void **state) {
        const char *text = "Metadata-Version: 2.1\r\nName: Foo.Bar\nVersion: 1.0\nRequires-Python: >=3.8\n"
                           "Requires-Dist: idna (<4,>=2.5)\nRequires-Dist: socks; extra == 'socks'\n"
                           "Provides-Extra: Socks_Extra\nDescription: long\n  continued\n\nBody: not a header\n";
        PkgMetadata *m = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(pkg_metadata_parse(text, &m, &err), 0);
        assert_string_equal(m->name, "Foo.Bar");
        assert_string_equal(m->version, "1.0");
        assert_string_equal(m->requires_python, ">=3.8");
        assert_int_equal(strv_length(m->requires_dist), 2);
        assert_string_equal(m->provides_extra[0], "socks-extra");
        pkg_metadata_free(m);
        /* No trailing newline, no body. */
        assert_int_equal(pkg_metadata_parse("Name: x\nVersion: 2", &m, &err), 0);
        assert_string_equal(m->version, "2");
        pkg_metadata_free(m);
        assert_true(pkg_metadata_parse("Name: x\n", &m, &err) < 0);
}

static void test_record_hash(void **state) {
        /* sha256("") in RECORD form. */
        uint8_t d[32];
        sha256_digest("", 0, d);
        _cleanup_free_ char *r = pkg_record_hash(d);
        assert_string_equal(r, "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        /* SHA-256 itself is src/shared's: tests/unit/test-shared.c. */
}

static void test_lock_roundtrip(void **state) {
        const char *j = "{\"version\":1,\"requirements\":[\"a>=1\"],\"packages\":[{\"name\":\"a\",\"version\":\"1.0\","
                        "\"filename\":\"a-1.0-py3-none-any.whl\",\"url\":\"http://x/a.whl\",\"sha256\":"
                        "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"dependencies\":[\"b\"]}]}";
        PkgLock *l = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(pkg_lock_from_json(j, &l, &err), 0);
        assert_int_equal(l->n_entries, 1);
        /* A resolution's warnings are said once, not part of the lock: a
         * cached lock installs the same files without them. */
        l->warnings = strv_append(NULL, "`a==1.0` is yanked");
        _cleanup_free_ char *out = pkg_lock_to_json(l, false);
        assert_string_equal(out, j);
        pkg_lock_free(l);
        /* A sha256 that could walk out of the store is refused. */
        assert_true(pkg_lock_from_json("{\"version\":1,\"packages\":[{\"name\":\"a\",\"version\":\"1\",\"filename\":"
                                       "\"a.whl\",\"url\":\"u\",\"sha256\":\"../../etc\"}]}",
                                       &l, &err) < 0);
}

/* The requirements markers leave out (what `lock` says, as pip's
 * "Ignoring"): kept in the JSON, which has them only when there is one. */
static void test_lock_ignored_roundtrip(void **state) {
        const char *j = "{\"version\":1,\"requirements\":[\"pywin32>=300; sys_platform == \\\"win32\\\"\"],"
                        "\"ignored\":[{\"name\":\"pywin32\",\"marker\":\"sys_platform == \\\"win32\\\"\"}],"
                        "\"packages\":[]}";
        PkgLock *l = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(pkg_lock_from_json(j, &l, &err), 0);
        assert_string_equal(l->ignored[0], "pywin32");
        assert_string_equal(l->ignored_markers[0], "sys_platform == \"win32\"");
        assert_null(l->ignored[1]);
        _cleanup_free_ char *out = pkg_lock_to_json(l, false);
        assert_string_equal(out, j);
        pkg_lock_free(l);
        assert_true(pkg_lock_from_json("{\"version\":1,\"ignored\":[{\"name\":\"x\"}],\"packages\":[]}", &l, &err) < 0);
}

/* Locks compared by the files they pin (a stack's redeploy): not by
 * where an index serves them from. */
static void test_lock_same_files(void **state) {
#define LOCK(url, sha, ver)                                                                           \
        "{\"version\":1,\"requirements\":[\"a>=1\"],\"packages\":[{\"name\":\"a\",\"version\":\"" ver \
        "\",\"filename\":\"a-1.0-py3-none-any.whl\",\"url\":\"" url "\",\"sha256\":\"" sha "\",\"dependencies\":[]}]}"
#define SHA1 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA2 "ca7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        static const struct {
                const char *a, *b;
                bool same;
        } rows[] = {
                { NULL, NULL, true },
                { LOCK("http://x/a.whl", SHA1, "1.0"), NULL, false },
                { LOCK("http://x/a.whl", SHA1, "1.0"), LOCK("http://x/a.whl", SHA1, "1.0"), true },
                { LOCK("http://x/a.whl", SHA1, "1.0"), LOCK("http://y/a.whl?sig=2", SHA1, "1.0"), true },
                { LOCK("http://x/a.whl", SHA1, "1.0"), LOCK("http://x/a.whl", SHA2, "1.0"), false },
                { LOCK("http://x/a.whl", SHA1, "1.0"), LOCK("http://x/a.whl", SHA1, "1.1"), false },
                { LOCK("http://x/a.whl", SHA1, "1.0"), "{\"version\":1,\"packages\":[]}", false },
                { "not json", "not json", true },
                { "not json", "{}", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                assert_int_equal(pkg_lock_json_same_files(rows[i].a, rows[i].b), rows[i].same);
                assert_int_equal(pkg_lock_json_same_files(rows[i].b, rows[i].a), rows[i].same);
        }
#undef LOCK
#undef SHA1
#undef SHA2
}

/* A set-aside record goes once nobody holds it, not at the next prune;
 * one held (by this process too) or of another key stays. */
static void test_env_held_sweep(void **state) {
        char tmpl[] = "/tmp/test-pkg-held-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *envs = path_join(tmpl, "envs");
        assert_int_equal(mkdir_p(envs, 0755), 0);
        const char *names[] = { ".held-k1-aaaa.json", ".held-k1-bbbb.json", ".held-k2-cccc.json", "k1.json" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *p = path_join(envs, names[i]);
                assert_int_equal(write_file_atomic(p, "{}", 2, 0644), 0);
        }
        _cleanup_free_ char *held = path_join(envs, names[1]);
        int fd = open(held, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_SH), 0);
        pkg_env_held_sweep(tmpl, "k1");
        bool present[] = { false, true, true, true };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *p = path_join(envs, names[i]);
                assert_int_equal(access(p, F_OK) == 0, present[i]);
        }
        close(fd);
        pkg_env_held_sweep(tmpl, "k1");
        assert_int_equal(access(held, F_OK), -1);
        rm_rf(tmpl);
}

/* ---- wheels ---- */

typedef struct Ent {
        const char *path;
        const char *data;
        mode_t type;
} Ent;

static char *make_zip(const char *dir, const char *name, const Ent *ents, size_t n, bool with_record) {
        char *path = path_join(dir, name);
        struct archive *a = archive_write_new();
        archive_write_set_format_zip(a);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        Buf rec;
        buf_init(&rec, 1 << 20);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, ents[i].path);
                archive_entry_set_filetype(e, ents[i].type ? ents[i].type : AE_IFREG);
                archive_entry_set_perm(e, 0644);
                size_t len = ents[i].data ? strlen(ents[i].data) : 0;
                if (ents[i].type == AE_IFLNK)
                        archive_entry_set_symlink(e, ents[i].data);
                else
                        archive_entry_set_size(e, (la_int64_t) len);
                archive_write_header(a, e);
                if (ents[i].type != AE_IFLNK && len)
                        archive_write_data(a, ents[i].data, len);
                archive_entry_free(e);
                uint8_t d[32];
                sha256_digest(ents[i].data ? ents[i].data : "", len, d);
                _cleanup_free_ char *rh = pkg_record_hash(d);
                buf_printf(&rec, "%s,%s,%zu\n", ents[i].path, rh, len);
        }
        if (with_record) {
                buf_appends(&rec, "w-1.0.dist-info/RECORD,,\n");
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, "w-1.0.dist-info/RECORD");
                archive_entry_set_filetype(e, AE_IFREG);
                archive_entry_set_perm(e, 0644);
                archive_entry_set_size(e, (la_int64_t) rec.len);
                archive_write_header(a, e);
                archive_write_data(a, rec.data, rec.len);
                archive_entry_free(e);
        }
        buf_free(&rec);
        archive_write_close(a);
        archive_write_free(a);
        return path;
}

#define BASE_ENTS \
        { "w-1.0.dist-info/METADATA", "Name: w\nVersion: 1.0\n", 0 }, \
        { "w-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n", 0 }

/* env verify: an installed wheel against its RECORD, the purelib file
 * where the unpack put it (the root). */
static void test_wheel_verify_installed(void **state) {
        char tmpl[] = "/tmp/test-pkg-manager-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        const Ent good[] = { BASE_ENTS,
                             { "w/__init__.py", "x = 1\n", 0 },
                             { "w-1.0.data/purelib/extra.py", "y = 2\n", 0 } };
        _cleanup_free_ char *gp = make_zip(tmpl, "w-1.0-py3-none-any.whl", good, ELEMENTSOF(good), true);
        _cleanup_free_ char *dest = path_join(tmpl, "out");
        _cleanup_free_ char *err = NULL;
        assert_int_equal(pkg_wheel_unpack(gp, "w-1.0-py3-none-any.whl", dest, &err), 0);
        static const struct {
                const char *damage; /* removed, or rewritten when data is set */
                const char *data;
                const char *problem;
        } rows[] = {
                { NULL, NULL, NULL },
                { "extra.py", "y = 3\n", "extra.py: content does not match RECORD" },
                { "extra.py", "y = 33\n", "extra.py: content does not match RECORD" },
                { "w/__init__.py", NULL, "w/__init__.py: missing" },
                { "w-1.0.dist-info/RECORD", NULL, "w-1.0.dist-info/RECORD: missing" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                if (rows[i].damage) {
                        _cleanup_free_ char *f = path_join(dest, rows[i].damage);
                        assert_int_equal(unlink(f), 0);
                        if (rows[i].data)
                                assert_int_equal(write_file_atomic(f, rows[i].data, strlen(rows[i].data), 0444), 0);
                }
                _cleanup_free_ char *name = NULL, *version = NULL, *problem = NULL;
                int r = pkg_wheel_verify_installed(dest, &name, &version, &problem);
                assert_string_equal(name, "w");
                assert_string_equal(version, "1.0");
                if (!rows[i].problem)
                        assert_int_equal(r, 0);
                else {
                        assert_int_equal(r, -EBADMSG);
                        assert_string_equal(problem, rows[i].problem);
                }
        }
        (void) rm_rf(tmpl);
}

static void test_wheel_unpack(void **state) {
        char tmpl[] = "/tmp/test-pkg-manager-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        const Ent good[] = { BASE_ENTS, { "w/__init__.py", "x = 1\n", 0 },
                             { "w-1.0.data/purelib/extra.py", "y = 2\n", 0 } };
        _cleanup_free_ char *gp = make_zip(tmpl, "w-1.0-py3-none-any.whl", good, ELEMENTSOF(good), true);
        _cleanup_free_ char *dest = path_join(tmpl, "out");
        _cleanup_free_ char *err = NULL;
        int r = pkg_wheel_unpack(gp, "w-1.0-py3-none-any.whl", dest, &err);
        assert_int_equal(r, 0);
        _cleanup_free_ char *moved = path_join(dest, "extra.py");
        assert_int_equal(access(moved, F_OK), 0);
        /* Files are created read-only (no chmod per file afterwards); their
         * directory stays writable until the store seals it. */
        struct stat st;
        assert_int_equal(stat(moved, &st), 0);
        assert_int_equal(st.st_mode & 0222, 0);
        assert_int_equal(stat(dest, &st), 0);
        assert_true(st.st_mode & 0200);
        _cleanup_free_ char *meta = NULL;
        assert_int_equal(pkg_wheel_read_metadata(gp, &meta, &err), 0);
        assert_non_null(strstr(meta, "Name: w"));

        static const struct {
                const char *name;
                Ent bad;
                bool record;
                const char *needle;
        } rows[] = {
                { "w-1.0-py3-none-trav.whl", { "../evil.py", "x", 0 }, true, "../evil.py" },
                { "w-1.0-py3-none-trav2.whl", { "w/../../evil.py", "x", 0 }, true, "traversal" },
                { "w-1.0-py3-none-abs.whl", { "/tmp/evil.py", "x", 0 }, true, "absolute" },
                { "w-1.0-py3-none-link.whl", { "w/link", "/etc/passwd", AE_IFLNK }, true, "w/link" },
                { "w-1.0-py3-none-norecord.whl", { "w/x.py", "x", 0 }, false, "RECORD" },
                /* A file named for project v whose .dist-info is w's: it
                 * would install as w, shadowing the real one (pip refuses). */
                { "v-1.0-py3-none-any.whl", { "w/__init__.py", "x", 0 }, true,
                  ".dist-info directory w-1.0.dist-info is not the project v" },
                { "w_other-1.0-py3-none-any.whl", { "w/__init__.py", "x", 0 }, true, "not the project w_other" },
                { "notawheelname.whl", { "w/x.py", "x", 0 }, true, "not a wheel file name" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                Ent ents[] = { BASE_ENTS, rows[i].bad };
                _cleanup_free_ char *p = make_zip(tmpl, rows[i].name, ents, ELEMENTSOF(ents), rows[i].record);
                _cleanup_free_ char *d = path_join(tmpl, "bad");
                _cleanup_free_ char *e = NULL;
                assert_true(pkg_wheel_unpack(p, rows[i].name, d, &e) < 0);
                assert_non_null(e);
                assert_non_null(strstr(e, rows[i].name));
                assert_non_null(strstr(e, rows[i].needle));
                assert_int_equal(access(d, F_OK), -1); /* cleaned up */
        }
        _cleanup_free_ char *escaped = path_join(tmpl, "evil.py");
        assert_int_equal(access(escaped, F_OK), -1);

        /* The .dist-info is the file's project but its METADATA names another. */
        const Ent other_meta[] = { { "w-1.0.dist-info/METADATA", "Name: requests\nVersion: 1.0\n", 0 },
                                   { "w-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n", 0 } };
        _cleanup_free_ char *op = make_zip(tmpl, "w-1.0-py3-none-meta.whl", other_meta, ELEMENTSOF(other_meta), true);
        _cleanup_free_ char *od = path_join(tmpl, "bad");
        _cleanup_free_ char *oe = NULL;
        assert_true(pkg_wheel_unpack(op, "w-1.0-py3-none-meta.whl", od, &oe) < 0);
        assert_non_null(strstr(oe, "metadata names a different project (requests)"));
        assert_int_equal(access(od, F_OK), -1);
        rm_rf(tmpl);
}

/* A zip whose ZIP64 end records declare `count` entries and hold none: the
 * cap must be applied from the central directory's count alone. */
static void write_zip64_end(const char *path, uint64_t count) {
        uint8_t z[56 + 20 + 22] = { 0 };
        memcpy(z, "PK\6\6", 4);
        z[4] = 44;                            /* size of the rest of the record */
        for (int k = 0; k < 8; k++) {
                z[24 + k] = (uint8_t) (count >> (8 * k)); /* entries on this disk */
                z[32 + k] = (uint8_t) (count >> (8 * k)); /* entries in all */
        }
        uint8_t *l = z + 56;                  /* locator: ZIP64 record at offset 0 */
        memcpy(l, "PK\6\7", 4);
        l[16] = 1;                            /* one disk */
        uint8_t *e = l + 20;                  /* classic end record, counts saturated */
        memcpy(e, "PK\5\6", 4);
        memset(e + 8, 0xFF, 12);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write_full(fd, z, sizeof(z)), 0);
}

static void test_wheel_entry_cap_from_central_directory(void **state) {
        char tmpl[] = "/tmp/test-pkg-manager-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *p = path_join(tmpl, "w-1.0-py3-none-any.whl");
        _cleanup_free_ char *d = path_join(tmpl, "out");
        write_zip64_end(p, (uint64_t) PKG_WHEEL_MAX_ENTRIES + 1);
        _cleanup_free_ char *e = NULL;
        assert_int_equal(pkg_wheel_unpack(p, NULL, d, &e), -EFBIG);
        assert_non_null(strstr(e, "more than 100000 entries (100001 in its central directory)"));
        assert_int_equal(access(d, F_OK), -1); /* refused before dest_dir was made */
        rm_rf(tmpl);
}

/* pkg_env_info_json() as the API writes it: compact, in its order. */
static char *env_info_text(const PkgEnvInfo *info) {
        json_t *j = pkg_env_info_json(info);
        char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(j);
        return text;
}

/* The API's environment object, the one spelling of GET /v1/envs and
 * `env ls`: a last use never recorded is null, not 1970. */
static void test_env_info_json(void **state) {
        char *reqs[] = { (char *) "lib==1.0", (char *) "a\"b", NULL };
        char *pkgs[] = { (char *) "lib==1.0", NULL };
        PkgEnvInfo info = { .key = (char *) "k1",
                            .requirements = reqs,
                            .packages = pkgs,
                            .size_bytes = 4096,
                            .last_used = 1767225600ULL * 1000000ULL,
                            .in_use = true,
                            .pinned = true };
        _cleanup_free_ char *t = env_info_text(&info);
        assert_string_equal(t, "{\"key\":\"k1\",\"kind\":\"pinned\",\"requirements\":[\"lib==1.0\",\"a\\\"b\"],"
                               "\"packages\":[\"lib==1.0\"],\"size_bytes\":4096,"
                               "\"last_used\":\"2026-01-01T00:00:00.000Z\",\"in_use\":true}");
        PkgEnvInfo none = { .key = (char *) "k2" };
        _cleanup_free_ char *u = env_info_text(&none);
        assert_string_equal(u, "{\"key\":\"k2\",\"kind\":\"resolved\",\"requirements\":[],\"packages\":[],"
                               "\"size_bytes\":0,\"last_used\":null,\"in_use\":false}");
}

/* ---- cancel --------------------------------------------------------------- */

/* A wheel w-1.0 of n_files entries w/fNNNNN.py, plus one of big_bytes
 * random letters (incompressible enough to make the file that big). */
static char *make_big_wheel(const char *dir, size_t n_files, size_t big_bytes) {
        size_t n = n_files + 3;
        Ent *ents = xcalloc(n, sizeof(Ent));
        char **paths = xcalloc(n_files + 1, sizeof(char *));
        ents[0] = (Ent){ "w-1.0.dist-info/METADATA", "Name: w\nVersion: 1.0\n", 0 };
        ents[1] = (Ent){ "w-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n", 0 };
        char *big = xmalloc(big_bytes + 1);
        uint64_t x = 88172645463325252ULL;
        for (size_t i = 0; i < big_bytes; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                big[i] = (char) ('!' + x % 90);
        }
        big[big_bytes] = 0;
        ents[2] = (Ent){ "w/big.txt", big, 0 };
        for (size_t i = 0; i < n_files; i++) {
                paths[i] = xasprintf("w/f%05zu.py", i);
                ents[3 + i] = (Ent){ paths[i], "x = 1\n", 0 };
        }
        char *p = make_zip(dir, "w-1.0-py3-none-any.whl", ents, n, true);
        strv_free(paths);
        free(big);
        free(ents);
        return p;
}

/* What a cancelled install must not leave: the wheel's store dir, a temp
 * dir, a partial download but the resumable one (<sha256>.whl.part, when
 * part_ok: the next install resumes it), its lock held. */
static void assert_nothing_left(const char *data, const char *sha, bool part_ok) {
        _cleanup_free_ char *final = pkg_store_dir(data, sha);
        assert_int_equal(access(final, F_OK), -1);
        _cleanup_free_ char *part = xasprintf("%s" PKG_PART_SUFFIX, sha);
        const char *sub[] = { "store", "cache/wheels" };
        for (size_t i = 0; i < ELEMENTSOF(sub); i++) {
                _cleanup_free_ char *d = path_join(data, sub[i]);
                DIR *dd = opendir(d);
                for (struct dirent *de; dd && (de = readdir(dd));)
                        if ((de->d_name[0] != '.' || startswith(de->d_name, ".tmp-")) &&
                            !(part_ok && streq(de->d_name, part)))
                                fail_msg("left in %s: %s", sub[i], de->d_name);
                if (dd)
                        closedir(dd);
        }
        _cleanup_free_ char *lockp = xasprintf("%s/cache/locks/%s", data, sha);
        _cleanup_close_ int fd = open(lockp, O_RDONLY | O_CLOEXEC);
        assert_true(fd < 0 || flock(fd, LOCK_EX | LOCK_NB) == 0);
}

typedef struct Canceller {
        bool cancel;
        SlowHttp *http;    /* wait for its body to begin, or */
        const char *store; /* for a temp dir to appear in it */
        usec_t at;         /* monotonic: when cancel was set */
} Canceller;

static void *canceller_main(void *userdata) {
        Canceller *c = userdata;
        for (usec_t until = now_monotonic() + 30 * USEC_PER_SEC; now_monotonic() < until;) {
                bool go = false;
                if (c->http)
                        go = __atomic_load_n(&c->http->body_started, __ATOMIC_ACQUIRE);
                else {
                        DIR *d = opendir(c->store);
                        for (struct dirent *de; d && !go && (de = readdir(d));)
                                go = startswith(de->d_name, ".tmp-");
                        if (d)
                                closedir(d);
                }
                if (go)
                        break;
                usleep(c->http ? 5000 : 100);
        }
        if (c->http)
                usleep(200 * 1000); /* mid-download */
        c->at = now_monotonic();
        __atomic_store_n(&c->cancel, true, __ATOMIC_RELEASE);
        return NULL;
}

static PkgLock *one_entry_lock(const char *url, const char *sha) {
        PkgLock *l = xcalloc(1, sizeof(PkgLock));
        l->entries = xcalloc(1, sizeof(PkgLockEntry));
        l->n_entries = 1;
        l->entries[0] = (PkgLockEntry){ .name = xstrdup("w"),
                                        .version = xstrdup("1.0"),
                                        .filename = xstrdup("w-1.0-py3-none-any.whl"),
                                        .url = xstrdup(url),
                                        .sha256 = xstrdup(sha) };
        return l;
}

/* A download cut by a cancel: within a fraction of a second, -ECANCELED
 * and "cancelled", nothing published, nothing left; the same lock then
 * installs. */
static void test_materialize_cancelled_mid_download(void **state) {
        char tmpl[] = "/tmp/test-pkg-cancel-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *wheel = make_big_wheel(tmpl, 10, 1 << 20);
        char sha[SHA256_HEX_SIZE];
        assert_int_equal(sha256_file_hex(wheel, sha), 0);
        SlowHttp http = { .file_path = wheel, .chunk = 4096, .delay_ms = 20 }; /* ~5 s */
        assert_int_equal(slow_http_start(&http), 0);
        _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%u/files/w-1.0-py3-none-any.whl", http.port);
        _cleanup_free_ char *data = path_join(tmpl, "data");
        PkgLock *lock = one_entry_lock(url, sha);
        Canceller c = { .http = &http };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, canceller_main, &c), 0);
        char **dirs = NULL;
        _cleanup_free_ char *err = NULL;
        int r = pkg_store_materialize(data, NULL, lock, NULL, NULL, NULL, NULL, &c.cancel, &dirs, &err);
        usec_t took = now_monotonic() - c.at;
        pthread_join(t, NULL);
        assert_int_equal(r, -ECANCELED);
        assert_string_equal(err, "cancelled");
        assert_true(took < 500 * USEC_PER_MSEC);
        assert_nothing_left(data, sha, true);
        /* The bytes got so far stay, for the next install to resume. */
        _cleanup_free_ char *part = pkg_store_part_path(data, sha);
        struct stat st;
        assert_int_equal(stat(part, &st), 0);
        assert_true(st.st_size > 0);

        http.delay_ms = 0;
        free(err);
        err = NULL;
        bool never = false;
        r = pkg_store_materialize(data, NULL, lock, NULL, NULL, NULL, NULL, &never, &dirs, &err);
        if (r < 0)
                fail_msg("materialize after the cancel: %s", err);
        assert_int_equal(access(dirs[0], F_OK), 0);
        /* This server answers the Range with the whole file: taken from
         * byte 0, and the part file is gone once installed. */
        assert_int_equal(access(part, F_OK), -1);
        strv_free(dirs);
        slow_http_stop(&http);
        pkg_lock_free(lock);
        rm_rf(tmpl);
}

/* An unpack cut by a cancel between entries: its temp dir goes, the store
 * holds nothing of the wheel. The unpacker alone says so too. */
static void test_materialize_cancelled_mid_extraction(void **state) {
        char tmpl[] = "/tmp/test-pkg-cancel-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *wheel = make_big_wheel(tmpl, 5000, 1024);
        char sha[SHA256_HEX_SIZE];
        assert_int_equal(sha256_file_hex(wheel, sha), 0);
        _cleanup_free_ char *url = xasprintf("file://%s", wheel);
        _cleanup_free_ char *data = path_join(tmpl, "data");
        _cleanup_free_ char *store = path_join(data, "store");
        assert_int_equal(mkdir_p(store, 0755), 0);
        PkgLock *lock = one_entry_lock(url, sha);
        Canceller c = { .store = store };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, canceller_main, &c), 0);
        char **dirs = NULL;
        _cleanup_free_ char *err = NULL;
        int r = pkg_store_materialize(data, NULL, lock, NULL, NULL, NULL, NULL, &c.cancel, &dirs, &err);
        usec_t took = now_monotonic() - c.at;
        pthread_join(t, NULL);
        assert_int_equal(r, -ECANCELED);
        assert_string_equal(err, "cancelled");
        if (took >= 500 * USEC_PER_MSEC)
                fail_msg("the unpack went on for %llu ms after the cancel", (unsigned long long) (took / 1000));
        assert_nothing_left(data, sha, false);

        bool set = true;
        _cleanup_free_ char *dest = path_join(tmpl, "out"), *e2 = NULL;
        assert_int_equal(pkg_wheel_unpack_cancellable(wheel, NULL, dest, &set, &e2), -ECANCELED);
        assert_string_equal(e2, "cancelled");
        assert_int_equal(access(dest, F_OK), -1);
        pkg_lock_free(lock);
        rm_rf(tmpl);
}

/* ---- prune and installers at once ---------------------------------------- */

static PkgEnvOptions race_options(const char *data) {
        static PkgIndexConfig none;
        return (PkgEnvOptions){ .data_dir = data, .index = &none };
}

/* The other process, played at a pkg_test_hook point: at
 * PKG_TEST_STORE_REMOVE it installs the environment of lock (and holds
 * it, as a running function would); at PKG_TEST_STORE_LOCKED it starts
 * that install on a thread and lets the remover go on once the install
 * ended or waits for a wheel lock; at PKG_TEST_RECORD_WRITE it prunes
 * every environment not in use. Once. */
typedef struct Other {
        PkgTestPoint at;
        const char *data;
        const PkgLock *lock;
        PkgEnv *env;
        bool done;
        pthread_t thread;
        bool ended; /* atomic: the thread's install returned */
        char *error;
} Other;

static void *other_install(void *userdata) {
        Other *x = userdata;
        PkgEnvOptions o = race_options(x->data);
        if (pkg_env_from_lock(&o, x->lock, &x->env, &x->error) >= 0) {
                free(x->error);
                x->error = NULL;
        }
        __atomic_store_n(&x->ended, true, __ATOMIC_RELEASE);
        return NULL;
}

/* Whether someone waits for an flock on the file at path: a "->" line of
 * /proc/locks for its inode. */
static bool flock_waited_for(const char *path) {
        struct stat st;
        _cleanup_free_ char *text = NULL;
        if (stat(path, &st) < 0 || read_file("/proc/locks", 1 << 20, &text, NULL) < 0)
                return false;
        _cleanup_free_ char *ino = xasprintf(":%llu ", (unsigned long long) st.st_ino);
        for (char *line = text; line && *line;) {
                char *end = strchr(line, '\n');
                if (end)
                        *end = 0;
                if (strstr(line, "->") && strstr(line, "FLOCK") && strstr(line, ino))
                        return true;
                line = end ? end + 1 : NULL;
        }
        return false;
}

static void other_hook(PkgTestPoint point, void *userdata) {
        Other *x = userdata;
        if (point != x->at || x->done)
                return;
        x->done = true;
        _cleanup_free_ char *err = NULL;
        if (point == PKG_TEST_STORE_LOCKED) {
                assert_int_equal(pthread_create(&x->thread, NULL, other_install, x), 0);
                _cleanup_free_ char *lockp = xasprintf("%s/cache/locks/%s", x->data, x->lock->entries[0].sha256);
                for (usec_t until = now_monotonic() + 30 * USEC_PER_SEC;
                     !__atomic_load_n(&x->ended, __ATOMIC_ACQUIRE) && !flock_waited_for(lockp);)
                        if (now_monotonic() > until)
                                fail_msg("the install neither ended nor waited for the wheel lock");
                        else
                                usleep(1000);
        } else if (point == PKG_TEST_STORE_REMOVE) {
                PkgEnvOptions o = race_options(x->data);
                if (pkg_env_from_lock(&o, x->lock, &x->env, &err) < 0)
                        fail_msg("the install between prune's steps: %s", err);
        } else if (pkg_env_prune(x->data, 0, 0, false, NULL, NULL, &err) < 0)
                fail_msg("the prune between the install's steps: %s", err);
}

/* A store holding one environment, let go of: w-1.0 (a file:// wheel) under
 * the requirement "w==1.0" (old, recorded at record, its dir dir). new: a
 * lock of the same wheel under "w", another environment's key. */
typedef struct RaceStore {
        char tmpl[32];
        char *data, *dir, *record;
        PkgLock *old, *new;
} RaceStore;

static void race_store_init(RaceStore *rs) {
        strcpy(rs->tmpl, "/tmp/test-pkg-race-XXXXXX");
        assert_non_null(mkdtemp(rs->tmpl));
        _cleanup_free_ char *wheel = make_big_wheel(rs->tmpl, 2, 64);
        char sha[SHA256_HEX_SIZE];
        assert_int_equal(sha256_file_hex(wheel, sha), 0);
        _cleanup_free_ char *url = xasprintf("file://%s", wheel);
        rs->data = path_join(rs->tmpl, "data");
        rs->old = one_entry_lock(url, sha);
        rs->old->requirements = strv_append(NULL, "w==1.0");
        rs->new = one_entry_lock(url, sha);
        rs->new->requirements = strv_append(NULL, "w");
        PkgEnvOptions o = race_options(rs->data);
        PkgEnv *env = NULL;
        _cleanup_free_ char *err = NULL;
        if (pkg_env_from_lock(&o, rs->old, &env, &err) < 0)
                fail_msg("the first install: %s", err);
        rs->dir = xstrdup(env->store_dirs[0]);
        rs->record = xasprintf("%s/envs/%s.json", rs->data, env->key);
        pkg_env_free(env);
}

static void race_store_done(RaceStore *rs) {
        rm_rf(rs->tmpl);
        free(rs->data);
        free(rs->dir);
        free(rs->record);
        pkg_lock_free(rs->old);
        pkg_lock_free(rs->new);
}

static void assert_env_whole(const PkgEnv *env) {
        assert_non_null(env);
        for (char **d = env->store_dirs; d && *d; d++)
                if (access(*d, F_OK) < 0)
                        fail_msg("%s: removed under the environment using it", *d);
}

/* An install that finds a wheel in the store (so takes no lock to install
 * it) and records its environment while prune, which read the records
 * before, removes that wheel's dir as no environment's: whether prune
 * removes it with the environment it names (lru), or as garbage past the
 * grace hour (garbage). The new environment must stay whole. */
/* Damages rs's package: a file of it gone. */
static void race_store_damage(RaceStore *rs) {
        _cleanup_free_ char *record = NULL;
        DIR *d = opendir(rs->dir);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)))
                if (endswith(de->d_name, ".dist-info"))
                        record = xasprintf("%s/%s/RECORD", rs->dir, de->d_name);
        closedir(d);
        assert_non_null(record);
        assert_int_equal(chmod(rs->dir, 0755), 0);
        _cleanup_free_ char *info = xstrndup(record, strlen(record) - strlen("/RECORD"));
        assert_int_equal(chmod(info, 0755), 0);
        _cleanup_free_ char *victim = xasprintf("%s/METADATA", info);
        assert_int_equal(unlink(victim), 0);
}

static void die_at_point(PkgTestPoint point, void *userdata) {
        if (point == *(const PkgTestPoint *) userdata)
                _exit(9);
}

/* A repair killed between its steps (SIGKILL, played by _exit at a test
 * point): once it moved a damaged dir aside, the stamp has changed. Before,
 * it was written only after every removal: a repair killed while it
 * emptied a dir left a daemon's pinned versions on the removed dir until
 * the daemon restarted. */
static void test_a_repair_killed_half_way_has_changed_the_repair_stamp(void **state) {
        RaceStore rs;
        race_store_init(&rs);
        race_store_damage(&rs);
        assert_int_equal(pkg_store_repair_stamp(rs.data), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                static PkgTestPoint at = PKG_TEST_STORE_MOVED;
                pkg_test_hook = die_at_point;
                pkg_test_hook_userdata = &at;
                size_t checked = 0, n = 0;
                PkgDamaged *damaged = NULL;
                char *err = NULL;
                (void) pkg_store_verify(rs.data, true, &checked, &damaged, &n, &err);
                _exit(0);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 9);
        assert_int_equal(access(rs.dir, F_OK), -1); /* moved aside */
        assert_true(pkg_store_repair_stamp(rs.data) != 0);
        race_store_done(&rs);
}

/* A repair that removes a package changes the store's repair stamp (what
 * a daemon's pinned environments compare); one that removes none does not. */
static void test_repair_changes_the_repair_stamp(void **state) {
        RaceStore rs;
        race_store_init(&rs);
        assert_int_equal(pkg_store_repair_stamp(rs.data), 0);
        size_t checked = 0, n = 0;
        PkgDamaged *damaged = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(pkg_store_verify(rs.data, true, &checked, &damaged, &n, &err), 0);
        assert_int_equal(n, 0);
        pkg_damaged_free_many(damaged, n);
        assert_int_equal(pkg_store_repair_stamp(rs.data), 0);
        race_store_damage(&rs);
        assert_int_equal(pkg_store_verify(rs.data, true, &checked, &damaged, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_true(damaged[0].removed);
        pkg_damaged_free_many(damaged, n);
        uint64_t stamp = pkg_store_repair_stamp(rs.data);
        assert_true(stamp != 0);
        assert_int_equal(pkg_store_verify(rs.data, true, &checked, &damaged, &n, &err), 0);
        pkg_damaged_free_many(damaged, n);
        assert_true(pkg_store_repair_stamp(rs.data) == stamp);
        race_store_done(&rs);
}

static void test_prune_keeps_a_dir_an_install_just_recorded(void **state) {
        static const char *const rows[] = { "lru", "garbage" };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                RaceStore rs;
                race_store_init(&rs);
                bool garbage = streq(rows[i], "garbage");
                if (garbage) {
                        /* No record names it, and older than the hour. */
                        assert_int_equal(unlink(rs.record), 0);
                        struct timespec ts[2] = { { .tv_sec = time(NULL) - 7200 }, { .tv_sec = time(NULL) - 7200 } };
                        assert_int_equal(utimensat(AT_FDCWD, rs.dir, ts, 0), 0);
                }
                Other x = { .at = PKG_TEST_STORE_REMOVE, .data = rs.data, .lock = rs.new };
                pkg_test_hook = other_hook;
                pkg_test_hook_userdata = &x;
                size_t removed = 0;
                _cleanup_free_ char *err = NULL;
                int r = pkg_env_prune(rs.data, garbage ? UINT64_MAX : 0, 0, false, NULL, &removed, &err);
                pkg_test_hook = NULL;
                assert_int_equal(r, 0);
                assert_true(x.done);
                assert_int_equal(removed, garbage ? 0 : 1);
                assert_env_whole(x.env);
                /* Once the new environment is let go, it and its dir go. */
                x.env = pkg_env_free(x.env);
                assert_int_equal(pkg_env_prune(rs.data, 0, 0, false, NULL, &removed, &err), 0);
                assert_int_equal(removed, 1);
                assert_int_equal(access(rs.dir, F_OK), -1);
                race_store_done(&rs);
        }
}

/* An install that looks for a wheel in the store once prune has locked it
 * and read the records: it must wait for prune to be done with it, and
 * then find it gone and install it again, not take it for present and
 * record an environment whose dir prune moves away next. */
static void test_an_install_waits_for_prune_holding_a_wheel(void **state) {
        RaceStore rs;
        race_store_init(&rs);
        Other x = { .at = PKG_TEST_STORE_LOCKED, .data = rs.data, .lock = rs.new };
        pkg_test_hook = other_hook;
        pkg_test_hook_userdata = &x;
        size_t removed = 0;
        _cleanup_free_ char *err = NULL;
        int r = pkg_env_prune(rs.data, 0, 0, false, NULL, &removed, &err);
        pkg_test_hook = NULL;
        assert_int_equal(r, 0);
        assert_true(x.done);
        assert_int_equal(pthread_join(x.thread, NULL), 0);
        if (!x.env)
                fail_msg("the install: %s", x.error);
        assert_int_equal(removed, 1);
        assert_env_whole(x.env);
        pkg_env_free(x.env);
        race_store_done(&rs);
}

/* The reverse: an install puts a missing wheel in the store and, before it
 * writes its record, prune removes the only recorded environment naming
 * that wheel (whose dir was gone, so the install made it): the dir must
 * stay, the new environment whole. */
static void test_prune_keeps_a_dir_an_install_is_recording(void **state) {
        RaceStore rs;
        race_store_init(&rs);
        assert_int_equal(rm_rf(rs.dir), 0); /* its record stays: a pruned dir */
        Other x = { .at = PKG_TEST_RECORD_WRITE, .data = rs.data };
        pkg_test_hook = other_hook;
        pkg_test_hook_userdata = &x;
        PkgEnvOptions o = race_options(rs.data);
        PkgEnv *env = NULL;
        _cleanup_free_ char *err = NULL;
        int r = pkg_env_from_lock(&o, rs.new, &env, &err);
        pkg_test_hook = NULL;
        if (r < 0)
                fail_msg("the install: %s", err);
        assert_true(x.done);
        assert_int_equal(access(rs.record, F_OK), -1); /* the prune ran */
        assert_env_whole(env);
        pkg_env_free(env);
        race_store_done(&rs);
}

/* ---- the zip parser behind reading METADATA by ranges ---- */

typedef struct ZipFile {
        const uint8_t *data;
        size_t size;
        unsigned reads;
} ZipFile;

static int zip_serve(void *userdata, uint64_t first, uint64_t len, PkgHttpResponse *ret, char **ret_error) {
        ZipFile *z = userdata;
        (void) ret_error;
        assert_true(first < z->size);
        size_t n = (size_t) MIN(len, z->size - first);
        *ret = (PkgHttpResponse){ .status = 206, .body = xmalloc(n + 1), .len = n };
        memcpy(ret->body, z->data + first, n);
        ret->body[n] = 0;
        z->reads++;
        return 0;
}

/* pkg_zip_read_metadata() over the whole file data, its last tail bytes
 * given as the first range request's answer. */
static int zip_metadata(const void *data, size_t size, size_t tail, char **ret_text) {
        ZipFile z = { data, size, 0 };
        tail = MIN(tail, size);
        _cleanup_free_ uint8_t *t = xmalloc(tail + 1);
        memcpy(t, (const uint8_t *) data + size - tail, tail);
        char *error = NULL;
        *ret_text = NULL;
        int r = pkg_zip_read_metadata(t, tail, size, zip_serve, &z, ret_text, &error);
        assert_null(error);
        assert_true(r >= 0 ? *ret_text != NULL : *ret_text == NULL);
        return r;
}

/* The fuzzer's seeds (real wheels: deflated, stored, ZIP64, data
 * descriptors) read whatever the first answer's size: all of the file,
 * the central directory, only the end records (always in the 128 KiB
 * pkg_wheel_read_metadata_ranged() asks for). */
static void test_zip_read_metadata_of_the_fuzz_seeds(void **state) {
        const char *root = getenv("PYSPRINTER_SOURCE_ROOT");
        if (!root)
                skip();
        _cleanup_free_ char *dir = xasprintf("%s/fuzz/seeds/fuzz-zipmeta", root);
        DIR *d = opendir(dir);
        assert_non_null(d);
        unsigned seen = 0;
        for (struct dirent *de; (de = readdir(d));) {
                if (!endswith(de->d_name, ".whl"))
                        continue;
                _cleanup_free_ char *path = xasprintf("%s/%s", dir, de->d_name), *data = NULL;
                size_t size;
                assert_int_equal(read_file(path, 1 << 20, &data, &size), 0);
                /* From the tail that just holds the end record (its
                 * comment, the ZIP64 locator before it) on. */
                size_t eocd = size - 22;
                while (eocd > 0 && memcmp(data + eocd, "PK\5\6", 4) != 0)
                        eocd--;
                for (size_t tail = MIN(size, size - eocd + 20); tail <= size; tail++) {
                        char *text;
                        if (zip_metadata(data, size, tail, &text) < 0)
                                fail_msg("%s with a tail of %zu bytes: not read", de->d_name, tail);
                        assert_true(startswith(text, "Metadata-Version: "));
                        free(text);
                }
                seen++;
        }
        closedir(d);
        assert_true(seen >= 4);
}

/* A page's hashes over bytes: each computable one must match; md5, sha1
 * and the sha2 family are computed, unknown names are skipped, and the
 * first that differs is named with both digests. Digests of "abc". */
static void test_bytes_check_page_hashes(void **state) {
        (void) state;
        const char *md5 = "md5=900150983cd24fb0d6963f7d28e17f72";
        const char *sha1 = "sha1=a9993e364706816aba3e25717850c26c9cd0d89d";
        const char *sha512 = "sha512=ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a8"
                             "36ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
        const char *bad_sha1 = "sha1=0000000000000000000000000000000000000000";
        const struct {
                const char *hashes[4];
                int want_r;
                const char *want_algo, *want_got;
        } rows[] = {
                { { NULL }, 0, NULL, NULL },
                { { "blake3=00", NULL }, 0, NULL, NULL },
                { { md5, sha1, sha512, NULL }, 0, NULL, NULL },
                { { md5, bad_sha1, sha512, NULL }, -EBADMSG, "sha1", "a9993e364706816aba3e25717850c26c9cd0d89d" },
                { { "blake3=00", bad_sha1, NULL }, -EBADMSG, "sha1", "a9993e364706816aba3e25717850c26c9cd0d89d" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgHashMismatch m = {};
                int r = pkg_bytes_check_page_hashes("abc", 3, (char *const *) rows[i].hashes, &m);
                assert_int_equal(r, rows[i].want_r);
                if (rows[i].want_algo) {
                        assert_string_equal(m.algo, rows[i].want_algo);
                        assert_string_equal(m.got, rows[i].want_got);
                        assert_string_equal(m.want, "0000000000000000000000000000000000000000");
                }
                free(m.algo);
        }
}

/* An interrupted download's part file (<sha256>.whl.part) is kept for the
 * next install to resume; prune leaves one whose wheel lock an installer
 * holds (it is resuming it, however old the file), and removes, with its
 * If-Range, one nobody holds that is older than the hour or whose wheel is
 * in the store; a fresh one stays. A dry run counts without removing. */
static void test_prune_keeps_held_part_files_and_removes_stale_ones(void **state) {
        char tmpl[] = "/tmp/test-pkg-part-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        _cleanup_free_ char *wheels = xasprintf("%s/cache/wheels", tmpl);
        assert_int_equal(mkdir_p(wheels, 0755), 0);
        /* held+old, old (with an If-Range), fresh, fresh but installed */
        const char *shas[] = { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                               "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                               "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
                               "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd" };
        bool old[] = { true, true, false, false };
        char *parts[4];
        char bytes[8192];
        memset(bytes, 'x', sizeof(bytes));
        for (size_t i = 0; i < 4; i++) {
                parts[i] = pkg_store_part_path(tmpl, shas[i]);
                assert_int_equal(write_file_atomic(parts[i], bytes, sizeof(bytes), 0644), 0);
                if (old[i]) {
                        struct timespec ts[2] = { { .tv_sec = time(NULL) - 7200 }, { .tv_sec = time(NULL) - 7200 } };
                        assert_int_equal(utimensat(AT_FDCWD, parts[i], ts, 0), 0);
                }
        }
        _cleanup_free_ char *ifrange = xasprintf("%s" PKG_PART_IFRANGE_SUFFIX, parts[1]);
        assert_int_equal(write_file_atomic(ifrange, "\"e1\"", 4, 0644), 0);
        _cleanup_free_ char *installed = pkg_store_dir(tmpl, shas[3]);
        assert_int_equal(mkdir_p(installed, 0755), 0);
        int held = -EBADF;
        assert_int_equal(pkg_wheel_lock(tmpl, shas[0], LOCK_EX, NULL, &held), 0);

        uint64_t freed = 0;
        size_t removed = 0;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(pkg_env_prune(tmpl, UINT64_MAX, 0, true, &freed, &removed, &err), 0);
        assert_true(freed >= 2 * sizeof(bytes));
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(access(parts[i], F_OK), 0);

        assert_int_equal(pkg_env_prune(tmpl, UINT64_MAX, 0, false, &freed, &removed, &err), 0);
        bool kept[] = { true, false, true, false };
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(access(parts[i], F_OK) == 0, kept[i]);
        assert_int_equal(access(ifrange, F_OK), -1);

        /* Let go of: stale like the others. */
        close(held);
        assert_int_equal(pkg_env_prune(tmpl, UINT64_MAX, 0, false, &freed, &removed, &err), 0);
        assert_int_equal(access(parts[0], F_OK), -1);
        assert_int_equal(access(parts[2], F_OK), 0);
        for (size_t i = 0; i < 4; i++)
                free(parts[i]);
        rm_rf(tmpl);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prune_keeps_held_part_files_and_removes_stale_ones),
                cmocka_unit_test(test_materialize_cancelled_mid_download),
                cmocka_unit_test(test_materialize_cancelled_mid_extraction),
                cmocka_unit_test(test_prune_keeps_a_dir_an_install_just_recorded),
                cmocka_unit_test(test_prune_keeps_a_dir_an_install_is_recording),
                cmocka_unit_test(test_an_install_waits_for_prune_holding_a_wheel),
                cmocka_unit_test(test_zip_read_metadata_of_the_fuzz_seeds),
                cmocka_unit_test(test_url_join),
                cmocka_unit_test(test_file_url_path),
                cmocka_unit_test(test_url_redact),
                cmocka_unit_test(test_close_names),
                cmocka_unit_test(test_metadata),
                cmocka_unit_test(test_record_hash),
                cmocka_unit_test(test_bytes_check_page_hashes),
                cmocka_unit_test(test_lock_roundtrip),
                cmocka_unit_test(test_lock_ignored_roundtrip),
                cmocka_unit_test(test_lock_same_files),
                cmocka_unit_test(test_env_held_sweep),
                cmocka_unit_test(test_repair_changes_the_repair_stamp),
                cmocka_unit_test(test_a_repair_killed_half_way_has_changed_the_repair_stamp),
                cmocka_unit_test(test_content_range_parse),
                cmocka_unit_test(test_store_read_metadata),
                cmocka_unit_test(test_wheel_unpack),
                cmocka_unit_test(test_wheel_verify_installed),
                cmocka_unit_test(test_wheel_entry_cap_from_central_directory),
                cmocka_unit_test(test_env_info_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
