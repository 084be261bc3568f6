"""The feature engine: expression tree, parser, operator semantics, output contract, incremental ==
full, point in time, and bad input."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_core.features import (
    Abs,
    Const,
    Corr,
    Expr,
    FeatureInputError,
    FeatureSet,
    FeatureSetError,
    Field,
    Greater,
    IdxMax,
    IdxMin,
    Log,
    Mean,
    Quantile,
    Rank,
    Ref,
    Resi,
    Rsquare,
    Slope,
    Std,
    Sum,
    compute_features,
    get_feature_set,
    parse_expression,
)
from quant_core.features.alpha158 import WINDOWS

ALPHA158 = get_feature_set("alpha158")
close, high, low, open_, volume = (Field(f) for f in ("close", "high", "low", "open", "volume"))

# golden-data symbols for the incremental / point-in-time tests: SZ000792 is suspended from
# 2020-04-30 to 2021-08-09, SH601728 / SH600905 / SH688082 list late, SH600018 and SH600585 trade
# every day.
SYMBOLS = ("SH600018", "SH600585", "SZ000792", "SH601728", "SH600905", "SH688082")


# -- helpers -----------------------------------------------------------------------------------------


def make_bars(closes: dict[str, Sequence[float | None]], start: str = "2024-01-01") -> pd.DataFrame:
    """Bars on consecutive business days; ``None`` = no bar that day (suspension / not listed)."""
    days = pd.bdate_range(start, periods=max(len(v) for v in closes.values()))
    rows = []
    for sym, values in closes.items():
        for d, c in zip(days, values, strict=False):
            if c is None:
                continue
            rows.append(
                {
                    "date": d.date(),
                    "symbol": sym,
                    "open": c,
                    "high": c * 1.01,
                    "low": c * 0.99,
                    "close": c,
                    "volume": 1000.0 + 10 * c,
                    "vwap": c,
                    "factor": 1.0,
                }
            )
    return pd.DataFrame(rows)


def one(expr: Expr | str, bars: pd.DataFrame, symbol: str = "A", **kw: object) -> npt.NDArray[np.float64]:
    """One feature's values for one symbol, in date order (float64 precision)."""
    fs = FeatureSet.from_pairs("t", [("X", expr)])
    out = compute_features(bars, fs, precision="float64", **kw)  # type: ignore[arg-type]
    return out.loc[out["symbol"] == symbol, "X"].to_numpy(np.float64)


def assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows, same columns, every feature equal bit for bit (NaN equal to NaN)."""
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    np.testing.assert_array_equal(a["date"].to_numpy(), b["date"].to_numpy())
    np.testing.assert_array_equal(a["symbol"].to_numpy(dtype=str), b["symbol"].to_numpy(dtype=str))
    for col in a.columns[2:]:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        assert x.dtype == y.dtype == np.float32
        assert np.array_equal(x, y, equal_nan=True), (
            f"{col} differs at rows {np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))))[:5]}"
        )


@pytest.fixture(scope="module")
def golden_bars(golden_dir: Path) -> pd.DataFrame:
    b = pd.read_parquet(golden_dir / "csi300_2020_2021_bars.parquet")
    return b[b["symbol"].isin(SYMBOLS)].reset_index(drop=True)


@pytest.fixture(scope="module")
def calendar(golden_bars: pd.DataFrame) -> list[date]:
    return sorted(golden_bars["date"].unique())


@pytest.fixture(scope="module")
def first_dates(golden_bars: pd.DataFrame) -> dict[str, date]:
    return {str(k): v for k, v in golden_bars.groupby("symbol")["date"].min().items()}


@pytest.fixture(scope="module")
def full(golden_bars: pd.DataFrame) -> pd.DataFrame:
    return compute_features(golden_bars, ALPHA158)


def incremental(
    bars: pd.DataFrame, cal: list[date], first_dates: dict[str, date], lo: int, hi: int
) -> pd.DataFrame:
    """Features for calendar[lo..hi] from a buffer of hist_ref days before calendar[lo]."""
    buf_start = cal[max(lo - ALPHA158.hist_ref, 0)]
    buf = bars[(bars["date"] >= buf_start) & (bars["date"] <= cal[hi])]
    return compute_features(buf, ALPHA158, start=cal[lo], end=cal[hi], first_dates=first_dates)


def rows_between(frame: pd.DataFrame, lo: date, hi: date) -> pd.DataFrame:
    d = frame["date"].to_numpy().astype("datetime64[D]")
    keep = (d >= np.datetime64(lo, "D")) & (d <= np.datetime64(hi, "D"))
    return frame.loc[keep].reset_index(drop=True)


# -- expression tree -------------------------------------------------------------------------------


def test_lookback_and_lookahead_are_derived() -> None:
    assert close.left_lookback == 0 and close.right_lookahead == 0
    assert Mean(close, 5).left_lookback == 4
    assert Ref(close, 3).left_lookback == 3
    assert Mean(Ref(close, 1), 60).left_lookback == 60  # nested: 1 + 59
    assert Corr(close / Ref(close, 1), Log(volume / Ref(volume, 1) + 1), 60).left_lookback == 60
    assert Std(Mean(close, 5), 10).left_lookback == 13
    assert (Ref(close, -2) / Ref(close, -1) - 1).right_lookahead == 2
    assert (Ref(close, -2) / Ref(close, -1) - 1).left_lookback == 0
    assert Ref(Ref(close, -3), 1).right_lookahead == 3 and Ref(Ref(close, -3), 1).left_lookback == 1


def test_alpha158_shape_names_and_hist_ref() -> None:
    assert len(ALPHA158) == 158 and len(set(ALPHA158.names)) == 158
    kbar = ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"]
    price = ["OPEN0", "HIGH0", "LOW0", "VWAP0"]
    ops = [
        "ROC",
        "MA",
        "STD",
        "BETA",
        "RSQR",
        "RESI",
        "MAX",
        "MIN",
        "QTLU",
        "QTLD",
        "RANK",
        "RSV",
        "IMAX",
        "IMIN",
        "IMXD",
        "CORR",
        "CORD",
        "CNTP",
        "CNTN",
        "CNTD",
        "SUMP",
        "SUMN",
        "SUMD",
        "VMA",
        "VSTD",
        "WVMA",
        "VSUMP",
        "VSUMN",
        "VSUMD",
    ]
    assert list(ALPHA158.names) == kbar + price + [f"{op}{w}" for op in ops for w in WINDOWS]
    assert ALPHA158.hist_ref == 60
    assert ALPHA158.fields == frozenset({"open", "high", "low", "close", "volume", "vwap"})
    by_name = dict(zip(ALPHA158.names, ALPHA158.expressions, strict=True))
    assert by_name["ROC60"].left_lookback == 60
    assert by_name["MA60"].left_lookback == 59
    assert by_name["CORD60"].left_lookback == 60
    assert get_feature_set("alpha158") is ALPHA158  # built once


def test_qlib_strings_parse_to_the_builder_expressions() -> None:
    by_name = dict(zip(ALPHA158.names, ALPHA158.expressions, strict=True))
    qlib = {
        "KSFT2": "(2*$close-$high-$low)/($high-$low+1e-12)",
        "KUP": "($high-Greater($open, $close))/$open",
        "QTLU20": "Quantile($close, 20, 0.8)/$close",
        "RSV10": "($close-Min($low, 10))/(Max($high, 10)-Min($low, 10)+1e-12)",
        "IMXD5": "(IdxMax($high, 5)-IdxMin($low, 5))/5",
        "CORD30": "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 30)",
        "CNTD60": "Mean($close>Ref($close, 1), 60)-Mean($close<Ref($close, 1), 60)",
        "SUMN5": "Sum(Greater(Ref($close, 1)-$close, 0), 5)/(Sum(Abs($close-Ref($close, 1)), 5)+1e-12)",
        "WVMA20": "Std(Abs($close/Ref($close, 1)-1)*$volume, 20)/(Mean(Abs($close/Ref($close, 1)-1)*$volume, 20)+1e-12)",
        "VSUMD10": "(Sum(Greater($volume-Ref($volume, 1), 0), 10)-Sum(Greater(Ref($volume, 1)-$volume, 0), 10))/(Sum(Abs($volume-Ref($volume, 1)), 10)+1e-12)",
    }
    for name, text in qlib.items():
        assert parse_expression(text) == by_name[name], name


def test_every_expression_round_trips_through_its_string() -> None:
    for expr in ALPHA158.expressions:
        assert parse_expression(str(expr)) == expr


def test_parser_precedence_and_literals() -> None:
    assert parse_expression("$close - $open * 2") == close - open_ * 2
    assert parse_expression("($close - $open) * 2") == (close - open_) * 2
    assert parse_expression("$close > Ref($close, 1) * 2") == (close > Ref(close, 1) * 2)
    assert parse_expression("Ref($close, -2)") == Ref(close, -2)
    assert parse_expression("-$close") == -close
    assert parse_expression("Ref($close,-2)/Ref($close,-1) - 1") == Ref(close, -2) / Ref(close, -1) - 1
    assert parse_expression("1e-12") == Const(1e-12)
    assert parse_expression("Quantile($close, 5, .5)") == Quantile(close, 5, 0.5)


def test_builder_python_operators() -> None:
    e = abs(close - open_) / (high - low + 1e-12)
    assert isinstance(e, Expr) and e.fields == frozenset({"close", "open", "high", "low"})
    assert (2 * close) == Const(2) * close
    assert hash(Mean(close, 5)) == hash(Mean(Field("close"), 5)) and Mean(close, 5) != Mean(close, 6)


# -- validation ------------------------------------------------------------------------------------


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(FeatureSetError, match="unknown field 'adjclose'.*close"):
        Field("adjclose")
    with pytest.raises(FeatureSetError, match=r"feature 'X'.*unknown field '\$adjclose'"):
        FeatureSet.from_pairs("s", [("X", "Mean($adjclose, 5)")])


def test_unknown_operator_is_rejected() -> None:
    with pytest.raises(FeatureSetError, match=r"feature 'X'.*unknown operator 'Ema'.*Mean"):
        FeatureSet.from_pairs("s", [("X", "Ema($close, 5)")])
    with pytest.raises(FeatureSetError, match="unknown operator '>='"):
        parse_expression("$close >= $open")
    with pytest.raises(FeatureSetError, match=r"unknown operator '\*\*'"):
        parse_expression("$close ** 2")


@pytest.mark.parametrize("window", [0, -1, -60])
def test_window_below_one_is_rejected(window: int) -> None:
    with pytest.raises(FeatureSetError, match=f"Mean: the window must be >= 1, got {window}"):
        Mean(close, window)
    with pytest.raises(FeatureSetError, match=f"feature 'MA_BAD'.*window must be >= 1, got {window}"):
        FeatureSet.from_pairs("s", [("MA_BAD", f"Mean($close, {window})/$close")])
    with pytest.raises(
        FeatureSetError, match=f"feature 'C_BAD'.*Corr: the window must be >= 1, got {window}"
    ):
        FeatureSet.from_pairs("s", [("C_BAD", f"Corr($close, $volume, {window})")])


def test_other_invalid_expressions() -> None:
    with pytest.raises(FeatureSetError, match="must be an integer"):
        Mean(close, 2.5)  # type: ignore[arg-type]
    with pytest.raises(FeatureSetError, match="integer literal"):
        parse_expression("Mean($close, 2.5)")
    with pytest.raises(FeatureSetError, match="q must be a number in"):
        Quantile(close, 5, 1.5)
    with pytest.raises(FeatureSetError, match="takes 2 argument"):
        parse_expression("Mean($close)")
    with pytest.raises(FeatureSetError, match="cannot parse"):
        parse_expression("Mean($close, 5")
    with pytest.raises(FeatureSetError, match="cannot parse"):
        parse_expression("$close $open")
    with pytest.raises(FeatureSetError, match="non-empty"):
        parse_expression("  ")


def test_feature_set_validation() -> None:
    with pytest.raises(FeatureSetError, match="looks 1 trading day"):
        FeatureSet.from_pairs("s", [("LEAK", Ref(close, -1) / close)])
    with pytest.raises(FeatureSetError, match="duplicate feature name 'A'"):
        FeatureSet.from_pairs("s", [("A", close), ("A", open_)])
    with pytest.raises(FeatureSetError, match="no features"):
        FeatureSet.from_pairs("s", [])
    with pytest.raises(FeatureSetError, match="invalid feature name 'date'"):
        FeatureSet.from_pairs("s", [("date", close)])
    with pytest.raises(FeatureSetError, match="unknown feature set 'alpha360'; known feature sets: alpha158"):
        get_feature_set("alpha360")


def test_custom_feature_set() -> None:
    fs = FeatureSet.from_mapping(
        "mine", {"MA3": "Mean($close, 3)/$close", "VOL": Std(volume, 4), "HL": high - low}
    )
    assert fs.names == ("MA3", "VOL", "HL") and fs.hist_ref == 3
    assert fs.fields == frozenset({"close", "volume", "high", "low"})
    assert fs.expression_strings()["MA3"] == "(Mean($close, 3)/$close)"
    bars = make_bars({"A": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = compute_features(bars, fs, precision="float64")
    np.testing.assert_allclose(out["MA3"], np.array([1.0, 1.5, 2.0, 3.0, 4.0]) / [1, 2, 3, 4, 5], rtol=1e-6)


# -- operator semantics (QLIB_SEMANTICS §8) --------------------------------------------------------


def test_partial_windows_and_std_ddof() -> None:
    bars = make_bars({"A": [1.0, 2.0, 4.0, 8.0]})
    np.testing.assert_allclose(one(Mean(close, 3), bars), [1, 1.5, 7 / 3, 14 / 3], rtol=1e-7)
    np.testing.assert_allclose(one(Sum(close, 3), bars), [1, 3, 7, 14], rtol=1e-7)
    std = one(Std(close, 3), bars)
    assert np.isnan(std[0])  # one observation: ddof=1 gives NaN
    np.testing.assert_allclose(
        std[1:], [np.std([1, 2], ddof=1), np.std([1, 2, 4], ddof=1), np.std([2, 4, 8], ddof=1)]
    )


def test_rank_averages_ties() -> None:
    bars = make_bars({"A": [3.0, 2.0, 2.0, None, 5.0]})
    r = one(Rank(close, 3), bars)
    np.testing.assert_allclose(r[:3], [1.0, 0.5, 0.5])  # [3,2]: 1 of 2; [3,2,2] -> 0.5 (QLIB_SEMANTICS)
    assert r[3] == 1.0  # window [2, 2(no bar), 5]: NaN skipped, 5 is the top of 2 values


def test_quantile_interpolates_linearly() -> None:
    bars = make_bars({"A": [1.0, 2.0, 3.0, 4.0, 10.0]})
    q = one(Quantile(close, 5, 0.8), bars)
    expected = [pd.Series([1.0, 2, 3, 4, 10][: i + 1]).quantile(0.8) for i in range(5)]
    np.testing.assert_allclose(q, expected)


def test_idxmax_counts_from_the_oldest_day_and_ignores_nan() -> None:
    # Qlib: window [2, 2, NaN] gives IdxMax 3 (the NaN "wins"); fixed: 1 (first of the tied maxima)
    bars = make_bars({"A": [2.0, 2.0, None, 1.0], "B": [1.0, 1.0, 1.0, 1.0]})
    out = compute_features(
        bars,
        FeatureSet.from_pairs("t", [("IMAX", IdxMax(close, 3)), ("IMIN", IdxMin(close, 3))]),
        precision="float64",
    )
    a = out[out["symbol"] == "A"]
    # rows: day0 (partial window of 1), day1 (partial, 2), day3 (window days 1..3: [2, NaN, 1])
    np.testing.assert_array_equal(a["IMAX"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(a["IMIN"], [1.0, 1.0, 3.0])


def test_idxmax_partial_window_counts_from_the_series_start() -> None:
    # B lists on day 2: its window on day 3 is [day2, day3] and the max (today) is at position 2
    bars = make_bars({"A": [1.0] * 4, "B": [None, None, 1.0, 2.0]})
    assert list(one(IdxMax(close, 5), bars, "B")) == [1.0, 2.0]


def test_comparisons_count_suspended_days_as_not_up() -> None:
    # A is suspended on day 2: C > Ref(C,1) is False on days 2 (no bar) and 3 (no yesterday)
    bars = make_bars({"A": [1.0, 2.0, None, 3.0, 4.0], "B": [1.0] * 5})
    cntp = one(Mean(close > Ref(close, 1), 5), bars)
    np.testing.assert_allclose(cntp, [0.0, 0.5, 1 / 4, 2 / 5])


def test_ols_keeps_window_positions_of_nan_days() -> None:
    # y = [1, NaN, 3] at positions 1, 3: slope 1 (not 2, which compressing the NaN would give)
    bars = make_bars({"A": [1.0, None, 3.0], "B": [1.0, 1.0, 1.0]})
    assert one(Slope(close, 3), bars)[-1] == pytest.approx(1.0)
    assert one(Resi(close, 3), bars)[-1] == pytest.approx(0.0, abs=1e-12)
    assert one(Rsquare(close, 3), bars)[-1] == pytest.approx(1.0)
    assert np.isnan(one(Slope(close, 3), bars)[0])  # one observation: 0/0


def test_rsquare_and_corr_are_nan_on_near_constant_windows() -> None:
    bars = make_bars({"A": [5.0, 5.0, 5.0, 5.00001, 6.0]})
    r = one(Rsquare(close, 3), bars)
    assert np.isnan(r[:4]).all() and not np.isnan(r[4])
    c = one(Corr(close, volume, 3), bars)
    assert np.isnan(c[:4]).all() and c[4] == pytest.approx(1.0)


def test_greater_propagates_nan_and_log_abs() -> None:
    bars = make_bars({"A": [2.0, 1.0, 3.0]})
    np.testing.assert_allclose(one(Greater(close - Ref(close, 1), Const(0)), bars), [np.nan, 0.0, 2.0])
    np.testing.assert_allclose(one(Abs(close - Ref(close, 1)), bars), [np.nan, 1.0, 2.0])
    np.testing.assert_allclose(one(Log(close), bars), np.log([2.0, 1.0, 3.0]))


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(0.5, 100.0)), min_size=8, max_size=30),
    window=st.sampled_from([2, 3, 5, 10]),
)
def test_rolling_reductions_agree_with_pandas(values: list[float | None], window: int) -> None:
    """Independent check: pandas rolling(min_periods=1) on the symbol's span, NaN on suspensions."""
    values[0] = values[0] if values[0] is not None else 1.0
    bars = make_bars({"A": values, "B": [1.0] * len(values)})  # B keeps every day in the calendar
    y = pd.Series([np.nan if v is None else v for v in values])
    y = y.iloc[: max(i for i, v in enumerate(values) if v is not None) + 1]
    has = y.notna().to_numpy()
    r = y.rolling(window, min_periods=1)
    cases: list[tuple[Expr, pd.Series]] = [
        (Mean(close, window), r.mean()),
        (Sum(close, window), r.sum()),
        (Std(close, window), r.std()),
        (Rank(close, window), r.rank(pct=True)),
        (Quantile(close, window, 0.2), r.quantile(0.2)),
        (Corr(close, close * 0.7 + 1, window), r.corr(y * 0.7 + 1)),
    ]
    for expr, expected in cases:
        got = one(expr, bars)
        exp = expected.to_numpy()[has]
        if isinstance(expr, Corr):  # Qlib's near-constant mask; pandas gives ±1 or NaN there
            exp = np.where(np.isnan(got), np.nan, exp)
        np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-9, err_msg=str(expr))  # float32 out


# -- output contract -------------------------------------------------------------------------------


def test_output_rows_columns_and_types() -> None:
    bars = make_bars({"B": [1.0, 2.0, None, 4.0], "A": [None, 1.0, 1.5, 2.0]})
    out = compute_features(bars.sample(frac=1.0, random_state=1), ALPHA158)
    assert list(out.columns) == ["date", "symbol", *ALPHA158.names]
    assert len(out) == len(bars)
    assert out["date"].dtype == "datetime64[s]"
    assert all(out[n].dtype == np.float32 for n in ALPHA158.names)
    keys = list(zip(out["date"], out["symbol"], strict=True))
    assert keys == sorted(keys)
    # python dates and datetime64 give the same result
    bars64 = bars.assign(date=pd.to_datetime(bars["date"]))
    assert_identical(out, compute_features(bars64, ALPHA158))


def test_start_and_end_are_inclusive() -> None:
    bars = make_bars({"A": [float(i) for i in range(1, 11)]})
    days = sorted(bars["date"].unique())
    out = compute_features(bars, ALPHA158, start=days[3], end=days[6])
    assert list(out["date"].dt.date) == days[3:7]
    assert_identical(out, rows_between(compute_features(bars, ALPHA158), days[3], days[6]))
    # bounds that are not trading days (a weekend) select the trading days inside them
    out2 = compute_features(bars, ALPHA158, start="2024-01-06", end=pd.Timestamp("2024-01-10"))
    assert list(out2["date"].dt.date) == [date(2024, 1, 8), date(2024, 1, 9), date(2024, 1, 10)]


def test_adjusted_fields_use_the_factor() -> None:
    """Raw prices with a factor give the same features as pre-adjusted prices with factor 1."""
    rng = np.random.default_rng(3)
    raw = make_bars({"A": list(10 + rng.random(30)), "B": list(20 + rng.random(30))})
    raw["factor"] = np.where(raw["date"] >= raw["date"].iloc[15], 2.0, 1.0)
    adj = raw.copy()
    for col in ("open", "high", "low", "close", "vwap"):
        adj[col] = raw[col] * raw["factor"]
    adj["volume"] = raw["volume"] / raw["factor"]
    adj["factor"] = 1.0
    assert_identical(compute_features(raw, ALPHA158), compute_features(adj, ALPHA158))


# -- bad input -------------------------------------------------------------------------------------


def test_empty_bars_are_an_error() -> None:
    with pytest.raises(FeatureInputError, match="bars are empty"):
        compute_features(make_bars({"A": [1.0]}).iloc[:0], ALPHA158)


def test_no_rows_in_range_is_an_error() -> None:
    bars = make_bars({"A": [1.0, 2.0]})
    with pytest.raises(
        FeatureInputError, match="no bars between 2030-01-01 and the last date.*cover 2024-01-01"
    ):
        compute_features(bars, ALPHA158, start="2030-01-01")


def test_other_bad_input() -> None:
    bars = make_bars({"A": [1.0, 2.0, 3.0]})
    with pytest.raises(FeatureInputError, match="duplicate bar for A on 2024-01-01"):
        compute_features(pd.concat([bars, bars.iloc[:1]]), ALPHA158)
    with pytest.raises(FeatureInputError, match="lack column 'high'"):
        compute_features(bars.drop(columns="high"), ALPHA158)
    with pytest.raises(FeatureInputError, match="column 'close' must be numeric"):
        compute_features(bars.assign(close="x"), ALPHA158)
    with pytest.raises(
        FeatureInputError, match="first_dates says A starts on 2024-01-02, but it has a bar on 2024-01-01"
    ):
        compute_features(bars, ALPHA158, first_dates={"A": date(2024, 1, 2)})
    with pytest.raises(FeatureInputError, match="unknown precision"):
        compute_features(bars, ALPHA158, precision="float16")  # type: ignore[arg-type]


def test_missing_vwap_and_factor_columns_follow_the_bar_schema() -> None:
    bars = make_bars({"A": [1.0, 2.0, 3.0]})
    out = compute_features(bars.drop(columns=["vwap", "factor"]), ALPHA158)
    assert out["VWAP0"].isna().all()  # Qlib without vwap data
    assert_identical(out.drop(columns="VWAP0"), compute_features(bars, ALPHA158).drop(columns="VWAP0"))


# -- incremental == full ---------------------------------------------------------------------------


def test_day_by_day_equals_full(
    golden_bars: pd.DataFrame, calendar: list[date], first_dates: dict[str, date], full: pd.DataFrame
) -> None:
    """Across SZ000792's return from a 15-month suspension and the listings of SH600905,
    SH601728 and SH688082."""
    lo, hi = calendar.index(date(2021, 6, 1)), calendar.index(date(2021, 12, 31))
    days = [incremental(golden_bars, calendar, first_dates, i, i) for i in range(lo, hi + 1)]
    assert_identical(pd.concat(days, ignore_index=True), rows_between(full, calendar[lo], calendar[hi]))


def test_first_dates_matter_after_a_long_suspension(
    golden_bars: pd.DataFrame, calendar: list[date], first_dates: dict[str, date], full: pd.DataFrame
) -> None:
    """Without first_dates SZ000792's buffer would start at its return: a different series."""
    i = calendar.index(date(2021, 8, 10))  # SZ000792's first bar after the suspension
    buf = golden_bars[(golden_bars["date"] >= calendar[i - 60]) & (golden_bars["date"] <= calendar[i])]
    without = compute_features(buf, ALPHA158, start=calendar[i], end=calendar[i])
    ref = rows_between(full, calendar[i], calendar[i])
    sym = (without["symbol"] == "SZ000792").to_numpy()
    assert not np.array_equal(
        without.loc[sym, "IMAX60"].to_numpy(), ref.loc[sym, "IMAX60"].to_numpy(), equal_nan=True
    )
    assert_identical(incremental(golden_bars, calendar, first_dates, i, i), ref)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_chunkings_equal_full(
    data: st.DataObject,
    golden_bars: pd.DataFrame,
    calendar: list[date],
    first_dates: dict[str, date],
    full: pd.DataFrame,
) -> None:
    lo = data.draw(st.integers(0, len(calendar) - 40), label="lo")
    hi = data.draw(st.integers(lo, min(lo + 120, len(calendar) - 1)), label="hi")
    cuts = sorted(data.draw(st.sets(st.integers(lo + 1, hi), max_size=4), label="cuts")) if hi > lo else []
    bounds = [lo, *cuts, hi + 1]
    chunks = [
        incremental(golden_bars, calendar, first_dates, a, b - 1)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    assert_identical(pd.concat(chunks, ignore_index=True), rows_between(full, calendar[lo], calendar[hi]))


def test_a_longer_buffer_changes_nothing(
    golden_bars: pd.DataFrame, calendar: list[date], first_dates: dict[str, date], full: pd.DataFrame
) -> None:
    i = calendar.index(date(2021, 11, 25))  # a week after SH688082 lists
    buf = golden_bars[golden_bars["date"] >= calendar[i - 100]]
    out = compute_features(buf, ALPHA158, start=calendar[i], first_dates=first_dates)
    assert_identical(out, rows_between(full, calendar[i], calendar[-1]))


# -- point in time ---------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    t=st.integers(0, 484),
    symbols=st.sets(st.sampled_from(SYMBOLS), min_size=1),
    change=st.sampled_from(["delete", "perturb", "drop_dates", "add_symbol"]),
    seed=st.integers(0, 2**16),
)
def test_bars_after_t_change_no_feature_up_to_t(
    t: int,
    symbols: set[str],
    change: str,
    seed: int,
    golden_bars: pd.DataFrame,
    calendar: list[date],
    full: pd.DataFrame,
) -> None:
    cut = calendar[t]
    after = (golden_bars["date"] > cut) & golden_bars["symbol"].isin(symbols)
    rng = np.random.default_rng(seed)
    if change == "delete":
        changed = golden_bars[~(after & (rng.random(len(golden_bars)) < 0.7))]
    elif change == "perturb":
        changed = golden_bars.copy()
        for col in ("open", "high", "low", "close", "volume", "vwap", "factor"):
            changed.loc[after, col] = changed.loc[after, col] * rng.uniform(0.5, 2.0, after.sum())
    elif change == "drop_dates":
        changed = golden_bars[golden_bars["date"] <= cut]
    else:  # a new symbol listing after t
        extra = golden_bars[(golden_bars["symbol"] == "SH600018") & (golden_bars["date"] > cut)].assign(
            symbol="ZZ000001"
        )
        changed = pd.concat([golden_bars, extra], ignore_index=True)
    out = compute_features(changed.reset_index(drop=True), ALPHA158)
    assert_identical(rows_between(out, calendar[0], cut), rows_between(full, calendar[0], cut))


def test_symbols_are_strings_and_a_missing_one_is_named_by_row() -> None:
    bars = make_bars({"B": [1.0, 2.0], "A": [3.0, 4.0]})
    out = compute_features(bars, FeatureSet.from_pairs("t", [("X", "$close")]))
    assert list(out["symbol"]) == ["A", "B", "A", "B"]
    bad = bars.copy()
    bad.loc[2, "symbol"] = None
    with pytest.raises(FeatureInputError, match="column 'symbol' is empty at row 2"):
        compute_features(bad, FeatureSet.from_pairs("t", [("X", "$close")]))
