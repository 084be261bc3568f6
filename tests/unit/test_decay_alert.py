"""Live monitoring's daily IC: the evaluation module's, with the rows monitoring always wrote."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from quant_core.online.monitoring import daily_ic

D0 = date(2024, 1, 2)


def _old_daily_ic(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """monitoring.daily_ic as it was before it used quant_core.evaluation.metrics (the reference)."""
    rows = []
    for day, g in frame.dropna(subset=["score", label]).groupby("date", sort=True):
        n = len(g)
        ic = rank = float("nan")
        if n >= 2 and g["score"].std() > 0 and g[label].std() > 0:
            ic = float(np.corrcoef(g["score"], g[label])[0, 1])
            rank = float(np.corrcoef(g["score"].rank(), g[label].rank())[0, 1])
        rows.append({"date": day, "ic": ic, "rank_ic": rank, "n": n})
    return pd.DataFrame(rows, columns=["date", "ic", "rank_ic", "n"])


def test_monitoring_ic_is_the_evaluation_ic_with_the_rows_it_always_had() -> None:
    rng = np.random.default_rng(3)
    days = [D0 + timedelta(days=i) for i in range(6)]
    frame = pd.DataFrame({"date": np.repeat(days, 25), "symbol": [f"S{i}" for i in range(25)] * 6,
                          "score": rng.normal(size=150), "LABEL0": rng.normal(size=150)})
    frame.loc[frame.index[:3], "LABEL0"] = np.nan  # dropped pairs
    frame.loc[frame["date"] == days[4], "LABEL0"] = np.nan  # no pair at all: no row
    frame.loc[frame["date"] == days[1], "score"] = 1.0  # a constant side: NaN
    frame.loc[frame.index[50:60], "score"] = np.round(frame.loc[frame.index[50:60], "score"], 0)  # ties
    got, ref = daily_ic(frame, "LABEL0"), _old_daily_ic(frame, "LABEL0")
    assert got["date"].tolist() == ref["date"].tolist() and got["n"].tolist() == ref["n"].tolist()
    assert days[4] not in got["date"].tolist() and len(got) == 5
    for col in ("ic", "rank_ic"):
        assert np.allclose(got[col], ref[col], rtol=0, atol=1e-12, equal_nan=True), col
