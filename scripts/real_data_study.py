"""The real-data study: CSI 300 bars, the shipped default strategy rolled monthly, 2023-01 .. 2025-03.

Builds a lake from ``../shared/data/real/csi300_2020_2025/`` (the exchange calendar XSHG), trains the
first model as of 2023-01-03 (train 2020-01-02 .. 2021-12-31, valid 2022, both clipped by RollingGen's
``trunc_days`` before the test start), backfills every session of 2023-01-04 .. 2025-03-31 (a
retrain every 20 sessions, as the daily routine would have done), then writes the evaluation report
of that range (Qlib's TopK-dropout 50/5 and costs) with a screenshot of the page in headless chromium.

    .venv/bin/python scripts/real_data_study.py --out docs/results/csi300_2023_2025

Everything runs through the same flows a user runs (ingest, first-train, backfill, report). The lake,
MLflow database and a private redis-server live under ``--work`` and are left there for inspection.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STRATEGY = "csi300_monthly"
FIRST_AS_OF = date(2023, 1, 3)
START, END = date(2023, 1, 4), date(2025, 3, 31)
SEGMENTS = {"train": ["2020-01-02", "2021-12-31"], "valid": ["2022-01-04", "2022-12-30"], "test": ["2023-01-03", None]}

logger = logging.getLogger("real_data_study")


def strategy_body(base: str) -> dict[str, Any]:
    """The shipped strategy ``base`` with the study's explicit segments and a monthly (20-session) step."""
    from quant_core.models.strategy import get_strategy

    cfg = get_strategy(base).model_dump(mode="json")
    cfg.update(name=STRATEGY, segments={"dates": SEGMENTS}, rolling={**cfg["rolling"], "step": 20})
    return cfg


def screenshot(html: Path, png: Path) -> bool:
    """A full-page screenshot in Debian's headless chromium (False when it is not installed)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        logger.warning("chromium is not installed: no screenshot (apt-get install -y chromium)")
        return False
    profile = png.parent / ".chromium-profile"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,5200", f"--screenshot={png}",
           html.resolve().as_uri()]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return png.exists() and png.stat().st_size > 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qonline-csi300-study"), help="lake, MLflow, Redis")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "csi300_2023_2025")
    parser.add_argument("--base-strategy", default="lgb_alpha158", help="shipped strategy whose model is rolled")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from flows.backfill import backfill
    from flows.first_train import first_train
    from flows.ingest import ingest
    from flows.local_services import private_redis
    from flows.report import report

    data = args.shared / "data" / "real" / "csi300_2020_2025" / "csi300_2020_2025.parquet"
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    body = strategy_body(args.base_strategy)
    times: dict[str, float] = {}
    with private_redis() as redis_url:
        cfg = args.work / "qonline.yaml"
        cfg.write_text(yaml.safe_dump({
            "lake_uri": str(args.work / "lake"), "source": f"parquet:{data}", "exchange": "XSHG",
            "redis_url": redis_url, "max_workers": args.workers, "strategies": {STRATEGY: body},
        }))
        t0 = time.perf_counter()
        ingest(start=date(2020, 1, 2), end=date(2025, 4, 7), config=str(cfg))
        times["ingest"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        first = first_train(as_of=FIRST_AS_OF, strategy=STRATEGY, config=str(cfg))
        times["first_train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        filled = backfill(start=START, end=END, strategies=[STRATEGY], chunk=20, config=str(cfg))
        times["backfill"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = report(start=START, end=END, strategy=STRATEGY, out=str(args.out), config=str(cfg))
        times["report"] = time.perf_counter() - t0
    shot = screenshot(Path(out["html"]), args.out / "report.png")
    run = {
        "command": f".venv/bin/python scripts/real_data_study.py --out {args.out.relative_to(ROOT)}"
                   if args.out.resolve().is_relative_to(ROOT) else "scripts/real_data_study.py",
        "data": str(data.relative_to(args.shared.parent)) if data.is_relative_to(args.shared.parent) else str(data),
        "strategy": body, "first_train": {"as_of": FIRST_AS_OF.isoformat(), "tasks": first.get("tasks")},
        "backfill": {"start": START.isoformat(), "end": END.isoformat(), "sessions": filled.get("sessions"),
                     "trained": filled.get("trained"), "dates_written": filled.get("dates_written")},
        "seconds": {k: round(v, 1) for k, v in times.items()}, "screenshot": shot,
        "headline": out["headline"], "warnings": out["warnings"],
    }
    (args.out / "run.json").write_text(json.dumps(run, indent=2, default=str) + "\n")
    logger.info("study done in %.0f s: %s", sum(times.values()), args.out)


if __name__ == "__main__":
    main()
