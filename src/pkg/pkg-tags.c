/* PEP 425 compatibility tags of a CPython 3.x interpreter on Linux, in the
 * order `packaging.tags.sys_tags()` yields them (most preferred first):
 *
 *   cp3X-cp3X-<plat>…, cp3X-abi3-<plat>…, cp3X-none-<plat>…,
 *   cp3(X-1)..cp32-abi3-<plat>…, py3X/py3/py3(X-1)..py30-none-<plat>…,
 *   cp3X-none-any, py3X/py3/…/py30-none-any
 *
 * where <plat> runs over manylinux_2_Y_<arch> for Y from the running glibc
 * down (to 2_5 on x86_64/i686, 2_17 elsewhere), with the legacy aliases
 * manylinux2014 (2_17), manylinux2010 (2_12) and manylinux1 (2_5) right
 * after their equivalent, then musllinux_1_Y_<arch> when the libc is musl,
 * then linux_<arch>. The cross-check test compares this with packaging. */
#include <assert.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#ifdef __GLIBC__
#include <gnu/libc-version.h>
#endif

#include "basic.h"
#include "pkg-internal.h"

struct PkgTags {
        char **tags;      /* "interpreter-abi-platform", lowercase */
        size_t n;
        /* Open-addressing hash of tag -> index: a resolver asks for the
         * priority of every file of every candidate release. */
        size_t *slots;    /* index + 1, 0 = empty */
        size_t n_slots;   /* power of two */
};

PkgTags *pkg_tags_free(PkgTags *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n; i++)
                free(t->tags[i]);
        free(t->tags);
        free(t->slots);
        free(t);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgTags *, pkg_tags_free);

static uint64_t hash_str(const char *s, size_t n) {
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char) s[i];
                h *= 1099511628211ULL;
        }
        return h;
}

static void tags_add(PkgTags *t, char *tag) {
        /* Duplicates cannot arise from the generator below, but a set is
         * what callers expect, so keep the first (best) occurrence. */
        t->tags = xrealloc(t->tags, (t->n + 1) * sizeof(char *));
        t->tags[t->n++] = tag;
}

static void tags_index(PkgTags *t) {
        t->n_slots = 16;
        while (t->n_slots < 2 * t->n)
                t->n_slots *= 2;
        t->slots = xcalloc(t->n_slots, sizeof(size_t));
        for (size_t i = 0; i < t->n; i++) {
                size_t h = (size_t) hash_str(t->tags[i], strlen(t->tags[i])) & (t->n_slots - 1);
                bool dup = false;
                while (t->slots[h]) {
                        if (streq(t->tags[t->slots[h] - 1], t->tags[i])) {
                                dup = true;
                                break;
                        }
                        h = (h + 1) & (t->n_slots - 1);
                }
                if (!dup)
                        t->slots[h] = i + 1;
        }
}

/* Index of tag s[0..n) (already lowercase), or -1. */
static int tags_lookup(const PkgTags *t, const char *s, size_t n) {
        size_t h = (size_t) hash_str(s, n) & (t->n_slots - 1);
        while (t->slots[h]) {
                const char *c = t->tags[t->slots[h] - 1];
                if (strlen(c) == n && strneq(c, s, n))
                        return (int) (t->slots[h] - 1);
                h = (h + 1) & (t->n_slots - 1);
        }
        return -1;
}

/* musl keeps its version out of any API; its dynamic loader prints it
 * ("Version 1.2.3") on stderr when run without arguments, which is also how
 * `packaging` finds it. Returns the minor version, or -1. */
static int musl_minor_version(const char *arch) _unused_;
static int musl_minor_version(const char *arch) {
        _cleanup_free_ char *loader = xasprintf("/lib/ld-musl-%s.so.1", arch);
        _cleanup_free_ char *output = NULL;
        posix_spawn_file_actions_t fa;
        int pipefd[2], status, minor = -1;
        char *argv[] = { loader, NULL };
        char *envp[] = { NULL };
        const char *ver;
        pid_t pid;

        if (access(loader, X_OK) < 0)
                return -1;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -1;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
        if (posix_spawn(&pid, loader, &fa, NULL, argv, envp) != 0) {
                posix_spawn_file_actions_destroy(&fa);
                close(pipefd[0]);
                close(pipefd[1]);
                return -1;
        }
        posix_spawn_file_actions_destroy(&fa);
        close(pipefd[1]);
        (void) read_fd_all(pipefd[0], 4096, &output, NULL);
        close(pipefd[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        ver = output ? strstr(output, "Version 1.") : NULL;
        if (ver) {
                ver += strlen("Version 1.");
                minor = 0;
                while (*ver >= '0' && *ver <= '9' && minor < 1000)
                        minor = minor * 10 + (*ver++ - '0');
        }
        return minor;
}

/* Platform tags, best first. */
static char **platform_tags(const char *arch) {
        char **plats = NULL;
        int glibc_major = -1, glibc_minor = -1;

#ifdef __GLIBC__
        {
                const char *v = gnu_get_libc_version();
                if (sscanf(v, "%d.%d", &glibc_major, &glibc_minor) != 2)
                        glibc_major = glibc_minor = -1;
        }
#endif
        if (glibc_major == 2) {
                /* manylinux_2_Y exists back to 2_5 (manylinux1) on the
                 * architectures manylinux1 covered, to 2_17 elsewhere. */
                int oldest = (streq(arch, "x86_64") || streq(arch, "i686")) ? 5 : 17;
                for (int minor = glibc_minor; minor >= oldest; minor--) {
                        _cleanup_free_ char *tag = xasprintf("manylinux_2_%d_%s", minor, arch);
                        plats = strv_append(plats, tag);
                        if (minor == 17 || minor == 12 || minor == 5) {
                                _cleanup_free_ char *legacy = xasprintf(
                                        "manylinux%s_%s", minor == 17 ? "2014" : minor == 12 ? "2010" : "1", arch);
                                plats = strv_append(plats, legacy);
                        }
                }
        }
#ifndef __GLIBC__
        {
                int musl_minor = musl_minor_version(arch);
                for (int minor = musl_minor; minor >= 0; minor--) {
                        _cleanup_free_ char *tag = xasprintf("musllinux_1_%d_%s", minor, arch);
                        plats = strv_append(plats, tag);
                }
        }
#endif
        {
                _cleanup_free_ char *tag = xasprintf("linux_%s", arch);
                plats = strv_append(plats, tag);
        }
        return plats;
}

/* Calls emit(userdata, interpreter, abi, platform) for each tag of the
 * interpreter, best first: the one generator behind both the tag set and
 * its fingerprint, so the two cannot disagree on order or spelling. */
typedef void (*TagEmit)(void *userdata, const char *interp, const char *abi, const char *plat);

/* The interpreter's minor version and this machine's platform tags, best
 * first. */
static int tags_platforms(const char *python_version, int *ret_minor, char ***ret_plats) {
        _cleanup_free_ char *arch = NULL;
        struct utsname u;
        int major, minor, consumed = 0;

        if (!python_version || sscanf(python_version, "%d.%d%n", &major, &minor, &consumed) != 2 || major != 3 ||
            minor < 8 || minor > 99)
                return -EINVAL;
        /* "3.11" or "3.11.2": anything after major.minor must be ".micro…". */
        if (python_version[consumed] != 0 && python_version[consumed] != '.')
                return -EINVAL;
        if (uname(&u) < 0)
                return -errno;

        /* sysconfig.get_platform() spells the machine with '_' for '-', '.' */
        arch = xstrdup(u.machine);
        for (char *c = arch; *c; c++)
                if (*c == '-' || *c == '.' || *c == ' ')
                        *c = '_';
                else if (*c >= 'A' && *c <= 'Z')
                        *c = (char) (*c - 'A' + 'a');

        *ret_plats = platform_tags(arch);
        *ret_minor = minor;
        return 0;
}

static void tags_generate(int minor, char *const *plats, TagEmit emit, void *userdata) {
        char interp[16], older[16];

        snprintf(interp, sizeof(interp), "cp3%d", minor);

        /* 1. cp3X-cp3X-plat, cp3X-abi3-plat, cp3X-none-plat */
        for (char *const *p = plats; *p; p++)
                emit(userdata, interp, interp, *p);
        for (char *const *p = plats; *p; p++)
                emit(userdata, interp, "abi3", *p);
        for (char *const *p = plats; *p; p++)
                emit(userdata, interp, "none", *p);
        /* 2. older stable-ABI interpreters: cp3(X-1)..cp32-abi3-plat */
        for (int m = minor - 1; m >= 2; m--) {
                snprintf(older, sizeof(older), "cp3%d", m);
                for (char *const *p = plats; *p; p++)
                        emit(userdata, older, "abi3", *p);
        }
        /* 3. pure-Python tags for this platform: py3X, py3, py3(X-1)..py30 */
        for (int step = -2; step < minor; step++) {
                /* step -2: py3X, -1: py3, then py3(X-1)..py30 */
                if (step == -1)
                        snprintf(older, sizeof(older), "py3");
                else
                        snprintf(older, sizeof(older), "py3%d", step == -2 ? minor : minor - 1 - step);
                for (char *const *p = plats; *p; p++)
                        emit(userdata, older, "none", *p);
        }
        /* 4. any platform */
        emit(userdata, interp, "none", "any");
        for (int step = -2; step < minor; step++) {
                if (step == -1)
                        snprintf(older, sizeof(older), "py3");
                else
                        snprintf(older, sizeof(older), "py3%d", step == -2 ? minor : minor - 1 - step);
                emit(userdata, older, "none", "any");
        }
}

static void emit_tag(void *userdata, const char *interp, const char *abi, const char *plat) {
        size_t a = strlen(interp), b = strlen(abi), c = strlen(plat);
        char *tag = xmalloc(a + b + c + 3);
        memcpy(tag, interp, a);
        tag[a] = '-';
        memcpy(tag + a + 1, abi, b);
        tag[a + 1 + b] = '-';
        memcpy(tag + a + b + 2, plat, c + 1);
        tags_add(userdata, tag);
}

int pkg_tags_for_interpreter(const char *python_version, PkgTags **ret_tags) {
        _cleanup_strv_free_ char **plats = NULL;
        int minor;
        int r = tags_platforms(python_version, &minor, &plats);
        if (r < 0)
                return r;
        _cleanup_(pkg_tags_freep) PkgTags *t = xcalloc(1, sizeof(*t));
        tags_generate(minor, plats, emit_tag, t);
        tags_index(t);
        *ret_tags = TAKE_PTR(t);
        return 0;
}

/* The fingerprint's text, measured in a first pass (out == NULL) and
 * written into an exact allocation in the second. */
typedef struct FingerprintSink {
        char *out;
        size_t len;
} FingerprintSink;

static void emit_fingerprint(void *userdata, const char *interp, const char *abi, const char *plat) {
        FingerprintSink *s = userdata;
        size_t a = strlen(interp), b = strlen(abi), c = strlen(plat);
        if (s->out) {
                char *o = s->out + s->len;
                if (s->len > 0)
                        *o++ = '\n';
                memcpy(o, interp, a);
                o[a] = '-';
                memcpy(o + a + 1, abi, b);
                o[a + 1 + b] = '-';
                memcpy(o + a + b + 2, plat, c);
        }
        s->len += (s->len > 0) + a + b + c + 2;
}

/* The fingerprint's text in chunks of up to sizeof(chunk) bytes. */
typedef struct StreamSink {
        void (*write)(void *userdata, const void *data, size_t n);
        void *userdata;
        size_t used;
        bool first;
        char chunk[4096];
} StreamSink;

static void emit_stream(void *userdata, const char *interp, const char *abi, const char *plat) {
        StreamSink *s = userdata;
        size_t a = strlen(interp), b = strlen(abi), c = strlen(plat);
        size_t need = !s->first + a + b + c + 2;
        assert(need <= sizeof(s->chunk)); /* pieces are a few dozen bytes */
        if (s->used + need > sizeof(s->chunk)) {
                s->write(s->userdata, s->chunk, s->used);
                s->used = 0;
        }
        char *o = s->chunk + s->used;
        if (!s->first)
                *o++ = '\n';
        memcpy(o, interp, a);
        o[a] = '-';
        memcpy(o + a + 1, abi, b);
        o[a + 1 + b] = '-';
        memcpy(o + a + b + 2, plat, c);
        s->used += need;
        s->first = false;
}

int pkg_tags_fingerprint_stream(const char *python_version, void (*write)(void *userdata, const void *data, size_t n),
                                void *userdata) {
        _cleanup_strv_free_ char **plats = NULL;
        int minor;
        int r = tags_platforms(python_version, &minor, &plats);
        if (r < 0)
                return r;
        StreamSink s = { .write = write, .userdata = userdata, .first = true };
        tags_generate(minor, plats, emit_stream, &s);
        if (s.used > 0)
                write(userdata, s.chunk, s.used);
        return 0;
}

int pkg_tags_fingerprint_for_interpreter(const char *python_version, char **ret) {
        _cleanup_strv_free_ char **plats = NULL;
        int minor;
        int r = tags_platforms(python_version, &minor, &plats);
        if (r < 0)
                return r;
        FingerprintSink s = {};
        tags_generate(minor, plats, emit_fingerprint, &s);
        size_t n = s.len;
        s = (FingerprintSink){ .out = xmalloc(n + 1) };
        tags_generate(minor, plats, emit_fingerprint, &s);
        assert(s.len == n);
        s.out[n] = 0;
        *ret = s.out;
        return 0;
}

/* Best index among the cartesian product of the '.'-separated sets. */
static int triple_priority(const PkgTags *t, const char *py, const char *abi, const char *plat) {
        int best = -1;
        Buf b;

        buf_init(&b, 512);
        for (const char *a = py; *a;) {
                size_t la = strcspn(a, ".");
                for (const char *c = abi; *c;) {
                        size_t lc = strcspn(c, ".");
                        for (const char *d = plat; *d;) {
                                size_t ld = strcspn(d, ".");
                                buf_reset(&b);
                                if (buf_printf(&b, "%.*s-%.*s-%.*s", (int) la, a, (int) lc, c, (int) ld, d) >= 0) {
                                        for (char *x = b.data; *x; x++)
                                                if (*x >= 'A' && *x <= 'Z')
                                                        *x = (char) (*x - 'A' + 'a');
                                        int i = tags_lookup(t, b.data, b.len);
                                        if (i >= 0 && (best < 0 || i < best))
                                                best = i;
                                }
                                d += ld + (d[ld] == '.');
                        }
                        c += lc + (c[lc] == '.');
                }
                a += la + (a[la] == '.');
        }
        buf_free(&b);
        return best;
}

int pkg_tags_wheel_priority(const PkgTags *t, const char *wheel_filename) {
        PkgWheelName *w = NULL;
        int r;

        if (!t || !wheel_filename)
                return -1;
        if (endswith(wheel_filename, ".whl")) {
                if (pkg_wheel_name_parse(wheel_filename, &w) < 0)
                        return -1;
                r = triple_priority(t, w->python_tag, w->abi_tag, w->platform_tag);
                pkg_wheel_name_free(w);
                return r;
        }
        /* A bare "py-abi-plat" tag triple. */
        {
                const char *d1 = strchr(wheel_filename, '-');
                const char *d2 = d1 ? strchr(d1 + 1, '-') : NULL;
                _cleanup_free_ char *py = NULL, *abi = NULL;
                if (!d2 || strchr(d2 + 1, '-'))
                        return -1;
                py = xstrndup(wheel_filename, (size_t) (d1 - wheel_filename));
                abi = xstrndup(d1 + 1, (size_t) (d2 - d1 - 1));
                return triple_priority(t, py, abi, d2 + 1);
        }
}

char *pkg_tags_fingerprint(const PkgTags *t) {
        Buf b;

        buf_init(&b, SIZE_MAX);
        for (size_t i = 0; i < t->n; i++)
                (void) buf_printf(&b, "%s%s", i > 0 ? "\n" : "", t->tags[i]);
        return buf_steal(&b);
}
