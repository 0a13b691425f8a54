/* SHA-256: one-shot digests (built-in for short inputs, libcrypto above),
 * a streaming context over libcrypto, and file digests. */
#include <assert.h>
#include <fcntl.h>
#include <openssl/evp.h>

#include "shared.h"

/* Up to this many bytes the built-in code is faster than paying for
 * libcrypto's first EVP call; above, libcrypto's SHA extensions win. */
#define BUILTIN_MAX (64U * 1024)
#define READ_CHUNK (64U * 1024)

/* FIPS 180-4 SHA-256. */
static const uint32_t K256[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
                w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 | (uint32_t) p[4 * i + 2] << 8 |
                       p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
                uint32_t s0 = ROR32(w[i - 15], 7) ^ ROR32(w[i - 15], 18) ^ (w[i - 15] >> 3);
                uint32_t s1 = ROR32(w[i - 2], 17) ^ ROR32(w[i - 2], 19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; i++) {
                uint32_t t1 = hh + (ROR32(e, 6) ^ ROR32(e, 11) ^ ROR32(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
                uint32_t t2 = (ROR32(a, 2) ^ ROR32(a, 13) ^ ROR32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
                hh = g;
                g = f;
                f = e;
                e = d + t1;
                d = c;
                c = b;
                b = a;
                a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void sha256_small_init(Sha256Small *s) {
        static const uint32_t h0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
        memcpy(s->h, h0, sizeof(h0));
        s->total = 0;
        s->used = 0;
}

void sha256_small_update(Sha256Small *s, const void *data, size_t n) {
        const uint8_t *p = data;
        s->total += n;
        if (s->used > 0) {
                size_t k = MIN(n, sizeof(s->block) - s->used);
                memcpy(s->block + s->used, p, k);
                s->used += k;
                p += k;
                n -= k;
                if (s->used < sizeof(s->block))
                        return;
                sha256_block(s->h, s->block);
                s->used = 0;
        }
        for (; n >= 64; n -= 64, p += 64)
                sha256_block(s->h, p);
        if (n > 0)
                memcpy(s->block, p, n);
        s->used = n;
}

void sha256_small_final(Sha256Small *s, uint8_t out[static SHA256_DIGEST_SIZE]) {
        uint8_t tail[128] = {};
        size_t left = s->used;
        memcpy(tail, s->block, left);
        tail[left] = 0x80;
        size_t tl = left + 9 <= 64 ? 64 : 128;
        uint64_t bits = s->total * 8;
        for (int i = 0; i < 8; i++)
                tail[tl - 1 - i] = (uint8_t) (bits >> (8 * i));
        sha256_block(s->h, tail);
        if (tl == 128)
                sha256_block(s->h, tail + 64);
        for (int i = 0; i < 8; i++) {
                out[4 * i] = (uint8_t) (s->h[i] >> 24);
                out[4 * i + 1] = (uint8_t) (s->h[i] >> 16);
                out[4 * i + 2] = (uint8_t) (s->h[i] >> 8);
                out[4 * i + 3] = (uint8_t) s->h[i];
        }
}

void sha256_small_final_hex(Sha256Small *s, char ret[static SHA256_HEX_SIZE]) {
        uint8_t md[SHA256_DIGEST_SIZE];
        sha256_small_final(s, md);
        hex_encode(md, sizeof(md), ret);
}

static void builtin_digest(const void *data, size_t n, uint8_t out[static SHA256_DIGEST_SIZE]) {
        Sha256Small s;
        sha256_small_init(&s);
        sha256_small_update(&s, data, n);
        sha256_small_final(&s, out);
}

struct Sha256 {
        EVP_MD_CTX *ctx;
};

Sha256 *sha256_new(void) {
        Sha256 *h = xcalloc(1, sizeof(*h));
        h->ctx = EVP_MD_CTX_new();
        if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
                /* Only on allocation failure inside libcrypto: treat as OOM
                 * like xmalloc does. */
                fputs("pysprinter: out of memory (sha256)\n", stderr);
                abort();
        }
        return h;
}

Sha256 *sha256_dup(const Sha256 *h) {
        assert(h);
        Sha256 *c = xcalloc(1, sizeof(*c));
        c->ctx = EVP_MD_CTX_new();
        if (!c->ctx || EVP_MD_CTX_copy_ex(c->ctx, h->ctx) != 1) {
                fputs("pysprinter: out of memory (sha256)\n", stderr);
                abort();
        }
        return c;
}

void sha256_update(Sha256 *h, const void *data, size_t n) {
        assert(h);
        if (n > 0)
                EVP_DigestUpdate(h->ctx, data, n);
}

void sha256_final(Sha256 *h, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        assert(h);
        unsigned len = SHA256_DIGEST_SIZE;
        EVP_DigestFinal_ex(h->ctx, ret, &len);
}

void sha256_final_hex(Sha256 *h, char ret[static SHA256_HEX_SIZE]) {
        uint8_t md[SHA256_DIGEST_SIZE];
        sha256_final(h, md);
        hex_encode(md, sizeof(md), ret);
}

Sha256 *sha256_free(Sha256 *h) {
        if (!h)
                return NULL;
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
}

void sha256_digest(const void *data, size_t n, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        assert(data || n == 0);
        if (n <= BUILTIN_MAX) {
                builtin_digest(data, n, ret);
                return;
        }
        _cleanup_(sha256_freep) Sha256 *h = sha256_new();
        sha256_update(h, data, n);
        sha256_final(h, ret);
}

void sha256_hex(const void *data, size_t n, char ret[static SHA256_HEX_SIZE]) {
        uint8_t md[SHA256_DIGEST_SIZE];
        sha256_digest(data, n, md);
        hex_encode(md, sizeof(md), ret);
}

char *sha256_hex_dup(const void *data, size_t n) {
        char *s = xmalloc(SHA256_HEX_SIZE);
        sha256_hex(data, n, s);
        return s;
}

int sha256_fd_hex(int fd, char ret[static SHA256_HEX_SIZE], uint64_t *ret_size) {
        assert(fd >= 0);
        _cleanup_(sha256_freep) Sha256 *h = sha256_new();
        _cleanup_free_ uint8_t *buf = xmalloc(READ_CHUNK);
        uint64_t size = 0;
        for (;;) {
                ssize_t n = read(fd, buf, READ_CHUNK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                sha256_update(h, buf, (size_t) n);
                size += (uint64_t) n;
        }
        sha256_final_hex(h, ret);
        if (ret_size)
                *ret_size = size;
        return 0;
}

int sha256_file_hex(const char *path, char ret[static SHA256_HEX_SIZE]) {
        assert(path);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return sha256_fd_hex(fd, ret, NULL);
}

bool sha256_hex_is_valid(const char *s) {
        if (!s || strlen(s) != 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}
