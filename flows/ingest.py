"""Flow ``ingest``: extract → validate → store bars for an explicit date range."""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.features import update_summary, updates_table
from flows.params import Day, flow_settings
from flows.writer_lock import lake_writer
from quant_core.data.ingest import GateOutcome
from quant_core.data.lake import Lake, WriteResult, describe
from quant_core.exchange import RunDay, business_day, get_exchange
from quant_core.features import get_feature_set
from quant_core.features.labels import get_label
from quant_core.features.store import StoreUpdate, dependent_ranges
from quant_core.reporting import markdown_table
from tasks.bars import check_sessions, extract_bars, store_bars, validate_bars
from tasks.features import compute_features, compute_labels
from tasks.retry import writer_id

ARTIFACT_KEY = "ingest-report"


def _report(
    source: str, start: date, end: date, gate: GateOutcome, written: WriteResult, lake: dict[str, object],
    updates: list[StoreUpdate],
) -> str:
    docs = f"[Data Docs]({gate.docs_uri})" if gate.docs_uri else "none"
    rows = [
        ("source", source),
        ("range", f"{start} .. {end}"),
        ("rows", gate.rows),
        ("symbols", gate.symbols),
        ("dates", gate.dates),
        ("validation", "passed" + (f" with {len(gate.warnings)} warning(s)" if gate.warnings else "")),
        ("validation report", gate.report_uri),
        ("data docs", docs),
        ("months rewritten", ", ".join(written.months) or "none (unchanged)"),
        ("lake bars", f"{lake['rows']} rows, {lake['symbols']} symbols, {lake['first_date']} .. {lake['last_date']}"),
    ]
    text = f"# Ingest {start} .. {end}\n\n" + markdown_table(["", ""], rows)
    if updates:
        text += "\n\n## Features and labels\n\n" + updates_table(updates)
    if gate.warnings:
        text += "\n\n## Warnings\n\n" + "\n".join(f"- {w}" for w in gate.warnings)
    return text


def run_day(exchange: str) -> RunDay:
    """The business date of a run without dates: its scheduled start (or now) at the exchange."""
    from datetime import UTC, datetime

    from prefect.runtime import flow_run

    scheduled = flow_run.scheduled_start_time
    return business_day(exchange, scheduled if scheduled is not None else datetime.now(UTC))


def nothing_to_do(reason: str, start: date | None, end: date | None) -> dict[str, object]:
    """End a run that has no session to process: say so, write nothing, succeed."""
    get_run_logger().info(reason)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=f"# Ingest: nothing to do\n\n{reason}\n",
                             description=reason)
    return {"nothing_to_do": reason, "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None, "rows": 0}


def expected_sessions(exchange: str, start: date, end: date) -> list[date] | None:
    """The exchange's sessions in [start, end]; ``None`` with exchange none (the source decides)."""
    ex = get_exchange(exchange)
    return None if ex is None else ex.sessions(start, end)


@flow(name="ingest", flow_run_name="ingest {start}..{end}", log_prints=False)
def ingest(
    source: str | None = None,
    start: Day | None = None,
    end: Day | None = None,
    lake_uri: str | None = None,
    feature_set: str | None = "alpha158",
    labels: tuple[str, ...] = ("LABEL0",),
    config: str | None = None,
) -> dict[str, object]:
    """Extract, validate and store bars of [start, end]; then update the features and labels they touch."""
    settings = flow_settings(config, lake_uri=lake_uri, source=source)
    if start is None or end is None:
        # the flow boundary is the one place where "no dates" becomes the run's business date
        day = run_day(settings.exchange)
        if not day.is_session:
            return nothing_to_do(day.reason, day.day, day.day)
        start, end = start or day.day, end or day.day
    logger = get_run_logger()
    spec = settings.source
    sessions = expected_sessions(settings.exchange, start, end)
    if sessions is not None and not sessions:
        return nothing_to_do(f"nothing to do: {start}..{end} holds no session of {settings.exchange.upper()}",
                             start, end)
    with lake_writer(settings, f"ingest {start}..{end} ({writer_id()})"):
        bars = extract_bars(spec, start, end, settings)
        feed = check_sessions(bars, start, end, settings)
        try:
            gate = validate_bars(bars, start, end, settings, spec)
        except Exception as exc:
            create_markdown_artifact(
                key=ARTIFACT_KEY,
                markdown=f"# Ingest {start} .. {end}: validation FAILED\n\nsource `{spec}`\n\n{exc}",
                description="ingest failed at the validation gate; nothing was stored",
            )
            raise
        written = store_bars(bars, start, end, settings)
        store = Lake.from_settings(settings)
        updates: list[StoreUpdate] = []
        if feature_set and gate.rows:
            # bars of [start, end] influence features up to hist_ref days later and labels up to
            # lookahead days earlier: recompute exactly those (the new days, for a daily increment)
            fs = get_feature_set(feature_set)
            lookahead = max((get_label(label).lookahead for label in labels), default=0)
            (f_lo, f_hi), (l_lo, l_hi) = dependent_ranges(store.calendar(), start, end, fs.hist_ref, lookahead)
            updates.append(compute_features(feature_set, f_lo, f_hi, settings))
            updates += [compute_labels(label, l_lo, l_hi, settings) for label in labels]
        summary = describe(store.bars.manifest())
        report = _report(spec, start, end, gate, written, summary, updates)
        if feed is not None and feed.extra:
            report += (f"\n\n## Bars on days that are not sessions of {feed.exchange}\n\n"
                       + ", ".join(d.isoformat() for d in feed.extra))
        create_markdown_artifact(key=ARTIFACT_KEY, markdown=report, description=f"ingest {start}..{end}")
        logger.info("ingest %s..%s done: %d rows stored", start, end, written.rows)
    return {
        "source": spec,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "rows": written.rows,
        "symbols": gate.symbols,
        "dates": gate.dates,
        "months_rewritten": list(written.months),
        "report_uri": gate.report_uri,
        "docs_uri": gate.docs_uri,
        "lake": summary,
        "features": [update_summary(u) for u in updates],
    }
