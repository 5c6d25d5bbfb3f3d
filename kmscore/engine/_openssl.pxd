# Declarations of the few OpenSSL libcrypto functions the Cython layer calls
# directly. The AES-GCM work itself goes through csrc/ (see _kms_aead.pxd).

cdef extern from "openssl/crypto.h" nogil:
    void OPENSSL_cleanse(void *ptr, size_t length)
    int CRYPTO_memcmp(const void *a, const void *b, size_t length)
    const char *OpenSSL_version(int t)
    unsigned long OpenSSL_version_num()
    int OPENSSL_VERSION_CONST "OPENSSL_VERSION"

cdef extern from "openssl/opensslv.h" nogil:
    const char *OPENSSL_VERSION_TEXT

cdef extern from "openssl/rand.h" nogil:
    int RAND_bytes(unsigned char *buf, int num)
