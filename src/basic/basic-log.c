/* Minimal stderr logging for main() and API handlers. */
#include "basic.h"

static LogLevel max_level = LOG_INFO;
static const char *log_prefix = "pysprinter";

void log_set_level(LogLevel level) {
        max_level = level;
}

void log_set_prefix(const char *prefix) {
        log_prefix = prefix;
}

bool log_level_enabled(LogLevel level) {
        return level <= max_level;
}

void log_msg(LogLevel level, const char *fmt, ...) {
        if (level > max_level)
                return;
        static const char *const names[] = { "error", "warning", "info", "debug" };
        int saved = errno;
        char line[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        /* One event, one line: a message may carry what a user chose (a
         * path, a function's error message, a config value), and a line
         * break or an escape sequence in it would forge a line of its own
         * in the operator's log or drive their terminal. Control bytes are
         * written as \n, \r or \xNN; a tab stays. */
        char out[sizeof(line) * 4];
        (void) str_escape_controls(line, true, out, sizeof(out));
        fprintf(stderr, "%s: %s: %s\n", log_prefix, names[level], out);
        errno = saved;
}
