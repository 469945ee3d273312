"""The order journal: SQLite (WAL) tables of orders, order events and fills.

Written by the recorder (``procs/recorder.py``) from the ``orders`` gated ring; read by
`mmshm orders` and by anyone with ``sqlite3``. See :mod:`mmshm.journal.schema` for the
tables, :mod:`mmshm.journal.writer` for idempotent batch inserts and
:mod:`mmshm.journal.queries` for "what happened to order X".
"""
from __future__ import annotations

from mmshm.journal.capture import MdCaptureWriter, read_md_capture
from mmshm.journal.queries import last_orders, order_report, totals
from mmshm.journal.schema import SCHEMA_VERSION, JournalError, open_journal, u64_from_sql, u64_to_sql
from mmshm.journal.writer import BatchStats, JournalWriter

__all__ = [
    "SCHEMA_VERSION", "BatchStats", "JournalError", "JournalWriter", "MdCaptureWriter", "last_orders",
    "open_journal", "order_report", "read_md_capture", "totals", "u64_from_sql", "u64_to_sql",
]
