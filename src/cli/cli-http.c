/* The CLI's one HTTP client (libcurl): JSON bodies, streamed uploads and
 * downloads, Server-Sent Events, 429 retried as Retry-After asks, Ctrl-C.
 * CURLcode and HTTP statuses become negative errnos here; the verb maps
 * those to exit codes (cli_exit_code). */
#include <curl/curl.h>

#include "cli-backend.h"

#define MAX_RESPONSE_BYTES (512U << 20)
#define MAX_RETRIES 5
/* How long a request made or going on after an interrupt (a submit that
 * goes through whole, the cancel that follows it: cli-backend-http.c) waits
 * for a server that does not answer: Ctrl-C never leaves the CLI hanging. */
#define INTERRUPTED_REQUEST_USEC (10 * USEC_PER_SEC)

usec_t http_reconnect_wait(void) {
        const char *t = getenv("PYSPRINTER_TEST_RECONNECT_S");
        return (t && *t ? strtoull(t, NULL, 10) : 60) * USEC_PER_SEC;
}

int http_open(const char *server, Http *ret, char **ret_error) {
        static bool curl_ready;
        assert(server);
        if (!curl_ready) {
                curl_global_init(CURL_GLOBAL_DEFAULT);
                curl_ready = true;
        }
        /* A comma-separated list: the gateways of one cluster. */
        char **servers = NULL;
        size_t n_servers = 0;
        for (const char *p = server; *p;) {
                size_t len = strcspn(p, ",");
                char *base = xstrndup(p, len);
                size_t n = strlen(base);
                while (n > 0 && base[n - 1] == '/')
                        base[--n] = 0;
                /* A query or a fragment would end up before each path
                 * the CLI adds (URL?x=1/v1/runs: "no such endpoint: /"),
                 * and a URL without a host names no server at all. */
                const char *host = strstr(base, "://");
                if ((!startswith(base, "http://") && !startswith(base, "https://")) || strpbrk(base, "?# \t") ||
                    !host[3] || host[3] == '/') {
                        *ret_error = xasprintf(
                                "--server needs an http:// or https:// URL (a host, no query or fragment), not '%s'",
                                base);
                        free(base);
                        strv_free(servers);
                        return -EINVAL;
                }
                servers = strv_append(servers, base);
                free(base);
                n_servers++;
                p += len;
                if (*p == ',')
                        p++;
        }
        const char *t = cli_globals.token ? cli_globals.token : getenv("PYSPRINTER_TOKEN");
        *ret = (Http) { .base = servers[0], .token = t && *t ? xstrdup(t) : cli_config_value("token"),
                        .servers = servers, .n_servers = n_servers };
        return 0;
}

void http_close(Http *h) {
        strv_free(h->servers);
        free(h->token);
        *h = (Http) {};
}

/* The next server of the list, after h->base could not be reached. */
static void http_failover(Http *h) {
        if (h->n_servers < 2)
                return;
        h->cur = (h->cur + 1) % h->n_servers;
        h->base = h->servers[h->cur];
        if (cli_globals.verbose)
                cli_warning("trying %s", h->base);
}

char *http_escape(const char *s) {
        char *e = curl_easy_escape(NULL, s, 0);
        /* '.' too: curl leaves it as it is, and then removes the dot
         * segments of the path it sends (RFC 3986), so an id "." or ".."
         * asked for another resource (`show .` read GET /v1/runs/, the
         * list). The server decodes %2E back into the name it was given. */
        const char *in = e ? e : "";
        char *r = xmalloc(3 * strlen(in) + 1), *o = r;
        for (const char *p = in; *p; p++)
                if (*p == '.')
                        o = stpcpy(o, "%2E");
                else
                        *o++ = *p;
        *o = 0;
        curl_free(e);
        return r;
}

typedef struct Xfer {
        const HttpRequest *q;
        CURL *c;
        Buf *body;
        Buf *headers;
        long retry_after;
        int read_error;         /* what q->read failed with */
        usec_t interrupted_at;  /* when on_progress() first saw an interrupt it lets go on */
        /* SSE parsing state */
        Buf line, data;
        char event[32];
        char id[32]; /* the event's id: field, "" without one */
} Xfer;

static bool ok_status(CURL *c) {
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        return status >= 200 && status < 300;
}

/* One line of an event stream (without its '\n'). */
static void sse_line(Xfer *x) {
        const char *l = x->line.data ? x->line.data : "";
        if (x->line.len == 0) {
                if (x->event[0] || x->data.len)
                        x->q->sse(x->event[0] ? x->event : "message", x->data.data ? x->data.data : "", x->data.len,
                                  x->q->sse_userdata);
                /* Only once the event was handled: a stream cut inside one
                 * resumes before it. */
                uint64_t id;
                if (x->id[0] && x->q->last_event_id && parse_uint64(x->id, &id) >= 0)
                        *x->q->last_event_id = id;
                x->event[0] = 0;
                x->id[0] = 0;
                buf_reset(&x->data);
        } else if (startswith(l, "id:"))
                snprintf(x->id, sizeof(x->id), "%s", l[3] == ' ' ? l + 4 : l + 3);
        else if (startswith(l, "event:"))
                snprintf(x->event, sizeof(x->event), "%s", l[6] == ' ' ? l + 7 : l + 6);
        else if (startswith(l, "data:")) {
                size_t skip = l[5] == ' ' ? 6 : 5;
                if (x->data.len == 0) {
                        /* The line's buffer becomes the data's (both have
                         * one cap): a run's end event, its result within,
                         * is not copied. */
                        Buf t = x->data;
                        x->data = x->line;
                        x->line = t;
                        memmove(x->data.data, x->data.data + skip, x->data.len - skip + 1);
                        x->data.len -= skip;
                } else {
                        (void) buf_append(&x->data, "\n", 1);
                        (void) buf_appends(&x->data, l + skip);
                }
        }
        buf_reset(&x->line);
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        Xfer *x = userdata;
        size_t total = size * n;
        if (ok_status(x->c) && x->q->download)
                return fwrite(data, 1, total, x->q->download) == total ? total : 0;
        if (ok_status(x->c) && x->q->sse) {
                /* A line's bytes in runs up to its '\n'; every '\r' dropped. */
                for (size_t i = 0; i < total;) {
                        size_t j = i;
                        while (j < total && data[j] != '\n' && data[j] != '\r')
                                j++;
                        if (j > i && buf_append(&x->line, data + i, j - i) < 0)
                                return 0;
                        if (j < total && data[j] == '\n')
                                sse_line(x);
                        i = j + 1;
                }
                return total;
        }
        return buf_append(x->body, data, total) < 0 ? 0 : total;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata) {
        Xfer *x = userdata;
        if (size * n > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
                x->retry_after = strtol(data + 12, NULL, 10);
        if (x->headers)
                (void) buf_append(x->headers, data, size * n);
        return size * n;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userdata) {
        Xfer *x = userdata;
        ssize_t k = x->q->read(x->q->read_userdata, buf, size * n);
        if (k < 0) {
                x->read_error = (int) k;
                return CURL_READFUNC_ABORT;
        }
        return (size_t) k;
}

/* An interrupt stops a request at once, unless the caller lets it go on
 * (cli_interrupt_handled, or the request's own `whole`): then for
 * INTERRUPTED_REQUEST_USEC at most.
 * libcurl calls this at least once a second, answer or not. */
static int on_progress(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
        Xfer *x = p;
        if (!cli_interrupted)
                return 0;
        if (!cli_interrupt_handled && !x->q->whole)
                return 1;
        usec_t now = now_monotonic();
        if (!x->interrupted_at)
                x->interrupted_at = now;
        return now - x->interrupted_at > INTERRUPTED_REQUEST_USEC;
}

/* A non-2xx status as a negative errno. */
static int status_errno(long status) {
        switch (status) {
        case 400:
                return -EINVAL;
        case 401:
                return -EACCES;
        case 403:
                return -EPERM;
        case 404:
                return -ENOENT;
        case 409:
                return -EBUSY;
        case 413:
                return -EFBIG;
        case 422:
                return -EBADMSG;
        case 429:
                return -EAGAIN;
        case 500:
                /* The server's own failure (a store or log it cannot
                 * read): exit 7, internal, as the embedded CLI's for the
                 * same failure, not 6 (unreachable), which would send the
                 * user after the network. */
                return -EUCLEAN;
        case 502:
        case 503:
        case 504:
                /* A server there but unable to serve now (a cluster's
                 * gateway cut from its Redis, a draining daemon): exit 6
                 * as unreachable, and told apart from a refusal, so that a
                 * client waiting for an accepted run waits on through it
                 * (cli-backend-http.c follow_log()). */
                return -EHOSTUNREACH;
        default:
                return status >= 400 && status < 500 ? -EINVAL : -EIO;
        }
}

/* What to tell the user about a refused request. */
static char *status_message(const Http *h, long status, const Buf *body) {
        json_t *j = body->len ? json_loadb(body->data, body->len, JSON_ALLOW_NUL, NULL) : NULL;
        const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
        char *r;
        if (status == 401)
                r = xasprintf("%s refused the token (%s): set PYSPRINTER_TOKEN, --token, or 'token = …' in "
                              "~/.config/pysprinter/config",
                              h->base, m ? m : "unauthorized");
        else if (status == 403 && m && code && !streq(code, "forbidden"))
                /* A refusal that is not the token's (url_refused: an
                 * address the server's policy does not fetch): its words. */
                r = xstrdup(m);
        else if (status == 403)
                r = xasprintf("the token lacks the right to do this (%s)", m ? m : "forbidden");
        else if (m && status == 400 && startswith(m, "unknown field '") && endswith(m, "'") &&
                 !strchr(m + strlen("unknown field '"), ' '))
                /* Every field this CLI sends, a daemon of its release
                 * knows: one that does not is of an older release. */
                r = xasprintf("the server at %s does not know %s of this request (it answered \"%s\"): it runs a "
                              "pysprinterd older than this pysprinter; upgrade the server, or use the pysprinter of "
                              "its release",
                              h->base, m + strlen("unknown "), m);
        else if (m && status < 500)
                r = xstrdup(m); /* the embedded path's words for the same refusal */
        else
                r = xasprintf("%s (HTTP %ld)", m ? m : "the server refused the request", status);
        json_decref(j);
        return r;
}

static void set_common(CURL *c, const Http *h, struct curl_slist *hdrs, char *errbuf) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
}

static struct curl_slist *headers_for(const Http *h, const HttpRequest *q) {
        struct curl_slist *l = NULL;
        if (h->token) {
                _cleanup_free_ char *a = xasprintf("Authorization: Bearer %s", h->token);
                l = curl_slist_append(l, a);
        }
        if (q->content_type) {
                _cleanup_free_ char *ct = xasprintf("Content-Type: %s", q->content_type);
                l = curl_slist_append(l, ct);
        }
        if (q->header)
                l = curl_slist_append(l, q->header);
        if (q->header2)
                l = curl_slist_append(l, q->header2);
        /* A streamed body (a file, a tar) or a big one waits for "100
         * Continue", so the daemon refuses it (401, 413 over data.max_bytes
         * or max_body_bytes) before a byte is sent: a refusal that arrives
         * mid-send is raced by the reset of the socket the daemon closes
         * unread, and curl reports "Connection reset by peer" instead of
         * the answer. A small body (JSON of a few KiB) goes at once: no
         * round trip for it. 1 MiB is curl 8's own threshold. */
        bool wait_for_continue = q->read || q->upload || q->body_len > (1U << 20);
        return curl_slist_append(l, wait_for_continue ? "Expect: 100-continue" : "Expect:");
}

/* How long an event stream may stay silent (seconds): 4 of the daemon's
 * keep-alives missed. PYSPRINTER_TEST_SILENCE_S for the tests. */
static long stream_silence_s(void) {
        const char *t = getenv("PYSPRINTER_TEST_SILENCE_S");
        long v = t && *t ? strtol(t, NULL, 10) : 0;
        return v > 0 ? v : 20;
}

int http_request(Http *h, const HttpRequest *q, long *ret_status, Buf *ret_body, char **ret_error) {
        assert(h && h->base && q && q->method && q->path && ret_body);
        buf_init(ret_body, MAX_RESPONSE_BYTES);
        size_t tried = 1;
        usec_t unavailable_since = 0;
        for (int attempt = 0;; attempt++) {
                CURL *c = curl_easy_init();
                if (!c) {
                        *ret_error = xstrdup("cannot start an HTTP client");
                        return -ENOMEM;
                }
                char errbuf[CURL_ERROR_SIZE] = "";
                long status = 0;
                _cleanup_free_ char *url = xasprintf("%s%s", h->base, q->path);
                struct curl_slist *hdrs = headers_for(h, q);
                Xfer x = { .q = q, .c = c, .body = ret_body, .headers = q->headers };
                /* One cap for both: sse_line() hands a line's buffer to
                 * the data. A run's end event is one line of its record. */
                buf_init(&x.line, 64U << 20);
                buf_init(&x.data, 64U << 20);
                set_common(c, h, hdrs, errbuf);
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
                curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
                curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
                curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
                if (q->sse) {
                        /* A daemon's event stream is never silent for long:
                         * a comment every 5 s of silence. Silent for
                         * stream_silence_s() is a server frozen (SIGSTOP, a
                         * VM paused) or cut off without a reset: the stream
                         * is given up as one that broke off, and its caller
                         * asks again, on the next gateway of a cluster.
                         * Without it a frozen gateway held the CLI for ever. */
                        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
                        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stream_silence_s());
                }
                /* A keyed submit to one gateway of several: a gateway that
                 * stays silent (frozen by SIGSTOP, a paused VM) is given up
                 * as a stream is, and the next one asked; the key makes
                 * that safe (cli-backend-http.c http_run()). */
                bool keyed = q->header && startswith(q->header, "Idempotency-Key:") && !q->read;
                /* So is a read (`dag run` asking how its DAG run stands,
                 * `show`): no read of the CLI waits on the server (no
                 * ?wait=true), so 20 s of silence is a frozen gateway, and
                 * the next one answers the same from Redis. Before, a
                 * gateway frozen after `dag run`'s submit held it for ever. */
                bool plain_read = streq(q->method, "GET") && !q->download;
                if ((keyed || plain_read) && h->n_servers > 1 && !q->sse) {
                        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
                        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stream_silence_s());
                }
                if (q->read) {
                        /* Its size is unknown: HTTP/1.1 chunked. */
                        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
                        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
                        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
                        curl_easy_setopt(c, CURLOPT_READDATA, &x);
                        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
                } else if (q->upload) {
                        rewind(q->upload);
                        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
                        curl_easy_setopt(c, CURLOPT_READDATA, q->upload);
                        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t) q->upload_size);
                } else if (q->body) {
                        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
                        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) q->body_len);
                }
                /* After UPLOAD/POSTFIELDS, which set PUT/POST themselves. */
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
                CURLcode cc = curl_easy_perform(c);
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                curl_slist_free_all(hdrs);
                curl_easy_cleanup(c);
                buf_free(&x.line);
                buf_free(&x.data);
                if (cli_interrupted && !cli_interrupt_handled && !q->whole && cc != CURLE_OK)
                        return -EINTR;
                if (cc == CURLE_ABORTED_BY_CALLBACK && x.interrupted_at) {
                        *ret_error = xasprintf("the server did not answer within %d s of the interrupt; what it "
                                               "was asked may go on (see `pysprinter ps`)",
                                               (int) (INTERRUPTED_REQUEST_USEC / USEC_PER_SEC));
                        return -ETIMEDOUT;
                }
                if (x.read_error < 0) {
                        *ret_error = xasprintf("cannot read what is uploaded: %s", strerror(-x.read_error));
                        return x.read_error;
                }
                if (cc != CURLE_OK && !(status >= 200 && status < 300 && cc == CURLE_PARTIAL_FILE)) {
                        if (cc == CURLE_WRITE_ERROR && (q->download || q->sse)) {
                                *ret_error = xasprintf("cannot write the download: %s", strerror(errno ?: EIO));
                                return -EIO;
                        }
                        /* Another gateway of the cluster: at once when nothing
                         * was sent (any method) or the request only reads. A
                         * stream that broke off is its caller's to redo. */
                        bool nothing_sent = cc == CURLE_COULDNT_CONNECT;
                        bool reads = streq(q->method, "GET") && !q->sse && !q->download;
                        /* A submit with an Idempotency-Key cannot start a
                         * second run: the next gateway answers with the
                         * first (docs/cluster.md). */
                        reads = reads || keyed;
                        if (tried < h->n_servers && (nothing_sent || reads) && !cli_interrupted) {
                                http_failover(h);
                                tried++;
                                buf_reset(ret_body);
                                continue;
                        }
                        *ret_error = xasprintf("cannot reach %s: %s", h->base, *errbuf ? errbuf : curl_easy_strerror(cc));
                        http_failover(h);
                        return -ECONNREFUSED;
                }
                if (status == 429 && attempt < MAX_RETRIES && !cli_interrupted && !q->read) {
                        buf_reset(ret_body);
                        sleep((unsigned) MAX(1, MIN(x.retry_after, 10)));
                        continue;
                }
                /* A gateway that cannot serve now (502-504: cut from the
                 * cluster's Redis) did nothing: a read goes to the next
                 * gateway as after a refused connection. */
                bool unavailable = status >= 502 && status <= 504;
                /* So does a keyed submit: the next gateway answers with the
                 * run if this one started it after all. */
                bool rereadable = (streq(q->method, "GET") && !q->download) || keyed;
                if (unavailable && rereadable && tried < h->n_servers && !cli_interrupted) {
                        http_failover(h);
                        tried++;
                        buf_reset(ret_body);
                        continue;
                }
                /* A 503 with Retry-After (a gateway cut from the
                 * cluster's Redis, or Redis still loading) says nothing
                 * was done: with no other gateway left to ask, the request
                 * is asked again as it asks, for up to a minute, saying so
                 * once. Reads other than a submit's wait for it themselves
                 * (follow_log(), server_away()): only other methods here.
                 * Before, only a 429 was asked again, and a lone gateway's
                 * 503 ended `run` with exit 6 while nothing had run. */
                if (status == 503 && x.retry_after > 0 && !streq(q->method, "GET") && !q->read && !cli_interrupted) {
                        usec_t now = now_monotonic();
                        if (!unavailable_since) {
                                unavailable_since = now;
                                _cleanup_free_ char *why = status_message(h, status, ret_body);
                                cli_warning("%s cannot serve this now (%s): waiting up to %llu s for it, as its "
                                            "Retry-After asks",
                                            h->base, why, (unsigned long long) (http_reconnect_wait() / USEC_PER_SEC));
                        }
                        if (now - unavailable_since < http_reconnect_wait()) {
                                usec_t left = http_reconnect_wait() - (now - unavailable_since);
                                usec_t pause = MIN((usec_t) MIN(x.retry_after, 10) * USEC_PER_SEC, left);
                                buf_reset(ret_body);
                                struct timespec ts = { .tv_sec = (time_t) (pause / USEC_PER_SEC),
                                                       .tv_nsec = (long) (pause % USEC_PER_SEC) * 1000L };
                                (void) nanosleep(&ts, NULL); /* Ctrl-C ends it early */
                                if (cli_interrupted)
                                        return -EINTR;       /* nothing was done there */
                                http_failover(h);            /* a gateway of the list may serve by now */
                                tried = 1;
                                continue;
                        }
                }
                if (ret_status)
                        *ret_status = status;
                if (status < 200 || status >= 300) {
                        *ret_error = status_message(h, status, ret_body);
                        /* A path the server has no route for is a wrong
                         * server URL (--server URL/prefix), not a missing
                         * run, function or dataset: its own errno, so the
                         * verbs that say "no run 'ID'" of a 404 pass the
                         * server's words on, as `ps` does. */
                        if (status == 404 && startswith(*ret_error, "no such endpoint: "))
                                return -ENXIO;
                        return status_errno(status);
                }
                return 0;
        }
}

/* http_json(), and with keep_refusal a refusal's JSON body in *ret. */
static int json_request(Http *h, const char *method, const char *path, const char *header, json_t *body,
                        bool keep_refusal, bool whole, json_t *(*loads)(const char *text, size_t len), json_t **ret,
                        char **ret_error) {
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        if (body && !text) {
                *ret_error = xstrdup("the request cannot be written as JSON");
                return -EINVAL;
        }
        HttpRequest q = { .method = method, .path = path, .header = header, .whole = whole };
        Buf b;
        if (text) {
                q.content_type = "application/json";
                q.body = text;
                q.body_len = strlen(text);
        }
        int r = http_request(h, &q, NULL, &b, ret_error);
        if (r >= 0 && ret && loads && b.len)
                *ret = loads(b.data, b.len);
        if (r >= 0 && ret && !(loads && b.len && *ret))
                *ret = b.len ? json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : json_object();
        if (r >= 0 && ret && !*ret) {
                *ret_error = xstrdup("the server's answer is not JSON");
                r = -EPROTO;
        }
        if (r < 0 && keep_refusal && b.len)
                *ret = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
        buf_free(&b);
        return r;
}

int http_json(Http *h, const char *method, const char *path, json_t *body, json_t **ret, char **ret_error) {
        return json_request(h, method, path, NULL, body, false, false, NULL, ret, ret_error);
}

int http_json_loads(Http *h, const char *method, const char *path, json_t *(*loads)(const char *text, size_t len),
                    json_t **ret, char **ret_error) {
        assert(loads);
        return json_request(h, method, path, NULL, NULL, false, false, loads, ret, ret_error);
}

int http_json_submit(Http *h, const char *path, const char *header, json_t *body, json_t **ret, char **ret_error) {
        return json_request(h, "POST", path, header, body, false, true, NULL, ret, ret_error);
}

int http_json_answer(Http *h, const char *method, const char *path, json_t *body, json_t **ret, char **ret_error) {
        assert(ret);
        *ret = NULL;
        return json_request(h, method, path, NULL, body, true, false, NULL, ret, ret_error);
}
