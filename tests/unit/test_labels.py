"""Labels: definitions, lookahead, observability and NaN rules (LABEL0 parity with Qlib is in
test_alpha158_parity.py)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from quant_core.features import FeatureInputError, Field, Ref
from quant_core.features.labels import LABEL0, Label, LabelError, compute_labels, get_label, label_for_horizon


def bars(closes: dict[str, list[float | None]], factor: dict[str, list[float]] | None = None) -> pd.DataFrame:
    days = pd.bdate_range("2024-01-01", periods=max(len(v) for v in closes.values()))
    rows = []
    for sym, values in closes.items():
        for i, (d, c) in enumerate(zip(days, values, strict=False)):
            if c is not None:
                f = factor[sym][i] if factor else 1.0
                rows.append(
                    {
                        "date": d.date(),
                        "symbol": sym,
                        "open": c,
                        "high": c,
                        "low": c,
                        "close": c,
                        "volume": 100.0,
                        "vwap": c,
                        "factor": f,
                    }
                )
    return pd.DataFrame(rows)


def test_label_definitions() -> None:
    close = Field("close")
    assert LABEL0.horizon == 1 and LABEL0.lookahead == 2
    assert LABEL0.expression == Ref(close, -2) / Ref(close, -1) - 1
    h20 = get_label(20)
    assert h20 == Label("LABEL_H20", 20) and h20.lookahead == 21
    assert h20.expression == Ref(close, -21) / Ref(close, -1) - 1
    assert get_label("LABEL0") is LABEL0 and get_label(1) is LABEL0
    assert get_label("LABEL_H5") == label_for_horizon(5)


@pytest.mark.parametrize("bad", [0, -1, "LABEL1", "label0", "H20", 2.5, True])
def test_unknown_or_invalid_labels(bad: object) -> None:
    with pytest.raises(LabelError):
        get_label(bad)  # type: ignore[arg-type]


def test_invalid_label_construction() -> None:
    with pytest.raises(LabelError, match="horizon must be an integer >= 1"):
        Label("X", 0)
    with pytest.raises(LabelError, match="invalid label name"):
        Label("my label", 3)


def test_label0_values_and_observability() -> None:
    b = bars({"A": [10.0, 11.0, 12.1, 13.31, 14.641], "B": [1.0, 2.0, 4.0, 8.0, 16.0]})
    out = compute_labels(b, LABEL0)
    assert list(out.columns) == ["date", "symbol", "LABEL0"]
    assert out["LABEL0"].dtype == np.float32 and out["date"].dtype == "datetime64[s]"
    # the last 2 trading days have no observable label: omitted, not NaN
    assert sorted(out["date"].dt.date.unique()) == [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    np.testing.assert_allclose(out.loc[out["symbol"] == "A", "LABEL0"], [0.1, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(out.loc[out["symbol"] == "B", "LABEL0"], [1.0, 1.0, 1.0], rtol=1e-6)
    keys = list(zip(out["date"], out["symbol"], strict=True))
    assert keys == sorted(keys)


def test_horizon_label() -> None:
    b = bars({"A": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    out = compute_labels(b, get_label(3))  # Ref(C,-4)/Ref(C,-1)-1, lookahead 4
    np.testing.assert_allclose(out["LABEL_H3"], [5 / 2 - 1, 6 / 3 - 1], rtol=1e-6)


def test_missing_next_day_or_horizon_day_gives_nan() -> None:
    # A is suspended on day 2 and delisted after day 4; B keeps the calendar going
    b = bars({"A": [1.0, 2.0, None, 4.0, 5.0], "B": [1.0] * 8})
    out = compute_labels(b, LABEL0)
    a = out[out["symbol"] == "A"]
    # one row per bar of A (days 0, 1, 3, 4); day 0: t+2 suspended, day 1: t+1 suspended,
    # day 3: t+2 after delisting, day 4: t+1 after delisting
    assert list(a["date"].dt.date) == [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 4), date(2024, 1, 5)]
    assert a["LABEL0"].isna().all()
    assert not out.loc[out["symbol"] == "B", "LABEL0"].isna().any()


def test_labels_use_the_adjusted_close() -> None:
    raw = bars({"A": [10.0, 10.0, 5.0, 5.0]}, factor={"A": [1.0, 1.0, 2.0, 2.0]})  # a 2:1 split on day 2
    out = compute_labels(raw, LABEL0)
    np.testing.assert_allclose(out["LABEL0"], [0.0, 0.0], atol=1e-7)


def test_start_end_inclusive_and_errors() -> None:
    b = bars({"A": [float(i) for i in range(1, 11)]})
    days = sorted(b["date"].unique())
    out = compute_labels(b, LABEL0, start=days[2], end=days[4])
    assert list(out["date"].dt.date) == days[2:5]
    assert np.array_equal(out["LABEL0"].to_numpy(), compute_labels(b, LABEL0).iloc[2:5]["LABEL0"].to_numpy())
    with pytest.raises(FeatureInputError, match="no bars between .* with 2 more trading day"):
        compute_labels(b, LABEL0, start=days[8])
    with pytest.raises(FeatureInputError, match="bars are empty"):
        compute_labels(b.iloc[:0], LABEL0)
    with pytest.raises(LabelError, match="expected a Label"):
        compute_labels(b, "LABEL0")  # type: ignore[arg-type]


def test_labels_are_independent_of_the_range_computed() -> None:
    rng = np.random.default_rng(7)
    b = bars({"A": list(10 + rng.random(40)), "B": list(20 + rng.random(40))})
    days = sorted(b["date"].unique())
    full = compute_labels(b, get_label(5))
    parts = [
        compute_labels(
            b[(b["date"] >= days[i]) & (b["date"] <= days[min(i + 9 + 6, 39)])],
            get_label(5),
            start=days[i],
            end=days[i + 9],
        )
        for i in range(0, 30, 10)
    ]
    joined = pd.concat(parts, ignore_index=True)
    head = full[full["date"].dt.date <= days[29]].reset_index(drop=True)
    assert np.array_equal(joined["LABEL_H5"].to_numpy(), head["LABEL_H5"].to_numpy(), equal_nan=True)
