"""Flow ``ingest``: extract → validate → store bars for an explicit date range."""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.features import update_summary, updates_table
from quant_core.feature_store import StoreUpdate, dependent_ranges
from quant_core.features import get_feature_set
from quant_core.ingest import GateOutcome
from quant_core.labels import get_label
from quant_core.lake import Lake, WriteResult, describe
from quant_core.reporting import markdown_table
from quant_core.settings import load_settings
from tasks.bars import extract_bars, store_bars, validate_bars
from tasks.features import compute_features, compute_labels

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


def business_date() -> date:
    """The date a run is for: its scheduled start (UTC date) when scheduled, else today."""
    from prefect.runtime import flow_run

    scheduled = flow_run.scheduled_start_time
    return scheduled.date() if scheduled is not None else date.today()


@flow(name="ingest", flow_run_name="ingest {start}..{end}", log_prints=False)
def ingest(
    source: str | None = None,
    start: date | None = None,
    end: date | None = None,
    lake_uri: str | None = None,
    feature_set: str | None = "alpha158",
    labels: tuple[str, ...] = ("LABEL0",),
    config: str | None = None,
) -> dict[str, object]:
    """Extract, validate and store bars of [start, end]; then update the features and labels they touch."""
    if start is None or end is None:
        # the flow boundary is the one place where "no dates" becomes the run's business date
        day = business_date()
        start, end = start or day, end or day
    settings = load_settings(config, lake_uri=lake_uri, source=source)
    logger = get_run_logger()
    spec = settings.source
    bars = extract_bars(spec, start, end, settings)
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
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=_report(spec, start, end, gate, written, summary, updates),
                             description=f"ingest {start}..{end}")
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
