/* Network namespace: loopback only, one per run (and per warm instance).
 *
 * A namespace shared by the runs of a worker let any two of them talk over
 * 127.0.0.1 and abstract unix sockets, whatever their tenants (issue 10:
 * alice's listener on 127.0.0.1:7777 took bob's connection). So each run
 * child unshares its own. Cost, measured on this 2-vCPU VM
 * (bench/bench-netns.sh): ~0.4 ms to create one and bring lo up, ~0.2 ms
 * more on the exit path; the rest of the teardown is the kernel's deferred
 * cleanup_net work, batched. A pre-forked spare makes its namespace while
 * idle (sandbox_run_prepare()), so a run handed to a spare does not pay
 * for it; a run forked directly (no spare ready, the one-shot CLI) does.
 *
 * Reuse (issue 15 (c): creating a namespace and the kernel's cleanup_net
 * of it cost ~0.8 ms of CPU per run, ~15% of a trivial run's). The worker
 * keeps the namespaces of finished runs (a small pool) and lends one to
 * each run child it forks; the child adopts it only if it holds nothing
 * of any earlier run, else it makes a fresh one as before. The worker keeps
 * its own fd of what it lent (an empty pool: one it makes, netns_make()),
 * never looking for a child's namespace in /proc. "Nothing" is checked by
 * the child itself, inside the namespace, before any user code runs
 * there, and only once the earlier run is over: the worker returns a
 * namespace to the pool after the run's pid namespace is empty (every
 * process of the run dead, so every socket fd closed). The check
 * (sandbox_net_counters_pristine()): no socket of any family in it
 * (sockstat's per-namespace "sockets: used"), no TIME_WAIT, no fragment
 * queue, and every traffic counter zero (lo's rx/tx, /proc/net/snmp,
 * snmp6, netstat but for the constants a fresh namespace shows) -- so the
 * next run cannot even learn how many packets the last one sent. A run
 * cannot change anything else in it: its configuration needs CAP_NET_ADMIN,
 * which no run has. docs/sandbox.md "Network" has the argument.
 *
 * A worker for --network runs stays in the host's namespace: a process in
 * our user namespace cannot setns() back into a namespace the host's user
 * namespace owns, so a run that opts in with --network simply does not
 * unshare. A worker whose runs have no network leaves it at init
 * (sandbox_worker_net_isolate()): the env's modules it imports there are
 * code any package on the index ships, and they reached the host's
 * 127.0.0.1 from it. The namespaces it makes for its runs do not depend on
 * its own. */
#include <assert.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "sandbox-internal.h"

int sandbox_net_loopback_up(void) {
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return -errno;
        struct ifreq ifr = { 0 };
        memcpy(ifr.ifr_name, "lo", 3);
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return -errno;
        return 0;
}

/* ---- the pristine check: a pure decision over the /proc/net texts ---- */

/* Fields of /proc/net/snmp a fresh namespace shows non-zero (its
 * configuration, which a run cannot change). */
static bool snmp_constant(const char *proto, const char *field) {
        static const char *const constants[][2] = {
                { "Ip", "Forwarding" }, { "Ip", "DefaultTTL" }, { "Tcp", "RtoAlgorithm" },
                { "Tcp", "RtoMin" },    { "Tcp", "RtoMax" },    { "Tcp", "MaxConn" },
        };
        for (size_t i = 0; i < ELEMENTSOF(constants); i++)
                if (streq(constants[i][0], proto) && streq(constants[i][1], field))
                        return true;
        return false;
}

/* "Proto: name name ...\nProto: value value ...\n" pairs (snmp, netstat):
 * every value zero but the constants. Parses text in place. */
static bool header_value_pairs_zero(char *text) {
        char *save = NULL, *names = strtok_r(text, "\n", &save);
        while (names) {
                char *values = strtok_r(NULL, "\n", &save);
                if (!values)
                        return false;
                char *sn = NULL, *sv = NULL;
                char *proto = strtok_r(names, " ", &sn), *vproto = strtok_r(values, " ", &sv);
                if (!proto || !vproto || !streq(proto, vproto))
                        return false;
                proto[strlen(proto) - 1] = 0; /* the colon */
                for (;;) {
                        char *name = strtok_r(NULL, " ", &sn), *value = strtok_r(NULL, " ", &sv);
                        if (!name && !value)
                                break;
                        if (!name || !value)
                                return false;
                        if (!streq(value, "0") && !snmp_constant(proto, name))
                                return false;
                }
                names = strtok_r(NULL, "\n", &save);
        }
        return true;
}

/* "name value" lines (snmp6): every value zero. */
static bool name_value_lines_zero(const char *text) {
        for (const char *l = text; *l;) {
                const char *end = strchrnul(l, '\n');
                const char *v = end;
                while (v > l && v[-1] == ' ')
                        v--;
                const char *d = v;
                while (d > l && d[-1] != ' ' && d[-1] != '\t')
                        d--;
                if (d < v && !(v - d == 1 && *d == '0'))
                        return false;
                l = *end ? end + 1 : end;
        }
        return true;
}

/* The value after `key` (e.g. "sockets: used") in text; -1 if absent. */
static long long stat_after(const char *text, const char *key) {
        const char *k = strstr(text, key);
        if (!k)
                return -1;
        return strtoll(k + strlen(key), NULL, 10);
}

enum { NET_SOCKSTAT, NET_SOCKSTAT6, NET_DEV, NET_SNMP, NET_SNMP6, NET_NETSTAT, NET_N_TEXTS };
static const char *const net_text_names[NET_N_TEXTS] = { "sockstat", "sockstat6", "dev", "snmp", "snmp6", "netstat" };

/* One text's part of the decision (text may be modified). */
static bool net_text_pristine(int kind, char *text) {
        switch (kind) {
        case NET_SOCKSTAT:
                /* No socket of any family (the count is the namespace's
                 * own), no TIME_WAIT, no fragment being reassembled. */
                return stat_after(text, "sockets: used ") == 0 && stat_after(text, " tw ") == 0 &&
                       stat_after(text, "FRAG: inuse ") == 0;
        case NET_SOCKSTAT6:
                return stat_after(text, "FRAG6: inuse ") == 0;
        case NET_DEV: {
                /* lo (the only device) has carried nothing. */
                const char *lo = strstr(text, "lo:");
                if (!lo)
                        return false;
                for (const char *q = lo + 3; *q && *q != '\n'; q++)
                        if (*q >= '1' && *q <= '9')
                                return false;
                return true;
        }
        case NET_SNMP:
        case NET_NETSTAT:
                return header_value_pairs_zero(text);
        case NET_SNMP6:
                return name_value_lines_zero(text);
        default:
                return false;
        }
}

bool sandbox_net_counters_pristine(const SandboxNetTexts *t) {
        const char *texts[NET_N_TEXTS] = { t->sockstat, t->sockstat6, t->dev, t->snmp, t->snmp6, t->netstat };
        for (int k = 0; k < NET_N_TEXTS; k++) {
                if (!texts[k])
                        return false;
                _cleanup_free_ char *copy = xstrdup(texts[k]);
                if (!net_text_pristine(k, copy))
                        return false;
        }
        return true;
}

/* In the calling process's network namespace. One buffer on the stack,
 * no allocation: an idle spare runs this, and every page it writes is
 * a page it no longer shares with the worker. */
static bool net_pristine_here(void) {
        char buf[12288];
        /* One walk of /proc/self/net (self, the pid's dir, its net dir:
         * proc inodes made on each lookup) for the six files, not six. The
         * dir is looked up after setns(): it is this namespace's. */
        _cleanup_close_ int dir = open("/proc/self/net", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
                return false;
        for (int k = 0; k < NET_N_TEXTS; k++) {
                _cleanup_close_ int fd = openat(dir, net_text_names[k], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return false;
                size_t n = 0;
                for (;;) {
                        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
                        if (r < 0 && errno == EINTR)
                                continue;
                        if (r < 0)
                                return false;
                        if (r == 0)
                                break;
                        n += (size_t) r;
                        if (n == sizeof(buf) - 1)
                                return false; /* larger than any we know: not judged */
                }
                buf[n] = 0;
                if (!net_text_pristine(k, buf))
                        return false;
        }
        return true;
}

/* ---- the worker's pool of finished runs' namespaces ---- */

/* Enough for the runs in flight, the spares and the runs still exiting at
 * concurrency 8 with room to spare: a namespace returned to a full pool is
 * destroyed, and the next spare then pays for a new one. */
#define NETNS_POOL_MAX 32

static int netns_pool[NETNS_POOL_MAX];
static size_t netns_pool_n;
/* Set in the worker just before a fork, so inherited by the run child. */
static int netns_lent = -EBADF;
/* The lent namespace was made by netns_make() for this lend, not taken
 * from the pool: see sandbox_net_enter() for why it needs no check. */
static bool netns_lent_fresh;
/* Pristine checks this process made (sandbox_net_pristine_checks()). */
static unsigned net_checks;

/* One byte per fd number of a lent namespace, shared with the run
 * children (MAP_SHARED): a child that finds its lent namespace not
 * pristine sets its byte, so the worker destroys that namespace when the
 * run ends instead of lending it again. Only trusted C code of the child
 * writes it (the check runs before any code of the env or the user's); the
 * child unmaps it right after (sandbox_netns_pool_drop()). A child that
 * could not write it costs only a check: every adopter checks. */
#define NETNS_FLAGS 4096
static volatile uint8_t *netns_rejected;

/* A fresh namespace for the pool, made by a helper that shares this
 * process's memory and fd table (CLONE_VM | CLONE_FILES), so the helper's
 * open of its own namespace lands in our table: the worker never leaves
 * its namespace (it could not come back: the host's user namespace owns
 * it) and never has to find a child's namespace through /proc. */
#define NETNS_HELPER_STACK (16 << 10)
static void *netns_helper_stack;
static volatile int netns_helper_fd;

static int netns_helper(void *arg) {
        (void) arg;
        /* Shares the worker's TLS (errno): the worker is blocked in
         * waitpid() meanwhile and saves errno around it. */
        netns_helper_fd = -1;
        if (sandbox_net_loopback_up() < 0)
                _exit(1);
        netns_helper_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        _exit(netns_helper_fd >= 0 ? 0 : 1);
}

static int netns_make(void) {
        int saved = errno;
        if (!netns_helper_stack) {
                void *st = mmap(NULL, NETNS_HELPER_STACK, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
                if (st == MAP_FAILED)
                        return -errno;
                netns_helper_stack = st;
        }
        netns_helper_fd = -1;
        /* No exit signal: reaped here, never seen by the worker's SIGCHLD
         * loop. */
        pid_t pid = clone(netns_helper, (char *) netns_helper_stack + NETNS_HELPER_STACK,
                          CLONE_VM | CLONE_FILES | CLONE_NEWNET, NULL);
        if (pid < 0) {
                int r = -errno;
                errno = saved;
                return r;
        }
        int status = 0;
        while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
                ;
        errno = saved;
        int fd = netns_helper_fd;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || fd < 0) {
                if (fd >= 0)
                        close(fd);
                return -EIO;
        }
        return fd;
}

int sandbox_netns_lend(void) {
        netns_lent = fd_close(netns_lent);
        if (!netns_rejected) {
                void *p = mmap(NULL, NETNS_FLAGS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
                if (p != MAP_FAILED)
                        netns_rejected = p;
        }
        bool fresh = netns_pool_n == 0;
        int fd = fresh ? netns_make() : netns_pool[--netns_pool_n];
        netns_lent_fresh = false;
        if (fd < 0)
                return fd; /* the child makes its own, unknown to the pool */
        netns_lent_fresh = fresh;
        if (netns_rejected && fd < NETNS_FLAGS)
                netns_rejected[fd] = 0;
        netns_lent = fd;
        return 0;
}

int sandbox_netns_lend_end(void) {
        netns_lent_fresh = false;
        return TAKE_FD(netns_lent);
}

void sandbox_netns_return(int fd) {
        if (fd < 0)
                return;
        bool rejected = netns_rejected && fd < NETNS_FLAGS && netns_rejected[fd];
        if (!rejected && netns_pool_n < NETNS_POOL_MAX)
                netns_pool[netns_pool_n++] = fd;
        else
                close(fd);
}

unsigned sandbox_net_pristine_checks(void) {
        return net_checks;
}

void sandbox_netns_pool_drop(void) {
        for (size_t i = 0; i < netns_pool_n; i++)
                close(netns_pool[i]);
        netns_pool_n = 0;
}

int sandbox_net_enter(bool network, char **ret_error) {
        /* Only this child holds the lent namespace now: the worker's pool
         * is its own, not a run's to keep. */
        int lent = TAKE_FD(netns_lent);
        bool fresh = netns_lent_fresh;
        netns_lent_fresh = false;
        sandbox_netns_pool_drop();
        volatile uint8_t *rejected = TAKE_PTR(netns_rejected);
        bool adopted = network; /* a run with network stays in the worker's */
        if (!network && lent >= 0) {
                /* A namespace the worker made for this very lend (not one
                 * from the pool) needs no check (it cost ~4 ms on a cold
                 * env's first run, the first walk of a new namespace's
                 * /proc/net): no process but netns_make()'s helper was
                 * ever in it, and that helper only brought lo up and
                 * opened it before exiting (reaped before the lend
                 * returned); no run is in it or was; the only fd of it is
                 * the worker's, which trusted C code holds (lent to this
                 * child alone: the worker is single-threaded and clears
                 * the lend right after this fork), and without
                 * CAP_NET_ADMIN over it no code could have changed it
                 * from outside. So it holds exactly what a namespace
                 * made here by unshare() would. One from the pool was a
                 * run's: checked, as before. */
                adopted = setns(lent, CLONE_NEWNET) == 0 && (fresh || (net_checks++, net_pristine_here()));
                /* Not pristine: the worker destroys it when this run
                 * ends, instead of lending it again. */
                if (!adopted && rejected && lent < NETNS_FLAGS)
                        rejected[lent] = 1;
        }
        (void) fd_close(lent);
        /* Gone before any code of the env or the user's runs. */
        if (rejected)
                (void) munmap((void *) rejected, NETNS_FLAGS);
        if (adopted)
                return 0;
        if (unshare(CLONE_NEWNET) < 0) {
                int r = -errno;
                *ret_error = xasprintf("creating the run's network namespace: %s", strerror(-r));
                return r;
        }
        int r = sandbox_net_loopback_up();
        if (r < 0) {
                *ret_error = xasprintf("bringing up the run's loopback: %s", strerror(-r));
                return r;
        }
        return 0;
}

int sandbox_worker_net_isolate(char **ret_error) {
        assert(ret_error);
        /* Loopback stays down: nothing the worker does listens or
         * connects; its runs get namespaces of their own (lo up). */
        if (unshare(CLONE_NEWNET) < 0) {
                int r = -errno;
                *ret_error = xasprintf("leaving the host's network namespace: unshare(CLONE_NEWNET): %s", strerror(-r));
                return r;
        }
        return 0;
}
