"""Two processes writing one lake dataset at the same moment, round after round.

Each round both workers are released together by a barrier and write one day:
- ``disjoint``: worker 0 a day of January, worker 1 a day of February (different months);
- ``overlap``: both the same day, with different values.

A worker reports, per round, the generation its write committed. The caller then checks that no
reported success is missing from the lake: every disjoint day holds its writer's value, and every
overlapping day holds the value of the writer whose commit came last (the higher generation).
"""

from __future__ import annotations

import multiprocessing as mp
from datetime import date, timedelta
from typing import Any

DAY0 = {"disjoint": (date(2020, 1, 1), date(2020, 2, 1)), "overlap": (date(2020, 3, 1), date(2020, 3, 1))}


def day_of(mode: str, worker: int, rnd: int) -> date:
    return DAY0[mode][worker] + timedelta(days=rnd % 28)


def value_of(worker: int, rnd: int) -> float:
    return float(rnd * 10 + worker + 1)


def _table(day: date, value: float) -> Any:
    import pyarrow as pa

    return pa.table({
        "date": pa.array([day, day], pa.date32()),
        "symbol": pa.array(["A", "B"], pa.large_string()),
        "x": pa.array([value, -value], pa.float64()),
    })


def _worker(uri: str, s3: dict[str, Any] | None, mode: str, worker: int, rounds: int, retries: int,
            barrier: Any, out: Any) -> None:
    from pydantic import SecretStr

    from quant_core.data.lake import Lake
    from quant_core.settings import S3Options

    options = None
    if s3 is not None:
        options = S3Options(endpoint_url=s3["endpoint_url"], access_key_id=SecretStr(s3["key"]),
                            secret_access_key=SecretStr(s3["secret"]))
    ds = Lake(uri, options).dataset("race")
    results = []
    for rnd in range(rounds):
        day = day_of(mode, worker, rnd)
        barrier.wait(timeout=120)
        try:
            res = ds.write(_table(day, value_of(worker, rnd)), day, day, writer=f"worker {worker}", retries=retries)
            results.append((rnd, res.generation, None))
        except Exception as exc:  # a refused write is a result too: it must have left no trace
            results.append((rnd, None, f"{type(exc).__name__}: {exc}"))
    out.put((worker, results))


def race(uri: str, mode: str, rounds: int, *, retries: int = 5, s3: dict[str, Any] | None = None,
         timeout: float = 300.0) -> dict[int, list[tuple[int, int | None, str | None]]]:
    """Run both workers; ``{worker: [(round, generation or None, error or None), ...]}``."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(uri, s3, mode, w, rounds, retries, barrier, out)) for w in (0, 1)]
    for p in procs:
        p.start()
    got: dict[int, list[tuple[int, int | None, str | None]]] = {}
    try:
        for _ in procs:
            worker, results = out.get(timeout=timeout)
            got[worker] = results
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    return got


def lost_writes(ds: Any, mode: str, results: dict[int, list[tuple[int, int | None, str | None]]]) -> list[str]:
    """Reported successes that the lake does not hold (empty list: nothing lost)."""
    table = ds.read().to_pandas()
    stored = {(r.date, r.symbol): r.x for r in table.itertuples()}
    lost: list[str] = []
    rounds = max(len(v) for v in results.values())
    for rnd in range(rounds):
        if mode == "disjoint":
            for worker in (0, 1):
                _r, gen, err = results[worker][rnd]
                if gen is None:
                    continue
                day = day_of(mode, worker, rnd)
                # a later round rewrites the same day (28-day cycle): only the last write must survive
                if any(day_of(mode, worker, later) == day for later in range(rnd + 1, rounds)):
                    continue
                if stored.get((day, "A")) != value_of(worker, rnd):
                    lost.append(f"round {rnd} worker {worker}: {day} holds {stored.get((day, 'A'))}")
        else:
            day = day_of(mode, 0, rnd)
            if any(day_of(mode, 0, later) == day for later in range(rnd + 1, rounds)):
                continue
            gens = {w: results[w][rnd][1] for w in (0, 1)}
            done = {w: g for w, g in gens.items() if g is not None}
            if not done:
                continue
            winner = max(done, key=lambda w: done[w])
            if stored.get((day, "A")) != value_of(winner, rnd):
                lost.append(f"round {rnd}: {day} holds {stored.get((day, 'A'))}, last commit was worker {winner}")
    return lost
