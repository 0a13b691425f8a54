/* Unit tests for the worker wire protocol: framing, fd passing, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "worker-proto.h"

static void test_roundtrip_with_fds(void **state) {
        int sv[2], p[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        const char *msg = "{\"type\":\"run\"}";
        assert_int_equal(proto_send(sv[0], msg, strlen(msg), &p[1], 1), 0);
        _cleanup_free_ char *got = NULL;
        size_t len = 0, n_fds = 0;
        int fds[4];
        assert_int_equal(proto_recv(sv[1], 1024, &got, &len, fds, 4, &n_fds), 0);
        assert_string_equal(got, msg);
        assert_int_equal(len, strlen(msg));
        assert_int_equal(n_fds, 1);
        /* The received fd is the pipe's write end: data written arrives. */
        assert_int_equal(write(fds[0], "x", 1), 1);
        char c;
        assert_int_equal(read(p[0], &c, 1), 1);
        assert_int_equal(c, 'x');
        assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
        close(fds[0]);
        close(p[0]);
        close(p[1]);
        close(sv[0]);
        close(sv[1]);
}

static void test_large_message_and_eof(void **state) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        size_t n = 3 << 20;
        char *big = xmalloc(n + 1);
        memset(big, 'a', n);
        big[n] = 0;
        pid_t pid = fork();
        if (pid == 0) {
                close(sv[1]);
                _exit(proto_send(sv[0], big, n, NULL, 0) < 0);
        }
        close(sv[0]);
        _cleanup_free_ char *got = NULL;
        size_t len = 0;
        assert_int_equal(proto_recv(sv[1], n, &got, &len, NULL, 0, NULL), 0);
        assert_int_equal(len, n);
        assert_memory_equal(got, big, n);
        _cleanup_free_ char *none = NULL;
        assert_int_equal(proto_recv(sv[1], n, &none, &len, NULL, 0, NULL), -ECONNRESET);
        close(sv[1]);
        free(big);
}

static void test_oversized_rejected(void **state) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        const char *msg = "0123456789";
        assert_int_equal(proto_send(sv[0], msg, strlen(msg), NULL, 0), 0);
        _cleanup_free_ char *got = NULL;
        assert_int_equal(proto_recv(sv[1], 5, &got, NULL, NULL, 0, NULL), -EMSGSIZE);
        close(sv[0]);
        close(sv[1]);
}

static void test_extra_fds_closed_not_leaked(void **state) {
        int sv[2], p[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        int fds[3] = { p[0], p[1], p[1] };
        assert_int_equal(proto_send(sv[0], "{}", 2, fds, 3), 0);
        _cleanup_free_ char *got = NULL;
        int in[1];
        size_t n_fds = 0;
        assert_int_equal(proto_recv(sv[1], 100, &got, NULL, in, 1, &n_fds), 0);
        assert_int_equal(n_fds, 1);
        close(in[0]);
        close(p[0]);
        close(p[1]);
        close(sv[0]);
        close(sv[1]);
}

/* proto_recv_reply(): an answer of any size comes whole (in one recv()
 * when it fits 4 KiB), a header split across writes too; EOF, a length
 * above max, and a second message queued behind the first are errors. */
static void test_reply(void **state) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        const char *done = "{\"type\":\"done\",\"id\":\"r1\",\"result\":{\"ok\": true, \"json\": \"2\"}}";
        assert_int_equal(proto_send(sv[0], done, strlen(done), NULL, 0), 0);
        char *got = NULL;
        size_t len = 0;
        assert_int_equal(proto_recv_reply(sv[1], 1 << 20, &got, &len), 0);
        assert_string_equal(got, done);
        assert_int_equal(len, strlen(done));
        free(got);
        got = NULL;
        /* Exactly the first read's room, then one byte more. */
        for (size_t n = 4096; n <= 4097; n++) {
                char *body = xmalloc(n + 1);
                memset(body, 'b', n);
                body[n] = 0;
                assert_int_equal(proto_send(sv[0], body, n, NULL, 0), 0);
                assert_int_equal(proto_recv_reply(sv[1], 1 << 20, &got, &len), 0);
                assert_int_equal(len, n);
                assert_string_equal(got, body);
                free(got);
                got = NULL;
                free(body);
        }
        /* A header in two writes. */
        assert_int_equal(write(sv[0], "\x02\x00", 2), 2);
        assert_int_equal(write(sv[0], "\x00\x00{}", 4), 4);
        assert_int_equal(proto_recv_reply(sv[1], 100, &got, &len), 0);
        assert_string_equal(got, "{}");
        free(got);
        got = NULL;
        /* A big answer from a writer that blocks until it is read. */
        size_t n = 3 << 20;
        char *big = xmalloc(n + 1);
        memset(big, 'a', n);
        big[n] = 0;
        pid_t pid = fork();
        if (pid == 0)
                _exit(proto_send(sv[0], big, n, NULL, 0) < 0);
        assert_int_equal(proto_recv_reply(sv[1], n, &got, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(got, big, n);
        free(got);
        got = NULL;
        free(big);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        /* Two messages at once: not one reply. */
        assert_int_equal(proto_send(sv[0], "{}", 2, NULL, 0), 0);
        assert_int_equal(proto_send(sv[0], "{}", 2, NULL, 0), 0);
        assert_int_equal(proto_recv_reply(sv[1], 100, &got, &len), -EPROTO);
        assert_null(got);
        /* Above max. */
        int sv2[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
        assert_int_equal(proto_send(sv2[0], "0123456789", 10, NULL, 0), 0);
        assert_int_equal(proto_recv_reply(sv2[1], 5, &got, &len), -EMSGSIZE);
        close(sv2[0]);
        close(sv2[1]);
        /* EOF. */
        close(sv[0]);
        assert_int_equal(proto_recv_reply(sv[1], 100, &got, &len), -ECONNRESET);
        close(sv[1]);
}

/* proto_recv_buffered() (a warm instance's invokes): a message, its fds
 * and the start of the next come in one recvmsg(); the next is returned
 * whole from what is kept plus what follows; the wait runs only before a
 * read, and its -EINTR comes back with nothing lost. */
static int waits;
static int count_wait(int sock, void *userdata) {
        (void) sock;
        waits++;
        return userdata && waits == 1 ? -EINTR : 0;
}

static void test_buffered(void **state) {
        int sv[2], p[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        /* A message with an fd, two more that one read takes together (the
         * kernel ends a read at a message carrying fds); then one of 200 KB
         * (more than the first read's 64 KiB). */
        const char *m1 = "{\"id\":\"a\"}", *m2 = "{\"id\":\"bb\"}";
        assert_int_equal(proto_send(sv[0], m1, strlen(m1), &p[1], 1), 0);
        assert_int_equal(proto_send(sv[0], m2, strlen(m2), NULL, 0), 0);
        assert_int_equal(proto_send(sv[0], m1, strlen(m1), NULL, 0), 0);
        size_t big = 200000;
        _cleanup_free_ char *m3 = xmalloc(big);
        memset(m3, 'x', big);
        ProtoInbuf in = {};
        const char *json;
        size_t len, n_fds = 0;
        int fds[4];
        waits = 0;
        /* The first wait says EINTR: nothing read, the call comes again. */
        assert_int_equal(proto_recv_buffered(sv[1], &in, count_wait, (void *) 1, &json, &len, fds, 4, &n_fds), -EINTR);
        assert_int_equal(proto_recv_buffered(sv[1], &in, count_wait, (void *) 1, &json, &len, fds, 4, &n_fds), 0);
        assert_int_equal(waits, 2);
        assert_int_equal(len, strlen(m1));
        assert_memory_equal(json, m1, len);
        assert_int_equal(n_fds, 1);
        assert_int_equal(write(fds[0], "x", 1), 1);
        close(fds[0]);
        n_fds = 0;
        assert_int_equal(proto_recv_buffered(sv[1], &in, count_wait, NULL, &json, &len, fds, 4, &n_fds), 0);
        assert_int_equal(waits, 3);
        assert_int_equal(len, strlen(m2));
        assert_memory_equal(json, m2, len);
        assert_int_equal(n_fds, 0);
        /* The third was read with the second: no wait, no read. */
        assert_int_equal(proto_recv_buffered(sv[1], &in, count_wait, NULL, &json, &len, fds, 4, &n_fds), 0);
        assert_int_equal(waits, 3);
        assert_int_equal(len, strlen(m1));
        assert_memory_equal(json, m1, len);
        pid_t pid = fork();
        if (pid == 0) {
                _exit(proto_send(sv[0], m3, big, NULL, 0) == 0 ? 0 : 1);
        }
        assert_int_equal(proto_recv_buffered(sv[1], &in, count_wait, NULL, &json, &len, fds, 4, &n_fds), 0);
        assert_int_equal(len, big);
        assert_memory_equal(json, m3, big);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(status, 0);
        /* EOF. */
        close(sv[0]);
        assert_int_equal(proto_recv_buffered(sv[1], &in, count_wait, NULL, &json, &len, fds, 4, &n_fds), -ECONNRESET);
        proto_inbuf_done(&in);
        close(sv[1]);
        close(p[0]);
        close(p[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_with_fds),
                cmocka_unit_test(test_large_message_and_eof),
                cmocka_unit_test(test_oversized_rejected),
                cmocka_unit_test(test_extra_fds_closed_not_leaked),
                cmocka_unit_test(test_reply),
                cmocka_unit_test(test_buffered),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
