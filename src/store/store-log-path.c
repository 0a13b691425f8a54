/* A run's log path as the runs table keeps it. The engine writes every run
 * it ran to DATA_DIR/logs/ID.log (engine_run_log_path()), DATA_DIR being
 * the database's directory: ~55 bytes a row that the id and the database
 * already say. Such a path is kept as '' and given back whole on every
 * read, derived from the directory of the database the statement reads
 * (sqlite3_db_filename(): the connection's full path). NULL keeps its
 * meaning (no log), and any other path (another home, a path the engine
 * spelled otherwise, older records) is kept as it is. Every page of a
 * run's row reaches the disk twice, in the WAL and at the checkpoint
 * (docs/internals/performance-log.md "Invoke path: bytes to the disk per invoke (round
 * 15)"). */
#include "store-internal.h"

#include <string.h>

/* The directory of db's file (*ret_len bytes of the returned name), or
 * NULL when the database has no file. */
static const char *db_dir(sqlite3 *db, int *ret_len) {
        const char *name = sqlite3_db_filename(db, "main");
        const char *slash = name ? strrchr(name, '/') : NULL;
        if (!slash)
                return NULL;
        *ret_len = (int) (slash - name);
        return name;
}

/* The default log path of id beside the database st reads, into buf: its
 * length, or 0 when it does not fit or the database has no file. */
static size_t default_log_path(sqlite3_stmt *st, const char *id, char *buf, size_t size) {
        int len;
        const char *dir = db_dir(sqlite3_db_handle(st), &len);
        if (!dir || !id)
                return 0;
        int n = snprintf(buf, size, "%.*s/logs/%s.log", len, dir, id);
        return n > 0 && (size_t) n < size ? (size_t) n : 0;
}

char *store_log_dir(sqlite3 *db) {
        int len;
        const char *dir = db_dir(db, &len);
        return dir ? xasprintf("%.*s/logs", len, dir) : NULL;
}

const char *store_log_path_packed(sqlite3_stmt *st, const char *id, const char *log_path) {
        char buf[PATH_MAX];
        if (log_path && default_log_path(st, id, buf, sizeof(buf)) && streq(buf, log_path))
                return "";
        return log_path;
}

char *store_log_path_col(sqlite3_stmt *st, int col, const char *id) {
        const char *t = (const char *) sqlite3_column_text(st, col);
        char buf[PATH_MAX];
        if (t && !*t && default_log_path(st, id, buf, sizeof(buf)))
                return xstrdup(buf);
        return t ? xstrdup(t) : NULL;
}
