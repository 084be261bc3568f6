"""Qlib's side of the backfill benchmark: ``OnlineManager.simulate`` over the backfilled year.

Runs in the peer virtualenv (benchmarks/setup_qlib.sh), driven by the ``qlib_simulate_year`` case of
benchmarks/run.py, which writes the bars and the same kind of JSON config as for
benchmarks/qlib_online_peer.py (calendar, first as-of, the year's sessions in ``days``, segments,
step, LightGBM parameters):

    .venv-qlib/bin/python benchmarks/qlib_simulate_peer.py --config CONFIG.json --work DIR [--kernels N]

Steps, all on pyqlib's public API (the data dir, the task template and the ``RollingStrategy`` are
built by qlib_online_peer.py's helpers):

1. every bar through the last day becomes a Qlib data dir up front (``simulate`` replays days of
   data it already has; writing the dir is timed apart, as Qlib's ``dump_bin.py`` is a separate
   job), with the whole session calendar as ``day_future.txt``;
2. ``OnlineManager(strategy, begin_time=first_as_of).simulate(end_time=last day)`` is timed. It
   calls ``first_train`` itself (the template's test segment ends on the first as-of, so that
   trains the tasks up to it, as qonline's first training did); that part is timed apart by a
   wrapper, so ``simulate_s - first_train_s`` is what qonline's backfill does. Every simulated day
   runs ``routine``: new rolling tasks trained by ``TrainerR`` (one after another), then
   ``prepare_signals`` over every recorder (no ``update_online_pred`` while simulating: each
   model's signals are the predictions its ``SignalRecord`` made on its test segment at training);
3. the signals (``get_signals()``; the boundary dates that ``prepare_signals`` appends twice are
   de-duplicated, keeping the last) are written to ``signals.parquet`` for the harness, and their
   daily IC / rank IC against Qlib's raw ``LABEL0`` (``calc_ic``) over ``days`` is computed here.

Prints ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import qlib_online_peer as peer

LABEL = "Ref($close, -2)/Ref($close, -1) - 1"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--kernels", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()

    import pandas as pd

    cfg = json.loads(Path(a.config).read_text())
    work = Path(a.work)
    qdir = work / "qlib_data"
    bars = pd.read_parquet(cfg["bars"])
    bars["date"] = pd.to_datetime(bars["date"])
    first_as_of = pd.Timestamp(cfg["first_as_of"])
    days = [pd.Timestamp(d) for d in cfg["days"]]
    last = days[-1]
    out: dict[str, Any] = {"kernels": a.kernels, "first_as_of": str(first_as_of.date()),
                           "first_day": str(days[0].date()), "last_day": str(last.date()), "sessions": len(days)}

    t0 = time.perf_counter()
    out["history_days"] = peer.write_data_dir(peer.shared_tool(), bars, qdir, cfg, last)
    out["write_qlib_dir_s"] = time.perf_counter() - t0

    from qlib.workflow.online.manager import OnlineManager

    peer.init_qlib(qdir, work, a.kernels)
    strategy = peer.rolling_strategy(cfg)
    manager = OnlineManager(strategy, begin_time=first_as_of)
    fits = peer.time_fits()
    stages = peer.Stages()
    stages.wrap(manager, "first_train", "first_train")
    stages.wrap(strategy, "prepare_tasks", "prepare_tasks")
    stages.wrap(manager.trainer, "train", "train")
    stages.wrap(manager, "prepare_signals", "prepare_signals")
    t0 = time.perf_counter()
    signals = manager.simulate(end_time=last)
    out["simulate_s"] = time.perf_counter() - t0
    seconds = stages.take()
    out["stages"] = seconds
    out["first_train_s"] = seconds["first_train"]
    out["simulate_after_first_train_s"] = out["simulate_s"] - seconds["first_train"]
    out["fit_s_sum"] = sum(f[0] for f in fits)
    out["fits"] = len(fits)
    out["best_iterations"] = [f[1] for f in fits]
    out["train_rows"] = [f[2] for f in fits]

    recs = peer.recorders()
    segs = sorted((peer.task_segments(r) for r in recs), key=lambda s: str(s["test"][0]))
    out["models"] = len(recs)
    out["segments"] = segs
    out["simulated_days"] = len(manager.history)

    # prepare_signals appends ``signals.loc[old_max:]``: the last date of the previous call comes twice
    assert signals is not None and isinstance(signals, pd.Series), type(signals)
    out["signal_rows_raw"] = int(len(signals))
    signals = signals[~signals.index.duplicated(keep="last")].sort_index()
    out["signal_rows"] = int(len(signals))
    frame = signals.rename("score").reset_index()
    frame.columns = ["date", "symbol", "score"]
    frame["symbol"] = frame["symbol"].astype(str)
    frame.to_parquet(work / "signals.parquet", index=False)
    out["signals_path"] = str(work / "signals.parquet")

    # daily IC / rank IC against Qlib's own raw LABEL0 over the year's sessions (Qlib's calc_ic)
    from qlib.contrib.eva.alpha import calc_ic
    from qlib.data import D

    label = D.features(D.instruments("all"), [LABEL], start_time=days[0], end_time=last).iloc[:, 0]
    label = label.swaplevel().sort_index() if label.index.names[0] != "datetime" else label
    in_year = signals.loc[days[0]:last]
    ic, ric = calc_ic(in_year, label.reindex(in_year.index))
    ic, ric = ic.dropna(), ric.dropna()
    out["qlib_label_ic"] = {"dates": int(len(ric)), "ic": float(ic.mean()), "rank_ic": float(ric.mean()),
                            "rank_icir": float(ric.mean() / ric.std(ddof=1)) if len(ric) > 1 else None}
    out["signal_dates_in_year"] = int(in_year.index.get_level_values(0).nunique())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
