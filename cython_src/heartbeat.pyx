# cython: boundscheck=False, wraparound=False
"""The per-duty-cycle heartbeat write into a process-table row, in C.

Every mmshm process rewrites its ``PROCESS_ROW`` on every duty cycle. From Python that
is ~0.8 µs (four numpy item stores plus a seqlock write); here it is four stores into
the process's local copy of the row and one ``SeqlockTable.write_ptr`` (the table's own
seqlock protocol), for a busy-spinning loop that must not spend its budget on
bookkeeping. ``mmshm.agent.proctable.ProcessSlot`` owns the local row and uses this.
"""
from libc.stdint cimport uint64_t, int64_t
cimport numpy as cnp
from mmshm._native.shm cimport SeqlockTable

import numpy as np

cnp.import_array()


cdef class RowHeartbeat:
    """Writes ``rec`` (a 1-element array of the table's dtype) to ``row`` of ``table``.

    ``beat`` stores the heartbeat time, bumps the heartbeat count and stores the work and
    idle totals at the given byte offsets of ``rec``, then publishes the whole row.
    """

    cdef SeqlockTable table
    cdef uint64_t row
    cdef object rec
    cdef char* p
    cdef Py_ssize_t off_mono, off_count, off_work, off_idle

    def __init__(self, SeqlockTable table, uint64_t row, cnp.ndarray rec,
                 Py_ssize_t off_mono, Py_ssize_t off_count, Py_ssize_t off_work, Py_ssize_t off_idle):
        if row >= <uint64_t>table.rows:
            raise IndexError(f"row {row} out of range (table has {table.rows} rows)")
        if rec.ndim != 1 or rec.shape[0] != 1 or not rec.flags["C_CONTIGUOUS"] or not rec.flags["WRITEABLE"]:
            raise ValueError("rec must be a writable, contiguous 1-element array")
        if rec.dtype != table.dtype:
            raise ValueError(f"rec dtype {rec.dtype} is not the table's {table.dtype}")
        for off in (off_mono, off_count, off_work, off_idle):
            if off < 0 or off % 8 or off + 8 > rec.dtype.itemsize:
                raise ValueError(f"field offset {off} is not an aligned 8-byte field of the record")
        self.table = table
        self.row = row
        self.rec = rec
        self.p = <char*>cnp.PyArray_DATA(rec)
        self.off_mono, self.off_count, self.off_work, self.off_idle = off_mono, off_count, off_work, off_idle

    cpdef beat(self, int64_t now_mono, uint64_t work_count, uint64_t idle_cycles):
        """Heartbeat: time, count + 1, work and idle totals; publish the row."""
        if self.table._base == NULL:
            self.table._check_open()
        (<int64_t*>(self.p + self.off_mono))[0] = now_mono
        (<uint64_t*>(self.p + self.off_count))[0] += 1
        (<uint64_t*>(self.p + self.off_work))[0] = work_count
        (<uint64_t*>(self.p + self.off_idle))[0] = idle_cycles
        self.table.write_ptr(self.row, self.p)

    cpdef publish(self, int64_t now_mono):
        """Heartbeat time and count + 1 only (after a state change), then publish."""
        if self.table._base == NULL:
            self.table._check_open()
        (<int64_t*>(self.p + self.off_mono))[0] = now_mono
        (<uint64_t*>(self.p + self.off_count))[0] += 1
        self.table.write_ptr(self.row, self.p)
