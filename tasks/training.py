"""Task adapters for training: one task per rolling task, fanned out through the flow's runner."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

from prefect import get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from quant_core.data.lake import Lake
from quant_core.models.registry import ModelInfo, ModelRegistry
from quant_core.models.rolling import RollingTask
from quant_core.models.training import TrainedModel, TrainOutcome, assemble, train_task
from quant_core.settings import Settings
from tasks.retry import IO_RETRY_DELAYS, retry_on_io_error

# Reuse is decided by the registry (task id + data fingerprint), which survives across runs and
# machines; a Prefect input cache would not see a changed lake, so no cache policy here. The
# settings arrive as a parameter: a task on a Dask worker or another host uses the lake and the
# MLflow store the flow resolved, not whatever its own environment says.


def registry_of(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.resolved_mlflow_tracking_uri, settings.mlflow_artifact_uri)


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE,
      task_run_name="train {rolling_task.segments.test.start}")
def fit_rolling_model(rolling_task: RollingTask, as_of: date, settings: Settings) -> TrainedModel | TrainOutcome:
    """Fit one rolling task, or return its registered version when it was trained on the same data."""
    t0 = time.perf_counter()
    lake = Lake.from_settings(settings)
    data = assemble(lake, rolling_task, lake.calendar(), as_of)
    found = registry_of(settings).find(rolling_task, data.fingerprint)
    if found is not None:
        get_run_logger().info("task %s already trained on this data: version %d", rolling_task.task_id, found.version)
        return _reused(rolling_task, found, t0)
    return train_task(data, rolling_task, num_threads=settings.num_threads)


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE,
      task_run_name="register {trained.task.segments.test.start}")
def register_model(trained: TrainedModel, settings: Settings) -> TrainOutcome:
    """Register a fitted task in MLflow (or return the version another run registered meanwhile)."""
    t0 = time.perf_counter()
    registry = registry_of(settings)
    found = registry.find(trained.task, trained.fingerprint)
    if found is not None:
        return _reused(trained.task, found, t0)
    info = registry.register(trained)
    get_run_logger().info("task %s: version %d, valid rank IC %.4f", trained.task.task_id, info.version,
                          trained.metrics["valid_rank_ic"])
    return TrainOutcome(trained.task.task_id, trained.task.segments.test.start, info.version, False,
                        trained.metrics, trained.fit_seconds, trained.total_seconds + time.perf_counter() - t0)


def _reused(rolling_task: RollingTask, found: ModelInfo, t0: float) -> TrainOutcome:
    return TrainOutcome(rolling_task.task_id, rolling_task.segments.test.start, found.version, True, found.metrics,
                        0.0, time.perf_counter() - t0)


def train_rolling_models(rolling_tasks: list[RollingTask], as_of: date, settings: Settings,
                         *, point_in_time: bool = False,
                         on_done: Callable[[TrainOutcome], None] | None = None) -> list[TrainOutcome]:
    """Fan the rolling tasks out through the current flow's task runner (threads or Dask).

    The strategies' experiments and registered models are created first, in this process, so the
    parallel workers never race to create them. Fits run in parallel; registration follows in test
    start order (a fit that finishes early waits for the ones before it), so version numbers grow
    with the test start whatever the runner's timing: a catch-up or a backfill registers the same
    versions as one run a day. With ``point_in_time`` each task is trained as of its own test start
    (what a daily run on that date knew: its test metrics are left for live monitoring).
    ``on_done`` is called after each registration (progress reporting).
    """
    registry = registry_of(settings)
    for strategy in sorted({t.strategy for t in rolling_tasks}):
        registry.prepare(strategy)
    ordered = sorted(rolling_tasks, key=lambda t: (t.segments.test.start, t.strategy))
    dates = [t.segments.test.start if point_in_time else as_of for t in ordered]
    futures = fit_rolling_model.map(ordered, as_of=dates, settings=unmapped(settings))
    by_id: dict[tuple[str, str], TrainOutcome] = {}
    for rolling_task, future in zip(ordered, futures, strict=True):
        fitted = future.result()
        outcome = fitted if isinstance(fitted, TrainOutcome) else register_model(fitted, settings)
        by_id[(rolling_task.strategy, rolling_task.task_id)] = outcome
        if on_done is not None:
            on_done(outcome)
    return [by_id[(t.strategy, t.task_id)] for t in rolling_tasks]
