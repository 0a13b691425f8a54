/* cli-remote: the CLI's HTTP client side (libcurl), used when a server is
 * configured: `--server URL`, else $PYSPRINTER_SERVER, else `server = URL`
 * in ~/.config/pysprinter/config. The token is $PYSPRINTER_TOKEN, else
 * `token = …` in that file. Each function returns the process exit code
 * (DESIGN §1: 6 when the server is unreachable or refuses the token). */
#pragma once

#include "cli.h"

/* The server to use given an explicit --server value (may be NULL), or
 * NULL for embedded mode. Caller frees. */
char *cli_remote_server(const char *flag);
/* Removes "--server URL" / "--server=URL" from argv (updating *argc) and
 * returns whether a server is configured, with its URL in *ret_server. */
bool cli_remote_take_server(int *argc, char **argv, char **ret_server);

/* run / validate on the server, streaming the output live; Ctrl-C cancels
 * the remote run. */
int cli_remote_run(const char *server, const RunArgs *a, const char *source, size_t len, bool validate_only);
int cli_remote_ps(const char *server, int argc, char **argv);
int cli_remote_show(const char *server, int argc, char **argv);
int cli_remote_logs(const char *server, int argc, char **argv);

/* Verbs that only exist against a server. */
int verb_deploy(int argc, char **argv);
int verb_invoke(int argc, char **argv);
int verb_functions(int argc, char **argv);
int verb_workers(int argc, char **argv);
/* `pysprinter server …` execs pysprinterd with the same arguments. */
int verb_server(int argc, char **argv);
