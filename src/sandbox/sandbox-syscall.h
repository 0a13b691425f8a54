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

/* clone3() of a child that shares the caller's memory and starts in
 * fn(arg) on the stack args names, never returning to the caller's code
 * (it exits with fn's value): glibc has no clone3 wrapper, and the child's
 * first instructions run on a stack the compiler knows nothing of, so the
 * switch is written here. Returns the child's pid or -errno, as the raw
 * syscall does. Only where written (x86-64); elsewhere callers use clone(). */
#if defined(__x86_64__)
#define HAVE_RAW_CLONE3 1
struct clone_args;
static inline long raw_clone3_call(struct clone_args *args, unsigned long size, int (*fn)(void *), void *arg) {
        long ret;
        register int (*r12)(void *) __asm__("r12") = fn;
        register void *r13 __asm__("r13") = arg;
        __asm__ volatile("syscall\n\t"
                         "test %%rax, %%rax\n\t"
                         "jnz 1f\n\t"
                         /* the child: on its own stack (the kernel set rsp to its top) */
                         "xor %%ebp, %%ebp\n\t"
                         "mov %%r13, %%rdi\n\t"
                         "call *%%r12\n\t"
                         "mov %%eax, %%edi\n\t"
                         "mov $60, %%eax\n\t" /* SYS_exit */
                         "syscall\n\t"
                         "hlt\n\t"
                         "1:"
                         : "=a"(ret)
                         : "a"(435L /* SYS_clone3 */), "D"(args), "S"(size), "r"(r12), "r"(r13)
                         : "rcx", "r11", "memory");
        return ret;
}
#else
#define HAVE_RAW_CLONE3 0
#endif
