/* libFuzzer target for the pkg syntax layer: requirement strings (and,
 * through them, specifiers, versions and markers), the seed key/value form
 * and wheel file names. Built with -Dfuzz=true and run by `make fuzz`
 * (seeds in fuzz/seeds/fuzz-requirement/); or by hand:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Isrc/basic -Isrc/pkg fuzz/fuzz-requirement.c src/pkg/pkg-{name,version,specifier,marker,requirement,tags,wheelname}.c \
 *     src/basic/basic-{alloc,buf,fd}.c -o fuzz-requirement
 *   ./fuzz-requirement -max_total_time=60
 *
 * Invariants checked: no crash or leak; a parsed requirement's normal form
 * parses again to the same normal form. */
#include "basic.h"
#include "pkg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL;
        PkgRequirement *r = NULL;
        PkgWheelName *w = NULL;
        char *err = NULL, *tab;

        if (size > 16384)
                return 0;
        s = xstrndup((const char *) data, size);

        if (pkg_requirement_parse(s, &r, &err) >= 0) {
                _cleanup_free_ char *n1 = pkg_requirement_to_string(r), *n2 = NULL;
                PkgRequirement *r2 = NULL;
                if (pkg_requirement_parse(n1, &r2, NULL) < 0)
                        __builtin_trap();
                n2 = pkg_requirement_to_string(r2);
                if (!streq(n1, n2))
                        __builtin_trap();
                pkg_requirement_free(r2);
                if (r->marker) {
                        PkgMarkerEnv env;
                        pkg_marker_env_default(&env, "3.11.2");
                        (void) pkg_marker_evaluate(r->marker, &env, "x");
                }
        }
        r = pkg_requirement_free(r);
        free(err);
        err = NULL;

        /* "key<TAB>value" exercises the seed form. */
        tab = strchr(s, '\t');
        if (tab) {
                *tab = 0;
                if (pkg_requirement_from_seed(s, tab + 1, &r, &err) >= 0)
                        r = pkg_requirement_free(r);
                free(err);
                *tab = '\t';
        }

        if (pkg_wheel_name_parse(s, &w) >= 0)
                pkg_wheel_name_free(w);
        return 0;
}
