"""Task adapters for the report: read the range from the lake, compute, render, write, log to MLflow."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quant_core.data.lake import Lake
from quant_core.evaluation.report import (
    Kind,
    ReportConfig,
    ReportData,
    ReportInputs,
    ReportRun,
    build_report,
    load_report_inputs,
    log_report_run,
    write_report_files,
)
from quant_core.settings import Settings
from tasks.retry import IO_RETRY_DELAYS, retry_on_io_error
from tasks.training import registry_of

# A report reads the lake's current state, which changes under the same arguments: no input cache.


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def load_report_data(strategy: str, label: str, start: date, end: date, config: ReportConfig,
                     settings: Settings) -> ReportInputs:
    """Read the range's signals, labels, predictions and bars from the lake (read only)."""
    inputs = load_report_inputs(Lake.from_settings(settings), strategy, label, start, end, config.horizons)
    get_run_logger().info("report %s %s..%s: %d signal rows, %d predictions of %d version(s)", strategy, start, end,
                          len(inputs.signals), len(inputs.predictions), inputs.predictions["version"].nunique())
    return inputs


@task(cache_policy=NO_CACHE)
def compute_report(inputs: ReportInputs, config: ReportConfig) -> ReportData:
    """Every number of the report: IC, IC per version, IC decay, backtests, performance."""
    data = build_report(inputs, config)
    for warning in data.warnings:
        get_run_logger().warning(warning)
    return data


@task(cache_policy=NO_CACHE)
def render_report(data: ReportData) -> str:
    """The charts and the self-contained HTML page."""
    from quant_core.evaluation.html import render_html

    return render_html(data)


@task(cache_policy=NO_CACHE)
def write_report(folder: Path, html: str, data: ReportData) -> dict[Kind, Path]:
    """Write report.html and report.json into the output folder."""
    files = write_report_files(folder, html, data.to_json())
    get_run_logger().info("report written: %s", ", ".join(str(p) for p in files.values()))
    return files


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def log_report(data: ReportData, files: list[Path], settings: Settings) -> ReportRun:
    """Log the report as an MLflow run of the strategy's experiment (both files as artifacts)."""
    run = log_report_run(registry_of(settings), data, files, settings.mlflow_ui_url)
    get_run_logger().info("report run %s in MLflow experiment %s", run.run_id, run.experiment_id)
    return run
