# cython: boundscheck=False, wraparound=False, cdivision=True
"""Recording into a stage's latency histogram without Python objects (nogil).

The row layout is ``mmshm.monitor.latency.LATENCY_ROW``; this class gets the byte
offsets of its fields from that dtype at construction, so the layout is declared once.
Bucket of a sample: 0 for < 1 µs, else the bit length of the whole microseconds
(``[2**(i-1), 2**i)`` µs → bucket i), capped at the last (overflow) bucket.
"""
from libc.stdint cimport uint64_t, int64_t
cimport numpy as cnp
from mmshm._native.shm cimport SeqlockTable

cnp.import_array()


cdef inline int _bucket(int64_t ns, int n) noexcept nogil:
    cdef uint64_t us
    cdef int b = 0
    if ns < 1000:
        return 0
    us = <uint64_t>(ns // 1000)
    while us:
        b += 1
        us >>= 1
    return b if b < n else n - 1


def bucket_index(int64_t ns, int n_buckets) -> int:
    """The bucket of ``ns`` (for tests comparing with the Python definition)."""
    return _bucket(ns, n_buckets)


cdef class LatencyHist:
    """One stage's histogram: ``record`` into the local row copy, ``publish`` to the table."""

    def __init__(self, SeqlockTable table, uint64_t row, cnp.ndarray rec):
        if row >= <uint64_t>table.rows:
            raise IndexError(f"row {row} out of range (table has {table.rows} rows)")
        if rec.ndim != 1 or rec.shape[0] != 1 or not rec.flags["C_CONTIGUOUS"] or not rec.flags["WRITEABLE"]:
            raise ValueError("rec must be a writable, contiguous 1-element array")
        if rec.dtype != table.dtype:
            raise ValueError(f"rec dtype {rec.dtype} is not the table's {table.dtype}")
        f = rec.dtype.fields
        for name in ("count", "sum_ns", "max_ns", "updated_mono", "buckets"):
            if name not in f or f[name][1] % 8:
                raise ValueError(f"record has no aligned 8-byte field {name!r}")
        self.table = table
        self.row = row
        self.rec = rec
        self.p = <char*>cnp.PyArray_DATA(rec)
        self.buckets = <uint64_t*>(self.p + <Py_ssize_t>f["buckets"][1])
        self.n_buckets = f["buckets"][0].shape[0]
        self.count = <uint64_t*>(self.p + <Py_ssize_t>f["count"][1])
        self.sum_ns = <uint64_t*>(self.p + <Py_ssize_t>f["sum_ns"][1])
        self.max_ns = <int64_t*>(self.p + <Py_ssize_t>f["max_ns"][1])
        self.updated_mono = <int64_t*>(self.p + <Py_ssize_t>f["updated_mono"][1])

    cdef void record(self, int64_t ns) noexcept nogil:
        self.buckets[_bucket(ns, self.n_buckets)] += 1
        self.count[0] += 1
        if ns > 0:
            self.sum_ns[0] += <uint64_t>ns
            if ns > self.max_ns[0]:
                self.max_ns[0] = ns

    cdef void publish(self, int64_t now_mono) noexcept nogil:
        self.updated_mono[0] = now_mono
        self.table.write_ptr(self.row, self.p)

    # ---- Python API (the same work, callable from Python)
    def record_ns(self, int64_t ns) -> None:
        """Add one sample (ns) to the local copy."""
        self.record(ns)

    def publish_now(self, int64_t now_mono) -> None:
        """Write the local copy to the table row."""
        if self.table._base == NULL:
            self.table._check_open()
        self.publish(now_mono)
