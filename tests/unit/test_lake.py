from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from quant_core.bars import coerce_bars
from quant_core.errors import LakeError
from quant_core.lake import Lake


@pytest.fixture(scope="module")
def csi_bars(csi300_path: Path) -> pd.DataFrame:
    df = pd.read_parquet(csi300_path)
    df = df[df["date"] < date(2021, 1, 1)]
    df["vwap"] = df["amount"] / df["volume"]
    return coerce_bars(df, source="csi300")


def _data_files(lake: Lake) -> dict[str, str]:
    return {k: v for k, v in lake.snapshot().items() if not k.startswith("reports/")}


def test_roundtrip_and_projection(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    lake = Lake(str(tmp_path / "lake"))
    res = lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    assert res.rows == len(csi_bars) and res.months == tuple(f"2020-{m:02d}" for m in range(1, 13))
    back = lake.read_bars()
    exp = csi_bars.sort_values(["date", "symbol"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, exp)  # same dtypes as coerce_bars gives, symbol included
    part = lake.read_bars("2020-03-02", "2020-03-06", symbols=["SH600000", "SZ000001"], columns=["date", "symbol", "close"])
    assert list(part.columns) == ["date", "symbol", "close"]
    assert part["symbol"].dtype == back["symbol"].dtype == exp["symbol"].dtype
    assert set(part["symbol"]) == {"SH600000", "SZ000001"} and len(part) == 10
    assert lake.calendar().first == date(2020, 1, 2)


def test_write_replaces_exactly_its_range(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    march = csi_bars[(csi_bars["date"] >= "2020-03-10") & (csi_bars["date"] <= "2020-03-12")]
    changed = march.assign(close=march["close"] * 2)
    lake.write_bars(changed, "2020-03-10", "2020-03-12")
    back = lake.read_bars("2020-03-09", "2020-03-13")
    inside = back[(back["date"] >= "2020-03-10") & (back["date"] <= "2020-03-12")]
    assert np.allclose(np.sort(inside["close"].to_numpy()), np.sort(changed["close"].to_numpy()))
    outside = back[(back["date"] == "2020-03-09") | (back["date"] == "2020-03-13")]
    orig = csi_bars[(csi_bars["date"] == "2020-03-09") | (csi_bars["date"] == "2020-03-13")]
    assert np.allclose(np.sort(outside["close"].to_numpy()), np.sort(orig["close"].to_numpy()))
    # a range the new data does not cover becomes empty: 2020-03-11 deleted
    lake.write_bars(changed[changed["date"] != "2020-03-11"], "2020-03-10", "2020-03-12")
    assert date(2020, 3, 11) not in lake.calendar()
    assert len(lake.calendar()) == csi_bars["date"].nunique() - 1


def test_same_write_twice_is_byte_identical(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    before = _data_files(lake)
    res = lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    assert res.unchanged and _data_files(lake) == before
    # a fresh lake fed the same data ends with the same files and manifest
    other = Lake(str(tmp_path / "other"))
    other.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    assert _data_files(other) == before


def test_first_dates_follow_rewrites(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    firsts = csi_bars.groupby("symbol")["date"].min()
    late = firsts[firsts > pd.Timestamp("2020-01-02")]
    assert not late.empty
    sym = late.index[0]
    assert lake.bars.first_dates()[sym] == late.iloc[0].date()
    # delete the symbol's first month: its first date moves to the next bar after the range
    first = late.iloc[0]
    month_end = (first + pd.offsets.MonthEnd(0)).date()
    keep = csi_bars[(csi_bars["date"] >= first) & (csi_bars["date"] <= pd.Timestamp(month_end)) & (csi_bars["symbol"] != sym)]
    lake.write_bars(keep, first.date(), month_end)
    nxt = csi_bars[(csi_bars["symbol"] == sym) & (csi_bars["date"] > pd.Timestamp(month_end))]["date"].min()
    assert lake.bars.first_dates()[sym] == nxt.date()


def test_rows_outside_the_range_are_rejected_and_nothing_changes(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    before = _data_files(lake)
    with pytest.raises(LakeError, match=r"row \d+ has date 2020-01-02 outside the write range 2020-02-01..2020-02-29"):
        lake.write_bars(csi_bars, "2020-02-01", "2020-02-29")
    assert _data_files(lake) == before


def test_schema_mismatch_is_rejected(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    lake = Lake(str(tmp_path / "lake"))
    ds = lake.dataset("features/x")
    t = pa.table({"date": pa.array([date(2020, 1, 2)], pa.date32()), "symbol": ["A"], "f": pa.array([1.0], pa.float32())})
    ds.write(t, "2020-01-02", "2020-01-02")
    t2 = pa.table({"date": pa.array([date(2020, 1, 3)], pa.date32()), "symbol": ["A"], "g": pa.array([1.0], pa.float32())})
    with pytest.raises(LakeError, match="differ from the stored ones"):
        ds.write(t2, "2020-01-03", "2020-01-03")


def test_corrupt_file_is_named_and_the_lake_is_unchanged(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    manifest = json.loads((tmp_path / "lake/bars/_manifest.json").read_text())
    victim = tmp_path / "lake/bars" / manifest["partitions"]["2020-05"]["file"]
    victim.write_bytes(b"this is not parquet")
    before = _data_files(lake)
    with pytest.raises(LakeError, match=r"month=2020-05/.*corrupt"):
        lake.write_bars(csi_bars[csi_bars["date"] == "2020-05-06"], "2020-05-06", "2020-05-06")
    with pytest.raises(LakeError, match="corrupt"):
        lake.read_bars("2020-05-01", "2020-05-31")
    assert _data_files(lake) == before
    # months that do not touch the corrupt file stay readable
    assert len(lake.read_bars("2020-06-01", "2020-06-30")) > 0


def test_concurrent_writer_is_detected(tmp_path: Path, csi_bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    ds = lake.bars
    original = ds._read_manifest_bytes
    calls = {"n": 0}

    def racing() -> bytes | None:
        calls["n"] += 1
        data = original()
        return data if calls["n"] == 1 else (data or b"") + b" "

    monkeypatch.setattr(ds, "_read_manifest_bytes", racing)
    from quant_core.bars import bars_to_table

    day = csi_bars[csi_bars["date"] == "2020-07-01"]
    with pytest.raises(LakeError, match="another writer"):
        ds.write(bars_to_table(day.assign(close=day["close"] + 1)), "2020-07-01", "2020-07-01")


def test_empty_dataset_and_bad_names(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    assert lake.read_bars().empty
    with pytest.raises(LakeError, match="empty"):
        lake.bars.read()
    with pytest.raises(LakeError, match="not a valid dataset name"):
        lake.dataset("../escape")
