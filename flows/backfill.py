"""Flow ``backfill``: the daily routine replayed over every session of ``[start, end]``, batched.

new bars through ``end`` (validated, stored, features and labels) → every rolling task due in the
range, trained at once in parallel (each as of its own test start) → per chunk of sessions:
promotions on their due days → predictions (one pass per model) and signals → ensembles → Redis
snapshots → monitoring; then, once, the decay alert for the state at the end. The result equals
running ``daily_routine`` on each session in order (DESIGN.md invariant 3); a run killed anywhere
resumes from what the lake and MLflow hold (invariant 4). It holds the lake's writer lease
throughout, so it never interleaves with the scheduled daily run or another backfill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from flows.daily_routine import (
    check_decay_alerts,
    combine_served,
    decay_summary,
    decay_table,
    ingest_new_bars,
    serving_inputs,
    validation_line,
)
from flows.first_train import task_runner
from flows.ingest import expected_sessions
from flows.params import ChunkSize, Day, StrategyName, flow_settings
from flows.writer_lock import lake_writer
from quant_core.data.ingest import GateOutcome
from quant_core.data.lake import Lake
from quant_core.evaluation.metrics import summarize_ic
from quant_core.models.strategy import StrategyConfig
from quant_core.models.training import TrainOutcome, check_model_params
from quant_core.online.backfill import (
    BackfillError,
    PlannedTask,
    check_chunk,
    check_range,
    check_start,
    chunks,
    plan_tasks,
    rolling_base,
    served_through,
)
from quant_core.online.monitoring import monitoring_dataset
from quant_core.online.routine import DecayCheck
from quant_core.reporting import markdown_table
from quant_core.settings import Settings
from tasks.online import (
    promote_online_model,
    publish_signals,
    update_live_monitoring,
    update_signals,
)
from tasks.retry import writer_id
from tasks.training import registry_of, train_rolling_models

ARTIFACT_KEY = "backfill-report"
PROGRESS_KEY = "backfill-progress"

#: in-process listeners of the backfill's progress, ``(done, total, what)``: the CLI's progress bar
PROGRESS_LISTENERS: list[Callable[[int, int, str], None]] = []


class _Progress:
    """Progress over trained tasks and served chunks: a Prefect progress artifact and the listeners."""

    def __init__(self, total: int, description: str) -> None:
        self.done, self.total = 0, max(total, 1)
        artifact = create_progress_artifact(progress=0.0, key=PROGRESS_KEY, description=description)
        assert isinstance(artifact, UUID)  # the sync call in a sync flow
        self.artifact = artifact

    def step(self, what: str) -> None:
        self.done += 1
        update_progress_artifact(self.artifact, progress=100.0 * self.done / self.total, description=what)
        for listener in PROGRESS_LISTENERS:
            listener(self.done, self.total, what)


def _nothing(reason: str) -> dict[str, object]:
    get_run_logger().info(reason)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=f"# Backfill: nothing to do\n\n{reason}\n", description=reason)
    return {"nothing_to_do": reason}


@flow(name="backfill", flow_run_name="backfill {start}..{end}", task_runner=task_runner("threads"))
def backfill(
    start: Day,
    end: Day,
    strategies: list[StrategyName] | None = None,
    chunk: ChunkSize = 20,
    lake_uri: str | None = None,
    config: str | None = None,
) -> dict[str, object]:
    """Replay the daily routine over every session of [start, end]: the same models, signals and snapshots."""
    t_start = time.perf_counter()
    check_range(start, end, chunk)
    settings = flow_settings(config, lake_uri=lake_uri)
    names, configs, redis_shown = serving_inputs(settings, strategies)
    lake = Lake.from_settings(settings)
    if not lake.bars.exists():
        raise BackfillError(f"lake {lake.uri} has no bars: run `qonline ingest` for the history, then `qonline "
                            f"first-train`, then backfill")
    calendar = lake.calendar()
    if start < calendar.first:
        raise BackfillError(f"backfill start {start} is before the lake's first bar ({calendar.first})")
    expected = expected_sessions(settings.exchange, start, end)
    if expected is not None and not expected:
        return _nothing(f"nothing to do: {start}..{end} holds no session of {settings.exchange.upper()}")
    for name in names:
        check_start(lake, name, calendar, start)
    registry_of(settings).check_reachable()
    with lake_writer(settings, f"backfill {start}..{end} ({writer_id()})"):
        return _backfill(settings, lake, names, configs, start, end, chunk, redis_shown, t_start)


def _backfill(settings: Settings, lake: Lake, names: list[str], configs: dict[str, StrategyConfig], start: date,
              end: date, chunk: int, redis_shown: str, t_start: float) -> dict[str, object]:
    logger = get_run_logger()
    times: dict[str, float] = {}
    stored = lake.calendar().range(start, end)

    def check_sessions(new: list[date]) -> None:  # before the new bars are validated or stored
        check_chunk(chunk, sorted(set(stored) | {d for d in new if start <= d <= end}), start, end)

    signal_names = names + sorted(settings.combined_signals)
    monitored_through = _monitored_through(lake, signal_names)  # decay tags go on the versions scored after it
    _business, gate = ingest_new_bars(settings, lake, end, True, list(configs.values()), times, what="--end",
                                    before_store=check_sessions)
    calendar = lake.calendar()
    sessions = list(calendar.range(start, end))
    done_through = served_through(lake, signal_names)
    todo = [d for d in sessions if done_through is None or d > done_through]
    registry = registry_of(settings)

    t0 = time.perf_counter()
    planned: dict[str, list[PlannedTask]] = {
        n: plan_tasks(configs[n], rolling_base(registry, lake, n), calendar, todo) for n in names}
    tasks = [p.task for n in names for p in planned[n]]
    for t in tasks:
        check_model_params(t)
    times["plan"] = time.perf_counter() - t0
    parts = chunks(todo, chunk)
    progress = _Progress(len(tasks) + len(parts), f"backfill {start}..{end}: {len(tasks)} task(s), "
                                                  f"{len(todo)} session(s) in {len(parts)} chunk(s)")
    if done_through is not None and todo and len(todo) < len(sessions):
        logger.info("resuming: signals already stored through %s; %d of %d session(s) left", done_through,
                    len(todo), len(sessions))

    t0 = time.perf_counter()
    trained = train_rolling_models(tasks, end, settings, point_in_time=True,
                                   on_done=lambda o: progress.step(f"trained test start {o.test_start}"))
    times["train"] = time.perf_counter() - t0

    stage = {"promotion": 0.0, "predictions and signals": 0.0, "ensemble": 0.0, "publish to Redis": 0.0,
             "monitoring": 0.0}
    written: dict[str, int] = dict.fromkeys(signal_names, 0)
    promoted: list[tuple[str, Any]] = []
    warnings: list[str] = []
    for part in parts:
        first, last = part[0], part[-1]
        t0 = time.perf_counter()
        for n in names:
            for due in sorted({p.due for p in planned[n] if first <= p.due <= last}):
                moved = promote_online_model(n, calendar, due, settings)
                promoted += [(n, p) for p in moved.appended]
                warnings += moved.warnings
        stage["promotion"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        served = {n: update_signals(n, calendar, last, settings) for n in names}
        for n, out in served.items():
            written[n] += len(out.dates)
        stage["predictions and signals"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for cname, count in combine_served(settings, served).items():
            written[cname] += count
        stage["ensemble"] += time.perf_counter() - t0
        _publish_and_monitor(settings, signal_names, configs, last, stage)
        progress.step(f"served {first}..{last}")
    if not parts:  # a finished backfill: Redis and monitoring still follow the lake (idempotent)
        _publish_and_monitor(settings, signal_names, configs, sessions[-1], stage)
        progress.step("nothing to do: every session was already served")
    # the decay alert once, for the state at the end; tags on every version that served a date scored here
    t0 = time.perf_counter()
    checks, events = check_decay_alerts(settings, signal_names, configs,
                                        {n: d + timedelta(days=1) if d else date.min for n, d in
                                         monitored_through.items()})
    warnings += [c.status.message for c in checks.values() if c.status.alert]
    times.update(stage)
    times["monitoring"] += time.perf_counter() - t0
    times["total"] = time.perf_counter() - t_start
    ic = _range_ic(checks, start, end)
    report = _report(start, end, sessions, todo, done_through, gate, trained, promoted, written, ic, checks,
                     settings.mlflow_ui_url, times, warnings, redis_shown)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=report, description=f"backfill {start}..{end}")
    for w in warnings:
        logger.warning(w)
    nothing = not todo
    if nothing:
        logger.info("nothing to do: every session of %s..%s was already served (signals through %s)", start, end,
                    done_through)
    return {
        "start": start.isoformat(), "end": end.isoformat(), "sessions": len(sessions), "chunks": len(parts),
        "nothing_to_do": (f"every session of {start}..{end} was already served (signals through {done_through})"
                          if nothing else None),
        "resumed_after": done_through.isoformat() if done_through and todo and len(todo) < len(sessions) else None,
        "trained": [{"strategy": t.strategy, "test_start": o.test_start.isoformat(), "version": o.version,
                     "reused": o.reused, "valid_rank_ic": o.metrics.get("valid_rank_ic")}
                    for t, o in zip(tasks, trained, strict=True)],
        "promotions": [dict(p.to_dict(), strategy=n) for n, p in promoted],
        "dates_written": written,
        "ic": ic,
        "decay": decay_summary(checks, events, settings.mlflow_ui_url),
        "validation": None if gate is None else {"rows": gate.rows, "dates": gate.dates, "report": gate.report_uri,
                                                 "data_docs": gate.docs_uri},
        "warnings": warnings,
        "seconds": {k: round(v, 3) for k, v in times.items()},
    }


def _publish_and_monitor(settings: Settings, signal_names: list[str], configs: dict[str, StrategyConfig], as_of: date,
                         stage: dict[str, float]) -> None:
    t0 = time.perf_counter()
    if settings.redis_url is not None:
        for name in signal_names:
            publish_signals(name, as_of, settings)
    stage["publish to Redis"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in signal_names:
        label = configs[name].label if name in configs else configs[settings.combined_signals[name][0]].label
        update_live_monitoring(name, label, settings, log_to_mlflow=name in configs)
    stage["monitoring"] += time.perf_counter() - t0


def _monitored_through(lake: Lake, names: list[str]) -> dict[str, date | None]:
    """Each signal's last monitored date before the run (``None``: none)."""
    out: dict[str, date | None] = {}
    for name in names:
        ds = monitoring_dataset(lake, name)
        done = ds.dates() if ds.exists() else []
        out[name] = done[-1] if done else None
    return out


def _range_ic(checks: dict[str, DecayCheck], start: date, end: date) -> dict[str, dict[str, float | int | None]]:
    """Each signal's IC summary (IC, ICIR, rank IC, rank ICIR, shares positive) over the range's monitored dates.

    ``dates`` counts the monitored dates of ``[start, end]``; ``days`` those with a finite IC.
    """
    out: dict[str, dict[str, float | int | None]] = {}
    for name, check in checks.items():
        frame = check.history[(check.history["date"] >= start) & (check.history["date"] <= end)]
        summary = summarize_ic(frame).to_dict()
        out[name] = {"dates": int(len(frame)), **{k: v if isinstance(v, int) or v is None else _num(v)
                                                   for k, v in summary.items()}}
    return out


def _num(x: Any) -> float | None:
    v = float(x)
    return None if v != v else round(v, 6)


def _report(start: date, end: date, sessions: list[date], todo: list[date], done_through: date | None,
            gate: GateOutcome | None, trained: list[TrainOutcome], promoted: list[tuple[str, Any]],
            written: dict[str, int], ic: dict[str, dict[str, float | int | None]], checks: dict[str, DecayCheck],
            ui_url: str | None, times: dict[str, float], warnings: list[str], redis: str) -> str:
    lines = [f"# Backfill {start} .. {end}", ""]
    if not todo:
        lines += [f"**Nothing to do**: every one of the {len(sessions)} sessions was already served (signals through "
                  f"{done_through}). Redis and monitoring were checked against the lake.", ""]
    elif len(todo) < len(sessions):
        lines += [f"Resumed: signals were stored through {done_through}; {len(todo)} of {len(sessions)} sessions "
                  f"were left.", ""]
    else:
        lines += [f"{len(sessions)} sessions.", ""]
    if warnings:
        lines += ["## Warnings", "", *[f"- **{w}**" for w in warnings], ""]
    lines += [validation_line(gate), ""]
    rows = [(o.test_start, o.version, "reused" if o.reused else "trained", o.metrics.get("valid_rank_ic"),
             f"{o.fit_seconds:.1f}") for o in trained]
    lines += ["## Rolling tasks", "", markdown_table(["test start", "version", "", "valid rank IC", "fit s"], rows)
              if rows else "No rolling step fell in the range.", ""]
    prow = [(n, p.kind, p.from_version, p.to_version, p.applies_after, p.decided_on, p.reason) for n, p in promoted]
    lines += ["## Promotions", "", markdown_table(["strategy", "kind", "from", "to", "applies after", "decided on",
                                                   "reason"], prow) if prow else "None.", ""]
    lines += ["## Signals written", "", markdown_table(["signal", "dates"], list(written.items())), ""]
    lines += ["## IC over the range (monitored dates: labels observable by the end)", "",
              markdown_table(["signal", "dates", "mean IC", "ICIR", "mean rank IC", "rank ICIR", "share IC > 0",
                              "share rank IC > 0"],
                             [(k, v["dates"], v["ic"], v["icir"], v["rank_ic"], v["rank_icir"], v["ic_positive"],
                               v["rank_ic_positive"]) for k, v in ic.items()]), ""]
    lines += ["## Live monitoring at the end of the range", "", decay_table(checks, None, ui_url), ""]
    lines += [f"Redis: {redis}", ""]
    lines += ["## Time per stage", "", markdown_table(["stage", "seconds"], [(k, f"{v:.2f}") for k, v in times.items()])]
    return "\n".join(lines)
