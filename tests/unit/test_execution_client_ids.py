from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mmshm.execution.client_ids import (CLIENT_ID_RE, MAX_COUNTER, MAX_EPOCH, ClientIdGenerator, numeric,
                                        parse, try_parse)


def test_roundtrip_and_charset():
    g = ClientIdGenerator("mm", epoch=12345)
    cid, num = g.next(987654321)
    assert CLIENT_ID_RE.match(cid) and len(cid) <= 36
    p = parse(cid)
    assert (p.epoch, p.counter, p.md_seq) == (12345, 1, 987654321)
    assert p.numeric == num == numeric(cid)


def test_unique_across_restarts():
    a = ClientIdGenerator("mm", epoch=100)
    b = ClientIdGenerator("mm", epoch=101)
    ids_a = {a.next(5) for _ in range(100)}
    ids_b = {b.next(5) for _ in range(100)}
    assert not {c for c, _ in ids_a} & {c for c, _ in ids_b}
    assert not {n for _, n in ids_a} & {n for _, n in ids_b}


def test_default_epoch_is_now_and_valid():
    g = ClientIdGenerator()
    assert 0 < g.epoch <= MAX_EPOCH
    assert g.owns(g.next(0)[0])


@given(st.integers(1, MAX_EPOCH), st.integers(0, (1 << 64) - 1),
       st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=1).flatmap(
           lambda h: st.text("abcdefghijklmnopqrstuvwxyz0123456789", max_size=7).map(lambda t: h + t)))
def test_max_lengths_fit(epoch, md_seq, prefix):
    g = ClientIdGenerator(prefix, epoch=epoch)
    g._counter = MAX_COUNTER - 1
    cid, num = g.next(md_seq)
    assert CLIENT_ID_RE.match(cid), cid
    assert parse(cid, prefix) == (epoch, MAX_COUNTER, md_seq)


def test_counter_overflow_moves_epoch():
    g = ClientIdGenerator("mm", epoch=5)
    g._counter = MAX_COUNTER
    cid, _ = g.next(1)
    assert parse(cid).epoch > 5 and parse(cid).counter == 1


@pytest.mark.parametrize("bad", ["", "web_123", "mmABC_1_2", "mm1_2", "mm1_2_3_4", "x" * 40, "mm1_0_3"])
def test_foreign_ids_do_not_parse(bad):
    assert try_parse(bad) is None
    assert numeric(bad) == 0


def test_bad_prefix():
    with pytest.raises(ValueError):
        ClientIdGenerator("MM")
    with pytest.raises(ValueError):
        ClientIdGenerator("toolongprefix")
