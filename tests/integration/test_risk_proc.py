"""The risk PROCESS (procs/risk.py) with real segments and, for the halt path, the real
quoter process: fills from an orders ring the test creates (required readers risk +
recorder) become the position in the control rows; a losing fill stream breaches the
daily-loss limit, risk goes HALT, writes a post-mortem and the quoter pulls its quotes.
Operator paths: SIGUSR1 halt, SIGUSR2 pause toggle, ``commands`` table halt / resume /
pause, the watchdog's HALT flag, and a venue position from a RECONCILE event."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

from mmshm.agent.counters import named_counters
from mmshm.agent.proctable import ProcessTable, VerdictTable
from mmshm.instruments import InstrumentSpec, InstrumentTable
from mmshm.records import (BOOK_ROW, CONTROL_ROW, MARKET_EVENT, ORDER_EVENT, TARGET_ROW, VERDICT_ROW, MdKind,
                           MdStatus, Mode, OrderEventKind, Side)
from mmshm.risk.params import TriggerCode
from mmshm.shm import BroadcastWriter, GatedWriter, SegmentNotFound, SeqlockTable
from mmshm.strategy import CONTROL_FLAG_PAUSED, TARGET_FLAG_PULL

PY = sys.executable
ARGS = ["--set", "venue.name=binance-usdm", "--set", "venue.symbols=BTCUSDT", "--set", "logging.level=WARNING",
        "--set", "risk.max_position_lots=1000", "--set", "risk.max_order_lots=20"]
BID, ASK = 600_000, 600_005          # 60000.0 / 60000.5 (tick 0.1)


class Venue:
    """What the feed and the executor would create: instruments, md, book, orders."""

    def __init__(self, instance: str, orders: bool = True) -> None:
        spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_qty="0.001",
                                            min_notional="5")
        self.instance = instance
        self.instruments = InstrumentTable([spec]).write_segment(instance)
        self.md = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=1 << 10)
        self.book = SeqlockTable.create(instance, "book", BOOK_ROW, 8)
        self.orders = self.open_orders() if orders else None
        self.seq = 0
        self.trade_id = 0

    def open_orders(self) -> GatedWriter:
        self.orders = GatedWriter.create(self.instance, "orders", ORDER_EVENT, capacity=1 << 10,
                                         required=("risk", "recorder"))
        return self.orders

    def top(self, bid: int = BID, ask: int = ASK) -> int:
        self.seq += 1
        now = time.monotonic_ns()
        b = np.zeros(1, BOOK_ROW)
        b["status"], b["n_bids"], b["n_asks"], b["md_seq"], b["publish_mono"] = MdStatus.LIVE, 5, 5, self.seq, now
        b["bid_px"][0, :5] = [bid - i for i in range(5)]
        b["ask_px"][0, :5] = [ask + i for i in range(5)]
        b["bid_qty"][0, :5] = b["ask_qty"][0, :5] = 500
        self.book.write(0, b)
        e = np.zeros(1, MARKET_EVENT)
        e["kind"], e["md_seq"], e["status"], e["publish_mono"] = MdKind.BOOK_TOP, self.seq, MdStatus.LIVE, now
        e["bid_px"], e["ask_px"], e["bid_qty"], e["ask_qty"] = bid, ask, 500, 500
        self.md.publish(e)
        return self.seq

    def fill(self, side: Side, px: int, qty: int, fee: int = 0) -> None:
        self.trade_id += 1
        f = np.zeros(1, ORDER_EVENT)
        f["kind"], f["side"], f["instrument"] = OrderEventKind.FILL, side, 0
        f["fill_px"], f["fill_qty"], f["fee"], f["client_id"], f["trade_id"] = px, qty, fee, 1000 + self.trade_id, \
            self.trade_id
        f["local_ts"], f["event_mono"] = time.time_ns(), time.monotonic_ns()
        assert self.orders.try_publish(f)

    def close(self) -> None:
        for s in (self.instruments, self.md, self.book, self.orders):
            if s is not None:
                s.unlink()
                s.close()


def wait_for(pred, timeout: float = 10.0, what: str = "condition", procs=(), tick=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tick is not None:
            tick()
        v = pred()
        if v:
            return v
        for p in procs:
            if p.poll() is not None:
                _, err = p.communicate(timeout=5)
                pytest.fail(f"{p.args[2]} exited {p.returncode} while waiting for {what}:\n{err.decode()[-3000:]}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def attach(instance: str, name: str, dtype, procs) -> SeqlockTable:
    def get():
        try:
            return SeqlockTable.attach(instance, name, dtype)
        except SegmentNotFound:
            return None
    return wait_for(get, what=f"{name} table", procs=procs)


def row(table: SeqlockTable, i: int, **want):
    """Row ``i`` if every field equals its wanted value (flags: mask=value pairs via ``flags_set``)."""
    r = table.read(i)
    flags_set = want.pop("flags_set", None)
    flags_clear = want.pop("flags_clear", None)
    if any(int(r[k]) != int(v) for k, v in want.items()):
        return None
    if flags_set is not None and not int(r["flags"]) & flags_set:
        return None
    if flags_clear is not None and int(r["flags"]) & flags_clear:
        return None
    return r


def risk_counters(instance: str) -> dict[str, int]:
    table = ProcessTable.attach(instance)
    try:
        for p in table.read_all():
            if bytes(p["role"]).rstrip(b"\0") == b"risk" and int(p["pid"]):
                return named_counters("risk", p["counters"])
    finally:
        table.close()
    return {}


def postmortems(directory) -> list[dict]:
    if not directory.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(directory.glob("halt-*.json"))]


@pytest.mark.timeout(60)
def test_fills_position_daily_loss_halt_and_quoter_pulls(spawn, instance, tmp_path) -> None:
    pm = tmp_path / "pm"
    venue = Venue(instance)
    try:
        venue.top()
        risk = spawn([PY, "-m", "mmshm.procs.risk", *ARGS, "--set", f"risk.postmortem_dir={pm}",
                      "--set", f"state_dir={tmp_path}", "--wait-s", "20"])
        quoter = spawn([PY, "-m", "mmshm.procs.quoter", *ARGS, "--wait-s", "20"])
        procs = (risk, quoter)
        control = attach(instance, "control", CONTROL_ROW, procs)
        targets = attach(instance, "targets", TARGET_ROW, procs)
        tick = venue.top
        wait_for(lambda: row(control, 0, mode=Mode.NORMAL) is not None and row(control, 1, max_position=1000),
                 what="control rows", procs=procs, tick=tick)
        wait_for(lambda: not int(targets.read(0)["flags"]) & TARGET_FLAG_PULL and targets.read(0)["n_bids"] > 0,
                 what="quotes", procs=procs, tick=tick)

        # fills -> risk's position in the control row -> the quoter's size room
        venue.fill(Side.BUY, BID, 10, fee=-1000)
        venue.fill(Side.BUY, BID - 1, 5)
        wait_for(lambda: row(control, 1, position=15), what="position 15", procs=procs, tick=tick)
        venue.fill(Side.SELL, ASK, 15)
        wait_for(lambda: row(control, 1, position=0), what="flat", procs=procs, tick=tick)
        assert row(control, 0, mode=Mode.NORMAL) is not None

        # buy 0.1 BTC at 60000, sell it at 59400: -60 USDT = 0.6% of 10000 >= 0.5%: HALT
        venue.fill(Side.BUY, BID, 100)
        venue.fill(Side.SELL, 594_000, 50)
        venue.fill(Side.SELL, 594_000, 50)
        r = wait_for(lambda: row(control, 0, mode=Mode.HALT), what="HALT", procs=procs, tick=tick)
        assert r["reason"] == TriggerCode.DAILY_LOSS
        assert row(control, 1, mode=Mode.HALT) is not None
        wait_for(lambda: int(targets.read(0)["flags"]) & TARGET_FLAG_PULL and targets.read(0)["n_bids"] == 0,
                 what="quoter pulls on HALT", procs=procs, tick=tick)
        docs = wait_for(lambda: postmortems(pm), what="post-mortem", procs=procs)
        doc = docs[0]
        assert doc["trigger"] == "daily_loss" and doc["value"] >= doc["threshold"] == pytest.approx(0.005)
        assert doc["mode"] == "HALT" and doc["positions"]["BTCUSDT"]["position"] == 0
        assert len(doc["last_fills"]) == 6 and "BTCUSDT" in doc["signals"]
        c = wait_for(lambda: (lambda d: d if d.get("fills") == 6 and d.get("mode") == Mode.HALT else None)(
            risk_counters(instance)), what="risk counters", procs=procs)         # refreshed every 100 ms
        assert c["mode"] == Mode.HALT and c["halt_reason"] == TriggerCode.DAILY_LOSS and c["halts"] == 1
        assert c["pnl_e8"] < -60 * 10**8 + 10**8 and c["daily_pnl_e8"] < 0 and c["position_lots"] == 0

        risk.send_signal(signal.SIGTERM)
        assert risk.wait(timeout=10) == 0
        assert row(control, 0, mode=Mode.HALT) is not None       # left halted
        control.close()
        targets.close()
        assert not os.path.exists(f"/dev/shm/mmshm-{instance}-control")
        wait_for(lambda: int(SeqlockTable.attach(instance, "targets", TARGET_ROW).read(0)["flags"]) & TARGET_FLAG_PULL,
                 timeout=5, what="quoter still pulled", procs=(quoter,))
    finally:
        venue.close()


@pytest.mark.timeout(60)
def test_operator_paths_watchdog_and_reconcile(spawn, instance, tmp_path) -> None:
    pytest.importorskip("mmshm.supervisor.commands")
    from mmshm.records import CommandKind
    from mmshm.supervisor.commands import send_command

    pm = tmp_path / "pm"
    venue = Venue(instance, orders=False)                # the executor comes later
    try:
        venue.top()
        risk = spawn([PY, "-m", "mmshm.procs.risk", *ARGS, "--set", f"risk.postmortem_dir={pm}",
                      "--set", "risk.reentry_wait_s=0", "--set", f"state_dir={tmp_path}", "--wait-s", "20"])
        procs = (risk,)
        control = attach(instance, "control", CONTROL_ROW, procs)
        tick = venue.top
        wait_for(lambda: row(control, 0, mode=Mode.NORMAL), what="NORMAL", procs=procs, tick=tick)

        # the watchdog's HALT flag: HALT for as long as it is up (re-entry would be immediate
        # with reentry_wait_s=0), the re-entry rules once it is down
        verdicts = VerdictTable.open_writer(instance, rows=4)
        try:
            v = np.zeros(1, VERDICT_ROW)
            v["halt"], v["reason"] = 1, b"quoter DEAD"
            verdicts.write(0, v)
            wait_for(lambda: row(control, 0, mode=Mode.HALT, reason=TriggerCode.WATCHDOG), what="watchdog HALT",
                     procs=procs, tick=tick)
            time.sleep(0.3)
            assert row(control, 0, mode=Mode.HALT, reason=TriggerCode.WATCHDOG) is not None
            v["halt"] = 0
            verdicts.write(0, v)
            r = wait_for(lambda: row(control, 0, mode=Mode.NORMAL), what="re-entry after the watchdog", procs=procs,
                         tick=tick)
            assert r["limit_scale_bp"] == 5_000
        finally:
            verdicts.table.unlink()
            verdicts.close()

        # SIGUSR1: manual halt, post-mortem; only a resume lifts it (even with reentry_wait_s=0)
        risk.send_signal(signal.SIGUSR1)
        r = wait_for(lambda: row(control, 0, mode=Mode.HALT), what="HALT on SIGUSR1", procs=procs, tick=tick)
        assert r["reason"] == TriggerCode.MANUAL
        wait_for(lambda: len(postmortems(pm)) == 2, what="post-mortem", procs=procs)
        time.sleep(0.3)
        assert row(control, 0, mode=Mode.HALT) is not None
        send_command(instance, CommandKind.RESUME, "test")
        r = wait_for(lambda: row(control, 0, mode=Mode.NORMAL), what="resume", procs=procs, tick=tick)
        assert r["limit_scale_bp"] == 5_000                   # re-entry at 50% of limits
        assert row(control, 1, max_position=500) is not None

        # pause: SIGUSR2 toggles, the commands table sets it explicitly
        risk.send_signal(signal.SIGUSR2)
        wait_for(lambda: row(control, 1, flags_set=CONTROL_FLAG_PAUSED), what="pause", procs=procs, tick=tick)
        risk.send_signal(signal.SIGUSR2)
        wait_for(lambda: row(control, 1, flags_clear=CONTROL_FLAG_PAUSED), what="unpause", procs=procs, tick=tick)
        send_command(instance, CommandKind.PAUSE)
        wait_for(lambda: row(control, 0, flags_set=CONTROL_FLAG_PAUSED), what="pause cmd", procs=procs, tick=tick)
        send_command(instance, CommandKind.UNPAUSE)
        wait_for(lambda: row(control, 0, flags_clear=CONTROL_FLAG_PAUSED), what="unpause cmd", procs=procs,
                 tick=tick)
        send_command(instance, CommandKind.HALT, "operator")
        wait_for(lambda: row(control, 0, mode=Mode.HALT, reason=TriggerCode.MANUAL), what="halt cmd", procs=procs,
                 tick=tick)
        send_command(instance, CommandKind.RESUME)
        wait_for(lambda: row(control, 0, mode=Mode.NORMAL), what="resume cmd", procs=procs, tick=tick)

        # the executor appears; its RECONCILE position report (client_id 0) is adopted
        venue.open_orders()
        rec = np.zeros(1, ORDER_EVENT)
        rec["kind"], rec["side"], rec["qty"], rec["price"], rec["client_id"] = OrderEventKind.RECONCILE, Side.SELL, \
            7, BID, 0
        assert venue.orders.try_publish(rec)
        wait_for(lambda: row(control, 1, position=-7), what="reconciled position", procs=procs, tick=tick)
        assert len(postmortems(pm)) == 3                      # watchdog, SIGUSR1, halt command
        wait_for(lambda: risk_counters(instance).get("halts") == 3, what="halts counter", procs=procs)

        risk.send_signal(signal.SIGTERM)
        assert risk.wait(timeout=10) == 0
        control.close()
    finally:
        venue.close()


@pytest.mark.timeout(30)
def test_risk_process_gives_up_without_the_feed(spawn, instance) -> None:
    r = spawn([PY, "-m", "mmshm.procs.risk", *ARGS, "--wait-s", "0.5"])
    assert r.wait(timeout=20) == 2
    assert b"did not appear" in r.stderr.read()


@pytest.mark.timeout(60)
def test_restarted_risk_recovers_fills_from_the_journal(spawn, instance, tmp_path) -> None:
    db = tmp_path / "journal.sqlite"
    args = [*ARGS, "--set", f"recorder.sqlite_path={db}", "--set", f"risk.postmortem_dir={tmp_path / 'pm'}",
            "--set", f"state_dir={tmp_path}"]
    venue = Venue(instance)
    try:
        venue.top()
        recorder = spawn([PY, "-m", "mmshm.procs.recorder", *args])
        risk = spawn([PY, "-m", "mmshm.procs.risk", *args, "--wait-s", "20"])
        control = attach(instance, "control", CONTROL_ROW, (risk, recorder))
        tick = venue.top
        venue.fill(Side.BUY, BID, 10)
        venue.fill(Side.BUY, BID - 1, 5)
        venue.fill(Side.SELL, ASK, 3)
        wait_for(lambda: row(control, 1, position=12), what="position 12", procs=(risk, recorder), tick=tick)

        os.killpg(risk.pid, signal.SIGKILL)                 # no clean stop: the control table stays
        risk.wait(timeout=10)
        venue.fill(Side.BUY, BID, 1)                        # while risk is dead: waits in the ring for it
        risk2 = spawn([PY, "-m", "mmshm.procs.risk", *args, "--wait-s", "20"])
        wait_for(lambda: row(control, 1, position=13) is not None and risk_counters(instance).get("fills") == 4,
                 what="position 13 after the restart", procs=(risk2, recorder), tick=tick)

        # a halt survives a restart: SIGUSR1, clean stop, start again -> still HALT (manual)
        risk2.send_signal(signal.SIGUSR1)
        wait_for(lambda: row(control, 0, mode=Mode.HALT, reason=TriggerCode.MANUAL), what="HALT", procs=(risk2,),
                 tick=tick)
        risk2.send_signal(signal.SIGTERM)
        assert risk2.wait(timeout=10) == 0
        control.close()
        assert json.loads((tmp_path / instance / "risk-state.json").read_text())["halted"] is True
        risk3 = spawn([PY, "-m", "mmshm.procs.risk", *args, "--wait-s", "20"])
        control = attach(instance, "control", CONTROL_ROW, (risk3,))
        wait_for(lambda: row(control, 1, position=13), what="position after the second restart", procs=(risk3,),
                 tick=tick)
        time.sleep(0.2)
        assert row(control, 0, mode=Mode.HALT, reason=TriggerCode.MANUAL) is not None
        from mmshm.records import CommandKind
        from mmshm.supervisor.commands import send_command
        send_command(instance, CommandKind.RESUME)
        wait_for(lambda: row(control, 0, mode=Mode.NORMAL), what="resume", procs=(risk3,), tick=tick)
        risk3.send_signal(signal.SIGTERM)
        assert risk3.wait(timeout=10) == 0
        control.close()
    finally:
        venue.close()


@pytest.mark.timeout(30)
def test_orders_ring_without_risk_as_required_reader_is_refused_not_fatal(spawn, instance, tmp_path) -> None:
    venue = Venue(instance, orders=False)
    wrong = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=1 << 10, required=("recorder",))
    try:
        venue.top()
        risk = spawn([PY, "-m", "mmshm.procs.risk", *ARGS, "--set", f"state_dir={tmp_path}", "--wait-s", "20"])
        control = attach(instance, "control", CONTROL_ROW, (risk,))
        wait_for(lambda: row(control, 0, mode=Mode.NORMAL), what="control rows", procs=(risk,), tick=venue.top)
        time.sleep(1.5)                                   # several attach retries: still alive, still writing
        assert risk.poll() is None
        hb = int(control.read(0)["heartbeat_mono"])
        wait_for(lambda: int(control.read(0)["heartbeat_mono"]) > hb, what="heartbeat", procs=(risk,))
        risk.send_signal(signal.SIGTERM)
        assert risk.wait(timeout=10) == 0
        assert b"not a required reader" in risk.stdout.read()           # JSON log lines on stdout
        control.close()
    finally:
        wrong.unlink()
        wrong.close()
        venue.close()
