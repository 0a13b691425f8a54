/* Internal to the sandbox module: one step per kernel feature, each in its
 * own file, called in a fixed order by sandbox.c. Every step returns >= 0
 * or -errno and, on failure, sets *ret_error to what failed. */
#pragma once

#include <sys/types.h>

#include "sandbox.h"

typedef struct SandboxMounts SandboxMounts;

/* sandbox-userns.c */
/* Forks; the child unshares user/pid/mount/ipc/uts/cgroup namespaces, the
 * parent (still privileged outside) writes its uid/gid maps, the child forks
 * the namespace's pid 1 and the parent adopts it (subreaper) and waits for
 * it forever. Returns 0 in pid 1 only. */
int sandbox_userns_enter(SandboxMounts *m, char **ret_error);
/* The uid (and gid) the next run child forked becomes in its user
 * namespace (sandbox_run_uid_use()); 0: it stays the worker's. */
unsigned sandbox_run_uid_slot(void);
/* Who owns the user namespace creator makes (the host's root: a uid of
 * the worker's own, USERNS_OWNER_UID_BASE + creator; else euid): the
 * kernel charges its processes' per-user counts to that uid. */
uid_t sandbox_userns_owner_uid(uid_t euid, pid_t creator);

/* sandbox-mounts.c */
/* Collects what the new root binds. Then, in a fresh mount namespace and
 * still privileged (sandbox_userns_enter() calls it): builds the tmpfs
 * root and pivots into it. In the worker's pid 1: mounts its /proc. */
int sandbox_mounts_prepare(const SandboxWorkerConfig *cfg, SandboxMounts **ret, char **ret_error);
int sandbox_mounts_build(SandboxMounts *m, char **ret_error);
int sandbox_mounts_worker_proc(char **ret_error);
SandboxMounts *sandbox_mounts_free(SandboxMounts *m);
/* Run level, in the run's pid 1: private /tmp, /dev/shm tmpfs and /proc. */
int sandbox_mounts_run(uint64_t tmp_bytes, uint64_t shm_bytes, char **ret_error);
/* In the run child, after the run is known and before capabilities go:
 * mounts SANDBOX_OUT_ROOT/out_name at SANDBOX_OUT_DIR (out_name may be NULL)
 * and detaches SANDBOX_OUT_ROOT. */
int sandbox_mounts_out(const char *out_name, char **ret_error);
/* In a sandboxed blank worker: sandbox_worker_store_attach() and
 * sandbox_worker_store_seal() once sandbox.c checked the worker is one. */
int sandbox_mounts_store_attach(const char *name, int mount_fd, char **ret_error);
int sandbox_mounts_store_seal(char **ret_error);

/* sandbox-net.c */
/* Unless network: moves the caller into a new network namespace of its
 * own with only lo, up. */
int sandbox_net_enter(bool network, char **ret_error);
/* Brings lo up in the calling network namespace. */
int sandbox_net_loopback_up(void);

/* sandbox-env.c */
/* Replaces the environment by the allow-list and wipes the old strings,
 * which /proc/PID/environ would otherwise still show. */
int sandbox_env_scrub(void);

/* sandbox-fds.c */
/* Closes every fd >= 3 not in keep. */
int sandbox_fds_close_except(const int *keep, size_t n_keep);

/* sandbox-rlimit.c */
int sandbox_rlimits_apply(const SandboxRunConfig *cfg, bool have_memory_cgroup, char **ret_error);

/* sandbox-caps.c */
/* securebits locked, bounding set and ambient set emptied, capabilities
 * cleared, no_new_privs, non-dumpable. */
int sandbox_caps_drop(char **ret_error);
/* The worker's bounding set emptied, after its last exec: its spares and
 * runs inherit it (its own effective capabilities stay). */
int sandbox_caps_bounding_drop(char **ret_error);

/* sandbox-cgroup.c (run side) */
int sandbox_cgroup_join(const int *fds, size_t n, char **ret_error);

/* sandbox-seccomp.c */
int sandbox_seccomp_prepare(char **ret_error);

