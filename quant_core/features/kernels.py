"""Numba kernels of the rolling operators, over a ``(symbols, dates)`` panel.

Every kernel computes each window *from scratch*, oldest value first: no running sums, no
compensated updates, no state carried from one day to the next. The value for day ``t`` is
therefore a pure function of the inputs in ``[t - n + 1, t]`` and comes out bit for bit the same
whatever day the panel starts on. That is what makes an incremental computation from a
``hist_ref`` buffer equal the full recompute (``docs/features.md`` explains the choice). The only
exception is :func:`rolling_quantile`, which keeps a sorted copy of the window; a sorted multiset
does not depend on the order it was built in, so it has the same property.

Conventions shared by all kernels:

* input panels are ``float64``, C-contiguous, shape ``(n_symbols, n_dates)``: one row per series;
* NaN is "no observation": skipped by every reduction, like pandas' ``min_periods=1`` windows;
  the days before a series' first bar are NaN too, which makes windows partial there;
* a window with no observation gives NaN;
* ``t0``: only days ``t >= t0`` are computed, earlier ones are NaN (the engine asks each node
  only for the days its consumers need; a day's value does not depend on ``t0``).

The jitted functions are cached on disk (``cache=True``), so the compilation (a few seconds for all
kernels) happens once per machine and Python version, not once per process.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from numba import njit

FloatPanel = npt.NDArray[np.float64]
IntVector = npt.NDArray[np.int64]

#: Qlib sets Rsquare and Corr to NaN where the window's std is ``np.isclose(std, 0, atol=2e-5)``.
NEAR_ZERO_STD = 2e-5

_JIT: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _sum_mean(x: FloatPanel, n: int, mean: bool, t0: int) -> FloatPanel:
    n_sym, n_t = x.shape
    out = np.full((n_sym, n_t), np.nan)
    for s in range(n_sym):
        for t in range(max(t0, 0), n_t):
            lo = max(t - n + 1, 0)
            acc = 0.0
            cnt = 0
            for k in range(lo, t + 1):
                v = x[s, k]
                if not math.isnan(v):
                    acc += v
                    cnt += 1
            if cnt == 0:
                out[s, t] = np.nan
            elif mean:
                out[s, t] = acc / cnt
            else:
                out[s, t] = acc
    return out


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _std(x: FloatPanel, n: int, t0: int) -> FloatPanel:
    n_sym, n_t = x.shape
    out = np.full((n_sym, n_t), np.nan)
    for s in range(n_sym):
        for t in range(max(t0, 0), n_t):
            lo = max(t - n + 1, 0)
            acc = 0.0
            cnt = 0
            first = np.nan
            same = True
            for k in range(lo, t + 1):
                v = x[s, k]
                if not math.isnan(v):
                    if cnt == 0:
                        first = v
                    elif v != first:
                        same = False
                    acc += v
                    cnt += 1
            if cnt < 2:
                out[s, t] = np.nan
            elif same:
                out[s, t] = 0.0
            else:
                m = acc / cnt
                ss = 0.0
                for k in range(lo, t + 1):
                    v = x[s, k]
                    if not math.isnan(v):
                        ss += (v - m) * (v - m)
                out[s, t] = math.sqrt(ss / (cnt - 1))
    return out


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _extreme(x: FloatPanel, n: int, want_max: bool, t0: int) -> FloatPanel:
    n_sym, n_t = x.shape
    out = np.full((n_sym, n_t), np.nan)
    for s in range(n_sym):
        for t in range(max(t0, 0), n_t):
            lo = max(t - n + 1, 0)
            best = np.nan
            found = False
            for k in range(lo, t + 1):
                v = x[s, k]
                if math.isnan(v):
                    continue
                if not found or (want_max and v > best) or (not want_max and v < best):
                    best = v
                    found = True
            out[s, t] = best
    return out


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _idx_extreme(x: FloatPanel, n: int, start: IntVector, want_max: bool, t0: int) -> FloatPanel:
    n_sym, n_t = x.shape
    out = np.full((n_sym, n_t), np.nan)
    for s in range(n_sym):
        for t in range(max(t0, 0), n_t):
            # the window starts n-1 days back, or at the series' first day if that is later
            w0 = max(t - n + 1, start[s], 0)
            best = np.nan
            pos = -1
            for k in range(w0, t + 1):
                v = x[s, k]
                if math.isnan(v):
                    continue  # the fix: Qlib's argmax would return the first NaN
                if pos < 0 or (want_max and v > best) or (not want_max and v < best):
                    best = v
                    pos = k
            out[s, t] = np.nan if pos < 0 else float(pos - w0 + 1)
    return out


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _rank(x: FloatPanel, n: int, t0: int) -> FloatPanel:
    n_sym, n_t = x.shape
    out = np.full((n_sym, n_t), np.nan)
    for s in range(n_sym):
        for t in range(max(t0, 0), n_t):
            last = x[s, t]
            if math.isnan(last):
                out[s, t] = np.nan
                continue
            lo = max(t - n + 1, 0)
            less = 0
            equal = 0
            cnt = 0
            for k in range(lo, t + 1):
                v = x[s, k]
                if math.isnan(v):
                    continue
                cnt += 1
                if v < last:
                    less += 1
                elif v == last:
                    equal += 1
            # average rank of the ties (1-based), as a fraction of the observations
            out[s, t] = (less + 0.5 * (equal + 1)) / cnt
    return out


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _quantile(x: FloatPanel, n: int, q: float, t0: int) -> FloatPanel:
    n_sym, n_t = x.shape
    out = np.full((n_sym, n_t), np.nan)
    buf = np.empty(n)
    for s in range(n_sym):
        m = 0  # sorted observations of the current window live in buf[:m]
        t_first = max(t0 - n + 1, 0)  # fill the window before the first day wanted
        for t in range(t_first, n_t):
            if t - n >= t_first:
                old = x[s, t - n]
                if not math.isnan(old):
                    i = np.searchsorted(buf[:m], old)
                    for j in range(i, m - 1):
                        buf[j] = buf[j + 1]
                    m -= 1
            new = x[s, t]
            if not math.isnan(new):
                i = np.searchsorted(buf[:m], new)
                for j in range(m, i, -1):
                    buf[j] = buf[j - 1]
                buf[i] = new
                m += 1
            if t < t0 or m == 0:
                continue
            pos = q * (m - 1)
            lo = int(pos)
            if pos == lo:
                out[s, t] = buf[lo]
            else:
                out[s, t] = buf[lo] + (buf[lo + 1] - buf[lo]) * (pos - lo)
    return out


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _ols(y: FloatPanel, n: int, mode: int, t0: int) -> FloatPanel:
    """mode 0: slope, 1: r-square (NaN on a near-constant window), 2: residual of today."""
    n_sym, n_t = y.shape
    out = np.full((n_sym, n_t), np.nan)
    for s in range(n_sym):
        for t in range(max(t0, 0), n_t):
            lo = max(t - n + 1, 0)
            cnt = 0
            sx = 0.0
            sy = 0.0
            first = np.nan
            same = True
            for k in range(lo, t + 1):
                v = y[s, k]
                if not math.isnan(v):
                    if cnt == 0:
                        first = v
                    elif v != first:
                        same = False
                    cnt += 1
                    sx += k - t + n  # position in the window: today is n, the oldest 1
                    sy += v
            today = y[s, t]
            if cnt < 2 or (mode == 2 and math.isnan(today)) or (mode == 1 and same):
                out[s, t] = np.nan
                continue
            xm = sx / cnt
            ym = sy / cnt
            sxx = 0.0
            sxy = 0.0
            syy = 0.0
            for k in range(lo, t + 1):
                v = y[s, k]
                if not math.isnan(v):
                    dx = (k - t + n) - xm
                    dy = v - ym
                    sxx += dx * dx
                    sxy += dx * dy
                    syy += dy * dy
            slope = sxy / sxx
            if mode == 0:
                out[s, t] = slope
            elif mode == 1:
                if math.sqrt(syy / (cnt - 1)) <= NEAR_ZERO_STD:
                    out[s, t] = np.nan
                else:
                    r = sxy / math.sqrt(sxx * syy)
                    out[s, t] = r * r
            else:
                out[s, t] = today - (ym + slope * (n - xm))
    return out


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _corr(a: FloatPanel, b: FloatPanel, n: int, t0: int) -> FloatPanel:
    n_sym, n_t = a.shape
    out = np.full((n_sym, n_t), np.nan)
    for s in range(n_sym):
        for t in range(max(t0, 0), n_t):
            lo = max(t - n + 1, 0)
            # pass 1: means of each side on its own observations (for Qlib's std mask) and of
            # the pairs observed on both sides (for the correlation)
            cnt_a = 0
            cnt_b = 0
            cnt = 0
            sum_a = 0.0
            sum_b = 0.0
            sa = 0.0
            sb = 0.0
            for k in range(lo, t + 1):
                va = a[s, k]
                vb = b[s, k]
                ok_a = not math.isnan(va)
                ok_b = not math.isnan(vb)
                if ok_a:
                    cnt_a += 1
                    sum_a += va
                if ok_b:
                    cnt_b += 1
                    sum_b += vb
                if ok_a and ok_b:
                    cnt += 1
                    sa += va
                    sb += vb
            if cnt < 2:
                out[s, t] = np.nan
                continue
            mean_a = sum_a / cnt_a
            mean_b = sum_b / cnt_b
            ma = sa / cnt
            mb = sb / cnt
            # pass 2: squared deviations
            ss_a = 0.0
            ss_b = 0.0
            saa = 0.0
            sbb = 0.0
            sab = 0.0
            for k in range(lo, t + 1):
                va = a[s, k]
                vb = b[s, k]
                ok_a = not math.isnan(va)
                ok_b = not math.isnan(vb)
                if ok_a:
                    ss_a += (va - mean_a) * (va - mean_a)
                if ok_b:
                    ss_b += (vb - mean_b) * (vb - mean_b)
                if ok_a and ok_b:
                    da = va - ma
                    db = vb - mb
                    saa += da * da
                    sbb += db * db
                    sab += da * db
            # Qlib: NaN where either side's own rolling std (ddof=1) is np.isclose to 0
            if (
                math.sqrt(ss_a / (cnt_a - 1)) <= NEAR_ZERO_STD
                or math.sqrt(ss_b / (cnt_b - 1)) <= NEAR_ZERO_STD
            ):
                out[s, t] = np.nan
                continue
            den = math.sqrt(saa * sbb)
            out[s, t] = np.nan if den == 0.0 else sab / den
    return out


# -- typed wrappers: mypy sees these signatures, numba compiles the functions above ------------


def rolling_sum(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Sum of the observations in each window of ``n`` days (NaN if none)."""
    return cast(FloatPanel, _sum_mean(x, n, False, t0))


def rolling_mean(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Mean of the observations in each window of ``n`` days (NaN if none)."""
    return cast(FloatPanel, _sum_mean(x, n, True, t0))


def rolling_std(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Sample standard deviation (ddof=1) of each window; NaN below two observations."""
    return cast(FloatPanel, _std(x, n, t0))


def rolling_max(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Largest observation of each window."""
    return cast(FloatPanel, _extreme(x, n, True, t0))


def rolling_min(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Smallest observation of each window."""
    return cast(FloatPanel, _extreme(x, n, False, t0))


def rolling_idxmax(x: FloatPanel, n: int, start: IntVector, t0: int = 0) -> FloatPanel:
    """1-based position of the window's maximum, counted from its oldest day; NaN days ignored.

    ``start[s]`` is the first day of series ``s``: before it the window is partial and its oldest
    day is ``start[s]``. Ties go to the oldest occurrence.
    """
    return cast(FloatPanel, _idx_extreme(x, n, start, True, t0))


def rolling_idxmin(x: FloatPanel, n: int, start: IntVector, t0: int = 0) -> FloatPanel:
    """1-based position of the window's minimum (see :func:`rolling_idxmax`)."""
    return cast(FloatPanel, _idx_extreme(x, n, start, False, t0))


def rolling_rank(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Average-tie percentile rank of today's value among the window's observations."""
    return cast(FloatPanel, _rank(x, n, t0))


def rolling_quantile(x: FloatPanel, n: int, q: float, t0: int = 0) -> FloatPanel:
    """Quantile ``q`` of each window's observations, linear interpolation (pandas' formula)."""
    return cast(FloatPanel, _quantile(x, n, q, t0))


def rolling_slope(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """OLS slope of the observations on their window positions (today = ``n``)."""
    return cast(FloatPanel, _ols(x, n, 0, t0))


def rolling_rsquare(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """R² of the OLS fit on window positions; NaN where the window's std is near 0."""
    return cast(FloatPanel, _ols(x, n, 1, t0))


def rolling_resi(x: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Today's value minus the OLS fit at today's position; NaN if today is NaN."""
    return cast(FloatPanel, _ols(x, n, 2, t0))


def rolling_corr(a: FloatPanel, b: FloatPanel, n: int, t0: int = 0) -> FloatPanel:
    """Pearson correlation over the days where both are observed; NaN where either std is near 0."""
    return cast(FloatPanel, _corr(a, b, n, t0))
