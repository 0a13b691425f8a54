/* Internal to the data module. */
#pragma once

#include <pthread.h>

#include "data.h"
#include "shared.h"

/* data-fetch.c: a copy of the URL allow-list of the moment (the caller frees it). */
char **data_catalog_url_allow(const DataCatalog *c);

/* data.c: a fresh staging path under c->tmp (not created), and its removal. */
char *data_staging_dir(DataCatalog *c);
void data_staging_remove(const char *dir);

struct DataCatalog {
        Store *store;
        DataConfig cfg;
        char *objects;   /* root/objects */
        char *tmp;       /* root/tmp: staging, same file system as objects */
        /* copy of cfg.url_allow; SIGHUP replaces it (data_catalog_set_url_allow)
         * while fetches run: read it only through data_catalog_url_allow() */
        char **url_allow;
        pthread_mutex_t url_allow_lock;
        pthread_mutex_t quota_lock; /* a put's quota check until its version is recorded */
        DatasetStore *ds; /* the catalogue (owned): SQLite's over store, or one set by the caller */
        DataObjectSource source; /* fills a missing object (a cluster's peers), or NULL */
        void *source_userdata;
};

/* ---- data-tree.c ---- */

/* Caps and counters of one import. */
typedef struct TreeBudget {
        uint64_t max_bytes, max_files;
        uint64_t bytes, files;
} TreeBudget;

/* Copies the file or directory src to dst (which must not exist); a file
 * src becomes dst/<leaf>. Symlinks and special files are refused
 * (*ret_path names the offending path). */
int tree_copy_in(const char *src, const char *dst, const char *leaf, TreeBudget *b, char **ret_path);
/* The content hash (see data.h), hex. */
int tree_hash(const char *dir, char **ret_hex, uint64_t *ret_size, uint64_t *ret_files);
/* tree_hash, also appending the listing the hash is over to listing (the
 * manifest a peer verifies an object by; -EFBIG past listing's cap). */
int tree_listing(const char *dir, char **ret_hex, uint64_t *ret_size, uint64_t *ret_files, Buf *listing);
/* chmod the tree read-only (files 0444, dirs 0555) or writable again
 * (files 0644, dirs 0755, so it can be removed). */
int tree_set_readonly(const char *dir, bool readonly);
/* The staged tree made read-only (files 0444, directories 0555) and moved
 * to dst with one rename; -errno of the rename (-EEXIST, -ENOTEMPTY: dst
 * exists) or of the chmod. */
int tree_publish(const char *staged, const char *dst);
/* Gives the owner read access to every file and directory of the tree at
 * dir (never group's or others'), best effort: a run's output dir, which
 * its function may have left unreadable (mode 000) and which is the
 * caller's to consume. */
void tree_make_owner_readable(const char *dir);
/* Copies a tree out (plain files, mode 0644/0755). */
int tree_copy_out(const char *src, const char *dst);
/* Copies the regular file src to dst (0644 less the umask) through a
 * temporary file beside it, fsynced and renamed: dst appears whole or not
 * at all, and the bytes are streamed, never held in memory. */
int tree_copy_file_out(const char *src, const char *dst);
/* Sorted entry names of an open directory (not . and ..); dirfd stays open. */
int tree_list_sorted(int dirfd, char ***ret, size_t *ret_n);
/* The one regular file at the top of dir when dir holds exactly that. */
int tree_single_file(const char *dir, char **ret_path);

/* ---- data-fetch.c ---- */

typedef struct FetchResult {
        long status;          /* HTTP status; 304 = not modified */
        char *etag;
        char *last_modified;
} FetchResult;
void fetch_result_done(FetchResult *f);

/* GETs url into the file path (created) with "Authorization: Bearer
 * bearer", at most max bytes, no redirects and no address policy: a
 * cluster's peer, which the operator configured (data_object_fetch). */
int data_fetch_peer(const DataCatalog *c, const char *url, const char *bearer, const char *path, uint64_t max,
                    char **ret_error);

/* GETs url into the file path (created), conditional on etag/last_modified
 * when given; at most c's max_dataset_bytes (-EFBIG past it), within c's
 * timeout and address policy (-EACCES for a refused address). Only 2xx and 304 are
 * success; anything else is an error with *ret_error. */
int data_fetch(const DataCatalog *c, const char *url, const char *path, const char *etag, const char *last_modified,
               FetchResult *ret, char **ret_error);
