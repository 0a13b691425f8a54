/* The data API: /v1/data[/{name}[/content]] (docs/api.md "Datasets").
 *
 * Datasets are the tenant's: every call passes the caller's tenant to the
 * catalog, so another tenant's dataset is simply not found (404). Uploads
 * stream to a staging file under the catalog as they arrive (the route's
 * body sink, daemon_data_upload_sink): never held in memory, capped by
 * data.max_bytes rather than server.max_body_bytes. A body of
 * Content-Type application/x-tar is a directory, unpacked safely
 * (data_tar_extract) into staging; any other is the dataset's one file.
 * A directory dataset downloads as a tar produced while it is sent. */
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
                json_object_set_new(j, "filename", json_string(path_base_name(i->file)));
        }
        return j;
}

static struct MHD_Response *data_errno(int r, const char *name, const char *err, unsigned *ret_status) {
        /* The data module's -EIO is a URL that could not be fetched: the
         * upstream's failure (502), like a refused connection. */
        if (r == -EIO)
                r = -EHOSTUNREACH;
        /* More files than a version may hold: a refused request (400). */
        if (r == -EMFILE)
                r = -EINVAL;
        const char *code;
        unsigned status = daemon_errno_status(r, &code);
        /* A URL the daemon would not fetch (an address its policy
         * refuses) is no fault of the token: its own code, so a client
         * says what happened ("refused to fetch …: 127.0.0.1 is a
         * loopback address"), not "the token lacks the right". */
        if (r == -EACCES && err)
                code = "url_refused";
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

static bool content_type_is(const DaemonCall *call, const char *type) {
        const char *ct = daemon_call_header(call, "Content-Type");
        size_t n = strlen(type);
        return ct && strncasecmp(ct, type, n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* ---- streamed uploads (DaemonBodySink) ---- */

static int upload_begin(const DaemonCall *call, void **ret_sink, char **ret_error) {
        *ret_sink = NULL;
        /* {"url": …} is small: buffered as any JSON body. */
        if (!streq(call->method, "PUT") || call->n_seg != 3 || !call->d->catalog ||
            content_type_is(call, "application/json"))
                return 0;
        if ((*ret_error = data_name_error(call->seg[2])))
                return -EINVAL;
        const char *fname = daemon_call_query(call, "filename");
        if (fname && (*ret_error = data_file_name_error(fname))) /* before the body is stored */
                return -EINVAL;
        DataUpload *u = NULL;
        int r = data_upload_new(call->d->catalog, &u, ret_error);
        if (r < 0)
                return r;
        /* An announced oversized body is refused before a byte is read. */
        const char *cl = daemon_call_header(call, "Content-Length");
        char *end;
        unsigned long long x = cl ? strtoull(cl, &end, 10) : 0;
        if (cl && *end == 0 && data_upload_max_bytes(u) && x > data_upload_max_bytes(u)) {
                *ret_error = xasprintf("request body of %llu bytes is larger than the dataset cap of %llu bytes "
                                       "(data.max_bytes)",
                                       x, (unsigned long long) data_upload_max_bytes(u));
                data_upload_free(u);
                return -EFBIG;
        }
        *ret_sink = u;
        return 0;
}

static int upload_write(void *sink, const void *data, size_t len) {
        return data_upload_write(sink, data, len);
}

static void upload_end(void *sink) {
        data_upload_free(sink);
}

const DaemonBodySink daemon_data_upload_sink = {
        .begin = upload_begin,
        .write = upload_write,
        .end = upload_end,
};

static struct MHD_Response *handle_put(const DaemonCall *call, const char *name, unsigned *ret_status) {
        Daemon *d = call->d;
        _cleanup_free_ char *err = NULL, *url = call->upload ? NULL : url_of_body(call);
        DataInfo *info = NULL;
        int r;
        bool tar = content_type_is(call, "application/x-tar");

        if (tar && !call->upload)
                return daemon_error_response(400, "bad_request", ret_status, "an application/x-tar body must be streamed");
        if (tar)
                r = data_upload_commit(call->upload, call->tenant, name, NULL, &info, &err);
        else if (url) {
                if (!data_source_is_url(url))
                        return daemon_error_response(400, "bad_request", ret_status,
                                                     "field 'url' must be an http:// or https:// URL");
                r = data_put(d->catalog, call->tenant, name, url, &info, &err);
        } else {
                const char *fname = daemon_call_query(call, "filename");
                if (!fname)
                        fname = name;
                _cleanup_free_ char *bad = data_file_name_error(fname);
                if (bad)
                        return daemon_error_response(400, "bad_request", ret_status, "%s", bad);
                r = call->upload ? data_upload_commit(call->upload, call->tenant, name, fname, &info, &err)
                                 : data_put_bytes(d->catalog, call->tenant, name, fname, call->body, call->body_len,
                                                  &info, &err);
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
        json_t *j = json_pack("{so}", "datasets", a);
        /* What the tenant keeps in the daemon against its storage cap
         * (daemon-quota.c): two sums over the tenant's rows. */
        StoredUsage u = {};
        if (daemon_stored_usage(call->d, call->tenant, &u) >= 0) {
                pthread_rwlock_rdlock(&call->d->cfg_lock);
                uint64_t cap = daemon_stored_cap(&call->d->cfg, call->tenant, NULL);
                pthread_rwlock_unlock(&call->d->cfg_lock);
                json_object_set_new(j, "storage",
                                    json_pack("{sIsIsIsI}", "used_bytes", (json_int_t) (u.data_bytes + u.code_bytes),
                                              "data_bytes", (json_int_t) u.data_bytes, "code_bytes",
                                              (json_int_t) u.code_bytes, "max_bytes", (json_int_t) cap));
        }
        return daemon_json_response(200, j, ret_status);
}

/* The dataset the call names at its ?version= (0: the current one), for
 * reading; NULL with *ret_resp the answer when it cannot be had. With
 * ret_holds, its content is held until they are released (data_use_held():
 * a download that a `data rm` cut short). */
static DataInfo *dataset_for_read(const DaemonCall *call, const char *name, char **ret_warning, DataHolds **ret_holds,
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
        int r = ret_holds ? data_use_held(call->d->catalog, call->tenant, ref, &info, ret_holds, ret_warning, &err)
                          : data_use(call->d->catalog, call->tenant, ref, &info, ret_warning, &err);
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
        DataInfo *info = dataset_for_read(call, name, &warning, NULL, &resp, ret_status);
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

typedef struct TarRead {
        DataTarStream *s;
        struct MHD_Connection *conn; /* cut when the tree cannot be read */
        DataHolds *holds;            /* the tree stays while it is sent */
} TarRead;

static ssize_t tar_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        TarRead *t = cls;
        ssize_t n = data_tar_stream_read(t->s, buf, max);
        return n > 0 ? n : n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : daemon_stream_cut(t->conn, buf, max);
}

static void tar_reader_free(void *cls) {
        TarRead *t = cls;
        data_tar_stream_free(t->s);
        data_holds_release(t->holds);
        free(t);
}

static void content_headers(struct MHD_Response *resp, const DataInfo *info, const char *type, const char *filename,
                            const char *warning) {
        _cleanup_free_ char *disp = xasprintf("attachment; filename=\"%s\"", filename);
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", info->version);
        MHD_add_response_header(resp, "Content-Type", type);
        MHD_add_response_header(resp, "Content-Disposition", disp);
        MHD_add_response_header(resp, "X-Pysprinter-Data-Version", ver);
        MHD_add_response_header(resp, "ETag", info->hash ? info->hash : "");
        if (warning)
                MHD_add_response_header(resp, "Warning", "110 - \"revalidation failed; cached version\"");
}

/* The version's tree as a tar produced while MHD sends it (a dataset may
 * be GiBs: never a whole buffer). Takes info and holds. */
static struct MHD_Response *tar_response(struct MHD_Connection *conn, DataInfo *info, DataHolds *holds,
                                         const char *warning, unsigned *ret_status) {
        DataTarStream *s = NULL;
        int r = data_tar_stream_new(info->path, &s, NULL);
        if (r < 0) {
                struct MHD_Response *resp = data_errno(r, info->name, NULL, ret_status);
                data_info_free(info);
                data_holds_release(holds);
                return resp;
        }
        TarRead *t = xcalloc(1, sizeof(TarRead));
        *t = (TarRead){ .s = s, .conn = conn, .holds = holds };
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, tar_reader, t,
                                                                      tar_reader_free);
        if (!resp) {
                tar_reader_free(t);
                data_info_free(info);
                return NULL;
        }
        _cleanup_free_ char *fname = xasprintf("%s.tar", info->name);
        content_headers(resp, info, "application/x-tar", fname, warning);
        data_info_free(info);
        *ret_status = 200;
        return resp;
}

static struct MHD_Response *handle_content(const DaemonCall *call, const char *name, unsigned *ret_status) {
        _cleanup_free_ char *warning = NULL;
        struct MHD_Response *resp = NULL;
        /* Held until it is sent (an open file is read whole anyway). */
        _cleanup_(data_holds_releasep) DataHolds *holds = NULL;
        DataInfo *info = dataset_for_read(call, name, &warning, &holds, &resp, ret_status);
        if (!info)
                return resp;
        const char *format = daemon_call_query(call, "format");
        const char *accept = daemon_call_header(call, "Accept");
        if (format && !streq(format, "tar")) {
                data_info_free(info);
                return daemon_error_response(400, "bad_request", ret_status, "query 'format' must be 'tar'");
        }
        /* ?format=tar: any dataset as a tar; a directory also when the
         * client accepts one (the CLI's `data get -o` asks for either). */
        if (format || (!info->file && accept && strstr(accept, "application/x-tar")))
                return tar_response(call->conn, info, TAKE_PTR(holds), warning, ret_status);
        if (!info->file) {
                data_info_free(info);
                return daemon_error_response(409, "conflict", ret_status,
                                             "dataset %s is a directory: ask for ?format=tar (or Accept: "
                                             "application/x-tar)", name);
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
        content_headers(resp, info, "application/octet-stream", path_base_name(info->file), warning);
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

/* GET /v1/data/{name}/usage (docs/ui.md "Data"): where the dataset is
 * used — the newest runs that mounted it (?limit=, default 20, at most
 * 200; a DAG task's run names its DAG run and task) and the deployed
 * functions whose invokes among them did. */
struct MHD_Response *daemon_data_usage(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        const char *name = call->seg[2];
        _cleanup_free_ char *bad_name = data_name_error(name);
        if (bad_name)
                return daemon_error_response(400, "bad_request", ret_status, "%s", bad_name);
        if (!d->catalog)
                return daemon_error_response(503, "unavailable", ret_status, "the data catalog is not open");
        /* The catalogue, not the node's SQLite: in a cluster the datasets
         * are Redis's (a gateway's SQLite knows none). */
        DatasetRecord *rec = NULL;
        int k = data_dataset_get(d->catalog, call->tenant, name, &rec);
        if (k == -ENOENT)
                return daemon_error_response(404, "not_found", ret_status, "no dataset '%s'", name);
        if (k < 0)
                return daemon_call_errno(call, k, "dataset", ret_status);
        dataset_record_free(rec);
        /* Usage is the runs table's (each run's request names its
         * datasets). A cluster's runs are Redis records, which keep their
         * request only until they end, and no index of runs by dataset is
         * kept: an empty list would be a wrong answer, so it is refused. */
        if (d->cluster)
                return daemon_error_response(501, "not_implemented", ret_status,
                                             "dataset usage is not recorded in cluster mode: a run's datasets are "
                                             "not kept once it ends (docs/cluster.md)");
        size_t limit;
        struct MHD_Response *bad = daemon_call_query_limit(call, 20, 200, &limit, ret_status);
        if (bad)
                return bad;
        DatasetRunUse *runs = NULL;
        size_t n_runs = 0;
        k = store_dataset_runs(d->store, call->tenant, name, limit, &runs, &n_runs);
        if (k < 0)
                return daemon_call_errno(call, k, "dataset", ret_status);
        json_t *jr = json_array(), *jf = json_array();
        char **fns = NULL;
        for (size_t i = 0; i < n_runs; i++) {
                const DatasetRunUse *u = &runs[i];
                json_array_append_new(jr, json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:o}", "id", u->run_id,
                                                    "status", u->status, "function", u->function, "fn_name",
                                                    u->fn_name, "ref", u->ref, "dag_id", u->dag_id, "task", u->task,
                                                    "created_at", time_or_null(u->created)));
                if (u->fn_name && !strv_contains(fns, u->fn_name))
                        fns = strv_append(fns, u->fn_name);
        }
        for (char **f = fns; f && *f; f++)
                json_array_append_new(jf, json_string(*f));
        strv_free(fns);
        dataset_run_use_list_free(runs, n_runs);
        return daemon_call_json(call, 200, json_pack("{s:s, s:o, s:o}", "name", name, "runs", jr, "functions", jf),
                                ret_status);
}

struct MHD_Response *daemon_data_handle(const DaemonCall *call, unsigned *ret_status) {
        const char *m = call->method;
        bool get = streq(m, "GET") || streq(m, "HEAD");

        if (!call->d->catalog)
                return daemon_error_response(503, "unavailable", ret_status, "the data catalog is not open");
        if (call->n_seg == 2)
                return handle_list(call, ret_status);
        const char *name = call->seg[2];
        _cleanup_free_ char *bad = data_name_error(name);
        if (bad)
                return daemon_error_response(400, "bad_request", ret_status, "%s", bad);
        if (call->n_seg == 4)
                return handle_content(call, name, ret_status);
        if (get)
                return handle_get(call, name, ret_status);
        if (streq(m, "PUT"))
                return handle_put(call, name, ret_status);
        return handle_delete(call, name, ret_status);
}
