/* The store writer's priority (round 13): the writer thread's own batches
 * run at SCHED_IDLE.
 * A journal batch is ~2-3 ms of CPU that nobody waits for, and a warm
 * instance woken onto the CPU it holds waited for all of it: the woken
 * instance (its own cpu cgroup's entity) does not preempt a normal thread
 * that just woke, and the idle other CPU does not pull it (cache-hot).
 * That wait was the -c1 p99. A SCHED_IDLE thread yields at once to any
 * other that wakes. Measured on one daemon, the writer switched with chrt
 * between 4 s wrk phases (docs/internals/performance-log.md "Where issue 15 stands (end
 * of round 13)"): -c1 p99 1.85-1.88 -> 1.16-1.49 ms on tmpfs, 1.98-2.05 ->
 * 1.58-1.84 ms on a disk home; -c8 p99 on tmpfs 3.83-4.03 -> 1.84-2.76 ms.
 *
 * A thread at SCHED_IDLE may get no CPU while others want it all, so it
 * must never hold up anyone: it lowers itself only inside its batch,
 * after it holds the connection (s->lock), and only while nobody waits
 * for it; whoever then waits for it (for s->lock in store_lock(), for the
 * commit under way in store-writer.c) first gives it normal priority back
 * (store_writer_raise()), and it rises again after the batch. wprio_waiters
 * counts those threads before they look: either the writer sees them before it
 * lowers itself, or they see it lowered (wprio orders the two). A journal
 * that grows past STORE_JOURNAL_BEHIND_BATCHES batches (store-writer.c) while the
 * batch is starved raises it too. Only where the process may raise a
 * thread's priority back (CAP_SYS_NICE or RLIMIT_NICE: may_lower());
 * else it runs as before.
 *
 * The starvation bound (round 14): with the CPUs full of other work (ad-hoc
 * runs) and nobody in the daemon waiting, nothing above would raise the
 * batch, and other processes (pysprinterd backup) would see answered runs
 * `running` for as long as it starves. So a batch lowered for
 * STORE_STARVE_BOUND_USEC gets normal priority back whatever happens: a
 * guard thread at normal priority (it gets CPU under full load; the
 * writer, the starved one, cannot raise itself, and journal appends do not
 * come with ad-hoc load) sleeps in read(2) on a timerfd that the writer
 * arms when it lowers itself and that a raise disarms: two timerfd_settime
 * calls per lowered batch, and the guard wakes only when a batch was
 * lowered for the whole bound (~1 per 1000 invokes under wrk -c1 and -c8).
 * An idle store never arms it. A guard woken by a condition variable at
 * each lowering and at each deadline cost ~190 wake-ups a second under
 * load (docs/internals/performance-log.md, round 14). The writer changes its own policy
 * only without wprio held (lowered after it, raised before it): a thread
 * at SCHED_IDLE holding wprio would hold up the guard and every waiter.
 * wlowered is cleared before a raise's policy change and read after the
 * lowering's, so a raise that comes in between is never lost.
 *
 * The offer (round 14, tail14): a thread woken onto the lowered batch's
 * CPU was not always switched to at its wake-up (the instance's group
 * entity not eligible then, by the figures), and then waited until the
 * batch's next reschedule: its policy raise at the end, or the tick, ~1 ms
 * each, the largest part of the -c1 p99. So the lowered batch calls
 * sched_yield(2) every few records (store_writer_yield()): a reschedule
 * point that costs one syscall when nobody waits (docs/internals/performance-log.md
 * "Invoke path: the slowest 1% (round 14)"). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "shared.h"
#include "store-internal.h"

/* The batch's own CPU is 2-3 ms; it is lowered for the wake-ups it lets
 * pass, which come within a few ms of each other under -c8. 15 ms keeps
 * the journal's ~50 ms promise to other processes with room for the
 * batch itself (docs/internals/performance-log.md, round 14). */
#define STORE_STARVE_BOUND_USEC (15 * USEC_PER_MSEC)

bool store_thread_set_policy(pid_t tid, int policy) {
        struct sched_param sp = {};
        return sched_setscheduler(tid, policy, &sp) == 0;
}

static bool lowering_allowed;

static void *lower_probe(void *p) {
        (void) p;
        lowering_allowed = store_thread_set_policy(0, SCHED_IDLE) && store_thread_set_policy(0, SCHED_OTHER);
        return NULL;
}

/* Whether a thread of this process may go to SCHED_IDLE and come back:
 * tried once, on a thread of its own (stuck at SCHED_IDLE if not). */
static void lower_probe_once(void) {
        pthread_t t;
        if (pthread_create(&t, NULL, lower_probe, NULL) == 0)
                (void) pthread_join(t, NULL);
}

static bool may_lower(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        (void) pthread_once(&once, lower_probe_once);
        return lowering_allowed;
}

/* With wprio held: the guard's timer due in usec (0: disarmed). */
static void guard_arm_locked(Store *s, usec_t usec) {
        struct itimerspec it = {
                .it_value = { .tv_sec = (time_t) (usec / USEC_PER_SEC), .tv_nsec = (long) (usec % USEC_PER_SEC) * 1000 },
        };
        (void) timerfd_settime(s->wguard_fd, 0, &it, NULL);
}

/* The writer thread: whether it lowered itself and has not raised itself
 * since. */
static __thread bool lowered_self;

/* With wprio held: wlowered cleared before the policy is set, so that a
 * writer that lowers itself after this call sees it and raises itself
 * back (store_writer_lower()). */
static void raise_locked(Store *s) {
        if (!s->wlowered || s->wtid <= 0)
                return;
        __atomic_store_n(&s->wlowered, false, __ATOMIC_SEQ_CST);
        if (store_thread_set_policy(s->wtid, SCHED_OTHER))
                guard_arm_locked(s, 0);
        else
                __atomic_store_n(&s->wlowered, true, __ATOMIC_SEQ_CST);
}

static usec_t starve_bound(Store *s) {
        return s->wstarve_bound ?: STORE_STARVE_BOUND_USEC;
}

/* The guard: asleep in read(2) on its timer, armed only while a batch
 * runs lowered; raises the batch when it fires. */
static void *guard_main(void *p) {
        Store *s = p;
        for (;;) {
                uint64_t expirations;
                if (read(s->wguard_fd, &expirations, sizeof expirations) < 0 && errno != EINTR)
                        break;
                pthread_mutex_lock(&s->wprio);
                bool stop = s->wguard_stop;
                usec_t now = now_monotonic(), due = s->wlowered_at + starve_bound(s);
                if (!stop && s->wlowered) {
                        if (now >= due) {
                                raise_locked(s);
                                s->wbound_raises++;
                        }
                        /* Not due yet (a batch lowered since the timer was
                         * armed), or refused (it should not be:
                         * may_lower()): looked at again later. */
                        if (s->wlowered)
                                guard_arm_locked(s, now >= due ? starve_bound(s) : due - now);
                }
                pthread_mutex_unlock(&s->wprio);
                if (stop)
                        break;
        }
        return NULL;
}

/* With wprio held, from the writer before its first lowering: the guard
 * and its timer, the guard at normal priority whatever the creating
 * thread's (explicit, not inherited). */
static bool guard_start_locked(Store *s) {
        if (s->wguard_started)
                return true;
        s->wguard_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
        if (s->wguard_fd < 0)
                return false;
        pthread_attr_t a;
        struct sched_param sp = {};
        if (pthread_attr_init(&a) == 0) {
                (void) pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
                (void) pthread_attr_setschedpolicy(&a, SCHED_OTHER);
                (void) pthread_attr_setschedparam(&a, &sp);
                s->wguard_started = pthread_create(&s->wguard, &a, guard_main, s) == 0;
                (void) pthread_attr_destroy(&a);
        }
        if (!s->wguard_started) {
                s->wguard_fd = fd_close(s->wguard_fd);
                return false;
        }
        /* Named: ps, perf and strace tell it from the writer. */
        (void) pthread_setname_np(s->wguard, "store-prio");
        return true;
}

void store_writer_guard_start(Store *s) {
        if (!may_lower())
                return;
        pthread_mutex_lock(&s->wprio);
        (void) guard_start_locked(s);
        pthread_mutex_unlock(&s->wprio);
}

/* The writer thread, in its batch, s->lock held: lowered unless someone
 * waits for it, and never without the guard that bounds it. */
void store_writer_lower(Store *s) {
        if (!may_lower())
                return;
        pthread_mutex_lock(&s->wprio);
        bool lower = __atomic_load_n(&s->wprio_waiters, __ATOMIC_SEQ_CST) == 0 && !s->wlowered &&
                     !s->wguard_stop && guard_start_locked(s);
        if (lower) {
                s->wlowered_at = now_monotonic();
                __atomic_store_n(&s->wlowered, true, __ATOMIC_SEQ_CST);
                guard_arm_locked(s, starve_bound(s));
        }
        pthread_mutex_unlock(&s->wprio);
        if (!lower)
                return;
        /* After wprio is released: a thread at SCHED_IDLE must hold no
         * lock that the guard or a waiter takes to raise it. */
        lowered_self = store_thread_set_policy(0, SCHED_IDLE);
        if (!lowered_self) {
                pthread_mutex_lock(&s->wprio);
                __atomic_store_n(&s->wlowered, false, __ATOMIC_SEQ_CST);
                guard_arm_locked(s, 0);
                pthread_mutex_unlock(&s->wprio);
        } else if (!__atomic_load_n(&s->wlowered, __ATOMIC_SEQ_CST)) {
                /* Raised in between (before the lowering took effect). */
                (void) store_thread_set_policy(0, SCHED_OTHER);
                lowered_self = false;
        }
}

/* Normal priority back for the writer thread, if it is lowered: from any
 * thread. The writer raises itself before it takes wprio, for the same
 * reason it lowers itself after. */
void store_writer_raise(Store *s) {
        if (lowered_self) {
                (void) store_thread_set_policy(0, SCHED_OTHER);
                lowered_self = false;
                pthread_mutex_lock(&s->wprio);
                if (s->wlowered) {
                        __atomic_store_n(&s->wlowered, false, __ATOMIC_SEQ_CST);
                        guard_arm_locked(s, 0);
                }
                pthread_mutex_unlock(&s->wprio);
                return;
        }
        pthread_mutex_lock(&s->wprio);
        raise_locked(s);
        pthread_mutex_unlock(&s->wprio);
}

/* The writer thread, in its batch, between two records: from the moment
 * it lowered itself to the batch's end, also once the guard or a waiter
 * has raised it. At normal priority a yield does not give up the batch's
 * fair share (EEVDF moves its deadline, not its vruntime); it only lets a
 * thread woken on its CPU run first. Under wrk -c8 the CPUs are full and
 * most lowered batches reach the bound: yielding only while still lowered
 * left their raised rest in one stretch (p99 -c8 /v1 2.69-2.70 ms against
 * 1.68-1.78, docs/internals/performance-log.md, round 14). */
void store_writer_yield(Store *s) {
        if (!lowered_self)
                return;
        (void) sched_yield();
        __atomic_add_fetch(&s->wyields, 1, __ATOMIC_RELAXED);
}

uint64_t store_writer_yields(Store *s) {
        return __atomic_load_n(&s->wyields, __ATOMIC_RELAXED);
}

void store_writer_guard_stop(Store *s) {
        pthread_mutex_lock(&s->wprio);
        bool started = s->wguard_started;
        s->wguard_stop = true;
        if (started)
                guard_arm_locked(s, 1); /* wakes it */
        pthread_mutex_unlock(&s->wprio);
        if (started) {
                pthread_join(s->wguard, NULL);
                s->wguard_fd = fd_close(s->wguard_fd);
        }
}

void store_writer_set_starve_bound(Store *s, usec_t bound) {
        pthread_mutex_lock(&s->wprio);
        s->wstarve_bound = bound;
        pthread_mutex_unlock(&s->wprio);
}

uint64_t store_writer_bound_raises(Store *s) {
        pthread_mutex_lock(&s->wprio);
        uint64_t n = s->wbound_raises;
        pthread_mutex_unlock(&s->wprio);
        return n;
}

/* Around a wait for the writer (s->lock, a commit): counted first, then
 * the writer raised if it is lowered. */
void store_writer_wait_begin(Store *s) {
        __atomic_add_fetch(&s->wprio_waiters, 1, __ATOMIC_SEQ_CST);
        store_writer_raise(s);
}

void store_writer_wait_end(Store *s) {
        __atomic_sub_fetch(&s->wprio_waiters, 1, __ATOMIC_SEQ_CST);
}

void store_lock(Store *s) {
        if (pthread_mutex_trylock(&s->lock) == 0)
                return;
        store_writer_wait_begin(s);
        pthread_mutex_lock(&s->lock);
        store_writer_wait_end(s);
}

pid_t store_writer_tid(Store *s) {
        pthread_mutex_lock(&s->wprio);
        pid_t tid = s->wtid;
        pthread_mutex_unlock(&s->wprio);
        return tid;
}
