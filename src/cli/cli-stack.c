/* `pysprinter deploy -f stack.yaml [--prune] [--dry-run] [--json]`
 * (docs/stack.md): a set of functions with their limits, env, secrets,
 * schedules and URLs, deployed in one transaction.
 *
 * The file is checked here against docs/stack.schema.json (compiled in by
 * tools/text-embed.py: the schema file is the one source of truth), so every
 * mistake is reported as "stack.yaml:LINE:COL: …" with exit 3 before
 * anything is sent. Then the function files (relative to the stack file's
 * directory) are read and the whole stack goes to the backend as one
 * request; the server checks each function as a deploy does and applies
 * everything or nothing. */
#include <jansson.h>
#include <libgen.h>

#include "cli-backend.h"
#include "shared.h"

extern const char cli_stack_schema[];

static const char stack_help[] = "Usage: pysprinter deploy -f STACK.yaml [--prune] [--dry-run] [--json]\n\n"
                                 "Deploy the functions a stack file names, with their limits, env, secrets,\n"
                                 "schedules and URLs, in one transaction: all or nothing (docs/stack.md).\n"
                                 "Prints one line per item: created|updated|unchanged|deleted KIND NAME.\n\n"
                                 "  -f, --file F   the stack file (YAML; function files are relative to it)\n"
                                 "  --prune        delete the functions (their URLs and schedules) the file no\n"
                                 "                 longer names, and function schedules it no longer lists\n"
                                 "                 (DAG schedules stay)\n"
                                 "  --dry-run      print the plan, change nothing\n"
                                 "  --json         print the plan as JSON\n";

/* The YAML node of key in mapping n, or NULL. */
static const YamlNode *node_get(YamlDoc *doc, const YamlNode *n, const char *key) {
        for (size_t i = 0; n && i < yaml_node_count(n); i++) {
                const char *k = yaml_node_scalar(yaml_node_key(doc, n, i));
                if (k && streq(k, key))
                        return yaml_node_value(doc, n, i);
        }
        return NULL;
}

/* A scalar's text as the request carries it: strings as they are, other
 * scalars (30, true) as JSON spells them. */
static char *scalar_text(const json_t *v) {
        return json_is_string(v) ? xstrdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

/* A limit value the schema has let through ("30s" or 30; "256M" or 256)
 * into ms or bytes; the parsers' own units apply to bare numbers. */
static json_t *limit_value(const json_t *v, bool duration) {
        _cleanup_free_ char *t = scalar_text(v);
        uint64_t x = 0;
        int k = duration ? parse_duration_ms(t, false, &x) : parse_size(t, &x);
        return k < 0 ? NULL : json_integer((json_int_t) x);
}

/* The file name a stack's function is deployed with, which its errors and
 * tracebacks show: its path inside the stack file's directory, "." and
 * empty components dropped (./fns//add.py: fns/add.py). Before, the base
 * name: add.py for fns/add.py, and a/handler.py and b/handler.py both read
 * handler.py. A path that leaves that directory (a "..", an absolute
 * path) sends its base name, as `deploy FILE` does: no directory of the
 * user's machine reaches the server (docs/cli.md). */
static char *stack_file_name(const char *file) {
        const char *base = path_base_name(file);
        if (file[0] == '/' || !*base)
                return xstrdup(base);
        Buf b;
        buf_init(&b, strlen(file) + 1);
        for (const char *p = file; *p;) {
                size_t n = strcspn(p, "/");
                if (n == 2 && strneq(p, "..", 2)) {
                        buf_free(&b);
                        return xstrdup(base);
                }
                if (n > 0 && !(n == 1 && p[0] == '.')) {
                        if (b.len)
                                (void) buf_append(&b, "/", 1);
                        (void) buf_append(&b, p, n);
                }
                p += n + (p[n] == '/');
        }
        char *name = xstrdup(b.len ? b.data : base);
        buf_free(&b);
        return name;
}

/* One function of the stack as a deploy request body; -errno and a
 * positioned message (exit 3) when its file cannot be read. */
static int function_body(YamlDoc *doc, const YamlNode *fnode, const char *name, json_t *fn, const char *dir,
                         json_t **ret, char **ret_error) {
        const char *file = json_get_string(fn, "file");
        _cleanup_free_ char *path = file[0] == '/' ? xstrdup(file) : path_join(dir, file), *source = NULL;
        size_t len = 0;
        int r = read_file(path, RUN_MAX_SOURCE_BYTES, &source, &len);
        if (r < 0)
                return yaml_node_error(doc, node_get(doc, fnode, "file"), ret_error, "cannot read %s: %s", file,
                                       r == -EFBIG ? "larger than the 4 MiB source limit" : strerror(-r));
        if (utf8_invalid_offset(source, len) < len)
                return yaml_node_error(doc, node_get(doc, fnode, "file"), ret_error, "%s is not valid UTF-8", file);
        _cleanup_free_ char *filename = stack_file_name(file);
        json_t *b = json_pack("{s:s, s:s%, s:s}", "name", name, "source", source, len, "filename", filename);
        json_t *v, *limits = json_object();
        if ((v = json_object_get(fn, "function")))
                json_object_set(b, "function", v);
        if ((v = json_object_get(fn, "description")))
                json_object_set(b, "description", v);
        if ((v = json_object_get(fn, "timeout")))
                json_object_set_new(limits, "timeout_ms", limit_value(v, true));
        if ((v = json_object_get(fn, "memory"))) {
                json_t *bytes = limit_value(v, false);
                /* The schema's minimum holds for a bare number of MiB; "8M"
                 * passed it, and the server's refusal named a field the
                 * file does not have, at no line (and only with a server). */
                if (json_integer_value(bytes) < (json_int_t) RUN_MIN_MEMORY_BYTES) {
                        _cleanup_free_ char *t = scalar_text(v);
                        json_decref(bytes);
                        json_decref(limits);
                        json_decref(b);
                        return yaml_node_error(doc, node_get(doc, fnode, "memory"), ret_error,
                                               "'%s' is below the minimum %lluM", t,
                                               (unsigned long long) (RUN_MIN_MEMORY_BYTES >> 20));
                }
                json_object_set_new(limits, "memory_bytes", bytes);
        }
        if ((v = json_object_get(fn, "max_procs")))
                json_object_set(limits, "max_procs", v);
        if ((v = json_object_get(fn, "max_output")))
                json_object_set_new(limits, "max_output_bytes", limit_value(v, false));
        if ((v = json_object_get(fn, "network")))
                json_object_set(limits, "network", v);
        if (json_object_size(limits))
                json_object_set(b, "limits", limits);
        json_decref(limits);
        if ((v = json_object_get(fn, "secrets")))
                json_object_set(b, "secrets", v);
        if ((v = json_object_get(fn, "requirements")))
                json_object_set(b, "requirements", v);
        if ((v = json_object_get(fn, "retries")))
                json_object_set(b, "retries", v);
        if (json_object_get(fn, "env")) {
                /* "Sent as text": the scalar as the file writes it, not its
                 * JSON number again (3.10 was "3.1000000000000001", 01234
                 * "1234", 0x1F "31"). */
                const YamlNode *enode = node_get(doc, fnode, "env");
                json_t *env = json_object();
                for (size_t i = 0; i < yaml_node_count(enode); i++)
                        json_object_set_new(env, yaml_node_scalar(yaml_node_key(doc, enode, i)),
                                            json_string(yaml_node_scalar(yaml_node_value(doc, enode, i)) ?: ""));
                json_object_set_new(b, "env", env);
        }
        /* A stack says whether there is a URL: absent means none. */
        v = json_object_get(fn, "url");
        json_object_set_new(b, "url", json_is_string(v) ? json_string("public") : json_boolean(json_is_true(v)));
        *ret = b;
        return 0;
}

/* places["function 'NAME'"] = "FILE:LINE:COL" of key: where the server's
 * refusals about it, which name it so first, point in the file. */
static void place_add(YamlDoc *doc, json_t *places, const char *kind, const YamlNode *key) {
        _cleanup_free_ char *who = xasprintf("%s '%s'", kind, yaml_node_scalar(key));
        json_object_set_new(
                places, who,
                json_sprintf("%s:%u:%u", yaml_doc_filename(doc), yaml_node_line(key), yaml_node_column(key)));
}

/* The request body of the whole stack, and the places of its functions
 * and schedules (place_add). Schedule names are the tenant's: one named
 * under two functions is a mistake of the file. */
static int stack_body(YamlDoc *doc, json_t *stack, const char *dir, json_t *places, json_t **ret, char **ret_error) {
        const YamlNode *fnodes = node_get(doc, yaml_doc_root(doc), "functions");
        json_t *functions = json_array(), *schedules = json_array();
        json_t *body = json_pack("{s:o, s:o}", "functions", functions, "schedules", schedules);
        _cleanup_strv_free_ char **names = NULL;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < yaml_node_count(fnodes); i++) {
                const char *name = yaml_node_scalar(yaml_node_key(doc, fnodes, i));
                const YamlNode *fnode = yaml_node_value(doc, fnodes, i);
                json_t *fn = json_object_get(json_object_get(stack, "functions"), name), *b = NULL;
                r = function_body(doc, fnode, name, fn, dir, &b, ret_error);
                if (r < 0)
                        break;
                place_add(doc, places, "function", yaml_node_key(doc, fnodes, i));
                json_array_append_new(functions, b);
                const YamlNode *snodes = node_get(doc, fnode, "schedules");
                for (size_t j = 0; j < yaml_node_count(snodes); j++) {
                        const YamlNode *key = yaml_node_key(doc, snodes, j);
                        const char *sname = yaml_node_scalar(key);
                        if (strv_contains(names, sname)) {
                                r = yaml_node_error(doc, key, ret_error,
                                                    "schedule '%s' is named twice (schedule names are the tenant's)",
                                                    sname);
                                break;
                        }
                        names = strv_append(names, sname);
                        place_add(doc, places, "schedule", key);
                        json_t *s = json_deep_copy(json_object_get(json_object_get(fn, "schedules"), sname));
                        json_object_set_new(s, "name", json_string(sname));
                        json_object_set_new(s, "function", json_string(name));
                        json_array_append_new(schedules, s);
                }
        }
        if (r < 0) {
                json_decref(body);
                return r;
        }
        *ret = body;
        return 0;
}

/* Reads and checks the stack file: 0, its request body and the places
 * of its items (stack_body), or the exit code after saying why (every
 * mistake, one per line). */
static int stack_load(const char *file, json_t *places, json_t **ret) {
        _cleanup_free_ char *text = NULL, *err = NULL, *copy = xstrdup(file);
        _cleanup_(yaml_doc_freep) YamlDoc *doc = NULL;
        size_t len = 0;
        int r = read_file(file, RUN_MAX_SOURCE_BYTES, &text, &len);
        if (r < 0) {
                cli_error("cannot read %s: %s", file, strerror(-r));
                return r == -EFBIG ? EXIT_VALIDATION : EXIT_USAGE;
        }
        json_error_t jerr;
        json_t *schema = json_loads(cli_stack_schema, 0, &jerr), *stack = NULL;
        if (!schema) {
                cli_error("the built-in stack schema does not parse: %s", jerr.text);
                return EXIT_INTERNAL;
        }
        r = yaml_doc_load(text, len, file, 0, &doc, &err);
        if (r >= 0)
                r = schema_check_yaml(schema, doc, NULL, &err);
        json_decref(schema);
        if (r >= 0)
                r = yaml_doc_json(doc, NULL, &stack, &err);
        if (r >= 0)
                r = stack_body(doc, stack, dirname(copy), places, ret, &err);
        json_decref(stack);
        if (r < 0) {
                /* One "pysprinter: FILE:LINE:COL: …" line per mistake. */
                char *line = err ?: "invalid stack", *nl;
                for (; (nl = strchr(line, '\n')); line = nl + 1) {
                        *nl = 0;
                        cli_error("%s", line);
                }
                cli_error("%s", line);
                return r == -ENOTSUP ? EXIT_INTERNAL : EXIT_VALIDATION;
        }
        return 0;
}

/* The server's refusal at the place in the file of what it names first
 * ("function 'add': …", "schedule 'x': …"); NULL when it names none of
 * the stack's. */
static char *error_at_place(json_t *places, const char *error) {
        const char *q = error ? strstr(error, "': ") : NULL;
        if (!q)
                return NULL;
        _cleanup_free_ char *who = xstrndup(error, (size_t) (q + 1 - error));
        const char *at = json_string_value(json_object_get(places, who));
        return at ? xasprintf("%s: %s", at, error) : NULL;
}

int cli_deploy_stack(int argc, char **argv) {
        const char *file = NULL;
        bool prune = false, dry_run = false, json = cli_globals.json;
        for (int i = 0; i < argc; i++) {
                /* A -f last on the line is a missing value (it was
                 * "unexpected argument '-f'", the option the user gave). */
                if (streq(argv[i], "-f") || streq(argv[i], "--file"))
                        file = i + 1 < argc ? argv[++i] : "";
                else if (startswith(argv[i], "--file="))
                        file = argv[i] + 7;
                else if (streq(argv[i], "--prune"))
                        prune = true;
                else if (streq(argv[i], "--dry-run"))
                        dry_run = true;
                else if (streq(argv[i], "--json"))
                        json = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(stack_help, stdout);
                        return 0;
                } else {
                        cli_error("deploy -f: unexpected argument '%s' (a stack file says everything else)", argv[i]);
                        fputs("Try 'pysprinter deploy --help'.\n", stderr);
                        return EXIT_USAGE;
                }
        }
        if (!file || !*file) {
                cli_error("deploy -f needs a stack file: deploy -f STACK.yaml");
                fputs("Try 'pysprinter deploy --help'.\n", stderr);
                return EXIT_USAGE;
        }
        json_t *req = NULL, *ans = NULL, *places = json_object();
        int code = stack_load(file, places, &req);
        if (code) {
                json_decref(places);
                return code;
        }
        json_object_set_new(req, "prune", json_boolean(prune));
        json_object_set_new(req, "dry_run", json_boolean(dry_run));
        Backend *b = NULL;
        code = backend_open_listing(false, &b); /* embedded: "needs a server" */
        if (code) {
                json_decref(req);
                json_decref(places);
                return code;
        }
        int r = b->ops->stack(b, req, &ans);
        if (r >= 0)
                renderer_answer_warnings(NULL, ans);
        else {
                /* cfn-lint's habit: a refusal about a function or a
                 * schedule is said where the file names it. */
                char *placed = error_at_place(places, b->error);
                if (placed) {
                        free(b->error);
                        b->error = placed;
                }
        }
        if (r == -EBADMSG || r == -ENOPKG) {
                /* A function did not validate: its message as deploy prints it. */
                cli_error("%s", b->error ?: "invalid");
                code = cli_exit_code(r);
        } else if (r < 0)
                code = backend_fail(b, r);
        else if (json)
                render_json(ans);
        else {
                size_t i;
                json_t *c;
                json_array_foreach(json_object_get(ans, "changes"), i, c) {
                        _cleanup_free_ char *url = cli_endpoint_text(b, json_object_get(c, "url"));
                        printf("%s %s %s%s%s\n", json_get_string(c, "action") ?: "?", json_get_string(c, "kind") ?: "?",
                               json_get_string(c, "name") ?: "?", url ? ": " : "", url ?: "");
                }
        }
        json_decref(req);
        json_decref(ans);
        json_decref(places);
        backend_free(b);
        return code;
}
