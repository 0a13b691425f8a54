/* pysprinter completion bash|zsh|fish (docs/cli.md "Shell completion"):
 * prints a script for the shell. Verbs come from the one verb table;
 * deployed function names, schedule names and run ids come at completion
 * time from `pysprinter completion --list KIND`, which asks the configured
 * server (or the embedded store, for runs) and prints nothing on failure,
 * so a missing server never spoils a shell. */
#include <jansson.h>
#include <stdio.h>

#include "cli-backend.h"

static const char global_opts[] = "--server --token --json --no-color --quiet --verbose --help --version";

/* Options a verb takes beyond the global ones (its --help is the reference). */
#define RUN_OPTIONS                                                                                        \
        "-a -k --json-args --json-kwargs --timeout --memory --max-procs --network --no-network --sandbox " \
        "--index-url --find-links --data --output-file --allow-sdist --no-cache"

static const struct {
        const char *verbs;
        const char *opts;
} verb_opts[] = {
        { "run", RUN_OPTIONS " --detach --idempotency-key" },
        { "validate", RUN_OPTIONS },
        { "chain", RUN_OPTIONS " --idempotency-key" },
        { "invoke", "-a -k --json-args --json-kwargs --payload --payload-file --timeout --memory --detach "
                    "--idempotency-key --over --concurrency -j" },
        { "deploy",
          "--name --description --url --public --no-url --cors-origin --cors-method --cors-header --cors-expose "
          "--cors-max-age --cors-credentials --cors --no-cors --timeout --memory --max-procs -f --file --prune "
          "--dry-run" },
        { "schedule", "--cron --every --tz --catch-up --allow-overlap --paused --dag --param" },
        { "logs", "-f --follow" },
        { "ps", "-n --limit --status --before --function --schedule --grep -q --quiet" },
};

static void verbs_line(FILE *f) {
        const char *v;
        for (size_t i = 0; (v = cli_verb(i, NULL)); i++)
                fprintf(f, "%s%s", i ? " " : "", v);
}

static void print_bash(FILE *f) {
        fputs("# pysprinter bash completion: source <(pysprinter completion bash)\n"
              "_pysprinter() {\n"
              "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" verb=\"${COMP_WORDS[1]}\" words\n"
              "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
              "        words=\"",
              f);
        verbs_line(f);
        fprintf(f, " %s\"\n", global_opts);
        fputs("        COMPREPLY=($(compgen -W \"$words\" -- \"$cur\")); return\n"
              "    fi\n"
              "    if [[ \"$cur\" == -* ]]; then\n"
              "        case \"$verb\" in\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verb_opts); i++) {
                _cleanup_free_ char *pat = xstrdup(verb_opts[i].verbs);
                for (char *p = pat; *p; p++)
                        if (*p == ' ')
                                *p = '|';
                fprintf(f, "            %s) words=\"%s\";;\n", pat, verb_opts[i].opts);
        }
        fprintf(f, "            *) words=\"\";;\n"
                   "        esac\n"
                   "        COMPREPLY=($(compgen -W \"$words %s\" -- \"$cur\")); return\n"
                   "    fi\n",
                global_opts);
        fputs("    case \"$verb\" in\n"
              "        invoke) words=\"$(pysprinter completion --list functions 2>/dev/null)\";;\n"
              "        functions) [ \"$COMP_CWORD\" -eq 2 ] && words=\"ls show rm alias aliases\" || "
              "words=\"$(pysprinter completion "
              "--list functions 2>/dev/null)\";;\n"
              "        show|logs|cancel|wait) words=\"$(pysprinter completion --list runs 2>/dev/null)\";;\n"
              "        schedule)\n"
              "            if [ \"$COMP_CWORD\" -eq 2 ]; then words=\"add ls show rm pause resume\"\n"
              "            elif [ \"${COMP_WORDS[2]}\" = add ]; then words=\"$(pysprinter completion --list functions "
              "2>/dev/null)\"\n"
              "            else words=\"$(pysprinter completion --list schedules 2>/dev/null)\"; fi;;\n"
              "        completion) words=\"bash zsh fish\";;\n"
              "        dag) [ \"$COMP_CWORD\" -eq 2 ] && words=\"run resume status logs ls cancel\" || { "
              "COMPREPLY=($(compgen -f -- \"$cur\")); return; };;\n"
              "        data) [ \"$COMP_CWORD\" -eq 2 ] && words=\"put ls get rm\" || { COMPREPLY=($(compgen -f -- "
              "\"$cur\")); return; };;\n"
              "        env) words=\"ls prune prepare verify\";;\n"
              "        *) COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n"
              "    esac\n"
              "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
              "}\n"
              "complete -o default -F _pysprinter pysprinter\n",
              f);
}

static void print_zsh(FILE *f) {
        fputs("#compdef pysprinter\n"
              "# pysprinter zsh completion: pysprinter completion zsh > \"${fpath[1]}/_pysprinter\"\n"
              "_pysprinter() {\n"
              "    local -a verbs opts\n"
              "    verbs=(",
              f);
        const char *v, *summary;
        for (size_t i = 0; (v = cli_verb(i, &summary)); i++) {
                fprintf(f, "%s'%s:", i ? " " : "", v);
                for (const char *p = summary; *p; p++)
                        fputs(*p == '\'' ? "'\\''" : *p == ':' ? "\\:" : (char[]) { *p, 0 }, f);
                fputs("'", f);
        }
        fprintf(f, ")\n    opts=(%s)\n", global_opts);
        fputs("    if (( CURRENT == 2 )); then _describe verb verbs; compadd -- $opts; return; fi\n"
              "    if [[ $PREFIX == -* ]]; then\n"
              "        case $words[2] in\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verb_opts); i++) {
                _cleanup_free_ char *pat = xstrdup(verb_opts[i].verbs);
                for (char *p = pat; *p; p++)
                        if (*p == ' ')
                                *p = '|';
                fprintf(f, "            (%s) opts+=(%s);;\n", pat, verb_opts[i].opts);
        }
        fputs("        esac\n"
              "        compadd -- $opts; return\n"
              "    fi\n"
              "    case $words[2] in\n"
              "        (invoke|functions) compadd -- ${(f)\"$(pysprinter completion --list functions "
              "2>/dev/null)\"};;\n"
              "        (show|logs|cancel|wait) compadd -- ${(f)\"$(pysprinter completion --list runs "
              "2>/dev/null)\"};;\n"
              "        (schedule)\n"
              "            if (( CURRENT == 3 )); then compadd -- add ls show rm pause resume\n"
              "            elif [[ $words[3] == add ]]; then compadd -- ${(f)\"$(pysprinter completion --list "
              "functions 2>/dev/null)\"}\n"
              "            else compadd -- ${(f)\"$(pysprinter completion --list schedules 2>/dev/null)\"}; fi;;\n"
              "        (completion) compadd -- bash zsh fish;;\n"
              "        (*) _files;;\n"
              "    esac\n"
              "}\n"
              "compdef _pysprinter pysprinter\n",
              f);
}

static void fish_quote(FILE *f, const char *s) {
        fputc('\'', f);
        for (; *s; s++) {
                if (*s == '\'' || *s == '\\')
                        fputc('\\', f);
                fputc(*s, f);
        }
        fputc('\'', f);
}

static void print_fish(FILE *f) {
        fputs("# pysprinter fish completion: pysprinter completion fish > ~/.config/fish/completions/pysprinter.fish\n"
              "complete -c pysprinter -f\n",
              f);
        const char *v, *summary;
        for (size_t i = 0; (v = cli_verb(i, &summary)); i++) {
                fprintf(f, "complete -c pysprinter -n __fish_use_subcommand -a %s -d ", v);
                fish_quote(f, summary);
                fputc('\n', f);
        }
        fputs("complete -c pysprinter -l server -r -d 'use a pysprinterd'\n"
              "complete -c pysprinter -l token -r -d 'its bearer token'\n"
              "complete -c pysprinter -l json -d 'machine-readable output'\n"
              "complete -c pysprinter -l no-color -d 'no colours'\n"
              "complete -c pysprinter -s q -l quiet -d 'only results and errors'\n"
              "complete -c pysprinter -s v -l verbose -d 'more detail'\n"
              "complete -c pysprinter -l help -d 'help'\n"
              "complete -c pysprinter -n '__fish_seen_subcommand_from invoke functions' -a '(pysprinter completion "
              "--list functions 2>/dev/null)'\n"
              "complete -c pysprinter -n '__fish_seen_subcommand_from show logs cancel wait' -a '(pysprinter "
              "completion "
              "--list runs 2>/dev/null)'\n"
              "complete -c pysprinter -n '__fish_seen_subcommand_from schedule; and not __fish_seen_subcommand_from "
              "add ls show rm pause resume' -a 'add ls show rm pause resume'\n"
              "complete -c pysprinter -n '__fish_seen_subcommand_from show rm pause resume; and "
              "__fish_seen_subcommand_from schedule' -a '(pysprinter completion --list schedules 2>/dev/null)'\n"
              "complete -c pysprinter -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n"
              "complete -c pysprinter -n '__fish_seen_subcommand_from run validate deploy lock chain dag data init' "
              "-F\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verb_opts); i++) {
                for (const char *o = verb_opts[i].opts; *o;) {
                        size_t n = strcspn(o, " ");
                        bool is_long = o[1] == '-';
                        fprintf(f, "complete -c pysprinter -n '__fish_seen_subcommand_from %s' %s %.*s\n",
                                verb_opts[i].verbs, is_long ? "-l" : "-s", (int) n - (is_long ? 2 : 1),
                                o + (is_long ? 2 : 1));
                        o += n;
                        while (*o == ' ')
                                o++;
                }
        }
}

/* Names for the scripts, one a line; nothing (exit 0) when unavailable. */
static int list_names(const char *kind) {
        Backend *b = NULL;
        /* The scripts send stderr to /dev/null: a failure says nothing. */
        if (backend_open_listing(true, &b))
                return 0;
        json_t *ans = NULL, *list = NULL;
        const char *key = "name";
        int r;
        if (streq(kind, "functions")) {
                r = b->ops->function(b, "GET", NULL, 0, &ans);
                list = json_object_get(ans, "functions");
        } else if (streq(kind, "schedules")) {
                r = b->ops->schedule(b, "GET", "", NULL, &ans);
                list = json_object_get(ans, "schedules");
        } else {
                r = b->ops->run_list(b, 50, NULL, NULL, &ans);
                list = ans;
                key = "id";
        }
        size_t i;
        json_t *o;
        if (r >= 0)
                json_array_foreach(list, i, o) {
                        const char *s = json_string_value(json_object_get(o, key));
                        if (s)
                                printf("%s\n", s);
                }
        json_decref(ans);
        backend_free(b);
        return 0;
}

int verb_completion(int argc, char **argv) {
        if (argc == 2 && streq(argv[0], "--list") &&
            (streq(argv[1], "functions") || streq(argv[1], "runs") || streq(argv[1], "schedules")))
                return list_names(argv[1]);
        if (argc != 1 || streq(argv[0], "--help") || streq(argv[0], "-h")) {
                bool help = argc == 1;
                fputs("Usage: pysprinter completion bash|zsh|fish\n\n"
                      "Print a completion script for the shell: verbs, options, and (from the\n"
                      "configured server) deployed function names, schedules and run ids.\n\n"
                      "  bash:  source <(pysprinter completion bash)      # in ~/.bashrc\n"
                      "  zsh:   pysprinter completion zsh > \"${fpath[1]}/_pysprinter\"\n"
                      "  fish:  pysprinter completion fish > ~/.config/fish/completions/pysprinter.fish\n",
                      help ? stdout : stderr);
                return help ? 0 : EXIT_USAGE;
        }
        if (streq(argv[0], "bash"))
                print_bash(stdout);
        else if (streq(argv[0], "zsh"))
                print_zsh(stdout);
        else if (streq(argv[0], "fish"))
                print_fish(stdout);
        else {
                cli_error("completion: unknown shell '%s' (bash, zsh or fish)", argv[0]);
                return EXIT_USAGE;
        }
        return 0;
}
