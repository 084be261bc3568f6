"""Flow ``features``: recompute a feature set and its labels for an explicit date range."""

from __future__ import annotations

from datetime import date

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.params import flow_settings
from flows.writer_lock import lake_writer
from quant_core.features.store import StoreUpdate
from quant_core.reporting import markdown_table
from tasks.features import compute_features, compute_labels
from tasks.retry import writer_id

ARTIFACT_KEY = "features-report"


def updates_table(updates: list[StoreUpdate]) -> str:
    rows = [
        (u.dataset, u.start, u.end, u.buffer_start, u.rows, ", ".join(u.months) or "unchanged", f"{u.seconds:.2f}",
         u.note)
        for u in updates
    ]
    return markdown_table(["dataset", "from", "to", "bars buffer from", "rows", "months rewritten", "seconds", "note"],
                          rows)


def update_summary(u: StoreUpdate) -> dict[str, object]:
    return {"dataset": u.dataset, "start": u.start.isoformat() if u.start else None,
            "end": u.end.isoformat() if u.end else None, "rows": u.rows, "months_rewritten": list(u.months),
            "note": u.note}


@flow(name="features", flow_run_name="features {feature_set} {start}..{end}")
def features(
    start: date, end: date, feature_set: str = "alpha158", labels: tuple[str, ...] = ("LABEL0",),
    lake_uri: str | None = None, config: str | None = None,
) -> dict[str, object]:
    """Recompute features (from the hist_ref buffer) and observable labels for [start, end]."""
    settings = flow_settings(config, lake_uri=lake_uri)
    with lake_writer(settings, f"features {feature_set} {start}..{end} ({writer_id()})"):
        updates = [compute_features(feature_set, start, end, settings)]
        updates += [compute_labels(label, start, end, settings) for label in labels]
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=f"# Features {start} .. {end}\n\n" + updates_table(updates),
                             description=f"features {feature_set} {start}..{end}")
    return {"start": start.isoformat(), "end": end.isoformat(), "updates": [update_summary(u) for u in updates]}
