/* Internal to the store module. */
#pragma once

#include <pthread.h>
#include <sqlite3.h>

#include "store.h"

struct Store {
        sqlite3 *db;
        pthread_mutex_t lock;
};

/* Applies every migration newer than the database's user_version. */
int store_migrate(sqlite3 *db, char **ret_error);
int store_sqlite_errno(int rc);
/* Like store_sqlite_errno() but never 0: for a statement that had to be
 * SQLITE_DONE/ROW and was not. */
int store_rc_errno(int rc);
/* Binds s, or NULL when s is NULL. */
void store_bind_text(sqlite3_stmt *st, int i, const char *s);
/* A copy of column i's text, or NULL. */
char *store_col_text(sqlite3_stmt *st, int i);
