"""Flow ``report``: a self-contained HTML report and a JSON of the numbers for a strategy over a range.

check the inputs (strategy, range, output folder, MLflow) → read the range from the lake → IC,
IC per model version, IC decay, TopK-dropout and long-short backtests → charts and HTML → write
``report.html`` and ``report.json`` → log both as artifacts of a report run in the strategy's MLflow
experiment → a keyed markdown artifact. The report only reads the lake: it takes no writer lease
and can run while the daily routine or a backfill writes.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from flows.params import Day, StrategyName, flow_settings
from quant_core.data.lake import Lake
from quant_core.errors import ConfigError
from quant_core.evaluation.report import (
    PORTFOLIOS,
    ReportConfig,
    ReportData,
    ReportError,
    ReportRun,
    check_output_dir,
    default_output_dir,
    ic_table,
    performance_table,
)
from quant_core.models.strategy import DEFAULT_STRATEGY, StrategyConfig, get_strategy
from quant_core.reporting import markdown_table
from quant_core.settings import Settings
from tasks.evaluation import compute_report, load_report_data, log_report, render_report, write_report
from tasks.training import registry_of

ARTIFACT_KEY = "report"


def report_strategy(settings: Settings, strategy: str | None) -> StrategyConfig:
    """The strategy reported: the given one, else the only configured one, else the default.

    Raises:
        ConfigError: an unknown strategy, or several configured and none chosen.
    """
    if strategy is None:
        configured = sorted(settings.strategies)
        if len(configured) > 1:
            raise ConfigError(f"several strategies are configured ({', '.join(configured)}): choose the one to "
                              f"report with --strategy")
        strategy = configured[0] if configured else DEFAULT_STRATEGY
    return get_strategy(strategy, settings.strategies)


def check_report_request(settings: Settings, start: date, end: date, strategy: str | None, out: str | None,
                         topk: int | None = None, n_drop: int | None = None
                         ) -> tuple[StrategyConfig, ReportConfig, Path]:
    """Everything about a report request that can be refused before any data is read.

    Returns:
        The strategy, the report's configuration and the output folder (not created yet).

    Raises:
        ReportError: ``start`` after ``end``, an output folder that cannot be written.
        ConfigError: an unknown strategy, backtest settings that break a rule.
    """
    if start > end:
        raise ReportError(f"report range: start {start} is after end {end}; give start <= end (both inclusive)")
    config = report_strategy(settings, strategy)
    overrides = {k: v for k, v in (("topk", topk), ("n_drop", n_drop)) if v is not None}
    report_config = ReportConfig.from_settings(settings, **overrides)
    folder = check_output_dir(Path(out) if out else default_output_dir(config.name, start, end))
    return config, report_config, folder


@flow(name="report", flow_run_name="report {start}..{end}")
def report(
    start: Day,
    end: Day,
    strategy: StrategyName | None = None,
    out: str | None = None,
    topk: Annotated[int, Field(ge=1)] | None = None,
    n_drop: Annotated[int, Field(ge=0)] | None = None,
    lake_uri: str | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Build the HTML and JSON report of a strategy's served signal over [start, end]; log it to MLflow."""
    t0 = time.perf_counter()
    settings = flow_settings(config, lake_uri=lake_uri)
    strategy_config, report_config, folder = check_report_request(settings, start, end, strategy, out, topk, n_drop)
    Lake.from_settings(settings).check_reachable()
    registry_of(settings).check_reachable()
    inputs = load_report_data(strategy_config.name, strategy_config.label, start, end, report_config, settings)
    data = compute_report(inputs, report_config)
    html = render_report(data)
    files = write_report(folder, html, data)
    run = log_report(data, [files["html"], files["json"]], settings)
    seconds = time.perf_counter() - t0
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=_markdown(data, files, run, settings),
                             description=f"report {data.strategy} {start}..{end}")
    get_run_logger().info("report of %s %s..%s in %.1fs: %s", data.strategy, start, end, seconds, files["html"])
    return {
        "strategy": data.strategy, "start": start.isoformat(), "end": end.isoformat(),
        "html": str(files["html"]), "json": str(files["json"]),
        "mlflow_run_id": run.run_id, "mlflow_experiment_id": run.experiment_id, "mlflow_run_url": run.url,
        "ic": [list(r) for r in ic_table(data)],
        "performance": {"columns": ["", *(title for _k, title in PORTFOLIOS)],
                        "rows": [list(r) for r in performance_table(data)]},
        "headline": data.headline(), "warnings": list(data.warnings), "seconds": round(seconds, 3),
    }


def _markdown(data: ReportData, files: dict[Any, Path], run: ReportRun, settings: Settings) -> str:
    lines = [f"# Report {data.strategy} {data.start} .. {data.end}", ""]
    if data.warnings:
        lines += ["## Warnings", "", *[f"- **{w}**" for w in data.warnings], ""]
    lines += ["## Served signal", "", markdown_table(["", "value"], ic_table(data)), ""]
    lines += ["## Portfolios", "", markdown_table(["", *(t for _k, t in PORTFOLIOS)], performance_table(data)), ""]
    link = f"[{run.run_id}]({run.url})" if run.url else (
        f"{run.run_id} (experiment {run.experiment_id}; tracking {settings.resolved_mlflow_tracking_uri}; set "
        f"mlflow_ui_url for a link)")
    lines += ["## Files", "", f"- HTML: `{files['html']}`", f"- JSON: `{files['json']}`",
              f"- MLflow report run: {link}"]
    return "\n".join(lines)
