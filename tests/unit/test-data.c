/* data: names, references, content hashing and versions on a real store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "data.h"

static char dir[] = "/tmp/test-data-XXXXXX";

static int setup(void **state) {
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state) {
        return 0;
}

static void test_names(void **state) {
        const char *good[] = { "a", "A1", "my-data_2.csv", "0x" };
        const char *badn[] = { "", "-a", ".a", "a/b", "a b", "..", "a@b" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_true(data_name_valid(good[i]));
        for (size_t i = 0; i < ELEMENTSOF(badn); i++)
                assert_false(data_name_valid(badn[i]));
        char *name = NULL;
        int v = -1;
        assert_int_equal(data_parse_ref("x@3", &name, &v), 0);
        assert_string_equal(name, "x");
        assert_int_equal(v, 3);
        free(name);
        assert_int_equal(data_parse_ref("x", &name, &v), 0);
        assert_int_equal(v, 0);
        free(name);
        assert_true(data_parse_ref("x@0", &name, &v) < 0);
        assert_true(data_parse_ref("x@", &name, &v) < 0);
        assert_true(data_parse_ref("x@1a", &name, &v) < 0);
        assert_true(data_source_is_url("https://h/x"));
        assert_false(data_source_is_url("file:///etc/passwd"));
}

static void put_file(const char *path, const char *text) {
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
}

static void test_versions(void **state) {
        _cleanup_free_ char *db = path_join(dir, "db.sqlite");
        _cleanup_free_ char *root = path_join(dir, "data");
        _cleanup_free_ char *src = path_join(dir, "src");
        _cleanup_free_ char *f = path_join(src, "a.txt");
        assert_int_equal(mkdir_p(src, 0755), 0);
        put_file(f, "hello");
        Store *s = NULL;
        assert_int_equal(store_open(db, &s), 0);
        DataConfig cfg = { .root = root };
        DataCatalog *c = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(data_catalog_new(s, &cfg, &c, &err), 0);

        DataInfo *i1 = NULL, *i2 = NULL, *i3 = NULL, *use = NULL;
        assert_int_equal(data_put(c, NULL, "d", src, &i1, &err), 0);
        assert_int_equal(i1->version, 1);
        assert_true(i1->is_new);
        assert_int_equal(i1->files, 1);
        assert_int_equal(i1->size, 5);
        assert_int_equal(data_put(c, NULL, "d", src, &i2, &err), 0);
        assert_int_equal(i2->version, 1);
        assert_false(i2->is_new);
        assert_string_equal(i1->hash, i2->hash);
        put_file(f, "hello!");
        assert_int_equal(data_put(c, NULL, "d", src, &i3, &err), 0);
        assert_int_equal(i3->version, 2);
        assert_string_not_equal(i1->hash, i3->hash);

        /* Content is read-only and shared. */
        struct stat st;
        _cleanup_free_ char *obj = path_join(i3->path, "a.txt");
        assert_int_equal(stat(obj, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0444);

        assert_int_equal(data_use(c, NULL, "d@1", &use, NULL, &err), 0);
        assert_string_equal(use->hash, i1->hash);
        data_info_free(use);

        /* Another tenant does not see it. */
        free(err);
        err = NULL;
        assert_int_equal(data_use(c, "other", "d", &use, NULL, &err), -ENOENT);

        char **mounts = NULL;
        char *fp = NULL;
        char *refs[] = { (char *) "d", NULL };
        assert_int_equal(data_resolve_mounts(c, NULL, refs, &mounts, &fp, NULL, &err), 0);
        assert_true(startswith(mounts[0], "d=/"));
        assert_true(startswith(fp, "d@"));
        strv_free(mounts);
        free(fp);

        assert_int_equal(data_remove(c, NULL, "d@1", &err), 0);
        assert_true(stat(i1->path, &st) < 0);
        assert_int_equal(data_remove(c, NULL, "d", &err), 0);
        assert_true(stat(i3->path, &st) < 0);

        data_info_free(i1);
        data_info_free(i2);
        data_info_free(i3);
        data_catalog_free(c);
        store_close(s);
        rm_rf(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_versions),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
