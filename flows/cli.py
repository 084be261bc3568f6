"""The ``qonline`` command line: one command per flow, all honouring the settings and ``--config``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
DaskAddressOpt = Annotated[str | None, typer.Option(help="train on an existing Dask scheduler")]
DaskOpt = Annotated[bool, typer.Option("--dask", help="train on a local Dask process cluster")]
WorkersOpt = Annotated[int | None, typer.Option(help="parallel trainings (default: settings.max_workers)")]


def _task_runner(cfg: str | None, lake: str | None, dask: bool, dask_address: str | None, workers: int | None) -> Any:
    """The training task runner the options ask for (threads by default)."""
    from flows.first_train import task_runner
    from flows.params import flow_settings

    settings = _run(flow_settings, cfg, lake_uri=lake)
    return task_runner("dask" if dask else "threads", max_workers=workers or settings.max_workers,
                       dask_address=dask_address)


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
    from prefect.exceptions import ParameterTypeError

    from quant_core.errors import QonlineError

    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except (QonlineError, ParameterTypeError) as exc:  # bad input: the flow refused its parameters
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
    json_output: JsonOpt = False,
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
    json_output: JsonOpt = False,
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
    dask_address: DaskAddressOpt = None,
    dask: DaskOpt = False,
    workers: WorkersOpt = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Generate every rolling task of STRATEGY up to AS_OF and train them in parallel (MLflow)."""
    cfg = _use_config(config)
    from flows.first_train import first_train as flow_fn

    runner = _task_runner(cfg, lake, dask, dask_address, workers)
    summary = _run(flow_fn.with_options(task_runner=runner), as_of=as_of.date(), strategy=strategy, lake_uri=lake,
                   config=cfg)
    _print_summary(summary, json_output)


@app.command("run")
def run_routine(
    as_of: Annotated[datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"],
                                                   help="business date (default: the latest session)")] = None,
    strategy: Annotated[list[str] | None, typer.Option("--strategy", help="strategy to serve (repeatable)")] = None,
    dask_address: DaskAddressOpt = None,
    dask: DaskOpt = False,
    workers: WorkersOpt = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The daily routine through AS_OF: new bars, retrain when due, promote, predict, publish, monitor."""
    cfg = _use_config(config)
    from flows.daily_routine import daily_routine

    runner = _task_runner(cfg, lake, dask, dask_address, workers)
    summary = _run(daily_routine.with_options(task_runner=runner), as_of=as_of.date() if as_of else None,
                   strategies=list(strategy) if strategy else None, lake_uri=lake, config=cfg)
    _print_summary(summary, json_output)


@app.command("backfill")
def backfill_cmd(
    start: Annotated[datetime, typer.Option("--start", formats=["%Y-%m-%d"], help="first date, inclusive")],
    end: Annotated[datetime, typer.Option("--end", formats=["%Y-%m-%d"], help="last date, inclusive")],
    strategy: Annotated[list[str] | None, typer.Option("--strategy", help="strategy to serve (repeatable)")] = None,
    chunk: Annotated[int, typer.Option(help="sessions served per batch (1..260)")] = 20,
    dask_address: DaskAddressOpt = None,
    dask: DaskOpt = False,
    workers: WorkersOpt = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Replay the daily routine over every session of [START, END]; resumes where a killed run stopped."""
    cfg = _use_config(config)
    from flows.backfill import PROGRESS_LISTENERS
    from flows.backfill import backfill as backfill_flow
    from quant_core.online.backfill import check_range

    _run(check_range, start.date(), end.date(), chunk)  # the clear message, before Prefect's parameter check

    runner = _task_runner(cfg, lake, dask, dask_address, workers)
    with _progress_bar(f"backfill {start.date()}..{end.date()}") as listener:
        if listener is not None:
            PROGRESS_LISTENERS.append(listener)
        try:
            summary = _run(backfill_flow.with_options(task_runner=runner), start=start.date(), end=end.date(),
                           strategies=list(strategy) if strategy else None, chunk=chunk, lake_uri=lake, config=cfg)
        finally:
            if listener is not None:
                PROGRESS_LISTENERS.remove(listener)
    _print_summary(summary, json_output)


@app.command("report")
def report_cmd(
    start: Annotated[datetime, typer.Option("--start", formats=["%Y-%m-%d"], help="first signal date, inclusive")],
    end: Annotated[datetime, typer.Option("--end", formats=["%Y-%m-%d"], help="last signal date, inclusive")],
    strategy: Annotated[str | None, typer.Option(help="strategy (default: the only configured one)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output folder (default: reports/<strategy>_<start>_<end>/)")
                   ] = None,
    topk: Annotated[int | None, typer.Option(min=1, help="TopK-dropout: symbols held (default: backtest_topk)")] = None,
    n_drop: Annotated[int | None, typer.Option("--n-drop", min=0, help="TopK-dropout: replaced per day at most "
                                                                        "(default: backtest_n_drop)")] = None,
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """A self-contained HTML report and a JSON of the numbers for STRATEGY over [START, END], logged to MLflow."""
    cfg = _use_config(config)
    from flows.params import flow_settings
    from flows.report import check_report_request
    from flows.report import report as report_flow

    # the clear refusals (settings, strategy, range, output folder) before Prefect starts
    settings = _run(flow_settings, cfg, lake_uri=lake)
    _run(check_report_request, settings, start.date(), end.date(), strategy, str(out) if out else None, topk, n_drop)
    summary = _run(report_flow, start=start.date(), end=end.date(), strategy=strategy,
                   out=str(out) if out else None, topk=topk, n_drop=n_drop, lake_uri=lake, config=cfg)
    if json_output:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped: rich would wrap at 80 columns
        console = Console(width=120)
    ic = Table(title=f"{summary['strategy']} {summary['start']}..{summary['end']}: served signal", title_justify="left")
    ic.add_column("")
    ic.add_column("value", justify="right")
    for label, value in summary["ic"]:
        ic.add_row(label, value)
    perf = Table(title="portfolios (daily, attributed to the signal date)", title_justify="left")
    for i, column in enumerate(summary["performance"]["columns"]):
        perf.add_column(column, justify="left" if i == 0 else "right")
    for row in summary["performance"]["rows"]:
        perf.add_row(*row)
    console.print(ic, perf)
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    run = summary["mlflow_run_url"] or f"{summary['mlflow_run_id']} (experiment {summary['mlflow_experiment_id']})"
    console.print(f"HTML: {summary['html']}\nJSON: {summary['json']}\nMLflow report run: {run}", highlight=False)


@contextmanager
def _progress_bar(title: str) -> Iterator[Any]:
    """A rich progress bar on stderr when it is a terminal; ``None`` (quiet) otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[what]}"), console=Console(stderr=True), transient=False) as bar:
        job = bar.add_task(title, total=None, what="")

        def listener(done: int, total: int, what: str) -> None:
            bar.update(job, completed=done, total=total, what=what)

        yield listener


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
    from flows.params import flow_settings
    from quant_core.models.registry import ModelRegistry
    from quant_core.models.strategy import load_strategies

    settings = _run(flow_settings, cfg, lake_uri=lake)
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
    from flows.params import flow_settings
    from quant_core.data.lake import Lake

    settings = _run(flow_settings, cfg, lake_uri=lake)
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


def _registry_and_lake(cfg: str | None, lake: str | None, strategy: str) -> tuple[Any, Any, Any]:
    from flows.params import flow_settings
    from quant_core.data.lake import Lake
    from quant_core.models.registry import ModelRegistry
    from quant_core.models.strategy import get_strategy

    settings = _run(flow_settings, cfg, lake_uri=lake)
    _run(get_strategy, strategy, settings.strategies)
    registry = ModelRegistry(settings.resolved_mlflow_tracking_uri, settings.mlflow_artifact_uri)
    _run(registry.check_reachable)
    return registry, Lake.from_settings(settings), settings


def _move(settings: Any, store: Any, registry: Any, strategy: str, kind: str, version: int | None,
          reason: str) -> Any:
    """A manual promotion or rollback, made while holding the lake (never between a routine's stages)."""
    from flows.writer_lock import lake_writer
    from quant_core.online.routine import manual_move

    with lake_writer(settings, f"models {kind} {strategy}"):
        return manual_move(store, registry, strategy, kind, version, reason)


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="the version to serve")],
    strategy: Annotated[str, typer.Option(help="strategy name")],
    reason: Annotated[str, typer.Option(help="why (kept in the promotion log)")],
    lake: LakeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve VERSION from the next date on (logged; published dates are not rewritten)."""
    registry, store, settings = _registry_and_lake(_use_config(config), lake, strategy)
    entry = _run(_move, settings, store, registry, strategy, "manual", version, reason)
    typer.echo(f"{strategy}: version {entry.to_version} serves the dates after {entry.applies_after} "
               f"(was {entry.from_version}); log entry #{entry.seq}")


@models_app.command("rollback")
def models_rollback(
    strategy: Annotated[str, typer.Option(help="strategy name")],
    reason: Annotated[str, typer.Option(help="why (kept in the promotion log)")] = "rollback",
    lake: LakeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the previously promoted version again, from the next date on (logged)."""
    registry, store, settings = _registry_and_lake(_use_config(config), lake, strategy)
    entry = _run(_move, settings, store, registry, strategy, "rollback", None, reason)
    typer.echo(f"{strategy}: rolled back to version {entry.to_version} for the dates after {entry.applies_after} "
               f"(was {entry.from_version}); log entry #{entry.seq}")


signals_app = typer.Typer(help="Published signals (Redis).", no_args_is_help=True)
app.add_typer(signals_app, name="signals")


@signals_app.command("show")
def signals_show(
    strategy: Annotated[str | None, typer.Option(help="strategy or combined signal (default: the only one)")] = None,
    day: Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"], help="a date (default: latest)")] = None,
    top: Annotated[int, typer.Option(help="how many signals, best first (0: all)")] = 10,
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="print an object: strategy, date, models, count, "
                                                              "signals")] = False,
) -> None:
    """Read a signal snapshot back from Redis."""
    from flows.params import flow_settings
    from quant_core.online.redis_sink import SignalStore, connect

    settings = _run(flow_settings, _use_config(config))
    if settings.redis_url is None:
        _fail("redis_url is not set (QONLINE_REDIS_URL or the config file)")
    assert settings.redis_url is not None
    store = SignalStore(_run(connect, settings.redis_url.get_secret_value()), settings.redis_prefix)
    names = [strategy] if strategy else _run(store.strategies)
    if not names:
        _fail("no signals are published in Redis yet (run `qonline run`)")
    if len(names) > 1:
        _fail(f"several signals are published ({', '.join(names)}): choose one with --strategy")
    snap = _run(store.read, names[0], day.date() if day else None, top or None)
    if snap is None:
        _fail(f"no snapshot of {names[0]}{' for ' + day.date().isoformat() if day else ''} in Redis")
    doc = snap.to_dict()
    if json_output:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{doc['strategy']} {doc['date']}: {doc['count']} symbols, models {doc['models']}, data as of "
               f"{doc['data_as_of']}, run {doc['run_id']}")
    for i, row in enumerate(doc["signals"], 1):
        typer.echo(f"{i:>4}  {row['symbol']:<12} {row['score']:+.6f}")


@app.command()
def demo(
    lake: LakeOpt = None,
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="source spec (default: the embedded synthetic market)")] = None,
    daily_days: Annotated[int, typer.Option(help="sessions of daily routines after the first training")] = 5,
    backfill_days: Annotated[int, typer.Option(help="sessions backfilled after the daily routines")] = 10,
) -> None:
    """The quickstart job: history, first training, a week of daily routines, a backfill, signals from Redis."""
    cfg = _use_config(config)
    from flows.demo import demo as demo_flow
    from flows.local_services import private_redis, with_setting
    from flows.params import flow_settings

    settings = _run(flow_settings, cfg, lake_uri=lake, source=source)
    if settings.redis_url is None:
        with private_redis() as url, with_setting(cfg, "redis_url", url) as private_cfg:
            summary = _run(demo_flow, source=settings.source, lake_uri=settings.lake_uri, daily_days=daily_days,
                           backfill_days=backfill_days, config=private_cfg)
    else:
        summary = _run(demo_flow, source=settings.source, lake_uri=settings.lake_uri, daily_days=daily_days,
                       backfill_days=backfill_days, config=cfg)
    signals = summary.pop("latest_signals", {})
    _print_summary(summary, False)
    if signals:
        typer.echo(f"latest signals in Redis: {signals['strategy']} {signals['date']} (models {signals['models']}, "
                   f"{signals['count']} symbols), top {len(signals['signals'])}:")
        for i, row in enumerate(signals["signals"], 1):
            typer.echo(f"  {i:>2}. {row['symbol']:<8} {row['score']:+.5f}")


@app.command("settings")
def show_settings(config: ConfigOpt = None) -> None:
    """Print the effective settings (secrets masked)."""
    cfg = _use_config(config)
    from flows.params import flow_settings

    s = _run(flow_settings, cfg)
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

