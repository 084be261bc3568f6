"""Task adapters for training: one task per rolling task, fanned out through the flow's runner."""

from __future__ import annotations

import time
from datetime import date

from prefect import get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from quant_core.lake import Lake
from quant_core.registry import ModelRegistry
from quant_core.rolling import RollingTask
from quant_core.settings import Settings
from quant_core.training import TrainOutcome, assemble, train_task
from tasks.retry import IO_RETRY_DELAYS, retry_on_io_error

# Reuse is decided by the registry (task id + data fingerprint), which survives across runs and
# machines; a Prefect input cache would not see a changed lake, so no cache policy here. The
# settings arrive as a parameter: a task on a Dask worker or another host uses the lake and the
# MLflow store the flow resolved, not whatever its own environment says.


def registry_of(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.resolved_mlflow_tracking_uri, settings.mlflow_artifact_uri)


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE,
      task_run_name="train {rolling_task.segments.test.start}")
def train_rolling_model(rolling_task: RollingTask, as_of: date, settings: Settings) -> TrainOutcome:
    """Train one rolling task (or reuse its registered version) and register it in MLflow."""
    t0 = time.perf_counter()
    lake = Lake.from_settings(settings)
    registry = registry_of(settings)
    data = assemble(lake, rolling_task, lake.calendar(), as_of)
    found = registry.find(rolling_task, data.fingerprint)
    if found is not None:
        get_run_logger().info("task %s already trained on this data: version %d", rolling_task.task_id, found.version)
        return TrainOutcome(rolling_task.task_id, rolling_task.segments.test.start, found.version, True,
                            found.metrics, 0.0, time.perf_counter() - t0)
    trained = train_task(data, rolling_task, num_threads=settings.num_threads)
    info = registry.register(trained)
    get_run_logger().info("task %s: version %d, valid rank IC %.4f", rolling_task.task_id, info.version,
                          trained.metrics["valid_rank_ic"])
    return TrainOutcome(rolling_task.task_id, rolling_task.segments.test.start, info.version, False,
                        trained.metrics, trained.fit_seconds, time.perf_counter() - t0)


def train_rolling_models(rolling_tasks: list[RollingTask], as_of: date, settings: Settings,
                         *, point_in_time: bool = False) -> list[TrainOutcome]:
    """Fan the rolling tasks out through the current flow's task runner (threads or Dask).

    The strategies' experiments and registered models are created first, in this process, so the
    parallel workers never race to create them. With ``point_in_time`` each task is trained as of
    its own test start (what a daily run on that date knew: its test metrics are left for live
    monitoring), so a catch-up run registers exactly what daily runs would have.
    """
    registry = registry_of(settings)
    for strategy in sorted({t.strategy for t in rolling_tasks}):
        registry.prepare(strategy)
    dates = [t.segments.test.start if point_in_time else as_of for t in rolling_tasks]
    futures = train_rolling_model.map(rolling_tasks, as_of=dates, settings=unmapped(settings))
    return [f.result() for f in futures]
