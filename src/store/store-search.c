/* The runs' search index (GET /v1/runs?q=, `ps --grep`, the dashboard's
 * search; docs/internals/run-search.md): an FTS5 table with the trigram
 * tokenizer over the five fields a search looks in (migration 27), kept
 * behind the runs table rather than in step with each insert.
 *
 * runs_search indexes the runs whose rowid is at most a mark (kv 'search'
 * / 'rowid'); the newer ones are "the tail", which a search walks as it
 * walked every run before. A search or a collection (store_gc) moves the
 * mark on by indexing the tail in chunks. Triggers keep the indexed runs
 * in step: a deleted run leaves the index (and the mark comes down to the
 * highest rowid left, so that SQLite never gives a new run a rowid the
 * mark covers), and a change of a searched field of an indexed run is
 * written to the index. Inserting a run writes nothing here: FTS5 writes a
 * segment, its structure record and more at each commit that touched it
 * (about 6 pages), which would have doubled a single run's WAL pages.
 *
 * The index finds candidates (every run that has each trigram of the text
 * in one of its fields, in any case); the walk's own test (instr() over
 * the lowered fields, as before) then decides, so the answers are the
 * same as the walk's. */
#include <assert.h>

#include "store-internal.h"

#define SEARCH_MARK "(SELECT CAST(value AS INTEGER) FROM kv WHERE ns = 'search' AND key = 'rowid')"

const char store_search_tail_sql[] = "rowid > " SEARCH_MARK;

char *store_search_match(const char *text) {
        assert(text);
        /* Strict UTF-8 (utf8_is_valid(): no overlong form, surrogate or
         * code point past U+10FFFF) without U+FFFE/U+FFFF, all of which
         * FTS5 reads as U+FFFD. Then each code point starts at a byte that
         * is not a continuation byte. */
        if (!utf8_is_valid(text) || strstr(text, "\xef\xbf\xbe") || strstr(text, "\xef\xbf\xbf"))
                return NULL;
        size_t len = strlen(text), n = 0;
        _cleanup_free_ size_t *at = xcalloc(len + 1, sizeof(size_t));
        for (size_t i = 0; i < len; i++)
                if (((unsigned char) text[i] & 0xc0) != 0x80)
                        at[n++] = i;
        at[n] = len;
        if (n < 3)
                return NULL; /* no trigram: the walk serves it */
        /* Each trigram a string of its own ("" for a '"'), joined by AND:
         * a phrase of several tokens needs detail=full, an index four
         * times the size (docs/internals/run-search.md). */
        size_t cap = 0;
        for (size_t i = 0; i + 3 <= n; i++)
                cap += 2 * (at[i + 3] - at[i]) + 7;
        _cleanup_free_ char *m = xmalloc(cap + 1);
        char *w = m;
        for (size_t i = 0; i + 3 <= n; i++) {
                if (i > 0)
                        w = stpcpy(w, " AND ");
                *w++ = '"';
                for (size_t b = at[i]; b < at[i + 3]; b++) {
                        if (text[b] == '"')
                                *w++ = '"';
                        *w++ = text[b];
                }
                *w++ = '"';
        }
        *w = '\0';
        return TAKE_PTR(m);
}

/* s->lock held: one int64 of a statement with one bound int64 (or none:
 * a < 0), NULL read as dflt. */
static int query_int64(Store *s, const char *sql, int64_t a, int64_t dflt, int64_t *ret);

/* s->lock held: the rowids the index gives for match, fewer than most, as
 * a JSON array in *ret_json; -E2BIG at most or more. */
static int candidates(Store *s, const char *match, size_t most, char **ret_json) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db, "SELECT rowid FROM runs_search WHERE runs_search MATCH ?1 LIMIT ?2", -1, &st,
                                    NULL);
        if (rc != SQLITE_OK)
                return store_sqlite_errno(rc) ?: -EIO;
        store_bind_text(st, 1, match);
        sqlite3_bind_int64(st, 2, (sqlite3_int64) most);
        size_t cap = 256, len = 1, n = 0;
        _cleanup_free_ char *json = xmalloc(cap);
        json[0] = '[';
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (len + 24 > cap) {
                        cap *= 2;
                        json = xrealloc(json, cap);
                }
                len += (size_t) snprintf(json + len, cap - len, "%s%lld", n++ ? "," : "",
                                         (long long) sqlite3_column_int64(st, 0));
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        if (n >= most)
                return -E2BIG;
        json[len++] = ']';
        json[len] = '\0';
        *ret_json = TAKE_PTR(json);
        return 0;
}

int store_search_candidates(Store *s, const char *match, char **ret_json) {
        assert(s && match && ret_json);
        size_t most = s->search_candidates_max ?: STORE_SEARCH_CANDIDATES_MAX;
        /* The tail is read whole, then sorted: a long one (a database just
         * upgraded, a busy hour since the last collection) is left to the
         * walk, which stops at the newest N. A new run's rowid is SQLite's
         * highest + 1, so their span bounds the tail's count. */
        int64_t tail = 0;
        int r = query_int64(s, "SELECT coalesce(max(rowid), 0) - " SEARCH_MARK " FROM runs", -1, 0, &tail);
        if (r < 0)
                return r;
        tail = MAX(tail, 0);
        if (tail >= (int64_t) most)
                return -E2BIG;
        return candidates(s, match, most - (size_t) tail, ret_json);
}

static int query_int64(Store *s, const char *sql, int64_t a, int64_t dflt, int64_t *ret) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_sqlite_errno(rc) ?: -EIO;
        if (a >= 0)
                sqlite3_bind_int64(st, 1, a);
        rc = sqlite3_step(st);
        int r = 0;
        if (rc == SQLITE_ROW)
                *ret = sqlite3_column_type(st, 0) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, 0);
        else
                r = store_sqlite_errno(rc) ?: -EIO;
        sqlite3_finalize(st);
        return r;
}

/* Runs one statement with ?1 = a and ?2 = b, s->lock held: the rows it
 * changed, or -errno. */
static int64_t exec_pair(Store *s, const char *sql, int64_t a, int64_t b) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_sqlite_errno(rc) ?: -EIO;
        sqlite3_bind_int64(st, 1, a);
        sqlite3_bind_int64(st, 2, b);
        rc = sqlite3_step(st);
        int64_t n = sqlite3_changes64(s->db);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        return n;
}

/* s->lock held, in a transaction. */
static int64_t index_chunk(Store *s, size_t most) {
        int64_t mark = 0, hi = 0;
        int r = query_int64(s, "SELECT " SEARCH_MARK, -1, 0, &mark);
        if (r < 0)
                return r;
        _cleanup_free_ char *last = xasprintf("SELECT max(rowid) FROM (SELECT rowid FROM runs WHERE rowid > ?1 "
                                              "ORDER BY rowid LIMIT %zu)",
                                              most);
        r = query_int64(s, last, mark, mark, &hi);
        if (r < 0 || hi == mark)
                return r;
        int64_t n = exec_pair(s,
                              "INSERT INTO runs_search (rowid, id, filename, function, fn_name, schedule) "
                              "SELECT rowid, id, filename, function, fn_name, schedule FROM runs "
                              "WHERE rowid > ?1 AND rowid <= ?2",
                              mark, hi);
        if (n < 0)
                return n;
        int64_t u = exec_pair(
                s, "UPDATE kv SET value = CAST(?1 AS TEXT), updated = ?2 WHERE ns = 'search' AND key = 'rowid'", hi,
                (int64_t) now_realtime());
        return u < 0 ? u : n;
}

int64_t store_search_index_tail(Store *s, size_t most) {
        assert(s);
        if (most == 0)
                most = s->search_chunk ?: STORE_SEARCH_INDEX_CHUNK;
        store_lock(s);
        /* No tail (a search's usual case): no write transaction, which
         * would wait for another process's writer. */
        int64_t tail = 0;
        int k = query_int64(s, "SELECT coalesce(max(rowid), 0) - " SEARCH_MARK " FROM runs", -1, 0, &tail);
        if (k < 0 || tail <= 0) {
                pthread_mutex_unlock(&s->lock);
                return k;
        }
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                pthread_mutex_unlock(&s->lock);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        int64_t n = index_chunk(s, most);
        rc = sqlite3_exec(s->db, n >= 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
        if (n >= 0 && rc != SQLITE_OK) {
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
                n = store_sqlite_errno(rc) ?: -EIO;
        }
        pthread_mutex_unlock(&s->lock);
        return n;
}
