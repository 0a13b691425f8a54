/* The code every run executes, mapped in a child by its fork (issue 15 (c)).
 *
 * fork() copies no page-table entry of a private file mapping that has
 * never had a private page (no anon_vma: the kernel's vma_needs_copy()):
 * "a page fault will fill them correctly", which is cheaper for a parent
 * that forks once. A zygote forks a child per run, and every child then
 * takes the same read faults again on the code and constants it runs:
 * measured per trivial run (perf record -e exceptions:page_fault_user,
 * wrk -c8, env with requests), ~57 of its ~280 faults were reads of
 * libpython's and libc's text and read-only data — each a trap, a
 * page-cache lookup and fault-around — on a host where a fault costs
 * ~3 µs of CPU.
 *
 * So the zygote gives each read-only segment of the objects every run
 * executes (the worker, libpython, libc, jansson) one private copy of its
 * first page: the mapping is made writable, that byte written with its own
 * value, and the protection put back, over the whole segment (one mapping
 * before and after). The mapping now has an anon_vma, and each later fork
 * copies its resident entries in one batch instead. Before its warm-up
 * runs the zygote drops its own entries of the same segments
 * (worker_text_forget(): MADV_DONTNEED, the pages stay cached), so what
 * the forks copy is what those runs mapped back — a run's code — and not
 * what start-up and the imports touched (5.4 MB instead of 6.8 with
 * requests). What it costs: one page per segment, private to the zygote
 * and shared read-only with its children (identical to the file's), and
 * the entries every fork copies and every exit tears down (about as many
 * as the children's faults mapped anyway, 16 pages per fault around).
 * Where the kernel refuses a writable code mapping (W^X policies) the
 * segment stays as it was: slower children, not wrong ones. */
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include "worker.h"

typedef struct TextWalk TextWalk;
struct TextWalk {
        const void *const *anchors;
        size_t n_anchors;
        /* What is done to each read-only segment, [start, end) in whole pages. */
        int (*action)(uintptr_t start, uintptr_t end, bool exec);
        size_t pages;
        size_t segments;
};

/* Whether addr lies in one of the object's loaded segments. */
static bool object_holds(const struct dl_phdr_info *info, const void *addr) {
        uintptr_t a = (uintptr_t) addr;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t start = info->dlpi_addr + ph->p_vaddr;
                if (ph->p_type == PT_LOAD && a >= start && a < start + ph->p_memsz)
                        return true;
        }
        return false;
}

static bool object_wanted(const struct dl_phdr_info *info, const TextWalk *w) {
        for (size_t i = 0; i < w->n_anchors; i++)
                if (object_holds(info, w->anchors[i]))
                        return true;
        return false;
}

/* [start, end) rounded out to whole pages: the segment's mapping. */
static int segment_give_private_page(uintptr_t start, uintptr_t end, bool exec) {
        int prot = PROT_READ | (exec ? PROT_EXEC : 0);
        /* Executable while writable: this very code may sit in it (libc). */
        if (mprotect((void *) start, end - start, prot | PROT_WRITE) < 0)
                return -errno;
        volatile unsigned char *p = (volatile unsigned char *) start;
        *p = *p;
        if (mprotect((void *) start, end - start, prot) < 0)
                return -errno;
        return 0;
}

static int object_text_walk(struct dl_phdr_info *info, size_t size, void *data) {
        TextWalk *w = data;
        if (!object_wanted(info, w))
                return 0;
        uintptr_t page = (uintptr_t) sysconf(_SC_PAGESIZE);
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                /* Writable segments have private pages already (relocations,
                 * data): fork copies their entries as it is. */
                if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || ph->p_memsz == 0)
                        continue;
                uintptr_t start = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
                uintptr_t end = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + page - 1) & ~(page - 1);
                int r = w->action(start, end, ph->p_flags & PF_X);
                if (r < 0) {
                        log_debug("%s: a read-only segment left as it was: %s",
                                  info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "the worker", strerror(-r));
                        continue;
                }
                w->segments++;
                w->pages += (end - start) / page;
        }
        return 0;
}

static size_t text_walk(const void *const *anchors, size_t n_anchors, int (*action)(uintptr_t, uintptr_t, bool),
                        size_t *ret_pages) {
        TextWalk w = { .anchors = anchors, .n_anchors = n_anchors, .action = action };
        (void) dl_iterate_phdr(object_text_walk, &w);
        if (ret_pages)
                *ret_pages = w.pages;
        return w.segments;
}

/* The pages stay in the page cache; only this process's entries go. */
static int segment_forget(uintptr_t start, uintptr_t end, bool exec) {
        (void) exec;
        return madvise((void *) start, end - start, MADV_DONTNEED) < 0 ? -errno : 0;
}

size_t worker_text_forget(const void *const *anchors, size_t n_anchors, size_t *ret_pages) {
        return text_walk(anchors, n_anchors, segment_forget, ret_pages);
}

size_t worker_text_copy_at_fork(const void *const *anchors, size_t n_anchors, size_t *ret_pages) {
        return text_walk(anchors, n_anchors, segment_give_private_page, ret_pages);
}
