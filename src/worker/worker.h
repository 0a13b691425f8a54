/* Internal to pysprinter-worker: the sandbox hooks and the Python bridge.
 * The module's contract towards the engine is worker-proto.h. */
#pragma once

#include "basic.h"

/* Called first thing in main(), single-threaded, before Py_Initialize:
 * enter the worker-level sandbox described by argv (the engine's
 * engine_sandbox_spawn_worker() decides what it passes). On failure
 * *ret_error says what is missing. */
int worker_sandbox_setup(int argc, char **argv, char **ret_error);
/* First thing in main() (the worker's and the launcher's): every signal's
 * default, none blocked, SIGPIPE and SIGXFSZ ignored, whatever the
 * process that started the engine left. */
void worker_signals_reset(void);

/* Called in each forked run child before any user code runs. run_json is
 * the whole run message (its "limits"/"sandbox" fields are for this hook);
 * extra_fds are the fds that followed stdout/stderr/result in it. Must
 * leave the child in its own process group (the engine kills -pgid). */
/* A blank worker adopting an environment (engine-pool.c): attaches the
 * store mounts fds (one per name, taken) at SANDBOX_STORE_DIR/name.
 * -EPERM outside the sandbox or once the env is set (worker_sandbox_seal). */
int worker_sandbox_attach(char *const *names, int *fds, size_t n, char **ret_error);
/* No env dir can be attached any more (the worker's "init"); without
 * network, the worker leaves the host's network namespace for its own. */
int worker_sandbox_seal(bool network, char **ret_error);
int worker_sandbox_child(const char *run_json, const int *extra_fds, size_t n_extra, char **ret_error);

/* Called in a pre-forked spare while it idles: the run-level isolation
 * that does not depend on the run (namespaces, mounts, the run's init and
 * user process). Returns in the process that will run user code; the run
 * hook then only applies the run's own limits and locks down. */
int worker_sandbox_spare_prepare(bool network, char **ret_error);
/* Then, in a spare the engine made for the full sandbox: the rest of the
 * run's sandbox, while idle (sandbox_run_seal(): its output dir out_name,
 * or none; every fd but 0-2 and sock closed; no capability; the seccomp
 * filter). What remains for the run hook: the run's rlimits and fds. */
int worker_sandbox_spare_seal(const char *out_name, int sock, char **ret_error);

/* In the zygote, once settled (worker-heap.c): takes every chunk on
 * malloc's free lists and keeps it, so the children it forks allocate
 * from the heap's top, packed, instead of writing a shared page per
 * allocation. Returns the number of chunks taken; *ret_bytes (may be
 * NULL) their bytes. */
size_t worker_heap_plug(size_t *ret_bytes);
/* In the zygote, once settled (worker-heap.c): drops (MADV_DONTNEED) the
 * resident pages of [start, start + len) that hold only zeroes, if there
 * are min_pages of them at least, so a fork copies no page-table entry
 * for them; they still read as zeroes. Only for memory no other thread or
 * process writes meanwhile. Returns the pages dropped.
 * worker_heap_drop_zero_pages(): the same over the brk heap. */
size_t worker_drop_zero_pages(void *start, size_t len, size_t min_pages);
size_t worker_heap_drop_zero_pages(void);
/* Whether this process has one thread (/proc/self/stat); false if unsure. */
bool worker_one_thread(void);
/* jansson's allocator in the worker: blocks up to 1 KiB from one small
 * region by size class (last freed, first reused), so the zygote's
 * per-message allocations reuse a few pages, not one scattered heap page
 * each (each written page a copy-on-write fault after every fork); larger
 * ones from malloc. Free zeroes the block first (a message's strings are
 * a tenant's). Not thread-safe: the worker has one thread. */
void *worker_pack_alloc(size_t size);
void worker_pack_free_zeroed(void *p);

/* Python bridge (worker-python.c). */
int py_init(char **ret_error);
/* In a forked child: pymalloc's new arenas are plain mappings again. */
void py_arenas_child(void);
/* In the zygote, when it settles: takes every free block of pymalloc's
 * partly used pools, class by class, until each class has a fresh pool
 * (CPython 3.11's layout; a no-op elsewhere): a child's small objects
 * then come packed from fresh pools, not a shared page or two per few
 * blocks. Returns the blocks taken; *ret_bytes (if not NULL) their bytes. */
size_t py_pools_plug(size_t *ret_bytes);
/* In the zygote, when it settles, after the plugs: drops the pages of
 * pymalloc's chunks that hold only zeroes (worker_drop_zero_pages()).
 * Returns the pages dropped. */
size_t py_arenas_drop_zero_pages(void);
/* Calls runner.<func>(arg) returning a string; *ret is malloc'd. */
int py_call_str(const char *func, const char *arg, char **ret, char **ret_error);
/* In the run child: runner.run(json, result_fd). */
void py_run_child(const char *run_json, int result_fd);
const char *py_version(void);
/* compileall.compile_dir(dir, quiet): the package store's .pyc files. */
int py_compile_dir(const char *dir);
/* In a sealed spare while idle: runner.spare_ready(warm) (streams; when
 * warm, one small run of its own: the pages every run writes are copied
 * now, off the run's critical path). */
void py_spare_ready(bool warm);
/* In a sealed spare made cold, while idle: runner.spare_warm() (the small
 * run spare_ready(false) skipped). */
void py_spare_warm(void);
/* In a warm instance child: runner.serve_instance(json, sock_fd). */
void py_serve_instance(const char *instance_json, int sock_fd);
