# cython: boundscheck=False, wraparound=False, cdivision=True
"""Hot paths of the shared-memory segments: broadcast ring, gated ring, seqlock table.

Segment lifetime (create, attach, validate, takeover, reader-slot registry) is plain
Python in mmshm/shm/segment.py; this module does the per-message work with acquire/release
atomics from atomics.h. The memory-ordering argument of each protocol is in docs/shm.md;
the comments here point at the step each atomic guards.

Slot protocol (both rings): slot = one record whose first 8 bytes are ``seq``.
  writer: seq := s|BUSY (relaxed); release fence; payload; seq := s (release)
  reader: s1 := seq (acquire); if s1 == n: copy; acquire fence; s2 := seq; ok iff s2 == n
Seqlock rows: the same with ``version`` odd while writing, even when stable.
"""
from libc.stdint cimport uint64_t, int64_t, uintptr_t
from libc.string cimport memcpy
cimport numpy as cnp
import numpy as np
import os

from atomics cimport (mm_load_acquire_u64, mm_load_relaxed_u64, mm_store_release_u64,
                      mm_store_relaxed_u64, mm_fetch_add_u64, mm_cas_u64, mm_cas_i64,
                      mm_fence_acquire, mm_fence_release, mm_cpu_relax, mm_monotonic_ns)

cnp.import_array()

cdef extern from "numpy/arrayscalars.h":
    ctypedef struct PyVoidScalarObject:
        char* obval
        cnp.PyArray_Descr* descr

from cpython.object cimport PyObject

cdef extern from "numpy/arrayobject.h":
    # base NULL: numpy copies the record into the new scalar (a non-NULL base makes a view).
    object PyArray_Scalar(void* data, cnp.dtype descr, PyObject* base)

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "Python.h":
    char* PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    char* PyByteArray_AS_STRING(object)
    Py_ssize_t PyByteArray_GET_SIZE(object)

# Header byte offsets; mirror of mmshm/shm/segment.py (tests/unit/test_shm_layout.py checks).
cdef enum:
    OFF_CREATOR_PID = 56
    OFF_EPOCH = 64
    OFF_HEARTBEAT_MONO = 256
    OFF_HEARTBEAT_COUNT = 264
    OFF_CURSOR = 272
    OFF_WRITE_COUNT = 280
    OFF_REFUSED = 288
    OFF_ALARM = 296
    OFF_READERS = 512
    LINE = 128
    MAX_READERS = 16
    R_PID = 8
    R_CURSOR = 16
    R_GAPS = 24
    R_LOST = 32
    R_EPOCH_SEEN = 40
    R_HEARTBEAT = 48
    R_POLLED = 56
    HEADER_SIZE = 4096

cdef uint64_t BUSY = (<uint64_t>1) << 63

#: Layout constants as compiled in, for the layout test.
LAYOUT = {
    "OFF_CREATOR_PID": OFF_CREATOR_PID, "OFF_EPOCH": OFF_EPOCH,
    "OFF_HEARTBEAT_MONO": OFF_HEARTBEAT_MONO, "OFF_HEARTBEAT_COUNT": OFF_HEARTBEAT_COUNT,
    "OFF_CURSOR": OFF_CURSOR, "OFF_WRITE_COUNT": OFF_WRITE_COUNT, "OFF_REFUSED": OFF_REFUSED,
    "OFF_ALARM": OFF_ALARM, "OFF_READERS": OFF_READERS, "LINE": LINE, "MAX_READERS": MAX_READERS,
    "pid": R_PID, "cursor": R_CURSOR, "gaps": R_GAPS, "lost": R_LOST, "epoch_seen": R_EPOCH_SEEN,
    "heartbeat_mono": R_HEARTBEAT, "polled": R_POLLED, "HEADER_SIZE": HEADER_SIZE, "BUSY": BUSY,
}


# --------------------------------------------------------------------------- raw helpers
# Used once per segment lifetime by mmshm/shm/segment.py (addresses are Python ints).

def load_u64(uintptr_t addr) -> int:
    """Acquire-load the uint64 at ``addr``."""
    return mm_load_acquire_u64(<void*>addr)


def store_release_u64(uintptr_t addr, uint64_t value) -> None:
    """Release-store ``value`` at ``addr`` (e.g. the header magic, last at creation)."""
    mm_store_release_u64(<void*>addr, value)


def cas_i64(uintptr_t addr, int64_t expected, int64_t desired) -> bool:
    """Compare-and-swap the int64 at ``addr`` (claims: reader slots, creator pid, table rows)."""
    return mm_cas_i64(<void*>addr, expected, desired) != 0


def cas_u64(uintptr_t addr, uint64_t expected, uint64_t desired) -> bool:
    return mm_cas_u64(<void*>addr, expected, desired) != 0


def fetch_add_u64(uintptr_t addr, uint64_t value) -> int:
    """Atomic add (acq_rel); returns the previous value (the epoch bump on takeover)."""
    return mm_fetch_add_u64(<void*>addr, value)


cdef inline uint64_t _u64(object v) except? 0:
    return <uint64_t>v


def _unlink(str posix_name):
    import posix_ipc
    try:
        posix_ipc.unlink_shared_memory(posix_name)
    except posix_ipc.ExistentialError:
        pass


cdef int _check_out(object out) except -1:
    """Output buffers of poll_into/read_into must be writable arrays or bytearrays (not scalars/bytes)."""
    if type(out) is bytearray:
        return 0
    if isinstance(out, np.ndarray):
        if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
            raise ValueError("output array is read-only")
        return 0
    raise TypeError(f"output must be a writable 1-element numpy array or a bytearray, not {type(out).__name__}")


def _segmod():
    import mmshm.shm.segment as S
    return S


# --------------------------------------------------------------------------- base

cdef class _Shm:
    """A mapped segment with the record dtype; common record-pointer plumbing."""

    def __init__(self, *args, **kwargs):
        raise TypeError(f"use {type(self).__name__}.create(...) or .attach(...), not the constructor")

    cdef _bind(self, object seg, object dtype):
        self.segment = seg
        self.posix_name = seg.posix_name
        self.dtype = np.dtype(dtype)
        h = seg.header
        self._base = <char*><uintptr_t>seg.address
        self._data = self._base + <uint64_t>h["data_offset"]
        self._capacity = <uint64_t>h["capacity"]
        self._mask = self._capacity - 1
        self._slot_size = <uint64_t>h["slot_size"]
        self._rec_size = self.dtype.itemsize
        self._scratch = np.zeros(1, dtype=self.dtype)
        self._scratch_ptr = <char*>cnp.PyArray_DATA(<cnp.ndarray>self._scratch)

    cdef int _check_open(self) except -1:
        if self._base == NULL:
            raise _segmod().ShmError(f"{type(self).__name__} is closed")
        return 0

    cdef const char* _rec_ptr(self, object rec) except NULL:
        """Address of the single record in ``rec`` (np.void, 0-d/1-element array, or bytes)."""
        cdef cnp.ndarray arr
        if self._base == NULL:
            self._check_open()
        if type(rec) is np.void:
            if <void*>(<PyVoidScalarObject*>rec).descr != <void*>self.dtype and rec.dtype != self.dtype:
                raise TypeError(f"record dtype {rec.dtype} does not match the segment's {self.dtype}")
            return (<PyVoidScalarObject*>rec).obval
        if isinstance(rec, np.ndarray):
            arr = <cnp.ndarray>rec
            if <void*>cnp.PyArray_DESCR(arr) != <void*>self.dtype and arr.dtype != self.dtype:
                raise TypeError(f"record dtype {arr.dtype} does not match the segment's {self.dtype}")
            if cnp.PyArray_SIZE(arr) != 1:
                raise TypeError(f"expected one record, got an array of {cnp.PyArray_SIZE(arr)} "
                                "(use the *_batch methods for arrays)")
            return <const char*>cnp.PyArray_DATA(arr)
        if type(rec) is bytes:
            if <uint64_t>PyBytes_GET_SIZE(rec) != self._rec_size:
                raise ValueError(f"expected {self._rec_size} bytes, got {PyBytes_GET_SIZE(rec)}")
            return PyBytes_AS_STRING(rec)
        if type(rec) is bytearray:
            if <uint64_t>PyByteArray_GET_SIZE(rec) != self._rec_size:
                raise ValueError(f"expected {self._rec_size} bytes, got {PyByteArray_GET_SIZE(rec)}")
            return PyByteArray_AS_STRING(rec)
        raise TypeError(f"expected a record of dtype {self.dtype} (np.void, 1-element array or bytes), "
                        f"got {type(rec).__name__}")

    cdef cnp.ndarray _batch_array(self, object arr, bint writable):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"expected a numpy array of dtype {self.dtype}, got {type(arr).__name__}")
        cdef cnp.ndarray a = <cnp.ndarray>arr
        if a.ndim != 1:
            raise ValueError(f"expected a 1-D array, got {a.ndim}-D")
        if <void*>cnp.PyArray_DESCR(a) != <void*>self.dtype and a.dtype != self.dtype:
            raise TypeError(f"array dtype {a.dtype} does not match the segment's {self.dtype}")
        if writable and not a.flags.writeable:
            raise ValueError("output array is read-only")
        return a

    @property
    def name(self) -> str:
        """The POSIX name, /mmshm-<instance>-<name>."""
        return self.posix_name

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def epoch(self) -> int:
        """The writer epoch in the header (bumped on each writer takeover)."""
        self._check_open()
        return mm_load_acquire_u64(self._base + OFF_EPOCH)

    @property
    def closed(self) -> bool:
        return self._base == NULL

    def close(self) -> None:
        """Unmap (idempotent). The segment stays in /dev/shm."""
        if self._base == NULL:
            return
        self._release()
        self._base = NULL
        self._data = NULL
        self._scratch_ptr = NULL
        seg, self.segment = self.segment, None
        seg.close()

    def _release(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        # Mapping is owned by the Segment; nothing to free here.
        pass


# --------------------------------------------------------------------------- ring writer

cdef class _RingWriter(_Shm):
    """Single-producer ring writer; gated subclass adds the Disruptor capacity check."""

    cdef void _init_writer(self, bint gated):
        self._gated = gated
        self._next = mm_load_acquire_u64(self._base + OFF_CURSOR)
        if self._next == 0:
            self._next = 1
        self._writes = mm_load_relaxed_u64(self._base + OFF_WRITE_COUNT)
        self._refused = mm_load_relaxed_u64(self._base + OFF_REFUSED)
        self._hb_count = mm_load_relaxed_u64(self._base + OFF_HEARTBEAT_COUNT)
        self._n_req = 0
        cdef int i
        cdef char* r
        for i in range(MAX_READERS):
            r = self._base + OFF_READERS + i * LINE
            if (<unsigned int*>r)[0] == 1:   # ReaderState.REQUIRED
                self._req_cursor[self._n_req] = r + R_CURSOR
                self._n_req += 1
        self._cached_min = self._gate_min()

    cdef uint64_t _gate_min(self) noexcept nogil:
        # Acquire pairs with each required reader's release store of its cursor: once we see
        # cursor > s - capacity, that reader's copy of slot s - capacity is complete, so the
        # slot may be overwritten.
        cdef uint64_t m = 0xFFFFFFFFFFFFFFFF
        cdef uint64_t c
        cdef int i
        if self._n_req == 0:
            return self._next
        for i in range(self._n_req):
            c = mm_load_acquire_u64(self._req_cursor[i])
            if c < m:
                m = c
        return m

    cdef void _refuse(self, uint64_t n) noexcept nogil:
        self._refused += n
        mm_store_relaxed_u64(self._base + OFF_REFUSED, self._refused)
        mm_store_release_u64(self._base + OFF_ALARM, 1)

    cdef inline void _write_slot(self, uint64_t s, const char* rec) noexcept nogil:
        cdef char* slot = self._data + (s & self._mask) * self._slot_size
        # 1. mark the slot busy (low bits say which seq is being written) ...
        mm_store_relaxed_u64(slot, s | BUSY)
        # 2. ... and order that mark before every payload store: a reader whose copy saw any
        #    new payload byte then sees BUSY (or a newer seq) on its re-check.
        mm_fence_release()
        memcpy(slot + 8, rec + 8, self._rec_size - 8)
        # 3. publish: the release makes the payload visible before the seq a reader polls.
        mm_store_release_u64(slot, s)

    cdef bint publish_ptr(self, const void* rec) noexcept nogil:
        """Publish one record; False (refused, counted, alarm) only when a gated ring is full."""
        cdef uint64_t s = self._next
        if self._gated and s >= self._cached_min + self._capacity:
            self._cached_min = self._gate_min()
            if s >= self._cached_min + self._capacity:
                self._refuse(1)
                return False
        self._write_slot(s, <const char*>rec)
        self._next = s + 1
        self._writes += 1
        mm_store_release_u64(self._base + OFF_CURSOR, s + 1)
        mm_store_relaxed_u64(self._base + OFF_WRITE_COUNT, self._writes)
        return True

    cdef uint64_t publish_many(self, const char* recs, uint64_t n, uint64_t stride) noexcept nogil:
        """Publish up to ``n`` records ``stride`` bytes apart; returns how many were published."""
        cdef uint64_t s = self._next
        cdef uint64_t k = n
        cdef uint64_t i
        if self._gated and s + n > self._cached_min + self._capacity:
            self._cached_min = self._gate_min()
            if s + n > self._cached_min + self._capacity:
                k = self._cached_min + self._capacity - s
        for i in range(k):
            self._write_slot(s + i, recs + i * stride)
        if k:
            self._next = s + k
            self._writes += k
            mm_store_release_u64(self._base + OFF_CURSOR, s + k)
            mm_store_relaxed_u64(self._base + OFF_WRITE_COUNT, self._writes)
        if k < n:
            self._refuse(n - k)
        return k

    cdef void heartbeat_c(self) noexcept nogil:
        self._hb_count += 1
        mm_store_relaxed_u64(self._base + OFF_HEARTBEAT_MONO, <uint64_t>mm_monotonic_ns())
        mm_store_release_u64(self._base + OFF_HEARTBEAT_COUNT, self._hb_count)

    # ---- Python API
    def publish_batch(self, arr) -> int:
        """Publish a 1-D array of records (its ``seq`` fields are ignored); returns how many.

        A gated ring publishes the prefix that fits and counts the rest as refused.
        """
        self._check_open()
        cdef cnp.ndarray a = self._batch_array(arr, False)
        cdef uint64_t n = cnp.PyArray_DIM(a, 0)
        cdef uint64_t stride = cnp.PyArray_STRIDE(a, 0)
        cdef const char* p = <const char*>cnp.PyArray_DATA(a)
        if n == 0:
            return 0
        with nogil:
            n = self.publish_many(p, n, stride)
        return n

    def heartbeat(self) -> None:
        """Writer heartbeat: monotonic ns and a count in the header (the watchdog reads them)."""
        self._check_open()
        self.heartbeat_c()

    @property
    def cursor(self) -> int:
        """The next sequence this writer will publish (sequences start at 1)."""
        return self._next

    @property
    def refused(self) -> int:
        return self._refused

    @property
    def alarm(self) -> bool:
        self._check_open()
        return mm_load_acquire_u64(self._base + OFF_ALARM) != 0

    def clear_alarm(self) -> None:
        self._check_open()
        mm_store_release_u64(self._base + OFF_ALARM, 0)

    def unlink(self) -> None:
        """Remove the segment name from /dev/shm (mappings stay valid until closed; works after close)."""
        _unlink(self.posix_name)


cdef class BroadcastWriter(_RingWriter):
    """Writer of a lossy broadcast ring: never waits; slow readers are lapped and count gaps."""

    @classmethod
    def create(cls, str instance, str name, dtype, int capacity=1 << 16, slot_size=None):
        """Create ``/mmshm-<instance>-<name>`` (or take it over if its writer is dead)."""
        S = _segmod()
        seg = S.create(instance, name, S.Kind.BROADCAST, dtype, capacity, slot_size)
        cdef BroadcastWriter w = cls.__new__(cls)
        try:
            w._bind(seg, dtype)
            w._init_writer(False)
        except BaseException:
            seg.close()
            raise
        return w

    def publish(self, rec) -> int:
        """Publish one record (np.void, 1-element array or bytes); returns its sequence."""
        cdef const char* p = self._rec_ptr(rec)
        cdef uint64_t s = self._next
        self.publish_ptr(p)
        return s

    def publish_bytes(self, rec) -> int:
        """Alias of publish() for bytes/bytearray payloads of exactly one record."""
        cdef const char* p = self._rec_ptr(rec)
        cdef uint64_t s = self._next
        self.publish_ptr(p)
        return s


cdef class GatedWriter(_RingWriter):
    """Writer of a lossless gated ring: never overwrites a slot a required reader still needs."""

    @classmethod
    def create(cls, str instance, str name, dtype, int capacity=1 << 14, required=(), slot_size=None):
        """Create the ring with ``required`` reader names reserved (gated on even before they attach)."""
        S = _segmod()
        seg = S.create(instance, name, S.Kind.GATED, dtype, capacity, slot_size, required=tuple(required))
        cdef GatedWriter w = cls.__new__(cls)
        try:
            w._bind(seg, dtype)
            w._init_writer(True)
        except BaseException:
            seg.close()
            raise
        return w

    def try_publish(self, rec) -> bool:
        """Publish one record; False when the ring is full (refused, counted, alarm set). Never blocks."""
        cdef const char* p = self._rec_ptr(rec)
        return self.publish_ptr(p)

    def try_publish_bytes(self, rec) -> bool:
        """Alias of try_publish() for bytes/bytearray payloads."""
        cdef const char* p = self._rec_ptr(rec)
        return self.publish_ptr(p)

    @property
    def required(self) -> int:
        """How many required readers gate this writer."""
        return self._n_req

    def free_slots(self) -> int:
        """Slots the writer can publish into right now without refusing."""
        self._check_open()
        self._cached_min = self._gate_min()
        return self._cached_min + self._capacity - self._next


# --------------------------------------------------------------------------- ring reader

cdef class _RingReader(_Shm):
    """Reader of either ring; required readers (gated) publish their cursor with release."""

    cdef _init_reader(self, str reader, str start):
        cdef int idx
        S = _segmod()
        idx, required = S.claim_reader(self.segment, reader)
        self.reader = reader
        self._slot_index = idx
        self._required = required
        self._rslot = self._base + OFF_READERS + idx * LINE
        self._epoch = mm_load_acquire_u64(self._base + OFF_EPOCH)
        cdef uint64_t c = mm_load_acquire_u64(self._base + OFF_CURSOR)
        if required:
            self._cursor = mm_load_acquire_u64(self._rslot + R_CURSOR)
            if self._cursor == 0:
                self._cursor = 1
            self._gaps = mm_load_relaxed_u64(self._rslot + R_GAPS)
            self._lost = mm_load_relaxed_u64(self._rslot + R_LOST)
            self._polled = mm_load_relaxed_u64(self._rslot + R_POLLED)
            if mm_load_relaxed_u64(self._rslot + R_EPOCH_SEEN) not in (0, self._epoch):
                # The writer restarted while we were away: a gap event, nothing lost.
                self._gaps += 1
                mm_store_relaxed_u64(self._rslot + R_GAPS, self._gaps)
        elif start == "latest":
            self._cursor = c if c else 1
        elif start == "oldest":
            self._cursor = c - self._capacity + 1 if c > self._capacity else 1
        else:
            S.release_reader(self.segment, idx)
            raise ValueError(f"start must be 'latest' or 'oldest', got {start!r}")
        mm_store_relaxed_u64(self._rslot + R_EPOCH_SEEN, self._epoch)
        self._commit_cursor()
        self.heartbeat_c()

    cdef inline void _commit_cursor(self) noexcept nogil:
        # Commit everything read so far (the poll path, and peeks before it).
        self._committed = self._cursor
        self._npeek = 0
        self._store_committed()

    cdef inline void _store_committed(self) noexcept nogil:
        # Release: our copies of every slot below the committed cursor happen-before a gated
        # writer (acquire in _gate_min) reuses them. Untethered readers gate nobody; same store.
        mm_store_release_u64(self._rslot + R_CURSOR, self._committed)

    cdef void _on_epoch(self, uint64_t epoch) noexcept nogil:
        # The writer was restarted (takeover): a gap event. Sequences continue monotonically,
        # so the cursor stays valid; pull it back only if the writer's cursor is behind it.
        cdef uint64_t c = mm_load_acquire_u64(self._base + OFF_CURSOR)
        self._epoch = epoch
        self._gaps += 1
        if self._cursor > c:
            self._cursor = c
            if self._committed > c:
                self._committed = c
            self._store_committed()
        mm_store_relaxed_u64(self._rslot + R_GAPS, self._gaps)
        mm_store_relaxed_u64(self._rslot + R_EPOCH_SEEN, epoch)

    cdef void _resync(self, uint64_t n) noexcept nogil:
        # Lapped: sequence n was overwritten. Jump to half a ring behind the writer so the
        # next reads have headroom; everything skipped is counted as lost. Only a reader
        # nobody gates on can be lapped; its records peeked before the lap cannot be re-read
        # any more, so the lap releases them (commit(n) counts them, rewind() stops at nxt).
        cdef uint64_t c = mm_load_acquire_u64(self._base + OFF_CURSOR)
        cdef uint64_t half = self._capacity >> 1
        cdef uint64_t nxt = c - half if c > half + 1 else 1
        if nxt <= n:
            nxt = n + 1
        self._lost += nxt - n
        self._gaps += 1
        self._cursor = nxt
        self._committed = nxt
        mm_store_relaxed_u64(self._rslot + R_GAPS, self._gaps)
        mm_store_relaxed_u64(self._rslot + R_LOST, self._lost)
        self._store_committed()

    cdef inline int _try_one(self, char* out) noexcept nogil:
        """1: copied seq==cursor into out; 0: nothing new; -1: lapped (resynced, try again)."""
        cdef uint64_t n = self._cursor
        cdef char* slot = self._data + (n & self._mask) * self._slot_size
        # Acquire pairs with the writer's release store of seq: payload of n is visible.
        cdef uint64_t s1 = mm_load_acquire_u64(slot)
        cdef uint64_t s2
        if s1 == n:
            memcpy(out + 8, slot + 8, self._rec_size - 8)
            # Acquire fence: the copy's loads complete before the re-check; if any of them
            # saw a newer write, the re-check sees that write's BUSY mark or newer seq.
            mm_fence_acquire()
            s2 = mm_load_relaxed_u64(slot)
            if s2 == n:
                (<uint64_t*>out)[0] = n
                self._cursor = n + 1
                return 1
        elif (s1 & ~BUSY) <= n:
            return 0        # not written yet (older seq, empty, or n itself being written)
        self._resync(n)
        return -1

    cdef int poll_ptr(self, void* out) noexcept nogil:
        """Copy the next record into ``out``: 1 if one was read, 0 if none is ready."""
        cdef uint64_t e = mm_load_acquire_u64(self._base + OFF_EPOCH)
        cdef int r, tries = 0
        if e != self._epoch:
            self._on_epoch(e)
        while True:
            r = self._try_one(<char*>out)
            if r == 1:
                self._polled += self._npeek + 1
                self._commit_cursor()
                mm_store_relaxed_u64(self._rslot + R_POLLED, self._polled)
                return 1
            if r == 0:
                return 0
            tries += 1
            if tries > 64:
                return 0

    cdef uint64_t poll_many(self, char* out, uint64_t max_n, uint64_t stride) noexcept nogil:
        """Copy up to ``max_n`` consecutive records into ``out`` (``stride`` apart); returns how many.

        Peek + commit in one: everything read so far (earlier peeks too) is released."""
        cdef uint64_t k = self.peek_many(out, max_n, stride)
        if self._npeek:
            self._polled += self._npeek
            self._commit_cursor()
            mm_store_relaxed_u64(self._rslot + R_POLLED, self._polled)
        return k

    cdef uint64_t peek_many(self, char* out, uint64_t max_n, uint64_t stride) noexcept nogil:
        """Copy up to ``max_n`` records after those already peeked; nothing is released.

        The stored cursor (what a gated writer waits on, and where a restarted required
        reader resumes) stays at the last commit, so these slots cannot be overwritten
        until commit_many/commit_through_seq. Returns how many were copied."""
        cdef uint64_t e = mm_load_acquire_u64(self._base + OFF_EPOCH)
        cdef uint64_t k = 0
        cdef int r, tries = 0
        if e != self._epoch:
            self._on_epoch(e)
        while k < max_n:
            r = self._try_one(out + k * stride)
            if r == 1:
                k += 1
            elif r == 0:
                break
            else:
                tries += 1
                if tries > 64:
                    break
        self._npeek += k
        return k

    cdef int commit_many(self, uint64_t n) noexcept nogil:
        """Release the first ``n`` peeked records: 0, or -1 (nothing done) if fewer were peeked."""
        cdef uint64_t auto, k
        if n > self._npeek:
            return -1
        if n == 0:
            return 0
        # The first ``auto`` peeked records were released by a lap (untethered readers only);
        # the rest are contiguous from _committed.
        auto = self._npeek - (self._cursor - self._committed)
        k = n - auto if n > auto else 0
        self._committed += k
        self._npeek -= n
        self._polled += n
        self._store_committed()
        mm_store_relaxed_u64(self._rslot + R_POLLED, self._polled)
        return 0

    cdef int commit_through_seq(self, uint64_t seq) noexcept nogil:
        """Release every peeked record up to and including ``seq``.

        1 released, 0 nothing to do (``seq`` already committed), -1 ``seq`` not peeked yet."""
        cdef uint64_t left
        if seq >= self._cursor:
            return -1
        if seq < self._committed:
            return 0
        self._committed = seq + 1
        left = self._cursor - self._committed      # lap-released records all lie below seq
        self._polled += self._npeek - left
        self._npeek = left
        self._store_committed()
        mm_store_relaxed_u64(self._rslot + R_POLLED, self._polled)
        return 1

    cdef uint64_t rewind_c(self) noexcept nogil:
        """Forget the peeked records; the next peek re-reads from the committed cursor.
        Returns how many records will be delivered again."""
        cdef uint64_t n = self._cursor - self._committed
        self._cursor = self._committed
        self._npeek = 0
        return n

    cdef void heartbeat_c(self) noexcept nogil:
        mm_store_relaxed_u64(self._rslot + R_HEARTBEAT, <uint64_t>mm_monotonic_ns())

    # ---- Python API
    def poll(self):
        """The next record as an np.void (a copy), or None if nothing new. Gaps are counted in ``gaps``."""
        if self._base == NULL:
            self._check_open()
        if self.poll_ptr(self._scratch_ptr):
            return PyArray_Scalar(self._scratch_ptr, self.dtype, NULL)
        return None

    def poll_into(self, out) -> bool:
        """Copy the next record into ``out`` (1-element array of the dtype or a bytearray); True if one was read."""
        _check_out(out)
        cdef char* p = <char*>self._rec_ptr(out)
        return self.poll_ptr(p) == 1

    def poll_batch(self, out) -> int:
        """Fill ``out`` (1-D array of the dtype) with the next records; returns how many were read."""
        self._check_open()
        cdef cnp.ndarray a = self._batch_array(out, True)
        cdef uint64_t n = cnp.PyArray_DIM(a, 0)
        cdef uint64_t stride = cnp.PyArray_STRIDE(a, 0)
        cdef char* p = <char*>cnp.PyArray_DATA(a)
        if n == 0:
            return 0
        with nogil:
            n = self.poll_many(p, n, stride)
        return n

    def peek(self):
        """The next record after those already peeked, as an np.void (a copy), or None.

        Like poll() but nothing is released: see peek_batch()."""
        if self._base == NULL:
            self._check_open()
        if self.peek_many(self._scratch_ptr, 1, 0):
            return PyArray_Scalar(self._scratch_ptr, self.dtype, NULL)
        return None

    def peek_batch(self, out) -> int:
        """Copy up to ``len(out)`` records that follow the committed cursor and the records
        already peeked; returns how many. Nothing is released: a gated writer keeps these
        slots (and refuses when the ring is full) and a restarted required reader reads
        them again, until commit()/commit_through(). rewind() re-reads them."""
        self._check_open()
        cdef cnp.ndarray a = self._batch_array(out, True)
        cdef uint64_t n = cnp.PyArray_DIM(a, 0)
        cdef uint64_t stride = cnp.PyArray_STRIDE(a, 0)
        cdef char* p = <char*>cnp.PyArray_DATA(a)
        if n == 0:
            return 0
        with nogil:
            n = self.peek_many(p, n, stride)
        return n

    def commit(self, n) -> int:
        """Release the first ``n`` peeked records (store-release of the cursor); returns the
        committed cursor. ValueError if fewer than ``n`` are pending."""
        self._check_open()
        if n < 0 or n > self._npeek:
            raise ValueError(f"{self.posix_name}: cannot commit {n} records, {self._npeek} peeked and pending")
        self.commit_many(<uint64_t>n)
        return self._committed

    def commit_through(self, seq) -> int:
        """Release every peeked record with sequence <= ``seq``; returns the committed cursor.

        A ``seq`` already committed is a no-op; ValueError if ``seq`` was not peeked yet."""
        self._check_open()
        if seq < 0 or seq >= self._cursor:
            raise ValueError(f"{self.posix_name}: cannot commit through seq {seq}: "
                             f"only sequences below {self._cursor} were read")
        self.commit_through_seq(<uint64_t>seq)
        return self._committed

    def rewind(self) -> int:
        """Drop the peeked, uncommitted records (e.g. after a failed durable write): the next
        peek re-delivers them from the committed cursor. Returns how many will be re-read."""
        self._check_open()
        return self.rewind_c()

    @property
    def committed(self) -> int:
        """The stored cursor: next sequence not yet released (a restart resumes here)."""
        return self._committed

    @property
    def pending(self) -> int:
        """Records peeked and not yet committed (the most commit() accepts)."""
        return self._npeek

    def heartbeat(self) -> None:
        """Reader heartbeat (monotonic ns in its reader slot) for `mmshm shm ls` and the watchdog."""
        self._check_open()
        self.heartbeat_c()

    def lag(self) -> int:
        """Messages published but not yet read by this reader."""
        self._check_open()
        cdef uint64_t c = mm_load_acquire_u64(self._base + OFF_CURSOR)
        return c - self._cursor if c > self._cursor else 0

    @property
    def cursor(self) -> int:
        """The next sequence this reader will read (past the peeked records)."""
        return self._cursor

    @property
    def gaps(self) -> int:
        """Gap events seen: times lapped plus writer restarts (epoch changes)."""
        return self._gaps

    @property
    def lost(self) -> int:
        """Messages skipped over because this reader was lapped."""
        return self._lost

    @property
    def polled(self) -> int:
        return self._polled

    @property
    def required(self) -> bool:
        return self._required

    @property
    def slot(self) -> int:
        return self._slot_index

    def _release(self):
        _segmod().release_reader(self.segment, self._slot_index)


cdef class BroadcastReader(_RingReader):
    """Lossy reader of a broadcast ring; detects being lapped, counts the gap, resyncs."""

    @classmethod
    def attach(cls, str instance, str name, dtype, str reader, str start="latest",
               capacity=None, slot_size=None):
        """Attach as ``reader`` (registered in a reader slot); ``start`` is 'latest' or 'oldest'."""
        S = _segmod()
        seg = S.attach(instance, name, S.Kind.BROADCAST, dtype, slot_size, capacity)
        cdef BroadcastReader r = cls.__new__(cls)
        try:
            r._bind(seg, dtype)
            r._init_reader(reader, start)
        except BaseException:
            seg.close()
            raise
        return r


cdef class GatedReader(_RingReader):
    """Reader of a gated ring: required (named at creation: lossless) or untethered (lossy)."""

    @classmethod
    def attach(cls, str instance, str name, dtype, str reader, str start="latest",
               capacity=None, slot_size=None, expect_required=None):
        """Attach as ``reader``; a required reader resumes from its stored cursor (nothing lost).

        Whether the reader is required is decided by its name (named at creation). Pass
        ``expect_required=True`` to fail loudly if the name is not a required reader (a typo
        would otherwise make a lossless consumer silently lossy), or False for the converse.
        """
        S = _segmod()
        seg = S.attach(instance, name, S.Kind.GATED, dtype, slot_size, capacity)
        cdef GatedReader r = cls.__new__(cls)
        try:
            r._bind(seg, dtype)
            r._init_reader(reader, start)
        except BaseException:
            seg.close()
            raise
        if expect_required is not None and bool(expect_required) != r._required:
            r.close()
            what = "is not a required" if expect_required else "is a required"
            raise S.ShmError(f"{seg.posix_name}: reader {reader!r} {what} reader of this ring")
        return r


# --------------------------------------------------------------------------- seqlock table

cdef class SeqlockTable(_Shm):
    """Rows of latest values; one writer per row, any number of readers, nobody waits on a reader."""

    cdef _init_table(self):
        self._claims = self._base + HEADER_SIZE

    @classmethod
    def create(cls, str instance, str name, dtype, int rows, slot_size=None):
        """Create the table (or take it over if its creator is dead; rows keep their values)."""
        S = _segmod()
        seg = S.create(instance, name, S.Kind.SEQLOCK, dtype, rows, slot_size)
        return cls._wrap(seg, dtype)

    @classmethod
    def attach(cls, str instance, str name, dtype, rows=None, slot_size=None):
        """Attach to an existing table (SegmentMismatch naming the field on a layout difference)."""
        S = _segmod()
        seg = S.attach(instance, name, S.Kind.SEQLOCK, dtype, slot_size, rows)
        return cls._wrap(seg, dtype)

    @classmethod
    def create_or_attach(cls, str instance, str name, dtype, int rows, slot_size=None):
        """For tables with several row-writers (one per row): create if absent, else attach."""
        S = _segmod()
        seg = S.create_or_attach(instance, name, S.Kind.SEQLOCK, dtype, rows, slot_size)
        return cls._wrap(seg, dtype)

    @classmethod
    def _wrap(cls, seg, dtype):
        cdef SeqlockTable t = cls.__new__(cls)
        try:
            t._bind(seg, dtype)
            t._init_table()
        except BaseException:
            seg.close()
            raise
        return t

    @property
    def rows(self) -> int:
        return self._capacity

    cdef uint64_t version_of(self, uint64_t row) noexcept nogil:
        return mm_load_acquire_u64(self._data + row * self._slot_size)

    cdef int write_ptr(self, uint64_t row, const void* rec) noexcept nogil:
        """Write one row (0 ok, -1 row out of range). Only that row's single writer may call it."""
        if row >= self._capacity:
            return -1
        cdef char* p = self._data + row * self._slot_size
        cdef uint64_t v = mm_load_relaxed_u64(p)
        if v & 1:
            v += 1      # a writer died mid-write: resume from the next even version
        mm_store_relaxed_u64(p, v + 1)
        # Orders the odd version before the payload stores (see _write_slot).
        mm_fence_release()
        memcpy(p + 8, <const char*>rec + 8, self._rec_size - 8)
        # Even version with release: readers that acquire it see the whole payload.
        mm_store_release_u64(p, v + 2)
        return 0

    cdef int read_ptr(self, uint64_t row, void* out, int64_t timeout_ns) noexcept nogil:
        """Consistent copy of a row into ``out``: 1 ok, 0 still busy after ``timeout_ns``, -1 bad row."""
        if row >= self._capacity:
            return -1
        cdef char* p = self._data + row * self._slot_size
        cdef uint64_t v1, v2
        cdef int64_t deadline = 0
        cdef uint64_t spins = 0
        while True:
            v1 = mm_load_acquire_u64(p)
            if not (v1 & 1):
                memcpy(<char*>out + 8, p + 8, self._rec_size - 8)
                mm_fence_acquire()
                v2 = mm_load_relaxed_u64(p)
                if v1 == v2:
                    (<uint64_t*>out)[0] = v1
                    return 1
            spins += 1
            if spins < 256:
                mm_cpu_relax()
                continue
            # The writer may be descheduled mid-write (shared cores): yield, bounded in time.
            if deadline == 0:
                deadline = mm_monotonic_ns() + timeout_ns
            elif mm_monotonic_ns() > deadline:
                return 0
            sched_yield()

    def write(self, uint64_t row, rec) -> None:
        """Write ``rec`` (np.void, 1-element array or bytes) to ``row``; its ``version`` field is ignored."""
        cdef const char* p = self._rec_ptr(rec)
        if row >= self._capacity:
            raise IndexError(f"row {row} out of range (table has {self._capacity} rows)")
        self.write_ptr(row, p)

    def read(self, uint64_t row, double timeout=0.1):
        """A consistent copy of ``row`` as an np.void; SeqlockBusy if no stable version within ``timeout`` s."""
        if self._base == NULL:
            self._check_open()
        cdef int r = self.read_ptr(row, self._scratch_ptr, <int64_t>(timeout * 1e9))
        if r == 1:
            return PyArray_Scalar(self._scratch_ptr, self.dtype, NULL)
        self._read_error(row, r)

    def read_into(self, uint64_t row, out, double timeout=0.1) -> int:
        """Copy ``row`` into ``out`` (1-element array or bytearray); returns the version read."""
        _check_out(out)
        cdef char* p = <char*>self._rec_ptr(out)
        cdef int r = self.read_ptr(row, p, <int64_t>(timeout * 1e9))
        if r == 1:
            return (<uint64_t*>p)[0]
        self._read_error(row, r)

    def read_all(self, out=None, double timeout=0.1):
        """Every row, each consistent on its own, into ``out`` (or a new array)."""
        self._check_open()
        if out is None:
            out = np.zeros(self._capacity, dtype=self.dtype)
        cdef cnp.ndarray a = self._batch_array(out, True)
        if <uint64_t>cnp.PyArray_DIM(a, 0) < self._capacity:
            raise ValueError(f"output has {cnp.PyArray_DIM(a, 0)} rows, table has {self._capacity}")
        cdef char* p = <char*>cnp.PyArray_DATA(a)
        cdef uint64_t stride = cnp.PyArray_STRIDE(a, 0)
        cdef uint64_t i
        cdef int r
        for i in range(self._capacity):
            with nogil:
                r = self.read_ptr(i, p + i * stride, <int64_t>(timeout * 1e9))
            if r != 1:
                self._read_error(i, r)
        return out

    def write_batch(self, uint64_t first_row, arr) -> None:
        """Write consecutive rows from ``first_row`` (each row its own seqlock write)."""
        self._check_open()
        cdef cnp.ndarray a = self._batch_array(arr, False)
        cdef uint64_t n = cnp.PyArray_DIM(a, 0)
        if first_row + n > self._capacity:
            raise IndexError(f"rows {first_row}..{first_row + n - 1} out of range ({self._capacity} rows)")
        cdef const char* p = <const char*>cnp.PyArray_DATA(a)
        cdef uint64_t stride = cnp.PyArray_STRIDE(a, 0)
        cdef uint64_t i
        with nogil:
            for i in range(n):
                self.write_ptr(first_row + i, p + i * stride)

    def version(self, uint64_t row) -> int:
        """The row's current version (odd while being written; 0 if never written)."""
        self._check_open()
        if row >= self._capacity:
            raise IndexError(f"row {row} out of range (table has {self._capacity} rows)")
        return self.version_of(row)

    def _read_error(self, uint64_t row, int r):
        if r == -1:
            raise IndexError(f"row {row} out of range (table has {self._capacity} rows)")
        raise _segmod().SeqlockBusy(
            f"{self.segment.posix_name}: row {row} stayed busy (version {self.version_of(row)} odd or "
            "changing) past the timeout; its writer may have died mid-write")

    # ---- row claims (tables with several row-writers)
    def claim_row(self, key=None, bint reclaim_dead=True) -> int:
        """Claim a free row for ``key`` (default: this pid) by CAS; returns its index.

        Idempotent: a row already held by ``key`` is returned again. With ``reclaim_dead``,
        a row held by a pid that no longer exists is taken over (keys are pids then).
        """
        self._check_open()
        S = _segmod()
        cdef int64_t k = os.getpid() if key is None else key
        if k <= 0:
            raise ValueError(f"claim key must be a positive integer, got {k}")
        cdef uint64_t i
        cdef int64_t held
        for i in range(self._capacity):
            if (<int64_t*>(self._claims + i * 8))[0] == k:
                return i
        for i in range(self._capacity):
            held = <int64_t>mm_load_acquire_u64(self._claims + i * 8)
            if held == 0 and mm_cas_i64(self._claims + i * 8, 0, k):
                return i
        if reclaim_dead:
            for i in range(self._capacity):
                held = <int64_t>mm_load_acquire_u64(self._claims + i * 8)
                if held > 0 and not S.pid_alive(held) and mm_cas_i64(self._claims + i * 8, held, k):
                    return i
        raise S.ShmError(f"{self.segment.posix_name}: no free row to claim ({self._capacity} rows in use)")

    def release_row(self, uint64_t row, key=None) -> bool:
        """Release ``row`` if held by ``key`` (default: this pid); True if released."""
        self._check_open()
        if row >= self._capacity:
            raise IndexError(f"row {row} out of range (table has {self._capacity} rows)")
        cdef int64_t k = os.getpid() if key is None else key
        return mm_cas_i64(self._claims + row * 8, k, 0) != 0

    def claims(self) -> list:
        """The claim key of every row (0 = free)."""
        self._check_open()
        return [<int64_t>mm_load_acquire_u64(self._claims + i * 8) for i in range(self._capacity)]

    def heartbeat(self) -> None:
        """Table-creator heartbeat in the header (row-writers heartbeat in their rows)."""
        self._check_open()
        cdef uint64_t c = mm_load_relaxed_u64(self._base + OFF_HEARTBEAT_COUNT) + 1
        mm_store_relaxed_u64(self._base + OFF_HEARTBEAT_MONO, <uint64_t>mm_monotonic_ns())
        mm_store_release_u64(self._base + OFF_HEARTBEAT_COUNT, c)

    def unlink(self) -> None:
        """Remove the segment name from /dev/shm (works after close)."""
        _unlink(self.posix_name)
