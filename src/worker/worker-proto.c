/* Length-prefixed JSON messages with fd passing over a unix stream socket. */
#include "worker-proto.h"

#include <sys/socket.h>
#include <sys/uio.h>

int proto_send(int sock, const char *json, size_t len, const int *fds, size_t n_fds) {
        if (len > WORKER_PROTO_MAX_MESSAGE || n_fds > WORKER_PROTO_MAX_FDS)
                return -EMSGSIZE;
        uint8_t hdr[4] = { len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, (len >> 24) & 0xff };
        struct iovec iov[2] = {
                { .iov_base = hdr, .iov_len = sizeof(hdr) },
                { .iov_base = (void *) json, .iov_len = len },
        };
        union {
                char buf[CMSG_SPACE(sizeof(int) * WORKER_PROTO_MAX_FDS)];
                struct cmsghdr align;
        } control = {};
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
        if (n_fds > 0) {
                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        size_t total = sizeof(hdr) + len;
        size_t sent = 0;
        while (sent < total) {
                ssize_t k = sendmsg(sock, &mh, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                sent += (size_t) k;
                /* fds went with the first chunk; advance the iovecs. */
                mh.msg_control = NULL;
                mh.msg_controllen = 0;
                size_t skip = (size_t) k;
                while (skip > 0 && mh.msg_iovlen > 0) {
                        if (skip >= mh.msg_iov[0].iov_len) {
                                skip -= mh.msg_iov[0].iov_len;
                                mh.msg_iov++;
                                mh.msg_iovlen--;
                        } else {
                                mh.msg_iov[0].iov_base = (char *) mh.msg_iov[0].iov_base + skip;
                                mh.msg_iov[0].iov_len -= skip;
                                skip = 0;
                        }
                }
        }
        return 0;
}

/* One recvmsg() that got at least a byte, EINTR retried: its count,
 * -ECONNRESET at EOF, or -errno. */
static ssize_t recvmsg_some(int sock, struct msghdr *mh, int flags) {
        for (;;) {
                ssize_t k = recvmsg(sock, mh, flags);
                if (k > 0)
                        return k;
                if (k == 0)
                        return -ECONNRESET;
                if (errno != EINTR)
                        return -errno;
        }
}

/* The SCM_RIGHTS fds a recvmsg() brought, appended to fds (up to max;
 * the rest closed: more than asked for is never leaked). */
static void take_fds(struct msghdr *mh, int *fds, size_t max_fds, size_t *n_fds) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int *in = (int *) CMSG_DATA(c);
                for (size_t i = 0; i < n; i++) {
                        if (*n_fds < max_fds)
                                fds[(*n_fds)++] = in[i];
                        else
                                close(in[i]);
                }
        }
}

static int recv_header(int sock, uint8_t hdr[4], int *fds, size_t max_fds, size_t *ret_n) {
        union {
                char buf[CMSG_SPACE(sizeof(int) * WORKER_PROTO_MAX_FDS)];
                struct cmsghdr align;
        } control;
        size_t got = 0;
        *ret_n = 0;
        while (got < 4) {
                struct iovec iov = { .iov_base = hdr + got, .iov_len = 4 - got };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                                     .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
                ssize_t k = recvmsg_some(sock, &mh, MSG_CMSG_CLOEXEC);
                if (k < 0)
                        return (int) k;
                take_fds(&mh, fds, max_fds, ret_n);
                got += (size_t) k;
        }
        return 0;
}

static size_t header_length(const uint8_t hdr[4]) {
        return (size_t) hdr[0] | (size_t) hdr[1] << 8 | (size_t) hdr[2] << 16 | (size_t) hdr[3] << 24;
}

int proto_recv(int sock, size_t max, char **ret_json, size_t *ret_len,
               int *ret_fds, size_t max_fds, size_t *ret_n_fds) {
        uint8_t hdr[4];
        int fds[WORKER_PROTO_MAX_FDS];
        size_t n_fds = 0;
        int r = recv_header(sock, hdr, fds, MIN(max_fds, (size_t) WORKER_PROTO_MAX_FDS), &n_fds);
        if (r < 0)
                return r;
        size_t len = header_length(hdr);
        if (len > max || len > WORKER_PROTO_MAX_MESSAGE) {
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                return -EMSGSIZE;
        }
        char *buf = xmalloc(len + 1);
        ssize_t k = read_full(sock, buf, len);
        if (k < 0 || (size_t) k != len) {
                free(buf);
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                return k < 0 ? (int) k : -ECONNRESET;
        }
        buf[len] = 0;
        *ret_json = buf;
        if (ret_len)
                *ret_len = len;
        if (ret_fds)
                memcpy(ret_fds, fds, n_fds * sizeof(int));
        if (ret_n_fds)
                *ret_n_fds = n_fds;
        return 0;
}

/* The first read's room for the body: a trivial function's "done" is ~80
 * bytes, a result of a few KiB still comes whole. */
#define PROTO_REPLY_CHUNK 4096

int proto_recv_reply(int sock, size_t max, char **ret_json, size_t *ret_len) {
        uint8_t first[4 + PROTO_REPLY_CHUNK];
        size_t got = 0;
        /* The header and what came of the body with it, in one call; no
         * control buffer: fds sent with it are dropped by the kernel. */
        while (got < 4) {
                struct iovec iov = { .iov_base = first + got, .iov_len = sizeof(first) - got };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t k = recvmsg_some(sock, &mh, 0);
                if (k < 0)
                        return (int) k;
                got += (size_t) k;
        }
        size_t len = header_length(first);
        if (len > max || len > WORKER_PROTO_MAX_MESSAGE)
                return -EMSGSIZE;
        if (got > 4 + len)
                return -EPROTO; /* a second message before ours: not a reply */
        char *buf = xmalloc(len + 1);
        memcpy(buf, first + 4, got - 4);
        size_t have = got - 4;
        if (have < len) {
                ssize_t k = read_full(sock, buf + have, len - have);
                if (k < 0 || (size_t) k != len - have) {
                        free(buf);
                        return k < 0 ? (int) k : -ECONNRESET;
                }
        }
        buf[len] = 0;
        *ret_json = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* The first read's room in proto_recv_buffered(): an invoke's message of
 * up to 64 KiB (its header, body and fds) comes in one recvmsg(). */
#define PROTO_INBUF_CHUNK (64U << 10)

void proto_inbuf_done(ProtoInbuf *in) {
        free(in->buf);
        in->buf = NULL;
        in->len = in->cap = in->taken = 0;
}

/* One recvmsg() appending to in's bytes (room for at least want more),
 * wait() first; fds taken as take_fds() does. */
static int inbuf_fill(int sock, ProtoInbuf *in, size_t want, ProtoWait wait, void *userdata,
                      int *fds, size_t max_fds, size_t *n_fds) {
        if (in->cap - in->len < want) {
                in->cap = in->len + want;
                in->buf = xrealloc(in->buf, in->cap);
        }
        if (wait) {
                int r = wait(sock, userdata);
                if (r < 0)
                        return r;
        }
        union {
                char buf[CMSG_SPACE(sizeof(int) * WORKER_PROTO_MAX_FDS)];
                struct cmsghdr align;
        } control;
        struct iovec iov = { .iov_base = in->buf + in->len, .iov_len = in->cap - in->len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (fds) {
                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof(control.buf);
        }
        ssize_t k = recvmsg(sock, &mh, 0);
        if (k == 0)
                return -ECONNRESET;
        if (k < 0)
                return -errno;
        if (fds)
                take_fds(&mh, fds, max_fds, n_fds);
        in->len += (size_t) k;
        return 0;
}

int proto_recv_buffered(int sock, ProtoInbuf *in, ProtoWait wait, void *userdata,
                        const char **ret_json, size_t *ret_len,
                        int *ret_fds, size_t max_fds, size_t *ret_n_fds) {
        /* The message returned last time is done with: its bytes go. */
        if (in->taken > 0) {
                memmove(in->buf, in->buf + in->taken, in->len - in->taken);
                in->len -= in->taken;
                in->taken = 0;
        }
        max_fds = MIN(max_fds, (size_t) WORKER_PROTO_MAX_FDS);
        while (in->len < 4) {
                /* The fds ride on the message's first byte. */
                int r = inbuf_fill(sock, in, PROTO_INBUF_CHUNK, wait, userdata, ret_fds, max_fds, ret_n_fds);
                if (r < 0)
                        return r;
        }
        size_t len = header_length(in->buf);
        if (len > WORKER_PROTO_MAX_MESSAGE)
                return -EMSGSIZE;
        while (in->len < 4 + len) {
                int r = inbuf_fill(sock, in, 4 + len - in->len, NULL, NULL, NULL, 0, NULL);
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        return r;
        }
        in->taken = 4 + len;
        *ret_json = (const char *) in->buf + 4;
        *ret_len = len;
        return 0;
}
