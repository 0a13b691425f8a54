/* shared: the YAML 1.2 core-schema scalar table, documents with positions,
 * SHA-256 vectors (built-in and libcrypto paths), the JSON helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared.h"

/* ---- scalars ---- */

typedef struct ScalarCase {
        const char *yaml;  /* a value as written in a file: `key: <yaml>` */
        const char *json;  /* its JSON, compact; NULL: an error */
} ScalarCase;

/* docs/internals/yaml.md's table. Each row is a whole document `v: ROW`,
 * so quoting and block styles go through libyaml like in a real file. */
static const ScalarCase scalar_cases[] = {
        /* null */
        { "null", "null" },
        { "Null", "null" },
        { "NULL", "null" },
        { "~", "null" },
        { "", "null" },
        { "nULL", "\"nULL\"" },
        /* booleans: only true/false in three spellings */
        { "true", "true" },
        { "True", "true" },
        { "TRUE", "true" },
        { "false", "false" },
        { "False", "false" },
        { "FALSE", "false" },
        { "tRuE", "\"tRuE\"" },
        { "yes", "\"yes\"" },
        { "no", "\"no\"" },
        { "on", "\"on\"" },
        { "off", "\"off\"" },
        { "y", "\"y\"" },
        { "n", "\"n\"" },
        { "Yes", "\"Yes\"" },
        { "ON", "\"ON\"" },
        /* integers */
        { "0", "0" },
        { "42", "42" },
        { "-7", "-7" },
        { "+3", "3" },
        { "012", "12" },
        { "-0", "0" },
        { "9223372036854775807", "9223372036854775807" },
        { "-9223372036854775808", "-9223372036854775808" },
        { "9223372036854775808", NULL },
        { "0o17", "15" },
        { "0o8", "\"0o8\"" },
        { "0x1F", "31" },
        { "0x1f", "31" },
        { "0X1F", "\"0X1F\"" },
        { "-0x1F", "\"-0x1F\"" },
        { "+0x1F", "\"+0x1F\"" },
        { "0x", "\"0x\"" },
        { "0o", "\"0o\"" },
        { "1_000", "\"1_000\"" },
        /* reals */
        { "1.5", "1.5" },
        { "-2.25", "-2.25" },
        { "1e3", "1000.0" },
        { "1E3", "1000.0" },
        { "1e+3", "1000.0" },
        { "2.5e-1", "0.25" },
        { ".5", "0.5" },
        { "-.5", "-0.5" },
        { "1.", "1.0" },
        { "0.0", "0.0" },
        { "1e999", NULL },
        { "e3", "\"e3\"" },
        { "1e", "\"1e\"" },
        { ".", "\".\"" },
        { "1.2.3", "\"1.2.3\"" },
        { ".inf", NULL },
        { "-.Inf", NULL },
        { "+.INF", NULL },
        { ".nan", NULL },
        { ".NaN", NULL },
        { "inf", "\"inf\"" },
        { "nan", "\"nan\"" },
        { ".infinity", "\".infinity\"" },
        /* everything else is a string */
        { "2026-11-30", "\"2026-11-30\"" },
        { "12:30:00", "\"12:30:00\"" },
        { "abc", "\"abc\"" },
        { "hello world", "\"hello world\"" },
        { "1.5s", "\"1.5s\"" },
        { "256M", "\"256M\"" },
        /* quoting always means a string */
        { "\"quoted\"", "\"quoted\"" },
        { "'single'", "\"single\"" },
        { "''", "\"\"" },
        { "\"\"", "\"\"" },
        { "\"true\"", "\"true\"" },
        { "'5'", "\"5\"" },
        { "\"1.5\"", "\"1.5\"" },
        { "'~'", "\"~\"" },
        { "\".inf\"", "\".inf\"" },
        { "\"a\\u00e9\"", "\"a\xc3\xa9\"" },
        { "|\n  block\n", "\"block\\n\"" },
        { ">-\n  folded\n  text\n", "\"folded text\"" },
        /* collections */
        { "[yes, on, 1.5, 0x1F, ~, 'x']", "[\"yes\",\"on\",1.5,31,null,\"x\"]" },
        { "{a: 1, b: [true, null]}", "{\"a\":1,\"b\":[true,null]}" },
        { "{1: one, true: t}", "{\"1\":\"one\",\"true\":\"t\"}" },
};

static char *doc_json(const char *value, char **ret_error) {
        _cleanup_free_ char *text = xasprintf("v: %s", value);
        json_t *j = NULL;
        int r = yaml_to_json(text, strlen(text), "t.yaml", &j, ret_error);
        if (r < 0)
                return NULL;
        char *s = json_dumps(json_object_get(j, "v"), JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        json_decref(j);
        return s;
}

static void test_scalar_table(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(scalar_cases); i++) {
                const ScalarCase *c = &scalar_cases[i];
                _cleanup_free_ char *err = NULL;
                _cleanup_free_ char *got = doc_json(c->yaml, &err);
                if (c->json) {
                        if (!got || !streq(got, c->json))
                                fail_msg("'%s': want %s, got %s (%s)", c->yaml, c->json, got ?: "error", err ?: "");
                } else {
                        if (got)
                                fail_msg("'%s': want an error, got %s", c->yaml, got);
                        /* The message points at the value and says what to do. */
                        assert_non_null(strstr(err, "t.yaml:1:4: "));
                        assert_non_null(strstr(err, "quote it"));
                }
        }
}

static void test_scalar_direct(void **state) {
        json_t *v;
        _cleanup_free_ char *err = NULL;
        /* Not plain: a string whatever it looks like. */
        assert_int_equal(yaml_scalar_to_json("true", 4, false, &v, &err), 0);
        assert_true(json_is_string(v));
        json_decref(v);
        /* The length bounds the text (not NUL-terminated input). */
        assert_int_equal(yaml_scalar_to_json("12345", 2, true, &v, &err), 0);
        assert_int_equal(json_integer_value(v), 12);
        json_decref(v);
        /* A quoted NUL survives as a string. */
        assert_int_equal(yaml_scalar_to_json("a\0b", 3, false, &v, &err), 0);
        assert_int_equal(json_string_length(v), 3);
        json_decref(v);
        assert_int_equal(yaml_scalar_to_json(".nan", 4, true, &v, &err), -EINVAL);
        assert_non_null(strstr(err, "'.nan'"));
}

/* ---- documents ---- */

static void test_walker_positions(void **state) {
        const char *text = "name: p\n"
                           "tasks:\n"
                           "  a: {file: a.py}\n"
                           "  b:\n"
                           "    file: b.py\n"
                           "    args: [1, yes]\n";
        _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(yaml_doc_load(text, strlen(text), "p.yaml", 0, &d, &err), 0);
        assert_string_equal(yaml_doc_filename(d), "p.yaml");
        const YamlNode *root = yaml_doc_root(d);
        assert_int_equal(yaml_node_kind(root), YAML_KIND_MAPPING);
        assert_int_equal(yaml_node_count(root), 2);
        assert_string_equal(yaml_node_scalar(yaml_node_key(d, root, 1)), "tasks");
        const YamlNode *tasks = yaml_node_value(d, root, 1);
        assert_int_equal(yaml_node_kind(tasks), YAML_KIND_MAPPING);
        const YamlNode *b = yaml_node_value(d, tasks, 1);
        assert_int_equal(yaml_node_line(b), 5);
        assert_int_equal(yaml_node_column(b), 5);
        const YamlNode *args = yaml_node_value(d, b, 1);
        assert_int_equal(yaml_node_kind(args), YAML_KIND_SEQUENCE);
        assert_int_equal(yaml_node_count(args), 2);
        const YamlNode *yes = yaml_node_item(d, args, 1);
        assert_int_equal(yaml_node_line(yes), 6);
        assert_int_equal(yaml_node_column(yes), 15);
        assert_string_equal(yaml_node_scalar(yes), "yes");
        assert_true(yaml_node_is_plain(yes));
        assert_null(yaml_node_scalar(args));
        /* Out of range and wrong kind give NULL, not a crash. */
        assert_null(yaml_node_item(d, args, 2));
        assert_null(yaml_node_key(d, args, 0));
        assert_null(yaml_node_item(d, root, 0));
        /* A subtree's JSON. */
        json_t *j;
        assert_int_equal(yaml_doc_json(d, args, &j, &err), 0);
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
        assert_string_equal(s, "[1,\"yes\"]");
        json_decref(j);
}

static void test_doc_errors(void **state) {
        json_t *j = NULL;
        char *err = NULL;
        /* Syntax: FILE:LINE:COL. */
        const char *bad = "a: [1, 2\nb: 3\n";
        assert_int_equal(yaml_to_json(bad, strlen(bad), "c.yaml", &j, &err), -EINVAL);
        assert_true(startswith(err, "c.yaml:"));
        assert_non_null(strstr(err, "YAML error"));
        free(err), err = NULL;
        /* A key that is a list has no JSON spelling. */
        const char *key = "a: 1\n? [x]\n: 2\n";
        assert_int_equal(yaml_to_json(key, strlen(key), "c.yaml", &j, &err), -EINVAL);
        assert_non_null(strstr(err, "c.yaml:2:3: mapping keys must be plain strings"));
        free(err), err = NULL;
        /* .inf deep inside: the position of the value. */
        const char *inf = "limits:\n  maxima:\n    timeout_ms: .inf\n";
        assert_int_equal(yaml_to_json(inf, strlen(inf), "c.yaml", &j, &err), -EINVAL);
        assert_non_null(strstr(err, "c.yaml:3:17: '.inf'"));
        free(err), err = NULL;
        /* An alias bomb is stopped by the node budget. */
        Buf b;
        buf_init(&b, 1 << 20);
        buf_appends(&b, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for (int i = 1; i < 9; i++)
                buf_printf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i - 1,
                           i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
        assert_int_equal(yaml_to_json(b.data, b.len, "bomb.yaml", &j, &err), -EINVAL);
        assert_non_null(strstr(err, "too large"));
        free(err), err = NULL;
        buf_free(&b);
        /* Depth. */
        Buf deep;
        buf_init(&deep, 1 << 16);
        for (int i = 0; i < YAML_MAX_DEPTH + 2; i++)
                buf_appends(&deep, "[");
        for (int i = 0; i < YAML_MAX_DEPTH + 2; i++)
                buf_appends(&deep, "]");
        assert_int_equal(yaml_to_json(deep.data, deep.len, "d.yaml", &j, &err), -EINVAL);
        assert_non_null(strstr(err, "nested more than"));
        free(err), err = NULL;
        buf_free(&deep);
        /* Empty documents are null, not an error. */
        assert_int_equal(yaml_to_json("", 0, "e.yaml", &j, &err), 0);
        assert_true(json_is_null(j));
        assert_int_equal(yaml_to_json("# only a comment\n", 17, "e.yaml", &j, &err), 0);
        assert_true(json_is_null(j));
}

static void test_small_budget(void **state) {
        _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
        _cleanup_free_ char *err = NULL;
        const char *text = "[1, 2, 3, 4]";
        assert_int_equal(yaml_doc_load(text, strlen(text), "s.yaml", 4, &d, &err), 0);
        json_t *j;
        /* Five nodes (the list and four items) against a budget of four. */
        assert_int_equal(yaml_doc_json(d, NULL, &j, &err), -EINVAL);
        /* The fifth node, the last item, is where the budget ran out. */
        assert_non_null(strstr(err, "s.yaml:1:11: the document is too large"));
}

/* ---- keys given twice ---- */

typedef struct DupCase {
        const char *yaml;
        const char *error; /* the whole message, NULL: loads */
} DupCase;

/* Every reader loads through yaml_doc_load, so these rows are what the
 * config, pipelines and stack files say. */
static const DupCase dup_cases[] = {
        /* Top level: the second key's place, the first one's line. */
        { "a: 1\nb: 2\na: 3\n", "d.yaml:3:1: duplicate key 'a' (first at line 1)" },
        { "listen: x\ntenants: {}\nlimits: {}\ntenants: {}\n",
          "d.yaml:4:1: duplicate key 'tenants' (first at line 2)" },
        /* Nested, at any depth, in block and flow style. */
        { "x:\n  a: 1\n  b: 2\n  a: 3\n", "d.yaml:4:3: duplicate key 'a' (first at line 2)" },
        { "x:\n  y:\n    z:\n      k: 1\n      k: 2\n", "d.yaml:5:7: duplicate key 'k' (first at line 4)" },
        { "list:\n  - {a: 1}\n  - k: 1\n    k: 2\n", "d.yaml:4:5: duplicate key 'k' (first at line 3)" },
        { "{a: 1, b: 2, a: 3}", "d.yaml:1:14: duplicate key 'a' (first at line 1, column 2)" },
        /* Keys compare as the text they hold once quotes and escapes are read. */
        { "a: 1\n\"a\": 2\n", "d.yaml:2:1: duplicate key 'a' (first at line 1)" },
        { "'a': 1\n\"\\x61\": 2\n", "d.yaml:2:1: duplicate key 'a' (first at line 1)" },
        { "1: x\n'1': y\n", "d.yaml:2:1: duplicate key '1' (first at line 1)" }, /* keys stay strings */
        /* Given three times: the second one is reported. */
        { "a: 1\na: 2\na: 3\n", "d.yaml:2:1: duplicate key 'a' (first at line 1)" },
        /* Two mappings with a duplicate: the one met first in the file,
         * though the outer mapping is the first node. */
        { "outer:\n  in:\n    z: 1\n    z: 2\nouter: 3\n", "d.yaml:4:5: duplicate key 'z' (first at line 3)" },
        /* Different keys, the same key in sibling mappings, sequences of
         * mappings with the same keys each: all fine. */
        { "a: 1\nA: 2\n'a ': 3\nb: 4\n", NULL },
        { "1: x\n01: y\nnull: 1\n~: 2\n", NULL },
        { "a: {x: 1}\nb: {x: 2}\n", NULL },
        { "tasks:\n  - name: a\n    file: a.py\n  - name: b\n    file: b.py\n", NULL },
        { "a: {}\nb: []\nc:\n", NULL },
        /* An alias used as a value is the same node each time: fine. */
        { "d: &d {t: 1, u: 2}\ne: *d\nf: *d\n", NULL },
        /* A key that is an alias: libyaml keeps only the anchor's place,
         * so the pair is placed at its value. */
        { "k: &k a\nm:\n  a: 1\n  *k : 2\n", "d.yaml:4:8: duplicate key 'a' (first at line 3)" },
        /* `<<` is an ordinary key (no YAML 1.1 merge): beside the keys it
         * would merge it is fine; given twice it is a duplicate. */
        { "b: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n", NULL },
        { "b: &b {x: 1}\nc: &c {y: 1}\nm:\n  <<: *b\n  <<: *c\n", "d.yaml:5:3: duplicate key '<<' (first at line 4)" },
};

static void test_duplicate_keys_table(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(dup_cases); i++) {
                const DupCase *c = &dup_cases[i];
                _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
                _cleanup_free_ char *err = NULL;
                int r = yaml_doc_load(c->yaml, strlen(c->yaml), "d.yaml", 0, &d, &err);
                if (!c->error && r < 0)
                        fail_msg("'%s': want it loaded, got %s", c->yaml, err);
                if (c->error && (r != -EINVAL || !err || !streq(err, c->error)))
                        fail_msg("'%s': want '%s', got %d '%s'", c->yaml, c->error, r, err ?: "");
                if (c->error)
                        assert_null(d);
        }
        /* yaml_to_json (the daemon's config) loads the same way. */
        json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        const char *text = "limits:\n  defaults: {timeout_ms: 1}\nlimits:\n  defaults: {timeout_ms: 2}\n";
        assert_int_equal(yaml_to_json(text, strlen(text), "pysprinterd.yaml", &j, &err), -EINVAL);
        assert_string_equal(err, "pysprinterd.yaml:3:1: duplicate key 'limits' (first at line 1)");
        assert_null(j);
}

/* Thousands of keys: sorted once per mapping, not compared pairwise. */
static void test_duplicate_keys_many(void **state) {
        usec_t took[2];
        size_t sizes[2] = { 5000, 200000 };
        for (size_t s = 0; s < 2; s++) {
                size_t n = sizes[s];
                Buf b;
                buf_init(&b, 16 << 20);
                buf_appends(&b, "m:\n");
                for (size_t i = 0; i < n; i++)
                        buf_printf(&b, "  key%zu: %zu\n", i, i);
                usec_t t0 = now_monotonic();
                _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
                _cleanup_free_ char *err = NULL;
                assert_int_equal(yaml_doc_load(b.data, b.len, "many.yaml", 0, &d, &err), 0);
                assert_int_equal(yaml_node_count(yaml_node_value(d, yaml_doc_root(d), 0)), n);
                d = yaml_doc_free(d);
                /* The last key again, after all the others. */
                buf_printf(&b, "  key%zu: again\n", n - 1);
                assert_int_equal(yaml_doc_load(b.data, b.len, "many.yaml", 0, &d, &err), -EINVAL);
                took[s] = now_monotonic() - t0;
                _cleanup_free_ char *want = xasprintf("many.yaml:%zu:3: duplicate key 'key%zu' (first at line %zu)",
                                                      n + 2, n - 1, n + 1);
                assert_string_equal(err, want);
                buf_free(&b);
        }
        /* 40 times the keys take ~50 times as long sorted (parsing is most
         * of it), 1600 times compared pairwise: 2e10 comparisons, minutes.
         * A ratio, so that valgrind's slowness cancels out; a floor, so
         * that a loaded machine's noise on the small one does not count. */
        if (took[1] > 2 * USEC_PER_SEC && took[1] > 200 * took[0])
                fail_msg("%zu keys took %llu ms, %zu keys %llu ms", sizes[0], (unsigned long long) (took[0] / 1000),
                         sizes[1], (unsigned long long) (took[1] / 1000));
}

/* ---- SHA-256 ---- */

typedef struct ShaCase {
        char fill;
        size_t n;
        const char *hex;
} ShaCase;

/* FIPS 180-2 vectors and the padding edges (55/56/63/64 bytes), the
 * built-in limit (65536) and one past it (libcrypto), a million 'a'. */
static const ShaCase sha_cases[] = {
        { 0, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { 'a', 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
        { 'a', 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
        { 'a', 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
        { 'a', 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
        { 'a', 65536, "bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a" },
        { 'a', 65537, "008ffc88d3c96a9f307524eb361e47c5222a887fc45fa0c1fb8d429c5c23b430" },
        { 'a', 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
};

static void test_sha256_vectors(void **state) {
        char hex[SHA256_HEX_SIZE];
        sha256_hex("abc", 3, hex);
        assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        _cleanup_free_ char *dup = sha256_hex_dup(m, strlen(m));
        assert_string_equal(dup, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        for (size_t i = 0; i < ELEMENTSOF(sha_cases); i++) {
                _cleanup_free_ char *buf = xmalloc(sha_cases[i].n + 1);
                memset(buf, sha_cases[i].fill, sha_cases[i].n);
                sha256_hex(buf, sha_cases[i].n, hex);
                if (!streq(hex, sha_cases[i].hex))
                        fail_msg("%zu x '%c': want %s, got %s", sha_cases[i].n, sha_cases[i].fill, sha_cases[i].hex, hex);
                /* The stream (libcrypto) agrees, fed in uneven pieces. */
                _cleanup_(sha256_freep) Sha256 *h = sha256_new();
                for (size_t off = 0; off < sha_cases[i].n;) {
                        size_t k = MIN(sha_cases[i].n - off, 1 + off % 7919);
                        sha256_update(h, buf + off, k);
                        off += k;
                }
                char s[SHA256_HEX_SIZE];
                sha256_final_hex(h, s);
                assert_string_equal(s, sha_cases[i].hex);
                /* So does the built-in stream, in other uneven pieces. */
                Sha256Small sm;
                sha256_small_init(&sm);
                for (size_t off = 0; off < sha_cases[i].n;) {
                        size_t k = MIN(sha_cases[i].n - off, 1 + off % 131);
                        sha256_small_update(&sm, buf + off, k);
                        off += k;
                }
                sha256_small_final_hex(&sm, s);
                assert_string_equal(s, sha_cases[i].hex);
        }
        /* The built-in code agrees with libcrypto at every padding boundary. */
        char b[300];
        for (size_t n = 0; n < sizeof(b); n++) {
                b[n] = (char) ('a' + n % 26);
                _cleanup_(sha256_freep) Sha256 *h = sha256_new();
                sha256_update(h, b, n);
                char want[SHA256_HEX_SIZE], got[SHA256_HEX_SIZE];
                sha256_final_hex(h, want);
                sha256_hex(b, n, got);
                assert_string_equal(got, want);
                Sha256Small sm; /* a byte at a time across every boundary */
                sha256_small_init(&sm);
                for (size_t i = 0; i < n; i++)
                        sha256_small_update(&sm, b + i, 1);
                sha256_small_final_hex(&sm, got);
                assert_string_equal(got, want);
        }
}

static void test_sha256_file(void **state) {
        char path[] = "/tmp/test-shared-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write_full(fd, "abc", 3), 0);
        close(fd);
        char hex[SHA256_HEX_SIZE];
        assert_int_equal(sha256_file_hex(path, hex), 0);
        assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        _cleanup_close_ int rfd = open(path, O_RDONLY | O_CLOEXEC);
        uint64_t size = 0;
        assert_int_equal(sha256_fd_hex(rfd, hex, &size), 0);
        assert_int_equal(size, 3);
        unlink(path);
        assert_int_equal(sha256_file_hex(path, hex), -ENOENT);
        assert_true(sha256_hex_is_valid("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_false(sha256_hex_is_valid("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
        assert_false(sha256_hex_is_valid("ba78"));
        assert_false(sha256_hex_is_valid(NULL));
}

/* ---- sealed values (AES-256-GCM) ---- */

/* NIST GCM test case 14 (AES-256, zero key and IV, one zero block): the
 * known-answer check that this is AES-256-GCM and not merely reversible. */
static void test_seal_vector_and_tamper(void **state) {
        uint8_t key[SEAL_KEY_SIZE] = {};
        uint8_t *box = NULL;
        size_t len = 0;
        const char plain[] = "the value";
        assert_int_equal(seal_encrypt(key, "t\0n", 3, plain, strlen(plain), &box, &len), 0);
        assert_int_equal(len, strlen(plain) + SEAL_OVERHEAD);
        assert_null(memmem(box, len, plain, strlen(plain)));
        char *out = NULL;
        size_t n = 0;
        assert_int_equal(seal_decrypt(key, "t\0n", 3, box, len, &out, &n), 0);
        assert_int_equal(n, strlen(plain));
        assert_string_equal(out, plain);
        free(out);
        /* Another aad (another tenant's row), another key, a flipped bit,
         * a short box: none opens. */
        assert_int_equal(seal_decrypt(key, "u\0n", 3, box, len, &out, &n), -EBADMSG);
        uint8_t other[SEAL_KEY_SIZE] = { 1 };
        assert_int_equal(seal_decrypt(other, "t\0n", 3, box, len, &out, &n), -EBADMSG);
        box[SEAL_NONCE_SIZE] ^= 1;
        assert_int_equal(seal_decrypt(key, "t\0n", 3, box, len, &out, &n), -EBADMSG);
        assert_int_equal(seal_decrypt(key, NULL, 0, box, SEAL_OVERHEAD - 1, &out, &n), -EBADMSG);
        free(box);

        /* The known answer: nonce 0^96, P = 0^128 -> C cea7403d4d606b6e074ec5d3baf39d18,
         * T d0d1c8a799996bf0265b98b5d48ab919. */
        static const uint8_t want[SEAL_OVERHEAD + 16] = {
                0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
                0xce, 0xa7, 0x40, 0x3d, 0x4d, 0x60, 0x6b, 0x6e, 0x07, 0x4e, 0xc5, 0xd3, 0xba, 0xf3, 0x9d, 0x18,
                0xd0, 0xd1, 0xc8, 0xa7, 0x99, 0x99, 0x6b, 0xf0, 0x26, 0x5b, 0x98, 0xb5, 0xd4, 0x8a, 0xb9, 0x19,
        };
        assert_int_equal(seal_decrypt(key, NULL, 0, want, sizeof want, &out, &n), 0);
        assert_int_equal(n, 16);
        for (size_t i = 0; i < 16; i++)
                assert_int_equal(out[i], 0);
        free(out);
}

static void test_seal_key_file(void **state) {
        char dir[] = "/tmp/test-seal-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = path_join(dir, "secrets.key"), *err = NULL;
        uint8_t k1[SEAL_KEY_SIZE], k2[SEAL_KEY_SIZE];
        assert_int_equal(seal_key_load(path, k1, &err), 0);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_size, SEAL_KEY_SIZE);
        /* The second start reads the same key. */
        assert_int_equal(seal_key_load(path, k2, &err), 0);
        assert_memory_equal(k1, k2, SEAL_KEY_SIZE);
        /* A key others can read is refused, with a message that says so. */
        assert_int_equal(chmod(path, 0644), 0);
        assert_int_equal(seal_key_load(path, k2, &err), -EPERM);
        assert_non_null(strstr(err, "chmod 600"));
        free(err);
        err = NULL;
        /* A truncated key is refused, not padded. */
        assert_int_equal(chmod(path, 0600), 0);
        assert_int_equal(truncate(path, 16), 0);
        assert_int_equal(seal_key_load(path, k2, &err), -EBADMSG);
        unlink(path);
        rmdir(dir);
}

/* ---- JSON helpers ---- */

/* The bytes marker: a table of JSON texts, what they decode to (NULL: not a
 * marker, 0) or -EINVAL. */
/* RFC 4648 §10's vectors both ways, bytes that are not text round-trip,
 * and what is not padded base64 is refused. */
static void test_base64(void **state) {
        const char *vec[][2] = {
                { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
                { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
        };
        for (size_t i = 0; i < ELEMENTSOF(vec); i++) {
                _cleanup_free_ char *enc = base64_encode(vec[i][0], strlen(vec[i][0])), *dec = NULL;
                assert_string_equal(enc, vec[i][1]);
                size_t n = 99;
                assert_int_equal(base64_decode(vec[i][1], strlen(vec[i][1]), &dec, &n), 0);
                assert_int_equal(n, strlen(vec[i][0]));
                assert_memory_equal(dec, vec[i][0], n);
        }
        const char raw[] = "\xff\x00\xc3\n\x80";
        _cleanup_free_ char *enc = base64_encode(raw, sizeof raw - 1), *dec = NULL;
        size_t n = 0;
        assert_int_equal(base64_decode(enc, strlen(enc), &dec, &n), 0);
        assert_int_equal(n, sizeof raw - 1);
        assert_memory_equal(dec, raw, n);
        assert_int_equal(dec[n], 0);

        const char *bad[] = { "Zg=", "Zm9", "Z!==", "@@@@" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *out = NULL;
                if (base64_decode(bad[i], strlen(bad[i]), &out, &n) != -EINVAL)
                        fail_msg("'%s' decoded", bad[i]);
                assert_null(out);
        }
}

/* A raw_kwargs value as the engine's item (the API's and a pipeline's). */
static void test_json_raw_kwarg_item(void **state) {
        static const struct {
                const char *in, *out;
        } rows[] = {
                { "true", "{\"bare\":true}" },
                { "\"5\"", "{\"raw\":\"5\"}" },
                { "[\"1\",\"2\"]", "{\"raw\":[\"1\",\"2\"]}" },
                { "false", NULL },
                { "5", NULL },
                { "null", NULL },
                { "[]", NULL },
                { "[\"1\",2]", NULL },
                { "{\"a\":\"b\"}", NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                json_t *in = json_loads(rows[i].in, JSON_DECODE_ANY, NULL);
                json_t *out = json_raw_kwarg_item(in);
                _cleanup_free_ char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
                if (rows[i].out)
                        assert_string_equal(text, rows[i].out);
                else
                        assert_null(out);
                json_decref(out);
                json_decref(in);
        }
}

static void test_json_error_text(void **state) {
        json_error_t e;
        assert_null(json_loads("[\"a\\u0000b\"]", 0, &e));
        assert_string_equal(json_error_text(&e), "a string holds \\u0000 (NUL), which is not accepted here");
        assert_null(strstr(json_error_text(&e), "JSON_"));
        assert_null(json_loads("[1,", 0, &e));
        assert_ptr_equal(json_error_text(&e), e.text); /* jansson's words where they are plain */
        /* Past 64 bits, either sign: what the limit is, and what to do. */
        for (size_t i = 0; i < 2; i++) {
                assert_null(json_loads(i ? "[-99999999999999999999]" : "{\"x\": 18446744073709551616}", 0, &e));
                assert_non_null(strstr(json_error_text(&e), "an integer beyond 64 bits"));
                assert_non_null(strstr(json_error_text(&e), "send it as a string"));
        }
        assert_null(json_loads("[1e999]", 0, &e)); /* a real's overflow stays jansson's */
        assert_ptr_equal(json_error_text(&e), e.text);
}

static void test_json_bytes_marker(void **state) {
        static const struct {
                const char *json;
                int r;
                const char *bytes;
                size_t len;
        } rows[] = {
                { "{\"$bytes\": \"AGhp\"}", 1, "\0hi", 3 },
                { "{\"$bytes\": \"AP8=\"}", 1, "\0\377", 2 },
                { "{\"$bytes\": \"aA==\"}", 1, "h", 1 },
                { "{\"$bytes\": \"\"}", 1, "", 0 },
                { "{\"$bytes\": \"AGh\"}", -EINVAL, NULL, 0 },
                { "{\"$bytes\": \"!!!!\"}", -EINVAL, NULL, 0 },
                { "{\"$bytes\": 5}", 0, NULL, 0 },
                { "{\"$bytes\": \"AGhp\", \"x\": 1}", 0, NULL, 0 },
                { "\"AGhp\"", 0, NULL, 0 },
                { "[1]", 0, NULL, 0 },
        };
        (void) state;
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                json_t *v = json_loads(rows[i].json, JSON_DECODE_ANY, NULL);
                assert_non_null(v);
                uint8_t *out = NULL;
                size_t len = 12345;
                int r = json_bytes_marker_decode(v, &out, &len);
                assert_int_equal(r, rows[i].r);
                if (r > 0) {
                        assert_int_equal(len, rows[i].len);
                        assert_memory_equal(out, rows[i].bytes, len);
                } else
                        assert_null(out);
                free(out);
                json_decref(v);
        }
}

static void test_json_parse_or_string(void **state) {
        json_t *v = json_parse_or_string(NULL);
        assert_true(json_is_null(v));
        v = json_parse_or_string("[1,2]");
        assert_int_equal(json_array_size(v), 2);
        json_decref(v);
        v = json_parse_or_string("5");
        assert_int_equal(json_integer_value(v), 5);
        json_decref(v);
        v = json_parse_or_string("\"a\\u0000b\"");
        assert_int_equal(json_string_length(v), 3);
        json_decref(v);
        v = json_parse_or_string("not json {");
        assert_string_equal(json_string_value(v), "not json {");
        json_decref(v);
}

static void test_json_getters(void **state) {
        json_t *o = json_pack("{s:s, s:i, s:b, s:[s,s], s:[s,i], s:i, s:s}", "name", "x", "n", 7, "flag", 1, "list", "a",
                              "b", "mixed", "a", 1, "neg", -1, "yes", "yes");
        assert_string_equal(json_get_string(o, "name"), "x");
        assert_null(json_get_string(o, "n"));
        assert_null(json_get_string(o, "missing"));
        assert_null(json_get_string(NULL, "name"));
        assert_int_equal(json_get_integer(o, "n", -1), 7);
        assert_int_equal(json_get_integer(o, "name", -1), -1);

        _cleanup_free_ char *err = NULL;
        uint64_t u = 99;
        assert_int_equal(json_want_uint(json_object_get(o, "n"), "server.n", &u, &err), 0);
        assert_int_equal(u, 7);
        assert_int_equal(json_want_uint(json_object_get(o, "neg"), "server.neg", &u, &err), -EINVAL);
        assert_string_equal(err, "'server.neg' must be a non-negative integer");
        assert_int_equal(u, 7); /* untouched on error */
        free(err), err = NULL;

        bool b = false;
        assert_int_equal(json_want_bool(json_object_get(o, "flag"), "limits.network", &b, &err), 0);
        assert_true(b);
        assert_int_equal(json_want_bool(json_object_get(o, "yes"), "limits.network", &b, &err), -EINVAL);
        assert_string_equal(err, "'limits.network' must be true or false (not 'yes')");
        free(err), err = NULL;

        _cleanup_free_ char *s = xstrdup("old");
        assert_int_equal(json_want_string(json_object_get(o, "name"), "listen", &s, &err), 0);
        assert_string_equal(s, "x");
        assert_int_equal(json_want_string(json_object_get(o, "n"), "listen", &s, &err), -EINVAL);
        assert_string_equal(err, "'listen' must be a string");
        assert_string_equal(s, "x");
        free(err), err = NULL;

        _cleanup_strv_free_ char **l = NULL;
        assert_int_equal(json_want_strv(json_object_get(o, "list"), "allow", &l, &err), 0);
        assert_int_equal(strv_length(l), 2);
        assert_string_equal(l[1], "b");
        assert_int_equal(json_want_strv(json_object_get(o, "mixed"), "allow", &l, &err), -EINVAL);
        assert_string_equal(err, "'allow[1]' must be a string");
        assert_int_equal(strv_length(l), 2);
        free(err), err = NULL;
        assert_int_equal(json_want_strv(json_object_get(o, "name"), "allow", &l, &err), -EINVAL);
        assert_string_equal(err, "'allow' must be a list of strings");
        free(err), err = NULL;
        json_t *empty = json_array();
        assert_int_equal(json_want_strv(empty, "allow", &l, &err), 0);
        assert_non_null(l);
        assert_null(l[0]);
        json_decref(empty);

        char *v[] = { (char *) "p", (char *) "q", NULL };
        json_t *a = json_strv_new(v);
        _cleanup_free_ char *t = json_dumps(a, JSON_COMPACT);
        assert_string_equal(t, "[\"p\",\"q\"]");
        json_decref(a);
        a = json_strv_new(NULL);
        assert_int_equal(json_array_size(a), 0);
        json_decref(a);
        json_decref(o);
}

/* ---- the JSON Schema checker over YAML (docs/stack.md) ---- */

/* A schema that uses every keyword the checker supports. */
static const char test_schema[] =
        "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"name\"],"
        " \"properties\": {"
        "  \"name\": {\"$ref\": \"#/$defs/name\"},"
        "  \"count\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 10},"
        "  \"ratio\": {\"type\": \"number\"},"
        "  \"on\": {\"type\": \"boolean\"},"
        "  \"mode\": {\"enum\": [true, false, \"public\"]},"
        "  \"fixed\": {\"const\": \"x\"},"
        "  \"timeout\": {\"type\": [\"string\", \"integer\"], \"format\": \"duration\"},"
        "  \"memory\": {\"type\": \"string\", \"format\": \"size\"},"
        "  \"cron\": {\"type\": \"string\", \"format\": \"cron\"},"
        "  \"every\": {\"type\": \"string\", \"format\": \"every\"},"
        "  \"text\": {\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3},"
        "  \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1,"
        "            \"maxItems\": 2, \"uniqueItems\": true},"
        "  \"env\": {\"type\": \"object\", \"propertyNames\": {\"pattern\": \"^[A-Z]+$\"},"
        "           \"additionalProperties\": {\"type\": \"string\"}},"
        "  \"when\": {\"type\": \"object\", \"oneOf\": ["
        "     {\"required\": [\"cron\"], \"description\": \"one of cron and every\"},"
        "     {\"required\": [\"every\"], \"description\": \"one of cron and every\"}]},"
        "  \"either\": {\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"string\", \"pattern\": \"^a\"}]}"
        " },"
        " \"$defs\": {\"name\": {\"type\": \"string\", \"pattern\": \"^[a-z][a-z0-9-]*$\"}}}";

typedef struct SchemaCase {
        const char *yaml;
        const char *error; /* NULL: conforms; else a substring of the message ("t.yaml:L:C: …") */
} SchemaCase;

static const SchemaCase schema_cases[] = {
        { "name: ok", NULL },
        { "name: ok\ncount: 3\nratio: 2\non: true\nmode: public\nfixed: x\ntimeout: 30s\nmemory: 256M\n"
          "cron: '*/5 * * * *'\nevery: 10m\ntext: abc\ntags: [a, b]\nenv: {HOME: x}\nwhen: {cron: x}\n"
          "either: 3",
          NULL },
        { "timeout: 30\nname: n", NULL }, /* integer allowed by the type list; format applies to strings */
        { "count: 3", "t.yaml:1:1: missing required key 'name'" },
        { "name: ok\ncolour: blue", "t.yaml:2:1: unknown key 'colour'" },
        { "name: Bad", "t.yaml:1:7: 'Bad' does not match" },
        { "name: 12", "t.yaml:1:7: '12' is an integer, expected string" },
        { "name: ok\ncount: many", "t.yaml:2:8: 'many' is a string, expected integer" },
        { "name: ok\ncount: 0", "t.yaml:2:8: 0 is below the minimum 1" },
        { "name: ok\ncount: 11", "t.yaml:2:8: 11 is above the maximum 10" },
        { "name: ok\ncount: 2.5", "expected integer" },
        { "name: ok\nratio: x", "expected number" },
        { "name: ok\non: yes", "'yes' is a string, expected boolean" }, /* the core schema: yes is text */
        { "name: ok\nmode: private", "t.yaml:2:7: private is not one of [true,false,\"public\"]" },
        { "name: ok\nfixed: y", "is not one of \"x\"" },
        { "name: ok\ntimeout: 20 parsecs", "t.yaml:2:10: '20 parsecs' is not a duration" },
        { "name: ok\nmemory: lots", "t.yaml:2:9: 'lots' is not a size" },
        { "name: ok\ncron: '0 3 * *'", "t.yaml:2:7: not a cron expression" },
        { "name: ok\ncron: '61 * * * *'", "not a cron expression" },
        { "name: ok\nevery: 500ms", "@every takes a whole number of seconds" },
        { "name: ok\ntext: a", "shorter than 2" },
        { "name: ok\ntext: abcd", "longer than 3" },
        { "name: ok\ntext: é€", NULL }, /* lengths count characters, not bytes */
        { "name: ok\ntags: []", "t.yaml:2:7: needs at least 1 items" },
        { "name: ok\ntags: [a, b, c]", "more than 2 items" },
        { "name: ok\ntags: [a, a]", "t.yaml:2:11: repeats an earlier item" },
        { "name: ok\ntags: [a, 1]", "t.yaml:2:11: '1' is an integer, expected string" },
        { "name: ok\ntags: a", "t.yaml:2:7: 'a' is a string, expected array" },
        { "name: ok\nenv: {home: x}", "t.yaml:2:7: 'home' does not match" },
        { "name: ok\nenv: {HOME: [x]}", "expected string, found array" },
        { "name: ok\nwhen: {}", "t.yaml:2:7: one of cron and every" },
        { "name: ok\nwhen: {cron: a, every: b}", "matches more than one alternative: one of cron and every" },
        { "name: ok\neither: b", "does not match ^a" },
        { "name: ok\neither: abc", NULL },
        { "- a", "expected object, found array" },
        { "name: ok\ncount: .inf", ".inf" },
};

static void test_schema_table(void **state) {
        json_error_t jerr;
        json_t *schema = json_loads(test_schema, 0, &jerr);
        assert_non_null(schema);
        for (size_t i = 0; i < ELEMENTSOF(schema_cases); i++) {
                const SchemaCase *c = &schema_cases[i];
                YamlDoc *doc = NULL;
                char *err = NULL;
                assert_int_equal(yaml_doc_load(c->yaml, strlen(c->yaml), "t.yaml", 0, &doc, &err), 0);
                int r = schema_check_yaml(schema, doc, NULL, &err);
                if (!c->error) {
                        if (r != 0)
                                fail_msg("row %zu (%s): unexpected error %s", i, c->yaml, err);
                } else if (r != -EINVAL || !err || !strstr(err, c->error))
                        fail_msg("row %zu (%s): want '%s', got %d '%s'", i, c->yaml, c->error, r, err ?: "");
                free(err);
                yaml_doc_free(doc);
        }
        json_decref(schema);
}

static void test_schema_every_mistake_once(void **state) {
        /* All the mistakes of a file, one line each, in the file's order. */
        json_t *schema = json_loads(test_schema, 0, NULL);
        const char *yaml = "count: x\nmode: no\nextra: 1\n";
        YamlDoc *doc = NULL;
        char *err = NULL;
        assert_int_equal(yaml_doc_load(yaml, strlen(yaml), "t.yaml", 0, &doc, &err), 0);
        assert_int_equal(schema_check_yaml(schema, doc, NULL, &err), -EINVAL);
        assert_string_equal(err, "t.yaml:1:8: 'x' is a string, expected integer\n"
                                 "t.yaml:2:7: no is not one of [true,false,\"public\"]\n"
                                 "t.yaml:3:1: unknown key 'extra'\n"
                                 "t.yaml:1:1: missing required key 'name'");
        free(err);
        yaml_doc_free(doc);
        json_decref(schema);
}

static void test_schema_unknown_keyword_is_the_schemas_mistake(void **state) {
        /* A keyword the checker does not implement must not pass silently. */
        static const char *const schemas[] = {
                "{\"type\": \"object\", \"patternProperties\": {}}",
                "{\"$ref\": \"http://elsewhere/x.json\"}",
                "{\"$ref\": \"#/$defs/missing\"}",
                "{\"type\": \"string\", \"format\": \"email\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(schemas); i++) {
                json_t *schema = json_loads(schemas[i], 0, NULL);
                YamlDoc *doc = NULL;
                char *err = NULL;
                assert_non_null(schema);
                assert_int_equal(yaml_doc_load("a", 1, "t.yaml", 0, &doc, &err), 0);
                assert_int_equal(schema_check_yaml(schema, doc, NULL, &err), -ENOTSUP);
                assert_non_null(strstr(err, "the schema:"));
                free(err);
                yaml_doc_free(doc);
                json_decref(schema);
        }
}

/* The one escaping helper for texts written directly must give json_dumps()'s
 * bytes for every string: each byte 1..0x7f alone and amid others, UTF-8
 * of 2, 3 and 4 bytes (U+2028 too), and null for NULL. */
static void test_json_buf_append_string_is_json_dumps(void **state) {
        (void) state;
        char one[4];
        const char *fixed[] = { "", "plain", "a\"b\\c/d", "tab\there\nnew\r\b\f", "\x01\x1f\x7f",
                                "h\xc3\xa9llo \xe2\x80\xa8 \xf0\x9f\x98\x80 end", "\"\"", "\\", "x\x1f" };
        for (int c = 1; c < 0x80 + (int) ELEMENTSOF(fixed); c++) {
                const char *s = c < 0x80 ? one : fixed[c - 0x80];
                one[0] = 'a'; one[1] = (char) c; one[2] = 'z'; one[3] = 0;
                json_t *v = json_string(s);
                assert_non_null(v);
                char *want = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                Buf b;
                buf_init(&b, 1024);
                assert_int_equal(json_buf_append_string(&b, s), 0);
                assert_string_equal(b.data, want);
                buf_free(&b);
                free(want);
                json_decref(v);
        }
        Buf b;
        buf_init(&b, 1024);
        assert_int_equal(json_buf_append_string(&b, NULL), 0);
        assert_string_equal(b.data, "null");
        buf_free(&b);
}

/* json_text_loadable() answers what json_loads(JSON_DECODE_ANY |
 * JSON_ALLOW_NUL) does, and json_literal_decode() decodes what it decodes:
 * a table of texts at each rule's edge, then every text made by mutating
 * them (a byte changed, inserted or removed) with a fixed seed. */
static bool jansson_loads(const char *text) {
        json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        json_decref(v);
        return v != NULL;
}

static int dump_to_buf(const char *piece, size_t size, void *data) {
        return buf_append(data, piece, size) < 0 ? -1 : 0;
}

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

/* What a text jansson reads is printed as without its nodes: by
 * json_text_dump(), and, with every member "result" held (json_loads_held(),
 * PYSPRINTER_TEST_HELD_MIN=1 from main()), by json_dumps_held(): jansson's
 * own dump of the parsed value, byte for byte, also nested in another
 * object as a "result" member. */
static void check_dump_like_jansson(const char *text, json_t *v) {
        char *want = json_dumps(v, DUMP_FLAGS | JSON_ENCODE_ANY);
        assert_non_null(want);
        Buf b;
        buf_init(&b, 1 << 24);
        assert_int_equal(json_text_dump(text, DUMP_FLAGS, dump_to_buf, &b), 0);
        if (!streq(b.data ?: "", want))
                fail_msg("json_text_dump(\"%s\") = \"%s\", jansson dumps \"%s\"", text, b.data ?: "", want);
        buf_free(&b);
        char *wrapped = xasprintf("{\"a\":[1,{\"result\":%s}],\"result\": %s }", text, text);
        json_t *w = json_loads(wrapped, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL),
               *h = json_loads_held(wrapped, strlen(wrapped), "result");
        /* Wrapped, the deepest rows pass jansson's depth: neither reads. */
        assert_true(!w == !h);
        if (!w) {
                free(wrapped);
                free(want);
                return;
        }
        char *ww = json_dumps(w, DUMP_FLAGS), *hh = json_dumps_held(h, DUMP_FLAGS);
        if (!streq(ww, hh))
                fail_msg("json_loads_held(\"%s\") dumps \"%s\", jansson \"%s\"", wrapped, hh, ww);
        /* Reals respelled as they are written, as in the whole text. */
        char *short_want = json_shorten_reals(ww), *short_got = json_dumps_short(h);
        if (!streq(short_want, short_got))
                fail_msg("json_dumps_short(\"%s\") = \"%s\", not \"%s\"", wrapped, short_got, short_want);
        free(short_want);
        free(short_got);
        /* Held where it can be: an array or object result. */
        json_t *r = json_object_get(h, "result");
        bool marker = strstr(text, "\"$bytes\"") || strstr(text, "\"$pickle\"") || strstr(text, "\\u0024");
        assert_true(!!json_held_text(r) == ((json_is_array(v) || json_is_object(v)) && !marker));
        free(ww);
        free(hh);
        json_decref(w);
        json_decref(h);
        free(wrapped);
        free(want);
}

static void check_like_jansson(const char *text) {
        if (json_text_loadable(text) != jansson_loads(text))
                fail_msg("json_text_loadable(\"%s\") = %d, jansson says %d", text, json_text_loadable(text),
                         jansson_loads(text));
        json_t *all = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        /* A function URL's answer is looked at for "statusCode" this way. */
        static const char *const keys[] = { "statusCode", "a", "" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (json_text_names_member(text, keys[i]) != (json_object_get(all, keys[i]) != NULL))
                        fail_msg("json_text_names_member(\"%s\", \"%s\") = %d, jansson says otherwise", text, keys[i],
                                 json_text_names_member(text, keys[i]));
        if (all)
                check_dump_like_jansson(text, all);
        else
                assert_int_equal(json_text_dump(text, DUMP_FLAGS, dump_to_buf, NULL), -EINVAL);
        json_decref(all);
        if (text[0] != '"')
                return;
        const char *end;
        char *out = malloc(strlen(text) + 1);
        ssize_t n = json_literal_decode(text, out, &end);
        json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DISABLE_EOF_CHECK, NULL);
        if ((n >= 0) != (v != NULL))
                fail_msg("json_literal_decode(\"%s\") = %zd, jansson says %d", text, n, v != NULL);
        if (v) {
                assert_int_equal((size_t) n, json_string_length(v));
                assert_memory_equal(out, json_string_value(v), (size_t) n);
        }
        json_decref(v);
        free(out);
}

static void test_json_text_loadable_is_jansson(void **state) {
        (void) state;
        const char *table[] = {
                "",
                " ",
                "1",
                "{\"statusCode\":200}",
                " { \"b\" : [1, {\"statusCode\": 2}] , \"statusCode\" : null } ",
                "{\"a\":{\"statusCode\":201}}",
                "{\"status\\u0043ode\":1,\"\":0}",
                "[{\"statusCode\":1}]",
                "{\"statusCodes\":1,\"statusCod\":2,\"a\":\"statusCode\"}",
                " 1 ",
                "-",
                "-0",
                "01",
                "-01",
                "0.5",
                "0.",
                ".5",
                "1e5",
                "1E+5",
                "1e-5",
                "1e",
                "1e+",
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775808",
                "-9223372036854775809",
                "99999999999999999999999",
                "1e308",
                "1e309",
                "-1e309",
                "1e-400",
                "1.7976931348623157e308",
                "true",
                "false",
                "null",
                "nul",
                "nulls",
                "True",
                "true1",
                "1true",
                "[1true]",
                "[1,2]",
                "[1,]",
                "[,1]",
                "[]",
                "{}",
                "[ ]",
                "{ }",
                "[[]]",
                "{\"a\":1}",
                "{\"a\" : [1, {\"b\": null}]}",
                "{\"a\":1,}",
                "{a:1}",
                "{\"a\"}",
                "{\"a\":}",
                "{\"a\":1 \"b\":2}",
                "{\"a\":1}}",
                "[1]]",
                "[1",
                "{\"a\":1",
                "\"abc\"",
                "\"abc",
                "\"a\\\"b\"",
                "\"\\/\\b\\f\\n\\r\\t\\\\\"",
                "\"\\x\"",
                "\"\\u00e9\"",
                "\"\\u00E9\"",
                "\"\\u0000\"",
                "{\"\\u0000\":1}",
                "{\"a\\u0000\":1}",
                "{\"\\\\u0000\":1}",
                "{\"k\":\"\\u0000\"}",
                "\"\\ud83d\\ude00\"",
                "\"\\ud83d\"",
                "\"\\ude00\"",
                "\"\\ud83d\\u0041\"",
                "\"\\ud83dx\"",
                "\"\\u12\"",
                "\"\\u12g4\"",
                "\"tab\there\"",
                "\"new\nline\"",
                "\"\x1f\"",
                "\"\x7f\"",
                "\"h\xc3\xa9\"",
                "\"\xc3\"",
                "\"\xc0\x80\"",
                "\"\xed\xa0\x80\"",
                "\"\xf4\x90\x80\x80\"",
                "\"\xf0\x9f\x98\x80\"",
                "\"\x80\"",
                "\"\xe2\x80\"",
                "\xc3\xa9",
                "1 2",
                "[1] [2]",
                "\"a\" \"b\"",
                "\t\r\n[\t1\r,\n2 ]\n",
                "[\f1]",
                "-a",
                "--1",
                "+1",
                "0x10",
                "Infinity",
                "NaN",
                "[1.5e3, -0.0, 2E-2]",
                "{\"a\":{\"b\":{\"c\":[]}}}",
                "[0.1, 1e300, -0.0, 5e-324, 1.7976931348623157e308, 123456789.125, 1E2, -0, 0]",
                "{\"s\":\"\\u2028\\u001f\\u007f\\/\\\"\\ud83d\\ude00\\u0000\", \"k\\n\" : {\"\":[{}]}}",
                "[\"$bytes\", {\"$pickle\": 1}, \"\\u0024\"]",
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                check_like_jansson(table[i]);
        /* Nesting: jansson's limit counts the innermost value. */
        for (int d = JSON_TEXT_MAX_DEPTH - 2; d <= JSON_TEXT_MAX_DEPTH + 1; d++)
                for (int inner = 0; inner < 3; inner++) {
                        Buf b;
                        buf_init(&b, 1 << 20);
                        for (int k = 0; k < d; k++)
                                assert_int_equal(buf_appends(&b, k % 2 ? "{\"k\":" : "["), 0);
                        assert_int_equal(buf_appends(&b, inner == 0 ? "1" : inner == 1 ? "[]" : "{}"), 0);
                        for (int k = d - 1; k >= 0; k--)
                                assert_int_equal(buf_appends(&b, k % 2 ? "}" : "]"), 0);
                        check_like_jansson(b.data);
                        buf_free(&b);
                }
        /* Mutations of each row: a byte changed to one of the grammar's, or
         * removed, or doubled. */
        const char alphabet[] = "[]{}:,\"\\/u0123456789abefnrtlsd.-+eE \t\n\x01\x80\xc3\xa9\xed\xff";
        unsigned seed = 12345;
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                size_t len = strlen(table[i]);
                for (int m = 0; m < 400; m++) {
                        char t[256];
                        if (len + 2 > sizeof(t))
                                break;
                        seed = seed * 1103515245 + 12345;
                        size_t at = len ? (seed >> 8) % len : 0;
                        char c = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
                        int op = (int) ((seed >> 4) % 3);
                        memcpy(t, table[i], at);
                        size_t o = at;
                        if (op == 0) { /* changed */
                                t[o++] = c;
                                memcpy(t + o, table[i] + at + (len > at), len - at - (len > at));
                                o += len - at - (len > at);
                        } else if (op == 1) { /* inserted */
                                t[o++] = c;
                                memcpy(t + o, table[i] + at, len - at);
                                o += len - at;
                        } else { /* removed */
                                memcpy(t + o, table[i] + at + (len > at), len - at - (len > at));
                                o += len - at - (len > at);
                        }
                        t[o] = 0;
                        check_like_jansson(t);
                }
        }
}

/* The escaped length is counted before anything is written: a string
 * whose escaped form passes the cap is -ENOBUFS with the buffer as it was,
 * one that just fits is written whole; a JSON text held as a string (the
 * Lambda context in a queued request) is json_dumps()'s bytes. */
static void test_json_buf_append_string_cap(void **state) {
        (void) state;
        const char *ctx = "{\"function_name\":\"f\",\"aws_request_id\":\"r-1\",\"memory_limit_in_mb\":128,\"x\":\"a\\\\b\\n\"}";
        json_t *v = json_string(ctx);
        char *want = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        size_t n = strlen(want);
        Buf b;
        buf_init(&b, 3 + n - 1);
        assert_int_equal(buf_append(&b, "ab:", 3), 0);
        assert_int_equal(json_buf_append_string(&b, ctx), -ENOBUFS);
        assert_string_equal(b.data, "ab:");
        assert_int_equal(b.len, 3);
        b.max++;
        assert_int_equal(json_buf_append_string(&b, ctx), 0);
        assert_int_equal(b.len, 3 + n);
        assert_string_equal(b.data + 3, want);
        buf_free(&b);
        free(want);
        json_decref(v);
}

int main(void) {
        /* Every array or object held, however small (json_loads_held()). */
        setenv("PYSPRINTER_TEST_HELD_MIN", "1", 1);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scalar_table),
                cmocka_unit_test(test_scalar_direct),
                cmocka_unit_test(test_walker_positions),
                cmocka_unit_test(test_doc_errors),
                cmocka_unit_test(test_small_budget),
                cmocka_unit_test(test_duplicate_keys_table),
                cmocka_unit_test(test_duplicate_keys_many),
                cmocka_unit_test(test_sha256_vectors),
                cmocka_unit_test(test_sha256_file),
                cmocka_unit_test(test_json_parse_or_string),
                cmocka_unit_test(test_json_getters),
                cmocka_unit_test(test_seal_vector_and_tamper),
                cmocka_unit_test(test_seal_key_file),
                cmocka_unit_test(test_json_bytes_marker),
                cmocka_unit_test(test_base64),
                cmocka_unit_test(test_json_error_text),
                cmocka_unit_test(test_json_raw_kwarg_item),
                cmocka_unit_test(test_schema_table),
                cmocka_unit_test(test_schema_every_mistake_once),
                cmocka_unit_test(test_schema_unknown_keyword_is_the_schemas_mistake),
                cmocka_unit_test(test_json_buf_append_string_is_json_dumps),
                cmocka_unit_test(test_json_buf_append_string_cap),
                cmocka_unit_test(test_json_text_loadable_is_jansson),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
