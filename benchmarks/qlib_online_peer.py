"""Qlib's side of the daily-routine benchmark: ``OnlineManager.routine`` on the same bars and days.

Runs in the peer virtualenv (benchmarks/setup_qlib.sh), driven by the ``qlib_online_routine`` case of
benchmarks/run.py, which writes the bars and a JSON config holding everything both sides must share
(calendar, first as-of, routine days, segments, step, LightGBM parameters):

    .venv-qlib/bin/python benchmarks/qlib_online_peer.py --config CONFIG.json --work DIR [--kernels N]

Steps, all on pyqlib's public API:

1. bars up to the first as-of become a Qlib data dir (the shared tool's ``write_qlib_dir``); the
   whole session calendar is written as ``day_future.txt`` (Qlib's data collectors ship one), with
   one sentinel day before the first session (``TimeAdjuster.truncate`` asserts that no segment
   starts on the calendar's first day);
2. ``qlib.init`` with the expression and dataset caches off and MLflow's file store in the work dir;
3. a ``RollingStrategy`` (``RollingGen`` step/rtype/trunc_days from the config) over a task template
   ``LGBModel`` + ``Alpha158`` (``DropnaLabel`` only: the strategy of routine_daily lists no
   processors and drops NaN labels) + ``DatasetH``; ``OnlineManager.first_train()`` as of the first day;
4. for each routine day: that day's bars are appended to the data dir (timed apart: Qlib's data
   update is a separate job, ``dump_bin.py`` in update mode), Qlib's in-memory caches are cleared
   (a running process would not see the new day otherwise), then ``routine(cur_time=day)`` is timed,
   with its stages (prepare_tasks, train, update_online_pred, prepare_signals) timed by wrappers
   around the bound methods, and ``LGBModel.fit`` timed (data prep + lgb.train) for the fit share;
   the first day is a retrain day (step 20 after the first task), the others are not;
5. the last day runs in a fresh process: the manager pickled by ``to_pickle``, a new interpreter
   imports qlib, inits, loads the manager and runs the routine (wall time from the parent);
6. ``PredUpdater`` on the serving model for the last 1 and 20 of routine_daily's 20 prediction days
   (median of 3 each; every call loads the model and dataset from the recorder and writes pred.pkl).

Prints ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXP = "qonline_bench_online"


def shared_tool() -> Any:
    shared = Path(os.environ.get("QONLINE_SHARED_DIR", ROOT.parent / "shared"))
    spec = importlib.util.spec_from_file_location("qlib_golden_tool", shared / "tools" / "qlib_alpha158_golden.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _append_day(qdir: Path, day_bars: Any, day: Any, fields: list[str]) -> int:
    """Append one session to a Qlib data dir, giving the same files as ``write_qlib_dir`` on all bars.

    A symbol whose last stored day is older than the previous session gets NaN rows for the gap
    (suspension); a new symbol gets new files starting at the day's calendar index.
    """
    import numpy as np

    cal_file = qdir / "calendars" / "day.txt"
    cal = cal_file.read_text().split()
    pos = {d: i for i, d in enumerate(cal)}
    stamp = f"{day:%Y-%m-%d}"
    assert stamp > cal[-1], (stamp, cal[-1])
    index = len(cal)
    inst_file = qdir / "instruments" / "all.txt"
    spans = {}
    for line in inst_file.read_text().splitlines():
        sym, first, last = line.split("\t")
        spans[sym] = [first, last]
    adj = day_bars.copy()
    for c in ("open", "high", "low", "close", "vwap"):
        adj[c] = adj[c] * adj["factor"]
    adj["volume"] = adj["volume"] / adj["factor"]
    for row in adj.itertuples(index=False):
        sym = str(row.symbol)
        folder = qdir / "features" / sym.lower()
        if sym in spans:
            gap = index - pos[spans[sym][1]] - 1
            spans[sym][1] = stamp
            for f in fields:
                values = np.array([np.nan] * gap + [getattr(row, f)], dtype="<f4")
                with (folder / f"{f}.day.bin").open("ab") as fh:
                    fh.write(values.tobytes())
        else:
            spans[sym] = [stamp, stamp]
            folder.mkdir(parents=True, exist_ok=True)
            for f in fields:
                np.array([index, getattr(row, f)], dtype="<f4").tofile(folder / f"{f}.day.bin")
    inst_file.write_text("\n".join(f"{s}\t{a}\t{b}" for s, (a, b) in sorted(spans.items())) + "\n")
    with cal_file.open("a") as fh:
        fh.write(stamp + "\n")
    return len(adj)


def write_data_dir(tool: Any, bars: Any, qdir: Path, cfg: dict[str, Any], through: Any) -> int:
    """The bars up to ``through`` as a Qlib data dir, with the config's whole calendar as ``day_future.txt``.

    Returns the number of sessions written; asserts that they are the calendar's sessions up to ``through``.
    """
    import pandas as pd

    calendar = [pd.Timestamp(d) for d in cfg["calendar"]]
    tool.write_qlib_dir(bars[bars["date"] <= through], qdir)
    # Qlib's TimeAdjuster.truncate asserts that no segment starts on the first day of the calendar it
    # rolls on (the future calendar): one sentinel day before everything keeps the train start as is
    sentinel = min(calendar[0], pd.Timestamp(cfg["segments"]["train"][0])) - pd.Timedelta(days=1)
    (qdir / "calendars" / "day_future.txt").write_text(
        "\n".join(f"{d:%Y-%m-%d}" for d in [sentinel, *calendar]) + "\n")
    written = pd.DatetimeIndex(pd.read_csv(qdir / "calendars" / "day.txt", header=None)[0])
    expected = [d for d in calendar if d <= through]
    assert list(written) == expected, "the bars do not cover every session of the calendar"
    return len(written)


def rolling_strategy(cfg: dict[str, Any]) -> Any:
    """Qlib's ``RollingStrategy`` over the config's task template (``RollingGen`` step/rtype/trunc_days)."""
    from qlib.workflow.online.strategy import RollingStrategy
    from qlib.workflow.task.gen import RollingGen

    rtype = RollingGen.ROLL_EX if cfg["rtype"] == "expanding" else RollingGen.ROLL_SD
    return RollingStrategy(EXP, _task_template(cfg), RollingGen(step=cfg["step"], rtype=rtype,
                                                                trunc_days=cfg["trunc_days"]))


def init_qlib(qdir: Path, work: Path, kernels: int) -> None:
    # Qlib's default recorder backend is MLflow's file store, which MLflow 3.x refuses without this
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import qlib
    from qlib.constant import REG_US

    qlib.init(provider_uri=str(qdir), region=REG_US, kernels=kernels, expression_cache=None, dataset_cache=None,
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": (work / "mlruns").as_uri(), "default_exp_name": "Experiment"}})


def _clear_caches() -> None:
    """Drop Qlib's in-memory calendar/instrument/expression caches after a data update."""
    from qlib.data.cache import H

    H.clear()


def _task_template(cfg: dict[str, Any]) -> dict[str, Any]:
    seg = cfg["segments"]
    model = dict(cfg["model"])
    kwargs = {"loss": model.pop("objective", "mse"), "num_boost_round": model.pop("num_boost_round"),
              "early_stopping_rounds": model.pop("early_stopping_rounds"), **model, **cfg["lgb_extra"]}
    instruments: Any = "all"
    if cfg.get("traded_only"):
        # the universe of a day is the symbols with a bar that day (as qonline's feature rows): Qlib's
        # data dir has NaN rows for suspended days inside a symbol's span, which its Alpha158 would
        # otherwise train on and predict (their rolling features are partly defined, their label too)
        from qlib.data import D
        from qlib.data.filter import ExpressionDFilter

        instruments = D.instruments("all", filter_pipe=[ExpressionDFilter(rule_expression="$close>0")])
    handler = {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
               "kwargs": {"instruments": instruments, "start_time": seg["train"][0], "end_time": cfg["first_as_of"],
                          "fit_start_time": seg["train"][0], "fit_end_time": seg["train"][1],
                          "infer_processors": [], "learn_processors": [{"class": "DropnaLabel"}],
                          "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}}
    return {
        "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": kwargs},
        "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                    "kwargs": {"handler": handler,
                               "segments": {k: tuple(v) for k, v in seg.items()}}},
        "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                    "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
    }


class Stages:
    """Wall time of the routine's stages, by wrapping the bound methods it calls (no Qlib code changed)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.wrapped: list[tuple[Any, str]] = []

    def wrap(self, obj: Any, method: str, name: str) -> None:
        inner = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        setattr(obj, method, timed)
        self.wrapped.append((obj, method))

    def install(self, manager: Any) -> None:
        strategy = manager.strategies[0]
        self.wrap(strategy, "prepare_tasks", "prepare_tasks")
        self.wrap(manager.trainer, "train", "train")
        self.wrap(strategy, "prepare_online_models", "prepare_online_models")
        self.wrap(strategy.tool, "update_online_pred", "update_online_pred")
        self.wrap(manager, "prepare_signals", "prepare_signals")

    def uninstall(self) -> None:
        """Remove the wrappers (instance attributes), so the manager pickles as Qlib made it."""
        for obj, method in self.wrapped:
            obj.__dict__.pop(method, None)
        self.wrapped.clear()

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


def time_fits() -> list[tuple[float, int, int]]:
    """Record (seconds, best iteration, training rows) of every ``LGBModel.fit`` (data prep + lgb.train)."""
    from qlib.contrib.model.gbdt import LGBModel

    fits: list[tuple[float, int, int]] = []
    fit, prepare = LGBModel.fit, LGBModel._prepare_data
    rows = [-1]

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        ds_l = prepare(self, *args, **kwargs)
        rows[0] = int(ds_l[0][0].data.shape[0])  # the train segment's lgb.Dataset, before construction
        return ds_l

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = fit(self, *args, **kwargs)
        fits.append((time.perf_counter() - t0, int(self.model.best_iteration), rows[0]))
        return result

    LGBModel.fit, LGBModel._prepare_data = timed, counted
    return fits


def task_segments(recorder: Any) -> dict[str, list[str | None]]:
    """A trained task's segments as ISO dates (None = open end)."""
    segments = recorder.load_object("task")["dataset"]["kwargs"]["segments"]
    return {k: [None if d is None else f"{d:%Y-%m-%d}" for d in v] for k, v in segments.items()}


def recorders() -> list[Any]:
    from qlib.workflow import R

    return list(R.list_recorders(experiment_name=EXP).values())


def _routine(manager: Any, day: Any, stages: Stages | None) -> dict[str, Any]:
    import pandas as pd

    before = len(recorders())
    t0 = time.perf_counter()
    manager.routine(cur_time=pd.Timestamp(day))
    seconds = time.perf_counter() - t0
    signals = manager.get_signals()
    on_day = signals.loc[pd.Timestamp(day)] if pd.Timestamp(day) in signals.index.get_level_values(0) else []
    online = manager.strategies[0].tool.online_models()
    return {"day": str(pd.Timestamp(day).date()), "routine_s": seconds, "trained": len(recorders()) - before,
            "online_models": len(online), "signals_on_day": int(len(on_day)),
            "stages": stages.take() if stages else {}}


def _fresh(a: argparse.Namespace) -> None:
    """Child mode: a new interpreter loads the pickled manager and runs one routine."""
    t0 = time.perf_counter()
    import qlib  # noqa: F401
    from qlib.workflow.online.manager import OnlineManager

    t_import = time.perf_counter() - t0
    work = Path(a.work)
    init_qlib(work / "qlib_data", work, a.kernels)
    with Path(a.fresh_manager).open("rb") as fh:
        manager: OnlineManager = pickle.load(fh)
    out = _routine(manager, a.fresh_day, None)
    out["import_s"] = t_import
    out["in_process_total_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--kernels", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--fresh-manager", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--fresh-day", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.fresh_manager:
        _fresh(a)
        return

    import pandas as pd

    cfg = json.loads(Path(a.config).read_text())
    work = Path(a.work)
    qdir = work / "qlib_data"
    tool = shared_tool()
    bars = pd.read_parquet(cfg["bars"])
    bars["date"] = pd.to_datetime(bars["date"])
    first_as_of = pd.Timestamp(cfg["first_as_of"])
    days = [pd.Timestamp(d) for d in cfg["days"]]
    out: dict[str, Any] = {"kernels": a.kernels, "first_as_of": str(first_as_of.date()),
                           "days": [str(d.date()) for d in days]}

    t0 = time.perf_counter()
    out["history_days"] = write_data_dir(tool, bars, qdir, cfg, first_as_of)
    out["write_qlib_dir_s"] = time.perf_counter() - t0

    from qlib.workflow.online.manager import OnlineManager
    from qlib.workflow.online.update import PredUpdater

    init_qlib(qdir, work, a.kernels)
    strategy = rolling_strategy(cfg)
    manager = OnlineManager(strategy, begin_time=first_as_of)
    fits = time_fits()
    t0 = time.perf_counter()
    manager.first_train()
    out["first_train_s"] = time.perf_counter() - t0
    out["first_train_fit_s"] = sum(f[0] for f in fits)
    out["first_train_rows"] = [f[2] for f in fits]
    out["first_train_models"] = len(recorders())
    out["first_train_segments"] = [task_segments(r) for r in recorders()]

    stages = Stages()
    stages.install(manager)
    runs, updates = [], []
    for day in days[:-1]:
        t0 = time.perf_counter()
        rows = _append_day(qdir, bars[bars["date"] == day], day, tool.FIELDS)
        updates.append(time.perf_counter() - t0)
        _clear_caches()
        runs.append({**_routine(manager, day, stages), "bars": rows})
    retrain, plain = runs[0], runs[1:]
    assert retrain["trained"] >= 1, retrain
    assert all(r["trained"] == 0 for r in plain), plain
    out["retrain_routine_s"] = retrain["routine_s"]
    out["retrain_fit_s"] = fits[-1][0]
    out["retrain_best_iteration"] = fits[-1][1]
    out["retrain_train_rows"] = fits[-1][2]
    out["retrain_stages"] = retrain["stages"]
    out["retrain_models"] = retrain["trained"]
    out["retrain_segments"] = [task_segments(r) for r in strategy.tool.online_models()]
    out["routine_runs"] = plain
    best = sorted(plain, key=lambda r: r["routine_s"])[len(plain) // 2]
    out["routine_s"] = best["routine_s"]
    out["routine_stages"] = best["stages"]
    out["data_update_s"] = statistics.median(updates)

    # the last day: a fresh interpreter loads the pickled manager (as Qlib's examples run a routine)
    stages.uninstall()
    pickled = work / "online_manager.pkl"
    manager.to_pickle(pickled)
    day = days[-1]
    t0 = time.perf_counter()
    _append_day(qdir, bars[bars["date"] == day], day, tool.FIELDS)
    out["data_update_last_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--config", a.config, "--work", str(work), "--kernels",
                           str(a.kernels), "--fresh-manager", str(pickled), "--fresh-day", str(day.date())],
                          capture_output=True, text=True)
    out["fresh_process_run_s"] = time.perf_counter() - t0
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise SystemExit("fresh-process routine failed:\n" + proc.stdout[-2000:] + proc.stderr[-4000:])
    fresh = json.loads(line[-1][7:])
    out["fresh_process_routine_s"] = fresh["routine_s"]
    out["fresh_process_import_s"] = fresh["import_s"]
    out["fresh_process_signals_on_day"] = fresh["signals_on_day"]
    out["fresh_process_trained"] = fresh["trained"]

    # prediction update with the serving model: the same 20 sessions as routine_daily, 1 vs 20 of them
    _clear_caches()
    online = strategy.tool.online_models()
    assert len(online) == 1, len(online)
    twenty = [pd.Timestamp(d) for d in cfg["predict_days"]]
    for n in (1, 20):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            new = PredUpdater(online[0], to_date=twenty[-1], from_date=twenty[-n]).update(ret_new=True)
            times.append(time.perf_counter() - t0)
        assert new is not None and len(new.loc[twenty[-n]:twenty[-1]]) > 0
        out[f"predict_{n}_day{'s' if n > 1 else ''}_s"] = statistics.median(times)
    out["models_total"] = len(recorders())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
