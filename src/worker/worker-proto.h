/* worker-proto: the engine <-> pysprinter-worker wire protocol.
 *
 * A message is a 4-byte little-endian length followed by that many bytes of
 * JSON, on a SOCK_STREAM unix socket (the worker's fd 3). File descriptors
 * travel with a message as SCM_RIGHTS on its first byte. The message types
 * are documented in docs/internals/worker-protocol.md.
 *
 * Depends on: basic only (the engine links it; it never links CPython). */
#pragma once

#include "basic.h"

/* A warm instance's "done" holds a result of up to 16 MiB as JSON
 * (RUN_MAX_RESULT_BYTES) as a JSON string: twice that at most (each byte
 * escaped), and the message's frame. */
#define WORKER_PROTO_MAX_MESSAGE ((32U << 20) + (64U << 10))
#define WORKER_PROTO_MAX_FDS 8
#define WORKER_CTRL_FD 3
/* A "validate" of a source this large is done in a child of the worker,
 * under the message's "limits"; the engine gives it a validator of its own
 * lane (engine-pool.c), so a smaller file never waits behind one. */
#define WORKER_VALIDATE_APART_BYTES (64U * 1024)

/* Sends one message with n_fds descriptors attached. */
int proto_send(int sock, const char *json, size_t len, const int *fds, size_t n_fds);

/* Receives one whole message (blocking). On success *ret_json is a
 * NUL-terminated string the caller frees, and up to max_fds received fds
 * are stored in ret_fds (O_CLOEXEC) with their count in *ret_n_fds.
 * -ECONNRESET at EOF, -EMSGSIZE when the peer announces more than max. */
int proto_recv(int sock, size_t max, char **ret_json, size_t *ret_len,
               int *ret_fds, size_t max_fds, size_t *ret_n_fds);
/* Receives the one message a peer sends in answer to ours (a warm
 * instance's "done"), as proto_recv() without fds, but the header and a
 * body of up to 4 KiB come in ONE recvmsg() instead of a recvmsg() of the
 * header and a read() of the body: one system call less per invoke. Only
 * for a peer that sends nothing more until it hears from us again: bytes
 * past the message mean it broke the framing: -EPROTO (nothing is kept
 * for a next call). -ECONNRESET at EOF, -EMSGSIZE above max. */
int proto_recv_reply(int sock, size_t max, char **ret_json, size_t *ret_len);

/* A reader's buffer for proto_recv_buffered(): bytes received past the
 * message it returned last stay for the next call. Zero-initialised. */
typedef struct ProtoInbuf {
        uint8_t *buf;
        size_t len, cap;
        size_t taken; /* the last returned message's bytes, dropped next call */
} ProtoInbuf;

/* Called before a recvmsg() that may block (a poll() for POLLIN: a reader
 * asleep in recvmsg() on a unix socket is also woken each time its peer
 * reads what it sent). 0 to go on, or -errno (-EINTR: the caller's
 * signals to see to) which proto_recv_buffered() returns, keeping what it
 * has read in the buffer. */
typedef int (*ProtoWait)(int sock, void *userdata);

/* Receives one whole message: its header, body and fds come in ONE
 * recvmsg() of up to 64 KiB, no header-then-body split (a warm instance's
 * invoke: one system call besides the wait). *ret_json points into in
 * (not NUL-terminated), valid until the next call; fds (not O_CLOEXEC:
 * the instance keeps them as the Python runner did) appended to ret_fds,
 * their count in *ret_n_fds, which the caller zeroes before the first
 * call for a message. -ECONNRESET at EOF, -EMSGSIZE above the protocol's
 * maximum. */
int proto_recv_buffered(int sock, ProtoInbuf *in, ProtoWait wait, void *userdata,
                        const char **ret_json, size_t *ret_len,
                        int *ret_fds, size_t max_fds, size_t *ret_n_fds);
void proto_inbuf_done(ProtoInbuf *in);
