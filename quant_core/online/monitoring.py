"""Live monitoring: the served signal's daily IC and rank IC, as its labels become observable.

A label is observable ``lookahead`` trading days late (LABEL0: two). Each routine scores the served
signal of every date whose label is stored but which ``monitoring/<strategy>/`` does not hold yet:
IC is the Pearson correlation of score and raw label across the date's symbols, rank IC the
Spearman correlation (Qlib's ``calc_ic``, :func:`quant_core.evaluation.metrics.daily_ic`; pairs
with a NaN are dropped). Rows: ``date``, ``symbol`` (the serving version, the lake's key column),
``version``, ``ic``, ``rank_ic``, ``n``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from quant_core.data.lake import COMMIT_RETRIES, Dataset, Lake
from quant_core.evaluation import metrics
from quant_core.features.labels import get_label
from quant_core.features.store import label_dataset
from quant_core.online.signals import read_signals

logger = logging.getLogger(__name__)
SCHEMA = pa.schema([pa.field("date", pa.date32(), nullable=False), pa.field("symbol", pa.large_string()),
                    pa.field("version", pa.large_string()), pa.field("ic", pa.float64()),
                    pa.field("rank_ic", pa.float64()), pa.field("n", pa.int64())])


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


def recent_rank_ic(lake: Lake, name: str, days: int = 20) -> tuple[float | None, int]:
    """Mean rank IC of the last ``days`` monitored dates (``None`` when there are none) and their count."""
    mds = monitoring_dataset(lake, name)
    if not mds.exists():
        return None, 0
    frame = mds.read().to_pandas().sort_values("date").tail(days)
    values = frame["rank_ic"].dropna()
    if values.empty:
        return None, 0
    mean = float(values.mean())
    return (mean if math.isfinite(mean) else None), int(len(values))
