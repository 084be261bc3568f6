"""Qlib's side of the feature benchmark: its own Alpha158 handler on the same bars.

Runs in a separate virtualenv with pyqlib (benchmarks/setup_qlib.sh), so Qlib's dependencies never
touch qonline's pinned environment:

    .venv-qlib/bin/python benchmarks/qlib_peer.py --bars BARS.parquet --work DIR [--kernels N]

Prints ``RESULT {json}``. Bars are written in Qlib's binary layout with the shared tool's
``write_qlib_dir`` (adjusted fields, suspended days NaN inside each symbol's span).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from qlib_online_peer import shared_tool  # the shared Qlib-format writer (run as a script from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--kernels", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()

    import pandas as pd

    bars = pd.read_parquet(a.bars)
    bars["date"] = pd.to_datetime(bars["date"])
    qdir = Path(a.work) / "qlib_data"
    t0 = time.perf_counter()
    shared_tool().write_qlib_dir(bars, qdir)
    t1 = time.perf_counter()

    import qlib
    from qlib.constant import REG_US
    from qlib.contrib.data.handler import Alpha158

    qlib.init(provider_uri=str(qdir), region=REG_US, kernels=a.kernels, expression_cache=None, dataset_cache=None)
    start, end = bars["date"].min(), bars["date"].max()
    t2 = time.perf_counter()
    handler = Alpha158(instruments="all", start_time=start, end_time=end, fit_start_time=start, fit_end_time=end)
    frame = handler.fetch(col_set="feature")
    t3 = time.perf_counter()
    print("RESULT " + json.dumps({
        "rows": int(len(frame)), "features": int(frame.shape[1]), "write_qlib_dir_s": t1 - t0,
        "total_s": t3 - t2, "kernels": a.kernels,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
