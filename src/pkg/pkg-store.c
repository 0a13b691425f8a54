/* pkg-store.c: the content-addressed store, $DATA/store/<sha256>/ — one
 * unpacked wheel per dir, never modified once renamed into place. */
#include "pkg-mgr.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* chmod a-w over a tree we just unpacked (no symlinks in it: the unpacker
 * refuses them). */
static int make_readonly_at(int dfd, const char *name) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode)) {
                DIR *d = NULL;
                int r = dir_fdopen(openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), &d);
                if (r < 0)
                        return r;
                struct dirent *de;
                while ((de = readdir(d)))
                        if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                                int k = make_readonly_at(dirfd(d), de->d_name);
                                if (k < 0 && r == 0)
                                        r = k;
                        }
                closedir(d);
                if (r < 0)
                        return r;
        }
        if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))
                if (fchmodat(dfd, name, st.st_mode & 07555 & ~(mode_t) 06000, 0) < 0)
                        return -errno;
        return 0;
}

/* mkdir -p of <data_dir>/store, flagged FS_TOPDIR_FL (chattr +T) where the
 * filesystem knows it (ext2/3/4; elsewhere a no-op). Why: ext4 puts a new
 * file in its directory's block group and, on a filesystem where trees are
 * often deleted, scans every inode freed in the last minute from the start
 * of that group's bitmap for each file it creates (perf: ~60% of numpy's
 * unpack in recently_deleted()/find_inode_bit). With the flag, ext4's Orlov
 * allocator treats each staging dir made in the store as a top-level dir
 * and places it in a group with many free inodes, so numpy's 1,000 files
 * land away from the churn (measured: faster in 10 of 10 alternated pairs). */
static int make_store_dir(const char *data_dir) {
        _cleanup_free_ char *store = xasprintf("%s/store", data_dir);
        int r = mkdir_p(store, 0755);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(store, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        int flags = 0;
        if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && !(flags & FS_TOPDIR_FL)) {
                flags |= FS_TOPDIR_FL;
                (void) ioctl(fd, FS_IOC_SETFLAGS, &flags); /* best effort: a placement hint */
        }
        return 0;
}

/* chmod a-w of every directory under dfd (dfd itself included), told apart
 * by getdents' d_type: the unpacker created the files read-only already, so
 * no stat nor chmod per file (a DT_UNKNOWN filesystem gets the full walk). */
static int seal_dirs_fd(int dfd) {
        DIR *d = NULL;
        int r = dir_fdopen(fcntl(dfd, F_DUPFD_CLOEXEC, 3), &d);
        if (r < 0)
                return r;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (de->d_type == DT_UNKNOWN) {
                        r = make_readonly_at(dirfd(d), de->d_name);
                        continue;
                }
                if (de->d_type != DT_DIR)
                        continue;
                int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                        r = -errno;
                        break;
                }
                r = seal_dirs_fd(sub);
                close(sub);
        }
        closedir(d);
        struct stat st; /* one per directory: keeps what the umask took away */
        if (r == 0 && (fstat(dfd, &st) < 0 || fchmod(dfd, st.st_mode & 0555) < 0))
                r = -errno;
        return r;
}

static int seal_tree(const char *path, bool compiled) {
        /* Byte-compiling wrote .pyc files with ordinary modes: those need
         * the full walk. */
        if (compiled)
                return make_readonly_at(AT_FDCWD, path);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return seal_dirs_fd(fd);
}

char *pkg_store_dir(const char *data_dir, const char *sha256) {
        return xasprintf("%s/store/%s", data_dir, sha256);
}

/* Installs one wheel file into the store as <sha256>/. Another process
 * doing the same at once is fine: both unpack into private temp dirs and
 * the first rename wins. */
static int store_install(const char *data_dir, const char *wheel, const PkgLockEntry *e, PkgCompileFn compile,
                         void *compile_userdata, const bool *cancel, char **ret_error) {
        _cleanup_free_ char *final = pkg_store_dir(data_dir, e->sha256);
        _cleanup_free_ char *rnd = NULL;
        int r = random_hex(6, &rnd);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = xasprintf("%s/store/.tmp-%s-%s", data_dir, e->sha256, rnd);
        r = pkg_wheel_unpack_cancellable(wheel, e->filename, tmp, cancel, ret_error);
        if (r < 0)
                return r;
        if (compile && !pkg_cancelled(cancel))
                (void) compile(tmp, compile_userdata);
        /* Cancelled while unpacked but not published: the temp dir goes,
         * so the store never holds a wheel half made. */
        if (pkg_cancelled(cancel)) {
                (void) rm_rf(tmp);
                free(*ret_error);
                *ret_error = xstrdup("cancelled");
                return -ECANCELED;
        }
        r = seal_tree(tmp, compile != NULL);
        if (r < 0) {
                *ret_error = xasprintf("cannot make %s read-only: %s", tmp, strerror(-r));
                (void) rm_rf(tmp);
                return r;
        }
        if (rename(tmp, final) < 0) {
                r = -errno;
                (void) rm_rf(tmp);
                if (r == -EEXIST || r == -ENOTEMPTY)
                        return 0; /* a concurrent installer won; same bytes */
                *ret_error = xasprintf("cannot move %s into the store: %s", final, strerror(-r));
                return r;
        }
        return 0;
}

char *pkg_store_part_path(const char *data_dir, const char *sha256) {
        assert(data_dir && sha256);
        return xasprintf("%s/cache/wheels/%s" PKG_PART_SUFFIX, data_dir, sha256);
}

char *pkg_store_kept_wheel(const char *data_dir, const char *sha256) {
        if (!sha256_hex_is_valid(sha256))
                return NULL;
        return xasprintf("%s/cache/wheels/%s.whl", data_dir, sha256);
}

/* Fetches d's wheel from the peers into d->dest, verified against the
 * lock's sha256 (a mismatch is removed: the index is asked then). */
static int wheel_from_peers(const PkgPeers *p, const PkgDownload *d, PkgProgressFn progress, void *userdata) {
        _cleanup_free_ char *tmp = xasprintf("%s.peer", d->dest), *err = NULL;
        (void) unlink(tmp);
        int r = p->wheel(p->userdata, d->sha256, tmp, &err);
        if (r >= 0) {
                char hex[SHA256_HEX_SIZE];
                r = sha256_file_hex(tmp, hex);
                if (r >= 0 && !streq(hex, d->sha256))
                        r = -EBADMSG;
        }
        if (r >= 0 && rename(tmp, d->dest) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        if (progress)
                progress("peer", d->what, 1, 1, userdata);
        return 0;
}

/* One wheel to put in the store, and what the parallel unpack needs. */
typedef struct Job {
        const PkgLockEntry *e;
        char *wheel;           /* the file to unpack */
        char *part;            /* the download's resumable part file */
        bool downloaded;       /* ours to delete once unpacked */
        bool shared_cache;     /* <cache>/<sha256>.whl, fetched for metadata */
} Job;

typedef struct Pool {
        const char *data_dir;
        const PkgHttpOptions *http;
        PkgCompileFn compile;
        void *compile_userdata;
        const bool *cancel;
        Job *jobs;
        size_t n, next, done;  /* next, done: atomic */
        pthread_mutex_t lock;
        pthread_cond_t changed; /* a job ended */
        int r;                 /* the first error */
        char *error;
        bool keep_wheels;      /* a cluster node: peers may ask for them */
        const char *sha256_from; /* PkgDownload.sha256_from */
} Pool;

static bool store_has(const char *data_dir, const char *sha256) {
        _cleanup_free_ char *dir = pkg_store_dir(data_dir, sha256);
        struct stat st;
        return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

static int job_run(Pool *p, Job *j, char **ret_error) {
        const PkgLockEntry *e = j->e;
        int r = store_install(p->data_dir, j->wheel, e, p->compile, p->compile_userdata, p->cancel, ret_error);
        if (r < 0 && j->shared_cache && r != -ECANCELED) {
                /* The file cached for its metadata was cut short (a crash
                 * while it was written): fetch it once more, privately. */
                free(*ret_error);
                *ret_error = NULL;
                _cleanup_free_ char *rnd = NULL;
                (void) random_hex(6, &rnd);
                _cleanup_free_ char *mine = xasprintf("%s.%s", j->wheel, rnd ?: "x");
                PkgDownload one = { .url = e->url,
                                    .dest = mine,
                                    .sha256 = e->sha256,
                                    .sha256_from = p->sha256_from,
                                    .what = e->filename,
                                    .transient = true };
                r = pkg_http_download_many(&one, 1, p->http, NULL, NULL, ret_error);
                if (r >= 0)
                        r = store_install(p->data_dir, mine, e, p->compile, p->compile_userdata, p->cancel, ret_error);
                (void) unlink(mine);
        }
        if (r >= 0 && p->keep_wheels && j->downloaded) {
                /* In a cluster the wheel stays, under its hash's name:
                 * peers may ask for it (pkg_store_kept_wheel). */
                _cleanup_free_ char *kept = pkg_store_kept_wheel(p->data_dir, e->sha256);
                if (!kept || rename(j->wheel, kept) < 0)
                        (void) unlink(j->wheel);
        } else if (r >= 0 && (j->downloaded || j->shared_cache) && !p->keep_wheels)
                (void) unlink(j->wheel);
        return r;
}

/* A pool thread: takes wheels until none is left or one failed. */
static void *pool_thread(void *userdata) {
        Pool *p = userdata;
        for (;;) {
                pthread_mutex_lock(&p->lock);
                if (p->r == 0 && pkg_cancelled(p->cancel)) {
                        p->r = -ECANCELED;
                        p->error = xstrdup("cancelled");
                        pthread_cond_broadcast(&p->changed);
                }
                bool stop = p->r < 0;
                pthread_mutex_unlock(&p->lock);
                size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_ACQ_REL);
                if (stop || i >= p->n)
                        return NULL;
                char *error = NULL;
                int r = job_run(p, &p->jobs[i], &error);
                pthread_mutex_lock(&p->lock);
                if (r < 0 && p->r == 0) {
                        p->r = r;
                        p->error = TAKE_PTR(error);
                }
                __atomic_add_fetch(&p->done, 1, __ATOMIC_ACQ_REL);
                pthread_cond_broadcast(&p->changed);
                pthread_mutex_unlock(&p->lock);
                free(error);
        }
}

/* Unpacks the jobs on up to one thread per CPU (a wheel's own unpack may add
 * threads for a big one). Progress is reported from the caller's thread
 * only, as pkg.h promises. */
static int pool_run(Pool *p, PkgProgressFn progress, void *userdata, char **ret_error) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t n_threads = MIN(p->n, (size_t) MAX(MIN(cpus, 4L), 1L));
        pthread_t tids[4];
        size_t started = 0;
        for (size_t i = 0; i < n_threads; i++) {
                if (pthread_create(&tids[started], NULL, pool_thread, p) != 0)
                        break;
                started++;
        }
        if (started == 0)
                pool_thread(p);
        if (progress) {
                /* Woken by each job's end: no polling delay at the last. */
                pthread_mutex_lock(&p->lock);
                for (size_t last = SIZE_MAX;;) {
                        size_t d = __atomic_load_n(&p->done, __ATOMIC_ACQUIRE);
                        if (d >= p->n || p->r < 0)
                                break;
                        if (d != last) {
                                last = d;
                                pthread_mutex_unlock(&p->lock);
                                progress("unpacking", p->jobs[d].e->filename, d, p->n, userdata);
                                pthread_mutex_lock(&p->lock);
                                continue;
                        }
                        pthread_cond_wait(&p->changed, &p->lock);
                }
                pthread_mutex_unlock(&p->lock);
        }
        for (size_t i = 0; i < started; i++)
                pthread_join(tids[i], NULL);
        if (p->r < 0) {
                *ret_error = TAKE_PTR(p->error);
                return p->r;
        }
        return 0;
}

static int sha_cmp(const void *a, const void *b) {
        return strcmp((*(const PkgLockEntry *const *) a)->sha256, (*(const PkgLockEntry *const *) b)->sha256);
}

int pkg_flock_cancellable(int fd, int op, const bool *cancel) {
        assert(fd >= 0);
        assert(op == LOCK_SH || op == LOCK_EX);
        for (;;) {
                if (flock(fd, cancel ? op | LOCK_NB : op) >= 0)
                        return 0;
                if (errno == EINTR)
                        continue;
                if (errno != EWOULDBLOCK)
                        return -errno;
                /* flock() has no fd to poll: another installer holds the
                 * wheel for seconds at most, and a cancel must be noticed
                 * meanwhile. */
                if (pkg_cancelled(cancel))
                        return -ECANCELED;
                (void) usleep(50 * 1000);
        }
}

int pkg_wheel_lock(const char *data_dir, const char *sha256, int op, const bool *cancel, int *ret_fd) {
        assert(data_dir && sha256 && ret_fd);
        _cleanup_free_ char *path = xasprintf("%s/cache/locks/%s", data_dir, sha256);
        for (;;) {
                _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (fd < 0 && errno == ENOENT) {
                        _cleanup_free_ char *dir = xasprintf("%s/cache/locks", data_dir);
                        int r = mkdir_p(dir, 0755);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (fd < 0)
                        return -errno;
                int r;
                if (op & LOCK_NB)
                        r = flock(fd, op) < 0 ? -errno : 0;
                else
                        r = pkg_flock_cancellable(fd, op, cancel);
                if (r < 0)
                        return r;
                /* Prune's sweep of idle lock files unlinked this one between
                 * our open and our lock: a lock on a file no one else can
                 * open excludes no one. */
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (st.st_nlink > 0) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
        }
}

/* Locks every wheel of the lock (cache/locks/<sha256>), in sha256 order so
 * two installers of overlapping sets never wait on each other in a cycle:
 * LOCK_SH on one in the store (a remover, which takes LOCK_EX, leaves it
 * until the caller has written the record naming it), LOCK_EX on one
 * missing (a second installer of the same wheel waits here, then finds the
 * store dir made by the first). One lock call per wheel; the fds are
 * returned, -EBADF terminated; closing them unlocks. */
static int lock_wheels(const char *data_dir, const PkgLock *lock, const bool *cancel, int **ret_fds, char **ret_error) {
        size_t n = lock->n_entries;
        _cleanup_free_ const PkgLockEntry **sorted = xcalloc(n + 1, sizeof(PkgLockEntry *));
        for (size_t i = 0; i < n; i++)
                sorted[i] = &lock->entries[i];
        qsort(sorted, n, sizeof(PkgLockEntry *), sha_cmp);
        int *fds = xcalloc(n + 1, sizeof(int));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                const char *sha = sorted[i]->sha256;
                if (i > 0 && streq(sha, sorted[i - 1]->sha256))
                        continue;
                int fd = -EBADF, op = store_has(data_dir, sha) ? LOCK_SH : LOCK_EX;
                int r = pkg_wheel_lock(data_dir, sha, op, cancel, &fd);
                if (r >= 0 && op == LOCK_SH && !store_has(data_dir, sha)) {
                        /* Removed while we waited for the shared lock: this
                         * installer puts it back, under the exclusive one
                         * (taken anew: flock's conversion unlocks first). */
                        close(fd);
                        fd = -EBADF;
                        r = pkg_wheel_lock(data_dir, sha, LOCK_EX, cancel, &fd);
                }
                if (r < 0) {
                        *ret_error = r == -ECANCELED ? xstrdup("cancelled")
                                                     : xasprintf("cannot lock %s/cache/locks/%s: %s", data_dir, sha,
                                                                 strerror(-r));
                        for (size_t j = 0; j < k; j++)
                                close(fds[j]);
                        free(fds);
                        return r;
                }
                fds[k++] = fd;
        }
        fds[k] = -EBADF;
        *ret_fds = fds;
        return 0;
}

int *pkg_store_unlock(int *fds) {
        for (int *f = fds; f && *f >= 0; f++)
                close(*f);
        free(fds);
        return NULL;
}

int pkg_store_materialize(const char *data_dir, const PkgIndexConfig *cfg, const PkgLock *lock, PkgProgressFn progress,
                          void *userdata, PkgCompileFn compile, void *compile_userdata, const bool *cancel,
                          char ***ret_dirs, char **ret_error) {
        int *fds = NULL;
        int r = pkg_store_materialize_held(data_dir, cfg, lock, progress, userdata, compile, compile_userdata, cancel,
                                           ret_dirs, &fds, ret_error);
        pkg_store_unlock(fds);
        return r;
}

int pkg_store_materialize_held(const char *data_dir, const PkgIndexConfig *cfg, const PkgLock *lock,
                               PkgProgressFn progress, void *userdata, PkgCompileFn compile, void *compile_userdata,
                               const bool *cancel, char ***ret_dirs, int **ret_locks, char **ret_error) {
        _cleanup_free_ char *store = xasprintf("%s/store", data_dir);
        _cleanup_free_ char *cache = xasprintf("%s/cache/wheels", data_dir);
        int r = make_store_dir(data_dir);
        if (r >= 0)
                r = mkdir_p(cache, 0755);
        if (r < 0) {
                *ret_error = xasprintf("cannot create %s: %s", store, strerror(-r));
                return r;
        }
        size_t n = lock->n_entries;
        const char *sha256_from = lock->from_index ? NULL : "the lock";
        for (size_t i = 0; i < n; i++)
                if (!sha256_hex_is_valid(lock->entries[i].sha256)) {
                        *ret_error = xasprintf("lock entry %s has an invalid sha256", lock->entries[i].name);
                        return -EBADMSG;
                }
        int *fds = NULL;
        r = lock_wheels(data_dir, lock, cancel, &fds, ret_error);
        if (r < 0)
                return r;
        PkgDownload *dl = xcalloc(n + 1, sizeof(PkgDownload));
        Job *jobs = xcalloc(n + 1, sizeof(Job));
        size_t n_dl = 0, n_jobs = 0;
        for (size_t i = 0; i < n; i++) {
                const PkgLockEntry *e = &lock->entries[i];
                /* Checked under the lock: another installer may have put
                 * it there while we waited. */
                if (store_has(data_dir, e->sha256))
                        continue;
                bool dup = false;
                for (size_t j = 0; j < n_jobs; j++)
                        dup = dup || streq(jobs[j].e->sha256, e->sha256);
                if (dup)
                        continue;
                Job *j = &jobs[n_jobs++];
                j->e = e;
                if (startswith(e->url, "file://")) {
                        /* A find-links wheel: used in place, hash-checked. */
                        char hex[SHA256_HEX_SIZE];
                        _cleanup_free_ char *path = pkg_file_url_path(e->url);
                        r = sha256_file_hex(path, hex);
                        if (r < 0) {
                                *ret_error = xasprintf("%s: %s", path, strerror(-r));
                                goto out;
                        }
                        /* Worded as a download's mismatch (pkg-fetch.c). */
                        if (!streq(hex, e->sha256)) {
                                *ret_error = pkg_sha256_mismatch_message(e->filename, sha256_from, e->sha256, "at",
                                                                         e->url, hex);
                                r = -EBADMSG;
                                goto out;
                        }
                        j->wheel = TAKE_PTR(path);
                        continue;
                }
                j->wheel = xasprintf("%s/%s.whl", cache, e->sha256);
                if (access(j->wheel, F_OK) == 0) {
                        j->shared_cache = true; /* fetched earlier for its metadata */
                        continue;
                }
                /* A private name: hashed while it streams in, unpacked and
                 * deleted right after, so never fsync'ed nor reused. */
                _cleanup_free_ char *rnd = NULL;
                r = random_hex(6, &rnd);
                if (r < 0)
                        goto out;
                free(j->wheel);
                j->wheel = xasprintf("%s/%s.whl.%s", cache, e->sha256, rnd);
                j->downloaded = true;
                /* Under the wheel's exclusive lock (lock_wheels(): it is
                 * missing), so the part file is ours to resume. */
                j->part = pkg_store_part_path(data_dir, e->sha256);
                dl[n_dl++] = (PkgDownload){ .url = e->url,
                                            .dest = j->wheel,
                                            .sha256 = e->sha256,
                                            .sha256_from = sha256_from,
                                            .what = e->filename,
                                            .transient = true,
                                            .resume = j->part };
        }
        /* A cluster's peers first: a node that has the wheel saves the
         * index the trip (and a node works while the index is down). */
        if (cfg && cfg->peers && cfg->peers->wheel) {
                size_t kept = 0;
                for (size_t i = 0; i < n_dl; i++)
                        if (wheel_from_peers(cfg->peers, &dl[i], progress, userdata) < 0)
                                dl[kept++] = dl[i];
                n_dl = kept;
        }
        PkgHttpOptions o = { .timeout_ms = cfg ? cfg->timeout_ms : PKG_DEFAULT_TIMEOUT_MS,
                             .retries = cfg ? cfg->retries : PKG_DEFAULT_RETRIES,
                             .cancel_all = cancel };
        r = pkg_http_download_many(dl, n_dl, &o, progress, userdata, ret_error);
        if (r < 0)
                goto out;
        if (n_jobs > 0) {
                Pool p = { .data_dir = data_dir,
                           .http = &o,
                           .compile = compile,
                           .compile_userdata = compile_userdata,
                           .cancel = cancel,
                           .jobs = jobs,
                           .n = n_jobs,
                           .sha256_from = sha256_from,
                           .lock = PTHREAD_MUTEX_INITIALIZER,
                           .changed = PTHREAD_COND_INITIALIZER,
                           .keep_wheels = cfg && cfg->peers };
                r = pool_run(&p, progress, userdata, ret_error);
                if (r < 0)
                        goto out;
                if (progress)
                        progress("unpacking", "", n_jobs, n_jobs, userdata);
        }
        char **dirs = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                dirs[i] = pkg_store_dir(data_dir, lock->entries[i].sha256);
        *ret_dirs = dirs;
        *ret_locks = TAKE_PTR(fds);
        r = 0;
out:
        for (size_t i = 0; i < n_jobs; i++) {
                if (r < 0 && jobs[i].downloaded)
                        (void) unlink(jobs[i].wheel);
                free(jobs[i].wheel);
                free(jobs[i].part);
        }
        free(jobs);
        free(dl);
        pkg_store_unlock(fds);
        return r;
}

/* ---- early fetch, while the resolver works (pkg-mgr.h) ------------------ */

typedef enum PrefetchState { PF_QUEUED, PF_RUNNING, PF_DONE, PF_DROPPED } PrefetchState;

typedef struct PrefetchJob {
        char *url, *sha256, *filename;
        char **hashes; /* the page's others (PkgFile.hashes) */
        PrefetchState state;
        uint64_t done, total;      /* download bytes, for the caller's progress */
        bool cancel;               /* atomic: the final lock does not name it */
} PrefetchJob;

#define PREFETCH_THREADS 4

struct PkgPrefetch {
        char *data_dir;
        PkgHttpOptions http;
        PkgCompileFn compile;
        void *compile_userdata;
        const bool *cancel; /* the caller's, may be NULL */
        pthread_mutex_t lock;
        pthread_cond_t work;       /* a job was queued, or finishing */
        pthread_cond_t changed;    /* a job ended */
        PrefetchJob **jobs;        /* each allocated alone: stable while it runs */
        size_t n, alloc;
        size_t idle;               /* threads waiting for a job */
        bool finishing;
        pthread_t tids[PREFETCH_THREADS];
        size_t n_threads;
};

PkgPrefetch *pkg_prefetch_new(const char *data_dir, const PkgIndexConfig *cfg, PkgCompileFn compile,
                              void *compile_userdata, const bool *cancel) {
        assert(data_dir);
        /* A cluster node asks its peers first: pkg_store_materialize's
         * order, not this one. */
        if (cfg && cfg->peers)
                return NULL;
        _cleanup_free_ char *cache = xasprintf("%s/cache/wheels", data_dir);
        _cleanup_free_ char *locks = xasprintf("%s/cache/locks", data_dir);
        if (make_store_dir(data_dir) < 0 || mkdir_p(cache, 0755) < 0 || mkdir_p(locks, 0755) < 0)
                return NULL; /* pkg_store_materialize says why */
        PkgPrefetch *pf = xcalloc(1, sizeof(*pf));
        pf->data_dir = xstrdup(data_dir);
        pf->http = (PkgHttpOptions){ .timeout_ms = cfg ? cfg->timeout_ms : PKG_DEFAULT_TIMEOUT_MS,
                                     .retries = cfg ? cfg->retries : PKG_DEFAULT_RETRIES,
                                     .cancel_all = cancel };
        pf->cancel = cancel;
        pf->compile = compile;
        pf->compile_userdata = compile_userdata;
        pthread_mutex_init(&pf->lock, NULL);
        pthread_cond_init(&pf->work, NULL);
        pthread_cond_init(&pf->changed, NULL);
        return pf;
}

/* One wheel into the store, under its flock (a concurrent installer of the
 * same wheel waits, then finds the dir). Errors are dropped: the wheel is
 * still missing and pkg_store_materialize fetches it again, reporting. */
/* On a pool thread: only noted here, reported by pkg_prefetch_finish on the
 * caller's thread (pkg.h's promise). */
typedef struct PrefetchProgress {
        PkgPrefetch *pf;
        PrefetchJob *job;
} PrefetchProgress;

static void prefetch_progress(const char *phase, const char *what, uint64_t done, uint64_t total, void *userdata) {
        PrefetchProgress *pp = userdata;
        (void) what;
        if (!streq(phase, "downloading"))
                return;
        pthread_mutex_lock(&pp->pf->lock);
        pp->job->done = done;
        pp->job->total = total;
        pthread_mutex_unlock(&pp->pf->lock);
}

static void prefetch_one(PkgPrefetch *pf, PrefetchJob *j) {
        /* In the store already: no wait for an installer that holds its
         * lock shared until its record is written. */
        if (store_has(pf->data_dir, j->sha256))
                return;
        _cleanup_close_ int fd = -EBADF;
        if (pkg_wheel_lock(pf->data_dir, j->sha256, LOCK_EX, pf->cancel, &fd) < 0)
                return;
        _cleanup_free_ char *shared = xasprintf("%s/cache/wheels/%s.whl", pf->data_dir, j->sha256);
        if (store_has(pf->data_dir, j->sha256) || access(shared, F_OK) == 0)
                return; /* done by another installer, or cached for its metadata */
        _cleanup_free_ char *rnd = NULL;
        if (random_hex(6, &rnd) < 0)
                return;
        _cleanup_free_ char *mine = xasprintf("%s.%s", shared, rnd);
        _cleanup_free_ char *err = NULL;
        /* Under the wheel's exclusive lock: resumes what an interrupted
         * install got, and leaves what this one gets, if cut, to the next
         * (pkg_store_materialize's, right after, or a later install's). */
        _cleanup_free_ char *part = pkg_store_part_path(pf->data_dir, j->sha256);
        PkgDownload one = { .url = j->url,
                            .dest = mine,
                            .sha256 = j->sha256,
                            .hashes = j->hashes,
                            .what = j->filename,
                            .transient = true,
                            .resume = part };
        PkgLockEntry e = { .filename = j->filename, .sha256 = j->sha256 };
        PrefetchProgress pp = { pf, j };
        PkgHttpOptions o = pf->http;
        o.cancel = &j->cancel;
        if (pkg_http_download_many(&one, 1, &o, prefetch_progress, &pp, &err) >= 0 &&
            !__atomic_load_n(&j->cancel, __ATOMIC_ACQUIRE))
                (void) store_install(pf->data_dir, mine, &e, pf->compile, pf->compile_userdata, pf->cancel, &err);
        (void) unlink(mine);
}

static void *prefetch_thread(void *userdata) {
        PkgPrefetch *pf = userdata;
        pthread_mutex_lock(&pf->lock);
        for (;;) {
                PrefetchJob *j = NULL;
                for (size_t i = 0; i < pf->n && !j; i++)
                        if (pf->jobs[i]->state == PF_QUEUED)
                                j = pf->jobs[i];
                if (j && pkg_cancelled(pf->cancel)) {
                        j->state = PF_DROPPED; /* the whole install was cancelled */
                        pthread_cond_broadcast(&pf->changed);
                        continue;
                }
                if (j) {
                        j->state = PF_RUNNING;
                        pthread_mutex_unlock(&pf->lock);
                        prefetch_one(pf, j); /* reads only what nobody changes, but cancel */
                        pthread_mutex_lock(&pf->lock);
                        j->state = PF_DONE;
                        pthread_cond_broadcast(&pf->changed);
                        continue;
                }
                if (pf->finishing)
                        break;
                pf->idle++;
                pthread_cond_wait(&pf->work, &pf->lock);
                pf->idle--;
        }
        pthread_mutex_unlock(&pf->lock);
        return NULL;
}

void pkg_prefetch_pinned(void *prefetch, const PkgFile *f) {
        PkgPrefetch *pf = prefetch;
        assert(f && f->url && f->filename);
        if (!pf || !f->sha256 || !sha256_hex_is_valid(f->sha256) ||
            !(startswith(f->url, "http://") || startswith(f->url, "https://")))
                return;
        pthread_mutex_lock(&pf->lock);
        for (size_t i = 0; i < pf->n; i++)
                if (streq(pf->jobs[i]->sha256, f->sha256)) {
                        pthread_mutex_unlock(&pf->lock);
                        return; /* pinned again after a backtrack */
                }
        if (pf->n == pf->alloc) {
                pf->alloc = pf->alloc ? pf->alloc * 2 : 16;
                pf->jobs = xrealloc(pf->jobs, pf->alloc * sizeof(PrefetchJob *));
        }
        PrefetchJob *j = xcalloc(1, sizeof(PrefetchJob));
        *j = (PrefetchJob) { .url = xstrdup(f->url), .sha256 = xstrdup(f->sha256), .filename = xstrdup(f->filename),
                             .state = PF_QUEUED };
        for (char **h = f->hashes; h && *h; h++)
                j->hashes = strv_append(j->hashes, *h);
        pf->jobs[pf->n++] = j;
        if (pf->idle == 0 && pf->n_threads < PREFETCH_THREADS &&
            pthread_create(&pf->tids[pf->n_threads], NULL, prefetch_thread, pf) == 0)
                pf->n_threads++;
        pthread_cond_signal(&pf->work);
        pthread_mutex_unlock(&pf->lock);
}

static bool lock_names(const PkgLock *lock, const char *sha256) {
        for (size_t i = 0; lock && i < lock->n_entries; i++)
                if (streq(lock->entries[i].sha256, sha256))
                        return true;
        return false;
}

/* Reports, from the caller's thread, the bytes of the running downloads and
 * the wheels done, until no job is queued or running (woken by each job's
 * end, else every 100 ms). */
static void prefetch_report(PkgPrefetch *pf, PkgProgressFn progress, void *userdata) {
        pthread_mutex_lock(&pf->lock);
        for (;;) {
                uint64_t done = 0, total = 0;
                size_t ended = 0, all = 0;
                const char *what = "";
                for (size_t i = 0; i < pf->n; i++) {
                        PrefetchJob *j = pf->jobs[i];
                        if (j->state == PF_DROPPED)
                                continue;
                        all++;
                        if (j->state == PF_DONE)
                                ended++;
                        else if (j->state == PF_RUNNING && j->total > j->done) {
                                done += j->done;
                                total += j->total;
                                what = j->filename;
                        }
                }
                if (ended == all)
                        break;
                char *name = xstrdup(what);
                pthread_mutex_unlock(&pf->lock);
                if (total > 0)
                        progress("downloading", name, done, total, userdata);
                else
                        progress("unpacking", name, ended, all, userdata);
                free(name);
                pthread_mutex_lock(&pf->lock);
                (void) cond_wait_usec(&pf->changed, &pf->lock, 100 * USEC_PER_MSEC);
        }
        pthread_mutex_unlock(&pf->lock);
}

void pkg_prefetch_finish(PkgPrefetch *pf, const PkgLock *lock, PkgProgressFn progress, void *userdata) {
        if (!pf)
                return;
        pthread_mutex_lock(&pf->lock);
        pf->finishing = true;
        for (size_t i = 0; i < pf->n; i++) {
                PrefetchJob *j = pf->jobs[i];
                if (lock_names(lock, j->sha256))
                        continue;
                /* A version the resolver left: not started, or its
                 * download stopped (its unpack, if begun, ends). */
                if (j->state == PF_QUEUED)
                        j->state = PF_DROPPED;
                else if (j->state == PF_RUNNING)
                        __atomic_store_n(&j->cancel, true, __ATOMIC_RELEASE);
        }
        pthread_cond_broadcast(&pf->work);
        pthread_mutex_unlock(&pf->lock);
        if (progress)
                prefetch_report(pf, progress, userdata);
        for (size_t i = 0; i < pf->n_threads; i++)
                pthread_join(pf->tids[i], NULL);
        for (size_t i = 0; i < pf->n; i++) {
                free(pf->jobs[i]->url);
                free(pf->jobs[i]->sha256);
                free(pf->jobs[i]->filename);
                strv_free(pf->jobs[i]->hashes);
                free(pf->jobs[i]);
        }
        free(pf->jobs);
        pthread_mutex_destroy(&pf->lock);
        pthread_cond_destroy(&pf->work);
        pthread_cond_destroy(&pf->changed);
        free(pf->data_dir);
        free(pf);
}
