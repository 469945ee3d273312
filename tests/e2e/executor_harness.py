"""A rig for the executor PROCESS against the simulated venue, over real sockets.

The test plays the other roles through their real segments: the feed (writes the
``instruments`` table from the venue's exchangeInfo), the quoter (writes TARGET_ROW rows
into a ``targets`` table it creates), risk (writes CONTROL_ROW rows into ``control`` and
refreshes their heartbeat from a thread, as procs/risk.py does) and the two required
readers of ``orders`` (``risk`` and ``recorder``, drained from a thread). The venue is
``mmshm venue --market none`` in a child process; the executor is
``python -m mmshm.procs.executor`` in another. Shared by tests/integration and tests/e2e.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np

from mmshm.agent.counters import named_counters
from mmshm.agent.doorbell import BellRinger
from mmshm.agent.proctable import ProcessTable
from mmshm.instruments import InstrumentTable
from mmshm.records import CONTROL_ROW, ORDER_EVENT, TARGET_ROW, Mode, OrderEventKind as K, ProcState
from mmshm.shm import GatedReader, SeqlockTable, SegmentNotFound, ShmError
from conftest import PYTHON

SYMBOL = "BTCUSDT"


def wait_for(pred: Callable[[], object], timeout: float, what: str, procs=()) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        for p in procs:
            if p is not None and p.poll() is not None:
                err = p.stderr.read().decode(errors="replace")[-3000:] if p.stderr else ""
                log = getattr(p, "log_path", None)
                if log is not None:
                    err += Path(log).read_text(errors="replace")[-3000:]
                raise AssertionError(f"{what}: child {p.args[:4]} exited {p.returncode}: {err}")
        time.sleep(0.02)
    logs = "".join(Path(p.log_path).read_text(errors="replace")[-3000:] for p in procs
                   if p is not None and getattr(p, "log_path", None))
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")


#: Executor settings that make it follow every target exactly (no price tolerance, no requote
#: budget), so a scenario's target changes turn into requests one for one. Set only where the
#: config has them (they are newer than some of these tests).
EXACT_QUOTING = {"price_tolerance_ticks": "0", "size_tolerance_lots": "0", "price_tolerance_bp": "0",
                 "price_tolerance_distance": "0", "requote_rate_per_s": "0"}


def exact_quoting_args() -> list[str]:
    import dataclasses

    from mmshm.config import ExecutorConfig

    known = {f.name for f in dataclasses.fields(ExecutorConfig)}
    out: list[str] = []
    for k, v in EXACT_QUOTING.items():
        if k in known:
            out += ["--set", f"executor.{k}={v}"]
    return out


class Rig:
    """Venue + executor process + the segments the test writes/reads; see the module docstring."""

    def __init__(self, spawn, instance: str, log_dir: Path, *, venue_args: tuple[str, ...] = (),
                 control_rows: int = 9, target_rows: int = 8) -> None:
        self.spawn = spawn
        self.log_dir = log_dir
        self.executor_logs: list[Path] = []
        self.instance = instance
        self.venue = spawn([PYTHON, "-m", "mmshm", "venue", "--port", "0", "--market", "none", *venue_args])
        line = self.venue.stdout.readline()
        if not line:
            raise AssertionError(f"venue did not start: {self.venue.stderr.read().decode()[-2000:]}")
        self.venue_info = json.loads(line)
        self.port = int(self.venue_info["port"])
        info = self.get("/fapi/v1/exchangeInfo")
        self.table = InstrumentTable.from_binance_exchange_info(info, [SYMBOL], maker_fee_ppm=200, taker_fee_ppm=500)
        self.spec = self.table[0]
        self.instruments = self.table.write_segment(instance)
        self.targets = SeqlockTable.create(instance, "targets", TARGET_ROW, target_rows)
        self.control = SeqlockTable.create(instance, "control", CONTROL_ROW, control_rows)
        self._ctl = np.zeros(control_rows, CONTROL_ROW)
        self._ctl_lock = threading.Lock()
        # rung after each target / control change, as the quoter and risk do (idle.bells)
        self.executor_bell = BellRinger(instance, "executor")
        self.set_control(Mode.NORMAL, max_position=1000, max_order_qty=100)
        self.events: list[np.void] = []
        self._events_lock = threading.Lock()
        self._stop = threading.Event()
        self._control_beat = True
        self.readers_paused = threading.Event()     # set: risk/recorder stop reading (ring fills up)
        self._threads = [threading.Thread(target=self._risk_loop, daemon=True),
                         threading.Thread(target=self._orders_loop, daemon=True)]
        for t in self._threads:
            t.start()
        self.executor = None
        self._version = 0

    # ------------------------------------------------------------------ venue
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> object:
        with urllib.request.urlopen(self.url(path), timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict | None = None, method: str = "POST") -> object:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None

    def venue_state(self) -> dict:
        return self.get("/_control/state")["default"]

    def open_orders(self) -> list[dict]:
        return self.venue_state()["open_orders"]

    def venue_position(self) -> int:
        p = self.venue_state()["positions"].get(SYMBOL)
        return int(p["qty_lots"]) if p else 0

    def depth(self, bid: str = "50000.0", ask: str = "50010.0", qty: str = "1") -> None:
        self.post("/_control/market/depth", {"symbol": SYMBOL, "bids": [[bid, qty]], "asks": [[ask, qty]]})

    def trade(self, price: str, qty: str, side: str) -> None:
        self.post("/_control/market/trade", {"symbol": SYMBOL, "price": price, "qty": qty, "side": side})

    def faults(self, spec: dict) -> dict:
        return self.post("/_control/faults", spec)

    def clear_faults(self) -> None:
        self.post("/_control/faults", None, method="DELETE")

    def stats(self) -> dict:
        return self.get("/_control/stats")

    def fault_state(self) -> dict:
        """What is armed, plus drops per channel and the venue-side reconnect times (ms)."""
        return self.get("/_control/faults")

    # ------------------------------------------------------------------ risk (control)
    def set_control(self, mode: Mode, *, max_position: int | None = None, max_order_qty: int | None = None,
                    flags: int | None = None, beat: bool | None = None) -> None:
        with self._ctl_lock:
            for r in range(len(self._ctl)):
                row = self._ctl[r]
                row["mode"] = int(mode)
                row["limit_scale_bp"] = 10_000
                if r > 0:
                    if max_position is not None:
                        row["max_position"] = max_position
                    if max_order_qty is not None:
                        row["max_order_qty"] = max_order_qty
                if flags is not None:
                    row["flags"] = flags
            if beat is not None:
                self._control_beat = beat
            self._write_control()
        self.executor_bell.ring()

    def _write_control(self) -> None:
        now = time.monotonic_ns()
        for r in range(len(self._ctl)):
            self._ctl[r]["heartbeat_mono"] = now
            self.control.write(r, self._ctl[r])

    def _risk_loop(self) -> None:
        while not self._stop.wait(0.05):
            with self._ctl_lock:
                if self._control_beat:
                    self._write_control()

    # ------------------------------------------------------------------ quoter (targets)
    def target(self, bids=(), asks=(), *, pull: bool = False, md_seq: int | None = None) -> None:
        """Write instrument 0's TARGET_ROW (prices in ticks, sizes in lots)."""
        self._version += 1
        r = np.zeros(1, TARGET_ROW)[0]
        r["instrument"] = 0
        r["md_seq"] = md_seq if md_seq is not None else self._version
        r["flags"] = int(pull)
        r["quote_mono"] = time.monotonic_ns()
        r["n_bids"], r["n_asks"] = len(bids), len(asks)
        for i, (p, q) in enumerate(bids):
            r["bid_px"][i], r["bid_qty"][i] = p, q
        for i, (p, q) in enumerate(asks):
            r["ask_px"][i], r["ask_qty"][i] = p, q
        self.targets.write(0, r)
        self.executor_bell.ring()

    def ticks(self, price: str) -> int:
        return self.spec.price_to_ticks(price)

    def lots(self, qty: str) -> int:
        return self.spec.qty_to_lots(qty)

    # ------------------------------------------------------------------ orders ring (risk + recorder)
    def _orders_loop(self) -> None:
        readers = None
        buf = np.zeros(256, ORDER_EVENT)
        while not self._stop.is_set():
            if readers is None:
                try:
                    readers = [GatedReader.attach(self.instance, "orders", ORDER_EVENT, reader=name, start="earliest")
                               for name in ("risk", "recorder")]
                except (SegmentNotFound, ShmError):
                    time.sleep(0.02)
                    continue
            if self.readers_paused.is_set():
                time.sleep(0.005)
                continue
            got = 0
            for k, rd in enumerate(readers):
                n = rd.poll_batch(buf)
                got += n
                if k == 0 and n:
                    with self._events_lock:
                        self.events.extend(buf[:n].copy())
            if not got:
                time.sleep(0.005)
        for rd in readers or ():
            rd.close()

    def ring_events(self, kind: K | None = None) -> list[np.void]:
        with self._events_lock:
            evs = list(self.events)
        return evs if kind is None else [e for e in evs if int(e["kind"]) == kind]

    def ring_position(self) -> int:
        """Position from the FILL events in the ring (BUY +, SELL -)."""
        pos = 0
        for e in self.ring_events(K.FILL):
            pos += int(e["fill_qty"]) if int(e["side"]) == 1 else -int(e["fill_qty"])
        return pos

    def ring_fees(self) -> int:
        return sum(int(e["fee"]) for e in self.ring_events(K.FILL))

    # ------------------------------------------------------------------ the executor process
    def start_executor(self, *extra: str, wait_ready: bool = True, timeout: float = 20.0):
        argv = [PYTHON, "-m", "mmshm.procs.executor", "--profile", "ci",
                "--set", f"venue.sim_port={self.port}", "--set", "executor.pending_timeout_ms=2000",
                "--set", "executor.request_timeout_s=2.0", "--set", "executor.control_stale_ms=1000",
                "--set", "logging.level=INFO", *exact_quoting_args(), *extra]
        self.log_path = self.log_dir / f"executor-{len(self.executor_logs)}.log"
        self.executor_logs.append(self.log_path)
        out = open(self.log_path, "wb")
        try:
            self.executor = self.spawn(argv, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        self.executor.log_path = self.log_path
        if wait_ready:
            self.wait_running(timeout)
        return self.executor

    def executor_row(self):
        try:
            table = ProcessTable.attach(self.instance)
        except SegmentNotFound:
            return None
        try:
            for row in table.read_all():
                if row["role"] == b"executor" and int(row["pid"]) == self.executor.pid:
                    return row.copy()
        finally:
            table.close()
        return None

    def counters(self) -> dict[str, int]:
        row = self.executor_row()
        return named_counters("executor", row["counters"]) if row is not None else {}

    def wait_running(self, timeout: float = 20.0) -> None:
        wait_for(lambda: (r := self.executor_row()) is not None and int(r["state"]) == ProcState.RUNNING,
                 timeout, "executor RUNNING", procs=[self.executor])

    def healthy(self, max_heartbeat_age_s: float = 5.0) -> bool:
        """The executor is alive, RUNNING and beating (CLOCK_MONOTONIC is system-wide)."""
        row = self.executor_row()
        return (self.executor.poll() is None and row is not None and int(row["state"]) == ProcState.RUNNING
                and time.monotonic_ns() - int(row["heartbeat_mono"]) < max_heartbeat_age_s * 1e9)

    def live_orders_at_venue(self, side: str | None = None) -> list[dict]:
        return [o for o in self.open_orders() if side is None or o["side"] == side]

    def executor_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.executor_logs)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.executor_bell.close()
        for seg in (self.targets, self.control, self.instruments):
            try:
                seg.close()
            except Exception:  # noqa: BLE001
                pass
