# cdef API of the shared-memory segments (mmshm._native.shm), for other Cython modules.
#
#   from shm cimport BroadcastWriter, BroadcastReader, GatedWriter, GatedReader, SeqlockTable
#   cdef BroadcastWriter w = <BroadcastWriter>py_writer     # made by BroadcastWriter.create(...)
#   with nogil:
#       w.publish_ptr(&rec)            # rec: a packed struct from records.pxd (seq is ring-owned)
#
# Every *_ptr / *_many method is noexcept nogil and never touches Python objects; the
# pointers must cover a whole record of the segment's dtype. Callers keep the Python
# object alive (it owns the mapping) and must not call these after close().
from libc.stdint cimport uint64_t, int64_t
cimport numpy as cnp


cdef class _Shm:
    cdef readonly object segment        # mmshm.shm.segment.Segment (owns the mapping)
    cdef readonly str posix_name        # /mmshm-<instance>-<name> (kept after close, for unlink)
    cdef readonly cnp.dtype dtype
    cdef char* _base                    # header
    cdef char* _data                    # first slot/row
    cdef uint64_t _capacity
    cdef uint64_t _mask
    cdef uint64_t _slot_size
    cdef uint64_t _rec_size
    cdef object _scratch                # one-record numpy array (poll/read staging)
    cdef char* _scratch_ptr

    cdef _bind(self, object seg, object dtype)
    cdef int _check_open(self) except -1
    cdef const char* _rec_ptr(self, object rec) except NULL
    cdef cnp.ndarray _batch_array(self, object arr, bint writable)


cdef class _RingWriter(_Shm):
    cdef uint64_t _next                 # next sequence to publish
    cdef uint64_t _writes               # header write_count mirror
    cdef bint _gated
    cdef uint64_t _cached_min           # cached min cursor of the required readers
    cdef int _n_req
    cdef char* _req_cursor[16]
    cdef uint64_t _refused
    cdef uint64_t _hb_count

    cdef void _init_writer(self, bint gated)
    cdef void _write_slot(self, uint64_t s, const char* rec) noexcept nogil
    cdef bint publish_ptr(self, const void* rec) noexcept nogil
    cdef uint64_t publish_many(self, const char* recs, uint64_t n, uint64_t stride) noexcept nogil
    cdef void heartbeat_c(self) noexcept nogil
    cdef uint64_t _gate_min(self) noexcept nogil
    cdef void _refuse(self, uint64_t n) noexcept nogil


cdef class BroadcastWriter(_RingWriter):
    pass


cdef class GatedWriter(_RingWriter):
    pass


cdef class _RingReader(_Shm):
    cdef uint64_t _cursor               # next sequence to read
    cdef uint64_t _epoch
    cdef uint64_t _gaps
    cdef uint64_t _lost
    cdef uint64_t _polled
    cdef bint _required
    cdef int _slot_index
    cdef char* _rslot
    cdef readonly str reader

    cdef _init_reader(self, str reader, str start)
    cdef int _try_one(self, char* out) noexcept nogil
    cdef int poll_ptr(self, void* out) noexcept nogil
    cdef uint64_t poll_many(self, char* out, uint64_t max_n, uint64_t stride) noexcept nogil
    cdef void heartbeat_c(self) noexcept nogil
    cdef void _on_epoch(self, uint64_t epoch) noexcept nogil
    cdef void _resync(self, uint64_t n) noexcept nogil
    cdef void _commit_cursor(self) noexcept nogil
    # Two-phase read (peek, then commit once the records are durable). Appended last so the
    # vtable slots above keep their positions.
    cdef uint64_t _committed            # stored (released) cursor; _committed <= _cursor
    cdef uint64_t _npeek                # records peeked since the last commit/rewind
    cdef uint64_t peek_many(self, char* out, uint64_t max_n, uint64_t stride) noexcept nogil
    cdef int commit_many(self, uint64_t n) noexcept nogil
    cdef int commit_through_seq(self, uint64_t seq) noexcept nogil
    cdef uint64_t rewind_c(self) noexcept nogil
    cdef void _store_committed(self) noexcept nogil


cdef class BroadcastReader(_RingReader):
    pass


cdef class GatedReader(_RingReader):
    pass


cdef class SeqlockTable(_Shm):
    cdef char* _claims
    cdef _init_table(self)
    cdef int write_ptr(self, uint64_t row, const void* rec) noexcept nogil
    cdef int read_ptr(self, uint64_t row, void* out, int64_t timeout_ns) noexcept nogil
    cdef uint64_t version_of(self, uint64_t row) noexcept nogil
