"""Signals in the lake: the served model's scores per strategy, and AverageEnsemble across strategies.

``signals/<name>/`` holds one row per (date, symbol): ``score`` and ``version`` (the serving
version, or ``"<strategy>:v<N>,..."`` for a combined signal). A strategy's signal for a date is the
raw prediction of the version the promotion log says serves that date (Qlib's RollingEnsemble with
the log as the truth). A combined signal is Qlib's AverageEnsemble: per date, each strategy's score
is z-scored across symbols (``(x - mean) / std``, ``std`` with ddof=1, NaN skipped), then the
z-scores are averaged per symbol (NaN skipped). Unlike Qlib's incremental ``prepare_signals`` no
boundary date is ever duplicated: a date range is replaced, never appended to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from quant_core.data.lake import COMMIT_RETRIES, Dataset, Lake, WriteResult
from quant_core.errors import QonlineError
from quant_core.online.predictions import read_predictions

logger = logging.getLogger(__name__)
SCHEMA = pa.schema([pa.field("date", pa.date32(), nullable=False), pa.field("symbol", pa.large_string()),
                    pa.field("score", pa.float64()), pa.field("version", pa.large_string())])


class SignalError(QonlineError, ValueError):
    """Signals cannot be built: a served date has no predictions (names the strategy and date)."""


def signal_dataset(lake: Lake, name: str) -> Dataset:
    return lake.dataset(f"signals/{name}")


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.table({
        "date": pa.array(pd.to_datetime(frame["date"]).to_numpy().astype("datetime64[D]"), pa.date32()),
        "symbol": pa.array(frame["symbol"].astype(str), pa.large_string()),
        "score": pa.array(frame["score"].to_numpy(np.float64), pa.float64()),
        "version": pa.array(frame["version"].astype(str), pa.large_string()),
    })


def served_signal(lake: Lake, strategy: str, served: dict[int, list[date]]) -> pd.DataFrame:
    """``[date, symbol, score, version]`` for the served dates: each date from its serving version."""
    parts = []
    for version, days in sorted(served.items()):
        if not days:
            continue
        preds = read_predictions(lake, strategy, version, min(days), max(days))
        preds = preds[preds["date"].isin(set(days))]
        missing = sorted(set(days) - set(preds["date"].unique()))
        if missing:
            raise SignalError(f"{strategy}: version {version} serves {missing[0]} but has no predictions for it "
                              f"({len(missing)} date(s)); update its predictions first")
        parts.append(preds.assign(version=str(version)))
    if not parts:
        return pd.DataFrame({"date": [], "symbol": [], "score": [], "version": []})
    out = pd.concat(parts, ignore_index=True).sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
    return out


def average_ensemble(signals: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Qlib's AverageEnsemble over strategies: per-date z-score of each, then the mean per symbol.

    Args:
        signals: ``{strategy: [date, symbol, score, version]}``.

    Returns:
        ``[date, symbol, score, version]`` where version lists the contributing ``strategy:vN``.
    """
    zs = []
    for name, frame in sorted(signals.items()):
        if frame.empty:
            continue
        g = frame.groupby("date")["score"]
        z = (frame["score"] - g.transform("mean")) / g.transform("std", ddof=1)
        zs.append(pd.DataFrame({"date": frame["date"], "symbol": frame["symbol"], "z": z,
                                "tag": name + ":v" + frame["version"].astype(str)}))
    if not zs:
        return pd.DataFrame({"date": [], "symbol": [], "score": [], "version": []})
    allz = pd.concat(zs, ignore_index=True)
    score = allz.groupby(["date", "symbol"], sort=True)["z"].mean()
    tags = allz.groupby("date")["tag"].agg(lambda t: ",".join(sorted(set(t))))
    out = score.reset_index().rename(columns={"z": "score"})
    out["version"] = out["date"].map(tags)
    return out


@dataclass(frozen=True)
class SignalUpdate:
    name: str
    start: date | None
    end: date | None
    rows: int
    months: tuple[str, ...]
    unchanged: bool


def write_signals(lake: Lake, name: str, frame: pd.DataFrame, start: date, end: date,
                  *, writer: str | None = None) -> SignalUpdate:
    """Replace ``signals/<name>`` over ``[start, end]`` (inclusive) with ``frame``; idempotent."""
    res: WriteResult = signal_dataset(lake, name).write(_table(frame), start, end, writer=writer,
                                                         retries=COMMIT_RETRIES)
    return SignalUpdate(name, start, end, res.rows, res.months, res.unchanged)


def read_signals(lake: Lake, name: str, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    ds = signal_dataset(lake, name)
    if not ds.exists():
        return pd.DataFrame({"date": [], "symbol": [], "score": [], "version": []})
    out: pd.DataFrame = ds.read(start, end).to_pandas()
    return out
