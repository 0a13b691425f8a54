/* Unit tests for the zygote's text mappings (worker-text.c): after
 * worker_text_copy_at_fork(), a forked child reads the code and constants
 * the parent had resident without a page fault, and the mappings keep
 * their protection and bytes; worker_text_forget() drops the process's
 * entries of them and nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "worker.h"

#define MAX_RANGES 16

typedef struct {
        const void *anchor;
        uintptr_t start[MAX_RANGES], end[MAX_RANGES];
        size_t n;
} Ranges;

/* The read-only segments of the object holding r->anchor. */
static int collect(struct dl_phdr_info *info, size_t size, void *data) {
        Ranges *r = data;
        bool holds = false;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t s = info->dlpi_addr + ph->p_vaddr;
                if (ph->p_type == PT_LOAD && (uintptr_t) r->anchor >= s && (uintptr_t) r->anchor < s + ph->p_memsz)
                        holds = true;
        }
        for (int i = 0; holds && i < info->dlpi_phnum && r->n < MAX_RANGES; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W))
                        continue;
                r->start[r->n] = info->dlpi_addr + ph->p_vaddr;
                r->end[r->n++] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        }
        return 0;
}

static Ranges libc_ranges(void) {
        Ranges r = { .anchor = (const void *) malloc };
        dl_iterate_phdr(collect, &r);
        return r;
}

/* One byte of every page: what a run does to the code it executes. */
static unsigned read_every_page(const Ranges *r) {
        unsigned sum = 0;
        long page = sysconf(_SC_PAGESIZE);
        for (size_t i = 0; i < r->n; i++)
                for (uintptr_t a = r->start[i]; a < r->end[i]; a += (uintptr_t) page)
                        sum += *(volatile const unsigned char *) a;
        return sum;
}

/* The minor faults a forked child takes reading every page of r. */
static long child_faults_reading(const Ranges *r) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct rusage before, after;
                getrusage(RUSAGE_SELF, &before);
                getrusage(RUSAGE_SELF, &after); /* its own stack page written first */
                getrusage(RUSAGE_SELF, &before);
                (void) read_every_page(r);
                getrusage(RUSAGE_SELF, &after);
                long n = after.ru_minflt - before.ru_minflt;
                _exit(write(p[1], &n, sizeof n) == sizeof n ? 0 : 1);
        }
        close(p[1]);
        long n = -1;
        assert_int_equal(read(p[0], &n, sizeof n), (ssize_t) sizeof n);
        close(p[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return n;
}

static char *maps_of(const char *needle) {
        FILE *f = fopen("/proc/self/maps", "re");
        assert_non_null(f);
        char line[512];
        size_t cap = 1 << 16, len = 0;
        char *out = calloc(1, cap);
        while (fgets(line, sizeof line, f))
                if (strstr(line, needle) && len + strlen(line) < cap) {
                        memcpy(out + len, line, strlen(line));
                        len += strlen(line);
                }
        fclose(f);
        return out;
}

static void test_a_child_reads_the_anchored_text_without_faults(void **state) {
        (void) state;
        Ranges r = libc_ranges();
        assert_true(r.n >= 2);
        (void) read_every_page(&r); /* resident in this process, as in a settled zygote */
        long before = child_faults_reading(&r);
        const void *anchors[] = { (const void *) malloc };
        size_t pages = 0;
        assert_true(worker_text_copy_at_fork(anchors, 1, &pages) >= 2);
        assert_true(pages > 16);
        long after = child_faults_reading(&r);
        /* Before: a fault per 16 pages at least (fault-around). After: the
         * entries came with the fork. */
        assert_true(before >= (long) (pages / 16) / 2);
        assert_true(after <= 2);
}

static void test_the_mappings_keep_their_protection_and_bytes(void **state) {
        (void) state;
        Ranges r = libc_ranges();
        unsigned sum = read_every_page(&r);
        Dl_info info;
        assert_true(dladdr((const void *) malloc, &info) != 0);
        const char *name = strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname;
        char *maps = maps_of(name);
        const void *anchors[] = { (const void *) malloc };
        /* Twice: the second finds its private pages there already. */
        assert_true(worker_text_copy_at_fork(anchors, 1, NULL) >= 2);
        assert_true(worker_text_copy_at_fork(anchors, 1, NULL) >= 2);
        char *again = maps_of(name);
        /* Same mappings, same permissions: none split, none left writable. */
        assert_string_equal(maps, again);
        assert_int_equal(read_every_page(&r), sum);
        free(maps);
        free(again);
}

static long faults_reading(const Ranges *r, unsigned *ret_sum) {
        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        *ret_sum = read_every_page(r);
        getrusage(RUSAGE_SELF, &after);
        return after.ru_minflt - before.ru_minflt;
}

static void test_forgotten_text_maps_back_on_use(void **state) {
        (void) state;
        Ranges r = libc_ranges();
        unsigned sum, again;
        (void) faults_reading(&r, &sum);
        assert_int_equal(faults_reading(&r, &sum), 0); /* all mapped */
        const void *anchors[] = { (const void *) malloc };
        size_t pages = 0;
        assert_true(worker_text_forget(anchors, 1, &pages) >= 2);
        assert_true(pages > 16);
        /* The entries went (a fault per 16 pages at least, fault-around);
         * the bytes did not. The code that runs meanwhile (libc's own) maps
         * itself back. */
        assert_true(faults_reading(&r, &again) >= (long) (pages / 16) / 2);
        assert_int_equal(again, sum);
}

static void test_no_anchor_changes_nothing(void **state) {
        (void) state;
        size_t pages = 7;
        assert_int_equal(worker_text_copy_at_fork(NULL, 0, &pages), 0);
        assert_int_equal(pages, 0);
        /* An address in no object: the heap. */
        void *p = malloc(64);
        const void *anchors[] = { p };
        assert_int_equal(worker_text_copy_at_fork(anchors, 1, NULL), 0);
        free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_a_child_reads_the_anchored_text_without_faults),
                cmocka_unit_test(test_the_mappings_keep_their_protection_and_bytes),
                cmocka_unit_test(test_forgotten_text_maps_back_on_use),
                cmocka_unit_test(test_no_anchor_changes_nothing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
