/* Warm instances of deployed functions (DESIGN §6, Lambda's execution
 * environments): a child of the env's warm worker that ran the module once
 * and serves invocations on its own socket, so globals persist between
 * calls. Instances scale with concurrency up to a per-function maximum and
 * retire after an idle TTL. */
#include <assert.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "engine-internal.h"
#include "worker-proto.h"

#define INSTANCE_READY_TIMEOUT_USEC (120 * USEC_PER_SEC)
/* How long an idle instance stays thawed before the freezer freezes it
 * (docs/workers.md "Idle instances are frozen"): an instance invoked again
 * within it is neither frozen nor thawed (two cgroup writes, and the
 * re-check a thaw calls for, saved per invoke); its background threads may
 * run up to this long after a response. */
#define INSTANCE_FREEZE_GRACE_USEC (20 * USEC_PER_MSEC)

/* A thread waiting for an instance of key (all of key's at the maximum,
 * busy). Each waits on its own semaphore, so that a release wakes one
 * waiter that can use what was released instead of every thread waiting
 * for any instance or worker (round 8: at wrk -c8, 4 instances a function,
 * each release woke every waiter), and the instance released is handed
 * to it, still busy: the waiter neither takes the pool lock again (the
 * releaser holds it when it posts: a condition variable's waiter would
 * wake only to block on it) nor loses the instance to a thread that came
 * later. sem_post() may touch the semaphore after the waiter returned
 * from sem_wait() and left (glibc: at most a futex wake of a dead
 * address, harmless), as a mutex's unlock may. */
typedef struct InstanceWaiter {
        const char *key;
        int cancel_fd; /* its run's (engine_cancel() wakes it), or -EBADF */
        sem_t sem;
        Instance *handed;    /* given to us (busy), or NULL: look again */
        struct InstanceWaiter *next;
} InstanceWaiter;

/* Unlinks the first waiter of key (pool lock held), or NULL. */
static InstanceWaiter *waiter_take_locked(Engine *e, const char *key) {
        for (InstanceWaiter **p = &e->pool.instance_waiters; *p; p = &(*p)->next)
                if (streq((*p)->key, key)) {
                        InstanceWaiter *w = *p;
                        *p = w->next;
                        return w;
                }
        return NULL;
}

/* Wakes the first waiter of key to look again (pool lock held), or every
 * waiter of every key (key NULL: instances were retired by name): room to
 * start an instance, not one handed over. Each woken waiter leaves the
 * list, so two wakes wake two waiters. */
static void waiters_wake_locked(Engine *e, const char *key) {
        for (;;) {
                InstanceWaiter *w = key ? waiter_take_locked(e, key) : e->pool.instance_waiters;
                if (!w)
                        return;
                if (!key)
                        e->pool.instance_waiters = w->next;
                w->handed = NULL;
                (void) sem_post(&w->sem);
                if (key)
                        return;
        }
}

/* Hands i (busy, released by its holder) to the first waiter of its key
 * (pool lock held); false if none waits. */
static bool instance_hand_locked(Engine *e, Instance *i) {
        InstanceWaiter *w = waiter_take_locked(e, i->key);
        if (!w)
                return false;
        w->handed = i;
        (void) sem_post(&w->sem);
        return true;
}

/* Waits, pool lock held on entry, until a release hands us an instance of
 * key (returned busy, the pool lock NOT held) or a retirement or failed
 * start makes room (NULL, the lock held again: look again). again: we
 * were woken before and found nothing (another thread took the room
 * first): back at the head, not the tail. */
static Instance *waiter_wait_locked(Engine *e, const char *key, bool again, int cancel_fd) {
        InstanceWaiter w = { .key = key, .cancel_fd = cancel_fd };
        (void) sem_init(&w.sem, 0, 0);
        InstanceWaiter **p = &e->pool.instance_waiters;
        if (!again)
                while (*p)
                        p = &(*p)->next;
        w.next = *p;
        *p = &w;
        pthread_mutex_unlock(&e->pool.lock);
        while (sem_wait(&w.sem) < 0 && errno == EINTR)
                ;
        (void) sem_destroy(&w.sem);
        if (!w.handed)
                pthread_mutex_lock(&e->pool.lock);
        return w.handed;
}

/* engine-internal.h. A waiter woken here takes nothing: it finds its
 * cancel fd written and leaves. The caller wrote the fd before it took
 * the pool lock, and a waiter looks at its fd under that lock before it
 * joins the list: either it saw the write, or it is on the list now. */
void instance_waiters_cancel_locked(Engine *e) {
        for (InstanceWaiter **p = &e->pool.instance_waiters; *p;) {
                InstanceWaiter *w = *p;
                if (!cancel_asked(w->cancel_fd)) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                w->handed = NULL;
                (void) sem_post(&w->sem);
        }
}

Instance *instance_free(Instance *i) {
        if (!i)
                return NULL;
        /* Closing its socket ends the instance's serve loop; the sandbox
         * finish kills whatever is left of it. */
        i->sock = fd_close(i->sock);
        if (i->sandbox)
                i->sandbox = engine_sandbox_run_finish(i->sandbox);
        else if (i->pid > 0)
                (void) kill(i->pid, SIGKILL);
        i->status_fd = fd_close(i->status_fd);
        i->doom_fd = fd_close(i->doom_fd);
        i->parent_doom_fd = fd_close(i->parent_doom_fd);
        i->out_fd = fd_close(i->out_fd);
        i->err_fd = fd_close(i->err_fd);
        instance_output_free(&i->load_output);
        free(i->key);
        free(i);
        return NULL;
}

/* A record's header: its stream, the time of its first read, its length. */
typedef struct OutputRecord {
        int stream;
        usec_t ts;
        size_t len;
} OutputRecord;

void instance_output_free(InstanceOutput *o) {
        buf_free(&o->records);
        o->last = 0;
        o->bytes = 0;
}

bool instance_output_next(const InstanceOutput *o, size_t *pos, int *ret_stream, usec_t *ret_ts, const char **ret_data,
                          size_t *ret_len) {
        OutputRecord h;
        if (*pos + sizeof(h) > o->records.len)
                return false;
        memcpy(&h, o->records.data + *pos, sizeof(h));
        *ret_stream = h.stream;
        *ret_ts = h.ts;
        *ret_data = o->records.data + *pos + sizeof(h);
        *ret_len = h.len;
        *pos += sizeof(h) + h.len;
        return true;
}

/* Appends n bytes read from stream to o: to the last record when it is
 * the same stream's, else to a new one. -ENOBUFS past the buffer's cap. */
static int instance_output_add(InstanceOutput *o, int stream, const char *data, size_t n) {
        OutputRecord h;
        if (o->last) {
                memcpy(&h, o->records.data + o->last - 1, sizeof(h));
                if (h.stream == stream) {
                        int r = buf_append(&o->records, data, n);
                        if (r < 0)
                                return r;
                        h.len += n;
                        memcpy(o->records.data + o->last - 1, &h, sizeof(h));
                        o->bytes += n;
                        return 0;
                }
        }
        h = (OutputRecord){ .stream = stream, .ts = now_realtime(), .len = n };
        size_t at = o->records.len;
        int r = buf_append(&o->records, &h, sizeof(h));
        if (r >= 0)
                r = buf_append(&o->records, data, n);
        if (r < 0) {
                o->records.len = at;
                return r;
        }
        o->last = at + 1;
        o->bytes += n;
        return 0;
}

/* Reads what the instance wrote on *fd (stream 1 or 2) while its module
 * loads, until the pipe is empty, into i->load_output; at EOF (it closed
 * that fd) the pipe is closed here, and the call's first invocation makes
 * another (instance_pipes()). -EFBIG once more than max bytes came. */
static int instance_load_output_read(Instance *i, int stream, int *fd, uint64_t max) {
        char buf[65536];
        for (;;) {
                ssize_t k = read(*fd, buf, sizeof(buf));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return 0; /* EAGAIN: all of it read */
                if (k == 0) {
                        *fd = fd_close(*fd);
                        return 0;
                }
                size_t keep = (size_t) k;
                bool over = i->load_output.bytes + keep > max;
                if (over)
                        keep = i->load_output.bytes >= max ? 0 : (size_t) (max - i->load_output.bytes);
                if (keep && instance_output_add(&i->load_output, stream, buf, keep) < 0)
                        over = true;
                if (over)
                        return -EFBIG;
        }
}

/* Waits until deadline for the instance's "ready" on its socket, reading
 * what its module prints meanwhile (instance_load_output_read(): a module
 * printing more than a pipe holds would otherwise wait for us while we
 * wait for it). What it printed before "ready", or before it died, is in
 * its pipes already when the socket says so: read first. */
static int instance_wait_ready(Instance *i, usec_t deadline, int cancel_fd, uint64_t max_output, char **ret_ready) {
        for (;;) {
                usec_t now = now_monotonic();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p[4] = { { .fd = i->sock, .events = POLLIN },
                                       { .fd = i->out_fd, .events = POLLIN },
                                       { .fd = i->err_fd, .events = POLLIN },
                                       { .fd = cancel_fd >= 0 ? cancel_fd : -1, .events = POLLIN } };
                int k = poll(p, ELEMENTSOF(p), (int) MIN((deadline - now + 999) / 1000, (usec_t) INT32_MAX));
                if (k < 0 && errno != EINTR)
                        return -errno;
                if (k <= 0)
                        continue;
                if (p[3].revents && !p[0].revents)
                        return -ECANCELED;
                int *fds[2] = { &i->out_fd, &i->err_fd };
                for (int s = 0; s < 2; s++)
                        if ((p[1 + s].revents || p[0].revents) && *fds[s] >= 0) {
                                int r = instance_load_output_read(i, 1 + s, fds[s], max_output);
                                if (r < 0)
                                        return r;
                        }
                if (p[0].revents)
                        return proto_recv(i->sock, WORKER_PROTO_MAX_MESSAGE, ret_ready, NULL, NULL, 0, NULL);
        }
}

int instance_pipes_make(Instance *i, int ret_w[2]) {
        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(err, O_CLOEXEC) < 0) {
                int r = -errno;
                fd_close(out[0]);
                fd_close(out[1]);
                return r;
        }
        (void) fcntl(out[0], F_SETFL, O_NONBLOCK);
        (void) fcntl(err[0], F_SETFL, O_NONBLOCK);
        i->out_fd = out[0];
        i->err_fd = err[0];
        ret_w[0] = out[1];
        ret_w[1] = err[1];
        return 0;
}

#define SOURCE_MEMOS_MAX 64
#define SOURCE_MEMOS_MAX_BYTES (16u << 20) /* the sources it keeps, together */

struct SourceMemo {
        char *key, *source;
        json_t *reply;       /* parsed once: read-only, shared (atomic refcounts) */
        size_t len;
        unsigned refs;       /* the list's, and each reader's; pool lock */
        usec_t used;
        struct SourceMemo *next;
};
typedef struct SourceMemo SourceMemo;

/* Drops a reference (pool lock held); returns the memo to free, if last. */
static SourceMemo *memo_unref_locked(SourceMemo *m) {
        return --m->refs == 0 ? m : NULL;
}

static void memo_free(SourceMemo *m) {
        if (!m)
                return;
        free(m->key);
        free(m->source);
        json_decref(m->reply);
        free(m);
}

json_t *instance_memo_get(Engine *e, const char *key, const char *source, size_t len) {
        SourceMemo *found = NULL;
        pthread_mutex_lock(&e->pool.lock);
        for (SourceMemo *m = e->pool.memos; m && !found; m = m->next)
                if (m->len == len && streq(m->key, key)) {
                        found = m;
                        m->refs++;
                        m->used = now_monotonic();
                }
        pthread_mutex_unlock(&e->pool.lock);
        if (!found)
                return NULL;
        /* Outside the lock: the memo is immutable while referenced. */
        json_t *reply = memcmp(found->source, source, len) == 0 ? json_incref(found->reply) : NULL;
        pthread_mutex_lock(&e->pool.lock);
        SourceMemo *dead = memo_unref_locked(found);
        pthread_mutex_unlock(&e->pool.lock);
        memo_free(dead);
        return reply;
}

/* Unlinks m from the memo list (pool lock held); returns it if that was
 * its last reference. */
static SourceMemo *memo_unlink_locked(Engine *e, SourceMemo *m) {
        for (SourceMemo **p = &e->pool.memos; *p; p = &(*p)->next)
                if (*p == m) {
                        *p = m->next;
                        break;
                }
        e->pool.n_memos--;
        e->pool.memo_bytes -= m->len;
        m->next = NULL;
        return memo_unref_locked(m);
}

void instance_memo_put(Engine *e, const char *key, const char *source, size_t len, json_t *reply) {
        if (len > SOURCE_MEMOS_MAX_BYTES || !reply)
                return;
        SourceMemo *n = xcalloc(1, sizeof(SourceMemo));
        *n = (SourceMemo) { .key = xstrdup(key), .source = xmemdupz(source, len), .len = len,
                            .reply = json_incref(reply), .refs = 1, .used = now_monotonic() };
        SourceMemo *dead = NULL;
        pthread_mutex_lock(&e->pool.lock);
        /* One per key (a redeploy of a deleted name reuses the key), then
         * the least recently used go until the new one fits. */
        for (SourceMemo *m = e->pool.memos; m; m = m->next)
                if (streq(m->key, key)) {
                        SourceMemo *d = memo_unlink_locked(e, m);
                        if (d) {
                                d->next = dead;
                                dead = d;
                        }
                        break;
                }
        while (e->pool.memos && (e->pool.n_memos >= SOURCE_MEMOS_MAX ||
                                 e->pool.memo_bytes + len > SOURCE_MEMOS_MAX_BYTES)) {
                SourceMemo *oldest = e->pool.memos;
                for (SourceMemo *m = e->pool.memos; m; m = m->next)
                        if (m->used < oldest->used)
                                oldest = m;
                SourceMemo *d = memo_unlink_locked(e, oldest);
                if (d) {
                        d->next = dead;
                        dead = d;
                }
        }
        n->next = e->pool.memos;
        e->pool.memos = n;
        e->pool.n_memos++;
        e->pool.memo_bytes += len;
        pthread_mutex_unlock(&e->pool.lock);
        while (dead) {
                SourceMemo *next = dead->next;
                memo_free(dead);
                dead = next;
        }
}

static void memos_free(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        SourceMemo *m = e->pool.memos;
        e->pool.memos = NULL;
        e->pool.n_memos = 0;
        pthread_mutex_unlock(&e->pool.lock);
        while (m) {
                SourceMemo *next = m->next;
                memo_free(m); /* no reader left: the engine is going */
                m = next;
        }
}

static void freezer_stop(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        bool started = e->pool.freezer_started;
        e->pool.freezer_stop = true;
        if (started)
                pthread_cond_signal(&e->pool.freezer_wake);
        pthread_mutex_unlock(&e->pool.lock);
        if (started) {
                pthread_join(e->pool.freezer, NULL);
                pthread_cond_destroy(&e->pool.freezer_wake);
                pthread_cond_destroy(&e->pool.freeze_done);
        }
}

void instances_shutdown(Engine *e) {
        freezer_stop(e);
        memos_free(e);
        pthread_mutex_lock(&e->pool.lock);
        Instance *inst = e->pool.instances;
        e->pool.instances = NULL;
        pthread_mutex_unlock(&e->pool.lock);
        while (inst) {
                Instance *next = inst->next;
                instance_free(inst);
                inst = next;
        }
}

/* Retire idle instances past their TTL and dead ones (pool lock held);
 * returns them unlinked, with their parents to release. Each one retired
 * leaves room for a waiter of its key to start a new one: it is woken. */
static Instance *collect_retired(Engine *e) {
        Instance *out = NULL;
        usec_t now = now_monotonic();
        for (Instance **p = &e->pool.instances; *p;) {
                Instance *i = *p;
                /* Not while the freezer writes its file (freezing). */
                bool retire = !i->busy && !i->freezing &&
                              (i->dead || (e->pool.instance_ttl_usec &&
                                           now - i->last_used > e->pool.instance_ttl_usec));
                if (retire) {
                        *p = i->next;
                        i->next = out;
                        out = i;
                        waiters_wake_locked(e, i->key);
                        continue;
                }
                p = &i->next;
        }
        return out;
}

static void free_retired(Engine *e, Instance *list) {
        while (list) {
                Instance *next = list->next;
                PoolWorker *parent = list->parent;
                instance_free(list);
                pool_release(e, parent, false);
                list = next;
        }
}

/* The main thread's stat, not the process's: the three fields read are
 * the same task's (state, flags, the thread's own pending set: field 31
 * is task->pending in both), and it skips the sums over the thread group
 * (times, faults) that /proc/PID/stat adds (round 8: 4% less per read,
 * docs/internals/performance-log.md). */
int instance_stat_open(pid_t pid) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int) pid, (int) pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* Task flags (include/linux/sched.h) a process has from the moment it
 * takes a fatal signal until it is a zombie, in order: PF_SIGNALED as
 * get_signal() turns to the fatal path, PF_POSTCOREDUMP (0x8 was
 * PF_EXITPIDONE before 5.17, also set only on the way out) early in
 * do_exit(), then PF_EXITING. The signal is no longer pending by then:
 * testing PF_EXITING alone left a window of do_exit() where a killed
 * instance looked alive (seen: state D, flags PF_SIGNALED|PF_POSTCOREDUMP,
 * nothing pending) and got the next invocation. */
#define PF_EXITING_FLAG 0x00000004u
#define PF_POSTCOREDUMP_FLAG 0x00000008u
#define PF_SIGNALED_FLAG 0x00000400u
#define PF_DYING_FLAGS (PF_SIGNALED_FLAG | PF_POSTCOREDUMP_FLAG | PF_EXITING_FLAG)

/* Whether the process behind an instance_stat_open() fd is gone, a zombie,
 * on its way out, or has a SIGKILL pending. Its main thread's stat says
 * all of it for half the cost of /proc/PID/status (its fields 3, 9 and
 * 31: state, task flags, the thread's pending set; a kill() of a process
 * with a fatal signal adds SIGKILL to every thread's own set at once),
 * and the task flags close the gap the pending set leaves once the signal
 * is dequeued (PF_DYING_FLAGS). */
bool instance_stat_doomed(int fd) {
        char buf[1024];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return true; /* ESRCH: reaped */
        buf[n] = 0;
        return instance_stat_text_doomed(buf);
}

bool instance_stat_text_doomed(const char *stat) {
        const char *p = strrchr(stat, ')'); /* after comm, which may hold ')' */
        if (!p || p[1] != ' ')
                return false;
        p += 2;
        if (*p == 'Z' || *p == 'X' || *p == 'x')
                return true;
        uint64_t flags = 0, pending = 0;
        /* Fields 4..31 after the state. */
        for (unsigned field = 4; field <= 31; field++) {
                p = strchr(p, ' ');
                if (!p)
                        return false;
                p++;
                if (field == 9)
                        flags = strtoull(p, NULL, 10);
                else if (field == 31)
                        pending = strtoull(p, NULL, 10);
        }
        uint64_t kill_bit = UINT64_C(1) << (SIGKILL - 1);
        return (flags & PF_DYING_FLAGS) || (pending & kill_bit);
}

/* process_mrelease(2) on a pidfd answers the doom question without the
 * text of /proc/PID/task/PID/stat: 0 when the process is on its way out
 * (SIGNAL_GROUP_EXIT, set by kill() of a fatal signal before it returns,
 * or exiting; its memory is released there and then, as the OOM reaper
 * would), ESRCH when it has exited, EINVAL while it lives. ~0.3 µs
 * against ~6.5 µs for the stat read (do_task_stat formats ~50 fields), and
 * two of them came before every warm invocation (docs/internals/performance-log.md
 * "Invoke path: the kernel's share per invoke (round 11)"). Usable where
 * the call exists and is allowed (a seccomp filter may deny it): probed
 * once on ourselves (alive: EINVAL); elsewhere the stat file is read. */
#ifndef SYS_process_mrelease
#define SYS_process_mrelease 448 /* Linux 5.15; the unified number (all but alpha) */
#endif
static bool mrelease_usable;
static pthread_once_t mrelease_probe_once = PTHREAD_ONCE_INIT;

static void mrelease_probe(void) {
        int fd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        if (fd < 0)
                return;
        mrelease_usable = syscall(SYS_process_mrelease, fd, 0) < 0 && errno == EINVAL;
        close(fd);
}

bool instance_doom_by_mrelease(void) {
        (void) pthread_once(&mrelease_probe_once, mrelease_probe);
        return mrelease_usable;
}

int instance_doom_open(pid_t pid) {
        assert(pid > 0);
        if (!instance_doom_by_mrelease())
                return instance_stat_open(pid);
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        return fd < 0 ? -errno : fd;
}

bool instance_doomed(int fd) {
        assert(fd >= 0);
        if (!instance_doom_by_mrelease())
                return instance_stat_doomed(fd);
        if (syscall(SYS_process_mrelease, fd, 0) == 0)
                return true;
        /* EINVAL: not exiting (nor sharing its memory with a process that
         * is not); ESRCH: gone. Anything else decides nothing: its socket
         * will say. */
        return errno == ESRCH;
}

/* An idle instance's socket reads hang-up once its process is gone (its
 * worker crashed: the instance went with the worker's pid namespace). */
static bool instance_alive(Instance *i) {
        if (i->dead || i->sock < 0 || (i->parent && i->parent->dead))
                return false;
        /* A frozen instance killed with its worker only dies once thawed,
         * so its socket may not say so yet; nor does a running one at
         * once: its worker's death reaches it only when the worker's exit
         * gets to its pid namespace. The worker's doom check says so as
         * soon as kill() returned (a zombie, not yet reaped by pool_reap,
         * too). */
        if (i->parent_doom_fd >= 0 && instance_doomed(i->parent_doom_fd))
                return false;
        /* Nor does it, when it alone was killed: its socket hangs up only
         * once it ran its exit, some time after kill() (and after the
         * thaw, if frozen), so a call that sends at once would lose its
         * invocation with it. Its host process says so as soon as kill()
         * returned (SIGKILL pending, then exiting), frozen or not: on the
         * v1 freezer it dies at the thaw, on v2 frozen, but when the
         * scheduler gets to it. */
        if (i->doom_fd >= 0 && instance_doomed(i->doom_fd))
                return false;
        /* The same poll says whether output was left in its pipes after
         * its last invocation (instance_pipes() throws it away). */
        struct pollfd p[3] = { { .fd = i->sock, .events = POLLRDHUP },
                               { .fd = i->out_fd, .events = POLLIN },
                               { .fd = i->err_fd, .events = POLLIN } };
        if (poll(p, 3, 0) < 0)
                return true;
        i->stale_output = p[1].revents || p[2].revents;
        return !(p[0].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Freezes i, which the freezer marked freezing (pool lock held on entry
 * and on return, dropped for the write): a kernfs write may take
 * milliseconds under load (round 7 saw 7.3 ms), and every acquire and
 * release waits on the pool lock. An acquire that takes i meanwhile waits
 * for the end of the write (freeze_done) and thaws it: no invocation is
 * sent to a frozen or freezing instance. */
static void freeze_one_locked(Engine *e, Instance *i) {
        i->freezing = true;
        pthread_mutex_unlock(&e->pool.lock);
        int r = engine_sandbox_run_freeze(i->sandbox, true);
        pthread_mutex_lock(&e->pool.lock);
        i->freezing = false;
        if (r >= 0)
                i->frozen = true;
        else
                i->unfreezable = true;
        i->freezes++;
        if (i->busy)
                pthread_cond_broadcast(&e->pool.freeze_done);
        else if (i->dead) {
                /* Retired by name while frozen: collect_retired() left it
                 * to us. */
                Instance *retired = collect_retired(e);
                pthread_mutex_unlock(&e->pool.lock);
                free_retired(e, retired);
                pthread_mutex_lock(&e->pool.lock);
        }
}

/* The freezer thread: freezes each instance idle for the grace, one at a
 * time, the write outside the pool lock (freeze_one_locked()); busy and
 * freezing are set under the lock, so it never picks one an acquire just
 * took. Sleeps until the earliest instance is due, or until one goes idle
 * when none waits (instance_idle()): one wake per grace at most under
 * load. */
static void *freezer_main(void *arg) {
        Engine *e = arg;
        pthread_mutex_lock(&e->pool.lock);
        while (!e->pool.freezer_stop) {
                usec_t now = now_monotonic(), next = 0;
                Instance *due_one = NULL;
                for (Instance *i = e->pool.instances; i && !due_one; i = i->next) {
                        if (i->busy || i->dead || i->frozen || i->unfreezable || !i->sandbox)
                                continue;
                        usec_t due = i->idle_since + e->pool.freeze_grace_usec;
                        if (due <= now)
                                due_one = i;
                        else if (!next || due < next)
                                next = due;
                }
                if (due_one) {
                        freeze_one_locked(e, due_one);
                        continue; /* the list may have changed meanwhile */
                }
                if (!next) {
                        e->pool.freezer_waiting = true;
                        pthread_cond_wait(&e->pool.freezer_wake, &e->pool.lock);
                        e->pool.freezer_waiting = false;
                        continue;
                }
                struct timespec ts = { .tv_sec = (time_t) (next / USEC_PER_SEC),
                                       .tv_nsec = (long) (next % USEC_PER_SEC) * 1000 };
                (void) pthread_cond_timedwait(&e->pool.freezer_wake, &e->pool.lock, &ts);
        }
        pthread_mutex_unlock(&e->pool.lock);
        return NULL;
}

/* The freeze grace: $PYSPRINTER_INSTANCE_FREEZE_GRACE_MS (0..60000), for
 * tests that race invocations against the freezer, else 20 ms. */
static usec_t freeze_grace(void) {
        const char *s = getenv("PYSPRINTER_INSTANCE_FREEZE_GRACE_MS");
        if (s && *s) {
                char *end = NULL;
                errno = 0;
                unsigned long ms = strtoul(s, &end, 10);
                if (errno == 0 && end && *end == 0 && ms <= 60000)
                        return (usec_t) ms * USEC_PER_MSEC;
        }
        return INSTANCE_FREEZE_GRACE_USEC;
}

/* i just went idle (pool lock held): the freezer freezes it after the
 * grace. */
static void instance_idle(Engine *e, Instance *i) {
        i->idle_since = now_monotonic();
        if (i->frozen || i->unfreezable || !i->sandbox || e->pool.freezer_stop)
                return;
        if (!e->pool.freezer_started) {
                pthread_condattr_t a;
                pthread_condattr_init(&a);
                pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
                pthread_cond_init(&e->pool.freezer_wake, &a);
                pthread_condattr_destroy(&a);
                pthread_cond_init(&e->pool.freeze_done, NULL);
                e->pool.freeze_grace_usec = freeze_grace();
                if (pthread_create(&e->pool.freezer, NULL, freezer_main, e) != 0) {
                        pthread_cond_destroy(&e->pool.freezer_wake);
                        pthread_cond_destroy(&e->pool.freeze_done);
                        return; /* left running, as without a freezer */
                }
                (void) pthread_setname_np(e->pool.freezer, "inst-freezer");
                e->pool.freezer_started = true;
        } else if (e->pool.freezer_waiting)
                pthread_cond_signal(&e->pool.freezer_wake);
}

/* The holder of i (busy): thawed before use, only if the freezer froze it. */
static void instance_thaw(Instance *i) {
        if (!i->frozen)
                return;
        (void) engine_sandbox_run_freeze(i->sandbox, false);
        i->frozen = false;
        i->thaws++;
}

/* The first idle instance of key, taken (busy), with the pool lock held;
 * NULL if none. One the freezer is not freezing comes first; else one it
 * is freezing, once the write ended (the caller thaws it). */
static Instance *instance_take_locked(Engine *e, const char *key, unsigned *ret_count) {
        unsigned count = 0;
        Instance *idle = NULL, *freezing = NULL;
        for (Instance *i = e->pool.instances; i; i = i->next)
                if (streq(i->key, key) && !i->dead) {
                        count++;
                        if (i->busy || i->sock < 0)
                                continue;
                        if (!i->freezing && !idle)
                                idle = i;
                        else if (i->freezing && !freezing)
                                freezing = i;
                }
        if (ret_count)
                *ret_count = count;
        idle = idle ?: freezing;
        if (!idle)
                return NULL;
        idle->busy = true;
        while (idle->freezing)
                pthread_cond_wait(&e->pool.freeze_done, &e->pool.lock);
        return idle;
}

/* Over the memory budget (pool lock held): the least recently used idle
 * instance, unlinked, when no idle worker was used less recently, else
 * NULL (the budget then stops workers: pool_sweep()). An idle instance
 * holds a reference to its worker, which is thus never idle: before, idle
 * instances kept any amount of memory for their TTL whatever the budget,
 * and the validator was stopped instead. One a sweep: its worker is
 * measured again once it is released, and the next sweep (a second
 * later) looks again, so what one instance held is never guessed. */
static Instance *collect_over_budget(Engine *e) {
        if (!e->pool.memory_budget || pool_pss_total_locked(e) <= e->pool.memory_budget)
                return NULL;
        Instance **lru_link = NULL, *lru = pool_lru_idle_instance_locked(e, &lru_link);
        PoolWorker *idle_worker = pool_lru_idle_locked(e);
        if (!lru || (idle_worker && idle_worker->last_used < lru->last_used))
                return NULL;
        *lru_link = lru->next;
        lru->next = NULL;
        e->pool.evictions++;
        waiters_wake_locked(e, lru->key);
        /* Its worker's reading counts it: read again when it is released
         * (free_retired()), not a second later. */
        __atomic_store_n(&lru->parent->pss_measured, 0, __ATOMIC_RELAXED);
        return lru;
}

void engine_pool_sweep(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        Instance *retired = collect_retired(e);
        pthread_mutex_unlock(&e->pool.lock);
        free_retired(e, retired);
        pool_measure_instance_hosts(e);
        pthread_mutex_lock(&e->pool.lock);
        retired = collect_over_budget(e);
        pthread_mutex_unlock(&e->pool.lock);
        free_retired(e, retired);
        pool_sweep(e);
}

unsigned engine_pool_retire(Engine *e, const char *key_prefix) {
        return engine_pool_retire_holding(e, key_prefix, NULL);
}

unsigned engine_pool_retire_holding(Engine *e, const char *key_prefix, const char *key_part) {
        assert(e);
        assert(key_prefix);
        unsigned n = 0;
        pthread_mutex_lock(&e->pool.lock);
        /* Dead: never handed out again; collect_retired() takes the idle
         * ones now and instance_release() the busy ones when they end. */
        for (Instance *i = e->pool.instances; i; i = i->next)
                if (startswith(i->key, key_prefix) && (!key_part || strstr(i->key + strlen(key_prefix), key_part)) &&
                    !i->dead) {
                        i->dead = true;
                        n++;
                }
        Instance *retired = collect_retired(e);
        waiters_wake_locked(e, NULL);
        pthread_mutex_unlock(&e->pool.lock);
        free_retired(e, retired);
        return n;
}

/* engine-internal.h */
unsigned pool_retire_env_workers(Engine *e) {
        assert(e);
        unsigned n = 0;
        pthread_mutex_lock(&e->pool.lock);
        /* Dead: pool_find() and instance_alive() pass them over, so the
         * next run of their env starts a worker that imports the files of
         * now; collect_evictions() stops each once its runs ended. */
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next)
                if (!pw->dead && pw->sys_path && pw->sys_path[0]) {
                        pw->dead = true;
                        n++;
                }
        for (Instance *i = e->pool.instances; i; i = i->next)
                if (i->parent && i->parent->dead)
                        i->dead = true;
        Instance *retired = collect_retired(e);
        waiters_wake_locked(e, NULL);
        pthread_mutex_unlock(&e->pool.lock);
        free_retired(e, retired);
        pool_sweep(e);
        return n;
}

bool instance_exit_report(Instance *i, bool *ret_signaled, int *ret_sig, int *ret_code) {
        assert(i);
        Worker st = { .sock = i->status_fd };
        _cleanup_free_ char *msg = NULL;
        if (worker_recv(&st, now_monotonic() + 500 * USEC_PER_MSEC, &msg, NULL) < 0)
                return false;
        json_t *m = json_loads(msg, 0, NULL);
        const char *type = json_string_value(json_object_get(m, "type"));
        if (type && streq(type, "started")) {
                json_decref(m);
                free(msg);
                msg = NULL;
                if (worker_recv(&st, now_monotonic() + 500 * USEC_PER_MSEC, &msg, NULL) < 0)
                        return false;
                m = json_loads(msg, 0, NULL);
        }
        const char *status = json_string_value(json_object_get(m, "status"));
        bool signaled = status && streq(status, "signaled"), known = signaled || (status && streq(status, "exited"));
        if (known) {
                *ret_signaled = signaled;
                *ret_sig = signaled ? (int) json_integer_value(json_object_get(m, "signal")) : 0;
                *ret_code = signaled ? 0 : (int) json_integer_value(json_object_get(m, "code"));
        }
        json_decref(m);
        return known;
}

/* The instance died, or outlived its time limit, while its module ran
 * (r: the wait for "ready" failed with it): -ECHILD with *ret_end filled
 * and i's sandbox handed to it (killed), when that is what happened;
 * else r. */
static int instance_load_ended(Instance *i, int r, InstanceLoadEnd *ret_end) {
        InstanceLoadEnd end = { .timed_out = r == -ETIMEDOUT, .output_limit = r == -EFBIG };
        if (!end.timed_out && !end.output_limit &&
            (r == -ECANCELED || !instance_exit_report(i, &end.signaled, &end.sig, &end.code)))
                return r;
        (void) engine_sandbox_run_kill(i->sandbox);
        end.sandbox = TAKE_PTR(i->sandbox);
        end.output = i->load_output;
        i->load_output = (InstanceOutput){};
        i->pid = 0; /* its worker's view: instance_free() must not kill() it */
        *ret_end = end;
        return -ECHILD;
}

static int instance_start(Engine *e, const char *key, const char *start_json, SandboxMode mode, const RunLimits *limits,
                          char *const *sys_path, char *const *data, int cancel_fd, Instance **ret,
                          InstanceLoadEnd *ret_load_end, char **ret_error) {
        PoolWorker *pw = NULL;
        bool cold;
        int r = pool_acquire_cancellable(e, mode, limits, sys_path, data, POOL_RUNS, cancel_fd, &pw, &cold, ret_error);
        if (r < 0)
                return r;
        Instance *i = xcalloc(1, sizeof(Instance));
        i->key = xstrdup(key);
        i->parent = pw;
        /* The load's output is kept in memory until the call logs it: up
         * to its output limit, and 64 MiB at most (records' headers
         * aside). */
        buf_init(&i->load_output.records,
                 (size_t) MIN(limits->max_output_bytes ?: UINT64_MAX, (uint64_t) 64 << 20) + (1 << 20));
        if (cold) {
                /* What its env's imports printed in the worker this call
                 * started comes first, as an ad-hoc run's does
                 * (engine-run.c, import_output_emit()). */
                char *text[2];
                pool_worker_take_import_output(pw, text);
                for (int k = 0; k < 2; k++) {
                        if (text[k])
                                (void) instance_output_add(&i->load_output, k + 1, text[k], strlen(text[k]));
                        free(text[k]);
                }
        }
        i->sock = i->status_fd = i->doom_fd = i->parent_doom_fd = i->out_fd = i->err_fd = -EBADF;
        r = engine_sandbox_instance_prepare(e, key, mode, limits, &i->sandbox, ret_error);
        int sv[2] = { -1, -1 }, st[2] = { -1, -1 }, stdio[2] = { -EBADF, -EBADF };
        if (r >= 0 && (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
                       socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st) < 0)) {
                r = -errno;
                *ret_error = xasprintf("socketpair: %s", strerror(-r));
        }
        /* Its stdout and stderr from its start (worker.c become_instance()):
         * what its module prints is the calling run's output. */
        if (r >= 0 && (r = instance_pipes_make(i, stdio)) < 0)
                *ret_error = xasprintf("pipe: %s", strerror(-r));
        if (r >= 0) {
                int fds[8] = { sv[1], st[1], stdio[0], stdio[1] };
                size_t n_extra = 0;
                _cleanup_free_ char *sb = NULL;
                engine_sandbox_run_extra(i->sandbox, fds + 4, &n_extra, ELEMENTSOF(fds) - 4, &sb);
                json_t *m = json_loads(start_json, 0, NULL);
                if (sb)
                        json_object_set_new(m, "sandbox", json_loads(sb, 0, NULL));
                _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
                json_decref(m);
                pthread_mutex_lock(&pw->io_lock);
                r = worker_send(pw->w, text, fds, 4 + n_extra);
                pthread_mutex_unlock(&pw->io_lock);
                if (r < 0)
                        *ret_error = xstrdup("cannot hand the instance to the worker");
        }
        sv[1] = fd_close(sv[1]);
        st[1] = fd_close(st[1]);
        stdio[0] = fd_close(stdio[0]);
        stdio[1] = fd_close(stdio[1]);
        i->sock = sv[0];
        i->status_fd = st[0];
        if (r >= 0) {
                /* "started" on the status socket, then "ready" from the
                 * instance once its module ran. */
                Worker tmp = { .sock = i->status_fd };
                _cleanup_free_ char *started = NULL;
                r = worker_recv_cancellable(&tmp, now_monotonic() + INSTANCE_READY_TIMEOUT_USEC, cancel_fd, &started,
                                            NULL);
                if (r >= 0) {
                        json_t *m = json_loads(started, 0, NULL);
                        i->pid = (pid_t) json_integer_value(json_object_get(m, "pid"));
                        engine_sandbox_run_started(i->sandbox, pw->w->pid, i->pid);
                        json_decref(m);
                        _cleanup_free_ char *ready = NULL;
                        /* Its module runs now (a top-level `import torch`:
                         * seconds), under the calling run's time limit,
                         * as the module of an ad-hoc run does: a cancel
                         * kills it (instance_free()), and so does a module
                         * that outlives the limit (instance_load_ended()). */
                        usec_t limit = limits->timeout_ms ? limits->timeout_ms * USEC_PER_MSEC
                                                          : INSTANCE_READY_TIMEOUT_USEC;
                        r = instance_wait_ready(i, now_monotonic() + limit, cancel_fd,
                                                limits->max_output_bytes ?: UINT64_MAX, &ready);
                        if (r < 0)
                                r = instance_load_ended(i, r, ret_load_end);
                        json_t *rm = r >= 0 ? json_loads(ready, 0, NULL) : NULL;
                        i->init_failed = json_is_true(json_object_get(rm, "init_failed"));
                        if (r >= 0 && !json_is_true(json_object_get(rm, "ok"))) {
                                const char *msg = json_string_value(
                                        json_object_get(json_object_get(rm, "error"), "message"));
                                *ret_error = xasprintf("the function could not be loaded: %s", msg ?: "?");
                                r = -EINVAL;
                        }
                        json_decref(rm);
                }
                if (r < 0 && r != -ECHILD && !*ret_error)
                        *ret_error = xstrdup(r == -ECANCELED ? "cancelled" : "the instance did not start");
        }
        if (r < 0) {
                instance_free(i);
                pool_release(e, pw, false);
                return r;
        }
        /* Learnt once, from the host side: the pid the worker reported is
         * its pid-namespace view, which names another process here. No
         * cgroup (no freezer either): its socket is enough. */
        pid_t host = engine_sandbox_run_host_pid(i->sandbox);
        if (host > 0)
                i->doom_fd = instance_doom_open(host);
        if (pw->w && pw->w->pid > 0)
                i->parent_doom_fd = instance_doom_open(pw->w->pid);
        i->last_used = now_monotonic();
        *ret = i;
        return 0;
}

int instance_acquire(Engine *e, const char *key, unsigned max_instances, InstanceStartFn start_message, void *userdata,
                     SandboxMode mode, const RunLimits *limits, char *const *sys_path, char *const *data, int cancel_fd,
                     Instance **ret, bool *ret_cold, InstanceLoadEnd *ret_load_end, char **ret_error) {
        if (!max_instances)
                max_instances = ENGINE_INSTANCES_DEFAULT;
        pthread_mutex_lock(&e->pool.lock);
        Instance *retired = collect_retired(e);
        bool waited = false;
        for (;;) {
                unsigned count = 0;
                Instance *idle = instance_take_locked(e, key, &count);
                if (!idle && count >= max_instances) {
                        if (cancel_asked(cancel_fd)) {
                                pthread_mutex_unlock(&e->pool.lock);
                                free_retired(e, retired);
                                *ret_error = xstrdup("cancelled");
                                return -ECANCELED;
                        }
                        /* At the maximum: wait for one of key's to be
                         * handed to us, for room to start one, or for a
                         * cancel. */
                        idle = waiter_wait_locked(e, key, waited, cancel_fd);
                        waited = true;
                        if (!idle)
                                continue;
                } else if (idle)
                        pthread_mutex_unlock(&e->pool.lock);
                if (idle) {
                        /* Frozen if it idled past the grace. */
                        instance_thaw(idle);
                        if (instance_alive(idle)) {
                                free_retired(e, retired);
                                *ret = idle;
                                *ret_cold = false;
                                return 0;
                        }
                        /* Its worker crashed (or it was killed) while it
                         * sat idle: retire it and look again, so the call
                         * gets a live or a new instance. */
                        pthread_mutex_lock(&e->pool.lock);
                        idle->busy = false;
                        idle->dead = true;
                        Instance *more = collect_retired(e);
                        while (more) {
                                Instance *next = more->next;
                                more->next = retired;
                                retired = more;
                                more = next;
                        }
                        continue;
                }
                break; /* room to start one */
        }
        /* Reserve the slot with a placeholder so concurrent callers count it. */
        Instance *slot = xcalloc(1, sizeof(Instance));
        slot->key = xstrdup(key);
        slot->busy = true;
        slot->sock = slot->status_fd = slot->doom_fd = slot->parent_doom_fd = slot->out_fd = slot->err_fd = -EBADF;
        slot->next = e->pool.instances;
        e->pool.instances = slot;
        pthread_mutex_unlock(&e->pool.lock);
        free_retired(e, retired);

        Instance *fresh = NULL;
        _cleanup_free_ char *start_json = start_message(userdata);
        int r = instance_start(e, key, start_json, mode, limits, sys_path, data, cancel_fd, &fresh, ret_load_end,
                               ret_error);

        pthread_mutex_lock(&e->pool.lock);
        for (Instance **p = &e->pool.instances; *p; p = &(*p)->next)
                if (*p == slot) {
                        *p = slot->next;
                        break;
                }
        if (r >= 0) {
                fresh->busy = true;
                fresh->dead = slot->dead; /* retired while it started (engine_pool_retire) */
                fresh->next = e->pool.instances;
                e->pool.instances = fresh;
        } else
                waiters_wake_locked(e, key); /* its slot is free again */
        pthread_mutex_unlock(&e->pool.lock);
        instance_free(slot);
        if (r < 0)
                return r;
        *ret = fresh;
        *ret_cold = true;
        return 0;
}

int engine_instance_take_idle(Engine *e, const char *key, Instance **ret) {
        assert(e && key && ret);
        pthread_mutex_lock(&e->pool.lock);
        /* As instance_acquire(): instances idle past their TTL go first. */
        Instance *retired = collect_retired(e);
        Instance *idle = instance_take_locked(e, key, NULL);
        pthread_mutex_unlock(&e->pool.lock);
        free_retired(e, retired);
        if (!idle)
                return -EAGAIN;
        instance_thaw(idle);
        if (!instance_alive(idle)) {
                /* Died while idle: retired; the caller takes the usual path. */
                instance_release(e, idle, true);
                return -EAGAIN;
        }
        *ret = idle;
        return 0;
}

void engine_instance_put_back(Engine *e, Instance *i) {
        if (!i)
                return;
        /* Idle again as it was: its idle time (TTL) not restarted, no
         * invocation counted; frozen after the grace. */
        pthread_mutex_lock(&e->pool.lock);
        if (!instance_hand_locked(e, i)) {
                i->busy = false;
                instance_idle(e, i);
        }
        pthread_mutex_unlock(&e->pool.lock);
}

/* engine-internal.h */
bool instance_retired(Engine *e, Instance *i) {
        assert(e && i);
        pthread_mutex_lock(&e->pool.lock);
        bool dead = i->dead || (i->parent && i->parent->dead);
        pthread_mutex_unlock(&e->pool.lock);
        return dead;
}

void instance_release(Engine *e, Instance *i, bool broken) {
        /* Nothing of an idle instance runs between invocations (its threads
         * and timers included), as on Lambda, past the grace: the freezer
         * freezes it then, unless an invocation took it again. */
        pthread_mutex_lock(&e->pool.lock);
        i->last_used = now_monotonic();
        i->invocations++;
        /* To the first waiter of its key, still busy; else idle. Dead, one
         * waiter starts another in its place (collect_retired() wakes it). */
        if (broken || i->dead) {
                i->dead = true;
                i->busy = false;
        } else if (!instance_hand_locked(e, i)) {
                i->busy = false;
                instance_idle(e, i);
        }
        Instance *retired = collect_retired(e);
        pthread_mutex_unlock(&e->pool.lock);
        free_retired(e, retired);
}
