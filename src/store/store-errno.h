/* SQLite's result codes as negative errno (store-errno.c), beneath the
 * rest of the store: it needs only SQLite's codes. */
#pragma once

int store_sqlite_errno(int rc);
/* Like store_sqlite_errno() but never 0: for a statement that had to be
 * SQLITE_DONE/ROW and was not. */
int store_rc_errno(int rc);
