"""Rolling tasks: Qlib's RollingGen and RollingStrategy catch-up (QLIB_SEMANTICS §1–§3), bugs fixed.

A :class:`RollingTask` is one model to train: a template (strategy, features, label, processors, model
parameters) plus three date segments ``train``, ``valid`` and ``test``. Every segment is **inclusive**
on both ends; only the test segment may be open (``end=None``: up to the latest data).
:class:`RollingGen` turns a template into the sequence of rolling tasks exactly as Qlib does:

- segments are aligned to the trading calendar (a start forward, an end backward);
- the first test segment is exactly ``step`` trading days, whatever the template's test end says;
- with ``trunc_days`` every train/valid endpoint is cut to at most ``T - trunc_days`` trading days,
  ``T`` being the first test start, once, on the first task; the later tasks shift the cut segments,
  so the gap stays the same;
- each following task shifts every segment by ``step`` trading days: ``train`` grows (its start is
  fixed) when rolling is ``"expanding"`` and slides otherwise; ``valid`` and ``test`` always slide;
- rolling stops at the first test start after the end date or past the calendar. Qlib's off-by-one
  (#1660: a ``TypeError`` when a shift lands exactly one past the calendar) is fixed: it stops cleanly.

Point in time (DESIGN invariant 2). The label of day ``t`` needs the close of ``t + L`` (``L`` =
:attr:`quant_core.features.labels.Label.lookahead`). A model for the test segment starting at ``T`` is trained
before the close of ``T``, when the last known close is that of ``T-1``, so the label of ``t`` may be
used only if ``t + L <= T - 1``, i.e. ``t <= T - (L + 1)`` (:func:`train_cutoff`). Truncating by
``trunc_days >= L + 1`` (:func:`min_trunc_days`) guarantees it; :class:`RollingGen` refuses a smaller
``trunc_days`` when it is told the lookahead, and :func:`check_point_in_time` refuses any task whose
train/valid segment ends after the cutoff. This is one day stricter than Qlib's rolling benchmark
(``trunc_days = horizon + 1 = L``, which assumes training after the close of ``T``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quant_core.calendar import TradingCalendar, to_date
from quant_core.errors import CalendarError, QonlineError
from quant_core.features.labels import Label, LabelError, get_label

log = logging.getLogger(__name__)

RollType = Literal["expanding", "sliding"]
ROLL_TYPES: tuple[RollType, ...] = ("expanding", "sliding")
SEGMENT_NAMES: tuple[Literal["train", "valid", "test"], ...] = ("train", "valid", "test")


class RollingError(QonlineError, ValueError):
    """Invalid rolling input: bad segments, a generator setting, or a point-in-time (look-ahead) leak."""


# -- helpers ----------------------------------------------------------------------------------------
def _explain(exc: ValidationError, what: str) -> str:
    """One sentence per validation error, without pydantic's ``Value error,`` prefix."""
    parts = []
    for err in exc.errors(include_url=False):
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"invalid {what}: " + "; ".join(parts)


def _canonical_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, no NaN); the basis of content hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _json_params(value: dict[str, Any], field: str) -> dict[str, Any]:
    try:
        _canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{field} must hold plain JSON values (str, int, float, bool, None, lists, dicts; "
            f"no NaN/inf, no numpy scalars) so the task id is stable: {exc}"
        ) from None
    return value


def _fmt(seg: Segment) -> str:
    return f"{seg.start}..{seg.end if seg.end is not None else 'open'}"


# -- segments ---------------------------------------------------------------------------------------
class Segment(BaseModel):
    """An inclusive date range ``[start, end]``; ``end=None`` is open (allowed for ``test`` only).

    Args:
        start: first date, inclusive.
        end: last date, inclusive, or ``None`` (open: up to the latest data).

    Raises:
        RollingError: ``start > end`` or a value that is not a date.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date
    end: date | None = None

    def __init__(self, start: date | str, end: date | str | None = None, **extra: Any) -> None:
        # a custom __init__ (also run by model_validate*): turn pydantic's error into a RollingError
        try:
            super().__init__(start=start, end=end, **extra)
        except ValidationError as exc:
            raise RollingError(_explain(exc, "segment")) from exc

    @field_validator("start", "end", mode="before")
    @classmethod
    def _to_date(cls, value: Any) -> Any:
        # accept pandas/numpy timestamps and ISO strings the same way the calendar does
        return None if value is None else to_date(value)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end is not None and self.start > self.end:
            raise ValueError(f"segment {self.start}..{self.end} starts after it ends")
        return self


class Segments(BaseModel):
    """The ``train``, ``valid`` and ``test`` segments of a task, in order and without overlap.

    Rules: ``train`` and ``valid`` have an end (only ``test`` may be open), and
    ``train.end < valid.start`` and ``valid.end < test.start`` (dates are inclusive, so sharing a day
    is an overlap).

    Raises:
        RollingError: a rule is broken; the message names the segments and their dates.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: Segment
    valid: Segment
    test: Segment

    def __init__(self, *, train: Segment, valid: Segment, test: Segment, **extra: Any) -> None:
        try:
            super().__init__(train=train, valid=valid, test=test, **extra)
        except ValidationError as exc:
            raise RollingError(_explain(exc, "segments")) from exc

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        for name in ("train", "valid"):
            seg: Segment = getattr(self, name)
            if seg.end is None:
                raise ValueError(f"the {name} segment {_fmt(seg)} must have an end (only test may be open)")
        assert self.train.end is not None and self.valid.end is not None  # checked above
        if not self.train.end < self.valid.start:
            raise ValueError(
                f"train {_fmt(self.train)} and valid {_fmt(self.valid)} overlap or are out of order: "
                f"train ends {self.train.end}, which must be before valid starts {self.valid.start}"
            )
        if not self.valid.end < self.test.start:
            raise ValueError(
                f"valid {_fmt(self.valid)} and test {_fmt(self.test)} overlap or are out of order: "
                f"valid ends {self.valid.end}, which must be before test starts {self.test.start}"
            )
        return self

    def __str__(self) -> str:
        return f"train {_fmt(self.train)} | valid {_fmt(self.valid)} | test {_fmt(self.test)}"


# -- task -------------------------------------------------------------------------------------------
class ProcessorSpec(BaseModel):
    """A data processor by name with its keyword arguments (consumed by the processors module).

    Args:
        name: the processor's registered name, e.g. ``"RobustZScoreNorm"``.
        kwargs: JSON-able keyword arguments.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kwargs")
    @classmethod
    def _json_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_params(value, "processor kwargs")

    def __hash__(self) -> int:
        # the default frozen hash would fail on the kwargs dict
        return hash(_canonical_json(self.model_dump(mode="json")))


class RollingTask(BaseModel):
    """One rolling model: what to train and on which dates.

    Attributes:
        strategy: the strategy (and MLflow experiment) the task belongs to.
        feature_set: feature set name.
        label: label name (``"LABEL0"``, ``"LABEL_H<h>"``).
        processors: data processors, applied in order.
        model_params: model hyper-parameters (JSON values only).
        segments: train/valid/test, inclusive dates; the test end may be ``None`` (open).

    The model is frozen (the ``dict`` fields are not deep-frozen: do not mutate them). Equality is
    the canonical JSON content; the hash follows :attr:`task_id`, which leaves out the test end (see
    there), so equal tasks have equal hashes.

    Raises:
        RollingError: on construction with an invalid field (unknown fields are refused).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str = Field(min_length=1)
    feature_set: str = Field(default="alpha158", min_length=1)
    label: str = Field(default="LABEL0", min_length=1)
    processors: tuple[ProcessorSpec, ...] = ()
    model_params: dict[str, Any]
    segments: Segments

    def __init__(
        self,
        *,
        strategy: str,
        model_params: dict[str, Any],
        segments: Segments,
        feature_set: str = "alpha158",
        label: str = "LABEL0",
        processors: tuple[ProcessorSpec, ...] = (),
        **extra: Any,
    ) -> None:
        try:
            super().__init__(
                strategy=strategy,
                feature_set=feature_set,
                label=label,
                processors=processors,
                model_params=model_params,
                segments=segments,
                **extra,
            )
        except ValidationError as exc:
            raise RollingError(_explain(exc, "rolling task")) from exc

    @field_validator("model_params")
    @classmethod
    def _json_model_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_params(value, "model_params")

    # -- identity ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        """Canonical JSON of the whole content (sorted keys, ISO dates)."""
        return _canonical_json(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, text: str | bytes) -> RollingTask:
        """Parse :meth:`to_json` output (or any JSON of the fields).

        Raises:
            RollingError: the JSON is not a valid task.
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise RollingError(_explain(exc, "rolling task JSON")) from exc

    @property
    def task_id(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical content without the test end.

        The id names the *model*: what it learns from (features, label, processors, parameters,
        train and valid segments) and the test start it is made for. The test end is left out: it
        does not change the model, and it depends on how much calendar is known when the task is
        generated (a daily run at the test start cannot know the day ``step`` sessions later, a
        backfill or a catch-up run can). So a task has one id whoever generates it. Same in every
        process (no Python hash involved).
        """
        doc = self.model_dump(mode="json")
        del doc["segments"]["test"]["end"]
        return hashlib.sha256(_canonical_json(doc).encode("ascii")).hexdigest()[:16]

    def __hash__(self) -> int:
        return hash(self.task_id)

    def __eq__(self, other: object) -> bool:
        # content equality, consistent with the hash ({"lr": 1} and {"lr": 1.0} are different tasks)
        if not isinstance(other, RollingTask):
            return NotImplemented
        return self.to_json() == other.to_json()

    # -- convenience ------------------------------------------------------------------------------
    @property
    def train(self) -> Segment:
        return self.segments.train

    @property
    def valid(self) -> Segment:
        return self.segments.valid

    @property
    def test(self) -> Segment:
        return self.segments.test

    def with_segments(self, segments: Segments) -> RollingTask:
        """The same task with other segments (a new task, with a new id)."""
        if not isinstance(segments, Segments):
            raise RollingError(f"with_segments needs a Segments, got {type(segments).__name__}")
        # deep: tasks never share their dicts (Qlib deep-copies too)
        return self.model_copy(update={"segments": segments}, deep=True)

    def __str__(self) -> str:
        return f"RollingTask({self.strategy} {self.task_id}: {self.segments})"


# -- point in time ----------------------------------------------------------------------------------
def min_trunc_days(label: Label | str | int) -> int:
    """The smallest leak-free ``trunc_days`` for a label: ``label.lookahead + 1`` (3 for ``LABEL0``).

    Args:
        label: a :class:`Label`, a label name or a horizon.

    Raises:
        LabelError: an unknown label.
    """
    lab = label if isinstance(label, Label) else get_label(label)
    return lab.lookahead + 1


def _check_lookahead(lookahead: int) -> None:
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise RollingError(f"a label lookahead must be an integer >= 0, got {lookahead!r}")


def train_cutoff(task: RollingTask, calendar: TradingCalendar, lookahead: int) -> date:
    """The last date whose label is observable when the model for ``task``'s test segment is trained.

    The model for the test segment starting at ``T`` is trained before the close of ``T``: the last
    known close is that of ``T-1`` (the trading day before ``T``). The label of ``t`` needs the close
    of ``t + lookahead``, so it is known iff ``t + lookahead <= T - 1``: the cutoff is
    ``T - (lookahead + 1)`` trading days. Training and validation rows must be dated ``<= cutoff``
    (inclusive).

    Args:
        task: the task; only its test start ``T`` matters (a non-trading ``T`` aligns forward).
        calendar: the trading calendar.
        lookahead: the label's lookahead ``L`` (:attr:`Label.lookahead`, 2 for ``LABEL0``).

    Raises:
        RollingError: an invalid lookahead, ``T`` after the calendar, or fewer than ``L + 1`` trading
            days before ``T`` (no label is observable yet).
    """
    _check_lookahead(lookahead)
    t_start = task.segments.test.start
    i = calendar.idx_start(t_start)
    if i >= len(calendar):
        raise RollingError(
            f"the test segment starts on {t_start}, after the last trading day of {calendar!r}"
        )
    j = i - (lookahead + 1)
    if j < 0:
        raise RollingError(
            f"no label with lookahead {lookahead} is observable before the test start {t_start}: "
            f"the calendar has only {i} trading days before it, {lookahead + 1} are needed"
        )
    return calendar[j]


def check_point_in_time(task: RollingTask, calendar: TradingCalendar, lookahead: int) -> date:
    """Refuse a task whose train or valid segment ends after :func:`train_cutoff`.

    Args:
        task: the task to check.
        calendar: the trading calendar.
        lookahead: the label's lookahead (:attr:`Label.lookahead`).

    Returns:
        The cutoff date (inclusive): training and validation rows must be dated on or before it.

    Raises:
        RollingError: a segment ends after the cutoff; the message names it, its end and the cutoff.
    """
    cutoff = train_cutoff(task, calendar, lookahead)
    for name in ("train", "valid"):
        seg: Segment = getattr(task.segments, name)
        if seg.end is None or seg.end > cutoff:
            raise RollingError(
                f"look-ahead leak in task {task.task_id}: the {name} segment {_fmt(seg)} ends "
                f"{seg.end if seg.end is not None else 'open'}, after the cutoff {cutoff}; a label looks "
                f"{lookahead} trading days ahead, so at the test start {task.segments.test.start} only "
                f"labels dated on or before {cutoff} are known (truncate with trunc_days >= {lookahead + 1})"
            )
    return cutoff


# -- the generator ----------------------------------------------------------------------------------
class RollingGen:
    """Qlib's RollingGen over a :class:`TradingCalendar` (QLIB_SEMANTICS §1), with bugs fixed.

    Args:
        step: trading days between consecutive test starts, and the length of each test segment.
        rtype: ``"expanding"`` (train keeps its start, its end moves) or ``"sliding"`` (train moves).
            ``valid`` and ``test`` always slide.
        trunc_days: cut every train/valid endpoint to at most ``T - trunc_days`` trading days, ``T``
            the first test start (``None``: no cut).
        label_lookahead: the label's lookahead ``L``. When given, point in time is enforced:
            ``trunc_days`` must be ``>= L + 1``, the template's label must not look further ahead,
            and every generated task passes :func:`check_point_in_time`.

    Raises:
        RollingError: ``step <= 0``, an unknown ``rtype``, ``trunc_days < 1``, or a ``trunc_days``
            that leaks labels past the test start.
    """

    __slots__ = ("label_lookahead", "rtype", "step", "trunc_days")

    def __init__(
        self,
        step: int = 40,
        rtype: RollType = "expanding",
        trunc_days: int | None = None,
        label_lookahead: int | None = None,
    ) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
            raise RollingError(f"the rolling step must be a positive number of trading days, got {step!r}")
        if rtype not in ROLL_TYPES:
            raise RollingError(f"rtype must be one of {ROLL_TYPES}, got {rtype!r}")
        if trunc_days is not None and (
            isinstance(trunc_days, bool) or not isinstance(trunc_days, int) or trunc_days < 1
        ):
            raise RollingError(f"trunc_days must be None or an integer >= 1, got {trunc_days!r}")
        if label_lookahead is not None:
            _check_lookahead(label_lookahead)
            _require_trunc(trunc_days, label_lookahead, "the label")
        self.step = step
        self.rtype: RollType = rtype
        self.trunc_days = trunc_days
        self.label_lookahead = label_lookahead

    @classmethod
    def for_label(
        cls,
        label: Label | str | int,
        step: int = 40,
        rtype: RollType = "expanding",
        trunc_days: int | None = None,
    ) -> RollingGen:
        """A point-in-time generator for a label; ``trunc_days`` defaults to :func:`min_trunc_days`."""
        lab = label if isinstance(label, Label) else get_label(label)
        trunc = min_trunc_days(lab) if trunc_days is None else trunc_days
        return cls(step=step, rtype=rtype, trunc_days=trunc, label_lookahead=lab.lookahead)

    def __repr__(self) -> str:
        return (
            f"RollingGen(step={self.step}, rtype={self.rtype!r}, trunc_days={self.trunc_days}, "
            f"label_lookahead={self.label_lookahead})"
        )

    # -- public -----------------------------------------------------------------------------------
    def generate(
        self, template: RollingTask, calendar: TradingCalendar, end: date | str | None = None
    ) -> list[RollingTask]:
        """All rolling tasks of a template, the first one first.

        Args:
            template: the task template; its segments are aligned to ``calendar`` (a start to the
                first trading day on or after it, an end to the last one on or before it).
            calendar: the trading calendar (the data calendar: test segments never run past it;
                an end that would is ``None``, open).
            end: the last allowed test start, inclusive. ``None``: the template's test end, or the
                calendar's last day when that is open or later. A given ``end`` later than the
                calendar is clipped to its last day.

        Returns:
            ``[first, *following]``. The first test segment is exactly ``step`` trading days from the
            aligned test start (the template's test end only bounds the rolling). Each following
            task is shifted by ``step``; the last one starts on or before ``end`` and its test end
            may run past ``end`` or be ``None``.

        Raises:
            RollingError: a segment has no trading day on the calendar, ``end`` is before the test
                start, truncation needs days before the calendar start or empties a segment, or
                point in time is violated (see ``label_lookahead``).
        """
        if not len(calendar):
            raise RollingError("cannot roll on an empty trading calendar")
        self._check_template_label(template)
        aligned = {
            name: _align_segment(name, getattr(template.segments, name), calendar) for name in SEGMENT_NAMES
        }
        test_start = aligned["test"].start
        test_end = self._test_end(aligned["test"], calendar, end)

        i0 = calendar.index(test_start)
        first_test = Segment(test_start, _date_or_none(calendar, i0 + self.step - 1))
        train, valid = aligned["train"], aligned["valid"]
        if self.trunc_days is not None:
            train = self._truncate("train", train, i0, calendar)
            valid = self._truncate("valid", valid, i0, calendar)
        try:
            segments = Segments(train=train, valid=valid, test=first_test)
        except RollingError as exc:
            raise RollingError(
                f"truncating by trunc_days={self.trunc_days} before the test start {test_start} "
                f"leaves no valid layout of the template's segments ({exc})"
            ) from exc
        first = template.with_segments(segments)
        tasks = [first, *self._roll(first, calendar, test_end)]
        self._verify(tasks, calendar)
        log.info(
            "rolled %s into %d tasks (step %d, %s, trunc_days %s): test starts %s..%s",
            template.strategy,
            len(tasks),
            self.step,
            self.rtype,
            self.trunc_days,
            tasks[0].segments.test.start,
            tasks[-1].segments.test.start,
        )
        return tasks

    def following(self, last: RollingTask, calendar: TradingCalendar, as_of: date | str) -> list[RollingTask]:
        """The tasks that follow ``last`` up to ``as_of`` (RollingStrategy.prepare_tasks catch-up).

        Args:
            last: the latest task (e.g. the online model's); its segments are already truncated and
                are only shifted, never truncated again.
            calendar: the trading calendar.
            as_of: the current date; aligned to the last trading day on or before it (clipped to the
                calendar's last day).

        Returns:
            Every task whose test start is on or before ``as_of``: ``[]`` when fewer than ``step``
            trading days have passed since ``last``'s test start, several when steps were missed.

        Raises:
            RollingError: ``as_of`` is before the calendar, or point in time is violated.
        """
        if not len(calendar):
            raise RollingError("cannot roll on an empty trading calendar")
        self._check_template_label(last)
        try:
            limit = calendar.align_end(as_of)
        except CalendarError as exc:
            raise RollingError(f"cannot roll up to as_of={as_of}: {exc}") from exc
        tasks = list(self._roll(last, calendar, limit))
        self._verify(tasks, calendar)
        log.info(
            "%d task(s) follow %s (test start %s) up to %s",
            len(tasks),
            last.task_id,
            last.segments.test.start,
            limit,
        )
        return tasks

    # -- internals --------------------------------------------------------------------------------
    def _check_template_label(self, template: RollingTask) -> None:
        if self.label_lookahead is None:
            return
        try:
            lookahead = get_label(template.label).lookahead
        except LabelError as exc:
            raise RollingError(
                f"cannot check point in time for task label {template.label!r}: {exc}"
            ) from exc
        _require_trunc(self.trunc_days, lookahead, f"label {template.label}")

    def _test_end(self, test: Segment, calendar: TradingCalendar, end: date | str | None) -> date:
        if end is None:
            # Qlib's transform_end_date: open or past the calendar -> the calendar's last day
            return calendar.last if test.end is None else min(test.end, calendar.last)
        limit = min(to_date(end), calendar.last)
        if limit < test.start:
            raise RollingError(f"the rolling end {limit} is before the template's test start {test.start}")
        return limit

    def _truncate(self, name: str, seg: Segment, i0: int, calendar: TradingCalendar) -> Segment:
        assert self.trunc_days is not None and seg.end is not None
        cut = i0 - self.trunc_days
        if cut < 0:
            raise RollingError(
                f"trunc_days={self.trunc_days} needs {self.trunc_days} trading days before the test "
                f"start {calendar[i0]}, but the calendar has only {i0}; the {name} segment "
                f"{_fmt(seg)} cannot be truncated"
            )
        return Segment(
            calendar[min(calendar.idx_start(seg.start), cut)],
            calendar[min(calendar.idx_start(seg.end), cut)],
        )

    def _roll(self, task: RollingTask, calendar: TradingCalendar, test_end: date) -> list[RollingTask]:
        """Shift ``task`` by ``step`` again and again while the test start is ``<= test_end``."""
        out: list[RollingTask] = []
        prev = task
        while True:
            test = _shift(prev.segments.test, self.step, "sliding", calendar)
            if test is None or test.start > test_end:
                # past the calendar (Qlib #1660: TypeError when exactly one past) or past the end
                break
            train = _shift(prev.segments.train, self.step, self.rtype, calendar)
            valid = _shift(prev.segments.valid, self.step, "sliding", calendar)
            # both precede the test start, which is on the calendar, so neither can fall off it
            assert train is not None and valid is not None
            prev = prev.with_segments(Segments(train=train, valid=valid, test=test))
            out.append(prev)
        return out

    def _verify(self, tasks: list[RollingTask], calendar: TradingCalendar) -> None:
        if self.label_lookahead is None:
            return
        for task in tasks:
            check_point_in_time(task, calendar, self.label_lookahead)


def _require_trunc(trunc_days: int | None, lookahead: int, subject: str) -> None:
    """Refuse a ``trunc_days`` that lets a train/valid label look past the test start."""
    need = lookahead + 1
    if trunc_days is not None and trunc_days >= need:
        return
    got = (
        "trunc_days=None does not truncate at all"
        if trunc_days is None
        else f"trunc_days={trunc_days} keeps days up to T-{trunc_days}"
    )
    raise RollingError(
        f"look-ahead leak: {subject} looks {lookahead} trading days ahead, so a train/valid label at "
        f"T-1 looks {lookahead} days ahead, past the test start T. At T only closes up to T-1 are "
        f"known, so the last train/valid day must be T-{need} or earlier, but {got}; "
        f"use trunc_days >= {need} (min_trunc_days)"
    )


def _date_or_none(calendar: TradingCalendar, i: int) -> date | None:
    """``calendar[i]``, or ``None`` (open) when ``i`` is past the calendar's end."""
    return calendar[i] if i < len(calendar) else None


def _align_segment(name: str, seg: Segment, calendar: TradingCalendar) -> Segment:
    """Align a segment: start forward, end backward; refuse one without a trading day."""
    try:
        start = calendar.align_start(seg.start)
        end = None if seg.end is None else calendar.align_end(seg.end)
    except CalendarError as exc:
        raise RollingError(
            f"the {name} segment {_fmt(seg)} has no trading day on {calendar!r}: {exc}"
        ) from exc
    if end is not None and start > end:
        raise RollingError(
            f"the {name} segment {_fmt(seg)} has no trading day on {calendar!r} "
            f"(first trading day on or after its start: {start}; last on or before its end: {end})"
        )
    return Segment(start, end)


def _shift(seg: Segment, step: int, how: RollType, calendar: TradingCalendar) -> Segment | None:
    """Shift a segment by ``step`` trading days (Qlib's TimeAdjuster.shift, off-by-one fixed).

    ``"sliding"`` moves both ends, ``"expanding"`` the end only. An end past the calendar becomes
    ``None`` (open); a start past it returns ``None``: the rolling is over.
    """
    start_idx = calendar.idx_start(seg.start)
    if how == "sliding":
        start_idx += step
    if start_idx >= len(calendar):
        return None
    end = None if seg.end is None else _date_or_none(calendar, calendar.idx_end(seg.end) + step)
    return Segment(calendar[start_idx], end)
