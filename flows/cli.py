"""The ``qonline`` command line: one command per flow, all honouring the settings and ``--config``."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from quant_core.runtime_env import apply_process_environment

apply_process_environment()

app = typer.Typer(
    name="qonline",
    help="Rolling LightGBM alpha models kept online, as Prefect flows over a Parquet lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML file with settings and strategies (or QONLINE_CONFIG)")
]
LakeOpt = Annotated[str | None, typer.Option("--lake", help="lake URI: folder, file:// or s3://bucket/prefix")]
DateOpt = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="ISO date, inclusive")]


def _use_config(config: Path | None) -> str | None:
    """The config file's absolute path, handed to the flow as a parameter (never via os.environ:
    the flow resolves the settings once and passes them to every task, on any worker)."""
    if config is None:
        return None
    if not config.is_file():
        _fail(f"config file {config} does not exist")
    return str(config.resolve())


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a flow; turn a failure into a one-paragraph error and a non-zero exit."""
    from quant_core.errors import QonlineError

    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except QonlineError as exc:
        _fail(str(exc))
    except Exception as exc:
        domain = type(exc).__module__.startswith("quant_core")
        if domain or isinstance(exc, ValueError):
            _fail(str(exc))
        logging.getLogger("qonline").debug("unexpected error", exc_info=True)
        _fail(f"unexpected {type(exc).__name__}: {exc}", code=2)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("quant_core").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


@app.command()
def ingest(
    start: DateOpt,
    end: DateOpt,
    source: Annotated[str | None, typer.Option(help="source spec (default: settings.source)")] = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Extract bars of [START, END] from SOURCE, validate them, and store them in the lake."""
    cfg = _use_config(config)
    from flows.ingest import ingest as ingest_flow

    summary = _run(ingest_flow, source=source, start=start.date(), end=end.date(), lake_uri=lake, config=cfg)
    _print_summary(summary, json_output)


@app.command()
def features(
    start: DateOpt,
    end: DateOpt,
    feature_set: Annotated[str, typer.Option("--set", help="feature set name")] = "alpha158",
    label: Annotated[list[str] | None, typer.Option("--label", help="label(s) to update (repeatable)")] = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Recompute a feature set (and labels) for [START, END] from the bars in the lake."""
    cfg = _use_config(config)
    from flows.features import features as features_flow

    labels = tuple(label) if label else ("LABEL0",)
    summary = _run(features_flow, start=start.date(), end=end.date(), feature_set=feature_set, labels=labels,
                   lake_uri=lake, config=cfg)
    _print_summary(summary, json_output)


@app.command("first-train")
def first_train(
    as_of: Annotated[datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="train every task up to this date")],
    strategy: Annotated[str, typer.Option(help="strategy name")] = "lgb_alpha158",
    dask_address: Annotated[str | None, typer.Option(help="train on an existing Dask scheduler")] = None,
    dask: Annotated[bool, typer.Option("--dask", help="train on a local Dask process cluster")] = False,
    workers: Annotated[int | None, typer.Option(help="parallel trainings (default: settings.max_workers)")] = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Generate every rolling task of STRATEGY up to AS_OF and train them in parallel (MLflow)."""
    cfg = _use_config(config)
    from flows.first_train import first_train as flow_fn
    from flows.first_train import task_runner
    from quant_core.settings import load_settings

    settings = _run(load_settings, cfg, lake_uri=lake)
    runner = task_runner("dask" if dask else "threads", max_workers=workers or settings.max_workers,
                         dask_address=dask_address)
    summary = _run(flow_fn.with_options(task_runner=runner), as_of=as_of.date(), strategy=strategy, lake_uri=lake,
                   config=cfg)
    _print_summary(summary, json_output)


models_app = typer.Typer(help="The model registry (MLflow).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    strategy: Annotated[str | None, typer.Option(help="one strategy (default: all configured)")] = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="a JSON list of objects")] = False,
) -> None:
    """Every registered version: task id, segments, metrics, online."""
    cfg = _use_config(config)
    from quant_core.registry import ModelRegistry
    from quant_core.settings import load_settings
    from quant_core.strategy import load_strategies

    settings = _run(load_settings, cfg, lake_uri=lake)
    names = [strategy] if strategy else sorted(_run(load_strategies, settings.strategies))
    registry = ModelRegistry(settings.resolved_mlflow_tracking_uri, settings.mlflow_artifact_uri)
    _run(registry.check_reachable)
    rows = [dict(m.to_dict(), strategy=name) for name in names for m in _run(registry.list, name)]
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no registered models")
        return
    typer.echo(f"{'strategy':<16} {'ver':>4} {'task':<17} {'test':<23} {'valid rIC':>9} {'online':>6}")
    for r in rows:
        test = r["segments"].get("test", [None, None])
        ric = r["metrics"].get("valid_rank_ic", float("nan"))
        typer.echo(f"{r['strategy']:<16} {r['version']:>4} {r['task_id']:<17} {test[0]}..{test[1] or '':<11} "
                   f"{ric:>9.4f} {'yes' if r['online'] else '':>6}")


lake_app = typer.Typer(help="The lake: datasets and their kept manifest generations.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")


@lake_app.command("history")
def lake_history(
    dataset: Annotated[str, typer.Argument(help="dataset name: bars, features/alpha158, labels/LABEL0, ...")],
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="a JSON list of objects, oldest first")] = False,
) -> None:
    """The kept generations of a dataset: when, which run, which range and months, rows after."""
    cfg = _use_config(config)
    from quant_core.lake import Lake
    from quant_core.settings import load_settings

    settings = _run(load_settings, cfg, lake_uri=lake)
    ds = _run(Lake.from_settings(settings).dataset, dataset)
    commits = _run(ds.history)
    if json_output:
        typer.echo(json.dumps([c.to_dict() for c in commits], indent=2))
        return
    if not commits:
        typer.echo(f"{ds.uri}: no recorded generations (nothing written yet, or written before generations existed)")
        return
    typer.echo(f"{'gen':>5} {'committed (UTC)':<24} {'range':<23} {'rows written':>12} {'rows after':>11} "
               f"{'months':<17} writer")
    for c in commits:
        months = ",".join(c.months) if len(c.months) <= 2 else f"{c.months[0]}..{c.months[-1]} ({len(c.months)})"
        typer.echo(f"{c.generation:>5} {c.committed_at:<24} {c.start}..{c.end:<11} {c.rows_written:>12} "
                   f"{c.rows:>11} {months:<17} {c.writer}")


@app.command()
def demo(
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="source spec (default: the embedded synthetic market)")] = None,
    daily_days: Annotated[int, typer.Option(help="trading days replayed as daily ingests at the end")] = 3,
) -> None:
    """The quickstart job: build a lake from the embedded synthetic market, then replay daily ingests."""
    cfg = _use_config(config)
    from flows.demo import demo as demo_flow
    from flows.local_services import private_redis, with_setting
    from quant_core.settings import load_settings

    settings = _run(load_settings, cfg, lake_uri=lake, source=source)
    if settings.redis_url is None:
        with private_redis() as url, with_setting(cfg, "redis_url", url) as private_cfg:
            summary = _run(demo_flow, source=settings.source, lake_uri=settings.lake_uri, daily_days=daily_days,
                           config=private_cfg)
    else:
        summary = _run(demo_flow, source=settings.source, lake_uri=settings.lake_uri, daily_days=daily_days,
                       config=cfg)
    _print_summary(summary, False)


@app.command("settings")
def show_settings(config: ConfigOpt = None) -> None:
    """Print the effective settings (secrets masked)."""
    cfg = _use_config(config)
    from quant_core.settings import load_settings

    s = _run(load_settings, cfg)
    typer.echo(json.dumps(s.redacted(), indent=2, default=str))


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    for key, value in summary.items():
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for k, v in value.items():
                typer.echo(f"  {k}: {v}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            typer.echo(f"{key}:")
            for item in value:
                typer.echo("  - " + ", ".join(f"{k}={v}" for k, v in item.items() if v not in (None, "", [])))
        else:
            typer.echo(f"{key}: {value}")


def run() -> None:  # pragma: no cover - console entry for `python -m flows.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

