"""Numba kernels of the rolling operators, over a ``(symbols, dates)`` panel.

Every kernel computes each window *from scratch*, in a fixed order of its values (oldest first;
the moments newest first, see :func:`_moments`): no running sums, no compensated updates, no
state carried from one day to the next. The value for day ``t`` is
therefore a pure function of the inputs in ``[t - n + 1, t]`` and comes out bit for bit the same
whatever day the panel starts on. That is what makes an incremental computation from a
``hist_ref`` buffer equal the full recompute (``docs/features.md`` explains the choice). The only
exception is :func:`rolling_quantile`, which keeps a sorted copy of the window; a sorted multiset
does not depend on the order it was built in, so it has the same property. Window *counts* (and
OLS's sums of observed positions) come from running integer counts: integers are exact, so they
have it too. Float data is never summed in a running way.

Conventions shared by all kernels:

* input panels are ``float64`` or ``float32`` (widened exactly to float64 as they are read),
  C-contiguous, shape ``(n_symbols, n_dates)``: one row per series; outputs are ``float64``;
* NaN is "no observation": skipped by every reduction, like pandas' ``min_periods=1`` windows;
  the days before a series' first bar are NaN too, which makes windows partial there;
* a window with no observation gives NaN;
* ``t0``: only days ``t >= t0`` are computed, earlier ones are NaN (the engine asks each node
  only for the days its consumers need; a day's value does not depend on ``t0``).

How the kernels are fast without changing a bit:

* **Many windows at once.** A series is copied once into a padded buffer (``n - 1`` empty days in
  front, NaN replaced by ``0.0`` plus an "observed" flag). The window sums are then accumulated
  for a block of consecutive days together: for ``j = 0 .. n-1`` every day ``t`` of the block adds
  its ``j``-th oldest value. Each window still sees exactly the additions of the plain loop, in
  the same order (oldest first), so every rounding is the same; the days are independent, so the
  compiler runs them in SIMD lanes. Adding ``0.0`` for a skipped day is an exact no-op: the
  accumulators start at ``+0.0`` and a round-to-nearest sum can only become ``-0.0`` from two
  ``-0.0`` operands, so ``acc + 0.0 == acc`` bit for bit (``inf`` and NaN stay what they are).
* **Shared passes.** ``Mean``/``Sum``/``Std`` of the same input come from one kernel call for
  all their window lengths (:func:`rolling_moments_windows`); ``Slope``/``Rsquare``/``Resi`` of
  one window share one call (:func:`rolling_ols`), and so do several quantiles of one window
  (:func:`rolling_quantiles`): each output is computed by the same operations as alone.
* **Symbols in parallel.** Series are independent, so :func:`parallel` splits the symbols of
  each kernel call over a few threads (the kernels release the GIL). Each series is computed by
  exactly the same code whatever thread runs it.

The jitted functions are cached on disk (``cache=True``), so the compilation (a few seconds for all
kernels) happens once per machine and Python version, not once per process.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from numba import njit

FloatPanel = npt.NDArray[np.float64]
IntVector = npt.NDArray[np.int64]
#: A kernel input: float64, or float32 (widened exactly to float64 as it is read, no copy).
InPanel = npt.NDArray[Any]

#: Qlib sets Rsquare and Corr to NaN where the window's std is ``np.isclose(std, 0, atol=2e-5)``.
NEAR_ZERO_STD = 2e-5

_JIT: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}

#: Days accumulated together: the block's accumulators stay in L1.
_BLOCK = 256


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _load(row: FloatPanel, base: int, first: int, val: FloatPanel, ok: npt.NDArray[np.bool_]) -> None:
    """``val[i], ok[i]`` = day ``base + i`` of ``row``: the value (``0.0`` when missing) and whether
    it is observed. Days before ``first`` (and before the panel) are missing."""
    for i in range(val.shape[0]):
        k = base + i
        v = row[k] if k >= first else np.nan
        if math.isnan(v):
            val[i] = 0.0
            ok[i] = False
        else:
            val[i] = v
            ok[i] = True


# -- Sum / Mean / Std ------------------------------------------------------------------------------
#
# Layout of every windowed kernel: ``a`` is the first day computed, ``m`` the number of days
# computed, ``val[i]`` (padded buffer) is day ``a - n + 1 + i``; the window of day ``a + i`` is
# ``val[i : i + n]``. Days are processed in blocks of ``_BLOCK``: for each ``j`` the slice
# ``val[i0 + j : i1 + j]`` holds the ``j``-th oldest value of the windows of days ``i0 .. i1-1``.
#
# The moments are the exception: they add a window's values *newest first*, so that the windows
# of several lengths over one input share their additions. After the ``n`` newest values of a
# day the running total is exactly the ``n``-day window's sum, whatever longer windows are
# computed in the same call; a window of 5, 10, 20, 30 and 60 days costs 60 additions per day
# instead of 125. A window computed alone is the same call with one length: same bits.


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _moments(
    x: FloatPanel,
    ns: IntVector,
    t0: int,
    slot: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
) -> None:
    """Sum, mean and sample std (ddof=1) of the windows of lengths ``ns`` (ascending, distinct).

    ``slot[w, k]`` is the index in ``out`` of output ``k`` (0 sum, 1 mean, 2 std) of window
    ``ns[w]``, or -1 when that output is not wanted. Each window's values are added newest first.
    The std is two-pass: the window's mean, then the squared deviations from it, newest first;
    exactly 0 when every observation of the window is the same value (as pandas); NaN below two
    observations.
    """
    n_sym, n_t = x.shape
    k = ns.shape[0]
    n_max = ns[k - 1]
    a = min(max(t0, 0), n_t)
    m = n_t - a
    any_std = False
    for w in range(k):
        any_std = any_std or slot[w, 2] >= 0
        for f in range(3):
            if slot[w, f] >= 0:
                out[slot[w, f], :, :a] = np.nan
    if m == 0:
        return
    top = n_max - 1  # val[top + i] is day a + i: the newest value of its windows
    val = np.empty(m + n_max - 1)
    ok = np.empty(m + n_max - 1, dtype=np.bool_)
    acc_b = np.empty(_BLOCK)
    cnt_b = np.empty(_BLOCK)
    hi_b = np.empty(_BLOCK)
    lo_b = np.empty(_BLOCK)
    mu_b = np.empty(_BLOCK)
    ss_b = np.empty(_BLOCK)
    seen = np.empty(m + n_max, dtype=np.int64)  # seen[q]: observations among val[:q]
    for s in range(n_sym):
        _load(x[s], a - n_max + 1, 0, val, ok)
        # window counts from a running count of observations: integers, exact whatever the start
        seen[0] = 0
        for q in range(m + n_max - 1):
            seen[q + 1] = seen[q] + (1 if ok[q] else 0)
        for i0 in range(0, m, _BLOCK):
            i1 = min(i0 + _BLOCK, m)
            nb = i1 - i0
            acc = acc_b[:nb]
            cnt = cnt_b[:nb]
            hi = hi_b[:nb]
            lo = lo_b[:nb]
            acc[:] = 0.0
            hi[:] = -np.inf
            lo[:] = np.inf
            j = 0  # values added so far to each day's total: its j newest
            for w in range(k):
                n = ns[w]
                if any_std:  # the largest and smallest observations too (std's exact zero)
                    while j < n:
                        v = val[top + i0 - j : top + i1 - j]
                        o = ok[top + i0 - j : top + i1 - j]
                        for i in range(nb):
                            acc[i] += v[i]
                            hi[i] = max(hi[i], v[i]) if o[i] else hi[i]
                            lo[i] = min(lo[i], v[i]) if o[i] else lo[i]
                        j += 1
                else:
                    while j < n:
                        v = val[top + i0 - j : top + i1 - j]
                        for i in range(nb):
                            acc[i] += v[i]
                        j += 1
                for i in range(nb):
                    cnt[i] = float(seen[top + i0 + i + 1] - seen[top + i0 + i + 1 - n])
                if slot[w, 0] >= 0:
                    o_sum = out[slot[w, 0], s]
                    for i in range(nb):
                        o_sum[a + i0 + i] = acc[i] if cnt[i] > 0.0 else np.nan
                if slot[w, 1] >= 0:
                    o_mean = out[slot[w, 1], s]
                    for i in range(nb):
                        c = cnt[i]
                        o_mean[a + i0 + i] = acc[i] / c if c > 0.0 else np.nan
                if slot[w, 2] < 0:
                    continue
                mu = mu_b[:nb]
                ss = ss_b[:nb]
                ss[:] = 0.0
                for i in range(nb):
                    mu[i] = acc[i] / cnt[i] if cnt[i] > 0.0 else 0.0
                for jj in range(n):
                    v = val[top + i0 - jj : top + i1 - jj]
                    o = ok[top + i0 - jj : top + i1 - jj]
                    for i in range(nb):
                        d = v[i] - mu[i]
                        ss[i] += d * d if o[i] else 0.0
                o_std = out[slot[w, 2], s]
                for i in range(nb):  # selects, no branches (SIMD)
                    c = cnt[i]
                    std = math.sqrt(ss[i] / (c - 1.0))
                    # largest == smallest: every observation is the same value, the std exactly 0
                    o_std[a + i0 + i] = np.nan if c < 2.0 else (0.0 if hi[i] == lo[i] else std)


# -- Max / Min / IdxMax / IdxMin ---------------------------------------------------------------------
#
# ``best`` starts at -inf (+inf for the minimum) and takes a value only if it is strictly better:
# the same value as "the first observation, then each strictly better one" (if the first
# observation is -inf, ``best`` already is -inf), so ties keep the oldest occurrence.


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _extreme(x: FloatPanel, n: int, want_max: bool, t0: int, out: FloatPanel) -> None:
    n_sym, n_t = x.shape
    a = min(max(t0, 0), n_t)
    m = n_t - a
    out[:, :a] = np.nan
    if m == 0:
        return
    base = a - n + 1
    val = np.empty(m + n - 1)
    ok = np.empty(m + n - 1, dtype=np.bool_)
    best_b = np.empty(_BLOCK)
    found_b = np.empty(_BLOCK, dtype=np.bool_)
    for s in range(n_sym):
        _load(x[s], base, 0, val, ok)
        for i0 in range(0, m, _BLOCK):
            i1 = min(i0 + _BLOCK, m)
            nb = i1 - i0
            best = best_b[:nb]
            found = found_b[:nb]
            found[:] = False
            if want_max:
                best[:] = -np.inf
                for j in range(n):
                    v = val[i0 + j : i1 + j]
                    o = ok[i0 + j : i1 + j]
                    for i in range(nb):
                        best[i] = v[i] if o[i] & (v[i] > best[i]) else best[i]
                        found[i] = found[i] | o[i]
            else:
                best[:] = np.inf
                for j in range(n):
                    v = val[i0 + j : i1 + j]
                    o = ok[i0 + j : i1 + j]
                    for i in range(nb):
                        best[i] = v[i] if o[i] & (v[i] < best[i]) else best[i]
                        found[i] = found[i] | o[i]
            for i in range(nb):
                out[s, a + i0 + i] = best[i] if found[i] else np.nan


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _idx_extreme(x: FloatPanel, n: int, start: IntVector, want_max: bool, t0: int, out: FloatPanel) -> None:
    n_sym, n_t = x.shape
    a = min(max(t0, 0), n_t)
    m = n_t - a
    out[:, :a] = np.nan
    if m == 0:
        return
    base = a - n + 1
    val = np.empty(m + n - 1)
    ok = np.empty(m + n - 1, dtype=np.bool_)
    best_b = np.empty(_BLOCK)
    pos_b = np.empty(_BLOCK, dtype=np.int64)
    for s in range(n_sym):
        # the window starts n-1 days back, or at the series' first day if that is later: days
        # before the first one are not part of any window
        first = max(start[s], 0)
        _load(x[s], base, first, val, ok)
        for i0 in range(0, m, _BLOCK):
            i1 = min(i0 + _BLOCK, m)
            nb = i1 - i0
            best = best_b[:nb]
            pos = pos_b[:nb]
            pos[:] = -1
            best[:] = 0.0
            # NaN days are skipped (the fix: Qlib's argmax would return the first NaN day)
            if want_max:
                for j in range(n):
                    v = val[i0 + j : i1 + j]
                    o = ok[i0 + j : i1 + j]
                    for i in range(nb):
                        take = o[i] & ((pos[i] < 0) | (v[i] > best[i]))
                        best[i] = v[i] if take else best[i]
                        pos[i] = j if take else pos[i]
            else:
                for j in range(n):
                    v = val[i0 + j : i1 + j]
                    o = ok[i0 + j : i1 + j]
                    for i in range(nb):
                        take = o[i] & ((pos[i] < 0) | (v[i] < best[i]))
                        best[i] = v[i] if take else best[i]
                        pos[i] = j if take else pos[i]
            for i in range(nb):
                t = a + i0 + i
                if pos[i] < 0:
                    out[s, t] = np.nan
                else:
                    w0 = max(t - n + 1, first)
                    out[s, t] = float(t - n + 1 + pos[i] - w0 + 1)


# -- Rank / Quantile ---------------------------------------------------------------------------------


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _rank(x: FloatPanel, n: int, t0: int, out: FloatPanel) -> None:
    n_sym, n_t = x.shape
    a = min(max(t0, 0), n_t)
    m = n_t - a
    out[:, :a] = np.nan
    if m == 0:
        return
    base = a - n + 1
    raw = np.empty(m + n - 1)
    less_b = np.empty(_BLOCK)
    equal_b = np.empty(_BLOCK)
    cnt_b = np.empty(_BLOCK)
    for s in range(n_sym):
        row = x[s]
        for i in range(m + n - 1):
            k = base + i
            raw[i] = row[k] if k >= 0 else np.nan
        for i0 in range(0, m, _BLOCK):
            i1 = min(i0 + _BLOCK, m)
            nb = i1 - i0
            less = less_b[:nb]
            equal = equal_b[:nb]
            cnt = cnt_b[:nb]
            less[:] = 0.0
            equal[:] = 0.0
            cnt[:] = 0.0
            last = raw[i0 + n - 1 : i1 + n - 1]
            for j in range(n):
                v = raw[i0 + j : i1 + j]
                for i in range(nb):
                    # comparisons with NaN are false: missing days count nowhere
                    less[i] += 1.0 if v[i] < last[i] else 0.0
                    equal[i] += 1.0 if v[i] == last[i] else 0.0
                    cnt[i] += 1.0 if v[i] == v[i] else 0.0
            for i in range(nb):
                if math.isnan(last[i]):
                    out[s, a + i0 + i] = np.nan
                else:
                    # average rank of the ties (1-based), as a fraction of the observations; the
                    # counts are small integers, exact in float64 as in int64
                    out[s, a + i0 + i] = (less[i] + 0.5 * (equal[i] + 1.0)) / cnt[i]


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _quantiles(x: FloatPanel, n: int, qs: FloatPanel, t0: int, out: npt.NDArray[np.float64]) -> None:
    """``out[k]`` = quantile ``qs[k]`` of each window (one sorted window for all of them)."""
    n_sym, n_t = x.shape
    n_q = qs.shape[0]
    a = min(max(t0, 0), n_t)
    for k in range(n_q):
        out[k, :, :a] = np.nan
    buf = np.empty(n)
    # where each quantile falls in a sorted window of m observations: buf[lo] + (buf[lo + 1] -
    # buf[lo]) * frac, or buf[lo] when frac is 0 (pandas' linear interpolation)
    lo_of = np.zeros((n_q, n + 1), dtype=np.int64)
    frac_of = np.zeros((n_q, n + 1))
    for k in range(n_q):
        for mm in range(1, n + 1):
            pos = qs[k] * (mm - 1)
            lo_of[k, mm] = int(pos)
            frac_of[k, mm] = pos - lo_of[k, mm]
    for s in range(n_sym):
        m = 0  # sorted observations of the current window live in buf[:m]
        t_first = max(t0 - n + 1, 0)  # fill the window before the first day wanted
        for t in range(t_first, n_t):
            new = x[s, t]
            gap = -1  # where the value leaving the window was taken out, if one was
            if t - n >= t_first:
                old = x[s, t - n]
                if not math.isnan(old):
                    # the first j with buf[j] >= old (np.searchsorted, side="left")
                    lo, hi = 0, m
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if buf[mid] < old:
                            lo = mid + 1
                        else:
                            hi = mid
                    gap = lo
            if gap >= 0 and not math.isnan(new):
                # replace: move only the values between the old and the new position; the result
                # is the same as closing the gap and then inserting (both side="left")
                j = gap
                if j > 0 and buf[j - 1] >= new:
                    while j > 0 and buf[j - 1] >= new:
                        buf[j] = buf[j - 1]
                        j -= 1
                else:
                    while j + 1 < m and buf[j + 1] < new:
                        buf[j] = buf[j + 1]
                        j += 1
                buf[j] = new
            elif gap >= 0:  # today is missing: close the gap
                for j in range(gap, m - 1):
                    buf[j] = buf[j + 1]
                m -= 1
            elif not math.isnan(new):
                # insert before the first j with buf[j] >= new (side="left"), shifting as it scans
                j = m
                while j > 0 and buf[j - 1] >= new:
                    buf[j] = buf[j - 1]
                    j -= 1
                buf[j] = new
                m += 1
            if t < t0:
                continue
            for k in range(n_q):
                if m == 0:
                    out[k, s, t] = np.nan
                    continue
                lo = lo_of[k, m]
                frac = frac_of[k, m]
                if frac == 0.0:
                    out[k, s, t] = buf[lo]
                else:
                    out[k, s, t] = buf[lo] + (buf[lo + 1] - buf[lo]) * frac


# -- Slope / Rsquare / Resi ------------------------------------------------------------------------


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _ols(
    y: FloatPanel,
    n: int,
    t0: int,
    want_rsq: bool,
    out_slope: FloatPanel,
    out_rsq: FloatPanel,
    out_resi: FloatPanel,
) -> None:
    """OLS of the observations on their window positions (today = n, the oldest day = 1):
    the slope, the r-square (NaN on a near-constant window) and the residual of today."""
    n_sym, n_t = y.shape
    a = min(max(t0, 0), n_t)
    m = n_t - a
    out_slope[:, :a] = np.nan
    out_rsq[:, :a] = np.nan
    out_resi[:, :a] = np.nan
    if m == 0:
        return
    base = a - n + 1
    val = np.empty(m + n - 1)
    ok = np.empty(m + n - 1, dtype=np.bool_)
    cnt_b = np.empty(_BLOCK)
    sx_b = np.empty(_BLOCK)
    sy_b = np.empty(_BLOCK)
    hi_b = np.empty(_BLOCK)
    lo_b = np.empty(_BLOCK)
    xm_b = np.empty(_BLOCK)
    ym_b = np.empty(_BLOCK)
    sxx_b = np.empty(_BLOCK)
    sxy_b = np.empty(_BLOCK)
    syy_b = np.empty(_BLOCK)
    seen = np.empty(m + n, dtype=np.int64)  # seen[k]: observations among val[:k]
    wseen = np.empty(m + n, dtype=np.int64)  # wseen[k]: sum of k' over observed k' < k
    for s in range(n_sym):
        _load(y[s], base, 0, val, ok)
        # counts and sums of positions are integers: running sums of them are exact
        seen[0] = 0
        wseen[0] = 0
        for k in range(m + n - 1):
            seen[k + 1] = seen[k] + (1 if ok[k] else 0)
            wseen[k + 1] = wseen[k] + (k if ok[k] else 0)
        for i0 in range(0, m, _BLOCK):
            i1 = min(i0 + _BLOCK, m)
            nb = i1 - i0
            cnt = cnt_b[:nb]
            sx = sx_b[:nb]
            sy = sy_b[:nb]
            hi = hi_b[:nb]
            lo = lo_b[:nb]
            xm = xm_b[:nb]
            ym = ym_b[:nb]
            sxx = sxx_b[:nb]
            sxy = sxy_b[:nb]
            syy = syy_b[:nb]
            sy[:] = 0.0
            hi[:] = -np.inf
            lo[:] = np.inf
            for i in range(nb):
                # position in the window: today is n, the oldest (day w) 1
                w = i0 + i
                c = seen[w + n] - seen[w]
                cnt[i] = float(c)
                sx[i] = float(wseen[w + n] - wseen[w] - (w - 1) * c)
            for j in range(n):
                v = val[i0 + j : i1 + j]
                for i in range(nb):
                    sy[i] += v[i]
            for i in range(nb):
                xm[i] = sx[i] / cnt[i] if cnt[i] > 0.0 else 0.0
                ym[i] = sy[i] / cnt[i] if cnt[i] > 0.0 else 0.0
            sxx[:] = 0.0
            sxy[:] = 0.0
            syy[:] = 0.0
            for j in range(n):
                px = float(j + 1)
                v = val[i0 + j : i1 + j]
                o = ok[i0 + j : i1 + j]
                for i in range(nb):
                    dx = px - xm[i]
                    dy = v[i] - ym[i]
                    sxx[i] += dx * dx if o[i] else 0.0
                    sxy[i] += dx * dy if o[i] else 0.0
                    syy[i] += dy * dy if o[i] else 0.0
            if want_rsq:
                for j in range(n):
                    v = val[i0 + j : i1 + j]
                    o = ok[i0 + j : i1 + j]
                    for i in range(nb):
                        hi[i] = max(hi[i], v[i]) if o[i] else hi[i]
                        lo[i] = min(lo[i], v[i]) if o[i] else lo[i]
            # every lane computes every candidate and keeps it or NaN (selects, no branches: the
            # loop runs in SIMD lanes); the kept values are the same operations as one by one
            for i in range(nb):
                t = a + i0 + i
                c = cnt[i]
                few = c < 2.0
                slope = sxy[i] / sxx[i]
                out_slope[s, t] = np.nan if few else slope
                today = y[s, t]
                resi = today - (ym[i] + slope * (n - xm[i]))
                out_resi[s, t] = np.nan if few | math.isnan(today) else resi
                flat = (hi[i] == lo[i]) | (math.sqrt(syy[i] / (c - 1.0)) <= NEAR_ZERO_STD)
                r = sxy[i] / math.sqrt(sxx[i] * syy[i])
                out_rsq[s, t] = np.nan if few | flat | (not want_rsq) else r * r


# -- Corr ------------------------------------------------------------------------------------------


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _corr(xa: FloatPanel, xb: FloatPanel, n: int, t0: int, out: FloatPanel) -> None:
    n_sym, n_t = xa.shape
    a = min(max(t0, 0), n_t)
    m = n_t - a
    out[:, :a] = np.nan
    if m == 0:
        return
    base = a - n + 1
    va = np.empty(m + n - 1)
    vb = np.empty(m + n - 1)
    oa = np.empty(m + n - 1, dtype=np.bool_)
    ob = np.empty(m + n - 1, dtype=np.bool_)
    buf = np.empty((15, _BLOCK))
    seen = np.empty(m + n, dtype=np.int64)  # seen[k]: days observed on side a among va[:k]
    for s in range(n_sym):
        _load(xa[s], base, 0, va, oa)
        _load(xb[s], base, 0, vb, ob)
        seen[0] = 0
        for k in range(m + n - 1):
            seen[k + 1] = seen[k] + (1 if oa[k] else 0)
        for i0 in range(0, m, _BLOCK):
            i1 = min(i0 + _BLOCK, m)
            nb = i1 - i0
            cnt_a = buf[0, :nb]
            cnt_b = buf[1, :nb]
            cnt = buf[2, :nb]
            sum_a = buf[3, :nb]
            sum_b = buf[4, :nb]
            sa = buf[5, :nb]
            sb = buf[6, :nb]
            mean_a = buf[7, :nb]
            mean_b = buf[8, :nb]
            ma = buf[9, :nb]
            mb = buf[10, :nb]
            ss_a = buf[11, :nb]
            ss_b = buf[12, :nb]
            saa = buf[13, :nb]
            sbb = buf[14, :nb]
            # Usually both sides are observed on the same days throughout the block. Then every
            # lane's own-side sums are the very same additions as its pair sums (a day missing
            # on both adds 0.0 either way), so cnt_a = cnt_b = cnt, mean_a = ma, ss_a = saa, ...
            # bit for bit, and only the pair sums need computing.
            same = True
            for k in range(i0, i1 + n - 1):
                if oa[k] != ob[k]:
                    same = False
                    break
            if same:
                buf[:7, :nb] = 0.0
                for i in range(nb):  # integer counts, exact whatever the start
                    cnt[i] = float(seen[i0 + i + n] - seen[i0 + i])
                for j in range(n):
                    x1 = va[i0 + j : i1 + j]
                    x2 = vb[i0 + j : i1 + j]
                    for i in range(nb):
                        sa[i] += x1[i]
                        sb[i] += x2[i]
                for i in range(nb):
                    ma[i] = sa[i] / cnt[i] if cnt[i] > 0.0 else 0.0
                    mb[i] = sb[i] / cnt[i] if cnt[i] > 0.0 else 0.0
                sab = sum_a
                buf[11:15, :nb] = 0.0
                sab[:] = 0.0
                for j in range(n):
                    x1 = va[i0 + j : i1 + j]
                    x2 = vb[i0 + j : i1 + j]
                    o1 = oa[i0 + j : i1 + j]
                    for i in range(nb):
                        d1 = x1[i] - ma[i]
                        d2 = x2[i] - mb[i]
                        saa[i] += d1 * d1 if o1[i] else 0.0
                        sbb[i] += d2 * d2 if o1[i] else 0.0
                        sab[i] += d1 * d2 if o1[i] else 0.0
                for i in range(nb):  # selects, no branches (SIMD), as in _ols
                    c1 = cnt[i] - 1.0
                    flat = (math.sqrt(saa[i] / c1) <= NEAR_ZERO_STD) | (math.sqrt(sbb[i] / c1) <= NEAR_ZERO_STD)
                    den = math.sqrt(saa[i] * sbb[i])
                    r = sab[i] / den
                    out[s, a + i0 + i] = np.nan if (cnt[i] < 2.0) | flat | (den == 0.0) else r
                continue
            buf[:7, :nb] = 0.0
            # pass 1: means of each side on its own observations (for Qlib's std mask) and of
            # the pairs observed on both sides (for the correlation)
            for j in range(n):
                x1 = va[i0 + j : i1 + j]
                x2 = vb[i0 + j : i1 + j]
                o1 = oa[i0 + j : i1 + j]
                o2 = ob[i0 + j : i1 + j]
                for i in range(nb):
                    both = o1[i] & o2[i]
                    cnt_a[i] += 1.0 if o1[i] else 0.0
                    cnt_b[i] += 1.0 if o2[i] else 0.0
                    cnt[i] += 1.0 if both else 0.0
                    sum_a[i] += x1[i]
                    sum_b[i] += x2[i]
                    sa[i] += x1[i] if both else 0.0
                    sb[i] += x2[i] if both else 0.0
            for i in range(nb):
                mean_a[i] = sum_a[i] / cnt_a[i] if cnt_a[i] > 0.0 else 0.0
                mean_b[i] = sum_b[i] / cnt_b[i] if cnt_b[i] > 0.0 else 0.0
                ma[i] = sa[i] / cnt[i] if cnt[i] > 0.0 else 0.0
                mb[i] = sb[i] / cnt[i] if cnt[i] > 0.0 else 0.0
            # the sums of pass 1 are not needed any more: sum_a holds sab from here on
            sab = sum_a
            buf[11:15, :nb] = 0.0
            sab[:] = 0.0
            # pass 2: squared deviations
            for j in range(n):
                x1 = va[i0 + j : i1 + j]
                x2 = vb[i0 + j : i1 + j]
                o1 = oa[i0 + j : i1 + j]
                o2 = ob[i0 + j : i1 + j]
                for i in range(nb):
                    both = o1[i] & o2[i]
                    e1 = x1[i] - mean_a[i]
                    e2 = x2[i] - mean_b[i]
                    ss_a[i] += e1 * e1 if o1[i] else 0.0
                    ss_b[i] += e2 * e2 if o2[i] else 0.0
                    d1 = x1[i] - ma[i]
                    d2 = x2[i] - mb[i]
                    saa[i] += d1 * d1 if both else 0.0
                    sbb[i] += d2 * d2 if both else 0.0
                    sab[i] += d1 * d2 if both else 0.0
            for i in range(nb):  # selects, no branches (SIMD), as in _ols
                # Qlib: NaN where either side's own rolling std (ddof=1) is np.isclose to 0
                flat = (math.sqrt(ss_a[i] / (cnt_a[i] - 1.0)) <= NEAR_ZERO_STD) | (
                    math.sqrt(ss_b[i] / (cnt_b[i] - 1.0)) <= NEAR_ZERO_STD
                )
                den = math.sqrt(saa[i] * sbb[i])
                r = sab[i] / den
                out[s, a + i0 + i] = np.nan if (cnt[i] < 2.0) | flat | (den == 0.0) else r


# -- gathering output rows -------------------------------------------------------------------------
#
# Output rows are sorted by (date, symbol), the panel by (symbol, date): a transpose. The output
# rows of day ``d`` are ``day_start[d] .. day_start[d + 1] - 1``, one per present cell of that
# day, in symbol order, so a running counter per day finds each cell's row: the kernel reads a
# one-byte presence mask instead of an 8-byte row index per cell. Reading the panel in blocks of
# days keeps both sides in cache.

_GATHER_DAYS = 32
#: Up to this many symbols, cells are written one by one instead of compacted and copied.
_GATHER_TILE_SYMBOLS = 64


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _gather(
    value: npt.NDArray[Any],
    present: npt.NDArray[np.uint8],
    rows: IntVector,
    d_lo: int,
    d_hi: int,
    runs: bool,
    out: npt.NDArray[np.float32],
) -> None:
    """The present cells of day ``d`` go to the output rows from ``rows[d]`` on, in symbol order
    (float64 -> float32 rounds to nearest, as numpy's astype). ``runs``: compact each day's cells
    without a branch and copy them out in one run (many symbols); else write them one by one (a
    tile's few symbols: too short a run for a copy)."""
    n_sym = value.shape[0]
    buf = np.empty(n_sym, dtype=np.float32)
    for b0 in range(d_lo, d_hi, _GATHER_DAYS):
        b1 = min(b0 + _GATHER_DAYS, d_hi)
        for d in range(b0, b1):
            lo = rows[d]
            if runs:
                r = 0
                for s in range(n_sym):
                    buf[r] = value[s, d]
                    r += present[s, d]
                out[lo : lo + r] = buf[:r]
            else:
                for s in range(n_sym):
                    if present[s, d]:
                        out[lo] = value[s, d]
                        lo += 1


# -- building the panels ---------------------------------------------------------------------------

#: How :func:`scatter_adjusted` adjusts a bar field by the factor.
ADJUST_MULTIPLY, ADJUST_DIVIDE, ADJUST_FACTOR = 0, 1, 2


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _scatter_adjusted(
    values: FloatPanel,
    factor: FloatPanel,
    mode: int,
    day: IntVector,
    sym: IntVector,
    remap: IntVector,
    c0: int,
    out: npt.NDArray[Any],
) -> None:
    """For every bar ``r`` whose cell ``(remap[sym[r]], day[r] - c0)`` is inside ``out`` (a
    ``(symbols, days)`` panel; ``remap`` -1 means no row): ``values[r] * factor[r]``
    (:data:`ADJUST_MULTIPLY`), ``values[r] / factor[r]`` (:data:`ADJUST_DIVIDE`) or the factor
    itself (:data:`ADJUST_FACTOR`), a NaN factor counting as 1.0. Computed in float64 and rounded
    once into ``out``'s dtype (to nearest, as numpy's ``astype``). Other cells are left as they
    are. One pass over the bars, no temporary arrays."""
    n_sym, n_days = out.shape
    for r in range(day.shape[0]):
        d = day[r] - c0
        s = remap[sym[r]]
        if d < 0 or d >= n_days or s < 0:
            continue
        f = factor[r]
        if math.isnan(f):
            f = 1.0
        if mode == ADJUST_MULTIPLY:
            out[s, d] = values[r] * f
        elif mode == ADJUST_DIVIDE:
            out[s, d] = values[r] / f
        else:
            out[s, d] = f


#: See :func:`_scatter_adjusted` (typed for mypy; numba compiles the function).
scatter_adjusted: Callable[
    [FloatPanel, FloatPanel, int, IntVector, IntVector, IntVector, int, npt.NDArray[Any]], None
] = _scatter_adjusted


@njit(**_JIT)  # type: ignore[untyped-decorator]
def _sorted_day_codes(ticks: IntVector, per_day: int, codes: IntVector, days: IntVector) -> int:
    n_days = 0
    previous = 0
    for r in range(ticks.shape[0]):
        d = ticks[r] // per_day  # floor: days before 1970 too
        if n_days == 0 or d != previous:
            if n_days > 0 and d < previous:
                return -1
            days[n_days] = d
            n_days += 1
            previous = d
        codes[r] = n_days - 1
    return n_days


def sorted_day_codes(ticks: IntVector, per_day: int, codes: IntVector, days: IntVector) -> int:
    """For time stamps ``ticks`` (``per_day`` to a day) in ascending order: ``codes[r]`` = the
    index of row ``r``'s day among the distinct days, written to ``days[:n]`` (days since
    1970-01-01); returns ``n``, or -1 (``codes`` and ``days`` partly written) when the stamps are
    not in ascending order of days."""
    return int(_sorted_day_codes(ticks, per_day, codes, days))


# -- running kernels on several threads ------------------------------------------------------------

_local = threading.local()

#: Below this much work (window cells) a kernel call is not split: thread hand-off would cost more.
_MIN_PARALLEL_WORK = 2_000_000


@contextmanager
def parallel(threads: int) -> Iterator[None]:
    """Within the block, kernel calls made by this thread split the symbols over ``threads``
    threads (a private pool, shut down on exit). Results are bit-identical for any count."""
    if threads <= 1:
        yield
        return
    previous = getattr(_local, "pool", None)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qonline-features") as pool:
        _local.pool = (pool, threads)
        try:
            yield
        finally:
            _local.pool = previous


def _run(fn: Callable[[int, int], None], n_rows: int, work: int) -> None:
    """``fn(lo, hi)`` for row chunks covering ``[0, n_rows)``: on the pool of :func:`parallel`
    when there is one and the call is big enough, else in one call on this thread."""
    active: tuple[ThreadPoolExecutor, int] | None = getattr(_local, "pool", None)
    if active is None or work < _MIN_PARALLEL_WORK or n_rows < 2:
        fn(0, n_rows)
        return
    pool, threads = active
    n_chunks = min(n_rows, 2 * threads)  # two chunks a thread evens out unequal series
    edges = np.linspace(0, n_rows, n_chunks + 1).astype(np.int64)
    futures = [pool.submit(fn, int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    for future in futures:
        future.result()


def _work(x: InPanel, n: int, t0: int) -> int:
    n_sym, n_t = x.shape
    return int(n_sym * max(n_t - max(t0, 0), 0) * n)


def _empty(x: npt.NDArray[Any]) -> FloatPanel:
    return np.empty(x.shape, dtype=np.float64)


# -- typed wrappers: mypy sees these signatures, numba compiles the functions above ------------


def rolling_moments_windows(
    x: InPanel, wants: Mapping[int, tuple[bool, bool, bool]], t0: int = 0
) -> dict[int, tuple[FloatPanel, FloatPanel, FloatPanel]]:
    """``{n: (sum, mean, std)}`` for several window lengths over one input, from one pass
    (windows share their additions, see :func:`_moments`). ``wants[n]`` says which of the three
    to compute for window ``n``; the others are returned with no columns. Each value is the same
    bits as the window computed alone."""
    ns = np.array(sorted(wants), dtype=np.int64)
    if len(ns) == 0 or ns[0] < 1:
        raise ValueError(f"window lengths must be >= 1, got {sorted(wants)}")
    slot = np.full((len(ns), 3), -1, dtype=np.int64)
    n_out = 0
    for w, n in enumerate(ns):
        for f, wanted in enumerate(wants[int(n)]):
            if wanted:
                slot[w, f] = n_out
                n_out += 1
    out = np.empty((n_out, *x.shape), dtype=np.float64)

    def run(lo: int, hi: int) -> None:
        _moments(x[lo:hi], ns, t0, slot, out[:, lo:hi])

    std_cells = sum(int(n) for w, n in enumerate(ns) if slot[w, 2] >= 0)
    _run(run, x.shape[0], _work(x, int(ns[-1]) + 2 * std_cells, t0))
    none = np.empty((x.shape[0], 0))
    return {
        int(n): cast(
            "tuple[FloatPanel, FloatPanel, FloatPanel]",
            tuple(out[slot[w, f]] if slot[w, f] >= 0 else none for f in range(3)),
        )
        for w, n in enumerate(ns)
    }


def rolling_moments(
    x: InPanel, n: int, t0: int = 0, *, want: tuple[bool, bool, bool] = (True, True, True)
) -> tuple[FloatPanel, FloatPanel, FloatPanel]:
    """``(sum, mean, std)`` of each window, as :func:`rolling_sum`, :func:`rolling_mean` and
    :func:`rolling_std`; those not in ``want`` are not computed (returned with no columns)."""
    return rolling_moments_windows(x, {n: want}, t0)[n]


def rolling_sum(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Sum of the observations in each window of ``n`` days (NaN if none)."""
    return rolling_moments(x, n, t0, want=(True, False, False))[0]


def rolling_mean(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Mean of the observations in each window of ``n`` days (NaN if none)."""
    return rolling_moments(x, n, t0, want=(False, True, False))[1]


def rolling_std(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Sample standard deviation (ddof=1) of each window; NaN below two observations."""
    return rolling_moments(x, n, t0, want=(False, False, True))[2]


def _extreme_of(x: InPanel, n: int, want_max: bool, t0: int) -> FloatPanel:
    out = _empty(x)

    def run(lo: int, hi: int) -> None:
        _extreme(x[lo:hi], n, want_max, t0, out[lo:hi])

    _run(run, x.shape[0], _work(x, n, t0))
    return out


def rolling_max(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Largest observation of each window."""
    return _extreme_of(x, n, True, t0)


def rolling_min(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Smallest observation of each window."""
    return _extreme_of(x, n, False, t0)


def _idx_extreme_of(x: InPanel, n: int, start: IntVector, want_max: bool, t0: int) -> FloatPanel:
    out = _empty(x)
    start = np.ascontiguousarray(start, dtype=np.int64)

    def run(lo: int, hi: int) -> None:
        _idx_extreme(x[lo:hi], n, start[lo:hi], want_max, t0, out[lo:hi])

    _run(run, x.shape[0], _work(x, n, t0))
    return out


def rolling_idxmax(x: InPanel, n: int, start: IntVector, t0: int = 0) -> FloatPanel:
    """1-based position of the window's maximum, counted from its oldest day; NaN days ignored.

    ``start[s]`` is the first day of series ``s``: before it the window is partial and its oldest
    day is ``start[s]``. Ties go to the oldest occurrence.
    """
    return _idx_extreme_of(x, n, start, True, t0)


def rolling_idxmin(x: InPanel, n: int, start: IntVector, t0: int = 0) -> FloatPanel:
    """1-based position of the window's minimum (see :func:`rolling_idxmax`)."""
    return _idx_extreme_of(x, n, start, False, t0)


def rolling_rank(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Average-tie percentile rank of today's value among the window's observations."""
    out = _empty(x)

    def run(lo: int, hi: int) -> None:
        _rank(x[lo:hi], n, t0, out[lo:hi])

    _run(run, x.shape[0], _work(x, n, t0))
    return out


def rolling_quantiles(x: InPanel, n: int, qs: Sequence[float], t0: int = 0) -> list[FloatPanel]:
    """Quantiles ``qs`` of each window's observations, linear interpolation (pandas' formula)."""
    q = np.asarray(qs, dtype=np.float64)
    out = np.empty((len(q), *x.shape), dtype=np.float64)

    def run(lo: int, hi: int) -> None:
        _quantiles(x[lo:hi], n, q, t0, out[:, lo:hi])

    _run(run, x.shape[0], _work(x, n, t0) * 8)
    return list(out)


def rolling_quantile(x: InPanel, n: int, q: float, t0: int = 0) -> FloatPanel:
    """Quantile ``q`` of each window's observations, linear interpolation (pandas' formula)."""
    return rolling_quantiles(x, n, [q], t0)[0]


def rolling_ols(x: InPanel, n: int, t0: int = 0, *, rsquare: bool = True) -> tuple[FloatPanel, ...]:
    """``(slope, rsquare, resi)`` of each window, as :func:`rolling_slope`,
    :func:`rolling_rsquare` and :func:`rolling_resi` (``rsquare`` all NaN with ``rsquare=False``)."""
    slope, rsq, resi = _empty(x), _empty(x), _empty(x)

    def run(lo: int, hi: int) -> None:
        _ols(x[lo:hi], n, t0, rsquare, slope[lo:hi], rsq[lo:hi], resi[lo:hi])

    _run(run, x.shape[0], _work(x, n, t0) * 3)
    return slope, rsq, resi


def rolling_slope(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """OLS slope of the observations on their window positions (today = ``n``)."""
    return rolling_ols(x, n, t0, rsquare=False)[0]


def rolling_rsquare(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """R² of the OLS fit on window positions; NaN where the window's std is near 0."""
    return rolling_ols(x, n, t0)[1]


def rolling_resi(x: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Today's value minus the OLS fit at today's position; NaN if today is NaN."""
    return rolling_ols(x, n, t0, rsquare=False)[2]


def rolling_corr(a: InPanel, b: InPanel, n: int, t0: int = 0) -> FloatPanel:
    """Pearson correlation over the days where both are observed; NaN where either std is near 0."""
    out = _empty(a)

    def run(lo: int, hi: int) -> None:
        _corr(a[lo:hi], b[lo:hi], n, t0, out[lo:hi])

    _run(run, a.shape[0], _work(a, n, t0) * 3)
    return out


def output_layout(
    flat: IntVector, shape: tuple[int, int]
) -> tuple[npt.NDArray[np.uint8], IntVector]:
    """The layout :func:`gather` needs for output rows sorted by (day, symbol) whose cells are
    ``flat`` (flat indices into a ``(symbols, days)`` panel of ``shape``): the presence mask of
    output cells and ``day_start[d]``, the first output row of day ``d`` (length ``days + 1``)."""
    n_sym, n_days = shape
    present = np.zeros(shape, dtype=np.uint8)
    present.reshape(-1)[flat] = 1
    day_start = np.zeros(n_days + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat % n_days, minlength=n_days), out=day_start[1:])
    return present, day_start


def tile_rows(present: npt.NDArray[np.uint8], day_start: IntVector, lo: int) -> IntVector:
    """``day_start`` for the symbols from ``lo`` on: the output row of the first present cell
    of symbol ``lo`` or later on each day (the rows of earlier symbols come first)."""
    before = present[:lo].sum(axis=0, dtype=np.int64)
    rows = day_start.copy()
    rows[: len(before)] += before
    return rows


def gather(
    value: npt.NDArray[Any],
    layout: tuple[npt.NDArray[np.uint8], IntVector],
    first_day: int,
    out: npt.NDArray[np.float32],
) -> None:
    """``out[r] = float32(value[s, d])`` for every output cell ``(s, d)`` with ``d >= first_day``,
    ``r`` its output row (see :func:`output_layout`); float64 is rounded as numpy's ``astype``."""
    present, day_start = layout
    if value.dtype == np.float32:
        values: npt.NDArray[Any] = np.ascontiguousarray(value)
    else:
        values = np.ascontiguousarray(value, dtype=np.float64)
    n_days = value.shape[1] - first_day

    runs = value.shape[0] > _GATHER_TILE_SYMBOLS

    def run(lo: int, hi: int) -> None:
        _gather(values, present, day_start, first_day + lo, first_day + hi, runs, out)

    _run(run, n_days, value.shape[0] * n_days * 4)


_ArrayOrFloat = npt.NDArray[Any] | float


def elementwise(ufunc: np.ufunc, *args: npt.NDArray[Any] | float) -> npt.NDArray[Any] | float:
    """``ufunc(*args)``, with the rows of same-shaped 2-D panels split over the threads of
    :func:`parallel` (same dtype resolution, same loop, same values per element; the caller's
    ``np.errstate`` applies in the worker threads too)."""
    arrays = [arg for arg in args if isinstance(arg, np.ndarray)]
    active = getattr(_local, "pool", None)
    if (
        active is None
        or not arrays
        or arrays[0].ndim != 2
        or any(array.shape != arrays[0].shape for array in arrays)
        or arrays[0].size * 4 < _MIN_PARALLEL_WORK
    ):
        return cast(_ArrayOrFloat, ufunc(*args))  # an alias: subscripting typing per call is slow
    n_rows = arrays[0].shape[0]
    probe = ufunc(*(arg[:1, :1] if isinstance(arg, np.ndarray) else arg for arg in args))
    out = np.empty(arrays[0].shape, dtype=probe.dtype)
    errors = np.geterr()

    def run(lo: int, hi: int) -> None:
        with np.errstate(**errors):
            ufunc(*(arg[lo:hi] if isinstance(arg, np.ndarray) else arg for arg in args), out=out[lo:hi])

    _run(run, n_rows, arrays[0].size * 4)
    return out
