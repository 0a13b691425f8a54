/* pysprinter: the command line. Verbs are a table; each lives in its own
 * file. */
#include "config.h"
#include "cli.h"
#include "cli-remote.h"

typedef struct Verb {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *summary;
} Verb;

static const Verb verbs[] = {
        { "run", verb_run, "run a function: run FILE[::FUNC] [-a V]… [--NAME V]…" },
        { "validate", verb_validate, "check a file and its arguments without running it" },
        { "ps", verb_ps, "list recent runs" },
        { "show", verb_show, "show one run's record" },
        { "logs", verb_logs, "print a run's output again" },
        { "dag", verb_dag, "run a pipeline: dag run|resume|status|logs|ls" },
        { "chain", verb_chain, "run files in a row, each result the next's first argument" },
        { "data", verb_data, "named, versioned datasets: data put|ls|get|rm" },
        { "lock", verb_lock, "resolve a file's requirements and print the lock" },
        { "env", verb_env, "environments: env ls, env prune" },
        { "deploy", verb_deploy, "deploy a function to a server: deploy FILE[::FUNC] --name N" },
        { "invoke", verb_invoke, "invoke a deployed function: invoke NAME [-a V]… [--NAME V]…" },
        { "functions", verb_functions, "a server's deployed functions: functions [ls|show|rm]" },
        { "workers", verb_workers, "a server's warm workers and instances" },
        { "server", verb_server, "run pysprinterd (the HTTP daemon) with these options" },
};

static void usage(FILE *f) {
        fprintf(f, "Usage: pysprinter VERB [OPTIONS]\n\n"
                   "Run Python functions with their pip dependencies, in a sandbox.\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
        fprintf(f, "\nOptions:\n  --help     this help (VERB --help for a verb's)\n  --version  print the version\n"
                   "\nData lives in $PYSPRINTER_HOME (default $XDG_DATA_HOME/pysprinter).\n");
}

int main(int argc, char **argv) {
        log_set_prefix("pysprinter");
        if (argc < 2) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *verb = argv[1];
        if (streq(verb, "--help") || streq(verb, "-h") || streq(verb, "help")) {
                usage(stdout);
                return 0;
        }
        if (streq(verb, "--version") || streq(verb, "-V") || streq(verb, "version")) {
                printf("pysprinter %s\n", PYSPRINTER_VERSION);
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, verb))
                        return verbs[i].fn(argc - 2, argv + 2);
        fprintf(stderr, "pysprinter: unknown verb '%s'\n", verb);
        usage(stderr);
        return EXIT_USAGE;
}
