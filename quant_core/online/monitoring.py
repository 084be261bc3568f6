"""Live monitoring: the served signal's daily IC and rank IC, as its labels become observable, and its decay alert.

A label is observable ``lookahead`` trading days late (LABEL0: two). Each routine scores the served
signal of every date whose label is stored but which ``monitoring/<strategy>/`` does not hold yet:
IC is the Pearson correlation of score and raw label across the date's symbols, rank IC the
Spearman correlation (Qlib's ``calc_ic``, :func:`quant_core.evaluation.metrics.daily_ic`; pairs
with a NaN are dropped). Rows: ``date``, ``symbol`` (the serving version, the lake's key column),
``version``, ``ic``, ``rank_ic``, ``n``.

The decay alert watches the mean rank IC of the last ``window`` monitored dates (a date is
monitored once its label is observable, so the alert of date ``t`` is known ``lookahead`` sessions
after ``t``). It is raised when that rolling mean has been strictly below ``threshold`` on
``decay_days`` consecutive monitored dates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from quant_core.data.lake import COMMIT_RETRIES, Dataset, Lake
from quant_core.errors import ConfigError
from quant_core.evaluation import metrics
from quant_core.features.labels import get_label
from quant_core.features.store import label_dataset
from quant_core.online.signals import read_signals

logger = logging.getLogger(__name__)
SCHEMA = pa.schema([pa.field("date", pa.date32(), nullable=False), pa.field("symbol", pa.large_string()),
                    pa.field("version", pa.large_string()), pa.field("ic", pa.float64()),
                    pa.field("rank_ic", pa.float64()), pa.field("n", pa.int64())])
ROW_COLUMNS = ("date", "version", "ic", "rank_ic", "n")

#: the Prefect event a run emits for each signal whose decay alert is raised
DECAY_EVENT = "qonline.signal.decay"
#: MLflow model version tags: the alert (``"true"``/``"false"``), its first date, the rolling rank IC
DECAY_TAG = "qonline.decay_alert"
DECAY_SINCE_TAG = "qonline.decay_alert_since"
ROLLING_TAG = "qonline.rolling_rank_ic"


def monitoring_dataset(lake: Lake, name: str) -> Dataset:
    return lake.dataset(f"monitoring/{name}")


def daily_ic(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Per date: Pearson IC, Spearman rank IC and pair count of ``score`` against ``label``.

    :func:`quant_core.evaluation.metrics.daily_ic` with ``date`` as ``datetime.date`` (the lake's
    date type) and only the dates with at least one pair: a date whose labels are all missing is
    not scored (it stays to do), as monitoring always did.
    """
    out = metrics.daily_ic(frame, "score", label)
    out = out[out["n"] > 0].reset_index(drop=True)
    out["date"] = out["date"].dt.date
    return out


@dataclass(frozen=True)
class MonitoringUpdate:
    name: str
    rows: pd.DataFrame  # the new rows: date, version, ic, rank_ic, n
    note: str = ""


def update_monitoring(lake: Lake, name: str, label_name: str, *, writer: str | None = None) -> MonitoringUpdate:
    """Score the served signal on every date whose label became observable since the last update."""
    label = get_label(label_name)
    lds = label_dataset(lake, label)
    mds = monitoring_dataset(lake, name)
    signals = read_signals(lake, name)
    if signals.empty or not lds.exists():
        return MonitoringUpdate(name, pd.DataFrame(), "no signals or no labels yet")
    done = set(mds.dates()) if mds.exists() else set()
    labelled = set(lds.dates())
    todo = sorted(d for d in set(signals["date"].unique()) if d in labelled and d not in done)
    if not todo:
        return MonitoringUpdate(name, pd.DataFrame(), "no newly observable labels")
    lo, hi = todo[0], todo[-1]
    labs = lds.read(lo, hi).to_pandas()
    sig = signals[(signals["date"] >= lo) & (signals["date"] <= hi) & signals["date"].isin(set(todo))]
    merged = sig.merge(labs, on=["date", "symbol"], how="left")
    ics = daily_ic(merged, label.name)
    versions = sig.groupby("date")["version"].first()
    ics["version"] = ics["date"].map(versions).astype(str)
    # dates of [lo, hi] already stored are kept by writing them again from the stored rows
    kept = mds.read(lo, hi).to_pandas() if mds.exists() else pd.DataFrame()
    table_rows = pd.concat([kept.drop(columns=["symbol"]) if not kept.empty else kept, ics], ignore_index=True)
    table = pa.table({
        "date": pa.array(pd.to_datetime(table_rows["date"]).to_numpy().astype("datetime64[D]"), pa.date32()),
        "symbol": pa.array(table_rows["version"].astype(str), pa.large_string()),
        "version": pa.array(table_rows["version"].astype(str), pa.large_string()),
        "ic": pa.array(table_rows["ic"].to_numpy(np.float64), pa.float64()),
        "rank_ic": pa.array(table_rows["rank_ic"].to_numpy(np.float64), pa.float64()),
        "n": pa.array(table_rows["n"].to_numpy(np.int64), pa.int64()),
    })
    mds.write(table, lo, hi, writer=writer, retries=COMMIT_RETRIES)
    logger.info("monitoring %s: %d new date(s) %s..%s, mean rank IC %.4f", name, len(ics), lo, hi,
                float(np.nanmean(ics["rank_ic"])) if len(ics) else float("nan"))
    return MonitoringUpdate(name, ics[["date", "version", "ic", "rank_ic", "n"]])


def recent_rank_ic(rows: pd.DataFrame, days: int = 20) -> tuple[float | None, int]:
    """Mean rank IC of the last ``days`` monitored dates of ``rows`` (``None`` when there are none) and their count.

    ``rows``: monitoring rows (:func:`read_monitoring`), any order.
    """
    values = rows.sort_values("date", kind="stable").tail(days)["rank_ic"].dropna()
    if values.empty:
        return None, 0
    mean = float(values.mean())
    return (mean if math.isfinite(mean) else None), int(len(values))


def read_monitoring(lake: Lake, name: str, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """The monitored dates of ``[start, end]`` (inclusive; ``None`` = open): ``date, version, ic, rank_ic, n``.

    Sorted by date, ``date`` as ``datetime.date``; empty (with those columns) before the first update.
    """
    mds = monitoring_dataset(lake, name)
    if not mds.exists():
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("date", "version") else np.float64)
                             for c in ROW_COLUMNS})
    frame: pd.DataFrame = mds.read(start, end).to_pandas()[list(ROW_COLUMNS)]
    return frame.sort_values("date", kind="stable").reset_index(drop=True)


def rolling_rank_ic(rows: pd.DataFrame, window: int) -> npt.NDArray[np.float64]:
    """The mean rank IC of the ``window`` monitored dates ending at each row of ``rows`` (sorted by date).

    NaN until ``window`` dates are monitored, and while a date of the window has no rank IC
    (:func:`quant_core.evaluation.metrics.rolling_mean`, ``min_periods = window``).
    """
    if rows.empty:
        return np.empty(0, dtype=np.float64)
    return metrics.rolling_mean(rows, "rank_ic", window).to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class DecayStatus:
    """The decay alert of a served signal as of its last monitored date.

    Attributes:
        name: the signal (a strategy or a combined signal).
        alert: the rolling rank IC has been below ``threshold`` on ``decay_days`` consecutive
            monitored dates or more.
        rolling_rank_ic: the mean rank IC of the last ``window`` monitored dates; ``None`` while
            fewer than ``window`` dates (with a rank IC) are monitored.
        days_below: consecutive monitored dates, up to the last, whose rolling value is below the
            threshold (0 when the last one is not).
        since: the first of those dates (``None`` when ``days_below == 0``).
        window, threshold, decay_days: the rule (settings ``decay_window``, ``decay_threshold``,
            ``decay_days``).
        version: the version that served the last monitored date (``None`` before the first).
        dates: monitored dates seen, up to the last.
        last_date: the last monitored date.
    """

    name: str
    alert: bool
    rolling_rank_ic: float | None
    days_below: int
    since: date | None
    window: int
    threshold: float
    decay_days: int
    version: str | None
    dates: int
    last_date: date | None

    @property
    def message(self) -> str:
        """One sentence for a person: the alert, or how far the signal is from it."""
        rule = f"rolling {self.window}-date rank IC"
        if self.rolling_rank_ic is None:
            return (f"{self.name}: no {rule} yet ({self.dates} monitored date(s); it needs {self.window} with a "
                    f"rank IC); no decay alert")
        now = f"{self.rolling_rank_ic:.4f} on {self.last_date}"
        if self.alert:
            return (f"{self.name}: signal decay: the {rule} has been below {self.threshold:g} on {self.days_below} "
                    f"consecutive monitored dates since {self.since} (now {now}; the alert needs {self.decay_days}); "
                    f"serving version {self.version}")
        return (f"{self.name}: {rule} {now}, threshold {self.threshold:g}: {self.days_below} of the "
                f"{self.decay_days} consecutive date(s) below that raise the decay alert")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: dates as ISO strings."""
        return {"name": self.name, "alert": self.alert, "rolling_rank_ic": self.rolling_rank_ic,
                "days_below": self.days_below, "since": self.since.isoformat() if self.since else None,
                "window": self.window, "threshold": self.threshold, "decay_days": self.decay_days,
                "version": self.version, "dates": self.dates,
                "last_date": self.last_date.isoformat() if self.last_date else None}


def _check_rule(window: int, threshold: float, decay_days: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"decay window is {window!r}; it must be a positive number of monitored dates")
    if isinstance(decay_days, bool) or not isinstance(decay_days, int) or decay_days < 1:
        raise ConfigError(f"decay_days is {decay_days!r}; it must be a positive number of monitored dates")
    if not math.isfinite(threshold):
        raise ConfigError(f"decay threshold is {threshold!r}; it must be a finite rank IC")


def decay_history(name: str, rows: pd.DataFrame, *, window: int, threshold: float,
                  decay_days: int) -> list[DecayStatus]:
    """The decay status as of each monitored date of ``rows`` (one per row, in date order).

    Args:
        name: the signal.
        rows: monitoring rows (``date, version, rank_ic``; one per monitored date, any order).
        window: monitored dates in the rolling mean (``min_periods = window``).
        threshold: a rolling value strictly below it counts; equal does not.
        decay_days: consecutive counted dates that raise the alert. A date whose rolling value is
            at or above the threshold, or undefined, resets the count.

    Raises:
        ConfigError: a rule value out of range, a missing column, a repeated date.
    """
    _check_rule(window, threshold, decay_days)
    if rows.empty:
        return []
    ordered = rows.sort_values("date", kind="stable").reset_index(drop=True)
    rolling = rolling_rank_ic(ordered, window)
    days = [d if isinstance(d, date) else pd.Timestamp(d).date() for d in ordered["date"]]
    versions = ordered["version"].astype(str).tolist()
    out: list[DecayStatus] = []
    streak = 0
    for i, value in enumerate(rolling):
        below = bool(value < threshold)  # NaN compares False: no value is not below
        streak = streak + 1 if below else 0
        out.append(DecayStatus(
            name, streak >= decay_days, float(value) if math.isfinite(value) else None, streak,
            days[i - streak + 1] if streak else None, window, float(threshold), decay_days, versions[i], i + 1,
            days[i]))
    return out


def decay_status(name: str, rows: pd.DataFrame, *, window: int, threshold: float, decay_days: int) -> DecayStatus:
    """The decay status as of the last monitored date of ``rows`` (rules as :func:`decay_history`)."""
    history = decay_history(name, rows, window=window, threshold=threshold, decay_days=decay_days)
    if history:
        return history[-1]
    return DecayStatus(name, False, None, 0, None, window, float(threshold), decay_days, None, 0, None)
