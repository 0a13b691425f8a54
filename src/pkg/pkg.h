/* pkg: Python packaging standards implemented natively, and the package
 * manager built on them.
 *
 * Depends on: basic (and, inside the module only, libcurl, libarchive,
 * libcrypto, jansson, sqlite). No library type crosses this header.
 *
 * Errors: >= 0 success, negative errno on failure. Parsers take a
 * `char **ret_error` that receives a human-readable message naming the bad
 * input (caller frees) when they fail with -EINVAL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- syntax layer: PEP 503 names, PEP 440 versions/specifiers, PEP 508 ---- */

/* PEP 508 distribution name: ^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$ (ci). */
bool pkg_name_is_valid(const char *name);
/* PEP 503 normalisation: lowercase, runs of [-_.] become '-'. Caller frees. */
char *pkg_name_normalize(const char *name);

/* A parsed PEP 440 version. Opaque. */
typedef struct PkgVersion PkgVersion;
int pkg_version_parse(const char *s, PkgVersion **ret_version);
PkgVersion *pkg_version_free(PkgVersion *v);
/* <0, 0, >0 like strcmp, by PEP 440 ordering. */
int pkg_version_compare(const PkgVersion *a, const PkgVersion *b);
bool pkg_version_is_prerelease(const PkgVersion *v); /* a/b/rc or .dev */
/* Normalised string form ("1.0.0a1.post2.dev3+local"). Caller frees. */
char *pkg_version_to_string(const PkgVersion *v);

/* A PEP 440 specifier set such as ">=2,<3,!=2.1.*". Empty set matches all. */
typedef struct PkgSpecifierSet PkgSpecifierSet;
int pkg_specifier_set_parse(const char *s, PkgSpecifierSet **ret_set, char **ret_error);
PkgSpecifierSet *pkg_specifier_set_free(PkgSpecifierSet *s);
/* prereleases: also accept pre-releases (PEP 440: they are excluded unless
 * asked for or a specifier itself names one). */
bool pkg_specifier_set_contains(const PkgSpecifierSet *s, const PkgVersion *v, bool prereleases);
/* True if any specifier in the set names a pre-release version. */
bool pkg_specifier_set_allows_prereleases(const PkgSpecifierSet *s);
char *pkg_specifier_set_to_string(const PkgSpecifierSet *s);

/* Environment for PEP 508 markers (the embedded interpreter's). */
typedef struct PkgMarkerEnv {
        const char *os_name;                        /* "posix" */
        const char *sys_platform;                   /* "linux" */
        const char *platform_machine;               /* "x86_64" */
        const char *platform_python_implementation; /* "CPython" */
        const char *platform_release;
        const char *platform_system;                /* "Linux" */
        const char *platform_version;
        const char *python_version;                 /* "3.11" */
        const char *python_full_version;            /* "3.11.2" */
        const char *implementation_name;            /* "cpython" */
        const char *implementation_version;         /* "3.11.2" */
} PkgMarkerEnv;
/* Fills env for the running machine and the given interpreter version. */
void pkg_marker_env_default(PkgMarkerEnv *env, const char *python_full_version);

typedef struct PkgMarker PkgMarker;
int pkg_marker_parse(const char *s, PkgMarker **ret_marker, char **ret_error);
PkgMarker *pkg_marker_free(PkgMarker *m);
/* extra: the extra being evaluated, or NULL (then `extra == "x"` is false). */
bool pkg_marker_evaluate(const PkgMarker *m, const PkgMarkerEnv *env, const char *extra);

/* A PEP 508 requirement: name[extras] (specifiers) ; marker. URL forms
 * (name @ url) are rejected (docs/packages.md, "Resolution"). */
typedef struct PkgRequirement {
        char *name;            /* as written */
        char *normalized;      /* PEP 503 */
        char **extras;         /* NULL-terminated, normalised; may be NULL */
        PkgSpecifierSet *specifiers;
        PkgMarker *marker;     /* may be NULL */
} PkgRequirement;
int pkg_requirement_parse(const char *s, PkgRequirement **ret_req, char **ret_error);
PkgRequirement *pkg_requirement_free(PkgRequirement *r);
char *pkg_requirement_to_string(const PkgRequirement *r);
/* The n requirements as strings, sorted: the order of the user's dict does
 * not change an environment. NULL-terminated; strv_free() it. */
char **pkg_requirements_sorted(PkgRequirement *const *reqs, size_t n);

/* The seed's @requirements({key: value}) form. key is a name with optional
 * extras ("requests[socks]"); value is "" (any), a bare version ("2.28.1"
 * means ==2.28.1) or a PEP 440 specifier set (">=2,<3", "~=2.28"), each
 * optionally followed by "; " and a PEP 508 marker (">=300; sys_platform ==
 * 'win32'", "; python_version < '3.12'").
 * Anything else — options ("--index-url=…"), paths, URLs, whitespace, ';',
 * '@' in the key; an invalid specifier or marker in the value — is -EINVAL
 * with a message naming the offending key/value. */
int pkg_requirement_from_seed(const char *key, const char *value, PkgRequirement **ret_req, char **ret_error);

/* PEP 425 tags of an interpreter, most preferred first. */
typedef struct PkgTags PkgTags;
/* python_version "3.11"; machine "x86_64"; glibc version from the running
 * libc (manylinux), musl detected. */
int pkg_tags_for_interpreter(const char *python_version, PkgTags **ret_tags);
PkgTags *pkg_tags_free(PkgTags *t);
/* Priority of a wheel filename's tag set (lower is better), or -1 if none
 * of its tags is supported. */
int pkg_tags_wheel_priority(const PkgTags *t, const char *wheel_filename);
/* Stable text form of the tag list (for cache keys). Caller frees. */
char *pkg_tags_fingerprint(const PkgTags *t);
/* pkg_tags_fingerprint() of pkg_tags_for_interpreter(python_version)'s
 * tags, byte for byte, written straight into one allocation (the env key
 * of every run hashes it; building the tag set first was most of a seen
 * set's ready-env time). */
int pkg_tags_fingerprint_for_interpreter(const char *python_version, char **ret);
/* The same text passed to write() in pieces (no allocation): for a one-shot
 * digest of it. */
int pkg_tags_fingerprint_stream(const char *python_version, void (*write)(void *userdata, const void *data, size_t n),
                                void *userdata);

/* Parse a wheel filename (PEP 427): name-ver(-build)?-pytag-abitag-plat.whl */
typedef struct PkgWheelName {
        char *name;      /* as in the file name */
        char *version;
        char *build;     /* may be NULL */
        char *python_tag, *abi_tag, *platform_tag;
} PkgWheelName;
int pkg_wheel_name_parse(const char *filename, PkgWheelName **ret);
PkgWheelName *pkg_wheel_name_free(PkgWheelName *w);
/* Orders two build tags (NULL: none) as PEP 427 does: by their leading
 * number, then by the rest as text, no build tag first. <0, 0 or >0 like
 * strcmp: "2" > "1", "10" > "9", "1a" > "1", "1" > NULL. */
int pkg_wheel_build_compare(const char *a, const char *b);

/* ---- index, resolver, store (package manager) ---- */

/* Everything below is the package manager (docs/packages.md): index client, wheel
 * store, resolver, locks and environments. docs/packages.md describes the
 * user-visible behaviour. */

/* Progress of a long step. phase: "resolving" (what = a project name,
 * done/total = projects), "downloading" (what = a file name, done/total =
 * bytes of all downloads of the step), "unpacking" (what = a file name,
 * done/total = wheels). Called on the caller's thread; must not block. */
typedef void (*PkgProgressFn)(const char *phase, const char *what, uint64_t done, uint64_t total, void *userdata);
/* Whether the project (its normalized name) may be installed at all: < 0
 * with a message refuses it, before its page is read or a file of it is
 * fetched (an operator's allow/deny policy). */
typedef int (*PkgAdmitFn)(void *userdata, const char *project, char **ret_error);

/* Where packages come from. Sources are asked in order — find-links
 * directories, then the index URLs — and a project comes entirely from the
 * first source that has it (no mixing across indexes: dependency
 * confusion). */
/* A cluster's other nodes (docs/cluster.md "Packages"), asked before the
 * index: for a wheel by the lock's sha256, and for the lock of an
 * environment key before resolving. Set by the daemon in cluster mode. */
typedef struct PkgPeers {
        /* Writes the wheel with that sha256 to dest (created), or fails
         * (-ENOENT: no peer has it). The caller verifies the hash. */
        int (*wheel)(void *userdata, const char *sha256, const char *dest, char **ret_error);
        /* The lock JSON a peer resolved for key, or -ENOENT. */
        int (*lock_get)(void *userdata, const char *key, char **ret_json);
        /* Tells the peers the lock resolved for key. */
        void (*lock_put)(void *userdata, const char *key, const char *json);
        void *userdata;
} PkgPeers;

typedef struct PkgIndexConfig {
        char **index_urls;   /* NULL-terminated; [0] is the primary index */
        char **find_links;   /* NULL-terminated local wheel directories; may be NULL */
        long timeout_ms;     /* per request (connect + transfer stall) */
        unsigned retries;    /* extra attempts on network errors and 5xx/429 */
        /* Not owned, may be NULL. Not part of the fingerprint. With peers,
         * downloaded wheels stay in <data_dir>/cache/wheels/<sha256>.whl
         * after install, so this node can serve them in turn. */
        const PkgPeers *peers;
} PkgIndexConfig;

/* The kept wheel of sha256 under data_dir (PkgIndexConfig.peers), whether
 * or not it exists; NULL for an invalid sha256. */
char *pkg_store_kept_wheel(const char *data_dir, const char *sha256);

#define PKG_DEFAULT_INDEX_URL "https://pypi.org/simple/"

/* Builds a configuration. Explicit arguments win; otherwise
 * $PYSPRINTER_INDEX_URL, then $PIP_INDEX_URL, then PyPI. Extra indexes:
 * extra_index_urls, else $PIP_EXTRA_INDEX_URL (whitespace separated).
 * find_links: the argument, else $PIP_FIND_LINKS (whitespace separated;
 * "file://" prefixes allowed). URLs must be http(s):// or file://, else
 * -EINVAL with a message. */
int pkg_index_config_new(const char *index_url, char *const *extra_index_urls, char *const *find_links,
                         PkgIndexConfig **ret_config, char **ret_error);
PkgIndexConfig *pkg_index_config_free(PkgIndexConfig *c);
/* 0 when u is one index URL (http://, https:// or file://, no white
 * space), else -EINVAL and a message that quotes it with its credentials
 * hidden. Checked where a URL enters (--index-url, the daemon's config),
 * so a typo is a usage error there, not an install error at a run. */
int pkg_index_url_check(const char *u, char **ret_error);
/* Stable text form (sources in order), part of the lock cache key. */
char *pkg_index_config_fingerprint(const PkgIndexConfig *c);
/* text with the credentials of every URL in it hidden, as pip shows them:
 * the password as "****" after its user, and a user alone (a token) as
 * "****". What leaves the package manager for a person (a run's
 * error, /v1/envs) goes through it: an index URL may carry an operator's
 * password, which another tenant must not read. NULL for NULL. */
char *pkg_url_redact(const char *text);

/* One file of a project as an index lists it. */
typedef struct PkgFile {
        char *filename;
        char *url;             /* absolute (http(s):// or file://) */
        char *sha256;          /* lowercase hex; NULL if the source gave none */
        /* The page's other hashes of the file, "ALGO=hex" (hex in lower
         * case; any ALGO it names), NULL if none: each one that can be
         * computed must match the downloaded wheel (as pip checks). */
        char **hashes;
        bool hashes_checked;   /* a file with those bytes was checked against them */
        char *requires_python; /* NULL if none */
        char *yanked;          /* NULL if not yanked, else the reason ("" if none) */
        char *metadata_url;    /* PEP 658/714 core metadata, NULL if not offered */
        char *metadata_sha256; /* may be NULL even when metadata_url is set */
        /* The page's other hashes of the metadata file, "ALGO=hex" (hex in
         * lower case; any ALGO it names), NULL if none: each one
         * pkg_index_metadata() can compute must match, and a page that
         * gives only ones it cannot (md5, sha1, unknown) is refused. */
        char **metadata_hashes;
        /* The index gave a sha256 that is not one (not 64 hex digits):
         * using the file (or its metadata) fails, as pip's and uv's hash
         * check would, instead of installing it unverified. */
        bool sha256_malformed, metadata_sha256_malformed;
} PkgFile;

typedef struct PkgProject {
        char *name;            /* PEP 503 normalised */
        char *source;          /* the index URL or directory it came from */
        PkgFile *files;
        size_t n_files;
} PkgProject;

/* An index client: remembers project pages and metadata it fetched (one
 * PkgIndex per resolution keeps the view of the index consistent).
 * cache_dir: where wheels downloaded only for their metadata are kept for
 * the store to reuse (NULL: none). Not thread-safe. */
typedef struct PkgIndex PkgIndex;
int pkg_index_new(const PkgIndexConfig *cfg, const char *cache_dir, PkgIndex **ret_index);
PkgIndex *pkg_index_free(PkgIndex *ix);
/* The project's files from the first source that has it. *ret_project is
 * owned by the index. -ENOENT when no source has it; other errors (network,
 * HTTP status, malformed page) name the URL. */
int pkg_index_project(PkgIndex *ix, const char *name, const PkgProject **ret_project, char **ret_error);
/* Core metadata (METADATA text) of a wheel: the PEP 658 file when the index
 * offers one (hash-checked), else the wheel is downloaded (sha256-checked,
 * kept in cache_dir) and its .dist-info/METADATA read. */
int pkg_index_metadata(PkgIndex *ix, const PkgFile *f, char **ret_text, char **ret_error);
/* Every project name the sources list (for "did you mean"); best effort. */
int pkg_index_names(PkgIndex *ix, char ***ret_names, char **ret_error);
/* Names in candidates within a small edit distance of name, closest first
 * (at most max). */
char **pkg_close_names(const char *name, char *const *candidates, size_t max);

/* Core metadata (RFC 822 style METADATA / PKG-INFO). */
typedef struct PkgMetadata {
        char *name;
        char *version;
        char *requires_python;   /* NULL if none */
        char **requires_dist;    /* NULL-terminated; may be NULL */
        char **provides_extra;   /* NULL-terminated, normalised; may be NULL */
} PkgMetadata;
int pkg_metadata_parse(const char *text, PkgMetadata **ret_metadata, char **ret_error);
PkgMetadata *pkg_metadata_free(PkgMetadata *m);

/* Caps applied to every wheel (hostile input). */
/* Read from the zip central directory before anything is extracted. */
#define PKG_WHEEL_MAX_ENTRIES 100000
#define PKG_WHEEL_MAX_ENTRY_BYTES (1ULL << 30)
#define PKG_WHEEL_MAX_TOTAL_BYTES (4ULL << 30)
#define PKG_WHEEL_MAX_RATIO 200   /* uncompressed / compressed, per entry over 1 MiB */
#define PKG_WHEEL_MAX_DOWNLOAD_BYTES (2ULL << 30)

/* Unpacks the wheel at wheel_path into dest_dir (created; must not exist)
 * as an installed site dir: <name>.data/purelib and platlib merged into the
 * root, RECORD hashes and sizes verified, no entry with "..", an absolute
 * path, a symlink/hardlink/device type, or sizes over the caps above.
 * display_name names the wheel in errors ("wheel X: entry Y: why") and is
 * its PEP 427 file name (wheel_path's base name when NULL): the .dist-info
 * directory and METADATA must be that project's. More than
 * PKG_WHEEL_MAX_ENTRIES entries is -EFBIG before anything is written. On
 * failure dest_dir is removed. Files are created read-only (0444, 0555
 * when executable); directories stay writable (the caller seals them). */
int pkg_wheel_unpack(const char *wheel_path, const char *display_name, const char *dest_dir, char **ret_error);
/* The same, stopping between entries (and between a large entry's chunks)
 * once *cancel is set (read atomically; NULL: never): -ECANCELED with
 * "cancelled", dest_dir removed. */
int pkg_wheel_unpack_cancellable(const char *wheel_path, const char *display_name, const char *dest_dir,
                                 const bool *cancel, char **ret_error);
/* The .dist-info/METADATA of a wheel file. */
int pkg_wheel_read_metadata(const char *wheel_path, char **ret_text, char **ret_error);
/* Checks a wheel pkg_wheel_unpack() installed in dir against the RECORD
 * its .dist-info keeps: every file listed there present, a regular file,
 * of RECORD's size and hash (files RECORD does not list, such as the
 * byte-compiled __pycache__, are not checked). *ret_name and *ret_version
 * (NULL when unknown) come from the .dist-info directory's name, set
 * whenever it was found. 0 when whole; -EBADMSG with *ret_problem naming
 * the first damage ("aa/data.txt: missing", "aa/data.txt: content does not
 * match RECORD", "aa-1.0.dist-info/RECORD: missing", "no .dist-info
 * directory"); another negative errno with a message when dir cannot be
 * opened. */
int pkg_wheel_verify_installed(const char *dir, char **ret_name, char **ret_version, char **ret_problem);

/* A lock: the exact files an environment is made of, in sys.path order
 * (sorted by name: deterministic). */
typedef struct PkgLockEntry {
        char *name;            /* normalised */
        char *version;         /* as the index spells it */
        char *filename;
        char *url;
        char *sha256;          /* lowercase hex */
        char **dependencies;   /* normalised names it requires; may be NULL */
} PkgLockEntry;

typedef struct PkgLock {
        PkgLockEntry *entries;
        size_t n_entries;
        char **requirements;   /* the root requirements, normalised strings */
        /* Those of them whose markers are false for this interpreter (not
         * looked up, nor locked), as pip's "Ignoring NAME: markers 'M' don't
         * match your environment": their names and markers, in parallel,
         * sorted by name; NULL: none. In the JSON only when there is one:
         * "ignored": [{"name", "marker"}…]. */
        char **ignored, **ignored_markers;
        /* What the resolution warns of and installs anyway (a yanked
         * version pinned with ==, an extra the package lacks), one line
         * each without "warning: "; NULL: none. Only a lock the resolver
         * just made has them: not in its JSON, nor in a cached lock. */
        char **warnings;
        /* Made by the resolver in this process: its sha256s are the ones
         * the index's pages gave now, and a download's mismatch says "the
         * index says …". false for a lock read from JSON (a deployed
         * version's, a cached one): "the lock says …". */
        bool from_index;
} PkgLock;
PkgLock *pkg_lock_free(PkgLock *l);
/* JSON: {"version":1,"requirements":[…],"packages":[{"name","version",
 * "filename","url","sha256","dependencies":[…]}…]}. Caller frees. */
char *pkg_lock_to_json(const PkgLock *l, bool pretty);
int pkg_lock_from_json(const char *json, PkgLock **ret_lock, char **ret_error);
/* Whether two locks' JSON texts lock the same files: the same requirements
 * and the same packages by name, version and sha256, in any order. Where a
 * file is fetched from (its URL: a moved index, a signed URL that expires)
 * is not what a lock pins. Both NULL: true; one NULL, or a text that does
 * not parse: whether the texts are equal. */
bool pkg_lock_json_same_files(const char *a, const char *b);
/* l's JSON text (pkg_lock_to_json(), compact) with every URL empty: the
 * files it pins, not where they are fetched from. Two locks that
 * pkg_lock_json_same_files() holds the same and list their packages in
 * the same order give the same text. Caller frees. */
char *pkg_lock_files_json(const PkgLock *l);
/* A lock's JSON text as every answer shows it and `pysprinter lock` prints
 * it: each wheel URL with an index URL's credentials hidden
 * (pkg_url_redact), as uv keeps them out of uv.lock. NULL text: JSON null.
 * Caller decrefs. */
struct json_t *pkg_lock_shown(const char *lock_json);

typedef struct PkgResolveOptions {
        const PkgTags *tags;
        const PkgMarkerEnv *marker_env;
        const char *python_full_version;  /* for Requires-Python, "3.11.2" */
        PkgProgressFn progress;
        void *userdata;
        unsigned max_steps;               /* 0: 20000 candidate tries */
        /* Called (on the resolver's thread) with the file of each version
         * that is decided, and of each project's first candidate as soon
         * as its page is read, before the rest is resolved: the installer
         * starts fetching those wheels then. A later backtrack may drop
         * any of them; only the returned lock says what the env holds.
         * May be called more than once per file. NULL: not told. */
        void (*pinned)(void *pin_userdata, const PkgFile *f);
        void *pin_userdata;
        PkgAdmitFn admit;                 /* NULL: every project */
        void *admit_userdata;
        /* Read atomically before each candidate is tried and by every
         * transfer; once set the resolution ends with -ECANCELED and
         * "cancelled". NULL: never. Not owned. */
        const bool *cancel;
} PkgResolveOptions;

/* Backtracking resolution of reqs (root requirements; markers evaluated,
 * extras followed) into a lock. Deterministic for one index state: newest
 * acceptable version first, pre-releases only when asked for or the only
 * match, yanked files only when pinned with ==, wheels only (a project with
 * only sdists is refused, naming it). -ENOENT / -ESRCH / -EDEADLK on
 * not-found / no-matching-version / conflict, with an explanation. */
int pkg_resolve(PkgIndex *ix, PkgRequirement *const *reqs, size_t n_reqs, const PkgResolveOptions *o,
                PkgLock **ret_lock, char **ret_error);

/* Makes every wheel of the lock present in <data_dir>/store/<sha256>/
 * (parallel downloads, sha256 verified, unpacked into a temp dir then
 * atomically renamed, made read-only; safe against concurrent installers).
 * Returns the store dirs in lock order. */
/* Byte-compiles the .py files under dir (a wheel just unpacked, still
 * writable), as pip does at install, so imports from the read-only store
 * need not compile. Failures are not errors. */
typedef int (*PkgCompileFn)(const char *dir, void *userdata);
/* cancel: see PkgEnvOptions.cancel. A cancelled call publishes nothing it
 * had not finished: partial downloads and half-unpacked temp dirs are
 * removed, wheel locks released; whole wheels already renamed into the
 * store stay (content-addressed, complete, verified). */
int pkg_store_materialize(const char *data_dir, const PkgIndexConfig *cfg, const PkgLock *lock, PkgProgressFn progress,
                          void *userdata, PkgCompileFn compile, void *compile_userdata, const bool *cancel,
                          char ***ret_dirs, char **ret_error);

/* An environment ready to use: its store dirs in sys.path order. While a
 * PkgEnv is alive it holds a shared lock on its record, so `env prune`
 * never removes it (keep it for as long as a worker uses the dirs). */
typedef struct PkgEnv {
        char *key;             /* hex hash: requirements + tags + index config */
        char **store_dirs;     /* NULL-terminated, lock order */
        PkgLock *lock;
        bool cached;           /* true when the lock came from the cache */
        int fd;                /* the record, flock(LOCK_SH) held */
} PkgEnv;
PkgEnv *pkg_env_free(PkgEnv *e);

typedef struct PkgEnvOptions {
        const char *data_dir;             /* required */
        const PkgIndexConfig *index;      /* required */
        const char *python_full_version;  /* NULL: "3.11.2" */
        PkgProgressFn progress;
        void *userdata;
        bool resolve_only;                /* lock only; store_dirs stays NULL */
        bool refresh;                     /* resolve again: no cached record, no peer's lock */
        PkgCompileFn compile;             /* NULL: no byte-compiling */
        void *compile_userdata;
        /* Asked of every project resolved, and of every entry of a lock
         * taken from a cache or a peer before it is materialised. */
        PkgAdmitFn admit;
        void *admit_userdata;
        /* The caller's cancel flag (an engine run's; not owned), read
         * atomically: between steps, by every transfer (libcurl's progress
         * callback: a stalled download stops too), between a wheel's
         * entries, while waiting for another installer's wheel lock (every
         * 50 ms). Once set the call ends within a fraction of a second
         * with -ECANCELED and "cancelled"; no env record is written, no
         * temp file or lock is left, and only whole verified wheels stay
         * in the store. Another installer waiting for a wheel this one
         * was fetching takes its lock then and fetches it itself
         * (docs/cli.md "cancel"). NULL: never. */
        const bool *cancel;
} PkgEnvOptions;

/* The engine's one call: the cache key, then the cached lock (one file
 * read, one stat per store dir) or a resolution, then materialisation.
 * Errors carry a message for the user (DESIGN exit 4). */
int pkg_env_prepare(const PkgEnvOptions *o, PkgRequirement *const *reqs, size_t n_reqs, PkgEnv **ret_env,
                    char **ret_error);

/* An environment of exactly lock's wheels, nothing resolved (a deployed
 * version's lock, kept since its deploy): the store's dirs when present,
 * else each wheel fetched by the lock's URL (a cluster's peers first) and
 * verified against its sha256; when that URL fails, the same filename with
 * the same sha256 from the sources configured now (the index moved since
 * the lock was made), never another build of it (-ESTALE, "…: sha256
 * mismatch: the lock says X, SOURCE serves Y"); (*ret_env)->lock then
 * names the URLs the files were had from. A record is written under a key
 * of the lock's files, not their URLs ($DATA/envs, as pkg_env_prepare's), so `env ls` lists it and
 * prune keeps its dirs while it is held. o->resolve_only must be false;
 * o->refresh is ignored. A wheel that can be had from neither fails
 * the call naming each missing entry ("name version (filename)"), never
 * with another version; -EBADMSG when one was fetched but its bytes are
 * not those locked (a corrupt or changed file whose page still gives the
 * lock's sha256, a refused wheel: "… could not be installed from the
 * store or the index: …"). Errors carry a message for the user. */
int pkg_env_from_lock(const PkgEnvOptions *o, const PkgLock *lock, PkgEnv **ret_env, char **ret_error);

/* Removes the set-aside records of the environment key (a record written
 * again while a process held it keeps its old file under a second name,
 * envs/.held-<key>-<random>.json, for its holders) that no process holds
 * any more: its holders call it when they let go of such a file, so they
 * do not pile up until the next `env prune`. One that is still held
 * (flock) stays. Errors are ignored: prune removes what is left. */
void pkg_env_held_sweep(const char *data_dir, const char *key);

typedef struct PkgEnvInfo {
        char *key;
        char **requirements;
        char **packages;       /* "name==version", the lock's order */
        uint64_t size_bytes;   /* of its store dirs */
        uint64_t last_used;    /* realtime, microseconds */
        bool in_use;
        /* Installed from a given lock (pkg_env_from_lock: a deployed
         * version's), not resolved from requirements, which it shares
         * with its deploy's resolution. */
        bool pinned;
} PkgEnvInfo;
/* All environment records under data_dir this binary reads, most recently
 * used first (another release's or a damaged one is not listed). */
int pkg_env_list(const char *data_dir, PkgEnvInfo **ret_infos, size_t *ret_n, char **ret_error);
void pkg_env_info_free_many(PkgEnvInfo *infos, size_t n);
/* info as the API's environment object (docs/api.md GET /v1/envs):
 * {key, kind ("resolved", or "pinned" for a deployed version's lock),
 * requirements, packages, size_bytes, last_used (null when unknown),
 * in_use}.
 * One place for the daemon's answer and the CLI's `env ls`. NULL only for
 * text that is not UTF-8. Caller decrefs. */
struct json_t *pkg_env_info_json(const PkgEnvInfo *info);
/* One package of the store pkg_store_verify() found damaged. */
typedef struct PkgDamaged {
        char *sha256;  /* its store dir's name: the wheel's sha256 */
        char *name;    /* from its .dist-info; NULL when unknown */
        char *version; /* NULL when unknown */
        char *problem; /* pkg_wheel_verify_installed()'s */
        bool removed;  /* repair removed it */
} PkgDamaged;
void pkg_damaged_free_many(PkgDamaged *d, size_t n);
/* Checks every package installed in <data_dir>/store (each store dir,
 * pkg_wheel_verify_installed()); the damaged ones in *ret_damaged, sorted
 * by name, version and sha256. With repair each is removed (moved aside,
 * then emptied, as prune removes one, once no installer holds its wheel
 * lock: waited for): the next run of an environment
 * naming it installs it again from its lock. *ret_checked: how many
 * packages were checked. */
int pkg_store_verify(const char *data_dir, bool repair, size_t *ret_checked, PkgDamaged **ret_damaged,
                     size_t *ret_n_damaged, char **ret_error);
/* A number that changes each time pkg_store_verify() with repair removes
 * a package from <data_dir>/store (0: none ever did) — before it removes
 * any and after each one it moved aside, so a repair killed half-way has
 * changed it too: whoever remembers
 * which store dirs an environment has without looking (the engine's
 * pinned environments) compares it, one stat(), and looks again when it
 * changed. A repair may run in another process (`pysprinter env verify
 * --repair` beside a running daemon), and it removes dirs whoever holds
 * them. */
uint64_t pkg_store_repair_stamp(const char *data_dir);
/* Removes least recently used environments (never one in use) until the
 * store fits budget_bytes, and those not used for max_idle_usec (0: no
 * such rule; last use: the record's mtime), then every store dir no
 * remaining environment references. A record it cannot read (another release's format, or
 * damaged) is never removed, and keeps every store dir and cached wheel
 * whose sha256 its text names (all of them when its text cannot be read).
 * A store dir goes under its wheel lock, and only if no record names it
 * once that lock is held (an environment recorded meanwhile keeps it; one
 * an installer holds is left). Reports what it freed; dry_run: what it
 * would remove and free at this moment, removing nothing. */
int pkg_env_prune(const char *data_dir, uint64_t budget_bytes, uint64_t max_idle_usec, bool dry_run,
                  uint64_t *ret_freed_bytes, size_t *ret_removed_envs, char **ret_error);
