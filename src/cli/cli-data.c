/* `data put|ls|get|rm`: the named, versioned datasets runs mount at
 * /data/NAME (src/data/). */
#include <jansson.h>
#include <time.h>

#include "cli-backend.h"
#include "data.h"

static const char data_help[] =
        "Usage: pysprinter data put NAME PATH|URL   store a file, a directory or a URL as NAME\n"
        "       pysprinter data ls [NAME] [--json]  list datasets, or the versions of NAME\n"
        "       pysprinter data get NAME[@VERSION] [-o PATH]\n"
        "                                           write a single-file dataset to stdout (or PATH),\n"
        "                                           copy a directory dataset to PATH, or print its\n"
        "                                           read-only location without -o\n"
        "       pysprinter data rm NAME[@VERSION]   remove a dataset or one version\n"
        "\n"
        "Content is addressed by its sha256: putting the same content again gives the same\n"
        "version. A run sees a dataset read-only at /data/NAME with `run --data NAME` (or\n"
        "`data:` in a pipeline); pysprinter.data_path(\"NAME\") returns that path.\n"
        "URL datasets are revalidated (ETag/Last-Modified) when used; if the server cannot\n"
        "be reached the cached copy is used and a warning says so.\n"
        "Caps: PYSPRINTER_DATA_MAX_BYTES per version (default 10 GiB),\n"
        "PYSPRINTER_DATA_TENANT_MAX_BYTES in all (default 50 GiB); PYSPRINTER_DATA_TTL\n"
        "seconds between URL revalidations (default 0: on every use).\n";

int cli_data_open(Engine *e, DataCatalog **ret) {
        DataConfig cfg = {};
        _cleanup_free_ char *root = path_join(engine_data_dir(e), "data");
        cfg.root = root;
        data_config_from_env(&cfg, engine_data_dir(e));
        _cleanup_free_ char *err = NULL;
        int r = data_catalog_new(engine_store(e), &cfg, ret, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err ?: strerror(-r));
                return EXIT_INTERNAL;
        }
        return 0;
}

#define human_size format_size

static void warn_out(const char *w) {
        if (w && *w)
                fprintf(stderr, "pysprinter: warning: %s\n", w);
}

static int data_put_verb(DataCatalog *c, int argc, char **argv, bool json) {
        if (argc != 2) {
                fprintf(stderr, "pysprinter: usage: data put NAME PATH|URL\n");
                return EXIT_USAGE;
        }
        DataInfo *i = NULL;
        _cleanup_free_ char *err = NULL;
        int r = data_put(c, NULL, argv[0], argv[1], &i, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: data put: %s\n", err ?: strerror(-r));
                return r == -EINVAL ? EXIT_USAGE : r == -ENOENT ? EXIT_USAGE : EXIT_INTERNAL;
        }
        char sz[32];
        human_size(i->size, sz);
        if (json) {
                json_t *o = json_pack("{s:s, s:i, s:s, s:I, s:I, s:b, s:s, s:s}", "name", i->name, "version", i->version,
                                      "hash", i->hash, "size", (json_int_t) i->size, "files", (json_int_t) i->files,
                                      "new", i->is_new, "kind", i->kind, "source", i->source);
                _cleanup_free_ char *t = json_dumps(o, JSON_COMPACT);
                json_decref(o);
                puts(t);
        } else
                printf("%s: version %d%s (%s, %llu file%s, sha256 %.12s)\n", i->name, i->version,
                       i->is_new ? "" : " (unchanged content)", sz, (unsigned long long) i->files,
                       i->files == 1 ? "" : "s", i->hash);
        data_info_free(i);
        return 0;
}

static int data_ls_verb(DataCatalog *c, int argc, char **argv, bool json) {
        char tbuf[32], sz[32];
        if (argc == 1) {
                DatasetVersion *v = NULL;
                size_t n = 0;
                int r = data_versions(c, NULL, argv[0], &v, &n);
                if (r < 0 || n == 0) {
                        fprintf(stderr, "pysprinter: no dataset named '%s'\n", argv[0]);
                        dataset_version_list_free(v, n);
                        return EXIT_USAGE;
                }
                DatasetRecord **ds = NULL;
                size_t nd = 0;
                int current = 0;
                if (data_list(c, NULL, &ds, &nd) >= 0)
                        for (size_t k = 0; k < nd; k++)
                                if (streq(ds[k]->name, argv[0]))
                                        current = ds[k]->current;
                dataset_record_list_free(ds, nd);
                json_t *arr = json_array();
                if (!json)
                        printf("%-8s %-14s %8s %7s  %s\n", "VERSION", "SHA256", "SIZE", "FILES", "CREATED");
                for (size_t k = 0; k < n; k++) {
                        if (json)
                                json_array_append_new(arr, json_pack("{s:i, s:s, s:I, s:I, s:s, s:b}", "version",
                                                                     v[k].version, "hash", v[k].hash, "size",
                                                                     (json_int_t) v[k].size, "files", (json_int_t) v[k].files,
                                                                     "created", format_timestamp(v[k].created, tbuf),
                                                                     "current", v[k].version == current));
                        else {
                                human_size(v[k].size, sz);
                                printf("%-8d %-14.12s %8s %7llu  %s%s\n", v[k].version, v[k].hash, sz,
                                       (unsigned long long) v[k].files, format_timestamp(v[k].created, tbuf),
                                       v[k].version == current ? "  (current)" : "");
                        }
                }
                if (json) {
                        _cleanup_free_ char *t = json_dumps(arr, JSON_COMPACT);
                        puts(t);
                }
                json_decref(arr);
                dataset_version_list_free(v, n);
                return 0;
        }
        if (argc > 1) {
                fprintf(stderr, "pysprinter: usage: data ls [NAME] [--json]\n");
                return EXIT_USAGE;
        }
        DatasetRecord **ds = NULL;
        size_t n = 0;
        int r = data_list(c, NULL, &ds, &n);
        if (r < 0) {
                fprintf(stderr, "pysprinter: cannot read the data catalog: %s\n", strerror(-r));
                return EXIT_INTERNAL;
        }
        json_t *arr = json_array();
        if (!json && n)
                printf("%-20s %7s %8s %8s %7s  %-5s %s\n", "NAME", "VERSION", "VERSIONS", "SIZE", "FILES", "KIND", "SOURCE");
        for (size_t k = 0; k < n; k++) {
                DatasetRecord *d = ds[k];
                if (json)
                        json_array_append_new(arr, json_pack("{s:s, s:i, s:i, s:s?, s:I, s:I, s:s, s:s, s:s?, s:s?}",
                                                             "name", d->name, "version", d->current, "versions",
                                                             d->n_versions, "hash", d->hash, "size", (json_int_t) d->size,
                                                             "files", (json_int_t) d->files, "kind", d->kind, "source",
                                                             d->source, "etag", d->etag, "last_modified", d->last_modified));
                else {
                        human_size(d->size, sz);
                        printf("%-20s %7d %8d %8s %7llu  %-5s %s\n", d->name, d->current, d->n_versions, sz,
                               (unsigned long long) d->files, d->kind, d->source);
                }
        }
        if (json) {
                _cleanup_free_ char *t = json_dumps(arr, JSON_COMPACT);
                puts(t);
        } else if (n == 0)
                fprintf(stderr, "no datasets (add one with: pysprinter data put NAME PATH|URL)\n");
        json_decref(arr);
        dataset_record_list_free(ds, n);
        return 0;
}

static int data_get_verb(DataCatalog *c, int argc, char **argv) {
        const char *ref = NULL, *out = NULL;
        for (int i = 0; i < argc; i++) {
                if ((streq(argv[i], "-o") || streq(argv[i], "--output")) && i + 1 < argc)
                        out = argv[++i];
                else if (!ref && argv[i][0] != '-')
                        ref = argv[i];
                else {
                        fprintf(stderr, "pysprinter: usage: data get NAME[@VERSION] [-o PATH]\n");
                        return EXIT_USAGE;
                }
        }
        if (!ref) {
                fprintf(stderr, "pysprinter: usage: data get NAME[@VERSION] [-o PATH]\n");
                return EXIT_USAGE;
        }
        _cleanup_free_ char *err = NULL, *warn = NULL;
        int r;
        if (out) {
                r = data_export(c, NULL, ref, out, &warn, &err);
                warn_out(warn);
                if (r < 0) {
                        fprintf(stderr, "pysprinter: data get: %s\n", err ?: strerror(-r));
                        return r == -ENOENT || r == -EINVAL ? EXIT_USAGE : EXIT_INTERNAL;
                }
                return 0;
        }
        DataInfo *i = NULL;
        r = data_use(c, NULL, ref, &i, &warn, &err);
        warn_out(warn);
        if (r < 0) {
                fprintf(stderr, "pysprinter: data get: %s\n", err ?: strerror(-r));
                return r == -ENOENT || r == -EINVAL ? EXIT_USAGE : EXIT_INTERNAL;
        }
        if (i->file) {
                _cleanup_free_ char *content = NULL;
                size_t len = 0;
                r = read_file(i->file, SIZE_MAX / 2, &content, &len);
                if (r >= 0)
                        fwrite(content, 1, len, stdout);
                else
                        fprintf(stderr, "pysprinter: cannot read %s: %s\n", i->file, strerror(-r));
        } else
                printf("%s\n", i->path);
        data_info_free(i);
        return r < 0 ? EXIT_INTERNAL : 0;
}

int verb_data(int argc, char **argv) {
        /* A global --json (taken off the line by cli_take_globals, which
         * left its slot free) is this verb's --json too. */
        if (cli_globals.json)
                argv[argc++] = (char *) "--json";
        /* With a server (--server anywhere, else the environment or the
         * config file): the same verbs over HTTP (cli-remote-dag.c). */
        _cleanup_free_ char *server = cli_server();
        if (argc < 1 || streq(argv[0], "--help") || streq(argv[0], "-h") || streq(argv[0], "help")) {
                fputs(data_help, argc < 1 ? stderr : stdout);
                return argc < 1 ? EXIT_USAGE : 0;
        }
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(data_help, stdout);
                        return 0;
                }
        if (server)
                return cli_remote_data(server, argc, argv);
        const char *sub = argv[0];
        bool json = false;
        char **rest = xcalloc((size_t) argc + 1, sizeof(char *));
        int n = 0;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(data_help, stdout);
                        free(rest);
                        return 0;
                } else
                        rest[n++] = argv[i];
        }
        Engine *e = NULL;
        int r = cli_engine_open(NULL, &e);
        if (r) {
                free(rest);
                return r;
        }
        DataCatalog *c = NULL;
        r = cli_data_open(e, &c);
        if (r == 0) {
                if (streq(sub, "put"))
                        r = data_put_verb(c, n, rest, json);
                else if (streq(sub, "ls") || streq(sub, "list"))
                        r = data_ls_verb(c, n, rest, json);
                else if (streq(sub, "get"))
                        r = data_get_verb(c, n, rest);
                else if (streq(sub, "rm") || streq(sub, "remove")) {
                        if (n != 1) {
                                fprintf(stderr, "pysprinter: usage: data rm NAME[@VERSION]\n");
                                r = EXIT_USAGE;
                        } else {
                                _cleanup_free_ char *err = NULL;
                                int k = data_remove(c, NULL, rest[0], &err);
                                if (k < 0) {
                                        fprintf(stderr, "pysprinter: data rm: %s\n", err ?: strerror(-k));
                                        r = k == -ENOENT || k == -EINVAL ? EXIT_USAGE : EXIT_INTERNAL;
                                } else
                                        printf("removed %s\n", rest[0]);
                        }
                } else {
                        fprintf(stderr, "pysprinter: data: unknown command '%s' (put, ls, get, rm)\n", sub);
                        r = EXIT_USAGE;
                }
        }
        data_catalog_free(c);
        engine_free(e);
        free(rest);
        return r;
}
