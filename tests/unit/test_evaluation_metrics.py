"""Signal metrics (quant_core.evaluation.metrics): hand-computed IC, scipy parity, forward returns."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from quant_core.errors import ConfigError
from quant_core.evaluation.metrics import (
    daily_ic,
    forward_returns,
    ic_by_version,
    ic_decay,
    rolling_mean,
    summarize_ic,
)

D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)


def tiny() -> pd.DataFrame:
    """3 dates x 4 symbols: plain (D1), a tie and a NaN label (D2), a constant score (D3)."""
    return pd.DataFrame({
        "date": [D1] * 4 + [D2] * 4 + [D3] * 4,
        "symbol": ["A", "B", "C", "D"] * 3,
        "score": [1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 2.0, 5.0, 2.0, 2.0, 2.0, 2.0],
        "label": [0.1, 0.3, 0.2, 1.0, 0.3, 0.0, 0.1, np.nan, 0.1, 0.2, 0.3, 0.4],
    })


# D1: x = 1,2,3,4 (mean 2.5, dx = -1.5,-0.5,0.5,1.5); y = .1,.3,.2,1 (mean .4, dy = -.3,-.1,-.2,.6)
#   sxy = .45 + .05 - .1 + .9 = 1.3; sxx = 5; syy = .09 + .01 + .04 + .36 = .5 -> IC = 1.3 / sqrt(2.5)
#   ranks: x 1,2,3,4; y 1,3,2,4 -> sxy = 2.25 - .25 - .25 + 2.25 = 4, sxx = syy = 5 -> rank IC = .8
IC_D1, RANK_D1 = 1.3 / math.sqrt(2.5), 0.8
# D2: D's label is NaN -> pairs A,B,C: x = 1,1,2 (mean 4/3, dx = -1/3,-1/3,2/3); y = .3,0,.1 (mean
#   2/15, dy = 1/6,-2/15,-1/30): sxy = -1/18 + 2/45 - 1/45 = -1/30; sxx = 2/3; syy = 42/900 = 7/150
#   -> IC = (-1/30) / sqrt(14/450) = -1 / (2 sqrt 7)
#   ranks with average ties: x 1.5,1.5,3 (drx -.5,-.5,1); y 3,1,2 (dry 1,-1,0) -> sxy = 0 -> rank IC 0
#   (ranking the tie 1,2 instead would give -0.5)
IC_D2, RANK_D2 = -1.0 / (2.0 * math.sqrt(7.0)), 0.0


def test_daily_ic_by_hand() -> None:
    out = daily_ic(tiny())
    assert list(out.columns) == ["date", "ic", "rank_ic", "n"]
    assert list(out["date"]) == [pd.Timestamp(d) for d in (D1, D2, D3)]
    assert out["ic"].iloc[0] == pytest.approx(IC_D1, abs=1e-12)
    assert out["rank_ic"].iloc[0] == pytest.approx(RANK_D1, abs=1e-12)
    assert out["ic"].iloc[1] == pytest.approx(IC_D2, abs=1e-12)
    assert out["rank_ic"].iloc[1] == pytest.approx(RANK_D2, abs=1e-12)
    # D3: the score is constant -> NaN, not an error
    assert np.isnan(out["ic"].iloc[2]) and np.isnan(out["rank_ic"].iloc[2])
    assert list(out["n"]) == [4, 3, 4]


def test_daily_ic_is_nan_with_fewer_than_two_pairs_and_keeps_the_date() -> None:
    frame = pd.DataFrame({"date": [D1, D1, D2, D2], "symbol": ["A", "B", "A", "B"],
                          "score": [1.0, 2.0, np.nan, 1.0], "label": [0.1, np.nan, 0.2, np.nan]})
    out = daily_ic(frame)
    assert list(out["n"]) == [1, 0]
    assert out[["ic", "rank_ic"]].isna().all().all()


def test_summary_by_hand() -> None:
    s = summarize_ic(daily_ic(tiny()))
    # two days with a finite IC (D3 skipped); std with ddof=1 of two values a, b is |a - b| / sqrt(2)
    mean = (IC_D1 + IC_D2) / 2
    assert s.days == 2
    assert s.ic == pytest.approx(mean, abs=1e-12)
    assert s.icir == pytest.approx(mean / (abs(IC_D1 - IC_D2) / math.sqrt(2)), abs=1e-12)
    # rank: .8 and 0 -> mean .4, std .8 / sqrt 2 -> ICIR = 1 / sqrt 2 (not annualised)
    assert s.rank_ic == pytest.approx(0.4, abs=1e-12)
    assert s.rank_icir == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert s.ic_positive == 0.5
    assert s.rank_ic_positive == 0.5  # a rank IC of exactly 0 is not positive
    assert s.to_dict()["days"] == 2


def test_summary_of_nothing_is_none() -> None:
    s = summarize_ic(pd.DataFrame({"date": [D1], "ic": [np.nan], "rank_ic": [np.nan]}))
    assert s.days == 0
    assert s.to_dict() == {"ic": None, "icir": None, "rank_ic": None, "rank_icir": None,
                           "ic_positive": None, "rank_ic_positive": None, "days": 0}
    one = summarize_ic(pd.DataFrame({"ic": [0.1], "rank_ic": [0.2]}))
    assert one.ic == pytest.approx(0.1) and one.icir is None and one.days == 1


def test_daily_ic_matches_scipy_on_a_random_frame() -> None:
    from scipy import stats

    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2023-01-02", periods=60)
    symbols = [f"S{i:02d}" for i in range(80)]
    frame = pd.DataFrame({"date": np.repeat(dates, 80), "symbol": np.tile(symbols, 60)})
    # rounded scores give many ties; ~10% NaN on each side
    frame["score"] = np.round(rng.normal(size=len(frame)), 1)
    frame["label"] = 0.02 * frame["score"] + rng.normal(0, 0.03, len(frame))
    frame.loc[rng.random(len(frame)) < 0.1, "score"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.1, "label"] = np.nan
    out = daily_ic(frame.sample(frac=1.0, random_state=3))  # row order must not matter
    assert len(out) == 60
    for day, row in zip(dates, out.itertuples(), strict=True):
        g = frame[frame["date"] == day].dropna(subset=["score", "label"])
        assert row.date == day
        assert row.n == len(g)
        assert row.ic == pytest.approx(stats.pearsonr(g["score"], g["label"])[0], abs=1e-12)
        assert row.rank_ic == pytest.approx(stats.spearmanr(g["score"], g["label"])[0], abs=1e-12)


def test_daily_ic_refuses_bad_input_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"frame lacks the column\(s\) \['label'\]"):
        daily_ic(tiny().drop(columns=["label"]))
    bad = tiny().astype({"score": object})
    bad.loc[3, "score"] = "x"
    with pytest.raises(ConfigError, match="frame.score must be numeric"):
        daily_ic(bad)
    inf = tiny()
    inf.loc[5, "label"] = np.inf
    with pytest.raises(ConfigError, match="frame.label is infinite at row 5"):
        daily_ic(inf)


# -- forward returns --------------------------------------------------------------------------------
def bars_with_suspension() -> pd.DataFrame:
    """A: a 2-for-1 split on d4 (close halves, factor doubles: adjusted 10, 11, 12, 12, 13, 14).
    B: suspended on d3 (no row); closes 20, 21, -, 22, 24, 25."""
    days = pd.bdate_range("2024-03-04", periods=6)
    a = pd.DataFrame({"date": days, "symbol": "A", "close": [10, 11, 12, 6, 6.5, 7],
                      "factor": [1.0, 1, 1, 2, 2, 2]})
    b = pd.DataFrame({"date": days.delete(2), "symbol": "B", "close": [20.0, 21, 22, 24, 25], "factor": 1.0})
    return pd.concat([b, a], ignore_index=True)


def test_forward_returns_on_the_calendar_with_a_suspended_day() -> None:
    out = forward_returns(bars_with_suspension(), horizons=(1, 2))
    days = pd.bdate_range("2024-03-04", periods=6)
    assert list(out.columns) == ["date", "symbol", "ret_1", "ret_2"]
    a = out[out["symbol"] == "A"].set_index("date")
    b = out[out["symbol"] == "B"].set_index("date")
    nan = np.nan
    # ret_1(t) = adj(t+2) / adj(t+1) - 1 (LABEL0); ret_2(t) = adj(t+3) / adj(t+1) - 1
    np.testing.assert_allclose(a["ret_1"], [12 / 11 - 1, 12 / 12 - 1, 13 / 12 - 1, 14 / 13 - 1, nan, nan], rtol=1e-12)
    np.testing.assert_allclose(a["ret_2"], [12 / 11 - 1, 13 / 12 - 1, 14 / 12 - 1, nan, nan, nan], rtol=1e-12)
    # B has no row on d3 (index 2): ret_1 of d1 and d2 need d3 -> NaN; ret_2 of d1 skips over d3
    assert list(b.index) == list(days.delete(2))
    np.testing.assert_allclose(b["ret_1"], [nan, nan, 25 / 24 - 1, nan, nan], rtol=1e-12)
    np.testing.assert_allclose(b["ret_2"], [22 / 21 - 1, nan, nan, nan, nan], rtol=1e-12)
    assert out["date"].dtype == "datetime64[s]"


@pytest.mark.parametrize("horizons", [(0,), (-1,), (1.5,), (True,), (), (1, 1)])
def test_forward_returns_refuses_bad_horizons(horizons: tuple[object, ...]) -> None:
    with pytest.raises(ConfigError, match="horizon"):
        forward_returns(bars_with_suspension(), horizons=horizons)  # type: ignore[arg-type]


def test_forward_returns_refuses_a_duplicate_bar_and_a_non_positive_close() -> None:
    bars = bars_with_suspension()
    with pytest.raises(ConfigError, match=r"bars has a second row for \(date=2024-03-04.*symbol=B\)"):
        forward_returns(pd.concat([bars, bars.iloc[[0]]], ignore_index=True))
    bars.loc[1, "close"] = 0.0
    with pytest.raises(ConfigError, match="bars.close is 0.0 at row 1"):
        forward_returns(bars)


def test_ic_decay_per_horizon() -> None:
    bars = bars_with_suspension()
    fwd = forward_returns(bars, horizons=(2, 1))
    signals = fwd[["date", "symbol"]].assign(score=fwd["ret_1"])
    out = ic_decay(signals, fwd)
    assert list(out.columns) == ["horizon", "ic", "icir", "rank_ic", "rank_icir", "days"]
    assert list(out["horizon"]) == [1, 2]
    # the score is ret_1 itself; A and B both have it only on d4 -> one day with two pairs, IC 1
    assert out["days"].iloc[0] == 1
    assert out["ic"].iloc[0] == pytest.approx(1.0) and out["rank_ic"].iloc[0] == pytest.approx(1.0)
    assert np.isnan(out["icir"].iloc[0])  # one day: no std
    # against ret_2 no date has two pairs (B's score is NaN whenever its ret_2 is known)
    assert out["days"].iloc[1] == 0 and np.isnan(out["ic"].iloc[1])
    with pytest.raises(ConfigError, match="fwd has no ret_<h> column"):
        ic_decay(signals, fwd[["date", "symbol"]])


def test_ic_by_version_equals_daily_ic_per_version() -> None:
    frame = tiny()
    labels = frame[["date", "symbol", "label"]]
    v1 = frame[["date", "symbol", "score"]].assign(version="v1")
    v2 = frame[["date", "symbol"]].assign(score=-frame["label"].fillna(0), version="v2")
    out = ic_by_version(pd.concat([v2, v1], ignore_index=True), labels)
    assert list(out.columns) == ["date", "version", "ic", "rank_ic", "n"]
    assert list(out["version"]) == ["v1", "v2"] * 3
    first = out[out["version"] == "v1"].reset_index(drop=True)
    pd.testing.assert_frame_equal(first.drop(columns="version"), daily_ic(frame))
    second = out[out["version"] == "v2"]
    assert second["rank_ic"].to_numpy() == pytest.approx([-1.0, -1.0, -1.0])
    with pytest.raises(ConfigError, match=r"predictions has a second row for \(date=.*symbol=A, version=v1\)"):
        ic_by_version(pd.concat([v1, v1.iloc[[0]]], ignore_index=True), labels)


def test_rolling_mean() -> None:
    daily = pd.DataFrame({"date": pd.bdate_range("2024-01-01", periods=5)[::-1],
                          "ic": [5.0, 4.0, np.nan, 2.0, 1.0]})
    out = rolling_mean(daily, "ic", 2)
    assert list(out.index) == list(pd.bdate_range("2024-01-01", periods=5))
    # ascending values 1, 2, NaN, 4, 5: a window with the NaN day has only one value -> NaN
    np.testing.assert_allclose(out.to_numpy(), [np.nan, 1.5, np.nan, np.nan, 4.5])
    with pytest.raises(ConfigError, match="window is 0"):
        rolling_mean(daily, "ic", 0)
    with pytest.raises(ConfigError, match=r"daily lacks the column\(s\) \['rank_ic'\]"):
        rolling_mean(daily, "rank_ic", 2)
