"""The promotion log and its planning rules, on a real lake folder and the real CSI 300 calendar."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from quant_core.calendar import TradingCalendar
from quant_core.data.lake import Lake
from quant_core.online.promotion import (
    Candidate,
    Gate,
    Promotion,
    PromotionError,
    PromotionLog,
    plan_scheduled,
    rollback_target,
)


@pytest.fixture(scope="module")
def cal(csi300_path: Path) -> TradingCalendar:
    return TradingCalendar(pd.read_parquet(csi300_path, columns=["date"])["date"].unique())


def _cands(cal: TradingCalendar, ics: list[float], first: str = "2023-01-03", step: int = 20) -> list[Candidate]:
    i0 = cal.index(date.fromisoformat(first))
    return [Candidate(v + 1, cal[i0 + v * step], ic, {"valid_rank_ic": ic}) for v, ic in enumerate(ics)]


def _log(plan: list[Promotion]) -> list[Promotion]:
    return [Promotion(p.applies_after, i + 1, p.kind, p.from_version, p.to_version, p.test_start, p.valid_rank_ic,
                      p.reason, p.decided_on, "", "", "") for i, p in enumerate(plan)]


def test_first_plan_promotes_only_the_newest_model(cal: TradingCalendar) -> None:
    cands = _cands(cal, [0.05, 0.04, 0.06])
    plan = plan_scheduled([], cands, cal, cands[2].test_start, Gate())
    assert [(p.kind, p.from_version, p.to_version) for p in plan] == [("scheduled", None, 3)]
    assert plan[0].applies_after == cal[cal.index(cands[2].test_start) - 1]


def test_catch_up_equals_one_step_a_day(cal: TradingCalendar) -> None:
    cands = _cands(cal, [0.05, 0.04, 0.06, 0.03, 0.02])
    first = plan_scheduled([], cands[:1], cal, cands[0].test_start, Gate())
    log = _log(first)
    # one run long after: every missed step at once
    at_once = plan_scheduled(log, cands, cal, cands[4].test_start, Gate())
    # the same, one session at a time
    daily = []
    entries = list(log)
    for d in cal.range(cands[0].test_start, cands[4].test_start):
        step = plan_scheduled(entries, [c for c in cands if c.test_start <= d], cal, d, Gate())
        entries += _log(step)[: len(step)]
        daily += step
    key = [(p.applies_after, p.kind, p.from_version, p.to_version) for p in at_once]
    assert key == [(p.applies_after, p.kind, p.from_version, p.to_version) for p in daily]
    assert [p.to_version for p in at_once] == [2, 3, 4, 5]


def test_the_gate_keeps_the_previous_version(cal: TradingCalendar) -> None:
    cands = _cands(cal, [0.05, -0.01, 0.03])
    gate = Gate(min_valid_rank_ic=0.0)
    log = _log(plan_scheduled([], cands[:1], cal, cands[0].test_start, gate))
    plan = plan_scheduled(log, cands, cal, cands[2].test_start, gate)
    assert [(p.kind, p.from_version, p.to_version) for p in plan] == [("gate_failed", 1, 1), ("scheduled", 1, 3)]
    assert "valid_rank_ic -0.01 < min_valid_rank_ic 0.0" in plan[0].reason
    # decided once: the rejected version is not reconsidered on the next day
    again = plan_scheduled([*log, *_log(plan)], cands, cal, cal.shift(cands[2].test_start, 1), gate)
    assert again == []


def test_log_serving_rollback_and_appends_from_two_writers(tmp_path: Path, cal: TradingCalendar) -> None:
    lake = Lake(str(tmp_path / "lake"))
    log = PromotionLog(lake, "s")
    t = date(2023, 3, 1)
    e1 = log.append(Promotion(date(2023, 2, 28), 0, "scheduled", None, 1, t, 0.05, "r", t, "run", "u", "x"))
    e2 = log.append(Promotion(date(2023, 3, 28), 0, "scheduled", 1, 2, t, 0.04, "r", t, "run", "u", "x"))
    other = PromotionLog(Lake(str(tmp_path / "lake")), "s")  # a second writer, same day, same dataset
    e3 = other.append(Promotion(date(2023, 3, 28), 0, "manual", 2, 1, t, 0.05, "manual", t, "run", "u", "x"))
    assert (e1.seq, e2.seq, e3.seq) == (1, 2, 3)
    assert log.serving(date(2023, 2, 28)) is None and log.serving(date(2023, 3, 1)) == 1
    assert log.serving(date(2023, 3, 29)) == 1  # the manual move, decided after #2 on the same date, wins
    assert log.served_dates([date(2023, 2, 28), date(2023, 3, 1), date(2023, 3, 29)]) == {1: [date(2023, 3, 1),
                                                                                             date(2023, 3, 29)]}
    assert rollback_target(log.entries()).to_version == 2
    with pytest.raises(PromotionError, match="nothing has been promoted yet"):
        rollback_target([])
    with pytest.raises(PromotionError, match="only version that ever served"):
        rollback_target(log.entries()[:1])
