/* Suspended connections (docs/ARCHITECTURE.md "Connections").
 *
 * libmicrohttpd runs a small pool of epoll threads (server.http_threads);
 * no handler may block one of them for long (the one bounded exception: a
 * warm invoke begun on its HTTP thread is watched there for at most 1 ms,
 * daemon-runs.c run_inline()). A request that waits — ?wait=true, a
 * synchronous invoke, a log follower with nothing new to send — suspends
 * its connection here (MHD_suspend_connection) and is resumed
 * (MHD_resume_connection) by the first of:
 *   - an event on what it waits for (daemon_wait_kick(key), called where a
 *     run or a DAG changes; a NULL key wakes only waiters of "any change"),
 *   - its deadline (one watcher thread keeps every deadline),
 *   - its client hanging up (the watcher polls the suspended sockets for
 *     POLLRDHUP: MHD does not see a disconnect while suspended),
 *   - the daemon stopping (daemon_wait_drain()).
 * The resumed connection's MHD thread then looks again (the access handler
 * or content reader is called again) and either answers or parks again.
 *
 * Lost wakeups: a caller takes daemon_wait_arm()'s generation before it
 * looks at its condition; daemon_wait_park() refuses to suspend when a kick
 * came in between, and the caller looks again.
 *
 * A kick nobody can be waiting for takes no lock: a run's every phase is
 * kicked (for its log followers) while the invoke that submitted it is
 * parking under W.lock, and the run thread would wait for that lock (a
 * futex wait and wake, a context switch) to find no waiter of its key.
 * Parked waiters are counted per hash of their key (NULL: "any change",
 * counted apart); a parker counts itself before it compares generations
 * and a kicker bumps the generation before it reads the counts, both
 * sequentially consistent, so either the kicker sees the parker's count
 * (and takes the lock path) or the parker sees the new generation (and
 * looks again). */
#include <assert.h>
#include <microhttpd.h>
#include <poll.h>
#include <sys/eventfd.h>

#include "daemon.h"

static struct {
        pthread_mutex_t lock;
        pthread_cond_t idle;            /* users dropped (the drain waits) */
        DaemonWaiter *head;             /* parked (suspended) waiters */
        uint64_t gen;                   /* kicks so far */
        uint64_t next_id;
        unsigned parked;
        unsigned keyed[64];             /* parked or parking, by key_slot(); atomic */
        unsigned users;                 /* initialized, not yet done */
        bool draining;
        bool stop;
        bool running;
        int efd;                        /* wakes the watcher: a new waiter's deadline comes first */
        usec_t watcher_wakes;           /* when the watcher's poll() ends at the latest */
        pthread_t thread;
} W = { .lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER, .efd = -1 };

/* Waiters of "any change" (NULL) have their own slot: every kick wakes them. */
static unsigned *key_slot(const void *key) {
        if (!key)
                return &W.keyed[0];
        uintptr_t h = (uintptr_t) key;
        h ^= h >> 17;
        h *= 0x9E3779B97F4A7C15ULL;
        return &W.keyed[1 + (h >> 58) % (ELEMENTSOF(W.keyed) - 1)];
}

void daemon_waiter_init(DaemonWaiter *w) {
        *w = (DaemonWaiter) { .why = DAEMON_WAKE_EVENT, .fd = -1 };
        pthread_mutex_lock(&W.lock);
        W.users++;
        pthread_mutex_unlock(&W.lock);
}

void daemon_waiter_done(DaemonWaiter *w) {
        pthread_mutex_lock(&W.lock);
        /* A parked waiter's connection cannot be closed, so its owner
         * cannot be freed: not reached. */
        assert(!w->parked);
        W.users--;
        pthread_cond_broadcast(&W.idle);
        pthread_mutex_unlock(&W.lock);
}

uint64_t daemon_wait_arm(void) {
        return __atomic_load_n(&W.gen, __ATOMIC_ACQUIRE);
}

/* W.lock held: w leaves the parked list, woken for why. Returns its
 * connection for the caller to resume; w is not touched again (its owner
 * may free it as soon as its connection runs again). No one else resumes
 * it: it is no longer in the list. */
static struct MHD_Connection *unpark_locked(DaemonWaiter *w, DaemonWake why) {
        if (w->prev)
                w->prev->next = w->next;
        else
                W.head = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->prev = w->next = NULL;
        w->parked = false;
        w->why = why;
        W.parked--;
        __atomic_sub_fetch(key_slot(w->key), 1, __ATOMIC_SEQ_CST);
        return w->conn;
}

/* W.lock held: unpark_locked() and the resume (the watcher's deadlines and
 * hang-ups, a few per second). */
static void wake_locked(DaemonWaiter *w, DaemonWake why) {
        MHD_resume_connection(unpark_locked(w, why));
}

bool daemon_wait_park(DaemonWaiter *w, struct MHD_Connection *conn, const void *key, uint64_t gen,
                      usec_t deadline) {
        assert(w && conn);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        unsigned *slot = key_slot(key);
        __atomic_add_fetch(slot, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&W.lock);
        if (W.draining)
                w->why = DAEMON_WAKE_DRAIN;
        else if (__atomic_load_n(&W.gen, __ATOMIC_SEQ_CST) != gen)
                w->why = DAEMON_WAKE_EVENT;
        else if (deadline > 0 && now_monotonic() >= deadline)
                w->why = DAEMON_WAKE_TIMEOUT;
        else {
                w->conn = conn;
                w->key = key;
                w->deadline = deadline;
                w->fd = ci ? ci->connect_fd : -1;
                w->id = ++W.next_id;
                w->parked = true;
                w->why = DAEMON_WAKE_NONE;
                w->prev = NULL;
                w->next = W.head;
                if (W.head)
                        W.head->prev = w;
                W.head = w;
                W.parked++;
                /* Under W.lock: a kick cannot resume it before it is
                 * suspended (MHD: undefined behaviour). */
                MHD_suspend_connection(conn);
                /* The watcher looks at new sockets within a second anyway;
                 * it is woken (a context switch per wait) only for a
                 * deadline before its own. */
                bool signal = deadline > 0 && deadline < W.watcher_wakes;
                pthread_mutex_unlock(&W.lock);
                uint64_t one = 1;
                if (signal && W.efd >= 0)
                        (void) !write(W.efd, &one, sizeof(one));
                return true;
        }
        __atomic_sub_fetch(slot, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&W.lock);
        return false;
}

void daemon_wait_kick(const void *key) {
        __atomic_add_fetch(&W.gen, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(key_slot(NULL), __ATOMIC_SEQ_CST) == 0 &&
            (!key || __atomic_load_n(key_slot(key), __ATOMIC_SEQ_CST) == 0))
                return; /* nobody parked (or parking) who could want it */
        /* The resumes after W.lock is dropped: a resumed connection's MHD
         * thread wakes at once and takes W.lock itself (its waiter's end,
         * or its next park); resumed under the lock, it found it held and
         * slept on it until we let go: a futex wait and wake and a context
         * switch per resumed invoke (docs/internals/performance-log.md "Invoke path: the
         * kernel's share per invoke (round 11)"). In passes of KICK_BATCH
         * waiters. */
        enum { KICK_BATCH = 32 };
        struct MHD_Connection *resume[KICK_BATCH];
        size_t n;
        do {
                n = 0;
                pthread_mutex_lock(&W.lock);
                for (DaemonWaiter *w = W.head, *next; w && n < KICK_BATCH; w = next) {
                        next = w->next;
                        if (!w->key || (key && w->key == key))
                                resume[n++] = unpark_locked(w, DAEMON_WAKE_EVENT);
                }
                pthread_mutex_unlock(&W.lock);
                for (size_t i = 0; i < n; i++)
                        MHD_resume_connection(resume[i]);
        } while (n == KICK_BATCH);
}

unsigned daemon_wait_count(void) {
        pthread_mutex_lock(&W.lock);
        unsigned n = W.users;
        pthread_mutex_unlock(&W.lock);
        return n;
}

/* The watcher: deadlines and hang-ups of parked waiters. One poll() over
 * every parked socket plus the eventfd a new waiter writes to. */
static void *watcher(void *arg) {
        (void) pthread_setname_np(pthread_self(), "wait-deadlines");
        struct pollfd *p = NULL;
        uint64_t *ids = NULL;
        size_t alloc = 0;

        pthread_mutex_lock(&W.lock);
        while (!W.stop) {
                if (alloc < W.parked + 1) {
                        alloc = (W.parked + 1) * 2;
                        p = xrealloc(p, alloc * sizeof(*p));
                        ids = xrealloc(ids, alloc * sizeof(*ids));
                }
                usec_t now = now_monotonic(), next = now + USEC_PER_SEC;
                size_t n = 1;
                p[0] = (struct pollfd) { .fd = W.efd, .events = POLLIN };
                for (DaemonWaiter *w = W.head; w; w = w->next) {
                        if (w->deadline > 0 && w->deadline < next)
                                next = w->deadline;
                        if (w->fd < 0)
                                continue;
                        p[n] = (struct pollfd) { .fd = w->fd, .events = POLLRDHUP };
                        ids[n] = w->id;
                        n++;
                }
                W.watcher_wakes = next;
                pthread_mutex_unlock(&W.lock);
                int ms = next > now ? (int) ((next - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC) : 0;
                int k = poll(p, n, ms);
                if (k > 0 && (p[0].revents & POLLIN)) {
                        uint64_t x;
                        (void) !read(W.efd, &x, sizeof(x));
                }
                pthread_mutex_lock(&W.lock);
                /* A hung-up socket's waiter, found by id: the fd number may
                 * belong to another connection by now. */
                for (size_t i = 1; k > 0 && i < n; i++) {
                        if (!(p[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
                                continue;
                        for (DaemonWaiter *w = W.head; w; w = w->next)
                                if (w->id == ids[i]) {
                                        wake_locked(w, DAEMON_WAKE_GONE);
                                        break;
                                }
                }
                now = now_monotonic();
                for (DaemonWaiter *w = W.head, *nx; w; w = nx) {
                        nx = w->next;
                        if (w->deadline > 0 && w->deadline <= now)
                                wake_locked(w, DAEMON_WAKE_TIMEOUT);
                }
        }
        pthread_mutex_unlock(&W.lock);
        free(p);
        free(ids);
        return NULL;
}

int daemon_wait_start(void) {
        if (W.running)
                return 0;
        W.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (W.efd < 0)
                return -errno;
        W.stop = false;
        W.draining = false;
        int k = pthread_create(&W.thread, NULL, watcher, NULL);
        if (k != 0) {
                close(W.efd);
                W.efd = -1;
                return -k;
        }
        W.running = true;
        return 0;
}

void daemon_wait_drain(usec_t timeout) {
        usec_t until = now_monotonic() + timeout;
        pthread_mutex_lock(&W.lock);
        W.draining = true;
        while (W.head)
                wake_locked(W.head, DAEMON_WAKE_DRAIN);
        /* Each resumed request answers (or ends its stream); its owner is
         * done once the answer was sent. */
        while (W.users > 0 && now_monotonic() < until) {
                cond_wait_usec(&W.idle, &W.lock, 50 * USEC_PER_MSEC);
                while (W.head) /* parked just before the flag was seen */
                        wake_locked(W.head, DAEMON_WAKE_DRAIN);
        }
        if (W.users > 0)
                log_warn("%u waiting request(s) did not finish answering before the stop", W.users);
        pthread_mutex_unlock(&W.lock);
}

void daemon_wait_stop(void) {
        if (!W.running)
                return;
        pthread_mutex_lock(&W.lock);
        W.stop = true;
        pthread_mutex_unlock(&W.lock);
        uint64_t one = 1;
        (void) !write(W.efd, &one, sizeof(one));
        pthread_join(W.thread, NULL);
        close(W.efd);
        W.efd = -1;
        W.running = false;
}
