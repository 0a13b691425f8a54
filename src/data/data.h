/* data: named, versioned, content-addressed datasets (docs/data.md).
 *
 * A dataset (tenant, NAME) has versions; each version is a content hash and
 * the content lives once under ROOT/objects/<hash>/ as a read-only tree
 * (files 0444, directories 0555) that runs see read-only at /data/NAME —
 * no copy per run. A file put becomes a tree holding that one file under its
 * base name; a URL put, one file named after the URL's last path segment.
 *
 * The hash is sha256 over the tree's sorted listing, one line per entry:
 * "d <relpath>\n" for a directory, "f <relpath> <size> <sha256 of bytes>\n"
 * for a file. Same content, same hash, same version: putting content equal
 * to an existing version makes that version current again.
 *
 * URL sources are fetched with libcurl and revalidated when used (ETag /
 * Last-Modified conditional GET) once their last check is older than the
 * TTL (0: on every use); a failed revalidation keeps the cached version and
 * says so through *ret_warning.
 *
 * Depends on: basic, store (libcurl and libcrypto inside the module only).
 * Thread-safe: a catalog may be used from several threads. */
#pragma once

#include "basic.h"
#include "store.h"

#define DATA_DEFAULT_MAX_DATASET_BYTES (10ULL << 30)
#define DATA_DEFAULT_MAX_TENANT_BYTES (50ULL << 30)
#define DATA_DEFAULT_MAX_FILES 100000ULL
#define DATA_DEFAULT_URL_TIMEOUT_MS (60ULL * 1000)
#define DATA_NAME_MAX 64
/* Levels of directories a dataset's tree may hold. */
#define DATA_MAX_DEPTH 64

typedef struct DataConfig {
        const char *root;            /* where objects/ and tmp/ live, e.g. $PYSPRINTER_HOME/data */
        uint64_t max_dataset_bytes;  /* 0: default; per version */
        uint64_t max_tenant_bytes;   /* 0: default; distinct content a tenant holds */
        uint64_t max_files;          /* 0: default; per version */
        uint64_t url_ttl_sec;        /* revalidate URL sources older than this; 0: on every use */
        uint64_t url_timeout_ms;     /* 0: default */
        /* URL sources: refuse loopback, private, link-local, CGNAT,
         * multicast and unspecified addresses (checked on the address each
         * connection is about to use, redirects included) unless they are in
         * url_allow (CIDRs, copied). The daemon sets it; the CLI, which
         * fetches as its own user, does not. */
        bool url_restrict;
        char *const *url_allow;
        /* The tenant's storage cap in place of max_tenant_bytes (NULL:
         * max_tenant_bytes alone): called with the bytes of distinct
         * content the tenant's versions reference now and the bytes the
         * put adds to them (0 when the tenant holds that content already);
         * < 0 (-EDQUOT, with *ret_error saying what) refuses the put
         * before its content enters the store. Called under the
         * catalog's quota lock (data_catalog_quota_lock), which is held
         * until the version is recorded: two puts never both pass on the
         * room only one of them fits in. */
        int (*quota)(void *userdata, const char *tenant, uint64_t data_bytes, uint64_t adding, char **ret_error);
        void *quota_userdata;
} DataConfig;

/* Fills cfg's zero fields from the environment (PYSPRINTER_DATA_MAX_BYTES,
 * PYSPRINTER_DATA_TENANT_MAX_BYTES, PYSPRINTER_DATA_TTL seconds) and the
 * defaults. root is the caller's to set (it is not owned by cfg), e.g.
 * $PYSPRINTER_HOME/data. */
void data_config_from_env(DataConfig *cfg, const char *home);
/* A tenant's data cap from the environment: PYSPRINTER_DATA_TENANT_MAX_BYTES
 * when it is a number, else DATA_DEFAULT_MAX_TENANT_BYTES; *ret_set (may
 * be NULL) says which. */
uint64_t data_tenant_max_bytes_from_env(bool *ret_set);

typedef struct DataCatalog DataCatalog;

/* The catalog keeps a reference to store (not owned). */
int data_catalog_new(Store *store, const DataConfig *cfg, DataCatalog **ret, char **ret_error);
DataCatalog *data_catalog_free(DataCatalog *c);
/* Replaces the URL allow-list (CIDRs, copied; see DataConfig.url_allow):
 * fetches that start afterwards use it, one under way keeps the list it
 * started with (SIGHUP). */
void data_catalog_set_url_allow(DataCatalog *c, char *const *url_allow);

/* The lock a put holds from its quota check (DataConfig.quota) until its
 * version is recorded. Another writer of what the same quota counts (the
 * daemon's function deploys) takes it around its own check and write. */
void data_catalog_quota_lock(DataCatalog *c);
void data_catalog_quota_unlock(DataCatalog *c);
/* The bytes of distinct content tenant's dataset versions reference (what
 * the quota counts of datasets). */
int data_tenant_bytes(DataCatalog *c, const char *tenant, uint64_t *ret);

/* NAME: [A-Za-z0-9][A-Za-z0-9._-]*, at most DATA_NAME_MAX bytes. */
bool data_name_valid(const char *name);
/* NULL when name is a dataset name, else what to say (caller frees): the
 * one wording of the CLI, the daemon and the API. */
char *data_name_error(const char *name);
/* A tree a dataset cannot hold, by why (what the tree walkers return):
 * -ELOOP a symlink, -EPERM a device, FIFO or socket, -EILSEQ a name
 * holding a newline (the hash listing is line based), -ENAMETOOLONG
 * directories nested past DATA_MAX_DEPTH. The one wording of each, for
 * source (the path the user gave) and bad (the entry, relative to it); NULL
 * for any other r. */
char *data_tree_error(int r, const char *source, const char *bad);
/* NULL when filename may name a single-file dataset's file (a plain name:
 * no '/', not "." or "..", at most 255 bytes, UTF-8, no control
 * character), else what to say (caller frees): the one rule of --as, a
 * file put's own name and a daemon's ?filename=. */
char *data_file_name_error(const char *filename);
/* NULL when source names something to put (a path or URL), else what to
 * say (caller frees): one wording embedded and through a daemon. */
char *data_source_error(const char *source);
/* "NAME" or "NAME@VERSION" -> name and version (0: current). -EINVAL. */
int data_parse_ref(const char *ref, char **ret_name, int *ret_version);
/* True for http:// and https:// sources. */
bool data_source_is_url(const char *source);

struct sockaddr;
/* "ADDRESS" or "ADDRESS/PREFIX" (IPv4 or IPv6): 0, or -EINVAL. */
int data_cidr_valid(const char *cidr);
/* The URL-source address policy (DataConfig.url_restrict): true for public
 * unicast addresses and for any address inside one of allow's CIDRs (NULL:
 * none). IPv4-mapped, IPv4-compatible and NAT64 IPv6 addresses are judged
 * by the IPv4 address they carry. ret_why (may be NULL) names the refused
 * class ("loopback", "private", …). */
bool data_address_allowed(const struct sockaddr *sa, char *const *allow, const char **ret_why);

typedef struct DataInfo {
        char *name;
        int version;
        char *hash;
        uint64_t size, files;
        char *kind;     /* "file", "dir", "url" */
        char *source;
        char *path;     /* the read-only content directory */
        char *file;     /* for single-file datasets: the one file's path */
        bool is_new;    /* data_put: the content was not a version before */
} DataInfo;
DataInfo *data_info_free(DataInfo *d);

/* Stores the content of source (a file, a directory, or an http(s) URL) as
 * the current version of (tenant, name). -EFBIG / -EDQUOT past the caps,
 * data_tree_error()'s codes for a tree it cannot hold, -ENOENT for a
 * missing path; *ret_error says what and where. */
int data_put(DataCatalog *c, const char *tenant, const char *name, const char *source, DataInfo **ret,
             char **ret_error);
/* Stores data (len bytes, one file named filename) as a new version of
 * (tenant, name), like data_put() of a file: written once into the
 * catalog's staging directory (the objects' file system) and moved in with
 * one rename, so an upload needs its size in free space, not twice it.
 * -EFBIG over the cap, -ENOSPC with "no space left" in *ret_error. */
int data_put_bytes(DataCatalog *c, const char *tenant, const char *name, const char *filename, const void *data,
                   size_t len, DataInfo **ret, char **ret_error);
/* A streamed upload (the daemon's PUT /v1/data/{name}): bytes are
 * written as they arrive to a private staging file under the catalog's
 * tmp/ (never held in memory), then committed as a single file or as a
 * tar of a directory. data_upload_write() returns -EFBIG past the
 * per-version cap (max_dataset_bytes) and writes nothing more; whatever
 * was not committed is removed by data_upload_free() (a client that went
 * away leaves nothing behind). */
typedef struct DataUpload DataUpload;
int data_upload_new(DataCatalog *c, DataUpload **ret, char **ret_error);
int data_upload_write(DataUpload *u, const void *data, size_t len);
/* The cap data_upload_write() enforces, in bytes. */
uint64_t data_upload_max_bytes(const DataUpload *u);
/* Stores what was uploaded as the current version of (tenant, name):
 * with filename (a plain file name) as that one file; with filename NULL
 * as a tar of a directory, unpacked by data_tar_extract() under the
 * catalog's caps (-EINVAL for a refused member, -EFBIG / -EMFILE past the
 * caps, *ret_error saying which). Works once; u is still freed by the
 * caller. */
int data_upload_commit(DataUpload *u, const char *tenant, const char *name, const char *filename, DataInfo **ret,
                       char **ret_error);
DataUpload *data_upload_free(DataUpload *u);

/* ---- tar streams of a directory (data-tar.c) ---- */

/* A tar (pax) of the tree at dir, produced as it is read: at most a few
 * 64 KiB chunks in memory whatever the tree's size. Only regular files
 * and directories: data_tree_error()'s codes for what it cannot hold
 * (*ret_path, may be NULL, names it). */
typedef struct DataTarStream DataTarStream;
int data_tar_stream_new(const char *dir, DataTarStream **ret, char **ret_path);
/* Up to len next bytes of the archive; 0 at its end; a negative errno. */
ssize_t data_tar_stream_read(DataTarStream *s, void *buf, size_t len);
DataTarStream *data_tar_stream_free(DataTarStream *s);

typedef struct DataTarCaps {
        uint64_t max_files;     /* 0: no cap */
        uint64_t max_bytes;     /* 0: no cap */
} DataTarCaps;
/* Unpacks the tar (optionally gzip'd) read from fd into the new directory
 * dst, refusing what could reach outside it or is no plain data: absolute
 * paths, '..' components, symlinks, devices/FIFOs, hard links to anything
 * but an earlier member. -EINVAL for such a member or a damaged archive,
 * -EMFILE over max_files, -EFBIG over max_bytes, with *ret_error; on any
 * failure dst is removed. */
int data_tar_extract(int fd, const char *dst, const DataTarCaps *caps, char **ret_error);
/* data_tar_extract() into a temporary directory beside out_path, then
 * renamed to out_path when that does not exist or is an empty directory,
 * else merged into it as data_export() does (-EEXIST for a name it holds
 * already). */
int data_tar_unpack_to(int fd, const char *out_path, const DataTarCaps *caps, char **ret_error);

/* data_put, with a single file stored under filename (a plain file name;
 * NULL: the source's own name). Runs see it as /data/NAME/FILENAME. */
int data_put_as(DataCatalog *c, const char *tenant, const char *name, const char *source, const char *filename,
                DataInfo **ret, char **ret_error);

/* A run's output dir stored as the next version of (tenant, name): the
 * engine's RunSpec.store_output with userdata a DataOutput (docs/data.md
 * "Outputs"). Content-addressed like any directory put: the same files
 * give the same hash (and, unchanged since the current version, no new
 * version). *ret_outputs_json is {"NAME": VERSION}. data_put()'s errors. */
typedef struct DataOutput {
        DataCatalog *catalog;
        const char *tenant;      /* NULL: "local" */
        const char *name;
        int version;             /* out: the version stored */
        char *hash;              /* out: its content hash (caller frees) */
} DataOutput;
int data_store_output(const char *dir, void *userdata, char **ret_outputs_json, char **ret_error);

/* Resolves "NAME[@VERSION]" for a run or a download. A URL dataset asked
 * for its current version is revalidated first (subject to the TTL); when
 * that fails the cached version is returned and *ret_warning (may be NULL)
 * says so. -ENOENT when there is no such dataset or version. */
int data_use(DataCatalog *c, const char *tenant, const char *ref, DataInfo **ret, char **ret_warning,
             char **ret_error);
/* What data_use() answers for ref when the catalog holds no dataset of
 * that name: -EINVAL and "'REF' is not a dataset reference…" when ref does
 * not parse, else -ENOENT and "no dataset named 'NAME' (add it with: …)"
 * in *ret_error. An empty catalog's answer in one place: the CLI gives it
 * in a home that has no database, without opening one. */
int data_ref_unknown(const char *ref, char **ret_error);
/* What data_remove() answers for ref when the catalog holds no dataset of
 * that name (or not that version): -EINVAL and "'REF' is not a dataset
 * reference…" when ref does not parse, else -ENOENT and "no dataset named
 * 'NAME'" ("dataset 'NAME' has no version N") in *ret_error. */
int data_remove_unknown(const char *ref, char **ret_error);

/* Copies a version's content out: a single-file dataset to out_path (or into
 * it when it is an existing directory), a directory dataset to the directory
 * out_path (created; must not exist or be empty). */
int data_export(DataCatalog *c, const char *tenant, const char *ref, const char *out_path, char **ret_warning,
                char **ret_error);

/* Removes "NAME" (every version) or "NAME@VERSION"; content no version
 * references any more is deleted. -ENOENT. */
int data_remove(DataCatalog *c, const char *tenant, const char *ref, char **ret_error);

/* Datasets of tenant by name, with their current version's content. */
int data_list(DataCatalog *c, const char *tenant, DatasetRecord ***ret, size_t *ret_n);
int data_versions(DataCatalog *c, const char *tenant, const char *name, DatasetVersion **ret, size_t *ret_n);

/* A run's hold on the content its datasets name: a shared flock(2) on each
 * object's directory from when the mounts resolve until the run ended.
 * Content that data_remove() or the retention gc would delete stays while a
 * hold is on it (they try an exclusive lock first), so a dataset removed
 * while a run reads it stays whole for that run; releasing the last hold
 * deletes content no version references any more. */
typedef struct DataHolds DataHolds;
/* Releases (the fds close: a process that dies releases too) and frees. */
void data_holds_release(DataHolds *h);
static inline void data_holds_releasep(DataHolds **h) {
        data_holds_release(*h);
}

/* data_use() and a hold on the content it names, for a reader that is
 * not a run (`data get`, a daemon's download): a `data rm` meanwhile
 * deletes it only when *ret_holds is released, as for a run. -ENOENT when
 * there is no such dataset or version, also when it was removed between
 * the lookup and the hold. */
int data_use_held(DataCatalog *c, const char *tenant, const char *ref, DataInfo **ret, DataHolds **ret_holds,
                  char **ret_warning, char **ret_error);

/* "NAME=/host/path" for each ref (RunSpec.data), in order, NULL-terminated:
 * the content directory, or for a single-file dataset (a file or a URL put)
 * the file itself, which pysprinter.data_path(NAME) then returns.
 * *ret_fingerprint (may be NULL): "NAME@hash,…" naming the exact content,
 * for memo keys. *ret_holds (may be NULL: nothing runs on the mounts):
 * the run's hold, which the caller releases once the run ended. Warnings of
 * URL revalidation are joined into *ret_warning. */
int data_resolve_mounts(DataCatalog *c, const char *tenant, char *const *refs, char ***ret_mounts,
                        DataHolds **ret_holds, char **ret_fingerprint, char **ret_warning, char **ret_error);

/* ---- across a cluster's nodes (data-object.c, docs/cluster.md) ---------- */

/* Fills the missing object hash into c (data_object_fetch from a peer) or
 * fails with *ret_error. */
typedef int (*DataObjectSource)(DataCatalog *c, const char *hash, void *userdata, char **ret_error);
/* Makes ds c's catalogue (c owns it; the SQLite one goes) and source the
 * way to fill a missing object (NULL: none). Call before c is shared. */
void data_catalog_set_shared(DataCatalog *c, DatasetStore *ds, DataObjectSource source, void *userdata);

/* An object in its wire form, as a peer serves it: "PSOBJ1 <N>\n", then
 * the N-byte listing its hash is the sha256 of (data.h: one "d PATH" or "f
 * PATH SIZE SHA256" line per entry), then each file's bytes in listing
 * order. -ENOENT when c does not hold hash. */
typedef struct DataObjectReader DataObjectReader;
int data_object_reader_new(DataCatalog *c, const char *hash, DataObjectReader **ret);
/* Up to max bytes of the wire form; 0 at the end; -EIO when a file changed
 * under it (objects are read-only trees, so only a damaged disk does). */
ssize_t data_object_reader_read(DataObjectReader *r, char *buf, size_t max);
DataObjectReader *data_object_reader_free(DataObjectReader *r);

/* GETs object hash from a peer (base_url + "/internal/v1/objects/" + hash,
 * bearer secret) and stores it in c: the listing must hash to hash and
 * every file to its listed sha256 and size, before anything is moved into
 * objects/. -EBADMSG when the peer sent something else; -EIO when it could
 * not be fetched. */
int data_object_fetch(DataCatalog *c, const char *base_url, const char *secret, const char *hash, char **ret_error);
/* The checking half of data_object_fetch: stores the wire form in file as
 * object hash, or -EBADMSG (with *ret_error) when any byte, size or path
 * disagrees with hash; nothing is left behind on failure. */
int data_object_import(DataCatalog *c, const char *hash, const char *file, char **ret_error);
/* The catalogue's record of (tenant, name). -ENOENT. */
int data_dataset_get(DataCatalog *c, const char *tenant, const char *name, DatasetRecord **ret);
/* One GET to a cluster's peer (its internal routes): url into the new file
 * path with "Authorization: Bearer bearer", at most max bytes, no
 * redirects, no address policy (the operator configured the peers).
 * -ENOENT on 404, -EACCES on 401/403, -EFBIG past max, -EIO otherwise. */
int data_peer_download(const char *url, const char *bearer, const char *path, uint64_t max, uint64_t timeout_ms,
                       char **ret_error);
/* True when c holds hash. */
bool data_object_present(DataCatalog *c, const char *hash);
