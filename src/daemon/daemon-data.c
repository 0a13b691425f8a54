/* The data API: /v1/data[/{name}[/content]] (docs/api.md "Datasets").
 *
 * Datasets are the tenant's: every call passes the caller's tenant to the
 * catalog, so another tenant's dataset is simply not found (404). Uploads
 * arrive whole in the request body (the router caps it at
 * server.max_body_bytes), are staged in a private directory under the
 * daemon's data directory and handed to data_put(), which applies the
 * per-dataset and per-tenant caps. */
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <sys/stat.h>

#include "daemon.h"
#include "data.h"

/* ---- datasets --------------------------------------------------------------- */

static json_t *time_or_null(usec_t t) {
        char buf[32];
        return t ? json_string(format_timestamp(t, buf)) : json_null();
}

static json_t *record_json(const DatasetRecord *r) {
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(r->name));
        json_object_set_new(j, "kind", json_string(r->kind ? r->kind : "file"));
        /* A local path a file was put from is the daemon's staging path:
         * meaningless to the client, so only URLs are shown. */
        json_object_set_new(j, "source",
                            r->source && data_source_is_url(r->source) ? json_string(r->source) : json_null());
        json_object_set_new(j, "version", json_integer(r->current));
        json_object_set_new(j, "versions", json_integer(r->n_versions));
        json_object_set_new(j, "hash", r->hash ? json_string(r->hash) : json_null());
        json_object_set_new(j, "size", json_integer((json_int_t) r->size));
        json_object_set_new(j, "files", json_integer((json_int_t) r->files));
        json_object_set_new(j, "created_at", time_or_null(r->created));
        return j;
}

static json_t *info_json(const DataInfo *i) {
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(i->name));
        json_object_set_new(j, "version", json_integer(i->version));
        json_object_set_new(j, "hash", json_string(i->hash ? i->hash : ""));
        json_object_set_new(j, "size", json_integer((json_int_t) i->size));
        json_object_set_new(j, "files", json_integer((json_int_t) i->files));
        json_object_set_new(j, "kind", json_string(i->kind ? i->kind : "file"));
        json_object_set_new(j, "source",
                            i->source && data_source_is_url(i->source) ? json_string(i->source) : json_null());
        if (i->file) {
                const char *slash = strrchr(i->file, '/');
                json_object_set_new(j, "filename", json_string(slash ? slash + 1 : i->file));
        }
        return j;
}

static struct MHD_Response *data_errno(int r, const char *name, const char *err, unsigned *ret_status) {
        /* The data module's -EIO is a URL that could not be fetched: the
         * upstream's failure (502), like a refused connection. */
        if (r == -EIO)
                r = -EHOSTUNREACH;
        const char *code;
        unsigned status = daemon_errno_status(r, &code);
        if (err)
                return daemon_error_response(status, code, ret_status, "%s", err);
        switch (r) {
        case -ENOENT:
                return daemon_error_response(status, code, ret_status, "dataset not found");
        case -ENOSPC:
                return daemon_error_response(status, code, ret_status, "no space left on the daemon's disk (ENOSPC)");
        default:
                return daemon_error_response(status, code, ret_status, "dataset %s: %s", name, strerror(-r));
        }
}

static int parse_version_query(const DaemonCall *call, int *ret) {
        const char *v = daemon_call_query(call, "version");
        *ret = 0;
        if (!v)
                return 0;
        char *end;
        unsigned long x = strtoul(v, &end, 10);
        if (*end || end == v || x < 1 || x > INT32_MAX)
                return -EINVAL;
        *ret = (int) x;
        return 0;
}

static char *ref_of(const char *name, int version) {
        return version > 0 ? xasprintf("%s@%d", name, version) : xstrdup(name);
}

static bool upload_name_valid(const char *s) {
        return s && *s && strlen(s) <= 255 && !strchr(s, '/') && !streq(s, ".") && !streq(s, "..");
}

/* {"url": "https://…"} with Content-Type application/json is a URL source;
 * any other body is the dataset's single file. */
static char *url_of_body(const DaemonCall *call) {
        const char *ct = MHD_lookup_connection_value(call->conn, MHD_HEADER_KIND, "Content-Type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0 || call->body_len == 0)
                return NULL;
        json_t *j = json_loadb(call->body, call->body_len, JSON_REJECT_DUPLICATES, NULL);
        char *url = NULL;
        if (json_is_object(j) && json_object_size(j) == 1 && json_is_string(json_object_get(j, "url")))
                url = xstrdup(json_string_value(json_object_get(j, "url")));
        json_decref(j);
        return url;
}

static struct MHD_Response *handle_put(const DaemonCall *call, const char *name, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_free_ char *err = NULL, *url = url_of_body(call);
        DataInfo *info = NULL;
        int r;

        if (url) {
                if (!data_source_is_url(url))
                        return daemon_error_response(400, "bad_request", ret_status,
                                                     "field 'url' must be an http:// or https:// URL");
                r = data_put(d->catalog, call->tenant, name, url, &info, &err);
        } else {
                const char *fname = daemon_call_query(call, "filename");
                if (!fname)
                        fname = name;
                if (!upload_name_valid(fname))
                        return daemon_error_response(400, "bad_request", ret_status,
                                                     "query 'filename' must be a plain file name (no '/', not '..')");
                r = data_put_bytes(d->catalog, call->tenant, name, fname, call->body, call->body_len, &info, &err);
        }
        if (r < 0)
                return data_errno(r, name, err, ret_status);
        /* In a cluster the content stays here: peers fetch it by hash. */
        daemon_cluster_object_held(d, info->hash);
        json_t *j = info_json(info);
        bool is_new = info->is_new;
        json_object_set_new(j, "new_version", json_boolean(is_new));
        data_info_free(info);
        return daemon_json_response(is_new ? 201 : 200, j, ret_status);
}

static struct MHD_Response *handle_list(const DaemonCall *call, unsigned *ret_status) {
        DatasetRecord **v = NULL;
        size_t n = 0;
        int r = data_list(call->d->catalog, call->tenant, &v, &n);
        if (r < 0)
                return data_errno(r, "-", NULL, ret_status);
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, record_json(v[i]));
        dataset_record_list_free(v, n);
        return daemon_json_response(200, json_pack("{so}", "datasets", a), ret_status);
}

/* The dataset the call names at its ?version= (0: the current one), for
 * reading; NULL with *ret_resp the answer when it cannot be had. */
static DataInfo *dataset_for_read(const DaemonCall *call, const char *name, char **ret_warning,
                                  struct MHD_Response **ret_resp, unsigned *ret_status) {
        _cleanup_free_ char *err = NULL, *ref = NULL;
        int version;
        if (parse_version_query(call, &version) < 0) {
                *ret_resp = daemon_error_response(400, "bad_request", ret_status,
                                                  "query 'version' must be a positive integer");
                return NULL;
        }
        ref = ref_of(name, version);
        DataInfo *info = NULL;
        int r = data_use(call->d->catalog, call->tenant, ref, &info, ret_warning, &err);
        if (r < 0) {
                *ret_resp = data_errno(r, name, err, ret_status);
                return NULL;
        }
        return info;
}

static struct MHD_Response *handle_get(const DaemonCall *call, const char *name, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_free_ char *warning = NULL;
        struct MHD_Response *resp = NULL;
        DataInfo *info = dataset_for_read(call, name, &warning, &resp, ret_status);
        if (!info)
                return resp;
        json_t *j = info_json(info);
        data_info_free(info);
        if (warning)
                json_object_set_new(j, "warning", json_string(warning));
        DatasetVersion *vv = NULL;
        size_t nv = 0;
        json_t *a = json_array();
        if (data_versions(d->catalog, call->tenant, name, &vv, &nv) >= 0) {
                for (size_t i = 0; i < nv; i++)
                        json_array_append_new(a, json_pack("{s:i, s:s, s:I, s:I, s:o}", "version", vv[i].version, "hash",
                                                           vv[i].hash ? vv[i].hash : "", "size", (json_int_t) vv[i].size,
                                                           "files", (json_int_t) vv[i].files, "created_at",
                                                           time_or_null(vv[i].created)));
                dataset_version_list_free(vv, nv);
        }
        DatasetRecord *rec = NULL;
        if (data_dataset_get(d->catalog, call->tenant, name, &rec) >= 0) {
                json_object_set_new(j, "current_version", json_integer(rec->current));
                dataset_record_free(rec);
        }
        json_object_set_new(j, "versions", a);
        return daemon_json_response(200, j, ret_status);
}

static struct MHD_Response *handle_content(const DaemonCall *call, const char *name, unsigned *ret_status) {
        _cleanup_free_ char *warning = NULL;
        struct MHD_Response *resp = NULL;
        DataInfo *info = dataset_for_read(call, name, &warning, &resp, ret_status);
        if (!info)
                return resp;
        if (!info->file) {
                data_info_free(info);
                return daemon_error_response(409, "conflict", ret_status,
                                             "dataset %s is a directory; only single-file datasets download", name);
        }
        int fd = open(info->file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                int r = -errno;
                if (fd >= 0)
                        close(fd);
                data_info_free(info);
                return data_errno(r, name, NULL, ret_status);
        }
        /* MHD owns fd from here and streams it (datasets may be large). */
        resp = MHD_create_response_from_fd((size_t) st.st_size, fd);
        if (!resp) {
                close(fd);
                data_info_free(info);
                return NULL;
        }
        const char *slash = strrchr(info->file, '/');
        _cleanup_free_ char *disp = xasprintf("attachment; filename=\"%s\"", slash ? slash + 1 : info->file);
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", info->version);
        MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
        MHD_add_response_header(resp, "Content-Disposition", disp);
        MHD_add_response_header(resp, "X-Pysprinter-Data-Version", ver);
        MHD_add_response_header(resp, "ETag", info->hash ? info->hash : "");
        if (warning)
                MHD_add_response_header(resp, "Warning", "110 - \"revalidation failed; cached version\"");
        data_info_free(info);
        *ret_status = 200;
        return resp;
}

static struct MHD_Response *handle_delete(const DaemonCall *call, const char *name, unsigned *ret_status) {
        _cleanup_free_ char *err = NULL, *ref = NULL;
        int version;
        if (parse_version_query(call, &version) < 0)
                return daemon_error_response(400, "bad_request", ret_status, "query 'version' must be a positive integer");
        ref = ref_of(name, version);
        int r = data_remove(call->d->catalog, call->tenant, ref, &err);
        if (r < 0)
                return data_errno(r, name, err, ret_status);
        return daemon_json_response(200, json_pack("{s:s, s:b}", "name", name, "deleted", true), ret_status);
}

struct MHD_Response *daemon_data_handle(const DaemonCall *call, unsigned *ret_status) {
        const char *m = call->method;
        bool get = streq(m, "GET") || streq(m, "HEAD");

        if (!call->d->catalog)
                return daemon_error_response(503, "unavailable", ret_status, "the data catalog is not open");
        if (call->n_seg == 2)
                return handle_list(call, ret_status);
        const char *name = call->seg[2];
        if (!data_name_valid(name))
                return daemon_error_response(400, "bad_request", ret_status,
                                             "'%s' is not a dataset name ([A-Za-z0-9][A-Za-z0-9._-]*, at most %d bytes)",
                                             name, DATA_NAME_MAX);
        if (call->n_seg == 4)
                return handle_content(call, name, ret_status);
        if (get)
                return handle_get(call, name, ret_status);
        if (streq(m, "PUT"))
                return handle_put(call, name, ret_status);
        return handle_delete(call, name, ret_status);
}
