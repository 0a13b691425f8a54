/* libcurl, libarchive and libcrypto, loaded on their first use (the CLI
 * only).
 *
 * Why: linked the ordinary way, libcurl and libarchive pull in some 40
 * shared libraries (gnutls, krb5, ldap, ssh2, nghttp2, xml2, ICU with its
 * 30 MB of data, libstdc++, ...), which the dynamic loader maps,
 * relocates and runs the constructors of at every start: measured on this
 * VM, an empty main() linked against our libraries takes 8.8 ms, 1.7 ms
 * without these two (docs/internals/performance-log.md "CLI start-up (seen set again)").
 * libcrypto alone has ~21,000 relocations, a third of the CLI's own CPU
 * in a one-shot `pysprinter run` (round 40: `_dl_relocate_object`, each
 * written page a copy-on-write fault). Most verbs never touch the
 * network, an archive, a digest of a stream or a secret: `pysprinter env
 * prepare` of a seen set, `run` on a ready environment, `ps`, `show`.
 *
 * How: this file defines every libcurl, libarchive and libcrypto function
 * the CLI calls, under the library's own name and prototype (the headers
 * check each one). The first call dlopen()s the library and looks every
 * function up at once (pthread_once: the CLI's threads may race to it);
 * each definition then jumps to the real one. The CLI is linked with
 * --as-needed, so with every name defined here the libraries drop out of
 * its DT_NEEDED list. The daemon, the worker and the tests link them the
 * ordinary way and never see this file.
 *
 * A library that cannot be loaded is said once on stderr and its
 * functions fail the way they fail for want of memory (NULL, an error
 * code), which every caller already handles. Adding a new call of one of
 * these libraries to code the CLI links means adding it here: otherwise
 * the link silently brings the library back into DT_NEEDED (the pkg
 * module's dependencies are on the link line), which
 * tests/e2e/test_cli_startup.py catches by the libraries the CLI loads. */
#define CURL_DISABLE_TYPECHECK /* the variadic definitions below */
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

/* The sonames of the libraries the build linked against (meson.build reads
 * them with tools/soname.sh), so the CLI loads the same flavour. */
#ifndef LAZY_CURL_SONAME
#error "LAZY_CURL_SONAME is set by src/cli/meson.build"
#endif

typedef struct LazyLib {
        const char *soname;
        const char *const *names;
        void **fns;
        size_t n;
        bool ok;
} LazyLib;

static void lazy_load(LazyLib *l) {
        void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "pysprinter: cannot load %s: %s\n", l->soname, dlerror());
                return;
        }
        for (size_t i = 0; i < l->n; i++)
                if (!(l->fns[i] = dlsym(h, l->names[i]))) {
                        fprintf(stderr, "pysprinter: %s has no %s\n", l->soname, l->names[i]);
                        return;
                }
        l->ok = true;
}

/* Each library's functions: X(ret, name, params, args, fail) returns a
 * value, V(name, params, args) none, and A(ret, name, T1, T2, fail) is
 * variadic with one argument after T1 and T2 (the *_setopt/_getinfo
 * kind), written out below. */
#define CURL_FUNCS(X, V, A)                                                                               \
        V(curl_easy_cleanup, (CURL * h), (h))                                                             \
        X(char *, curl_easy_escape, (CURL * h, const char *s, int n), (h, s, n), NULL)                    \
        X(CURL *, curl_easy_init, (void), (), NULL)                                                       \
        X(CURLcode, curl_easy_perform, (CURL * h), (h), CURLE_FAILED_INIT)                                \
        X(const char *, curl_easy_strerror, (CURLcode c), (c), "libcurl could not be loaded")             \
        V(curl_free, (void *p), (p))                                                                      \
        X(CURLcode, curl_global_init, (long flags), (flags), CURLE_FAILED_INIT)                           \
        X(CURLMcode, curl_multi_add_handle, (CURLM * m, CURL * h), (m, h), CURLM_INTERNAL_ERROR)          \
        X(CURLMcode, curl_multi_cleanup, (CURLM * m), (m), CURLM_INTERNAL_ERROR)                          \
        X(CURLMsg *, curl_multi_info_read, (CURLM * m, int *left), (m, left), NULL)                       \
        X(CURLM *, curl_multi_init, (void), (), NULL)                                                     \
        X(CURLMcode, curl_multi_perform, (CURLM * m, int *running), (m, running), CURLM_INTERNAL_ERROR)   \
        X(CURLMcode, curl_multi_poll,                                                                     \
          (CURLM * m, struct curl_waitfd extra_fds[], unsigned int n, int timeout_ms, int *ret),           \
          (m, extra_fds, n, timeout_ms, ret), CURLM_INTERNAL_ERROR)                                       \
        X(CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL * h), (m, h), CURLM_INTERNAL_ERROR)       \
        X(const char *, curl_multi_strerror, (CURLMcode c), (c), "libcurl could not be loaded")           \
        X(CURLSH *, curl_share_init, (void), (), NULL)                                                    \
        X(struct curl_slist *, curl_slist_append, (struct curl_slist * l, const char *s), (l, s), NULL)   \
        V(curl_slist_free_all, (struct curl_slist * l), (l))                                              \
        A(CURLcode, curl_easy_setopt, CURL *, CURLoption, CURLE_FAILED_INIT)                              \
        A(CURLcode, curl_easy_getinfo, CURL *, CURLINFO, CURLE_FAILED_INIT)                               \
        A(CURLMcode, curl_multi_setopt, CURLM *, CURLMoption, CURLM_INTERNAL_ERROR)                       \
        A(CURLSHcode, curl_share_setopt, CURLSH *, CURLSHoption, CURLSHE_NOT_BUILT_IN)

#define ARCHIVE_FUNCS(X, V, A)                                                                                        \
        X(__LA_MODE_T, archive_entry_filetype, (struct archive_entry * e), (e), 0)                                    \
        V(archive_entry_free, (struct archive_entry * e), (e))                                                        \
        X(const char *, archive_entry_hardlink, (struct archive_entry * e), (e), NULL)                                \
        X(struct archive_entry *, archive_entry_new, (void), (), NULL)                                                \
        X(const char *, archive_entry_pathname, (struct archive_entry * e), (e), NULL)                                \
        X(__LA_MODE_T, archive_entry_perm, (struct archive_entry * e), (e), 0)                                        \
        V(archive_entry_set_filetype, (struct archive_entry * e, unsigned int t), (e, t))                             \
        V(archive_entry_set_mtime, (struct archive_entry * e, time_t t, long ns), (e, t, ns))                         \
        V(archive_entry_set_pathname, (struct archive_entry * e, const char *p), (e, p))                              \
        V(archive_entry_set_perm, (struct archive_entry * e, __LA_MODE_T m), (e, m))                                  \
        V(archive_entry_set_size, (struct archive_entry * e, la_int64_t s), (e, s))                                   \
        X(la_int64_t, archive_entry_size, (struct archive_entry * e), (e), 0)                                         \
        X(int, archive_entry_size_is_set, (struct archive_entry * e), (e), 0)                                         \
        X(const char *, archive_entry_symlink, (struct archive_entry * e), (e), NULL)                                 \
        X(const char *, archive_error_string, (struct archive * a), (a), "libarchive could not be loaded")            \
        X(la_ssize_t, archive_read_data, (struct archive * a, void *b, size_t n), (a, b, n), ARCHIVE_FATAL)           \
        X(int, archive_read_data_block, (struct archive * a, const void **b, size_t *n, la_int64_t *o), (a, b, n, o), \
          ARCHIVE_FATAL)                                                                                              \
        X(int, archive_read_free, (struct archive * a), (a), ARCHIVE_FATAL)                                           \
        X(struct archive *, archive_read_new, (void), (), NULL)                                                       \
        X(int, archive_read_next_header, (struct archive * a, struct archive_entry * *e), (a, e), ARCHIVE_FATAL)      \
        X(int, archive_read_open_fd, (struct archive * a, int fd, size_t n), (a, fd, n), ARCHIVE_FATAL)               \
        X(int, archive_read_open_filename, (struct archive * a, const char *f, size_t n), (a, f, n), ARCHIVE_FATAL)   \
        X(int, archive_read_open_memory, (struct archive * a, const void *b, size_t n), (a, b, n), ARCHIVE_FATAL)     \
        X(int, archive_read_support_filter_gzip, (struct archive * a), (a), ARCHIVE_FATAL)                            \
        X(int, archive_read_support_format_tar, (struct archive * a), (a), ARCHIVE_FATAL)                             \
        X(int, archive_read_support_format_zip_seekable, (struct archive * a), (a), ARCHIVE_FATAL)                    \
        X(int, archive_read_support_format_zip_streamable, (struct archive * a), (a), ARCHIVE_FATAL)                  \
        X(int, archive_write_close, (struct archive * a), (a), ARCHIVE_FATAL)                                         \
        X(la_ssize_t, archive_write_data, (struct archive * a, const void *b, size_t n), (a, b, n), ARCHIVE_FATAL)    \
        X(int, archive_write_free, (struct archive * a), (a), ARCHIVE_FATAL)                                          \
        X(int, archive_write_header, (struct archive * a, struct archive_entry * e), (a, e), ARCHIVE_FATAL)           \
        X(struct archive *, archive_write_new, (void), (), NULL)                                                      \
        X(int, archive_write_open,                                                                                    \
          (struct archive * a, void *d, archive_open_callback *o, archive_write_callback *w,                          \
           archive_close_callback *c),                                                                                \
          (a, d, o, w, c), ARCHIVE_FATAL)                                                                             \
        X(int, archive_write_set_bytes_per_block, (struct archive * a, int n), (a, n), ARCHIVE_FATAL)                 \
        X(int, archive_write_set_format_option, (struct archive * a, const char *m, const char *o, const char *v),    \
          (a, m, o, v), ARCHIVE_FATAL)                                                                                \
        X(int, archive_write_set_format_pax_restricted, (struct archive * a), (a), ARCHIVE_FATAL)                     \
        A(void, archive_set_error, struct archive *, int, )

#define CRYPTO_FUNCS(X, V, A)                                                                                   \
        X(int, EVP_CIPHER_CTX_ctrl, (EVP_CIPHER_CTX * c, int type, int arg, void *ptr), (c, type, arg, ptr), 0) \
        V(EVP_CIPHER_CTX_free, (EVP_CIPHER_CTX * c), (c))                                                       \
        X(EVP_CIPHER_CTX *, EVP_CIPHER_CTX_new, (void), (), NULL)                                               \
        X(int, EVP_DecodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n), -1)               \
        X(int, EVP_Digest,                                                                                      \
          (const void *d, size_t n, unsigned char *md, unsigned int *mdn, const EVP_MD *t, ENGINE *e),          \
          (d, n, md, mdn, t, e), 0)                                                                             \
        X(int, EVP_DecryptFinal_ex, (EVP_CIPHER_CTX * c, unsigned char *out, int *outl), (c, out, outl), 0)     \
        X(int, EVP_DecryptInit_ex,                                                                              \
          (EVP_CIPHER_CTX * c, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key,                \
           const unsigned char *iv),                                                                            \
          (c, cipher, impl, key, iv), 0)                                                                        \
        X(int, EVP_DecryptUpdate,                                                                               \
          (EVP_CIPHER_CTX * c, unsigned char *out, int *outl, const unsigned char *in, int inl),                \
          (c, out, outl, in, inl), 0)                                                                           \
        X(int, EVP_DigestFinal_ex, (EVP_MD_CTX * c, unsigned char *md, unsigned int *n), (c, md, n), 0)         \
        X(int, EVP_DigestInit_ex, (EVP_MD_CTX * c, const EVP_MD *type, ENGINE *impl), (c, type, impl), 0)       \
        X(int, EVP_DigestUpdate, (EVP_MD_CTX * c, const void *d, size_t n), (c, d, n), 0)                       \
        X(int, EVP_EncodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n), 0)                \
        X(int, EVP_EncryptFinal_ex, (EVP_CIPHER_CTX * c, unsigned char *out, int *outl), (c, out, outl), 0)     \
        X(int, EVP_EncryptInit_ex,                                                                              \
          (EVP_CIPHER_CTX * c, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key,                \
           const unsigned char *iv),                                                                            \
          (c, cipher, impl, key, iv), 0)                                                                        \
        X(int, EVP_EncryptUpdate,                                                                               \
          (EVP_CIPHER_CTX * c, unsigned char *out, int *outl, const unsigned char *in, int inl),                \
          (c, out, outl, in, inl), 0)                                                                           \
        X(int, EVP_MD_CTX_copy_ex, (EVP_MD_CTX * out, const EVP_MD_CTX *in), (out, in), 0)                      \
        V(EVP_MD_CTX_free, (EVP_MD_CTX * c), (c))                                                               \
        X(EVP_MD_CTX *, EVP_MD_CTX_new, (void), (), NULL)                                                       \
        X(const EVP_MD *, EVP_get_digestbyname, (const char *name), (name), NULL)                               \
        X(const EVP_CIPHER *, EVP_aes_256_gcm, (void), (), NULL)                                                \
        X(const EVP_MD *, EVP_sha256, (void), (), NULL)

/* The tables: an index per function, its name, its address once loaded. */
#define IDX_X(ret, name, params, args, fail) I_##name,
#define IDX_V(name, params, args) I_##name,
#define IDX_A(ret, name, t1, t2, fail) I_##name,
#define NAME_X(ret, name, params, args, fail) #name,
#define NAME_V(name, params, args) #name,
#define NAME_A(ret, name, t1, t2, fail) #name,
/* One library's table, its once-control and the gate every definition
 * passes: lib_ready() loads the library on the first call from any
 * thread and says whether it could. */
#define LAZY_LIB(lib, soname, FUNCS)                                                     \
        enum { FUNCS(IDX_X, IDX_V, IDX_A) N_##lib };                                     \
        static const char *const lib##_names[] = { FUNCS(NAME_X, NAME_V, NAME_A) };      \
        static void *lib##_fns[N_##lib];                                                 \
        static LazyLib lib##_lib = { soname, lib##_names, lib##_fns, N_##lib, false };   \
        static pthread_once_t lib##_once = PTHREAD_ONCE_INIT;                            \
        static void lib##_load(void) {                                                   \
                lazy_load(&lib##_lib);                                                   \
        }                                                                                \
        static bool lib##_ready(void) {                                                  \
                pthread_once(&lib##_once, lib##_load);                                   \
                return lib##_lib.ok;                                                     \
        }
LAZY_LIB(curl, LAZY_CURL_SONAME, CURL_FUNCS)
LAZY_LIB(archive, LAZY_ARCHIVE_SONAME, ARCHIVE_FUNCS)
LAZY_LIB(crypto, LAZY_CRYPTO_SONAME, CRYPTO_FUNCS)

/* The plain definitions: the real function through a pointer of the
 * prototype written in the list (the library's header has declared the
 * same name: a mismatch does not compile). */
#define DEF_X(lib, ret, name, params, args, fail)                  \
        ret name params {                                          \
                if (!lib##_ready())                                \
                        return fail;                               \
                return ((ret(*) params) lib##_fns[I_##name]) args; \
        }
#define DEF_V(lib, name, params, args)                                \
        void name params {                                            \
                if (lib##_ready())                                    \
                        ((void (*) params) lib##_fns[I_##name]) args; \
        }
#define CURL_X(ret, name, params, args, fail) DEF_X(curl, ret, name, params, args, fail)
#define CURL_V(name, params, args) DEF_V(curl, name, params, args)
#define ARCHIVE_X(ret, name, params, args, fail) DEF_X(archive, ret, name, params, args, fail)
#define ARCHIVE_V(name, params, args) DEF_V(archive, name, params, args)
#define CRYPTO_X(ret, name, params, args, fail) DEF_X(crypto, ret, name, params, args, fail)
#define CRYPTO_V(name, params, args) DEF_V(crypto, name, params, args)
#define SKIP_A(ret, name, t1, t2, fail)
CURL_FUNCS(CURL_X, CURL_V, SKIP_A)
ARCHIVE_FUNCS(ARCHIVE_X, ARCHIVE_V, SKIP_A)
CRYPTO_FUNCS(CRYPTO_X, CRYPTO_V, SKIP_A)

/* libcurl's options carry their argument's type in their number
 * (CURLOPTTYPE_*: curl_easy_setopt() itself reads it so), the same for
 * the multi options; a getinfo argument is always a pointer. */
typedef enum { ARG_LONG, ARG_PTR, ARG_OFF, ARG_INT } ArgKind;

static ArgKind opt_kind(int option) {
        if (option < CURLOPTTYPE_OBJECTPOINT)
                return ARG_LONG;
        if (option >= CURLOPTTYPE_OFF_T && option < CURLOPTTYPE_BLOB)
                return ARG_OFF;
        return ARG_PTR; /* objects, function pointers, blobs */
}

/* CURLSHOPT_(UN)SHARE take a curl_lock_data (an int), the rest pointers. */
static ArgKind share_kind(CURLSHoption option) {
        return option == CURLSHOPT_SHARE || option == CURLSHOPT_UNSHARE ? ARG_INT : ARG_PTR;
}

#define DEF_ONE_ARG(ret, name, t1, t2, fail, kind)                                             \
        ret name(t1 h, t2 o, ...) {                                                            \
                if (!curl_ready())                                                             \
                        return fail;                                                           \
                ret (*real)(t1, t2, ...) = (ret(*)(t1, t2, ...)) curl_fns[I_##name];           \
                va_list ap;                                                                    \
                va_start(ap, o);                                                               \
                ArgKind k = kind;                                                              \
                ret r = k == ARG_LONG ? real(h, o, va_arg(ap, long))                           \
                        : k == ARG_OFF ? real(h, o, va_arg(ap, curl_off_t))                    \
                        : k == ARG_INT ? real(h, o, va_arg(ap, int))                           \
                                       : real(h, o, va_arg(ap, void *));                       \
                va_end(ap);                                                                    \
                return r;                                                                      \
        }
DEF_ONE_ARG(CURLcode, curl_easy_setopt, CURL *, CURLoption, CURLE_FAILED_INIT, opt_kind((int) o))
DEF_ONE_ARG(CURLcode, curl_easy_getinfo, CURL *, CURLINFO, CURLE_FAILED_INIT, ARG_PTR)
DEF_ONE_ARG(CURLMcode, curl_multi_setopt, CURLM *, CURLMoption, CURLM_INTERNAL_ERROR, opt_kind((int) o))
DEF_ONE_ARG(CURLSHcode, curl_share_setopt, CURLSH *, CURLSHoption, CURLSHE_NOT_BUILT_IN, share_kind(o))

void archive_set_error(struct archive *a, int err, const char *fmt, ...) {
        if (!archive_ready())
                return;
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        ((void (*)(struct archive *, int, const char *, ...)) archive_fns[I_archive_set_error])(a, err, "%s", msg);
}
