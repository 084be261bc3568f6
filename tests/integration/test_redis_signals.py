"""Signal snapshots in a real Redis: layout, idempotence, expiry, atomic switch under concurrent readers."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant_core.errors import ConfigError
from quant_core.online.redis_sink import RedisError, SignalStore, connect, mask_url, read_signals

pytestmark = pytest.mark.integration


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"symbol": [f"S{i:05d}" for i in range(n)], "score": rng.normal(size=n)})


@pytest.fixture()
def store(redis_url: str) -> SignalStore:
    return SignalStore(connect(redis_url), prefix=f"t{uuid.uuid4().hex[:8]}", retention_days=2)


def test_layout_latest_and_idempotence(store: SignalStore) -> None:
    f1, f2 = _frame(50, 1), _frame(50, 2)
    r1 = store.publish("s", date(2024, 1, 2), f1, {"models": "3", "run_id": "a", "data_as_of": "2024-01-02"})
    assert r1.published and r1.latest
    snap = store.read("s", top=5)
    assert snap is not None and snap.date == "2024-01-02" and snap.count == 50 and snap.meta["models"] == "3"
    best = f1.sort_values("score", ascending=False).head(5)
    assert [s for s, _ in snap.signals] == best["symbol"].tolist()
    assert [v for _, v in snap.signals] == pytest.approx(best["score"].tolist())
    # the same content again: nothing written, no event
    events = store.client.xlen(store.k_events)
    again = store.publish("s", date(2024, 1, 2), f1, {"models": "3", "run_id": "b", "data_as_of": "2024-01-02"})
    assert not again.published and store.client.xlen(store.k_events) == events
    # a later date moves latest forward; the earlier snapshot keeps its date pointer and ages out
    store.publish("s", date(2024, 1, 3), f2, {"models": "3", "run_id": "c"})
    latest = store.read("s")
    assert latest is not None and latest.date == "2024-01-03"
    old = store.read("s", "2024-01-02")
    assert old is not None and old.digest == r1.digest
    assert 0 < store.client.ttl(store.k_snap("s", "2024-01-02", r1.digest)) <= 2 * 86400
    assert store.client.ttl(store.k_snap("s", "2024-01-03", latest.digest)) == -1  # the latest never expires
    # publishing an older date (a backfill) never moves latest backwards
    store.publish("s", date(2023, 12, 29), f2, {"models": "2"})
    assert store.pointer("s") == ("2024-01-03", latest.digest)
    assert store.strategies() == ["s"]
    ev = store.client.xrange(store.k_events)
    assert [e[1]["date"] for e in ev] == ["2024-01-02", "2024-01-03", "2023-12-29"]


def test_bad_urls_and_unreachable_server() -> None:
    from flows.local_services import free_port

    with pytest.raises(ConfigError, match=r"redis_url 'http://x:1' must look like redis://"):
        connect("http://x:1")
    assert mask_url("redis://user:s3cret@host:6380/2") == "redis://user:***@host:6380/2"
    assert "s3cret" not in mask_url("rediss://:s3cret@host:6380/0")
    store = SignalStore(connect(f"redis://:pw@127.0.0.1:{free_port()}/0", timeout=0.5))
    with pytest.raises(RedisError, match="publishing signals s 2024-01-02 to Redis failed") as info:
        store.publish("s", date(2024, 1, 2), _frame(3, 0), {"models": "1"})
    assert "pw" not in str(info.value)


def _reader(url: str, prefix: str, expected: dict[str, tuple[list[str], list[float]]], seconds: float,
            out: Any) -> None:
    store = SignalStore(connect(url), prefix)
    reads = torn = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and reads < 20_000:
        snap = store.read("s")
        if snap is None:
            continue
        reads += 1
        want = expected.get(snap.meta.get("digest", ""))
        got = sorted(snap.signals)
        if want is None or snap.count != len(got) or [s for s, _ in got] != want[0] or \
                not np.allclose([v for _, v in got], want[1]):
            torn += 1
    out.put((reads, torn))


def test_concurrent_readers_never_see_a_torn_snapshot(redis_url: str) -> None:
    """Two snapshots of 5,000 symbols alternate; reader processes on loopback check every read."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = SignalStore(connect(redis_url), prefix)
    frames = [_frame(5000, 1), _frame(5000, 2).assign(symbol=lambda f: f["symbol"] + "X")]
    days = [date(2024, 1, 2), date(2024, 1, 3)]
    # publish both once to learn their digests (and what a reader must see for each)
    expected = {}
    for d, f in zip(days, frames, strict=True):
        r = store.publish("s", d, f, {"models": "1"})
        srt = f.sort_values("symbol")
        expected[r.digest] = (srt["symbol"].tolist(), srt["score"].tolist())
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(redis_url, prefix, expected, 8.0, out)) for _ in range(2)]
    for p in readers:
        p.start()
    time.sleep(1.5)  # let the readers start reading
    times = []
    deadline = time.monotonic() + 5.0
    i = 0
    while time.monotonic() < deadline:
        # re-publish each date as a fresh snapshot: the same-date pointer and latest both switch
        store.client.delete(store.k_date("s", days[i % 2].isoformat()))
        store.client.delete(store.k_latest("s"))
        r = store.publish("s", days[i % 2], frames[i % 2], {"models": "1"})
        assert r.published
        times.append(r.seconds)
        i += 1
    results = [out.get(timeout=60) for _ in readers]
    for p in readers:
        p.join(30)
    reads = sum(r for r, _ in results)
    torn = sum(t for _, t in results)
    # reported in the assertion message, so a failure shows the counts
    report = f"{i} publishes (median {np.median(times) * 1000:.1f} ms), {reads} reads, {torn} torn"
    assert i >= 5 and reads >= 10, f"the readers did not overlap the publisher: {report}"
    assert torn == 0, report


def test_consumer_reader_function(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    SignalStore(connect(redis_url), prefix).publish("s", date(2024, 1, 2), _frame(20, 3), {"models": "4"})
    snap = read_signals(redis_url, "s", top=3, prefix=prefix)
    assert snap is not None and len(snap.signals) == 3 and snap.to_dict()["models"] == "4"
    doc = snap.to_dict()
    assert set(doc) >= {"strategy", "date", "models", "count", "signals"}
    assert doc["signals"][0]["score"] >= doc["signals"][1]["score"]
    assert read_signals(redis_url, "nope", prefix=prefix) is None
