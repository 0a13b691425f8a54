/* `data put|ls|get|rm`: the named, versioned datasets runs mount at
 * /data/NAME, written once against a Backend (both answer with the API's
 * dataset objects, docs/api.md "Datasets"). */
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared.h"
#include "cli-backend.h"

static const char data_help[] =
        "Usage: pysprinter data put NAME PATH|URL [--as FILENAME]\n"
        "                                           store a file, a directory or a URL as NAME\n"
        "       pysprinter data ls [NAME] [--json|-q]\n"
        "                                           list datasets, or the versions of NAME\n"
        "       pysprinter data get NAME[@VERSION] [-o PATH]\n"
        "                                           write a single-file dataset to stdout (or PATH),\n"
        "                                           copy a directory dataset to PATH, or print its\n"
        "                                           read-only location without -o (embedded only)\n"
        "       pysprinter data rm NAME[@VERSION]   remove a dataset or one version\n"
        "\n"
        "Content is addressed by its sha256: putting the same content again gives the same\n"
        "version. A single file is stored under its own name, or --as FILENAME; putting a\n"
        "new version keeps the name the dataset's file had unless --as says otherwise, so\n"
        "a run reading /data/NAME/words.txt keeps working.\n"
        "A run sees a dataset read-only at /data/NAME with `run --data NAME` (or `data:`\n"
        "in a pipeline). pysprinter.data_path(\"NAME\") returns the file's path for a\n"
        "single-file dataset (/data/NAME/FILENAME), the directory for a directory dataset.\n"
        "URL datasets are revalidated (ETag/Last-Modified) when used; if the server cannot\n"
        "be reached the cached copy is used and a warning says so.\n"
        "Caps: PYSPRINTER_DATA_MAX_BYTES per version (default 10 GiB),\n"
        "PYSPRINTER_DATA_TENANT_MAX_BYTES in all (default 50 GiB); PYSPRINTER_DATA_TTL\n"
        "seconds between URL revalidations (default 0: on every use).\n"
        "With --server a directory travels as a tar stream both ways, and an upload's\n"
        "cap is the daemon's data.max_bytes, and what a tenant keeps in all its\n"
        "disk.max_stored_bytes (docs/operations.md \"Storage per tenant\").\n";

static long long jint(json_t *o, const char *k) {
        return (long long) json_integer_value(json_object_get(o, k));
}

static int data_usage(const char *usage) {
        cli_error("usage: %s", usage);
        return EXIT_USAGE;
}

/* The file name a new version of a single-file dataset is stored under:
 * --as, else the one the dataset's file has now, else the source's. */
static const char *put_file_name(Backend *b, const char *name, const char *source, const char *as, char **keep) {
        if (as || data_source_is_url(source))
                return as;
        json_t *info = NULL;
        if (b->ops->data_info(b, name, &info) >= 0 && json_get_string(info, "filename"))
                *keep = xstrdup(json_get_string(info, "filename"));
        json_decref(info);
        return *keep;
}

static int data_put_verb(Backend *b, int argc, char **argv, bool json) {
        const char *as = NULL, *pos[2] = {};
        int n = 0;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--as") && i + 1 < argc)
                        as = argv[++i];
                else if (startswith(argv[i], "--as="))
                        as = argv[i] + 5;
                else if (n < 2) /* "-x" too: data_put() says why it is no name */
                        pos[n++] = argv[i];
                else
                        n = 3;
        }
        if (n != 2)
                return data_usage("data put NAME PATH|URL [--as FILENAME]");
        _cleanup_free_ char *bad_as = as ? data_file_name_error(as) : NULL;
        if (bad_as) {
                cli_error("--as needs a plain file name: %s", bad_as);
                return EXIT_USAGE;
        }
        /* Said here for both backends: through a daemon "" would be
         * "cannot read : No such file or directory". */
        _cleanup_free_ char *no_source = data_source_error(pos[1]);
        if (no_source) {
                cli_error("data put: %s", no_source);
                return EXIT_USAGE;
        }
        _cleanup_free_ char *keep = NULL;
        const char *filename = put_file_name(b, pos[0], pos[1], as, &keep);
        json_t *i = NULL;
        int r = b->ops->data_put(b, pos[0], pos[1], filename, &i);
        if (r < 0)
                return backend_fail(b, r);
        /* After the put: above an error it would announce a version that
         * was never stored. */
        if (keep && !streq(keep, path_base_name(pos[1])) && !cli_globals.quiet)
                cli_warning("keeping the file name '%s' of %s (--as FILENAME to change it)", keep, pos[0]);
        if (json)
                render_json(i);
        else {
                char sz[32];
                format_size((uint64_t) jint(i, "size"), sz);
                printf("%s: version %lld%s (%s, %lld file%s, sha256 %.12s)\n", json_get_string(i, "name") ?: pos[0],
                       jint(i, "version"), json_is_true(json_object_get(i, "new_version")) ? "" : " (unchanged content)",
                       sz, jint(i, "files"), jint(i, "files") == 1 ? "" : "s", json_get_string(i, "hash") ?: "");
        }
        json_decref(i);
        return 0;
}

/* The versions of one dataset. */
static int data_versions_verb(Backend *b, const char *name, bool json) {
        json_t *info = NULL, *v, *arr = json_array();
        int r = b->ops->data_info(b, name, &info);
        if (r < 0)
                return backend_fail(b, r);
        if (json_get_string(info, "warning"))
                cli_warning("%s", json_get_string(info, "warning"));
        long long current = jint(info, "current_version");
        size_t k;
        /* -q: each version as `data get` names it, NAME@V. */
        bool quiet = !json && cli_globals.quiet;
        if (!json && !quiet)
                printf("%-8s %-14s %10s %7s  %s\n", "VERSION", "SHA256", "SIZE", "FILES", "CREATED");
        json_array_foreach(json_object_get(info, "versions"), k, v) {
                bool cur = jint(v, "version") == current;
                if (quiet)
                        printf("%s@%lld\n", name, jint(v, "version"));
                else if (json) {
                        json_t *o = json_deep_copy(v);
                        json_object_set_new(o, "current", json_boolean(cur));
                        json_array_append_new(arr, o);
                } else {
                        char sz[32], created[32];
                        format_size((uint64_t) jint(v, "size"), sz);
                        format_local_time(json_get_string(v, "created_at"), created);
                        printf("%-8lld %-14.12s %10s %7lld  %s%s\n", jint(v, "version"),
                               json_get_string(v, "hash") ?: "", sz, jint(v, "files"), created,
                               cur ? "  (current)" : "");
                }
        }
        if (json)
                render_json(arr);
        json_decref(arr);
        json_decref(info);
        return 0;
}

static int data_ls_verb(Backend *b, int argc, char **argv, bool json) {
        if (argc > 1)
                return data_usage("data ls [NAME] [--json|-q]");
        if (argc == 1)
                return data_versions_verb(b, argv[0], json);
        json_t *list = NULL, *v;
        int r = b->ops->data_list(b, &list);
        if (r < 0)
                return backend_fail(b, r);
        size_t k;
        if (render_list_start(list, json, "name", "no datasets (add one with: pysprinter data put NAME PATH|URL)")) {
                printf("%-20s %7s %8s %10s %7s  %-5s %s\n", "NAME", "VERSION", "VERSIONS", "SIZE", "FILES", "KIND",
                       "SOURCE");
                json_array_foreach(list, k, v) {
                        char sz[32];
                        format_size((uint64_t) jint(v, "size"), sz);
                        printf("%-20s %7lld %8lld %10s %7lld  %-5s %s\n", json_get_string(v, "name") ?: "?",
                               jint(v, "version"), jint(v, "versions"), sz, jint(v, "files"),
                               json_get_string(v, "kind") ?: "file", json_get_string(v, "source") ?: "-");
                }
        }
        json_decref(list);
        return 0;
}

static int data_get_verb(Backend *b, int argc, char **argv) {
        const char *ref = NULL, *out = NULL;
        for (int i = 0; i < argc; i++) {
                if ((streq(argv[i], "-o") || streq(argv[i], "--output")) && i + 1 < argc)
                        out = argv[++i];
                else if (!ref && argv[i][0] != '-')
                        ref = argv[i];
                else
                        return data_usage("data get NAME[@VERSION] [-o PATH]");
        }
        if (!ref)
                return data_usage("data get NAME[@VERSION] [-o PATH]");
        /* "-" is stdout, as for curl and tar (and `map`'s stdin): it
         * wrote a file named "-". */
        if (out && streq(out, "-"))
                out = NULL;
        /* A device, a FIFO or a socket (-o /dev/null, /dev/stderr, a named
         * pipe) is written into, as `curl -o` and `cp` write into one: both
         * backends renamed a temporary file over it, which replaced the
         * FIFO with a file, and as root replaced /dev/null itself with a
         * regular file holding the dataset (every later write to
         * /dev/null on the machine went there). Its bytes go to it as they
         * go to stdout. */
        struct stat st;
        bool special = out && stat(out, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
        if (special) {
                int fd = open(out, O_WRONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0 || fflush(stdout) != 0 || dup2(fd, STDOUT_FILENO) < 0) {
                        cli_error("data get: cannot write %s: %s", out, strerror(errno));
                        if (fd >= 0)
                                close(fd);
                        return EXIT_USAGE;
                }
                close(fd);
        }
        _cleanup_free_ char *dir = NULL;
        int r = b->ops->data_get(b, ref, special ? NULL : out, &dir);
        if (r < 0)
                return backend_fail(b, r);
        if (special && dir) {
                /* Embedded, a directory's answer is its read-only path:
                 * nothing to write into a device, as with a server. */
                cli_error("data get: %s is a directory dataset: copy it out with -o DIR", ref);
                return EXIT_USAGE;
        }
        if (dir)
                printf("%s\n", dir);
        return 0;
}

int verb_data(int argc, char **argv) {
        int code = cli_subverb_help(argc, argv, data_help);
        if (code >= 0)
                return code;
        const char *sub = argv[0];
        bool json;
        int n = cli_take_json_flag(argc, argv, &json);
        char **rest = argv + 1;
        bool put = streq(sub, "put"), ls = streq(sub, "ls") || streq(sub, "list"), get = streq(sub, "get"),
             rm = streq(sub, "rm") || streq(sub, "remove");
        if (!put && !ls && !get && !rm) {
                cli_error("data: unknown command '%s' (put, ls, get, rm)", sub);
                return EXIT_USAGE;
        }
        if (rm && n != 1)
                return data_usage("data rm NAME[@VERSION]");
        Backend *b = NULL;
        code = put ? backend_open(NULL, &b) : backend_open_listing(true, &b);
        if (code)
                return code;
        if (put)
                code = data_put_verb(b, n, rest, json);
        else if (ls)
                code = data_ls_verb(b, n, rest, json);
        else if (get)
                code = data_get_verb(b, n, rest);
        else {
                int r = b->ops->data_rm(b, rest[0]);
                if (r < 0)
                        code = backend_fail(b, r);
                else
                        printf("removed %s\n", rest[0]);
        }
        backend_free(b);
        return code;
}
