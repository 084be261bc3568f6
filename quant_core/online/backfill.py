"""Backfill planning: the daily routine replayed over a date range, batched (Prefect-free).

A backfill is not another algorithm (DESIGN.md): it must leave the lake, MLflow and Redis as the
daily routine run on every session of the range, in order, would have. What it may batch is what
the calendar already tells:

- **rolling tasks**: the task the routine of session ``d`` generates depends only on the previous
  task and the calendar known at ``d``; so every task due in the range is generated here, each on
  the calendar up to the session whose routine would generate it (its *due day*), and the flow
  trains them all at once, in parallel, each as of its own test start;
- **promotions**: the routine of a due day logs the promotion of that day's tasks (decided on that
  day); the flow replays them due day by due day;
- **predictions and signals**: a chunk of sessions is served at once (each model predicts its
  served dates of the chunk in one pass); monitoring rows and Redis snapshots follow per chunk.

Resuming: every stage reads its progress from the lake and the registry (registered tasks are
reused, logged promotions are decided once, stored predictions and signals are skipped), so a
backfill killed anywhere and started again with the same arguments finishes the same way. The plan
starts from the last *decided* promotion rather than the newest registered version, so tasks a
killed run registered but did not promote are planned (and reused) again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from quant_core.calendar import TradingCalendar
from quant_core.data.lake import Lake
from quant_core.errors import QonlineError
from quant_core.models.registry import ModelRegistry
from quant_core.models.rolling import RollingTask
from quant_core.models.strategy import StrategyConfig
from quant_core.online.promotion import PromotionLog
from quant_core.online.signals import signal_dataset

MAX_CHUNK = 260


class BackfillError(QonlineError, ValueError):
    """A backfill cannot run with these arguments (names the argument and the rule)."""


@dataclass(frozen=True)
class PlannedTask:
    """A rolling task of the range and the session whose routine generates it."""

    due: date
    task: RollingTask


def check_range(start: date, end: date, chunk: int) -> None:
    """Refuse a reversed range or a chunk size out of bounds before anything is read.

    Raises:
        BackfillError: ``start`` after ``end``, or ``chunk`` not in ``1..MAX_CHUNK``.
    """
    if start > end:
        raise BackfillError(f"backfill start {start} is after its end {end}: give --start on or before --end")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK:
        raise BackfillError(f"chunk={chunk!r}: the chunk size is a number of sessions from 1 to {MAX_CHUNK}")


def check_chunk(chunk: int, sessions: list[date], start: date, end: date) -> None:
    """A chunk may not be larger than the range it cuts.

    Raises:
        BackfillError: ``chunk`` exceeds the number of sessions in ``[start, end]``.
    """
    if chunk > len(sessions):
        raise BackfillError(f"chunk={chunk} is larger than the {len(sessions)} session(s) of {start}..{end}: "
                            f"give --chunk {len(sessions)} or less")


def check_start(lake: Lake, strategy: str, calendar: TradingCalendar, start: date) -> None:
    """A backfill starts after the strategy's first training (its models serve only later sessions).

    Raises:
        BackfillError: the strategy was never trained (no promotion log: run ``first-train``), or
            ``start`` is on or before the first training's as-of date.
    """
    entries = PromotionLog(lake, strategy).entries()
    if not entries:
        raise BackfillError(f"strategy {strategy!r} has no trained online model in lake {lake.uri}: run `qonline "
                            f"first-train --strategy {strategy} --as-of DATE` before backfilling it")
    decided = entries[0].decided_on
    if start <= decided:
        after = next((d for d in calendar.range(decided, None) if d > decided), None)
        raise BackfillError(f"backfill start {start} is not after strategy {strategy!r}'s first training (as of "
                            f"{decided}); start it on {after or 'the session after ' + decided.isoformat()} or later")


def rolling_base(registry: ModelRegistry, lake: Lake, strategy: str) -> RollingTask:
    """The task the plan rolls on from: that of the last version the promotion log decided on.

    Raises:
        BackfillError: nothing was decided yet, or the decided version's task is missing.
    """
    log = PromotionLog(lake, strategy).entries()
    decided = [p for p in log if p.kind in ("scheduled", "gate_failed") and p.test_start is not None]
    if not decided:
        raise BackfillError(f"strategy {strategy!r} has no scheduled promotion in its log: run `qonline first-train`")
    start = max(p.test_start for p in decided if p.test_start is not None)
    versions = registry.by_test_start(strategy, start.isoformat())
    if not versions:
        raise BackfillError(f"strategy {strategy!r}: the promotion log decided on the model of test start {start}, "
                            f"but MLflow ({registry.tracking_uri}) has no finished version of it")
    return registry.task_of_version(strategy, max(m.version for m in versions))


def plan_tasks(strategy: StrategyConfig, base: RollingTask, calendar: TradingCalendar,
               sessions: list[date]) -> list[PlannedTask]:
    """Every rolling task the routines of ``sessions`` generate, in order, with their due days.

    The routine of session ``d`` rolls on from the previous task over the calendar known at ``d``
    (``RollingGen.following``); a task is due on the first session on or after its test start
    (several at once on the range's first session when steps were missed, exactly as that day's
    catch-up). Only those sessions are visited, so the cost is one call per task.
    """
    if not sessions:
        return []
    gen = strategy.rolling_gen()
    out: list[PlannedTask] = []
    last = base
    end = sessions[-1]
    day = sessions[0]
    while True:
        i = calendar.idx_start(last.segments.test.start) + gen.step
        if i >= len(calendar):
            break
        day = max(calendar[i], sessions[0])
        if day > end:
            break
        known = TradingCalendar(calendar.range(None, day))
        new = gen.following(last, known, day)
        if not new:  # the shifted start is not a session of the known calendar: nothing is due
            break
        out += [PlannedTask(day, t) for t in new]
        last = new[-1]
    return out


def chunks(sessions: list[date], size: int) -> list[list[date]]:
    """``sessions`` cut into consecutive runs of ``size`` (the last one may be shorter)."""
    return [sessions[i:i + size] for i in range(0, len(sessions), size)]


def served_through(lake: Lake, names: list[str]) -> date | None:
    """The last date every one of ``names`` has signals for (``None``: one of them has none)."""
    last: date | None = None
    for name in names:
        ds = signal_dataset(lake, name)
        dates = ds.dates() if ds.exists() else []
        if not dates:
            return None
        last = dates[-1] if last is None else min(last, dates[-1])
    return last
