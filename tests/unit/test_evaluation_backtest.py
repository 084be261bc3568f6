"""Backtests (quant_core.evaluation.backtest): accounting by hand, tradability, configs, performance."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from quant_core.errors import ConfigError
from quant_core.evaluation.backtest import BacktestConfig, long_short, performance, topk_dropout
from quant_core.evaluation.metrics import forward_returns

DAYS = pd.bdate_range("2024-05-06", periods=7)
TOL = 1e-12


def make_bars(closes: dict[str, list[float | None]], factors: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """Bars from one close list per symbol over DAYS; ``None`` = no bar (suspended) that date."""
    rows = []
    for symbol, values in closes.items():
        for i, close in enumerate(values):
            if close is not None:
                factor = factors[symbol][i] if factors and symbol in factors else 1.0
                rows.append({"date": DAYS[i].date(), "symbol": symbol, "close": close, "factor": factor})
    return pd.DataFrame(rows)


def make_signals(scores: dict[str, list[float]]) -> pd.DataFrame:
    """Signals on DAYS[0], DAYS[1], ... (as many dates as each list has)."""
    rows = [{"date": DAYS[i].date(), "symbol": s, "score": v} for s, values in scores.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def weights(result_positions: pd.DataFrame) -> list[dict[str, float]]:
    return [dict(zip(g["symbol"], g["weight"], strict=True)) for _, g in result_positions.groupby("date")]


# -- TopkDropout accounting by hand -----------------------------------------------------------------
def test_topk_dropout_two_symbols_five_days_by_hand() -> None:
    # B splits 2-for-1 on d6 (close 22 -> 11, factor 1 -> 2): adjusted closes 20 20 19 20.9 22 22 24.2
    bars = make_bars(
        {"A": [10, 10, 11, 12, 12, 9, 9.9], "B": [20, 20, 19, 20.9, 22, 11, 12.1]},
        {"B": [1, 1, 1, 1, 1, 2, 2]},
    )
    signals = make_signals({"A": [2, 1, 1, 5, 5], "B": [1, 2, 2, 1, 1]})
    cfg = BacktestConfig(topk=1, n_drop=1, open_cost_bps=10, close_cost_bps=20)
    res = topk_dropout(signals, bars, cfg)
    open_c, close_c = 0.001, 0.002
    # t=d1: nothing held, buy the best (A) with all the cash at the close of d2; earn d2->d3: 11/10 - 1
    # t=d2: held A; candidate B (score 2 > 1); combined ranking B, A: A is in the bottom n_drop=1 ->
    #       sell A (weight 1), buy B with its value at the close of d3; earn d3->d4: 20.9/19 - 1
    # t=d3: held B, candidate A; combined B, A: the bottom one (A) is not held -> no trade; 22/20.9 - 1
    # t=d4: A scores 5: sell B, buy A at the close of d5; earn d5->d6: 9/12 - 1 = -0.25
    # t=d5: held A is the best -> hold; earn d6->d7: 9.9/9 - 1
    gross = [11 / 10 - 1, 20.9 / 19 - 1, 22 / 20.9 - 1, 9 / 12 - 1, 9.9 / 9 - 1]
    bought = [1.0, 1.0, 0.0, 1.0, 0.0]
    sold = [0.0, 1.0, 0.0, 1.0, 0.0]
    cost = [open_c * b + close_c * s for b, s in zip(bought, sold, strict=True)]  # .001 .003 0 .003 0
    # benchmark: both symbols trade every day -> the mean of their returns (B's split is adjusted away)
    bench = [(0.1 + 19 / 20 - 1) / 2, (12 / 11 - 1 + 20.9 / 19 - 1) / 2, (0 + 22 / 20.9 - 1) / 2,
             (-0.25 + 0) / 2, (0.1 + 24.2 / 22 - 1) / 2]
    d = res.daily
    assert list(d.columns) == ["date", "gross_return", "cost", "net_return", "turnover", "holdings", "benchmark"]
    assert list(d["date"]) == list(DAYS[:5])
    assert d["gross_return"].tolist() == pytest.approx(gross, abs=TOL)
    assert d["cost"].tolist() == pytest.approx(cost, abs=TOL)
    assert d["cost"].tolist() == pytest.approx([0.001, 0.003, 0.0, 0.003, 0.0], abs=TOL)
    assert d["net_return"].tolist() == pytest.approx([g - c for g, c in zip(gross, cost, strict=True)], abs=TOL)
    assert d["turnover"].tolist() == pytest.approx([(b + s) / 2 for b, s in zip(bought, sold, strict=True)], abs=TOL)
    assert d["holdings"].tolist() == [1, 1, 1, 1, 1]
    assert d["benchmark"].tolist() == pytest.approx(bench, abs=TOL)
    assert weights(res.positions) == [{"A": 1.0}, {"B": 1.0}, {"B": 1.0}, {"A": 1.0}, {"A": 1.0}]
    # each day's return is LABEL0 (= ret_1) of the held symbol on the signal date
    fwd = forward_returns(bars, horizons=(1,)).set_index(["date", "symbol"])["ret_1"]
    held = ["A", "B", "B", "A", "A"]
    assert d["gross_return"].tolist() == pytest.approx(
        [fwd[(day, s)] for day, s in zip(DAYS[:5], held, strict=True)], abs=TOL)


def test_topk_dropout_splits_the_sold_value_and_lets_held_weights_drift() -> None:
    bars = make_bars({"A": [10, 10, 12, 12, 12], "B": [10, 10, 10, 11, 11], "C": [10, 10, 10, 9, 9.9]})
    signals = make_signals({"A": [3, 1, 1], "B": [2, 3, 3], "C": [1, 2, 2]})
    res = topk_dropout(signals, bars, BacktestConfig(topk=2, n_drop=1))
    # t=d1: buy A, B at 1/2 each; earn A +20%, B 0 -> gross .1; drift: A .6/1.1 = 6/11, B .5/1.1 = 5/11
    # t=d2: held A, B; candidate C (n_drop + topk - held = 1); ranking B, C, A -> sell A (6/11), buy C with
    #       all of it (6/11); B keeps 5/11 (no rebalance); earn B +10%, C -10% -> (5 - 6) / 11 * .1
    # t=d3: hold; drift: B 5/11 * 1.1 / (1 - 1/110) = 55/109, C 6/11 * .9 / (109/110) = 54/109; earn C +10%
    d = res.daily
    assert d["gross_return"].tolist() == pytest.approx([0.1, -1 / 110, 54 / 109 * 0.1], abs=TOL)
    assert d["turnover"].tolist() == pytest.approx([0.5, 6 / 11, 0.0], abs=TOL)
    assert d["cost"].tolist() == pytest.approx([0.0005, (0.0005 + 0.0015) * 6 / 11, 0.0], abs=TOL)
    w = weights(res.positions)
    assert w[0] == pytest.approx({"A": 0.5, "B": 0.5}, abs=TOL)
    assert w[1] == pytest.approx({"B": 5 / 11, "C": 6 / 11}, abs=TOL)
    assert w[2] == pytest.approx({"B": 55 / 109, "C": 54 / 109}, abs=TOL)


def test_a_symbol_without_a_bar_on_the_execution_date_is_not_traded() -> None:
    # A and C have no bar on d3; A gaps from 10 (d2) to 13 (d4)
    bars = make_bars({"A": [10, 10, None, 13, 13, 13], "B": [10.0] * 6, "C": [10, 10, None, 10, 11, 11]})
    signals = make_signals({"A": [3, 1, 1, 1], "B": [2, 2, 2, 2], "C": [1, 3, 3, 3]})
    res = topk_dropout(signals, bars, BacktestConfig(topk=1, n_drop=1, open_cost_bps=0, close_cost_bps=0))
    d = res.daily
    # t=d1: buy A at the close of d2; A has no bar on d3 -> earns 0 that row
    # t=d2: A is the worst but has no bar on d3 (the execution date): not sold. C, the best, has no bar
    #       on d3 either: not bought; B is the candidate, but the bottom tradable of (B, A) is B, not held
    #       -> no trade. A's gap move is realised on d4: 13/10 - 1 (not LABEL0 of d2, which is NaN)
    # t=d3: all trade on d4: sell A, buy C; earn 11/10 - 1.  t=d4: hold C; earn 0
    assert weights(res.positions) == [{"A": 1.0}, {"A": 1.0}, {"C": 1.0}, {"C": 1.0}]
    assert d["gross_return"].tolist() == pytest.approx([0.0, 0.3, 0.1, 0.0], abs=TOL)
    assert d["turnover"].tolist() == pytest.approx([0.5, 0.0, 1.0, 0.0], abs=TOL)
    fwd = forward_returns(bars, horizons=(1,)).set_index(["date", "symbol"])["ret_1"]
    assert np.isnan(fwd[(DAYS[1], "A")])
    # benchmark of d2: the universe is B alone; A and C (held since d1 at 1/3 each, no bar on d3) keep
    # their weights, B gets the remaining third -> earns 1/3 * .3 (A) + 1/3 * 0 (C, from d2 to d4) + 0
    assert d["benchmark"].iloc[1] == pytest.approx(0.1, abs=TOL)


def test_small_universe_clip_uses_all_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    bars = make_bars({"A": [10, 10, 11, 11, 11], "B": [10, 10, 10, 12, 12]})
    signals = make_signals({"A": [2, 2, 2], "B": [1, 1, 1]})
    with caplog.at_level(logging.WARNING, logger="quant_core.evaluation.backtest"):
        res = topk_dropout(signals, bars, BacktestConfig(topk=3, n_drop=1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 date(s), the first 2024-05-06 with 2 symbol(s)" in warnings[0].getMessage()
    assert weights(res.positions)[0] == {"A": 0.5, "B": 0.5}
    assert res.daily["holdings"].tolist() == [2, 2, 2]
    assert res.daily["gross_return"].iloc[0] == pytest.approx(0.05, abs=TOL)


def test_small_universe_refuse_names_the_date_size_and_topk() -> None:
    bars = make_bars({"A": [10, 10, 11, 11, 11], "B": [10, 10, 10, 12, 12]})
    signals = make_signals({"A": [2, 2, 2], "B": [1, 1, 1]})
    cfg = BacktestConfig(topk=3, n_drop=1, on_small_universe="refuse")
    with pytest.raises(ConfigError, match=r"on 2024-05-06 only 2 symbol\(s\).*2024-05-07, fewer than the 3 that "
                                          r"topk_dropout \(topk=3\) needs"):
        topk_dropout(signals, bars, cfg)


# -- configs ----------------------------------------------------------------------------------------
def test_config_defaults_are_qlibs() -> None:
    cfg = BacktestConfig()
    assert (cfg.topk, cfg.n_drop, cfg.open_cost_bps, cfg.close_cost_bps) == (50, 5, 5.0, 15.0)
    assert cfg.annualization == 238 and cfg.quantile == 0.2 and cfg.on_small_universe == "clip"


def test_config_refuses_a_negative_cost_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"close_cost_bps\n  Input should be greater than or equal to 0"):
        BacktestConfig(close_cost_bps=-1)
    with pytest.raises(ValidationError, match="open_cost_bps"):
        BacktestConfig(open_cost_bps=-0.5)


def test_config_refuses_n_drop_above_topk_and_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="n_drop=6 exceeds topk=5"):
        BacktestConfig(topk=5, n_drop=6)
    with pytest.raises(ValidationError, match="topkk"):
        BacktestConfig(topkk=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="quantile"):
        BacktestConfig(quantile=0.6)


def test_bad_frames_are_refused() -> None:
    bars = make_bars({"A": [10, 10, 11, 11, 11], "B": [10, 10, 10, 12, 12]})
    signals = make_signals({"A": [2, 2], "B": [1, 1]})
    off = signals.copy()
    off.loc[0, "date"] = pd.Timestamp("2024-05-11").date()  # a Saturday, not in bars
    with pytest.raises(ConfigError, match="signals.date 2024-05-11 is not a trading date of bars"):
        topk_dropout(off, bars)
    with pytest.raises(ConfigError, match=r"signals has a second row for \(date=2024-05-06.*symbol=A\)"):
        topk_dropout(pd.concat([signals, signals.iloc[[0]]], ignore_index=True), bars)
    with pytest.raises(ConfigError, match=r"bars lacks the column\(s\) \['factor'\]"):
        long_short(signals, bars.drop(columns="factor"))


# -- long-short -------------------------------------------------------------------------------------
def random_market(n_symbols: int = 20, n_days: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    days = pd.bdate_range("2024-01-01", periods=n_days)
    closes = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_days, n_symbols)), axis=0))
    return pd.DataFrame({"date": np.repeat(days, n_symbols), "symbol": np.tile([f"S{i:02d}" for i in range(n_symbols)], n_days),
                         "close": closes.ravel(), "factor": 1.0})


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_long_short_sign_follows_a_perfect_signal(sign: float) -> None:
    bars = random_market()
    fwd = forward_returns(bars, horizons=(1,)).dropna()
    signals = fwd[["date", "symbol"]].assign(score=sign * fwd["ret_1"])
    res = long_short(signals, bars, BacktestConfig(open_cost_bps=0, close_cost_bps=0, quantile=0.2))
    d = res.daily
    assert len(d) == 28
    assert (np.sign(d["gross_return"]) == sign).all()
    assert d["net_return"].tolist() == d["gross_return"].tolist()
    assert (d["holdings"] == 8).all()  # 4 long + 4 short out of 20
    assert res.positions.groupby("date")["weight"].sum().to_numpy() == pytest.approx(np.zeros(28), abs=TOL)


def test_long_short_costs_and_turnover_by_hand() -> None:
    bars = make_bars({"A": [10, 10, 11, 11, 11], "B": [10, 10, 10, 10, 10], "C": [10, 10, 10, 10, 10],
                      "D": [10, 10, 9, 9.9, 9.9]})
    signals = make_signals({"A": [4, 1, 1], "B": [3, 3, 3], "C": [2, 2, 2], "D": [1, 4, 4]})
    res = long_short(signals, bars, BacktestConfig(quantile=0.25))  # 1 name per leg; 5 / 15 bps
    d = res.daily
    # t=d1: long A, short D (each leg weight 1): bought 1, opened 1 -> cost 5bp * 2; turnover (.5 + .5) / 2
    #       earn A +10% minus D -10% = .2
    # t=d2: long D, short A: long sells A (1) buys D (1); short covers D (1) opens A (1) -> (5 + 15)bp * 2
    #       earn D +10% minus A 0 = .1.   t=d3: no trade; earn 0 - 0
    assert d["gross_return"].tolist() == pytest.approx([0.2, 0.1, 0.0], abs=TOL)
    assert d["cost"].tolist() == pytest.approx([0.001, 0.004, 0.0], abs=TOL)
    assert d["turnover"].tolist() == pytest.approx([0.5, 1.0, 0.0], abs=TOL)
    assert weights(res.positions) == [{"A": 1.0, "D": -1.0}, {"A": -1.0, "D": 1.0}, {"A": -1.0, "D": 1.0}]


def test_long_short_small_universe() -> None:
    bars = make_bars({"A": [10, 10, 11, 11, 11], "B": [10, 10, 10, 12, 12]})
    signals = make_signals({"A": [2, 2, 2], "B": [1, 1, 1]})
    with pytest.raises(ConfigError, match=r"only 2 symbol\(s\).*fewer than the 5 that long_short"):
        long_short(signals, bars, BacktestConfig(on_small_universe="refuse"))
    res = long_short(signals, bars, BacktestConfig(open_cost_bps=0, close_cost_bps=0))
    assert res.daily["gross_return"].tolist() == pytest.approx([0.1, -0.2, 0.0], abs=TOL)


# -- performance ------------------------------------------------------------------------------------
def test_sum_mode_numbers_by_hand() -> None:
    r = pd.Series([0.01, -0.02, 0.03, -0.01], index=DAYS[:4])
    p = performance(r, None, 238)
    # mean .0025; deviations .0075 -.0225 .0275 -.0125 -> sum of squares .001475, ddof=1 -> /3
    std = math.sqrt(0.001475 / 3)
    assert p.returns.mean == pytest.approx(0.0025, abs=TOL)
    assert p.returns.std == pytest.approx(std, abs=TOL)
    assert p.returns.annualized_return == pytest.approx(0.0025 * 238, abs=TOL)
    assert p.returns.volatility == pytest.approx(std * math.sqrt(238), abs=TOL)
    assert p.returns.information_ratio == pytest.approx(0.0025 / std * math.sqrt(238), abs=TOL)
    # cumsum .01 -.01 .02 .01, cummax .01 .01 .02 .02 -> drawdowns 0 -.02 0 -.01
    assert p.returns.max_drawdown == pytest.approx(-0.02, abs=TOL)
    assert p.benchmark is None and p.excess_return_with_cost is None and p.mean_turnover is None
    assert p.days == 4


def test_excess_returns_with_and_without_cost() -> None:
    net = pd.Series([0.01, 0.02, -0.01], index=DAYS[:3])
    bench = pd.Series([0.005, 0.0, 0.005], index=DAYS[:3])
    cost = pd.Series([0.001, 0.0, 0.002], index=DAYS[:3])
    p = performance(net, bench, 252, pd.Series([0.5, 0.1, 0.3], index=DAYS[:3]), cost=cost)
    assert p.excess_return_with_cost is not None and p.excess_return_without_cost is not None
    assert p.excess_return_with_cost.mean == pytest.approx((0.005 + 0.02 - 0.015) / 3, abs=TOL)
    assert p.excess_return_without_cost.mean == pytest.approx((0.006 + 0.02 - 0.013) / 3, abs=TOL)
    assert p.mean_turnover == pytest.approx(0.3, abs=TOL)
    assert p.annualization == 252


def test_library_numbers_match_an_independent_numpy_computation() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.0004, 0.012, 300)
    x[0] = -0.03  # a loss on the first day: the drawdown is measured from the starting value
    r = pd.Series(x, index=pd.bdate_range("2023-01-02", periods=300))
    p = performance(r, None, 238)
    cagr = np.prod(1 + x) ** (238 / len(x)) - 1
    sharpe = x.mean() / x.std(ddof=1) * np.sqrt(238)
    wealth = np.concatenate(([1.0], np.cumprod(1 + x)))
    mdd = np.min(wealth / np.maximum.accumulate(wealth) - 1)
    assert p.cagr == pytest.approx(cagr, rel=1e-10)
    assert p.sharpe == pytest.approx(sharpe, rel=1e-10)
    assert p.max_drawdown == pytest.approx(mdd, rel=1e-10)
    assert p.sharpe == pytest.approx(p.returns.information_ratio, rel=1e-10)  # rf 0: the same number


def test_performance_to_dict_turns_nan_into_none_and_skips_nan_days() -> None:
    p = performance(pd.Series([0.01, np.nan], index=DAYS[:2]), None, 238)
    assert p.days == 1
    out = p.to_dict()
    assert out["returns"]["mean"] == pytest.approx(0.01)
    assert out["returns"]["std"] is None and out["returns"]["information_ratio"] is None
    assert out["sharpe"] is None and out["benchmark"] is None
    with pytest.raises(ConfigError, match="annualization is 0"):
        performance(pd.Series([0.01]), None, 0)


def test_backtest_summary_uses_the_configured_annualization() -> None:
    bars = make_bars({"A": [10, 10, 11, 11, 12.1], "B": [10, 10, 10, 12, 12]})
    signals = make_signals({"A": [2, 2, 2], "B": [1, 1, 1]})
    res = topk_dropout(signals, bars, BacktestConfig(topk=1, n_drop=1, annualization=252))
    s = res.summary()
    net = res.daily["net_return"].to_numpy()
    assert s.annualization == 252 and s.days == 3
    assert s.returns.annualized_return == pytest.approx(net.mean() * 252, abs=TOL)
    assert res.summary(238).returns.annualized_return == pytest.approx(net.mean() * 238, abs=TOL)
    bench = res.daily["benchmark"].to_numpy()
    assert s.excess_return_with_cost is not None
    assert s.excess_return_with_cost.mean == pytest.approx((net - bench).mean(), abs=TOL)
