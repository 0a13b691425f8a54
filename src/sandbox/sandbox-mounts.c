/* Mount namespace: a fresh tmpfs root holding only read-only binds.
 *
 * Trade-off (written down as the brief asks): the root binds all of /usr
 * read-only rather than exactly the libraries the worker maps (an
 * ldd-equivalent). ctypes, subprocess and packages with native code load
 * libraries and helpers we cannot predict (libc via ctypes.util, libffi,
 * libssl, tzdata, CA certificates); binding them one by one breaks real
 * code, while /usr holds nothing secret. What lies outside /usr and is
 * mapped by the worker (a libpython in /opt, the worker binary in a build
 * tree) is bound file by file from /proc/self/maps. /etc is synthetic: a
 * passwd/group/hosts of our own plus the few public files the loader and
 * TLS need. Host /home, /root, /var, /run, /etc/shadow... never exist.
 *
 * The root is built by the still-privileged set-up process in a private
 * mount namespace, before the user namespace exists: the uid the sandbox
 * maps to may not be able to walk to a source (pytest's 0700 tmp dirs),
 * and the copy of this namespace that the user namespace gets has every
 * mount locked (read-only stays read-only, nothing can be unmounted to
 * uncover what lies beneath). Sources are opened O_PATH|O_NOFOLLOW and
 * bound through /proc/self/fd/N, after the tmpfs hides /tmp: a bind
 * source under /tmp stays reachable, and a symlink swapped in between
 * check and use is not followed. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

#include "sandbox-internal.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

#define NEWROOT "/tmp"

/* Read-only paths under /tmp: each run's own /tmp tmpfs would hide them,
 * so the run binds them again on top of it. */
static char **tmp_binds;

/* BIND_HIDDEN: a directory seen through a read-only overlay, so that
 * /proc/self/mountinfo shows no host path (a bind's line names its source
 * directory, relative to its file system: the data dir, PYSPRINTER_HOME).
 * BIND_COPY: a file copied into the root tmpfs (the worker binary).
 * BIND_RW: a writable directory (the runs' output dirs, SANDBOX_OUT_ROOT). */
typedef enum BindKind { BIND_DIR, BIND_FILE, BIND_DEV, BIND_SYMLINK, BIND_HIDDEN, BIND_COPY, BIND_RW } BindKind;

typedef struct Bind {
        char *src;      /* host path */
        char *dst;      /* absolute path inside */
        char *target;   /* BIND_SYMLINK: link text */
        int fd;         /* O_PATH source */
        BindKind kind;
} Bind;

struct SandboxMounts {
        Bind *binds;
        size_t n;
        uint64_t tmp_bytes;
        uint64_t copy_bytes; /* what BIND_COPY puts into the root tmpfs */
};

char *sandbox_inside_path(const char *host) {
        assert(host);
        const char *base = strrchr(host, '/');
        base = base ? base + 1 : host;
        return path_join(SANDBOX_STORE_DIR, *base ? base : "_");
}

SandboxMounts *sandbox_mounts_free(SandboxMounts *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n; i++) {
                free(m->binds[i].src);
                free(m->binds[i].dst);
                free(m->binds[i].target);
                fd_close(m->binds[i].fd);
        }
        free(m->binds);
        free(m);
        return NULL;
}

static bool covered(const SandboxMounts *m, const char *path) {
        for (size_t i = 0; i < m->n; i++) {
                const char *d = m->binds[i].dst;
                size_t l = strlen(d);
                if ((m->binds[i].kind == BIND_DIR || m->binds[i].kind == BIND_HIDDEN) && strneq(path, d, l) &&
                    (path[l] == '/' || path[l] == 0))
                        return true;
                if (streq(path, d))
                        return true;
        }
        return false;
}

static void add(SandboxMounts *m, BindKind kind, const char *dst, int fd, const char *target) {
        m->binds = xrealloc(m->binds, (m->n + 1) * sizeof(Bind));
        m->binds[m->n++] = (Bind) { .src = xstrdup(dst), .dst = xstrdup(dst),
                                    .target = target ? xstrdup(target) : NULL, .fd = fd, .kind = kind };
}

/* A data set: host path src seen read-only at dst. */
static int add_at(SandboxMounts *m, const char *src, const char *dst, char **ret_error) {
        struct stat st;
        if (stat(src, &st) < 0) {
                int r = -errno;
                *ret_error = xasprintf("cannot bind %s into the sandbox: %s", src, strerror(-r));
                return r;
        }
        for (size_t i = 0; i < m->n; i++)
                if (streq(m->binds[i].dst, dst)) {
                        *ret_error = xasprintf("two sandbox paths would both be %s", dst);
                        return -EEXIST;
                }
        add(m, S_ISDIR(st.st_mode) ? BIND_HIDDEN : BIND_FILE, dst, -EBADF, NULL);
        free(m->binds[m->n - 1].src);
        m->binds[m->n - 1].src = xstrdup(src);
        return 0;
}

/* Adds path (as found on the host) at the same place. Symlinks at the top
 * level are recreated as symlinks (/lib -> usr/lib on merged-/usr
 * systems), so the sandbox sees the same layout. */
static int add_path(SandboxMounts *m, const char *path, bool required, bool device, char **ret_error) {
        if (covered(m, path))
                return 0;
        struct stat st;
        if (lstat(path, &st) < 0) {
                if (!required && errno == ENOENT)
                        return 0;
                int r = -errno;
                *ret_error = xasprintf("cannot bind %s into the sandbox: %s", path, strerror(-r));
                return r;
        }
        if (S_ISLNK(st.st_mode)) {
                char buf[4096];
                ssize_t l = readlink(path, buf, sizeof(buf) - 1);
                if (l < 0)
                        return -errno;
                buf[l] = 0;
                add(m, BIND_SYMLINK, path, -EBADF, buf);
                /* Bind what an absolute link points to, too. */
                if (buf[0] == '/')
                        return add_path(m, buf, false, device, ret_error);
                return 0;
        }
        int fd = open(path, O_PATH | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                int r = -errno;
                *ret_error = xasprintf("cannot open %s for the sandbox: %s", path, strerror(-r));
                return r;
        }
        add(m, device ? BIND_DEV : S_ISDIR(st.st_mode) ? BIND_DIR : BIND_FILE, path, fd, NULL);
        return 0;
}

/* Files this process has mapped (libpython, its dependencies) that /usr
 * does not already hold; not the binaries in skip (copied, or the
 * launcher's own, which the sandbox never runs). The launcher maps no
 * libpython: it and the Python worker are built against one system, whose
 * libpython is under /usr (a Python elsewhere keeps its standard library
 * elsewhere too, which no worker sandbox binds either). */
static int add_mapped(SandboxMounts *m, const char *const skip[2], char **ret_error) {
        _cleanup_free_ char *maps = NULL;
        int r = read_file("/proc/self/maps", 4 << 20, &maps, NULL);
        if (r < 0)
                return 0;
        for (char *line = maps; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                char *p = strchr(line, '/');
                /* The worker binary is copied to SANDBOX_WORKER_PATH. */
                if (p && !strstr(p, " (deleted)") && !streq(p, skip[0]) && !streq(p, skip[1])) {
                        r = add_path(m, p, false, false, ret_error);
                        if (r < 0)
                                return r;
                }
                line = nl ? nl + 1 : NULL;
        }
        return 0;
}

int sandbox_mounts_prepare(const SandboxWorkerConfig *cfg, SandboxMounts **ret, char **ret_error) {
        SandboxMounts *m = xcalloc(1, sizeof(SandboxMounts));
        m->tmp_bytes = cfg->worker_tmp_bytes ?: 16ULL << 20;
        int r;
        static const char *const system_paths[] = {
                "/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin",
                /* Public files native libraries read: the loader's config
                 * and cache, and the symlink farm Debian reaches BLAS,
                 * LAPACK and friends through (libblas.so.3 ->
                 * /etc/alternatives/... -> /usr/lib/.../blas/), time zones,
                 * fonts, MIME types, CA certificates. */
                "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
                "/etc/localtime", "/etc/timezone", "/etc/fonts", "/etc/resolv.conf",
                "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/mime.types",
                "/etc/python3", "/etc/python3.11", "/etc/python3.12", "/etc/python3.13",
        };
        static const char *const devices[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                                "/dev/urandom" };
        for (size_t i = 0; i < ELEMENTSOF(system_paths); i++) {
                r = add_path(m, system_paths[i], false, false, ret_error);
                if (r < 0)
                        goto fail;
        }
        for (size_t i = 0; i < ELEMENTSOF(devices); i++) {
                r = add_path(m, devices[i], true, true, ret_error);
                if (r < 0)
                        goto fail;
        }
        /* The worker binary: copied to a fixed place (the worker is
         * exec'd from there), so neither /proc/self/exe, nor cmdline, nor
         * mountinfo shows where it lives on the host. */
        char self[4096];
        ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (l <= 0) {
                r = l < 0 ? -errno : -ENOENT;
                *ret_error = xasprintf("reading /proc/self/exe: %s", strerror(-r));
                goto fail;
        }
        self[l] = 0;
        const char *binary = cfg->worker_binary ?: self;
        struct stat st;
        int fd = open(binary, O_PATH | O_CLOEXEC);
        r = fd < 0 || fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
        if (r < 0) {
                *ret_error = xasprintf("cannot open the worker binary %s: %s", binary, strerror(-r));
                fd_close(fd);
                goto fail;
        }
        add(m, BIND_COPY, SANDBOX_WORKER_PATH, fd, NULL);
        free(m->binds[m->n - 1].src);
        m->binds[m->n - 1].src = xstrdup(binary);
        m->copy_bytes += (uint64_t) st.st_size;
        r = add_mapped(m, (const char *const[2]){ self, binary }, ret_error);
        if (r < 0)
                goto fail;
        /* The package store's dirs: at SANDBOX_STORE_DIR/<name>, never at
         * their host path (which names the data dir). */
        for (char **p = cfg->ro_paths; p && *p; p++) {
                if ((*p)[0] != '/') {
                        *ret_error = xasprintf("sandbox path %s is not absolute", *p);
                        r = -EINVAL;
                        goto fail;
                }
                _cleanup_free_ char *inside = sandbox_inside_path(*p);
                r = add_at(m, *p, inside, ret_error);
                if (r < 0)
                        goto fail;
        }
        for (char **p = cfg->data; p && *p; p++) {
                const char *eq = strchr(*p, '=');
                _cleanup_free_ char *name = eq ? xstrndup(*p, (size_t) (eq - *p)) : NULL;
                if (!name || !*name || strchr(name, '/') || streq(name, ".") || streq(name, "..") || eq[1] != '/') {
                        *ret_error = xasprintf("invalid data binding '%s' (want NAME=/host/path)", *p);
                        r = -EINVAL;
                        goto fail;
                }
                _cleanup_free_ char *dst = path_join("/data", name);
                r = add_at(m, eq + 1, dst, ret_error);
                if (r < 0)
                        goto fail;
        }
        if (cfg->out_root) {
                r = add_at(m, cfg->out_root, SANDBOX_OUT_ROOT, ret_error);
                if (r < 0)
                        goto fail;
                m->binds[m->n - 1].kind = BIND_RW;
        }
        *ret = m;
        return 0;
fail:
        sandbox_mounts_free(m);
        return r;
}

static int make_ro(const char *path, bool dev) {
        /* mount_setattr() can make a recursive bind read-only in one go and
         * only adds flags, so it never trips over flags the source mount
         * has locked. Older kernels: a bind remount restating those flags. */
        struct mount_attr attr = {
                .attr_set = MOUNT_ATTR_NOSUID | (dev ? MOUNT_ATTR_NOEXEC : MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV),
        };
        if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof(attr)) == 0)
                return 0;
        struct statvfs sv;
        if (statvfs(path, &sv) < 0)
                return -errno;
        unsigned long fl = MS_REMOUNT | MS_BIND | MS_NOSUID;
        fl |= dev ? MS_NOEXEC : MS_RDONLY | MS_NODEV;
        if (sv.f_flag & ST_NOEXEC)
                fl |= MS_NOEXEC;
        if (sv.f_flag & ST_NODEV)
                fl |= MS_NODEV;
        if (sv.f_flag & ST_RDONLY)
                fl |= MS_RDONLY;
        if (sv.f_flag & ST_NOATIME)
                fl |= MS_NOATIME;
        if (sv.f_flag & ST_RELATIME)
                fl |= MS_RELATIME;
        if (mount(NULL, path, NULL, fl, NULL) < 0)
                return -errno;
        return 0;
}

static int write_text(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        return write_full(fd, text, strlen(text));
}

static int mkdir_parents_in(const char *full) {
        _cleanup_free_ char *d = xstrdup(full);
        char *s = strrchr(d, '/');
        if (s && s != d) {
                *s = 0;
                return mkdir_p(d, 0755);
        }
        return 0;
}

/* Copies the file behind the O_PATH fd src into the (still writable)
 * root tmpfs at dst, executable. */
static int copy_in(int src, const char *dst) {
        char p[64];
        snprintf(p, sizeof(p), "/proc/self/fd/%d", src);
        _cleanup_close_ int in = open(p, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        int r = mkdir_parents_in(dst);
        if (r < 0)
                return r;
        _cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0755);
        if (out < 0)
                return -errno;
        char buf[65536];
        for (;;) {
                ssize_t k = read(in, buf, sizeof(buf));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return 0;
                r = write_full(out, buf, (size_t) k);
                if (r < 0)
                        return r;
        }
}

/* A read-only overlay of the directory at src (a /proc/self/fd path) on
 * dst. Overlayfs wants two lower layers when it has no upper one: the
 * second is an empty directory. -ENODEV: no overlayfs in this kernel. */
static int mount_hidden(const char *src, const char *dst) {
        static const char lower[] = NEWROOT SANDBOX_RUN_DIR "/.lower";
        static const char empty[] = NEWROOT SANDBOX_RUN_DIR "/.empty";
        if (mount(src, lower, NULL, MS_BIND | MS_REC, NULL) < 0)
                return -errno;
        char opts[256];
        snprintf(opts, sizeof(opts), "lowerdir=%s:%s", lower, empty);
        int r = 0;
        if (mount("overlay", dst, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0)
                r = -errno;
        /* The overlay keeps its own reference to the layer. */
        (void) umount2(lower, MNT_DETACH);
        return r;
}

/* The worker's output root (src holds root/ and work/), writable at dst
 * through an overlay over an empty layer whose upper dir is src/root: like
 * mount_hidden(), mountinfo then names no host path. Each worker has its
 * own src (an upper dir serves one overlay). Without overlayfs: a bind of
 * src/root. */
static int mount_hidden_rw(const char *src, const char *dst) {
        static const char lower[] = NEWROOT SANDBOX_RUN_DIR "/.lower";
        static const char empty[] = NEWROOT SANDBOX_RUN_DIR "/.empty";
        if (mount(src, lower, NULL, MS_BIND, NULL) < 0)
                return -errno;
        char opts[512];
        snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s/root,workdir=%s/work", empty, lower, lower);
        int r = 0;
        if (mount("overlay", dst, "overlay", MS_NOSUID | MS_NODEV, opts) < 0) {
                _cleanup_free_ char *root = path_join(lower, "root");
                if (mount(root, dst, NULL, MS_BIND, NULL) < 0)
                        r = -errno;
        }
        (void) umount2(lower, MNT_DETACH);
        return r;
}

#define FAIL(r, ...)                                    \
        do {                                            \
                *ret_error = xasprintf(__VA_ARGS__);    \
                return (r);                             \
        } while (0)
/* A failed syscall: errno is taken before the message is formatted (the
 * allocation may change it), then its text fills the format's last %s. */
#define FAIL_ERRNO(...)                                                 \
        do {                                                            \
                int r_ = -errno;                                        \
                *ret_error = xasprintf(__VA_ARGS__, strerror(-r_));     \
                return r_;                                              \
        } while (0)

int sandbox_mounts_build(SandboxMounts *m, char **ret_error) {
        int r;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                FAIL_ERRNO("making / private: %s");
        /* The fds must refer to mounts of this namespace (bind refuses a
         * source from another one): open them now. */
        for (size_t i = 0; i < m->n; i++) {
                Bind *b = &m->binds[i];
                b->fd = fd_close(b->fd);
                if (b->kind == BIND_SYMLINK)
                        continue;
                b->fd = open(b->src, O_PATH | O_CLOEXEC | O_NOFOLLOW);
                if (b->fd < 0)
                        FAIL_ERRNO("cannot open %s for the sandbox: %s", b->src);
        }
        char opts[96];
        snprintf(opts, sizeof(opts), "mode=0755,size=%llu,nr_inodes=4096",
                 (unsigned long long) ((4ULL << 20) + m->copy_bytes));
        if (mount("tmpfs", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                FAIL_ERRNO("mounting the sandbox's root tmpfs: %s");
        /* Hidden dirs: the source is bound here, an overlay made of it, and
         * the bind detached again; the overlay's line in mountinfo names
         * only these two paths. */
        r = mkdir_p(NEWROOT SANDBOX_RUN_DIR "/.lower", 0755);
        if (r >= 0)
                r = mkdir_p(NEWROOT SANDBOX_RUN_DIR "/.empty", 0755);
        if (r < 0)
                FAIL(r, "creating %s in the sandbox: %s", SANDBOX_RUN_DIR, strerror(-r));
        /* An empty file, read-only with the root: what a run's masked proc
         * files are (sandbox_mounts_run()). */
        r = open(NEWROOT SANDBOX_RUN_DIR "/.masked", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (r < 0)
                FAIL_ERRNO("creating %s in the sandbox: %s", SANDBOX_RUN_DIR "/.masked");
        close(r);
        /* The worker's own boot id (a random version 4 UUID, as the
         * kernel's): what its runs read at /proc/sys/kernel/random/boot_id
         * instead of the host's, which told two tenants' runs they share a
         * host (gVisor gives each sandbox its own too). */
        uint8_t id[16];
        if (getrandom(id, sizeof(id), 0) != (ssize_t) sizeof(id))
                FAIL_ERRNO("getrandom: %s");
        id[6] = (uint8_t) ((id[6] & 0x0f) | 0x40);
        id[8] = (uint8_t) ((id[8] & 0x3f) | 0x80);
        char boot_id[40];
        snprintf(boot_id, sizeof(boot_id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x\n",
                 id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10], id[11], id[12], id[13],
                 id[14], id[15]);
        r = write_text(NEWROOT SANDBOX_RUN_DIR "/.boot_id", boot_id);
        if (r < 0)
                FAIL(r, "creating %s in the sandbox: %s", SANDBOX_RUN_DIR "/.boot_id", strerror(-r));

        for (size_t i = 0; i < m->n; i++) {
                Bind *b = &m->binds[i];
                _cleanup_free_ char *dst = path_join(NEWROOT, b->dst);
                char src[64];
                snprintf(src, sizeof(src), "/proc/self/fd/%d", b->fd);
                r = mkdir_parents_in(dst);
                if (r < 0)
                        FAIL(r, "creating %s in the sandbox: %s", b->dst, strerror(-r));
                switch (b->kind) {
                case BIND_SYMLINK:
                        if (symlink(b->target, dst) < 0 && errno != EEXIST)
                                FAIL_ERRNO("symlink %s in the sandbox: %s", b->dst);
                        continue;
                case BIND_COPY:
                        r = copy_in(b->fd, dst);
                        if (r < 0)
                                FAIL(r, "copying %s into the sandbox: %s", b->dst, strerror(-r));
                        continue;
                case BIND_RW:
                        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                                FAIL_ERRNO("mkdir %s in the sandbox: %s", b->dst);
                        r = mount_hidden_rw(src, dst);
                        if (r < 0)
                                FAIL(r, "mounting %s in the sandbox: %s", b->dst, strerror(-r));
                        continue;
                case BIND_HIDDEN:
                        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                                FAIL_ERRNO("mkdir %s in the sandbox: %s", b->dst);
                        r = mount_hidden(src, dst);
                        if (r == 0)
                                continue;
                        if (r != -ENODEV && r != -EINVAL)
                                FAIL(r, "mounting %s in the sandbox: %s", b->dst, strerror(-r));
                        /* No overlayfs here: a plain bind (mountinfo then
                         * names the source). */
                        break;
                case BIND_DIR:
                        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                                FAIL_ERRNO("mkdir %s in the sandbox: %s", b->dst);
                        break;
                case BIND_FILE:
                case BIND_DEV: {
                        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
                        if (fd < 0 && errno != EEXIST)
                                FAIL_ERRNO("creating %s in the sandbox: %s", b->dst);
                        fd_close(fd);
                        break;
                }
                default:
                        break;
                }
                if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                        FAIL_ERRNO("binding %s into the sandbox: %s", b->dst);
                r = make_ro(dst, b->kind == BIND_DEV);
                if (r < 0)
                        FAIL(r, "making %s read-only in the sandbox: %s", b->dst, strerror(-r));
        }

        /* /dev: a tmpfs with just the bound device nodes (mknod needs a
         * privilege a user namespace never has) and the usual links. */
        static const char *const devlinks[][2] = {
                { "/proc/self/fd", NEWROOT "/dev/fd" },       { "/proc/self/fd/0", NEWROOT "/dev/stdin" },
                { "/proc/self/fd/1", NEWROOT "/dev/stdout" }, { "/proc/self/fd/2", NEWROOT "/dev/stderr" },
        };
        for (size_t i = 0; i < ELEMENTSOF(devlinks); i++)
                if (symlink(devlinks[i][0], devlinks[i][1]) < 0 && errno != EEXIST)
                        FAIL_ERRNO("symlink %s: %s", devlinks[i][1]);
        /* SANDBOX_STORE_DIR always exists: a blank worker (no store dir
         * bound) mounts its own tmpfs there when it adopts an env
         * (sandbox_worker_store_attach()). */
        static const char *const dirs[] = { NEWROOT "/dev/shm", NEWROOT "/proc", NEWROOT "/tmp", NEWROOT "/etc",
                                            NEWROOT SANDBOX_OUT_DIR, NEWROOT SANDBOX_STORE_DIR };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST)
                        FAIL_ERRNO("mkdir %s: %s", dirs[i]);

        /* A synthetic /etc: who "we" are, and localhost. */
        /* A run is one of the uids 1.. (sandbox.h "uids"), each named
         * "sandbox" (getpass.getuser() is the same in every run). */
        Buf passwd, group;
        buf_init(&passwd, 16 << 10);
        buf_init(&group, 16 << 10);
        buf_printf(&passwd, "root:x:0:0:root:/tmp:/usr/sbin/nologin\n");
        buf_printf(&group, "root:x:0:\n");
        for (unsigned u = 1; u < SANDBOX_RUN_UIDS; u++) {
                buf_printf(&passwd, "sandbox:x:%u:%u:sandbox:/tmp:/usr/sbin/nologin\n", u, u);
                buf_printf(&group, "sandbox:x:%u:\n", u);
        }
        buf_printf(&passwd, "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
        buf_printf(&group, "nogroup:x:65534:\n");
        _cleanup_free_ char *passwd_text = buf_steal(&passwd), *group_text = buf_steal(&group);
        (void) write_text(NEWROOT "/etc/passwd", passwd_text);
        (void) write_text(NEWROOT "/etc/group", group_text);
        (void) write_text(NEWROOT "/etc/hostname", "pysprinter\n");
        (void) write_text(NEWROOT "/etc/hosts", "127.0.0.1 localhost pysprinter\n::1 localhost ip6-localhost\n");

        /* A proc of the host's pid namespace, only so that the worker may
         * mount its own on top: a user namespace may mount proc only where
         * a fully visible one exists (mnt_too_revealing()). It stays
         * locked beneath the worker's. */
        if (mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                FAIL_ERRNO("mounting /proc in the sandbox: %s");

        /* The root itself becomes read-only; /tmp, /dev/shm and /proc are
         * mounts of their own. */
        if (mount(NULL, NEWROOT, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
                FAIL_ERRNO("making the sandbox root read-only: %s");

        if (chdir(NEWROOT) < 0)
                FAIL_ERRNO("chdir: %s");
        /* pivot_root(".", "."): the old root ends up stacked on the new one
         * and is detached right away; nothing of the host stays reachable. */
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                FAIL_ERRNO("pivot_root: %s");
        if (umount2(".", MNT_DETACH) < 0)
                FAIL_ERRNO("detaching the old root: %s");
        if (chdir("/") < 0)
                FAIL_ERRNO("chdir /: %s");
        for (size_t i = 0; i < m->n; i++)
                m->binds[i].fd = fd_close(m->binds[i].fd);
        return 0;
}

int sandbox_mounts_worker_proc(char **ret_error) {
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                FAIL_ERRNO("mounting the worker's /proc: %s (a container that masks parts of /proc forbids "
                           "this)");
        return 0;
}

int sandbox_mounts_run(uint64_t tmp_bytes, uint64_t shm_bytes, char **ret_error) {
        char opts[128];
        size_t n_trees = strv_length(tmp_binds);
        int trees[n_trees + 1];
        for (size_t i = 0; i < n_trees; i++) {
                trees[i] = (int) syscall(SYS_open_tree, AT_FDCWD, tmp_binds[i],
                                         OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                if (trees[i] < 0)
                        FAIL_ERRNO("keeping %s visible in the run: %s", tmp_binds[i]);
        }
        /* nr_inodes caps what a run can create even in tiny files; tmpfs
         * pages are charged to the run's memory cgroup as well. /tmp stays
         * exec-able (packages unpack and load native code there: nosuid and
         * the empty capability set make exec harmless); /dev/shm does not. */
        snprintf(opts, sizeof(opts), "mode=1777,size=%llu,nr_inodes=16384", (unsigned long long) tmp_bytes);
        if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                FAIL_ERRNO("mounting the run's /tmp: %s");
        for (size_t i = 0; i < n_trees; i++) {
                int r = mkdir_p(tmp_binds[i], 0755);
                if (r < 0)
                        FAIL(r, "mkdir %s in the run: %s", tmp_binds[i], strerror(-r));
                if (syscall(SYS_move_mount, trees[i], "", AT_FDCWD, tmp_binds[i], MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        FAIL_ERRNO("binding %s into the run: %s", tmp_binds[i]);
                close(trees[i]);
        }
        snprintf(opts, sizeof(opts), "mode=1777,size=%llu,nr_inodes=4096", (unsigned long long) shm_bytes);
        if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
                FAIL_ERRNO("mounting the run's /dev/shm: %s");
        /* The run's pid 1 is the init its worker cloned for it (sandbox-
         * pidns.c), which shares the worker's memory: its status, stat,
         * statm and oom_score (and task/1's) were the worker's VmPeak,
         * VmHWM and VmRSS, and the worker serves every tenant of its
         * environment, so a run watched the size of each request the
         * worker read for other tenants' runs (a 4 MB argument: VmPeak
         * +10 MB). Nothing under /proc/1 is the run's, so none of it is
         * shown. A run with a uid of its own (a root engine's) mounts its
         * proc with hidepid=1 ("noaccess"): /proc/PID of a process it may
         * not trace (its init: another uid, not dumpable) cannot be entered,
         * for nothing — no mount, an option of the one it makes anyway; its
         * own processes are its uid and dumpable. A run of a non-root engine
         * is uid 0 like its init and not dumpable itself, so hidepid would
         * hide its own children from it: there the root's empty dir is
         * bound over /proc/1 (one mount per run). */
        bool hidepid = sandbox_run_uid_slot() > 0;
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, hidepid ? "hidepid=1" : NULL) < 0)
                FAIL_ERRNO("mounting the run's /proc: %s");
        if (!hidepid && mount(SANDBOX_RUN_DIR "/.empty", "/proc/1", NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
                FAIL_ERRNO("hiding the run's %s: %s", "/proc/1");
        /* /proc/sys and /proc/pressure read-only: the only files of the
         * fresh proc, beyond the run's own processes', that it could write.
         * A run of a non-root engine is uid 0 of the worker's user namespace
         * (a root engine's is another, sandbox.h "uids"), which owns the
         * worker's IPC namespace, and the kernel lets that uid write the
         * namespace's sysctls without any capability (ipc_permissions(),
         * mq_permissions()): kernel.shm*, msg*, sem and fs.mqueue.* were a
         * channel to every other run of the worker, whatever its tenant,
         * and outlived the run. A write to a /proc/pressure file sets a PSI
         * trigger on the host's pressure: kernel memory and work at every
         * update of the host's PSI, charged to no run. (A kernel without
         * PSI has no /proc/pressure.) */
        static const char *const ro[] = { "/proc/sys", "/proc/pressure" };
        for (size_t i = 0; i < ELEMENTSOF(ro); i++) {
                if (mount(ro[i], ro[i], NULL, MS_BIND, NULL) < 0) {
                        if (errno == ENOENT && i > 0)
                                continue;
                        FAIL_ERRNO("making the run's %s read-only: %s", ro[i]);
                }
                if (mount(NULL, ro[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          NULL) < 0)
                        FAIL_ERRNO("making the run's %s read-only: %s", ro[i]);
        }
        /* What the host's kernel tells any reader of its proc, whatever the
         * pid namespace, hidden as runc hides it: an empty file of the
         * root bound over a file, its empty dir over a directory (both
         * read-only, as the root is; runc binds /dev/null, which a run
         * could open for writing). The host's boot line (/proc/cmdline) and
         * kernel configuration (/proc/config.gz) were readable in a run,
         * the kernel's symbols (/proc/kallsyms), and on other kernels and
         * hosts its keys, timers, scheduler state, memory image, ACPI and
         * SCSI devices. Absent ones are skipped (ENOENT): one bind per
         * existing path, per run. */
        static const char *const masked_files[] = {
                "/proc/cmdline",   "/proc/config.gz",  "/proc/kallsyms",    "/proc/kcore",       "/proc/keys",
                "/proc/key-users", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/latency_stats",
        };
        static const char *const masked_dirs[] = { "/proc/acpi", "/proc/asound", "/proc/scsi" };
        if (mount(SANDBOX_RUN_DIR "/.boot_id", "/proc/sys/kernel/random/boot_id", NULL, MS_BIND, NULL) < 0 &&
            errno != ENOENT)
                FAIL_ERRNO("hiding the run's %s: %s", "/proc/sys/kernel/random/boot_id");
        for (size_t i = 0; i < ELEMENTSOF(masked_files) + ELEMENTSOF(masked_dirs); i++) {
                bool file = i < ELEMENTSOF(masked_files);
                const char *p = file ? masked_files[i] : masked_dirs[i - ELEMENTSOF(masked_files)];
                if (mount(file ? SANDBOX_RUN_DIR "/.masked" : SANDBOX_RUN_DIR "/.empty", p, NULL, MS_BIND, NULL) < 0 &&
                    errno != ENOENT)
                        FAIL_ERRNO("hiding the run's %s: %s", p);
        }
        return 0;
}

int sandbox_mounts_out(const char *out_name, char **ret_error) {
        if (out_name) {
                if (!*out_name || strchr(out_name, '/') || out_name[0] == '.')
                        FAIL(-EINVAL, "invalid output dir name '%s'", out_name);
                /* A bind inside the worker's output overlay: mountinfo
                 * names "/<run id>" on that overlay, no host path. */
                _cleanup_free_ char *src = path_join(SANDBOX_OUT_ROOT, out_name);
                /* The engine made it the worker's (0700); the run's uid is
                 * its own (sandbox.h "uids"). */
                unsigned slot = sandbox_run_uid_slot();
                if (slot > 0 && chown(src, slot, slot) < 0)
                        FAIL_ERRNO("giving the run its %s: %s", SANDBOX_OUT_DIR);
                if (mount(src, SANDBOX_OUT_DIR, NULL, MS_BIND, NULL) < 0)
                        FAIL_ERRNO("mounting the run's %s: %s", SANDBOX_OUT_DIR);
        }
        /* Every run's dir is under the root: it must go before user code.
         * The worker's mounts were made before its user namespace and are
         * locked in it (umount says EINVAL), so an empty read-only tmpfs
         * hides the root instead; the run has no capability left to lift it. */
        struct stat st;
        if (stat(SANDBOX_OUT_ROOT, &st) < 0)
                return 0; /* a worker without output dirs */
        if (umount2(SANDBOX_OUT_ROOT, MNT_DETACH) == 0)
                return 0;
        if (mount("tmpfs", SANDBOX_OUT_ROOT, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=4k,nr_inodes=2,mode=0555") < 0)
                FAIL_ERRNO("hiding %s: %s", SANDBOX_OUT_ROOT);
        return 0;
}

/* ---- adoption: an env's store dirs handed to a blank worker ---- */

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif

/* A detached mount of a new file system: fsopen, the options, create,
 * fsmount with attr. */
static int detached_fs(const char *type, const char *const *opts, size_t n_opts, unsigned attr) {
        _cleanup_close_ int fs = (int) syscall(SYS_fsopen, type, FSOPEN_CLOEXEC);
        if (fs < 0)
                return -errno;
        for (size_t i = 0; i + 1 < n_opts; i += 2)
                if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, opts[i], opts[i + 1], 0) < 0)
                        return -errno;
        if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        int m = (int) syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, attr);
        return m < 0 ? -errno : m;
}

int sandbox_store_mount_open(const char *host, char **ret_error) {
        assert(host);
        if (host[0] != '/')
                FAIL(-EINVAL, "sandbox path %s is not absolute", host);
        const unsigned ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        /* Overlayfs without an upper dir wants two lower layers: the second
         * is an empty tmpfs of its own, detached, never seen by anyone. */
        static const char *const empty_opts[] = { "size", "4k", "nr_inodes", "2", "mode", "0555" };
        _cleanup_close_ int empty = detached_fs("tmpfs", empty_opts, ELEMENTSOF(empty_opts), ro);
        if (empty < 0)
                FAIL(empty, "an empty layer for %s: %s", host, strerror(-empty));
        _cleanup_close_ int dir = open(host, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                FAIL_ERRNO("cannot bind %s into the sandbox: %s", host);
        /* The layers named through /proc/self/fd: the overlay's options in
         * mountinfo then show these fd paths, never the host path (as
         * mount_hidden()'s show the sandbox's own .lower and .empty). */
        char lower[64];
        snprintf(lower, sizeof(lower), "/proc/self/fd/%d:/proc/self/fd/%d", dir, empty);
        const char *const opts[] = { "source", "overlay", "lowerdir", lower };
        int m = detached_fs("overlay", opts, ELEMENTSOF(opts), ro);
        if (m < 0)
                FAIL(m, "mounting %s for the sandbox: %s", host, strerror(-m));
        return m;
}

/* The tmpfs at SANDBOX_STORE_DIR holds the mount points of the adopted
 * env's dirs; attached once, sealed (read-only) once. */
static bool store_attached, store_sealed;

int sandbox_mounts_store_attach(const char *name, int mount_fd, char **ret_error) {
        assert(name);
        assert(mount_fd >= 0);
        if (store_sealed)
                FAIL(-EPERM, "this worker's environment is set already (a worker adopts one environment, once)");
        if (!*name || strchr(name, '/') || name[0] == '.')
                FAIL(-EINVAL, "invalid store dir name '%s'", name);
        if (!store_attached) {
                /* A worker exec'd with store dirs has them locked on the
                 * root's SANDBOX_STORE_DIR; only a blank one (none bound:
                 * the dir is empty) may adopt. */
                DIR *dd = opendir(SANDBOX_STORE_DIR);
                if (!dd)
                        FAIL_ERRNO("opening %s: %s", SANDBOX_STORE_DIR);
                bool empty = true;
                for (struct dirent *de; (de = readdir(dd));)
                        empty = empty && (streq(de->d_name, ".") || streq(de->d_name, ".."));
                closedir(dd);
                if (!empty)
                        FAIL(-EEXIST, "this worker has store dirs already");
                if (mount("tmpfs", SANDBOX_STORE_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          "mode=0755,size=64k,nr_inodes=1024") < 0)
                        FAIL_ERRNO("mounting %s: %s", SANDBOX_STORE_DIR);
                store_attached = true;
        }
        _cleanup_free_ char *dst = path_join(SANDBOX_STORE_DIR, name);
        if (mkdir(dst, 0755) < 0)
                FAIL_ERRNO("mkdir %s: %s", dst);
        if (syscall(SYS_move_mount, mount_fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                FAIL_ERRNO("attaching %s: %s", dst);
        return 0;
}

int sandbox_mounts_store_seal(char **ret_error) {
        if (store_sealed || !store_attached) {
                store_sealed = true;
                return 0;
        }
        struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                               MOUNT_ATTR_NOEXEC };
        if (syscall(SYS_mount_setattr, AT_FDCWD, SANDBOX_STORE_DIR, 0, &attr, sizeof(attr)) < 0)
                FAIL_ERRNO("making %s read-only: %s", SANDBOX_STORE_DIR);
        store_sealed = true;
        return 0;
}
