/* cgroups: a group per run, beneath the engine's own, v2 or v1.
 *
 * Both layouts exist in the wild and on one machine at once: a "hybrid"
 * host has the v1 controllers (memory, pids, cpu) and a controller-less v2
 * mount at /sys/fs/cgroup/unified. We make the run's group on v2 whenever
 * v2 is mounted (even without controllers it gives cgroup.kill, an atomic
 * kill of the whole tree) and, for each controller v2 cannot provide
 * beneath us, on that controller's v1 hierarchy.
 *
 * Delegation without chown: the engine opens each group's cgroup.procs
 * for writing and hands the fds to the run, which writes "0" (itself).
 * The kernel checks a cgroup.procs write against the credentials of the
 * file's opener (cgroup_procs_write(): "check permissions using the
 * credentials from file open to protect against inherited fd attacks"),
 * so a run that is an unprivileged uid on the host can still join the group the
 * engine made for it, and only that group. */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "sandbox-internal.h"
#include "sandbox-syscall.h"

enum {
        CTRL_MEMORY = 1 << 0,
        CTRL_PIDS = 1 << 1,
        CTRL_CPU = 1 << 2,
        CTRL_ALL = CTRL_MEMORY | CTRL_PIDS | CTRL_CPU,
        /* Not a limit (not in CTRL_ALL, never "missing"): idle warm
         * instances are frozen. v2 has it in every non-root group
         * (cgroup.freeze); v1 has a "freezer" hierarchy. */
        CTRL_FREEZER = 1 << 3,
};
static const char *const ctrl_names[] = { "memory", "pids", "cpu", "freezer" };

typedef struct CgDir {
        char *path;
        /* The group's directory (O_PATH): its files are opened relative
         * to it, one path component to walk instead of the ~6 of
         * /sys/fs/cgroup/memory/…/pysprinter-…/FILE (several kernfs files
         * per run: limits, counters, cgroup.procs). */
        int dfd;
        bool v2;
        unsigned ctrls;
        int procs_fd;
        /* cgroup.freeze (v2) or freezer.state (v1), opened at the first
         * freeze and kept for the group's life: a warm instance is thawed
         * and frozen around every invocation, and an open + close of a
         * kernfs file each time was 4 syscalls per invoke. */
        int freeze_fd;
        /* The limits in force in this group (0: the kernel's default, no
         * limit): a limit equal to what the group has is not written
         * again (each write is an open + write + close of a kernfs file,
         * and a spare's group gets the run's limits on its critical path). */
        uint64_t memory_bytes, max_procs, cpu_millis;
        /* pids.events "max" when the group was taken again for a new run
         * (sandbox_cgroup_renew()): the counter cannot be reset, the
         * run's verdict is the difference. */
        uint64_t pids_max_base;
        /* v1 memory group used again (sandbox_cgroup_recycle()): the
         * oom_kill count when it was taken again (it cannot be reset; the
         * run's verdict is the difference) and how many runs it served. */
        uint64_t oom_base, residue;
        unsigned uses;
        /* The files read or written per run (kept_files[]), opened at
         * first use and kept for the group's life, stored as fd + 1 (0:
         * not open): a group serves up to CG_MEM_USES_MAX runs and an
         * open + close of a kernfs file each time was ~10 opens per run
         * in the janitor alone. */
        int kept[16];
        /* Removed by sandbox_cgroup_recycle() (it held memory), made
         * again, fresh, by sandbox_cgroup_renew(); path is still its old
         * one (its parent is where the new one goes). */
        bool gone;
} CgDir;

struct SandboxCgroup {
        CgDir dirs[6];
        size_t n;
        unsigned have;
        char *missing;
};

typedef struct Hier {
        bool v2;
        char opts[256];   /* v1: super options (controllers) */
        char dir[4096];   /* mount point + our path */
} Hier;

static int open_at(int dfd, const char *dir, const char *file, int flags) {
        flags |= O_CLOEXEC | O_NOFOLLOW;
        if (dfd >= 0)
                return openat(dfd, file, flags);
        char p[PATH_MAX];
        if ((size_t) snprintf(p, sizeof(p), "%s/%s", dir, file) >= sizeof(p))
                return -ENAMETOOLONG;
        return open(p, flags);
}

/* The files a group has read or written for each run, kept open (see
 * CgDir.kept): counters (kernfs re-runs a seq_file's show at each read
 * from offset 0, so pread(fd, 0) is a fresh value), limits and resets
 * (kernfs takes each write whole, whatever the offset). v1's cgroup.procs
 * is not one of them: a v1 listing is a pidlist the kernel caches per
 * cgroup and reuses for an fd that read it before (cgroup_pidlist_start()),
 * so re-reading a kept fd could list processes that are gone, or miss new
 * ones; only a fresh open loads it again. v2's cgroup.procs restarts its
 * task iteration at offset 0. At most 15 per directory, fewer in practice
 * (each directory has only its controllers' files: v1 memory 7, v1 pids 2,
 * v1 cpu 1, v2 6). */
static const struct {
        const char *name;
        int flags;
        bool v2_only;
} kept_files[] = {
        { "memory.usage_in_bytes", O_RDONLY, false },
        { "memory.oom_control", O_RDONLY, false },
        { "memory.failcnt", O_RDWR, false },
        { "memory.max_usage_in_bytes", O_RDWR, false },
        { "memory.memsw.failcnt", O_RDWR, false },
        { "memory.limit_in_bytes", O_WRONLY, false },
        { "memory.memsw.limit_in_bytes", O_WRONLY, false },
        { "memory.events", O_RDONLY, false },
        { "memory.peak", O_RDONLY, false },
        { "memory.max", O_WRONLY, false },
        { "pids.events", O_RDONLY, false },
        { "pids.max", O_WRONLY, false },
        { "cpu.cfs_quota_us", O_WRONLY, false },
        { "cpu.max", O_WRONLY, false },
        { "cgroup.procs", O_RDONLY, true },
};

static int kept_index(const CgDir *d, const char *file) {
        for (size_t i = 0; i < ELEMENTSOF(kept_files); i++)
                if (streq(kept_files[i].name, file))
                        return kept_files[i].v2_only && !d->v2 ? -1 : (int) i;
        return -1;
}

/* The fd budget of the kept files, process-wide: a quarter of
 * RLIMIT_NOFILE (256 under systemd's default soft 1024: ~25 groups of a
 * hybrid host, 10 kept files each; the engine keeps up to 64 recycled
 * groups besides the ones in use). Past it a file is opened per use, as
 * before. */
static long kept_open;

/* Read at each file's first open (once per file of a group, not per use):
 * a test, or an operator's prlimit, lowers it while we run. */
static long kept_budget(void) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return 256;
        return (long) (rl.rlim_cur / 4);
}

long sandbox_cgroup_kept_fds(void) {
        return __atomic_load_n(&kept_open, __ATOMIC_RELAXED);
}

/* The kept fd of kept_files[i] in d, opened at first use; -EDQUOT when
 * the budget is spent (the caller opens the file for this use). Thread-
 * safe as freeze_fd() (a run's stats and a cancel's kill may meet): the
 * loser of a race to open closes its copy. */
static int kept_fd(CgDir *d, int i) {
        int v = __atomic_load_n(&d->kept[i], __ATOMIC_ACQUIRE);
        if (v > 0)
                return v - 1;
        if (__atomic_add_fetch(&kept_open, 1, __ATOMIC_RELAXED) > kept_budget()) {
                __atomic_sub_fetch(&kept_open, 1, __ATOMIC_RELAXED);
                return -EDQUOT;
        }
        int fd = open_at(d->dfd, d->path, kept_files[i].name, kept_files[i].flags);
        if (fd < 0) {
                int r = fd == -1 ? -errno : fd;
                __atomic_sub_fetch(&kept_open, 1, __ATOMIC_RELAXED);
                return r;
        }
        int expected = 0;
        if (__atomic_compare_exchange_n(&d->kept[i], &expected, fd + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return fd;
        (void) close(fd);
        __atomic_sub_fetch(&kept_open, 1, __ATOMIC_RELAXED);
        return expected - 1;
}

static void kept_close(CgDir *d) {
        for (size_t i = 0; i < ELEMENTSOF(d->kept); i++)
                if (d->kept[i] > 0) {
                        (void) close(d->kept[i] - 1);
                        d->kept[i] = 0;
                        __atomic_sub_fetch(&kept_open, 1, __ATOMIC_RELAXED);
                }
}

/* read_small() of a kept fd: from offset 0 to EOF. */
static ssize_t pread_small(int fd, char *buf, size_t size) {
        size_t n = 0;
        while (n < size) {
                ssize_t k = pread(fd, buf + n, size - n, (off_t) n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        if (n >= size)
                return -EFBIG;
        buf[n] = 0;
        return (ssize_t) n;
}

static int write_at(int dfd, const char *dir, const char *file, const char *s) {
        _cleanup_close_ int fd = open_at(dfd, dir, file, O_WRONLY);
        if (fd < 0)
                return fd == -1 ? -errno : fd;
        if (write(fd, s, strlen(s)) < 0)
                return -errno;
        return 0;
}

static int write_str(const char *dir, const char *file, const char *s) {
        return write_at(-EBADF, dir, file, s);
}

static int cg_write(CgDir *d, const char *file, const char *s) {
        int i = kept_index(d, file);
        if (i < 0)
                return write_at(d->dfd, d->path, file, s);
        int fd = kept_fd(d, i);
        if (fd == -EDQUOT)
                return write_at(d->dfd, d->path, file, s);
        if (fd < 0)
                return fd;
        return pwrite(fd, s, strlen(s), 0) < 0 ? -errno : 0;
}

static ssize_t read_small(int dfd, const char *dir, const char *file, char *buf, size_t size);

/* read_small() of a group's file, by its kept fd when it has one. */
static ssize_t cg_read_small(CgDir *d, const char *file, char *buf, size_t size) {
        int i = kept_index(d, file);
        if (i < 0)
                return read_small(d->dfd, d->path, file, buf, size);
        int fd = kept_fd(d, i);
        if (fd == -EDQUOT)
                return read_small(d->dfd, d->path, file, buf, size);
        return fd < 0 ? fd : pread_small(fd, buf, size);
}

/* A small kernfs file read whole into buf, NUL-terminated: open, read to
 * EOF, close (no fstat, no allocation). -EFBIG when it does not fit. */
static ssize_t read_small(int dfd, const char *dir, const char *file, char *buf, size_t size) {
        _cleanup_close_ int fd = open_at(dfd, dir, file, O_RDONLY);
        if (fd < 0)
                return fd == -1 ? -errno : fd;
        /* One byte more than fits tells a file that does not. */
        ssize_t n = read_full(fd, buf, size);
        if (n < 0)
                return n;
        if ((size_t) n >= size)
                return -EFBIG;
        buf[n] = 0;
        return n;
}

static int parse_key(char *s, const char *key, uint64_t *ret) {
        if (!key) {
                *ret = strtoull(s, NULL, 10);
                return 0;
        }
        size_t kl = strlen(key);
        for (char *line = s; line && *line;) {
                if (strneq(line, key, kl) && line[kl] == ' ') {
                        *ret = strtoull(line + kl + 1, NULL, 10);
                        return 0;
                }
                line = strchr(line, '\n');
                if (line)
                        line++;
        }
        return -ENOENT;
}

/* A counter of a group's file ("KEY VALUE" lines, or one value when key is
 * NULL): memory.events, oom_control, pids.events, failcnt… all fit 4 KiB. */
static int cg_read_key(CgDir *d, const char *file, const char *key, uint64_t *ret) {
        char buf[4096];
        ssize_t n = cg_read_small(d, file, buf, sizeof(buf));
        if (n < 0)
                return (int) n;
        return parse_key(buf, key, ret);
}

static bool has_word(const char *list, const char *word, char sep) {
        size_t l = strlen(word);
        for (const char *p = list; p && *p;) {
                const char *e = strchr(p, sep);
                size_t n = e ? (size_t) (e - p) : strlen(p);
                if (n == l && strneq(p, word, l))
                        return true;
                p = e ? e + 1 : NULL;
        }
        return false;
}

static unsigned ctrls_of(const char *list, char sep) {
        unsigned m = 0;
        for (size_t i = 0; i < ELEMENTSOF(ctrl_names); i++)
                if (has_word(list, ctrl_names[i], sep))
                        m |= 1U << i;
        return m;
}

/* Finds, for the v2 hierarchy and each v1 hierarchy we care about, the
 * directory of the cgroup this process is in: the mount point of that
 * hierarchy plus our path (relative to the mount's root, which is not "/"
 * inside some containers). */
static int find_hierarchies_uncached(Hier *out, size_t max, size_t *ret_n) {
        _cleanup_free_ char *cg = NULL, *mi = NULL;
        int r = read_file("/proc/self/cgroup", 64 << 10, &cg, NULL);
        if (r < 0)
                return r;
        r = read_file("/proc/self/mountinfo", 4 << 20, &mi, NULL);
        if (r < 0)
                return r;
        size_t n = 0;
        for (char *line = cg; line && *line && n < max;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (c2) {
                        *c2 = 0;
                        const char *ctrls = c1 + 1, *path = c2 + 1;
                        bool v2 = strneq(line, "0:", 2) && *ctrls == 0;
                        unsigned want = v2 ? CTRL_ALL : ctrls_of(ctrls, ',');
                        if (want) {
                                /* Find the mount. */
                                _cleanup_free_ char *mcopy = xstrdup(mi);
                                for (char *ml = mcopy; ml && *ml;) {
                                        char *mnl = strchr(ml, '\n');
                                        if (mnl)
                                                *mnl = 0;
                                        char root[4096], mnt[4096], fstype[64], superopts[512];
                                        char *dash = strstr(ml, " - ");
                                        if (dash && sscanf(ml, "%*s %*s %*s %4095s %4095s", root, mnt) == 2 &&
                                            sscanf(dash + 3, "%63s %*s %511s", fstype, superopts) == 2) {
                                                bool match = v2 ? streq(fstype, "cgroup2")
                                                                : streq(fstype, "cgroup") &&
                                                                          (ctrls_of(superopts, ',') & want);
                                                if (match) {
                                                        const char *rel = path;
                                                        if (!streq(root, "/")) {
                                                                if (!startswith(path, root))
                                                                        goto next;
                                                                rel = path + strlen(root);
                                                        }
                                                        Hier *h = &out[n++];
                                                        h->v2 = v2;
                                                        snprintf(h->opts, sizeof(h->opts), "%s", v2 ? "" : ctrls);
                                                        snprintf(h->dir, sizeof(h->dir), "%s%s", mnt,
                                                                 streq(rel, "/") ? "" : rel);
                                                        break;
                                                }
                                        }
                                next:
                                        ml = mnl ? mnl + 1 : NULL;
                                }
                        }
                }
                line = nl ? nl + 1 : NULL;
        }
        *ret_n = n;
        return 0;
}

/* Our cgroup does not change while we run, and reading mountinfo for each
 * run showed in profiles: look once. */
static Hier cached_hier[16];
static size_t cached_n;
static int cached_r;
static pthread_once_t hier_once = PTHREAD_ONCE_INIT;

static void hier_init(void) {
        cached_r = find_hierarchies_uncached(cached_hier, ELEMENTSOF(cached_hier), &cached_n);
}

static int find_hierarchies(Hier *out, size_t max, size_t *ret_n) {
        pthread_once(&hier_once, hier_init);
        if (cached_r < 0)
                return cached_r;
        size_t n = MIN(max, cached_n);
        memcpy(out, cached_hier, n * sizeof(Hier));
        *ret_n = n;
        return 0;
}

/* Writes the limits that differ from the group's. A fresh group has no
 * limit (memory, memsw, pids max; v1 cpu.cfs_period_us is 100000 and the
 * quota -1): its first memory limit is a lowering, the period needs no
 * write. v2's swap.max and oom.group are written with its first memory
 * limit only: nothing resets them. Returns the memory limit's write error:
 * v1 refuses (EBUSY) a limit below what a group with a process in it
 * holds and cannot reclaim (a spare's memory), and the group then keeps
 * its old, higher limit (recorded as such: a later call writes it
 * again). The other writes cannot fail that way (pids.max and the cpu
 * quota may be set below current use). */
static int apply_limits(CgDir *d, const SandboxLimits *l) {
        char buf[64];
        int r = 0;
        if (d->ctrls & CTRL_MEMORY && l->memory_bytes && l->memory_bytes != d->memory_bytes) {
                snprintf(buf, sizeof(buf), "%llu", (unsigned long long) l->memory_bytes);
                if (d->v2) {
                        r = cg_write(d, "memory.max", buf);
                        if (!d->memory_bytes) {
                                /* "With swap": no swap at all beyond the limit. */
                                (void) cg_write(d, "memory.swap.max", "0");
                                /* One OOM kills the whole run, not a random member. */
                                (void) cg_write(d, "memory.oom.group", "1");
                        }
                } else {
                        /* v1 wants limit <= memsw at every step: raising
                         * sets memsw first, lowering the limit first. */
                        bool raising = d->memory_bytes && l->memory_bytes > d->memory_bytes;
                        if (raising)
                                (void) cg_write(d, "memory.memsw.limit_in_bytes", buf);
                        r = cg_write(d, "memory.limit_in_bytes", buf);
                        if (!raising && r >= 0)
                                (void) cg_write(d, "memory.memsw.limit_in_bytes", buf);
                        if (!d->memory_bytes && r >= 0)
                                (void) cg_write(d, "memory.swappiness", "0");
                        /* Socket buffers: v2 charges them to the group,
                         * v1 only once its TCP limit was written (which
                         * switches its TCP accounting on). Without it a run
                         * under --memory 32M held 120 MiB queued on its
                         * loopback sockets, and with 1024 fds ~2 GiB: past
                         * net.ipv4.tcp_mem, one count for every network
                         * namespace, so the whole host's TCP was under
                         * memory pressure. v1 counts it apart from the
                         * limit above: a run may hold its limit in memory
                         * and as much again in socket buffers, never more.
                         * Best effort: a kernel booted with
                         * cgroup.memory=nosocket has no such accounting. */
                        if (r >= 0)
                                (void) cg_write(d, "memory.kmem.tcp.limit_in_bytes", buf);
                }
                if (r >= 0)
                        d->memory_bytes = l->memory_bytes;
        }
        /* A group used again (sandbox_cgroup_recycle()) keeps the limits
         * of its last run: "none" for this one is written, not skipped. */
        if (d->ctrls & CTRL_PIDS && l->max_procs != d->max_procs) {
                if (l->max_procs)
                        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) l->max_procs);
                else
                        snprintf(buf, sizeof(buf), "max");
                (void) cg_write(d, "pids.max", buf);
                d->max_procs = l->max_procs;
        }
        if (d->ctrls & CTRL_CPU && l->cpu_millis != d->cpu_millis) {
                unsigned long long period = 100000, quota = period * l->cpu_millis / 1000;
                if (d->v2) {
                        if (l->cpu_millis)
                                snprintf(buf, sizeof(buf), "%llu %llu", quota, period);
                        else
                                snprintf(buf, sizeof(buf), "max %llu", period);
                        (void) cg_write(d, "cpu.max", buf);
                } else if (!l->cpu_millis) {
                        (void) cg_write(d, "cpu.cfs_quota_us", "-1");
                } else {
                        /* The period is the kernel's default (100 ms) in a
                         * group we made and never changed. */
                        snprintf(buf, sizeof(buf), "%llu", quota);
                        (void) cg_write(d, "cpu.cfs_quota_us", buf);
                }
                d->cpu_millis = l->cpu_millis;
        }
        return r;
}

static bool name_ok(const char *name) {
        size_t l = strlen(name);
        if (l == 0 || l > 64)
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return !streq(name, ".") && !streq(name, "..");
}

/* The group's O_PATH fd (CgDir.dfd); without it, files go by path. */
static void dir_open(CgDir *d) {
        d->dfd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (d->dfd < 0)
                d->dfd = -EBADF;
}

/* A group's directory name: "pysprinter-NAME-nNS-tSTART-PID", PID this
 * process's, START its start time (pid_start_time()) and NS its pid
 * namespace (pid_namespace_id()). sandbox_cgroup_sweep_stale() takes the
 * last number of a name for its owner, so the owner is added here, never
 * left to each caller: names that ended in a counter of their own
 * ("bench-PID-155") were read as owned by pid 155, and any engine's sweep
 * killed the processes of such a live group and removed it. The namespace
 * says where that pid means something: a CLI under `unshare --pid
 * --mount-proc` saw no process of the host's, and its sweep took every
 * live engine's groups beside it for orphans. The start time tells the
 * owner from a later process given its pid: a killed daemon's groups
 * stayed for as long as its pid was reused (pid_max 32768 on a busy host). */
static char *group_leaf(const char *name) {
        /* Read each time, not kept: a forked child naming groups is
         * another process. 0 (not known) is judged by pid alone. */
        uint64_t start = 0;
        (void) pid_start_time(getpid(), &start);
        return xasprintf("pysprinter-%s-n%llu-t%llu-%d", name, pid_namespace_id(), (unsigned long long) start,
                         (int) getpid());
}

/* The number after letter at the start of the segment of leaf that ends
 * at end (a '-'), or -1 when that segment is not letter and digits. */
static long long segment_number(const char *leaf, const char *end, char letter, const char **ret_start) {
        const char *seg = end;
        while (seg > leaf && seg[-1] != '-')
                seg--;
        *ret_start = seg;
        if (seg == leaf || seg[0] != letter || seg + 1 >= end)
                return -1;
        char *e;
        unsigned long long v = strtoull(seg + 1, &e, 10);
        return e == end && v <= LLONG_MAX ? (long long) v : -1;
}

/* The owner of a group named by group_leaf(): its pid and start time (0:
 * not written, judged by pid alone), and whether that pid is this
 * process's to judge (the namespace written before them is own_ns, this
 * process's; a name without one, made before it was written, is judged as
 * before). 0: not a name with an owner. */
static pid_t group_owner(const char *leaf, unsigned long long own_ns, bool *ret_ours, uint64_t *ret_start) {
        const char *dash = strrchr(leaf, '-');
        char *end;
        long pid = dash ? strtol(dash + 1, &end, 10) : 0;
        if (!dash || *end || pid <= 0 || pid > INT_MAX)
                return 0;
        *ret_ours = true;
        *ret_start = 0;
        const char *seg;
        long long start = segment_number(leaf, dash, 't', &seg);
        if (start >= 0) {
                *ret_start = (uint64_t) start;
                dash = seg - 1;
        }
        long long ns = dash > leaf ? segment_number(leaf, dash, 'n', &seg) : -1;
        if (ns >= 0)
                *ret_ours = (unsigned long long) ns == own_ns;
        return (pid_t) pid;
}

static int add_dir(SandboxCgroup *cg, const char *parent, const char *name, bool v2, unsigned ctrls,
                   const SandboxLimits *l) {
        if (cg->n >= ELEMENTSOF(cg->dirs))
                return -E2BIG;
        _cleanup_free_ char *leaf = group_leaf(name);
        char *path = path_join(parent, leaf);
        /* A group that exists already belongs to someone else: joining it
         * would share its limits and its kill with another run (warm
         * instances of one function once did, and a time limit of one
         * invocation killed the others). Never reuse one. */
        if (mkdir(path, 0755) < 0) {
                int r = -errno;
                free(path);
                return r;
        }
        CgDir *d = &cg->dirs[cg->n++];
        *d = (CgDir) { .path = path, .v2 = v2, .ctrls = ctrls, .procs_fd = -EBADF, .freeze_fd = -EBADF };
        dir_open(d);
        (void) apply_limits(d, l); /* empty: nothing to refuse */
        d->procs_fd = open_at(d->dfd, d->path, "cgroup.procs", O_WRONLY);
        if (d->procs_fd < 0)
                return d->procs_fd == -1 ? -errno : d->procs_fd;
        cg->have |= ctrls;
        return 0;
}

int sandbox_cgroup_new(const char *name, const SandboxLimits *limits, SandboxCgroup **ret, char **ret_error) {
        if (!name_ok(name)) {
                *ret_error = xasprintf("invalid cgroup name '%s'", name);
                return -EINVAL;
        }
        Hier h[16];
        size_t nh = 0;
        int r = find_hierarchies(h, ELEMENTSOF(h), &nh);
        if (r < 0) {
                *ret_error = xasprintf("reading /proc/self/cgroup: %s", strerror(-r));
                return r;
        }
        SandboxCgroup *cg = xcalloc(1, sizeof(SandboxCgroup));
        int first_err = 0;
        const Hier *v2_only_freezer = NULL;
        /* v2 first. */
        for (size_t i = 0; i < nh; i++) {
                if (!h[i].v2)
                        continue;
                _cleanup_free_ char *avail = NULL, *ctl = path_join(h[i].dir, "cgroup.controllers");
                unsigned ctrls = 0;
                if (read_file(ctl, 4096, &avail, NULL) >= 0) {
                        strstrip(avail);
                        unsigned a = ctrls_of(avail, ' ');
                        /* Enable what is available for our children; this
                         * fails while our own cgroup holds processes and
                         * is not the root (the "no internal processes"
                         * rule); then v1 or rlimits have to do. */
                        for (size_t c = 0; c < ELEMENTSOF(ctrl_names); c++) {
                                if (!(a & (1U << c) & CTRL_ALL))
                                        continue;
                                _cleanup_free_ char *plus = xasprintf("+%s", ctrl_names[c]);
                                _cleanup_free_ char *sub = NULL, *subp = path_join(h[i].dir, "cgroup.subtree_control");
                                if (read_file(subp, 4096, &sub, NULL) >= 0 && has_word(strstrip(sub), ctrl_names[c], ' '))
                                        ctrls |= 1U << c;
                                else if (write_str(h[i].dir, "cgroup.subtree_control", plus) >= 0)
                                        ctrls |= 1U << c;
                        }
                }
                /* A v2 group without a limit controller gives only the
                 * freezer and cgroup.kill: a group never frozen does
                 * without it when v1 gives it a group (below). */
                if (!ctrls && limits->no_freezer) {
                        v2_only_freezer = &h[i];
                        break;
                }
                r = add_dir(cg, h[i].dir, name, true, ctrls | CTRL_FREEZER, limits);
                if (r == -EEXIST)
                        goto exists;
                if (r < 0 && !first_err)
                        first_err = r;
                break;
        }
        for (size_t i = 0; i < nh; i++) {
                if (h[i].v2)
                        continue;
                unsigned ctrls = ctrls_of(h[i].opts, ',') & ~cg->have;
                if (limits->no_freezer)
                        ctrls &= ~CTRL_FREEZER;
                if (!ctrls)
                        continue;
                r = add_dir(cg, h[i].dir, name, false, ctrls, limits);
                if (r == -EEXIST)
                        goto exists;
                if (r < 0 && !first_err)
                        first_err = r;
        }
        if (cg->n == 0 && v2_only_freezer) {
                /* Nothing on v1: the v2 group's cgroup.kill is still the
                 * run's one complete kill. */
                r = add_dir(cg, v2_only_freezer->dir, name, true, CTRL_FREEZER, limits);
                if (r == -EEXIST)
                        goto exists;
                if (r < 0 && !first_err)
                        first_err = r;
        }
        if (cg->n == 0 || (first_err && cg->dirs[cg->n - 1].procs_fd < 0 && cg->n == 1)) {
                *ret_error = xasprintf("cannot create a cgroup beneath this process's own (%s); limits fall back "
                                       "to rlimits", first_err ? strerror(-first_err) : "no cgroup hierarchy mounted");
                sandbox_cgroup_free(cg);
                return first_err ? first_err : -ENOENT;
        }
        if ((cg->have & CTRL_ALL) != CTRL_ALL) {
                _cleanup_(buf_free) Buf b;
                buf_init(&b, 256);
                for (size_t c = 0; c < ELEMENTSOF(ctrl_names); c++)
                        if ((CTRL_ALL & (1U << c)) && !(cg->have & (1U << c)))
                                (void) buf_printf(&b, "%s%s", b.len ? ", " : "", ctrl_names[c]);
                cg->missing = buf_steal(&b);
        }
        *ret = cg;
        return 0;
exists:
        *ret_error = xasprintf("the cgroup pysprinter-%s exists already; every run and instance needs its own", name);
        sandbox_cgroup_free(cg);
        return -EEXIST;
}

const char *sandbox_cgroup_missing(const SandboxCgroup *cg) {
        return cg ? cg->missing : "memory, pids, cpu";
}

bool sandbox_cgroup_has_memory(const SandboxCgroup *cg) {
        return cg && (cg->have & CTRL_MEMORY);
}

size_t sandbox_cgroup_procs_fds(const SandboxCgroup *cg, int *fds, size_t max) {
        size_t n = 0;
        for (size_t i = 0; cg && i < cg->n && n < max; i++)
                if (cg->dirs[i].procs_fd >= 0)
                        fds[n++] = cg->dirs[i].procs_fd;
        return n;
}

int sandbox_cgroup_pids(const SandboxCgroup *cg, pid_t *pids, size_t max) {
        if (!cg || cg->n == 0)
                return -ENOENT;
        /* Every directory of the group holds the same processes. */
        _cleanup_free_ char *p = path_join(cg->dirs[0].path, "cgroup.procs"), *s = NULL;
        int r = read_file(p, 4 << 20, &s, NULL);
        if (r < 0)
                return r;
        int n = 0;
        char *t = s, *end;
        /* strtol() skips the newlines between the pids. */
        for (long pid; (pid = strtol(t, &end, 10)) > 0; t = end) {
                if ((size_t) n < max)
                        pids[n] = (pid_t) pid;
                n++;
        }
        return n;
}

/* The processes sandbox_cgroup_kill() has sent SIGKILL, each with a pidfd
 * that tells when it has exited: a killed process can stay listed for a
 * long while (its do_exit() tears its namespaces down before it leaves
 * the cgroup: free_nsproxy()'s synchronize_rcu_expedited() took 50 ms-3 s
 * under load) and is not killed again meanwhile (it was sent thousands of
 * SIGKILLs, one per 1 ms round). A pid listed again after its pidfd said
 * it exited is another process (the number was reused): killed. */
#define KILL_TRACK_MAX 64
typedef struct KillSet {
        size_t n;
        struct {
                pid_t pid;
                int pidfd; /* -1: no pidfd (pidfd_open() unsupported) */
                bool exited;
        } k[KILL_TRACK_MAX];
        /* Killed this round without a pidfd to wait on: the old 1 ms
         * rounds for them. */
        bool untracked;
} KillSet;

static void kill_set_done(KillSet *ks) {
        for (size_t i = 0; i < ks->n; i++)
                if (ks->k[i].pidfd >= 0)
                        (void) close(ks->k[i].pidfd);
        ks->n = 0;
}

static uint64_t kills_sent;

uint64_t sandbox_cgroup_kills_sent(void) {
        return __atomic_load_n(&kills_sent, __ATOMIC_RELAXED);
}

/* SIGKILLs pid through a pidfd: the signal reaches the process the pidfd
 * was opened on (or none once it is gone), never one that took its number
 * after it was reaped; by number only where the kernel has no pidfds.
 * Returns the pidfd (the caller's to close), -1 without one, or -ESRCH when
 * pid was gone already (nothing sent). */
static int kill_through_pidfd(pid_t pid) {
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0 && errno == ESRCH)
                return -ESRCH; /* gone (reaped) since the listing */
        bool sent = pidfd >= 0 &&
                    (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0 || errno != ENOSYS);
        if (!sent)
                (void) kill(pid, SIGKILL);
        return pidfd >= 0 ? pidfd : -1;
}

/* SIGKILLs pid unless ks knows it killed this very process already. */
static void kill_once(KillSet *ks, pid_t pid) {
        if (!ks) {
                int pidfd = kill_through_pidfd(pid);
                if (pidfd >= 0)
                        (void) close(pidfd);
                return;
        }
        for (size_t i = 0; i < ks->n; i++) {
                if (ks->k[i].pid != pid)
                        continue;
                if (!ks->k[i].exited)
                        return; /* killed, still exiting: wait */
                /* Exited: a new process with that number. */
                if (ks->k[i].pidfd >= 0)
                        (void) close(ks->k[i].pidfd);
                ks->k[i] = ks->k[--ks->n];
                break;
        }
        int pidfd = kill_through_pidfd(pid);
        if (pidfd == -ESRCH)
                return;
        __atomic_add_fetch(&kills_sent, 1, __ATOMIC_RELAXED);
        if (pidfd >= 0 && ks->n < KILL_TRACK_MAX) {
                ks->k[ks->n].pid = pid;
                ks->k[ks->n].pidfd = pidfd;
                ks->k[ks->n].exited = false;
                ks->n++;
                return;
        }
        if (pidfd >= 0)
                (void) close(pidfd);
        ks->untracked = true;
}

/* Reads the pids in dir/cgroup.procs (d: the group, by its dfd, or NULL
 * and dir: by path), SIGKILLs them (each once when ks is given); returns
 * how many are listed. Usually empty (the run's init was reaped): one
 * read into a stack buffer. */
static int kill_listed(CgDir *d, const char *dir, KillSet *ks) {
        char small[4096];
        _cleanup_free_ char *big = NULL;
        char *s = small;
        ssize_t k = d ? cg_read_small(d, "cgroup.procs", small, sizeof(small))
                      : read_small(-EBADF, dir, "cgroup.procs", small, sizeof(small));
        if (k == -EFBIG) {
                _cleanup_free_ char *p = path_join(dir, "cgroup.procs");
                int r = read_file(p, 4 << 20, &big, NULL);
                if (r < 0)
                        return r == -ENOENT ? 0 : r;
                s = big;
        } else if (k < 0)
                return k == -ENOENT ? 0 : (int) k;
        int n = 0;
        for (char *t = s; *t;) {
                char *end;
                long pid = strtol(t, &end, 10);
                if (end == t)
                        break;
                if (pid > 0) {
                        kill_once(ks, (pid_t) pid);
                        n++;
                }
                t = end;
                while (*t == '\n')
                        t++;
        }
        return n;
}

/* Waits, at most timeout_ms, for one of the killed processes to exit
 * (its pidfd turns readable), or 1 ms when one was killed without a
 * pidfd or none is left to wait on (the old rounds). */
static void kill_set_wait(KillSet *ks, int timeout_ms) {
        struct pollfd pfd[KILL_TRACK_MAX];
        size_t idx[KILL_TRACK_MAX], n = 0;
        for (size_t i = 0; i < ks->n; i++)
                if (!ks->k[i].exited && ks->k[i].pidfd >= 0) {
                        pfd[n] = (struct pollfd) { .fd = ks->k[i].pidfd, .events = POLLIN };
                        idx[n++] = i;
                }
        if (n == 0 || ks->untracked) {
                ks->untracked = false;
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
                if (n == 0)
                        return;
                timeout_ms = 0;
        }
        if (poll(pfd, n, timeout_ms) <= 0)
                return;
        for (size_t j = 0; j < n; j++)
                if (pfd[j].revents)
                        ks->k[idx[j]].exited = true;
}

/* The group's freezer file, opened once. Thread-safe: a cancel (another
 * thread) may thaw a group while its owner freezes it; the loser of a
 * race to open closes its copy. */
static int freeze_fd(CgDir *d) {
        int fd = __atomic_load_n(&d->freeze_fd, __ATOMIC_ACQUIRE);
        if (fd >= 0)
                return fd;
        _cleanup_free_ char *p = path_join(d->path, d->v2 ? "cgroup.freeze" : "freezer.state");
        int mine = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (mine < 0)
                return -errno;
        int expected = -EBADF;
        if (__atomic_compare_exchange_n(&d->freeze_fd, &expected, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return mine;
        (void) close(mine);
        return expected;
}

int sandbox_cgroup_freeze(SandboxCgroup *cg, bool frozen) {
        if (!cg)
                return -EOPNOTSUPP;
        for (size_t i = 0; i < cg->n; i++) {
                CgDir *d = &cg->dirs[i];
                if (!(d->ctrls & CTRL_FREEZER))
                        continue;
                int fd = freeze_fd(d);
                if (fd < 0)
                        return fd;
                const char *s = d->v2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
                /* kernfs takes each write whole, from offset 0. */
                if (pwrite(fd, s, strlen(s), 0) < 0)
                        return -errno;
                return 0;
        }
        return -EOPNOTSUPP;
}

#define KILL_WAIT_MS 2000
#define KILL_RELIST_MS 10

int sandbox_cgroup_kill(SandboxCgroup *cg) {
        if (!cg)
                return 0;
        /* A task frozen by the v1 freezer does not die of SIGKILL until it
         * is thawed (v2's cgroup.kill wakes it). A group never frozen has
         * no freezer file open (the first freeze opens it): no thaw. */
        for (size_t i = 0; i < cg->n; i++)
                if (__atomic_load_n(&cg->dirs[i].freeze_fd, __ATOMIC_ACQUIRE) >= 0) {
                        (void) sandbox_cgroup_freeze(cg, false);
                        break;
                }
        for (size_t i = 0; i < cg->n; i++)
                if (cg->dirs[i].v2)
                        (void) cg_write(&cg->dirs[i], "cgroup.kill", "1");
        /* Without cgroup.kill (v1, or v2 before 5.14) a fork can race the
         * kill; pids.max bounds the race and the run's pid namespace dies
         * with its init, so a few rounds converge. Every process of the
         * run joined the groups in order, dirs[0] first, and its children
         * are born in all of them: a process in any group is in dirs[0],
         * so an empty dirs[0] means all are empty (the usual case: the
         * run's init was reaped before its groups are freed), one listing
         * instead of one per group, and while it is not, killing what it
         * lists kills all (a run that just ended is often still exiting:
         * a few rounds; listing every group each round tripled the reads).
         * rmdir's EBUSY retry in sandbox_cgroup_free() kills whatever the
         * others still hold, and sandbox_cgroup_recycle() reuses a group
         * only when its own listing is empty. */
        if (cg->n == 0)
                return 0;
        /* Each listed process is killed once, then waited for (its
         * pidfd) while it is still listed; a new one (a fork that raced
         * the kill) is found by listing again at least every
         * KILL_RELIST_MS. Gives up after KILL_WAIT_MS (the caller then
         * does not reuse the group: sandbox_cgroup_recycle()). */
        KillSet ks = { 0 };
        int r = -EBUSY;
        usec_t deadline = now_monotonic() + KILL_WAIT_MS * USEC_PER_MSEC;
        for (;;) {
                if (kill_listed(&cg->dirs[0], cg->dirs[0].path, &ks) <= 0) {
                        r = 0;
                        break;
                }
                usec_t now = now_monotonic();
                if (now >= deadline)
                        break;
                kill_set_wait(&ks, (int) MIN((deadline - now + 999) / 1000, (usec_t) KILL_RELIST_MS));
        }
        kill_set_done(&ks);
        return r;
}

int sandbox_cgroup_stats(const SandboxCgroup *cg, SandboxCgroupStats *ret) {
        SandboxCgroupStats s = { 0 };
        for (size_t i = 0; cg && i < cg->n; i++) {
                /* Not const: the files read are kept open (CgDir.kept). */
                CgDir *d = (CgDir *) &cg->dirs[i];
                uint64_t v;
                if (d->ctrls & CTRL_MEMORY) {
                        if (d->v2) {
                                if (cg_read_key(d, "memory.events", "oom_kill", &v) >= 0)
                                        s.oom_kills += v;
                                if (cg_read_key(d, "memory.peak", NULL, &v) >= 0)
                                        s.memory_peak = v;
                        } else {
                                if (cg_read_key(d, "memory.oom_control", "oom_kill", &v) >= 0)
                                        s.oom_kills += v >= d->oom_base ? v - d->oom_base : 0;
                                if (cg_read_key(d, "memory.failcnt", NULL, &v) >= 0)
                                        s.memory_failcnt += v;
                                if (cg_read_key(d, "memory.memsw.failcnt", NULL, &v) >= 0)
                                        s.memory_failcnt += v;
                                if (cg_read_key(d, "memory.max_usage_in_bytes", NULL, &v) >= 0)
                                        s.memory_peak = v;
                        }
                }
                if (d->ctrls & CTRL_PIDS && cg_read_key(d, "pids.events", "max", &v) >= 0)
                        s.pids_max += v >= d->pids_max_base ? v - d->pids_max_base : 0;
        }
        *ret = s;
        return 0;
}

SandboxCgroup *sandbox_cgroup_free(SandboxCgroup *cg) {
        if (!cg)
                return NULL;
        (void) sandbox_cgroup_kill(cg);
        for (size_t i = 0; i < cg->n; i++) {
                CgDir *d = &cg->dirs[i];
                d->procs_fd = fd_close(d->procs_fd);
                d->freeze_fd = fd_close(d->freeze_fd);
                kept_close(d);
                d->dfd = fd_close(d->dfd);
                /* rmdir races the last exits' bookkeeping: retry briefly. */
                for (int t = 0; !d->gone && t < 200 && rmdir(d->path) < 0 && errno == EBUSY; t++) {
                        (void) kill_listed(NULL, d->path, NULL);
                        struct timespec ts = { 0, 1000000 };
                        nanosleep(&ts, NULL);
                }
                free(d->path);
        }
        free(cg->missing);
        free(cg);
        return NULL;
}

/* ---- the warm-up of the first move: cgroup v1's grace period ---- */

/* Moving a process between cgroups takes cgroup_threadgroup_rwsem for
 * writing; on cgroup v1 (no favordynmods) that per-cpu rwsem leaves its
 * readers' fast path first, an rcu_sync_enter() that waits for a full RCU
 * grace period when no other move happened within the last one (measured
 * here: the first cgroup.procs write 6-15 ms, the next ones ~0.05 ms). A
 * spare joins while idle; a run forked directly (the first run of a cold
 * env, no spare yet) paid it after its fork. So the worker starts that
 * wait when the run's message arrives, in a helper, while it makes the
 * run's network and pid namespaces, and forks the run once the helper is
 * reaped: the run's own joins then find the rcu_sync still past its grace
 * period (it returns to idle one grace period after the last move) and do
 * not wait.
 *
 * The helper moves itself ("0") into the run's cgroup (the only cgroup
 * fd the worker has) and exits at once; the worker reaps it before it
 * forks the run, so no process but the run's is ever in the run's cgroup
 * with it. It runs only our C code: two raw system calls (no errno, no
 * TLS: it shares the worker's memory and TLS, CLONE_VM, and its fd table,
 * CLONE_FILES, while the worker goes on). Its memory is the worker's (a
 * v1 memory cgroup charges an mm's pages to its owner, the worker), its
 * CPU microseconds. */
#define WARM_STACK_SIZE (16 << 10)
static void *warm_stack;
static pid_t warm_pid;

#if HAVE_RAW_SYSCALL
static int warm_helper(void *arg) {
        (void) raw_syscall4(SYS_write, (long) (intptr_t) arg, (long) "0", 1, 0);
        /* glibc's clone() makes the exit system call with this value. */
        return 0;
}
#endif

int sandbox_cgroup_warm_begin(int procs_fd) {
#if HAVE_RAW_SYSCALL
        if (warm_pid > 0 || procs_fd < 0)
                return -EBUSY;
        if (!warm_stack) {
                void *st = mmap(NULL, WARM_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                                -1, 0);
                if (st == MAP_FAILED)
                        return -errno;
                warm_stack = st;
        }
        /* No exit signal: reaped by sandbox_cgroup_warm_end(), never seen
         * by the worker's SIGCHLD loop. */
        pid_t pid = clone(warm_helper, (char *) warm_stack + WARM_STACK_SIZE, CLONE_VM | CLONE_FILES,
                          (void *) (intptr_t) procs_fd);
        if (pid < 0)
                return -errno;
        warm_pid = pid;
        return 0;
#else
        (void) procs_fd;
        return -EOPNOTSUPP;
#endif
}

void sandbox_cgroup_warm_end(void) {
        if (warm_pid <= 0)
                return;
        int saved = errno;
        while (waitpid(warm_pid, NULL, __WALL) < 0 && errno == EINTR)
                ;
        errno = saved;
        warm_pid = 0;
}

int sandbox_cgroup_join(const int *fds, size_t n, char **ret_error) {
        for (size_t i = 0; i < n; i++) {
                if (write(fds[i], "0", 1) < 0) {
                        int r = -errno;
                        *ret_error = xasprintf("joining the run's cgroup: %s", strerror(-r));
                        return r;
                }
        }
        return 0;
}

int sandbox_cgroup_sweep_stale(void) {
        Hier h[16];
        size_t nh = 0;
        int r = find_hierarchies(h, ELEMENTSOF(h), &nh);
        if (r < 0)
                return r;
        int removed = 0;
        unsigned long long own_ns = pid_namespace_id();
        for (size_t i = 0; i < nh; i++) {
                DIR *d = opendir(h[i].dir);
                if (!d)
                        continue;
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (!startswith(de->d_name, "pysprinter-"))
                                continue;
                        /* Run cgroups end in "-PID" of the process that made
                         * them; only an orphan's may go. */
                        bool ours = false;
                        uint64_t start = 0;
                        pid_t pid = group_owner(de->d_name, own_ns, &ours, &start);
                        if (pid <= 0 || !ours || pid == getpid())
                                continue;
                        if (start ? pid_alive_since(pid, start) : pid_is_running(pid))
                                continue;
                        _cleanup_free_ char *path = path_join(h[i].dir, de->d_name);
                        for (int t = 0; t < 50 && rmdir(path) < 0 && errno == EBUSY; t++) {
                                (void) kill_listed(NULL, path, NULL);
                                struct timespec ts = { 0, 2000000 };
                                nanosleep(&ts, NULL);
                        }
                        if (access(path, F_OK) < 0)
                                removed++;
                }
                closedir(d);
        }
        return removed;
}

int sandbox_cgroup_set_limits(SandboxCgroup *cg, const SandboxLimits *limits) {
        if (!cg)
                return -EINVAL;
        int r = 0;
        for (size_t i = 0; i < cg->n; i++) {
                int k = apply_limits(&cg->dirs[i], limits);
                if (k < 0 && r >= 0)
                        r = k;
        }
        return r;
}

/* ---- a group used again ----
 *
 * mkdir and rmdir of a cgroup were most of its cost (each walks the
 * kernel's cgroup and css setup/teardown, rmdir waits for RCU, and the
 * memory controller's css offline/free runs later in a kworker). A
 * finished ad-hoc run's groups are taken again for the next spare:
 * - v1 pids, cpu, freezer hold no state a run can be charged by or
 *   observe: pids.current is 0 in an empty group, the limits are
 *   rewritten when they differ (also back to "none"), and pids.events'
 *   "max", which cannot be reset, is read as a baseline at renew and the
 *   run's verdict is the difference.
 * - v1 memory keeps what the last run left charged (page cache of files it
 *   read or wrote, slab of the dentries it looked up, the per-CPU charge
 *   stock: ~256 KiB after a trivial run). The limit is never raised for
 *   it: the next run's limit is its own grant, so the residue can only
 *   lower what it gets, and the kernel reclaims page cache and dentries
 *   before it OOM-kills. The group is used again only while that residue
 *   is at most CG_MEM_RESIDUE_MAX and 1/CG_MEM_RESIDUE_FRACTION of the next
 *   grant (read when the group is empty: an empty group's charge only
 *   shrinks), and for at most CG_MEM_USES_MAX runs; else it is removed and
 *   made fresh. The run's counters are its own: failcnt and
 *   max_usage_in_bytes are reset, oom_kill is read as a baseline.
 * - v2's group holds every controller (and the freezer): made fresh. */

#define CG_MEM_RESIDUE_MAX (1ULL << 20)
#define CG_MEM_RESIDUE_FRACTION 32
#define CG_MEM_USES_MAX 64

static bool dir_empty(CgDir *d) {
        char buf[64];
        return cg_read_small(d, "cgroup.procs", buf, sizeof(buf)) == 0;
}

static bool mem_v1(const CgDir *d) {
        return (d->ctrls & CTRL_MEMORY) && !d->v2;
}

/* Removes a group whose processes are gone; it is made again, fresh, by
 * sandbox_cgroup_renew(). */
static int dir_remove(CgDir *d) {
        d->procs_fd = fd_close(d->procs_fd);
        kept_close(d);
        d->dfd = fd_close(d->dfd);
        int r = 0;
        for (int t = 0; t < 200 && (r = rmdir(d->path)) < 0 && errno == EBUSY; t++) {
                (void) kill_listed(NULL, d->path, NULL);
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
        }
        if (r < 0 && errno != ENOENT)
                return -errno;
        d->gone = true;
        d->memory_bytes = d->max_procs = d->cpu_millis = d->pids_max_base = d->oom_base = d->residue = 0;
        d->uses = 0;
        return 0;
}

/* An empty v1 memory group, for its next run: the residue is within the
 * bound (checked again against the next grant at renew), the counters
 * the run's verdict and report read start from this run's start. */
static bool mem_keep(CgDir *d, bool listed_empty) {
        uint64_t usage = UINT64_MAX;
        if (d->uses + 1 >= CG_MEM_USES_MAX || (!listed_empty && !dir_empty(d)) ||
            cg_read_key(d, "memory.usage_in_bytes", NULL, &usage) < 0 || usage > CG_MEM_RESIDUE_MAX)
                return false;
        if (cg_read_key(d, "memory.oom_control", "oom_kill", &d->oom_base) < 0 ||
            cg_write(d, "memory.failcnt", "0") < 0 || cg_write(d, "memory.max_usage_in_bytes", "0") < 0)
                return false;
        /* Absent without swap accounting; nothing to reset then. */
        int r = cg_write(d, "memory.memsw.failcnt", "0");
        if (r < 0 && r != -ENOENT)
                return false;
        d->residue = usage;
        d->uses++;
        return true;
}

SandboxCgroup *sandbox_cgroup_recycle(SandboxCgroup *cg) {
        if (!cg)
                return NULL;
        bool keep = false, ok = sandbox_cgroup_kill(cg) >= 0;
        for (size_t i = 0; ok && i < cg->n; i++) {
                CgDir *d = &cg->dirs[i];
                if (d->freeze_fd >= 0 || d->gone)
                        ok = false; /* a frozen (instance) group is never reused */
                else if (d->v2 || mem_v1(d))
                        continue;
                /* dirs[0]'s listing was sandbox_cgroup_kill()'s last one,
                 * just now, and empty: not read again (a v1 listing is
                 * an open, as the kept fds cannot list: see kept_files). */
                else if (i > 0 && !dir_empty(d))
                        ok = false;
                else
                        keep = true;
        }
        if (!ok || !keep)
                return sandbox_cgroup_free(cg);
        /* The memory group: kept within its bounds, else removed now (its
         * processes are gone); v2's group is removed. */
        for (size_t i = 0; i < cg->n; i++) {
                CgDir *d = &cg->dirs[i];
                if (!(d->v2 || mem_v1(d)))
                        continue;
                if (mem_v1(d) && mem_keep(d, i == 0))
                        continue;
                if (dir_remove(d) < 0)
                        return sandbox_cgroup_free(cg);
        }
        return cg;
}

int sandbox_cgroup_renew(SandboxCgroup *cg, const char *name, const SandboxLimits *limits, char **ret_error) {
        if (!name_ok(name)) {
                *ret_error = xasprintf("invalid cgroup name '%s'", name);
                return -EINVAL;
        }
        for (size_t i = 0; i < cg->n; i++) {
                CgDir *d = &cg->dirs[i];
                /* A residue more than a small part of this run's grant:
                 * a fresh group instead (see above). */
                if (mem_v1(d) && !d->gone && limits->memory_bytes &&
                    d->residue > limits->memory_bytes / CG_MEM_RESIDUE_FRACTION) {
                        int r = dir_remove(d);
                        if (r < 0) {
                                *ret_error = xasprintf("removing the cgroup %s: %s", d->path, strerror(-r));
                                return r;
                        }
                }
                if (d->gone) {
                        /* A fresh group beside the old one's place. */
                        char *slash = strrchr(d->path, '/');
                        assert(slash);
                        *slash = 0;
                        _cleanup_free_ char *parent = d->path;
                        _cleanup_free_ char *leaf = group_leaf(name);
                        d->path = path_join(parent, leaf);
                        if (mkdir(d->path, 0755) < 0) {
                                int r = -errno;
                                *ret_error = xasprintf("the cgroup %s: %s", d->path, strerror(-r));
                                return r;
                        }
                        d->gone = false;
                        dir_open(d);
                        d->procs_fd = open_at(d->dfd, d->path, "cgroup.procs", O_WRONLY);
                        if (d->procs_fd < 0) {
                                int r = d->procs_fd == -1 ? -errno : d->procs_fd;
                                d->procs_fd = -EBADF;
                                *ret_error = xasprintf("opening %s/cgroup.procs: %s", d->path, strerror(-r));
                                return r;
                        }
                } else if (d->ctrls & CTRL_PIDS) {
                        uint64_t v = 0;
                        if (cg_read_key(d, "pids.events", "max", &v) >= 0)
                                d->pids_max_base = v;
                }
                (void) apply_limits(d, limits); /* empty: nothing to refuse */
        }
        return 0;
}
