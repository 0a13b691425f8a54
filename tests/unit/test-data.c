/* data: names, references, content hashing and versions on a real store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>

#include "data.h"
#include "shared.h"

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

        /* Another tenant does not see it: data_use() says what an empty
         * catalog says (data_ref_unknown(), the CLI's fresh home). */
        free(err);
        err = NULL;
        assert_int_equal(data_use(c, "other", "d", &use, NULL, &err), -ENOENT);
        _cleanup_free_ char *none = NULL;
        assert_int_equal(data_ref_unknown("d", &none), -ENOENT);
        assert_string_equal(err, none);
        assert_string_equal(none, "no dataset named 'd' (add it with: pysprinter data put d PATH|URL)");
        free(err);
        free(none);
        err = none = NULL;
        assert_int_equal(data_use(c, NULL, "d@x@y", &use, NULL, &err), -EINVAL);
        assert_int_equal(data_ref_unknown("d@x@y", &none), -EINVAL);
        assert_string_equal(err, none);

        char **mounts = NULL;
        char *fp = NULL;
        char *refs[] = { (char *) "d", NULL };
        assert_int_equal(data_resolve_mounts(c, NULL, refs, &mounts, NULL, &fp, NULL, &err), 0);
        assert_true(startswith(mounts[0], "d=/"));
        assert_true(startswith(fp, "d@"));
        strv_free(mounts);
        free(fp);

        assert_int_equal(data_remove(c, NULL, "d@1", &err), 0);
        assert_true(stat(i1->path, &st) < 0);

        /* A run's hold keeps content its removed dataset named until the
         * run ended; the release then deletes it. Two runs hold it: the
         * first release leaves it to the second. */
        DataHolds *h1 = NULL, *h2 = NULL;
        assert_int_equal(data_resolve_mounts(c, NULL, refs, &mounts, &h1, NULL, NULL, &err), 0);
        strv_free(mounts);
        assert_int_equal(data_resolve_mounts(c, NULL, refs, &mounts, &h2, NULL, NULL, &err), 0);
        strv_free(mounts);
        assert_int_equal(data_remove(c, NULL, "d", &err), 0);
        assert_int_equal(stat(obj, &st), 0);
        data_holds_release(h1);
        assert_int_equal(stat(obj, &st), 0);
        data_holds_release(h2);
        assert_true(stat(i3->path, &st) < 0);
        /* Gone from the catalog: a run starting now is told so. */
        free(err);
        err = NULL;
        assert_int_equal(data_resolve_mounts(c, NULL, refs, &mounts, &h1, NULL, NULL, &err), -ENOENT);

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

/* A run's output dir is a host path the run never saw: a refusal names
 * what the run left there, relative to output_dir(). */
static void test_store_output_refusal_names_no_host_dir(void **state) {
        _cleanup_free_ char *db = path_join(dir, "out.sqlite");
        _cleanup_free_ char *root = path_join(dir, "out-data");
        _cleanup_free_ char *out = path_join(dir, "run-out");
        _cleanup_free_ char *sub = path_join(out, "sub");
        _cleanup_free_ char *link = path_join(sub, "l");
        assert_int_equal(mkdir_p(sub, 0755), 0);
        assert_int_equal(symlink("/etc/hostname", link), 0);
        Store *s = NULL;
        assert_int_equal(store_open(db, &s), 0);
        DataConfig cfg = { .root = root };
        DataCatalog *c = NULL;
        _cleanup_free_ char *err = NULL, *json = NULL;
        assert_int_equal(data_catalog_new(s, &cfg, &c, &err), 0);
        DataOutput o = { .catalog = c, .name = "res" };
        assert_int_equal(data_store_output(out, &o, &json, &err), -ELOOP);
        assert_string_equal(err, "symbolic links are not supported in datasets (sub/l)");
        assert_null(json);
        data_catalog_free(c);
        store_close(s);
}

/* Each reason a tree is refused has its own words: a tree too deep was
 * "symbolic links are not supported", a name with a newline "cannot copy
 * a<newline>b: Invalid argument" (an internal error for a run's output). */
static void test_tree_refusals_say_why(void **state) {
        static const struct {
                int r;
                const char *words;
        } rows[] = {
                { -ELOOP, "src: symbolic links are not supported in datasets (x/y)" },
                { -EPERM, "src: only regular files and directories can be stored (x/y)" },
                { -EILSEQ, "src: a name holding a newline cannot be stored in a dataset (x/y)" },
                { -ENAMETOOLONG, "src: nested deeper than 64 directories (x/y)" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *m = data_tree_error(rows[i].r, "src", "x/y");
                assert_string_equal(m, rows[i].words);
        }
        assert_null(data_tree_error(-EIO, "src", "x/y"));

        _cleanup_free_ char *base = path_join(dir, "refusals");
        _cleanup_free_ char *db = path_join(base, "db.sqlite"), *root = path_join(base, "data");
        _cleanup_free_ char *nl = path_join(base, "nl"), *nlf = path_join(nl, "a\nb");
        _cleanup_free_ char *deep = path_join(base, "deep");
        assert_int_equal(mkdir_p(nl, 0755), 0);
        put_file(nlf, "x");
        _cleanup_free_ char *p = xstrdup(deep);
        for (int i = 0; i <= DATA_MAX_DEPTH + 1; i++) {
                char *q = path_join(p, "a");
                free(p);
                p = q;
        }
        assert_int_equal(mkdir_p(p, 0755), 0);
        Store *s = NULL;
        assert_int_equal(store_open(db, &s), 0);
        DataConfig cfg = { .root = root };
        DataCatalog *c = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(data_catalog_new(s, &cfg, &c, &err), 0);
        DataInfo *info = NULL;
        assert_int_equal(data_put(c, NULL, "nl", nl, &info, &err), -EILSEQ);
        assert_non_null(strstr(err, "a name holding a newline cannot be stored in a dataset (a\nb)"));
        free(err);
        err = NULL;
        assert_int_equal(data_put(c, NULL, "deep", deep, &info, &err), -ENAMETOOLONG);
        assert_non_null(strstr(err, "nested deeper than 64 directories (a/a/"));
        /* The tar a CLI sends a daemon refuses them before anything is sent. */
        DataTarStream *t = NULL;
        assert_int_equal(data_tar_stream_new(nl, &t, NULL), -EILSEQ);
        assert_int_equal(data_tar_stream_new(deep, &t, NULL), -ENAMETOOLONG);
        data_catalog_free(c);
        store_close(s);
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

/* The wire form of an object (what a cluster's node serves its peers):
 * written by the reader, taken back by the import only when every byte,
 * size and path agrees with the hash asked for. */
static void write_bytes(const char *path, const void *p, size_t n) {
        assert_int_equal(write_file_atomic(path, p, n, 0644), 0);
}

static char *wire_of(DataCatalog *c, const char *hash, size_t *ret_len) {
        DataObjectReader *r = NULL;
        assert_int_equal(data_object_reader_new(c, hash, &r), 0);
        Buf b;
        buf_init(&b, SIZE_MAX);
        char chunk[7]; /* small reads: the reader resumes mid-file */
        ssize_t n;
        while ((n = data_object_reader_read(r, chunk, sizeof(chunk))) > 0)
                assert_int_equal(buf_append(&b, chunk, (size_t) n), 0);
        assert_int_equal(n, 0);
        data_object_reader_free(r);
        *ret_len = b.len;
        return buf_steal(&b);
}

static void test_object_wire(void **state) {
        char base[] = "/tmp/test-data-wire-XXXXXX";
        assert_non_null(mkdtemp(base));
        _cleanup_free_ char *db = path_join(base, "db.sqlite"), *src = path_join(base, "src");
        _cleanup_free_ char *sub = path_join(src, "sub"), *a = path_join(src, "a txt"), *b = path_join(sub, "b.bin");
        assert_int_equal(mkdir_p(sub, 0755), 0);
        put_file(a, "hello");
        write_bytes(b, "\0\1\2binary\0", 10);
        Store *s = NULL;
        assert_int_equal(store_open(db, &s), 0);
        _cleanup_free_ char *root1 = path_join(base, "n1"), *root2 = path_join(base, "n2");
        DataConfig cfg1 = { .root = root1 }, cfg2 = { .root = root2 };
        DataCatalog *c1 = NULL, *c2 = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(data_catalog_new(s, &cfg1, &c1, &err), 0);
        assert_int_equal(data_catalog_new(s, &cfg2, &c2, &err), 0);
        DataInfo *i = NULL;
        assert_int_equal(data_put(c1, NULL, "d", src, &i, &err), 0);
        const char *hash = i->hash;

        size_t len;
        _cleanup_free_ char *wire = wire_of(c1, hash, &len);
        assert_true(startswith(wire, "PSOBJ1 "));
        _cleanup_free_ char *file = path_join(base, "wire");

        /* Each row: what is done to the wire form, and whether it is taken. */
        struct {
                const char *what;
                size_t flip;   /* byte index to change (0: none) */
                bool cut;      /* drop the last byte */
                bool extra;    /* add a byte */
                bool ok;
        } rows[] = {
                { "a byte of a file changed", len - 3, false, false, false },
                { "a byte of the listing changed", 12, false, false, false },
                { "cut short", 0, true, false, false },
                { "a byte too many", 0, false, true, false },
                { "as served", 0, false, false, true },
        };
        for (size_t k = 0; k < ELEMENTSOF(rows); k++) {
                _cleanup_free_ char *w = xmalloc(len + 1);
                memcpy(w, wire, len);
                size_t n = len;
                if (rows[k].flip)
                        w[rows[k].flip] ^= 0x20;
                if (rows[k].cut)
                        n--;
                if (rows[k].extra)
                        w[n++] = 'x';
                (void) unlink(file);
                write_bytes(file, w, n);
                free(err);
                err = NULL;
                int r = data_object_import(c2, hash, file, &err);
                if (rows[k].ok) {
                        assert_int_equal(r, 0);
                        assert_true(data_object_present(c2, hash));
                } else {
                        if (r >= 0)
                                fail_msg("%s: taken", rows[k].what);
                        assert_non_null(err);
                        assert_false(data_object_present(c2, hash));
                }
        }
        /* Asked for another hash, the same bytes are refused. */
        _cleanup_free_ char *other = xstrdup(hash);
        other[0] = other[0] == 'a' ? 'b' : 'a';
        free(err);
        err = NULL;
        assert_int_equal(data_object_import(c2, other, file, &err), -EBADMSG);

        /* A listing whose hash is right but whose paths leave the object. */
        const char *bad[] = { "../evil", "/abs", "a/../../evil", "a//b", "." };
        for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                char sha[SHA256_HEX_SIZE];
                sha256_hex("x", 1, sha);
                _cleanup_free_ char *listing = xasprintf("f %s 1 %s\n", bad[k], sha);
                char h[SHA256_HEX_SIZE];
                sha256_hex(listing, strlen(listing), h);
                _cleanup_free_ char *w = xasprintf("PSOBJ1 %zu\n%sx", strlen(listing), listing);
                (void) unlink(file);
                write_bytes(file, w, strlen(w));
                free(err);
                err = NULL;
                if (data_object_import(c2, h, file, &err) >= 0)
                        fail_msg("path '%s' was taken", bad[k]);
                assert_false(data_object_present(c2, h));
        }
        _cleanup_free_ char *evil = path_join(root2, "evil");
        assert_int_equal(access(evil, F_OK), -1);

        data_info_free(i);
        data_catalog_free(c1);
        data_catalog_free(c2);
        store_close(s);
        rm_rf(base);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_tar_upload),
                cmocka_unit_test(test_tree_refusals_say_why),
                cmocka_unit_test(test_store_output_refusal_names_no_host_dir),
                cmocka_unit_test(test_versions),
                cmocka_unit_test(test_object_wire),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
