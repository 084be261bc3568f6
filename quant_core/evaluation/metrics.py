"""Signal analysis exactly as Qlib's ``SigAnaRecord`` / ``calc_ic`` (QLIB_SEMANTICS §9).

Per date ``t``, over the symbols that have both a score and a label on ``t``:

- ``ic``: Pearson correlation of score and label; ``rank_ic``: Spearman (Pearson of the ranks, ties
  ranked by their average). A pair with a NaN on either side is dropped first.
- NaN, not an error, when fewer than 2 pairs remain or one side is constant.

The summary is Qlib's: ``IC = mean(ic_t)``, ``ICIR = mean(ic_t) / std(ic_t)`` with ``ddof=1``, not
annualised; days with a NaN IC (the last two of a test segment, whose LABEL0 is unknown) are skipped.

Dates: every ``date`` column may hold ``datetime.date`` objects, ``datetime64`` values or ISO
strings; outputs carry ``date`` as ``datetime64[s]``. The trading calendar of :func:`forward_returns`
is the sorted set of dates in its ``bars``. The IC of date ``t`` is about a signal known at the close
of ``t`` and a label realised later (LABEL0: from the close of ``t+1`` to the close of ``t+2``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from quant_core.errors import ConfigError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

IC_COLUMNS: tuple[str, ...] = ("date", "ic", "rank_ic", "n")
DECAY_COLUMNS: tuple[str, ...] = ("horizon", "ic", "icir", "rank_ic", "rank_icir", "days")
DEFAULT_HORIZONS: tuple[int, ...] = (1, 5, 10, 20)
_RET_COLUMN = re.compile(r"^ret_(\d+)$")


# -- input checks (shared with backtest.py) ---------------------------------------------------------
def _require_columns(frame: Any, name: str, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"{name} must be a pandas DataFrame, not {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{name} lacks the column(s) {missing}: it needs {list(columns)}, it has {list(frame.columns)}"
        )


def _row(frame: pd.DataFrame, mask: npt.NDArray[np.bool_]) -> str:
    """The index label of the first row where ``mask`` holds, for error messages."""
    return repr(frame.index[int(np.argmax(mask))])


def _dates(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame.date`` as ``datetime64[s]``; a missing, unparsable or time-zone aware date is refused."""
    try:
        out = pd.Series(pd.to_datetime(frame["date"]), index=frame.index)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}.date holds a value that is not a date ({exc})") from None
    if isinstance(out.dtype, pd.DatetimeTZDtype):
        raise ConfigError(f"{name}.date is time-zone aware ({out.dtype}); give plain trading dates")
    missing = out.isna().to_numpy()
    if missing.any():
        raise ConfigError(f"{name}.date is missing (NaT) at row {_row(frame, missing)}; every row needs a date")
    return out.astype("datetime64[s]")


def _symbols(frame: pd.DataFrame, name: str) -> pd.Series:
    col = frame["symbol"]
    missing = col.isna().to_numpy()
    if missing.any():
        raise ConfigError(f"{name}.symbol is missing at row {_row(frame, missing)}; every row needs a symbol")
    return col.astype(str)


def _floats(frame: pd.DataFrame, name: str, column: str) -> FloatArray:
    """A numeric column as float64 (NaN allowed: a missing value); +-inf is refused."""
    col = frame[column]
    if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        raise ConfigError(f"{name}.{column} must be numeric, it has dtype {col.dtype}")
    values = np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    infinite = np.isinf(values)
    if infinite.any():
        raise ConfigError(
            f"{name}.{column} is infinite at row {_row(frame, infinite)}; a missing value must be NaN"
        )
    return values


def _check_unique(keys: pd.DataFrame, name: str, index: pd.Index) -> None:
    """One row per key: a duplicate would count a symbol twice in a day's cross-section."""
    dup = keys.duplicated().to_numpy()
    if dup.any():
        pos = int(np.argmax(dup))
        key = ", ".join(f"{c}={keys.iloc[pos][c]!s}" for c in keys.columns)
        raise ConfigError(
            f"{name} has a second row for ({key}) at row {index[pos]!r}; "
            f"the rule is one row per ({', '.join(keys.columns)})"
        )


def _signals(signals: pd.DataFrame, name: str = "signals") -> pd.DataFrame:
    """Checked ``[date, symbol, score]``, one row per (date, symbol); NaN scores are kept."""
    _require_columns(signals, name, ["date", "symbol", "score"])
    out = pd.DataFrame(
        {"date": _dates(signals, name), "symbol": _symbols(signals, name),
         "score": _floats(signals, name, "score")},
        index=signals.index,
    )
    _check_unique(out[["date", "symbol"]], name, signals.index)
    return out.reset_index(drop=True)


def _bars(bars: pd.DataFrame, name: str = "bars") -> pd.DataFrame:
    """Checked ``[date, symbol, adj]`` (``adj = close * factor``), sorted by (date, symbol).

    A row whose close or factor is NaN counts as no bar (the symbol is suspended that date); a close
    or factor that is zero or negative is refused.
    """
    _require_columns(bars, name, ["date", "symbol", "close", "factor"])
    close = _floats(bars, name, "close")
    factor = _floats(bars, name, "factor")
    for column, values in (("close", close), ("factor", factor)):
        bad = values <= 0
        if bad.any():
            raise ConfigError(
                f"{name}.{column} is {values[bad.argmax()]} at row {_row(bars, bad)}; "
                "prices and adjustment factors must be positive"
            )
    out = pd.DataFrame(
        {"date": _dates(bars, name), "symbol": _symbols(bars, name), "adj": close * factor},
        index=bars.index,
    )
    _check_unique(out[["date", "symbol"]], name, bars.index)
    present = np.isfinite(out["adj"].to_numpy())
    if not present.all():
        logger.debug("%s: %d row(s) with a NaN close or factor count as no bar", name, int((~present).sum()))
    kept: pd.DataFrame = out.loc[present].sort_values(["date", "symbol"], kind="stable")
    return kept.reset_index(drop=True)


# -- daily IC ---------------------------------------------------------------------------------------
def _pearson(starts: IntArray, count: IntArray, codes: IntArray, x: FloatArray, y: FloatArray) -> FloatArray:
    """Pearson correlation per group of contiguous rows (``codes`` sorted, groups start at ``starts``).

    Computed on values centred by their group mean (not from raw sums, which lose precision). A group
    with a constant side gets NaN: detected exactly by min == max, as centring need not give 0.
    """
    ng = len(count)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = x - (np.bincount(codes, weights=x, minlength=ng) / count)[codes]
        dy = y - (np.bincount(codes, weights=y, minlength=ng) / count)[codes]
        sxy = np.bincount(codes, weights=dx * dy, minlength=ng)
        sxx = np.bincount(codes, weights=dx * dx, minlength=ng)
        syy = np.bincount(codes, weights=dy * dy, minlength=ng)
        r = sxy / np.sqrt(sxx * syy)
    constant = (np.maximum.reduceat(x, starts) == np.minimum.reduceat(x, starts)) | (
        np.maximum.reduceat(y, starts) == np.minimum.reduceat(y, starts)
    )
    r[(count < 2) | constant] = np.nan
    return np.asarray(np.clip(r, -1.0, 1.0), dtype=np.float64)


def _grouped_ic(work: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``keys + [ic, rank_ic, n]`` for every key group of ``work`` (columns ``keys``, ``x``, ``y``).

    Vectorised: rows are sorted by key so each group is a contiguous block; sums are ``bincount``s
    and ranks one grouped ``rank`` (average ties), so there is no Python loop per date.
    """
    groups = work[keys].drop_duplicates().sort_values(keys, kind="stable").reset_index(drop=True)
    x_all = work["x"].to_numpy(dtype=np.float64)
    y_all = work["y"].to_numpy(dtype=np.float64)
    pairs = work.loc[np.isfinite(x_all) & np.isfinite(y_all)].sort_values(keys, kind="stable")
    if pairs.empty:
        out = groups.assign(ic=np.nan, rank_ic=np.nan, n=0)
        return out.astype({"ic": np.float64, "rank_ic": np.float64, "n": np.int64})
    grouped = pairs.groupby(keys, sort=True)
    codes = np.asarray(grouped.ngroup().to_numpy(), dtype=np.int64)
    count = np.bincount(codes).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64)
    x = pairs["x"].to_numpy(dtype=np.float64)
    y = pairs["y"].to_numpy(dtype=np.float64)
    rx = grouped["x"].rank(method="average").to_numpy(dtype=np.float64)
    ry = grouped["y"].rank(method="average").to_numpy(dtype=np.float64)
    found = pd.DataFrame(
        {"ic": _pearson(starts, count, codes, x, y), "rank_ic": _pearson(starts, count, codes, rx, ry),
         "n": count},
        index=grouped.size().index,
    ).reset_index()
    out = groups.merge(found, on=keys, how="left")
    out["n"] = out["n"].fillna(0).astype(np.int64)
    return out


def daily_ic(frame: pd.DataFrame, score: str = "score", label: str = "label") -> pd.DataFrame:
    """Pearson IC and Spearman rank IC per date, as Qlib's ``calc_ic``.

    Args:
        frame: one row per (date, symbol) with columns ``date``, ``score`` and ``label`` (the names
            are parameters). The score of date ``t`` is known at the close of ``t``; the label of
            ``t`` is what it predicts (LABEL0: close ``t+1`` to close ``t+2``).
        score: the column holding the signal.
        label: the column holding the realised return.

    Returns:
        ``[date, ic, rank_ic, n]`` with one row per date of ``frame``, sorted by date, ``date`` as
        ``datetime64[s]``. ``n`` counts the (score, label) pairs left after dropping those with a NaN;
        ``ic`` and ``rank_ic`` are NaN when ``n < 2`` or one side is constant on that date. Ranks
        are taken over the remaining pairs, ties at their average rank.

    Raises:
        ConfigError: a missing column, a missing date, a non-numeric or infinite value.
    """
    _require_columns(frame, "frame", ["date", score, label])
    work = pd.DataFrame(
        {"date": _dates(frame, "frame"), "x": _floats(frame, "frame", score), "y": _floats(frame, "frame", label)}
    )
    return _grouped_ic(work, ["date"])[list(IC_COLUMNS)]


# -- summary ----------------------------------------------------------------------------------------
def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


@dataclass(frozen=True)
class ICSummary:
    """Qlib's IC summary over the days with a finite IC (``None`` where undefined).

    Attributes:
        ic: mean daily IC.
        icir: ``mean / std`` of the daily IC (``ddof=1``, not annualised); ``None`` with < 2 days or
            a zero std.
        rank_ic: mean daily rank IC.
        rank_icir: ``mean / std`` of the daily rank IC.
        ic_positive: share of days with IC > 0.
        rank_ic_positive: share of days with rank IC > 0.
        days: number of dates with a finite IC.
    """

    ic: float | None
    icir: float | None
    rank_ic: float | None
    rank_icir: float | None
    ic_positive: float | None
    rank_ic_positive: float | None
    days: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The fields as a plain dict (JSON-ready: undefined values are ``None``)."""
        return asdict(self)


def _mean_ir_positive(values: FloatArray) -> tuple[float | None, float | None, float | None]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return None, None, None
    mean = float(v.mean())
    ir = mean / float(v.std(ddof=1)) if len(v) > 1 and v.std(ddof=1) > 0 else float("nan")
    return _finite_or_none(mean), _finite_or_none(ir), float((v > 0).mean())


def summarize_ic(daily: pd.DataFrame) -> ICSummary:
    """Summarise a :func:`daily_ic` frame the way Qlib's ``SigAnaRecord`` does.

    Args:
        daily: columns ``ic`` and ``rank_ic``, one row per date (the dates are not used). Rows with
            a NaN are skipped (e.g. the last two dates, whose LABEL0 is not known yet).

    Returns:
        The summary; all fields ``None`` and ``days == 0`` when no day has a finite IC.

    Raises:
        ConfigError: a missing column or a non-numeric value.
    """
    _require_columns(daily, "daily", ["ic", "rank_ic"])
    ic = _floats(daily, "daily", "ic")
    rank = _floats(daily, "daily", "rank_ic")
    ic_mean, icir, ic_pos = _mean_ir_positive(ic)
    rank_mean, rank_ir, rank_pos = _mean_ir_positive(rank)
    return ICSummary(
        ic=ic_mean, icir=icir, rank_ic=rank_mean, rank_icir=rank_ir, ic_positive=ic_pos,
        rank_ic_positive=rank_pos, days=int(np.isfinite(ic).sum()),
    )


# -- forward returns and decay ----------------------------------------------------------------------
def _check_horizons(horizons: Sequence[int]) -> tuple[int, ...]:
    values = tuple(horizons)
    if not values:
        raise ConfigError("horizons is empty; give at least one positive number of trading days")
    for h in values:
        if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
            raise ConfigError(f"horizons holds {h!r}; every horizon must be a positive int (trading days)")
    if len(set(values)) != len(values):
        raise ConfigError(f"horizons {list(values)} repeats a horizon; each must appear once")
    return tuple(int(h) for h in values)


def forward_returns(bars: pd.DataFrame, horizons: Sequence[int] = DEFAULT_HORIZONS) -> pd.DataFrame:
    """Forward returns on the trading calendar, entered at the next close as a signal would be.

    ``ret_h(t) = adj(t+1+h) / adj(t+1) - 1`` with ``adj = close * factor`` and ``t+k`` the k-th
    trading date after ``t`` on the calendar = the sorted set of dates in ``bars`` (not the symbol's
    own bars): ``ret_1`` is Qlib's LABEL0. NaN when the symbol has no bar on ``t+1`` or ``t+1+h``
    (suspended, or past the last date).

    Args:
        bars: columns ``date``, ``symbol``, ``close``, ``factor``; one row per (date, symbol). A
            symbol without a row on a date (or with a NaN close/factor) has no bar that date.
        horizons: positive trading-day horizons, each once.

    Returns:
        ``[date, symbol, ret_<h>...]``: one row per bar, sorted by (date, symbol), ``date`` as
        ``datetime64[s]``, the ``ret_`` columns in the order of ``horizons``.

    Raises:
        ConfigError: a bad horizon, a missing column, a duplicate (date, symbol), a non-positive
            close or factor.
    """
    hs = _check_horizons(horizons)
    b = _bars(bars)
    if b.empty:
        return b[["date", "symbol"]].assign(**{f"ret_{h}": np.float64(np.nan) for h in hs})
    calendar = np.unique(b["date"].to_numpy())
    pos = np.searchsorted(calendar, b["date"].to_numpy()).astype(np.int64)
    sym_codes, symbols = pd.factorize(b["symbol"], sort=True)
    n_sym = max(len(symbols), 1)
    # key = calendar position * n_sym + symbol: "the same symbol k trading dates later" is key + k*n_sym
    key = pos * n_sym + sym_codes.astype(np.int64)
    adj = b["adj"].to_numpy(dtype=np.float64)  # b is sorted by (date, symbol), so key is sorted too

    def shifted(k: int) -> FloatArray:
        target = key + k * n_sym
        idx = np.minimum(np.searchsorted(key, target), len(key) - 1)
        return np.where(key[idx] == target, adj[idx], np.nan)

    entry = shifted(1)
    out = b[["date", "symbol"]].copy()
    for h in hs:
        out[f"ret_{h}"] = shifted(1 + h) / entry - 1.0
    return out


def ic_decay(signals: pd.DataFrame, fwd: pd.DataFrame) -> pd.DataFrame:
    """IC summary of one signal against each forward-return horizon (how fast the signal decays).

    Args:
        signals: ``[date, symbol, score]``, one row per (date, symbol).
        fwd: :func:`forward_returns` output: ``date``, ``symbol`` and ``ret_<h>`` columns. The IC of
            date ``t`` for horizon ``h`` pairs the score of ``t`` with ``ret_h(t)`` (close ``t+1`` to
            close ``t+1+h``); a signal without a forward return counts as a NaN pair.

    Returns:
        ``[horizon, ic, icir, rank_ic, rank_icir, days]``, one row per horizon, ascending; undefined
        values are NaN.

    Raises:
        ConfigError: no ``ret_<h>`` column, a missing column, a duplicate (date, symbol).
    """
    sig = _signals(signals)
    _require_columns(fwd, "fwd", ["date", "symbol"])
    found = sorted((int(m.group(1)), c) for c in map(str, fwd.columns) if (m := _RET_COLUMN.match(c)))
    if not found:
        raise ConfigError(f"fwd has no ret_<h> column (columns {list(fwd.columns)}); build it with forward_returns")
    f = pd.DataFrame({"date": _dates(fwd, "fwd"), "symbol": _symbols(fwd, "fwd")}, index=fwd.index)
    _check_unique(f, "fwd", fwd.index)
    for _, column in found:
        f[column] = _floats(fwd, "fwd", column)
    merged = sig.merge(f.reset_index(drop=True), on=["date", "symbol"], how="left")
    rows: list[dict[str, Any]] = []
    for h, column in found:
        work = pd.DataFrame({"date": merged["date"], "x": merged["score"], "y": merged[column]})
        s = summarize_ic(_grouped_ic(work, ["date"]))
        rows.append({"horizon": h, "ic": s.ic, "icir": s.icir, "rank_ic": s.rank_ic,
                     "rank_icir": s.rank_icir, "days": s.days})
    out = pd.DataFrame(rows, columns=list(DECAY_COLUMNS))
    return out.astype({c: np.float64 for c in ("ic", "icir", "rank_ic", "rank_icir")})


def ic_by_version(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Daily IC and rank IC of each model version's predictions against the labels.

    Args:
        predictions: ``[date, symbol, score, version]``, one row per (date, symbol, version); the
            score of ``t`` is known at the close of ``t``.
        labels: ``[date, symbol, label]``, one row per (date, symbol); LABEL0 of ``t``. A prediction
            without a label counts as a NaN pair.

    Returns:
        ``[date, version, ic, rank_ic, n]`` sorted by (date, version), ``date`` as
        ``datetime64[s]``; the IC rules are those of :func:`daily_ic`.

    Raises:
        ConfigError: a missing column, version or date, a duplicate key, a non-numeric value.
    """
    _require_columns(predictions, "predictions", ["date", "symbol", "score", "version"])
    _require_columns(labels, "labels", ["date", "symbol", "label"])
    missing = predictions["version"].isna().to_numpy()
    if missing.any():
        raise ConfigError(f"predictions.version is missing at row {_row(predictions, missing)}")
    pred = pd.DataFrame(
        {"date": _dates(predictions, "predictions"), "symbol": _symbols(predictions, "predictions"),
         "version": predictions["version"], "x": _floats(predictions, "predictions", "score")},
        index=predictions.index,
    )
    _check_unique(pred[["date", "symbol", "version"]], "predictions", predictions.index)
    lab = pd.DataFrame(
        {"date": _dates(labels, "labels"), "symbol": _symbols(labels, "labels"),
         "y": _floats(labels, "labels", "label")},
        index=labels.index,
    )
    _check_unique(lab[["date", "symbol"]], "labels", labels.index)
    merged = pred.reset_index(drop=True).merge(lab.reset_index(drop=True), on=["date", "symbol"], how="left")
    return _grouped_ic(merged[["date", "version", "x", "y"]], ["date", "version"])[
        ["date", "version", "ic", "rank_ic", "n"]
    ]


def rolling_mean(daily: pd.DataFrame, column: str, window: int) -> pd.Series:
    """Trailing mean of ``daily[column]`` over ``window`` rows (dates), for monitoring and charts.

    Args:
        daily: one row per date with ``date`` and ``column`` (e.g. a :func:`daily_ic` frame).
        column: the column to average.
        window: number of dates in the window, the current one included.

    Returns:
        A float Series indexed by ``date`` (``datetime64[s]``, ascending), named ``column``. As
        pandas' ``rolling(window, min_periods=window)``: the value of date ``t`` is the mean of the
        ``window`` dates ending at ``t``, NaN until a window holds ``window`` non-NaN values (so a
        NaN day inside the window makes it NaN).

    Raises:
        ConfigError: a missing column, ``window`` not a positive int, a repeated date.
    """
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ConfigError(f"window is {window!r}; it must be a positive int (number of dates)")
    _require_columns(daily, "daily", ["date", column])
    dates = _dates(daily, "daily")
    _check_unique(pd.DataFrame({"date": dates}), "daily", daily.index)
    series = pd.Series(_floats(daily, "daily", column), index=pd.DatetimeIndex(dates, name="date"), name=column)
    return series.sort_index().rolling(int(window), min_periods=int(window)).mean()
