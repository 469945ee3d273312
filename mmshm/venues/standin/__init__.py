"""Loopback stand-in for Binance USD-M market data (WebSocket + REST) with fault injection.

Use in-process (``async with StandinServer(source) as s``), from synchronous code in a
background thread (``with StandinThread(source) as s``), or as a subprocess
(``python -m mmshm.venues.standin --capture FILE --port 0``, which prints its URLs as one
JSON line). Binds 127.0.0.1 on ephemeral ports by default.
"""
from mmshm.venues.standin.server import VALID_LIMITS, StandinServer
from mmshm.venues.standin.sources import CaptureSource, Frame, SyntheticSource, canonical_stream, split_combined
from mmshm.venues.standin.thread import StandinThread

__all__ = ["StandinServer", "StandinThread", "CaptureSource", "SyntheticSource", "Frame",
           "canonical_stream", "split_combined", "VALID_LIMITS"]
