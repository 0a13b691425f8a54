/* pkg-store.c: the content-addressed store, $DATA/store/<sha256>/ — one
 * unpacked wheel per dir, never modified once renamed into place. */
#include "pkg-mgr.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

/* chmod a-w over a tree we just unpacked (no symlinks in it: the unpacker
 * refuses them). */
static int make_readonly_at(int dfd, const char *name) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode)) {
                int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                DIR *d = fdopendir(fd);
                if (!d) {
                        close(fd);
                        return -errno;
                }
                struct dirent *de;
                int r = 0;
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

char *pkg_store_dir(const char *data_dir, const char *sha256) {
        return xasprintf("%s/store/%s", data_dir, sha256);
}

/* Installs one wheel file into the store as <sha256>/. Another process
 * doing the same at once is fine: both unpack into private temp dirs and
 * the first rename wins. */
static int store_install(const char *data_dir, const char *wheel, const PkgLockEntry *e, PkgCompileFn compile,
                         void *compile_userdata, char **ret_error) {
        _cleanup_free_ char *final = pkg_store_dir(data_dir, e->sha256);
        _cleanup_free_ char *rnd = NULL;
        int r = random_hex(6, &rnd);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = xasprintf("%s/store/.tmp-%s-%s", data_dir, e->sha256, rnd);
        r = pkg_wheel_unpack(wheel, e->filename, tmp, ret_error);
        if (r < 0)
                return r;
        if (compile)
                (void) compile(tmp, compile_userdata);
        r = make_readonly_at(AT_FDCWD, tmp);
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

int pkg_store_materialize(const char *data_dir, const PkgIndexConfig *cfg, const PkgLock *lock,
                          PkgProgressFn progress, void *userdata, PkgCompileFn compile, void *compile_userdata,
                          char ***ret_dirs, char **ret_error) {
        _cleanup_free_ char *store = xasprintf("%s/store", data_dir);
        _cleanup_free_ char *cache = xasprintf("%s/cache/wheels", data_dir);
        int r = mkdir_p(store, 0755);
        if (r >= 0)
                r = mkdir_p(cache, 0755);
        if (r < 0) {
                *ret_error = xasprintf("cannot create %s: %s", store, strerror(-r));
                return r;
        }
        size_t n = lock->n_entries;
        _cleanup_free_ PkgDownload *dl = xcalloc(n + 1, sizeof(PkgDownload));
        _cleanup_strv_free_ char **wheel_paths = xcalloc(n + 1, sizeof(char *));
        _cleanup_free_ bool *need = xcalloc(n + 1, sizeof(bool));
        _cleanup_free_ bool *cached = xcalloc(n + 1, sizeof(bool));
        size_t n_dl = 0, n_need = 0;
        for (size_t i = 0; i < n; i++) {
                const PkgLockEntry *e = &lock->entries[i];
                if (!sha256_hex_is_valid(e->sha256)) {
                        *ret_error = xasprintf("lock entry %s has an invalid sha256", e->name);
                        return -EBADMSG;
                }
                _cleanup_free_ char *dir = pkg_store_dir(data_dir, e->sha256);
                struct stat st;
                if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
                        continue;
                need[i] = true;
                n_need++;
                if (startswith(e->url, "file://")) {
                        /* A find-links wheel: used in place, hash-checked. */
                        char hex[SHA256_HEX_SIZE];
                        r = sha256_file_hex(e->url + 7, hex);
                        if (r < 0) {
                                *ret_error = xasprintf("%s: %s", e->url + 7, strerror(-r));
                                return r;
                        }
                        if (!streq(hex, e->sha256)) {
                                *ret_error = xasprintf("%s: sha256 mismatch: the lock says %s, the file has %s", e->url + 7,
                                                       e->sha256, hex);
                                return -EBADMSG;
                        }
                        wheel_paths[i] = xstrdup(e->url + 7);
                        continue;
                }
                wheel_paths[i] = xasprintf("%s/%s.whl", cache, e->sha256);
                cached[i] = true;
                if (access(wheel_paths[i], F_OK) == 0)
                        continue; /* fetched earlier for its metadata */
                dl[n_dl++] = (PkgDownload) { .url = e->url, .dest = wheel_paths[i], .sha256 = e->sha256, .what = e->filename };
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
                             .retries = cfg ? cfg->retries : PKG_DEFAULT_RETRIES };
        r = pkg_http_download_many(dl, n_dl, &o, progress, userdata, ret_error);
        if (r < 0)
                return r;
        size_t done = 0;
        for (size_t i = 0; i < n; i++) {
                if (!need[i])
                        continue;
                const PkgLockEntry *e = &lock->entries[i];
                if (progress)
                        progress("unpacking", e->filename, done, n_need, userdata);
                /* Another installer (a thread of a DAG, another process)
                 * may have put this wheel in place meanwhile, and may have
                 * removed the cached download we counted on: its store dir
                 * is then the answer. */
                _cleanup_free_ char *dir = pkg_store_dir(data_dir, e->sha256);
                struct stat st;
                if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
                        done++;
                        continue;
                }
                r = store_install(data_dir, wheel_paths[i], e, compile, compile_userdata, ret_error);
                if (r < 0 && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
                        free(*ret_error);
                        *ret_error = NULL;
                        r = 0;
                }
                if (r < 0 && cached[i]) {
                        /* The cached file vanished or was cut short under us:
                         * fetch it once more, privately. */
                        free(*ret_error);
                        *ret_error = NULL;
                        _cleanup_free_ char *rnd = NULL;
                        (void) random_hex(6, &rnd);
                        _cleanup_free_ char *mine = xasprintf("%s.%s", wheel_paths[i], rnd ?: "x");
                        PkgDownload one = { .url = e->url, .dest = mine, .sha256 = e->sha256, .what = e->filename };
                        r = pkg_http_download_many(&one, 1, &o, progress, userdata, ret_error);
                        if (r >= 0)
                                r = store_install(data_dir, mine, e, compile, compile_userdata, ret_error);
                        (void) unlink(mine);
                        if (r < 0 && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
                                free(*ret_error);
                                *ret_error = NULL;
                                r = 0;
                        }
                }
                if (r < 0)
                        return r;
                /* In a cluster the wheel stays: peers may ask for it. */
                if (cached[i] && !(cfg && cfg->peers))
                        (void) unlink(wheel_paths[i]);
                done++;
        }
        if (progress && n_need > 0)
                progress("unpacking", "", n_need, n_need, userdata);
        char **dirs = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                dirs[i] = pkg_store_dir(data_dir, lock->entries[i].sha256);
        *ret_dirs = dirs;
        return 0;
}
