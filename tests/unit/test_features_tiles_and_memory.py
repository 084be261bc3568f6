"""The feature engine's fast paths change no value: tiled evaluation, one computation per distinct
sub-expression, the sliding quantile window, and the background-populated output block."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant_core.features import FeatureSet, Field, Mean, compute_features, engine, get_feature_set, kernels
from quant_core.features.memory import POPULATE_MIN_BYTES, OutputBlock

ALPHA158 = get_feature_set("alpha158")
BAR_COLUMNS = ["date", "symbol", "open", "high", "low", "close", "volume", "factor"]


@pytest.fixture(scope="module")
def csi300_bars(csi300_path: Path) -> pd.DataFrame:
    """Real CSI 300 bars, 2020-2025: 300 symbols, 1,273 days, listings, suspensions (no vwap)."""
    return pd.read_parquet(csi300_path, columns=BAR_COLUMNS)


def _same_bits(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    np.testing.assert_array_equal(a["date"].to_numpy(), b["date"].to_numpy())
    np.testing.assert_array_equal(a["symbol"].to_numpy(dtype=str), b["symbol"].to_numpy(dtype=str))
    for col in a.columns[2:]:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        assert x.dtype == y.dtype == np.float32
        if x.tobytes() != y.tobytes():
            bad = np.flatnonzero(x.view(np.uint32) != y.view(np.uint32))
            raise AssertionError(f"{col}: {len(bad)} cells differ, first rows {bad[:5]}")


@pytest.mark.parametrize(
    ("threads", "tile_cells", "n_tiles"),
    [
        (1, 120_000, 3),  # tiles of 100 symbols: each day's cells are copied as one run
        (2, 20_000, 19),  # tiles of ~16 symbols on two threads: cells written one by one
    ],
)
def test_tiled_evaluation_equals_the_whole_panel_bit_for_bit(
    csi300_bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, threads: int, tile_cells: int, n_tiles: int
) -> None:
    monkeypatch.setattr(engine, "_TILE_CELLS", 10**12)  # one tile: the whole panel
    whole = compute_features(csi300_bars, ALPHA158, threads=threads)

    seen: list[int] = []
    evaluate_tiles = engine._evaluate_tiles

    def spy(panel: Any, tiles: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(tiles))
        return evaluate_tiles(panel, tiles, *args, **kwargs)

    monkeypatch.setattr(engine, "_TILE_CELLS", tile_cells)
    monkeypatch.setattr(engine, "_evaluate_tiles", spy)
    tiled = compute_features(csi300_bars, ALPHA158, threads=threads)
    assert seen == [n_tiles]
    assert len(tiled) == len(csi300_bars) == 368_626
    _same_bits(tiled, whole)


def test_small_panels_are_not_tiled(monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine._tiles((500, 61), 2) == [(0, 500)]  # a daily increment: split inside each kernel
    tiles = engine._tiles((500, 2544), 2)
    assert len(tiles) >= 4 and tiles[0][0] == 0 and tiles[-1][1] == 500
    assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:], strict=False))


def test_equal_sub_expressions_built_separately_are_computed_once(
    csi300_bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Mean($close, 5)`` in two features, as two distinct but equal objects: one kernel call."""
    calls: list[int] = []
    rolling_moments = kernels.rolling_moments

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return rolling_moments(*args, **kwargs)

    monkeypatch.setattr(kernels, "rolling_moments", counting)
    a, b = Mean(Field("close"), 5), Mean(Field("close"), 5)
    assert a is not b and a == b
    fs = FeatureSet.from_pairs("t", [("MA5", a / Field("close")), ("MA5X2", b * 2)])
    bars = csi300_bars[csi300_bars["symbol"].isin(["SH600000", "SH600036"])]
    out = compute_features(bars, fs)
    assert len(calls) == 1
    alone = compute_features(bars, FeatureSet.from_pairs("t", [("M", "Mean($close, 5)")]))
    assert np.array_equal(out["MA5X2"].to_numpy(), alone["M"].to_numpy() * 2, equal_nan=True)
    assert out["MA5X2"].notna().sum() == len(bars)


def _quantile_reference(x: np.ndarray, n: int, q: float, t0: int) -> np.ndarray:
    """Window by window: sort the observations, interpolate as pandas (the same float ops)."""
    out = np.full(x.shape, np.nan)
    for s in range(x.shape[0]):
        for t in range(t0, x.shape[1]):
            w = x[s, max(t - n + 1, 0) : t + 1].astype(np.float64)
            w = np.sort(w[~np.isnan(w)])
            if len(w) == 0:
                continue
            pos = q * (len(w) - 1)
            lo = int(pos)
            with np.errstate(invalid="ignore"):
                out[s, t] = w[lo] if pos == lo else w[lo] + (w[lo + 1] - w[lo]) * (pos - lo)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_sliding_quantile_window_equals_sorting_each_window(seed: int) -> None:
    """The kernel moves only the values between the leaving and the entering one; the result must
    be exactly that of sorting every window, through ties, NaN runs, infinities and float32."""
    rng = np.random.default_rng(seed)
    for _ in range(12):
        n_sym, n_t = int(rng.integers(1, 4)), int(rng.integers(1, 150))
        kind = rng.integers(0, 3)
        if kind == 0:
            x = np.cumsum(rng.normal(size=(n_sym, n_t)), axis=1) + 20
        elif kind == 1:
            x = rng.integers(0, 4, size=(n_sym, n_t)).astype(np.float64)  # many ties
        else:
            x = rng.choice([0.0, 1.0, -1.0, 2.5, np.inf, -np.inf], size=(n_sym, n_t))
        x[rng.random(x.shape) < rng.choice([0.0, 0.1, 0.6])] = np.nan
        if rng.random() < 0.5:
            a = int(rng.integers(0, n_t))
            x[0, a : a + int(rng.integers(1, 40))] = np.nan  # a suspension
        if rng.random() < 0.4:
            x = x.astype(np.float32)
        n = int(rng.choice([1, 2, 5, 10, 20, 60]))
        t0 = int(rng.integers(0, n_t))
        qs = [0.8, 0.2, 0.5]
        got = kernels.rolling_quantiles(x, n, qs, t0)
        for q, values in zip(qs, got, strict=True):
            want = _quantile_reference(x, n, q, t0)
            assert values[:, t0:].tobytes() == want[:, t0:].tobytes(), (n, q, t0, kind)


def test_large_output_block_is_populated_in_the_background() -> None:
    rows = POPULATE_MIN_BYTES // (4 * 8) + 1
    block = OutputBlock(rows, 8)
    out = block.array()  # usable at once, while the population runs
    out[0, 0] = 1.0
    assert block.wait() is out
    assert out.shape == (rows, 8) and out.dtype == np.float32 and out.flags.f_contiguous and out.flags.writeable
    kernel = tuple(int(p) for p in platform.release().split(".")[:2] if p.isdigit())
    if os.name == "posix" and platform.system() == "Linux" and kernel >= (5, 14):
        assert block.populated is True
    out[:, 3] = 7.0
    out[-1, :] = np.arange(8)
    assert float(out[:, 3][:-1].sum()) == 7.0 * (rows - 1) and out[-1, 7] == 7.0


def test_small_output_block_is_a_plain_array_and_a_wrong_block_is_refused(csi300_bars: pd.DataFrame) -> None:
    block = OutputBlock(10, 3)
    assert block.wait().shape == (10, 3) and block.array().flags.f_contiguous and block.populated is None
    fs = FeatureSet.from_pairs("t", [("X", "$close")])
    bars = csi300_bars[csi300_bars["symbol"] == "SH600000"]
    plan = engine.plan_panel(bars, fs.fields, lookback=fs.hist_ref)
    with pytest.raises(ValueError, match=r"output block of shape \(10, 3\)"):
        engine.evaluate_plan(plan, fs.names, fs.expressions, block=block)


def _moments_reference(x: np.ndarray, n: int, t0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window by window, newest value first: the sum, the mean and the two-pass std (ddof=1)."""
    sums, means, stds = (np.full(x.shape, np.nan) for _ in range(3))
    for s in range(x.shape[0]):
        for t in range(t0, x.shape[1]):
            w = x[s, max(t - n + 1, 0) : t + 1].astype(np.float64)[::-1]
            w = w[~np.isnan(w)]
            if len(w) == 0:
                continue
            total = 0.0
            for v in w:
                total += float(v)
            sums[s, t], means[s, t] = total, total / len(w)
            if len(w) < 2:
                continue
            ss = 0.0
            for v in w:
                d = float(v) - float(means[s, t])
                ss += d * d
            stds[s, t] = 0.0 if w.max() == w.min() else np.sqrt(ss / (len(w) - 1))
    return sums, means, stds


@pytest.mark.parametrize("seed", range(4))
def test_moments_of_several_windows_in_one_pass_equal_each_window_alone(seed: int) -> None:
    """Windows of several lengths share their additions (newest first): each window's sum, mean
    and std must be the bits of that window computed alone, and of the plain loop."""
    rng = np.random.default_rng(seed)
    for _ in range(6):
        n_sym, n_t = int(rng.integers(1, 4)), int(rng.integers(1, 130))
        x = np.cumsum(rng.normal(size=(n_sym, n_t)), axis=1) + 20
        x[rng.random(x.shape) < rng.choice([0.0, 0.1, 0.5])] = np.nan
        a = int(rng.integers(0, n_t))
        x[0, a : a + int(rng.integers(1, 30))] = 3.25  # a constant stretch: std exactly 0
        if rng.random() < 0.4:
            x = x.astype(np.float32)
        windows = sorted({int(w) for w in rng.choice([1, 2, 5, 10, 20, 30, 60], size=3)})
        wants = {w: (bool(rng.random() < 0.5), bool(rng.random() < 0.7), True) for w in windows}
        t0 = int(rng.integers(0, n_t))
        together = kernels.rolling_moments_windows(x, wants, t0)
        for w, want in wants.items():
            alone = kernels.rolling_moments(x, w, t0, want=want)
            reference = _moments_reference(x, w, t0)
            for k in range(3):
                if not want[k]:
                    assert together[w][k].shape == (n_sym, 0)
                    continue
                assert together[w][k].tobytes() == alone[k].tobytes(), (w, k)
                assert together[w][k][:, t0:].tobytes() == reference[k][:, t0:].tobytes(), (w, k, t0)
                assert np.isnan(together[w][k][:, :t0]).all()


def test_moments_of_one_input_share_one_kernel_call(
    csi300_bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mean, Sum and Std of one input over three window lengths: one kernel call, and each value
    the same as the feature computed on its own."""
    calls: list[dict[int, Any]] = []
    windows = kernels.rolling_moments_windows

    def counting(x: Any, wants: Any, t0: int = 0) -> Any:
        calls.append(dict(wants))
        return windows(x, wants, t0)

    monkeypatch.setattr(kernels, "rolling_moments_windows", counting)
    pairs = [("MA5", "Mean($close, 5)"), ("STD20", "Std($close, 20)"), ("SUM60", "Sum($close, 60)"),
             ("MA60", "Mean($close, 60)")]
    bars = csi300_bars[csi300_bars["symbol"].isin(["SH600000", "SH600036", "SZ000001"])]
    together = compute_features(bars, FeatureSet.from_pairs("t", pairs))
    assert calls == [{5: (False, True, False), 20: (False, False, True), 60: (True, True, False)}]
    for name, expr in pairs:
        alone = compute_features(bars, FeatureSet.from_pairs("t", [(name, expr)]))
        assert together[name].to_numpy().tobytes() == alone[name].to_numpy().tobytes(), name


@pytest.mark.parametrize("unit", ["s", "ns", "ms", "D"])
def test_day_codes_of_sorted_dates_equal_factorizing(unit: str) -> None:
    """The one-pass day codes for dates in order (bars from the lake) are those of sorting and
    factorizing; out of order, before 1970 or with times of day, they still are."""
    rng = np.random.default_rng(7)
    days = np.sort(rng.choice(np.arange(-800, 20_000), size=300, replace=False)).astype("datetime64[D]")
    rows = np.sort(rng.integers(0, len(days), size=5_000))
    stamps = days[rows].astype(f"datetime64[{unit}]")
    if unit in ("s", "ns", "ms"):  # a time of day is the same day
        stamps = stamps + rng.integers(0, 3600, size=len(stamps)).astype("timedelta64[s]").astype(f"timedelta64[{unit}]")
    for order in (np.arange(len(stamps)), rng.permutation(len(stamps))):
        dates = pd.Series(stamps[order])
        codes, calendar = engine._day_codes(dates, source="t")
        want_codes, want_calendar = pd.factorize(dates.to_numpy().astype("datetime64[D]"), sort=True)
        assert calendar.dtype == np.dtype("datetime64[D]")
        np.testing.assert_array_equal(calendar, np.asarray(want_calendar, dtype="datetime64[D]"))
        np.testing.assert_array_equal(codes, want_codes)


def test_day_codes_name_an_empty_date_by_row() -> None:
    dates = pd.Series(np.array(["2024-01-02", "2024-01-03", "NaT"], dtype="datetime64[s]"))
    with pytest.raises(engine.FeatureInputError, match="column 'date' is empty at row 2"):
        engine._day_codes(dates, source="t")
