# cython: boundscheck=False, wraparound=False, cdivision=True
"""Read a gated ring without releasing the slots until the reader says they are durable.

``GatedReader.poll_batch`` publishes the reader's cursor as soon as it copies records
out: right for risk (state is rebuilt from the ring), wrong for the journal. If the
recorder is SIGKILLed between copying a batch and committing it to SQLite, the stored
cursor already points past the batch and the writer may reuse those slots: the batch
would be lost. So the recorder reads with :func:`read_pending` (copies records and moves
only the reader's private cursor) and calls :func:`commit` after the SQLite COMMIT,
which publishes the cursor with release (the writer may then reuse the slots).

A crash between the SQLite COMMIT and :func:`commit` re-reads the batch on restart;
the journal's unique ring sequence makes that re-read a no-op. Everything else (slot
protocol, epoch handling, resync) is the ring's own code from ``mmshm._native.shm``.
"""
from libc.stdint cimport uint64_t
cimport numpy as cnp
from atomics cimport mm_load_acquire_u64, mm_store_relaxed_u64
from mmshm._native.shm cimport GatedReader

cnp.import_array()

cdef enum:
    OFF_EPOCH = 64
    OFF_CURSOR = 272
    R_CURSOR = 16      # mmshm.shm.segment.ROFF["cursor"] (checked by tests/unit/test_journal.py)
    R_POLLED = 56      # mmshm.shm.segment.ROFF["polled"]

#: Offsets compiled in, for the layout test.
LAYOUT = {"OFF_EPOCH": OFF_EPOCH, "OFF_CURSOR": OFF_CURSOR, "cursor": R_CURSOR, "polled": R_POLLED}


def read_pending(GatedReader reader, out) -> int:
    """Copy up to ``len(out)`` next records into ``out`` without publishing the cursor.

    Returns how many were copied. The records stay reserved in the ring (the writer
    gates on the published cursor) until :func:`commit`. Call ``commit`` before the
    next ``read_pending`` or the reservation only grows (at most the ring's capacity).
    """
    reader._check_open()
    cdef cnp.ndarray a = reader._batch_array(out, True)
    cdef uint64_t max_n = cnp.PyArray_DIM(a, 0)
    cdef uint64_t stride = cnp.PyArray_STRIDE(a, 0)
    cdef char* p = <char*>cnp.PyArray_DATA(a)
    cdef uint64_t k = 0
    cdef uint64_t e
    cdef int r, tries = 0
    if max_n == 0:
        return 0
    with nogil:
        e = mm_load_acquire_u64(reader._base + OFF_EPOCH)
        if e != reader._epoch:
            reader._on_epoch(e)
        while k < max_n:
            r = reader._try_one(p + k * stride)
            if r == 1:
                k += 1
            elif r == 0:
                break
            else:
                # Lapped: only an untethered reader can be; the ring counted the loss.
                tries += 1
                if tries > 64:
                    break
    return k


def commit(GatedReader reader, uint64_t n) -> int:
    """Publish the private cursor (release): the ``n`` records read since the last commit
    are durable and their slots may be reused. Returns the published cursor."""
    reader._check_open()
    with nogil:
        reader._polled += n
        reader._commit_cursor()
        mm_store_relaxed_u64(reader._rslot + R_POLLED, reader._polled)
        reader.heartbeat_c()
    return reader._cursor


def published_cursor(GatedReader reader) -> int:
    """The cursor stored in the reader's slot (what a restart resumes from)."""
    reader._check_open()
    return mm_load_acquire_u64(reader._rslot + R_CURSOR)


def writer_cursor(GatedReader reader) -> int:
    """The next sequence the writer will publish."""
    reader._check_open()
    return mm_load_acquire_u64(reader._base + OFF_CURSOR)
