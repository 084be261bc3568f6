"""Benchmark harness: one command, prints a table, writes JSON.

    .venv/bin/python -m benchmarks.run [--only NAME ...] [--symbols 500] [--years 10] [--out benchmarks/out]

Each case runs in its own subprocess so its peak RSS is its own. Run with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {}


def case(fn: Callable[[argparse.Namespace, Path], dict[str, Any]]) -> Callable[[argparse.Namespace, Path], dict[str, Any]]:
    CASES[fn.__name__] = fn
    return fn


def _spec(a: argparse.Namespace) -> tuple[str, date, date]:
    start, end = date(2014, 1, 1), date(2014 + a.years - 1, 12, 31)
    return f"synthetic:symbols={a.symbols},start={start},end={end},seed=11", start, end


@case
def ingest_full(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """extract + validate (GX, no Data Docs) + store of the whole synthetic market."""
    from quant_core.ingest import extract, store, validate
    from quant_core.lake import Lake
    from quant_core.settings import load_settings

    spec, start, end = _spec(a)
    settings = load_settings(lake_uri=str(work / "lake"), source=spec)
    lake = Lake.from_settings(settings)
    import great_expectations  # noqa: F401  (import cost is reported by the validation case, not here)

    t0 = time.perf_counter()
    bars = extract(spec, start, end, settings)
    t1 = time.perf_counter()
    validate(lake, bars, start, end, settings, data_docs=False, today=end)
    t2 = time.perf_counter()
    res = store(lake, bars, start, end)
    t3 = time.perf_counter()
    return {"rows": len(bars), "extract_s": t1 - t0, "validate_s": t2 - t1, "store_s": t3 - t2,
            "total_s": t3 - t0, "months": len(res.months)}


@case
def read_full(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Full read of the bars written by ingest_full, then a one-month, 10-symbol read."""
    from quant_core.lake import Lake

    lake = Lake(str(work / "lake"))
    t0 = time.perf_counter()
    df = lake.read_bars()
    t1 = time.perf_counter()
    syms = sorted(df["symbol"].unique())[:10]
    small = lake.read_bars(date(2018, 6, 1), date(2018, 6, 30), symbols=syms, columns=["date", "symbol", "close"])
    t2 = time.perf_counter()
    return {"rows": len(df), "full_read_s": t1 - t0, "month_10_symbols_s": t2 - t1, "small_rows": len(small),
            "total_s": t2 - t0}


@case
def daily_ingest(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One new day for every symbol: extract + validate + store into the 10-year lake."""
    from quant_core.ingest import extract, store, validate
    from quant_core.lake import Lake
    from quant_core.settings import load_settings

    spec, _start, end = _spec(a)
    settings = load_settings(lake_uri=str(work / "lake"), source=spec)
    lake = Lake.from_settings(settings)
    day = lake.calendar().last
    import great_expectations  # noqa: F401

    t0 = time.perf_counter()
    bars = extract(spec, day, day, settings)
    validate(lake, bars, day, day, settings, data_docs=False, today=end)
    store(lake, bars, day, day)
    return {"rows": len(bars), "total_s": time.perf_counter() - t0}


def _child(name: str, a: argparse.Namespace, work: Path) -> None:
    result = CASES[name](a, work)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        _child(a.child, a, a.work)
        return
    work = a.work or Path(tempfile.mkdtemp(prefix="qonline-bench-"))
    names = a.only or list(CASES)
    results: dict[str, Any] = {}
    for name in names:
        cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, "--work", str(work),
               "--symbols", str(a.symbols), "--years", str(a.years)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"benchmark {name} failed")
        results[name] = json.loads(line[-1][7:])
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "symbols": a.symbols, "years": a.years,
            "command": " ".join(sys.argv)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"{'case':<16} {'rows':>10} {'total s':>9} {'peak MB':>9}  details")
    for name, r in results.items():
        extra = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                          if k not in ("rows", "total_s", "peak_rss_mb"))
        print(f"{name:<16} {r.get('rows', ''):>10} {r['total_s']:>9.3f} {r['peak_rss_mb']:>9.0f}  {extra}")
    print(f"JSON: {a.out / 'results.json'}")


if __name__ == "__main__":
    main()
