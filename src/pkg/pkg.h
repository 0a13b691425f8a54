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
 * (name @ url) are rejected: DESIGN §4 policy. */
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

/* The seed's @requirements({key: value}) form. key is a name with optional
 * extras ("requests[socks]"); value is "" (any), a bare version ("2.28.1"
 * means ==2.28.1) or a PEP 440 specifier set (">=2,<3", "~=2.28").
 * Anything else — options ("--index-url=…"), paths, URLs, whitespace, ';',
 * '@' in the key; an invalid specifier in the value — is -EINVAL with a
 * message naming the offending key/value. */
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

/* Parse a wheel filename (PEP 427): name-ver(-build)?-pytag-abitag-plat.whl */
typedef struct PkgWheelName {
        char *name;      /* as in the file name */
        char *version;
        char *build;     /* may be NULL */
        char *python_tag, *abi_tag, *platform_tag;
} PkgWheelName;
int pkg_wheel_name_parse(const char *filename, PkgWheelName **ret);
PkgWheelName *pkg_wheel_name_free(PkgWheelName *w);

/* ---- index, resolver, store (package manager) ---- */
