/* Capabilities: the run keeps none, in any set, and cannot regain them.
 *
 * Inside its user namespace the run is a uid of its own (uid 0 when the
 * engine is not root: sandbox.h "uids"). Without the securebits a uid-0
 * execve() would grant the full permitted set again; with the
 * bounding set empty that set is empty anyway, and SECBIT_NOROOT makes it
 * explicit. no_new_privs stops setuid binaries and file capabilities;
 * PR_SET_DUMPABLE 0 makes /proc/PID of a uid-0 run inaccessible to other
 * processes of the same uid (another run, or a survivor). A run with a uid
 * of its own stays dumpable: no other run is that uid, and the kernel
 * makes a non-dumpable process's /proc/PID files its namespace root's
 * (task_dump_owner()), so the run could no longer read its own
 * /proc/self/environ, pagemap, mem or auxv (mode 0400); RLIMIT_CORE 0
 * writes no core either way.
 *
 * The bounding set is emptied once, in the worker, after its last exec
 * (sandbox_caps_bounding_drop(), from sandbox_worker_resume()): the worker
 * keeps its effective capabilities (the bounding set only limits what an
 * execve() may grant, and the worker never execs again), and every spare
 * and run forked from it inherits the empty set. Each PR_CAPBSET_DROP
 * copies and commits the process's credentials (prepare_creds(),
 * commit_creds(), an RCU free): ~41 of them per run were ~40 µs of a run's
 * CPU on this VM. The run still reads its bounding set and drops whatever
 * is left in it, so a process that did not inherit an empty set (a run
 * forked by a worker that never resumed, the unit tests) ends the same.
 *
 * Reading it is a system call per capability too (41 PR_CAPBSET_READ,
 * ~13-23 µs per run here). No process can add a capability to its
 * bounding set, by any means (only PR_CAPBSET_DROP changes it; fork and
 * execve keep it), so once a process has seen its set empty, it and
 * every process forked from it after that have it empty: the worker
 * remembers it (bounding_empty, inherited by fork), and its spares and
 * runs read nothing. */
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "sandbox-internal.h"

/* Read once per process tree: a run inherits it from the worker rather
 * than opening /proc/sys again. */
static int cap_last = -1;

static int last_cap(void) {
        if (cap_last >= 0)
                return cap_last;
        cap_last = 63;
        _cleanup_free_ char *s = NULL;
        if (read_file("/proc/sys/kernel/cap_last_cap", 64, &s, NULL) >= 0) {
                long v = strtol(s, NULL, 10);
                if (v > 0 && v < 128)
                        cap_last = (int) v;
        }
        return cap_last;
}

/* This process's bounding set is known empty (every capability read
 * absent or dropped): true for it and every process it forks from then
 * on. */
static bool bounding_empty;

/* Drops every capability still in the calling process's bounding set
 * (reading it costs no credential copy; dropping does). */
int sandbox_caps_bounding_drop(char **ret_error) {
        if (bounding_empty)
                return 0;
        int last = last_cap();
        bool left = false;
        for (int c = 0; c <= last; c++) {
                int in_set = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
                if (in_set == 0 || (in_set < 0 && errno == EINVAL))
                        continue; /* not in the set, or no such capability */
                if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
                        if (errno != EINVAL && errno != EPERM) {
                                int r = -errno;
                                *ret_error = xasprintf("dropping capability %d from the bounding set: %s", c,
                                                       strerror(-r));
                                return r;
                        }
                        left = true; /* still in the set: read again next time */
                }
        }
        bounding_empty = !left;
        return 0;
}

/* How many uids the caller's user namespace maps from 0 on (its first
 * extent), read once per worker and inherited by its runs. */
static int run_uid_slots = -1;
static unsigned run_uid_slot;

unsigned sandbox_run_uid_slots(void) {
        if (run_uid_slots >= 0)
                return (unsigned) run_uid_slots;
        /* Both maps: a run is uid and gid alike. */
        unsigned long n = SANDBOX_RUN_UIDS;
        static const char *const maps[] = { "/proc/self/uid_map", "/proc/self/gid_map" };
        for (size_t i = 0; i < ELEMENTSOF(maps); i++) {
                _cleanup_free_ char *map = NULL;
                unsigned long inside, outside, count;
                if (read_file(maps[i], 4096, &map, NULL) < 0 ||
                    sscanf(map, "%lu %lu %lu", &inside, &outside, &count) != 3 || inside != 0)
                        count = 1;
                n = MIN(n, count);
        }
        run_uid_slots = (int) MAX(n, 1ul);
        return (unsigned) run_uid_slots;
}

void sandbox_run_uid_use(unsigned slot) {
        run_uid_slot = slot < sandbox_run_uid_slots() ? slot : 0;
}

unsigned sandbox_run_uid_slot(void) {
        return run_uid_slot;
}

int sandbox_caps_drop(char **ret_error) {
        unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                             SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
        /* Needs CAP_SETPCAP: absent when the caller has no capabilities at
         * all (then there is nothing to regain either). */
        (void) prctl(PR_SET_SECUREBITS, bits, 0, 0, 0);
        int r = sandbox_caps_bounding_drop(ret_error);
        if (r < 0)
                return r;
        /* The run's own uid (sandbox.h "uids"), while CAP_SETUID is still
         * there; SECBIT_NO_SETUID_FIXUP, just set, keeps the capabilities
         * through the change for the steps below. */
        unsigned slot = sandbox_run_uid_slot();
        if (slot > 0 && (setresgid(slot, slot, slot) < 0 || setresuid(slot, slot, slot) < 0)) {
                r = -errno;
                *ret_error = xasprintf("becoming the run's uid %u: %s", slot, strerror(-r));
                return r;
        }
        (void) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
        struct __user_cap_data_struct data[2] = { 0 };
        if (syscall(SYS_capset, &hdr, data) < 0) {
                r = -errno;
                *ret_error = xasprintf("dropping capabilities: %s", strerror(-r));
                return r;
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                r = -errno;
                *ret_error = xasprintf("PR_SET_NO_NEW_PRIVS: %s", strerror(-r));
                return r;
        }
        if (prctl(PR_SET_DUMPABLE, slot > 0 ? 1 : 0, 0, 0, 0) < 0) {
                r = -errno;
                *ret_error = xasprintf("PR_SET_DUMPABLE: %s", strerror(-r));
                return r;
        }
        return 0;
}
