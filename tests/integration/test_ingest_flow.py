"""The ingest flow and CLI on a temporary Prefect API: real data, idempotence, and every bad input."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from quant_core.data.lake import Lake

pytestmark = pytest.mark.integration

SYN = "synthetic:symbols=12,start=2021-01-01,end=2021-06-30,seed=5"
runner = CliRunner()


def data_snapshot(lake_dir: Path) -> dict[str, str]:
    """Everything in the lake except reports/ (which may gain failure reports)."""
    return {k: v for k, v in Lake(str(lake_dir)).snapshot().items() if not k.startswith("reports/")}


def cli(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit code, stdout + stderr)."""
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def cli_json(*args: str) -> dict[str, object]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


@pytest.fixture()
def base_lake(tmp_path: Path, prefect_server: None) -> Path:
    """A lake holding January-February 2021 of the synthetic market."""
    lake = tmp_path / "lake"
    code, out = cli("ingest", "--source", SYN, "--start", "2021-01-01", "--end", "2021-02-28", "--lake", str(lake))
    assert code == 0, out
    return lake


def test_ingest_synthetic_then_again_is_idempotent(base_lake: Path) -> None:
    before = data_snapshot(base_lake)
    summary = cli_json("ingest", "--source", SYN, "--start", "2021-01-01", "--end", "2021-02-28",
                       "--lake", str(base_lake))
    assert summary["months_rewritten"] == []
    assert summary["lake"]["first_date"] >= "2021-01-01"  # type: ignore[index,operator]
    assert data_snapshot(base_lake) == before
    reports = list((base_lake / "reports" / "validation").rglob("report.json"))
    assert len(reports) == 2 and list((base_lake / "reports").rglob("index.html"))


def test_daily_increment_appends_one_day_with_its_features(base_lake: Path, tmp_path: Path) -> None:
    summary = cli_json("ingest", "--source", SYN, "--start", "2021-03-01", "--end", "2021-03-01", "--lake", str(base_lake))
    lake = Lake(str(base_lake))
    assert lake.calendar().last == date(2021, 3, 1)
    n = len(lake.read_bars("2021-03-01", "2021-03-01"))
    feats, labels = summary["features"]  # type: ignore[misc]
    # only the new day's features are computed; the new day reveals LABEL0 of two days before
    assert (feats["start"], feats["end"], feats["rows"]) == ("2021-03-01", "2021-03-01", n)
    assert labels["end"] == "2021-02-25"
    # ... and they equal a one-pass recompute of the same lake from scratch
    from quant_core.features import get_feature_set
    from quant_core.features.store import update_features

    fresh = Lake(str(tmp_path / "fresh"))
    fresh.write_bars(lake.read_bars(), "2021-01-01", "2021-03-01")
    fs = get_feature_set("alpha158")
    update_features(fresh, fs, "2021-01-01", "2021-03-01")
    assert fresh.dataset("features/alpha158").read().equals(lake.dataset("features/alpha158").read())


def test_features_command_recomputes_a_range(base_lake: Path) -> None:
    summary = cli_json("features", "--start", "2021-02-01", "--end", "2021-02-28", "--lake", str(base_lake))
    feats = summary["updates"][0]  # type: ignore[index]
    assert feats["months_rewritten"] == []  # identical to what ingest stored
    code, out = cli("features", "--start", "2022-01-01", "--end", "2022-01-31", "--lake", str(base_lake))
    assert code == 1 and "no bars in 2022-01-01..2022-01-31" in out, out
    code, out = cli("features", "--start", "2021-02-01", "--end", "2021-02-28", "--set", "alpha999", "--lake", str(base_lake))
    assert code == 1 and "alpha999" in out, out


def test_real_csi300_ingest_passes_validation(tmp_path: Path, csi300_path: Path, prefect_server: None) -> None:
    lake = tmp_path / "lake"
    summary = cli_json("ingest", "--source", f"parquet:{csi300_path}", "--start", "2020-01-01", "--end", "2025-04-07",
                       "--lake", str(lake))
    # SOURCE.md: 300 symbols, 368,626 rows, 1,273 trading days
    assert (summary["rows"], summary["symbols"], summary["dates"]) == (368626, 300, 1273)
    back = Lake(str(lake)).read_bars("2021-08-10", "2021-08-10", symbols=["SZ000792"])
    assert back["close"].iloc[0] == pytest.approx(35.90)


# -- bad input: each is refused with a clear message, and the lake's data is unchanged -------------

def _csv_from_lake(lake: Path, tmp: Path, start: str, end: str) -> pd.DataFrame:
    df = Lake(str(lake)).read_bars(start, end)
    df["date"] = df["date"].dt.strftime("%Y-%m-%d")
    return df


def _write(df: pd.DataFrame, tmp: Path, name: str = "drop.csv") -> Path:
    path = tmp / "drops" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def _march(base_lake: Path, tmp_path: Path) -> pd.DataFrame:
    """Valid bars for 2021-03-01..03-05, taken from the same synthetic market."""
    from quant_core.data.sources import parse_source

    df = parse_source(SYN).extract(date(2021, 3, 1), date(2021, 3, 5))
    df["date"] = df["date"].dt.strftime("%Y-%m-%d")
    return df


BAD_CASES = {
    "nan_price": (lambda d: d.assign(close=np.where(d.index == 3, np.nan, d["close"])), r"close.*(null|NaN|missing)"),
    "inf_price": (lambda d: d.assign(high=np.where(d.index == 4, np.inf, d["high"])), r"high"),
    "negative_volume": (lambda d: d.assign(volume=np.where(d.index == 2, -5.0, d["volume"])), r"volume"),
    "high_below_low": (lambda d: d.assign(high=np.where(d.index == 1, d["low"] * 0.5, d["high"])), r"high.*low|low.*high"),
    "duplicate_rows": (lambda d: pd.concat([d, d.iloc[[0]]]), r"unique|duplicate"),
    "weekend_date": (lambda d: d.assign(date=np.where(d.index == 0, "2021-03-06", d["date"])), r"weekday|weekend|2021-03-06"),
    "bad_symbol": (lambda d: d.assign(symbol=np.where(d.index == 0, "sh.600000", d["symbol"])), r"sh\.600000|symbol"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_values_fail_validation_and_leave_the_lake_unchanged(case: str, base_lake: Path, tmp_path: Path) -> None:
    mutate, pattern = BAD_CASES[case]
    df = mutate(_march(base_lake, tmp_path).reset_index(drop=True))
    src = _write(df, tmp_path)
    before = data_snapshot(base_lake)
    # the range includes the weekend so a weekend row reaches the gate (sources filter the range)
    code, out = cli("ingest", "--source", f"csv:{src}", "--start", "2021-03-01", "--end", "2021-03-07", "--lake", str(base_lake))
    assert code == 1, out
    assert "error:" in out and ("drop.csv" in out or "csv:" in out)
    assert __import__("re").search(pattern, out, flags=__import__("re").I | __import__("re").S), out
    assert data_snapshot(base_lake) == before
    assert list((base_lake / "reports").rglob("report.json")), "the failure report goes to reports/"


def test_rows_outside_the_requested_range_never_reach_the_lake(base_lake: Path, tmp_path: Path) -> None:
    """File sources filter the range; the gate (unit-tested) and the lake's write check back it up."""
    df = _march(base_lake, tmp_path).reset_index(drop=True)
    df.loc[0, "date"] = "2021-03-08"
    src = _write(df, tmp_path)
    code, out = cli("ingest", "--source", f"csv:{src}", "--start", "2021-03-01", "--end", "2021-03-05", "--lake", str(base_lake))
    assert code == 0, out
    assert date(2021, 3, 8) not in Lake(str(base_lake)).calendar()


def test_future_date_is_refused(base_lake: Path, tmp_path: Path) -> None:
    future = date.today() + timedelta(days=30)
    while future.weekday() >= 5:
        future += timedelta(days=1)
    df = _march(base_lake, tmp_path)
    df["date"] = future.isoformat()
    df = df.drop_duplicates(["date", "symbol"])
    src = _write(df, tmp_path)
    before = data_snapshot(base_lake)
    code, out = cli("ingest", "--source", f"csv:{src}", "--start", future.isoformat(), "--end", future.isoformat(),
                    "--lake", str(base_lake))
    assert code == 1 and "future" in out.lower(), out
    assert data_snapshot(base_lake) == before


@pytest.mark.parametrize(
    "content,pattern",
    [
        ("date,symbol,open,high,low,close,volume\n2021-03-01,S00001,1,2,0.5,1.5,100\n2021-03-02,S00001,1,2\x00,,,\n",
         r"drop\.csv.*line"),
        ("date,symbol,open,high,low,volume\n2021-03-01,S00001,1,2,0.5,100\n", r"drop\.csv.*close"),
        ("date,symbol,open,high,low,close,volume\n2021-03-01,S00001,1,2,0.5,abc,100\n", r"drop\.csv.*close.*abc"),
        ("date,symbol,open,high,low,close,volume\n", r"no bars|empty"),
    ],
    ids=["malformed_csv", "missing_column", "wrong_type", "empty_source"],
)
def test_unreadable_sources_fail_and_leave_the_lake_unchanged(content: str, pattern: str, base_lake: Path,
                                                              tmp_path: Path) -> None:
    src = tmp_path / "drops" / "drop.csv"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(content)
    before = data_snapshot(base_lake)
    code, out = cli("ingest", "--source", f"csv:{src}", "--start", "2021-03-01", "--end", "2021-03-05", "--lake", str(base_lake))
    assert code == 1, out
    assert __import__("re").search(pattern, out, flags=__import__("re").I | __import__("re").S), out
    assert data_snapshot(base_lake) == before


def test_corrupt_parquet_in_the_lake(base_lake: Path, tmp_path: Path) -> None:
    manifest = json.loads((base_lake / "bars" / "_manifest.json").read_text())
    victim = base_lake / "bars" / manifest["partitions"]["2021-02"]["file"]
    victim.write_bytes(b"PAR1 garbage")
    before = data_snapshot(base_lake)
    code, out = cli("ingest", "--source", SYN, "--start", "2021-02-15", "--end", "2021-02-19", "--lake", str(base_lake))
    assert code == 1 and "corrupt" in out and "month=2021-02" in out, out
    assert data_snapshot(base_lake) == before


def test_unreachable_s3_source(base_lake: Path, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    from flows.local_services import free_port
    from tasks.bars import extract_bars

    monkeypatch.setenv("QONLINE_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    # the same three retries of an I/O failure, without their 1 + 4 + 15 s of waiting
    monkeypatch.setattr(extract_bars, "retry_delay_seconds", [0.0, 0.0, 0.0])
    before = data_snapshot(base_lake)
    code, out = cli("ingest", "--source", "parquet:s3://nobucket/drops", "--start", "2021-03-01", "--end", "2021-03-05",
                    "--lake", str(base_lake))
    assert code != 0 and "nobucket" in out, out
    # an unreachable endpoint is I/O: tried 1 + 3 times before the run fails
    attempts = [r for r in caplog.records if "Task run failed with exception" in r.getMessage() and "nobucket" in r.getMessage()]
    assert len(attempts) == 4, [r.getMessage()[:120] for r in attempts]
    assert data_snapshot(base_lake) == before


def test_config_file_is_honoured(tmp_path: Path, prefect_server: None) -> None:
    lake = tmp_path / "cfg-lake"
    cfg = tmp_path / "q.yaml"
    cfg.write_text(f"lake_uri: {lake}\nsource: '{SYN}'\n")
    code, out = cli("ingest", "--start", "2021-01-04", "--end", "2021-01-08", "--config", str(cfg))
    assert code == 0, out
    assert Lake(str(lake)).calendar().first == date(2021, 1, 4)
    shutil.rmtree(lake)


# -- exchange calendar: holidays are "nothing to do", a missing session is a broken feed ----------
@pytest.fixture()
def xshg_drop(tmp_path: Path, csi300_path: Path) -> tuple[Path, Path]:
    """CSI 300 bars of 2024-09-23 .. 2024-10-11 (National Day week inside) as a Parquet drop, and a config."""
    df = pd.read_parquet(csi300_path)
    df = df[(df["date"] >= date(2024, 9, 23)) & (df["date"] <= date(2024, 10, 11))]
    drop = tmp_path / "drop.parquet"
    df.to_parquet(drop, index=False)
    cfg = tmp_path / "q.yaml"
    cfg.write_text(f"lake_uri: {tmp_path / 'lake'}\nexchange: XSHG\nsource: parquet:{drop}\n")
    return drop, cfg


def test_a_holiday_range_is_nothing_to_do(xshg_drop: tuple[Path, Path], tmp_path: Path, prefect_server: None) -> None:
    _drop, cfg = xshg_drop
    summary = cli_json("ingest", "--start", "2024-10-01", "--end", "2024-10-07", "--config", str(cfg))
    assert summary["nothing_to_do"] == "nothing to do: 2024-10-01..2024-10-07 holds no session of XSHG"
    assert not (tmp_path / "lake").exists() or data_snapshot(tmp_path / "lake") == {}
    ok = cli_json("ingest", "--start", "2024-09-23", "--end", "2024-10-11", "--config", str(cfg))
    assert ok["dates"] == 10 and ok["rows"] > 2500


def test_a_session_without_bars_fails_and_stores_nothing(xshg_drop: tuple[Path, Path], tmp_path: Path,
                                                          prefect_server: None) -> None:
    drop, cfg = xshg_drop
    df = pd.read_parquet(drop)
    df[df["date"] != date(2024, 10, 9)].to_parquet(drop, index=False)
    code, out = cli("ingest", "--start", "2024-10-08", "--end", "2024-10-10", "--config", str(cfg))
    assert code == 1, out
    assert "no bars for 1 session(s) of XSHG: 2024-10-09" in out and "not a holiday" in out
    assert not (tmp_path / "lake" / "bars").exists()


def test_an_unknown_exchange_is_refused(xshg_drop: tuple[Path, Path], tmp_path: Path, prefect_server: None) -> None:
    _drop, cfg = xshg_drop
    cfg.write_text(cfg.read_text().replace("XSHG", "XQQQ"))
    code, out = cli("ingest", "--start", "2024-10-08", "--end", "2024-10-10", "--config", str(cfg))
    assert code == 1 and "exchange 'XQQQ'" in out and "not a known exchange calendar" in out, out
    assert not (tmp_path / "lake" / "bars").exists()


def test_lake_history_names_each_run_and_reads_back(base_lake: Path) -> None:
    cli_json("ingest", "--source", SYN, "--start", "2021-03-01", "--end", "2021-03-01", "--lake", str(base_lake))
    hist = runner.invoke(app, ["lake", "history", "bars", "--lake", str(base_lake), "--json"])
    assert hist.exit_code == 0, hist.stdout + hist.stderr
    commits = json.loads(hist.stdout)
    assert [c["generation"] for c in commits] == [1, 2]
    assert commits[1]["start"] == commits[1]["end"] == "2021-03-01" and commits[1]["months"] == ["2021-03"]
    assert all(c["writer"].startswith("flow run ingest") for c in commits), commits
    lake = Lake(str(base_lake))
    assert date(2021, 3, 1) not in {d for d in lake.bars.dates(version=1)}
    assert lake.bars.read(version=1).num_rows == commits[0]["rows"]
    code, out = cli("lake", "history", "bars", "--lake", str(base_lake))
    assert code == 0 and "2021-03-01..2021-03-01" in out, out
    code, out = cli("lake", "history", "../x", "--lake", str(base_lake))
    assert code == 1 and "not a valid dataset name" in out
