"""Flow ``demo``: the quickstart job on embedded defaults.

Builds a lake from the synthetic market (history in one ingest), then replays the last trading
days as daily ingests, exactly as a scheduled deployment would after each close.
"""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.ingest import ingest
from quant_core.lake import Lake, describe
from quant_core.reporting import markdown_table
from quant_core.settings import load_settings

ARTIFACT_KEY = "demo-report"


def source_calendar(spec: str) -> list[date]:
    """The trading days of a source with a known span (the synthetic market has one)."""
    from quant_core.sources import parse_source

    source = parse_source(spec)
    calendar = getattr(source, "calendar", None)
    if not callable(calendar):
        from quant_core.errors import ConfigError

        raise ConfigError(f"the demo needs a source with a known span (synthetic:...), got {spec!r}")
    days: list[date] = list(calendar())
    if not days:
        from quant_core.errors import ConfigError

        raise ConfigError(f"source {spec!r} has no trading days")
    return days


@flow(name="demo", flow_run_name="demo {lake_uri}")
def demo(source: str, lake_uri: str, daily_days: int = 3, config: str | None = None) -> dict[str, object]:
    """Ingest the synthetic market's history, then replay the last days as daily ingests."""
    logger = get_run_logger()
    days = source_calendar(source)
    first, last = days[0], days[-1]
    tail_days = days[-daily_days:] if daily_days > 0 else []
    history_end = (tail_days[0] - timedelta(days=1)) if tail_days else last
    history = ingest(source=source, start=first, end=history_end, lake_uri=lake_uri, config=config)
    daily = []
    for day in tail_days:
        daily.append(ingest(source=source, start=day, end=day, lake_uri=lake_uri, config=config))
    settings = load_settings(config, lake_uri=lake_uri)
    summary = describe(Lake.from_settings(settings).bars.manifest())
    redis_status = "not configured"
    if settings.redis_url is not None:
        import redis

        client = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=2)
        redis_status = f"reachable (PING={client.ping()})"
    rows: list[tuple[str, object, object]] = [("history", f"{first} .. {history_end}", history["rows"])]
    rows += [("daily", d["start"], d["rows"]) for d in daily]
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown="# qonline demo\n\n" + markdown_table(["step", "dates", "rows"], rows)
        + f"\n\nLake `{settings.lake_uri}`: {summary}\n\nRedis: {redis_status}\n",
        description="quickstart demo",
    )
    logger.info("demo done: lake %s holds %s", settings.lake_uri, summary)
    return {
        "lake": Lake.from_settings(settings).uri,
        "history": f"{first}..{history_end} ({history['rows']} rows)",
        "daily_ingests": ", ".join(f"{d['start']} ({d['rows']} rows)" for d in daily) or "none",
        "bars": summary,
        "features": describe(Lake.from_settings(settings).dataset("features/alpha158").manifest()),
        "validation_report": history["report_uri"],
        "redis": redis_status,
    }
