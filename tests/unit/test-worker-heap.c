/* Unit tests for the zygote's heap plug (worker-heap.c): after it, malloc
 * serves nothing from the free chunks left behind, only from the top. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <malloc.h>

#include "worker.h"

/* A heap full of holes, as importing an env leaves the worker's: blocks
 * of mixed sizes, every other one freed (their addresses kept). */
#define BLOCKS 4000
static void *blocks[BLOCKS];
static void *holes[BLOCKS / 2];

static size_t block_size(size_t i) {
        return 16 + (i % 40) * 24;
}

static void make_holes(void) {
        for (size_t i = 0; i < BLOCKS; i++)
                blocks[i] = malloc(block_size(i));
        for (size_t i = 1; i < BLOCKS; i += 2) {
                holes[i / 2] = blocks[i];
                free(blocks[i]);
                blocks[i] = NULL;
        }
}

static bool is_hole(const void *p) {
        for (size_t i = 0; i < BLOCKS / 2; i++)
                if (holes[i] == p)
                        return true;
        return false;
}

/* Under ASan malloc is ASan's: there is no glibc heap to plug, and the
 * plug does nothing (test_plug_ends_under_another_allocator still runs). */
#if defined(__SANITIZE_ADDRESS__)
#define GLIBC_MALLOC_OR_SKIP() skip()
#else
#define GLIBC_MALLOC_OR_SKIP() (void) 0
#endif

static void test_plug_takes_every_hole(void **state) {
        (void) state;
        GLIBC_MALLOC_OR_SKIP();
        make_holes();
        size_t bytes = 0;
        size_t n = worker_heap_plug(&bytes);
        /* ~2000 holes, fewer chunks where neighbours coalesced. */
        assert_true(n >= 100);
        assert_true(bytes >= 16 * 100);
        /* Nothing free outside the top chunk (tcache's chunks count as in
         * use here; the plug's own probes of the top went back to it). */
        struct mallinfo2 mi = mallinfo2();
        assert_true(mi.fordblks - mi.keepcost < 1024);
        /* No new block of any of the holes' sizes is one of them. */
        for (size_t i = 0; i < 400; i++) {
                void *p = malloc(block_size(i));
                assert_non_null(p);
                assert_false(is_hole(p));
        }
}

static void test_after_a_plug_small_blocks_are_packed(void **state) {
        (void) state;
        GLIBC_MALLOC_OR_SKIP();
        make_holes();
        (void) worker_heap_plug(NULL);
        /* 64 blocks of 40 bytes (48-byte chunks, 3 KiB) carved from the top
         * one after another: a few pages at most (the first may be one of
         * the plug's probes of that size, given back next to the top). */
        uintptr_t pages[64];
        size_t n_pages = 0;
        for (int k = 0; k < 64; k++) {
                uintptr_t page = (uintptr_t) malloc(40) >> 12;
                bool seen = false;
                for (size_t i = 0; i < n_pages; i++)
                        seen = seen || pages[i] == page;
                if (!seen)
                        pages[n_pages++] = page;
        }
        assert_true(n_pages <= 4);
}

/* Under any allocator the plug ends, and takes no more than glibc's free
 * lists could hold (under ASan, where glibc's figures never move, it used
 * to allocate until the process ran out of memory). */
static void test_plug_ends_under_another_allocator(void **state) {
        (void) state;
        struct mallinfo2 mi = mallinfo2();
        size_t free_bytes = mi.fordblks > mi.keepcost ? mi.fordblks - mi.keepcost : 0;
        size_t bytes = 0;
        (void) worker_heap_plug(&bytes);
        assert_true(bytes <= free_bytes + 7 * 64 * 1040 + (64 << 10));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plug_takes_every_hole),
                cmocka_unit_test(test_after_a_plug_small_blocks_are_packed),
                cmocka_unit_test(test_plug_ends_under_another_allocator),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
