"""The feature and label stores in a real (local) lake: incremental = full, point in time, bad input."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quant_core.data.lake import Lake
from quant_core.data.sources import parse_source
from quant_core.errors import CalendarError
from quant_core.features import FeatureInputError, FeatureSetError, get_feature_set
from quant_core.features.labels import LABEL0, get_label
from quant_core.features.store import (
    dependent_ranges,
    feature_dataset,
    label_dataset,
    update_features,
    update_labels,
)

SPEC = "synthetic:symbols=16,start=2020-01-01,end=2020-10-30,seed=2"  # 3 late listings, 1 delisting
FS = get_feature_set("alpha158")


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return parse_source(SPEC).extract(date(2020, 1, 1), date(2020, 10, 30))


def _lake(tmp: Path, bars: pd.DataFrame) -> Lake:
    lake = Lake(str(tmp))
    lake.write_bars(bars, "2020-01-01", "2020-10-30")
    return lake


def _features(lake: Lake) -> pd.DataFrame:
    return feature_dataset(lake, FS).read().to_pandas()


def test_market_has_the_hard_cases(bars: pd.DataFrame) -> None:
    firsts = bars.groupby("symbol")["date"].min()
    assert (firsts > firsts.min()).any(), "a late listing"
    counts = bars.groupby("symbol").size()
    assert (counts < bars["date"].nunique()).any(), "suspensions or delistings"
    lasts = bars.groupby("symbol")["date"].max()
    assert (lasts < lasts.max()).any(), "a delisting"


def test_daily_and_chunked_updates_equal_the_full_recompute(tmp_path: Path, bars: pd.DataFrame) -> None:
    full_lake = _lake(tmp_path / "full", bars)
    update_features(full_lake, FS, "2020-01-01", "2020-10-30")
    full = _features(full_lake)

    # bars arrive day by day; after each day the new day's features are computed from the buffer
    inc_lake = Lake(str(tmp_path / "inc"))
    cal = full_lake.calendar()
    days = list(cal)
    head = days[70]
    inc_lake.write_bars(bars[bars["date"] <= pd.Timestamp(head)], days[0], head)
    update_features(inc_lake, FS, days[0], head)
    for d in days[71:]:
        inc_lake.write_bars(bars[bars["date"] == pd.Timestamp(d)], d, d)
        update_features(inc_lake, FS, d, d)
    inc = _features(inc_lake)
    pd.testing.assert_frame_equal(inc, full)  # float32 bit for bit, NaN where NaN
    # the stored month files themselves are byte-identical
    assert feature_dataset(inc_lake, FS).manifest().partitions == feature_dataset(full_lake, FS).manifest().partitions

    # random chunkings over the complete bars
    rng = random.Random(5)
    chunk_lake = _lake(tmp_path / "chunks", bars)
    i = 0
    while i < len(days):
        j = min(len(days), i + rng.randint(1, 40))
        update_features(chunk_lake, FS, days[i], days[j - 1])
        i = j
    pd.testing.assert_frame_equal(_features(chunk_lake), full)


def test_point_in_time_bar_changes_after_t_leave_features_up_to_t(tmp_path: Path, bars: pd.DataFrame) -> None:
    lake = _lake(tmp_path / "pit", bars)
    update_features(lake, FS, "2020-01-01", "2020-10-30")
    before = _features(lake)
    t = pd.Timestamp("2020-07-15")
    later = bars[bars["date"] > t].copy()
    later["close"] *= 1.5
    later = later.drop(later.index[::7])  # and some bars vanish
    later_start, later_end = later["date"].min().date(), date(2020, 10, 30)
    lake.write_bars(later, later_start, later_end)
    cal = lake.calendar()
    (f_lo, f_hi), _ = dependent_ranges(cal, later_start, later_end, FS.hist_ref, LABEL0.lookahead)
    update_features(lake, FS, f_lo, f_hi)
    after = _features(lake)
    keep_b = before[pd.to_datetime(before["date"]) <= t].reset_index(drop=True)
    keep_a = after[pd.to_datetime(after["date"]) <= t].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep_a, keep_b)
    assert not after[pd.to_datetime(after["date"]) > t]["MA5"].equals(before[pd.to_datetime(before["date"]) > t]["MA5"])


def test_labels_only_for_observable_dates(tmp_path: Path, bars: pd.DataFrame) -> None:
    lake = _lake(tmp_path / "labels", bars)
    cal = lake.calendar()
    up = update_labels(lake, LABEL0, cal.first, cal.last)
    assert up.end == cal[len(cal) - 1 - LABEL0.lookahead]
    stored = label_dataset(lake, LABEL0).read().to_pandas()
    assert pd.Timestamp(stored["date"].max()).date() == up.end
    # a label is the return from t+1 to t+2 on adjusted close
    sym = stored.dropna()["symbol"].iloc[100]
    row = stored[(stored["symbol"] == sym)].dropna().iloc[10]
    d = pd.Timestamp(row["date"]).date()
    b = bars[bars["symbol"] == sym].set_index("date")
    adj = b["close"] * b["factor"]
    d1, d2 = pd.Timestamp(cal.shift(d, 1)), pd.Timestamp(cal.shift(d, 2))
    assert row["LABEL0"] == pytest.approx(np.float32(adj[d2] / adj[d1] - 1), rel=1e-5)
    # the last days: nothing observable yet, said plainly, nothing written
    none = update_labels(lake, get_label(20), cal.last, cal.last)
    assert none.rows == 0 and "observable" in none.note


def test_bad_requests_are_clear_and_leave_the_lake_unchanged(tmp_path: Path, bars: pd.DataFrame) -> None:
    lake = _lake(tmp_path / "bad", bars)
    update_features(lake, FS, "2020-03-01", "2020-03-31")
    snap = lake.snapshot()
    with pytest.raises(FeatureInputError, match=r"no bars in 2021-01-01..2021-01-31"):
        update_features(lake, FS, "2021-01-01", "2021-01-31")
    with pytest.raises(CalendarError, match=r"only \d+ trading days of bars precede it.*hist_ref=60"):
        update_features(lake, FS, "2020-02-03", "2020-02-07", require_full_history=True)
    with pytest.raises(FeatureSetError, match="no_such_set"):
        get_feature_set("no_such_set")
    with pytest.raises(FeatureSetError, match="nope"):
        from quant_core.features import FeatureSet

        FeatureSet.from_pairs("custom", [("X", "Mean($nope, 5)")])
    with pytest.raises(FeatureSetError):
        from quant_core.features import FeatureSet

        FeatureSet.from_pairs("custom", [("X", "Mean($close, 0)")])
    assert lake.snapshot() == snap
