"""The feature and label stores: ``features/<set>/`` and ``labels/<label>/`` in the lake.

Features for the inclusive range ``[start, end]`` are computed from bars read from ``hist_ref``
trading days before ``start`` (the warm-up buffer; 60 for Alpha158), with each symbol's first-ever
bar date from the bars manifest so that a buffer gives bit-for-bit the values of a full recompute.
Labels are stored only for dates whose label is already observable (``date + lookahead`` trading
days exist). Re-running a range replaces it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date

import pandas as pd
import pyarrow as pa

from quant_core.calendar import TradingCalendar, to_date
from quant_core.data.lake import COMMIT_RETRIES, Dataset, Lake
from quant_core.errors import CalendarError
from quant_core.features import FeatureInputError, FeatureSet, compute_features
from quant_core.features.labels import Label, compute_labels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreUpdate:
    """What a feature or label update wrote."""

    dataset: str
    start: date | None
    end: date | None
    buffer_start: date | None
    rows: int
    dates: int
    months: tuple[str, ...]
    seconds: float
    note: str = ""

    @property
    def wrote(self) -> bool:
        return self.rows > 0 or bool(self.months)


def feature_dataset(lake: Lake, feature_set: FeatureSet) -> Dataset:
    return lake.dataset(f"features/{feature_set.name}")


def label_dataset(lake: Lake, label: Label) -> Dataset:
    return lake.dataset(f"labels/{label.name}")


def _frame_to_table(df: pd.DataFrame) -> pa.Table:
    """A ``[date, symbol, *values]`` frame as the stored table: ``date32`` dates, ``large_string``
    symbols, and each value column as it is (NaN stored as null, as ``Table.from_pandas`` does).
    The value columns are not copied: for the full Alpha158 output (750 MB) a copy of the frame
    took 0.07-1.5 s, most of it first touches of fresh memory."""
    days = pd.to_datetime(df["date"]).to_numpy().astype("datetime64[D]")
    columns = {
        "date": pa.array(days, type=pa.date32()),
        "symbol": pa.array(df["symbol"].astype(str), type=pa.large_string()),
    }
    for name in df.columns[2:]:
        columns[name] = pa.array(df[name].to_numpy(), from_pandas=True)
    return pa.table(columns)


def _trading_days(lake: Lake, start: date | str, end: date | str) -> tuple[TradingCalendar, tuple[date, ...]]:
    cal = lake.calendar()
    lo, hi = to_date(start), to_date(end)
    if lo > hi:
        raise FeatureInputError(f"start {lo} is after end {hi}")
    days = cal.range(lo, hi)
    if not days:
        span = f"{cal.first}..{cal.last}" if len(cal) else "no bars at all"
        raise FeatureInputError(f"lake {lake.uri} has no bars in {lo}..{hi} (its bars cover {span})")
    return cal, days


def update_features(
    lake: Lake,
    feature_set: FeatureSet,
    start: date | str,
    end: date | str,
    *,
    require_full_history: bool = False,
    threads: int | None = None,
    writer: str | None = None,
) -> StoreUpdate:
    """Compute ``feature_set`` for every bar dated in ``[start, end]`` and replace that range.

    Bars are read from ``hist_ref`` trading days before the first trading day of the range. At the
    very start of the lake fewer days exist; features there use partial windows exactly as a full
    recompute (and Qlib) does, unless ``require_full_history`` asks for an error instead.

    Raises:
        FeatureInputError: no bars in the range.
        CalendarError: ``require_full_history`` and fewer than ``hist_ref`` days precede ``start``.
    """
    t0 = time.perf_counter()
    cal, days = _trading_days(lake, start, end)
    lo, hi = days[0], days[-1]
    i = cal.index(lo)
    if require_full_history and i < feature_set.hist_ref:
        raise CalendarError(
            f"features {feature_set.name} for {lo}: only {i} trading days of bars precede it in lake "
            f"{lake.uri}; hist_ref={feature_set.hist_ref} are needed"
        )
    buffer_start = cal[max(0, i - feature_set.hist_ref)]
    columns = ["date", "symbol", "factor", *sorted(f for f in feature_set.fields if f != "factor")]
    bars = lake.read_bars(buffer_start, hi, columns=columns)
    feats = compute_features(bars, feature_set, start=lo, end=hi, first_dates=lake.bars.first_dates(),
                             threads=threads)
    res = feature_dataset(lake, feature_set).write(_frame_to_table(feats), to_date(start), to_date(end),
                                                  writer=writer, retries=COMMIT_RETRIES)
    out = StoreUpdate(res.dataset, lo, hi, buffer_start, res.rows, res.dates, res.months, time.perf_counter() - t0)
    logger.info("features %s: %s..%s from buffer %s, %d rows in %.2fs", feature_set.name, lo, hi,
                buffer_start, res.rows, out.seconds)
    return out


def update_labels(
    lake: Lake, label: Label, start: date | str, end: date | str, *, writer: str | None = None
) -> StoreUpdate:
    """Compute ``label`` for the dates of ``[start, end]`` whose label is observable; replace them.

    A date ``t`` is observable when ``t + lookahead`` trading days exist in the lake. Returns an
    update with ``rows == 0`` and a note when no date of the range is observable yet.
    """
    t0 = time.perf_counter()
    cal, days = _trading_days(lake, start, end)
    last_observable = len(cal) - 1 - label.lookahead
    days = tuple(d for d in days if cal.index(d) <= last_observable)
    name = f"labels/{label.name}"
    if not days:
        note = f"no date in {start}..{end} has an observable {label.name} yet (lookahead {label.lookahead})"
        logger.info("%s: %s", name, note)
        return StoreUpdate(name, None, None, None, 0, 0, (), time.perf_counter() - t0, note)
    lo, hi = days[0], days[-1]
    bars = lake.read_bars(lo, cal.shift(hi, label.lookahead), columns=["date", "symbol", "close", "factor"])
    labels = compute_labels(bars, label, start=lo, end=hi)
    res = label_dataset(lake, label).write(_frame_to_table(labels), lo, hi, writer=writer, retries=COMMIT_RETRIES)
    out = StoreUpdate(res.dataset, lo, hi, None, res.rows, res.dates, res.months, time.perf_counter() - t0)
    logger.info("labels %s: %s..%s, %d rows in %.2fs", label.name, lo, hi, res.rows, out.seconds)
    return out


def dependent_ranges(
    cal: TradingCalendar, start: date, end: date, hist_ref: int, lookahead: int
) -> tuple[tuple[date, date], tuple[date, date]]:
    """The feature and label date ranges that bars of ``[start, end]`` influence.

    Features of day ``d`` read bars ``[d - hist_ref, d]``, so bars of ``[start, end]`` change
    features up to ``hist_ref`` trading days after ``end``; labels of ``t`` read bars up to
    ``t + lookahead``, so labels from ``lookahead`` days before ``start`` change. For a daily
    increment at the end of the calendar both reduce to the new days (plus the labels they reveal).
    """
    lo, hi = cal.align_start(start), cal.align_end(end)
    feat_hi = cal.shift(hi, hist_ref, clip=True)
    label_lo = cal.shift(lo, -lookahead, clip=True)
    return (lo, feat_hi), (label_lo, hi)
