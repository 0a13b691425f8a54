/* pkg-internal.h: representations shared by the syntax-layer files of the
 * pkg module. Nothing outside src/pkg/ includes this. */
#pragma once

#include "pkg.h"

/* Input-size caps: every string the syntax layer parses comes from a user
 * or an index, so each parser refuses absurd lengths before working. */
#define PKG_VERSION_MAX 256
#define PKG_NAME_MAX 256
#define PKG_SPECIFIER_MAX 4096
#define PKG_MARKER_MAX 4096
#define PKG_REQUIREMENT_MAX 8192

/* Numbers in versions are kept as digit strings without leading zeros
 * ("0" for zero): PEP 440 puts no bound on them and the reference
 * implementation compares them as Python ints, so we must too. */
int pkg_num_compare(const char *a, const char *b);

typedef enum PkgPreKind {
        PKG_PRE_NONE = -1,
        PKG_PRE_A = 0,
        PKG_PRE_B = 1,
        PKG_PRE_RC = 2,
} PkgPreKind;

struct PkgVersion {
        char *epoch;        /* digits */
        char **release;     /* n_release digit strings, n_release >= 1 */
        size_t n_release;
        PkgPreKind pre;
        char *pre_num;      /* NULL iff pre == PKG_PRE_NONE */
        char *post;         /* NULL if no post-release */
        char *dev;          /* NULL if no dev-release */
        char **local;       /* NULL-terminated segments (lowercase, numeric
                             * ones without leading zeros); NULL if none */
};

/* Parses like pkg_version_parse but with the options the specifier grammar
 * needs: allow_local=false rejects "+local". */
int pkg_version_parse_full(const char *s, bool allow_local, PkgVersion **ret);
/* Compares only epoch and release (base_version in `packaging`). */
int pkg_version_compare_base(const PkgVersion *a, const PkgVersion *b);
bool pkg_version_is_postrelease(const PkgVersion *v);
bool pkg_version_has_local(const PkgVersion *v);
/* Compare ignoring b's local segment and a's local segment (public parts). */
int pkg_version_compare_public(const PkgVersion *a, const PkgVersion *b);

/* Normalised marker text (PEP 508 variable names, double-quoted strings,
 * parentheses only where needed). Caller frees. */
char *pkg_marker_to_string(const PkgMarker *m);
