/* What every part of the CLI shares, below the verbs and the backends: the
 * global options, the user's config file, the exit-code table, Ctrl-C and
 * a backend's error message. Nothing here calls a verb or a backend. */
#include <signal.h>

#include "cli-backend.h"

CliGlobals cli_globals;
volatile sig_atomic_t cli_interrupted;
_Thread_local bool cli_interrupt_handled;

/* ---- configuration ---- */

/* "key = value" (or "key: value") lines of ~/.config/pysprinter/config;
 * '#' starts a comment. */
char *cli_config_value(const char *key) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        size_t len;

        if (xdg && *xdg)
                path = path_join(xdg, "pysprinter", "config");
        else if (home && *home)
                path = path_join(home, ".config", "pysprinter", "config");
        else
                return NULL;
        if (read_file(path, 64 * 1024, &text, &len) < 0)
                return NULL;
        for (char *line = text; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                char *l = strstrip(line);
                size_t k = strlen(key);
                if (*l != '#' && strneq(l, key, k)) {
                        char *v = strstrip(l + k);
                        if (*v == '=' || *v == ':')
                                return xstrdup(strstrip(v + 1));
                }
                line = nl ? nl + 1 : NULL;
        }
        return NULL;
}

char *cli_server(void) {
        /* The first level that is set decides, an empty value too: `--server
         * ''` is how to act on this machine's home when the environment or
         * the config names a server. */
        const char *env = getenv("PYSPRINTER_SERVER");
        const char *set = cli_globals.server ?: env;
        if (set)
                return *set ? xstrdup(set) : NULL;
        char *v = cli_config_value("server");
        if (v && !*v) {
                free(v);
                return NULL;
        }
        return v;
}


/* ---- errors and exit codes ---- */

void backend_set_error(Backend *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *m = NULL;
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        free(b->error);
        b->error = m;
}

int cli_exit_code(int r) {
        switch (r) {
        case 0:
                return 0;
        case -EINTR:
        case -ECANCELED:
                return EXIT_INTERRUPTED;
        case -ENOENT:
        case -EINVAL:
        case -EEXIST:
        case -EBUSY:
        case -EFBIG:
        case -EOPNOTSUPP:
        case -ENXIO: /* no such endpoint: a server URL with a wrong path */
                return EXIT_USAGE;
        case -EBADMSG:
                return EXIT_VALIDATION;
        case -ENOPKG:
                return EXIT_DEPENDENCY;
        case -EACCES:
        case -EPERM:
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -EAGAIN:
        case -EIO:
        case -EPROTO:
        case -ETIMEDOUT:
                return EXIT_SERVER;
        default:
                return EXIT_INTERNAL;
        }
}

int backend_fail(Backend *b, int r) {
        if (r == -EINTR)
                cli_error("interrupted");
        else
                cli_error("%s", b && b->error ? b->error : strerror(-r));
        return cli_exit_code(r);
}

/* A hang-up is the terminal gone (closed, an ssh session dropped): the
 * caller can no longer see the run nor stop it, so it is cancelled as
 * SIGTERM cancels it — what Modal's or Ray's client does when its terminal
 * goes away — rather than left to end the CLI and its run `lost`. */
const int cli_interrupt_signals[CLI_INTERRUPT_SIGNALS] = { SIGINT, SIGTERM, SIGHUP };

char *cli_endpoint_text(const Backend *b, const json_t *url) {
        assert(b);
        if (!json_is_object(url))
                return NULL;
        /* With CORS settings, the origins that may read it (docs/endpoints.md "CORS"). */
        Buf cors;
        buf_init(&cors, SIZE_MAX);
        json_t *origins = json_object_get(json_object_get(url, "cors"), "AllowOrigins");
        size_t i;
        json_t *o;
        if (json_object_get(url, "cors"))
                (void) buf_printf(&cors, ", CORS for %s", json_array_size(origins) ? "" : "no origin");
        json_array_foreach(origins, i, o)
                (void) buf_printf(&cors, "%s%s", i ? " " : "", json_string_value(o) ?: "?");
        _cleanup_free_ char *c = buf_steal(&cors);
        return xasprintf("%s%s (%s%s)", b->remote ? b->http.base : "",
                         json_string_value(json_object_get(url, "path")) ?: "?",
                         json_is_true(json_object_get(url, "public")) ? "public" : "bearer token", c ?: "");
}

void cli_interrupt_catch(void (*handler)(int), struct sigaction *ret_old) {
        assert(handler);
        struct sigaction sa = { .sa_handler = handler };
        for (size_t i = 0; i < CLI_INTERRUPT_SIGNALS; i++) {
                struct sigaction old;
                if (sigaction(cli_interrupt_signals[i], NULL, &old) < 0)
                        old = (struct sigaction){ .sa_handler = SIG_DFL };
                if (ret_old)
                        ret_old[i] = old;
                /* A hang-up the caller ignored (nohup, `trap '' HUP`)
                 * stays ignored: it asked for the run to outlive its
                 * terminal. Not SIGINT nor SIGTERM: a non-interactive
                 * shell ignores SIGINT in every `cmd &` it starts (a CI
                 * script's, a harness's), where `kill -INT` or Ctrl-C
                 * must still cancel the run as it always did. */
                if (old.sa_handler != SIG_IGN || cli_interrupt_signals[i] != SIGHUP)
                        (void) sigaction(cli_interrupt_signals[i], &sa, NULL);
        }
}

void cli_interrupt_restore(const struct sigaction *old) {
        assert(old);
        for (size_t i = 0; i < CLI_INTERRUPT_SIGNALS; i++)
                (void) sigaction(cli_interrupt_signals[i], &old[i], NULL);
}

static void on_interrupt(int sig) {
        cli_interrupted = 1;
}

void cli_catch_interrupt(void) {
        cli_interrupt_catch(on_interrupt, NULL);
}

int cli_take_json_flag(int argc, char **argv, bool *ret_json) {
        bool json = cli_globals.json;
        int n = 0;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else
                        argv[1 + n++] = argv[i];
        }
        *ret_json = json;
        return n;
}

int cli_take_status(int *argc, char **argv, const char *verb, const char *help_verb, const char *const *names,
                    const char *names_text, char ***ret_set) {
        assert(argc && argv && verb && help_verb && ret_set);
        _cleanup_strv_free_ char **set = NULL;
        int j = 0;
        for (int i = 0; i < *argc; i++) {
                bool eq = startswith(argv[i], "--status=");
                if (!eq && !streq(argv[i], "--status")) {
                        argv[j++] = argv[i];
                        continue;
                }
                const char *word = eq ? argv[i] + 9 : i + 1 < *argc ? argv[++i] : NULL;
                _cleanup_free_ char *err = NULL;
                if (cli_parse_states(word, names, names_text, &set, &err) < 0) {
                        cli_error("%s: %s", verb, err);
                        fprintf(stderr, "Try 'pysprinter %s --help'.\n", help_verb);
                        return EXIT_USAGE;
                }
        }
        *argc = j;
        *ret_set = TAKE_PTR(set);
        return 0;
}
