"""Risk with the venue's account (mmshm.risk.account): equity anchored on the venue while the
row is fresh, the fallback when it is absent or stale, the switching rules (no fake
drawdown), and margin utilisation from the venue's margin figures (60/80/90%)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mmshm.records import ACCOUNT_ROW, BOOK_ROW, CONTROL_ROW, FEE_SCALE, AccountSource, MdStatus, Mode, Side
from mmshm.risk import FLAG_ALERT, InstrumentRisk, RiskEngine, RiskParams, SimClock, TriggerCode
from mmshm.risk.account import CONFIG, VENUE, VENUE_STALE
from mmshm.risk.clock import SystemClock

BUY, SELL = Side.BUY, Side.SELL
UNIT = Fraction(FEE_SCALE)     # one tick on one lot = 1 quote unit: prices read as money
EQ = 10_000 * FEE_SCALE
NS = 1_000_000_000


def make(max_position: int = 1_000, leverage: float = 5.0, **kw) -> tuple[RiskEngine, SimClock]:
    clock = SimClock()
    inst = InstrumentRisk(0, "X", UNIT, leverage=leverage, max_position=max_position, max_order_qty=10)
    eng = RiskEngine(RiskParams(initial_equity=EQ, **kw), [inst], clock)
    eng.account.asset = "USDT"
    return eng, clock


class Rows:
    """ACCOUNT_ROWs as the executor writes them (version bumped by 2 per write)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.version = 0

    def __call__(self, wallet: float, *, im: float = 0, mm: float = 0, transfers: float = 0, venue_dt_ns: int = 0,
                 margins: bool = True, asset: bytes = b"USDT", age_s: float = 0.0):
        self.version += 2
        r = np.zeros(1, ACCOUNT_ROW)[0]
        r["version"], r["source"], r["asset"], r["venue"] = self.version, AccountSource.REST, asset, 1
        r["wallet_balance"] = r["cross_wallet"] = r["margin_balance"] = int(wallet * FEE_SCALE)
        r["initial_margin"], r["maint_margin"] = int(im * FEE_SCALE), int(mm * FEE_SCALE)
        r["transfers"] = int(transfers * FEE_SCALE)
        r["venue_ts"] = r["local_ts"] = self.clock.realtime_ns() + venue_dt_ns
        r["updated_mono"] = self.clock.monotonic_ns() - int(age_s * NS)
        r["margin_mono"] = r["updated_mono"] if margins else 0
        return r


def mark(eng: RiskEngine, px: int) -> None:
    eng.on_book(0, px - 1, px + 1, MdStatus.LIVE)


def money(eng: RiskEngine) -> float:
    return float(eng.equity()) / FEE_SCALE


def test_without_a_row_equity_is_config_plus_own_pnl() -> None:
    eng, _ = make()
    mark(eng, 1000)
    eng.on_fill(0, BUY, 1000, 1, 0, 1, 1)
    mark(eng, 1010)
    eng.evaluate()
    snap = eng.snapshot()
    assert money(eng) == 10_010 and snap["equity_source"] == CONFIG and snap["margin_source"] == "own"
    assert snap["account"] is None


@pytest.mark.parametrize("wallet", [8_000, 12_000, 2_000_000])
def test_first_venue_equity_rebases_without_fake_drawdown(wallet: int) -> None:
    eng, clock = make()
    rows = Rows(clock)
    mark(eng, 1000)
    eng.on_fill(0, BUY, 1000, 1, 0, 1, 1)
    mark(eng, 990)                                    # own unrealized -10 on the configured 10 000
    eng.evaluate()
    dd_before, daily_before = eng.metrics.drawdown, eng.metrics.daily_loss
    assert dd_before == pytest.approx(10 / 10_000) and daily_before == pytest.approx(10 / 10_000)
    clock.advance(1)
    assert eng.on_account_row(rows(wallet))
    eng.evaluate()
    assert eng.equity_source == VENUE and money(eng) == wallet - 10
    # the same 10 lost, now measured against the venue's balance: no jump, no halt
    assert eng.metrics.drawdown == pytest.approx(10 / wallet)
    assert eng.metrics.daily_loss == pytest.approx(10 / wallet)
    assert eng.mode == Mode.NORMAL and not eng.breaches
    assert [e["event"] for e in eng.events].count("equity_rebased") == 1


def test_later_venue_figures_move_equity_like_pnl() -> None:
    eng, clock = make()
    rows = Rows(clock)
    eng.on_account_row(rows(10_000))
    eng.evaluate()
    clock.advance(1)
    eng.on_account_row(rows(9_960))                   # funding paid: 0.4% today, below the 0.5% trigger
    eng.evaluate()
    assert eng.mode == Mode.NORMAL and eng.metrics.daily_loss == pytest.approx(0.004)
    clock.advance(1)
    eng.on_account_row(rows(9_950))                   # 0.5%: the daily-loss trigger fires AT its threshold
    eng.evaluate()
    assert eng.mode == Mode.HALT and eng.halts.reason == TriggerCode.DAILY_LOSS
    doc = eng.postmortem_docs[-1]
    assert doc["equity_source"] == VENUE and doc["account"]["wallet_balance"] == 9_950
    assert doc["equity"] == 9_950 * FEE_SCALE


def test_stale_row_falls_back_to_own_pnl_from_the_last_anchor() -> None:
    eng, clock = make(account_max_age_s=30)
    rows = Rows(clock)
    eng.on_account_row(rows(8_000, im=100))
    mark(eng, 1000)
    eng.on_fill(0, BUY, 1000, 1, 0, 1, 1)
    eng.evaluate()
    assert eng.equity_source == VENUE and eng.margin_source == "venue"
    assert eng.metrics.margin_utilisation == pytest.approx(100 / 8_000)
    clock.advance(30)
    eng.evaluate()
    assert eng.equity_source == VENUE                 # at the max age: still fresh
    clock.advance(0.001)
    mark(eng, 1010)
    eng.evaluate()
    assert eng.equity_source == VENUE_STALE and money(eng) == 8_010     # no jump back to the config's 10 000
    assert eng.margin_source == "own" and eng.metrics.margin_utilisation == pytest.approx(1010 / 5 / 8_010)
    assert eng.mode == Mode.NORMAL
    assert eng.snapshot()["equity_source"] == VENUE_STALE
    eng.on_account_row(rows(8_000))                   # the executor is back
    eng.evaluate()
    assert eng.equity_source == VENUE and money(eng) == 8_010


def test_row_already_stale_at_start_is_kept_but_not_used() -> None:
    eng, clock = make(account_max_age_s=30)
    rows = Rows(clock)
    assert eng.on_account_row(rows(50_000, im=40_000, age_s=31))
    eng.evaluate()
    assert eng.equity_source == CONFIG and money(eng) == 10_000 and eng.margin_source == "own"
    assert eng.snapshot()["account"]["wallet_balance"] == 50_000 and eng.mode == Mode.NORMAL


def test_max_age_zero_never_uses_the_venue() -> None:
    eng, clock = make(account_max_age_s=0)
    eng.on_account_row(Rows(clock)(50_000))
    eng.evaluate()
    assert eng.equity_source == CONFIG and money(eng) == 10_000


def test_fills_the_wallet_does_not_include_yet_count_once() -> None:
    eng, clock = make()
    rows = Rows(clock)
    eng.on_account_row(rows(10_000))
    t0 = clock.realtime_ns()
    mark(eng, 1005)
    eng.on_fill(0, BUY, 1000, 1, FEE_SCALE, 1, 1, t0 + 1_000_000)     # fee 1
    eng.on_fill(0, SELL, 1010, 1, FEE_SCALE, 2, 2, t0 + 2_000_000)    # +10 realized, fee 1
    assert money(eng) == 10_008                       # both fills after the row: added to its wallet
    clock.advance(0.001)
    eng.on_account_row(rows(9_999))                   # the wallet after the first fill only
    assert money(eng) == 10_008
    clock.advance(0.001)
    eng.on_account_row(rows(10_008))                  # after both
    assert money(eng) == 10_008
    eng.evaluate()
    assert eng.metrics.drawdown == 0 and eng.mode == Mode.NORMAL


@pytest.mark.parametrize("moved", [-1_000, 5_000])
def test_transfers_move_the_high_water_mark_not_the_drawdown(moved: int) -> None:
    eng, clock = make()
    rows = Rows(clock)
    eng.on_account_row(rows(10_000, transfers=-300))   # transfers before the first anchor: only noted
    eng.evaluate()
    clock.advance(1)
    eng.on_account_row(rows(10_000 + moved, transfers=-300 + moved))
    eng.evaluate()
    assert money(eng) == 10_000 + moved
    assert eng.metrics.drawdown == 0 and eng.metrics.daily_loss == 0 and eng.mode == Mode.NORMAL
    assert float(eng.hwm) / FEE_SCALE == 10_000 + moved
    assert any(e["event"] == "account_transfer" for e in eng.events)


@pytest.mark.parametrize("im,mode,alert,reason", [
    (5_999.99, Mode.NORMAL, False, TriggerCode.NONE),
    (6_000, Mode.NORMAL, True, TriggerCode.MARGIN_ALERT),
    (7_999.99, Mode.NORMAL, True, TriggerCode.MARGIN_ALERT),
    (8_000, Mode.REDUCE_ONLY, True, TriggerCode.MARGIN_REDUCE),
    (8_999.99, Mode.REDUCE_ONLY, True, TriggerCode.MARGIN_REDUCE),
    (9_000, Mode.HALT, True, TriggerCode.MARGIN_HALT),
])
def test_margin_utilisation_from_the_venue(im: float, mode: Mode, alert: bool, reason: TriggerCode) -> None:
    eng, clock = make()
    eng.on_account_row(Rows(clock)(10_000, im=im, mm=im / 10))
    eng.evaluate()                                    # flat: risk's own estimate would be 0%
    assert eng.margin_source == "venue"
    assert eng.metrics.margin_utilisation == pytest.approx(im / 10_000)
    assert eng.metrics.maintenance_ratio == pytest.approx(im / 100_000)
    assert eng.mode == mode and bool(eng.global_flags & FLAG_ALERT) is alert
    assert (eng.halts.reason if mode == Mode.HALT else eng.reason) == reason


def test_stale_margin_figures_give_way_to_the_own_estimate() -> None:
    eng, clock = make(account_max_age_s=30)
    rows = Rows(clock)
    eng.on_account_row(rows(10_000, im=8_500))
    eng.evaluate()
    assert eng.mode == Mode.REDUCE_ONLY
    clock.advance(10)
    eng.on_account_row(rows(10_000, margins=False))   # balances fresh, margins from the earlier poll
    clock.advance(21)
    eng.evaluate()
    assert eng.equity_source == VENUE and eng.margin_source == "own"
    assert eng.metrics.margin_utilisation == 0 and eng.mode == Mode.NORMAL


def test_venue_margin_overrides_a_lower_own_estimate() -> None:
    eng, clock = make(leverage=5.0)
    mark(eng, 1000)
    eng.on_fill(0, BUY, 1000, 10, 0, 1, 1)           # own: 10 000 notional / 5 = 20%
    eng.evaluate()
    assert eng.metrics.margin_utilisation == pytest.approx(0.2)
    clock.advance(1)
    eng.on_account_row(Rows(clock)(10_000, im=6_500))
    eng.evaluate()
    assert eng.metrics.margin_utilisation == pytest.approx(0.65) and eng.global_flags & FLAG_ALERT


def test_row_of_another_asset_is_ignored() -> None:
    eng, clock = make()
    assert not eng.on_account_row(Rows(clock)(50_000, asset=b"BUSD"))
    eng.evaluate()
    assert eng.equity_source == CONFIG and eng.account.ignored == {"asset_BUSD": 1}


def test_unwritten_or_repeated_rows_are_not_taken() -> None:
    eng, clock = make()
    assert not eng.on_account_row(np.zeros(1, ACCOUNT_ROW)[0])
    r = Rows(clock)(9_000)
    assert eng.on_account_row(r) and not eng.on_account_row(r)


def test_kelly_limit_follows_venue_equity() -> None:
    eng, clock = make(max_position=0)
    mark(eng, 100)                                    # 10 000 / (5 x 100) x 0.25 = 5 lots
    assert eng.max_position(0) == 5
    eng.on_account_row(Rows(clock)(20_000))
    assert eng.max_position(0) == 10


def test_risk_process_reads_the_account_table(instance) -> None:
    """RiskProcessAgent attaches the executor's table and feeds new versions to the engine."""
    from mmshm.execution.account import AccountTable, AccountWriter
    from mmshm.risk.process import RiskProcessAgent
    from mmshm.shm import SeqlockTable

    eng, _ = make()
    eng.clock = SystemClock()                        # the writer stamps real monotonic times
    books = SeqlockTable.create(instance, "book", BOOK_ROW, 2)
    control = SeqlockTable.create(instance, "control", CONTROL_ROW, 4)
    writer = AccountWriter.create(instance, venue=1, asset="USDT")
    agent = RiskProcessAgent(eng, None, books, control, instance=instance,
                             open_account=lambda: AccountTable.attach(instance))
    try:
        agent.on_start()
        assert agent.account is not None and eng.equity_source == CONFIG
        body = {"multiAssetsMargin": False, "assets": [{
            "asset": "USDT", "walletBalance": "25000.5", "crossWalletBalance": "25000.5", "unrealizedProfit": "0",
            "marginBalance": "25000.5", "initialMargin": "16000", "maintMargin": "100", "availableBalance": "9000.5",
            "updateTime": 0}]}
        assert writer.on_rest_account(body)
        agent.evaluate()
        assert eng.equity_source == VENUE and money(eng) == 25_000.5
        assert eng.margin_source == "venue" and eng.global_flags & FLAG_ALERT     # 64% of equity
        agent.evaluate()                               # same version: not re-applied
        assert eng.account.anchors == 1
    finally:
        agent.on_close()
        writer.close(unlink=True)
        control.unlink()
        control.close()
        books.unlink()
        books.close()
