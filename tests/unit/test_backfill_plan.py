"""Backfill planning on the real CSI 300 calendar: the same tasks, on the same days, as one routine a day."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from quant_core.calendar import TradingCalendar
from quant_core.models.strategy import StrategyConfig
from quant_core.online.backfill import BackfillError, check_chunk, check_range, chunks, plan_tasks

STRATEGY = StrategyConfig.model_validate({
    "name": "monthly", "rolling": {"step": 20},
    "segments": {"dates": {"train": ["2020-01-02", "2021-12-31"], "valid": ["2022-01-04", "2022-12-30"],
                           "test": ["2023-03-01", None]}},
})


@pytest.fixture(scope="module")
def cal(csi300_path: Path) -> TradingCalendar:
    return TradingCalendar(pd.read_parquet(csi300_path, columns=["date"])["date"].unique())


def _day_by_day(cal: TradingCalendar, as_of: date, sessions: list[date]) -> list[tuple[date, str, str]]:
    """What the daily routine does: on each session, roll on from the latest task over the calendar known then."""
    last = STRATEGY.tasks(cal, as_of)[-1]
    out = []
    for d in sessions:
        new = STRATEGY.rolling_gen().following(last, TradingCalendar(cal.range(None, d)), d)
        out += [(d, t.task_id, t.to_json()) for t in new]
        last = new[-1] if new else last
    return out


@pytest.mark.parametrize("first_as_of, start", [
    (date(2023, 3, 31), date(2023, 4, 3)),    # the backfill starts the session after the first training
    (date(2023, 3, 31), date(2023, 8, 1)),    # several steps were missed: a catch-up on the first session
])
def test_plan_equals_one_routine_a_day(cal: TradingCalendar, first_as_of: date, start: date) -> None:
    sessions = list(cal.range(start, date(2024, 6, 28)))
    base = STRATEGY.tasks(cal, first_as_of)[-1]
    planned = plan_tasks(STRATEGY, base, cal, sessions)
    assert [(p.due, p.task.task_id, p.task.to_json()) for p in planned] == _day_by_day(cal, first_as_of, sessions)
    assert len(planned) >= 12
    if start > date(2023, 5, 1):
        assert sum(p.due == sessions[0] for p in planned) >= 3  # the catch-up, as that day's routine


def test_no_session_plans_nothing(cal: TradingCalendar) -> None:
    assert plan_tasks(STRATEGY, STRATEGY.tasks(cal, date(2023, 3, 31))[-1], cal, []) == []


def test_chunks_cover_every_session_once() -> None:
    days = [date(2024, 1, d) for d in range(1, 12)]
    parts = chunks(days, 4)
    assert [len(p) for p in parts] == [4, 4, 3] and sum(parts, []) == days


@pytest.mark.parametrize("start, end, chunk, message", [
    (date(2024, 2, 1), date(2024, 1, 1), 5, r"backfill start 2024-02-01 is after its end 2024-01-01"),
    (date(2024, 1, 1), date(2024, 2, 1), 0, r"chunk=0: the chunk size is a number of sessions from 1 to 260"),
    (date(2024, 1, 1), date(2024, 2, 1), 261, r"chunk=261"),
    (date(2024, 1, 1), date(2024, 2, 1), True, r"chunk=True"),
])
def test_bad_range_or_chunk(start: date, end: date, chunk: int, message: str) -> None:
    with pytest.raises(BackfillError, match=message):
        check_range(start, end, chunk)


def test_chunk_larger_than_the_range() -> None:
    days = [date(2024, 1, 2), date(2024, 1, 3)]
    check_chunk(2, days, days[0], days[-1])
    with pytest.raises(BackfillError, match=r"chunk=3 is larger than the 2 session\(s\) of 2024-01-02..2024-01-03"):
        check_chunk(3, days, days[0], days[-1])
