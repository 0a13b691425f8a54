/* `secret set|ls|rm`: the tenant's secrets (docs/secrets.md), written once
 * against a Backend. A value is read from stdin or --from-file, never from
 * argv: a command line is visible to every user of the machine (ps,
 * /proc/PID/cmdline) and lands in shell history. */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include "shared.h"
#include "cli-backend.h"

static const char secret_help[] =
        "Usage: pysprinter secret set NAME [--from-file PATH] [--allow-empty]\n"
        "                                  store NAME's value, read from stdin (one trailing\n"
        "                                  newline dropped; at a terminal, not shown) or PATH\n"
        "                                  (as is); an empty value is refused unless\n"
        "                                  --allow-empty\n"
        "       pysprinter secret ls [--json|-q]\n"
        "                                  names and dates, never values\n"
        "       pysprinter secret rm NAME  remove it\n"
        "       pysprinter secret rotate-key\n"
        "                                  re-seal every secret with a new key (embedded;\n"
        "                                  a server's: pysprinterd secret rotate-key)\n"
        "\n"
        "A run sees a secret as the environment variable NAME with `run --secret NAME`\n"
        "(`deploy --secret NAME`, `secrets: [NAME]` on a pipeline task); `--env KEY=VALUE`\n"
        "sets a plain variable. Values are encrypted at rest (AES-256-GCM) with a key\n"
        "file created at first use, mode 0600: $PYSPRINTER_HOME/secrets.key embedded,\n"
        "$DATA/secrets.key on a server. Secrets belong to a tenant: another tenant\n"
        "can neither read nor use them. Names: [A-Za-z_][A-Za-z0-9_]{0,127}, values up to 64 KiB.\n";

static int secret_usage(const char *usage) {
        cli_error("usage: %s", usage);
        return EXIT_USAGE;
}

/* Checked before either backend is asked, so both say the same: a name with
 * '/', '?' or ".." would otherwise become another path of the daemon's API
 * ("no such endpoint") where embedded says "no secret named". */
static bool secret_name_checked(const char *name) {
        if (secret_name_is_valid(name))
                return true;
        cli_error("'%s' is not a secret name: it becomes an environment variable, [A-Za-z_][A-Za-z0-9_]{0,127}", name);
        return false;
}

/* Up to SECRET_MAX_BYTES + 2 bytes of fd: room for the trailing newline
 * stdin may carry (dropped, not part of the value), and one more byte
 * tells a value that is too large. */
static int read_value(int fd, char **ret, size_t *ret_len) {
        size_t cap = SECRET_MAX_BYTES + 2, n = 0;
        char *v = xmalloc(cap + 1);
        for (;;) {
                ssize_t k = read(fd, v + n, cap - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = -errno;
                        free(v);
                        return r;
                }
                if (k == 0 || (n += (size_t) k) == cap)
                        break;
        }
        v[n] = 0;
        *ret = v;
        *ret_len = n;
        return 0;
}

/* A value typed at a terminal is read with its echo off, as passwords
 * are (gh secret set, docker login, ssh-keygen): echoed, it stood on the
 * screen, in the scrollback and in any recording of the session. An
 * interrupt meanwhile gives the terminal its echo back before the process
 * ends as the signal says: a shell left without echo looks dead. */
static struct termios tty_saved;
static struct sigaction tty_old_actions[CLI_INTERRUPT_SIGNALS];

static void tty_restore_and_die(int sig) {
        /* tcsetattr(), sigaction() and raise() are async-signal-safe. The
         * signal stays blocked until this returns, then ends the process
         * as its default does: not under the disposition it had before,
         * which may be SIG_IGN (a non-interactive shell ignores SIGINT in
         * each `cmd &`: `kill -INT` then left the prompt waiting for good,
         * as the CLI's own catcher does not ignore it) or a catcher that
         * only sets a flag. */
        (void) tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
        cli_interrupt_restore(tty_old_actions);
        (void) signal(sig, SIG_DFL);
        (void) raise(sig);
}

/* Turns stdin's echo off; false (nothing changed) when it cannot. */
static bool tty_echo_off(void) {
        if (tcgetattr(STDIN_FILENO, &tty_saved) < 0)
                return false;
        struct termios quiet = tty_saved;
        quiet.c_lflag &= ~(tcflag_t) (ECHO | ECHONL);
        cli_interrupt_catch(tty_restore_and_die, tty_old_actions);
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0) {
                cli_interrupt_restore(tty_old_actions);
                return false;
        }
        return true;
}

static void tty_echo_restore(void) {
        (void) tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
        cli_interrupt_restore(tty_old_actions);
        /* The Enter and Ctrl-D typed were not shown: what follows starts
         * on a line of its own. */
        fputc('\n', stderr);
}

static int secret_set_verb(Backend *b, int argc, char **argv, bool json) {
        const char *name = NULL, *file = NULL;
        bool allow_empty = false;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--allow-empty"))
                        allow_empty = true;
                else if (streq(argv[i], "--from-file") && i + 1 < argc)
                        file = argv[++i];
                else if (startswith(argv[i], "--from-file="))
                        file = argv[i] + 12;
                else if (!name && argv[i][0] != '-')
                        name = argv[i];
                else if (streq(argv[i], "--from-file")) {
                        /* Not "never from the command line": the user
                         * asked for a file and forgot which. */
                        cli_error("secret set: --from-file needs a PATH");
                        return EXIT_USAGE;
                } else {
                        cli_error("secret set takes the value from stdin or --from-file, never from the command line");
                        return EXIT_USAGE;
                }
        }
        if (file && !*file) {
                cli_error("secret set: --from-file needs a PATH");
                return EXIT_USAGE;
        }
        if (!name)
                return secret_usage("secret set NAME [--from-file PATH] [--allow-empty]  (the value on stdin)");
        if (!secret_name_checked(name))
                return EXIT_USAGE;
        _cleanup_close_ int fd = file ? open(file, O_RDONLY | O_CLOEXEC) : -EBADF;
        if (file && fd < 0) {
                cli_error("secret set: cannot read %s: %s", file, strerror(errno));
                return EXIT_USAGE;
        }
        bool hidden = !file && isatty(STDIN_FILENO) && tty_echo_off();
        /* Even with -q: the command waits for this input with echo off,
         * and without a prompt the terminal looked hung. */
        if (hidden)
                fprintf(stderr, "value for %s (not shown; end with Ctrl-D):\n", name);
        char *value = NULL;
        size_t len = 0;
        int r = read_value(file ? fd : STDIN_FILENO, &value, &len);
        if (hidden)
                tty_echo_restore();
        if (r < 0) {
                cli_error("secret set: cannot read the value: %s", strerror(-r));
                return EXIT_USAGE;
        }
        /* `echo value | pysprinter secret set` means "value", so the
         * limit applies after the newline is dropped. */
        if (!file && len > 0 && value[len - 1] == '\n')
                value[--len] = 0;
        /* Nothing on stdin is far more often a mistake (a redirect from
         * the wrong file, a pipe whose producer failed) than a wish for
         * an empty variable: stored, every run saw '' and nothing said
         * so. Checked here for both paths; the http backend then sends
         * the API's allow_empty. */
        if (len == 0 && !allow_empty) {
                free(value);
                cli_error("secret set: the value of %s is empty: nothing stored (an empty secret takes --allow-empty)",
                          name);
                return EXIT_USAGE;
        }
        if (len > SECRET_MAX_BYTES) {
                explicit_bzero(value, len);
                free(value);
                cli_error("secret set: the value is larger than 64 KiB");
                return EXIT_USAGE;
        }
        /* It becomes an environment variable (no NUL) and travels as JSON
         * text (UTF-8): refused here for both paths, where embedded used
         * to store it and then leave the run without the variable. */
        if (memchr(value, 0, len) || utf8_invalid_offset(value, len) != len) {
                explicit_bzero(value, len);
                free(value);
                cli_error("secret set: a secret's value must be UTF-8 text without NUL bytes");
                return EXIT_USAGE;
        }
        json_t *ans = NULL;
        r = b->ops->secret_set(b, name, value, len, &ans);
        explicit_bzero(value, len);
        free(value);
        if (r < 0)
                return backend_fail(b, r);
        if (json)
                render_json(ans);
        else if (!cli_globals.quiet)
                printf("secret %s set\n", name);
        json_decref(ans);
        return 0;
}

static int secret_ls_verb(Backend *b, bool json) {
        json_t *list = NULL, *v;
        int r = b->ops->secret_list(b, &list);
        if (r < 0)
                return backend_fail(b, r);
        size_t k;
        if (render_list_start(list, json, "name", "no secrets (add one with: pysprinter secret set NAME < file)")) {
                /* As wide as the widest name (up to 128): a longer one
                 * pushed its dates out of line with the others'. */
                int width = 32;
                json_array_foreach(list, k, v) {
                        size_t n = strlen(json_get_string(v, "name") ?: "?");
                        width = MAX(width, (int) MIN(n, (size_t) 128));
                }
                printf("%-*s %-20s %s\n", width, "NAME", "CREATED", "UPDATED");
                json_array_foreach(list, k, v) {
                        char created[32], updated[32];
                        format_local_time(json_get_string(v, "created_at"), created);
                        format_local_time(json_get_string(v, "updated_at"), updated);
                        /* A daemon of an older release sends no "opens". */
                        json_t *o = json_object_get(v, "opens");
                        if (json_is_false(o))
                                printf("%-*s %-20s %-20s cannot be opened with the current key\n", width,
                                       json_get_string(v, "name") ?: "?", created, updated);
                        else
                                printf("%-*s %-20s %s\n", width, json_get_string(v, "name") ?: "?", created, updated);
                }
        }
        json_decref(list);
        return 0;
}

int verb_secret(int argc, char **argv) {
        int code = cli_subverb_help(argc, argv, secret_help);
        if (code >= 0)
                return code;
        const char *sub = argv[0];
        bool json;
        int n = cli_take_json_flag(argc, argv, &json);
        char **rest = argv + 1;
        bool set = streq(sub, "set"), ls = streq(sub, "ls") || streq(sub, "list"),
             rm = streq(sub, "rm") || streq(sub, "remove"), rotate = streq(sub, "rotate-key");
        if (!set && !ls && !rm && !rotate) {
                cli_error("secret: unknown command '%s' (set, ls, rm, rotate-key)", sub);
                return EXIT_USAGE;
        }
        if (rotate && (n != 0 || json))
                return secret_usage("secret rotate-key");
        if (ls && n != 0)
                return secret_usage("secret ls [--json|-q]");
        if (rm && n != 1)
                return secret_usage("secret rm NAME");
        if (rm && !secret_name_checked(rest[0]))
                return EXIT_USAGE;
        Backend *b = NULL;
        code = set || rotate ? backend_open(NULL, &b) : backend_open_listing(true, &b);
        if (code)
                return code;
        if (set)
                code = secret_set_verb(b, n, rest, json);
        else if (ls)
                code = secret_ls_verb(b, json);
        else if (rotate) {
                size_t k = 0;
                int r = b->ops->secret_rotate_key(b, &k);
                if (r < 0)
                        code = backend_fail(b, r);
                else if (!cli_globals.quiet)
                        printf("rotated the secrets key: %zu secret(s) sealed with the new key\n", k);
        } else {
                int r = b->ops->secret_rm(b, rest[0]);
                if (r < 0)
                        code = backend_fail(b, r);
                else if (!cli_globals.quiet)
                        printf("removed secret %s\n", rest[0]);
        }
        backend_free(b);
        return code;
}
