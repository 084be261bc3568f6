"""RollingGen / RollingTask on the real CSI 300 calendar (QLIB_SEMANTICS §1, §3, §11).

The spec's worked examples are on the 2008–2020 XSHG calendar; here they are re-derived on ours
(1,273 days, 2020-01-02..2025-04-07). Expected dates are stated twice: as literals (read off the
calendar) and as index arithmetic, so a failure shows which rule broke.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from quant_core.calendar import TradingCalendar
from quant_core.features.labels import LABEL0, get_label
from quant_core.models.rolling import (
    ProcessorSpec,
    RollingError,
    RollingGen,
    RollingTask,
    Segment,
    Segments,
    check_point_in_time,
    min_trunc_days,
    train_cutoff,
)

D = date.fromisoformat


@pytest.fixture(scope="module")
def cal(csi300_path: Path) -> TradingCalendar:
    return TradingCalendar(pd.read_parquet(csi300_path, columns=["date"])["date"].unique())


def seg(start: str, end: str | None) -> Segment:
    return Segment(D(start), None if end is None else D(end))


def make_task(
    train: tuple[str, str | None],
    valid: tuple[str, str | None],
    test: tuple[str, str | None],
    **fields: object,
) -> RollingTask:
    kwargs: dict[str, object] = {"strategy": "lgb_alpha158", "model_params": {"num_leaves": 64, "lr": 0.05}}
    kwargs.update(fields)
    segments = Segments(train=seg(*train), valid=seg(*valid), test=seg(*test))
    return RollingTask(segments=segments, **kwargs)  # type: ignore[arg-type]


@pytest.fixture()
def template_a() -> RollingTask:
    """Example A analogue: the rolling benchmark (step 20, trunc 21, expanding)."""
    return make_task(
        ("2020-01-01", "2021-12-31"),
        ("2022-01-01", "2022-12-31"),
        ("2023-01-01", "2024-06-30"),
        processors=(ProcessorSpec(name="RobustZScoreNorm", kwargs={"clip_outlier": True}),),
    )


@pytest.fixture()
def tasks_a(template_a: RollingTask, cal: TradingCalendar) -> list[RollingTask]:
    return RollingGen(step=20, rtype="expanding", trunc_days=21).generate(template_a, cal)


def test_calendar_is_the_real_csi300_one(cal: TradingCalendar) -> None:
    assert (len(cal), cal.first, cal.last) == (1273, D("2020-01-02"), D("2025-04-07"))


# -- example A: expanding, truncated ----------------------------------------------------------------
def test_a_first_task_aligned_step_long_and_truncated(
    tasks_a: list[RollingTask], cal: TradingCalendar
) -> None:
    t0 = tasks_a[0]
    i0 = cal.index(D("2023-01-03"))  # 2023-01-01 is a Sunday, 01-02 a holiday: aligned forward
    assert i0 == 728
    # train start aligned forward, train end already before the cut: unaffected
    assert t0.train == seg("2020-01-02", "2021-12-31")
    # valid start aligned forward (2022-01-01..03 closed); valid end cut to T - trunc_days
    assert t0.valid == seg("2022-01-04", "2022-12-02")
    assert t0.valid.end == cal[i0 - 21]
    # first test segment is exactly step days; the template's test end (2024-06-30) is ignored here
    assert t0.test == seg("2023-01-03", "2023-02-06")
    assert t0.test.end == cal[i0 + 19]
    assert len(cal.range(t0.test.start, t0.test.end)) == 20
    # other fields carried over unchanged
    assert t0.processors == (ProcessorSpec(name="RobustZScoreNorm", kwargs={"clip_outlier": True}),)
    assert (t0.strategy, t0.label, t0.feature_set) == ("lgb_alpha158", "LABEL0", "alpha158")


def test_a_following_tasks_and_count(tasks_a: list[RollingTask], cal: TradingCalendar) -> None:
    assert [str(t.segments) for t in tasks_a[1:3]] == [
        "train 2020-01-02..2022-02-07 | valid 2022-02-08..2022-12-30 | test 2023-02-07..2023-03-06",
        "train 2020-01-02..2022-03-07 | valid 2022-03-08..2023-02-06 | test 2023-03-07..2023-04-03",
    ]
    # test_end = align_end(2024-06-30) = 2024-06-28 (idx 1086): (1086 - 728) // 20 + 1 tasks
    assert cal.align_end(D("2024-06-30")) == D("2024-06-28") == cal[1086]
    assert len(tasks_a) == (1086 - 728) // 20 + 1 == 18
    last = tasks_a[-1]
    assert str(last.segments) == (
        "train 2020-01-02..2023-05-31 | valid 2023-06-01..2024-04-30 | test 2024-06-03..2024-07-01"
    )
    # the last test start is <= test_end; its end runs past it (handler_mod's case in Qlib)
    assert last.test.start <= D("2024-06-28") < last.test.end  # type: ignore[operator]
    assert cal.shift(last.test.start, 20) > D("2024-06-28")  # the next one would be too late


def test_a_expanding_train_valid_and_test_slide_gap_kept(
    tasks_a: list[RollingTask], cal: TradingCalendar
) -> None:
    ix = cal.index
    for prev, cur in zip(tasks_a, tasks_a[1:], strict=False):
        assert cur.train.start == D("2020-01-02")  # expanding: the start is fixed
        assert ix(cur.train.end) - ix(prev.train.end) == 20  # type: ignore[arg-type]
        for name in ("valid", "test"):
            p, c = getattr(prev, name), getattr(cur, name)
            assert ix(c.start) - ix(p.start) == 20 and ix(c.end) - ix(p.end) == 20
        # truncation once, carried forward: the gap before the test start stays trunc_days
        assert ix(cur.test.start) - ix(cur.valid.end) == 21  # type: ignore[arg-type]
        # consecutive test segments tile the calendar
        assert ix(cur.test.start) == ix(prev.test.end) + 1  # type: ignore[arg-type]
    assert len({t.task_id for t in tasks_a}) == len(tasks_a)


def test_a_sliding_moves_train_start_too(
    template_a: RollingTask, cal: TradingCalendar, tasks_a: list[RollingTask]
) -> None:
    sliding = RollingGen(step=20, rtype="sliding", trunc_days=21).generate(template_a, cal)
    assert len(sliding) == len(tasks_a)
    assert sliding[0].segments == tasks_a[0].segments  # the first task does not depend on rtype
    assert sliding[1].train == seg("2020-02-07", "2022-02-07")
    for k, (s, e) in enumerate(zip(sliding, tasks_a, strict=True)):
        assert cal.index(s.train.start) == 20 * k
        assert s.train.end == e.train.end
        assert (s.valid, s.test) == (e.valid, e.test)  # valid and test always slide


def test_truncation_cuts_valid_but_leaves_an_earlier_train(cal: TradingCalendar) -> None:
    # train ends 2022-12-30, after the cut (2022-12-02): both ends of every non-test segment are cut
    task = make_task(("2020-01-01", "2022-11-15"), ("2022-11-16", "2022-12-30"), ("2023-01-01", None))
    t0 = RollingGen(step=20, trunc_days=21).generate(task, cal)[0]
    assert t0.train == seg("2020-01-02", "2022-11-15")  # earlier than the cut: unaffected
    assert t0.valid == seg("2022-11-16", "2022-12-02")


def test_end_override_and_test_start_equal_to_end(template_a: RollingTask, cal: TradingCalendar) -> None:
    gen = RollingGen(step=20, trunc_days=21)
    # a task whose test start equals the end is still generated
    tasks = gen.generate(template_a, cal, end=D("2023-03-07"))
    assert [t.test.start for t in tasks] == [D("2023-01-03"), D("2023-02-07"), D("2023-03-07")]
    assert gen.generate(template_a, cal, end=D("2023-03-06"))[-1].test.start == D("2023-02-07")
    # an end past the calendar is clipped to its last day; the last test segment is then open
    far = gen.generate(template_a, cal, end=D("2030-01-01"))
    assert len(far) == (1272 - 728) // 20 + 1 == 28
    assert far[-1].test == Segment(cal[728 + 27 * 20], None) == seg("2025-03-31", None)
    assert far[:18] == gen.generate(template_a, cal)
    with pytest.raises(RollingError, match="before the template's test start 2023-01-03"):
        gen.generate(template_a, cal, end=D("2022-12-30"))


# -- example B: sliding, no truncation, and the prepare_tasks catch-up ----------------------------
@pytest.fixture()
def template_b() -> RollingTask:
    return make_task(("2023-01-01", "2023-03-31"), ("2023-04-01", "2023-05-31"), ("2023-06-01", "2023-09-10"))


def test_b_sliding_without_truncation(template_b: RollingTask, cal: TradingCalendar) -> None:
    gen = RollingGen(step=80, rtype="sliding")
    tasks = gen.generate(template_b, cal)
    # one task: the next start (2023-09-25) is after the template's test end 2023-09-10
    assert [str(t.segments) for t in tasks] == [
        "train 2023-01-03..2023-03-31 | valid 2023-04-03..2023-05-31 | test 2023-06-01..2023-09-22"
    ]
    assert cal.index(D("2023-09-22")) - cal.index(D("2023-06-01")) == 79  # 80 days, end 09-10 ignored
    # with trunc_days=3 the valid segment would end 3 days before the test start
    t3 = RollingGen(step=80, rtype="sliding", trunc_days=3).generate(template_b, cal)[0]
    assert t3.valid.end == D("2023-05-29") == cal[cal.index(D("2023-06-01")) - 3]


def test_b_following_catch_up(template_b: RollingTask, cal: TradingCalendar) -> None:
    gen = RollingGen(step=80, rtype="sliding")
    first = gen.generate(template_b, cal)[0]
    # fewer than step days since the latest test start: nothing to do
    assert gen.following(first, cal, D("2023-09-22")) == []
    assert gen.following(first, cal, D("2023-09-24")) == []  # a Sunday, aligns back to 09-22
    # exactly step days: one task, shifted from the latest one (no re-truncation)
    (nxt,) = gen.following(first, cal, D("2023-09-25"))
    assert str(nxt.segments) == (
        "train 2023-05-08..2023-07-31 | valid 2023-08-01..2023-09-22 | test 2023-09-25..2024-01-23"
    )
    # several steps missed: all the missing tasks, in order, equal to rolling them from scratch
    caught_up = gen.following(first, cal, D("2024-06-15"))
    starts = [t.test.start for t in caught_up]
    assert starts == [D("2023-09-25"), D("2024-01-24"), D("2024-05-30")]
    assert [cal.index(d) - cal.index(first.test.start) for d in starts] == [80, 160, 240]
    assert caught_up == gen.generate(template_b, cal, end=D("2024-06-15"))[1:]
    # as_of past the calendar is clipped to its last day
    assert gen.following(first, cal, D("2030-01-01")) == gen.generate(template_b, cal, end=cal.last)[1:]
    assert gen.following(caught_up[-1], cal, D("2024-06-15")) == []


def test_following_keeps_the_truncated_gap(tasks_a: list[RollingTask], cal: TradingCalendar) -> None:
    gen = RollingGen(step=20, trunc_days=21)
    more = gen.following(tasks_a[0], cal, cal[728 + 3 * 20])
    assert more == tasks_a[1:4]
    assert all(cal.index(t.test.start) - cal.index(t.valid.end) == 21 for t in more)  # type: ignore[arg-type]
    assert gen.following(tasks_a[0], cal, cal[728 + 19]) == []


# -- example C: open test end, and the exact-end case (Qlib #1660) --------------------------------
def test_c_open_ended_test_stops_at_the_calendar_end(cal: TradingCalendar) -> None:
    n = len(cal)
    task = make_task(("2020-01-01", "2023-12-31"), ("2024-01-01", "2024-09-30"), (str(cal[n - 100]), None))
    tasks = RollingGen(step=40, trunc_days=3).generate(task, cal)
    tests = [t.test for t in tasks]
    assert tests == [
        seg("2024-11-07", "2025-01-02"),  # exactly 40 days, though the template's test end is open
        seg("2025-01-03", "2025-03-07"),
        seg("2025-03-10", None),  # cal[n-20] + 39 runs past the calendar: open end
    ]
    assert [cal.index(t.start) for t in tests] == [n - 100, n - 60, n - 20]
    # the valid end (2024-09-30) is before the cut cal[n-103]: untouched
    assert tasks[0].valid == seg("2024-01-02", "2024-09-30")
    assert RollingGen(step=40, trunc_days=3).following(tasks[-1], cal, D("2030-01-01")) == []


def test_c_prime_step_landing_exactly_on_len_cal_stops_cleanly(cal: TradingCalendar) -> None:
    n = len(cal)
    task = make_task(("2020-01-01", "2023-12-31"), ("2024-01-01", "2024-09-30"), (str(cal[n - 80]), None))
    gen = RollingGen(step=40, trunc_days=3)
    tasks = gen.generate(task, cal)  # Qlib: TypeError '>' NoneType vs date on the third step
    assert [t.test for t in tasks] == [seg("2024-12-05", "2025-02-07"), seg("2025-02-10", "2025-04-07")]
    assert cal.index(tasks[-1].test.start) + 40 == n  # the next start would be exactly len(cal)
    assert tasks[-1].test.end == cal.last
    assert gen.following(tasks[-1], cal, cal.last) == []


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [0, -20])
def test_step_must_be_positive(step: int) -> None:
    with pytest.raises(RollingError, match="positive"):
        RollingGen(step=step)


def test_bad_generator_settings() -> None:
    with pytest.raises(RollingError, match="rtype"):
        RollingGen(rtype="rolling")  # type: ignore[arg-type]
    with pytest.raises(RollingError, match="trunc_days"):
        RollingGen(trunc_days=0)


@pytest.mark.parametrize("trunc_days", [None, 1, 2])
def test_trunc_days_below_lookahead_plus_one_is_a_leak(trunc_days: int | None) -> None:
    assert LABEL0.lookahead == 2
    with pytest.raises(RollingError, match=r"leak.*T-1 looks 2 days ahead, past the test start T.*>= 3"):
        RollingGen(step=20, trunc_days=trunc_days, label_lookahead=LABEL0.lookahead)
    RollingGen(step=20, trunc_days=3, label_lookahead=2)  # the minimum is fine


def test_min_trunc_days_and_for_label() -> None:
    assert min_trunc_days(LABEL0) == min_trunc_days("LABEL0") == min_trunc_days(1) == 3
    assert min_trunc_days(20) == min_trunc_days("LABEL_H20") == 22
    gen = RollingGen.for_label("LABEL0", step=20)
    assert (gen.trunc_days, gen.label_lookahead) == (3, 2)
    with pytest.raises(RollingError, match="leak"):
        RollingGen.for_label(20, trunc_days=21)  # Qlib's benchmark setting: one day short here


def test_template_label_looking_further_than_the_generator_is_refused(
    template_a: RollingTask, cal: TradingCalendar
) -> None:
    gen = RollingGen(step=20, trunc_days=21, label_lookahead=2)
    assert len(gen.generate(template_a, cal)) == 18
    h20 = make_task(
        ("2020-01-01", "2021-12-31"),
        ("2022-01-01", "2022-12-31"),
        ("2023-01-01", "2024-06-30"),
        label="LABEL_H20",
    )
    with pytest.raises(RollingError, match="leak: label LABEL_H20 looks 21 trading days ahead"):
        gen.generate(h20, cal)
    assert get_label("LABEL_H20").lookahead == 21


def test_point_in_time_cutoff_and_check(tasks_a: list[RollingTask], cal: TradingCalendar) -> None:
    t0 = tasks_a[0]
    # at the test start T only closes up to T-1 are known: label(t) needs t + L <= T - 1
    assert train_cutoff(t0, cal, 2) == cal[728 - 3] == D("2022-12-28")
    assert train_cutoff(t0, cal, 20) == cal[728 - 21] == t0.valid.end  # trunc 21 is exactly enough for L=20
    assert check_point_in_time(t0, cal, 20) == t0.valid.end
    # a weekend test start counts from the next trading day
    weekend = t0.with_segments(Segments(train=t0.train, valid=t0.valid, test=seg("2023-01-01", None)))
    assert train_cutoff(weekend, cal, 2) == D("2022-12-28")
    with pytest.raises(
        RollingError,
        match=r"valid segment 2022-01-04\.\.2022-12-02 ends 2022-12-02, after the cutoff 2022-12-01",
    ):
        check_point_in_time(t0, cal, 21)
    leaky = t0.with_segments(
        Segments(train=seg("2020-01-02", "2022-12-29"), valid=seg("2022-12-30", "2022-12-30"), test=t0.test)
    )
    with pytest.raises(RollingError, match=r"train segment .* ends 2022-12-29, after the cutoff 2022-12-28"):
        check_point_in_time(leaky, cal, 2)
    # a generator that knows the lookahead refuses to roll a leaky task forward
    with pytest.raises(RollingError, match="leak"):
        RollingGen(step=20, trunc_days=3, label_lookahead=2).following(leaky, cal, D("2023-06-30"))
    with pytest.raises(RollingError, match="only 2 trading days before"):
        train_cutoff(
            t0.with_segments(
                Segments(
                    train=seg("2020-01-02", "2020-01-02"),
                    valid=seg("2020-01-03", "2020-01-03"),
                    test=seg("2020-01-06", None),
                )
            ),
            cal,
            2,
        )


def test_segment_and_order_errors() -> None:
    with pytest.raises(RollingError, match="starts after it ends"):
        seg("2022-02-01", "2022-01-31")
    with pytest.raises(
        RollingError, match=r"train 2020-01-01\.\.2022-01-05 and valid 2022-01-01\.\.2022-12-31 overlap"
    ):
        make_task(("2020-01-01", "2022-01-05"), ("2022-01-01", "2022-12-31"), ("2023-01-01", None))
    with pytest.raises(
        RollingError, match="valid ends 2023-01-01, which must be before test starts 2023-01-01"
    ):
        make_task(("2020-01-01", "2021-12-31"), ("2022-01-01", "2023-01-01"), ("2023-01-01", None))
    with pytest.raises(RollingError, match="out of order"):
        make_task(("2022-01-01", "2022-12-31"), ("2020-01-01", "2021-12-31"), ("2023-01-01", None))
    with pytest.raises(RollingError, match="the valid segment 2022-01-01..open must have an end"):
        make_task(("2020-01-01", "2021-12-31"), ("2022-01-01", None), ("2023-01-01", None))


@pytest.mark.parametrize(
    ("train", "valid", "test", "bad"),
    [
        # a weekend: no trading day at all
        (
            ("2020-01-01", "2020-12-31"),
            ("2021-01-23", "2021-01-24"),
            ("2021-02-01", None),
            "valid segment 2021-01-23..2021-01-24",
        ),
        # entirely after the calendar
        (
            ("2020-01-01", "2024-12-31"),
            ("2025-01-02", "2025-03-31"),
            ("2026-01-01", "2026-06-30"),
            "test segment 2026-01-01..2026-06-30",
        ),
        # entirely before it
        (
            ("2019-01-01", "2019-12-31"),
            ("2020-01-01", "2020-12-31"),
            ("2021-01-01", None),
            "train segment 2019-01-01..2019-12-31",
        ),
    ],
)
def test_segment_without_trading_day_is_named(
    train: tuple[str, str],
    valid: tuple[str, str],
    test: tuple[str, str | None],
    bad: str,
    cal: TradingCalendar,
) -> None:
    task = make_task(train, valid, test)
    with pytest.raises(RollingError, match=f"the {bad} has no trading day"):
        RollingGen(step=20).generate(task, cal)


def test_truncation_errors(cal: TradingCalendar) -> None:
    # the cut lands before the calendar start
    early = make_task(("2020-01-01", "2020-01-03"), ("2020-01-06", "2020-01-08"), ("2020-01-09", None))
    with pytest.raises(
        RollingError, match="trunc_days=21 needs 21 trading days before the test start 2020-01-09"
    ):
        RollingGen(step=20, trunc_days=21).generate(early, cal)
    # train and valid both end after the cut: truncation collapses them onto the same day
    squeezed = make_task(("2020-01-01", "2022-12-15"), ("2022-12-16", "2022-12-30"), ("2023-01-01", None))
    with pytest.raises(
        RollingError,
        match=r"truncating by trunc_days=21 .*train 2020-01-02\.\.2022-12-02 and valid 2022-12-02",
    ):
        RollingGen(step=20, trunc_days=21).generate(squeezed, cal)


# -- the task and its id ----------------------------------------------------------------------------
def test_task_id_is_stable_and_content_addressed(template_a: RollingTask) -> None:
    again = make_task(
        ("2020-01-01", "2021-12-31"),
        ("2022-01-01", "2022-12-31"),
        ("2023-01-01", "2024-06-30"),
        processors=(ProcessorSpec(name="RobustZScoreNorm", kwargs={"clip_outlier": True}),),
        model_params={"lr": 0.05, "num_leaves": 64},  # other insertion order: same content
    )
    assert again is not template_a
    assert again.task_id == template_a.task_id and again == template_a and hash(again) == hash(template_a)
    assert len(template_a.task_id) == 16 and int(template_a.task_id, 16) >= 0
    assert len({again, template_a}) == 1
    # pinned: a change here means every stored task gets a new id (the registry would not find them)
    assert template_a.task_id == PINNED_ID

    changes = [
        template_a.model_copy(update={"strategy": "other"}),
        template_a.model_copy(update={"feature_set": "alpha360"}),
        template_a.model_copy(update={"label": "LABEL_H20"}),
        template_a.model_copy(update={"processors": ()}),
        template_a.model_copy(update={"processors": (ProcessorSpec(name="RobustZScoreNorm"),)}),
        template_a.model_copy(update={"model_params": {"num_leaves": 64, "lr": 0.06}}),
        template_a.model_copy(update={"model_params": {"num_leaves": 64, "lr": 0.05, "seed": 1}}),
        template_a.model_copy(update={"model_params": {"num_leaves": 64.0, "lr": 0.05}}),
        template_a.with_segments(
            Segments(train=seg("2020-01-01", "2021-12-30"), valid=template_a.valid, test=template_a.test)
        ),
        template_a.with_segments(
            Segments(train=template_a.train, valid=template_a.valid, test=seg("2023-01-02", "2024-06-30"))
        ),
    ]
    ids = {t.task_id for t in changes}
    assert len(ids) == len(changes) and template_a.task_id not in ids
    # the test end is not part of the id: it does not change the model, and how far it is known
    # depends on how much calendar the generator saw (issue 10 item 6)
    open_end = template_a.with_segments(
        Segments(train=template_a.train, valid=template_a.valid, test=seg("2023-01-01", None)))
    assert open_end.task_id == template_a.task_id and open_end != template_a


# changed once, on purpose, when the test end left the id (issue 10 item 6)
PINNED_ID = "fcbbe15e82d4a02b"


@pytest.mark.parametrize("as_of", ["2021-06-30", "2023-03-15", "2024-01-02"])
def test_task_ids_do_not_depend_on_how_much_calendar_is_known(cal: TradingCalendar, as_of: str) -> None:
    """A backfill knows the calendar years past as_of, a daily run ends at as_of: same tasks, same ids."""
    gen = RollingGen(step=20, rtype="expanding", trunc_days=3, label_lookahead=2)
    template = make_task(("2020-01-01", "2020-12-31"), ("2021-01-01", "2021-03-31"), ("2021-04-01", None))
    known = TradingCalendar(cal.range(None, as_of))
    assert known.last < cal.last
    short, full = gen.generate(template, known, end=as_of), gen.generate(template, cal, end=as_of)
    assert [t.task_id for t in short] == [t.task_id for t in full] and len(short) >= 3
    # content differs at most in the last test end, which only the full calendar may know
    for a, b in zip(short, full, strict=True):
        assert (a.train, a.valid, a.test.start) == (b.train, b.valid, b.test.start)
    assert short[-1].test.end is None or short[-1].test.end == full[-1].test.end
    # catch-up from an earlier task: the same tasks as generating everything at once
    for k in (0, len(short) // 2):
        a = gen.following(short[k], known, as_of)
        b = gen.following(full[k], cal, as_of)
        assert [t.task_id for t in a] == [t.task_id for t in b] == [t.task_id for t in short[k + 1:]]
    # day by day: each task generated on its own test start (calendar ending there) has the same id
    day_by_day = [short[0]]
    for d in known.range(short[0].test.start, None)[1:]:
        day_by_day += gen.following(day_by_day[-1], TradingCalendar(cal.range(None, d)), d)
    assert [t.task_id for t in day_by_day] == [t.task_id for t in short]


def test_task_id_is_the_same_in_another_process(template_a: RollingTask) -> None:
    code = (
        "import sys; from quant_core.models.rolling import RollingTask; "
        "print(RollingTask.from_json(sys.stdin.read()).task_id)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=template_a.to_json(),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == template_a.task_id


def test_json_round_trip_and_frozen(template_a: RollingTask) -> None:
    text = template_a.to_json()
    assert '"start":"2023-01-01"' in text and '"end":"2024-06-30"' in text
    back = RollingTask.from_json(text)
    assert back == template_a and back.task_id == template_a.task_id
    with pytest.raises(RollingError, match="unexpected: Extra inputs are not permitted"):
        RollingTask.from_json(text[:-1] + ',"unexpected":1}')
    with pytest.raises(ValidationError, match="frozen"):
        template_a.strategy = "x"  # type: ignore[misc]
    with pytest.raises(RollingError, match="model_params must hold plain JSON values"):
        RollingTask(strategy="s", model_params={"lr": np.float32(0.1)}, segments=template_a.segments)
    with pytest.raises(RollingError, match="model_params must hold plain JSON values"):
        RollingTask(strategy="s", model_params={"lr": float("nan")}, segments=template_a.segments)
    with pytest.raises(RollingError, match="strategy"):
        RollingTask(strategy="", model_params={}, segments=template_a.segments)
