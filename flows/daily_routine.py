"""Flow ``daily_routine``: the job users schedule after every close.

extract the new bars (catch-up from the last stored date through ``as_of``) → validate → store →
features and labels → rolling tasks → train (parallel) → promote → update predictions → ensemble →
publish to the lake and Redis → monitoring and the decay alert. Running it once for a date several
sessions after the last stored one gives the same lake and Redis state as running it for each of
those days in turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.first_train import task_runner
from flows.ingest import expected_sessions, run_day
from flows.params import Day, StrategyName, flow_settings
from flows.writer_lock import lake_writer
from quant_core.data.ingest import GateOutcome
from quant_core.data.lake import Lake
from quant_core.errors import ConfigError
from quant_core.features import get_feature_set
from quant_core.features.labels import get_label
from quant_core.features.store import feature_dataset, label_dataset
from quant_core.models.strategy import DEFAULT_STRATEGY, StrategyConfig, get_strategy
from quant_core.models.training import TrainOutcome, check_model_params
from quant_core.online.monitoring import MonitoringUpdate, recent_rank_ic
from quant_core.online.redis_sink import connect, mask_url
from quant_core.online.routine import DecayCheck, PromotionOutcome, RoutineError, ServeOutcome
from quant_core.reporting import markdown_table
from quant_core.settings import Settings
from tasks.bars import check_sessions, extract_bars, store_bars, validate_bars
from tasks.features import compute_features, compute_labels
from tasks.online import (
    check_signal_decay,
    emit_decay_event,
    ensemble_signals,
    prepare_rolling_tasks,
    promote_online_model,
    publish_signals,
    update_live_monitoring,
    update_signals,
)
from tasks.retry import writer_id
from tasks.training import registry_of, train_rolling_models

ARTIFACT_KEY = "daily-routine-report"


def strategy_names(settings: Settings, strategies: list[str] | None) -> list[str]:
    """The strategies a run serves: the given ones, else those of the config file, else the default."""
    names = list(strategies) if strategies else (sorted(settings.strategies) or [DEFAULT_STRATEGY])
    for name in names:
        get_strategy(name, settings.strategies)  # an unknown name fails here, before anything is written
    return names


def serving_inputs(settings: Settings, strategies: list[str] | None
                   ) -> tuple[list[str], dict[str, StrategyConfig], str]:
    """The strategies a run serves, their configurations and the masked Redis URL.

    Refuses, before anything is written: an unknown strategy, a combined signal over a strategy the
    run does not serve, a malformed Redis URL.
    """
    names = strategy_names(settings, strategies)
    configs = {n: get_strategy(n, settings.strategies) for n in names}
    for name, members in settings.combined_signals.items():
        unknown = [m for m in members if m not in configs]
        if unknown:
            raise ConfigError(f"combined signal {name!r} lists {unknown}, which this run does not serve ({names})")
    if settings.redis_url is None:
        return names, configs, "not configured"
    connect(settings.redis_url.get_secret_value())
    return names, configs, mask_url(settings.redis_url.get_secret_value())


def combine_served(settings: Settings, served: dict[str, ServeOutcome]) -> dict[str, int]:
    """AverageEnsemble of each combined signal over the dates its members just served: ``{name: dates}``."""
    out: dict[str, int] = {}
    for name, members in sorted(settings.combined_signals.items()):
        days = sorted({d for m in members for d in served[m].dates})
        if days:
            ensemble_signals(name, members, days[0], days[-1], settings)
        out[name] = len(days)
    return out


def ingest_new_bars(settings: Settings, lake: Lake, target: date, explicit: bool, configs: list[StrategyConfig],
                    times: dict[str, float], *, what: str = "--as-of",
                    before_store: Callable[[list[date]], None] | None = None) -> tuple[date, GateOutcome | None]:
    """Bars after the last stored date through ``target``, validated and stored, with their features.

    ``before_store`` sees the dates of the new bars (``[]`` when there are none) before anything is
    validated or written, and may refuse them. Then features and labels are brought up to the
    stored bars (a run killed between storing bars and computing features leaves them behind; the
    next run completes them). Returns the business date served (the last bar date on or before
    ``target``) and the gate outcome (``None``: no new bars).
    """
    cal = lake.calendar()
    gate: GateOutcome | None = None
    checked = False
    if target > cal.last:
        start = cal.last + timedelta(days=1)
        sessions = expected_sessions(settings.exchange, start, target)
        if sessions is None or sessions:
            gate = _store_new_bars(settings, lake, start, target, explicit, times, what, before_store)
            checked = True
    if before_store is not None and not checked:
        before_store([])
    t0 = time.perf_counter()
    _complete_features(settings, lake, configs)
    times["features and labels"] = times.get("features and labels", 0.0) + time.perf_counter() - t0
    return lake.calendar().align_end(target), gate


def _store_new_bars(settings: Settings, lake: Lake, start: date, target: date, explicit: bool,
                    times: dict[str, float], what: str,
                    before_store: Callable[[list[date]], None] | None) -> GateOutcome | None:
    cal = lake.calendar()
    t0 = time.perf_counter()
    bars = extract_bars(settings.source, start, target, settings)
    check_sessions(bars, start, target, settings)
    times["extract"] = time.perf_counter() - t0
    last_bar = bars["date"].max().date() if not bars.empty else None
    if explicit and (last_bar is None or last_bar < target):
        # nothing is stored: a routine for a date the source cannot deliver would serve stale bars
        raise RoutineError(f"{what} {target} is after the last session the source {settings.source} has: its last "
                           f"bar is {last_bar or cal.last}; nothing was written")
    if before_store is not None:
        before_store(sorted(set(bars["date"].dt.date)) if not bars.empty else [])
    if bars.empty:
        return None
    t0 = time.perf_counter()
    try:
        gate = validate_bars(bars, start, target, settings, settings.source)
    except Exception as exc:
        create_markdown_artifact(key=ARTIFACT_KEY, description="daily routine failed at the validation gate",
                                 markdown=f"# Run through {target}: validation FAILED\n\n"
                                          f"Nothing downstream was written; the last good signals stay published."
                                          f"\n\n{exc}")
        raise
    times["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    store_bars(bars, start, target, settings)
    times["store bars"] = time.perf_counter() - t0
    return gate


def _complete_features(settings: Settings, lake: Lake, configs: list[StrategyConfig]) -> None:
    """Compute the feature sets and labels the strategies use for the stored bars that lack them.

    Features of day ``d`` read bars ``[d - hist_ref, d]`` and labels of ``t`` bars up to ``t +
    lookahead``: new bars change features from their first date and reveal the labels of the
    ``lookahead`` dates before it (Alpha158 and LABEL0 always: the report and monitoring use them).
    """
    cal = lake.calendar()
    for name in sorted({c.feature_set for c in configs} | {"alpha158"}):
        fs = get_feature_set(name)
        ds = feature_dataset(lake, fs)
        done = ds.dates() if ds.exists() else []
        if not done or done[-1] < cal.last:
            lo = cal.first if not done else cal.align_start(done[-1] + timedelta(days=1))
            compute_features(name, lo, cal.last, settings)
    for name in sorted({c.label for c in configs} | {"LABEL0"}):
        label = get_label(name)
        ds = label_dataset(lake, label)
        done = ds.dates() if ds.exists() else []
        observable = cal.shift(cal.last, -label.lookahead, clip=True)
        if not done or done[-1] < observable:
            lo = cal.first if not done else cal.align_start(done[-1] + timedelta(days=1))
            compute_labels(name, lo, cal.last, settings)


def check_decay_alerts(settings: Settings, signal_names: list[str], configs: dict[str, StrategyConfig],
                       start: dict[str, date | None]) -> tuple[dict[str, DecayCheck], dict[str, str | None]]:
    """Each served signal's decay status (MLflow tags for strategies); one event per alerting signal.

    ``start``: per signal, the first monitored date this run scored (``None``: none). Returns the
    checks and the ids of the events emitted (``None``: not sent).
    """
    checks = {n: check_signal_decay(n, settings, start=start.get(n), tag_mlflow=n in configs) for n in signal_names}
    events = {n: emit_decay_event(c, settings) for n, c in checks.items() if c.status.alert}
    return checks, events


def validation_line(gate: GateOutcome | None) -> str:
    """The report's line on the validation gate, with links to its report and Data Docs."""
    if gate is None:
        return "Bars: already stored through this date (no new bars to validate)."
    docs = f" · [Data Docs]({gate.docs_uri})" if gate.docs_uri else ""
    return f"Validation: passed, {gate.rows} bars on {gate.dates} date(s) · report `{gate.report_uri}`{docs}"


def decay_table(checks: dict[str, DecayCheck], live: dict[str, tuple[float | None, int]] | None,
                ui_url: str | None) -> str:
    """One row per signal: its rolling rank IC, the decay alert and the MLflow run of the serving version."""
    rows = []
    for name, c in checks.items():
        st = c.status
        alert = f"**ALERT** since {st.since}" if st.alert else ("no" if st.rolling_rank_ic is not None else "no value yet")
        recent = [live[name][0]] if live is not None else []
        rows.append((name, st.last_date, st.version, *recent, st.rolling_rank_ic,
                     f"{st.days_below} (alert at {st.decay_days})", alert,
                     c.serving.markdown(ui_url) if c.serving else "—"))
    first = next(iter(checks.values()), None)
    rule = (f"rolling rank IC ({first.status.window} dates)" if first else "rolling rank IC")
    headers = ["signal", "last monitored", "version", *(["mean rank IC (last 20)"] if live is not None else []), rule,
               f"dates below {first.status.threshold:g}" if first else "dates below", "decay alert",
               "MLflow run"]
    return markdown_table(headers, rows)


def decay_summary(checks: dict[str, DecayCheck], events: dict[str, str | None],
                  ui_url: str | None) -> dict[str, dict[str, Any]]:
    """The run summary's ``decay`` entry: each signal's status, the tagged versions, run link and event id."""
    return {n: {**c.status.to_dict(), "tagged_versions": c.tagged, "event_id": events.get(n),
                "mlflow_run": (c.serving.url(ui_url) or f"runs:/{c.serving.run_id}") if c.serving else None}
            for n, c in checks.items()}


def _report(as_of: date, gate: GateOutcome | None, trained: dict[str, list[TrainOutcome]],
            promoted: dict[str, PromotionOutcome], served: dict[str, ServeOutcome], published: dict[str, Any],
            live: dict[str, tuple[float | None, int]], monitored: dict[str, MonitoringUpdate],
            checks: dict[str, DecayCheck], ui_url: str | None, times: dict[str, float], warnings: list[str],
            redis: str) -> str:
    lines = [f"# Daily routine {as_of}", ""]
    if warnings:
        lines += ["## Warnings", "", *[f"- **{w}**" for w in warnings], ""]
    lines += [validation_line(gate), ""]
    rows = [(s, o.test_start, o.version, "reused" if o.reused else "trained", o.metrics.get("valid_rank_ic"),
             f"{o.fit_seconds:.1f}") for s, outs in trained.items() for o in outs]
    lines += ["## Trained", "", markdown_table(["strategy", "test start", "version", "", "valid rank IC", "fit s"], rows)
              if rows else "No rolling step was due.", ""]
    prow = [(s, p.kind, p.from_version, p.to_version, p.applies_after, p.valid_rank_ic, p.reason)
            for s, out in promoted.items() for p in out.appended]
    lines += ["## Promotions", "", markdown_table(["strategy", "kind", "from", "to", "applies after", "valid rank IC",
                                                   "reason"], prow) if prow else "No change: the same versions serve.",
              ""]
    srows = [(s, u.version, u.start, u.end, u.dates, u.rows, u.note) for s, out in served.items() for u in out.predictions]
    lines += ["## Predictions written", "", markdown_table(["strategy", "version", "from", "to", "dates", "rows", "note"],
                                                           srows) if srows else "Signals were already up to date.", ""]
    for s, out in served.items():
        if not out.top.empty:
            day = out.top["date"].iloc[0]
            lines += [f"### {s}: top and bottom 10 on {day}", "",
                      markdown_table(["top symbol", "score", "bottom symbol", "score"],
                                     [(a.symbol, a.score, b.symbol, b.score) for a, b in
                                      zip(out.top.itertuples(), out.bottom.itertuples(), strict=False)]), ""]
    lines += ["## Live monitoring", "", decay_table(checks, live, ui_url), ""]
    ic_rows = []
    for name, upd in monitored.items():
        if upd.rows.empty:
            continue
        rolling = dict(zip(checks[name].history["date"], checks[name].history["rolling_rank_ic"], strict=True))
        ic_rows += [(name, r.date, r.version, r.ic, r.rank_ic, r.n, rolling.get(r.date))
                    for r in upd.rows.itertuples()]
    lines += ["### Dates scored in this run (labels now observable)", "",
              markdown_table(["signal", "date", "version", "IC", "rank IC", "symbols", "rolling rank IC"], ic_rows)
              if ic_rows else "No label became observable in this run.", ""]
    pub = [(k, r.date, r.count, "published" if r.published else "unchanged", f"{r.seconds * 1000:.0f} ms")
           for k, rs in published.items() for r in rs]
    lines += [f"## Redis ({redis})", "", markdown_table(["signal", "date", "symbols", "", "time"], pub) if pub
              else "Nothing to publish.", ""]
    lines += ["## Time per stage", "", markdown_table(["stage", "seconds"], [(k, f"{v:.2f}") for k, v in times.items()])]
    return "\n".join(lines)


@flow(name="daily_routine", flow_run_name="daily_routine {as_of}", task_runner=task_runner("threads"))
def daily_routine(as_of: Day | None = None, strategies: list[StrategyName] | None = None, lake_uri: str | None = None,
                  config: str | None = None) -> dict[str, object]:
    """Extract, validate, store, roll, train, promote, predict, ensemble, publish and monitor through as_of."""
    t_start = time.perf_counter()
    logger = get_run_logger()
    settings = flow_settings(config, lake_uri=lake_uri)
    names, configs, redis_shown = serving_inputs(settings, strategies)
    lake = Lake.from_settings(settings)
    if not lake.bars.exists():
        raise RoutineError(f"lake {lake.uri} has no bars: run `qonline ingest` for the history, then `qonline "
                           f"first-train`")
    explicit = as_of is not None
    if as_of is None:
        day = run_day(settings.exchange)
        if not day.is_session:
            logger.info(day.reason)
            create_markdown_artifact(key=ARTIFACT_KEY, markdown=f"# Daily routine: nothing to do\n\n{day.reason}\n",
                                     description=day.reason)
            return {"nothing_to_do": day.reason}
        target = day.day
    else:
        target = as_of
        if target < lake.calendar().first:
            raise RoutineError(f"--as-of {target} is before the lake's first bar ({lake.calendar().first})")
        sessions = expected_sessions(settings.exchange, target, target)
        if sessions is not None and not sessions:
            reason = f"nothing to do: {target} is not a session of {settings.exchange}"
            create_markdown_artifact(key=ARTIFACT_KEY, markdown=f"# Daily routine: nothing to do\n\n{reason}\n",
                                     description=reason)
            return {"nothing_to_do": reason}
    registry_of(settings).check_reachable()
    with lake_writer(settings, f"daily_routine {target} ({writer_id()})"):
        return _routine(settings, lake, names, configs, target, explicit, redis_shown, t_start)


def _routine(settings: Settings, lake: Lake, names: list[str], configs: dict[str, StrategyConfig], target: date,
             explicit: bool, redis_shown: str, t_start: float) -> dict[str, object]:
    """The routine's stages, run while this run holds the lake's writer lease."""
    logger = get_run_logger()
    times: dict[str, float] = {}
    business, gate = ingest_new_bars(settings, lake, target, explicit, list(configs.values()), times)
    calendar = lake.calendar()

    trained: dict[str, list[TrainOutcome]] = {}
    t0 = time.perf_counter()
    for name in names:
        due = prepare_rolling_tasks(name, calendar, business, settings)
        for t in due:
            check_model_params(t)
        trained[name] = train_rolling_models(due, business, settings, point_in_time=True) if due else []
    times["rolling tasks and training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    promoted = {name: promote_online_model(name, calendar, business, settings) for name in names}
    times["promotion"] = time.perf_counter() - t0
    warnings = [w for out in promoted.values() for w in out.warnings]

    t0 = time.perf_counter()
    served = {name: update_signals(name, calendar, business, settings) for name in names}
    times["predictions and signals"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    combine_served(settings, served)
    signal_names = names + sorted(settings.combined_signals)
    times["ensemble"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    published: dict[str, Any] = {}
    if settings.redis_url is not None:
        published = {name: publish_signals(name, business, settings) for name in signal_names}
    else:
        warnings.append("redis_url is not set: signals are in the lake only")
    times["publish to Redis"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    monitored: dict[str, MonitoringUpdate] = {}
    for name in signal_names:
        label = configs[name].label if name in configs else configs[settings.combined_signals[name][0]].label
        monitored[name] = update_live_monitoring(name, label, settings, log_to_mlflow=name in configs)
    checks, events = check_decay_alerts(settings, signal_names, configs,
                                        {n: min(u.rows["date"]) if not u.rows.empty else None
                                         for n, u in monitored.items()})
    live = {name: recent_rank_ic(check.history, 20) for name, check in checks.items()}  # rows read once
    warnings += [c.status.message for c in checks.values() if c.status.alert]
    times["monitoring"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - t_start

    create_markdown_artifact(key=ARTIFACT_KEY, description=f"daily routine {business}",
                             markdown=_report(business, gate, trained, promoted, served, published, live, monitored,
                                              checks, settings.mlflow_ui_url, times, warnings, redis_shown))
    for w in warnings:
        logger.warning(w)
    return {
        "as_of": business.isoformat(),
        "validation": None if gate is None else {"rows": gate.rows, "dates": gate.dates, "report": gate.report_uri},
        "trained": {n: [{"test_start": o.test_start.isoformat(), "version": o.version, "reused": o.reused,
                         "valid_rank_ic": o.metrics.get("valid_rank_ic")} for o in outs] for n, outs in trained.items()},
        "promotions": {n: [p.to_dict() for p in out.appended] for n, out in promoted.items()},
        "serving": {n: out.serving for n, out in promoted.items()},
        "served_dates": {n: [d.isoformat() for d in out.dates] for n, out in served.items()},
        "predictions": {n: [{"version": u.version, "dates": u.dates, "rows": u.rows, "note": u.note}
                            for u in out.predictions] for n, out in served.items()},
        "published": {n: [{"date": r.date, "count": r.count, "published": r.published, "ms": round(r.seconds * 1000, 1)}
                          for r in rs] for n, rs in published.items()},
        "live_rank_ic_20d": {n: v[0] for n, v in live.items()},
        "decay": decay_summary(checks, events, settings.mlflow_ui_url),
        "warnings": warnings,
        "seconds": {k: round(v, 3) for k, v in times.items()},
    }
