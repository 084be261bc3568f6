"""Task adapters for the bar stages: extract, validate, store."""

from __future__ import annotations

from datetime import date

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quant_core.data.ingest import GateOutcome, extract, store, validate
from quant_core.data.lake import Lake, WriteResult
from quant_core.exchange import FeedCheck, check_feed, require_feed
from quant_core.settings import Settings
from tasks.retry import IO_RETRY_DELAYS, retry_on_io_error, writer_id

# Bars are DataFrames passed in memory between tasks of one flow run; hashing them for a cache key
# would cost more than extracting again, so these tasks do not cache (NO_CACHE). Settings come in
# as a parameter (resolved once by the flow), so a task on a remote worker uses the same lake.


@task(retries=3, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def extract_bars(source: str, start: date, end: date, settings: Settings) -> pd.DataFrame:
    """Extract bars of [start, end] from a source spec."""
    bars = extract(source, start, end, settings)
    get_run_logger().info("extracted %d bars (%s..%s) from %s", len(bars), start, end, source)
    return bars


@task(cache_policy=NO_CACHE)
def check_sessions(bars: pd.DataFrame, start: date, end: date, settings: Settings) -> FeedCheck | None:
    """Fail when a session of the exchange has no bars; report bars on non-session days."""
    days = set(pd.to_datetime(bars["date"]).dt.date.unique()) if len(bars) else set()
    check = check_feed(settings.exchange, start, end, days)
    require_feed(check, settings.source)
    if check is not None and check.extra:
        get_run_logger().warning("bars on %d day(s) that are not sessions of %s: %s", len(check.extra),
                                 check.exchange, ", ".join(map(str, check.extra[:10])))
    return check


@task(retries=2, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def validate_bars(bars: pd.DataFrame, start: date, end: date, settings: Settings, source: str) -> GateOutcome:
    """Run the Great Expectations gate on the bars; raise on failure."""
    outcome = validate(Lake.from_settings(settings), bars, start, end, settings, source=source)
    get_run_logger().info("validation passed: %d rows; report %s", outcome.rows, outcome.report_uri)
    return outcome


@task(retries=3, retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def store_bars(bars: pd.DataFrame, start: date, end: date, settings: Settings) -> WriteResult:
    """Replace the lake's bars of [start, end] with these bars."""
    result = store(Lake.from_settings(settings), bars, start, end, writer=writer_id())
    get_run_logger().info("stored %d rows, months rewritten: %s", result.rows, ", ".join(result.months) or "none")
    return result
