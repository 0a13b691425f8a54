/* The zygote's malloc heap, plugged before it forks (issue 15 (c)).
 *
 * By the time the zygote settles, importing the env and its warm-up runs
 * have left glibc's heap (the brk heap, 3.6 MiB with requests) full of free chunks,
 * scattered across its pages: in tcache, the fast bins and the sorted
 * bins. Every child inherits those lists, and malloc() serves a child
 * from them first: each chunk it takes writes that chunk's header (and
 * the next chunk's in-use bit), and a page shared with the zygote is
 * copied on that write. Measured per run (perf record -e
 * page-faults -d, wrk -c8, env with requests): ~167 of its ~540 page
 * faults were the brk heap, ~130 of them inside malloc itself (tcache_get,
 * unlink_chunk, malloc_consolidate walking the fast bins): a fault per
 * small allocation, since consecutive ones land on different pages.
 *
 * So the zygote takes every free chunk for itself once, when it settles
 * (it never frees them: they are its own memory, shared read-only with
 * every child, and most of their pages are never written again). A
 * child's allocations then come from the top chunk: packed, a page
 * copied (or zero-filled past the heap's end) per ~4 KiB allocated, not
 * per allocation. What it costs: the free bytes at settle stay allocated
 * in the zygote (the plugs' pages it had anyway; nothing new is touched
 * but a header per plug).
 *
 * Only glibc's allocator is known here; elsewhere this does nothing, and
 * where another one is interposed at run time it stops at a budget. */
#include <malloc.h>

#include "worker.h"

/* Under ASan malloc is ASan's own: no glibc heap to plug. */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)

/* Whether malloc(size) just took p from the top chunk (not a free chunk):
 * the top chunk (mallinfo2's keepcost) shrank. A mapping of its own
 * (hblks grew) is not from a free chunk either. */
static bool from_top(const struct mallinfo2 *before) {
        struct mallinfo2 now = mallinfo2();
        return now.keepcost < before->keepcost || now.hblks != before->hblks;
}

/* Takes every chunk malloc(size) would serve from its free lists, and
 * stops once *ret_bytes reaches budget. */
static size_t plug_size(size_t size, size_t budget, size_t *ret_bytes) {
        size_t n = 0;
        while (*ret_bytes < budget) {
                struct mallinfo2 before = mallinfo2();
                void *p = malloc(size);
                if (!p)
                        break;
                if (from_top(&before)) {
                        free(p);
                        break;
                }
                /* Kept: the plug itself. */
                n++;
                *ret_bytes += size;
        }
        return n;
}

/* Largest first: a large free chunk is taken whole (or by a few large
 * plugs), not split into thousands of small ones. Every tcache size class
 * (16-byte steps up to 1032 bytes) is asked for on its own: each class's
 * list is only served to requests of that class. */
#define PLUG_LARGEST (64 << 10) /* below the mmap threshold (128 KiB) */
#define PLUG_TCACHE_MAX 1032

/* What tcache can hold on top of what mallinfo2() counts free (its chunks
 * count as in use): 7 chunks of each of its 64 classes, at most 1040 bytes
 * each. */
#define PLUG_TCACHE_BYTES (7 * 64 * 1040)

size_t worker_heap_plug(size_t *ret_bytes) {
        size_t n = 0, bytes = 0;
        /* Never more than the free lists can hold: where another allocator
         * serves malloc (jemalloc by LD_PRELOAD; ASan's, before it was
         * left out above), glibc's figures never move and from_top() never
         * says so; the budget ends the loops there (ASan's unit suite ran
         * the zygote out of memory without it). */
        struct mallinfo2 mi = mallinfo2();
        size_t budget = (mi.fordblks > mi.keepcost ? mi.fordblks - mi.keepcost : 0) + PLUG_TCACHE_BYTES;
        for (size_t size = PLUG_LARGEST; size > PLUG_TCACHE_MAX; size /= 2)
                n += plug_size(size, budget, &bytes);
        for (size_t size = PLUG_TCACHE_MAX; size >= 24; size -= 16)
                n += plug_size(size, budget, &bytes);
        if (ret_bytes)
                *ret_bytes = bytes;
        return n;
}

#else

size_t worker_heap_plug(size_t *ret_bytes) {
        if (ret_bytes)
                *ret_bytes = 0;
        return 0;
}

#endif

/* ---- the zygote's message allocations, packed (round 12) ----
 *
 * Between two forks the zygote handles a message: it parses it (jansson:
 * an object, its pairs, string copies), answers ("started", "exited":
 * json_pack, json_dumps) and frees it all, each block zeroed (worker.c
 * zeroing_free(): a message carries a tenant's source and secrets). Every
 * page it writes is shared with the children forked since, so each one
 * is a copy-on-write fault in the zygote, once per fork. From malloc
 * those blocks came from tcache's per-size lists, wherever the heap had
 * free chunks: in one measured sitting of three, ~40 scattered pages,
 * ~50 of the zygote's ~84 faults per run at -c8 (perf record -e
 * page-faults -d), one page per block; ~33 in the other two. Served from
 * one small region instead, by size class, last freed first out, the
 * same few pages are reused message after message. Blocks larger than
 * PACK_MAX, and any once the region is full, come from malloc. */
#include <string.h>
#include <sys/mman.h>

#define PACK_REGION (256 << 10)
#define PACK_STEP 16
#define PACK_MAX 1024
#define PACK_CLASSES (PACK_MAX / PACK_STEP)

/* 16 bytes before each block: its class; keeps the block 16-aligned. */
typedef struct {
        size_t klass;
        size_t unused;
} PackHeader;

static char *pack_base, *pack_top, *pack_end;
static void *pack_free_list[PACK_CLASSES + 1];

static bool pack_owns(const void *p) {
        return pack_base && (const char *) p >= pack_base && (const char *) p < pack_end;
}

static void *pack_take(size_t klass) {
        void *p = pack_free_list[klass];
        if (p) {
                memcpy(&pack_free_list[klass], p, sizeof(void *));
                return p;
        }
        if (!pack_base) {
                void *m = mmap(NULL, PACK_REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (m == MAP_FAILED)
                        return NULL;
                pack_base = pack_top = m;
                pack_end = pack_base + PACK_REGION;
        }
        size_t need = sizeof(PackHeader) + klass * PACK_STEP;
        if ((size_t) (pack_end - pack_top) < need)
                return NULL;
        PackHeader *h = (PackHeader *) (void *) pack_top;
        h->klass = klass;
        pack_top += need;
        return h + 1;
}

void *worker_pack_alloc(size_t size) {
        if (size <= PACK_MAX) {
                void *p = pack_take(MAX((size + PACK_STEP - 1) / PACK_STEP, (size_t) 1));
                if (p)
                        return p;
        }
        return malloc(size);
}

void worker_pack_free_zeroed(void *p) {
        if (!p)
                return;
        if (!pack_owns(p)) {
                explicit_bzero(p, malloc_usable_size(p));
                free(p);
                return;
        }
        size_t klass = ((PackHeader *) p)[-1].klass;
        explicit_bzero(p, klass * PACK_STEP);
        memcpy(p, &pack_free_list[klass], sizeof(void *));
        pack_free_list[klass] = p;
}

/* ---- pages of zeroes, dropped when the zygote settles (round 13) ----
 *
 * fork() copies a page-table entry for every resident page of the
 * zygote's private anonymous memory, and every run's exit tears its copy
 * down: ~37 ns a page of a large folio, ~150 ns a small one, fork and
 * exit together (docs/internals/performance-log.md, round 13). Some of those pages hold
 * nothing but zeroes: pymalloc's huge-page chunks are resident whole
 * (round 10: the unused half of the last chunk, pools never carved), the
 * heap has a few. Dropped (MADV_DONTNEED), such a page still reads as
 * zeroes, and the first write to it faults in a fresh zeroed page where
 * the copy of a shared one was a fault too: the content of every page is
 * what it was, and a fork copies no entry for it.
 *
 * Only memory that no other thread or process can write while it is
 * checked: the worker has one thread (worker_one_thread(); an env whose
 * import started a thread keeps its pages: that thread might be reading
 * into a buffer there, with the GIL released), and its CLONE_VM helpers
 * (the pid namespace's init, the cgroup and netns helpers) write only
 * their own stacks, never the heap or pymalloc's chunks. */
#include <assert.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#define ZERO_PAGE_SIZE 4096u

/* Not instrumented: under ASan a page may hold a poisoned redzone, which
 * is read here only to be compared, never used. */
__attribute__((no_sanitize_address)) static bool page_is_zero(const char *p) {
        const uint64_t *w = (const uint64_t *) (const void *) p;
        for (size_t i = 0; i < ZERO_PAGE_SIZE / sizeof(*w); i++)
                if (w[i])
                        return false;
        return true;
}

/* Walks the resident pages of [base, base + n pages) in mincore()
 * windows; drops the runs of zero pages if drop, else only counts them.
 * Absent pages are not read (a read would map the zero page). */
static size_t zero_pages(char *base, size_t n, bool drop) {
        size_t dropped = 0, from = SIZE_MAX;
        unsigned char resident[512];
        for (size_t done = 0; done < n;) {
                size_t k = MIN(n - done, ELEMENTSOF(resident));
                if (mincore(base + done * ZERO_PAGE_SIZE, k * ZERO_PAGE_SIZE, resident) < 0)
                        return dropped;
                for (size_t i = 0; i <= k; i++) {
                        size_t page = done + i;
                        bool zero = i < k && (resident[i] & 1) && page_is_zero(base + page * ZERO_PAGE_SIZE);
                        if (zero && from == SIZE_MAX)
                                from = page;
                        /* A range ends at a page that is not dropped, or
                         * at the end of this mincore() window. */
                        if ((!zero || i == k) && from != SIZE_MAX) {
                                if (!drop || madvise(base + from * ZERO_PAGE_SIZE, (page - from) * ZERO_PAGE_SIZE,
                                                     MADV_DONTNEED) == 0)
                                        dropped += page - from;
                                from = SIZE_MAX;
                        }
                }
                done += k;
        }
        return dropped;
}

size_t worker_drop_zero_pages(void *start, size_t len, size_t min_pages) {
        assert(start && (uintptr_t) start % ZERO_PAGE_SIZE == 0);
        if ((size_t) sysconf(_SC_PAGESIZE) != ZERO_PAGE_SIZE)
                return 0;
        size_t n = len / ZERO_PAGE_SIZE;
        if (min_pages > 1 && zero_pages(start, n, false) < min_pages)
                return 0;
        return zero_pages(start, n, true);
}

bool worker_one_thread(void) {
        /* /proc/self/stat: ") S ppid pgrp session tty_nr tpgid flags minflt
         * cminflt majflt cmajflt utime stime cutime cstime priority nice
         * num_threads" */
        _cleanup_close_ int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
        char buf[512];
        ssize_t got = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (got <= 0)
                return false;
        buf[got] = 0;
        const char *p = strrchr(buf, ')');
        long threads = 0;
        if (!p || sscanf(p + 1, " %*c" " %*d %*d %*d %*d %*d %*u" " %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %ld",
                         &threads) != 1)
                return false;
        return threads == 1;
}

size_t worker_heap_drop_zero_pages(void) {
#if !defined(__GLIBC__) || defined(__SANITIZE_ADDRESS__)
        /* Not glibc's heap (as worker_heap_plug()). */
        return 0;
#else
        /* Where the brk heap is: /proc/self/maps, read without malloc (a
         * stack buffer: the heap's line comes early, after the binary's). */
        _cleanup_close_ int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        char buf[4096];
        ssize_t got = read(fd, buf, sizeof(buf) - 1);
        if (got <= 0)
                return 0;
        buf[got] = 0;
        for (char *line = buf; line && *line;) {
                char *end = strchr(line, '\n');
                if (!end)
                        break; /* cut off: not found in the first page */
                *end = 0;
                unsigned long lo, hi;
                if (strstr(line, " [heap]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
                        return worker_drop_zero_pages((void *) lo, hi - lo, 1);
                line = end + 1;
        }
        return 0;
#endif
}
