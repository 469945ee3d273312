"""The executor's account writer: Binance-shaped ACCOUNT_UPDATE and REST account JSON into
the ``account`` seqlock row; bad input is a counted drop that leaves the row untouched."""
from __future__ import annotations

import asyncio
import copy
from decimal import Decimal

import pytest

from mmshm.execution.account import AccountTable, AccountWriter, money_units, parse_rest_account
from mmshm.instruments import InstrumentSpec
from mmshm.records import ACCOUNT_ROW, FEE_SCALE, AccountSource
from mmshm.shm import SeqlockTable
from mmshm.venues.binance_usdm.trading import (AccountUpdate, Balance, InstrumentIndex, NotSent,
                                               StreamParseStats, parse_user_event)

IDX = InstrumentIndex([InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.10", "0.001")])


def units(s: str) -> int:
    return int(Decimal(s) * FEE_SCALE)


#: Binance's documented USD-M ACCOUNT_UPDATE example (two assets, two positions).
STREAM = {
    "e": "ACCOUNT_UPDATE", "E": 1564745798939, "T": 1564745798938,
    "a": {"m": "ORDER",
          "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"},
                {"a": "BUSD", "wb": "1.00000000", "cw": "0.00000000", "bc": "-49.12345678"}],
          "P": [{"s": "BTCUSDT", "pa": "0", "ep": "0.00000", "bep": "0", "cr": "200", "up": "0",
                 "mt": "isolated", "iw": "0.00000000", "ps": "BOTH"},
                {"s": "BTCUSDT", "pa": "20", "ep": "6563.66500", "bep": "6563.6", "cr": "0",
                 "up": "2850.21200", "mt": "isolated", "iw": "13200.70726908", "ps": "LONG"}]}}

#: GET /fapi/v2/account as Binance documents it (single-asset mode), trimmed to what we read.
REST = {
    "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0,
    "multiAssetsMargin": False, "tradeGroupId": -1,
    "totalInitialMargin": "0.00000000", "totalMaintMargin": "0.00000000", "totalWalletBalance": "23.72469206",
    "totalUnrealizedProfit": "0.00000000", "totalMarginBalance": "23.72469206",
    "totalPositionInitialMargin": "0.00000000", "totalOpenOrderInitialMargin": "0.00000000",
    "totalCrossWalletBalance": "23.72469206", "totalCrossUnPnl": "0.00000000",
    "availableBalance": "23.72469206", "maxWithdrawAmount": "23.72469206",
    "assets": [
        {"asset": "USDT", "walletBalance": "23.72469206", "unrealizedProfit": "-1.50000000",
         "marginBalance": "22.22469206", "maintMargin": "0.40000000", "initialMargin": "5.00000000",
         "positionInitialMargin": "4.00000000", "openOrderInitialMargin": "1.00000000",
         "crossWalletBalance": "23.72469206", "crossUnPnl": "-1.50000000", "availableBalance": "17.22469206",
         "maxWithdrawAmount": "17.22469206", "marginAvailable": True, "updateTime": 1625474304765},
        {"asset": "BUSD", "walletBalance": "103.12345678", "unrealizedProfit": "0.00000000",
         "marginBalance": "103.12345678", "maintMargin": "0.00000000", "initialMargin": "0.00000000",
         "positionInitialMargin": "0", "openOrderInitialMargin": "0", "crossWalletBalance": "103.12345678",
         "crossUnPnl": "0.00000000", "availableBalance": "103.12345678", "maxWithdrawAmount": "103.12345678",
         "marginAvailable": True, "updateTime": 1625474304765}],
    "positions": [{"symbol": "BTCUSDT", "initialMargin": "4", "maintMargin": "0.4", "unrealizedProfit": "-1.50000000",
                   "positionInitialMargin": "4", "openOrderInitialMargin": "1", "leverage": "20",
                   "isolated": False, "entryPrice": "40000.0", "maxNotional": "250000", "positionSide": "BOTH",
                   "positionAmt": "0.002", "updateTime": 0}]}


class Clock:
    def __init__(self) -> None:
        self.mono = 5_000_000_000

    def __call__(self) -> int:
        return self.mono


@pytest.fixture
def writer(instance):
    clock = Clock()
    w = AccountWriter.create(instance, venue=1, asset="USDT", mono=clock, realtime=lambda: 1_700_000_000_000_000_000)
    w.clock = clock
    yield w
    w.close(unlink=True)


def row(instance):
    t = AccountTable.attach(instance)
    try:
        return t.read(0)
    finally:
        t.close()


def stream_event(msg: dict, local_ts: int = 1_564_745_799_000_000_000):
    ev = parse_user_event(msg, IDX, local_ts=local_ts)
    assert isinstance(ev, AccountUpdate)
    return ev


def test_fresh_table_has_no_row(writer, instance):
    assert row(instance) is None


def test_stream_account_update_into_row(writer, instance):
    assert writer.on_account_update(stream_event(STREAM))
    r = row(instance)
    assert r["source"] == AccountSource.STREAM and bytes(r["asset"]) == b"USDT" and r["venue"] == 1
    assert r["wallet_balance"] == units("122624.12345678")
    assert r["cross_wallet"] == units("100.12345678")
    assert r["unrealized_pnl"] == units("2850.21200")                 # both BTCUSDT entries: the last wins
    assert r["margin_balance"] == units("122624.12345678") + units("2850.212")
    assert r["venue_ts"] == 1564745798938 * 1_000_000 and r["local_ts"] == 1_564_745_799_000_000_000
    assert r["updated_mono"] == 5_000_000_000 and r["margin_mono"] == 0   # no margin figures on the stream
    assert r["transfers"] == 0                                        # reason ORDER: bc is not a transfer
    assert r["stream_updates"] == 1 and r["drops"] == 0


def test_rest_account_into_row(writer, instance):
    assert writer.on_rest_account(REST)
    r = row(instance)
    assert r["source"] == AccountSource.REST
    assert r["wallet_balance"] == units("23.72469206") and r["cross_wallet"] == units("23.72469206")
    assert r["unrealized_pnl"] == units("-1.5") and r["margin_balance"] == units("22.22469206")
    assert r["initial_margin"] == units("5") and r["maint_margin"] == units("0.4")
    assert r["available_balance"] == units("17.22469206")
    assert r["venue_ts"] == 1625474304765 * 1_000_000                 # the asset's updateTime
    assert r["margin_mono"] == 5_000_000_000 and r["rest_updates"] == 1


def test_multi_assets_mode_reads_totals():
    body = dict(REST, multiAssetsMargin=True, totalInitialMargin="7.5")
    vals, venue_ts, _ = parse_rest_account(body, "USDT")
    assert vals["initial_margin"] == units("7.5") and vals["wallet_balance"] == units("23.72469206")
    assert venue_ts == 0                                              # the caller stands in its own clock


def test_asset_missing_from_assets_falls_back_to_totals():
    vals, _, _ = parse_rest_account(dict(REST, assets=[]), "USDT")
    assert vals["margin_balance"] == units("23.72469206") and vals["initial_margin"] == 0


def _bad(path: tuple, value):
    body = copy.deepcopy(REST)
    target = body
    for k in path[:-1]:
        target = target[k]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize("body,reason", [
    (_bad(("assets", 0, "walletBalance"), "NaN"), "bad_walletBalance"),
    (_bad(("assets", 0, "walletBalance"), "Infinity"), "bad_walletBalance"),
    (_bad(("assets", 0, "walletBalance"), ""), "bad_walletBalance"),
    (_bad(("assets", 0, "walletBalance"), None), "bad_walletBalance"),
    (_bad(("assets", 0, "walletBalance"), "1e5"), "bad_walletBalance"),
    (_bad(("assets", 0, "walletBalance"), float("nan")), "bad_walletBalance"),
    (_bad(("assets", 0, "walletBalance"), True), "bad_walletBalance"),
    (_bad(("assets", 0, "walletBalance"), "1" + "0" * 20), "bad_walletBalance"),   # beyond int64 at 1e-8
    (_bad(("assets", 0, "initialMargin"), KeyError), "rest_missing_initialMargin"),
    (_bad(("assets", 0, "maintMargin"), "-0.1"), "rest_negative_maint_margin"),
    ({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, "rest_error"),
    ([REST], "rest_not_object"),
    ("{}", "rest_not_object"),
    (None, "rest_not_object"),
])
def test_bad_rest_answers_are_counted_drops(writer, instance, body, reason):
    assert writer.on_rest_account(REST)
    before = row(instance)
    assert not writer.on_rest_account(body)
    after = row(instance)
    assert writer.drops == {reason: 1} and reason in writer.last_error
    assert after["drops"] == 1
    for k in ("version", "wallet_balance", "initial_margin", "maint_margin", "margin_mono", "rest_updates"):
        assert after[k] == before[k] + (2 if k == "version" else 0)   # one write: the drop counter only
    # the next good answer is taken as usual
    assert writer.on_rest_account(REST) and row(instance)["rest_updates"] == 2


def test_stream_balance_without_wallet_is_dropped(writer, instance):
    msg = copy.deepcopy(STREAM)
    del msg["a"]["B"][0]["wb"]
    ev = stream_event(msg)
    assert ev.balances[0].missing == ("wb",)
    assert not writer.on_account_update(ev)
    assert writer.drops == {"stream_missing_wb": 1}
    assert row(instance)["wallet_balance"] == 0


@pytest.mark.parametrize("patch", [{"wb": "NaN"}, {"wb": None}, {"cw": "1e3"}, {"a": None}])
def test_malformed_stream_balances_never_reach_the_row(writer, instance, patch):
    msg = copy.deepcopy(STREAM)
    msg["a"]["B"][0].update(patch)
    stats = StreamParseStats()
    ev = parse_user_event(msg, IDX, stats)
    if ev is None:                                   # the stream parser already dropped it (counted)
        assert sum(stats.dropped.values()) == 1
    else:                                            # a balance of asset None: not ours, wallet untouched
        writer.on_account_update(ev)
    r = row(instance)
    assert r is None or r["wallet_balance"] == 0


@pytest.mark.parametrize("ev,reason", [
    ({"e": "ACCOUNT_UPDATE"}, "stream_not_account_update"),
    (None, "stream_not_account_update"),
    (AccountUpdate("ORDER", [Balance("USDT", 1 << 64, 0, 0)], [], 1, 1, 1), "stream_bad_wb"),
    (AccountUpdate("ORDER", [Balance("USDT", "12", 0, 0)], [], 1, 1, 1), "stream_bad_wb"),
    (AccountUpdate("ORDER", None, [], 1, 1, 1), "stream_malformed"),
])
def test_bad_stream_events_are_counted_drops(writer, instance, ev, reason):
    assert not writer.on_account_update(ev)
    assert writer.drops == {reason: 1}
    assert row(instance) is not None and row(instance)["drops"] == 1 and row(instance)["wallet_balance"] == 0


def test_foreign_asset_only_is_ignored(writer, instance):
    msg = copy.deepcopy(STREAM)
    msg["a"]["B"] = [msg["a"]["B"][1]]
    msg["a"]["P"] = []
    assert not writer.on_account_update(stream_event(msg))
    assert writer.counters["stream_foreign"] == 1 and not writer.drops and row(instance) is None


@pytest.mark.parametrize("reason,counted", [("WITHDRAW", True), ("DEPOSIT", True), ("FUNDING_FEE", False),
                                             ("ORDER", False)])
def test_transfers_accumulate_non_pnl_balance_changes(writer, instance, reason, counted):
    msg = copy.deepcopy(STREAM)
    msg["a"]["m"] = reason
    msg["a"]["B"][0]["bc"] = "-100.5"
    writer.on_account_update(stream_event(msg))
    msg["T"] += 1
    writer.on_account_update(stream_event(msg))
    assert row(instance)["transfers"] == (-2 * units("100.5") if counted else 0)


def test_rest_answer_older_than_stream_keeps_stream_balances(writer, instance):
    msg = copy.deepcopy(STREAM)
    msg["T"] = 1625474304765 + 10                   # the stream saw a later balance than the REST snapshot
    writer.on_account_update(stream_event(msg))
    writer.clock.mono += 1_000_000
    assert writer.on_rest_account(REST)
    r = row(instance)
    assert r["wallet_balance"] == units("122624.12345678")            # not rolled back
    assert r["initial_margin"] == units("5") and r["margin_mono"] == writer.clock.mono
    assert writer.counters["rest_older"] == 1


def test_stream_update_after_rest_moves_margin_balance_with_position_pnl(writer, instance):
    writer.on_rest_account(REST)                    # BTCUSDT unrealized -1.5
    msg = {"e": "ACCOUNT_UPDATE", "E": 1625474305000, "T": 1625474305000,
           "a": {"m": "ORDER", "B": [{"a": "USDT", "wb": "23.5", "cw": "23.5", "bc": "0"}],
                 "P": [{"s": "BTCUSDT", "pa": "0.001", "ep": "40000", "up": "-0.5", "mt": "cross", "ps": "BOTH"}]}}
    assert writer.on_account_update(stream_event(msg))
    r = row(instance)
    assert r["unrealized_pnl"] == units("-0.5") and r["margin_balance"] == units("23.0")
    assert r["initial_margin"] == units("5")                           # margins stay the REST figures


def test_take_over_continues_transfers_and_counters(instance):
    w = AccountWriter.create(instance, asset="USDT")
    msg = copy.deepcopy(STREAM)
    msg["a"]["m"] = "DEPOSIT"
    w.on_account_update(stream_event(msg))
    t = SeqlockTable.attach(instance, "account", ACCOUNT_ROW)
    w2 = AccountWriter(t, asset="USDT", owner=False)            # as a restarted executor would see the row
    assert int(w2.read()["transfers"]) == units("50.12345678") and int(w2.read()["stream_updates"]) == 1
    w2.close()
    w.close(unlink=True)


def test_money_units_exact():
    assert money_units("0.00000001", "x") == 1 and money_units("-12.5", "x") == -1_250_000_000
    assert money_units(3, "x") == 300_000_000 and money_units("0.000000019", "x") == 1   # floor below 1e-8


class FakeRest:
    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    async def account(self):
        self.calls += 1
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a


class ShortBudget:
    def headroom(self, bucket: int) -> int:
        return 10


def test_poll_once_failures_and_budget(writer, instance):
    async def main():
        rest = FakeRest([NotSent(0, "rate budget: refused"), {"garbage": 1}, REST])
        assert not await writer.poll_once(rest)
        assert writer.counters["rest_failures"] == 1 and "rate budget" in writer.last_error
        assert not await writer.poll_once(rest)
        assert writer.drops == {"rest_missing_totalWalletBalance": 1}
        assert await writer.poll_once(rest)
        rest.budget = ShortBudget()                 # orders come first: the poll waits
        assert not await writer.poll_once(rest)
        assert writer.counters["rest_deferred"] == 1 and rest.calls == 3
    asyncio.run(main())
    assert row(instance)["rest_updates"] == 1


@pytest.mark.timeout(10)
def test_refresh_polls_until_cancelled_and_backs_off(writer):
    async def main():
        rest = FakeRest([OSError("boom"), REST, REST] + [REST] * 100)
        task = asyncio.ensure_future(writer.refresh(rest, interval_s=0.01))
        for _ in range(500):
            if writer.counters["rest_updates"] >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert writer.counters["rest_failures"] == 1 and writer.counters["rest_updates"] >= 2
    asyncio.run(main())


def test_writer_refuses_bad_setup(instance):
    t = SeqlockTable.create(instance, "account", ACCOUNT_ROW, 1)
    try:
        with pytest.raises(ValueError):
            AccountWriter(t, row=1)
        with pytest.raises(ValueError):
            AccountWriter(t, asset="TOOLONGASSET")
        with pytest.raises(ValueError):
            AccountWriter(t, interval_s=0)
    finally:
        t.close()


def test_status_snapshot_shows_the_account(writer, instance):
    """``mmshm status`` (its snapshot, JSON and rendering) shows the venue account."""
    from rich.console import Console

    from mmshm.cli.status import render
    from mmshm.monitor.snapshot import take_snapshot

    assert take_snapshot(instance).account is None          # table there, never written
    assert writer.on_rest_account(REST)
    snap = take_snapshot(instance)
    a = snap.account
    assert a is not None and a.asset == "USDT" and a.source == "REST"
    assert a.wallet == 23.72469206 and a.initial_margin == 5.0 and a.available == 17.22469206
    doc = snap.to_json()["account"]
    assert doc["margin_balance"] == 22.22469206 and "age_s" in doc and "margin_age_s" in doc
    console = Console(width=200, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "account USDT (REST" in text and "initial margin 5.00" in text
