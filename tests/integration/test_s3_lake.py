"""The lake on a real S3-compatible server (SeaweedFS over HTTP)."""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from quant_core.data.bars import coerce_bars
from quant_core.data.lake import Lake
from quant_core.errors import LakeError
from quant_core.settings import S3Options

pytestmark = pytest.mark.integration


def _options(server) -> S3Options:
    return S3Options(
        endpoint_url=server.endpoint_url,
        access_key_id=SecretStr(server.access_key),
        secret_access_key=SecretStr(server.secret_key),
    )


@pytest.fixture(scope="module")
def bars(csi300_path: Path) -> pd.DataFrame:
    df = pd.read_parquet(csi300_path)
    df = df[(df["date"] >= date(2020, 1, 1)) & (df["date"] < date(2020, 7, 1))]
    return coerce_bars(df.assign(vwap=df["amount"] / df["volume"]), source="csi300")


def test_s3_roundtrip_idempotent_and_pruned(s3_server, bars: pd.DataFrame) -> None:
    lake = Lake(f"s3://{s3_server.bucket}/roundtrip", _options(s3_server))
    lake.write_bars(bars, "2020-01-01", "2020-06-30")
    back = lake.read_bars()
    pd.testing.assert_frame_equal(back, bars.sort_values(["date", "symbol"]).reset_index(drop=True), check_dtype=False)
    snap = lake.snapshot()
    assert lake.write_bars(bars, "2020-01-01", "2020-06-30").unchanged
    assert lake.snapshot() == snap
    few = lake.read_bars("2020-04-01", "2020-04-30", symbols=["SH600000"], columns=["date", "symbol", "close"])
    assert set(few["symbol"]) == {"SH600000"} and few["date"].min() >= pd.Timestamp("2020-04-01")


def test_reader_never_sees_a_half_replaced_date(s3_server, bars: pd.DataFrame) -> None:
    """A writer flips a whole month between two versions; concurrent readers must see one or the other."""
    lake = Lake(f"s3://{s3_server.bucket}/concurrent", _options(s3_server))
    lake.write_bars(bars, "2020-01-01", "2020-06-30")
    march = bars[(bars["date"] >= "2020-03-01") & (bars["date"] <= "2020-03-31")]
    versions = [march.assign(close=march["close"] * 1.0), march.assign(close=march["close"] * 3.0)]
    expected = {v: np.sort(x["close"].to_numpy()) for v, x in enumerate(versions)}
    stop = threading.Event()
    errors: list[str] = []
    reads = {"n": 0}

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 40:
            lake.write_bars(versions[i % 2], "2020-03-01", "2020-03-31")
            i += 1
        stop.set()

    def reader() -> None:
        r = Lake(f"s3://{s3_server.bucket}/concurrent", _options(s3_server))
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                got = r.read_bars("2020-03-01", "2020-03-31")
            except Exception as exc:  # a reader that crashes is a failure too, not a silent thread death
                errors.append(f"read {reads['n']}: {type(exc).__name__}: {exc}")
                continue
            reads["n"] += 1
            closes = np.sort(got["close"].to_numpy())
            if not any(len(closes) == len(e) and np.allclose(closes, e) for e in expected.values()):
                errors.append(f"read {reads['n']}: {len(closes)} rows matching neither version")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert reads["n"] >= 5, "the reader did not overlap the writer"
    assert errors == []


def test_parquet_source_on_s3(s3_server, bars: pd.DataFrame) -> None:
    import boto3

    from quant_core.data.sources import parse_source
    from quant_core.data.storage import make_resolver

    client = boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key, region_name="us-east-1",
    )
    for month, g in bars.groupby(bars["date"].dt.month):
        client.put_object(Bucket=s3_server.bucket, Key=f"drops/m{month:02d}.parquet", Body=g.to_parquet(index=False))
    source = parse_source(f"parquet:s3://{s3_server.bucket}/drops", make_resolver(_options(s3_server)))
    got = source.extract(date(2020, 2, 1), date(2020, 3, 31))
    exp = bars[(bars["date"] >= "2020-02-01") & (bars["date"] <= "2020-03-31")]
    assert len(got) == len(exp) and set(got["symbol"]) == set(exp["symbol"])


def test_unreachable_endpoint_is_a_clear_error() -> None:
    from flows.local_services import free_port

    opts = S3Options(
        endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id=SecretStr("x"),
        secret_access_key=SecretStr("y"), connect_timeout=1, request_timeout=2,
    )
    lake = Lake("s3://nobucket/lake", opts)
    t0 = time.monotonic()
    with pytest.raises(LakeError, match=r"s3://nobucket/lake.*cannot"):
        lake.check_reachable()
    with pytest.raises(LakeError, match=r"nobucket/lake/bars"):
        lake.read_bars("2020-01-01", "2020-01-31")
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("mode", ["disjoint", "overlap"])
def test_two_processes_racing_on_s3_lose_no_write(s3_server, mode: str) -> None:
    """Measured before the conditional PUT: 13 of 40 rounds on SeaweedFS lost a reported write."""
    from tests.support.lake_race import lost_writes, race

    uri = f"s3://{s3_server.bucket}/race-{mode}"
    creds = {"endpoint_url": s3_server.endpoint_url, "key": s3_server.access_key, "secret": s3_server.secret_key}
    results = race(uri, mode, rounds=40, s3=creds)
    errors = [e for w in results.values() for (_r, _g, e) in w if e]
    assert errors == []
    gens = sorted(g for w in results.values() for (_r, g, _e) in w if g is not None)
    assert gens == list(range(1, 81)), "every write committed exactly one generation"
    assert lost_writes(Lake(uri, _options(s3_server)).dataset("race"), mode, results) == []


def test_s3_conflict_history_and_external_readers(s3_server) -> None:
    import pyarrow as pa

    from quant_core.data.commit import WriteConflict

    def day(d: str, v: float) -> pa.Table:
        x = date.fromisoformat(d)
        return pa.table({"date": pa.array([x], pa.date32()), "symbol": pa.array(["A"], pa.large_string()),
                         "x": pa.array([v])})

    uri = f"s3://{s3_server.bucket}/history"
    ds = Lake(uri, _options(s3_server), keep_generations=2).dataset("x")
    ds.write(day("2020-01-02", 1.0), "2020-01-02", "2020-01-02")
    ds.write(day("2020-01-02", 2.0), "2020-01-02", "2020-01-02")
    ds.write(day("2020-01-02", 3.0), "2020-01-02", "2020-01-02")
    assert [c.generation for c in ds.history()] == [2, 3]
    assert ds.read(version=2).column("x").to_pylist() == [2.0]
    with pytest.raises(LakeError, match="generation 1 was not kept"):
        ds.read(version=1)
    assert ds.to_pyarrow_dataset().to_table().column("x").to_pylist() == [3.0]
    # a rival commits between our read and our conditional PUT: 412, nothing switched, upload removed
    rival = Lake(uri, _options(s3_server)).dataset("x")
    real = ds.store.swap

    def beaten(expected, payload):  # type: ignore[no-untyped-def]
        rival.write(day("2020-01-03", 4.0), "2020-01-03", "2020-01-03")
        return real(expected, payload)

    ds.store.swap = beaten  # type: ignore[method-assign]
    before = {k for k in Lake(uri, _options(s3_server)).snapshot() if "month=2020-02" in k}
    with pytest.raises(WriteConflict, match="conditional PUT"):
        ds.write(day("2020-02-03", 5.0), "2020-02-03", "2020-02-03")
    after = {k for k in Lake(uri, _options(s3_server)).snapshot() if "month=2020-02" in k}
    assert before == after == set()
    assert ds.dates() == [date(2020, 1, 2), date(2020, 1, 3)]


def test_writer_lease_on_s3_refuses_a_second_run_and_is_freed(s3_server) -> None:
    from quant_core.data.lease import LakeLease, LeaseBusy

    lake = Lake(f"s3://{s3_server.bucket}/leased", _options(s3_server))
    with LakeLease(lake, "backfill on s3", ttl=1.2) as lease:
        time.sleep(2.5)  # renewed by conditional PUTs (every 0.3 s) past its ttl
        held = lease.holder()
        assert held is not None and held.what == "backfill on s3" and not lease.lost
        with pytest.raises(LeaseBusy, match="being written by backfill on s3"):
            LakeLease(Lake(f"s3://{s3_server.bucket}/leased", _options(s3_server)), "daily").acquire()
    assert LakeLease(lake, "probe").holder() is None
    with LakeLease(lake, "daily") as again:
        assert again.holder() is not None
