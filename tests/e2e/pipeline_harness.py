"""`mmshm up --json` as a child of a test, plus what the end-to-end tests read: the
simulated venue's `/_control/state` (its URL comes from the supervisor's `venue` event),
the control table (risk's position and effective limits), the journal.

Every child is started through the `spawn` fixture (own process group, killed at
teardown even on failure) and the instance's segments are removed by the `instance`
fixture, so a failing test leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

from mmshm.records import CONTROL_ROW
from mmshm.shm import SeqlockTable
from mmshm.shm.segment import ShmError
from procutil import UpChild


class Up(UpChild):
    """`mmshm up --profile ci --json` for one test instance, and what the end-to-end tests read."""

    event_timeout = 30.0

    def __init__(self, spawn, instance: str, tmp: Path, *extra: str) -> None:
        super().__init__(spawn, instance, tmp, "--status-interval", "2", *extra)
        self.control_url = ""

    def start(self, timeout: float = 60.0) -> None:
        """Wait for the venue's URLs and every role ready (the exporter is the last one)."""
        venue = self.wait_event("venue", timeout=timeout)
        self.control_url = venue["urls"]["control"]
        self.wait_event("ready", role="exporter", timeout=timeout)

    def pid(self, role: str) -> int:
        return self.events("ready", role=role)[-1]["pid"]

    # ------------------------------------------------------------------ the venue's view
    def venue_state(self) -> dict:
        """The default account's open orders and positions at the simulated venue."""
        with urllib.request.urlopen(self.control_url + "/state", timeout=5) as resp:
            return json.loads(resp.read())["default"]

    def open_orders(self) -> int:
        return len(self.venue_state()["open_orders"])

    def venue_position(self, symbol: str = "BTCUSDT") -> int:
        pos = self.venue_state()["positions"].get(symbol)
        return int(pos["qty_lots"]) if pos else 0

    def venue_trades(self, symbol: str = "BTCUSDT") -> list[dict]:
        from mmshm.venues.sim.testclient import SimClient

        rest = self.events("venue")[-1]["urls"]["rest"]
        code, body = SimClient(rest).request("GET", "/fapi/v1/userTrades", {"symbol": symbol, "limit": 1000},
                                             signed=True)
        assert code == 200, body
        return body

    # ------------------------------------------------------------------ our view
    def control_row(self, i: int = 1):
        """CONTROL_ROW ``i`` (1 = instrument 0: risk's position, effective limits), or None."""
        try:
            t = SeqlockTable.attach(self.instance, "control", CONTROL_ROW)
        except ShmError:
            return None
        try:
            return t.read(i)
        except ShmError:
            return None
        finally:
            t.close()

    def journal(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.tmp / self.instance / 'journal.sqlite'}?mode=ro", uri=True)

    def cli(self, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
        env = dict(os.environ, MMSHM_INSTANCE=self.instance, MMSHM_IDLE="sleep")
        return subprocess.run([sys.executable, "-m", "mmshm", *args, "--instance", self.instance],
                              env=env, capture_output=True, timeout=timeout)

    def children(self) -> list[int]:
        return [e["pid"] for e in self.events("started")]

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C: SIGINT to `mmshm up`; its exit code."""
        import signal

        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)
