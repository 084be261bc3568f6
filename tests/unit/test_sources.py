"""Source specs, CSV/Parquet drops and Qlib binary data dirs."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from quant_core.data.bars import BAR_COLUMNS, BarSchemaError, bars_to_table, empty_bars
from quant_core.data.sources import (
    Source,
    SourceError,
    available_schemes,
    local_resolver,
    parse_source,
    register_source,
)
from quant_core.data.sources.files import FileSource
from quant_core.data.sources.qlib_bin import QlibBinSource
from quant_core.errors import QonlineError

ALL = (date(1990, 1, 1), date(2099, 12, 31))


def as_bars(df: pd.DataFrame) -> pd.DataFrame:
    """A frame in the bar schema's dtypes, sorted as sources return it."""
    out = df.loc[:, list(BAR_COLUMNS)].copy()
    out["date"] = pd.to_datetime(out["date"]).astype("datetime64[s]")
    out["symbol"] = out["symbol"].astype(str)
    for c in BAR_COLUMNS[2:]:
        out[c] = out[c].astype("float64")
    return out.sort_values(["date", "symbol"]).reset_index(drop=True)


def assert_bars_equal(got: pd.DataFrame, want: pd.DataFrame, rtol: float = 0.0) -> None:
    assert list(got.columns) == list(BAR_COLUMNS)
    pd.testing.assert_frame_equal(
        got, as_bars(want), check_exact=rtol == 0.0, rtol=rtol or 1e-5, check_dtype=False
    )
    assert got["date"].dtype == "datetime64[s]"


@pytest.fixture(scope="module")
def csi300(csi300_path: Path) -> pd.DataFrame:
    df = pd.read_parquet(csi300_path)
    df["date"] = pd.to_datetime(df["date"])
    return df


@pytest.fixture(scope="module")
def golden_bars(golden_dir: Path) -> pd.DataFrame:
    df = pd.read_parquet(golden_dir / "csi300_2020_2021_bars.parquet")
    df["date"] = pd.to_datetime(df["date"])  # the shared tool wants timestamps
    return df


def write_csv(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


GOOD_CSV = (
    "date,symbol,open,high,low,close,volume\n"
    "2020-01-02,AAA,10,11,9,10.5,1000\n"
    "2020-01-03,AAA,10.5,11,10,10.8,1200\n"
    "2020-01-02,BBB,20,21,19,20.5,500\n"
)


# --- specs and registry -----------------------------------------------------------------------


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(SourceError, match="unknown scheme 'ftp'") as err:
        parse_source("ftp:somewhere")
    for scheme in ("synthetic", "parquet", "csv", "qlib"):
        assert f"{scheme}:" in str(err.value)
    assert set(available_schemes()) >= {"synthetic", "parquet", "csv", "qlib"}


def test_source_error_is_a_value_error_and_a_qonline_error() -> None:
    assert issubclass(SourceError, ValueError)
    assert issubclass(SourceError, QonlineError)


@pytest.mark.parametrize("spec", ["parquet:", "csv:", "qlib:", "parquet"])
def test_path_specs_need_a_path(spec: str) -> None:
    with pytest.raises(SourceError, match="PATH"):
        parse_source(spec)


def test_spec_kinds_and_protocol(tmp_path: Path) -> None:
    for spec, kind in [
        ("synthetic:symbols=2", "SyntheticSource"),
        (f"parquet:{tmp_path}", "FileSource"),
        (f"CSV:{tmp_path}", "FileSource"),
        (f"qlib:{tmp_path}", "QlibBinSource"),
    ]:
        src = parse_source(spec)
        assert isinstance(src, Source)
        assert type(src).__name__ == kind
        assert src.spec == spec


def test_s3_needs_configured_settings() -> None:
    src = parse_source("parquet:s3://bucket/bars/")
    with pytest.raises(SourceError, match=r"^parquet:s3://bucket/bars/: .*S3") as err:
        src.extract(date(2020, 1, 1), date(2020, 1, 31))
    assert "settings" in str(err.value)
    with pytest.raises(SourceError, match="S3"):
        local_resolver("s3://bucket/key")


def test_register_source() -> None:
    calls: list[tuple[str, str]] = []

    class Empty:
        def __init__(self, spec: str) -> None:
            self.spec = spec

        def extract(self, start: date, end: date) -> pd.DataFrame:
            return empty_bars()

    def factory(spec: str, body: str, resolve: Callable[[str], tuple[pafs.FileSystem, str]]) -> Source:
        calls.append((spec, body))
        return Empty(spec)

    register_source("unit-test-empty", factory, replace=True)
    src = parse_source("unit-test-empty: x=1")
    assert calls == [("unit-test-empty: x=1", "x=1")]
    assert src.extract(date(2020, 1, 1), date(2020, 1, 2)).empty
    with pytest.raises(ValueError, match="already registered"):
        register_source("unit-test-empty", factory)


# --- Parquet --------------------------------------------------------------------------------------


def test_csi300_parquet_date_filter(csi300_path: Path, csi300: pd.DataFrame) -> None:
    src = parse_source(f"parquet:{csi300_path}")
    lo, hi = date(2021, 3, 1), date(2021, 6, 30)
    got = src.extract(lo, hi)
    want = csi300[(csi300["date"] >= pd.Timestamp(lo)) & (csi300["date"] <= pd.Timestamp(hi))]
    assert len(got) == len(want) > 10_000
    assert got["date"].min() == pd.Timestamp("2021-03-01") and got["date"].max() == pd.Timestamp("2021-06-30")
    want = want.assign(vwap=want["amount"] / want["volume"])
    assert_bars_equal(got, want)  # factor kept as stored (adj_close ignored), vwap = amount / volume
    # inclusive single day; a range without data is empty but well-formed
    one = src.extract(date(2021, 3, 1), date(2021, 3, 1))
    assert set(one["date"]) == {pd.Timestamp("2021-03-01")} and len(one) == (csi300["date"] == "2021-03-01").sum()
    none = src.extract(date(2010, 1, 1), date(2010, 12, 31))
    assert none.empty and list(none.columns) == list(BAR_COLUMNS)


def test_parquet_folder_recursive_sorted_and_hive(tmp_path: Path, csi300: pd.DataFrame) -> None:
    sub = csi300[(csi300["date"] <= "2020-03-31") & csi300["symbol"].isin(["SH600000", "SZ000001", "SH601318"])]
    root = tmp_path / "drop"
    for i, (sym, g) in enumerate(sub.groupby("symbol")):
        folder = root / f"batch{i}" / "nested"
        folder.mkdir(parents=True)
        g.to_parquet(folder / f"{sym}.parquet", index=False)
    (root / "_SUCCESS").write_text("")
    (root / "_tmp").mkdir()
    sub.head(5).to_parquet(root / "_tmp" / "partial.parquet", index=False)  # a writer's temp file: skipped
    (root / "notes.txt").write_text("not data")
    src = parse_source(f"parquet:{root}")
    assert isinstance(src, FileSource)
    assert [Path(f).name for f in src.files()] == ["SH600000.parquet", "SH601318.parquet", "SZ000001.parquet"]
    got = src.extract(date(2020, 2, 1), date(2020, 2, 29))
    want = sub[(sub["date"] >= "2020-02-01") & (sub["date"] <= "2020-02-29")]
    assert_bars_equal(got, want.assign(vwap=want["amount"] / want["volume"]))

    # hive folders supply the date column the files lack; folders outside the range are not read
    hive = tmp_path / "hive"
    for day, g in sub.groupby("date"):
        folder = hive / f"date={day:%Y-%m-%d}"
        folder.mkdir(parents=True)
        g.drop(columns="date").to_parquet(folder / "part-0.parquet", index=False)
    bad = hive / "date=2020-03-02" / "part-0.parquet"
    bad.write_bytes(b"not parquet")  # outside the requested range: never opened
    got = parse_source(f"parquet:{hive}").extract(date(2020, 2, 1), date(2020, 2, 29))
    assert_bars_equal(got, want.assign(vwap=want["amount"] / want["volume"]))
    with pytest.raises(SourceError, match="date=2020-03-02"):
        parse_source(f"parquet:{hive}").extract(date(2020, 3, 1), date(2020, 3, 31))


def test_parquet_timestamp_and_string_dates(tmp_path: Path) -> None:
    base = pd.DataFrame(
        {
            "Datetime": pd.to_datetime(["2020-01-02 00:00", "2020-01-03 00:00", "2020-01-06 00:00"]).tz_localize(
                "Asia/Shanghai"
            ),
            "Instrument": ["SH600000"] * 3,
            "OPEN": [1.0, 2.0, 3.0],
            "HIGH": [1.0, 2.0, 3.0],
            "LOW": [1.0, 2.0, 3.0],
            "CLOSE": [1.0, 2.0, 3.0],
            "VOLUME": [10, 20, 30],
        }
    )
    base.to_parquet(tmp_path / "tz.parquet", index=False)
    got = parse_source(f"parquet:{tmp_path / 'tz.parquet'}").extract(date(2020, 1, 3), date(2020, 1, 6))
    assert list(got["date"]) == [pd.Timestamp("2020-01-03"), pd.Timestamp("2020-01-06")]
    assert (got["factor"] == 1.0).all() and got["vwap"].isna().all()
    text = base.assign(Datetime=["20200102", "20200103", "20200106"])
    text.to_parquet(tmp_path / "text.parquet", index=False)
    got = parse_source(f"parquet:{tmp_path / 'text.parquet'}").extract(date(2020, 1, 3), date(2020, 1, 3))
    assert list(got["close"]) == [2.0]
    ints = base.assign(Datetime=[20200102, 20200103, 20200106])  # Tushare-style integer trade dates
    ints.to_parquet(tmp_path / "ints.parquet", index=False)
    got = parse_source(f"parquet:{tmp_path / 'ints.parquet'}").extract(date(2020, 1, 6), date(2020, 1, 31))
    assert list(got["date"]) == [pd.Timestamp("2020-01-06")] and list(got["close"]) == [3.0]


def test_parquet_bad_inputs(tmp_path: Path) -> None:
    good = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]),
            "symbol": ["A", "A", "A"],
            "open": [1.0, 1.0, 1.0],
            "high": [1.0, 1.0, 1.0],
            "low": [1.0, 1.0, 1.0],
            "close": ["1.0", "oops", "1.2"],
            "volume": [1.0, 1.0, 1.0],
        }
    )
    good.to_parquet(tmp_path / "strings.parquet", index=False)
    with pytest.raises(SourceError) as err:
        parse_source(f"parquet:{tmp_path / 'strings.parquet'}").extract(date(2020, 1, 3), date(2020, 1, 6))
    msg = str(err.value)
    assert "strings.parquet" in msg and "row 1" in msg and "'close'" in msg and "not a number" in msg

    good.drop(columns="volume").to_parquet(tmp_path / "novol.parquet", index=False)
    with pytest.raises(SourceError, match=r"novol\.parquet.*missing required column.*volume"):
        parse_source(f"parquet:{tmp_path / 'novol.parquet'}").extract(*ALL)

    write_csv(tmp_path / "fake.parquet", GOOD_CSV)
    with pytest.raises(SourceError, match=r"fake\.parquet: not a readable Parquet file"):
        parse_source(f"parquet:{tmp_path / 'fake.parquet'}").extract(*ALL)

    with pytest.raises(SourceError, match="does not exist"):
        parse_source(f"parquet:{tmp_path / 'nope'}").extract(*ALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"holds no \*\.parquet file"):
        parse_source(f"parquet:{tmp_path / 'empty'}").extract(*ALL)
    with pytest.raises(SourceError, match="after end"):
        parse_source(f"parquet:{tmp_path / 'novol.parquet'}").extract(date(2020, 2, 1), date(2020, 1, 1))


def test_s3_paths_go_through_the_resolver(tmp_path: Path, csi300: pd.DataFrame) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    sub = csi300[csi300["date"] <= "2020-01-10"]
    sub.to_parquet(bucket / "bars.parquet", index=False)
    seen: list[str] = []

    def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
        seen.append(uri)
        assert uri.startswith("s3://")
        return pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), uri.removeprefix("s3://")

    got = parse_source("parquet:s3://bucket/", resolve=resolve).extract(date(2020, 1, 1), date(2020, 1, 31))
    assert seen == ["s3://bucket/"]
    assert len(got) == len(sub)
    (bucket / "bad.parquet").write_bytes(b"garbage")
    with pytest.raises(SourceError, match=r"s3://bucket/bad\.parquet"):
        parse_source("parquet:s3://bucket", resolve=resolve).extract(*ALL)


# --- CSV ------------------------------------------------------------------------------------------


def test_csv_folder_round_trip(tmp_path: Path, golden_bars: pd.DataFrame) -> None:
    bars = golden_bars[golden_bars["symbol"].isin(sorted(golden_bars["symbol"].unique())[:6])]
    for i, (sym, g) in enumerate(bars.groupby("symbol")):
        out = tmp_path / "drop" / ("a" if i % 2 else "b") / f"{sym}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        g.assign(date=g["date"].dt.strftime("%Y-%m-%d")).to_csv(out, index=False)
    src = parse_source(f"csv:{tmp_path / 'drop'}")
    assert_bars_equal(src.extract(*ALL), bars)
    lo, hi = date(2021, 5, 6), date(2021, 5, 31)
    want = bars[(bars["date"] >= pd.Timestamp(lo)) & (bars["date"] <= pd.Timestamp(hi))]
    assert_bars_equal(src.extract(lo, hi), want)


def test_csv_yahoo_layout_adj_close_gives_factor(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "yahoo.csv",
        "\ufeffDate,Ticker,Open,High,Low,Close,Adj Close,Volume\n"
        "2020-01-02,AAPL,74.06,75.15,73.80,75.09,73.06,135480400\n"
        "2020-01-03,AAPL,74.29,75.14,74.13,74.36,72.35,146322800\n",
    )
    got = parse_source(f"csv:{path}").extract(*ALL)
    assert list(got["symbol"]) == ["AAPL", "AAPL"]
    np.testing.assert_allclose(got["factor"], [73.06 / 75.09, 72.35 / 74.36])
    assert got["vwap"].isna().all()


def test_csv_tushare_layout(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "ts.csv",
        "ts_code,trade_date,code,open,high,low,close,vol,amount,adj_factor\n"
        "000001.SZ,20200103,000001,16.94,17.31,16.92,17.18,1116194.81,1914495.47,108.031\n"
        "000001.SZ,20200102,000001,16.65,16.95,16.55,16.87,1530231.87,2571196.48,108.031\n",
    )
    got = parse_source(f"csv:{path}").extract(*ALL)
    assert list(got["date"]) == [pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03")]
    assert list(got["symbol"]) == ["000001", "000001"]  # a code stays text: leading zeros kept
    np.testing.assert_allclose(got["vwap"], [2571196.48 / 1530231.87, 1914495.47 / 1116194.81])
    assert (got["factor"] == 108.031).all()


def test_csv_values_are_not_judged(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "odd.csv",
        "date,symbol,open,high,low,close,volume,amount\n"
        "2020-01-02,AAA,10,9,11,,-5,0\n"
        "2020-01-02,AAA,10,11,9,NaN,0,0\n",
    )
    got = parse_source(f"csv:{path}").extract(*ALL)
    assert len(got) == 2 and got["close"].isna().all()
    assert list(got["volume"]) == [-5.0, 0.0]
    assert got["vwap"].iloc[0] == 0.0 and np.isnan(got["vwap"].iloc[1])  # amount / 0 volume: NaN, not inf


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (GOOD_CSV.replace("2020-01-03,AAA,10.5,11,10,10.8,1200", "2020-01-03,AAA,10.5,11,10,10.8"),
         ["line 3", "malformed CSV row", "6 field(s)", "header has 7"]),
        (GOOD_CSV.replace("10.5,11,10,10.8", "10.5,11,10,abc"), ["line 3", "column 'close'", "not a number", "'abc'"]),
        (GOOD_CSV.replace("2020-01-03,AAA", "2020-13-45,AAA"), ["line 3", "column 'date'", "not a date"]),
        (GOOD_CSV.replace("2020-01-03,AAA", "2020-01-03,"), ["line 3", "'symbol'", "symbol is empty"]),
        (GOOD_CSV.replace(",volume\n", ",vlm\n"), ["missing required column", "volume", "'vlm'"]),
        (GOOD_CSV.replace(",volume\n", ",Volume\n").replace("date,", "date,VOLUME,", 1), ["same name up to case"]),
        ("", ["empty"]),
        (GOOD_CSV.encode() + b"2020-01-06,AAA,\x00\x01\x02garbage\xff\n", ["line 5", "binary data"]),
        (GOOD_CSV.encode() + b"2020-01-06,C\xe9,1,1,1,1,1\n", ["line 5", "not UTF-8"]),
        (bytes(np.random.default_rng(3).integers(1, 256, 4000, dtype=np.uint8)), ["UTF-8"]),
    ],
    ids=["ragged", "non-numeric", "non-date", "no-symbol", "missing-column", "ambiguous", "empty", "binary",
         "latin1", "random-bytes"],
)
def test_csv_bad_inputs_name_file_line_column_and_rule(tmp_path: Path, content: str | bytes, needles: list[str]) -> None:
    path = write_csv(tmp_path / "in" / "bad.csv", content)
    with pytest.raises((SourceError, BarSchemaError)) as err:
        parse_source(f"csv:{tmp_path / 'in'}").extract(*ALL)
    msg = str(err.value)
    assert "bad.csv" in msg, msg
    for needle in needles:
        assert needle in msg, msg
    assert path.exists()


def test_csv_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "blank.csv", GOOD_CSV.replace("\n2020-01-03", "\n\n\n2020-01-03").replace("10.8", "x"))
    with pytest.raises(SourceError, match="line 5, column 'close'"):
        parse_source(f"csv:{path}").extract(*ALL)


# --- Qlib binary ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_tool(shared: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("qlib_alpha158_golden", shared / "tools" / "qlib_alpha158_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden_qlib(tmp_path_factory: pytest.TempPathFactory, golden_tool: ModuleType, golden_bars: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("qlib") / "qlib_data"
    golden_tool.write_qlib_dir(golden_bars, root)
    return root


def small_qlib(tmp_path: Path, golden_tool: ModuleType, golden_bars: pd.DataFrame) -> Path:
    root = tmp_path / "qlib_small"
    golden_tool.write_qlib_dir(golden_bars[golden_bars["symbol"].isin(["SH600018", "SZ000792"])], root)
    return root


def test_qlib_round_trip_of_the_golden_bars(golden_qlib: Path, golden_bars: pd.DataFrame) -> None:
    src = parse_source(f"qlib:{golden_qlib}")
    assert isinstance(src, QlibBinSource)
    got = src.extract(date(2020, 1, 1), date(2021, 12, 31))
    assert len(got) == len(golden_bars)  # suspended days (NaN inside a span) are not rows
    assert_bars_equal(got, golden_bars, rtol=3e-7)  # float32 storage
    gap = got[(got["symbol"] == "SZ000792") & (got["date"] > "2020-04-29") & (got["date"] < "2021-08-10")]
    assert gap.empty
    # a sub-range is the slice of the whole
    lo, hi = date(2021, 2, 1), date(2021, 3, 15)
    part = src.extract(lo, hi)
    want = got[(got["date"] >= pd.Timestamp(lo)) & (got["date"] <= pd.Timestamp(hi))].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, want, check_exact=True)
    assert src.extract(date(2019, 1, 1), date(2019, 12, 31)).empty


def test_qlib_without_factor_or_vwap(tmp_path: Path, golden_tool: ModuleType, golden_bars: pd.DataFrame) -> None:
    root = small_qlib(tmp_path, golden_tool, golden_bars)
    for f in root.glob("features/*/factor.day.bin"):
        f.unlink()
    for f in root.glob("features/*/vwap.day.bin"):
        f.unlink()
    got = parse_source(f"qlib:{root}").extract(date(2020, 1, 1), date(2020, 12, 31))
    src = golden_bars[golden_bars["symbol"].isin(["SH600018", "SZ000792"]) & (golden_bars["date"] <= "2020-12-31")]
    want = as_bars(src)
    assert (got["factor"] == 1.0).all() and got["vwap"].isna().all()
    # no factor: prices are the stored (adjusted) values
    np.testing.assert_allclose(got["close"], want["close"] * want["factor"], rtol=3e-7)
    np.testing.assert_allclose(got["volume"], want["volume"] / want["factor"], rtol=3e-7)


def test_qlib_symbols_are_upper_case(tmp_path: Path, golden_tool: ModuleType, golden_bars: pd.DataFrame) -> None:
    root = small_qlib(tmp_path, golden_tool, golden_bars)
    text = (root / "instruments" / "all.txt").read_text()
    (root / "instruments" / "all.txt").write_text(text.lower())
    got = parse_source(f"qlib:{root}").extract(date(2020, 1, 1), date(2020, 1, 31))
    assert set(got["symbol"]) == {"SH600018", "SZ000792"}


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (lambda r: (r / "calendars" / "day.txt").unlink(), ["calendar", "day.txt", "missing"]),
        (lambda r: (r / "instruments" / "all.txt").unlink(), ["instruments file", "all.txt", "missing"]),
        (lambda r: (r / "instruments" / "all.txt").write_text("SH600018 2020-01-02\n"), ["all.txt, line 1", "SYMBOL"]),
        (lambda r: (r / "calendars" / "day.txt").write_text("2020-01-02\nnot-a-day\n"), ["day.txt, line 2", "not a date"]),
        (lambda r: (r / "features" / "sh600018" / "close.day.bin").write_bytes(
            (r / "features" / "sh600018" / "close.day.bin").read_bytes()[:-2]), ["close.day.bin", "truncated"]),
        (lambda r: (r / "features" / "sh600018" / "close.day.bin").write_bytes(
            (r / "features" / "sh600018" / "close.day.bin").read_bytes()[:-400]), ["close.day.bin", "truncated",
                                                                                   "values stop at"]),
        (lambda r: (r / "features" / "sh600018" / "open.day.bin").write_bytes(b""), ["open.day.bin", "truncated"]),
        (lambda r: (r / "features" / "sh600018" / "volume.day.bin").unlink(), ["volume.day.bin", "missing"]),
        (lambda r: shutil.rmtree(r / "features" / "sz000792"), ["SZ000792", "features/sz000792", "missing"]),
        (lambda r: (r / "features" / "sh600018" / "high.day.bin").write_bytes(
            np.array([1e6, 1.0], dtype="<f4").tobytes()), ["high.day.bin", "corrupt header"]),
    ],
    ids=["no-calendar", "no-instruments", "bad-instrument-line", "bad-calendar-line", "ragged-bin", "short-bin",
         "empty-bin", "no-volume", "no-feature-dir", "bad-header"],
)
def test_qlib_bad_inputs(
    tmp_path: Path,
    golden_tool: ModuleType,
    golden_bars: pd.DataFrame,
    damage: Callable[[Path], object],
    needles: list[str],
) -> None:
    root = small_qlib(tmp_path, golden_tool, golden_bars)
    damage(root)
    with pytest.raises(SourceError) as err:
        parse_source(f"qlib:{root}").extract(date(2020, 1, 1), date(2021, 12, 31))
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_qlib_path_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        parse_source(f"qlib:{tmp_path / 'absent'}").extract(*ALL)
    write_csv(tmp_path / "file.txt", "x")
    with pytest.raises(SourceError, match="not a directory"):
        parse_source(f"qlib:{tmp_path / 'file.txt'}").extract(*ALL)


def test_parquet_file_written_by_bars_to_table_round_trips(tmp_path: Path) -> None:
    bars = parse_source("synthetic:symbols=5,start=2020-01-01,end=2020-03-31").extract(*ALL)
    pq.write_table(bars_to_table(bars), tmp_path / "bars.parquet")
    got = parse_source(f"parquet:{tmp_path / 'bars.parquet'}").extract(*ALL)
    pd.testing.assert_frame_equal(got, bars, check_exact=True)
    assert pa.types.is_date32(pq.read_schema(tmp_path / "bars.parquet").field("date").type)
