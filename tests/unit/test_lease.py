"""The lake's writer lease on a real lake folder, raced and held by separate processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import pytest

from quant_core.data.lake import Lake
from quant_core.data.lease import LEASE_FOLDER, LEASE_NAME, LakeLease, LeaseBusy


def _hold(root: str, seconds: float, started: Any) -> None:
    """Hold the lease for ``seconds`` then release it."""
    with LakeLease(Lake(root), f"holder pid {os.getpid()}", ttl=5):
        started.set()
        time.sleep(seconds)


def _die_holding(root: str, started: Any) -> None:
    """Take the lease and die without releasing it (as a SIGKILL would leave it)."""
    lease = LakeLease(Lake(root), "doomed run", ttl=300)
    lease.acquire()
    started.set()
    os._exit(0)


def _race(root: str, barrier: Any, out: Any, i: int) -> None:
    lease = LakeLease(Lake(root), f"racer {i}", ttl=30)
    barrier.wait()
    out.put((i, lease.try_acquire() is None))
    barrier.wait()  # stay alive until every racer tried: a gone winner's lease could be taken over


def _ctx() -> Any:
    return mp.get_context("spawn")


def test_held_lease_is_refused_with_its_holder_named_and_freed_on_exit(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with LakeLease(lake, "backfill 2024-01-02..2024-12-31 (run a)"):
        other = LakeLease(lake, "daily_routine 2024-06-03")
        with pytest.raises(LeaseBusy, match=r"being written by backfill 2024-01-02\.\.2024-12-31 \(run a\) \(host .* "
                                             r"pid \d+, since .*\); refused at once"):
            other.acquire()
        held = other.holder()
        assert held is not None and held.what.startswith("backfill") and held.pid == os.getpid()
    assert LakeLease(lake, "probe").holder() is None
    with LakeLease(lake, "daily_routine 2024-06-03") as lease:  # free again
        assert lease.holder() is not None


def test_a_waiting_run_gets_the_lease_when_the_other_process_releases_it(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    ctx = _ctx()
    started = ctx.Event()
    proc = ctx.Process(target=_hold, args=(root, 1.5, started))
    proc.start()
    try:
        assert started.wait(60)
        t0 = time.monotonic()
        with pytest.raises(LeaseBusy, match=r"waited \d+ s"):
            LakeLease(Lake(root), "impatient", wait=0.3, poll=0.1).acquire()
        with LakeLease(Lake(root), "patient", wait=30, poll=0.05):
            waited = time.monotonic() - t0
        assert 1.0 <= waited < 30  # the holder kept it 1.5 s after it started
    finally:
        proc.join(30)
    assert proc.exitcode == 0


def test_a_dead_local_holder_is_taken_over_at_once(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    ctx = _ctx()
    started = ctx.Event()
    proc = ctx.Process(target=_die_holding, args=(root, started))
    proc.start()
    assert started.wait(60)
    proc.join(30)
    held = LakeLease(Lake(root), "probe").holder()
    assert held is not None and held.what == "doomed run"  # still valid by time: 300 s ttl
    with LakeLease(Lake(root), "resumed run", wait=0) as lease:
        assert lease.holder() is not None and lease.holder().what == "resumed run"  # type: ignore[union-attr]


def _foreign(root: Path, expires_in: float) -> None:
    """A lease written by a process on another host (its pid means nothing here)."""
    folder = root / LEASE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    (folder / LEASE_NAME).write_text(json.dumps({"holder": {
        "token": "x", "what": "backfill on another host", "host": "elsewhere.example", "pid": 1,
        "acquired_at": now - 10, "expires_at": now + expires_in}}))


def test_a_foreign_holder_is_respected_until_its_lease_expires(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _foreign(root, 60)
    with pytest.raises(LeaseBusy, match="backfill on another host"):
        LakeLease(Lake(str(root)), "daily").acquire()
    _foreign(root, -1)  # it stopped renewing: expired
    with LakeLease(Lake(str(root)), "daily"):
        pass


def test_the_lease_is_renewed_while_held(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with LakeLease(lake, "long run", ttl=1.2) as lease:
        first = lease.holder()
        time.sleep(2.5)  # twice the ttl: only renewals (every 0.3 s) keep it valid
        later = lease.holder()
        assert first is not None and later is not None and later.expires_at > first.expires_at
        with pytest.raises(LeaseBusy):
            LakeLease(lake, "intruder").acquire()
        assert not lease.lost


def test_racing_processes_exactly_one_wins(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    ctx = _ctx()
    for _round in range(3):
        barrier, out = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(root, barrier, out, i)) for i in range(4)]
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        winners = [i for i, won in results if won]
        assert len(winners) == 1, results
        held = LakeLease(Lake(root), "probe").holder()
        assert held is not None and held.what == f"racer {winners[0]}"
        (Path(root) / LEASE_FOLDER / LEASE_NAME).unlink()  # the next round starts free


def test_bad_lease_arguments() -> None:
    with pytest.raises(ValueError, match="ttl must be > 0"):
        LakeLease(Lake("/tmp/nowhere-lake"), "x", ttl=0)


def test_a_run_whose_lease_was_taken_over_fails_at_its_end(tmp_path: Path) -> None:
    from quant_core.data.lease import LeaseLost

    root = tmp_path / "lake"
    with (pytest.raises(LeaseLost, match="lost it to another run while it was still writing"),
          LakeLease(Lake(str(root)), "slow run", ttl=0.4)):
        _foreign(root, 60)  # another host took it over (as after a long stall)
        time.sleep(0.6)  # the next renewal finds it gone
    held = LakeLease(Lake(str(root)), "probe").holder()
    assert held is not None and held.what == "backfill on another host"  # its lease is left alone
