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
        fprintf(stderr, "%s: %s: %s\n", log_prefix, names[level], line);
        errno = saved;
}
