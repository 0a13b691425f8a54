/* Task files: where a pipeline may read them from. The one copy of the
 * path rule for pipelines confined to their directory (the daemon's, and
 * what `dag run --server` uploads), and the loaders dag_parse_with() takes. */
#include <assert.h>
#include <limits.h>
#include <stdlib.h>

#include "dag-internal.h"

#define DAG_MAX_FILE_NAME 1024

/* The lexical half: relative, no empty/"."/".." component, no trailing '/',
 * no newline (it would forge lines in messages and logs). */
static bool file_name_inside(const char *p) {
        if (!p || !*p || *p == '/' || strlen(p) > DAG_MAX_FILE_NAME || strchr(p, '\n'))
                return false;
        for (const char *s = p; *s;) {
                size_t n = strcspn(s, "/");
                if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return false;
                s += n;
                if (*s == '/')
                        s++;
        }
        return !endswith(p, "/");
}

int dag_file_check(const char *base_dir, const char *file, char **ret_error) {
        assert(ret_error);
        if (!file_name_inside(file)) {
                *ret_error = xasprintf("task file '%.200s' must be a relative path inside the pipeline's directory "
                                       "(no '/' at the start, no '.' or '..' components)",
                                       file ?: "");
                return -EINVAL;
        }
        if (!base_dir)
                return 0;
        /* The lexical rule does not see symlinks: compare real paths. */
        _cleanup_free_ char *real_base = realpath(base_dir, NULL);
        if (!real_base) {
                int r = -errno;
                *ret_error = xasprintf("cannot resolve the pipeline's directory: %s", strerror(-r));
                return r;
        }
        _cleanup_free_ char *path = path_join(base_dir, file);
        _cleanup_free_ char *real = realpath(path, NULL);
        if (!real) {
                int r = -errno;
                *ret_error = xasprintf("cannot read %s: %s", file, strerror(-r));
                return r;
        }
        size_t nb = strlen(real_base);
        if (streq(real_base, "/"))
                nb = 0; /* every path is inside "/", after its '/' */
        if (!strneq(real, real_base, nb) || real[nb] != '/') {
                *ret_error = xasprintf("task file '%s' resolves outside the pipeline's directory (a relative path "
                                       "inside it is required)",
                                       file);
                return -EINVAL;
        }
        return 0;
}

int dag_load_any(const char *base_dir, const char *file, void *userdata, char **ret_text, size_t *ret_len,
                 char **ret_error) {
        assert(file && ret_text && ret_len && ret_error);
        _cleanup_free_ char *path = file[0] == '/' ? xstrdup(file) : path_join(base_dir ?: ".", file);
        int r = read_file(path, RUN_MAX_SOURCE_BYTES, ret_text, ret_len);
        if (r < 0)
                *ret_error = xasprintf("cannot read %s: %s", file,
                                       r == -EFBIG ? "larger than the 4 MiB source limit" : strerror(-r));
        return r;
}

int dag_load_confined(const char *base_dir, const char *file, void *userdata, char **ret_text, size_t *ret_len,
                      char **ret_error) {
        int r = dag_file_check(base_dir ?: ".", file, ret_error);
        if (r < 0)
                return r;
        return dag_load_any(base_dir, file, userdata, ret_text, ret_len, ret_error);
}
