/* Network namespace: loopback only, one per run (and per warm instance).
 *
 * A namespace shared by the runs of a worker let any two of them talk over
 * 127.0.0.1 and abstract unix sockets, whatever their tenants (issue 10:
 * alice's listener on 127.0.0.1:7777 took bob's connection). So each run
 * child unshares its own. Cost, measured on this 2-vCPU VM
 * (bench/bench-netns.sh): ~0.4 ms to create one and bring lo up, ~0.2 ms
 * more on the exit path; the rest of the teardown is the kernel's deferred
 * cleanup_net work, batched. A pre-forked spare makes its namespace while
 * idle (sandbox_run_prepare()), so a run handed to a spare does not pay
 * for it; a run forked directly (no spare ready, the one-shot CLI) does.
 * The namespace dies with the last process in it: it is never reused.
 *
 * The worker itself stays in the host's namespace: a process in our user
 * namespace cannot setns() back into a namespace the host's user
 * namespace owns, so a run that opts in with --network simply does not
 * unshare. */
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "sandbox-internal.h"

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

int sandbox_net_enter(bool network, char **ret_error) {
        if (network)
                return 0;
        if (unshare(CLONE_NEWNET) < 0) {
                int r = -errno;
                *ret_error = xasprintf("creating the run's network namespace: %s", strerror(-r));
                return r;
        }
        int r = sandbox_net_loopback_up();
        if (r < 0) {
                *ret_error = xasprintf("bringing up the run's loopback: %s", strerror(-r));
                return r;
        }
        return 0;
}
