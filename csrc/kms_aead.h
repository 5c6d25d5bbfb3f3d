/*
 * kms_aead: AES-256-GCM over OpenSSL EVP for the kmscore engine.
 *
 * Only one parameter set is served: 256-bit keys, 96-bit IVs, 128-bit tags.
 * Every function returns a kms_status; none touches Python, none keeps
 * global mutable state. A kms_aead_key is immutable after creation and may be
 * shared between threads; a kms_aead_op is a working context derived from a
 * key and must be used by one thread at a time.
 */
#ifndef KMS_AEAD_H
#define KMS_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define KMS_AEAD_KEY_LEN 32
#define KMS_AEAD_IV_LEN 12
#define KMS_AEAD_TAG_LEN 16
/* Data keys made by kms_aead_generate are 1..1024 bytes, as AWS KMS allows. */
#define KMS_AEAD_DATA_KEY_MAX 1024

typedef enum {
    KMS_OK = 0,
    KMS_ERR_AUTH = 1,      /* authentication failed, or malformed input to open */
    KMS_ERR_KEY_LEN = 2,   /* key is not 32 bytes */
    KMS_ERR_IV_LEN = 3,    /* IV is not 12 bytes (seal side: caller bug) */
    KMS_ERR_LENGTH = 4,    /* a length is out of range */
    KMS_ERR_NOMEM = 5,     /* allocation failed */
    KMS_ERR_RAND = 6,      /* the RNG failed */
    KMS_ERR_OPENSSL = 7    /* any other OpenSSL failure */
} kms_status;

typedef struct kms_aead_key kms_aead_key;
typedef struct kms_aead_op kms_aead_op;

/* Sets the key schedule once. The raw key is not kept outside OpenSSL. */
kms_status kms_aead_key_new(const uint8_t *key, size_t key_len, kms_aead_key **out);
/* Frees the key; OpenSSL cleanses the schedule, and so do we for our copy. */
void kms_aead_key_free(kms_aead_key *key);

/* A working context sharing the key schedule (copied, not recomputed). */
kms_status kms_aead_op_new(const kms_aead_key *key, kms_aead_op **out);
void kms_aead_op_free(kms_aead_op *op);

/* out receives pt_len + 16 bytes: ciphertext || tag. */
kms_status kms_aead_seal(kms_aead_op *op, const uint8_t *iv,
                         const uint8_t *pt, size_t pt_len,
                         const uint8_t *aad, size_t aad_len, uint8_t *out);

/* in is ciphertext || tag; out receives in_len - 16 bytes. On any failure
 * out is zeroed and KMS_ERR_AUTH is returned, whatever the cause. */
kms_status kms_aead_open(kms_aead_op *op, const uint8_t *iv,
                         const uint8_t *in, size_t in_len,
                         const uint8_t *aad, size_t aad_len, uint8_t *out);

/*
 * Makes n data keys of key_len bytes and seals each under op with its own
 * random IV and the same aad. All randomness (keys and IVs) is drawn in one
 * RAND_bytes call into the caller's buffers.
 *   plain  receives n * key_len bytes (the data keys, in order);
 *   sealed receives n * (12 + key_len + 16) bytes: IV || ciphertext || tag.
 */
kms_status kms_aead_generate(kms_aead_op *op, size_t n, size_t key_len,
                             const uint8_t *aad, size_t aad_len,
                             uint8_t *plain, uint8_t *sealed);

/*
 * Seals n messages, each with its own random IV drawn in one RAND_bytes call.
 * Item i reads pts[i] (pt_lens[i] bytes) with aads[i] (aad_lens[i] bytes) and
 * writes IV || ciphertext || tag to outs[i] (12 + pt_lens[i] + 16 bytes).
 */
kms_status kms_aead_seal_many(kms_aead_op *op, size_t n,
                              const uint8_t *const *pts, const size_t *pt_lens,
                              const uint8_t *const *aads, const size_t *aad_lens,
                              uint8_t *const *outs);

/*
 * Opens n messages. Item i reads IV || ciphertext || tag from ins[i]
 * (in_lens[i] bytes) with aads[i], writes in_lens[i] - 28 bytes to outs[i]
 * and its status to statuses[i] (KMS_OK or KMS_ERR_AUTH). Returns KMS_OK when
 * the loop ran, whatever the items' statuses, or a fatal error.
 */
kms_status kms_aead_open_many(kms_aead_op *op, size_t n,
                              const uint8_t *const *ins, const size_t *in_lens,
                              const uint8_t *const *aads, const size_t *aad_lens,
                              uint8_t *const *outs, kms_status *statuses);

#endif
