/* The -c8 floor of the invoke's shape (issue 15 b): a model of the daemon's
 * hops with every stage's own work replaced by a CPU spin of a chosen
 * length, to tell what p99 this host allows a design at a given CPU cost
 * per invoke. Not a test; bench/c8_floor.py builds it, runs wrk against it
 * and prints the table (docs/internals/performance-log.md "The -c8 floor (round 23)").
 *
 *   c8_floor MODE PORT HTTP_US INST_US WATCH_US WRITER_US
 *
 * libmicrohttpd as pysprinterd runs it (epoll, a pool of one thread per
 * CPU, suspend/resume); four "instance" processes, each answering an
 * 80-byte message on a socketpair after INST_US of CPU; a request takes
 * HTTP_US of CPU on its HTTP thread before its message is sent, and
 * WATCH_US on whichever thread reads the reply; a writer thread spends
 * WRITER_US per answered request, in batches every millisecond (the
 * store's group commit). With no instance free a request waits in a FIFO.
 *
 * MODE watcher: the HTTP thread sends and suspends the connection; one
 *               watcher thread polls the instances, ends the request and
 *               resumes it (pysprinterd's path under concurrency).
 * MODE inline:  the HTTP thread sends and waits for the reply itself
 *               (blocking its other connections meanwhile); a request
 *               that finds no instance free goes the watcher's way.
 * MODE direct:  no instance: the HTTP thread answers at once after
 *               HTTP_US (MHD's own floor).
 * MODE loop:    no watcher: each HTTP thread runs an MHD daemon of its own
 *               (external epoll, all on one listening socket) from its own
 *               epoll loop, which also holds the sockets of the instances
 *               its requests were sent to: the thread that sent a request
 *               reads its reply, ends it and resumes it, with no other
 *               thread woken (an instance handed to a request of another
 *               thread moves to that thread's epoll). */
#define _GNU_SOURCE
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INSTANCES 4
#define MSG 80

enum { MODE_WATCHER, MODE_INLINE, MODE_DIRECT, MODE_LOOP };

typedef struct Req {
        struct MHD_Connection *conn;
        int state; /* 0 new, 1 waiting, 2 done */
        int inst;
        int loop; /* MODE_LOOP: the thread whose MHD daemon holds conn */
        struct Req *next;
} Req;

static int mode;
static unsigned http_us, inst_us, watch_us, writer_us;
static int inst_fd[INSTANCES];
static bool inst_busy[INSTANCES];
static Req *inst_req[INSTANCES];
static Req *pending, *pending_tail;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int wake_fd;
static uint64_t answered;
static char body[512];
/* MODE_LOOP: each loop's epoll fd; which loop's epoll holds each instance's
 * socket (-1: none); the loop this thread runs. */
static int loop_ep[64];
static int inst_ep_loop[INSTANCES];
static __thread int my_loop = -1;

/* MODE_LOOP: instance i's socket in loop l's epoll (lock held). */
static void inst_watch_from(int i, int l) {
        if (mode != MODE_LOOP || inst_ep_loop[i] == l)
                return;
        if (inst_ep_loop[i] >= 0)
                (void) epoll_ctl(loop_ep[inst_ep_loop[i]], EPOLL_CTL_DEL, inst_fd[i], NULL);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t) i + 1 };
        (void) epoll_ctl(loop_ep[l], EPOLL_CTL_ADD, inst_fd[i], &ev);
        inst_ep_loop[i] = l;
}

static void spin(unsigned us) {
        struct timespec t0, t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        do
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        while ((uint64_t) (t.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t) (t.tv_nsec - t0.tv_nsec) < us * 1000ull);
}

static void instance_loop(int fd) {
        char m[MSG];
        for (;;) {
                ssize_t n = recv(fd, m, sizeof(m), 0);
                if (n <= 0)
                        _exit(0);
                spin(inst_us);
                if (send(fd, m, (size_t) n, MSG_NOSIGNAL) != n)
                        _exit(0);
        }
}

static void send_to(int i) {
        char m[MSG] = "{\"type\":\"invoke\"}";
        (void) !send(inst_fd[i], m, sizeof(m), MSG_NOSIGNAL);
}

/* With lock held: an idle instance for r, or -1 (r then waits in the FIFO). */
static int take_or_queue(Req *r) {
        for (int i = 0; i < INSTANCES; i++)
                if (!inst_busy[i]) {
                        inst_busy[i] = true;
                        inst_req[i] = r;
                        r->inst = i;
                        inst_watch_from(i, r->loop);
                        return i;
                }
        r->next = NULL;
        if (pending_tail)
                pending_tail->next = r;
        else
                pending = r;
        pending_tail = r;
        return -1;
}

/* With lock held: instance i is free; the next waiting request gets it. */
static void release(int i) {
        Req *r = pending;
        if (!r) {
                inst_busy[i] = false;
                inst_req[i] = NULL;
                return;
        }
        pending = r->next;
        if (!pending)
                pending_tail = NULL;
        inst_req[i] = r;
        r->inst = i;
        r->state = 1;
        inst_watch_from(i, r->loop);
        send_to(i);
}

/* Instance i answered: its reply read, WATCH_US spent, its request ended
 * and resumed, the instance handed on (the watcher's or a loop's work). */
static void end_reply(int i, int recv_flags) {
        char m[MSG];
        if (recv(inst_fd[i], m, sizeof(m), recv_flags) <= 0)
                return;
        spin(watch_us);
        pthread_mutex_lock(&lock);
        Req *r = inst_req[i];
        r->state = 2;
        release(i);
        pthread_mutex_unlock(&lock);
        MHD_resume_connection(r->conn);
}

static void *watcher(void *p) {
        (void) p;
        struct pollfd pf[INSTANCES + 1];
        for (;;) {
                pf[0] = (struct pollfd) { .fd = wake_fd, .events = POLLIN };
                pthread_mutex_lock(&lock);
                for (int i = 0; i < INSTANCES; i++)
                        pf[i + 1] = (struct pollfd) { .fd = inst_busy[i] && inst_req[i] && inst_req[i]->state == 1 ? inst_fd[i] : -1,
                                                      .events = POLLIN };
                pthread_mutex_unlock(&lock);
                if (poll(pf, INSTANCES + 1, -1) <= 0)
                        continue;
                if (pf[0].revents) {
                        uint64_t v;
                        (void) !read(wake_fd, &v, sizeof(v));
                }
                for (int i = 0; i < INSTANCES; i++) {
                        if (pf[i + 1].fd < 0 || !pf[i + 1].revents)
                                continue;
                        end_reply(i, 0);
                }
        }
        return NULL;
}

/* Every WRITER_PERIOD_US (environment; default 1000: the store's 1 ms
 * group commit; 100000: one journal batch of ~1024 records at 10k/s). */
static void *writer(void *p) {
        (void) p;
        uint64_t seen = 0;
        const char *e = getenv("WRITER_PERIOD_US");
        useconds_t period = e ? (useconds_t) atoi(e) : 1000;
        for (;;) {
                usleep(period);
                uint64_t now = __atomic_load_n(&answered, __ATOMIC_RELAXED);
                if (now > seen)
                        spin((unsigned) (now - seen) * writer_us);
                seen = now;
        }
        return NULL;
}

static enum MHD_Result answer(struct MHD_Connection *c) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", "application/json");
        enum MHD_Result k = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        __atomic_add_fetch(&answered, 1, __ATOMIC_RELAXED);
        return k;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **ctx) {
        (void) cls, (void) url, (void) method, (void) version, (void) data;
        Req *r = *ctx;
        if (!r) {
                *ctx = r = calloc(1, sizeof(Req));
                r->conn = c;
                r->loop = my_loop;
                return MHD_YES;
        }
        if (*data_size) {
                *data_size = 0;
                return MHD_YES;
        }
        if (r->state == 2)
                return answer(c);
        spin(http_us);
        if (mode == MODE_DIRECT)
                return answer(c);
        pthread_mutex_lock(&lock);
        int i = take_or_queue(r);
        if (i >= 0 && mode == MODE_INLINE) {
                r->state = 3; /* not the watcher's */
                pthread_mutex_unlock(&lock);
                send_to(i);
                char m[MSG];
                (void) !recv(inst_fd[i], m, sizeof(m), 0);
                spin(watch_us);
                pthread_mutex_lock(&lock);
                release(i);
                pthread_mutex_unlock(&lock);
                uint64_t one = 1;
                (void) !write(wake_fd, &one, sizeof(one)); /* a waiting one may have been sent */
                return answer(c);
        }
        if (i >= 0)
                r->state = 1;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&lock);
        if (i >= 0 && mode == MODE_LOOP)
                send_to(i);
        else if (i >= 0) {
                send_to(i);
                uint64_t one = 1;
                (void) !write(wake_fd, &one, sizeof(one));
        }
        return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode t) {
        (void) cls, (void) c, (void) t;
        free(*ctx);
        *ctx = NULL;
}

typedef struct Loop {
        int index;
        int listen_fd;
} Loop;

static void *loop_run(void *p) {
        Loop *lp = p;
        my_loop = lp->index;
        int ep = loop_ep[lp->index];
        struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ITC, 0,
                                                NULL, NULL, on_request, NULL, MHD_OPTION_LISTEN_SOCKET, lp->listen_fd,
                                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
        if (!d)
                exit(1);
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
        (void) epoll_ctl(ep, EPOLL_CTL_ADD, info->epoll_fd, &ev);
        struct epoll_event evs[16];
        for (;;) {
                (void) MHD_run(d);
                MHD_UNSIGNED_LONG_LONG to;
                int timeout = MHD_get_timeout(d, &to) == MHD_YES ? (int) to : -1;
                int n = epoll_wait(ep, evs, 16, timeout);
                for (int k = 0; k < n; k++) {
                        if (evs[k].data.u32 == 0)
                                continue; /* MHD's: MHD_run() at the top */
                        int i = (int) evs[k].data.u32 - 1;
                        end_reply(i, MSG_DONTWAIT);
                }
        }
        return NULL;
}

static int loops_start(uint16_t port, int nloops) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(fd, 128) < 0)
                return -1;
        for (int l = 0; l < nloops; l++) {
                loop_ep[l] = epoll_create1(EPOLL_CLOEXEC);
                Loop *lp = calloc(1, sizeof(Loop));
                lp->index = l;
                lp->listen_fd = fd;
                pthread_t t;
                pthread_create(&t, NULL, loop_run, lp);
        }
        return 0;
}

int main(int argc, char **argv) {
        if (argc != 7) {
                fprintf(stderr, "usage: %s watcher|inline|direct|loop PORT HTTP_US INST_US WATCH_US WRITER_US\n", argv[0]);
                return 2;
        }
        mode = !strcmp(argv[1], "inline")   ? MODE_INLINE
               : !strcmp(argv[1], "direct") ? MODE_DIRECT
               : !strcmp(argv[1], "loop")   ? MODE_LOOP
                                            : MODE_WATCHER;
        for (int i = 0; i < INSTANCES; i++)
                inst_ep_loop[i] = -1;
        http_us = (unsigned) atoi(argv[3]);
        inst_us = (unsigned) atoi(argv[4]);
        watch_us = (unsigned) atoi(argv[5]);
        writer_us = (unsigned) atoi(argv[6]);
        memset(body, 'x', 500);
        memcpy(body, "{\"id\":\"", 7);
        body[498] = '"';
        body[499] = '}';
        signal(SIGPIPE, SIG_IGN);
        for (int i = 0; i < INSTANCES; i++) {
                int sv[2];
                if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                        return 1;
                pid_t pid = fork();
                if (pid == 0) {
                        close(sv[0]);
                        instance_loop(sv[1]);
                }
                close(sv[1]);
                inst_fd[i] = sv[0];
        }
        wake_fd = eventfd(0, EFD_CLOEXEC);
        pthread_t t;
        if (mode != MODE_LOOP)
                pthread_create(&t, NULL, watcher, NULL);
        if (writer_us)
                pthread_create(&t, NULL, writer, NULL);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (mode == MODE_LOOP) {
                if (loops_start((uint16_t) atoi(argv[2]), (int) (ncpu > 0 ? ncpu : 2)) < 0)
                        return 1;
                printf("ready\n");
                fflush(stdout);
                pause();
                return 0;
        }
        struct MHD_Daemon *d = MHD_start_daemon(
                MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ITC,
                (uint16_t) atoi(argv[2]), NULL, NULL, on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                (unsigned) (ncpu > 0 ? ncpu : 2), MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
        if (!d)
                return 1;
        printf("ready\n");
        fflush(stdout);
        pause();
        return 0;
}
