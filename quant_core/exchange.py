"""Exchange calendars: which days are *expected* to have bars (``exchange-calendars``).

The trading calendar that features and rolling use is always the one derived from stored bars
(Qlib semantics, :class:`~quant_core.calendar.TradingCalendar`). The exchange calendar answers
other questions, for the scheduled run: is today a session at all (a holiday is "nothing to do",
not an error)? Is a session without bars a holiday or a broken feed (always a broken feed)? What is
"today" — the date in the exchange's time zone, not UTC's?

The setting ``exchange`` (``QONLINE_EXCHANGE``) names an ISO 10383 MIC such as ``XSHG`` or ``XNYS``;
``none`` keeps the source-derived behaviour: every date with bars is a session, and no date is
expected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from quant_core.calendar import to_date
from quant_core.errors import ConfigError, QonlineError

logger = logging.getLogger(__name__)
NO_EXCHANGE = "none"


class MissingFeedError(QonlineError):
    """A session of the exchange has no bars in the source: a data problem, not a holiday."""


class ExchangeCalendar:
    """One exchange's sessions and time zone.

    Args:
        code: the exchange's MIC as ``exchange-calendars`` knows it (``XSHG``, ``XNYS``, ...).

    Raises:
        ConfigError: an unknown code (the message lists a few known ones).
    """

    def __init__(self, code: str) -> None:
        import exchange_calendars as xc

        try:
            self._cal: Any = xc.get_calendar(code)
        except xc.errors.InvalidCalendarName:
            known = sorted(n for n in xc.get_calendar_names() if n.isalpha() and n.isupper())
            raise ConfigError(
                f"exchange {code!r} (setting exchange / QONLINE_EXCHANGE) is not a known exchange calendar; "
                f"use a MIC such as {', '.join(k for k in known if k in ('XSHG', 'XSHE', 'XNYS', 'XNAS', 'XLON'))} "
                f"({len(known)} known), or 'none' to take the sessions from the source"
            ) from None
        self.code = code
        self.tz = ZoneInfo(str(self._cal.tz))
        self.first: date = self._cal.first_session.date()
        self.last: date = self._cal.last_session.date()

    def __repr__(self) -> str:
        return f"ExchangeCalendar({self.code}, {self.first}..{self.last})"

    def _check(self, d: date) -> None:
        if not self.first <= d <= self.last:
            raise ConfigError(
                f"{d} is outside the {self.code} calendar of exchange-calendars ({self.first}..{self.last}); "
                f"update the exchange-calendars package or use exchange 'none'"
            )

    def is_session(self, day: date | str) -> bool:
        d = to_date(day)
        self._check(d)
        return bool(self._cal.is_session(d.isoformat()))

    def sessions(self, start: date | str, end: date | str) -> list[date]:
        """Sessions in the inclusive range ``[start, end]``."""
        lo, hi = to_date(start), to_date(end)
        self._check(lo)
        self._check(hi)
        return [ts.date() for ts in self._cal.sessions_in_range(lo.isoformat(), hi.isoformat())]

    def latest_session(self, day: date | str) -> date:
        """The latest session on or before ``day``."""
        d = to_date(day)
        self._check(d)
        return self._cal.date_to_session(d.isoformat(), direction="previous").date()  # type: ignore[no-any-return]

    def local_date(self, when: datetime) -> date:
        """The calendar date at the exchange at instant ``when`` (a naive ``when`` is UTC)."""
        aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return aware.astimezone(self.tz).date()


def get_exchange(code: str) -> ExchangeCalendar | None:
    """The exchange calendar for a setting value; ``None`` for ``none`` (source-derived sessions)."""
    if code.strip().lower() == NO_EXCHANGE:
        return None
    return _exchange(code.strip().upper())


@lru_cache(maxsize=16)
def _exchange(code: str) -> ExchangeCalendar:
    # building a calendar takes ~0.2 s: once per process and code
    return ExchangeCalendar(code)


@dataclass(frozen=True)
class RunDay:
    """What a run without explicit dates is for."""

    day: date
    is_session: bool
    reason: str


def business_day(code: str, when: datetime) -> RunDay:
    """The business date of a run started (or scheduled) at ``when``.

    With an exchange: its local date at ``when``; if that is not a session, the run has nothing to
    do (``is_session`` False) and ``day`` is the latest session before it, for the message. With
    ``none``: the UTC date of ``when``, always treated as a session (the source decides).
    """
    ex = get_exchange(code)
    if ex is None:
        day = when.astimezone(UTC).date() if when.tzinfo is not None else when.date()
        return RunDay(day, True, f"exchange none: the business date is the UTC date {day}")
    local = ex.local_date(when)
    if ex.is_session(local):
        return RunDay(local, True, f"{local} is a session of {ex.code} ({ex.tz.key} date)")
    return RunDay(local, False, f"nothing to do: {local} is not a session of {ex.code}")


@dataclass(frozen=True)
class FeedCheck:
    """Sessions of a range without bars, and bars on days that are not sessions."""

    exchange: str
    sessions: tuple[date, ...]
    missing: tuple[date, ...]
    extra: tuple[date, ...]


def check_feed(code: str, start: date, end: date, bar_dates: set[date]) -> FeedCheck | None:
    """Compare the dates a source delivered for ``[start, end]`` with the exchange's sessions.

    Returns ``None`` with exchange ``none``. Raises nothing: :func:`require_feed` decides.
    """
    ex = get_exchange(code)
    if ex is None:
        return None
    sessions = tuple(ex.sessions(start, end))
    missing = tuple(d for d in sessions if d not in bar_dates)
    extra = tuple(sorted(d for d in bar_dates if start <= d <= end and d not in set(sessions)))
    return FeedCheck(ex.code, sessions, missing, extra)


def require_feed(check: FeedCheck | None, source: str) -> None:
    """Fail when a session has no bars (a missing feed is a data problem, not a holiday)."""
    if check is None or not check.missing:
        return
    shown = ", ".join(d.isoformat() for d in check.missing[:10])
    more = f" and {len(check.missing) - 10} more" if len(check.missing) > 10 else ""
    raise MissingFeedError(
        f"source {source}: no bars for {len(check.missing)} session(s) of {check.exchange}: {shown}{more}. "
        f"Those days are trading sessions, so a missing day is a broken or late feed, not a holiday; "
        f"nothing was stored. Fix the feed and run again (or set exchange: none to accept the source's days)"
    )
