/* basic: libc-only helpers every module may use.
 *
 * Contract: nothing here links anything but libc. Functions return >= 0 on
 * success and a negative errno on failure; output parameters are named ret_*
 * and are written only on success. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- macros ----------------------------------------------------------- */

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define streq(a, b) (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)

/* Hand ownership on explicitly: `return TAKE_PTR(p);` leaves p NULL so the
 * cleanup attribute does nothing. */
#define TAKE_PTR(p)                          \
        ({                                   \
                __typeof__(p) _p_ = (p);     \
                (p) = NULL;                  \
                _p_;                         \
        })
#define TAKE_FD(fd)                          \
        ({                                   \
                int _fd_ = (fd);             \
                (fd) = -EBADF;               \
                _fd_;                        \
        })

/* Declare a cleanup helper for a destructor that accepts NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)        \
        static inline void func##p(type *p) {          \
                if (*p)                                \
                        func(*p);                      \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

void closep(int *fd);
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

void strv_freep(char ***v);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* ---- memory and strings ------------------------------------------------- */

/* Allocation failure is not recoverable in a CLI or daemon that must keep its
 * invariants; these abort with a message instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* xstrdup(s), or NULL for NULL (an optional field copied). */
char *xstrdup_or_null(const char *s);
char *xstrndup(const char *s, size_t n);
/* A copy of data[0..n), NUL bytes kept, with a NUL after it (xstrndup()
 * stops at the first NUL: a source or a value may hold one). */
char *xmemdupz(const void *data, size_t n);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);

bool startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);
/* Strip leading and trailing ASCII whitespace in place; returns s. */
char *strstrip(char *s);

/* NULL-terminated string vectors. */
size_t strv_length(char *const *v);
char **strv_free(char **v);
/* Appends a copy of s; v may be NULL. Returns the (possibly moved) vector. */
char **strv_append(char **v, const char *s);
/* Appends s itself (the vector owns it from now on): for a string just
 * made, such as xasprintf()'s. */
char **strv_append_take(char **v, char *s);
bool strv_contains(char *const *v, const char *s);
/* Adds to *set (may hold NULL) the names a comma-separated list picks
 * from names (NULL-terminated), each once, in the order given: a filter's
 * "failed,killed". A word matches a name exactly, or in any case with
 * any_case; *set gets the name's own spelling. -EINVAL at the first word
 * that is no name (an empty word too, "failed,"), a copy of which goes to
 * *ret_bad (caller frees); *set is then unchanged.
 * Example: (&set, "Failed,lost,failed", {"failed", "lost", ...}, true) adds
 * "failed", "lost". */
int strv_extend_choices(char ***set, const char *list, const char *const *names, bool any_case, char **ret_bad);

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Byte offset of the first invalid UTF-8 sequence in s[0..n) (RFC 3629:
 * overlong forms, surrogates and code points above U+10FFFF are invalid, as
 * for CPython and jansson); n when all of s is valid. */
size_t utf8_invalid_offset(const char *s, size_t n);
bool utf8_is_valid(const char *s);
/* Code point v (at most U+10FFFF) as UTF-8: writes its 1 to 4 bytes to out
 * unless out is NULL, and returns how many they are. */
size_t utf8_encode(uint32_t v, char *out);
/* Shaped like a Python identifier: ASCII letters, digits and '_', no digit
 * first, and any non-ASCII character taken as a letter (PEP 3131 allows
 * `def f(é)`; the function's own parameter list then decides). */
bool identifier_is_valid(const char *s);
/* s[0..n) without a multi-byte sequence cut short at its end: the length
 * up to that sequence's lead byte when the bytes after it are fewer than
 * the lead byte announces, n otherwise. Where to cut text that is still
 * being written so that no character is split between two pieces.
 * Example: ("a\xc3", 2) -> 1; ("a\xc3\xa9", 3) -> 3; ("a\xff", 2) -> 2. */
size_t utf8_complete_prefix(const char *s, size_t n);
/* s[0..n) as valid UTF-8 (caller frees; NUL-terminated, and its length in
 * *ret_len unless NULL, as s may hold NULs): each byte that does not begin
 * a valid sequence becomes U+FFFD, as a lossy decoder shows it. */
char *utf8_replace_invalid(const char *s, size_t n, size_t *ret_len);
/* s with its control bytes (below 0x20, and 0x7f) spelled out so it shows
 * as one line and drives no terminal: \n, \r, \t (a tab kept as it is
 * with keep_tab) and \xNN; other bytes as they are. Written NUL-terminated
 * into buf[0..size) (size > 0), cut before an escape or a byte that would
 * not fit; returns the length written.
 * Example: ("a\x1b[2J\n", false) -> "a\\x1b[2J\\n". */
size_t str_escape_controls(const char *s, bool keep_tab, char *buf, size_t size);
/* NULL (an absent field) or valid UTF-8: a string JSON can hold. */
bool utf8_is_valid_or_null(const char *s);
/* 1-based line and column (in characters) of byte offset `offset` in s:
 * where an editor shows it, for "file:line:col:" messages. */
void utf8_line_col(const char *s, size_t offset, size_t *ret_line, size_t *ret_col);

/* ---- capped growable buffer (curl's dynbuf) ------------------------------ */

/* Every buffer a user can grow is created with its cap; appending past it is
 * -ENOBUFS and leaves the buffer as it was. */
typedef struct Buf {
        char *data;   /* always NUL-terminated when non-NULL */
        size_t len;
        size_t alloc;
        size_t max;   /* cap on len */
} Buf;

void buf_init(Buf *b, size_t max);
void buf_free(Buf *b);
int buf_append(Buf *b, const void *data, size_t n);
/* Grows b by n bytes for the caller to fill in place (*ret_tail: the first;
 * a NUL follows them): one capacity check and at most one realloc where a
 * writer knows its length ahead (an escaped JSON string). -ENOBUFS past the
 * cap, b unchanged. */
int buf_extend(Buf *b, size_t n, char **ret_tail);
int buf_appends(Buf *b, const char *s);
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
void buf_reset(Buf *b);
/* Returns the buffer's string (never NULL) and resets b. Caller frees. */
char *buf_steal(Buf *b);
/* buf_steal(), in an allocation of the text's size: a Buf that doubled as
 * it grew holds up to twice its text (16 MiB for a result of 8.5), which a
 * text kept for long (a run's result) should not. */
char *buf_steal_fit(Buf *b);

/* ---- file descriptors ---------------------------------------------------- */

int fd_close(int fd); /* returns -EBADF, for `fd = fd_close(fd);` */
int fd_nonblock(int fd, bool nonblock);
int fd_cloexec(int fd, bool cloexec);
/* Raises RLIMIT_NOFILE's soft limit to its hard limit, at most cap (a
 * daemon's fds grow with connections, runs and kept cgroup files; systemd
 * starts services at soft 1024, hard 524288). Returns the soft limit now
 * in force, or -errno. Only for processes that never call select(). */
long fd_limit_raise(unsigned long cap);
/* Read/write all n bytes, retrying on EINTR. read_full returns bytes read
 * (less than n only at EOF). */
ssize_t read_full(int fd, void *buf, size_t n);
int write_full(int fd, const void *buf, size_t n);
/* Read a whole file (at most max bytes, else -EFBIG) into a NUL-terminated
 * string. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
int read_fd_all(int fd, size_t max, char **ret, size_t *ret_len);
/* Write atomically: temp file in the same directory, fsync, rename. */
int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);

/* ---- processes ------------------------------------------------------------ */

/* A process's start time (field 22 of /proc/PID/stat, clock ticks since
 * boot): a pid and its start time name one process, even after the pid is
 * reused. -ESRCH when there is no such process. */
int pid_start_time(pid_t pid, uint64_t *ret);
/* The process exists and is not a zombie; also true when that cannot be
 * told (its /proc entry unreadable for want of a descriptor, say): the
 * caller removes what a gone process left. */
bool pid_is_running(pid_t pid);
/* The process started at `start` (pid_start_time()) still runs: the same
 * pid and start time (a reused pid is another process), not a zombie. Also
 * true when that cannot be told, as pid_is_running(): an owner is gone
 * only when that is known. One read of /proc/PID/stat. */
bool pid_alive_since(pid_t pid, uint64_t start);
/* The calling process's pid namespace (the inode of /proc/self/ns/pid; 0
 * when unknown). A pid written down names a process only in the namespace
 * it was read in: a process in another (a CLI under `unshare --pid`, a
 * container sharing a data dir or a cgroup) sees none of ours, and must not
 * take what they own for a gone process's. */
unsigned long long pid_namespace_id(void);
/* Starts fn(arg) on a detached thread (nobody joins it). Returns 0 or
 * pthread_create()'s error number. */
int thread_start_detached(void *(*fn)(void *), void *arg);

/* ---- paths -------------------------------------------------------------- */

/* The last component of path: what follows its last '/' (all of it when
 * there is none; "" after a trailing '/'). Points into path. */
const char *path_base_name(const char *path);
/* Joins with exactly one '/' between parts; NULL-terminated argument list. */
char *path_join_many(const char *first, ...) __attribute__((sentinel));
#define path_join(...) path_join_many(__VA_ARGS__, NULL)
int mkdir_p(const char *path, mode_t mode);
/* rm -rf that never follows symlinks and stays on one file system; it holds
 * a bounded number of fds however deep the tree (subtrees deeper than 32
 * levels are moved up into path and removed from there). */
int rm_rf(const char *path);
/* Disk bytes (st_blocks) of the tree at path, or at name under dfd; no
 * symlink followed, 64 levels at most; 0 when absent. */
/* A DIR over fd, which it then owns (fd < 0: -errno of what made it); fd
 * is closed on failure. */
int dir_fdopen(int fd, DIR **ret);
uint64_t path_tree_bytes(const char *path);
/* Bytes of the file at path (stat, following links); 0 when there is none. */
uint64_t path_file_bytes(const char *path);
uint64_t path_tree_bytes_at(int dfd, const char *name);
/* The newest mtime (seconds since the epoch) of the tree at name under
 * dfd, the top included: when a write last touched any of it. No symlink
 * followed, 64 levels at most; 0 when absent. */
uint64_t path_tree_newest_mtime_at(int dfd, const char *name);
/* Directory holding the running executable (from /proc/self/exe). */
int exe_dir(char **ret);
/* $PYSPRINTER_HOME, else $XDG_DATA_HOME/pysprinter, else
 * ~/.local/share/pysprinter. Not created. */
char *data_dir_default(void);

/* ---- time and ids ------------------------------------------------------- */

typedef uint64_t usec_t;
#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL
usec_t now_monotonic(void);
usec_t now_realtime(void);
/* Makes libc read the local time zone once: with TZ unset, sets TZ to
 * ":/etc/localtime" (the same zone). Call first in main(), before any
 * thread (setenv() is not thread-safe). Workers never see it: they are
 * exec'd with an environment of their own. */
void tz_local_pin(void);
/* Waits on cond (the lock held) for at most timeout, measured on
 * CLOCK_MONOTONIC whatever clock cond was made with: a deadline on the
 * wall clock (pthread_cond_timedwait's) lasted as much longer as the clock
 * was stepped back meanwhile (NTP, a VM resumed, `date -s`), and the
 * daemon's collector, janitor and writer stalled for that long. Returns 0
 * or ETIMEDOUT (not negated: pthread's). */
int cond_wait_usec(pthread_cond_t *cond, pthread_mutex_t *lock, usec_t timeout);
/* ISO 8601 UTC with milliseconds into buf (at least 32 bytes). */
char *format_timestamp(usec_t realtime, char buf[static 32]);
/* us as milliseconds exact to the microsecond, in the shortest spelling
 * (0.0, 0.01, 2.0, 1234.567: the fraction's trailing zeros dropped, one
 * digit kept), NUL-terminated in buf; returns the length. The runs'
 * timings are written so (engine-run.c) and the store gives them back so
 * from their binary form (store-timings.c). */
#define FORMAT_MS_MAX 26
size_t format_ms(usec_t us, char buf[static FORMAT_MS_MAX]);
/* A new run/object id: sortable by creation time, 16 lowercase base32
 * characters after prefix (e.g. "r" -> "r0k3…"). */
char *id_new(const char *prefix);
/* Hex of n random bytes from getrandom(). */
int random_hex(size_t n, char **ret);
/* data[0..n) as 2n lowercase hex digits and a NUL into ret (2n+1 bytes). */
void hex_encode(const void *data, size_t n, char *ret);
/* The value of a hex digit (either case), or -1: %XX escapes. */
int hex_digit_value(char ch);
/* s[0..n) with its %XX escapes decoded (a '+' stays a '+'), NUL-terminated,
 * its length in *ret_len (may be NULL). strict: NULL when an escape is
 * broken or decodes to a NUL byte (a credential in a URL); else a broken
 * escape is kept as written and %00 decodes (caller frees). */
char *percent_decode(const char *s, size_t n, bool strict, size_t *ret_len);

/* ---- user-written quantities --------------------------------------------- */

/* "30" (seconds), "2.5s", "500ms", "5m", "1h" -> milliseconds (at most a
 * week). allow_zero: "0" is valid (a backoff), else -EINVAL. */
int parse_duration_ms(const char *s, bool allow_zero, uint64_t *ret);
/* "256" (MiB), "256M"/"256MiB", "1G", "512K", "100B", "10MB" (powers of
 * 1000 for KB/MB/GB) -> bytes (at most 1e15). */
int parse_size(const char *s, uint64_t *ret);
/* n bytes as every report prints a size (`gc`, `env prune`, `env ls`,
 * `data ls`, `workers`): "0 B" … "1023 B", then one decimal and an IEC
 * unit, "4.9 KiB", "1.2 MiB", "3.0 GiB", "1.5 TiB". Returns buf. */
char *format_size(uint64_t n, char buf[static 32]);
/* A whole decimal int (optional '-'), nothing around it; -EINVAL or
 * -ERANGE otherwise, *ret untouched. */
int parse_int(const char *s, int *ret);
/* Whole decimal digits, nothing around them (no sign, no space): a count
 * from the environment. -EINVAL or -ERANGE otherwise, *ret untouched. */
int parse_uint64(const char *s, uint64_t *ret);
/* An Idempotency-Key (docs/api.md "Idempotency"): 1..IDEMPOTENCY_KEY_MAX
 * visible ASCII characters ('!'..'~': no space, no control, nothing an
 * HTTP header would trim, fold or need an encoding for). The one rule of
 * the daemon's header, the CLI's --idempotency-key and the Python client
 * (which spells it again). */
#define IDEMPOTENCY_KEY_MAX 200
#define IDEMPOTENCY_KEY_RULE "1..200 visible ASCII characters (no spaces)"
bool idempotency_key_is_valid(const char *key);
/* The API's names (a deployed function, a schedule, a tenant):
 * [A-Za-z0-9_-]{1,64}. The daemon's rule, and the CLI's before a name
 * becomes part of a path ("" or ".." would be another route). */
bool function_name_is_valid(const char *name);
/* An alias of a function (docs/api.md "Aliases"), Lambda's rule:
 * (?!^[0-9]+$)([a-zA-Z0-9-_]+), at most 128 bytes ("$LATEST" and a number
 * name versions, never aliases). */
#define FUNCTION_ALIAS_RULE "1..128 of A-Z a-z 0-9 - _, not all digits"
bool function_alias_name_is_valid(const char *name);
/* How long a key names its first run, on every path (docs/api.md). */
#define IDEMPOTENCY_WINDOW_USEC (24ULL * 3600ULL * 1000000ULL)

/* ---- schedules' time arithmetic (basic-cron.c, docs/schedules.md) -------- */

/* A parsed schedule: a 5-field cron expression as bit sets, or an interval. */
typedef struct CronSpec {
        uint64_t minute;        /* bit 0..59 */
        uint32_t hour;          /* bit 0..23 */
        uint32_t dom;           /* bit 1..31 */
        uint16_t month;         /* bit 1..12 */
        uint8_t dow;            /* bit 0..6, Sunday 0 */
        bool dom_star, dow_star; /* unrestricted (the Vixie day rule) */
        uint64_t every_s;       /* "@every D": non-zero, the fields unused */
} CronSpec;
/* "M H DOM MON DOW" (lists, ranges, steps, month/day names, 7 = Sunday),
 * @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly, or
 * "@every 10m" (whole seconds). -EINVAL with *ret_error (may be NULL)
 * naming the field, or saying that it never fires (a day of month that
 * none of its months has: "0 0 30 2 *"). */
int cron_parse(const char *spec, CronSpec *ret, char **ret_error);
/* "UTC" (also NULL, "", "Z", "GMT"), "+HH", "+HH:MM", "+HHMM", "UTC+HH:MM",
 * "-…": the offset east of UTC in seconds. Named zones: -EINVAL (they have
 * no single offset: use cron_zone_load()). */
int cron_tz_parse(const char *tz, int *ret_offset_s, char **ret_error);
/* The first fire time strictly after `after` (Unix seconds) of c read in
 * local time at offset_s; "@every" fires on multiples of its interval
 * since the epoch. -ENOENT when c never fires (Feb 30). */
int cron_next(const CronSpec *c, int offset_s, int64_t after, int64_t *ret);

/* ---- time zones (basic-tzif.c: RFC 8536 TZif + POSIX TZ footer) ----------- */

/* A time zone's UTC offsets over time: a fixed offset, or an IANA zone read
 * from the system tz database (/usr/share/zoneinfo). Immutable once made,
 * so threads may share one; no libc time-zone state is touched. */
typedef struct TzZone TzZone;
TzZone *tz_zone_new_fixed(int offset_s);
/* Reads zone `name` ("Europe/Paris") from the tz database. -EINVAL when the
 * name is not [A-Za-z0-9_+-] components (no "..", no absolute path, no
 * hidden file), -ENOENT when no such zone (or it resolves outside the
 * database), -EBADMSG / -EPROTONOSUPPORT when the file is not a TZif v2+
 * file without leap seconds. */
int tz_zone_load(const char *name, TzZone **ret);
/* Parses TZif data (v2+: the 64-bit block and the footer's TZ rule). */
int tz_zone_parse(const void *data, size_t len, TzZone **ret);
bool tz_name_is_valid(const char *name);
/* The offset east of UTC, in seconds, at Unix time t. */
int tz_zone_offset(const TzZone *z, int64_t t);
TzZone *tz_zone_free(TzZone *z);
void tz_zone_freep(TzZone **z); /* for _cleanup_() */

/* A schedule's --tz: "UTC", a fixed offset (cron_tz_parse's forms) or an
 * IANA zone name. -EINVAL / -ENOENT with *ret_error (may be NULL) saying
 * what is accepted. */
int cron_zone_load(const char *tz, TzZone **ret, char **ret_error);
/* The first fire time strictly after `after` of c read in zone z's wall
 * clock. Daylight saving: a wall time that does not exist (skipped by a
 * spring-forward) fires once at the first instant after the gap; a wall
 * time that occurs twice (fall-back) fires once, at its first occurrence.
 * "@every" ignores the zone. -ENOENT when c never fires. */
int cron_next_zone(const CronSpec *c, const TzZone *z, int64_t after, int64_t *ret);
/* Instant t as z's wall clock with its offset: "2026-03-29T03:00:00+02:00". */
#define CRON_LOCAL_MAX 40
int cron_format_local(const TzZone *z, int64_t t, char buf[static CRON_LOCAL_MAX]);

/* ---- JSON text ------------------------------------------------------------ */

/* Respells every real number of a JSON text with the fewest digits that
 * read back as the same double (0.10000000000000001 -> 0.1). Strings are
 * left alone. Print with 17 digits, then call this. Caller frees. */
char *json_shorten_reals(const char *json_text);
/* The same, taking json_text (NULL: NULL): json_text itself when it has no
 * real to respell (a 10 MiB answer is not copied for nothing), else the new
 * text, json_text freed. */
char *json_shorten_reals_take(char *json_text);

/* ---- logging (only main() and API handlers log; components return) ------ */

typedef enum LogLevel { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG } LogLevel;
void log_set_level(LogLevel level);
void log_set_prefix(const char *prefix);
/* Whether a message of this level is written (so a caller skips building
 * one nobody reads). */
bool log_level_enabled(LogLevel level);
/* Writes "PREFIX: LEVEL: MESSAGE\n" to stderr as one line: control bytes
 * of the message (a user's path or text) are escaped as \n, \r, \xNN, so
 * each call is one line of the log. Keeps errno. */
void log_msg(LogLevel level, const char *fmt, ...) _printf_(2, 3);
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
