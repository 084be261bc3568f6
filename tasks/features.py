"""Task adapters for the feature and label stores."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quant_core.data.lake import Lake
from quant_core.features import get_feature_set
from quant_core.features.labels import get_label
from quant_core.features.store import StoreUpdate, update_features, update_labels
from quant_core.settings import Settings
from tasks.retry import IO_RETRY_DELAYS, retry_on_io_error, writer_id

# The result depends on the lake's bars, not only on the arguments: an input-keyed cache would
# serve stale features after a bar correction, so these tasks recompute (they are cheap: the daily
# increment is well under a second).


@task(retries=3, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def compute_features(feature_set: str, start: date, end: date, settings: Settings) -> StoreUpdate:
    """Recompute a feature set for [start, end] from the hist_ref buffer and store it."""
    update = update_features(Lake.from_settings(settings), get_feature_set(feature_set), start, end,
                             threads=settings.feature_threads, writer=writer_id())
    get_run_logger().info("features %s %s..%s: %d rows (buffer from %s)", feature_set, update.start, update.end,
                          update.rows, update.buffer_start)
    return update


@task(retries=3, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def compute_labels(label: str, start: date, end: date, settings: Settings) -> StoreUpdate:
    """Store a label for the observable dates of [start, end]."""
    update = update_labels(Lake.from_settings(settings), get_label(label), start, end, writer=writer_id())
    get_run_logger().info("labels %s: %s", label, update.note or f"{update.start}..{update.end}, {update.rows} rows")
    return update
