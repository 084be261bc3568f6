"""The synthetic market: determinism, exact slicing, realistic structure and the planted signal."""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from quant_core.data.bars import BAR_COLUMNS, invalid_symbols
from quant_core.data.sources import Source, SourceError, parse_source
from quant_core.data.sources.synthetic import SyntheticParams, SyntheticSource, trading_days

logger = logging.getLogger(__name__)

SPEC = "synthetic:symbols=200,start=2018-01-01,end=2020-12-31,seed=7"
SPAN = (date(2018, 1, 1), date(2020, 12, 31))


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return parse_source(SPEC).extract(*SPAN)


def wide(df: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """(date x symbol) matrix on the market's calendar; suspended days are NaN (Qlib's layout)."""
    return (
        pd.DataFrame({"date": df["date"], "symbol": df["symbol"], "v": values.to_numpy()})
        .pivot(index="date", columns="symbol", values="v")
        .sort_index()
    )


def daily_rank_ic(x: pd.DataFrame, y: pd.DataFrame, min_count: int = 30) -> pd.Series:
    """Spearman correlation of x and y across symbols, one value per date."""
    valid = x.notna() & y.notna()
    xr = x.where(valid).rank(axis=1)
    yr = y.where(valid).rank(axis=1)
    xc = xr.sub(xr.mean(axis=1), axis=0)
    yc = yr.sub(yr.mean(axis=1), axis=0)
    ic = (xc * yc).sum(axis=1) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    return ic[valid.sum(axis=1) >= min_count]


def label_of(adj_close: pd.DataFrame) -> pd.DataFrame:
    """Qlib's LABEL0 = Ref($close, -2) / Ref($close, -1) - 1 on the calendar."""
    return adj_close.shift(-2) / adj_close.shift(-1) - 1


# --- spec --------------------------------------------------------------------------------------


def test_defaults_and_canonical_spec() -> None:
    for spec in ("synthetic", "synthetic:", " synthetic : "):
        src = parse_source(spec)
        assert isinstance(src, SyntheticSource)
        assert isinstance(src, Source)
        assert src.params == SyntheticParams(50, date(2018, 1, 1), date(2021, 12, 31), 7)
    src = parse_source("synthetic:seed=3, symbols = 5")
    assert isinstance(src, SyntheticSource)
    assert src.params == SyntheticParams(5, date(2018, 1, 1), date(2021, 12, 31), 3)
    assert src.params.spec() == "synthetic:symbols=5,start=2018-01-01,end=2021-12-31,seed=3"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("symbol=5", "'symbol'"),
        ("symbols=five", "symbols='five'"),
        ("symbols=0", "symbols=0"),
        ("seed=-1", "seed=-1"),
        ("start=2020-13-01", "start='2020-13-01'"),
        ("end=yesterday", "end='yesterday'"),
        ("start=2021-01-01,end=2020-01-01", "after end"),
        ("seed=1,seed=2", "'seed' given twice"),
        ("seed", "not key=value"),
    ],
)
def test_bad_spec_names_the_key(body: str, needle: str) -> None:
    with pytest.raises(SourceError, match="synthetic") as err:
        parse_source(f"synthetic:{body}")
    assert needle in str(err.value)


def test_start_after_end_is_an_error() -> None:
    with pytest.raises(SourceError, match="after end"):
        parse_source("synthetic:symbols=3").extract(date(2020, 2, 1), date(2020, 1, 1))


def test_tiny_and_empty_spans() -> None:
    one = parse_source("synthetic:symbols=1,start=2020-01-06,end=2020-01-06").extract(*SPAN)
    assert len(one) == 1 and one["factor"].iloc[0] == 1.0
    weekend = parse_source("synthetic:symbols=3,start=2020-01-04,end=2020-01-05").extract(*SPAN)
    assert weekend.empty and list(weekend.columns) == list(BAR_COLUMNS)


# --- determinism and slicing -------------------------------------------------------------------


def test_schema_and_order(market: pd.DataFrame) -> None:
    assert list(market.columns) == list(BAR_COLUMNS)
    assert market["date"].dtype == "datetime64[s]"
    for col in BAR_COLUMNS[2:]:
        assert market[col].dtype == "float64"
    keys = market[["date", "symbol"]]
    assert not keys.duplicated().any()
    assert keys.equals(keys.sort_values(["date", "symbol"]).reset_index(drop=True))
    assert invalid_symbols(market["symbol"].unique()) == []
    assert market["symbol"].iloc[0] == "S00001"
    assert market["symbol"].nunique() == 200
    assert market.notna().all().all()


def test_same_spec_same_market(market: pd.DataFrame) -> None:
    again = parse_source(SPEC).extract(*SPAN)
    pd.testing.assert_frame_equal(market, again, check_exact=True)
    other = parse_source(SPEC.replace("seed=7", "seed=8")).extract(*SPAN)
    assert not np.allclose(other["close"].to_numpy()[:100], market["close"].to_numpy()[:100])


def test_extract_is_an_exact_slice_of_the_whole_span(market: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    ranges = [
        (date(2017, 6, 1), date(2018, 1, 10)),  # starts before the span
        (date(2020, 12, 20), date(2021, 3, 1)),  # ends after it
        (date(2016, 1, 1), date(2017, 1, 1)),  # entirely before
        (date(2019, 7, 4), date(2019, 7, 4)),  # a single day
    ]
    for _ in range(5):
        a = SPAN[0] + timedelta(days=int(rng.integers(0, 1000)))
        ranges.append((a, a + timedelta(days=int(rng.integers(0, 200)))))
    for lo, hi in ranges:
        fresh = parse_source(SPEC)  # nothing cached: the slice must not depend on what was asked first
        got = fresh.extract(lo, hi)
        days = market["date"]
        want = market[(days >= pd.Timestamp(lo)) & (days <= pd.Timestamp(hi))].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert len(parse_source(SPEC).extract(date(2016, 1, 1), date(2017, 1, 1))) == 0


def test_symbol_paths_do_not_depend_on_the_number_of_symbols(market: pd.DataFrame) -> None:
    small = parse_source(SPEC.replace("symbols=200", "symbols=12")).extract(*SPAN)
    want = market[market["symbol"] <= "S00012"].reset_index(drop=True)
    pd.testing.assert_frame_equal(small, want, check_exact=True)


def test_calendar_is_weekdays_minus_a_few_holidays(market: pd.DataFrame) -> None:
    days = pd.DatetimeIndex(market["date"].unique())
    assert (days.dayofweek < 5).all()
    assert list(days.date) == trading_days(*SPAN)
    weekdays = pd.bdate_range(*SPAN)
    per_year = pd.Series(1, index=weekdays.difference(days)).groupby(lambda d: d.year).sum()
    assert per_year.between(3, 8).all(), per_year
    # the calendar depends on the dates only, not on the seed or the span
    assert trading_days(date(2019, 1, 1), date(2019, 12, 31)) == [d for d in days.date if d.year == 2019]


# --- structure ---------------------------------------------------------------------------------


def test_prices_volume_and_envelopes(market: pd.DataFrame) -> None:
    m = market
    assert (m[["open", "high", "low", "close", "vwap"]] > 0).all().all()
    assert (m["volume"] > 0).all()
    assert (m["low"] <= np.minimum(m["open"], m["close"])).all()
    assert (np.maximum(m["open"], m["close"]) <= m["high"]).all()
    assert ((m["low"] <= m["vwap"]) & (m["vwap"] <= m["high"])).all()
    # volume: lognormal-ish with persistence
    logv = wide(m, np.log(m["volume"] / m["factor"]))
    assert logv.apply(lambda s: s.autocorr(1)).median() > 0.5


def test_common_market_factor(market: pd.DataFrame) -> None:
    ret = wide(market, market["close"] * market["factor"]).pct_change(fill_method=None)
    corr = ret.iloc[:, :40].corr(min_periods=100).to_numpy()
    mean_pairwise = np.nanmean(corr[np.triu_indices_from(corr, k=1)])
    assert 0.1 < mean_pairwise < 0.6


def test_listings_delistings_and_suspensions(market: pd.DataFrame) -> None:
    cal = pd.DatetimeIndex(market["date"].unique())
    pos = pd.Series(np.arange(len(cal)), index=cal)
    first = market.groupby("symbol")["date"].min()
    last = market.groupby("symbol")["date"].max()
    late = int((first > cal[0]).sum())
    delisted = int((last < cal[-1]).sum())
    assert 8 <= late <= 35, late  # ~10% of 200
    assert 3 <= delisted <= 20, delisted  # ~5%
    # suspended days: missing rows inside a symbol's span
    span_days = (pos[last].to_numpy() - pos[first].to_numpy() + 1).sum()
    missing_share = 1 - len(market) / span_days
    assert 0.003 < missing_share < 0.03, missing_share
    gaps = market.assign(p=pos[market["date"]].to_numpy()).groupby("symbol")["p"].diff() - 1
    assert (gaps == 1).sum() > 100  # single-day suspensions
    assert (gaps >= 10).sum() >= 2  # multi-week suspensions


def test_splits_keep_adjusted_prices_continuous(market: pd.DataFrame) -> None:
    m = market.sort_values(["symbol", "date"]).reset_index(drop=True)
    by = m.groupby("symbol")
    assert (by["factor"].first() == 1.0).all()
    step = m["factor"] / by["factor"].shift(1)
    assert (step.dropna() >= 1.0).all()  # factor never decreases
    splits = step >= 1.4
    assert splits.sum() >= 20, splits.sum()
    assert ((step > 1.0) & (step < 1.1)).sum() >= 100  # dividends
    adj_ret = np.log(m["close"] * m["factor"]).groupby(m["symbol"]).diff()
    raw_ret = np.log(m["close"]).groupby(m["symbol"]).diff()
    vol = adj_ret.groupby(m["symbol"]).transform("std")
    assert (adj_ret[splits].abs() < 5 * vol[splits]).all()  # no jump in adjusted prices
    assert (raw_ret[splits] < -np.log(1.4) + 5 * vol[splits]).all()  # the raw price does drop
    volume_ratio = m["volume"] / by["volume"].shift(1)
    assert volume_ratio[splits].median() > 1.3  # more shares after a split


# --- the planted signal --------------------------------------------------------------------------


def test_short_term_reversal_predicts_the_label(market: pd.DataFrame) -> None:
    adj = wide(market, market["close"] * market["factor"])
    reversal = -(adj / adj.shift(5) - 1)
    ic = daily_rank_ic(reversal, label_of(adj))
    logger.info("reversal(5) daily rank IC: mean %.4f, IR %.2f, days %d", ic.mean(), ic.mean() / ic.std(), len(ic))
    assert len(ic) > 600
    assert ic.mean() > 0.03, ic.mean()  # measured 0.048 (seed 7)
    assert (ic > 0).mean() > 0.6


def test_generation_speed() -> None:
    began = time.perf_counter()
    bars = parse_source("synthetic:symbols=500,start=2010-01-01,end=2019-12-31,seed=1").extract(
        date(2010, 1, 1), date(2019, 12, 31)
    )
    elapsed = time.perf_counter() - began
    logger.info("500 symbols x 10 years: %d rows in %.2f s", len(bars), elapsed)
    assert len(bars) > 1_000_000
    assert elapsed < 10.0  # ~1 s on an idle core; generous for a shared CI machine


@pytest.mark.slow
def test_lightgbm_learns_the_signal(market: pd.DataFrame) -> None:
    import lightgbm as lgb

    m = market
    adj = wide(m, m["close"] * m["factor"])
    opn, high, low = (wide(m, m[c] * m["factor"]) for c in ("open", "high", "low"))
    vwap = wide(m, m["vwap"] * m["factor"])
    vol = wide(m, m["volume"] / m["factor"])
    ret = adj.pct_change(fill_method=None)
    feats: dict[str, pd.DataFrame] = {
        "kmid": (adj - opn) / opn,
        "klen": (high - low) / opn,
        "ksft": (2 * adj - high - low) / opn,
        "vwap0": vwap / adj,
        "std20": ret.rolling(20, min_periods=15).std(),
        "vma20": vol / vol.rolling(20, min_periods=15).mean(),
    }
    for k in (1, 2, 5, 10, 20):
        feats[f"roc{k}"] = adj.shift(k) / adj
    for k in (5, 10, 20, 30):
        feats[f"ma{k}"] = adj.rolling(k, min_periods=k - 2).mean() / adj
    label = label_of(adj)
    dates = adj.index
    x = np.stack([f.reindex_like(adj).to_numpy() for f in feats.values()], axis=-1)
    y = label.to_numpy()
    train_days = (dates >= "2018-02-15") & (dates <= "2019-12-31")
    train_days[np.flatnonzero(train_days)[-2:]] = False  # the label looks two days ahead
    test_days = dates >= "2020-01-01"
    xtr, ytr = x[train_days].reshape(-1, x.shape[-1]), y[train_days].ravel()
    ok = ~np.isnan(ytr)
    model = lgb.train(
        {
            "objective": "regression",
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 200,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 10.0,
            "num_threads": 1,
            "seed": 1,
            "verbose": -1,
        },
        lgb.Dataset(xtr[ok], ytr[ok]),
        num_boost_round=150,
    )
    xte = x[test_days]
    pred = model.predict(xte.reshape(-1, x.shape[-1])).reshape(xte.shape[:2])
    pred_w = pd.DataFrame(pred, index=dates[test_days], columns=adj.columns).where(adj[test_days].notna())
    ic = daily_rank_ic(pred_w, label[test_days])
    logger.info("LightGBM daily rank IC on 2020: mean %.4f, IR %.2f", ic.mean(), ic.mean() / ic.std())
    assert ic.mean() > 0.02, ic.mean()
