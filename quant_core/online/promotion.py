"""Promotion: which model version serves which date, as a log in the lake, and the ``online`` alias.

MLflow keeps no alias history, so every move of a strategy's ``online`` alias is first appended
to ``promotions/<strategy>/`` in the lake, then the alias is pointed at the log's current version
in one registry call (there is never a moment with no online model; Qlib tags every recorder
offline first). The log is the truth: the model that serves date ``d`` is the ``to_version`` of
the last entry whose ``applies_after`` is before ``d``: the last date served by the *previous*
model (stored as the ``date`` column):

- a scheduled promotion of the model whose test segment starts at ``T`` applies after ``T - 1``
  (the trading day before ``T``): it serves from ``T`` on, exactly Qlib's RollingEnsemble ("the
  model whose test segment starts latest wins") when there is no gate and no manual move;
- a manual promotion or a rollback applies after the last date already published, so it applies
  from the next date served, and published history is never rewritten by it;
- a version rejected by the quality gate gets an entry too (``gate_failed``, ``to_version`` = the
  version that keeps serving), so the decision is visible and made once.

The log is one small lake dataset (the lake's key columns: ``date`` and ``symbol``, which holds
the entry's zero-padded sequence number); appending re-reads it and commits by compare-and-swap,
so two writers never lose an entry.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal

import pyarrow as pa

from quant_core.calendar import TradingCalendar
from quant_core.data.commit import WriteConflict
from quant_core.data.lake import Dataset, Lake
from quant_core.errors import QonlineError

logger = logging.getLogger(__name__)
Kind = Literal["scheduled", "gate_failed", "manual", "rollback"]
KINDS: tuple[Kind, ...] = ("scheduled", "gate_failed", "manual", "rollback")
_APPEND_ATTEMPTS = 8

SCHEMA = pa.schema([
    pa.field("date", pa.date32(), nullable=False),
    pa.field("symbol", pa.large_string()),
    pa.field("seq", pa.int64()),
    pa.field("kind", pa.large_string()),
    pa.field("from_version", pa.int64()),
    pa.field("to_version", pa.int64()),
    pa.field("test_start", pa.date32()),
    pa.field("valid_rank_ic", pa.float64()),
    pa.field("reason", pa.large_string()),
    pa.field("decided_on", pa.date32()),
    pa.field("run_id", pa.large_string()),
    pa.field("user", pa.large_string()),
    pa.field("created_at", pa.large_string()),
])


class PromotionError(QonlineError, ValueError):
    """A promotion or rollback that cannot be made (names the strategy, version and rule)."""


@dataclass(frozen=True)
class Promotion:
    """One entry of the promotion log."""

    applies_after: date  # the entry applies to the dates after this one
    seq: int
    kind: Kind
    from_version: int | None
    to_version: int
    test_start: date | None
    valid_rank_ic: float | None
    reason: str
    decided_on: date
    run_id: str
    user: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"applies_after": self.applies_after.isoformat(), "seq": self.seq, "kind": self.kind,
                "from_version": self.from_version, "to_version": self.to_version,
                "test_start": self.test_start.isoformat() if self.test_start else None,
                "valid_rank_ic": self.valid_rank_ic, "reason": self.reason,
                "decided_on": self.decided_on.isoformat(), "run_id": self.run_id, "user": self.user,
                "created_at": self.created_at}


def _row(p: Promotion) -> dict[str, Any]:
    return {"date": p.applies_after, "symbol": f"{p.seq:08d}", "seq": p.seq, "kind": p.kind, "from_version": p.from_version,
            "to_version": p.to_version, "test_start": p.test_start, "valid_rank_ic": p.valid_rank_ic,
            "reason": p.reason, "decided_on": p.decided_on, "run_id": p.run_id, "user": p.user,
            "created_at": p.created_at}


def _entry(r: dict[str, Any]) -> Promotion:
    return Promotion(r["date"], int(r["seq"]), r["kind"], r["from_version"], int(r["to_version"]), r["test_start"],
                     r["valid_rank_ic"], r["reason"], r["decided_on"], r["run_id"], r["user"], r["created_at"])


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


class PromotionLog:
    """The promotion log of one strategy (``promotions/<strategy>/`` in the lake)."""

    def __init__(self, lake: Lake, strategy: str) -> None:
        self.strategy = strategy
        self.dataset: Dataset = lake.dataset(f"promotions/{strategy}")

    def entries(self) -> list[Promotion]:
        """Every entry, in the order they apply: by ``date``, then by sequence number."""
        if not self.dataset.exists():
            return []
        rows = self.dataset.read().to_pylist()
        return sorted((_entry(r) for r in rows), key=lambda p: (p.applies_after, p.seq))

    def current(self) -> Promotion | None:
        """The entry that decides what serves from now on (the last one)."""
        entries = self.entries()
        return entries[-1] if entries else None

    def serving(self, day: date, entries: list[Promotion] | None = None) -> int | None:
        """The version that serves ``day``: the last entry applying after a date before it (``None``: none yet)."""
        version = None
        for p in entries if entries is not None else self.entries():
            if p.applies_after < day:
                version = p.to_version
            else:
                break
        return version

    def served_dates(self, days: list[date] | tuple[date, ...]) -> dict[int, list[date]]:
        """``{version: [dates it serves]}`` for the given dates (dates nobody serves are left out)."""
        entries = self.entries()
        out: dict[int, list[date]] = {}
        for d in days:
            v = self.serving(d, entries)
            if v is not None:
                out.setdefault(v, []).append(d)
        return out

    def append(self, entry: Promotion, *, writer: str | None = None) -> Promotion:
        """Append one entry (its ``seq`` is assigned here); compare-and-swap, re-read on a conflict."""
        last: WriteConflict | None = None
        for _ in range(_APPEND_ATTEMPTS):
            entries = self.entries()
            seq = max((p.seq for p in entries), default=0) + 1
            new = replace(entry, seq=seq)
            same_day = [_row(p) for p in entries if p.applies_after == new.applies_after]
            table = pa.Table.from_pylist([*same_day, _row(new)], schema=SCHEMA)
            try:
                self.dataset.write(table, new.applies_after, new.applies_after, writer=writer)
            except WriteConflict as exc:  # another writer appended first: read again, renumber
                last = exc
                continue
            logger.info("promotion log %s: #%d %s v%s -> v%d after %s (%s)", self.strategy, seq, new.kind,
                        new.from_version, new.to_version, new.applies_after, new.reason)
            return new
        raise PromotionError(f"promotion log of {self.strategy}: {_APPEND_ATTEMPTS} appends in a row lost the race "
                             f"to other writers; nothing was logged ({last})")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Candidate:
    """A registered version that may be promoted: its version, test start and valid rank IC."""

    version: int
    test_start: date
    valid_rank_ic: float | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class Gate:
    """A strategy's quality gate: the metrics a version needs before it may serve."""

    min_valid_rank_ic: float | None = None
    min_valid_ic: float | None = None

    def check(self, metrics: dict[str, float]) -> str | None:
        """``None`` when the version passes, else the rule it breaks."""
        for key, bound in (("valid_rank_ic", self.min_valid_rank_ic), ("valid_ic", self.min_valid_ic)):
            if bound is None:
                continue
            value = metrics.get(key)
            if value is None or value != value or value < bound:
                return f"{key} {value if value is not None else 'missing'} < min_{key} {bound}"
        return None


def plan_scheduled(
    log: list[Promotion], candidates: list[Candidate], calendar: TradingCalendar, as_of: date, gate: Gate,
) -> list[Promotion]:
    """The scheduled entries a routine at ``as_of`` appends, oldest first (without ``seq``).

    Candidates are the strategy's versions whose test start is on or before ``as_of`` and after
    the test start of the last scheduled (or gate-rejected) entry; with an empty log only the
    latest such version (the first training's newest model). Each becomes a ``scheduled`` entry
    dated the trading day before its test start, or a ``gate_failed`` one that keeps the serving
    version. Catching up several steps at once gives the same entries as one step a day.
    """
    decided = [p.test_start for p in log if p.kind in ("scheduled", "gate_failed") and p.test_start]
    last_start = max(decided) if decided else None
    newest: dict[date, Candidate] = {}
    for c in candidates:
        due = c.test_start <= as_of and (last_start is None or c.test_start > last_start)
        if due and (c.test_start not in newest or c.version > newest[c.test_start].version):
            newest[c.test_start] = c
    chosen = [newest[k] for k in sorted(newest)]
    if last_start is None:
        chosen = chosen[-1:]
    serving = log[-1].to_version if log else None
    out: list[Promotion] = []
    for c in chosen:
        applies_after = day_before(calendar, c.test_start)
        problem = gate.check(c.metrics)
        if problem is not None and serving is not None:
            out.append(Promotion(applies_after, 0, "gate_failed", serving, serving, c.test_start, c.valid_rank_ic,
                                 f"gate failed for version {c.version}: {problem}", as_of, "", "", ""))
            continue
        if problem is not None:
            # nothing serves yet: an empty signal is worse than a weak model; say so loudly
            reason = f"first model; gate failed ({problem}) but nothing else can serve"
        else:
            reason = "scheduled: newest rolling model"
        out.append(Promotion(applies_after, 0, "scheduled", serving, c.version, c.test_start, c.valid_rank_ic,
                             reason, as_of, "", "", ""))
        serving = c.version
    return out


def day_before(calendar: TradingCalendar, day: date) -> date:
    """The trading day before ``day`` (the calendar day before, at the calendar's very start)."""
    from datetime import timedelta

    i = calendar.idx_start(day)
    return calendar[i - 1] if i > 0 else day - timedelta(days=1)


def rollback_target(log: list[Promotion]) -> Promotion:
    """The entry a rollback returns to: the latest one whose version differs from the serving one.

    Raises:
        PromotionError: no earlier promotion exists.
    """
    if not log:
        raise PromotionError("nothing has been promoted yet: there is nothing to roll back")
    serving = log[-1].to_version
    for p in reversed(log[:-1]):
        if p.to_version != serving:
            return p
    raise PromotionError(f"version {serving} is the only version that ever served: there is no earlier promotion "
                         f"to roll back to")
