/* The store writer's priority (round 13): the writer thread's own batches
 * run at SCHED_IDLE.
 * A journal batch is ~2-3 ms of CPU that nobody waits for, and a warm
 * instance woken onto the CPU it holds waited for all of it: the woken
 * instance (its own cpu cgroup's entity) does not preempt a normal thread
 * that just woke, and the idle other CPU does not pull it (cache-hot).
 * That wait was the -c1 p99. A SCHED_IDLE thread yields at once to any
 * other that wakes. Measured on one daemon, the writer switched with chrt
 * between 4 s wrk phases (docs/performance.md "Where issue 15 stands (end
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
 * that grows past STORE_JOURNAL_BEHIND_RECORDS (store-writer.c) while the
 * batch is starved raises it too. Only where the process may raise a
 * thread's priority back (CAP_SYS_NICE or RLIMIT_NICE: may_lower());
 * else it runs as before. */
#include <pthread.h>
#include <sched.h>

#include "shared.h"
#include "store-internal.h"

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

/* The writer thread, in its batch, s->lock held: lowered unless someone
 * waits for it. */
void store_writer_lower(Store *s) {
        if (!may_lower())
                return;
        pthread_mutex_lock(&s->wprio);
        if (__atomic_load_n(&s->wprio_waiters, __ATOMIC_SEQ_CST) == 0 && !s->wlowered)
                s->wlowered = store_thread_set_policy(0, SCHED_IDLE);
        pthread_mutex_unlock(&s->wprio);
}

/* Normal priority back for the writer thread, if it is lowered: from any
 * thread. */
void store_writer_raise(Store *s) {
        pthread_mutex_lock(&s->wprio);
        if (s->wlowered && s->wtid > 0 && store_thread_set_policy(s->wtid, SCHED_OTHER))
                s->wlowered = false;
        pthread_mutex_unlock(&s->wprio);
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
