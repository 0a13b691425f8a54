/* daemon-ui: the dashboard's half of pysprinterd (docs/ui.md) — the
 * embedded static files, login sessions and the runs event stream.
 *
 * The assets table is generated at build time by tools/ui-embed.py
 * (ui-assets.c); daemon-ui.c serves it. Only src/daemon includes this. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"

typedef struct UiAsset {
        const char *name;               /* "app.js", "vendor/dagre.js", "index.html" */
        const char *content_type;
        const unsigned char *gzip;      /* the file, gzipped */
        size_t gzip_len;
        const char *etag;               /* strong: "\"<hex>\"" */
        bool immutable;                 /* served under ui_assets_prefix, cached a year */
} UiAsset;

extern const UiAsset ui_assets[];
extern const size_t ui_n_assets;
extern const size_t ui_assets_gzip_bytes;
/* "/ui/a/<hash of every asset>": a build's immutable assets live below it. */
extern const char ui_assets_prefix[];

#define UI_SESSION_COOKIE "pysprinter_session"
#define UI_CSRF_HEADER "X-Pysprinter-CSRF"
#define UI_SESSION_TTL_USEC (12ULL * 3600 * 1000000)
#define UI_MAX_SESSIONS 4096
/* Sessions one token may hold (browsers, tabs): past it, its oldest goes. */
#define UI_MAX_SESSIONS_PER_TOKEN 64

/* The asset named name, or NULL. */
const UiAsset *ui_asset_find(const char *name);

/* Authenticates a request by its session cookie (the UI's alternative to a
 * bearer token). Returns 0 when the request carries no session cookie (the
 * caller goes on with its token rules), 1 when the session is valid — its
 * tenant copied into ret_tenant, its token's role into *ret_role — and a
 * negative errno when it is not, with *ret_status and *ret_message saying
 * why: 401 for an unknown, expired or revoked session (the token it was
 * made from is no longer in the config: SIGHUP revokes it), 403 for a
 * mutating request without the CSRF header (UI_CSRF_HEADER: 1),
 * -ECONNREFUSED and 503 when its token, made through the API, lives in a
 * cluster's Redis this node cannot reach now (the session stays). When
 * valid and ret_cred is not NULL, *ret_cred names the session (its
 * streams look at it again). */
int daemon_ui_session_auth(Daemon *d, struct MHD_Connection *conn, bool mutating, char *ret_tenant, size_t tenant_size,
                           TokenRole *ret_role, unsigned *ret_status, const char **ret_message, DaemonCred *ret_cred);

/* /ui, /ui/…, /login, /logout — unauthenticated: the pages carry no data,
 * the login checks a token itself. call->tenant is NULL. */
struct MHD_Response *daemon_ui_handle(const DaemonCall *call, unsigned *ret_status);

/* GET /v1/events: the caller's runs as Server-Sent Events — `event: run`
 * with the run object whenever one is submitted or changes status or
 * phase, and once more when it ends. Authenticated (call->tenant). */
struct MHD_Response *daemon_ui_events_handle(const DaemonCall *call, unsigned *ret_status);

/* Adds the dashboard's security headers (CSP, nosniff, frame-ancestors,
 * referrer policy) to resp. */
void daemon_ui_security_headers(struct MHD_Response *resp);
