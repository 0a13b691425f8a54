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
