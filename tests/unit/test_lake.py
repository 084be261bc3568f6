from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from quant_core.data.bars import coerce_bars
from quant_core.data.lake import Lake
from quant_core.errors import LakeError


@pytest.fixture(scope="module")
def csi_bars(csi300_path: Path) -> pd.DataFrame:
    df = pd.read_parquet(csi300_path)
    df = df[df["date"] < date(2021, 1, 1)]
    df["vwap"] = df["amount"] / df["volume"]
    return coerce_bars(df, source="csi300")


def _data_files(lake: Lake) -> dict[str, str]:
    return {k: v for k, v in lake.snapshot().items() if not k.startswith("reports/")}


def _month_files(lake: Lake) -> dict[str, str]:
    """The data files alone (manifests carry commit times and writers, which differ between lakes)."""
    return {k: v for k, v in _data_files(lake).items() if "/month=" in k}


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
    # a fresh lake fed the same data ends with the same files and manifest content
    other = Lake(str(tmp_path / "other"))
    other.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    assert _month_files(other) == _month_files(lake)
    assert other.bars.manifest().same_content(lake.bars.manifest())


def test_identical_rewrite_after_a_retiring_write_changes_no_byte(tmp_path: Path, csi_bars: pd.DataFrame) -> None:
    """Rerunning a day's ingest: the second identical write is a no-op at once (invariant 4)."""
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bars(csi_bars, "2020-01-01", "2020-12-31")
    day = csi_bars[csi_bars["date"] == "2020-07-01"]
    first = lake.write_bars(day.assign(close=day["close"] + 1), "2020-07-01", "2020-07-01")  # retires July's file
    assert not first.unchanged and first.months == ("2020-07",)
    before = lake.snapshot()
    again = lake.write_bars(day.assign(close=day["close"] + 1), "2020-07-01", "2020-07-01")
    assert again.unchanged and again.months == () and again.generation == first.generation
    assert lake.snapshot() == before


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


def _one_day(day: str, value: float) -> pa.Table:
    d = date.fromisoformat(day)
    return pa.table({"date": pa.array([d, d], pa.date32()), "symbol": pa.array(["A", "B"], pa.large_string()),
                     "x": pa.array([value, -value], pa.float64())})


def _interleave(ds, other_write):  # type: ignore[no-untyped-def]
    """Make ``ds``'s next commit lose the race: another writer commits just before it swaps."""
    real = ds.store.swap
    calls = {"n": 0}

    def swap(expected, payload):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            other_write()
        return real(expected, payload)

    ds.store.swap = swap
    return calls


def test_a_lost_commit_race_raises_and_leaves_no_trace(tmp_path: Path) -> None:
    from quant_core.data.commit import WriteConflict

    lake = Lake(str(tmp_path / "lake"))
    ds = lake.dataset("x")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    rival = Lake(str(tmp_path / "lake")).dataset("x")
    _interleave(ds, lambda: rival.write(_one_day("2020-02-03", 2.0), "2020-02-03", "2020-02-03"))
    with pytest.raises(WriteConflict, match=r"lake dataset file://.*/lake/x: another writer committed"):
        ds.write(_one_day("2020-03-04", 3.0), "2020-03-04", "2020-03-04")
    # the rival's write is there, ours is not, and the March file we uploaded was removed
    assert ds.dates() == [date(2020, 1, 2), date(2020, 2, 3)]
    assert not (tmp_path / "lake/x/month=2020-03").exists() or not any((tmp_path / "lake/x/month=2020-03").iterdir())
    assert not list((tmp_path / "lake").rglob(".tmp-*"))


def test_a_lost_commit_race_is_re_applied_on_the_new_manifest(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    ds = lake.dataset("x")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    rival = Lake(str(tmp_path / "lake")).dataset("x")
    calls = _interleave(ds, lambda: rival.write(_one_day("2020-01-03", 2.0), "2020-01-03", "2020-01-03"))
    res = ds.write(_one_day("2020-01-06", 3.0), "2020-01-06", "2020-01-06", retries=2)
    assert calls["n"] == 2 and res.generation == 3
    # same month: the re-applied write kept the rival's day
    got = ds.read().to_pandas()
    assert sorted(set(got["date"])) == [date(2020, 1, 2), date(2020, 1, 3), date(2020, 1, 6)]


def test_retries_exhausted_is_a_clear_error_and_nothing_changes(tmp_path: Path) -> None:
    from quant_core.data.commit import WriteConflict

    lake = Lake(str(tmp_path / "lake"))
    ds = lake.dataset("x")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    rival = Lake(str(tmp_path / "lake")).dataset("x")
    real, n = ds.store.swap, {"i": 0}

    def always_beaten(expected, payload):  # type: ignore[no-untyped-def]
        n["i"] += 1
        rival.write(_one_day("2020-01-03", float(n["i"])), "2020-01-03", "2020-01-03")
        return real(expected, payload)

    ds.store.swap = always_beaten  # type: ignore[method-assign]
    with pytest.raises(WriteConflict, match=r"lake dataset .*/x: the write of 2020-01-06..2020-01-06 lost the commit "
                                            r"race to other writers 3 times in a row; nothing was written"):
        ds.write(_one_day("2020-01-06", 9.0), "2020-01-06", "2020-01-06", retries=2)
    assert date(2020, 1, 6) not in ds.dates()


@pytest.mark.parametrize("mode", ["disjoint", "overlap"])
def test_two_processes_racing_lose_no_write(tmp_path: Path, mode: str) -> None:
    """Measured before the compare-and-swap: 5 of 60 rounds lost a write reported as successful."""
    from tests.support.lake_race import lost_writes, race

    uri = str(tmp_path / "lake")
    results = race(uri, mode, rounds=60)
    errors = [e for w in results.values() for (_r, _g, e) in w if e]
    assert errors == []
    gens = sorted(g for w in results.values() for (_r, g, _e) in w if g is not None)
    assert gens == list(range(1, 121)), "every write committed exactly one generation"
    assert lost_writes(Lake(uri).dataset("race"), mode, results) == []


def test_generations_history_and_reading_an_earlier_one(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"), keep_generations=3)
    ds = lake.dataset("x")
    for i in range(1, 6):  # five commits of the same day: 1.0 .. 5.0
        ds.write(_one_day("2020-01-02", float(i)), "2020-01-02", "2020-01-02", writer=f"run {i}")
    hist = ds.history()
    assert [c.generation for c in hist] == [3, 4, 5]
    assert [c.writer for c in hist] == ["run 3", "run 4", "run 5"]
    assert all(c.months == ("2020-01",) and c.rows == 2 and c.start == "2020-01-02" for c in hist)
    assert ds.read(version=4).column("x").to_pylist() == [4.0, -4.0]
    assert ds.read(version=3).column("x").to_pylist() == [3.0, -3.0]
    assert ds.read().column("x").to_pylist() == [5.0, -5.0]
    with pytest.raises(LakeError, match=r"generation 2 was not kept \(kept generations: 3..5; the lake keeps the last 3\)"):
        ds.read(version=2)
    # exactly the files of the kept generations remain: three month files, two earlier manifests
    months = sorted(p.name for p in (tmp_path / "lake/x/month=2020-01").iterdir())
    assert len(months) == 3
    assert sorted(p.name for p in (tmp_path / "lake/x/_history").iterdir()) == ["00000003.json", "00000004.json"]


def test_a_file_shared_with_a_kept_generation_survives(tmp_path: Path) -> None:
    """Writing back an earlier version's bytes reuses its file; dropping that generation later keeps it."""
    lake = Lake(str(tmp_path / "lake"), keep_generations=2)
    ds = lake.dataset("x")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    ds.write(_one_day("2020-01-02", 2.0), "2020-01-02", "2020-01-02")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")  # same bytes as generation 1
    ds.write(_one_day("2020-01-02", 3.0), "2020-01-02", "2020-01-02")
    assert ds.read(version=3).column("x").to_pylist() == [1.0, -1.0]
    assert ds.read().column("x").to_pylist() == [3.0, -3.0]


def test_to_pyarrow_dataset_is_the_current_generation_only(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    ds = lake.dataset("x")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    ds.write(_one_day("2020-01-02", 2.0), "2020-01-02", "2020-01-02")  # the old file stays (kept generation)
    assert len(list((tmp_path / "lake/x").rglob("*.parquet"))) == 2
    current = ds.to_pyarrow_dataset().to_table()
    assert current.column("x").to_pylist() == [2.0, -2.0]
    assert ds.to_pyarrow_dataset(version=1).to_table().column("x").to_pylist() == [1.0, -1.0]
    import pyarrow.dataset as pads

    globbed = pads.dataset(str(tmp_path / "lake/x"), format="parquet", exclude_invalid_files=True).to_table()
    assert globbed.num_rows == 4  # what a glob of the folder would (wrongly) see


def test_a_failed_upload_removes_the_months_already_uploaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import quant_core.data.lake as lake_module

    lake = Lake(str(tmp_path / "lake"))
    ds = lake.dataset("x")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    before = lake.snapshot()
    real = lake_module._write_object

    def failing(fs, path, payload, *, create_only=False):  # type: ignore[no-untyped-def]
        if "month=2020-03" in path:
            raise OSError("disk full (simulated)")
        return real(fs, path, payload, create_only=create_only)

    monkeypatch.setattr(lake_module, "_write_object", failing)
    t = pa.concat_tables([_one_day("2020-02-03", 2.0), _one_day("2020-03-03", 3.0), _one_day("2020-04-01", 4.0)])
    with pytest.raises(LakeError, match=r"cannot write month=2020-03/.*disk full"):
        ds.write(t, "2020-02-01", "2020-04-30")
    assert lake.snapshot() == before  # February's and April's uploads were removed


def test_stale_temporary_files_are_swept(tmp_path: Path) -> None:
    import os

    lake = Lake(str(tmp_path / "lake"))
    ds = lake.dataset("x")
    ds.write(_one_day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    stale = tmp_path / "lake/x/.tmp-crashed"
    stale.write_bytes(b"half a manifest")
    os.utime(stale, (1, 1))
    fresh = tmp_path / "lake/x/.tmp-inflight"
    fresh.write_bytes(b"another writer, right now")
    ds.write(_one_day("2020-01-03", 1.0), "2020-01-03", "2020-01-03")
    assert not stale.exists() and fresh.exists()


def test_empty_dataset_and_bad_names(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    assert lake.read_bars().empty
    with pytest.raises(LakeError, match="empty"):
        lake.bars.read()
    with pytest.raises(LakeError, match="not a valid dataset name"):
        lake.dataset("../escape")
