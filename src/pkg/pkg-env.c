/* pkg-env.c: environments = cached locks + their store dirs.
 *
 * $DATA/envs/<key>.json is both the lock cache entry and the environment's
 * record: key = sha256(requirements, interpreter tags, index config). Its
 * mtime is the last use; a process using the env holds flock(LOCK_SH) on
 * it, which `env prune` respects. */
#include "pkg-mgr.h"

#include <assert.h>
#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/file.h>
#include <sys/stat.h>

#define PKG_DEFAULT_PYTHON "3.11.2"
#define ENV_RECORD_MAX (16U << 20)
/* Unreferenced store dirs younger than this may belong to an install in
 * progress whose record is not written yet. */
#define GC_GRACE_USEC (3600ULL * USEC_PER_SEC)

PkgEnv *pkg_env_free(PkgEnv *e) {
        if (!e)
                return NULL;
        free(e->key);
        strv_free(e->store_dirs);
        pkg_lock_free(e->lock);
        if (e->fd >= 0)
                close(e->fd);
        free(e);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgEnv *, pkg_env_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgTags *, pkg_tags_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgIndex *, pkg_index_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgLock *, pkg_lock_free);

/* "3.11.2" -> "3.11" */
static char *major_minor(const char *full) {
        const char *dot = strchr(full, '.');
        const char *dot2 = dot ? strchr(dot + 1, '.') : NULL;
        return dot2 ? xstrndup(full, (size_t) (dot2 - full)) : xstrdup(full);
}

static bool dirs_present(char **dirs) {
        struct stat st;
        for (char **d = dirs; d && *d; d++)
                if (stat(*d, &st) < 0 || !S_ISDIR(st.st_mode))
                        return false;
        return true;
}

static char **lock_dirs(const char *data_dir, const PkgLock *l) {
        char **dirs = xcalloc(l->n_entries + 1, sizeof(char *));
        for (size_t i = 0; i < l->n_entries; i++)
                dirs[i] = pkg_store_dir(data_dir, l->entries[i].sha256);
        return dirs;
}

static int write_record(const char *path, const char *key, const char *python, const PkgIndexConfig *cfg,
                        const PkgLock *l, bool pinned, char **ret_error) {
        _cleanup_free_ char *text = pkg_lock_to_json(l, false);
        json_t *root = json_loads(text, 0, NULL);
        if (!root)
                return -EBADMSG;
        json_object_set_new(root, "key", json_string(key));
        /* Installed from a given lock, keyed by it (env ls: "pinned"). */
        if (pinned)
                json_object_set_new(root, "pinned", json_true());
        json_object_set_new(root, "python", json_string(python));
        json_t *ix = json_array();
        for (char **u = cfg->index_urls; u && *u; u++)
                json_array_append_new(ix, json_string(*u));
        json_object_set_new(root, "index_urls", ix);
        char ts[32];
        json_object_set_new(root, "created", json_string(format_timestamp(now_realtime(), ts)));
        char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(root);
        if (!s)
                return -ENOMEM;
        int r = write_file_atomic(path, s, strlen(s), 0644);
        free(s);
        if (r < 0)
                *ret_error = xasprintf("cannot write %s: %s", path, strerror(-r));
        return r;
}

/* The fingerprint of an interpreter version's wheel tags, for the env key.
 * The tags depend only on the version and this machine, and computing
 * them (hundreds of strings) was most of an env check's CPU: the key is
 * computed on every ad-hoc run (issue 15). The first key of a version
 * hashes the text as it is generated (a one-shot CLI allocates none of its
 * ~30 KB); from the second the text is kept for the process's life, never
 * freed (a daemon serves one interpreter), and hashed from there. */
typedef struct TagsFp {
        struct TagsFp *next;
        char *mm;
        char *fp; /* NULL until the second use */
} TagsFp;

static pthread_mutex_t tags_fp_lock = PTHREAD_MUTEX_INITIALIZER;
static TagsFp *tags_fps;

static void hash_write(void *userdata, const void *data, size_t n) {
        sha256_small_update(userdata, data, n);
}

static int hash_tags_fingerprint(const char *mm, Sha256Small *h, char **ret_error) {
        TagsFp *seen = NULL;
        pthread_mutex_lock(&tags_fp_lock);
        for (TagsFp *t = tags_fps; t && !seen; t = t->next)
                if (streq(t->mm, mm))
                        seen = t;
        const char *fp = seen ? seen->fp : NULL;
        pthread_mutex_unlock(&tags_fp_lock);
        if (fp) {
                sha256_small_update(h, fp, strlen(fp));
                return 0;
        }
        int r;
        if (!seen) {
                r = pkg_tags_fingerprint_stream(mm, hash_write, h);
                if (r >= 0) {
                        TagsFp *n = xmalloc(sizeof(*n));
                        *n = (TagsFp){ .mm = xstrdup(mm) };
                        pthread_mutex_lock(&tags_fp_lock);
                        n->next = tags_fps;
                        tags_fps = n;
                        pthread_mutex_unlock(&tags_fp_lock);
                }
        } else {
                char *text = NULL;
                r = pkg_tags_fingerprint_for_interpreter(mm, &text);
                if (r >= 0) {
                        sha256_small_update(h, text, strlen(text));
                        pthread_mutex_lock(&tags_fp_lock);
                        if (!seen->fp)
                                seen->fp = TAKE_PTR(text);
                        pthread_mutex_unlock(&tags_fp_lock);
                        free(text);
                }
        }
        if (r < 0)
                *ret_error = xasprintf("cannot compute the wheel tags of Python %s: %s", mm, strerror(-r));
        return r;
}

static int env_key(PkgRequirement *const *reqs, size_t n, const char *mm, const char *python, const PkgIndexConfig *cfg,
                   char **ret_key, char **ret_error) {
        char **v = pkg_requirements_sorted(reqs, n);
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        buf_printf(&b, "pysprinter-env 1\npython %s\n", python);
        for (size_t i = 0; i < n; i++)
                buf_printf(&b, "req %s\n", v[i]);
        strv_free(v);
        _cleanup_free_ char *ifp = pkg_index_config_fingerprint(cfg);
        buf_printf(&b, "%s\ntags ", ifp);
        /* The digest of b, the tags' text (~30 KB) and "\n", hashed in
         * place rather than copied into b first. */
        Sha256Small h;
        sha256_small_init(&h);
        sha256_small_update(&h, b.data, b.len);
        buf_free(&b);
        int r = hash_tags_fingerprint(mm, &h, ret_error);
        if (r < 0)
                return r;
        sha256_small_update(&h, "\n", 1);
        char *key = xmalloc(SHA256_HEX_SIZE);
        sha256_small_final_hex(&h, key);
        *ret_key = key;
        return 0;
}

/* A record in use (a process holds its flock) that is about to be written
 * again (`run --no-cache`, or two processes resolving the same new set at
 * once): the new record is a new file renamed over the path, and the
 * holders' locks stay on the old one, which nothing would then show as in
 * use — prune removed its store dirs under the running functions. So the
 * old file keeps a second name, ENV_HELD_PREFIX<key>-<random>.json, which
 * prune reads as one more record: its dirs stay while it is held, and it
 * goes once nobody holds it (nobody opens it again by that name): its
 * holder removes it when it lets go (pkg_env_held_sweep()), the next write
 * of the record removes those no one holds, and prune what is left (a
 * holder killed). Before, only prune removed them: a daemon's `--no-cache`
 * runs of a set it held left one per run in envs/. */
#define ENV_HELD_PREFIX ".held-"

static void held_sweep(const char *envs, const char *key) {
        _cleanup_free_ char *prefix = xasprintf(ENV_HELD_PREFIX "%s-", key);
        DIR *d = opendir(envs);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!startswith(de->d_name, prefix) || !endswith(de->d_name, ".json"))
                        continue;
                /* A holder's shared lock, of this process too (flock
                 * locks belong to the open file): still held, stays. */
                _cleanup_close_ int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) >= 0)
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
}

void pkg_env_held_sweep(const char *data_dir, const char *key) {
        assert(data_dir && key);
        _cleanup_free_ char *envs = path_join(data_dir, "envs");
        held_sweep(envs, key);
}

static void record_set_aside_if_held(const char *envs, const char *record, const char *key) {
        _cleanup_close_ int fd = open(record, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) >= 0)
                return; /* none, or nobody uses it: replaced as it is */
        /* Those of earlier writes whose holders are gone (a CLI that
         * exited holds nothing and sweeps nothing): at most one per
         * holder is left, not one per write. */
        held_sweep(envs, key);
        _cleanup_free_ char *rnd = NULL;
        if (random_hex(6, &rnd) < 0)
                return;
        _cleanup_free_ char *aside = xasprintf("%s/" ENV_HELD_PREFIX "%s-%s.json", envs, key, rnd);
        (void) link(record, aside);
}

static int open_locked(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_SH) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        /* The lock waited for a prune that held the record to remove it:
         * a record no name reaches any more is a miss. Used, it kept no
         * store dir (prune removed them; installed again, no record named
         * them) and `env ls` saw nothing in use. */
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_nlink == 0) {
                close(fd);
                return -ENOENT;
        }
        return fd;
}

static void store_unlockp(int **locks) {
        pkg_store_unlock(*locks);
}

/* Writes env's record (l, under record in envs) and takes its shared lock
 * (env->fd). The caller holds the wheel locks of l's store dirs
 * (pkg_store_materialize_held()) and lets go of them only after: a remover
 * that takes a wheel's lock exclusively then reads this record, or took it
 * before we found the dir and so removed it before we decided. */
static int record_publish(const char *envs, const char *record, PkgEnv *env, const char *python,
                          const PkgIndexConfig *cfg, const PkgLock *l, bool pinned, char **ret_error) {
        int r = mkdir_p(envs, 0755);
        if (r < 0) {
                *ret_error = xasprintf("cannot create %s: %s", envs, strerror(-r));
                return r;
        }
        pkg_test_point(PKG_TEST_RECORD_WRITE);
        record_set_aside_if_held(envs, record, env->key);
        r = write_record(record, env->key, python, cfg, l, pinned, ret_error);
        if (r < 0)
                return r;
        env->fd = open_locked(record);
        return 0;
}

/* Puts the lock's wheels in the store through the early-fetch pool: each
 * is unpacked as soon as its own download is verified, not after all of
 * them (pkg_store_materialize then has nothing left, or reports). */
static void prefetch_lock(const PkgEnvOptions *o, const PkgLock *l) {
        PkgPrefetch *pf = pkg_prefetch_new(o->data_dir, o->index, o->compile, o->compile_userdata, o->cancel);
        if (!pf)
                return;
        for (size_t i = 0; i < l->n_entries; i++) {
                const PkgLockEntry *e = &l->entries[i];
                PkgFile f = { .filename = e->filename, .url = e->url, .sha256 = e->sha256 };
                pkg_prefetch_pinned(pf, &f);
        }
        pkg_prefetch_finish(pf, l, o->progress, o->userdata);
}

/* The admit policy over a lock this call did not resolve itself. */
static int admit_lock(const PkgEnvOptions *o, const PkgLock *l, char **ret_error) {
        for (size_t i = 0; o->admit && i < l->n_entries; i++) {
                _cleanup_free_ char *n = pkg_name_normalize(l->entries[i].name);
                int r = n ? o->admit(o->admit_userdata, n, ret_error) : 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A cancel seen between steps. */
static int env_cancelled(const PkgEnvOptions *o, char **ret_error) {
        if (!pkg_cancelled(o->cancel))
                return 0;
        free(*ret_error);
        *ret_error = xstrdup("cancelled");
        return -ECANCELED;
}

int pkg_env_prepare(const PkgEnvOptions *o, PkgRequirement *const *reqs, size_t n_reqs, PkgEnv **ret_env,
                    char **ret_error) {
        const char *python = o->python_full_version ? o->python_full_version : PKG_DEFAULT_PYTHON;
        _cleanup_free_ char *mm = major_minor(python);
        _cleanup_(pkg_tags_freep) PkgTags *tags = NULL;
        _cleanup_(pkg_env_freep) PkgEnv *env = xcalloc(1, sizeof(*env));
        env->fd = -EBADF;
        int r = env_key(reqs, n_reqs, mm, python, o->index, &env->key, ret_error);
        if (r < 0)
                return r;
        _cleanup_free_ char *envs = xasprintf("%s/envs", o->data_dir);
        _cleanup_free_ char *record = xasprintf("%s/%s.json", envs, env->key);

        /* The fast path: one open, one read, one stat per store dir. */
        int fd = o->refresh ? -ENOENT : open_locked(record);
        if (fd >= 0) {
                _cleanup_free_ char *text = NULL;
                _cleanup_free_ char *err = NULL;
                PkgLock *l = NULL;
                if (read_fd_all(fd, ENV_RECORD_MAX, &text, NULL) >= 0 && pkg_lock_from_json(text, &l, &err) >= 0) {
                        env->lock = l;
                        env->cached = true;
                        env->fd = fd;
                        (void) futimens(fd, NULL); /* last use, for env ls / prune */
                        if (o->resolve_only) {
                                *ret_env = TAKE_PTR(env);
                                return 0;
                        }
                        env->store_dirs = lock_dirs(o->data_dir, l);
                        if (dirs_present(env->store_dirs)) {
                                *ret_env = TAKE_PTR(env);
                                return 0;
                        }
                        /* Pruned or damaged: materialise the same lock again,
                         * each wheel unpacked as soon as it is downloaded. */
                        env->store_dirs = strv_free(env->store_dirs);
                        r = admit_lock(o, l, ret_error);
                        if (r < 0)
                                return r;
                        prefetch_lock(o, l);
                        r = pkg_store_materialize(o->data_dir, o->index, l, o->progress, o->userdata, o->compile,
                                                  o->compile_userdata, o->cancel, &env->store_dirs, ret_error);
                        if (r < 0)
                                return r;
                        *ret_env = TAKE_PTR(env);
                        return 0;
                }
                /* An unreadable record is a cache miss, not an error. */
                close(fd);
        }

        r = env_cancelled(o, ret_error);
        if (r < 0)
                return r;
        _cleanup_(pkg_lock_freep) PkgLock *l = NULL;
        const PkgPeers *peers = o->index ? o->index->peers : NULL;
        /* A peer resolved this key already (same requirements, tags and
         * index): its lock, so every node installs the same files. */
        if (peers && peers->lock_get && !o->refresh) {
                _cleanup_free_ char *json = NULL, *err = NULL;
                if (peers->lock_get(peers->userdata, env->key, &json) >= 0 && pkg_lock_from_json(json, &l, &err) < 0)
                        l = NULL;
        }
        if (!l) {
                /* The slow path: resolve against the index (the tags now). */
                r = pkg_tags_for_interpreter(mm, &tags);
                if (r < 0) {
                        *ret_error = xasprintf("cannot compute the wheel tags of Python %s: %s", mm, strerror(-r));
                        return r;
                }
                _cleanup_free_ char *cache = xasprintf("%s/cache/wheels", o->data_dir);
                _cleanup_(pkg_index_freep) PkgIndex *ix = NULL;
                r = pkg_index_new(o->index, cache, &ix);
                if (r < 0)
                        return r;
                pkg_index_set_pin_only(ix, o->resolve_only);
                pkg_index_set_data_dir(ix, o->data_dir);
                PkgMarkerEnv menv;
                pkg_marker_env_default(&menv, python);
                /* Wheels are fetched and unpacked as the resolver pins
                 * them (numpy's download starts while requests' deps are
                 * still being looked up); materialize then finds them in
                 * the store, or does what the early fetch could not. */
                PkgPrefetch *pf = o->resolve_only ? NULL
                                                  : pkg_prefetch_new(o->data_dir, o->index, o->compile,
                                                                     o->compile_userdata, o->cancel);
                PkgResolveOptions ro = { .tags = tags,
                                         .marker_env = &menv,
                                         .python_full_version = python,
                                         .progress = o->progress,
                                         .userdata = o->userdata,
                                         .pinned = pf ? pkg_prefetch_pinned : NULL,
                                         .pin_userdata = pf,
                                         .admit = o->admit,
                                         .admit_userdata = o->admit_userdata,
                                         .cancel = o->cancel };
                r = pkg_resolve(ix, reqs, n_reqs, &ro, &l, ret_error);
                pkg_prefetch_finish(pf, r >= 0 ? l : NULL, r >= 0 ? o->progress : NULL, o->userdata);
                if (r < 0)
                        return r;
                if (peers && peers->lock_put) {
                        _cleanup_free_ char *json = pkg_lock_to_json(l, false);
                        if (json)
                                peers->lock_put(peers->userdata, env->key, json);
                }
        }
        r = env_cancelled(o, ret_error);
        if (r < 0)
                return r;
        _cleanup_(store_unlockp) int *wheel_locks = NULL; /* till the record is written */
        if (!o->resolve_only) {
                r = admit_lock(o, l, ret_error); /* a peer's lock was not resolved here */
                if (r < 0)
                        return r;
                r = pkg_store_materialize_held(o->data_dir, o->index, l, o->progress, o->userdata, o->compile,
                                               o->compile_userdata, o->cancel, &env->store_dirs, &wheel_locks,
                                               ret_error);
                if (r < 0)
                        return r;
        }
        /* Cancelled after the last wheel landed: the env is whole, but
         * the caller asked for nothing to be published. */
        r = env_cancelled(o, ret_error);
        if (r < 0)
                return r;
        r = record_publish(envs, record, env, python, o->index, l, false, ret_error);
        if (r < 0)
                return r;
        env->lock = TAKE_PTR(l);
        *ret_env = TAKE_PTR(env);
        return 0;
}

/* ---- an environment from a given lock ------------------------------------ */

/* A pinned lock's record key: the lock's text and the interpreter, not
 * requirements (nothing is resolved), so it never stands in for a
 * requirement set's cached lock, and a set's re-resolution never replaces
 * it. Not the wheels' URLs (version 2 of the key): where a file is fetched
 * from is not which file, and a version whose lock was saved with the URLs
 * of a moved index (store_function_lock_update()) keeps its environment
 * and record rather than writing a second one. */
static char *lock_env_key(const PkgLock *lock, const char *python) {
        _cleanup_free_ char *text = pkg_lock_files_json(lock);
        _cleanup_free_ char *head = xasprintf("pysprinter-env-lock 2\npython %s\n", python);
        Sha256Small h;
        sha256_small_init(&h);
        sha256_small_update(&h, head, strlen(head));
        sha256_small_update(&h, text, strlen(text));
        char *key = xmalloc(SHA256_HEX_SIZE);
        sha256_small_final_hex(&h, key);
        return key;
}

static bool store_has_dir(const char *data_dir, const char *sha256) {
        _cleanup_free_ char *dir = pkg_store_dir(data_dir, sha256);
        struct stat st;
        return dir && stat(dir, &st) >= 0 && S_ISDIR(st.st_mode);
}

/* The entries of lock whose store dir is missing, "name version, …". */
static char *lock_missing(const char *data_dir, const PkgLock *lock) {
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        for (size_t i = 0; i < lock->n_entries; i++) {
                if (store_has_dir(data_dir, lock->entries[i].sha256))
                        continue;
                buf_printf(&b, "%s%s %s (%s)", b.len ? ", " : "", lock->entries[i].name, lock->entries[i].version,
                           lock->entries[i].filename);
        }
        if (!b.len) {
                buf_free(&b);
                return NULL;
        }
        return buf_steal(&b);
}

/* The sources configured now, each a PkgIndex of its own: a locked file is
 * looked for on every one, not only on the first that has its project.
 * Find-links directories first, then the indexes, as pkg_index_project()
 * asks them. */
static PkgIndex **sources_each(const PkgEnvOptions *o, const char *cache) {
        char **lists[] = { o->index->find_links, o->index->index_urls };
        size_t n = strv_length(lists[0]) + strv_length(lists[1]), k = 0;
        PkgIndex **v = xcalloc(n + 1, sizeof(PkgIndex *));
        for (size_t li = 0; li < ELEMENTSOF(lists); li++)
                for (char **u = lists[li]; u && *u; u++) {
                        char *one[] = { *u, NULL };
                        PkgIndexConfig c = { .find_links = li == 0 ? one : NULL,
                                             .index_urls = li == 1 ? one : NULL,
                                             .timeout_ms = o->index->timeout_ms,
                                             .retries = o->index->retries };
                        if (pkg_index_new(&c, cache, &v[k]) >= 0)
                                pkg_index_set_cancel(v[k++], o->cancel);
                }
        return v;
}

/* Where the sources configured now serve each entry of l the store lacks,
 * when its URL failed (the operator moved the index since the deploy:
 * config index.url): the same filename with the same sha256, and l's URL
 * is changed to it. Never another build: a file of that name with another
 * sha256 is not taken. 1 when a URL changed, 0 when none did (the first
 * error stands), or -ESTALE and "NAME VERSION (FILE): sha256 mismatch:
 * the lock says X, SOURCE serves Y" when a source serves an entry's
 * filename only with another sha256. */
static int lock_relocate(const PkgEnvOptions *o, PkgLock *l, char **ret_error) {
        _cleanup_free_ char *cache = xasprintf("%s/cache/wheels", o->data_dir);
        PkgIndex **ix = sources_each(o, cache);
        _cleanup_free_ char *mismatch = NULL;
        int moved = 0;
        for (size_t i = 0; i < l->n_entries && !pkg_cancelled(o->cancel); i++) {
                PkgLockEntry *e = &l->entries[i];
                if (store_has_dir(o->data_dir, e->sha256))
                        continue;
                bool found = false;
                _cleanup_free_ char *other = NULL;
                for (size_t s = 0; ix[s] && !found; s++) {
                        const PkgProject *p = NULL;
                        _cleanup_free_ char *err = NULL;
                        if (pkg_index_project(ix[s], e->name, &p, &err) < 0)
                                continue;
                        for (size_t k = 0; k < p->n_files && !found; k++) {
                                const PkgFile *f = &p->files[k];
                                const char *sha = NULL;
                                if (!streq(f->filename, e->filename))
                                        continue;
                                free(err);
                                err = NULL;
                                if (pkg_index_file_sha256(ix[s], f, &sha, &err) < 0)
                                        continue;
                                if (!streq(sha, e->sha256)) {
                                        if (!other)
                                                other = xasprintf("%s %s (%s): sha256 mismatch: the lock says %s, %s "
                                                                  "serves %s",
                                                                  e->name, e->version, e->filename, e->sha256,
                                                                  p->source ?: "the index", sha);
                                        continue;
                                }
                                found = true;
                                if (!streq(f->url, e->url)) {
                                        free(e->url);
                                        e->url = xstrdup(f->url);
                                        moved = 1;
                                }
                        }
                }
                if (!found && other && !mismatch)
                        mismatch = TAKE_PTR(other);
        }
        for (size_t s = 0; ix[s]; s++)
                pkg_index_free(ix[s]);
        free(ix);
        if (mismatch) {
                *ret_error = TAKE_PTR(mismatch);
                return -ESTALE; /* another build: the lock is what is out of date */
        }
        return moved;
}

int pkg_env_from_lock(const PkgEnvOptions *o, const PkgLock *lock, PkgEnv **ret_env, char **ret_error) {
        assert(o && o->data_dir && o->index && lock && ret_env && ret_error);
        assert(!o->resolve_only);
        const char *python = o->python_full_version ? o->python_full_version : PKG_DEFAULT_PYTHON;
        _cleanup_(pkg_env_freep) PkgEnv *env = xcalloc(1, sizeof(*env));
        env->fd = -EBADF;
        env->key = lock_env_key(lock, python);
        _cleanup_free_ char *envs = xasprintf("%s/envs", o->data_dir);
        _cleanup_free_ char *record = xasprintf("%s/%s.json", envs, env->key);
        _cleanup_free_ char *text = pkg_lock_to_json(lock, false);
        _cleanup_(pkg_lock_freep) PkgLock *l = NULL;
        _cleanup_free_ char *err = NULL;
        int r = pkg_lock_from_json(text, &l, &err); /* a copy the env owns */
        if (r < 0) {
                *ret_error = xasprintf("the lock cannot be read: %s", err ?: strerror(-r));
                return r;
        }
        r = admit_lock(o, l, ret_error);
        if (r < 0)
                return r;

        /* Installed before and its record still there: one open, one stat
         * per store dir, as a cached lock. */
        int fd = open_locked(record);
        if (fd >= 0) {
                env->store_dirs = lock_dirs(o->data_dir, l);
                if (dirs_present(env->store_dirs)) {
                        env->fd = fd;
                        env->cached = true;
                        (void) futimens(fd, NULL); /* last use, for env ls / prune */
                        env->lock = TAKE_PTR(l);
                        *ret_env = TAKE_PTR(env);
                        return 0;
                }
                env->store_dirs = strv_free(env->store_dirs);
                close(fd);
        }
        r = env_cancelled(o, ret_error);
        if (r < 0)
                return r;
        prefetch_lock(o, l);
        _cleanup_(store_unlockp) int *wheel_locks = NULL; /* till the record is written */
        r = pkg_store_materialize_held(o->data_dir, o->index, l, o->progress, o->userdata, o->compile,
                                       o->compile_userdata, o->cancel, &env->store_dirs, &wheel_locks, ret_error);
        if (r < 0 && r != -ECANCELED) {
                /* The lock's URLs are where the files were at the deploy:
                 * the same files (same sha256) on the sources of now. */
                _cleanup_free_ char *why = NULL;
                int m = lock_relocate(o, l, &why);
                if (pkg_cancelled(o->cancel))
                        return env_cancelled(o, ret_error);
                if (m != 0) {
                        free(*ret_error);
                        *ret_error = NULL;
                }
                if (m > 0)
                        r = pkg_store_materialize_held(o->data_dir, o->index, l, o->progress, o->userdata, o->compile,
                                                       o->compile_userdata, o->cancel, &env->store_dirs, &wheel_locks,
                                                       ret_error);
                else if (m < 0) {
                        *ret_error = TAKE_PTR(why);
                        return m;
                }
        }
        if (r < 0) {
                /* Never another version instead: the caller pinned these
                 * files. Which of them could not be had, by name. */
                _cleanup_free_ char *missing = r == -ECANCELED ? NULL : lock_missing(o->data_dir, l);
                if (missing && r == -EBADMSG) {
                        /* Fetched, but not the bytes locked (a corrupt or
                         * changed file on the index, a hostile wheel): the
                         * reason says which, with its hashes. */
                        char *why = *ret_error;
                        *ret_error = xasprintf("%s could not be installed from the store or the index: %s", missing,
                                               why ?: strerror(-r));
                        free(why);
                } else if (missing) {
                        char *why = *ret_error;
                        /* One failed download ends the others: with more
                         * than one missing, the error says which failed. */
                        *ret_error = strchr(missing, ',')
                                             ? xasprintf("not all of %s could be had from the store or the index (%s)",
                                                         missing, why ?: strerror(-r))
                                             : xasprintf("%s is in neither the store nor the index (%s)", missing,
                                                         why ?: strerror(-r));
                        free(why);
                }
                return r;
        }
        r = env_cancelled(o, ret_error);
        if (r < 0)
                return r;
        /* The record makes it an environment like any other: `env ls`
         * lists it, prune keeps its dirs while a process holds it. */
        r = record_publish(envs, record, env, python, o->index, l, true, ret_error);
        if (r < 0)
                return r;
        env->lock = TAKE_PTR(l);
        *ret_env = TAKE_PTR(env);
        return 0;
}

/* ---- env ls / prune ------------------------------------------------------ */

/* A record this binary cannot read (lock NULL) is another release's (a
 * newer format: a downgrade) or damaged: it is neither listed nor removed,
 * and what it may name is kept, since nothing here can tell what its
 * environment needs. Those are the sha256s its text names (names), or,
 * when even its text could not be read, every store dir and wheel (blind). */
typedef struct Rec {
        char *path;
        char *key;
        PkgLock *lock;
        char **names;
        bool blind;
        uint64_t mtime;
        bool in_use;
        bool held; /* an ENV_HELD_PREFIX record: not listed, removed once unused */
        bool pinned; /* pkg_env_from_lock's */
} Rec;

static void recs_free(Rec *r, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(r[i].path);
                free(r[i].key);
                pkg_lock_free(r[i].lock);
                strv_free(r[i].names);
        }
        free(r);
}

/* Every run of exactly 64 lowercase hex digits in text: the hashes a
 * record this binary cannot parse may name. */
static char **sha256s_named(const char *text) {
        char **v = NULL;
        for (const char *p = text; p && *p;) {
                size_t n = strspn(p, "0123456789abcdef");
                if (n == 64) {
                        char h[SHA256_HEX_SIZE];
                        memcpy(h, p, 64);
                        h[64] = 0;
                        v = strv_append(v, h);
                }
                p += n ? n : 1;
        }
        return v;
}

static int rec_cmp_newest(const void *a, const void *b) {
        const Rec *x = a, *y = b;
        return x->mtime < y->mtime ? 1 : x->mtime > y->mtime ? -1 : strcmp(x->key, y->key);
}

static int load_records(const char *data_dir, Rec **ret, size_t *ret_n) {
        _cleanup_free_ char *envs = xasprintf("%s/envs", data_dir);
        Rec *recs = NULL;
        size_t n = 0;
        DIR *d = opendir(envs);
        if (!d) {
                *ret = NULL;
                *ret_n = 0;
                return errno == ENOENT ? 0 : -errno;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                bool held = startswith(de->d_name, ENV_HELD_PREFIX);
                if (!endswith(de->d_name, ".json") || (de->d_name[0] == '.' && !held))
                        continue;
                /* The key of a held record: its name up to the random tail. */
                const char *kb = held ? de->d_name + strlen(ENV_HELD_PREFIX) : de->d_name;
                const char *ke = held ? strrchr(kb, '-') : de->d_name + strlen(de->d_name) - 5;
                if (!ke || ke <= kb)
                        continue;
                _cleanup_free_ char *path = path_join(envs, de->d_name);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                struct stat st;
                _cleanup_free_ char *text = NULL, *err = NULL;
                PkgLock *l = NULL;
                if (fstat(fd, &st) < 0)
                        continue;
                bool readable = read_fd_all(fd, ENV_RECORD_MAX, &text, NULL) >= 0;
                if (!readable || pkg_lock_from_json(text, &l, &err) < 0) {
                        recs = xrealloc(recs, (n + 1) * sizeof(Rec));
                        recs[n++] = (Rec){ .path = TAKE_PTR(path),
                                           .key = xstrndup(kb, (size_t) (ke - kb)),
                                           .names = readable ? sha256s_named(text) : NULL,
                                           .blind = !readable,
                                           .held = held };
                        continue;
                }
                json_t *root = json_loads(text, 0, NULL);
                bool pinned = json_is_true(json_object_get(root, "pinned"));
                json_decref(root);
                bool in_use = false;
                if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                        in_use = true;
                else
                        (void) flock(fd, LOCK_UN);
                recs = xrealloc(recs, (n + 1) * sizeof(Rec));
                recs[n++] = (Rec){ .path = TAKE_PTR(path),
                                   .key = xstrndup(kb, (size_t) (ke - kb)),
                                   .lock = l,
                                   .held = held,
                                   .pinned = pinned,
                                   .mtime = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC +
                                            (uint64_t) st.st_mtim.tv_nsec / 1000,
                                   .in_use = in_use };
        }
        closedir(d);
        /* A process holding an environment's earlier record uses the
         * environment: its record is in use too (listed so, never pruned). */
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; recs[i].held && recs[i].in_use && k < n; k++)
                        if (!recs[k].held && streq(recs[k].key, recs[i].key))
                                recs[k].in_use = true;
        if (n > 1)
                qsort(recs, n, sizeof(Rec), rec_cmp_newest);
        *ret = recs;
        *ret_n = n;
        return 0;
}

static uint64_t store_entry_size(const char *data_dir, const char *sha) {
        _cleanup_free_ char *store = xasprintf("%s/store", data_dir);
        int fd = open(store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        uint64_t s = path_tree_bytes_at(fd, sha);
        close(fd);
        return s;
}

int pkg_env_list(const char *data_dir, PkgEnvInfo **ret_infos, size_t *ret_n, char **ret_error) {
        Rec *recs = NULL;
        size_t n = 0;
        int r = load_records(data_dir, &recs, &n);
        if (r < 0) {
                *ret_error = xasprintf("cannot read %s/envs: %s", data_dir, strerror(-r));
                return r;
        }
        PkgEnvInfo *infos = xcalloc(n + 1, sizeof(PkgEnvInfo));
        size_t shown = 0;
        for (size_t j = 0; j < n; j++) {
                if (!recs[j].lock || recs[j].held)
                        continue; /* not this release's to show; a held one below */
                size_t i = shown++;
                infos[i].key = xstrdup(recs[j].key);
                for (char **q = recs[j].lock->requirements; q && *q; q++)
                        infos[i].requirements = strv_append(infos[i].requirements, *q);
                for (size_t k = 0; k < recs[j].lock->n_entries; k++) {
                        const PkgLockEntry *e = &recs[j].lock->entries[k];
                        infos[i].size_bytes += store_entry_size(data_dir, e->sha256);
                        infos[i].packages = strv_append_take(infos[i].packages,
                                                             xasprintf("%s==%s", e->name, e->version));
                }
                infos[i].pinned = recs[j].pinned;
                infos[i].last_used = recs[j].mtime;
                infos[i].in_use = recs[j].in_use;
        }
        recs_free(recs, n);
        *ret_infos = infos;
        *ret_n = shown;
        return 0;
}

json_t *pkg_env_info_json(const PkgEnvInfo *info) {
        assert(info && info->key);
        char ts[32];
        json_t *reqs = json_array();
        for (char **r = info->requirements; r && *r; r++)
                json_array_append_new(reqs, json_string(*r));
        json_t *pkgs = json_array();
        for (char **p = info->packages; p && *p; p++)
                json_array_append_new(pkgs, json_string(*p));
        json_t *j = json_pack("{s:s, s:s, s:o, s:o, s:I, s:o, s:b}", "key", info->key, "kind",
                              info->pinned ? "pinned" : "resolved", "requirements", reqs, "packages", pkgs,
                              "size_bytes", (json_int_t) info->size_bytes, "last_used",
                              info->last_used ? json_string(format_timestamp(info->last_used, ts)) : json_null(),
                              "in_use", info->in_use);
        return j;
}

void pkg_env_info_free_many(PkgEnvInfo *infos, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(infos[i].key);
                strv_free(infos[i].requirements);
                strv_free(infos[i].packages);
        }
        free(infos);
}

static bool referenced(const Rec *recs, size_t n, const bool *removed, const char *sha) {
        for (size_t i = 0; i < n; i++) {
                if (removed[i])
                        continue;
                if (!recs[i].lock) {
                        if (recs[i].blind || strv_contains(recs[i].names, sha))
                                return true;
                        continue;
                }
                for (size_t k = 0; k < recs[i].lock->n_entries; k++)
                        if (streq(recs[i].lock->entries[k].sha256, sha))
                                return true;
        }
        return false;
}

/* A name in cache/wheels that is a download's private file, not a kept
 * wheel: `<sha256>.whl.<random>` (an installer's own copy), its
 * `.part-<random>` (bytes still arriving), `<sha256>.whl.peer` (a fetch
 * from a peer), `nohash-<random>.whl` (an index that gave no hash). Each
 * is renamed or deleted by the process that made it before it returns, so
 * one is left only by a process killed midway (kill -9, a crash, Ctrl-C of
 * a CLI mid-download), whatever lock lists its wheel. (A resumable
 * download's `<sha256>.whl.part` is kept on purpose: part_sha().) */
static bool wheel_cache_temp(const char *name) {
        size_t stem = strcspn(name, ".");
        if (startswith(name, "nohash-"))
                return true;
        return stem == 64 && !streq(name + stem, ".whl");
}

/* The sha256 of a resumable download's part file, <sha256>.whl.part, or
 * of the If-Range beside it (pkg_store_part_path()); NULL for another
 * name. Caller frees. */
static char *part_sha(const char *name) {
        size_t stem = strcspn(name, ".");
        if (stem != 64 ||
            (!streq(name + stem, PKG_PART_SUFFIX) && !streq(name + stem, PKG_PART_SUFFIX PKG_PART_IFRANGE_SUFFIX)))
                return NULL;
        char *sha = xstrndup(name, stem);
        if (!sha256_hex_is_valid(sha)) {
                free(sha);
                return NULL;
        }
        return sha;
}

/* The bytes of an interrupted download, kept for the next install of its
 * wheel to resume (PkgDownload.resume), and its If-Range. Written only
 * under the wheel's lock: one whose lock an installer holds is being
 * resumed (an unlink now would have it write into a file no name reaches,
 * its rename fail), so it stays whatever its age; one nobody holds goes,
 * under that lock, once older than the grace period or once its wheel is
 * in the store. An If-Range goes with its part file. Returns the bytes
 * freed (would be, for a dry run). */
static uint64_t sweep_part(const char *data_dir, int dfd, const char *name, const char *sha, usec_t now, bool dry_run) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return 0;
        _cleanup_free_ char *part = xasprintf("%s" PKG_PART_SUFFIX, sha);
        _cleanup_free_ char *ifrange = xasprintf("%s" PKG_PART_SUFFIX PKG_PART_IFRANGE_SUFFIX, sha);
        if (streq(name, ifrange) && faccessat(dfd, part, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                return 0; /* removed with its part file, if at all */
        _cleanup_close_ int lock = -EBADF;
        if (pkg_wheel_lock(data_dir, sha, LOCK_EX | LOCK_NB, NULL, &lock) < 0)
                return 0;
        uint64_t age = now - MIN(now, (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC);
        if (age <= GC_GRACE_USEC && !store_has_dir(data_dir, sha))
                return 0;
        if (!dry_run && unlinkat(dfd, name, 0) < 0)
                return 0;
        if (!dry_run && streq(name, part))
                (void) unlinkat(dfd, ifrange, 0);
        return (uint64_t) st.st_blocks * 512;
}

/* cache/wheels/<sha256>.whl that no remaining environment's lock lists:
 * wheels read only for their metadata while resolving (an index without
 * PEP 658), candidates a backtrack dropped, those of removed environments;
 * and the private files of downloads a kill cut (wheel_cache_temp()). Past
 * the grace period, as the store's garbage: a resolver may be reading one
 * it just fetched, an installer writing one. */
static uint64_t sweep_wheel_cache(const char *data_dir, const Rec *recs, size_t n, const bool *removed, usec_t now,
                                  bool dry_run) {
        _cleanup_free_ char *cache = xasprintf("%s/cache/wheels", data_dir);
        DIR *d = opendir(cache);
        if (!d)
                return 0;
        uint64_t freed = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                _cleanup_free_ char *psha = part_sha(de->d_name);
                if (psha) {
                        freed += sweep_part(data_dir, dirfd(d), de->d_name, psha, now, dry_run);
                        continue;
                }
                size_t stem = strcspn(de->d_name, ".");
                bool temp = wheel_cache_temp(de->d_name);
                if (stem != 64 && !temp)
                        continue;
                _cleanup_free_ char *sha = xstrndup(de->d_name, stem);
                struct stat st;
                if ((!temp && (!sha256_hex_is_valid(sha) || referenced(recs, n, removed, sha))) ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                uint64_t age = now - MIN(now, (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC);
                if (age > GC_GRACE_USEC && (dry_run || unlinkat(dirfd(d), de->d_name, 0) >= 0))
                        freed += (uint64_t) st.st_blocks * 512;
        }
        closedir(d);
        return freed;
}

/* cache/locks/<sha256>: the per-wheel lock files installers take
 * (pkg-store.c lock_wheels()), one per wheel ever installed; nothing
 * removed them, so a long-lived store held an inode per wheel it had
 * ever seen, installed or pruned long ago. One nobody holds and that is
 * older than the grace period goes: a process that opened it right before
 * the unlink finds, once it has the lock, a file no name reaches, and
 * opens the path again (pkg_wheel_lock()), so installers and removers
 * still exclude each other. And envs/<key>.json.tmp.<pid>.<tid>: a record write
 * a kill cut between its write and its rename. */
static void sweep_install_leftovers(const char *data_dir, usec_t now, bool dry_run) {
        if (dry_run)
                return; /* no bytes to count: empty files and small records */
        static const char *const dirs[] = { "cache/locks", "envs" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_free_ char *dir = path_join(data_dir, dirs[i]);
                DIR *d = opendir(dir);
                if (!d)
                        continue;
                struct dirent *de;
                while ((de = readdir(d))) {
                        bool lockfile = i == 0 && strlen(de->d_name) == 64 && sha256_hex_is_valid(de->d_name);
                        bool tmp = i == 1 && strstr(de->d_name, ".json.tmp.") != NULL;
                        struct stat st;
                        if ((!lockfile && !tmp) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                            !S_ISREG(st.st_mode))
                                continue;
                        uint64_t age = now - MIN(now, (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC);
                        if (age <= GC_GRACE_USEC)
                                continue;
                        _cleanup_close_ int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) >= 0)
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                }
                closedir(d);
        }
}

/* What a removal of a store dir moved aside (store_dirs_remove()) and did
 * not finish removing. */
#define STORE_GC_PREFIX ".gc-"

/* Removes the store dirs store/<shas[i]>, i < n: the one way a store dir
 * goes (prune, gc's collector, env verify --repair). Each under its wheel
 * lock, taken exclusively (pkg_wheel_lock()) and, but for damaged dirs,
 * without waiting: an installer holding it is installing the wheel, or
 * found it present and has not yet written the record naming it, so it
 * stays. Damaged dirs (env verify --repair; n must be 1, as an installer
 * waits for wheel locks while it holds others) go once the installer lets
 * go of the lock, whatever records name them. Otherwise the records are
 * read again under those locks, and a dir one names stays:
 * the caller read them before, and an install may have recorded an
 * environment naming it since (it found the dir and wrote its record,
 * then let go of the lock). Before, prune removed the dir of an
 * environment recorded while it ran, whose runs then failed to import.
 * Each dir is moved aside to a private name first, then emptied. Removed
 * in place, a removal cut short (a prune killed midway, a file it could
 * not remove) left a half-emptied dir under the name the store takes for
 * an installed wheel: every later run of a set naming it imported from it
 * and failed. Aside, the store no longer has the wheel (the next run
 * installs it again), and the next prune removes what is left.
 * ret_removed[i] (may be NULL): whether shas[i] was moved aside. Returns
 * the bytes freed: sizes[i] (NULL: 0) for each dir moved and emptied. */
/* Rewritten (a new file: a new inode and mtime) by a repair that removes
 * a package: before it removes any, and after each dir it moved aside,
 * before emptying it (repair_stamp_write()). In envs/, not store/: prune
 * removes dot names of the store as a crashed installer's; records are
 * *.json. */
#define STORE_REPAIRED "envs/.store-repaired"

/* Tells whoever remembers store dirs without looking
 * (pkg_store_repair_stamp()) that a repair removes packages: a daemon's
 * pinned versions ran from the removed dirs until it restarted. Written
 * before the removals too, so a repair killed between a move and its
 * stamp (emptying a big dir takes a while) has still told them. */
static void repair_stamp_write(const char *data_dir) {
        _cleanup_free_ char *envs = path_join(data_dir, "envs");
        _cleanup_free_ char *mark = path_join(data_dir, STORE_REPAIRED);
        _cleanup_free_ char *rnd = NULL;
        if (mkdir_p(envs, 0755) >= 0 && random_hex(8, &rnd) >= 0)
                (void) write_file_atomic(mark, rnd, strlen(rnd), 0644);
}

static uint64_t store_dirs_remove(const char *data_dir, char *const *shas, const uint64_t *sizes, size_t n,
                                  bool damaged, bool *ret_removed) {
        assert(data_dir && (shas || n == 0));
        assert(!damaged || n == 1);
        bool unless_referenced = !damaged;
        if (n == 0)
                return 0;
        pkg_test_point(PKG_TEST_STORE_REMOVE);
        _cleanup_free_ char *store = path_join(data_dir, "store");
        _cleanup_free_ int *fds = xcalloc(n, sizeof(int));
        for (size_t i = 0; i < n; i++)
                if (pkg_wheel_lock(data_dir, shas[i], damaged ? LOCK_EX : LOCK_EX | LOCK_NB, NULL, &fds[i]) < 0)
                        fds[i] = -EBADF;
        Rec *recs = NULL;
        size_t n_recs = 0;
        bool readable = !unless_referenced || load_records(data_dir, &recs, &n_recs) >= 0;
        pkg_test_point(PKG_TEST_STORE_LOCKED);
        _cleanup_free_ bool *none = xcalloc(n_recs + 1, sizeof(bool));
        uint64_t freed = 0;
        for (size_t i = 0; i < n; i++) {
                if (ret_removed)
                        ret_removed[i] = false;
                _cleanup_close_ int fd = TAKE_FD(fds[i]);
                _cleanup_free_ char *rnd = NULL;
                if (fd < 0 || !readable || (unless_referenced && referenced(recs, n_recs, none, shas[i])) ||
                    random_hex(6, &rnd) < 0)
                        continue;
                _cleanup_free_ char *p = path_join(store, shas[i]);
                _cleanup_free_ char *aside = xasprintf("%s/" STORE_GC_PREFIX "%s-%s", store, shas[i], rnd);
                if (rename(p, aside) < 0)
                        continue;
                if (ret_removed)
                        ret_removed[i] = true;
                if (damaged)
                        repair_stamp_write(data_dir);
                pkg_test_point(PKG_TEST_STORE_MOVED);
                /* Gone from its name: an installer may put it back. */
                fd = fd_close(fd);
                if (rm_rf(aside) >= 0 && sizes)
                        freed += sizes[i];
        }
        recs_free(recs, n_recs);
        return freed;
}

int pkg_env_prune(const char *data_dir, uint64_t budget_bytes, uint64_t max_idle_usec, bool dry_run,
                  uint64_t *ret_freed_bytes, size_t *ret_removed_envs, char **ret_error) {
        Rec *recs = NULL;
        size_t n = 0;
        int r = load_records(data_dir, &recs, &n);
        if (r < 0) {
                *ret_error = xasprintf("cannot read %s/envs: %s", data_dir, strerror(-r));
                return r;
        }
        _cleanup_free_ bool *removed = xcalloc(n + 1, sizeof(bool));
        _cleanup_free_ char *store = xasprintf("%s/store", data_dir);
        uint64_t freed = 0, total = 0;
        size_t n_removed = 0;
        usec_t now = now_realtime();
        /* A dry run removes nothing: the store dirs it counted, so a dir
         * two removed environments list is counted once. */
        _cleanup_strv_free_ char **counted = NULL;

        /* Held records (record_set_aside_if_held()) nobody holds any more:
         * no process can take them again, so they go, and what only they
         * named with them. */
        for (size_t i = 0; i < n; i++) {
                if (!recs[i].held || recs[i].in_use)
                        continue;
                _cleanup_close_ int fd = open(recs[i].path, O_RDONLY | O_CLOEXEC);
                if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) >= 0 && (dry_run || unlink(recs[i].path) >= 0))
                        removed[i] = true;
        }

        /* Size of the store, and garbage: dirs no record references (and
         * stale temp dirs of crashed installers), past the grace period. */
        char **unused = NULL; /* unreferenced store dirs past the grace period */
        uint64_t *unused_sizes = NULL;
        size_t n_unused = 0;
        DIR *d = opendir(store);
        if (d) {
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                                continue;
                        struct stat st;
                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        uint64_t size = path_tree_bytes_at(dirfd(d), de->d_name);
                        uint64_t age = now - MIN(now, (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC);
                        bool garbage = startswith(de->d_name, STORE_GC_PREFIX) ||
                                       (age > GC_GRACE_USEC &&
                                        (de->d_name[0] == '.' || !referenced(recs, n, removed, de->d_name)));
                        if (dry_run && garbage) {
                                freed += size;
                                continue;
                        }
                        /* A removal cut short: nothing uses it, whatever its age. */
                        if (startswith(de->d_name, STORE_GC_PREFIX)) {
                                _cleanup_free_ char *p = path_join(store, de->d_name);
                                if (rm_rf(p) >= 0) {
                                        freed += size;
                                        continue;
                                }
                        } else if (de->d_name[0] == '.' && age > GC_GRACE_USEC) {
                                /* A crashed installer's .tmp- dir, or nothing of ours. */
                                _cleanup_free_ char *p = path_join(store, de->d_name);
                                if (rm_rf(p) >= 0) {
                                        freed += size;
                                        continue;
                                }
                        } else if (de->d_name[0] != '.' && !referenced(recs, n, removed, de->d_name) &&
                                   age > GC_GRACE_USEC) {
                                unused = xrealloc(unused, (n_unused + 1) * sizeof(char *));
                                unused_sizes = xrealloc(unused_sizes, (n_unused + 1) * sizeof(uint64_t));
                                unused[n_unused] = xstrdup(de->d_name);
                                unused_sizes[n_unused++] = size;
                                continue;
                        }
                        total += size;
                }
                closedir(d);
        }
        /* Together: the records are read once more for all of them. */
        _cleanup_free_ bool *gone = xcalloc(n_unused + 1, sizeof(bool));
        freed += store_dirs_remove(data_dir, unused, unused_sizes, n_unused, false, gone);
        for (size_t i = 0; i < n_unused; i++) {
                if (!gone[i])
                        total += unused_sizes[i];
                free(unused[i]);
        }
        free(unused);
        free(unused_sizes);
        /* Least recently used first, never one in use: past the budget,
         * or idle too long. */
        for (size_t i = n; i-- > 0;) {
                bool idle = max_idle_usec && recs[i].mtime + max_idle_usec < now;
                if (total <= budget_bytes && !idle)
                        continue;
                if (recs[i].in_use || !recs[i].lock || recs[i].held)
                        continue;
                _cleanup_close_ int fd = open(recs[i].path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
                        continue; /* taken since we looked */
                if (!dry_run && unlink(recs[i].path) < 0)
                        continue;
                removed[i] = true;
                n_removed++;
                size_t m = recs[i].lock->n_entries, n_dirs = 0;
                _cleanup_free_ char **dirs = xcalloc(m + 1, sizeof(char *));
                _cleanup_free_ uint64_t *sizes = xcalloc(m + 1, sizeof(uint64_t));
                for (size_t k = 0; k < m; k++) {
                        char *sha = recs[i].lock->entries[k].sha256;
                        if (referenced(recs, n, removed, sha) || strv_contains(counted, sha))
                                continue;
                        /* Another removed env may have listed it too. */
                        uint64_t size = store_entry_size(data_dir, sha);
                        if (size == 0)
                                continue;
                        if (dry_run) {
                                counted = strv_append(counted, sha);
                                freed += size;
                                total -= MIN(total, size);
                                continue;
                        }
                        bool dup = false;
                        for (size_t j = 0; j < n_dirs; j++)
                                dup = dup || streq(dirs[j], sha);
                        if (!dup) {
                                dirs[n_dirs] = sha;
                                sizes[n_dirs++] = size;
                        }
                }
                uint64_t f = store_dirs_remove(data_dir, dirs, sizes, n_dirs, false, NULL);
                freed += f;
                total -= MIN(total, f);
        }
        freed += sweep_wheel_cache(data_dir, recs, n, removed, now, dry_run);
        sweep_install_leftovers(data_dir, now, dry_run);
        recs_free(recs, n);
        if (ret_freed_bytes)
                *ret_freed_bytes = freed;
        if (ret_removed_envs)
                *ret_removed_envs = n_removed;
        return 0;
}

/* ---- env verify --------------------------------------------------------- */

uint64_t pkg_store_repair_stamp(const char *data_dir) {
        assert(data_dir);
        _cleanup_free_ char *p = path_join(data_dir, STORE_REPAIRED);
        struct stat st;
        if (stat(p, &st) < 0)
                return 0;
        return ((uint64_t) st.st_mtim.tv_sec * 1000000000ULL + (uint64_t) st.st_mtim.tv_nsec) ^
               ((uint64_t) st.st_ino << 32) ^ 1;
}

void pkg_damaged_free_many(PkgDamaged *d, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(d[i].sha256);
                free(d[i].name);
                free(d[i].version);
                free(d[i].problem);
        }
        free(d);
}

static int damaged_cmp(const void *a, const void *b) {
        const PkgDamaged *x = a, *y = b;
        int c = strcmp(x->name ?: "", y->name ?: "");
        if (c == 0)
                c = strcmp(x->version ?: "", y->version ?: "");
        return c ? c : strcmp(x->sha256, y->sha256);
}

int pkg_store_verify(const char *data_dir, bool repair, size_t *ret_checked, PkgDamaged **ret_damaged,
                     size_t *ret_n_damaged, char **ret_error) {
        assert(data_dir && ret_checked && ret_damaged && ret_n_damaged && ret_error);
        _cleanup_free_ char *store = xasprintf("%s/store", data_dir);
        PkgDamaged *damaged = NULL;
        size_t n = 0, checked = 0;
        DIR *d = opendir(store);
        if (!d && errno != ENOENT) {
                int r = -errno;
                *ret_error = xasprintf("cannot read %s: %s", store, strerror(-r));
                return r;
        }
        /* Only installed wheels: <sha256>/. What starts with a dot is an
         * install in progress or a removal (prune's), not the store's. */
        struct dirent *de;
        while (d && (de = readdir(d))) {
                struct stat st;
                if (!sha256_hex_is_valid(de->d_name) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode))
                        continue;
                checked++;
                _cleanup_free_ char *dir = path_join(store, de->d_name);
                char *name = NULL, *version = NULL, *problem = NULL;
                int r = pkg_wheel_verify_installed(dir, &name, &version, &problem);
                if (r == -ENOENT) /* removed since the listing (a prune) */
                        checked--;
                if (r >= 0 || r == -ENOENT) {
                        free(name);
                        free(version);
                        free(problem);
                        continue;
                }
                damaged = xrealloc(damaged, (n + 1) * sizeof(PkgDamaged));
                damaged[n++] = (PkgDamaged){
                        .sha256 = xstrdup(de->d_name), .name = name, .version = version, .problem = problem
                };
        }
        if (d)
                closedir(d);
        if (n > 0)
                qsort(damaged, n, sizeof(PkgDamaged), damaged_cmp);
        if (repair && n > 0)
                repair_stamp_write(data_dir);
        for (size_t i = 0; repair && i < n; i++) {
                /* Moved aside first: a run that looks now finds no dir and
                 * installs the wheel again rather than import from half of
                 * one. */
                _cleanup_free_ char *p = path_join(store, damaged[i].sha256);
                (void) store_dirs_remove(data_dir, &damaged[i].sha256, NULL, 1, true, NULL);
                /* Gone from its name is removed for the store (what a cut
                 * emptying left aside goes at the next prune). */
                damaged[i].removed = access(p, F_OK) < 0 && errno == ENOENT;
        }
        *ret_checked = checked;
        *ret_damaged = damaged;
        *ret_n_damaged = n;
        return 0;
}
