"""Structured logging: one JSON object per line, written off the caller's thread, secrets masked.

Why a queue: a process's hot loop may log (rarely), and a write to a slow journald pipe or
a full disk must never stall it. ``logging`` calls only format the message and
``put_nowait`` the record on a bounded queue; a listener thread serialises (orjson) and
writes. When the queue is full the record is dropped and counted (:func:`dropped_records`),
never waited for.

Every line has ``ts`` (UTC ISO-8601, µs), ``ts_ns`` (realtime ns), ``level``, ``logger``,
``role``, ``pid``, ``msg`` and the structured fields passed with ``extra={...}``; an
exception adds ``exc``. Masking: any field whose name looks like a credential (key,
secret, signature, token, password, ...) is shown as ``abcd...wxyz``, and every value
registered with :func:`register_secret` (credentials do this on load) is replaced
wherever it appears in a string.
"""
from __future__ import annotations

import atexit
import datetime as _dt
import logging
import logging.handlers
import os
import queue
import re
import sys
import threading
from typing import IO, Any

import orjson

#: Field names whose values are always masked.
SECRET_FIELD_RE = re.compile(r"(key|secret|signature|token|password|passwd|passphrase|credential|auth)",
                             re.IGNORECASE)

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "_mmshm_exc"}


def mask(value: Any) -> str:
    """``abcd...wxyz`` for long values; short ones reveal nothing (``****``); None -> ``<unset>``."""
    if value is None:
        return "<unset>"
    text = str(value)
    if len(text) >= 12:
        return f"{text[:4]}...{text[-4:]}"
    return "****"


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in a log line from now on."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def _scrub(text: str) -> str:
    if _SECRETS:
        for s in tuple(_SECRETS):
            if s in text:
                text = text.replace(s, mask(s))
    return text


def _clean(name: str, value: Any) -> Any:
    """The value as it may appear in a log line."""
    if SECRET_FIELD_RE.search(name) and value is not None and not isinstance(value, (bool, int, float)):
        return mask(value)
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, dict):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(name, v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _scrub(repr(value)) if not isinstance(value, (bytes, bytearray)) else _scrub(value.hex())


class JsonFormatter(logging.Formatter):
    """LogRecord -> one JSON line (bytes decoded to str for the stream handlers)."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        ts_ns = int(record.created * 1e9)
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="microseconds"),
            "ts_ns": ts_ns,
            "level": record.levelname,
            "logger": record.name,
            "role": self.role,
            "pid": record.process or self.pid,
            "msg": _scrub(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name in _STD_ATTRS or name.startswith("_") or name in out:
                continue
            out[name] = _clean(name, value)
        exc = getattr(record, "_mmshm_exc", None)
        if exc is None and record.exc_info:
            exc = self.formatException(record.exc_info)
        if exc:
            out["exc"] = _scrub(exc)
        if record.stack_info:
            out["stack"] = _scrub(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """QueueHandler that never blocks: a full queue drops the record and counts it."""

    def __init__(self, q: queue.Queue) -> None:
        super().__init__(q)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Freeze what may change after the call (args, exception) but leave the JSON work
        # to the listener thread.
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record._mmshm_exc = logging.Formatter().formatException(record.exc_info)  # type: ignore[attr-defined]
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Listener(logging.handlers.QueueListener):
    """QueueListener whose stop() waits a bounded time: a stuck sink cannot hang exit."""

    STOP_TIMEOUT_S = 5.0

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self.queue.put(self._sentinel, timeout=self.STOP_TIMEOUT_S)
        except queue.Full:
            pass
        self._thread.join(self.STOP_TIMEOUT_S)
        self._thread = None


class _State:
    listener: logging.handlers.QueueListener | None = None
    handler: _DroppingQueueHandler | None = None
    sink: logging.Handler | None = None


def setup_logging(role: str, level: str | int = "INFO", file: str | os.PathLike[str] | None = None,
                  *, stream: IO[str] | None = None, queue_size: int = 10_000) -> logging.Logger:
    """Route every logger of this process into JSON lines, written by a background thread.

    ``file``: append to this path (reopened if logrotate moves it); empty/None writes to
    ``stream`` (default stdout, which journald captures under systemd). Calling again
    replaces the previous setup. Returns the ``mmshm`` logger.
    """
    shutdown_logging()
    if file:
        sink: logging.Handler = logging.handlers.WatchedFileHandler(os.fspath(file), encoding="utf-8")
    else:
        sink = logging.StreamHandler(stream if stream is not None else sys.stdout)
    sink.setFormatter(JsonFormatter(role))
    q: queue.Queue = queue.Queue(maxsize=queue_size)
    handler = _DroppingQueueHandler(q)
    listener = _Listener(q, sink, respect_handler_level=False)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    listener.start()
    _State.listener, _State.handler, _State.sink = listener, handler, sink
    return logging.getLogger("mmshm")


def setup_logging_from_config(role: str, cfg: Any, *, stream: IO[str] | None = None) -> logging.Logger:
    """setup_logging with the ``[logging]`` section of a :class:`mmshm.config.Config`."""
    lc = cfg.logging
    return setup_logging(role, lc.level, lc.file or None, stream=stream, queue_size=lc.queue_size)


def shutdown_logging() -> None:
    """Flush the queue, stop the listener thread and detach the handler (idempotent)."""
    listener, handler, sink = _State.listener, _State.handler, _State.sink
    _State.listener = _State.handler = _State.sink = None
    if handler is not None:
        logging.getLogger().removeHandler(handler)
    if listener is not None:
        listener.stop()  # drains what is queued before returning
    if sink is not None:
        sink.flush()
        if isinstance(sink, logging.FileHandler):
            sink.close()


def dropped_records() -> int:
    """Records dropped because the queue was full, since the last setup_logging."""
    return _State.handler.dropped if _State.handler is not None else 0


atexit.register(shutdown_logging)

__all__ = ["JsonFormatter", "SECRET_FIELD_RE", "dropped_records", "mask", "register_secret",
           "setup_logging", "setup_logging_from_config", "shutdown_logging"]
