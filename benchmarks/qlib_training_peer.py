"""Qlib's side of the training-parity benchmark: its own ``LGBModel`` on ``DatasetH(Alpha158)``, task by task.

Runs in the peer virtualenv (benchmarks/setup_qlib.sh), driven by the ``qlib_training_parity`` case of
benchmarks/run.py, which writes the bars and a JSON config with the rolling tasks qonline trained
(explicit train/valid/test segments, the LightGBM parameters, qonline's LightGBM settings):

    .venv-qlib/bin/python benchmarks/qlib_training_peer.py --config CONFIG.json --work DIR [--kernels 1]

Steps, all on pyqlib's public API:

1. the bars through the as-of date become a Qlib data dir (the shared tool's ``write_qlib_dir``:
   adjusted fields, suspended days NaN inside each symbol's span);
2. one ``Alpha158`` handler over the whole range (first bar .. as-of) with the strategy's processors
   (``processors`` in the config; by default Alpha158's defaults for LightGBM: no infer processors,
   learn processors ``DropnaLabel`` + ``CSZScoreNorm(label)``) and the label ``LABEL0``, on the traded
   rows only (``$close>0``: a day's rows are the symbols with a bar that day, as qonline's feature
   rows; Qlib would otherwise also train on suspended days). The
   processors allowed are per row / per date (no fitted state), so one handler over the whole range
   gives every task the rows a handler over the task's own range would;
3. for each task a ``DatasetH`` over that handler with the task's segments, a fresh
   ``LGBModel(loss, num_boost_round, early_stopping_rounds, **params)`` fitted on it (Qlib's own
   ``fit``: train/valid from ``DK_L``, early stopping on the valid l2), ``LGBModel.predict`` on
   ``valid`` and ``test`` (``DK_I``) and Qlib's ``calc_ic`` against the raw label (``DK_R``), as
   ``SignalRecord`` + ``SigAnaRecord`` compute it.

With ``dump_alpha158`` in the config, the handler's raw rows (features and label before any processor,
``DK_R``) are written to that parquet file: the harness trains qonline's own training path on them.

Prints ``RESULT {json}`` with per-task IC / rank IC (valid and test), best iteration, trees and
leaves of the model as used (``best_iteration`` trees), rows and fit seconds.
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


#: Alpha158's defaults for LightGBM (QLIB_SEMANTICS §8), the processors of lgb_alpha158_qlib
DEFAULT_PROCESSORS = [{"name": "DropnaLabel"}, {"name": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}]
#: qonline processors that need no fitted state, hence run the same on one handler for every task
STATELESS = {"DropnaLabel", "CSZScoreNorm", "CSRankNorm"}


def _qlib_processors(specs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A strategy's processor specs as Qlib's ``infer_processors`` / ``learn_processors``.

    A feature processor runs at inference, so it is one of Qlib's infer processors (Qlib runs those
    first, on learn data too); the label ones and ``DropnaLabel`` are learn processors, in order.
    """
    infer: list[dict[str, Any]] = []
    learn: list[dict[str, Any]] = []
    for spec in specs:
        name, kwargs = spec["name"], dict(spec.get("kwargs", {}))
        if name not in STATELESS:
            raise SystemExit(f"processor {name}: the peer shares one handler across tasks, so only {sorted(STATELESS)}")
        entry = {"class": name, **({"kwargs": kwargs} if kwargs else {})}
        if kwargs.get("fields_group", "label" if name == "DropnaLabel" else "feature") == "feature":
            if learn:
                raise SystemExit(f"processor {name} on features after a label processor: Qlib runs infer processors first")
            infer.append(entry)
        else:
            learn.append(entry)
    return {"infer_processors": infer, "learn_processors": learn}


def _ic(pred: Any, label: Any) -> tuple[float, float, int]:
    """Qlib's calc_ic: mean daily Pearson IC and Spearman rank IC (days with no valid pair skipped)."""
    from qlib.contrib.eva.alpha import calc_ic

    ic, ric = calc_ic(pred, label.reindex(pred.index))
    ic, ric = ic.dropna(), ric.dropna()
    return float(ic.mean()), float(ric.mean()), int(len(ric))


def _leaves(booster: Any, trees: int) -> list[int]:
    """Leaves of each of the first ``trees`` trees (1 = a tree without a split: a constant)."""
    info = booster.dump_model(num_iteration=trees)["tree_info"]
    return [int(t["num_leaves"]) for t in info[:trees]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--kernels", type=int, default=1)
    a = ap.parse_args()

    import pandas as pd

    cfg = json.loads(Path(a.config).read_text())
    work = Path(a.work).resolve()
    qdir = work / "qlib_data"
    bars = pd.read_parquet(cfg["bars"])
    bars["date"] = pd.to_datetime(bars["date"])
    as_of = pd.Timestamp(cfg["as_of"])
    bars = bars[bars["date"] <= as_of]
    out: dict[str, Any] = {"kernels": a.kernels, "as_of": str(as_of.date())}

    t0 = time.perf_counter()
    peer.shared_tool().write_qlib_dir(bars, qdir)
    out["write_qlib_dir_s"] = time.perf_counter() - t0

    from qlib.contrib.data.handler import Alpha158
    from qlib.contrib.model.gbdt import LGBModel
    from qlib.data import D
    from qlib.data.dataset import DatasetH
    from qlib.data.dataset.handler import DataHandlerLP
    from qlib.data.filter import ExpressionDFilter
    from qlib.workflow import R

    peer.init_qlib(qdir, work, a.kernels)
    instruments: Any = "all"
    if cfg.get("traded_only", True):
        instruments = D.instruments("all", filter_pipe=[ExpressionDFilter(rule_expression="$close>0")])
    start = bars["date"].min()
    t0 = time.perf_counter()
    handler = Alpha158(instruments=instruments, start_time=start, end_time=as_of, fit_start_time=start,
                       fit_end_time=as_of, label=([LABEL], ["LABEL0"]),
                       **_qlib_processors(cfg.get("processors", DEFAULT_PROCESSORS)))
    out["handler_s"] = time.perf_counter() - t0
    out["handler_rows"] = int(len(handler.fetch(col_set="label", data_key=DataHandlerLP.DK_I)))
    if cfg.get("dump_alpha158"):
        # Qlib's raw Alpha158 + LABEL0 rows (DK_R: before any processor), for the harness to train
        # qonline's own training path on exactly Qlib's features
        frame = handler.fetch(col_set=["feature", "label"], data_key=DataHandlerLP.DK_R)
        frame.columns = [c[1] for c in frame.columns]
        frame = frame.reset_index().rename(columns={"datetime": "date", "instrument": "symbol"})
        frame["symbol"] = frame["symbol"].astype(str)
        frame.to_parquet(cfg["dump_alpha158"], index=False)
        out["dump_alpha158"] = cfg["dump_alpha158"]
        del frame

    tasks = []
    for task in cfg["tasks"]:
        seg = {k: (pd.Timestamp(v[0]), pd.Timestamp(v[1])) for k, v in task["segments"].items()}
        params = dict(task["model"])
        kwargs = {"loss": params.pop("objective", "mse"), "num_boost_round": params.pop("num_boost_round", 1000),
                  "early_stopping_rounds": params.pop("early_stopping_rounds", 50), **params, **cfg["lgb_extra"]}
        dataset = DatasetH(handler=handler, segments=seg)
        model = LGBModel(**kwargs)
        rows = {k: int(len(dataset.prepare(k, col_set="label", data_key=DataHandlerLP.DK_L)))
                for k in ("train", "valid")}
        t0 = time.perf_counter()
        with R.start(experiment_name="qlib_training_parity", recorder_name=task["test_start"]):
            model.fit(dataset, verbose_eval=0)
        fit_s = time.perf_counter() - t0
        booster = model.model
        best = int(booster.best_iteration) or int(booster.current_iteration())
        res: dict[str, Any] = {"test_start": task["test_start"], "best_iteration": best,
                               "trees_trained": int(booster.num_trees()), "leaves": _leaves(booster, best),
                               "train_rows": rows["train"], "valid_rows": rows["valid"], "fit_s": fit_s}
        for key in ("valid", "test"):
            pred = model.predict(dataset, segment=key)
            raw = dataset.prepare(key, col_set="label", data_key=DataHandlerLP.DK_R).iloc[:, 0]
            res[f"{key}_ic"], res[f"{key}_rank_ic"], res[f"{key}_days"] = _ic(pred, raw)
            res[f"{key}_rows"] = int(raw.reindex(pred.index).notna().sum())
        tasks.append(res)
        print(f"task {task['test_start']}: best {best}, test IC {res['test_ic']:.4f} rank {res['test_rank_ic']:.4f}, "
              f"fit {fit_s:.1f}s", flush=True)
    out["tasks"] = tasks
    out["fit_s_sum"] = sum(t["fit_s"] for t in tasks)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
