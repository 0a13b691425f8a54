/* Requirements -> the environment's store dirs.
 *
 * The package manager (DESIGN §4) is not in this build yet: a run with
 * requirements fails with exit 4 and says so. Packages are never installed
 * any other way (no pip, no host site-packages). */
#include "engine-internal.h"

int engine_resolve_env(Engine *e, PkgRequirement **reqs, size_t n_reqs, const char *run_id,
                       RunEventFn fn, void *userdata, char ***ret_sys_path, char **ret_error) {
        if (n_reqs == 0) {
                *ret_sys_path = xcalloc(1, sizeof(char *));
                return 0;
        }
        Buf b;
        buf_init(&b, 4096);
        for (size_t i = 0; i < n_reqs; i++) {
                _cleanup_free_ char *s = pkg_requirement_to_string(reqs[i]);
                buf_printf(&b, "%s%s", i ? ", " : "", s);
        }
        *ret_error = xasprintf("packages cannot be installed yet (requested: %s); "
                               "this build has no package manager", b.data);
        buf_free(&b);
        return -EOPNOTSUPP;
}
