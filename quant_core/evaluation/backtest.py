"""Portfolio backtests of a signal: Qlib's TopkDropoutStrategy and a daily long-short quantile book.

Timing rule (Qlib: the order is generated from the previous step's prediction and dealt at the
close). The signal of date ``t`` (known at the close of ``t``) is traded at the close of the next
trading date ``t+1``, the *execution date*; the positions then earn ``adj(t+2) / adj(t+1) - 1``
(``adj = close * factor``), and that return, its cost and its turnover are reported on the row of
date ``t``. For a held symbol that has bars on ``t+1`` and ``t+2`` this is exactly LABEL0 of ``t``.
The trading calendar is the sorted set of dates in ``bars``; a signal date without two trading dates
after it is not backtested (its return is not known yet).

Tradability rule. A symbol without a bar on the execution date cannot be bought or sold that date:
it is neither added nor dropped, and a held one stays held with its weight. Holdings earn the
symbol's return *since its previous bar*, computed from the bars (not from LABEL0): a held symbol
without a bar on ``t+2`` earns 0 on the row of ``t``, and the whole move across the gap is realised
on the date it trades again. Limit-up/limit-down days are not modelled (only missing bars).

Accounting (Qlib's "sum" mode, cost as a fraction of the previous value like Qlib's
``cost / last_account_value``). Weights are fractions of the portfolio value at the close of the
execution date, before trading. ``gross_return = sum(w * r)`` over the positions held after trading
(cash earns 0); ``cost = open_cost * bought + close_cost * sold`` (weights traded, costs in bps / 1e4);
``net_return = gross_return - cost``; ``turnover = (bought + sold) / 2``. Between dates the weights
drift with the gross returns (``w * (1 + r) / (1 + gross)``); held positions are never rebalanced.

Benchmark: an equal-weight book of the day's universe (the symbols with a score on ``t`` and a bar
on ``t+1``) rebalanced at every execution date under the same timing and tradability rules, without
costs; on dates without suspensions it is the plain mean of the universe's returns.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quant_core.errors import ConfigError

# the input checks are shared with the signal metrics so both refuse bad frames with the same words
from quant_core.evaluation.metrics import _bars, _signals

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

DAILY_COLUMNS: tuple[str, ...] = (
    "date", "gross_return", "cost", "net_return", "turnover", "holdings", "benchmark",
)
POSITION_COLUMNS: tuple[str, ...] = ("date", "symbol", "weight")
BPS = 1e-4
# floor(quantile * n) must not lose a name to rounding (0.29 * 100 = 28.999999999999996)
_QUANTILE_EPS = 1e-9


class BacktestConfig(BaseModel):
    """Settings of :func:`topk_dropout` and :func:`long_short` (Qlib's defaults where Qlib has one).

    Attributes:
        topk: number of stocks held by TopkDropout.
        n_drop: at most this many held stocks are replaced per date (``<= topk``).
        open_cost_bps: cost of buying (and of opening a short), bps of the traded weight; Qlib 0.0005.
        close_cost_bps: cost of selling (and of covering a short), bps of the traded weight; Qlib 0.0015.
        quantile: share of the universe in each leg of :func:`long_short` (top minus bottom).
        annualization: trading dates per year for the summary (238 as Qlib; 252 is also common).
        on_small_universe: when fewer tradable symbols have a score than the book needs: ``"clip"``
            uses all of them (one warning per backtest), ``"refuse"`` raises ConfigError.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    topk: int = Field(default=50, ge=1)
    n_drop: int = Field(default=5, ge=0)
    open_cost_bps: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    close_cost_bps: float = Field(default=15.0, ge=0, allow_inf_nan=False)
    quantile: float = Field(default=0.2, gt=0, le=0.5)
    annualization: int = Field(default=238, ge=1)
    on_small_universe: Literal["clip", "refuse"] = "clip"

    @model_validator(mode="after")
    def _n_drop_within_topk(self) -> Self:
        if self.n_drop > self.topk:
            raise ValueError(
                f"n_drop={self.n_drop} exceeds topk={self.topk}: a date can replace at most the topk held stocks"
            )
        return self


# -- performance ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RiskStats:
    """Qlib's ``risk_analysis`` in "sum" mode of one daily return series (NaN where undefined).

    Attributes:
        mean: mean daily return.
        std: standard deviation of the daily return (``ddof=1``).
        annualized_return: ``mean * N``.
        volatility: ``std * sqrt(N)``.
        information_ratio: ``mean / std * sqrt(N)``.
        max_drawdown: ``min(cumsum(r) - cummax(cumsum(r)))`` (summed, not compounded).
    """

    mean: float
    std: float
    annualized_return: float
    volatility: float
    information_ratio: float
    max_drawdown: float


def _risk_stats(r: FloatArray, annualization: int) -> RiskStats:
    if len(r) == 0:
        nan = float("nan")
        return RiskStats(nan, nan, nan, nan, nan, nan)
    mean = float(r.mean())
    std = float(r.std(ddof=1)) if len(r) > 1 else float("nan")
    ir = mean / std * math.sqrt(annualization) if std > 0 else float("nan")
    cum = np.cumsum(r)
    return RiskStats(
        mean=mean, std=std, annualized_return=mean * annualization, volatility=std * math.sqrt(annualization),
        information_ratio=ir, max_drawdown=float((cum - np.maximum.accumulate(cum)).min()),
    )


def _none_for_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _none_for_nan(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Performance:
    """Summary numbers of a daily return series, Qlib-comparable and compounded.

    Attributes:
        days: dates with a finite return.
        annualization: the ``N`` used (dates per year).
        returns: "sum" mode numbers of the returns (net of cost in a backtest); comparable with
            Qlib's ``risk_analysis`` and QLIB_SEMANTICS §9.
        benchmark: the same for the benchmark (``None`` without one).
        excess_return_without_cost: the same for ``returns + cost - benchmark`` (``None`` without a
            benchmark or cost).
        excess_return_with_cost: the same for ``returns - benchmark`` (Qlib's headline numbers).
        cagr: compounded annual growth rate of the returns, ``prod(1 + r) ** (N / days) - 1``
            (empyrical ``annual_return``).
        sharpe: ``mean / std * sqrt(N)`` with no risk-free rate (empyrical ``sharpe_ratio``).
        max_drawdown: largest fall of the compounded value from a previous peak, the start included
            (empyrical ``max_drawdown``).
        mean_turnover: mean daily turnover (``None`` when not given).
    """

    days: int
    annualization: int
    returns: RiskStats
    benchmark: RiskStats | None
    excess_return_without_cost: RiskStats | None
    excess_return_with_cost: RiskStats | None
    cagr: float
    sharpe: float
    max_drawdown: float
    mean_turnover: float | None

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict, NaN and infinities as ``None`` (JSON- and report-table-ready)."""
        out: dict[str, Any] = _none_for_nan(asdict(self))
        return out


def _aligned(series: pd.Series | None, index: pd.Index, name: str) -> FloatArray | None:
    if series is None:
        return None
    if not isinstance(series, pd.Series):
        raise ConfigError(f"{name} must be a pandas Series indexed like the returns, not {type(series).__name__}")
    if not series.index.is_unique:
        raise ConfigError(f"{name} has a repeated index value; one value per date")
    return np.asarray(series.reindex(index).to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def performance(
    returns: pd.Series,
    benchmark: pd.Series | None,
    annualization: int,
    turnover: pd.Series | None = None,
    *,
    cost: pd.Series | None = None,
) -> Performance:
    """Qlib "sum" mode numbers plus compounded ones (empyrical) of a daily return series.

    Args:
        returns: daily returns indexed by date (net of cost in a backtest); NaN dates are skipped.
        benchmark: daily benchmark returns on the same index (aligned by index), or ``None``.
        annualization: dates per year ``N`` (238 as Qlib, 252 also common).
        turnover: daily turnover on the same index, or ``None``.
        cost: the daily cost already deducted from ``returns``; with a benchmark it gives the excess
            return without cost (``returns + cost - benchmark``), as Qlib reports next to the one with.

    Returns:
        The summary; a section whose inputs are missing is ``None``, an undefined number NaN.

    Raises:
        ConfigError: a non-Series input, a repeated index value, ``annualization`` not a positive int.
    """
    if isinstance(annualization, bool) or not isinstance(annualization, int | np.integer) or annualization < 1:
        raise ConfigError(f"annualization is {annualization!r}; it must be a positive int (dates per year)")
    n = int(annualization)
    if not isinstance(returns, pd.Series):
        raise ConfigError(f"returns must be a pandas Series indexed by date, not {type(returns).__name__}")
    r = _aligned(returns, returns.index, "returns")
    assert r is not None
    bench = _aligned(benchmark, returns.index, "benchmark")
    costs = _aligned(cost, returns.index, "cost")
    turn = _aligned(turnover, returns.index, "turnover")
    ok = np.isfinite(r)
    x = r[ok]

    excess_with = excess_without = bench_stats = None
    if bench is not None:
        both = ok & np.isfinite(bench)
        bench_stats = _risk_stats(bench[np.isfinite(bench)], n)
        excess_with = _risk_stats(r[both] - bench[both], n)
        if costs is not None:
            all3 = both & np.isfinite(costs)
            excess_without = _risk_stats(r[all3] + costs[all3] - bench[all3], n)

    import empyrical  # heavy (scipy, bottleneck): only where the compounded numbers are computed

    nan = float("nan")
    mean_turnover = None
    if turn is not None and np.isfinite(turn).any():
        mean_turnover = float(np.nanmean(turn))
    return Performance(
        days=int(ok.sum()), annualization=n, returns=_risk_stats(x, n), benchmark=bench_stats,
        excess_return_without_cost=excess_without, excess_return_with_cost=excess_with,
        cagr=float(empyrical.annual_return(x, annualization=n)) if len(x) else nan,
        sharpe=float(empyrical.sharpe_ratio(x, annualization=n)),
        max_drawdown=float(empyrical.max_drawdown(x)) if len(x) else nan,
        mean_turnover=mean_turnover,
    )


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """What a backtest produced; every row is keyed by the signal date ``t`` (see the module doc).

    Attributes:
        daily: ``[date, gross_return, cost, net_return, turnover, holdings, benchmark]``, one row per
            signal date, ascending, ``date`` as ``datetime64[s]``. ``holdings`` counts the positions
            held after trading at ``t+1`` (both legs for long-short).
        positions: ``[date, symbol, weight]``: the weights held after trading at ``t+1``, as fractions
            of the value before trading (shorts negative), sorted by (date, symbol).
        config: the settings used.
    """

    daily: pd.DataFrame
    positions: pd.DataFrame
    config: BacktestConfig

    def summary(self, annualization: int | None = None) -> Performance:
        """:func:`performance` of the net returns against the benchmark (``None``: the config's N)."""
        d = self.daily.set_index("date")
        return performance(
            d["net_return"], d["benchmark"],
            self.config.annualization if annualization is None else annualization,
            d["turnover"], cost=d["cost"],
        )


# -- market arrays ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Market:
    """The backtest's inputs as arrays: row ``k`` is signal date ``dates[k]``, column a symbol.

    ``tradable[k]``: a bar on the execution date ``t+1``; ``ret[k]``: the return since the previous
    bar on ``t+2`` (0 without a bar on ``t+2``); ``has_signal[k]``: ``signals`` has rows on ``t``.
    """

    dates: npt.NDArray[np.datetime64]
    exec_dates: npt.NDArray[np.datetime64]
    symbols: npt.NDArray[np.str_]
    score: FloatArray
    tradable: BoolArray
    ret: FloatArray
    has_signal: BoolArray


def _returns_since_last_bar(b: pd.DataFrame) -> FloatArray:
    """Per bar: ``adj / adj(previous bar of the same symbol) - 1`` (NaN on a symbol's first bar)."""
    ordered = b.sort_values(["symbol", "date"], kind="stable")
    prev = ordered.groupby("symbol", sort=False)["adj"].shift(1)
    r = (ordered["adj"] / prev - 1.0).reindex(b.index)
    return np.asarray(r.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def _market(signals: pd.DataFrame, bars: pd.DataFrame) -> _Market:
    sig = _signals(signals)
    if sig.empty:
        raise ConfigError("signals has no rows; there is nothing to backtest")
    b = _bars(bars)
    calendar = np.unique(b["date"].to_numpy())
    sig_dates = sig["date"].to_numpy()
    pos = np.searchsorted(calendar, sig_dates)
    off = (pos >= len(calendar)) | (calendar[np.minimum(pos, len(calendar) - 1)] != sig_dates)
    if off.any():
        raise ConfigError(
            f"signals.date {pd.Timestamp(sig_dates[off.argmax()]).date()} is not a trading date of bars "
            "(the calendar is the sorted set of dates in bars); every signal date must be one"
        )
    symbols = np.unique(sig["symbol"].to_numpy().astype(str))
    b = b.loc[b["symbol"].isin(symbols)].reset_index(drop=True)
    b["ret"] = _returns_since_last_bar(b)

    first, last = int(pos.min()), min(int(pos.max()), len(calendar) - 3)
    if int(pos.max()) > last:
        unknown = np.unique(sig_dates[pos > last])
        logger.info("signals: %d date(s) from %s lack two trading dates after them in bars; not backtested",
                    len(unknown), pd.Timestamp(unknown[0]).date())
    n_dates = max(last - first + 1, 0)
    if n_dates == 0:
        logger.warning("signals: no signal date has two trading dates after it in bars; the backtest is empty")
    window = calendar[first:first + n_dates + 2]  # the signal dates and their two following dates
    shape = (len(window), len(symbols))
    has_bar = np.zeros(shape, dtype=bool)
    ret = np.zeros(shape, dtype=np.float64)
    inside = b["date"].isin(window).to_numpy()
    rows = np.searchsorted(window, b["date"].to_numpy()[inside])
    cols = np.searchsorted(symbols, b["symbol"].to_numpy().astype(str)[inside])
    has_bar[rows, cols] = True
    ret[rows, cols] = np.nan_to_num(b["ret"].to_numpy()[inside], nan=0.0)

    score = np.full((n_dates, len(symbols)), np.nan)
    used = (pos >= first) & (pos <= last)
    score[pos[used] - first, np.searchsorted(symbols, sig["symbol"].to_numpy().astype(str)[used])] = (
        sig["score"].to_numpy()[used]
    )
    has_signal = np.zeros(n_dates, dtype=bool)
    has_signal[np.unique(pos[used] - first)] = True
    return _Market(
        dates=window[:n_dates], exec_dates=window[1:n_dates + 1], symbols=symbols, score=score,
        tradable=has_bar[1:n_dates + 1], ret=ret[2:n_dates + 2], has_signal=has_signal,
    )


def _ranked(score: FloatArray) -> IntArray:
    """Symbol positions best first: score descending, a missing score last, ties by symbol (the
    columns are sorted by symbol and the sort is stable)."""
    key = np.where(np.isfinite(score), -score, np.inf)
    return np.argsort(key, kind="stable")


def _day(d: np.datetime64) -> date:
    return pd.Timestamp(d).date()


class _SmallUniverse:
    """Applies ``on_small_universe``: refuse at once, or count the dates and warn once at the end."""

    def __init__(self, config: BacktestConfig, what: str) -> None:
        self.config, self.what = config, what
        self.dates = 0
        self.first: tuple[date, int] | None = None

    def __call__(self, market: _Market, k: int, size: int, needed: int) -> None:
        if self.config.on_small_universe == "refuse":
            raise ConfigError(
                f"on {_day(market.dates[k])} only {size} symbol(s) have a score and a bar on the execution date "
                f"{_day(market.exec_dates[k])}, fewer than the {needed} that {self.what} needs; "
                "on_small_universe='refuse' (set 'clip' to use all of them)"
            )
        self.dates += 1
        if self.first is None:
            self.first = (_day(market.dates[k]), size)

    def warn(self) -> None:
        if self.first is not None:
            logger.warning(
                "%s: the tradable universe was smaller than needed on %d date(s), the first %s with %d "
                "symbol(s); traded what there was (on_small_universe='clip')",
                self.what, self.dates, self.first[0], self.first[1],
            )


# -- books ------------------------------------------------------------------------------------------
class _EqualWeightBook:
    """A long-only book of weight 1 rebalanced to equal weights over target symbols each date.

    Held symbols without a bar on the execution date keep their drifted weight (they cannot trade);
    the rest of the book is split equally among the targets (which are all tradable).
    """

    def __init__(self, n_symbols: int) -> None:
        self.w = np.zeros(n_symbols, dtype=np.float64)

    def rebalance(self, targets: IntArray, tradable: BoolArray) -> tuple[float, float]:
        """Trade to the targets; returns the (bought, sold) weight. No targets: no trade."""
        if len(targets) == 0:
            return 0.0, 0.0
        stuck = (self.w > 0) & ~tradable
        new = np.where(stuck, self.w, 0.0)
        new[targets] = (1.0 - float(new.sum())) / len(targets)
        delta = new - self.w
        self.w = new
        return float(delta[delta > 0].sum()), float(-delta[delta < 0].sum())

    def earn(self, ret: FloatArray) -> float:
        """The book's return over the day, then the weights drift with it."""
        gross = float(self.w @ ret)
        self.w = self.w * (1.0 + ret) / (1.0 + gross)
        return gross


def _topk_trades(
    config: BacktestConfig, score: FloatArray, universe: BoolArray, tradable: BoolArray, held: BoolArray
) -> tuple[IntArray, IntArray]:
    """Qlib's TopkDropoutStrategy (``method_sell="bottom"``, ``method_buy="top"``, ``only_tradable``).

    The buy candidates are the best-ranked tradable, scored, not-held symbols, ``n_drop + topk -
    len(held)`` of them; held and candidates are ranked together, and the held symbols among the
    bottom ``n_drop`` tradable ones of that list are sold; the best ``len(sold) + topk - len(held)``
    candidates are bought. A held symbol with no score ranks last. Returns (sell, buy) positions.

    One deviation, which changes nothing when at least ``n_drop + topk - len(held)`` not-held symbols
    are tradable: a held stock is sold only if a candidate is left to replace it (the worst are sold
    first). Qlib sells the bottom ``n_drop`` even with no candidate and buys them back the next date,
    so a small universe would churn instead of being held whole ("clip").
    """
    order = _ranked(score)
    n_held = int(held.sum())
    cand = order[(universe & ~held)[order]][: max(config.n_drop + config.topk - n_held, 0)]
    in_comb = held.copy()
    in_comb[cand] = True
    comb_tradable = order[(in_comb & tradable)[order]]
    # Qlib's get_last_n(comb, 0) returns one stock (or all of them without only_tradable): n_drop=0 sells none here
    bottom = comb_tradable[len(comb_tradable) - config.n_drop:] if config.n_drop > 0 else comb_tradable[:0]
    sell = bottom[held[bottom]]
    spare = max(len(cand) - (config.topk - n_held), 0)  # candidates left once the free slots are filled
    if spare < len(sell):
        sell = sell[len(sell) - spare:]
    buy = cand[: len(sell) + config.topk - n_held]
    return sell, buy


@dataclass
class _Rows:
    """Accumulates the per-date output of a backtest."""

    gross: list[float]
    cost: list[float]
    turnover: list[float]
    holdings: list[int]
    benchmark: list[float]
    pos_date: list[npt.NDArray[np.datetime64]]
    pos_symbol: list[npt.NDArray[np.str_]]
    pos_weight: list[FloatArray]

    @classmethod
    def empty(cls) -> _Rows:
        return cls([], [], [], [], [], [], [], [])

    def positions(self, d: np.datetime64, symbols: npt.NDArray[np.str_], w: FloatArray) -> None:
        held = np.flatnonzero(w != 0)
        self.pos_date.append(np.full(len(held), d))
        self.pos_symbol.append(symbols[held])
        self.pos_weight.append(w[held])

    def result(self, market: _Market, config: BacktestConfig) -> BacktestResult:
        dates = pd.Series(market.dates, dtype="datetime64[s]")
        gross, cost = np.asarray(self.gross, dtype=np.float64), np.asarray(self.cost, dtype=np.float64)
        daily = pd.DataFrame({
            "date": dates, "gross_return": gross, "cost": cost, "net_return": gross - cost,
            "turnover": np.asarray(self.turnover, dtype=np.float64),
            "holdings": np.asarray(self.holdings, dtype=np.int64),
            "benchmark": np.asarray(self.benchmark, dtype=np.float64),
        })
        positions = pd.DataFrame({
            "date": pd.Series(np.concatenate(self.pos_date) if self.pos_date else [], dtype="datetime64[s]"),
            "symbol": pd.Series(np.concatenate(self.pos_symbol) if self.pos_symbol else [], dtype=str),
            "weight": np.concatenate(self.pos_weight) if self.pos_weight else np.zeros(0),
        })
        return BacktestResult(daily=daily, positions=positions, config=config)


def topk_dropout(signals: pd.DataFrame, bars: pd.DataFrame, config: BacktestConfig | None = None) -> BacktestResult:
    """Backtest Qlib's TopkDropoutStrategy on a signal (module doc: timing, tradability, accounting).

    Each signal date ``t``, traded at the close of ``t+1``: the held stocks and the best not-held
    candidates are ranked by the score of ``t``; the held ones in the bottom ``n_drop`` are sold and
    as many candidates as were sold plus the free slots (``topk - len(held)``) are bought; the sold
    value plus any cash is split equally among the buys (at the start: ``1 / topk`` each). Held
    weights drift and are never rebalanced. The universe of ``t`` is the symbols with a finite score
    on ``t`` and a bar on ``t+1``; a date without any signal row trades nothing (Qlib: no prediction,
    no order), and the portfolio keeps earning.

    Args:
        signals: ``[date, symbol, score]``, one row per (date, symbol); each date a trading date
            of ``bars``. A NaN score is no score.
        bars: ``[date, symbol, close, factor]``; no row (or a NaN close) = no bar that date.
        config: the settings (``None``: the defaults, Qlib's topk=50, n_drop=5, 5/15 bps).

    Returns:
        One row per signal date from the first to the last signal date that has two trading dates
        after it (calendar dates in between without signals included).

    Raises:
        ConfigError: bad frames, a signal date that is not a trading date, or (with
            ``on_small_universe="refuse"``) a date whose universe is smaller than ``topk``.
    """
    cfg = config if config is not None else BacktestConfig()
    m = _market(signals, bars)
    open_cost, close_cost = cfg.open_cost_bps * BPS, cfg.close_cost_bps * BPS
    w = np.zeros(len(m.symbols), dtype=np.float64)
    held = np.zeros(len(m.symbols), dtype=bool)
    cash = 1.0
    bench = _EqualWeightBook(len(m.symbols))
    small = _SmallUniverse(cfg, f"topk_dropout (topk={cfg.topk})")
    rows = _Rows.empty()
    for k in range(len(m.dates)):
        bought = sold = 0.0
        universe = np.isfinite(m.score[k]) & m.tradable[k]
        size = int(universe.sum())
        if m.has_signal[k]:
            if size < cfg.topk:
                small(m, k, size, cfg.topk)
            if size > 0:
                sell, buy = _topk_trades(cfg, m.score[k], universe, m.tradable[k], held)
                sold = float(w[sell].sum())
                w[sell], held[sell] = 0.0, False
                cash += sold
                if len(buy) > 0 and cash > 0:
                    w[buy], held[buy] = cash / len(buy), True
                    bought, cash = cash, 0.0
                bench.rebalance(np.flatnonzero(universe), m.tradable[k])
        rows.positions(m.dates[k], m.symbols, w)
        gross = float(w @ m.ret[k])
        w = w * (1.0 + m.ret[k]) / (1.0 + gross)
        cash /= 1.0 + gross
        rows.gross.append(gross)
        rows.cost.append(open_cost * bought + close_cost * sold)
        rows.turnover.append((bought + sold) / 2.0)
        rows.holdings.append(int(held.sum()))
        rows.benchmark.append(bench.earn(m.ret[k]))
    small.warn()
    return rows.result(m, cfg)


def long_short(signals: pd.DataFrame, bars: pd.DataFrame, config: BacktestConfig | None = None) -> BacktestResult:
    """Backtest a daily long-short quantile book (module doc: timing, tradability, accounting).

    Each signal date ``t``, traded at the close of ``t+1``: of the universe (finite score on ``t``,
    bar on ``t+1``; ``n`` symbols, ranked by score, ties by symbol), the best ``q = floor(quantile *
    n)`` form the long leg and the worst ``q`` the short leg, each an equal-weight book of weight 1
    rebalanced to its targets every date (a held name without a bar on ``t+1`` keeps its weight, the
    rest is split among the targets). ``gross_return = R_long - R_short``. Costs on the traded weight
    of each leg: long buys and short openings pay ``open_cost``, long sales and short covers pay
    ``close_cost``. ``turnover`` is the mean of the legs' ``(increases + decreases) / 2``;
    ``holdings`` counts both legs' positions. When ``q < 1`` the universe is small: ``"clip"`` uses
    one name per leg if ``n >= 2`` (and trades nothing otherwise), ``"refuse"`` raises.

    Args:
        signals: ``[date, symbol, score]`` as :func:`topk_dropout`.
        bars: ``[date, symbol, close, factor]`` as :func:`topk_dropout`.
        config: the settings (``quantile``, costs, ``on_small_universe``); ``topk``/``n_drop`` unused.

    Returns:
        As :func:`topk_dropout`; ``positions`` has the short leg's weights negative.

    Raises:
        ConfigError: bad frames, a signal date that is not a trading date, or (with
            ``on_small_universe="refuse"``) a date with ``floor(quantile * n) < 1``.
    """
    cfg = config if config is not None else BacktestConfig()
    m = _market(signals, bars)
    open_cost, close_cost = cfg.open_cost_bps * BPS, cfg.close_cost_bps * BPS
    longs, shorts, bench = (_EqualWeightBook(len(m.symbols)) for _ in range(3))
    minimum = math.ceil(1.0 / cfg.quantile - _QUANTILE_EPS)
    small = _SmallUniverse(cfg, f"long_short (quantile={cfg.quantile})")
    rows = _Rows.empty()
    for k in range(len(m.dates)):
        traded = (0.0, 0.0, 0.0, 0.0)  # long bought, long sold, short opened, short covered
        universe = np.isfinite(m.score[k]) & m.tradable[k]
        size = int(universe.sum())
        if m.has_signal[k]:
            q = math.floor(cfg.quantile * size + _QUANTILE_EPS)
            if q < 1:
                small(m, k, size, minimum)
                q = 1 if size >= 2 else 0
            if q >= 1:
                ranked = _ranked(m.score[k])
                ranked = ranked[universe[ranked]]
                traded = (*longs.rebalance(ranked[:q], m.tradable[k]),
                          *shorts.rebalance(ranked[-q:], m.tradable[k]))
            if size > 0:
                bench.rebalance(np.flatnonzero(universe), m.tradable[k])
        rows.positions(m.dates[k], m.symbols, longs.w - shorts.w)
        rows.holdings.append(int((longs.w > 0).sum() + (shorts.w > 0).sum()))
        rows.gross.append(longs.earn(m.ret[k]) - shorts.earn(m.ret[k]))
        rows.cost.append(open_cost * (traded[0] + traded[2]) + close_cost * (traded[1] + traded[3]))
        rows.turnover.append(((traded[0] + traded[1]) / 2.0 + (traded[2] + traded[3]) / 2.0) / 2.0)
        rows.benchmark.append(bench.earn(m.ret[k]))
    small.warn()
    return rows.result(m, cfg)
