"""The first three stages of the daily routine as plain functions: extract, validate, store.

Prefect-free: :mod:`tasks.bars` wraps each of these in a retryable task.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from quant_core.calendar import to_date
from quant_core.data.lake import Lake, WriteResult
from quant_core.data.storage import make_resolver
from quant_core.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateOutcome:
    """What the validation gate decided, and where its reports are."""

    success: bool
    rows: int
    symbols: int
    dates: int
    report_uri: str | None
    docs_uri: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def extract(spec: str, start: date | str, end: date | str, settings: Settings) -> pd.DataFrame:
    """Bars of the inclusive range ``[start, end]`` from the source named by ``spec``."""
    from quant_core.data.sources import parse_source

    lo, hi = to_date(start), to_date(end)
    if lo > hi:
        from quant_core.errors import ConfigError

        raise ConfigError(f"start {lo} is after end {hi}")
    source = parse_source(spec, make_resolver(settings.s3))
    bars = source.extract(lo, hi)
    logger.info("extracted %d bars for %s..%s from %s", len(bars), lo, hi, spec)
    return bars


def _report_prefix(kind: str, start: date, end: date) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"reports/{kind}/{start.isoformat()}_{end.isoformat()}/{stamp}"


def validate(
    lake: Lake,
    bars: pd.DataFrame,
    start: date | str,
    end: date | str,
    settings: Settings,
    *,
    source: str = "bars",
    today: date | None = None,
    data_docs: bool = True,
) -> GateOutcome:
    """Run the validation gate; write its Data Docs and JSON report under the lake's ``reports/``.

    The gate compares each symbol's first bar with its last stored bar before ``start`` for the
    daily-return bound, so a glitch on the first day of an increment is caught too.

    Raises:
        BarsValidationError: the error-level suite failed. The report is written first (only
            ``reports/`` changes); nothing else in the lake is touched.
    """
    from quant_core.data.validation import BarsValidationError, ValidationConfig, validate_bars

    lo, hi = to_date(start), to_date(end)
    config = ValidationConfig(
        max_abs_log_return=settings.max_abs_log_return, row_count_tolerance=settings.row_count_tolerance
    )
    previous = lake.last_bars_before(lo) if lake.bars.exists() else None
    # the universe is the larger of the batch's symbols and those of the last stored date, so a
    # one-day increment missing half the market fails the rows-per-date rule
    universe = int(bars["symbol"].nunique()) if len(bars) else 0
    if previous is not None and len(previous):
        last_day = previous["date"].max()
        universe = max(universe, int((previous["date"] == last_day).sum()))
    prefix = _report_prefix("validation", lo, hi)
    with tempfile.TemporaryDirectory(prefix="qonline-docs-") as docs_dir:
        try:
            result, warning = validate_bars(
                bars, start=lo, end=hi, today=today, previous=previous, config=config, source=source,
                docs_dir=Path(docs_dir) if data_docs else None, universe=universe or None,
            )
        except BarsValidationError as exc:
            docs_uri, report_uri = _publish_reports(lake, prefix, docs_dir, exc.result.to_dict(),
                                                    exc.result.report_markdown())
            # point the reader at the reports kept in the lake, not at the temporary folder
            message = str(exc).split(" Data Docs: ")[0]
            message += f" Report: {report_uri}." + (f" Data Docs: {docs_uri}." if docs_uri else "")
            raise BarsValidationError(message, exc.result, exc.warning_result) from None
        payload = result.to_dict()
        warnings: list[str] = []
        if warning is not None:
            payload = {"error_suite": payload, "warning_suite": warning.to_dict()}
            warnings = [f.description for f in warning.failures]
        docs_uri, report_uri = _publish_reports(
            lake, prefix, docs_dir if data_docs else None, payload,
            result.report_markdown() + ("\n\n" + warning.report_markdown() if warning is not None else ""),
        )
    return GateOutcome(
        success=True,
        rows=len(bars),
        symbols=int(bars["symbol"].nunique()) if len(bars) else 0,
        dates=int(bars["date"].nunique()) if len(bars) else 0,
        report_uri=report_uri,
        docs_uri=docs_uri,
        summary=payload,
        warnings=warnings,
    )


def _publish_reports(
    lake: Lake, prefix: str, docs_dir: str | None, payload: dict[str, Any], markdown: str
) -> tuple[str | None, str]:
    docs_uri = None
    if docs_dir is not None:
        import os

        if any(os.scandir(docs_dir)):
            docs_uri = lake.put_tree(docs_dir, f"{prefix}/data_docs")
            index = _find_index(docs_dir)
            if index:
                docs_uri = f"{docs_uri}/{index}"
    lake.put_bytes(f"{prefix}/report.md", markdown.encode())
    report_uri = lake.put_bytes(f"{prefix}/report.json", (json.dumps(payload, indent=1, default=str) + "\n").encode())
    return docs_uri, report_uri


def _find_index(docs_dir: str) -> str | None:
    import os

    for dirpath, _dirs, names in os.walk(docs_dir):
        if "index.html" in names:
            return os.path.relpath(os.path.join(dirpath, "index.html"), docs_dir).replace(os.sep, "/")
    return None


def store(
    lake: Lake, bars: pd.DataFrame, start: date | str, end: date | str, *, writer: str | None = None
) -> WriteResult:
    """Replace the lake's bars for ``[start, end]`` (inclusive) with ``bars``; ``writer`` goes in its history."""
    return lake.write_bars(bars, start, end, writer=writer)
