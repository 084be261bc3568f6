"""The serving stages of the daily routine as plain functions (Prefect-free; ``tasks/online.py`` wraps them).

Date semantics: ``as_of`` is the routine's business date, a trading day of the lake's calendar
(inclusive). The dates a run serves are the trading days after the last date of the strategy's
stored signals up to ``as_of`` (all of them at once when days were missed: a catch-up), starting
no earlier than the first date any model serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from quant_core.calendar import TradingCalendar
from quant_core.data.lake import Lake
from quant_core.errors import QonlineError
from quant_core.models.registry import ModelRegistry
from quant_core.models.rolling import RollingTask
from quant_core.models.strategy import StrategyConfig
from quant_core.online.monitoring import (
    DECAY_SINCE_TAG,
    DECAY_TAG,
    ROLLING_TAG,
    DecayStatus,
    MonitoringUpdate,
    decay_history,
    decay_status,
    read_monitoring,
    rolling_rank_ic,
    update_monitoring,
)
from quant_core.online.predictions import LoadedModel, PredictionUpdate, update_predictions
from quant_core.online.promotion import (
    Candidate,
    Gate,
    Promotion,
    PromotionError,
    PromotionLog,
    current_user,
    now_iso,
    plan_scheduled,
    rollback_target,
)
from quant_core.online.redis_sink import PublishResult, SignalStore, mask_url
from quant_core.online.signals import (
    SignalUpdate,
    average_ensemble,
    read_signals,
    served_signal,
    signal_dataset,
    write_signals,
)

logger = logging.getLogger(__name__)


class RoutineError(QonlineError, ValueError):
    """The routine cannot run for this date or strategy (names them and the rule)."""


# -- rolling ----------------------------------------------------------------------------------------
def next_tasks(registry: ModelRegistry, strategy: StrategyConfig, calendar: TradingCalendar,
               as_of: date) -> list[RollingTask]:
    """The rolling tasks due by ``as_of`` after the strategy's latest registered task (catch-up).

    Uses only the calendar up to ``as_of``: a run on ``as_of`` cannot know later sessions.

    Raises:
        RoutineError: nothing is registered (run ``first-train``), or ``as_of`` is before the first
            registered test start.
    """
    latest = registry.latest(strategy.name)
    if latest is None:
        raise RoutineError(f"strategy {strategy.name!r} has no trained model in MLflow ({registry.tracking_uri}): "
                           f"run `qonline first-train --strategy {strategy.name} --as-of DATE` first")
    first = min((m.test_start for m in registry.list(strategy.name) if m.test_start), default=None)
    if first is not None and as_of.isoformat() < first:
        raise RoutineError(f"--as-of {as_of} is before strategy {strategy.name!r}'s first training "
                           f"(its first test segment starts {first})")
    _info, last = latest
    known = TradingCalendar(calendar.range(None, as_of))
    return strategy.rolling_gen().following(last, known, as_of)


# -- promotion --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromotionOutcome:
    strategy: str
    appended: list[Promotion]
    serving: int | None
    warnings: list[str] = field(default_factory=list)


def _candidates(registry: ModelRegistry, strategy: str) -> list[Candidate]:
    out = []
    for m in registry.list(strategy):
        if m.test_start:
            ric = m.metrics.get("valid_rank_ic")
            out.append(Candidate(m.version, date.fromisoformat(m.test_start), ric, m.metrics))
    return out


def sync_alias(registry: ModelRegistry, log: PromotionLog) -> int | None:
    """Point the ``online`` alias at the log's current version (one registry call; no-op if it is)."""
    current = log.current()
    if current is None:
        return None
    if registry.online_version(log.strategy) != current.to_version:
        registry.set_alias(log.strategy, current.to_version)
        registry.tag_version(log.strategy, current.to_version, "promotion",
                             f"#{current.seq} {current.kind} after {current.applies_after}: {current.reason}")
    return current.to_version


def promote(lake: Lake, registry: ModelRegistry, strategy: StrategyConfig, calendar: TradingCalendar,
            as_of: date, *, run_id: str = "", user: str | None = None) -> PromotionOutcome:
    """Log the scheduled promotions due by ``as_of`` (gate applied), then move the alias to match."""
    log = PromotionLog(lake, strategy.name)
    gate = Gate(strategy.gate.min_valid_rank_ic, strategy.gate.min_valid_ic)
    planned = plan_scheduled(log.entries(), _candidates(registry, strategy.name), calendar, as_of, gate)
    who = user or current_user()
    appended = [log.append(Promotion(p.applies_after, 0, p.kind, p.from_version, p.to_version, p.test_start, p.valid_rank_ic,
                                     p.reason, p.decided_on, run_id, who, now_iso()), writer=run_id or None)
                for p in planned]
    warnings = [f"{strategy.name}: {p.reason}; version {p.to_version} keeps serving" for p in appended
                if p.kind == "gate_failed"]
    warnings += [f"{strategy.name}: {p.reason}" for p in appended if p.kind == "scheduled" and "gate failed" in p.reason]
    for w in warnings:
        logger.warning(w)
    return PromotionOutcome(strategy.name, appended, sync_alias(registry, log), warnings)


def manual_move(lake: Lake, registry: ModelRegistry, strategy: str, kind: str, version: int | None, reason: str,
                *, run_id: str = "", user: str | None = None) -> Promotion:
    """``models promote`` (kind ``manual``, a version) or ``models rollback`` (kind ``rollback``).

    The move applies after the last date already published (published history is never rewritten).

    Raises:
        PromotionError / RegistryError: the version does not exist or did not finish, or there is
            nothing to roll back to.
    """
    log = PromotionLog(lake, strategy)
    entries = log.entries()
    if kind == "rollback":
        target = rollback_target(entries).to_version
    else:
        assert version is not None
        target = registry.version_info(strategy, version).version
    if not entries and kind == "manual":
        raise PromotionError(f"{strategy}: nothing serves yet; run the daily routine once (or first-train) before a "
                             f"manual promotion")
    current = entries[-1].to_version if entries else None
    if current == target:
        raise PromotionError(f"{strategy}: version {target} is already the one serving")
    sig = signal_dataset(lake, strategy)
    published = sig.dates() if sig.exists() else []
    after = published[-1] if published else entries[-1].applies_after
    info = registry.version_info(strategy, target)
    entry = log.append(Promotion(after, 0, kind, current, target,  # type: ignore[arg-type]
                                 date.fromisoformat(info.test_start) if info.test_start else None,
                                 info.metrics.get("valid_rank_ic"), reason, after, run_id, user or current_user(),
                                 now_iso()))
    sync_alias(registry, log)
    return entry


# -- predictions and signals ------------------------------------------------------------------------
def dates_to_serve(lake: Lake, strategy: str, calendar: TradingCalendar, as_of: date) -> list[date]:
    """Trading days after the strategy's last stored signal date up to ``as_of``, from its first served date."""
    log = PromotionLog(lake, strategy)
    entries = log.entries()
    if not entries:
        return []
    sig = signal_dataset(lake, strategy)
    done = sig.dates() if sig.exists() else []
    first_served = min(p.applies_after for p in entries)
    start_after = max(done[-1], first_served) if done else first_served
    return [d for d in calendar.range(None, as_of) if d > start_after]


@dataclass(frozen=True)
class ServeOutcome:
    strategy: str
    dates: list[date]
    predictions: list[PredictionUpdate]
    signals: SignalUpdate | None
    top: pd.DataFrame
    bottom: pd.DataFrame


def load_model(registry: ModelRegistry, strategy: StrategyConfig, version: int) -> LoadedModel:
    return LoadedModel.from_artifacts(strategy.name, version, strategy.feature_set,
                                      registry.artifacts(strategy.name, version))


def serve(lake: Lake, registry: ModelRegistry, strategy: StrategyConfig, calendar: TradingCalendar, as_of: date,
          *, writer: str | None = None, models: dict[int, LoadedModel] | None = None) -> ServeOutcome:
    """Update the serving models' predictions for the dates to serve, then the strategy's signals."""
    days = dates_to_serve(lake, strategy.name, calendar, as_of)
    if not days:
        logger.info("%s: signals are up to date through %s", strategy.name, as_of)
        return ServeOutcome(strategy.name, [], [], None, pd.DataFrame(), pd.DataFrame())
    served = PromotionLog(lake, strategy.name).served_dates(days)
    cache = models if models is not None else {}
    updates = []
    for version, vdays in sorted(served.items()):
        if version not in cache:
            cache[version] = load_model(registry, strategy, version)
        updates.append(update_predictions(lake, cache[version], vdays, writer=writer))
    frame = served_signal(lake, strategy.name, served)
    res = write_signals(lake, strategy.name, frame, days[0], days[-1], writer=writer)
    last = frame[frame["date"] == frame["date"].max()].sort_values("score", ascending=False) if len(frame) else frame
    return ServeOutcome(strategy.name, days, updates, res, last.head(10), last.tail(10).iloc[::-1])


def combine(lake: Lake, name: str, strategies: list[str], start: date, end: date,
            *, writer: str | None = None) -> SignalUpdate | None:
    """AverageEnsemble of the strategies' signals over ``[start, end]`` into ``signals/<name>``."""
    parts = {s: read_signals(lake, s, start, end) for s in strategies}
    frame = average_ensemble(parts)
    if frame.empty:
        return None
    return write_signals(lake, name, frame, start, end, writer=writer)


# -- publish ----------------------------------------------------------------------------------------
def publish(lake: Lake, store: SignalStore, name: str, *, run_id: str, data_as_of: date,
            retention_days: int) -> list[PublishResult]:
    """Publish the lake's signal dates that Redis lacks (the latest at least), oldest first."""
    sig = signal_dataset(lake, name)
    if not sig.exists():
        return []
    dates = sig.dates()
    ptr = store.pointer(name)
    latest = date.fromisoformat(ptr[0]) if ptr else None
    recent = [d for d in dates if (d - dates[-1]).days > -retention_days]
    todo = [d for d in recent if latest is None or d >= latest] or dates[-1:]
    out = []
    frame = read_signals(lake, name, todo[0], todo[-1])
    for d in todo:
        day = frame[frame["date"] == d]
        models = ",".join(sorted(set(day["version"].astype(str))))
        out.append(store.publish(name, d, day[["symbol", "score"]],
                                 {"models": models, "data_as_of": data_as_of.isoformat(), "run_id": run_id}))
    return out


# -- monitoring -------------------------------------------------------------------------------------
def monitor(lake: Lake, registry: ModelRegistry | None, strategy: str, label: str,
            *, writer: str | None = None) -> MonitoringUpdate:
    """Score newly observable dates; log them on the serving versions' MLflow runs (step = YYYYMMDD)."""
    upd = update_monitoring(lake, strategy, label, writer=writer)
    if registry is not None and not upd.rows.empty:
        for version, rows in upd.rows.groupby("version"):
            if not str(version).isdigit():
                continue
            info = registry.version_info(strategy, int(str(version)))
            points = [(d, {"live_ic": float(ic), "live_rank_ic": float(ric)})
                      for d, ic, ric in zip(rows["date"], rows["ic"], rows["rank_ic"], strict=True)]
            registry.log_live_metrics(info.run_id, points)
    return upd


@dataclass(frozen=True)
class ServingRun:
    """The MLflow run of a served model version, for links in reports and events."""

    strategy: str
    version: int
    run_id: str
    experiment_id: str
    tracking_uri: str

    def url(self, ui_url: str | None = None) -> str | None:
        """``<base>/#/experiments/<id>/runs/<run>`` on ``ui_url``, else on an http(s) tracking URI, else ``None``."""
        base = ui_url or (self.tracking_uri if self.tracking_uri.startswith(("http://", "https://")) else None)
        if not base:
            return None
        parts = urlsplit(base)  # a link never carries credentials: the browser asks for them
        host = parts.netloc.rpartition("@")[2]
        base = urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def markdown(self, ui_url: str | None = None) -> str:
        """A markdown link to the run, or ``runs:/<id>`` and the (masked) tracking URI when there is no UI."""
        url = self.url(ui_url)
        if url:
            return f"[{self.strategy} v{self.version}]({url})"
        return f"`runs:/{self.run_id}` ({self.strategy} v{self.version}, tracking `{mask_url(self.tracking_uri)}`)"


@dataclass(frozen=True)
class DecayCheck:
    """A signal's decay status, its monitored dates with their rolling rank IC, the serving run."""

    status: DecayStatus
    history: pd.DataFrame  # date, version, ic, rank_ic, n, rolling_rank_ic: every monitored date
    serving: ServingRun | None  # the MLflow run of ``status.version`` (strategies only)
    tagged: list[int] = field(default_factory=list)  # versions whose decay tags were written

    def event(self, ui_url: str | None = None) -> tuple[dict[str, str], dict[str, Any]]:
        """The ``qonline.signal.decay`` event's resource and payload (JSON-ready) for this status."""
        st, run = self.status, self.serving
        resource = {"prefect.resource.id": f"qonline.signal.{st.name}", "prefect.resource.name": st.name,
                    "qonline.version": st.version or ""}
        payload = {**st.to_dict(), "message": st.message, "mlflow_run_id": run.run_id if run else None,
                   "mlflow_run_url": run.url(ui_url) if run else None}
        return resource, payload


def tag_decay(registry: ModelRegistry, strategy: str, version: int, status: DecayStatus) -> None:
    """Write the decay tags on a model version: ``"true"``/``"false"``, the first date below, the rolling value."""
    registry.tag_version(strategy, version, DECAY_TAG, "true" if status.alert else "false")
    registry.tag_version(strategy, version, DECAY_SINCE_TAG, status.since.isoformat() if status.alert and status.since
                         else "")
    registry.tag_version(strategy, version, ROLLING_TAG, "" if status.rolling_rank_ic is None
                         else f"{status.rolling_rank_ic:.6f}")


def check_decay(lake: Lake, registry: ModelRegistry | None, name: str, *, window: int, threshold: float,
                decay_days: int, start: date | None = None) -> DecayCheck:
    """The decay status of a served signal from its monitored dates; MLflow tags on its versions.

    With a registry (a strategy, not a combined signal), each version that served a monitored date
    on or after ``start`` (the dates a run scored; ``None``: none), and the version serving the last
    monitored date, gets the tags of the status as of the last monitored date it served. A version
    that stops serving keeps that state, so a run covering several days tags as one run per day
    would have.
    """
    rows = read_monitoring(lake, name)
    history = decay_history(name, rows, window=window, threshold=threshold, decay_days=decay_days)
    status = history[-1] if history else decay_status(name, rows, window=window, threshold=threshold,
                                                      decay_days=decay_days)
    frame = rows.assign(rolling_rank_ic=rolling_rank_ic(rows, window))  # rows are in date order
    if registry is None:
        return DecayCheck(status, frame, None)
    last_of: dict[str, DecayStatus] = {}
    for h in history:  # in date order: the last one of each version wins
        if h.version is not None:
            last_of[h.version] = h
    due = {v for v, h in last_of.items() if start is not None and h.last_date is not None and h.last_date >= start}
    due |= {status.version} if status.version is not None else set()
    tagged = sorted(int(v) for v in due if v.isdigit())
    for version in tagged:
        tag_decay(registry, name, version, last_of[str(version)])
    serving = None
    if status.version is not None and status.version.isdigit():
        info = registry.version_info(name, int(status.version))
        serving = ServingRun(name, info.version, info.run_id, registry.experiment_id(name), registry.tracking_uri)
    return DecayCheck(status, frame, serving, tagged)
