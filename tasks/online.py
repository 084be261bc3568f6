"""Task adapters for the serving stages: rolling, promotion, predictions, signals, Redis, monitoring, decay alert."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from quant_core.calendar import TradingCalendar
from quant_core.data.lake import Lake
from quant_core.models.rolling import RollingTask
from quant_core.models.strategy import get_strategy
from quant_core.online.monitoring import DECAY_EVENT, MonitoringUpdate
from quant_core.online.redis_sink import PublishResult, RedisError, SignalStore, connect
from quant_core.online.routine import (
    DecayCheck,
    PromotionOutcome,
    ServeOutcome,
    check_decay,
    combine,
    monitor,
    next_tasks,
    promote,
    publish,
    serve,
)
from quant_core.online.signals import SignalUpdate
from quant_core.settings import Settings
from tasks.retry import IO_RETRY_DELAYS, retry_on_io_error, writer_id
from tasks.training import registry_of

# Every stage reads its state from the lake and MLflow and is idempotent (a date range replace, a
# log entry decided once, a content-addressed Redis snapshot), so a retry or a rerun is safe; the
# state lives outside Prefect, hence no input cache (NO_CACHE).


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def prepare_rolling_tasks(strategy: str, calendar: TradingCalendar, as_of: date, settings: Settings) -> list[RollingTask]:
    """The rolling tasks due by as_of after the strategy's latest registered one."""
    tasks = next_tasks(registry_of(settings), get_strategy(strategy, settings.strategies), calendar, as_of)
    get_run_logger().info("%s: %d new rolling task(s) due by %s", strategy, len(tasks), as_of)
    return tasks


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def promote_online_model(strategy: str, calendar: TradingCalendar, as_of: date, settings: Settings) -> PromotionOutcome:
    """Log the promotions due by as_of (quality gate applied) and move the online alias."""
    out = promote(Lake.from_settings(settings), registry_of(settings), get_strategy(strategy, settings.strategies),
                  calendar, as_of, run_id=writer_id())
    get_run_logger().info("%s: %d promotion log entr(ies); serving version %s", strategy, len(out.appended), out.serving)
    return out


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def update_signals(strategy: str, calendar: TradingCalendar, as_of: date, settings: Settings) -> ServeOutcome:
    """Predict the new dates with the models serving them, then replace the strategy's signals."""
    out = serve(Lake.from_settings(settings), registry_of(settings), get_strategy(strategy, settings.strategies),
                calendar, as_of, writer=writer_id())
    get_run_logger().info("%s: %d date(s) served, %d model(s) updated", strategy, len(out.dates), len(out.predictions))
    return out


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def ensemble_signals(name: str, strategies: list[str], start: date, end: date, settings: Settings) -> SignalUpdate | None:
    """AverageEnsemble of several strategies' signals into one combined signal."""
    return combine(Lake.from_settings(settings), name, strategies, start, end, writer=writer_id())


def _retry_redis(task: object, task_run: object, state: object) -> bool:
    return True  # every publish failure is worth another attempt: the lake keeps the truth


@task(retries=3, retry_delay_seconds=[1.0, 2.0, 4.0], retry_condition_fn=_retry_redis, cache_policy=NO_CACHE)
def publish_signals(name: str, as_of: date, settings: Settings) -> list[PublishResult]:
    """Publish the lake's signals that Redis lacks; atomic switch per snapshot."""
    if settings.redis_url is None:
        raise RedisError("redis_url is not set (QONLINE_REDIS_URL or the config file): signals stay in the lake only")
    store = SignalStore(connect(settings.redis_url.get_secret_value()), settings.redis_prefix,
                        settings.redis_retention_days, settings.redis_stream_maxlen)
    out = publish(Lake.from_settings(settings), store, name, run_id=writer_id(), data_as_of=as_of,
                  retention_days=settings.redis_retention_days)
    get_run_logger().info("%s: %d snapshot(s) published to Redis", name, sum(r.published for r in out))
    return out


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def update_live_monitoring(name: str, label: str, settings: Settings, log_to_mlflow: bool = True) -> MonitoringUpdate:
    """Daily IC and rank IC of the served signal for the dates whose labels became observable."""
    return monitor(Lake.from_settings(settings), registry_of(settings) if log_to_mlflow else None, name, label,
                   writer=writer_id())


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def check_signal_decay(name: str, settings: Settings, start: date | None = None, tag_mlflow: bool = True) -> DecayCheck:
    """Rolling rank IC and decay alert of a served signal; decay tags on its MLflow versions."""
    check = check_decay(Lake.from_settings(settings), registry_of(settings) if tag_mlflow else None, name,
                        window=settings.decay_window, threshold=settings.decay_threshold,
                        decay_days=settings.decay_days, start=start)
    get_run_logger().info(check.status.message)
    return check


@task(cache_policy=NO_CACHE)
def emit_decay_event(check: DecayCheck, settings: Settings) -> str | None:
    """Emit the qonline.signal.decay Prefect event of an alerting signal; returns the event id."""
    resource, payload = check.event(settings.mlflow_ui_url)
    event = emit_event(event=DECAY_EVENT, resource=resource, payload=payload)
    if event is None:  # no API to send it to (events disabled); emit_event logs its own errors
        get_run_logger().warning("%s: the %s event was not emitted", check.status.name, DECAY_EVENT)
        return None
    return str(event.id)
