"""Flow ``first_train``: generate every rolling task of a strategy up to ``as_of`` and train them in parallel."""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.params import Day, StrategyName, flow_settings
from flows.writer_lock import lake_writer
from quant_core.data.lake import Lake
from quant_core.models.strategy import DEFAULT_STRATEGY, get_strategy
from quant_core.models.training import TrainOutcome, check_model_params
from quant_core.reporting import markdown_table
from tasks.online import promote_online_model
from tasks.retry import writer_id
from tasks.training import registry_of, train_rolling_models

ARTIFACT_KEY = "first-train-report"


def _configured_workers() -> int:
    """``max_workers`` of this environment's settings (what a deployment's run gets), else the cores."""
    from quant_core.errors import QonlineError
    from quant_core.settings import load_settings

    try:
        return load_settings().max_workers
    except (QonlineError, ValueError):
        return os.cpu_count() or 1


def task_runner(kind: str = "threads", *, max_workers: int | None = None, dask_address: str | None = None) -> Any:
    """The task runner for training: threads (default), a local Dask process cluster, or a Dask scheduler.

    One LightGBM thread per model and as many workers as cores: oversubscription made 4 models 7x
    slower on 2 cores (STACK.md).
    """
    workers = max_workers or _configured_workers()
    if dask_address:
        from prefect_dask.task_runners import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    if kind == "dask":
        from prefect_dask.task_runners import DaskTaskRunner

        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=workers)


def _report(strategy: str, as_of: date, outcomes: list[TrainOutcome], seconds: float) -> str:
    rows = [(o.test_start, o.task_id, o.version, "reused" if o.reused else "trained",
             o.metrics.get("best_iteration"), o.metrics.get("valid_rank_ic"), o.metrics.get("test_rank_ic"),
             f"{o.fit_seconds:.1f}") for o in outcomes]
    trained = sum(not o.reused for o in outcomes)
    return (f"# first_train {strategy} as of {as_of}\n\n{len(outcomes)} rolling tasks: {trained} trained, "
            f"{len(outcomes) - trained} reused, {seconds:.1f} s\n\n"
            + markdown_table(["test start", "task", "version", "", "best iter", "valid rank IC", "test rank IC",
                              "fit s"], rows))


@flow(name="first_train", flow_run_name="first_train {strategy} as of {as_of}",
      task_runner=task_runner("threads"))
def first_train(as_of: Day, strategy: StrategyName = DEFAULT_STRATEGY, lake_uri: str | None = None,
                config: str | None = None) -> dict[str, object]:
    """Train every rolling task of a strategy up to as_of (reusing versions already trained on the same data)."""
    import time

    t0 = time.perf_counter()
    settings = flow_settings(config, lake_uri=lake_uri)
    lake = Lake.from_settings(settings)
    calendar = lake.calendar()
    strat = get_strategy(strategy, settings.strategies)
    tasks = strat.tasks(calendar, as_of)
    for t in tasks:
        check_model_params(t)  # fail before anything is trained or registered
    registry_of(settings).check_reachable()
    get_run_logger().info("%s: %d rolling tasks up to %s", strategy, len(tasks), as_of)
    with lake_writer(settings, f"first_train {strategy} as of {as_of} ({writer_id()})"):
        outcomes = train_rolling_models(tasks, calendar.align_end(as_of), settings)
        # the newest model goes online (logged in promotions/): the daily routine serves from its test start
        promoted = promote_online_model(strategy, calendar, calendar.align_end(as_of), settings)
    seconds = time.perf_counter() - t0
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=_report(strategy, as_of, outcomes, seconds)
                             + f"\n\nOnline: version {promoted.serving}"
                             + "".join(f"\n\n**{w}**" for w in promoted.warnings),
                             description=f"first_train {strategy} {as_of}")
    return {
        "strategy": strategy, "as_of": as_of.isoformat(), "tasks": len(tasks),
        "trained": sum(not o.reused for o in outcomes), "reused": sum(o.reused for o in outcomes),
        "seconds": round(seconds, 2), "online": promoted.serving,
        "versions": [{"test_start": o.test_start.isoformat(), "version": o.version, "reused": o.reused,
                      "valid_rank_ic": o.metrics.get("valid_rank_ic")} for o in outcomes],
    }
