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
