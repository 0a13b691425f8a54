/* Network namespace: loopback only, created once per worker.
 *
 * Creating a network namespace is slow on some kernels (and its teardown
 * is deferred work that piles up), so the worker makes one at start-up
 * and every run joins it with setns(). The worker itself stays in the
 * host's namespace: a process in our user namespace cannot setns() back
 * into a namespace the host's user namespace owns, so a run that opts in
 * with --network simply does not join. */
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "sandbox-internal.h"

static int netns_fd = -EBADF;

int sandbox_net_fd(void) {
        return netns_fd;
}

int sandbox_net_loopback_up(void) {
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return -errno;
        struct ifreq ifr = { 0 };
        memcpy(ifr.ifr_name, "lo", 3);
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return -errno;
        return 0;
}

int sandbox_net_prepare(char **ret_error) {
        if (netns_fd >= 0)
                return 0;
        /* A helper child makes the namespace; we keep a reference to it
         * through /proc/PID/ns/net and let the child go. */
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                *ret_error = xasprintf("fork: %s", strerror(errno));
                close(p[0]);
                close(p[1]);
                return -errno;
        }
        if (pid == 0) {
                close(p[0]);
                int err = 0;
                /* The set-up changed our uid, which made us non-dumpable
                 * for a user namespace we are not privileged in (the mm's);
                 * the parent could then not open /proc/PID/ns/net. */
                (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
                if (unshare(CLONE_NEWNET) < 0)
                        err = errno;
                else {
                        int r = sandbox_net_loopback_up();
                        if (r < 0)
                                err = -r;
                }
                (void) write(p[1], &err, sizeof(err));
                pause();
                _exit(0);
        }
        close(p[1]);
        int err = 0;
        if (read(p[0], &err, sizeof(err)) != sizeof(err))
                err = EIO;
        close(p[0]);
        if (err == 0) {
                char path[64];
                snprintf(path, sizeof(path), "/proc/%d/ns/net", (int) pid);
                netns_fd = open(path, O_RDONLY | O_CLOEXEC);
                if (netns_fd < 0)
                        err = errno;
        }
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
        if (err != 0) {
                *ret_error = xasprintf("cannot create the sandbox's network namespace: %s", strerror(err));
                return -err;
        }
        return 0;
}

int sandbox_net_join(bool network, char **ret_error) {
        if (network)
                return 0;
        if (netns_fd < 0) {
                /* No worker-level namespace (unit tests, or a run child of a
                 * worker that skipped it): make a private one. */
                if (unshare(CLONE_NEWNET) < 0) {
                        *ret_error = xasprintf("unshare(CLONE_NEWNET): %s", strerror(errno));
                        return -errno;
                }
                (void) sandbox_net_loopback_up();
                return 0;
        }
        if (setns(netns_fd, CLONE_NEWNET) < 0) {
                *ret_error = xasprintf("joining the sandbox's network namespace: %s", strerror(errno));
                return -errno;
        }
        return 0;
}
