/* The ended-runs journal (store.h "the ended-runs journal"): two files
 * beside the database, DB-ended.0 and DB-ended.1, to which the writer
 * appends the ended record of a synchronous run (one write(2), no fsync)
 * instead of committing it; the writer's thread moves the records into
 * SQLite in batches (store-writer.c) and empties a file once every record
 * in it is committed.
 *
 * Why: one transaction per invoke wrote ~5 whole 4 KiB pages to the WAL
 * (~21 KB per invoke) and the checkpointer's syncs of them made the host
 * pause the VM (docs/internals/performance-log.md, round 12). A record here is a few
 * hundred bytes in the page cache; emptied within ~100 ms by ftruncate,
 * its pages never reach the disk. Durability is the WAL's with
 * synchronous=NORMAL: a process crash loses nothing (the page cache keeps
 * the file), a power loss may lose the last records.
 *
 * Two files, switched when a batch is taken: the records appended during
 * the batch's commit go to the other file, so the file of the batch holds
 * only committed records when the commit ends, and can be emptied then.
 *
 * A record: u32 length of the payload, u64 FNV-1a of the payload, the
 * payload: the run's integers, then its texts, each a u32 length
 * (UINT32_MAX: NULL) and its bytes, then the run's origin and limits (an
 * i64 fn_version, the schedule's and limits_json's texts: store.h
 * RunRecord), which records written before they were kept end without and
 * replay with none. A torn last record (a crash in the
 * middle of its write) fails its length or checksum and ends the replay
 * of its file. */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "store-internal.h"

#define JOURNAL_NULL UINT32_MAX
#define JOURNAL_HEADER (sizeof(uint32_t) + sizeof(uint64_t))
#define JOURNAL_MAX_RECORD (64U << 20)

/* The texts of a record, in the order they are written (the request last:
 * it is the store's ?21, not a RunRecord field). */
#define JOURNAL_TEXTS(r, arg21)                                                                          \
        { &(r)->id, &(r)->tenant, &(r)->filename, &(r)->function, &(r)->args_json, &(r)->kwargs_json,   \
          &(r)->status, &(r)->value_json, &(r)->value_repr, &(r)->error_type, &(r)->error_message,      \
          &(r)->traceback, &(r)->timings_json, &(r)->log_path, &(r)->outputs_json, &(r)->lock_json, (arg21) }

static uint64_t fnv1a(const uint8_t *p, size_t n) {
        uint64_t h = 14695981039346656037ULL;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ULL;
        return h;
}

/* The bytes of a text (its length first). */
static size_t text_size(const char *text) {
        return sizeof(uint32_t) + (text ? strlen(text) : 0);
}

static uint8_t *put_text(uint8_t *p, const char *text) {
        uint32_t len = text ? (uint32_t) strlen(text) : JOURNAL_NULL;
        memcpy(p, &len, sizeof(len));
        p += sizeof(len);
        if (text) {
                memcpy(p, text, len);
                p += len;
        }
        return p;
}

/* A record's statement, by its number (0: none). */
static const char *const journal_sql[] = { NULL, store_run_ended_insert_sql, store_run_finish_update_sql,
                                           store_run_start_end_update_sql, store_run_ended_upsert_sql,
                                           store_run_end_update_sql };

static int64_t sql_kind(const char *sql) {
        for (size_t i = 1; i < ELEMENTSOF(journal_sql); i++)
                if (journal_sql[i] == sql)
                        return (int64_t) i;
        return 0;
}

/* r and its request (?21) as one record, header and all, in one
 * allocation of its size (the texts measured first): built before the
 * queue lock is taken, which then covers only the write(2). */
static int record_encode(int64_t kind, const RunRecord *r, const char *arg21, uint8_t **ret, size_t *ret_n) {
        RunRecord copy = *r;
        char *request = (char *) arg21;
        char **texts[] = JOURNAL_TEXTS(&copy, &request);
        int64_t v[] = { kind, r->exit_code, (int64_t) r->created, (int64_t) r->started, (int64_t) r->finished,
                        r->attempt, r->max_attempts };
        size_t n = JOURNAL_HEADER + sizeof(v);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                n += text_size(*texts[i]);
        int64_t fn_version = r->fn_version;
        n += sizeof(fn_version) + text_size(r->schedule) + text_size(r->limits_json);
        if (n - JOURNAL_HEADER > JOURNAL_MAX_RECORD)
                /* Too big for a record: committed as before. */
                return -ENOBUFS;
        uint8_t *buf = xmalloc(n), *p = buf + JOURNAL_HEADER;
        memcpy(p, v, sizeof(v));
        p += sizeof(v);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                p = put_text(p, *texts[i]);
        memcpy(p, &fn_version, sizeof(fn_version));
        p += sizeof(fn_version);
        p = put_text(p, r->schedule);
        p = put_text(p, r->limits_json);
        uint32_t len = (uint32_t) (n - JOURNAL_HEADER);
        uint64_t sum = fnv1a(buf + JOURNAL_HEADER, len);
        memcpy(buf, &len, sizeof(len));
        memcpy(buf + sizeof(len), &sum, sizeof(sum));
        *ret = buf;
        *ret_n = n;
        return 0;
}

int store_journal_encode(const char *sql, const RunRecord *r, const char *arg21, StoreJournalRecord *ret) {
        int64_t kind = sql_kind(sql);
        if (!kind)
                return -EOPNOTSUPP;
        return record_encode(kind, r, arg21, &ret->data, &ret->len);
}

void store_journal_record_done(StoreJournalRecord *rec) {
        free(rec->data);
        *rec = (StoreJournalRecord) {};
}

int store_journal_write_locked(Store *s, const StoreJournalRecord *rec) {
        if (s->jfd[s->jactive] < 0)
                return -EBADF;
        ssize_t w = write(s->jfd[s->jactive], rec->data, rec->len);
        int k = w == (ssize_t) rec->len ? (int) s->jactive : w < 0 ? -errno : -EIO;
        if (w > 0 && w != (ssize_t) rec->len)
                /* A short write (a full disk): the torn record is cut off,
                 * else the replay would stop at it and skip the later ones. */
                (void) ftruncate(s->jfd[s->jactive], (off_t) s->jsize[s->jactive]);
        if (k >= 0) {
                s->jsize[s->jactive] += rec->len;
                s->jpending[s->jactive]++;
                s->jbytes += rec->len;
        }
        return k;
}

unsigned store_journal_switch_locked(Store *s) {
        unsigned old = s->jactive;
        s->jactive ^= 1;
        return old;
}

void store_journal_committed_locked(Store *s, unsigned file) {
        if (s->jpending[file] > 0)
                s->jpending[file]--;
}

int store_journal_trimmable_locked(Store *s) {
        for (unsigned i = 0; i < 2; i++)
                /* Not the file being appended to: a record may be on its
                 * way into it while its batch has not been taken yet. */
                if (i != s->jactive && s->jfd[i] >= 0 && s->jpending[i] == 0 && s->jsize[i] > 0)
                        return (int) i;
        return -1;
}

bool store_journal_trim(Store *s, unsigned file) {
        return ftruncate(s->jfd[file], 0) == 0;
}

void store_journal_trimmed_locked(Store *s, unsigned file) {
        s->jsize[file] = 0;
}

/* One text of a record at *off (its u32 length, then its bytes) into
 * *ret, borrowed from p. end_previous: the length's first byte ends the
 * text before it (read first). */
static bool parse_text(uint8_t *p, size_t n, size_t *off, bool end_previous, char **ret) {
        uint32_t len;
        if (*off + sizeof(len) > n)
                return false;
        memcpy(&len, p + *off, sizeof(len));
        if (end_previous)
                p[*off] = 0;
        *off += sizeof(len);
        if (len == JOURNAL_NULL) {
                *ret = NULL;
                return true;
        }
        if (len > n - *off)
                return false;
        *ret = (char *) p + *off;
        *off += len;
        return true;
}

/* Parses one record's payload into its statement, r and *ret_request
 * (borrowed from the payload, NUL-terminated in place: every text is
 * followed by the next field's length, whose first byte is overwritten
 * after it is read). Returns false when it does not parse. */
static bool record_parse(uint8_t *p, size_t n, const char **ret_sql, RunRecord *r, char **ret_request) {
        int64_t v[7];
        if (n < sizeof(v))
                return false;
        memcpy(v, p, sizeof(v));
        if (v[0] <= 0 || v[0] >= (int64_t) ELEMENTSOF(journal_sql))
                return false;
        *ret_sql = journal_sql[v[0]];
        *r = (RunRecord) { .exit_code = (int) v[1], .created = (usec_t) v[2], .started = (usec_t) v[3],
                           .finished = (usec_t) v[4], .attempt = (int) v[5], .max_attempts = (int) v[6] };
        *ret_request = NULL;
        char **texts[] = JOURNAL_TEXTS(r, ret_request);
        size_t off = sizeof(v);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                if (!parse_text(p, n, &off, i > 0, texts[i]))
                        return false;
        /* The origin, in records written since it is kept. */
        if (off < n) {
                int64_t fn_version;
                if (off + sizeof(fn_version) > n)
                        return false;
                memcpy(&fn_version, p + off, sizeof(fn_version));
                p[off] = 0; /* ends the request */
                off += sizeof(fn_version);
                if (fn_version < 0 || fn_version > INT_MAX || !parse_text(p, n, &off, false, &r->schedule) ||
                    !parse_text(p, n, &off, true, &r->limits_json))
                        return false;
                r->fn_version = (int) fn_version;
        }
        return off == n && r->id;
}

static size_t replay_buffer(Store *s, uint8_t *p, size_t n, StoreJournalFn fn, void *userdata) {
        size_t count = 0;
        for (size_t off = 0; off + JOURNAL_HEADER <= n;) {
                uint32_t len;
                uint64_t sum;
                memcpy(&len, p + off, sizeof(len));
                memcpy(&sum, p + off + sizeof(len), sizeof(sum));
                if (len > JOURNAL_MAX_RECORD || len > n - off - JOURNAL_HEADER)
                        break;
                uint8_t *payload = p + off + JOURNAL_HEADER;
                if (fnv1a(payload, len) != sum)
                        break;
                /* The texts are ended in place: one byte more for the last. */
                uint8_t *copy = (uint8_t *) xmemdupz(payload, len);
                RunRecord r;
                char *request;
                const char *sql;
                bool ok = record_parse(copy, len, &sql, &r, &request);
                if (ok)
                        fn(s, sql, &r, request, userdata);
                free(copy);
                if (!ok)
                        break;
                count++;
                off += JOURNAL_HEADER + len;
        }
        return count;
}

static int read_whole(int fd, uint8_t **ret, size_t *ret_n) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        size_t n = (size_t) st.st_size;
        uint8_t *p = xmalloc(n + 1);
        ssize_t k = n ? pread(fd, p, n, 0) : 0;
        if (k < 0) {
                int r = -errno;
                free(p);
                return r;
        }
        *ret = p;
        *ret_n = (size_t) k;
        return 0;
}

char *store_journal_path(const char *db_path) {
        return xasprintf("%s-ended", db_path);
}

char *store_journal_file(const char *jpath, unsigned file) {
        return xasprintf("%s.%u", jpath, file);
}

void store_journal_copy_free(StoreJournalCopy *c) {
        for (unsigned i = 0; i < 2; i++) {
                free(c->data[i]);
                c->data[i] = NULL;
                c->size[i] = 0;
        }
}

int store_journal_copy(const char *db_path, StoreJournalCopy *ret) {
        _cleanup_free_ char *jpath = store_journal_path(db_path);
        *ret = (StoreJournalCopy) {};
        for (unsigned i = 0; i < 2; i++) {
                _cleanup_free_ char *path = store_journal_file(jpath, i);
                /* Read-only, no lock: the daemon appends and empties on. */
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 && errno == ENOENT)
                        continue;
                int r = fd < 0 ? -errno : read_whole(fd, &ret->data[i], &ret->size[i]);
                if (fd >= 0)
                        close(fd);
                if (r < 0) {
                        store_journal_copy_free(ret);
                        return r;
                }
        }
        return 0;
}

size_t store_journal_copy_replay(Store *s, const StoreJournalCopy *c, StoreJournalFn fn, void *userdata) {
        size_t n = 0;
        for (unsigned i = 0; i < 2; i++)
                if (c->data[i])
                        n += replay_buffer(s, c->data[i], c->size[i], fn, userdata);
        return n;
}

int store_journal_open(Store *s, StoreJournalFn fn, void *userdata) {
        if (!s->jpath)
                return -EOPNOTSUPP;
        for (unsigned i = 0; i < 2; i++) {
                if (s->jfd[i] < 0) {
                        _cleanup_free_ char *path = store_journal_file(s->jpath, i);
                        s->jfd[i] = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                        if (s->jfd[i] < 0)
                                return -errno;
                }
                uint8_t *p = NULL;
                size_t n = 0;
                int r = read_whole(s->jfd[i], &p, &n);
                if (r < 0)
                        return r;
                (void) replay_buffer(s, p, n, fn, userdata);
                free(p);
        }
        return 0;
}

int store_journal_begin(Store *s) {
        int r = 0;
        pthread_mutex_lock(&s->wlock);
        for (unsigned i = 0; i < 2; i++) {
                if (s->jfd[i] < 0 || ftruncate(s->jfd[i], 0) < 0)
                        r = s->jfd[i] < 0 ? -EBADF : -errno;
                s->jsize[i] = 0;
                s->jpending[i] = 0;
        }
        s->jon = r >= 0;
        pthread_mutex_unlock(&s->wlock);
        return r;
}

void store_journal_close(Store *s) {
        s->jon = false;
        for (unsigned i = 0; i < 2; i++) {
                if (s->jfd[i] >= 0)
                        close(s->jfd[i]);
                s->jfd[i] = -1;
        }
}

unsigned store_journal_pending(Store *s) {
        return __atomic_load_n(&s->jlive, __ATOMIC_RELAXED);
}

uint64_t store_journal_bytes(Store *s) {
        pthread_mutex_lock(&s->wlock);
        uint64_t n = s->jbytes;
        pthread_mutex_unlock(&s->wlock);
        return n;
}
