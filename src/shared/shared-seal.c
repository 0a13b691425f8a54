/* Sealed values: AES-256-GCM through libcrypto's EVP interface, and the key
 * file that holds the key. Secrets (src/store/store-secrets.c) are the one
 * user: a database row holds nonce || ciphertext || tag, never the value. */
#include <assert.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared.h"

static int read_key(int fd, const char *path, uint8_t ret[static SEAL_KEY_SIZE], char **ret_error) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size != SEAL_KEY_SIZE) {
                *ret_error = xasprintf("%s: not a %d-byte key file", path, SEAL_KEY_SIZE);
                return -EBADMSG;
        }
        if (st.st_mode & 0077) {
                *ret_error = xasprintf("%s: mode %04o lets others read the key; chmod 600 it", path,
                                       (unsigned) (st.st_mode & 07777));
                return -EPERM;
        }
        uint8_t k[SEAL_KEY_SIZE];
        ssize_t n = pread(fd, k, sizeof k, 0);
        if (n != SEAL_KEY_SIZE) {
                *ret_error = xasprintf("%s: short read", path);
                return n < 0 ? -errno : -EBADMSG;
        }
        memcpy(ret, k, sizeof k);
        explicit_bzero(k, sizeof k);
        return 0;
}

char *seal_key_path(const char *path) {
        assert(path);
        char *r = realpath(path, NULL);
        return r ?: xstrdup(path);
}

int seal_key_read(const char *path, uint8_t ret[static SEAL_KEY_SIZE], char **ret_error) {
        assert(path);
        assert(ret_error);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0)
                return read_key(fd, path, ret, ret_error);
        int r = -errno;
        *ret_error = xasprintf("%s: %s", path, strerror(-r));
        return r;
}

int seal_key_load(const char *path, uint8_t ret[static SEAL_KEY_SIZE], char **ret_error) {
        assert(path);
        assert(ret_error);
        int r = seal_key_read(path, ret, ret_error);
        if (r != -ENOENT)
                return r;
        free(*ret_error);
        *ret_error = NULL;
        /* Written under a temporary name and linked into place: a reader
         * never sees a half-written key, and link() fails when another
         * process created the key first (then that one is read). */
        uint8_t k[SEAL_KEY_SIZE];
        if (getrandom(k, sizeof k, 0) != (ssize_t) sizeof k) {
                r = -errno;
                *ret_error = xasprintf("getrandom: %s", strerror(-r));
                return r;
        }
        /* A random name, not our pid: a process killed before the link
         * leaves its file, and the next one given the same pid (always,
         * as pid 1 of a container) failed its O_EXCL open for ever. */
        _cleanup_free_ char *rnd = NULL;
        r = random_hex(8, &rnd);
        if (r < 0) {
                explicit_bzero(k, sizeof k);
                *ret_error = xasprintf("%s: cannot create the key: %s", path, strerror(-r));
                return r;
        }
        _cleanup_free_ char *tmp = xasprintf("%s.%s.tmp", path, rnd);
        _cleanup_close_ int w = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (w < 0 || write(w, k, sizeof k) != (ssize_t) sizeof k || fsync(w) < 0)
                r = -errno;
        else if (link(tmp, path) < 0 && errno != EEXIST)
                r = -errno;
        (void) unlink(tmp);
        explicit_bzero(k, sizeof k);
        if (r < 0) {
                *ret_error = xasprintf("%s: cannot create the key: %s", path, strerror(-r ?: EIO));
                return r ?: -EIO;
        }
        return seal_key_read(path, ret, ret_error);
}

int seal_encrypt(const uint8_t key[static SEAL_KEY_SIZE], const void *aad, size_t aad_len, const void *plain,
                 size_t n, uint8_t **ret, size_t *ret_len) {
        assert(key);
        assert(plain || n == 0);
        if (n > INT32_MAX - SEAL_OVERHEAD || aad_len > INT32_MAX)
                return -EFBIG;
        uint8_t *box = xmalloc(n + SEAL_OVERHEAD);
        if (getrandom(box, SEAL_NONCE_SIZE, 0) != SEAL_NONCE_SIZE) {
                int r = -errno;
                free(box);
                return r;
        }
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int len = 0, ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, box) == 1;
        if (ok && aad_len)
                ok = EVP_EncryptUpdate(ctx, NULL, &len, aad, (int) aad_len) == 1;
        if (ok && n)
                ok = EVP_EncryptUpdate(ctx, box + SEAL_NONCE_SIZE, &len, plain, (int) n) == 1;
        if (ok)
                ok = EVP_EncryptFinal_ex(ctx, box + SEAL_NONCE_SIZE + n, &len) == 1;
        if (ok)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_SIZE, box + SEAL_NONCE_SIZE + n) == 1;
        EVP_CIPHER_CTX_free(ctx);
        if (!ok) {
                free(box);
                return -EIO;
        }
        *ret = box;
        *ret_len = n + SEAL_OVERHEAD;
        return 0;
}

int seal_decrypt(const uint8_t key[static SEAL_KEY_SIZE], const void *aad, size_t aad_len, const uint8_t *box,
                 size_t len, char **ret, size_t *ret_len) {
        assert(key);
        if (!box || len < SEAL_OVERHEAD || len > INT32_MAX || aad_len > INT32_MAX)
                return -EBADMSG;
        size_t n = len - SEAL_OVERHEAD;
        char *plain = xmalloc(n + 1);
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int l = 0, ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, box) == 1;
        if (ok && aad_len)
                ok = EVP_DecryptUpdate(ctx, NULL, &l, aad, (int) aad_len) == 1;
        if (ok && n)
                ok = EVP_DecryptUpdate(ctx, (uint8_t *) plain, &l, box + SEAL_NONCE_SIZE, (int) n) == 1;
        if (ok)
                ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_SIZE,
                                         (void *) (box + SEAL_NONCE_SIZE + n)) == 1;
        /* The tag is checked here: a box altered or sealed under another
         * key or aad fails, and the plaintext written so far is wiped. */
        if (ok)
                ok = EVP_DecryptFinal_ex(ctx, (uint8_t *) plain + n, &l) == 1;
        EVP_CIPHER_CTX_free(ctx);
        if (!ok) {
                explicit_bzero(plain, n + 1);
                free(plain);
                return -EBADMSG;
        }
        plain[n] = 0;
        *ret = plain;
        *ret_len = n;
        return 0;
}
