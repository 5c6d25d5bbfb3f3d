/* kms_aead: see kms_aead.h for the contract. */
#include "kms_aead.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

struct kms_aead_key {
    EVP_CIPHER *cipher;
    EVP_CIPHER_CTX *tmpl; /* key schedule set once; only ever copied from */
};

struct kms_aead_op {
    EVP_CIPHER_CTX *ctx;
};

/* EVP takes int lengths; feed larger inputs in slices. */
#define KMS_SLICE (1 << 30)

kms_status kms_aead_key_new(const uint8_t *key, size_t key_len, kms_aead_key **out)
{
    kms_aead_key *k;

    *out = NULL;
    if (key_len != KMS_AEAD_KEY_LEN)
        return KMS_ERR_KEY_LEN;
    k = OPENSSL_zalloc(sizeof(*k));
    if (k == NULL)
        return KMS_ERR_NOMEM;
    k->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    k->tmpl = EVP_CIPHER_CTX_new();
    if (k->cipher == NULL || k->tmpl == NULL
        || EVP_EncryptInit_ex2(k->tmpl, k->cipher, key, NULL, NULL) != 1) {
        kms_aead_key_free(k);
        return KMS_ERR_OPENSSL;
    }
    *out = k;
    return KMS_OK;
}

void kms_aead_key_free(kms_aead_key *key)
{
    if (key == NULL)
        return;
    /* The provider context holding the schedule is cleansed by OpenSSL's
     * freectx; the struct itself holds only pointers. */
    EVP_CIPHER_CTX_free(key->tmpl);
    EVP_CIPHER_free(key->cipher);
    OPENSSL_clear_free(key, sizeof(*key));
}

kms_status kms_aead_op_new(const kms_aead_key *key, kms_aead_op **out)
{
    kms_aead_op *op;

    *out = NULL;
    op = OPENSSL_zalloc(sizeof(*op));
    if (op == NULL)
        return KMS_ERR_NOMEM;
    op->ctx = EVP_CIPHER_CTX_new();
    if (op->ctx == NULL || EVP_CIPHER_CTX_copy(op->ctx, key->tmpl) != 1) {
        kms_aead_op_free(op);
        return KMS_ERR_OPENSSL;
    }
    *out = op;
    return KMS_OK;
}

void kms_aead_op_free(kms_aead_op *op)
{
    if (op == NULL)
        return;
    EVP_CIPHER_CTX_free(op->ctx);
    OPENSSL_clear_free(op, sizeof(*op));
}

static int feed_aad(EVP_CIPHER_CTX *ctx, const uint8_t *aad, size_t aad_len)
{
    int outl;

    while (aad_len > 0) {
        int n = aad_len > KMS_SLICE ? KMS_SLICE : (int)aad_len;
        if (EVP_CipherUpdate(ctx, NULL, &outl, aad, n) != 1)
            return 0;
        aad += n;
        aad_len -= (size_t)n;
    }
    return 1;
}

static int feed_data(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len, uint8_t *out)
{
    int outl;

    while (len > 0) {
        int n = len > KMS_SLICE ? KMS_SLICE : (int)len;
        if (EVP_CipherUpdate(ctx, out, &outl, in, n) != 1 || outl != n)
            return 0;
        in += n;
        out += n;
        len -= (size_t)n;
    }
    return 1;
}

/* Get or set the tag through the provider's params directly: the ctrl
 * wrapper builds the same OSSL_PARAM but costs ~12 ns more per call. */
static int tag_param(EVP_CIPHER_CTX *ctx, uint8_t *tag, int set)
{
    OSSL_PARAM p[2];

    p[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag,
                                             KMS_AEAD_TAG_LEN);
    p[1] = OSSL_PARAM_construct_end();
    return set ? EVP_CIPHER_CTX_set_params(ctx, p) == 1
               : EVP_CIPHER_CTX_get_params(ctx, p) == 1;
}

kms_status kms_aead_seal(kms_aead_op *op, const uint8_t *iv,
                         const uint8_t *pt, size_t pt_len,
                         const uint8_t *aad, size_t aad_len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = op->ctx;
    int outl;

    if (pt_len > SIZE_MAX - KMS_AEAD_TAG_LEN)
        return KMS_ERR_LENGTH;
    /* A NULL key keeps the schedule set at kms_aead_key_new. */
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1
        || !feed_aad(ctx, aad, aad_len)
        || !feed_data(ctx, pt, pt_len, out)
        || EVP_EncryptFinal_ex(ctx, out + pt_len, &outl) != 1
        || !tag_param(ctx, out + pt_len, 0))
        return KMS_ERR_OPENSSL;
    return KMS_OK;
}

kms_status kms_aead_open(kms_aead_op *op, const uint8_t *iv,
                         const uint8_t *in, size_t in_len,
                         const uint8_t *aad, size_t aad_len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = op->ctx;
    uint8_t tag[KMS_AEAD_TAG_LEN];
    size_t ct_len;
    int outl;

    if (in_len < KMS_AEAD_TAG_LEN)
        return KMS_ERR_AUTH;
    ct_len = in_len - KMS_AEAD_TAG_LEN;
    memcpy(tag, in + ct_len, KMS_AEAD_TAG_LEN);
    /* EVP_DecryptFinal_ex compares the tag in constant time. */
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1
        || !feed_aad(ctx, aad, aad_len)
        || !feed_data(ctx, in, ct_len, out)
        || !tag_param(ctx, tag, 1)
        || EVP_DecryptFinal_ex(ctx, out + ct_len, &outl) != 1) {
        OPENSSL_cleanse(out, ct_len);
        return KMS_ERR_AUTH;
    }
    return KMS_OK;
}

kms_status kms_aead_generate(kms_aead_op *op, size_t n, size_t key_len,
                             const uint8_t *aad, size_t aad_len,
                             uint8_t *plain, uint8_t *sealed)
{
    const size_t item = KMS_AEAD_IV_LEN + key_len + KMS_AEAD_TAG_LEN;
    size_t rand_len, i;
    uint8_t *draw, *ivs;
    kms_status st = KMS_OK;

    if (key_len < 1 || key_len > KMS_AEAD_DATA_KEY_MAX)
        return KMS_ERR_LENGTH;
    if (n == 0)
        return KMS_OK;
    if (n > (size_t)INT_MAX / (key_len + KMS_AEAD_IV_LEN))
        return KMS_ERR_LENGTH;
    /* Draw keys || IVs in one call into the tail of `sealed`
     * (no heap allocation). IV i sits at n*(key_len+16) + 12*i, which item i
     * (written front to back) reaches only after IV i has been moved. */
    rand_len = n * (key_len + KMS_AEAD_IV_LEN);
    draw = sealed + n * item - rand_len;
    if (RAND_bytes(draw, (int)rand_len) != 1) {
        OPENSSL_cleanse(draw, rand_len);
        return KMS_ERR_RAND;
    }
    memcpy(plain, draw, n * key_len);
    ivs = draw + n * key_len;
    for (i = 0; i < n; i++) {
        uint8_t *dst = sealed + i * item;
        memmove(dst, ivs + i * KMS_AEAD_IV_LEN, KMS_AEAD_IV_LEN);
        st = kms_aead_seal(op, dst, plain + i * key_len, key_len, aad, aad_len,
                           dst + KMS_AEAD_IV_LEN);
        if (st != KMS_OK)
            break;
    }
    if (st != KMS_OK) {
        OPENSSL_cleanse(plain, n * key_len);
        OPENSSL_cleanse(sealed, n * item);
    }
    return st;
}

kms_status kms_aead_seal_many(kms_aead_op *op, size_t n,
                              const uint8_t *const *pts, const size_t *pt_lens,
                              const uint8_t *const *aads, const size_t *aad_lens,
                              uint8_t *const *outs)
{
    uint8_t *ivs;
    size_t i;
    kms_status st = KMS_OK;

    if (n == 0)
        return KMS_OK;
    if (n > (size_t)INT_MAX / KMS_AEAD_IV_LEN)
        return KMS_ERR_LENGTH;
    ivs = OPENSSL_malloc(n * KMS_AEAD_IV_LEN);
    if (ivs == NULL)
        return KMS_ERR_NOMEM;
    if (RAND_bytes(ivs, (int)(n * KMS_AEAD_IV_LEN)) != 1) {
        OPENSSL_free(ivs);
        return KMS_ERR_RAND;
    }
    for (i = 0; i < n && st == KMS_OK; i++) {
        memcpy(outs[i], ivs + i * KMS_AEAD_IV_LEN, KMS_AEAD_IV_LEN);
        st = kms_aead_seal(op, outs[i], pts[i], pt_lens[i], aads[i], aad_lens[i],
                           outs[i] + KMS_AEAD_IV_LEN);
    }
    OPENSSL_free(ivs);
    return st;
}

kms_status kms_aead_open_many(kms_aead_op *op, size_t n,
                              const uint8_t *const *ins, const size_t *in_lens,
                              const uint8_t *const *aads, const size_t *aad_lens,
                              uint8_t *const *outs, kms_status *statuses)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (in_lens[i] < KMS_AEAD_IV_LEN + KMS_AEAD_TAG_LEN) {
            statuses[i] = KMS_ERR_AUTH;
            continue;
        }
        statuses[i] = kms_aead_open(op, ins[i], ins[i] + KMS_AEAD_IV_LEN,
                                    in_lens[i] - KMS_AEAD_IV_LEN, aads[i],
                                    aad_lens[i], outs[i]);
    }
    return KMS_OK;
}
