#pragma once

/* System calls that never touch errno (glibc's TLS), for the helpers that
 * share the worker's memory and TLS while it runs on (sandbox-pidns.c's
 * init, sandbox-cgroup.c's warm-up). */
#if defined(__x86_64__)
#define HAVE_RAW_SYSCALL 1
static inline long raw_syscall4(long n, long a, long b, long c, long d) {
        long ret;
        register long r10 __asm__("r10") = d;
        __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
        return ret;
}
#elif defined(__aarch64__)
#define HAVE_RAW_SYSCALL 1
static inline long raw_syscall4(long n, long a, long b, long c, long d) {
        register long x8 __asm__("x8") = n;
        register long x0 __asm__("x0") = a;
        register long x1 __asm__("x1") = b;
        register long x2 __asm__("x2") = c;
        register long x3 __asm__("x3") = d;
        __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
        return x0;
}
#else
#define HAVE_RAW_SYSCALL 0
#endif
