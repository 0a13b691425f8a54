/* Unit tests for the zygote's heap plug (worker-heap.c): after it, malloc
 * serves nothing from the free chunks left behind, only from the top. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <malloc.h>
#include <string.h>

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

/* A message's life in the zygote, 50 times over a heap full of holes:
 * 40 blocks of a message's sizes (jansson's objects, pairs, strings)
 * allocated, then freed. The pack serves them all from a few pages,
 * reused message after message (malloc spread them over ~40 of its
 * scattered free chunks' pages: each one a copy-on-write fault after a
 * fork). */
static void test_pack_reuses_a_few_pages_message_after_message(void **state) {
        (void) state;
        make_holes();
        uintptr_t pages[256];
        size_t n_pages = 0;
        for (int msg = 0; msg < 50; msg++) {
                void *b[40];
                for (size_t i = 0; i < 40; i++) {
                        b[i] = worker_pack_alloc(block_size(i * 7));
                        assert_non_null(b[i]);
                        memset(b[i], 'x', block_size(i * 7));
                        uintptr_t page = (uintptr_t) b[i] >> 12;
                        bool seen = false;
                        for (size_t k = 0; k < n_pages; k++)
                                seen = seen || pages[k] == page;
                        if (!seen && n_pages < 256)
                                pages[n_pages++] = page;
                }
                for (size_t i = 0; i < 40; i++)
                        worker_pack_free_zeroed(b[i]);
        }
        /* 40 blocks, ~17 KiB with their headers: 5 pages, 6 if unaligned. */
        assert_true(n_pages <= 6);
}

/* A freed block holds nothing of what it held (the message's secrets):
 * only the free list's link, in its first bytes. */
static void test_pack_free_zeroes_the_block(void **state) {
        (void) state;
        unsigned char *p = worker_pack_alloc(200);
        assert_non_null(p);
        memset(p, 0xAA, 200);
        worker_pack_free_zeroed(p);
        for (size_t i = sizeof(void *); i < 200; i++)
                assert_int_equal(p[i], 0);
        /* And the next block of its class is that one. */
        assert_ptr_equal(worker_pack_alloc(199), p);
        worker_pack_free_zeroed(p);
}

/* Larger blocks, and any once the region is full, come from malloc, and
 * free through the same call. */
static void test_pack_falls_back_to_malloc(void **state) {
        (void) state;
        enum { N = 400 };
        void *b[N];
        for (size_t i = 0; i < N; i++) {
                b[i] = worker_pack_alloc(i % 50 == 0 ? 8192 : 1000);
                assert_non_null(b[i]);
                memset(b[i], 'y', i % 50 == 0 ? 8192 : 1000);
        }
        for (size_t i = 0; i < N; i++)
                worker_pack_free_zeroed(b[i]);
        worker_pack_free_zeroed(NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plug_takes_every_hole),
                cmocka_unit_test(test_after_a_plug_small_blocks_are_packed),
                cmocka_unit_test(test_plug_ends_under_another_allocator),
                cmocka_unit_test(test_pack_reuses_a_few_pages_message_after_message),
                cmocka_unit_test(test_pack_free_zeroes_the_block),
                cmocka_unit_test(test_pack_falls_back_to_malloc),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
