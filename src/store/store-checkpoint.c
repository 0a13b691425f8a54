/* WAL checkpoints off the request path (issue 15 b, the p99).
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL
 * past 1000 pages, in whichever thread commits: with group commit that is
 * a caller waiting for its run's record, i.e. an invoke. A checkpoint
 * syncs the WAL (~4 MiB of frames), copies them into the database and
 * syncs that: 4–7 ms here, on about one invoke in 40 (each invoke writes
 * ~25 frames), which was the sequential p99.
 *
 * Instead the write connection has no automatic checkpoint (its WAL hook
 * is ours) and this thread, on its own connection, runs PASSIVE
 * checkpoints when the hook says STORE_CKPT_PAGES frames arrived since the
 * last one. PASSIVE takes no lock a writer waits for: writers keep
 * appending while the frames are copied and synced.
 *
 * What bounds the WAL: SQLite reuses the WAL file from its start when a
 * write begins and the last checkpoint copied every frame. Under writes
 * that never pause, frames arrive during every checkpoint and that never
 * happens; so once the WAL holds STORE_CKPT_CAP_PAGES frames, the thread
 * shrinks the uncopied tail with passes that hold nobody off, then asks
 * the next commit (store_checkpoint_backstop_locked(), s->lock held: no
 * frame can arrive) to copy the short tail itself before it writes, and
 * that write restarts the WAL. That pass cannot go: the database must hold
 * every frame durably, and no frame may arrive, when the WAL is reused
 * (one WAL file; SQLite's wal2 is not released). It runs in the committing
 * thread, at its priority, rather than in this thread holding s->lock: at
 * SCHED_IDLE (below) this thread holding the writers' lock would make
 * them wait for whatever else wants the CPU. The WAL file then stays under
 * about STORE_CKPT_CAP_PAGES + what arrives during one checkpoint; and if
 * the thread falls behind that much again (STORE_CKPT_HARD_PAGES), a
 * commit checkpoints in-line first, as SQLite would have.
 *
 * Priority (round 6): the thread runs at SCHED_IDLE. A pass spends ~0.6 ms
 * on a CPU submitting the writeback of its syncs, and measured right after
 * a busy spell, two thirds of the slowest 1% of sequential invokes were an
 * instance or a request thread woken onto the CPU this thread held, the
 * other CPU idle. A SCHED_IDLE thread yields at once to any other that
 * wakes. So that it still keeps up under sustained load (where it may get
 * no CPU at all), it takes normal priority back while it is behind
 * (STORE_CKPT_BEHIND_PAGES, STORE_CKPT_LATE_PAGES), where the process may
 * (CAP_SYS_NICE or RLIMIT_NICE; else the backstop bounds the WAL). It
 * makes no thread or process: nothing inherits its policy. */
#include <assert.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shared.h"
#include "store-internal.h"

/* Frames committed since the last checkpoint that call for the next one
 * (SQLite's default automatic checkpoint is at 1000; so was this until
 * round 16). Part of a pass's disk work is fixed: the WAL's sync and its
 * flush, and the database's hot pages (each b-tree's right-most leaves
 * and interior pages, page 1), a small write each however many commits
 * rewrote them. At 4000 frames a pass they are paid once per ~4 times as
 * many runs (flushes at wrk -c8: 0.7-1.95 -> 0.2-0.6 a second). The
 * WAL then holds up to 16 MiB of frames between passes (readers find
 * theirs through the wal-index whatever its length; the cap below still
 * bounds the file), written back as they arrive
 * (STORE_CKPT_TRICKLE_PAGES) rather than at the pass. Durability is
 * unchanged: every commit is in the WAL before it is acknowledged
 * (synchronous=NORMAL), and the WAL's sync still comes before a copy. */
#define STORE_CKPT_PAGES 4000
/* WAL frames (4 KiB each) after which the thread makes the next write
 * restart it: each time the writers wait for one short checkpoint, so
 * rarely (an invoke writes ~25 frames: once per ~640 invokes). */
#define STORE_CKPT_CAP_PAGES 16000
/* The tail worth holding the writers off for, and the most passes the
 * restart runs to shrink the tail to it. Not larger (round 18): a
 * backstop that copied ~900 frames held the writers off long enough to
 * put the p99 of 20 s at wrk -c8 at 12-25 ms. */
#define STORE_CKPT_TAIL_PAGES 256
#define STORE_CKPT_TAIL_PASSES 4
/* The backstop: a WAL this large means the thread cannot keep up (syncs
 * slowed by other I/O, a writer faster than the disk): the next commit
 * checkpoints first, in its own thread, as SQLite's automatic checkpoint
 * did, so the WAL stays bounded whatever the load. */
#define STORE_CKPT_HARD_PAGES (2 * STORE_CKPT_CAP_PAGES)
/* Near the cap (its last STORE_CKPT_PAGES frames) a pass every this
 * many frames instead (round 18). The restart writes back the pages of
 * the pass that reached the cap at two per appended frame, so that its
 * tail passes copy fewer frames each, then has the backstop copy the
 * rest: after a pass of 4000 frames (~11 MiB of pages at wrk -c8) that
 * was ~2 s at twice the daemon's mean write rate and up to four tail
 * passes back to back, ~30 MiB and ~7 flushes in the 3 s around each
 * restart, the burst the host paused the VM for (docs/internals/performance-log.md
 * "the WAL's restart without a burst"). A pass per 1000 frames near the
 * cap leaves ~1000 frames' pages, written back at the append rate like
 * any pass's, and the tail after the restart's short drain is near the
 * backstop's already. The WAL's bound is unchanged (the same cap); the
 * cost, three more passes per restart, each a WAL sync and often a
 * database sync, spread ~1 s apart at wrk -c8. */
#define STORE_CKPT_NEAR_PAGES 1000

/* Frames committed since the last pass that call for the next one, with
 * the WAL at `frames`. */
static int pass_due(int frames) {
        return frames >= STORE_CKPT_CAP_PAGES - STORE_CKPT_PAGES ? STORE_CKPT_NEAR_PAGES : STORE_CKPT_PAGES;
}

/* Behind: the idle-priority passes leave this many frames uncopied (no
 * idle CPU to run them), or the WAL outgrew the cap by a quarter (its
 * restart is late). Then normal priority until it has caught up: the
 * writers would soon wait for this thread (the restart, the backstop). */
#define STORE_CKPT_BEHIND_PAGES (2 * STORE_CKPT_PAGES)
#define STORE_CKPT_LATE_PAGES (STORE_CKPT_CAP_PAGES + STORE_CKPT_CAP_PAGES / 4)

/* Write-back ahead, in slices: a sync writes back every dirty page of the
 * file in one system call, on the CPU, ~0.6 ms for a pass's 1000 frames
 * (ext4_writepages); a kernel without preemption (PREEMPT_NONE here) lets
 * nothing else run on that CPU meanwhile, SCHED_IDLE or not. Starting the
 * write-back a slice per call gives the scheduler a point between slices
 * to run a thread that woke; the sync then finds the pages written or in
 * flight and waits for them off the CPU. A MiB a slice (round 20; 128 KiB
 * before): the host charges this VM per write request as well as per
 * byte (its steal time at 10 MB/s of writes beside two spinners: 0.94% in
 * 16 KiB requests, 0.67-0.80% in 128 KiB, 0.53% in 1 MiB), and each
 * slice became one or more requests of at most its size. One slice is one
 * trickle span (STORE_CKPT_TRICKLE_PAGES), ~0.15 ms of submission. */
#define STORE_CKPT_SLICE (1024 * 1024)

static void write_back_range(int fd, off_t from, off_t to, unsigned flags) {
        for (off_t off = from, n; off < to; off += n) {
                /* A short rest rides with the last slice (a trickle span
                 * of 256 frames is a MiB and 6 KiB). */
                n = to - off <= STORE_CKPT_SLICE + STORE_CKPT_SLICE / 4 ? to - off : STORE_CKPT_SLICE;
                if (sync_file_range(fd, off, n, flags) < 0)
                        return;
        }
}

/* The WAL's descriptor for this thread's write-back and read-ahead,
 * opened at its first use; -1 when it cannot be or the page size is not
 * known yet. */
static int wal_fd(Store *s) {
        if (s->cfd_wal < 0 && s->cwal_path)
                s->cfd_wal = open(s->cwal_path, O_RDONLY | O_CLOEXEC);
        return s->cpage > 0 ? s->cfd_wal : -1;
}

/* Where frame n starts in the WAL: a 32-byte header, then frames of a
 * 24-byte header and a page. */
static off_t wal_frame_offset(const Store *s, int n) {
        return 32 + (off_t) n * (24 + (off_t) s->cpage);
}

/* The WAL's frames the next pass will sync: those after the last copied. */
static void write_back_wal(Store *s) {
        int fd = wal_fd(s);
        if (fd < 0)
                return;
        pthread_mutex_lock(&s->clock);
        int from = s->cdone <= s->cframes ? s->cdone : 0, to = s->cframes;
        pthread_mutex_unlock(&s->clock);
        write_back_range(fd, wal_frame_offset(s, from), wal_frame_offset(s, to), SYNC_FILE_RANGE_WRITE);
}

/* How far ahead of the writes the thread reads the WAL's old frames in
 * (read_ahead_wal()): two of the "behind" spans, so that a thread starved
 * at SCHED_IDLE has taken normal priority back (STORE_CKPT_BEHIND_PAGES)
 * before the writes overtake what it read. Round 16 doubled the behind
 * span and left this at 8000, equal to it: a starved thread was raised
 * just as the writes reached the end of what it had read, and the
 * commits read up to 12 of 109 evicted MiB back
 * (test_wal_reuse_reads_nothing_in_the_committing_thread, which failed
 * under ASan). 64 MiB of page cache: the whole WAL up to its cap. */
#define STORE_CKPT_AHEAD_PAGES (2 * STORE_CKPT_BEHIND_PAGES)

/* The WAL's frames from frame `from` on, read into the page cache ahead of
 * the commits that will overwrite them (round 9). After a restart SQLite
 * writes the WAL from its start again, over frames written one cap
 * earlier, seconds ago; memory reclaim evicts such pages (DAMON's pageout
 * on this machine takes file pages idle for seconds). A frame (24-byte
 * header and a page: 4120 bytes) covers pages partly, and ext4 reads a
 * partly written block back from the disk before the write
 * (ext4_block_write_begin), in the committing thread: an invoke's, 0.3–3
 * ms per commit, measured. Read here, asynchronously (WILLNEED starts the
 * reads and returns), the commit finds them cached. Past the file's end
 * (a WAL that has not wrapped yet) it reads nothing. The whole span each
 * pass, not only its new part: a page read ahead and evicted again is read
 * again; 8000 cached frames cost ~0.11 ms of this thread (measured: 113
 * µs for 33 MiB cached, 57 µs for 4 MiB). */
static void read_ahead_wal(Store *s, int from) {
        int fd = wal_fd(s);
        if (fd >= 0)
                (void) posix_fadvise(fd, wal_frame_offset(s, from),
                                     wal_frame_offset(s, from + STORE_CKPT_AHEAD_PAGES) - wal_frame_offset(s, from),
                                     POSIX_FADV_WILLNEED);
}

/* The WAL's write-back as its frames arrive (round 16), a span of this
 * many frames (1 MiB) at a time. What the host charges this VM for its
 * disk is bursts of bytes: the daemon's own requests at wrk -c8, replayed
 * beside a daemon that writes nothing, paused the VM 0.23-0.34% of the
 * time as recorded, 0.05% with the same requests spread evenly over the
 * same seconds, ~0.00-0.04% with its small writes or its flushes alone
 * (bench/disk_replay.py, docs/internals/performance-log.md "what the host charges for
 * the disk"). A pass used to start the write-back of every frame since
 * the last one at once (4 MiB and more at 1000 frames a pass), its WAL
 * sync's flush right behind them. Started a span at a time as the
 * commits append, the bytes leave evenly and the pass's sync finds the
 * WAL written. Asynchronous (SYNC_FILE_RANGE_WRITE): no commit waits for
 * it, and durability is what it was (the sync still comes before the
 * copy). */
#define STORE_CKPT_TRICKLE_PAGES 256

/* Between passes the WAL's old frames are also read ahead of the writes
 * every this many frames, as each pass did when passes came every 1000
 * frames: with a pass per 4000 (16 MiB), commits after a restart reached
 * frames evicted since the pass's read-ahead before the next pass
 * (test_wal_reuse_reads_nothing_in_the_committing_thread: up to 12 MiB
 * read back by the commits, ~0.1 MiB with this). */
#define STORE_CKPT_READ_AHEAD_EVERY 1000

/* Starts the write-back of the frames committed since the last span's,
 * and reads ahead each STORE_CKPT_READ_AHEAD_EVERY frames. */
static void trickle_wal(Store *s) {
        int fd = wal_fd(s);
        pthread_mutex_lock(&s->clock);
        int from = s->ctrickled <= s->cframes ? s->ctrickled : 0, to = s->cframes;
        s->ctrickled = to;
        s->ctrickle = false;
        pthread_mutex_unlock(&s->clock);
        if (fd < 0 || to <= from)
                return;
        write_back_range(fd, wal_frame_offset(s, from), wal_frame_offset(s, to), SYNC_FILE_RANGE_WRITE);
        if (from / STORE_CKPT_READ_AHEAD_EVERY != to / STORE_CKPT_READ_AHEAD_EVERY)
                read_ahead_wal(s, to);
}

/* The database file's pages a pass copied in, written back at once, in
 * this thread. SQLite syncs the database only in a pass that copies every
 * frame, i.e. the WAL-restarting one, which runs with the writers held off
 * (store_checkpoint_backstop_locked); under steady writes every other pass
 * leaves its pages dirty, so that sync used to write back all the pages of
 * the ~16 passes since the last restart (95 pages in the unit test; the
 * restart's syncs took 1–35 ms in an invoke's thread, round 7: the device
 * flush is most of it on a quiet disk). A pass dirties 15–100 pages: one
 * call. */
static void write_back_db(Store *s, bool wait) {
        if (s->cfd_db < 0)
                return;
        unsigned flags = SYNC_FILE_RANGE_WRITE;
        if (wait)
                flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
        (void) sync_file_range(s->cfd_db, 0, 0, flags);
}

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct ckpt_cachestat_range {
        uint64_t off, len;
};
struct ckpt_cachestat {
        uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* The page cache's figures for fd's [off, off + len) (cachestat(2), Linux
 * 6.5; len 0: to the end); false if unknown. */
static bool page_cache_of(int fd, off_t off, off_t len, struct ckpt_cachestat *ret) {
        struct ckpt_cachestat_range r = { (uint64_t) off, (uint64_t) len };
        *ret = (struct ckpt_cachestat) {};
        return fd >= 0 && syscall(__NR_cachestat, fd, &r, ret, 0) == 0;
}

/* Dirty pages of fd's [off, off + len); UINT64_MAX if unknown. */
static uint64_t dirty_pages_in(int fd, off_t off, off_t len) {
        struct ckpt_cachestat cs;
        return page_cache_of(fd, off, len, &cs) ? cs.nr_dirty : UINT64_MAX;
}

/* Pages of the database file dirty or under write-back; UINT64_MAX if
 * unknown. For the stats: one syscall per restart. */
static uint64_t db_unwritten_pages(Store *s) {
        struct ckpt_cachestat cs;
        return page_cache_of(s->cfd_db, 0, 0, &cs) ? cs.nr_dirty + cs.nr_writeback : UINT64_MAX;
}

/* Frames in the WAL: at the last commit, or log (a pass's count) when more. */
static int wal_frames(Store *s, int log) {
        pthread_mutex_lock(&s->clock);
        int frames = s->cframes > log ? s->cframes : log;
        pthread_mutex_unlock(&s->clock);
        return frames;
}

/* The database pages a pass copied in, written back on a steady tick as
 * the commits append (round 17). A pass at 4000 frames leaves ~11 MiB of
 * them at wrk -c8; round 16 wrote them a MiB per 50 ms, i.e. at ~20 MiB/s
 * for half a second against the daemon's ~7 MiB/s mean, and its sleeps
 * held up the WAL's trickle (this one thread), which then went out 4-5
 * MiB at once: 100 ms bins of 2-5 MiB against a mean of 0.74
 * (bench/disk_replay.py bins). The host pauses this VM for such bursts
 * at a granularity of ~100 ms (docs/internals/performance-log.md "an even write
 * stream"). Now each tick (STORE_CKPT_TICK_USEC) writes back the WAL's
 * new frames and a share of the database pages that follows the append
 * rate: the pass's pages spread over three quarters of the frames it
 * copied, so that the walk ends before the next pass is due, and at least
 * STORE_CKPT_DB_MIN_PAGES a tick so that it ends when the commits stop.
 * The thread ticks only while such pages are left: none at idle. Only
 * this thread writes them: no commit waits, and the WAL-restarting pass
 * still finds them on disk (restart_when_written()). */
#define STORE_CKPT_TICK_USEC (50 * USEC_PER_MSEC)
#define STORE_CKPT_DB_MIN_PAGES 16
/* The walk's step, and the clean span it skips in one look. Steps dirty
 * one after another are written back as one range (write_back_range()
 * sends it a slice at a time): a pass's new pages are the file's last
 * ones, side by side, and one request of a MiB costs the host less than
 * sixteen of 64 KiB (round 20). The budget is still counted a step at a
 * time. */
#define STORE_CKPT_DB_STEP (64 * 1024)
#define STORE_CKPT_DB_SKIP (16 * STORE_CKPT_DB_STEP)

/* A new walk over the database's dirty pages, after a pass: under 32 of
 * them (a pass's hot pages alone) or no cachestat(2), one call instead.
 * The pages found (UINT64_MAX: no cachestat). */
static uint64_t pace_db_begin(Store *s) {
        uint64_t all = dirty_pages_in(s->cfd_db, 0, 0);
        s->cdb_cursor = 0;
        s->cdb_tick_at = 0;
        s->cdb_left = s->cdb_total = 0;
        s->cdb_frames = wal_frames(s, 0);
        if (all == UINT64_MAX || all < 32) {
                write_back_db(s, false);
                return all;
        }
        s->cdb_left = s->cdb_total = all;
        return all;
}

/* One tick's share of the walk: the pass's pages in proportion to the
 * frames appended since the last tick, at least `floor` pages. Before a
 * restart (restarting), also at least two pages per frame appended, so
 * that each tail pass copies fewer frames than the last; and all at once
 * once the WAL is late (STORE_CKPT_LATE_PAGES: writers faster than the
 * pacing, as in the unit tests; the backstop would otherwise make a
 * commit wait). */
/* The time since the walk's last tick, kept when it is the longest yet
 * (StoreCheckpointStats.db_tick_gap_max_usec). */
static void note_tick(Store *s) {
        usec_t now = now_monotonic();
        if (s->cdb_tick_at > 0 && now - s->cdb_tick_at > s->cdb_tick_gap_max) {
                pthread_mutex_lock(&s->clock);
                s->cdb_tick_gap_max = now - s->cdb_tick_at;
                pthread_mutex_unlock(&s->clock);
        }
        s->cdb_tick_at = now;
}

/* One range of the walk written back (none when empty), and counted. */
static void db_range_write_back(Store *s, off_t from, off_t to) {
        if (to <= from)
                return;
        write_back_range(s->cfd_db, from, to, SYNC_FILE_RANGE_WRITE);
        pthread_mutex_lock(&s->clock);
        s->cdb_ranges++;
        s->cdb_range_bytes += (uint64_t) (to - from);
        pthread_mutex_unlock(&s->clock);
}

static void pace_db(Store *s, uint64_t floor, bool restarting) {
        struct stat st;
        if (s->cdb_left == 0)
                return;
        if (fstat(s->cfd_db, &st) < 0) {
                write_back_db(s, false);
                s->cdb_left = 0;
                return;
        }
        note_tick(s);
        int frames = wal_frames(s, 0);
        int appended = frames >= s->cdb_frames ? frames - s->cdb_frames : frames;
        s->cdb_frames = frames;
        uint64_t spread = s->cdb_spread > 0 ? (uint64_t) s->cdb_spread : STORE_CKPT_PAGES * 3 / 4;
        uint64_t budget = MAX(floor, (s->cdb_total * (uint64_t) appended + spread - 1) / spread);
        if (restarting)
                budget = frames >= STORE_CKPT_LATE_PAGES ? UINT64_MAX : MAX(budget, 2 * (uint64_t) appended);
        /* The dirty steps found and not yet sent: [run_from, run_to). */
        off_t run_from = 0, run_to = 0;
        while (budget > 0 && s->cdb_left > 0 && s->cdb_cursor < st.st_size) {
                off_t off = s->cdb_cursor;
                if (off % STORE_CKPT_DB_SKIP == 0 && dirty_pages_in(s->cfd_db, off, STORE_CKPT_DB_SKIP) == 0) {
                        s->cdb_cursor += STORE_CKPT_DB_SKIP;
                        continue;
                }
                uint64_t dirty = dirty_pages_in(s->cfd_db, off, STORE_CKPT_DB_STEP);
                s->cdb_cursor += STORE_CKPT_DB_STEP;
                if (dirty == 0)
                        continue;
                off_t end = MIN(off + STORE_CKPT_DB_STEP, st.st_size);
                if (run_to != off) {
                        db_range_write_back(s, run_from, run_to);
                        run_from = off;
                }
                run_to = end;
                dirty = MIN(dirty, s->cdb_left);
                budget -= MIN(budget, dirty);
                s->cdb_left -= dirty;
        }
        db_range_write_back(s, run_from, run_to);
        if (s->cdb_cursor >= st.st_size)
                s->cdb_left = 0;
}

/* The write connection's WAL hook, called in the committing thread with
 * s->lock held after each commit: it signals, and rarely raises the
 * thread's priority. */
static int wal_hook(void *p, sqlite3 *db, const char *name, int frames) {
        (void) db;
        (void) name;
        Store *s = p;
        bool wake = false;
        pthread_mutex_lock(&s->clock);
        s->cframes = frames;
        if (frames < s->cdone)
                s->cdone = 0; /* the WAL restarted */
        if (frames < s->ctrickled)
                s->ctrickled = 0;
        if (!s->ctrickle && frames - s->ctrickled >= STORE_CKPT_TRICKLE_PAGES) {
                s->ctrickle = true;
                wake = true;
        }
        if (!s->cwanted && frames - s->cdone >= pass_due(frames)) {
                s->cwanted = true;
                wake = true;
        }
        /* Behind, maybe in the middle of a pass that gets no CPU: normal
         * priority until it has caught up (one syscall, rarely). Where the
         * process may not raise it again, the backstop bounds the WAL. */
        if (!s->cboosted && s->ctid > 0 &&
            (frames - s->cdone >= STORE_CKPT_BEHIND_PAGES || frames >= STORE_CKPT_LATE_PAGES)) {
                s->cboosted = store_thread_set_policy(s->ctid, SCHED_OTHER);
                if (!s->cboosted)
                        s->ctid = -1; /* not allowed: do not ask again */
        }
        pthread_mutex_unlock(&s->clock);
        if (wake)
                pthread_cond_signal(&s->ccond);
        return SQLITE_OK;
}

/* One checkpoint pass on db. crun is held across it: SQLite lets one
 * checkpoint run at a time and answers another SQLITE_BUSY at once, and
 * the backstop must not miss its turn. Lock order: s->lock, then crun. */
static int passive_on(Store *s, sqlite3 *db, int *ret_log, int *ret_ckpt) {
        int log = 0, ckpt = 0;
        pthread_mutex_lock(&s->crun);
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt);
        pthread_mutex_unlock(&s->crun);
        *ret_log = log;
        *ret_ckpt = ckpt;
        return rc;
}

/* A pass of this thread, the WAL read ahead of the writes before and
 * after it: a pass (its syncs) is this thread's long part, slow under
 * another process's I/O or starved at SCHED_IDLE, and commits go on
 * meanwhile; after it, up to the next pass. */
static int passive(Store *s, int *ret_log, int *ret_ckpt) {
        read_ahead_wal(s, wal_frames(s, 0));
        int rc = passive_on(s, s->cdb, ret_log, ret_ckpt);
        read_ahead_wal(s, wal_frames(s, 0));
        return rc;
}

static bool stopping(Store *s) {
        pthread_mutex_lock(&s->clock);
        bool stop = s->cstop;
        pthread_mutex_unlock(&s->clock);
        return stop;
}

/* The database's dirty pages written back on the tick, the WAL's trickle
 * with them, until none is left; as before the WAL's restart (pace_db())
 * when restarting or once the WAL has reached its cap. When the store closes, the rest in one go (the close
 * waits for this thread). The pages dirty when it began (pace_db_begin()). */
static uint64_t drain_db(Store *s, bool restarting) {
        uint64_t found = pace_db_begin(s);
        while (s->cdb_left > 0 && !stopping(s)) {
                (void) usleep(STORE_CKPT_TICK_USEC);
                trickle_wal(s);
                pace_db(s, STORE_CKPT_DB_MIN_PAGES, restarting || wal_frames(s, 0) >= STORE_CKPT_CAP_PAGES);
        }
        if (s->cdb_left > 0)
                write_back_db(s, false);
        s->cdb_left = 0;
        return found;
}

/* SQLite's own sync of the database, in a pass of this thread that copied
 * every frame (no commit came during it), called by the store VFS right
 * before it (round 17). That sync sent all the pages the pass had just
 * copied in, ~10 MiB in one 100 ms at wrk -c8, every ~15 s: the largest
 * burst left after the tick. Here they go first on the tick, at the
 * append rate like any pass's (pace_db()), before the WAL's restart at
 * two pages per frame, all at once when the WAL is late; the sync then
 * finds few. It still comes, and before SQLite publishes the pass's
 * frames as copied: the WAL is never restarted over frames whose pages
 * are not on disk. This thread holds crun meanwhile: the backstop, the
 * only other pass, comes after the restart this thread asks for, or at
 * STORE_CKPT_HARD_PAGES, past STORE_CKPT_LATE_PAGES where this goes at
 * once. */
static void pace_db_sync(void *p) {
        Store *s = p;
        uint64_t copied = drain_db(s, false);
        uint64_t found = dirty_pages_in(s->cfd_db, 0, 0);
        pthread_mutex_lock(&s->clock);
        s->cdb_syncs++;
        s->cdb_copied_max = MAX(s->cdb_copied_max, copied);
        s->cdb_found_max = MAX(s->cdb_found_max, found);
        pthread_mutex_unlock(&s->clock);
}

/* The WAL past its cap: its next write restarts it, with the writers held
 * off for the pass that copies what is left (the backstop). First shrink
 * that tail with passes that hold nobody off (each leaves what came in
 * during it), each one's database pages paced out before the next: the
 * restart's wait, and the restarting pass's sync of the database, then
 * have only the last few pages to write. */
static int restart_when_written(Store *s, int *log, int *ckpt) {
        int rc = SQLITE_OK;
        uint64_t syncs0 = store_vfs_syncs(), tail = 0;
        drain_db(s, true);
        for (; tail < STORE_CKPT_TAIL_PASSES && rc == SQLITE_OK && wal_frames(s, *log) - *ckpt > STORE_CKPT_TAIL_PAGES;
             tail++) {
                write_back_wal(s);
                rc = passive(s, log, ckpt);
                drain_db(s, true);
        }
        pthread_mutex_lock(&s->clock);
        s->crestart_syncs0 = syncs0;
        s->ctail_max = MAX(s->ctail_max, tail);
        pthread_mutex_unlock(&s->clock);
        write_back_wal(s);
        write_back_db(s, true);
        /* The commits after the restart write from the WAL's start. */
        if (rc == SQLITE_OK)
                read_ahead_wal(s, 0);
        return rc;
}

static void checkpoint_once(Store *s) {
        int log = 0, ckpt = 0;
        pthread_mutex_lock(&s->clock);
        bool pending = s->crestart;
        if (pending)
                /* The next commit copies what is left, database pages
                 * written back: a pass now would dirty them again for
                 * that commit's sync to wait on. The hook asks again
                 * after it. */
                s->cwanted = false;
        pthread_mutex_unlock(&s->clock);
        if (pending)
                return;
        write_back_wal(s);
        pthread_mutex_lock(&s->clock);
        int done = s->cdone;
        /* Its pages written back over three quarters of as many frames
         * as it copies: at the rate the commits made them, whether the
         * pass copies 4000 frames or, near the cap, 1000. */
        s->cdb_spread = MAX(s->cframes - (done <= s->cframes ? done : 0), STORE_CKPT_NEAR_PAGES) * 3 / 4;
        pthread_mutex_unlock(&s->clock);
        int rc = passive(s, &log, &ckpt);
        /* The WAL as the last commit left it (frames came in during the
         * pass): past the cap, have the next write restart it (which
         * drains the pass's pages itself); else walk them on the tick. */
        bool restart = false;
        if (rc == SQLITE_OK && wal_frames(s, log) >= STORE_CKPT_CAP_PAGES) {
                pthread_mutex_lock(&s->clock);
                s->crestart_frames_max = MAX(s->crestart_frames_max, (uint64_t) (ckpt > done ? ckpt - done : ckpt));
                pthread_mutex_unlock(&s->clock);
                rc = restart_when_written(s, &log, &ckpt);
                restart = rc == SQLITE_OK;
        } else {
                (void) pace_db_begin(s);
        }
        pthread_mutex_lock(&s->clock);
        /* Caught up (little left uncopied, and the WAL restarted or will
         * at the next write): back to idle. */
        if (s->cboosted && rc == SQLITE_OK && s->cframes - ckpt < STORE_CKPT_PAGES &&
            (s->cframes < STORE_CKPT_CAP_PAGES || restart || s->crestart)) {
                (void) store_thread_set_policy(0, SCHED_IDLE);
                s->cboosted = false;
        }
        if (rc == SQLITE_OK) {
                s->checkpoints++;
                s->crestart |= restart;
                /* Frames the WAL still holds uncopied count toward the
                 * next one; a restart since resets cframes below cdone. */
                s->cdone = ckpt <= s->cframes ? ckpt : 0;
        }
        s->cwanted = false;
        /* More arrived meanwhile: go again at once. */
        if (s->cframes - s->cdone >= pass_due(s->cframes))
                s->cwanted = true;
        pthread_mutex_unlock(&s->clock);
}

static void *checkpointer_main(void *p) {
        Store *s = p;
        /* Best effort: at normal priority it works as before. (glibc's
         * thread attributes take no SCHED_IDLE.) */
        (void) store_thread_set_policy(0, SCHED_IDLE);
        pthread_mutex_lock(&s->clock);
        s->ctid = gettid();
        pthread_cond_broadcast(&s->ccond);
        pthread_mutex_unlock(&s->clock);
        pthread_mutex_lock(&s->clock);
        usec_t next_tick = 0;
        for (;;) {
                /* Asleep until asked, or while a walk of the database's
                 * pages is under way, until its next tick. */
                bool tick = false;
                while (!s->cwanted && !s->ctrickle && !s->cstop && !tick) {
                        if (s->cdb_left == 0) {
                                pthread_cond_wait(&s->ccond, &s->clock);
                                continue;
                        }
                        usec_t now = now_monotonic();
                        tick = now >= next_tick;
                        if (!tick)
                                cond_wait_usec(&s->ccond, &s->clock, next_tick - now);
                }
                if (s->cstop)
                        break;
                bool trickle = s->ctrickle || tick, pass = s->cwanted;
                pthread_mutex_unlock(&s->clock);
                if (trickle)
                        trickle_wal(s);
                if (tick) {
                        pace_db(s, STORE_CKPT_DB_MIN_PAGES, false);
                        next_tick = now_monotonic() + STORE_CKPT_TICK_USEC;
                }
                if (pass) {
                        checkpoint_once(s);
                        next_tick = now_monotonic() + STORE_CKPT_TICK_USEC;
                }
                pthread_mutex_lock(&s->clock);
        }
        pthread_mutex_unlock(&s->clock);
        return NULL;
}

/* The WAL's blocks, allocated once when the store opens (not for
 * store_open_short_lived()), up to where the thread restarts it late
 * (STORE_CKPT_LATE_PAGES frames) (round 11). A
 * commit that appends past the blocks ext4 has allocated reserves one
 * (delayed allocation: ext4_da_get_block_prep takes the inode's i_data_sem
 * for writing), and the write-back of earlier frames holds that semaphore
 * while it allocates their blocks, reading bitmaps from the disk: a sync
 * of this thread's then stalls a committing invoke for as long (4–162 ms,
 * 9 requests in one 4-s sequential run, docs/internals/performance-log.md "the stalls of
 * a sequential invoke"). Into allocated (unwritten) blocks a commit's write
 * looks the block up and takes no lock for writing. FALLOC_FL_KEEP_SIZE:
 * the file's size, which SQLite's recovery reads, stays. Once, before any
 * commit: round 10 allocated ahead on every pass instead, and that
 * fallocate held the inode lock every commit takes (slower). Not on tmpfs
 * (the blocks would be memory), and only where it leaves room, like the
 * reserve; the WAL file SQLite deletes at its last close takes them along. */
static void allocate_wal(Store *s) {
        if (s->cpage <= 0)
                return;
        _cleanup_close_ int fd = open(s->cwal_path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        struct statfs fs;
        if (fd < 0 || fstatfs(fd, &fs) < 0 || fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC)
                return;
        off_t bytes = wal_frame_offset(s, STORE_CKPT_LATE_PAGES);
        if ((uint64_t) fs.f_bavail * fs.f_bsize < 4 * (uint64_t) bytes)
                return;
        (void) fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, bytes);
}

void store_checkpointer_start(Store *s, const char *path, bool allocate_wal_ahead) {
        pthread_mutex_init(&s->clock, NULL);
        pthread_mutex_init(&s->crun, NULL);
        s->cfd_wal = -1;
        s->cfd_db = open(path, O_RDONLY | O_CLOEXEC);
        pthread_cond_init(&s->ccond, NULL);
        s->cinit = true;
        sqlite3 *cdb = NULL;
        if (sqlite3_open_v2(path, &cdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, store_vfs()) != SQLITE_OK) {
                /* SQLite's own automatic checkpoint stays. */
                sqlite3_close(cdb);
                return;
        }
        /* The checkpoint syncs as the writer's connection would: a
         * checkpoint that skipped its syncs could lose the database at a
         * power cut once the WAL is reused. */
        sqlite3_exec(cdb, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
        /* Its database's sync paced (without the store VFS: as before). */
        StoreSyncPacer pacer = { pace_db_sync, s };
        (void) sqlite3_file_control(cdb, "main", STORE_FCNTL_SYNC_PACER, &pacer);
        s->cdb = cdb;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(cdb, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                s->cpage = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        s->cwal_path = xasprintf("%s-wal", path);
        if (allocate_wal_ahead)
                allocate_wal(s);
        int k = pthread_create(&s->checkpointer, NULL, checkpointer_main, s);
        if (k != 0) {
                sqlite3_close(cdb);
                s->cdb = NULL;
                return;
        }
        s->cstarted = true;
        /* Until it runs at its priority (ps, the tests see it so). */
        pthread_mutex_lock(&s->clock);
        while (s->ctid == 0)
                pthread_cond_wait(&s->ccond, &s->clock);
        pthread_mutex_unlock(&s->clock);
        /* Named: ps, perf and the tests tell it from the writer. */
        (void) pthread_setname_np(s->checkpointer, "store-ckpt");
        /* Replaces SQLite's automatic checkpoint on the write connection
         * (sqlite3_wal_hook() and wal_autocheckpoint share the slot). */
        sqlite3_wal_hook(s->db, wal_hook, s);
}

void store_checkpoint_backstop_locked(Store *s) {
        if (!s->cstarted)
                return;
        pthread_mutex_lock(&s->clock);
        bool restart = s->crestart;
        bool over = s->cframes >= STORE_CKPT_HARD_PAGES;
        pthread_mutex_unlock(&s->clock);
        if (!restart && !over)
                return;
        int log = 0, ckpt = 0;
        uint64_t dirty = restart ? db_unwritten_pages(s) : 0;
        usec_t t0 = now_monotonic();
        int rc = passive_on(s, s->db, &log, &ckpt);
        usec_t took = now_monotonic() - t0;
        pthread_mutex_lock(&s->clock);
        if (rc == SQLITE_OK) {
                if (restart && !over)
                        s->ccapped++;
                else
                        s->cinline++;
                s->cstall_total += took;
                if (took > s->cstall_max)
                        s->cstall_max = took;
                if (restart && (dirty > s->cdirty_max || dirty == UINT64_MAX))
                        s->cdirty_max = dirty;
                if (restart)
                        s->crestart_syncs_max = MAX(s->crestart_syncs_max, store_vfs_syncs() - s->crestart_syncs0);
                /* Everything is copied (we hold the writers' lock): the
                 * next write restarts the WAL. */
                s->cdone = ckpt;
        }
        s->crestart = false;
        pthread_mutex_unlock(&s->clock);
}

void store_checkpointer_stop(Store *s) {
        if (!s->cinit)
                return;
        if (s->cstarted) {
                pthread_mutex_lock(&s->clock);
                s->cstop = true;
                pthread_mutex_unlock(&s->clock);
                pthread_cond_signal(&s->ccond);
                pthread_join(s->checkpointer, NULL);
                /* Back to SQLite's own: the close's checkpoint, and any
                 * write made after this. */
                sqlite3_wal_autocheckpoint(s->db, STORE_CKPT_PAGES);
                sqlite3_close_v2(s->cdb);
                s->cdb = NULL;
                s->cstarted = false;
        }
        /* SQLite locks the database and the -shm file, never the WAL:
         * closing this descriptor drops none of its locks. */
        if (s->cfd_wal >= 0)
                close(s->cfd_wal);
        s->cfd_wal = -1;
        free(s->cwal_path);
        s->cwal_path = NULL;

        pthread_mutex_destroy(&s->clock);
        pthread_mutex_destroy(&s->crun);
        pthread_cond_destroy(&s->ccond);
        s->cinit = false;
}

void store_checkpointer_release(Store *s) {
        if (s->cfd_db >= 0)
                close(s->cfd_db);
        s->cfd_db = -1;
}

void store_checkpoint_stats(Store *s, StoreCheckpointStats *ret) {
        assert(s && ret);
        *ret = (StoreCheckpointStats) {};
        if (!s->cinit)
                return;
        pthread_mutex_lock(&s->clock);
        ret->checkpoints = s->checkpoints;
        ret->capped = s->ccapped;
        ret->inline_checkpoints = s->cinline;
        ret->stall_total_usec = s->cstall_total;
        ret->stall_max_usec = s->cstall_max;
        ret->restart_dirty_max = s->cdirty_max;
        ret->db_syncs = s->cdb_syncs;
        ret->db_sync_copied_max = s->cdb_copied_max;
        ret->db_sync_found_max = s->cdb_found_max;
        ret->restart_tail_passes_max = s->ctail_max;
        ret->restart_syncs_max = s->crestart_syncs_max;
        ret->restart_pass_frames_max = s->crestart_frames_max;
        ret->db_tick_gap_max_usec = s->cdb_tick_gap_max;
        ret->db_writeback_ranges = s->cdb_ranges;
        ret->db_writeback_bytes = s->cdb_range_bytes;
        pthread_mutex_unlock(&s->clock);
}
