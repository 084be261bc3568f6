"""Flow ``demo``: the quickstart job on embedded defaults.

Builds a lake from the synthetic market (history in one ingest), trains the rolling models of the
light strategy, then runs the daily routine for a week of sessions — one of them a retrain day —
exactly as a scheduled deployment would after each close, backfills the sessions after that week
(the same routine replayed in one batched run), writes the evaluation report of the served range, and
reads the latest signals back from Redis.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.backfill import backfill
from flows.daily_routine import daily_routine
from flows.first_train import first_train
from flows.ingest import ingest
from flows.params import flow_settings
from flows.report import report
from quant_core.calendar import TradingCalendar
from quant_core.data.lake import Lake, describe
from quant_core.errors import ConfigError
from quant_core.models.strategy import get_strategy
from quant_core.reporting import markdown_table

ARTIFACT_KEY = "demo-report"
DEMO_STRATEGY = "lgb_light"
#: the report's numbers the demo prints (the rest are in report.json and MLflow)
_SHOWN = ("ic", "rank_ic", "rank_icir", "topk_dropout.excess_return_with_cost.annualized_return",
          "topk_dropout.excess_return_with_cost.information_ratio", "long_short.returns.annualized_return")


def source_calendar(spec: str) -> list[date]:
    """The trading days of a source with a known span (the synthetic market has one)."""
    from quant_core.data.sources import parse_source

    source = parse_source(spec)
    calendar = getattr(source, "calendar", None)
    if not callable(calendar):
        raise ConfigError(f"the demo needs a source with a known span (synthetic:...), got {spec!r}")
    days: list[date] = list(calendar())
    if not days:
        raise ConfigError(f"source {spec!r} has no trading days")
    return days


def demo_week(days: list[date], strategy: str, configured: dict[str, object], n: int = 5,
              after: int = 0) -> tuple[date, list[date]]:
    """First training's as-of and the ``n`` sessions replayed after it, one of them a retrain day.

    Relative segments are resolved at the first training's as-of, so the rolling dates depend on
    it: the latest as-of whose next rolling step falls inside the ``n`` sessions after it wins,
    leaving ``after`` sessions at the end of the source (the demo's backfill).
    """
    cal = TradingCalendar(days)
    strat = get_strategy(strategy, configured)
    step = strat.rolling.step
    for i in range(len(cal) - n - after - 1, 0, -1):
        as_of = cal[i]
        try:
            tasks = strat.tasks(cal, as_of)
        except ConfigError:
            break  # too little history before this date for the strategy's segments
        due = cal.index(tasks[-1].segments.test.start) + step
        if i < due <= i + n:
            return as_of, list(cal[i + 1:i + 1 + n])
    raise ConfigError(f"the source's {len(cal)} sessions are too few for a demo week of {strategy}")


@flow(name="demo", flow_run_name="demo {lake_uri}")
def demo(source: str, lake_uri: str, daily_days: int = 5, backfill_days: int = 10,
         config: str | None = None) -> dict[str, object]:
    """Ingest the history, first-train, a week of daily routines (one retrains), a backfill, a report, signals."""
    logger = get_run_logger()
    settings = flow_settings(config, lake_uri=lake_uri)
    days = source_calendar(source)
    first_as_of, week = demo_week(days, DEMO_STRATEGY, settings.strategies, daily_days, backfill_days)
    history = ingest(source=source, start=days[0], end=first_as_of, lake_uri=lake_uri, config=config)
    trained = first_train(as_of=first_as_of, strategy=DEMO_STRATEGY, lake_uri=lake_uri, config=config)
    routines: list[dict[str, Any]] = [daily_routine(as_of=d, strategies=[DEMO_STRATEGY], lake_uri=lake_uri, config=config) for d in week]
    rest = [d for d in days if d > week[-1]][:backfill_days]
    backfilled: dict[str, Any] = {}
    if rest:
        backfilled = backfill(start=rest[0], end=rest[-1], strategies=[DEMO_STRATEGY], chunk=min(5, len(rest)),
                              lake_uri=lake_uri, config=config)
    lake = Lake.from_settings(settings)
    # the evaluation report over the served range (a demo lake is a local folder: the report goes beside it)
    served = [*week, *rest]
    out = Path(lake_uri.removeprefix("file://")).resolve().parent / "report" if settings.lake_is_local else None
    # the synthetic universe has 50 symbols: hold 10 of them, not Qlib's 50 of CSI 300
    reported = report(start=served[0], end=served[-1], strategy=DEMO_STRATEGY, out=None if out is None else str(out),
                      topk=10, n_drop=2, lake_uri=lake_uri, config=config)
    signals: dict[str, Any] = {}
    if settings.redis_url is not None:
        from quant_core.online.redis_sink import SignalStore, connect

        snap = SignalStore(connect(settings.redis_url.get_secret_value()), settings.redis_prefix).read(
            DEMO_STRATEGY, top=10)
        signals = snap.to_dict() if snap is not None else {}
    rows = [("history", f"{days[0]} .. {first_as_of}", f"{history['rows']} bars"),
            ("first_train", str(first_as_of), f"{trained['tasks']} tasks ({trained['trained']} trained)")]
    for r in routines:
        retrained = sum(len(v) for v in (r.get("trained") or {}).values())
        rows.append(("daily_routine", str(r.get("as_of")), f"serving {r.get('serving')}; retrained {retrained}; "
                                                              f"{(r.get('seconds') or {}).get('total', '')} s"))
    if backfilled:
        rows.append(("backfill", f"{rest[0]} .. {rest[-1]}", f"{len(backfilled['trained'])} retrained; "
                                                            f"{backfilled['seconds']['total']} s"))
    head = reported["headline"]
    rows.append(("report", f"{served[0]} .. {served[-1]}", f"rank IC {_fmt(head.get('rank_ic'))}, TopK-dropout "
                 f"excess {_fmt(head.get('topk_dropout.excess_return_with_cost.annualized_return'))} a year; {reported['html']}"))
    top = "\n".join(f"| {s['symbol']} | {s['score']:+.5f} |" for s in signals.get("signals", []))
    create_markdown_artifact(
        key=ARTIFACT_KEY, description="quickstart demo",
        markdown="# qonline demo\n\n" + markdown_table(["step", "dates", "outcome"], rows)
        + f"\n\nLake `{lake.uri}`: {describe(lake.bars.manifest())}\n\n"
        + (f"## Latest signals in Redis ({signals.get('date')}, models {signals.get('models')})\n\n"
           f"| symbol | score |\n|---|---|\n{top}\n" if signals else "Redis: not configured\n"),
    )
    logger.info("demo done: lake %s, latest signals %s", lake.uri, signals.get("date"))
    return {
        "lake": lake.uri,
        "history": f"{days[0]}..{first_as_of} ({history['rows']} rows)",
        "first_train": f"{trained['tasks']} tasks as of {first_as_of}",
        "daily_routines": [{"as_of": r.get("as_of"), "serving": r.get("serving"),
                            "retrained": r.get("trained"), "seconds": (r.get("seconds") or {}).get("total")}
                           for r in routines],
        "backfill": ({"range": f"{rest[0]}..{rest[-1]}", "trained": len(backfilled["trained"]),
                      "seconds": backfilled["seconds"]["total"]} if backfilled else None),
        "bars": describe(lake.bars.manifest()),
        "validation_report": history["report_uri"],
        "report": {"html": reported["html"], "json": reported["json"], "mlflow_run_id": reported["mlflow_run_id"],
                   **{k: round(v, 4) for k, v in head.items() if k in _SHOWN}},
        "latest_signals": signals,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"
