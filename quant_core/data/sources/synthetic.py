"""A deterministic simulated stock market with a planted, learnable signal.

Spec: ``synthetic:symbols=N,start=YYYY-MM-DD,end=YYYY-MM-DD,seed=S`` (every key optional; defaults
``symbols=50, start=2018-01-01, end=2021-12-31, seed=7``).

The market for a spec is generated once, for the spec's whole span, and every
:meth:`SyntheticSource.extract` call returns an exact slice of it: ``extract(a, b)`` equals
``extract(spec.start, spec.end)`` restricted to ``a <= date <= b`` bit for bit, whatever range was
asked first. Each symbol draws from its own seeded ``numpy`` generator (``(seed, 1, i)``), the market
factor from ``(seed, 0)`` and the calendar from the year alone, so symbol ``S00007`` has the same path
in a 10-symbol and in a 500-symbol market over the same span.

Model, per symbol ``i`` and trading day ``t`` (all in logs of *adjusted* prices):

- market: ``r_m[t] = mu_m + sigma_m * exp(h[t]) * z``, ``h`` an AR(1) log-volatility (persistence 0.98);
- fundamental value: ``f[t] = f[t-1] + mu_i + beta_i * r_m[t] + sigma_i * e_f[t]``;
- mispricing: ``m[t] = phi_i * m[t-1] + kappa_i * sigma_i * e_m[t]`` with ``phi_i ~ U(0.86, 0.93)``
  and ``kappa_i ~ U(0.9, 1.3)``;
- log close ``c[t] = f[t] + m[t]``. The mispricing mean-reverts, so
  ``E[c[t+2] - c[t+1] | m[t]] = -phi (1 - phi) m[t]``: short-term reversal and distance from a moving
  average predict the return from ``t+1`` to ``t+2`` (the label ``Ref(close,-2)/Ref(close,-1)-1``).

Open, high, low and vwap come from the close path with intraday noise and always satisfy
``low <= min(open, close) <= max(open, close) <= high`` and ``low <= vwap <= high``. Volume is
lognormal with an AR(1) level (persistence 0.85) and a response to ``|return|``. Symbols are
``S00001, S00002, ...``; about 10% list late, 5% delist early; about 0.5% of symbol-days are suspended
(missing rows) plus, for about 4% of symbols, one 10-40 day suspension. Splits (ratio 1.5, 2, 3 or 4,
roughly once per 8 symbol-years) and small cash dividends (ratio 1.003-1.02, about once per symbol-year)
change the point-in-time ``factor``: raw prices drop by the ratio and ``factor`` is multiplied by it,
so adjusted prices ``price * factor`` are continuous; ``factor`` is 1.0 on each symbol's first day.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from quant_core.data.bars import coerce_bars, empty_bars
from quant_core.data.sources import Resolver, SourceError, check_range

__all__ = ["SyntheticParams", "SyntheticSource", "from_spec", "parse_params", "trading_days"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

DEFAULTS: Final = {"symbols": 50, "start": date(2018, 1, 1), "end": date(2021, 12, 31), "seed": 7}
MAX_SYMBOLS: Final = 99_999  # five-digit codes S00001..S99999

# --- model parameters (daily, log units) -------------------------------------------------------
MARKET_DRIFT: Final = 0.0003
MARKET_VOL: Final = 0.010
MARKET_LOGVOL_PERSISTENCE: Final = 0.98
MARKET_LOGVOL_NOISE: Final = 0.05
BETA_RANGE: Final = (0.5, 1.5)
IDIO_VOL_MEDIAN: Final = 0.016
IDIO_VOL_DISPERSION: Final = 0.30
MISPRICING_PERSISTENCE: Final = (0.86, 0.93)
MISPRICING_NOISE_RATIO: Final = (0.9, 1.3)  # innovation std / fundamental idiosyncratic std
START_PRICE_MEDIAN: Final = 25.0
VOLUME_MEDIAN: Final = 2.0e6
VOLUME_PERSISTENCE: Final = 0.85
LATE_LISTING_SHARE: Final = 0.10
DELISTING_SHARE: Final = 0.05
SUSPENDED_DAY_RATE: Final = 0.005
LONG_SUSPENSION_SHARE: Final = 0.04
LONG_SUSPENSION_DAYS: Final = (10, 40)
SPLIT_RATE: Final = 0.0005  # per trading day
SPLIT_RATIOS: Final = (1.5, 2.0, 3.0, 4.0)
SPLIT_RATIO_WEIGHTS: Final = (0.15, 0.6, 0.15, 0.1)
DIVIDEND_RATE: Final = 1.0 / 250.0
DIVIDEND_RANGE: Final = (0.003, 0.02)
HOLIDAYS_PER_YEAR: Final = 5  # random weekdays, besides Jan 1 and Dec 25
_CALENDAR_SEED: Final = 20_240_101


@dataclass(frozen=True)
class SyntheticParams:
    """The knobs of a synthetic market; ``start``/``end`` bound its span (inclusive)."""

    symbols: int = 50
    start: date = date(2018, 1, 1)
    end: date = date(2021, 12, 31)
    seed: int = 7

    def spec(self) -> str:
        """The canonical spec string of these parameters."""
        return f"synthetic:symbols={self.symbols},start={self.start},end={self.end},seed={self.seed}"


def parse_params(body: str, *, spec: str | None = None) -> SyntheticParams:
    """Parse ``symbols=N,start=YYYY-MM-DD,end=YYYY-MM-DD,seed=S`` (any subset, any order).

    Raises:
        SourceError: unknown or repeated key, a value of the wrong type or out of range, or
            ``start > end``.
    """
    name = spec or f"synthetic:{body}"
    values: dict[str, object] = dict(DEFAULTS)
    seen: set[str] = set()
    for item in (p.strip() for p in body.split(",")):
        if not item:
            continue
        key, sep, raw = (s.strip() for s in item.partition("="))
        key = key.lower()
        if not sep:
            raise SourceError(f"source spec {name!r}: {item!r} is not key=value")
        if key not in DEFAULTS:
            raise SourceError(
                f"source spec {name!r}: unknown key {key!r}; synthetic accepts {', '.join(DEFAULTS)}"
            )
        if key in seen:
            raise SourceError(f"source spec {name!r}: key {key!r} given twice")
        seen.add(key)
        if key in ("start", "end"):
            try:
                values[key] = date.fromisoformat(raw)
            except ValueError:
                raise SourceError(
                    f"source spec {name!r}: {key}={raw!r} is not a date (YYYY-MM-DD)"
                ) from None
        else:
            try:
                number = int(raw)
            except ValueError:
                raise SourceError(f"source spec {name!r}: {key}={raw!r} is not an integer") from None
            if key == "symbols" and not 1 <= number <= MAX_SYMBOLS:
                raise SourceError(f"source spec {name!r}: symbols={number} must be in 1..{MAX_SYMBOLS}")
            if key == "seed" and number < 0:
                raise SourceError(f"source spec {name!r}: seed={number} must be >= 0")
            values[key] = number
    params = SyntheticParams(
        symbols=int(str(values["symbols"])),
        start=_checked_date(values["start"]),
        end=_checked_date(values["end"]),
        seed=int(str(values["seed"])),
    )
    if params.start > params.end:
        raise SourceError(f"source spec {name!r}: start={params.start} is after end={params.end}")
    return params


def _checked_date(value: object) -> date:
    assert isinstance(value, date)
    return value


def _holidays(year: int) -> set[date]:
    """Jan 1, Dec 25 and a few weekdays drawn from the year alone (the same for every seed)."""
    rng = np.random.default_rng([_CALENDAR_SEED, year])
    first = date(year, 1, 1)
    days = [first + timedelta(days=int(k)) for k in range((date(year + 1, 1, 1) - first).days)]
    weekdays = [d for d in days if d.weekday() < 5]
    picks = rng.choice(len(weekdays), size=HOLIDAYS_PER_YEAR, replace=False)
    return {date(year, 1, 1), date(year, 12, 25), *(weekdays[int(k)] for k in picks)}


def trading_days(start: date, end: date) -> list[date]:
    """The synthetic trading calendar: weekdays in ``[start, end]`` (inclusive) minus holidays."""
    if start > end:
        return []
    holidays: set[date] = set()
    for year in range(start.year, end.year + 1):
        holidays |= _holidays(year)
    out: list[date] = []
    day = start
    while day <= end:
        if day.weekday() < 5 and day not in holidays:
            out.append(day)
        day += timedelta(days=1)
    return out


@dataclass
class _Market:
    dates: npt.NDArray[np.datetime64]  # (T,) datetime64[s]
    frame: pd.DataFrame  # all bars, sorted by (date, symbol)
    row_of_date: npt.NDArray[np.int64]  # (T+1,) first row of each date; last = len(frame)


def _simulate(params: SyntheticParams) -> _Market:
    """Generate the whole market of ``params`` (time-major arrays, then one flat frame)."""
    cal = trading_days(params.start, params.end)
    n_days, n_sym = len(cal), params.symbols
    dates = np.array(cal, dtype="datetime64[D]").astype("datetime64[s]")
    if n_days == 0:
        return _Market(dates, empty_bars(), np.zeros(1, dtype=np.int64))

    # market factor with stochastic volatility
    mrng = np.random.default_rng([params.seed, 0])
    mz = mrng.standard_normal((2, n_days))
    logvol = np.empty(n_days)
    h = mz[0, 0] * MARKET_LOGVOL_NOISE / np.sqrt(1 - MARKET_LOGVOL_PERSISTENCE**2)
    for t in range(n_days):
        h = MARKET_LOGVOL_PERSISTENCE * h + MARKET_LOGVOL_NOISE * mz[0, t]
        logvol[t] = h
    r_m = MARKET_DRIFT + MARKET_VOL * np.exp(logvol) * mz[1]

    shape = (n_days, n_sym)
    e_f, e_m, e_open, e_high, e_low, e_vwap, e_vol = (np.empty(shape) for _ in range(7))
    u_susp, u_split, u_div, u_ratio = (np.empty(shape) for _ in range(4))
    beta, sigma, mu, phi, kappa = (np.empty(n_sym) for _ in range(5))
    p0, v0, m0 = (np.empty(n_sym) for _ in range(3))
    first = np.zeros(n_sym, dtype=np.int64)
    last = np.full(n_sym, n_days, dtype=np.int64)  # exclusive
    long_susp = np.zeros((n_sym, 2), dtype=np.int64)

    for i in range(n_sym):
        rng = np.random.default_rng([params.seed, 1, i])
        u = rng.random(16)
        z = rng.standard_normal(4)
        beta[i] = BETA_RANGE[0] + (BETA_RANGE[1] - BETA_RANGE[0]) * u[0]
        sigma[i] = IDIO_VOL_MEDIAN * np.exp(IDIO_VOL_DISPERSION * z[0])
        mu[i] = 0.0002 + 0.0002 * z[1]
        phi[i] = MISPRICING_PERSISTENCE[0] + (MISPRICING_PERSISTENCE[1] - MISPRICING_PERSISTENCE[0]) * u[1]
        kappa[i] = MISPRICING_NOISE_RATIO[0] + (MISPRICING_NOISE_RATIO[1] - MISPRICING_NOISE_RATIO[0]) * u[2]
        p0[i] = np.log(START_PRICE_MEDIAN) + 0.7 * z[2]
        v0[i] = np.log(VOLUME_MEDIAN) + 0.8 * z[3]
        m0[i] = rng.standard_normal() / np.sqrt(1 - phi[i] ** 2)
        if u[3] < LATE_LISTING_SHARE:
            first[i] = int((0.05 + 0.70 * u[4]) * n_days)
        if u[5] < DELISTING_SHARE:
            end_at = int((0.25 + 0.70 * u[6]) * n_days)
            if end_at - first[i] >= min(60, n_days // 4) and end_at > first[i]:
                last[i] = end_at
        if u[7] < LONG_SUSPENSION_SHARE:
            length = int(LONG_SUSPENSION_DAYS[0] + (LONG_SUSPENSION_DAYS[1] - LONG_SUSPENSION_DAYS[0]) * u[8])
            begin = int(first[i] + 1 + (last[i] - first[i] - length - 2) * u[9])
            if begin > first[i]:
                long_susp[i] = (begin, min(begin + length, int(last[i]) - 1))
        noise = rng.standard_normal((7, n_days))
        e_f[:, i], e_m[:, i], e_open[:, i], e_high[:, i], e_low[:, i], e_vwap[:, i], e_vol[:, i] = noise
        unif = rng.random((4, n_days))
        u_susp[:, i], u_split[:, i], u_div[:, i], u_ratio[:, i] = unif

    # fundamental value and AR(1) mispricing -> adjusted log close
    fund = p0 + np.cumsum(mu + beta * r_m[:, None] + sigma * e_f, axis=0)
    mis = np.empty(shape)
    innov = kappa * sigma * e_m
    m = m0 * kappa * sigma
    for t in range(n_days):
        m = phi * m + innov[t]
        mis[t] = m
    close = fund + mis
    prev = np.vstack([close[:1] - (mu + beta * r_m[0] + sigma * e_f[0]), close[:-1]])
    ret = close - prev

    # intraday: open between the previous close and the close, high/low around them, vwap inside
    opn = prev + 0.35 * ret + 0.3 * sigma * e_open
    high = np.maximum(opn, close) + 0.5 * sigma * np.abs(e_high)
    low = np.minimum(opn, close) - 0.5 * sigma * np.abs(e_low)
    vwap = np.clip(0.25 * (opn + close + high + low) + 0.15 * sigma * e_vwap, low, high)

    # volume: persistent lognormal level that rises with the size of the move
    lv = np.empty(shape)
    x = np.zeros(n_sym)
    shock = 0.3 * e_vol + 0.25 * (np.abs(ret) / sigma - 0.8)
    for t in range(n_days):
        x = VOLUME_PERSISTENCE * x + shock[t]
        lv[t] = x
    adj_volume = np.exp(v0 + lv)

    # who trades when
    t_idx = np.arange(n_days)[:, None]
    alive = (t_idx >= first) & (t_idx < last)
    suspended = u_susp < SUSPENDED_DAY_RATE
    suspended |= (t_idx >= long_susp[:, 0]) & (t_idx < long_susp[:, 1])
    suspended[first, np.arange(n_sym)] = False  # a listing day always trades
    trades = alive & ~suspended

    # corporate actions on days that trade right after a traded day (never on the first day)
    prev_trades = np.vstack([np.zeros((1, n_sym), dtype=bool), trades[:-1]])
    can_act = trades & prev_trades
    split = can_act & (u_split < SPLIT_RATE)
    cum_w = np.cumsum(SPLIT_RATIO_WEIGHTS)
    split_ratio = np.asarray(SPLIT_RATIOS)[np.minimum(np.searchsorted(cum_w, u_ratio), len(SPLIT_RATIOS) - 1)]
    dividend = can_act & ~split & (u_div < DIVIDEND_RATE)
    div_ratio = 1.0 + DIVIDEND_RANGE[0] + (DIVIDEND_RANGE[1] - DIVIDEND_RANGE[0]) * u_ratio
    ratio = np.where(split, split_ratio, np.where(dividend, div_ratio, 1.0))
    factor = np.cumprod(ratio, axis=0)

    # raw = adjusted / factor (prices), adjusted * factor (volume); whole shares
    raw: dict[str, npt.NDArray[Any]] = {
        "open": np.exp(opn) / factor,
        "high": np.exp(high) / factor,
        "low": np.exp(low) / factor,
        "close": np.exp(close) / factor,
        "vwap": np.exp(vwap) / factor,
        "volume": np.maximum(np.round(adj_volume * factor), 100.0),
        "factor": factor,
    }

    # flatten in (date, symbol) order: the arrays are time-major already
    t_rows, s_rows = np.nonzero(trades)
    names = np.array([f"S{i + 1:05d}" for i in range(n_sym)], dtype=object)
    data: dict[str, object] = {"date": dates[t_rows], "symbol": names[s_rows]}
    for col in ("open", "high", "low", "close", "volume", "vwap", "factor"):
        data[col] = raw[col][trades]
    frame = coerce_bars(pd.DataFrame(data), source=params.spec())
    counts = trades.sum(axis=1)
    row_of_date = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _Market(dates, frame, row_of_date)


class SyntheticSource:
    """The ``synthetic:`` source: a simulated market, generated lazily once per instance.

    Args:
        params: market size, span (inclusive) and seed; default :class:`SyntheticParams`.
        spec: the spec string it was parsed from (default: the canonical spec of ``params``).
    """

    def __init__(self, params: SyntheticParams | None = None, spec: str | None = None) -> None:
        self.params = params or SyntheticParams()
        self._spec = spec or self.params.spec()
        self._market: _Market | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SyntheticSource({self.params!r})"

    @property
    def spec(self) -> str:
        """The spec this source was built from."""
        return self._spec

    def market(self) -> pd.DataFrame:
        """All bars of the spec's span (a copy), sorted by ``(date, symbol)``."""
        return self._get().frame.copy()

    def calendar(self) -> list[date]:
        """The trading days of the spec's span, inclusive of both ends."""
        return trading_days(self.params.start, self.params.end)

    def _get(self) -> _Market:
        with self._lock:
            if self._market is None:
                began = time.perf_counter()
                self._market = _simulate(self.params)
                logger.info(
                    "%s: simulated %d rows (%d symbols x %d days) in %.2f s",
                    self.spec,
                    len(self._market.frame),
                    self.params.symbols,
                    len(self._market.dates),
                    time.perf_counter() - began,
                )
            return self._market

    def extract(self, start: date, end: date) -> pd.DataFrame:
        """Bars for trading dates ``start <= d <= end`` (inclusive), an exact slice of the market.

        A range that overlaps the spec's span only partly returns the overlap; one outside it returns
        an empty frame.

        Raises:
            SourceError: ``start > end`` or a bound that is not a date.
        """
        lo, hi = check_range(start, end, spec=self.spec)
        mkt = self._get()
        a = int(np.searchsorted(mkt.dates, np.datetime64(lo, "s"), side="left"))
        b = int(np.searchsorted(mkt.dates, np.datetime64(hi, "s"), side="right"))
        out = mkt.frame.iloc[mkt.row_of_date[a] : mkt.row_of_date[b]].copy()
        return out.reset_index(drop=True)


def from_spec(spec: str, body: str, resolve: Resolver) -> SyntheticSource:
    """Factory for ``synthetic:...`` specs (``resolve`` is unused: nothing is read)."""
    del resolve
    return SyntheticSource(parse_params(body, spec=spec), spec)
