# Declarations of csrc/kms_aead.h. Every function is nogil: none touches Python.

from libc.stdint cimport uint8_t

cdef extern from "kms_aead.h" nogil:
    enum:
        KMS_AEAD_KEY_LEN
        KMS_AEAD_IV_LEN
        KMS_AEAD_TAG_LEN
        KMS_AEAD_DATA_KEY_MAX

    ctypedef enum kms_status:
        KMS_OK
        KMS_ERR_AUTH
        KMS_ERR_KEY_LEN
        KMS_ERR_IV_LEN
        KMS_ERR_LENGTH
        KMS_ERR_NOMEM
        KMS_ERR_RAND
        KMS_ERR_OPENSSL

    ctypedef struct kms_aead_key:
        pass
    ctypedef struct kms_aead_op:
        pass

    kms_status kms_aead_key_new(const uint8_t *key, size_t key_len, kms_aead_key **out)
    void kms_aead_key_free(kms_aead_key *key)
    kms_status kms_aead_op_new(const kms_aead_key *key, kms_aead_op **out)
    void kms_aead_op_free(kms_aead_op *op)

    kms_status kms_aead_seal(kms_aead_op *op, const uint8_t *iv,
                             const uint8_t *pt, size_t pt_len,
                             const uint8_t *aad, size_t aad_len, uint8_t *out)
    kms_status kms_aead_open(kms_aead_op *op, const uint8_t *iv,
                             const uint8_t *inp, size_t in_len,
                             const uint8_t *aad, size_t aad_len, uint8_t *out)
    kms_status kms_aead_generate(kms_aead_op *op, size_t n, size_t key_len,
                                 const uint8_t *aad, size_t aad_len,
                                 uint8_t *plain, uint8_t *sealed)
    kms_status kms_aead_seal_many(kms_aead_op *op, size_t n,
                                  const uint8_t *const *pts, const size_t *pt_lens,
                                  const uint8_t *const *aads, const size_t *aad_lens,
                                  uint8_t *const *outs)
    kms_status kms_aead_open_many(kms_aead_op *op, size_t n,
                                  const uint8_t *const *ins, const size_t *in_lens,
                                  const uint8_t *const *aads, const size_t *aad_lens,
                                  uint8_t *const *outs, kms_status *statuses)
