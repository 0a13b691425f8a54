/* The janitor: finishes run sandboxes (kill the leftovers, remove the
 * cgroups) on its own thread, so a run's result is not held back by the
 * kernel tearing its processes down; once a second it also reaps dead
 * workers and applies the pool's idle timeouts and instance TTLs (the tick
 * engine.c sets: this file knows nothing of the pool). Started on first
 * use; engine_free() drains it, so nothing outlives the engine. */
#include <poll.h>
#include <time.h>

#include "engine-internal.h"

typedef struct JanitorItem {
        JanitorWork work;
        void *arg;
        bool optional; /* dropped, not done inline, when there is no thread */
        bool first;    /* ahead of every item not first (a spare to make) */
        struct JanitorItem *next;
} JanitorItem;

#define REAP_INTERVAL_USEC USEC_PER_SEC

static void *janitor_main(void *userdata) {
        Engine *e = userdata;
        usec_t next_reap = now_monotonic() + REAP_INTERVAL_USEC;
        pthread_mutex_lock(&e->janitor_lock);
        for (;;) {
                while (!e->janitor_queue && !e->janitor_stop) {
                        /* Now and then, even when nothing is queued: a worker
                         * that died while idle is noticed (and reaped: no
                         * [sbx-waiter] zombie) without waiting for a run. */
                        usec_t now = now_monotonic();
                        if (now >= next_reap) {
                                pthread_mutex_unlock(&e->janitor_lock);
                                /* Idle timeouts and instance TTLs fire on an
                                 * idle daemon too, one by one as they come
                                 * due, not all at once when traffic returns. */
                                if (e->janitor_tick)
                                        e->janitor_tick(e, NULL);
                                pthread_mutex_lock(&e->janitor_lock);
                                next_reap = now_monotonic() + REAP_INTERVAL_USEC;
                                continue;
                        }
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        usec_t until = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000 + (next_reap - now);
                        ts = (struct timespec) { .tv_sec = (time_t) (until / USEC_PER_SEC),
                                                 .tv_nsec = (long) (until % USEC_PER_SEC) * 1000 };
                        (void) pthread_cond_timedwait(&e->janitor_wake, &e->janitor_lock, &ts);
                }
                JanitorItem *item = e->janitor_queue;
                if (!item)
                        break; /* stopping and drained */
                e->janitor_queue = item->next;
                pthread_mutex_unlock(&e->janitor_lock);
                item->work(e, item->arg);
                free(item);
                pthread_mutex_lock(&e->janitor_lock);
        }
        pthread_mutex_unlock(&e->janitor_lock);
        return NULL;
}

static void janitor_push(Engine *e, JanitorItem *item);

void engine_janitor_start(Engine *e) {
        pthread_mutex_lock(&e->janitor_lock);
        if (!e->janitor_running && !e->janitor_stop && pthread_create(&e->janitor, NULL, janitor_main, e) == 0)
                e->janitor_running = true;
        pthread_mutex_unlock(&e->janitor_lock);
}

static void finish_sandbox(Engine *e, void *rs) {
        (void) engine_sandbox_run_finish(rs);
}

void engine_janitor_finish(Engine *e, RunSandbox *rs) {
        if (rs)
                engine_janitor_defer(e, finish_sandbox, rs, false);
}

/* How long the janitor waits for the worker's report that a run's
 * processes are reaped before it kills what is left (the run answered:
 * what still runs gets no more than this, within its cgroup's limits). */
#define EXIT_REPORT_WAIT_MS 20

typedef struct FinishAfter {
        RunSandbox *rs;
        int exit_fd;
        usec_t deadline; /* monotonic: when the janitor stops waiting */
} FinishAfter;


/* A run that ended on its result's EOF is usually still exiting (an
 * address space torn down); its worker reports on exit_fd once the run's
 * child and its namespace's init are both reaped. Waiting for that report
 * (or the worker's end: EOF) first makes recycling its groups one empty
 * listing of cgroup.procs instead of a kill, list and 1 ms sleep a round
 * until the kernel is done (~3 rounds per run under wrk -c8). */
static void finish_sandbox_after(Engine *e, void *arg) {
        FinishAfter *f = arg;
        /* Work queued meanwhile (a spare to make for the next run,
         * another run to finish) is not held up: wait 1 ms at a time and
         * go to the back of the queue (alone, it comes straight back). */
        if (now_monotonic() < f->deadline) {
                struct pollfd pfd = { .fd = f->exit_fd, .events = POLLIN };
                if (poll(&pfd, 1, 1) == 0 && now_monotonic() < f->deadline) {
                        engine_janitor_defer(e, finish_sandbox_after, f, false);
                        return;
                }
        }
        (void) fd_close(f->exit_fd);
        (void) engine_sandbox_run_finish(f->rs);
        free(f);
}

void engine_janitor_finish_after_exit(Engine *e, RunSandbox *rs, int exit_fd) {
        if (exit_fd < 0) {
                engine_janitor_finish(e, rs);
                return;
        }
        FinishAfter *f = xcalloc(1, sizeof(FinishAfter));
        *f = (FinishAfter) { rs, exit_fd, now_monotonic() + EXIT_REPORT_WAIT_MS * USEC_PER_MSEC };
        engine_janitor_defer(e, finish_sandbox_after, f, false);
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
        if (!e->janitor_running && !e->janitor_stop) {
                if (pthread_create(&e->janitor, NULL, janitor_main, e) == 0)
                        e->janitor_running = true;
        }
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
        pthread_cond_signal(&e->janitor_wake);
        pthread_mutex_unlock(&e->janitor_lock);
}

void engine_janitor_stop(Engine *e) {
        pthread_mutex_lock(&e->janitor_lock);
        e->janitor_stop = true;
        bool running = e->janitor_running;
        pthread_cond_signal(&e->janitor_wake);
        pthread_mutex_unlock(&e->janitor_lock);
        if (running)
                pthread_join(e->janitor, NULL);
        e->janitor_running = false;
}
