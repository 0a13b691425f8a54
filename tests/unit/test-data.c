/* data: names, references, content hashing and versions on a real store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
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

/* Entries in dir (0: empty or missing). */
static size_t count_entries(const char *path) {
        _cleanup_strv_free_ char **v = NULL;
        DIR *d = opendir(path);
        size_t n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
                n += !streq(de->d_name, ".") && !streq(de->d_name, "..");
        if (d)
                closedir(d);
        return n;
}

/* The whole tar of src, written into u in small uneven pieces as a
 * network would deliver it; the last write's result. */
static int upload_tar_of(const char *src, DataUpload *u) {
        DataTarStream *t = NULL;
        assert_int_equal(data_tar_stream_new(src, &t, NULL), 0);
        char buf[777];
        ssize_t n;
        int r = 0;
        while ((n = data_tar_stream_read(t, buf, sizeof(buf))) > 0 && r >= 0)
                r = data_upload_write(u, buf, (size_t) n);
        assert_true(n >= 0);
        data_tar_stream_free(t);
        return r;
}

static void test_tar_upload(void **state) {
        _cleanup_free_ char *base = path_join(dir, "tar");
        _cleanup_free_ char *db = path_join(base, "db.sqlite"), *root = path_join(base, "data");
        _cleanup_free_ char *src = path_join(base, "src"), *deep = path_join(src, "a/b"), *e = path_join(src, "e");
        _cleanup_free_ char *f1 = path_join(deep, "c.txt"), *f2 = path_join(src, "top.txt");
        _cleanup_free_ char *tmp = path_join(root, "tmp");
        assert_int_equal(mkdir_p(deep, 0755), 0);
        assert_int_equal(mkdir_p(e, 0755), 0);
        put_file(f1, "deep");
        put_file(f2, "top");
        Store *s = NULL;
        assert_int_equal(store_open(db, &s), 0);
        _cleanup_free_ char *err = NULL;

        /* A tree sent as a tar is the same content (hash, files) as the
         * tree put directly. */
        DataConfig cfg = { .root = root };
        DataCatalog *c = NULL;
        assert_int_equal(data_catalog_new(s, &cfg, &c, &err), 0);
        DataUpload *u = NULL;
        DataInfo *via_tar = NULL, *direct = NULL;
        assert_int_equal(data_upload_new(c, &u, &err), 0);
        assert_int_equal(upload_tar_of(src, u), 0);
        assert_int_equal(data_upload_commit(u, NULL, "t", NULL, &via_tar, &err), 0);
        data_upload_free(u);
        assert_int_equal(data_put(c, NULL, "direct", src, &direct, &err), 0);
        assert_string_equal(via_tar->hash, direct->hash);
        assert_string_equal(via_tar->kind, "dir");
        assert_int_equal(via_tar->files, direct->files);
        assert_int_equal(count_entries(tmp), 0);
        data_info_free(via_tar);
        data_info_free(direct);
        data_catalog_free(c);

        /* Caps: bytes at write time, files at unpacking; nothing stays. */
        DataConfig small = { .root = root, .max_dataset_bytes = 600 };
        assert_int_equal(data_catalog_new(s, &small, &c, &err), 0);
        assert_int_equal(data_upload_new(c, &u, &err), 0);
        assert_int_equal(upload_tar_of(src, u), -EFBIG);
        free(err);
        err = NULL;
        assert_int_equal(data_upload_commit(u, NULL, "t2", NULL, &via_tar, &err), -EFBIG);
        data_upload_free(u);
        assert_int_equal(count_entries(tmp), 0);
        data_catalog_free(c);
        DataConfig few = { .root = root, .max_files = 2 };
        assert_int_equal(data_catalog_new(s, &few, &c, &err), 0);
        assert_int_equal(data_upload_new(c, &u, &err), 0);
        assert_int_equal(upload_tar_of(src, u), 0);
        free(err);
        err = NULL;
        assert_int_equal(data_upload_commit(u, NULL, "t3", NULL, &via_tar, &err), -EMFILE);
        assert_non_null(strstr(err, "more than 2"));
        data_upload_free(u);
        assert_int_equal(count_entries(tmp), 0);
        data_catalog_free(c);
        store_close(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_tar_upload),
                cmocka_unit_test(test_versions),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
