/* pkg-util.c: hashing and URL helpers of the package manager. */
#include "pkg-mgr.h"

#include <fcntl.h>
#include <openssl/evp.h>

struct PkgSha256 {
        EVP_MD_CTX *ctx;
};

PkgSha256 *pkg_sha256_new(void) {
        PkgSha256 *h = xcalloc(1, sizeof(*h));
        h->ctx = EVP_MD_CTX_new();
        if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
                /* Only on allocation failure inside libcrypto: treat as OOM
                 * like xmalloc does. */
                fputs("pysprinter: out of memory (sha256)\n", stderr);
                abort();
        }
        return h;
}

void pkg_sha256_update(PkgSha256 *h, const void *data, size_t n) {
        EVP_DigestUpdate(h->ctx, data, n);
}

void pkg_sha256_finish(PkgSha256 *h, uint8_t out[32]) {
        unsigned len = 32;
        EVP_DigestFinal_ex(h->ctx, out, &len);
        pkg_sha256_free(h);
}

PkgSha256 *pkg_sha256_free(PkgSha256 *h) {
        if (!h)
                return NULL;
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
}

char *pkg_hex(const uint8_t *data, size_t n) {
        static const char digits[] = "0123456789abcdef";
        char *s = xmalloc(n * 2 + 1);
        for (size_t i = 0; i < n; i++) {
                s[2 * i] = digits[data[i] >> 4];
                s[2 * i + 1] = digits[data[i] & 15];
        }
        s[2 * n] = 0;
        return s;
}

/* FIPS 180-4 SHA-256 for short strings. The cached-environment path hashes
 * one small key per run, and libcrypto's first EVP call costs ~1.5 ms
 * (config file and provider loading) — most of the 2 ms budget. Large
 * inputs (wheels) still go through libcrypto. */
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

char *pkg_sha256_hex_of(const void *data, size_t n) {
        uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
        const uint8_t *p = data;
        size_t left = n;
        for (; left >= 64; left -= 64, p += 64)
                sha256_block(h, p);
        uint8_t tail[128] = {};
        memcpy(tail, p, left);
        tail[left] = 0x80;
        size_t tl = left + 9 <= 64 ? 64 : 128;
        uint64_t bits = (uint64_t) n * 8;
        for (int i = 0; i < 8; i++)
                tail[tl - 1 - i] = (uint8_t) (bits >> (8 * i));
        sha256_block(h, tail);
        if (tl == 128)
                sha256_block(h, tail + 64);
        uint8_t out[32];
        for (int i = 0; i < 8; i++) {
                out[4 * i] = (uint8_t) (h[i] >> 24);
                out[4 * i + 1] = (uint8_t) (h[i] >> 16);
                out[4 * i + 2] = (uint8_t) (h[i] >> 8);
                out[4 * i + 3] = (uint8_t) h[i];
        }
        return pkg_hex(out, 32);
}

char *pkg_record_hash(const uint8_t digest[32]) {
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char out[64] = "sha256=";
        size_t o = strlen(out);
        for (size_t i = 0; i < 32; i += 3) {
                uint32_t v = (uint32_t) digest[i] << 16;
                size_t take = MIN((size_t) 3, 32 - i);
                if (take > 1)
                        v |= (uint32_t) digest[i + 1] << 8;
                if (take > 2)
                        v |= digest[i + 2];
                out[o++] = b64[(v >> 18) & 63];
                out[o++] = b64[(v >> 12) & 63];
                if (take > 1)
                        out[o++] = b64[(v >> 6) & 63];
                if (take > 2)
                        out[o++] = b64[v & 63];
        }
        out[o] = 0;
        return xstrdup(out);
}

bool pkg_is_sha256_hex(const char *s) {
        if (!s || strlen(s) != 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

int pkg_sha256_file(const char *path, char **ret_hex) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        PkgSha256 *h = pkg_sha256_new();
        uint8_t buf[65536];
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        pkg_sha256_free(h);
                        return r;
                }
                if (n == 0)
                        break;
                pkg_sha256_update(h, buf, (size_t) n);
        }
        uint8_t d[32];
        pkg_sha256_finish(h, d);
        *ret_hex = pkg_hex(d, 32);
        return 0;
}

/* Removes "." and ".." segments of an absolute path (RFC 3986 5.2.4). */
static char *remove_dot_segments(const char *path) {
        size_t n = strlen(path);
        char **segs = xcalloc(n + 2, sizeof(char *));
        size_t ns = 0;
        _cleanup_free_ char *p = xstrdup(path);
        bool trailing = n > 0 && (path[n - 1] == '/' || endswith(path, "/.") || endswith(path, "/.."));
        char *save = p;
        for (char *s = p; save; s = save) {
                char *slash = strchr(s, '/');
                save = slash ? slash + 1 : NULL;
                if (slash)
                        *slash = 0;
                if (!*s || streq(s, "."))
                        continue;
                if (streq(s, "..")) {
                        if (ns > 0)
                                ns--;
                        continue;
                }
                segs[ns++] = s;
        }
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        for (size_t i = 0; i < ns; i++) {
                buf_appends(&b, "/");
                buf_appends(&b, segs[i]);
        }
        if (trailing || ns == 0)
                buf_appends(&b, "/");
        free(segs);
        return buf_steal(&b);
}

char *pkg_url_join(const char *base, const char *href) {
        const char *colon = strstr(href, "://");
        const char *firstslash = strchr(href, '/');
        if (colon && (!firstslash || colon < firstslash))
                return xstrdup(href);
        const char *sep = strstr(base, "://");
        if (!sep)
                return xstrdup(href);
        if (startswith(href, "//"))
                return xasprintf("%.*s:%s", (int) (sep - base), base, href);
        const char *hoststart = sep + 3;
        const char *pathstart = strchr(hoststart, '/');
        size_t origin_len = pathstart ? (size_t) (pathstart - base) : strlen(base);
        _cleanup_free_ char *basepath = xstrdup(pathstart ? pathstart : "/");
        char *q = strpbrk(basepath, "?#");
        if (q)
                *q = 0;
        /* Split off the href's query/fragment so dot-segment removal sees
         * only the path. */
        size_t hp = strcspn(href, "?#");
        _cleanup_free_ char *hpath = xstrndup(href, hp);
        _cleanup_free_ char *merged = NULL;
        if (hpath[0] == '/')
                merged = xstrdup(hpath);
        else if (!hpath[0])
                merged = xstrdup(basepath);
        else {
                char *last = strrchr(basepath, '/');
                merged = xasprintf("%.*s/%s", (int) (last ? last - basepath : 0), basepath, hpath);
        }
        _cleanup_free_ char *clean = remove_dot_segments(merged);
        return xasprintf("%.*s%s%s", (int) origin_len, base, clean, href + hp);
}
