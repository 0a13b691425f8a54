/* The janitor: finishes run sandboxes (kill the leftovers, remove the
 * cgroups) on its own thread, so a run's result is not held back by the
 * kernel tearing its processes down; once a second it also reaps dead
 * workers and applies the pool's idle timeouts and instance TTLs (the tick
 * engine.c sets: this file knows nothing of the pool). Started on first
 * use; engine_free() drains it, so nothing outlives the engine. */
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>

#include "engine-internal.h"

typedef struct JanitorItem {
        JanitorWork work;
        void *arg;
        bool optional; /* dropped, not done inline, when there is no thread */
        bool first;    /* ahead of every item not first (a spare to make) */
        struct JanitorItem *next;
} JanitorItem;

/* How long the janitor waits for the worker's report that a run's
 * processes are reaped before it kills what is left (the run answered:
 * what still runs gets no more than this, within its cgroup's limits). */
#define EXIT_REPORT_WAIT_MS 20

/* A finished run waiting for its exit report (Engine.janitor_waits). */
typedef struct FinishAfter {
        RunSandbox *rs;
        int exit_fd;
        usec_t deadline; /* monotonic: when the janitor stops waiting */
        struct FinishAfter *next;
} FinishAfter;

#define REAP_INTERVAL_USEC USEC_PER_SEC
/* While work is queued, the waiting runs' reports are looked at (without
 * waiting) at most this often, between items. */
#define WAITS_CHECK_USEC USEC_PER_MSEC

/* The janitor thread's poll arrays, grown to the most runs ever waiting
 * at once (about the runs in flight); freed when the thread ends. */
static __thread struct pollfd *poll_fds;
static __thread FinishAfter **poll_runs;
static __thread size_t poll_room;

static void finish_after(FinishAfter *f) {
        (void) fd_close(f->exit_fd);
        (void) engine_sandbox_run_finish(f->rs);
        free(f);
}

/* One poll() over the runs waiting for their exit report (and the wake
 * eventfd), then the runs that reported (or whose worker is gone: EOF) or
 * whose grace has passed are finished, the reported first. Called and
 * returns with the janitor lock held; drops it around the poll and the
 * finishes. timeout_ms 0: a look, no wait; else at most until the nearest
 * grace ends. */
static void janitor_poll_waits(Engine *e, int timeout_ms) {
        struct pollfd *pfd;
        FinishAfter **polled;
        size_t n = 1;
        for (FinishAfter *f = e->janitor_waits; f; f = f->next)
                n++;
        if (n > poll_room) {
                poll_room = MAX(n, poll_room * 2);
                poll_fds = xrealloc(poll_fds, poll_room * sizeof(*poll_fds));
                poll_runs = xrealloc(poll_runs, poll_room * sizeof(*poll_runs));
        }
        pfd = poll_fds;
        polled = poll_runs;
        n = 0;
        pfd[n++] = (struct pollfd) { .fd = e->janitor_wake_fd, .events = POLLIN };
        usec_t now = now_monotonic(), nearest = UINT64_MAX;
        for (FinishAfter *f = e->janitor_waits; f; f = f->next) {
                polled[n - 1] = f;
                pfd[n++] = (struct pollfd) { .fd = f->exit_fd, .events = POLLIN };
                nearest = MIN(nearest, f->deadline);
        }
        if (timeout_ms > 0 && nearest != UINT64_MAX)
                timeout_ms = nearest <= now ? 0 : (int) MIN((nearest - now + 999) / 1000, (usec_t) timeout_ms);
        e->janitor_polling = timeout_ms != 0;
        pthread_mutex_unlock(&e->janitor_lock);
        int k = poll(pfd, n, timeout_ms);
        if (k > 0 && pfd[0].revents) {
                uint64_t v;
                (void) !read(e->janitor_wake_fd, &v, sizeof(v));
        }
        now = now_monotonic();
        pthread_mutex_lock(&e->janitor_lock);
        e->janitor_polling = false;
        /* Take the done ones off the list (only this thread removes from
         * it; others append), the reported first, then the expired. */
        FinishAfter *done = NULL, **tail = &done, *expired = NULL, **etail = &expired;
        for (size_t i = 1; i < n; i++) {
                FinishAfter *f = polled[i - 1];
                bool reported = k > 0 && pfd[i].revents;
                if (!reported && f->deadline > now)
                        continue;
                for (FinishAfter **p = &e->janitor_waits; *p; p = &(*p)->next)
                        if (*p == f) {
                                *p = f->next;
                                break;
                        }
                f->next = NULL;
                if (reported) {
                        *tail = f;
                        tail = &f->next;
                } else {
                        *etail = f;
                        etail = &f->next;
                }
        }
        *tail = expired;
        if (!done)
                return;
        pthread_mutex_unlock(&e->janitor_lock);
        while (done) {
                FinishAfter *f = done;
                done = f->next;
                finish_after(f);
        }
        pthread_mutex_lock(&e->janitor_lock);
}

static void *janitor_main(void *userdata) {
        Engine *e = userdata;
        (void) pthread_setname_np(pthread_self(), "janitor");
        usec_t next_reap = now_monotonic() + REAP_INTERVAL_USEC, last_check = 0;
        pthread_mutex_lock(&e->janitor_lock);
        for (;;) {
                /* Now and then, even when nothing is queued: a worker that
                 * died while idle is noticed (and reaped: no [sbx-waiter]
                 * zombie) without waiting for a run. Idle timeouts and
                 * instance TTLs fire on an idle daemon too, one by one as
                 * they come due, not all at once when traffic returns. */
                usec_t now = now_monotonic();
                if (now >= next_reap && !e->janitor_queue && !e->janitor_stop) {
                        pthread_mutex_unlock(&e->janitor_lock);
                        if (e->janitor_tick)
                                e->janitor_tick(e, NULL);
                        pthread_mutex_lock(&e->janitor_lock);
                        next_reap = now_monotonic() + REAP_INTERVAL_USEC;
                        continue;
                }
                if (e->janitor_waits && !e->janitor_stop &&
                    (!e->janitor_queue || now - last_check >= WAITS_CHECK_USEC)) {
                        /* Blocking only when nothing is queued: new work or
                         * a new waiting run wakes it (the eventfd). */
                        int timeout = e->janitor_queue ? 0 : (int) MAX((next_reap - now + 999) / 1000, (usec_t) 1);
                        janitor_poll_waits(e, timeout);
                        last_check = now_monotonic();
                        continue;
                }
                JanitorItem *item = e->janitor_queue;
                if (item) {
                        e->janitor_queue = item->next;
                        pthread_mutex_unlock(&e->janitor_lock);
                        item->work(e, item->arg);
                        free(item);
                        pthread_mutex_lock(&e->janitor_lock);
                        continue;
                }
                if (e->janitor_stop)
                        break; /* stopping, queue drained: the waits go below */
                if (next_reap > now)
                        (void) cond_wait_usec(&e->janitor_wake, &e->janitor_lock, next_reap - now);
        }
        /* Stopping: the runs still waiting for their report are finished
         * now (what is left of them killed, their cgroups removed). */
        FinishAfter *waits = TAKE_PTR(e->janitor_waits);
        pthread_mutex_unlock(&e->janitor_lock);
        while (waits) {
                FinishAfter *f = waits;
                waits = f->next;
                finish_after(f);
        }
        free(poll_fds);
        poll_fds = NULL;
        free(poll_runs);
        poll_runs = NULL;
        poll_room = 0;
        return NULL;
}

/* Starts the thread; with the janitor lock held. */
static void janitor_spawn(Engine *e) {
        if (e->janitor_running || e->janitor_stop)
                return;
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
                return; /* no thread: the work is done inline */
        e->janitor_wake_fd = fd;
        if (pthread_create(&e->janitor, NULL, janitor_main, e) == 0)
                e->janitor_running = true;
        else
                e->janitor_wake_fd = fd_close(e->janitor_wake_fd);
}

/* Wakes the thread for new work; with the janitor lock held. */
static void janitor_wake(Engine *e) {
        if (e->janitor_polling) {
                uint64_t one = 1;
                (void) !write(e->janitor_wake_fd, &one, sizeof(one));
        } else
                pthread_cond_signal(&e->janitor_wake);
}

static void janitor_push(Engine *e, JanitorItem *item);

void engine_janitor_start(Engine *e) {
        pthread_mutex_lock(&e->janitor_lock);
        janitor_spawn(e);
        pthread_mutex_unlock(&e->janitor_lock);
}

static void finish_sandbox(Engine *e, void *rs) {
        (void) engine_sandbox_run_finish(rs);
}

void engine_janitor_finish(Engine *e, RunSandbox *rs) {
        if (rs)
                engine_janitor_defer(e, finish_sandbox, rs, false);
}

/* A run that ended on its result's EOF is usually still exiting (an
 * address space torn down); its worker reports on exit_fd once the run's
 * child and its namespace's init are both reaped. Waiting for that report
 * (or the worker's end: EOF) first makes recycling its groups one empty
 * listing of cgroup.procs instead of a kill, list and 1 ms sleep a round
 * until the kernel is done (~3 rounds per run under wrk -c8). The janitor
 * waits for all such runs in one poll() (janitor_poll_waits()), between
 * and after its other work: a report is acted on when it comes, not when
 * the run's turn in a queue of 1 ms polls comes round (round 7). */
void engine_janitor_finish_after_exit(Engine *e, RunSandbox *rs, int exit_fd) {
        if (exit_fd < 0) {
                engine_janitor_finish(e, rs);
                return;
        }
        usec_t wait = e->exit_report_wait_usec ? e->exit_report_wait_usec : EXIT_REPORT_WAIT_MS * USEC_PER_MSEC;
        FinishAfter *f = xcalloc(1, sizeof(FinishAfter));
        *f = (FinishAfter) { rs, exit_fd, now_monotonic() + wait, NULL };
        pthread_mutex_lock(&e->janitor_lock);
        janitor_spawn(e);
        if (!e->janitor_running) {
                /* No thread (or stopping): finish here, without waiting. */
                pthread_mutex_unlock(&e->janitor_lock);
                finish_after(f);
                return;
        }
        /* Appended: the list is in hand-off order. */
        FinishAfter **p = &e->janitor_waits;
        while (*p)
                p = &(*p)->next;
        *p = f;
        janitor_wake(e);
        pthread_mutex_unlock(&e->janitor_lock);
}

void engine_janitor_defer(Engine *e, JanitorWork work, void *arg, bool optional) {
        JanitorItem *item = xcalloc(1, sizeof(JanitorItem));
        *item = (JanitorItem) { .work = work, .arg = arg, .optional = optional };
        janitor_push(e, item);
}

void engine_janitor_defer_first(Engine *e, JanitorWork work, void *arg) {
        JanitorItem *item = xcalloc(1, sizeof(JanitorItem));
        *item = (JanitorItem) { .work = work, .arg = arg, .optional = true, .first = true };
        janitor_push(e, item);
}

static void janitor_push(Engine *e, JanitorItem *item) {
        pthread_mutex_lock(&e->janitor_lock);
        janitor_spawn(e);
        if (!e->janitor_running) {
                /* No thread (or stopping): do it here, late but done. */
                pthread_mutex_unlock(&e->janitor_lock);
                /* Optional work (a spare slot) is not done without the
                 * thread (the engine is stopping); the caller may hold a
                 * lock that doing it needs. */
                if (!item->optional)
                        item->work(e, item->arg);
                free(item);
                return;
        }
        /* FIFO: append; a first item after the first items already queued,
         * ahead of the rest. */
        JanitorItem **p = &e->janitor_queue;
        while (*p && (!item->first || (*p)->first))
                p = &(*p)->next;
        item->next = *p;
        *p = item;
        janitor_wake(e);
        pthread_mutex_unlock(&e->janitor_lock);
}

void engine_janitor_stop(Engine *e) {
        pthread_mutex_lock(&e->janitor_lock);
        e->janitor_stop = true;
        bool running = e->janitor_running;
        if (running)
                janitor_wake(e);
        pthread_mutex_unlock(&e->janitor_lock);
        if (running) {
                pthread_join(e->janitor, NULL);
                e->janitor_wake_fd = fd_close(e->janitor_wake_fd);
        }
        e->janitor_running = false;
}
