"""The trading calendar: the sorted set of dates that have bars (QLIB_SEMANTICS §2, bugs fixed).

Alignment follows Qlib's TimeAdjuster: a *start* aligns forward to the first trading day on or
after it, an *end* aligns backward to the last trading day on or before it. Unlike Qlib nothing
wraps around or clips silently: a date past either end of the calendar is a :class:`CalendarError`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Literal, overload

import numpy as np
import pandas as pd

from quant_core.errors import CalendarError

Align = Literal["start", "end"]


def to_date(value: date | datetime | str | np.datetime64 | pd.Timestamp) -> date:
    """Normalise a date-like value (``date``, ``datetime``, ISO string, numpy/pandas) to ``date``."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            raise CalendarError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from exc
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        raise CalendarError("a date is missing (NaT)")
    return ts.date()


class TradingCalendar(Sequence[date]):
    """Sorted unique trading dates with Qlib-style alignment and shifting.

    Args:
        dates: any iterable of date-likes; duplicates are removed and the result sorted.
    """

    __slots__ = ("_dates", "_pos")

    def __init__(self, dates: Iterable[date | datetime | str | np.datetime64 | pd.Timestamp]) -> None:
        self._dates: tuple[date, ...] = tuple(sorted({to_date(d) for d in dates}))
        self._pos: dict[date, int] = {d: i for i, d in enumerate(self._dates)}

    # -- sequence protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._dates)

    @overload
    def __getitem__(self, i: int) -> date: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[date, ...]: ...
    def __getitem__(self, i: int | slice) -> date | tuple[date, ...]:
        if isinstance(i, slice):
            return self._dates[i]
        if i < 0 or i >= len(self._dates):
            # negative indices would wrap around silently (Qlib's TimeAdjuster.get does): refuse
            raise CalendarError(f"calendar index {i} is outside 0..{len(self._dates) - 1}")
        return self._dates[i]

    def __iter__(self) -> Iterator[date]:
        return iter(self._dates)

    def __contains__(self, value: object) -> bool:
        try:
            return to_date(value) in self._pos  # type: ignore[arg-type]
        except (CalendarError, ValueError, TypeError):
            return False

    def __repr__(self) -> str:
        if not self._dates:
            return "TradingCalendar([])"
        return f"TradingCalendar({self._dates[0]}..{self._dates[-1]}, {len(self)} days)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TradingCalendar) and self._dates == other._dates

    def __hash__(self) -> int:
        return hash(self._dates)

    # -- basic facts ------------------------------------------------------------------------------
    @property
    def dates(self) -> tuple[date, ...]:
        return self._dates

    @property
    def first(self) -> date:
        self._require_nonempty()
        return self._dates[0]

    @property
    def last(self) -> date:
        self._require_nonempty()
        return self._dates[-1]

    def _require_nonempty(self) -> None:
        if not self._dates:
            raise CalendarError("the trading calendar is empty (no bars in the lake yet)")

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        """Position of a trading day; :class:`CalendarError` if it is not one."""
        d = to_date(value)  # type: ignore[arg-type]
        try:
            return self._pos[d]
        except KeyError:
            raise CalendarError(f"{d} is not a trading day of {self!r}") from None

    # -- alignment --------------------------------------------------------------------------------
    def idx_start(self, value: date | str) -> int:
        """Index of the first trading day on or after ``value`` (may equal ``len``: past the end)."""
        return bisect.bisect_left(self._dates, to_date(value))

    def idx_end(self, value: date | str) -> int:
        """Index of the last trading day on or before ``value`` (may be -1: before the start)."""
        return bisect.bisect_right(self._dates, to_date(value)) - 1

    def align_start(self, value: date | str) -> date:
        """First trading day on or after ``value``.

        Raises:
            CalendarError: ``value`` is after the last trading day (Qlib raises IndexError).
        """
        self._require_nonempty()
        i = self.idx_start(value)
        if i >= len(self._dates):
            raise CalendarError(
                f"no trading day on or after {to_date(value)}: the calendar ends on {self.last}"
            )
        return self._dates[i]

    def align_end(self, value: date | str) -> date:
        """Last trading day on or before ``value``.

        Raises:
            CalendarError: ``value`` is before the first trading day (Qlib wraps to the last day).
        """
        self._require_nonempty()
        i = self.idx_end(value)
        if i < 0:
            raise CalendarError(
                f"no trading day on or before {to_date(value)}: the calendar starts on {self.first}"
            )
        return self._dates[i]

    def align(self, value: date | str, how: Align) -> date:
        """:meth:`align_start` or :meth:`align_end` by name."""
        return self.align_start(value) if how == "start" else self.align_end(value)

    # -- shifting ---------------------------------------------------------------------------------
    def shift(self, value: date | str, n: int, *, align: Align | None = None, clip: bool = False) -> date:
        """The trading day ``n`` trading days after (``n < 0``: before) ``value``.

        Args:
            value: the base date. With ``align=None`` it must be a trading day; ``"end"`` first
                aligns it backward (Qlib's ``align="left"``), ``"start"`` forward (``"right"``).
            n: number of trading days to move.
            clip: clamp the result to the calendar's ends instead of raising.

        Raises:
            CalendarError: the base is not a trading day (``align=None``), or the result falls
                outside the calendar and ``clip`` is false.
        """
        base = self.index(value) if align is None else self._pos[self.align(value, align)]
        target = base + n
        if 0 <= target < len(self._dates):
            return self._dates[target]
        if clip:
            return self._dates[min(max(target, 0), len(self._dates) - 1)]
        side = "after the last" if target >= len(self._dates) else "before the first"
        raise CalendarError(
            f"shifting {to_date(value)} by {n} trading days lands {side} trading day "
            f"({self.first}..{self.last})"
        )

    # -- ranges -----------------------------------------------------------------------------------
    def range(self, start: date | str | None = None, end: date | str | None = None) -> tuple[date, ...]:
        """Trading days in the inclusive range ``[start, end]`` (``None``: open on that side)."""
        lo = 0 if start is None else self.idx_start(start)
        hi = len(self._dates) if end is None else self.idx_end(end) + 1
        return self._dates[lo:hi]

    def count(self, start: date | str, end: date | str) -> int:  # type: ignore[override]
        """Number of trading days in the inclusive range ``[start, end]``."""
        return len(self.range(start, end))

    def interval(self, a: date | str, b: date | str) -> int:
        """Signed trading-day distance ``idx_start(a) - idx_start(b)`` (Qlib's ``cal_interval``)."""
        return self.idx_start(a) - self.idx_start(b)

    def window_start(self, value: date | str, lookback: int) -> date:
        """First day of the ``lookback``-day buffer before ``value``: ``shift(value, -lookback)``.

        ``value`` aligns forward to a trading day first. Used for the ``hist_ref`` warm-up: features
        for day ``d`` need bars from ``window_start(d, hist_ref)`` on.

        Raises:
            CalendarError: fewer than ``lookback`` trading days precede ``value``.
        """
        d = self.align_start(value)
        i = self._pos[d] - lookback
        if i < 0:
            raise CalendarError(
                f"{d} has only {self._pos[d]} trading days of history before it; {lookback} are needed"
            )
        return self._dates[i]

    def to_numpy(self) -> np.ndarray:
        """The dates as a ``datetime64[D]`` array."""
        return np.array(self._dates, dtype="datetime64[D]")
