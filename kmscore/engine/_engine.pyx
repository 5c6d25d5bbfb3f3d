# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Native AES-256-GCM engine: a thin Cython skin over csrc/kms_aead.c.

Buffers are pinned with the buffer protocol before the GIL is released and
released in ``finally``. C status codes become exceptions in one function,
``_check``. Use :mod:`kmscore.engine`, not this module.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint8_t
from libc.string cimport memcpy, memset
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF

from kmscore.engine cimport _kms_aead as c
from kmscore.engine cimport _openssl as ossl

from kmscore.errors import InvalidCiphertextException, KMSInternalException

KEY_LENGTH = c.KMS_AEAD_KEY_LEN
IV_LENGTH = c.KMS_AEAD_IV_LEN
TAG_LENGTH = c.KMS_AEAD_TAG_LEN
DATA_KEY_MAX = c.KMS_AEAD_DATA_KEY_MAX

# Work below this many bytes runs with the GIL held on the key's shared working
# context: the GIL then serializes its use, and releasing the GIL would cost
# more than the AES work. Larger work gets its own context and runs without the
# GIL, so other threads run meanwhile.
cdef size_t _NOGIL_BYTES = 16384
cdef size_t _SEAL_OVERHEAD = c.KMS_AEAD_IV_LEN + c.KMS_AEAD_TAG_LEN


cdef int _check(c.kms_status status) except -1:
    """The one place where C status codes become Python exceptions."""
    if status == c.KMS_OK:
        return 0
    if status == c.KMS_ERR_AUTH:
        raise InvalidCiphertextException()
    if status == c.KMS_ERR_KEY_LEN:
        raise ValueError("AES-256-GCM keys are 32 bytes")
    if status == c.KMS_ERR_IV_LEN:
        raise ValueError("AES-256-GCM IVs are 12 bytes")
    if status == c.KMS_ERR_LENGTH:
        raise ValueError("a length is out of the engine's range")
    if status == c.KMS_ERR_NOMEM:
        raise MemoryError()
    if status == c.KMS_ERR_RAND:
        raise KMSInternalException("The random number generator failed.")
    raise KMSInternalException("The cryptographic library failed.")


cdef inline void _pin(object obj, Py_buffer *view) except *:
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)


cdef inline void _unpin(Py_buffer *view) noexcept:
    # Safe on a zeroed view (obj is NULL): CPython then does nothing.
    PyBuffer_Release(view)


cdef inline const uint8_t *_ptr(Py_buffer *view) noexcept nogil:
    return <const uint8_t *>view.buf


cdef inline bytes _as_bytes(object obj):
    if PyBytes_CheckExact(obj):
        return <bytes>obj
    return bytes(memoryview(obj))


cdef class AesGcmKey:
    """An AES-256-GCM key whose schedule is set once and reused.

    Not picklable and never shows its material. The caller's ``bytes`` copy of
    the key cannot be wiped from Python; the engine's copy is cleansed when this
    object is freed.
    """

    cdef c.kms_aead_key *_key
    cdef c.kms_aead_op *_op

    def __cinit__(self, key):
        cdef Py_buffer kb
        memset(&kb, 0, sizeof(kb))
        _pin(key, &kb)
        try:
            _check(c.kms_aead_key_new(_ptr(&kb), <size_t>kb.len, &self._key))
            _check(c.kms_aead_op_new(self._key, &self._op))
        finally:
            _unpin(&kb)

    def __dealloc__(self):
        c.kms_aead_op_free(self._op)
        c.kms_aead_key_free(self._key)

    def __reduce__(self):
        raise TypeError("AesGcmKey holds key material and cannot be pickled")

    def __repr__(self):
        return "<AesGcmKey AES-256-GCM>"

    def seal(self, iv, plaintext, aad=b""):
        cdef Py_buffer bi, bp, ba
        cdef c.kms_status st
        cdef c.kms_aead_op *op
        cdef uint8_t *out
        memset(&bi, 0, sizeof(bi))
        memset(&bp, 0, sizeof(bp))
        memset(&ba, 0, sizeof(ba))
        try:
            _pin(iv, &bi)
            _pin(plaintext, &bp)
            _pin(aad, &ba)
            if bi.len != c.KMS_AEAD_IV_LEN:
                raise ValueError("AES-256-GCM IVs are 12 bytes")
            result = PyBytes_FromStringAndSize(NULL, bp.len + c.KMS_AEAD_TAG_LEN)
            out = <uint8_t *>PyBytes_AS_STRING(result)
            if <size_t>(bp.len + ba.len) < _NOGIL_BYTES:
                st = c.kms_aead_seal(self._op, _ptr(&bi), _ptr(&bp), bp.len,
                                     _ptr(&ba), ba.len, out)
            else:
                _check(c.kms_aead_op_new(self._key, &op))
                with nogil:
                    st = c.kms_aead_seal(op, _ptr(&bi), _ptr(&bp), bp.len,
                                         _ptr(&ba), ba.len, out)
                    c.kms_aead_op_free(op)
            _check(st)
            return result
        finally:
            _unpin(&ba)
            _unpin(&bp)
            _unpin(&bi)

    def open(self, iv, data, aad=b""):
        cdef Py_buffer bi, bd, ba
        cdef c.kms_status st
        cdef c.kms_aead_op *op
        cdef uint8_t *out
        memset(&bi, 0, sizeof(bi))
        memset(&bd, 0, sizeof(bd))
        memset(&ba, 0, sizeof(ba))
        try:
            _pin(iv, &bi)
            _pin(data, &bd)
            _pin(aad, &ba)
            # One opaque error for every reason, as for a bad tag.
            if bi.len != c.KMS_AEAD_IV_LEN or bd.len < c.KMS_AEAD_TAG_LEN:
                raise InvalidCiphertextException()
            result = PyBytes_FromStringAndSize(NULL, bd.len - c.KMS_AEAD_TAG_LEN)
            out = <uint8_t *>PyBytes_AS_STRING(result)
            if <size_t>(bd.len + ba.len) < _NOGIL_BYTES:
                st = c.kms_aead_open(self._op, _ptr(&bi), _ptr(&bd), bd.len,
                                     _ptr(&ba), ba.len, out)
            else:
                _check(c.kms_aead_op_new(self._key, &op))
                with nogil:
                    st = c.kms_aead_open(op, _ptr(&bi), _ptr(&bd), bd.len,
                                         _ptr(&ba), ba.len, out)
                    c.kms_aead_op_free(op)
            _check(st)
            return result
        finally:
            _unpin(&ba)
            _unpin(&bd)
            _unpin(&bi)

    def generate_data_keys(self, Py_ssize_t count, Py_ssize_t key_length, aad=b""):
        cdef Py_buffer ba
        cdef c.kms_status st
        cdef c.kms_aead_op *op
        cdef uint8_t *plain_p
        cdef uint8_t *sealed_p
        if count < 0:
            raise ValueError("count must not be negative")
        if key_length < 1 or key_length > c.KMS_AEAD_DATA_KEY_MAX:
            raise ValueError("data keys are 1 to 1024 bytes")
        if count > 0x7FFFFFFF // (key_length + <Py_ssize_t>_SEAL_OVERHEAD):
            raise ValueError("count is too large for one batch")
        memset(&ba, 0, sizeof(ba))
        try:
            _pin(aad, &ba)
            plain = PyBytes_FromStringAndSize(NULL, count * key_length)
            sealed = PyBytes_FromStringAndSize(NULL, count * (key_length + _SEAL_OVERHEAD))
            plain_p = <uint8_t *>PyBytes_AS_STRING(plain)
            sealed_p = <uint8_t *>PyBytes_AS_STRING(sealed)
            if <size_t>(count * key_length) < _NOGIL_BYTES:
                st = c.kms_aead_generate(self._op, count, key_length, _ptr(&ba),
                                         ba.len, plain_p, sealed_p)
            else:
                _check(c.kms_aead_op_new(self._key, &op))
                with nogil:
                    st = c.kms_aead_generate(op, count, key_length, _ptr(&ba),
                                             ba.len, plain_p, sealed_p)
                    c.kms_aead_op_free(op)
            _check(st)
            return plain, sealed
        finally:
            _unpin(&ba)

    def seal_many(self, plaintexts, aads):
        cdef Py_ssize_t n = len(plaintexts), i
        cdef size_t total = 0
        cdef c.kms_status st
        cdef c.kms_aead_op *op
        cdef const uint8_t **pts = NULL
        cdef size_t *pt_lens = NULL
        cdef const uint8_t **aps = NULL
        cdef size_t *aad_lens = NULL
        cdef uint8_t **outs = NULL
        if len(aads) != n:
            raise ValueError("seal_many needs one AAD per plaintext")
        # Lists keep every input and output alive while the GIL is released.
        ins = [_as_bytes(p) for p in plaintexts]
        ads = [_as_bytes(a) for a in aads]
        results = [PyBytes_FromStringAndSize(NULL, len(<bytes>p) + _SEAL_OVERHEAD) for p in ins]
        if n == 0:
            return results
        try:
            pts = <const uint8_t **>PyMem_Malloc(n * sizeof(uint8_t *))
            aps = <const uint8_t **>PyMem_Malloc(n * sizeof(uint8_t *))
            outs = <uint8_t **>PyMem_Malloc(n * sizeof(uint8_t *))
            pt_lens = <size_t *>PyMem_Malloc(n * sizeof(size_t))
            aad_lens = <size_t *>PyMem_Malloc(n * sizeof(size_t))
            if not (pts and aps and outs and pt_lens and aad_lens):
                raise MemoryError()
            for i in range(n):
                pts[i] = <const uint8_t *>PyBytes_AS_STRING(ins[i])
                pt_lens[i] = len(<bytes>ins[i])
                aps[i] = <const uint8_t *>PyBytes_AS_STRING(ads[i])
                aad_lens[i] = len(<bytes>ads[i])
                outs[i] = <uint8_t *>PyBytes_AS_STRING(results[i])
                total += pt_lens[i] + aad_lens[i]
            if total < _NOGIL_BYTES:
                st = c.kms_aead_seal_many(self._op, n, pts, pt_lens, aps, aad_lens, outs)
            else:
                _check(c.kms_aead_op_new(self._key, &op))
                with nogil:
                    st = c.kms_aead_seal_many(op, n, pts, pt_lens, aps, aad_lens, outs)
                    c.kms_aead_op_free(op)
            _check(st)
            return results
        finally:
            PyMem_Free(pts)
            PyMem_Free(aps)
            PyMem_Free(outs)
            PyMem_Free(pt_lens)
            PyMem_Free(aad_lens)

    def open_many(self, sealed, aads):
        cdef Py_ssize_t n = len(sealed), i, ln
        cdef size_t total = 0
        cdef c.kms_status st
        cdef c.kms_aead_op *op
        cdef const uint8_t **ips = NULL
        cdef size_t *in_lens = NULL
        cdef const uint8_t **aps = NULL
        cdef size_t *aad_lens = NULL
        cdef uint8_t **outs = NULL
        cdef c.kms_status *statuses = NULL
        if len(aads) != n:
            raise ValueError("open_many needs one AAD per ciphertext")
        # list() copies pointers in C (and keeps the inputs alive
        # while the GIL is released); only items that are not bytes convert.
        cdef list ins = list(sealed)
        cdef list ads = list(aads)
        cdef list results = [None] * n
        if len(ins) != n or len(ads) != n:
            raise ValueError("open_many needs one AAD per ciphertext")
        for i in range(n):
            s = ins[i]
            if not PyBytes_CheckExact(s):
                s = _as_bytes(s)
                ins[i] = s
            if not PyBytes_CheckExact(ads[i]):
                ads[i] = _as_bytes(ads[i])
            ln = PyBytes_GET_SIZE(s) - <Py_ssize_t>_SEAL_OVERHEAD
            results[i] = PyBytes_FromStringAndSize(NULL, ln if ln > 0 else 0)
        if n == 0:
            return results
        try:
            ips = <const uint8_t **>PyMem_Malloc(n * sizeof(uint8_t *))
            aps = <const uint8_t **>PyMem_Malloc(n * sizeof(uint8_t *))
            outs = <uint8_t **>PyMem_Malloc(n * sizeof(uint8_t *))
            in_lens = <size_t *>PyMem_Malloc(n * sizeof(size_t))
            aad_lens = <size_t *>PyMem_Malloc(n * sizeof(size_t))
            statuses = <c.kms_status *>PyMem_Malloc(n * sizeof(c.kms_status))
            if not (ips and aps and outs and in_lens and aad_lens and statuses):
                raise MemoryError()
            for i in range(n):
                ips[i] = <const uint8_t *>PyBytes_AS_STRING(ins[i])
                in_lens[i] = len(<bytes>ins[i])
                aps[i] = <const uint8_t *>PyBytes_AS_STRING(ads[i])
                aad_lens[i] = len(<bytes>ads[i])
                outs[i] = <uint8_t *>PyBytes_AS_STRING(results[i])
                total += in_lens[i] + aad_lens[i]
            if total < _NOGIL_BYTES:
                st = c.kms_aead_open_many(self._op, n, ips, in_lens, aps, aad_lens,
                                          outs, statuses)
            else:
                _check(c.kms_aead_op_new(self._key, &op))
                with nogil:
                    st = c.kms_aead_open_many(op, n, ips, in_lens, aps, aad_lens,
                                              outs, statuses)
                    c.kms_aead_op_free(op)
            _check(st)
            for i in range(n):
                if statuses[i] != c.KMS_OK:
                    results[i] = None
            return results
        finally:
            PyMem_Free(ips)
            PyMem_Free(aps)
            PyMem_Free(outs)
            PyMem_Free(in_lens)
            PyMem_Free(aad_lens)
            PyMem_Free(statuses)

    # --- service-shaped calls: fewer Python steps per blob ----------------------

    def encrypt(self, plaintext, aad=b"", header=b""):
        """Seal under a fresh random IV; return header || IV || ciphertext || tag."""
        cdef Py_buffer bp, ba, bh
        cdef c.kms_status st
        cdef c.kms_aead_op *op
        cdef uint8_t *out
        cdef uint8_t *iv
        memset(&bp, 0, sizeof(bp))
        memset(&ba, 0, sizeof(ba))
        memset(&bh, 0, sizeof(bh))
        try:
            _pin(plaintext, &bp)
            _pin(aad, &ba)
            _pin(header, &bh)
            result = PyBytes_FromStringAndSize(NULL, bh.len + bp.len + _SEAL_OVERHEAD)
            out = <uint8_t *>PyBytes_AS_STRING(result)
            memcpy(out, bh.buf, bh.len)
            iv = out + bh.len
            if ossl.RAND_bytes(iv, c.KMS_AEAD_IV_LEN) != 1:
                _check(c.KMS_ERR_RAND)
            if <size_t>(bp.len + ba.len) < _NOGIL_BYTES:
                st = c.kms_aead_seal(self._op, iv, _ptr(&bp), bp.len, _ptr(&ba), ba.len,
                                     iv + c.KMS_AEAD_IV_LEN)
            else:
                _check(c.kms_aead_op_new(self._key, &op))
                with nogil:
                    st = c.kms_aead_seal(op, iv, _ptr(&bp), bp.len, _ptr(&ba), ba.len,
                                         iv + c.KMS_AEAD_IV_LEN)
                    c.kms_aead_op_free(op)
            _check(st)
            return result
        finally:
            _unpin(&bh)
            _unpin(&ba)
            _unpin(&bp)

    def decrypt(self, data, aad=b"", Py_ssize_t offset=0):
        """Open the IV || ciphertext || tag that starts at ``data[offset]``."""
        cdef Py_buffer bd, ba
        cdef c.kms_status st
        cdef c.kms_aead_op *op
        cdef const uint8_t *src
        cdef Py_ssize_t n
        cdef uint8_t *out
        memset(&bd, 0, sizeof(bd))
        memset(&ba, 0, sizeof(ba))
        try:
            _pin(data, &bd)
            _pin(aad, &ba)
            n = bd.len - offset - <Py_ssize_t>_SEAL_OVERHEAD
            if offset < 0 or n < 0:
                raise InvalidCiphertextException()
            src = _ptr(&bd) + offset
            result = PyBytes_FromStringAndSize(NULL, n)
            out = <uint8_t *>PyBytes_AS_STRING(result)
            if <size_t>(n + ba.len) < _NOGIL_BYTES:
                st = c.kms_aead_open(self._op, src, src + c.KMS_AEAD_IV_LEN,
                                     n + c.KMS_AEAD_TAG_LEN, _ptr(&ba), ba.len, out)
            else:
                _check(c.kms_aead_op_new(self._key, &op))
                with nogil:
                    st = c.kms_aead_open(op, src, src + c.KMS_AEAD_IV_LEN,
                                         n + c.KMS_AEAD_TAG_LEN, _ptr(&ba), ba.len, out)
                    c.kms_aead_op_free(op)
            _check(st)
            return result
        finally:
            _unpin(&ba)
            _unpin(&bd)

    def generate_data_key(self, Py_ssize_t key_length, aad=b"", header=b""):
        """One data key: (key, header || IV || ciphertext || tag), one RNG draw."""
        cdef Py_buffer ba, bh
        cdef c.kms_status st
        cdef uint8_t *kp
        cdef uint8_t *bp
        if key_length < 1 or key_length > c.KMS_AEAD_DATA_KEY_MAX:
            raise ValueError("data keys are 1 to 1024 bytes")
        memset(&ba, 0, sizeof(ba))
        memset(&bh, 0, sizeof(bh))
        try:
            _pin(aad, &ba)
            _pin(header, &bh)
            key = PyBytes_FromStringAndSize(NULL, key_length)
            blob = PyBytes_FromStringAndSize(NULL, bh.len + key_length + _SEAL_OVERHEAD)
            kp = <uint8_t *>PyBytes_AS_STRING(key)
            bp = <uint8_t *>PyBytes_AS_STRING(blob)
            memcpy(bp, bh.buf, bh.len)
            # Small by construction (<= 1 KiB): the GIL guards the shared context.
            st = c.kms_aead_generate(self._op, 1, key_length, _ptr(&ba), ba.len, kp,
                                     bp + bh.len)
            _check(st)
            return key, blob
        finally:
            _unpin(&bh)
            _unpin(&ba)

    def generate_data_key_blobs(self, Py_ssize_t count, Py_ssize_t key_length, aad=b"",
                                header=b""):
        """Like generate_data_keys, but split: ([key, ...], [header || sealed, ...])."""
        cdef Py_ssize_t i, item = key_length + <Py_ssize_t>_SEAL_OVERHEAD
        cdef Py_buffer bh
        cdef const char *pp
        cdef const char *sp
        cdef char *bp
        plain, sealed = self.generate_data_keys(count, key_length, aad)
        pp = PyBytes_AS_STRING(plain)
        sp = PyBytes_AS_STRING(sealed)
        memset(&bh, 0, sizeof(bh))
        keys = PyList_New(count)
        blobs = PyList_New(count)
        try:
            _pin(header, &bh)
            for i in range(count):
                k = PyBytes_FromStringAndSize(pp + i * key_length, key_length)
                Py_INCREF(k)
                PyList_SET_ITEM(keys, i, k)
                b = PyBytes_FromStringAndSize(NULL, bh.len + item)
                bp = PyBytes_AS_STRING(b)
                memcpy(bp, bh.buf, bh.len)
                memcpy(bp + bh.len, sp + i * item, item)
                Py_INCREF(b)
                PyList_SET_ITEM(blobs, i, b)
            return keys, blobs
        finally:
            _unpin(&bh)
            # The packed copy of the keys is ours alone: wipe it.
            ossl.OPENSSL_cleanse(<void *>pp, count * key_length)


def constant_time_equals(a, b):
    """True when two byte strings are equal, compared in constant time."""
    cdef Py_buffer ba, bb
    memset(&ba, 0, sizeof(ba))
    memset(&bb, 0, sizeof(bb))
    try:
        _pin(a, &ba)
        _pin(b, &bb)
        # Lengths are not secret; contents are.
        if ba.len != bb.len:
            return False
        return ossl.CRYPTO_memcmp(ba.buf, bb.buf, ba.len) == 0
    finally:
        _unpin(&bb)
        _unpin(&ba)


def openssl_version():
    """The version text of the OpenSSL library the engine runs on."""
    return (<bytes>ossl.OpenSSL_version(ossl.OPENSSL_VERSION_CONST)).decode("ascii")


def openssl_header_version():
    """The version text of the OpenSSL headers the engine was built against."""
    return (<bytes>ossl.OPENSSL_VERSION_TEXT).decode("ascii")
