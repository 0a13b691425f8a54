/* slow-http.h: a one-thread HTTP/1.1 server on 127.0.0.1 for unit tests
 * of cancels (test-pkg-manager.c, test-engine.c): it answers /simple/...
 * with `page` and /files/... with the file at `file_path`, whose body it
 * trickles out `chunk` bytes every `delay_ms` (a big wheel on a slow
 * link). One connection at a time, "Connection: close". Header-only: each
 * unit test is one file (tests/unit/meson.build). */
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "basic.h"

typedef struct SlowHttp {
        int fd;
        uint16_t port;
        pthread_t thread;
        const char *page;      /* the body of any /simple/ path */
        const char *file_path; /* the body of any /files/ path */
        size_t chunk;
        unsigned delay_ms;
        int body_started; /* atomic: a file's body began to go out */
        int stop;         /* atomic */
} SlowHttp;

static void slow_http_send(int c, const void *p, size_t n) {
        (void) send(c, p, n, MSG_NOSIGNAL);
}

static void slow_http_serve(SlowHttp *s, int c) {
        char req[4096];
        size_t len = 0;
        while (len < sizeof(req) - 1) {
                ssize_t k = recv(c, req + len, sizeof(req) - 1 - len, 0);
                if (k <= 0)
                        return;
                len += (size_t) k;
                req[len] = 0;
                if (strstr(req, "\r\n\r\n"))
                        break;
        }
        char path[1024] = "";
        if (sscanf(req, "GET %1023s", path) != 1) /* NOLINT: bounded */
                return;
        char hdr[256];
        if (startswith(path, "/simple/") && s->page) {
                int n = snprintf(hdr, sizeof(hdr),
                                 "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n"
                                 "Connection: close\r\n\r\n",
                                 strlen(s->page));
                slow_http_send(c, hdr, (size_t) n);
                slow_http_send(c, s->page, strlen(s->page));
                return;
        }
        _cleanup_free_ char *body = NULL;
        size_t blen = 0;
        _cleanup_close_ int fd = startswith(path, "/files/") && s->file_path ? open(s->file_path, O_RDONLY | O_CLOEXEC)
                                                                             : -EBADF;
        if (fd < 0 || read_fd_all(fd, 1U << 30, &body, &blen) < 0) {
                static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                slow_http_send(c, nf, sizeof(nf) - 1);
                return;
        }
        int n = snprintf(hdr, sizeof(hdr),
                         "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n",
                         blen);
        slow_http_send(c, hdr, (size_t) n);
        __atomic_store_n(&s->body_started, 1, __ATOMIC_RELEASE);
        for (size_t off = 0; off < blen && !__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);) {
                size_t k = MIN(s->chunk, blen - off);
                if (send(c, body + off, k, MSG_NOSIGNAL) < 0)
                        return; /* the client hung up: a cancelled download */
                off += k;
                usleep(s->delay_ms * 1000);
        }
}

static void *slow_http_main(void *userdata) {
        SlowHttp *s = userdata;
        while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
                struct pollfd p = { .fd = s->fd, .events = POLLIN };
                if (poll(&p, 1, 50) <= 0)
                        continue;
                int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                slow_http_serve(s, c);
                close(c);
        }
        return NULL;
}

/* Listens on an ephemeral port of 127.0.0.1 and serves on a thread. */
static int slow_http_start(SlowHttp *s) {
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s->fd < 0)
                return -errno;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t al = sizeof(a);
        if (bind(s->fd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(s->fd, 16) < 0 ||
            getsockname(s->fd, (struct sockaddr *) &a, &al) < 0)
                return -errno;
        s->port = ntohs(a.sin_port);
        return -pthread_create(&s->thread, NULL, slow_http_main, s);
}

static void slow_http_stop(SlowHttp *s) {
        __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
        pthread_join(s->thread, NULL);
        s->fd = fd_close(s->fd);
}
