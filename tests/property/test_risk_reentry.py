"""Hypothesis: the halt / re-entry state machine under random halts, resumes and time steps."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmshm.risk import HaltController, RiskParams, TriggerCode
from mmshm.risk.clock import NS, next_utc_midnight, utc_day

START = 1_700_000_000 * NS

step_st = st.one_of(
    st.tuples(st.just("halt"), st.booleans()),                         # (halt, manual?)
    st.tuples(st.just("advance"), st.integers(0, 6 * 3600)),
    st.tuples(st.just("resume"), st.just(False)),
)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step_st, max_size=40), offset=st.integers(0, 86_399))
def test_reentry_rules_hold(steps, offset) -> None:
    p = RiskParams()
    now = START - START % (86_400 * NS) + offset * NS
    hc = HaltController(p, now)
    halts: list[int] = []           # times of counted halts
    last_reentry: int | None = None
    halted_at: int | None = None
    manual_needed = False
    for kind, arg in steps:
        if kind == "halt":
            was = hc.halted
            fired = hc.halt(now, TriggerCode.MANUAL if arg else TriggerCode.DRAWDOWN, manual=arg)
            assert fired == (not was)
            if fired:
                halts.append(now)
                halted_at = now
                today = [t for t in halts if utc_day(t) == utc_day(now)]
                assert hc.halts_today == len(today)
                manual_needed = arg or len(today) >= p.max_halts_per_day
                assert hc.manual_required == manual_needed
                if not manual_needed:
                    if last_reentry is not None and now - last_reentry < p.rehalt_window_s * NS:
                        assert hc.resume_at_ns == next_utc_midnight(now)
                    else:
                        assert hc.resume_at_ns == now + int(p.reentry_wait_s * NS)
            elif arg:
                manual_needed = True
        elif kind == "advance":
            before = hc.halted
            now += arg * NS
            reentered = hc.tick(now)
            if before:
                assert halted_at is not None
                if manual_needed:
                    assert hc.halted and not reentered          # only a person restarts it
                if reentered:
                    assert now - halted_at >= p.reentry_wait_s * NS
                    assert hc.scale_bp == p.reentry_scale_bp
                    last_reentry = now
        else:
            was = hc.halted
            assert hc.resume(now) == was
            if was:
                assert not hc.halted and hc.scale_bp == p.reentry_scale_bp
                last_reentry = now
                manual_needed = False
        assert hc.halted or not hc.manual_required
        assert 0 < hc.scale_bp <= 10_000
