# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Native audit journal writer: compact call records into a shared file mapping.

One call costs one function call here: the request's members are scrubbed by
the rule the caller hands in (secret names dropped, encryption contexts kept,
anything unusual given to the caller's scrubber), packed as MessagePack into a
scratch buffer, chained with SHA-256 and copied into the mapping, and the
entry's length is stored last, with release ordering, as its commit word. No
system call, no lock: the GIL makes one append atomic within the process, and
every process has its own journal. The format is in
:mod:`kmscore.audit.journal`; use :mod:`kmscore.engine.journal`, not this module.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport Py_TYPE, PyObject, PyTypeObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    object PyUnicode_FromStringAndSize(const char *u, Py_ssize_t size)
    int PyLong_CheckExact(object o)
    int PyUnicode_CheckExact(object o)
    int PyBytes_CheckExact(object o)
    int PyFloat_CheckExact(object o)
    int PyDict_CheckExact(object o)
    int PyList_CheckExact(object o)
    int PyTuple_CheckExact(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    char *PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)

cdef extern from "sys/mman.h" nogil:
    int madvise(void *addr, size_t length, int advice)

cdef extern from "errno.h":
    int errno
    enum: EINVAL

cdef enum:
    MADV_POPULATE_WRITE = 23  # Linux 5.14, <linux/mman.h>; libc headers may lack it

cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_MD_CTX:
        pass
    ctypedef struct EVP_MD:
        pass
    EVP_MD_CTX *EVP_MD_CTX_new()
    void EVP_MD_CTX_free(EVP_MD_CTX *ctx)
    const EVP_MD *EVP_sha256()
    EVP_MD *EVP_MD_fetch(void *libctx, const char *algorithm, const char *properties)
    int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, void *impl)
    int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt)
    int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s)

from collections.abc import Mapping

from kmscore.engine._journal_base import JournalFull

# Fetched once: an implicit fetch on every digest costs more than the digest
# (OpenSSL 3 looks the algorithm up under a lock each time).
cdef const EVP_MD *_SHA256 = EVP_MD_fetch(NULL, b"SHA256", NULL)
from kmscore.errors import KMSInternalException

# Entry layout (see kmscore.audit.journal): u32 body length (the commit word),
# u32 low half of the entry's seq, 16-byte chained digest, body, zero padding to 8.
cdef enum:
    ENTRY_HEAD = 24
    DIGEST_LEN = 16
    # The scratch buffer holds what the chain digest covers, contiguous: the
    # previous digest, the seq (u64 LE), then the body from BODY_AT on. One
    # digest update instead of three.
    BODY_AT = 24
    # A UUID-shaped request id (36 ASCII characters) is journaled as its first
    # 24, defined once, and its last 12: kmscore's ids share a per-process
    # prefix, and the 22 bytes saved take a SHA-256 block off the chain digest
    # of a GenerateDataKey or Decrypt entry (stop 29).
    ID_LEN = 36
    ID_PREFIX = 24
    MAX_DEPTH = 32
    # Member kinds, as the classifier answers them.
    KIND_SECRET = 0
    KIND_CONTEXT = 1
    KIND_OTHER = 2
    # Entry kinds: the first element of every body.
    ENTRY_DEFINE = 0
    ENTRY_CALL = 1
    ENTRY_EVENT = 2

cdef extern from *:
    """
    static inline void kms_release_u32(uint32_t *p, uint32_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline void kms_release_u64(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    """
    void kms_release_u32(uint32_t *p, uint32_t v) nogil
    void kms_release_u64(uint64_t *p, uint64_t v) nogil


# --- reading a service Call -----------------------------------------------------------
#
# ``Call`` is a slots dataclass. Its fields are read by their slot's offset once
# its type is known, as CPython's own member descriptor reads them, instead of
# a generic attribute lookup each (type lookup, descriptor check, call): eight
# of those were a tenth of a record (stop 29). The offsets are trusted only
# while the type is the one they were learnt from and unmodified (its version
# tag); anything else is read by name.

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef struct _TypeObject "PyTypeObject":
        unsigned int tp_version_tag
    PyTypeObject PyMemberDescr_Type

cdef enum:
    T_OBJECT_EX = 16
    F_SERVICE = 0
    F_OPERATION = 1
    F_CALLER = 2
    F_REQUEST_ID = 3
    F_RESOURCES = 4
    F_READ_ONLY = 5
    F_EXTRA = 6
    N_FIELDS = 7

cdef tuple _FIELD_NAMES = (
    "service", "operation", "caller", "request_id", "resources", "read_only",
    "additional_event_data",
)
cdef object _known_type = None  # the last Call type seen (kept alive here)
cdef bint _known_ok = False  # whether its fields are all plain slots
cdef unsigned int _known_tag = 0
cdef Py_ssize_t _offsets[N_FIELDS]


cdef int _learn(object cls) except -1:
    """Note ``cls``'s slot offsets, when every field the writer reads is a plain slot."""
    global _known_type, _known_ok, _known_tag
    cdef Py_ssize_t i
    cdef PyMemberDef *member
    _known_type = cls
    _known_ok = False
    for i in range(N_FIELDS):
        descr = getattr(cls, <str>_FIELD_NAMES[i], None)  # also gives the type a version tag
        if descr is None or Py_TYPE(descr) != &PyMemberDescr_Type:
            return 0
        member = (<PyMemberDescrObject *><PyObject *>descr).d_member
        if member.type != T_OBJECT_EX:
            return 0
        _offsets[i] = member.offset
    _known_tag = (<_TypeObject *><PyObject *>cls).tp_version_tag
    _known_ok = _known_tag != 0
    return 0


cdef inline object _field(object call, int i):
    """``getattr(call, _FIELD_NAMES[i])``, by the slot's offset when that is safe."""
    cdef PyTypeObject *tp = Py_TYPE(call)
    cdef PyObject *value
    if <PyObject *>tp != <PyObject *>_known_type:
        _learn(<object><PyObject *>tp)
    if _known_ok and (<_TypeObject *>tp).tp_version_tag == _known_tag:
        value = (<PyObject **>((<char *><PyObject *>call) + _offsets[i]))[0]
        if value != NULL:
            return <object>value
    return getattr(call, <str>_FIELD_NAMES[i])  # not set (raises), or not a plain slot


cdef class JournalWriter:
    """Appends entries to one journal mapping (see :mod:`kmscore.engine.journal`)."""

    cdef Py_buffer view
    cdef bint pinned
    cdef uint8_t *base
    cdef size_t capacity
    cdef size_t _offset
    cdef uint64_t _seq
    cdef uint8_t _digest[DIGEST_LEN]
    cdef size_t count_at
    cdef uint8_t *scratch
    cdef size_t scratch_cap
    cdef size_t n
    cdef EVP_MD_CTX *md
    cdef dict refs
    cdef object last_caller
    cdef object last_caller_ref
    # The last key and reference number seen in each slot (operation, region,
    # account, first resource): the same objects come back call after call.
    cdef list slot_keys
    cdef list slot_refs
    # The last request id prefix defined (see _request_id) and its number.
    cdef char id_prefix[ID_PREFIX]
    cdef object id_prefix_ref
    cdef dict kinds
    cdef object classify
    cdef object scrub
    cdef object drop
    cdef object describe

    def __cinit__(self):
        self.pinned = False
        self.scratch = NULL
        self.md = NULL

    def __init__(self, mapping, size_t offset, uint64_t seq, bytes digest, size_t count_at,
                 classify, scrub, drop, describe):
        if len(digest) != DIGEST_LEN:
            raise ValueError("a journal digest is 16 bytes")
        PyObject_GetBuffer(mapping, &self.view, PyBUF_WRITABLE)
        self.pinned = True
        self.base = <uint8_t *>self.view.buf
        self.capacity = <size_t>self.view.len
        if offset % 8 or offset > self.capacity or count_at + 8 > offset:
            raise ValueError("a journal offset is past the header and 8-aligned")
        self._offset = offset
        self._seq = seq
        memcpy(self._digest, PyBytes_AS_STRING(digest), DIGEST_LEN)
        self.count_at = count_at
        self.md = EVP_MD_CTX_new()
        if self.md == NULL or _SHA256 == NULL:
            raise MemoryError()
        self._grow(4096)
        self.refs = {}
        self.slot_keys = [None, None, None, None]
        self.slot_refs = [None, None, None, None]
        self.kinds = {}
        self.classify = classify
        self.scrub = scrub
        self.drop = drop
        self.describe = describe

    def __dealloc__(self):
        if self.pinned:
            PyBuffer_Release(&self.view)
        if self.scratch != NULL:
            PyMem_Free(self.scratch)
        if self.md != NULL:
            EVP_MD_CTX_free(self.md)

    def release(self):
        """Let go of the mapping (the writer can append no more)."""
        if self.pinned:
            PyBuffer_Release(&self.view)
            self.pinned = False
        self.capacity = 0

    @property
    def offset(self):
        """Where the next entry goes."""
        return self._offset

    @property
    def seq(self):
        """The seq the next entry gets (entries so far)."""
        return self._seq

    @property
    def digest(self):
        return PyBytes_FromStringAndSize(<char *>self._digest, DIGEST_LEN)

    # --- the scratch buffer and MessagePack --------------------------------------

    cdef int _grow(self, size_t need) except -1:
        cdef size_t cap
        cdef uint8_t *grown
        if self.n + need <= self.scratch_cap:
            return 0
        cap = self.scratch_cap * 2 if self.scratch_cap else 4096
        while cap < self.n + need:
            cap *= 2
        grown = <uint8_t *>PyMem_Realloc(self.scratch, cap)
        if grown == NULL:
            raise MemoryError()
        self.scratch = grown
        self.scratch_cap = cap
        return 0

    cdef inline int _byte(self, uint8_t b) except -1:
        if self.n + 1 > self.scratch_cap:
            self._grow(1)
        self.scratch[self.n] = b
        self.n += 1
        return 0

    cdef int _be(self, uint8_t tag, uint64_t value, int width) except -1:
        cdef int i
        self._grow(1 + width)
        self.scratch[self.n] = tag
        for i in range(width):
            self.scratch[self.n + 1 + i] = <uint8_t>(value >> (8 * (width - 1 - i)))
        self.n += 1 + width
        return 0

    cdef int _int(self, object value) except -1:
        cdef int overflow = 0
        cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
        cdef uint64_t u
        if overflow > 0:
            u = <uint64_t>value  # raises OverflowError past 2**64 - 1
            return self._be(0xCF, u, 8)
        if overflow < 0:
            raise OverflowError("an integer below -2**63 cannot be journaled")
        if v >= 0:
            if v < 128:
                return self._byte(<uint8_t>v)
            if v < 0x100:
                return self._be(0xCC, <uint64_t>v, 1)
            if v < 0x10000:
                return self._be(0xCD, <uint64_t>v, 2)
            if v < 0x100000000:
                return self._be(0xCE, <uint64_t>v, 4)
            return self._be(0xCF, <uint64_t>v, 8)
        if v >= -32:
            return self._byte(<uint8_t>(<int64_t>v & 0xFF))
        if v >= -128:
            return self._be(0xD0, <uint64_t>(<int64_t>v) & 0xFF, 1)
        if v >= -32768:
            return self._be(0xD1, <uint64_t>(<int64_t>v) & 0xFFFF, 2)
        if v >= -2147483648:
            return self._be(0xD2, <uint64_t>(<int64_t>v) & 0xFFFFFFFF, 4)
        return self._be(0xD3, <uint64_t>(<int64_t>v), 8)

    cdef int _raw(self, const char *data, Py_ssize_t size, bint text) except -1:
        if text and size < 32:
            self._grow(1 + size)
            self.scratch[self.n] = 0xA0 | <uint8_t>size
            self.n += 1
        elif size < 0x100:
            self._be(0xD9 if text else 0xC4, <uint64_t>size, 1)
        elif size < 0x10000:
            self._be(0xDA if text else 0xC5, <uint64_t>size, 2)
        elif size <= 0xFFFFFFFF:
            self._be(0xDB if text else 0xC6, <uint64_t>size, 4)
        else:
            raise ValueError("a journaled value is 4 GiB or longer")
        self._grow(size)
        memcpy(self.scratch + self.n, data, size)
        self.n += size
        return 0

    cdef inline int _str(self, object value) except -1:
        if PyUnicode_IS_COMPACT_ASCII(value):
            return self._raw(<const char *>PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value), True)
        return self._str_slow(value)

    cdef int _str_slow(self, object value) except -1:
        cdef Py_ssize_t size
        cdef const char *data
        try:
            data = PyUnicode_AsUTF8AndSize(value, &size)
        except UnicodeEncodeError:
            # Lone surrogates (JSON allows them): kept, as the trail's JSON keeps them.
            raw = value.encode("utf-8", "surrogatepass")
            return self._raw(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), True)
        return self._raw(data, size, True)

    cdef int _head(self, uint8_t fix, uint8_t tag16, Py_ssize_t size) except -1:
        if size < 16:
            return self._byte(fix | <uint8_t>size)
        if size < 0x10000:
            return self._be(tag16, <uint64_t>size, 2)
        return self._be(tag16 + 1, <uint64_t>size, 4)

    cdef int _value(self, object value, int depth) except -1:
        """Any JSON-like value, packed as msgpack.packb(use_bin_type=True) packs it."""
        cdef double d
        cdef uint64_t bits
        cdef Py_ssize_t i, size, pos = 0
        cdef PyObject *k
        cdef PyObject *v
        if depth > MAX_DEPTH:
            raise ValueError("a journaled value is nested too deeply")
        if value is None:
            return self._byte(0xC0)
        if value is True:
            return self._byte(0xC3)
        if value is False:
            return self._byte(0xC2)
        if PyUnicode_CheckExact(value):
            return self._str(value)
        if PyLong_CheckExact(value):
            return self._int(value)
        if PyFloat_CheckExact(value):
            d = PyFloat_AS_DOUBLE(value)
            memcpy(&bits, &d, 8)
            return self._be(0xCB, bits, 8)
        if PyBytes_CheckExact(value):
            return self._raw(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), False)
        if PyList_CheckExact(value):
            size = PyList_GET_SIZE(value)
            self._head(0x90, 0xDC, size)
            for i in range(size):
                self._value(<object>PyList_GET_ITEM(value, i), depth + 1)
            return 0
        if PyTuple_CheckExact(value):
            size = PyTuple_GET_SIZE(value)
            self._head(0x90, 0xDC, size)
            for i in range(size):
                self._value(<object>PyTuple_GET_ITEM(value, i), depth + 1)
            return 0
        if isinstance(value, dict):
            self._head(0x80, 0xDE, len(value))
            while PyDict_Next(value, &pos, &k, &v):
                self._value(<object>k, depth + 1)
                self._value(<object>v, depth + 1)
            return 0
        if isinstance(value, str):
            return self._str(str(value))
        if isinstance(value, int):
            return self._int(int(value))
        raise TypeError(f"cannot journal a {type(value).__name__}")

    cdef int _section(self, object members) except -1:
        """A request or response section, scrubbed member by member.

        Strings, ints, booleans and None are kept as they are and string-to-string
        encryption contexts verbatim; secret names are dropped; anything else goes
        through the caller's scrubber, whose answer (or nothing, for its DROP) is
        packed. Member names are kept as the API spells them.
        """
        cdef Py_ssize_t pos = 0, kept = 0, head_at, ctx_at, ctx_head, ctx_n, cpos
        cdef bint unusual
        cdef PyObject *k
        cdef PyObject *v
        cdef PyObject *ck
        cdef PyObject *cv
        cdef PyObject *found
        cdef int kind
        cdef object item, clean
        if members is None:
            return self._byte(0xC0)
        if not PyDict_CheckExact(members):
            if not isinstance(members, Mapping):
                # Not a structure at all (a refused request): the scrubber's way.
                clean = self.scrub("", members)
                return self._value(None if clean is self.drop else clean, 0)
            members = dict(members)
        # A map head, patched with the count once the kept members are known:
        # a fixmap when there are fewer than 16 members (every request), else
        # a map32.
        head_at = self.n
        self._map_head(PyDict_Size(members))
        while PyDict_Next(members, &pos, &k, &v):
            if not PyUnicode_CheckExact(<object>k):
                continue
            found = PyDict_GetItem(self.kinds, <object>k)
            if found == NULL:
                kind = self.classify(<object>k)
                PyDict_SetItem(self.kinds, <object>k, kind)
            else:
                kind = <int><object>found
            if kind == KIND_SECRET:
                continue
            item = <object>v
            if kind == KIND_CONTEXT and PyDict_CheckExact(item):
                ctx_at = self.n
                self._str(<object>k)
                ctx_head = self.n
                self._map_head(PyDict_Size(item))
                ctx_n = 0
                cpos = 0
                unusual = False
                while PyDict_Next(item, &cpos, &ck, &cv):
                    if PyUnicode_CheckExact(<object>ck) and PyUnicode_CheckExact(<object>cv):
                        self._str(<object>ck)
                        self._str(<object>cv)
                        ctx_n += 1
                    else:
                        unusual = True
                        break
                if not unusual:
                    self._patch_map(ctx_head, <uint64_t>ctx_n)
                    kept += 1
                    continue
                self.n = ctx_at  # an unusual context: the scrubber's way
            elif kind == KIND_OTHER and (
                item is None or item is True or item is False
                or PyUnicode_CheckExact(item) or PyLong_CheckExact(item)
            ):
                self._str(<object>k)
                self._value(item, 1)
                kept += 1
                continue
            clean = self.scrub(<object>k, item)
            if clean is self.drop:
                continue
            self._str(<object>k)
            self._value(clean, 1)
            kept += 1
        self._patch_map(head_at, kept)
        return 0

    cdef inline int _map_head(self, Py_ssize_t most) except -1:
        """A map head to patch later: a fixmap for ``most`` < 16, else a map32."""
        if most < 16:
            return self._byte(0x80)
        return self._be(0xDF, 0, 4)

    cdef inline void _patch_map(self, size_t at, uint64_t count):
        if self.scratch[at] == 0x80:
            self.scratch[at] = 0x80 | <uint8_t>count
        else:
            self._patch32(at + 1, count)

    cdef void _patch32(self, size_t at, uint64_t value):
        self.scratch[at] = <uint8_t>(value >> 24)
        self.scratch[at + 1] = <uint8_t>(value >> 16)
        self.scratch[at + 2] = <uint8_t>(value >> 8)
        self.scratch[at + 3] = <uint8_t>value

    # --- entries ------------------------------------------------------------------

    cdef int _commit(self) except -1:
        """Chain the scratch body and copy it into the mapping as the next entry."""
        cdef size_t body = self.n - BODY_AT
        cdef size_t total = (ENTRY_HEAD + body + 7) & ~(<size_t>7)
        cdef uint8_t out[32]
        cdef unsigned int out_len = 0
        cdef uint8_t *entry
        cdef int i
        if not self.pinned:
            raise JournalFull()  # released: the owner rolls to a new file
        # The next entry's length word must stay zero (the end mark), so one
        # 8-byte word after this entry has to fit too.
        if self._offset + total + 8 > self.capacity or body > 0x7FFFFFFF:
            raise JournalFull()
        memcpy(self.scratch, self._digest, DIGEST_LEN)
        for i in range(8):
            self.scratch[DIGEST_LEN + i] = <uint8_t>(self._seq >> (8 * i))
        if (EVP_DigestInit_ex(self.md, _SHA256, NULL) != 1
                or EVP_DigestUpdate(self.md, self.scratch, BODY_AT + body) != 1
                or EVP_DigestFinal_ex(self.md, out, &out_len) != 1):
            raise KMSInternalException("The audit journal's digest failed.")
        entry = self.base + self._offset
        (<uint32_t *>(entry + 4))[0] = <uint32_t>(self._seq & 0xFFFFFFFF)
        memcpy(entry + 8, out, DIGEST_LEN)
        memcpy(entry + ENTRY_HEAD, self.scratch + BODY_AT, body)
        for i in range(<int>(total - ENTRY_HEAD - body)):
            entry[ENTRY_HEAD + body + i] = 0
        # The commit word last: a reader that sees the length sees the entry.
        kms_release_u32(<uint32_t *>entry, <uint32_t>body)
        memcpy(self._digest, out, DIGEST_LEN)
        self._offset += total
        self._seq += 1
        kms_release_u64(<uint64_t *>(self.base + self.count_at), self._seq)
        return 0

    cdef inline object _slot(self, int slot, object key):
        """:meth:`_ref` of a string, remembering the last one per slot."""
        if <PyObject *>PyList_GET_ITEM(self.slot_keys, slot) == <PyObject *>key:
            return <object>PyList_GET_ITEM(self.slot_refs, slot)
        ref = self._ref(key, None)
        self.slot_keys[slot] = key
        self.slot_refs[slot] = ref
        return ref

    cdef object _ref(self, object key, object value):
        """The reference number of ``key``, defining it (as ``value``) on first use."""
        cdef PyObject *found = PyDict_GetItem(self.refs, key)
        cdef Py_ssize_t number
        if found != NULL:
            return <object>found
        number = len(self.refs)
        self.n = BODY_AT
        self._byte(0x92)
        self._byte(ENTRY_DEFINE)
        self._value(value if value is not None else key, 0)
        self._commit()
        self.refs[key] = number
        return number

    def append_call(self, int64_t time_ns, str operation, str request_id, caller,
                    str region, str account, list resources, bint read_only,
                    error_code, error_message, request, response, extra):
        """Record one call; returns the entry's seq.

        Raises:
            JournalFull: it does not fit (nothing of the call was written).
            TypeError, ValueError: a value that cannot be journaled.
        """
        return self._append(time_ns, operation, request_id, caller, region, account, resources,
                            read_only, error_code, error_message, request, response, extra)

    def append_service_call(self, call, request, response, error, extra):
        """Record a service ``Call`` as :meth:`append_call` would, reading its parts here.

        ``call`` has ``operation``, ``request_id``, ``caller``, ``resources``,
        ``read_only`` and ``service`` (with ``region`` and ``account``);
        ``error`` is None or has ``code`` and ``message``. The response is
        recorded only for calls that are not read-only. The time is taken here.

        Raises:
            JournalFull, TypeError, ValueError: as :meth:`append_call`.
        """
        return self._service_call(call, request, response, error, extra)

    cdef object _service_call(self, object call, object request, object response, object error,
                              object extra):
        cdef timespec now
        clock_gettime(CLOCK_REALTIME, &now)
        service = _field(call, F_SERVICE)
        read_only = _field(call, F_READ_ONLY)
        if error is None:
            code = message = None
        else:
            code = error.code
            message = error.message
        return self._append(
            <int64_t>now.tv_sec * 1000000000 + now.tv_nsec, _field(call, F_OPERATION),
            _field(call, F_REQUEST_ID), _field(call, F_CALLER), service.region, service.account,
            _field(call, F_RESOURCES), read_only, code, message, request,
            None if read_only or not response else response, extra)

    cdef object _append(self, int64_t time_ns, str operation, str request_id, caller,
                        str region, str account, list resources, bint read_only,
                        error_code, error_message, request, response, extra):
        cdef Py_ssize_t i, count = PyList_GET_SIZE(resources)
        cdef PyObject *found
        cdef object op_ref = self._slot(0, operation)
        cdef object caller_ref
        if caller is self.last_caller:
            # The same caller object call after call: no hashing (a dataclass
            # hashes all its fields in Python each time).
            caller_ref = self.last_caller_ref
        else:
            found = PyDict_GetItem(self.refs, caller)
            caller_ref = <object>found if found != NULL else self._ref(caller, self.describe(caller))
            self.last_caller = caller
            self.last_caller_ref = caller_ref
        cdef object region_ref = self._slot(1, region)
        cdef object account_ref = self._slot(2, account)
        cdef object first_ref = self._slot(3, <object>PyList_GET_ITEM(resources, 0)) if count else None
        for i in range(1, count):
            self._ref(<object>PyList_GET_ITEM(resources, i), None)
        cdef bint split_id = (PyUnicode_IS_COMPACT_ASCII(request_id)
                              and PyUnicode_GET_LENGTH(request_id) == ID_LEN)
        cdef const char *id_data = <const char *>PyUnicode_DATA(request_id)
        if split_id and (self.id_prefix_ref is None
                         or memcmp(id_data, self.id_prefix, ID_PREFIX) != 0):
            self.id_prefix_ref = self._ref(PyUnicode_FromStringAndSize(id_data, ID_PREFIX), None)
            memcpy(self.id_prefix, id_data, ID_PREFIX)
        self.n = BODY_AT
        self._byte(0x9E)  # fixarray of 14
        self._byte(ENTRY_CALL)
        self._be(0xD3, <uint64_t>time_ns, 8)
        self._int(op_ref)
        if split_id:
            self._byte(0x92)
            self._int(self.id_prefix_ref)
            self._raw(id_data + ID_PREFIX, ID_LEN - ID_PREFIX, True)
        else:
            self._str(request_id)
        self._int(caller_ref)
        self._int(region_ref)
        self._int(account_ref)
        self._head(0x90, 0xDC, count)
        if count:
            self._int(first_ref)
        for i in range(1, count):
            self._int(<object>PyDict_GetItem(self.refs, <object>PyList_GET_ITEM(resources, i)))
        self._byte(0xC3 if read_only else 0xC2)
        if error_code is None:
            self._byte(0xC0)
        else:
            self._str(error_code)
        if error_message is None:
            self._byte(0xC0)
        else:
            self._str(error_message)
        self._section(request)
        self._section(response)
        self._section(extra)
        self._commit()
        return self._seq - 1

    def append_event(self, event):
        """Record one whole event, already scrubbed by the caller; returns its seq.

        Raises:
            JournalFull: it does not fit.
            TypeError, ValueError: a value that cannot be journaled.
        """
        self.n = BODY_AT
        self._byte(0x92)
        self._byte(ENTRY_EVENT)
        self._value(event, 0)
        self._commit()
        return self._seq - 1


cdef class CallRecorder:
    """The auditor's hot path: a service call into the journal's current file, natively.

    :meth:`record` is the :class:`~kmscore.service.Auditor` method, so an
    auditor that subclasses this records a call with one C call and no Python
    frame. It appends through the last native writer it saw; when there is
    none, or it raises JournalFull (full, or let go on a roll, close or fork),
    it calls ``fallback(call, request, response, error, extra)``, the way that
    rolls the journal, and then takes ``journal.writer`` again.
    """

    cdef JournalWriter _writer
    cdef object _journal
    cdef object _fallback
    cdef object _batches
    cdef object _batch_extra

    def __init__(self, journal, fallback, batches, batch_extra):
        """Args:
            journal: Has ``writer``, the current native writer or None.
            fallback: Records a call the slow way (rolling the journal).
            batches: Operation names whose ``additionalEventData`` is
                ``batch_extra(operation, request)`` when the call has none.
            batch_extra: See ``batches``.
        """
        self._journal = journal
        self._fallback = fallback
        self._batches = frozenset(batches)
        self._batch_extra = batch_extra
        self._writer = None

    def record(self, call, request, response, error):
        """Record one service call before returning.

        Raises:
            KMSInternalException: from ``fallback``: it could not be recorded.
            TypeError, ValueError: a value that cannot be journaled.
        """
        extra = _field(call, F_EXTRA)
        if extra is None and _field(call, F_OPERATION) in self._batches:
            extra = self._batch_extra(_field(call, F_OPERATION), request)
        if self._writer is not None:
            try:
                self._writer._service_call(call, request, response, error, extra)
                return None
            except JournalFull:
                pass
        self._fallback(call, request, response, error, extra)
        writer = self._journal.writer
        self._writer = writer if isinstance(writer, JournalWriter) else None
        return None


def prefault_writable(mapping, size_t offset, size_t length):
    """Fault ``length`` bytes of a shared mapping in, writable, from ``offset``.

    Without the GIL: the kernel's work (a few microseconds a page on ext4)
    runs beside the callers. The range is rounded out to whole pages. Returns
    False when the kernel lacks ``MADV_POPULATE_WRITE`` (Linux 5.14).

    Raises:
        ValueError: the range is not inside the mapping.
        OSError: the kernel refused for another reason.
    """
    cdef Py_buffer view
    cdef size_t start, end, page = 4096
    cdef int rc = 0, err = 0
    PyObject_GetBuffer(mapping, &view, PyBUF_WRITABLE)
    try:
        if offset > <size_t>view.len or length > <size_t>view.len - offset:
            raise ValueError("the range is not inside the mapping")
        start = offset & ~(page - 1)
        end = (offset + length + page - 1) & ~(page - 1)
        if end > <size_t>view.len:
            end = <size_t>view.len & ~(page - 1)
        if end <= start:
            return True
        with nogil:
            rc = madvise(<uint8_t *>view.buf + start, end - start, MADV_POPULATE_WRITE)
            if rc != 0:
                err = errno
    finally:
        PyBuffer_Release(&view)
    if rc == 0:
        return True
    if err == EINVAL:
        return False
    raise OSError(err, "madvise(MADV_POPULATE_WRITE) failed")
