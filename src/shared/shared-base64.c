/* Base64 (RFC 4648, standard alphabet, padded) over libcrypto's block
 * coder: bytes that JSON cannot hold as text (a source that is not UTF-8,
 * a run's binary output, a Lambda log tail, a function URL's body). */
#include <assert.h>
#include <limits.h>
#include <openssl/evp.h>

#include "shared.h"

char *base64_encode(const void *data, size_t n) {
        assert(data || n == 0);
        assert(n <= INT_MAX);
        char *out = xmalloc(4 * ((n + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *) out, data, (int) n);
        return out;
}

int base64_decode(const char *s, size_t n, char **ret, size_t *ret_len) {
        assert(s || n == 0);
        assert(ret && ret_len);
        if (n % 4 != 0 || n > INT_MAX)
                return -EINVAL;
        char *out = xmalloc(n / 4 * 3 + 1);
        int len = n ? EVP_DecodeBlock((unsigned char *) out, (const unsigned char *) s, (int) n) : 0;
        if (len < 0) {
                free(out);
                return -EINVAL;
        }
        /* EVP_DecodeBlock counts the padding as zero bytes: take them off. */
        size_t pad = (n >= 1 && s[n - 1] == '=') + (n >= 2 && s[n - 2] == '=');
        *ret_len = (size_t) len - pad;
        out[*ret_len] = 0;
        *ret = out;
        return 0;
}
