"""Benchmark harness: one command, prints a table, writes JSON.

    .venv/bin/python -m benchmarks.run [--only NAME ...] [--symbols 500] [--years 10] [--repeat 1]
        [--out benchmarks/out] [--backfill-days 250] [--backfill-model routine|light] [--qlib-universe traded|span]

Each case runs in its own subprocess so its peak RSS is its own. Run with nothing else on the machine.
With ``--repeat N`` the selected cases run N rounds, interleaved (a, b, a, b, ...): a case's result
is its median run, and the qonline/Qlib ratios are taken within each round, then their median is
reported with the range, so a slow minute of the machine hits both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
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
    from quant_core.data.ingest import extract, store, validate
    from quant_core.data.lake import Lake
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
    from quant_core.data.lake import Lake

    lake = Lake(str(work / "lake"))
    t0 = time.perf_counter()
    df = lake.read_bars()
    t1 = time.perf_counter()
    syms = sorted(df["symbol"].unique())[:10]
    mid = lake.calendar()[len(lake.calendar()) // 2]
    month = (mid.replace(day=1), mid.replace(day=28))
    small = lake.read_bars(*month, symbols=syms, columns=["date", "symbol", "close"])
    t2 = time.perf_counter()
    return {"rows": len(df), "full_read_s": t1 - t0, "month_10_symbols_s": t2 - t1, "small_rows": len(small),
            "total_s": t2 - t0}


@case
def daily_ingest(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One new day for every symbol: extract + validate + store into the 10-year lake."""
    from quant_core.data.ingest import extract, store, validate
    from quant_core.data.lake import Lake
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


def _ingest_fast(spec: str, start: date, end: date, lake_dir: Path) -> None:
    """Bars straight into a lake (no validation): setup for the feature cases."""
    from quant_core.data.ingest import extract
    from quant_core.data.lake import Lake
    from quant_core.settings import load_settings

    settings = load_settings(lake_uri=str(lake_dir), source=spec)
    Lake.from_settings(settings).write_bars(extract(spec, start, end, settings), start, end)


@case
def features_full(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Alpha158 + LABEL0 full recompute over the ingest_full lake: read bars, compute, write."""
    from quant_core.data.lake import Lake
    from quant_core.features import compute_features, get_feature_set
    from quant_core.features.labels import LABEL0
    from quant_core.features.store import update_features, update_labels

    lake = Lake(str(work / "lake"))
    fs = get_feature_set("alpha158")
    cal = lake.calendar()
    # every run writes a fresh feature dataset (a rerun would otherwise replace existing months)
    for folder in ("features", "labels"):
        shutil.rmtree(work / "lake" / folder, ignore_errors=True)
    # compile/load the numba kernels outside the timing (cached on disk after the first run)
    compute_features(lake.read_bars(cal[0], cal[5]), fs)
    t0 = time.perf_counter()
    bars = lake.read_bars()
    t1 = time.perf_counter()
    feats = compute_features(bars, fs, first_dates=lake.bars.first_dates())
    t2 = time.perf_counter()
    del feats
    up = update_features(lake, fs, cal.first, cal.last)
    t3 = time.perf_counter()
    labels = update_labels(lake, LABEL0, cal.first, cal.last)
    t4 = time.perf_counter()
    bars.to_parquet(work / "bars.parquet", index=False)  # Qlib's input, same data
    return {"rows": up.rows, "read_bars_s": t1 - t0, "compute_s": t2 - t1, "total_s": t3 - t2,
            "labels_s": t4 - t3, "label_rows": labels.rows}


def _daily_increment(lake_dir: Path, repeats: int = 7) -> dict[str, Any]:
    """Median time to compute and store the last day's features (buffer read + compute + write)."""
    import statistics

    import pyarrow as pa

    from quant_core.data.lake import Lake
    from quant_core.features import get_feature_set
    from quant_core.features.store import feature_dataset, update_features

    lake = Lake(str(lake_dir))
    fs = get_feature_set("alpha158")
    cal = lake.calendar()
    last = cal.last
    ds = feature_dataset(lake, fs)
    if not ds.exists():
        update_features(lake, fs, cal.first, cal.last)
    schema = ds.schema
    assert schema is not None
    times = []
    for _ in range(repeats):
        ds.write(pa.Table.from_pylist([], schema=schema), last, last)  # the day is new again
        t0 = time.perf_counter()
        up = update_features(lake, fs, last, last)
        times.append(time.perf_counter() - t0)
        assert up.rows > 0 and up.months
    return {"rows": up.rows, "total_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "history_days": len(cal)}


@case
def features_daily_10y(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One new day for every symbol on 10 years of history."""
    return _daily_increment(work / "lake")


@case
def features_daily_5y(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The same increment on 5 years of history (history length must not matter)."""
    spec, _start, end = _spec(a)
    start5 = date(end.year - 4, 1, 1)
    lake5 = work / "lake5"
    if not lake5.exists():
        _ingest_fast(spec, start5, end, lake5)
    return _daily_increment(lake5)


@case
def qlib_alpha158(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Qlib 0.9.7's own Alpha158 handler on the same bars (in .venv-qlib)."""
    proc = subprocess.run([str(_peer_python()), str(ROOT / "benchmarks" / "qlib_peer.py"), "--bars", str(work / "bars.parquet"),
                           "--work", str(work)], capture_output=True, text=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise SystemExit("qlib peer failed:\n" + proc.stdout[-2000:] + proc.stderr[-4000:])
    result: dict[str, Any] = json.loads(line[-1][7:])
    return result


def _train(a: argparse.Namespace, work: Path, workers: int) -> dict[str, Any]:
    """first_train of the default strategy (Qlib's parameters) on the ingest_full lake, as a Prefect flow.

    Step 20 over the last 2 years gives ~25 tasks of ~1M rows each; to fit a session, the first
    ``--train-tasks`` test windows are trained (same tasks in the sequential and parallel runs).
    """
    import yaml
    from prefect import flow

    from flows.first_train import first_train, task_runner
    from quant_core.data.lake import Lake
    from quant_core.models.strategy import get_strategy

    lake_dir = work / "lake"
    cal = Lake(str(lake_dir)).calendar()
    default = get_strategy("lgb_alpha158")
    all_tasks = default.tasks(cal, cal.last)
    # pin the template's segments to dates, so an earlier as_of yields the first N of these tasks
    seg = default.template(cal, cal.last).segments
    body = default.model_dump(mode="json")
    body["segments"] = {"dates": {k: [v.start.isoformat(), v.end.isoformat() if v.end else None]
                                  for k, v in (("train", seg.train), ("valid", seg.valid), ("test", seg.test))}}
    cfg = work / f"bench-{workers}.yaml"
    cfg.write_text(yaml.safe_dump({"strategies": {"lgb_alpha158": body}}))
    os.environ["QONLINE_CONFIG"] = str(cfg)
    as_of = all_tasks[min(a.train_tasks, len(all_tasks)) - 1].segments.test.start
    os.environ["QONLINE_MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow-{workers}.db"
    os.environ["QONLINE_MLFLOW_ARTIFACT_URI"] = (work / f"mlartifacts-{workers}").as_uri()

    @flow
    def warm_up() -> None:  # start Prefect's ephemeral API outside the timing
        return None

    warm_up()
    t0 = time.perf_counter()
    summary = first_train.with_options(task_runner=task_runner("threads", max_workers=workers))(
        as_of=as_of, strategy="lgb_alpha158", lake_uri=str(lake_dir))
    total = time.perf_counter() - t0
    from quant_core.models.registry import ModelRegistry

    reg = ModelRegistry(os.environ["QONLINE_MLFLOW_TRACKING_URI"])
    fits = [m.metrics.get("fit_seconds", 0.0) for m in reg.list("lgb_alpha158")]
    rows = [m.metrics.get("train_rows", 0.0) for m in reg.list("lgb_alpha158")]
    assert summary["tasks"] == min(a.train_tasks, len(all_tasks)), summary["tasks"]
    return {"tasks": summary["tasks"], "total_s": total, "per_task_s": total / max(1, int(summary["tasks"])),
            "fit_predict_s_sum": sum(fits), "workers": workers, "all_tasks_2y_step20": len(all_tasks),
            "train_rows_max": max(rows) if rows else 0}


@case
def train_sequential(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Rolling training, one model at a time (1 LightGBM thread)."""
    return _train(a, work, 1)


@case
def train_parallel(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The same tasks, 2 workers x 1 LightGBM thread (threads task runner)."""
    return _train(a, work, 2)


BEFORE_COMMIT = "1dcfd38"  # main before the compare-and-swap commits (issue 10)


def _lake_before(work: Path) -> Any:
    """quant_core/data/lake.py as it was at BEFORE_COMMIT, imported beside the current one."""
    import importlib.util

    src = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:quant_core/data/lake.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    path = work / "lake_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("lake_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lake_before"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _lake_commit(a: argparse.Namespace, work: Path, uri_of: Callable[[str], str], s3: Any) -> dict[str, Any]:
    """A 1-day replace, a 1-month read and the manifest switch alone, before and after, interleaved.

    Each side gets its own lake holding the same two years of bars (500 symbols); the replace
    alternates between two versions of the last day so that every write really commits.
    """
    from quant_core.data import lake as after_module
    from quant_core.data.bars import bars_to_table
    from quant_core.data.sources import parse_source

    before_module = _lake_before(work)
    spec = f"synthetic:symbols={a.symbols},start=2022-01-01,end=2023-12-29,seed=11"
    bars = parse_source(spec).extract(date(2022, 1, 1), date(2023, 12, 29))
    lakes = {"before": before_module.Lake(uri_of("before"), s3), "after": after_module.Lake(uri_of("after"), s3)}
    for lake in lakes.values():
        lake.write_bars(bars, "2022-01-01", "2023-12-29")
    last = bars["date"].max()
    day = bars[bars["date"] == last]
    versions = [bars_to_table(day.assign(close=day["close"] * f)) for f in (1.001, 1.0)]
    month = (last.replace(day=1).date(), last.date())
    rounds = a.lake_rounds
    t: dict[str, dict[str, list[float]]] = {k: {"replace": [], "read": [], "switch": []} for k in lakes}
    for i in range(rounds):
        for name, lake in lakes.items():
            ds = lake.bars
            t0 = time.perf_counter()
            res = ds.write(versions[i % 2], last, last)
            t1 = time.perf_counter()
            assert not res.unchanged
            got = ds.read(*month)
            t2 = time.perf_counter()
            assert got.num_rows > 0
            # the commit step alone: read the manifest and switch it (to the same content)
            if name == "after":
                cur = ds.store.read()
                ds.store.swap(cur, cur.data)
            else:
                raw = ds._read_manifest_bytes()
                ds._switch_manifest(raw, before_module.Manifest.from_bytes(raw, "bench"))
            t3 = time.perf_counter()
            t[name]["replace"].append(t1 - t0)
            t[name]["read"].append(t2 - t1)
            t[name]["switch"].append(t3 - t2)
    med = {name: {k: statistics.median(v) for k, v in d.items()} for name, d in t.items()}
    out: dict[str, Any] = {"rows": len(day), "rounds": rounds, "month_rows": got.num_rows}
    for name, d in med.items():
        for k, v in d.items():
            out[f"{k}_{name}_s"] = v
    for k in ("replace", "read", "switch"):
        ratios = [x / y for x, y in zip(t["after"][k], t["before"][k], strict=True)]
        out[f"{k}_after_over_before"] = statistics.median(ratios)
    out["total_s"] = med["after"]["replace"]
    return out


@case
def lake_commit_local(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Lake commits on a local folder: before (read-compare-write) vs after (flock compare-and-swap)."""
    return _lake_commit(a, work, lambda name: str(work / f"commit-{name}"), None)


@case
def lake_commit_s3(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The same on SeaweedFS (started here): before (PUT) vs after (conditional PUT by boto3)."""
    from pydantic import SecretStr

    from quant_core.settings import S3Options
    from tests.support.s3_server import seaweedfs

    with seaweedfs() as server:
        s3 = S3Options(endpoint_url=server.endpoint_url, access_key_id=SecretStr(server.access_key),
                       secret_access_key=SecretStr(server.secret_key))
        return _lake_commit(a, work, lambda name: f"s3://{server.bucket}/commit-{name}", s3)


ROUTINE_MODEL = {"objective": "mse", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 200,
                 "colsample_bytree": 0.8, "num_boost_round": 120, "early_stopping_rounds": 20}


def _peer_python() -> Path:
    """The Python of the Qlib peer's virtualenv (benchmarks/setup_qlib.sh)."""
    peer = ROOT / ".venv-qlib" / "bin" / "python"
    if not peer.exists():
        raise SystemExit("run benchmarks/setup_qlib.sh first (pyqlib in .venv-qlib)")
    return peer


def _lgb_extra(spec: str, root: Path) -> dict[str, Any]:
    """What qonline's train_task adds to a strategy's LightGBM parameters (the Qlib peers add the same)."""
    from quant_core.models.training import SEED
    from quant_core.settings import load_settings

    num_threads = load_settings(lake_uri=str(root), source=spec).num_threads
    return {"num_threads": num_threads, "seed": SEED, "deterministic": True, "force_row_wise": True}


def _run_peer(script: str, cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """Write ``cfg`` as root/config.json, run a Qlib peer script on it, return its ``RESULT`` JSON.

    The peer runs in ``root``: Qlib's MLflow experiment manager puts a lock file at the tracking URI's
    path made relative (``qlib/workflow/expm.py``), i.e. under the working directory.
    """
    root = root.resolve()
    (root / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.run([str(_peer_python()), str(ROOT / "benchmarks" / script), "--config",
                           str(root / "config.json"), "--work", str(root)], capture_output=True, text=True, cwd=root)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"{script} failed:\n" + proc.stdout[-2000:] + proc.stderr[-4000:])
    result: dict[str, Any] = json.loads(line[-1][7:])
    return result


def _prefect_server(home: Path) -> tuple[Any, str, float]:
    """``prefect server start`` on a free port; returns (process, API URL, start-up seconds)."""
    import httpx

    from flows.local_services import free_port

    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false", PREFECT_SERVER_API_PORT=str(port))
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 180:
            raise SystemExit("prefect server did not start")
        time.sleep(0.25)
    return proc, f"http://127.0.0.1:{port}/api", time.perf_counter() - t0


@case
def routine_daily(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The daily routine on the synthetic market (--symbols x --years): a retrain day, then days without.

    Builds its own lake (bars, Alpha158, LABEL0) and a first training with one rolling task (step 20),
    then runs: the retrain day (LightGBM fit vs the routine's other work), three days without
    retraining in-process (per stage; flow start to signals in Redis), one more in a fresh
    `qonline run` process against a running Prefect server, the prediction update for 1 vs 20 new
    days, and the Redis publish of a 5,000-symbol snapshot.
    """
    import pandas as pd
    import yaml

    from flows.daily_routine import daily_routine
    from flows.first_train import first_train
    from flows.local_services import private_redis, stop_process_group
    from quant_core.data.lake import Lake
    from quant_core.features import get_feature_set
    from quant_core.features.labels import LABEL0
    from quant_core.features.store import update_features, update_labels
    from quant_core.models.registry import ModelRegistry
    from quant_core.online.predictions import LoadedModel, prediction_dataset, update_predictions
    from quant_core.online.redis_sink import SignalStore, connect

    spec, start, end = _spec(a)
    root = work / f"routine-{a.symbols}x{a.years}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    lake_dir = root / "lake"
    from quant_core.data.sources import parse_source

    cal_all = parse_source(spec).calendar()  # type: ignore[attr-defined]
    first_as_of = cal_all[-26]
    days = cal_all[-25:-20]  # the first one is a retrain day (step 20 from cal[-45])
    _ingest_fast(spec, start, first_as_of, lake_dir)
    lake = Lake(str(lake_dir))
    cal = lake.calendar()
    update_features(lake, get_feature_set("alpha158"), cal.first, cal.last)
    update_labels(lake, LABEL0, cal.first, cal.last)
    body = {"model": ROUTINE_MODEL, "rolling": {"step": 20},
            "segments": {"dates": {"train": [str(start), str(cal_all[-300])], "valid": [str(cal_all[-299]),
                                                                                        str(cal_all[-50])],
                                   "test": [str(cal_all[-45]), None]}}}
    out: dict[str, Any] = {"rows": a.symbols, "history_days": len(cal)}
    with private_redis() as redis_url:
        cfg = root / "q.yaml"
        cfg.write_text(yaml.safe_dump({"lake_uri": str(lake_dir), "source": spec, "redis_url": redis_url,
                                       "strategies": {"bench": body}, "max_workers": 1}))
        t0 = time.perf_counter()
        first_train(as_of=first_as_of, strategy="bench", config=str(cfg))
        out["first_train_s"] = time.perf_counter() - t0
        import great_expectations  # noqa: F401  (a warm process: import costs are measured apart below)

        t0 = time.perf_counter()
        retrain = daily_routine(as_of=days[0], config=str(cfg))
        wall = time.perf_counter() - t0
        reg = ModelRegistry(f"sqlite:///{lake_dir}-mlflow.db")
        fit = sum(m.metrics.get("fit_seconds", 0.0) for m in reg.list("bench") if m.test_start == str(days[0]))
        out.update(retrain_wall_s=wall, retrain_fit_s=fit, retrain_overhead_s=wall - fit,
                   retrain_overhead_share=(wall - fit) / fit if fit else None,
                   retrain_stages=retrain["seconds"])
        plain = []
        for d in days[1:4]:
            t0 = time.perf_counter()
            res = daily_routine(as_of=d, config=str(cfg))
            plain.append({"wall_s": time.perf_counter() - t0, **res["seconds"]})
        out["routine_runs"] = plain
        best = sorted(plain, key=lambda r: r["total"])[len(plain) // 2]
        out["routine_flow_s"] = best["total"]
        out["routine_wall_s"] = best["wall_s"]
        out["routine_stages"] = best
        # a fresh process, as a worker runs it, against a running Prefect server
        proc, api, startup = _prefect_server(root / "prefect-home")
        try:
            env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(root / "prefect-home"))
            t0 = time.perf_counter()
            run = subprocess.run([str(Path(sys.executable).parent / "qonline"), "run", "--as-of", str(days[4]),
                                  "--config", str(cfg), "--json"], env=env, capture_output=True, text=True)
            out["fresh_process_run_s"] = time.perf_counter() - t0
            if run.returncode != 0:
                raise SystemExit("qonline run failed:\n" + run.stderr[-3000:])
            out["fresh_process_flow_s"] = json.loads(run.stdout[run.stdout.index("{"):])["seconds"]["total"]
            out["prefect_server_startup_s"] = startup
        finally:
            stop_process_group(proc)
        imports = {}
        for mod in ("prefect", "great_expectations", "mlflow", "lightgbm", "quant_core.features", "flows.cli"):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {mod}"], check=True, cwd=ROOT)
            imports[mod] = round(time.perf_counter() - t0, 2)
        out["import_s_fresh_process"] = imports
        # prediction update: 1 vs 20 new days with the serving model (loaded once)
        version = reg.online_version("bench")
        assert version is not None
        model = LoadedModel.from_artifacts("bench", version, "alpha158", reg.artifacts("bench", version))
        ds = prediction_dataset(lake, "bench", version)
        twenty = list(cal_all[-45:-25])
        pred_times = {}
        for n in (1, 20):
            ts = []
            for _ in range(3):
                schema = ds.schema
                assert schema is not None
                ds.write(schema.empty_table(), twenty[0], twenty[-1])  # the 20 days are new again
                t0 = time.perf_counter()
                update_predictions(lake, model, twenty[-n:])
                ts.append(time.perf_counter() - t0)
            pred_times[n] = statistics.median(ts)
        out["predict_1_day_s"], out["predict_20_days_s"] = pred_times[1], pred_times[20]
        # Redis publish of a 5,000-symbol snapshot (alternating two contents, median of 21)
        import numpy as np

        store = SignalStore(connect(redis_url), prefix="bench")
        frames = [pd.DataFrame({"symbol": [f"S{i:05d}" for i in range(5000)],
                                "score": np.random.default_rng(k).normal(size=5000)}) for k in (1, 2)]
        pub = []
        for i in range(21):
            r = store.publish("big", days[0], frames[i % 2], {"models": "1"})
            assert r.published
            pub.append(r.seconds)
        out["redis_publish_5000_s"] = statistics.median(pub)
    out["total_s"] = out["routine_flow_s"]
    return out


@case
def csi300_quarter(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Real data: CSI 300 (../shared), first training as of 2024-12-31 with monthly steps (20 sessions),
    then one daily routine per session of 2025-01-02 .. 2025-03-31; live rank IC from the monitoring rows."""
    import yaml

    from flows.daily_routine import daily_routine
    from flows.first_train import first_train
    from flows.ingest import ingest
    from flows.local_services import private_redis
    from quant_core.data.lake import Lake
    from quant_core.online.monitoring import monitoring_dataset
    from quant_core.online.promotion import PromotionLog

    shared = Path(os.environ.get("QONLINE_SHARED_DIR", ROOT.parent / "shared"))
    data = shared / "data" / "real" / "csi300_2020_2025" / "csi300_2020_2025.parquet"
    root = work / "csi300-quarter"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    body = {"model": ROUTINE_MODEL, "rolling": {"step": 20},
            "segments": {"relative": {"test_years": 1, "valid_years": 1}}}
    out: dict[str, Any] = {}
    with private_redis() as redis_url:
        cfg = root / "q.yaml"
        cfg.write_text(yaml.safe_dump({"lake_uri": str(root / "lake"), "source": f"parquet:{data}",
                                       "exchange": "XSHG", "redis_url": redis_url,
                                       "strategies": {"csi300_monthly": body}}))
        t0 = time.perf_counter()
        ingest(start=date(2020, 1, 1), end=date(2024, 12, 31), config=str(cfg))
        out["ingest_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ft = first_train(as_of=date(2024, 12, 31), strategy="csi300_monthly", config=str(cfg))
        out["first_train_s"] = time.perf_counter() - t0
        out["first_train_tasks"] = ft["tasks"]
        lake = Lake(str(root / "lake"))
        import exchange_calendars as xc

        sessions = [d.date() for d in xc.get_calendar("XSHG").sessions_in_range("2025-01-02", "2025-03-31")]
        runs = []
        t0 = time.perf_counter()
        for d in sessions:
            res = daily_routine(as_of=d, config=str(cfg))
            runs.append({"as_of": res["as_of"], "total": res["seconds"]["total"],
                         "trained": len(res["trained"]["csi300_monthly"])})
        out["routines"] = len(runs)
        out["routines_s"] = time.perf_counter() - t0
        out["routine_median_s"] = statistics.median(r["total"] for r in runs if not r["trained"])
        out["retrain_days"] = [r["as_of"] for r in runs if r["trained"]]
        mon = monitoring_dataset(lake, "csi300_monthly").read().to_pandas()
        out["monitored_dates"] = len(mon)
        out["live_ic_mean"] = float(mon["ic"].mean())
        out["live_rank_ic_mean"] = float(mon["rank_ic"].mean())
        out["live_rank_icir"] = float(mon["rank_ic"].mean() / mon["rank_ic"].std(ddof=1))
        out["live_rank_ic_by_version"] = {str(k): round(float(v), 4) for k, v in
                                          mon.groupby("version")["rank_ic"].mean().items()}
        out["promotions"] = [(p.kind, p.from_version, p.to_version, str(p.applies_after))
                             for p in PromotionLog(lake, "csi300_monthly").entries()]
    out["rows"] = out["monitored_dates"]
    out["total_s"] = out["routines_s"]
    return out


CSI300_AS_OF = date(2025, 4, 7)  # the last session of ../shared/data/real/csi300_2020_2025
PARITY_TOLERANCE = 0.003  # issue 13: per-task |delta IC| and |delta rank IC|


def _csi300_lake(root: Path, as_of: date) -> tuple[Any, Path, dict[str, Any]]:
    """The CSI 300 parquet (../shared) as a lake (bars through ``as_of``, Alpha158, LABEL0), one thread.

    Built once per work dir (``root/lake.json`` marks it done): csi300_strategy_grid reuses the lake
    of qlib_training_parity. Returns (lake, the bars as parquet for the Qlib peer, build timings).
    """
    from quant_core.data.lake import Lake
    from quant_core.data.sources import parse_source
    from quant_core.features import get_feature_set
    from quant_core.features.labels import LABEL0
    from quant_core.features.store import update_features, update_labels

    shared = Path(os.environ.get("QONLINE_SHARED_DIR", ROOT.parent / "shared"))
    data = shared / "data" / "real" / "csi300_2020_2025" / "csi300_2020_2025.parquet"
    lake_dir, bars_path, done = root / "lake", root / "bars.parquet", root / "lake.json"
    if done.exists():
        return Lake(str(lake_dir)), bars_path, json.loads(done.read_text())
    shutil.rmtree(lake_dir, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"source": f"parquet:{data}", "as_of": str(as_of)}
    t0 = time.perf_counter()
    bars = parse_source(info["source"]).extract(date(2020, 1, 1), as_of)
    lake = Lake(str(lake_dir))
    lake.write_bars(bars, date(2020, 1, 1), as_of)
    bars.to_parquet(bars_path, index=False)
    t1 = time.perf_counter()
    cal = lake.calendar()
    update_features(lake, get_feature_set("alpha158"), cal.first, cal.last, threads=1)
    update_labels(lake, LABEL0, cal.first, cal.last)
    info.update(bars=len(bars), symbols=int(bars["symbol"].nunique()), sessions=len(cal),
                first=str(cal.first), last=str(cal.last), bars_s=t1 - t0, features_labels_s=time.perf_counter() - t1)
    done.write_text(json.dumps(info))
    return lake, bars_path, info


def _fit_metrics(data: Any, task: Any) -> dict[str, Any]:
    """qonline's ``train_task`` (one thread) on a task's data: metrics, and trees and leaves of the model
    as saved (its best iteration; a tree of 1 leaf is a constant)."""
    import lightgbm as lgb

    from quant_core.models.training import train_task

    trained = train_task(data, task, num_threads=1)
    m = trained.metrics
    labelled = data.test[data.label].notna() if not data.test.empty else None
    leaves = [int(t["num_leaves"]) for t in lgb.Booster(model_str=trained.model_text).dump_model()["tree_info"]]
    return {"best_iteration": int(m["best_iteration"]), "trees": len(leaves), "leaves": leaves,
            "train_rows": int(m["train_rows"]), "valid_rows": int(m["valid_rows"]),
            "test_rows": int(m.get("test_rows", 0)), "fit_s": trained.fit_seconds, "valid_l2": m["valid_l2"],
            "test_days": 0 if labelled is None else int(data.test.loc[labelled, "date"].nunique()),
            **{k: m.get(k, float("nan")) for k in ("valid_ic", "valid_rank_ic", "test_ic", "test_rank_ic")}}


def _segments_json(task: Any, day: date) -> dict[str, list[str]]:
    """A task's segments as trained as of ``day`` (an open test segment ends on ``day``)."""
    return {"train": [str(task.train.start), str(task.train.end)], "valid": [str(task.valid.start), str(task.valid.end)],
            "test": [str(task.test.start), str(min(task.test.end or day, day))]}


def _fit_qonline(lake: Any, tasks: list[Any], as_of: date, variants: dict[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
    """Train tasks as ``first_train`` does: each task's data assembled from the lake as of ``as_of``
    (point in time), one LightGBM thread. ``variants`` (name -> function of the task giving the task
    to train on the same data; default ``{"qonline": the task}``) share one assembly per task."""
    from quant_core.models.training import assemble

    cal = lake.calendar()
    day = cal.align_end(as_of)
    out = []
    for task in tasks:
        t0 = time.perf_counter()
        data = assemble(lake, task, cal, day)
        row: dict[str, Any] = {"test_start": str(task.segments.test.start), "assemble_s": time.perf_counter() - t0,
                               "segments": _segments_json(task, day)}
        for name, variant in (variants or {"qonline": lambda t: t}).items():
            row[name] = _fit_metrics(data, variant(task))
        out.append(row)
        del data
    return out


def _fit_on_frame(frame: Any, lake: Any, tasks: list[Any], as_of: date) -> list[dict[str, Any]]:
    """qonline's training path (its processors, its LightGBM call) on another Alpha158 frame (date,
    symbol, the 158 features, the raw LABEL0): each task's train/valid/test rows cut from ``frame`` by
    the segments ``assemble`` uses."""
    from dataclasses import replace

    import pandas as pd

    from quant_core.models.training import assemble

    cal = lake.calendar()
    day = cal.align_end(as_of)
    dates = frame["date"]

    def cut(start: date, end: date) -> Any:
        return frame[(dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))].reset_index(drop=True)

    out = []
    for task in tasks:
        data = assemble(lake, task, cal, day)  # the cutoff, feature names, label
        seg = _segments_json(task, day)
        theirs = replace(data, train=cut(*map(date.fromisoformat, seg["train"])),
                         valid=cut(*map(date.fromisoformat, seg["valid"])), test=cut(*map(date.fromisoformat, seg["test"])))
        out.append(_fit_metrics(theirs, task))
        del data, theirs
    return out


#: the noise check's other LightGBM column-sampling seed (``feature_fraction_seed``; qonline's default
#: derives it from ``SEED``)
PARITY_NOISE_SEED = 7
IDX_PREFIXES = ("IMAX", "IMIN", "IMXD")


def _lake_alpha158(lake: Any, start: date, end: date) -> tuple[Any, Any]:
    """The alpha158 feature set and the lake's Alpha158 rows of ``[start, end]`` with their ``LABEL0``
    (NaN where the label is not observable yet)."""
    from quant_core.features import get_feature_set
    from quant_core.features.labels import LABEL0
    from quant_core.features.store import feature_dataset, label_dataset

    fs = get_feature_set("alpha158")
    frame = feature_dataset(lake, fs).read(start, end).to_pandas().merge(
        label_dataset(lake, LABEL0).read(start, end).to_pandas(), on=["date", "symbol"], how="left")
    return fs, frame


def _swap_idx_columns(lake: Any, qlib_frame: Any, start: date, end: date) -> Any:
    """qonline's own Alpha158 + LABEL0 rows of ``[start, end]`` with Qlib's IMAX/IMIN/IMXD columns put in
    place of qonline's (the one deliberate Alpha158 deviation: a suspended day in the window is not the
    extreme for qonline, it is for Qlib). Same rows on both sides, checked."""
    import pandas as pd

    from quant_core.features.labels import LABEL0

    fs, ours = _lake_alpha158(lake, start, end)
    ours["date"] = pd.to_datetime(ours["date"])
    ours["symbol"] = ours["symbol"].astype(str)
    idx_cols = [c for c in fs.names if c.startswith(IDX_PREFIXES)]
    theirs = qlib_frame[["date", "symbol", *idx_cols]]
    merged = ours.drop(columns=idx_cols).merge(theirs, on=["date", "symbol"], how="inner", validate="one_to_one")
    if len(merged) != len(ours) or len(merged) != len(theirs):
        raise SystemExit(f"swap check: qonline has {len(ours)} rows, Qlib {len(theirs)}, {len(merged)} in both")
    return merged[["date", "symbol", *fs.names, LABEL0.name]].sort_values(["date", "symbol"]).reset_index(drop=True)


def _delta_summary(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Per-task |delta IC| / |delta rank IC| of metric pairs: tasks within the tolerance, medians, maxima,
    same best iteration."""
    d_ic = [abs(x["test_ic"] - y["test_ic"]) for x, y in pairs]
    d_ric = [abs(x["test_rank_ic"] - y["test_rank_ic"]) for x, y in pairs]
    return {"tasks": len(pairs),
            "within_tolerance": sum(i <= PARITY_TOLERANCE and r <= PARITY_TOLERANCE for i, r in zip(d_ic, d_ric, strict=True)),
            "same_best_iteration": sum(x["best_iteration"] == y["best_iteration"] for x, y in pairs),
            "median_abs_diff_ic": float(statistics.median(d_ic)), "median_abs_diff_rank_ic": float(statistics.median(d_ric)),
            "max_abs_diff_ic": max(d_ic), "max_abs_diff_rank_ic": max(d_ric)}


@case
def qlib_training_parity(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Real data: every rolling task of a strategy on CSI 300 as of 2025-04-07, trained by qonline and by
    Qlib 0.9.7's own ``LGBModel`` on ``DatasetH(Alpha158)`` (.venv-qlib, benchmarks/qlib_training_peer.py)
    on the same bars, segments, label, processors and LightGBM parameters; per-task test IC / rank IC.

    Three sides, one LightGBM thread each, one after the other: (1) qonline end to end, as
    ``first_train`` trains (its lake's Alpha158 and LABEL0, point in time); (2) Qlib: the peer writes
    the same bars in Qlib's binary format, builds its Alpha158 handler (DropnaLabel + CSZScoreNorm on
    the label, no infer processors, traded rows only) and trains the same tasks with the same LightGBM
    settings (seed, deterministic, row-wise); (3) qonline's training path (processors, LightGBM call,
    metrics) on Qlib's own Alpha158 rows, which the peer writes out: it separates the training path
    from the features. The strategy is ``lgb_alpha158_qlib`` (Qlib's benchmark parameters) unless
    ``QONLINE_PARITY_STRATEGY`` names another. Parity: |delta IC| and |delta rank IC| <= 0.003 per task.

    Two checks say where end-to-end differences come from and how large a difference is noise (skip
    them with ``QONLINE_PARITY_CHECKS=none``): (4) "swap": qonline's training on its own Alpha158 rows
    with Qlib's IMAX/IMIN/IMXD columns put in (what is left once the one deliberate feature deviation
    is removed), against Qlib; (5) "seed": qonline end to end with another LightGBM column-sampling
    seed (``feature_fraction_seed`` 7), against qonline: the same data, another random draw.
    """
    import pandas as pd

    from quant_core.models.strategy import get_strategy

    _peer_python()
    name = os.environ.get("QONLINE_PARITY_STRATEGY", "lgb_alpha158_qlib")
    root = work / "csi300-training"
    t_start = time.perf_counter()
    lake, bars_path, lake_info = _csi300_lake(root, CSI300_AS_OF)
    strategy = get_strategy(name)
    cal = lake.calendar()
    day = cal.align_end(CSI300_AS_OF)
    tasks = strategy.tasks(cal, CSI300_AS_OF)
    checks = os.environ.get("QONLINE_PARITY_CHECKS", "swap,seed")
    checks_on = {c.strip() for c in checks.split(",")} - {"none", ""}
    if checks_on - {"swap", "seed"}:
        raise SystemExit(f"QONLINE_PARITY_CHECKS={checks!r}: expected a comma list of swap, seed, or none")
    variants: dict[str, Any] = {"qonline": lambda t: t}
    if "seed" in checks_on:
        variants["qonline_seed"] = lambda t: t.model_copy(
            update={"model_params": {**t.model_params, "feature_fraction_seed": PARITY_NOISE_SEED}})
    t0 = time.perf_counter()
    ours = _fit_qonline(lake, tasks, CSI300_AS_OF, variants)
    qonline_s = time.perf_counter() - t0
    peer_root = root / f"qlib-{name}"
    shutil.rmtree(peer_root, ignore_errors=True)
    peer_root.mkdir(parents=True)
    cfg: dict[str, Any] = {"bars": str(bars_path), "as_of": str(day), "traded_only": True,
           "dump_alpha158": str(peer_root / "qlib_alpha158.parquet"),
           "processors": [p.model_dump() for p in strategy.processors],
           "lgb_extra": _lgb_extra(lake_info["source"], root) | {"num_threads": 1},
           "tasks": [{"test_start": str(t.test.start), "segments": _segments_json(t, day), "model": dict(t.model_params)}
                     for t in tasks]}
    t0 = time.perf_counter()
    theirs = _run_peer("qlib_training_peer.py", cfg, peer_root)
    qlib_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = pd.read_parquet(cfg["dump_alpha158"])
    frame["date"] = pd.to_datetime(frame["date"])
    on_qlib = _fit_on_frame(frame, lake, tasks, CSI300_AS_OF)
    on_qlib_s = time.perf_counter() - t0
    swapped: list[dict[str, Any]] = []
    swap_s = 0.0
    if "swap" in checks_on:
        t0 = time.perf_counter()
        swap_frame = _swap_idx_columns(lake, frame, cal.first, day)
        swapped = _fit_on_frame(swap_frame, lake, tasks, CSI300_AS_OF)
        del swap_frame
        swap_s = time.perf_counter() - t0
    del frame

    rows, lines = [], []
    head = (f"{'test start':<11} {'train':>7} | {'qonline IC':>10} {'rank IC':>8} {'it':>3} | {'Qlib IC':>8} "
            f"{'rank IC':>8} {'it':>3} | {'|dIC|':>6} {'|dRIC|':>6} | {'on Qlib features: |dIC|':>24} {'|dRIC|':>7} {'it':>3}")
    lines += [head, "-" * len(head)]
    for r, q, c in zip(ours, theirs["tasks"], on_qlib, strict=True):
        o = r["qonline"]
        assert r["test_start"] == q["test_start"], (r["test_start"], q["test_start"])
        d_ic, d_ric = abs(o["test_ic"] - q["test_ic"]), abs(o["test_rank_ic"] - q["test_rank_ic"])
        p_ic, p_ric = abs(c["test_ic"] - q["test_ic"]), abs(c["test_rank_ic"] - q["test_rank_ic"])
        rows.append({"test_start": r["test_start"], "segments": r["segments"], "qonline": o, "qlib": q,
                     "qonline_on_qlib_features": c, "abs_diff_ic": d_ic, "abs_diff_rank_ic": d_ric,
                     "path_abs_diff_ic": p_ic, "path_abs_diff_rank_ic": p_ric,
                     "path_same_best_iteration": c["best_iteration"] == q["best_iteration"],
                     "same_rows": (o["train_rows"], o["valid_rows"], o["test_rows"])
                     == (q["train_rows"], q["valid_rows"], q["test_rows"])})
        lines.append(f"{r['test_start']:<11} {o['train_rows']:>7} | {o['test_ic']:>10.4f} {o['test_rank_ic']:>8.4f} "
                     f"{o['best_iteration']:>3} | {q['test_ic']:>8.4f} {q['test_rank_ic']:>8.4f} "
                     f"{q['best_iteration']:>3} | {d_ic:>6.4f} {d_ric:>6.4f} | {p_ic:>24.4f} {p_ric:>7.4f} "
                     f"{c['best_iteration']:>3}")

    def mean(side: str, key: str) -> float:
        return float(statistics.fmean(r[side][key] for r in rows))

    def median_iter(side: str) -> float:
        return float(statistics.median(r[side]["best_iteration"] for r in rows))

    max_ic, max_ric = max(r["abs_diff_ic"] for r in rows), max(r["abs_diff_rank_ic"] for r in rows)
    path_ic, path_ric = max(r["path_abs_diff_ic"] for r in rows), max(r["path_abs_diff_rank_ic"] for r in rows)
    parity = max_ic <= PARITY_TOLERANCE and max_ric <= PARITY_TOLERANCE
    path_parity = path_ic <= PARITY_TOLERANCE and path_ric <= PARITY_TOLERANCE
    within = sum(r["abs_diff_ic"] <= PARITY_TOLERANCE and r["abs_diff_rank_ic"] <= PARITY_TOLERANCE for r in rows)
    lines.append("-" * len(head))
    lines.append(f"{'mean':<11} {'':>7} | {mean('qonline', 'test_ic'):>10.4f} {mean('qonline', 'test_rank_ic'):>8.4f} "
                 f"{median_iter('qonline'):>3.0f} | {mean('qlib', 'test_ic'):>8.4f} {mean('qlib', 'test_rank_ic'):>8.4f} "
                 f"{median_iter('qlib'):>3.0f} | {'max':>6} {'':>6} | {path_ic:>24.4f} {path_ric:>7.4f} "
                 f"{median_iter('qonline_on_qlib_features'):>3.0f}")
    lines.append(f"{'':<11} {'':>7} | {'':>10} {'':>8} {'':>3} | {'':>8} {'':>8} {'':>3} | {max_ic:>6.4f} {max_ric:>6.4f} |")
    lines.append(f"(it = best iteration; the mean row's it is the median) strategy {name}, as of {day}, {len(rows)} tasks")
    lines.append(f"end to end (qonline's features vs Qlib's): |dIC|, |dRIC| <= {PARITY_TOLERANCE} on {within} of "
                 f"{len(rows)} tasks -- parity {'met' if parity else 'NOT met'}; same train/valid/test rows on every "
                 f"task: {all(r['same_rows'] for r in rows)}")
    lines.append(f"training path (qonline's training on Qlib's Alpha158 rows vs Qlib's LGBModel): max |dIC| {path_ic:.2e}, "
                 f"|dRIC| {path_ric:.2e}, same best iteration on {sum(r['path_same_best_iteration'] for r in rows)} of "
                 f"{len(rows)} tasks -- parity {'met' if path_parity else 'NOT met'}")
    checks_out: dict[str, Any] = {}
    if swapped:
        for r, c in zip(rows, swapped, strict=True):
            r["qonline_swap_idx"] = c
        checks_out["swap_idx_vs_qlib"] = _delta_summary([(r["qonline_swap_idx"], r["qlib"]) for r in rows])
        checks_out["swap_s"] = swap_s
    if "qonline_seed" in ours[0]:
        for r, o in zip(rows, ours, strict=True):
            r["qonline_seed"] = o["qonline_seed"]
        checks_out["seed_vs_qonline"] = _delta_summary([(r["qonline_seed"], r["qonline"]) for r in rows])
    for key, what in (("swap_idx_vs_qlib", "qonline's features with Qlib's IMAX/IMIN/IMXD swapped in, vs Qlib"),
                      ("seed_vs_qonline", f"qonline, feature_fraction_seed {PARITY_NOISE_SEED}, vs qonline (noise)")):
        if key in checks_out:
            d = checks_out[key]
            lines.append(f"check: {what}: within {PARITY_TOLERANCE} on {d['within_tolerance']} of {d['tasks']} tasks, "
                         f"same best iteration on {d['same_best_iteration']}; median |dIC| {d['median_abs_diff_ic']:.4f} "
                         f"|dRIC| {d['median_abs_diff_rank_ic']:.4f}; max {d['max_abs_diff_ic']:.4f} / "
                         f"{d['max_abs_diff_rank_ic']:.4f}")
    table = "\n".join(lines)
    (root / f"parity-{name}.txt").write_text(table + "\n")
    out: dict[str, Any] = {
        "rows": len(rows), "strategy": name, "as_of": str(day), "model": dict(tasks[0].model_params),
        "lake": lake_info, "tasks": rows, "parity": parity, "tasks_within_tolerance": within,
        "max_abs_diff_ic": max_ic, "max_abs_diff_rank_ic": max_ric,
        "training_path_parity": path_parity, "path_max_abs_diff_ic": path_ic, "path_max_abs_diff_rank_ic": path_ric,
        "same_rows_all_tasks": all(r["same_rows"] for r in rows),
        **{f"{side}_mean_{k}": mean(side, k) for side in ("qonline", "qlib", "qonline_on_qlib_features")
           for k in ("test_ic", "test_rank_ic", "valid_ic", "valid_rank_ic")},
        **{f"{side}_single_tree_models": sum(r[side]["best_iteration"] == 1 for r in rows)
           for side in ("qonline", "qlib", "qonline_on_qlib_features")},
        "qonline_train_s": qonline_s, "qlib_peer_s": qlib_s, "qonline_on_qlib_features_s": on_qlib_s,
        "qlib_handler_s": theirs["handler_s"], "qlib_write_dir_s": theirs["write_qlib_dir_s"],
        "qlib_fit_s_sum": theirs["fit_s_sum"], "qonline_fit_s_sum": sum(r["qonline"]["fit_s"] for r in rows),
        "qlib_peak_rss_mb": theirs["peak_rss_mb"], "table_path": str(root / f"parity-{name}.txt"),
        "checks": checks_out, "total_s": time.perf_counter() - t_start,
    }
    out["table"] = "\n" + table  # last: the harness prints it as the case's last detail
    return out


#: issue 13's grid for the default strategy on a lake of CSI 300's size (~300 symbols x 3-5 years). Two
#: axes: the label's cross-sectional normalisation (Qlib's CSZScoreNorm, or CSRankNorm: the daily return's
#: rank, which price-limit days and other fat tails cannot dominate) and the LightGBM parameters (Qlib's
#: benchmark ones, or small trees with small penalties and a lower learning rate). Early stopping on the
#: valid l2 throughout; features as Qlib's LightGBM benchmark has them (no feature processor).
QLIB_BENCHMARK_MODEL = {"objective": "mse", "colsample_bytree": 0.8879, "learning_rate": 0.2, "subsample": 0.8789,
                        "lambda_l1": 205.6999, "lambda_l2": 580.9768, "max_depth": 8, "num_leaves": 210,
                        "num_boost_round": 1000, "early_stopping_rounds": 50}
_ZSCORE_LABEL = [{"name": "DropnaLabel"}, {"name": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}]
_RANK_LABEL = [{"name": "DropnaLabel"}, {"name": "CSRankNorm", "kwargs": {"fields_group": "label"}}]


def _small(lr: float, leaves: int, min_leaf: int) -> dict[str, Any]:
    return {"objective": "mse", "colsample_bytree": 0.8, "learning_rate": lr, "num_leaves": leaves,
            "min_data_in_leaf": min_leaf, "lambda_l1": 1.0, "lambda_l2": 10.0, "num_boost_round": 1000,
            "early_stopping_rounds": 50}


GRID: dict[str, dict[str, Any]] = {
    "zlabel_qlib": {"processors": _ZSCORE_LABEL, "model": QLIB_BENCHMARK_MODEL},  # lgb_alpha158_qlib
    "zlabel_lr0.05_l63_m200": {"processors": _ZSCORE_LABEL, "model": _small(0.05, 63, 200)},
    "ranklabel_qlib": {"processors": _RANK_LABEL, "model": QLIB_BENCHMARK_MODEL},
    "ranklabel_lr0.05_l31_m200": {"processors": _RANK_LABEL, "model": _small(0.05, 31, 200)},
    "ranklabel_lr0.05_l63_m200": {"processors": _RANK_LABEL, "model": _small(0.05, 63, 200)},
    "ranklabel_lr0.05_l63_m1000": {"processors": _RANK_LABEL, "model": _small(0.05, 63, 1000)},
    "ranklabel_lr0.1_l31_m200": {"processors": _RANK_LABEL, "model": _small(0.1, 31, 200)},
    "ranklabel_lr0.1_l63_m200": {"processors": _RANK_LABEL, "model": _small(0.1, 63, 200)},
}


def _single_feature_rank_ic(lake: Any, start: date, end: date) -> dict[str, float]:
    """Mean daily rank IC of each Alpha158 feature against LABEL0 over ``[start, end]`` (labelled days)."""
    from quant_core.models.training import daily_ic

    fs, frame = _lake_alpha158(lake, start, end)
    frame = frame[frame["LABEL0"].notna()]
    label, dates = frame["LABEL0"].to_numpy(), frame["date"].to_numpy()
    out = {name: daily_ic(frame[name].to_numpy(), label, dates)[1] for name in fs.names}
    return out


@case
def csi300_strategy_grid(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Real data: the 8 configurations of GRID (label normalisation x LightGBM parameters; ``zlabel_qlib``
    is ``lgb_alpha158_qlib``) on the rolling tasks of the shipped strategies' segments (2 test years, 1
    valid year, step 20) on CSI 300 as of 2025-04-07, one thread; the lake of qlib_training_parity,
    built if missing.

    Each task's data is assembled once (point in time, as ``first_train``) and trained with every
    configuration. The configuration with the best mean valid rank IC across the tasks is chosen; test
    numbers are reported for every configuration but play no part in the choice.
    """
    from quant_core.models.rolling import ProcessorSpec
    from quant_core.models.strategy import get_strategy

    t_start = time.perf_counter()
    root = work / "csi300-training"
    lake, _bars, lake_info = _csi300_lake(root, CSI300_AS_OF)
    reference = get_strategy("lgb_alpha158_qlib")
    cal = lake.calendar()
    tasks = reference.tasks(cal, CSI300_AS_OF)
    assert dict(reference.model) == QLIB_BENCHMARK_MODEL, "lgb_alpha158_qlib is no longer Qlib's benchmark model"

    def variant(cfg: dict[str, Any]) -> Any:
        procs = tuple(ProcessorSpec(**p) for p in cfg["processors"])
        return lambda t: t.model_copy(update={"model_params": dict(cfg["model"]), "processors": procs})

    variants = {name: variant(cfg) for name, cfg in GRID.items()}
    fits = _fit_qonline(lake, tasks, CSI300_AS_OF, variants)
    summary: dict[str, dict[str, Any]] = {}
    for name in GRID:
        runs = [r[name] for r in fits]
        test_ric = [m["test_rank_ic"] for m in runs]
        summary[name] = {
            **{f"mean_{k}": statistics.fmean(m[k] for m in runs)
               for k in ("valid_ic", "valid_rank_ic", "test_ic", "test_rank_ic")},
            # the rolling signal's own numbers: every labelled test day once (tasks weighted by their days)
            **{f"daily_{k}": sum(m[k] * m["test_days"] for m in runs) / sum(m["test_days"] for m in runs)
               for k in ("test_ic", "test_rank_ic")},
            "test_days": sum(m["test_days"] for m in runs),
            "test_rank_ic_min": min(test_ric), "test_rank_ic_max": max(test_ric),
            "tasks_test_rank_ic_positive": sum(x > 0 for x in test_ric),
            "best_iteration_median": statistics.median(m["best_iteration"] for m in runs),
            "best_iteration_range": [min(m["best_iteration"] for m in runs), max(m["best_iteration"] for m in runs)],
            "single_tree_models": sum(m["best_iteration"] == 1 for m in runs),
            "fit_s_sum": sum(m["fit_s"] for m in runs), **GRID[name],
        }
    chosen = max(GRID, key=lambda n: summary[n]["mean_valid_rank_ic"])  # validation only
    head = (f"{'configuration':<26} {'valid IC':>8} {'valid RIC':>9} | {'test IC':>8} {'test RIC':>8} "
            f"{'min':>7} {'max':>7} {'>0':>3} | {'daily IC':>8} {'RIC':>7} | {'iter med':>8} {'range':>7} "
            f"{'fit s':>6}")
    lines = [head, "-" * len(head)]
    for name, s in sorted(summary.items(), key=lambda kv: -kv[1]["mean_valid_rank_ic"]):
        mark = " *" if name == chosen else ""
        lo, hi = s["best_iteration_range"]
        lines.append(f"{name:<26} {s['mean_valid_ic']:>8.4f} {s['mean_valid_rank_ic']:>9.4f} | {s['mean_test_ic']:>8.4f} "
                     f"{s['mean_test_rank_ic']:>8.4f} {s['test_rank_ic_min']:>7.4f} {s['test_rank_ic_max']:>7.4f} "
                     f"{s['tasks_test_rank_ic_positive']:>3} | {s['daily_test_ic']:>8.4f} {s['daily_test_rank_ic']:>7.4f} | "
                     f"{s['best_iteration_median']:>8.0f} {f'{lo}-{hi}':>7} {s['fit_s_sum']:>6.0f}{mark}")
    lines.append(f"{len(tasks)} tasks (test {tasks[0].test.start} .. as of {cal.align_end(CSI300_AS_OF)}); valid and "
                 f"test IC / RIC: means over the tasks (min, max, >0: of the tasks' test RIC); daily: over the "
                 f"{summary[chosen]['test_days']} labelled test days; chosen by mean valid rank IC alone: {chosen} (*)")
    default = get_strategy("lgb_alpha158")
    shipped = (dict(default.model) == GRID[chosen]["model"]
               and [p.model_dump() for p in default.processors] == [ProcessorSpec(**p).model_dump()
                                                                   for p in GRID[chosen]["processors"]])
    lines.append(f"the shipped default lgb_alpha158 is {chosen}: {shipped}")
    single = _single_feature_rank_ic(lake, tasks[0].test.start, cal.align_end(CSI300_AS_OF))
    top = sorted(single.items(), key=lambda kv: -abs(kv[1]))[:5]
    lines.append("single Alpha158 features over the whole test span, mean daily rank IC: "
                 + ", ".join(f"{k} {v:+.4f}" for k, v in top))
    table = "\n".join(lines)
    (root / "grid.txt").write_text(table + "\n")
    out: dict[str, Any] = {"rows": len(tasks), "as_of": str(cal.align_end(CSI300_AS_OF)), "lake": lake_info,
                           "chosen": chosen, "default_is_chosen": shipped, "summary": summary, "tasks": fits,
                           "single_feature_test_rank_ic_top": dict(top), "table_path": str(root / "grid.txt"),
                           "total_s": time.perf_counter() - t_start}
    out["table"] = "\n" + table
    return out


@case
def qlib_online_routine(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Qlib 0.9.7's ``OnlineManager.routine`` on routine_daily's bars, days and rolling task (in .venv-qlib).

    The dates are derived exactly as in routine_daily (first as-of ``cal[-26]``, routine days
    ``cal[-25:-20]``, the first of them a retrain day; explicit train/valid/test segments; step 20,
    expanding, trunc_days = LABEL0's lookahead + 1; ``ROUTINE_MODEL`` with qonline's LightGBM
    settings). See benchmarks/qlib_online_peer.py for what is timed on Qlib's side.
    """
    from quant_core.calendar import TradingCalendar
    from quant_core.data.sources import parse_source
    from quant_core.features.labels import LABEL0
    from quant_core.models.strategy import get_strategy

    _peer_python()
    spec, start, _end = _spec(a)
    source = parse_source(spec)
    cal_all = source.calendar()  # type: ignore[attr-defined]
    first_as_of, days = cal_all[-26], cal_all[-25:-20]  # as in routine_daily
    root = work / f"qlib-online-{a.symbols}x{a.years}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    bars = source.extract(start, days[-1])
    bars.to_parquet(root / "bars.parquet", index=False)
    segments = {"train": [str(start), str(cal_all[-300])], "valid": [str(cal_all[-299]), str(cal_all[-50])],
                "test": [str(cal_all[-45]), None]}  # routine_daily's template segments
    cfg = {"bars": str(root / "bars.parquet"), "calendar": [str(d) for d in cal_all],
           "first_as_of": str(first_as_of), "days": [str(d) for d in days],
           "predict_days": [str(d) for d in cal_all[-45:-25]], "segments": segments,
           "step": 20, "rtype": "expanding", "trunc_days": LABEL0.lookahead + 1, "model": ROUTINE_MODEL,
           "lgb_extra": _lgb_extra(spec, root)}
    result = _run_peer("qlib_online_peer.py", cfg, root)
    # the same tasks on both sides: qonline's own rolling of routine_daily's strategy, compared with
    # the segments of Qlib's trained tasks (train, valid, test start; Qlib's test end comes from its
    # future calendar, qonline leaves the newest task's test segment open)
    strategy = get_strategy("bench", {"bench": {"model": ROUTINE_MODEL, "rolling": {"step": 20},
                                                "segments": {"dates": segments}}})
    known = TradingCalendar(cal_all)
    ours = {"first_train": [t.segments for t in strategy.tasks(known, first_as_of)],
            "retrain": [strategy.tasks(known, days[0])[-1].segments]}
    match = True
    for key, theirs in (("first_train", result["first_train_segments"]), ("retrain", result["retrain_segments"])):
        mine = [{"train": [str(s.train.start), str(s.train.end)], "valid": [str(s.valid.start), str(s.valid.end)],
                 "test_start": str(s.test.start)} for s in ours[key]]
        qlib = [{"train": t["train"], "valid": t["valid"], "test_start": t["test"][0]} for t in theirs]
        result[f"qonline_{key}_segments"] = mine
        match = match and mine == qlib
    result["segments_match"] = match
    result["rows"] = a.symbols
    result["total_s"] = result["routine_s"]
    return result


BACKFILL_MODELS = {
    "routine": ROUTINE_MODEL,  # routine_daily's and qlib_online_routine's model
    "light": {"objective": "mse", "learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 200,
              "colsample_bytree": 0.8, "num_boost_round": 50, "early_stopping_rounds": 10},
}


def _year(a: argparse.Namespace) -> dict[str, Any]:
    """The dates both backfill cases share: the last ``--backfill-days`` sessions of the synthetic
    market are replayed after a first training as of the session before them.

    The template's segments sit where routine_daily puts them relative to its first as-of ``f``:
    train from the first bar to ``f-274``, valid ``f-273 .. f-24``, test from ``f-19`` (step 20, so
    the first training trains one task and the next is due on the first replayed session).
    """
    from quant_core.data.sources import parse_source
    from quant_core.data.sources.synthetic import trading_days

    spec, start, _end = _spec(a)
    source = parse_source(spec)
    cal_all = list(source.calendar())  # type: ignore[attr-defined]
    n = a.backfill_days
    f = len(cal_all) - n - 1
    if n < 1 or f - 274 < 120:
        raise SystemExit(f"--backfill-days {n} needs more history than --years {a.years} gives "
                         f"({len(cal_all)} sessions; at least {n + 395} wanted)")
    segments = {"train": [str(start), str(cal_all[f - 274])], "valid": [str(cal_all[f - 273]), str(cal_all[f - 24])],
                "test": [str(cal_all[f - 19]), None]}
    # Qlib rolls on its future calendar (day_future.txt): the sessions after the market's last one that
    # the last tasks' test segments reach (without them RollingGen.shift ends in a TypeError, #1660)
    future = trading_days(cal_all[-1] + timedelta(days=1), cal_all[-1] + timedelta(days=120))[:40]
    return {"spec": spec, "start": start, "source": source, "calendar": cal_all, "first_as_of": cal_all[f],
            "days": cal_all[f + 1:], "segments": segments, "model": BACKFILL_MODELS[a.backfill_model],
            "future": future}


def _ic_summary(signals: Any, labels: Any, days: list[date]) -> dict[str, Any]:
    """Daily IC / rank IC (quant_core's ``daily_ic``: Qlib's ``calc_ic``) of ``signals`` (date, symbol,
    score) against ``labels`` (date, symbol, LABEL0) over ``days``; means, rank ICIR, the dates used."""
    from quant_core.online.monitoring import daily_ic

    sig = signals[signals["date"].isin(set(days))]
    daily = daily_ic(sig.merge(labels, on=["date", "symbol"], how="left"), "LABEL0").dropna(subset=["ic", "rank_ic"])
    ric = daily["rank_ic"]
    return {"dates": int(len(daily)), "first": str(min(daily["date"])) if len(daily) else None,
            "last": str(max(daily["date"])) if len(daily) else None,
            "ic": float(daily["ic"].mean()), "rank_ic": float(ric.mean()),
            "rank_icir": float(ric.mean() / ric.std(ddof=1)) if len(ric) > 1 else None}


def _lake_labels(lake: Any, days: list[date]) -> Any:
    from quant_core.features.labels import LABEL0
    from quant_core.features.store import label_dataset

    labels = label_dataset(lake, LABEL0).read(days[0], days[-1]).to_pandas()
    return labels[["date", "symbol", "LABEL0"]]


def _measured(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, the process's peak RSS in MB, its stdout). stderr goes to ``log``.

    The peak RSS is that of the process and its descendants it waited for (``wait4``), not this one's.
    """
    out_path = log.with_suffix(".out")
    with out_path.open("wb") as out, log.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n" + stdout[-2000:]
                         + log.read_text()[-4000:])
    return wall, usage.ru_maxrss / 1024, stdout


def _replay_main(config: str, days_file: str) -> None:
    """Child mode of backfill_year: ``daily_routine`` in this process on every day of ``days_file``."""
    from flows.daily_routine import daily_routine

    days = [date.fromisoformat(d) for d in json.loads(Path(days_file).read_text())]
    runs = []
    t0 = time.perf_counter()
    for d in days:
        t1 = time.perf_counter()
        res = daily_routine(as_of=d, config=config)
        trained = res["trained"]
        assert isinstance(trained, dict)
        runs.append({"as_of": res["as_of"], "wall_s": time.perf_counter() - t1,
                     "flow_s": res["seconds"]["total"],  # type: ignore[index]
                     "trained": sum(len(v) for v in trained.values())})
    out = {"calls_s": time.perf_counter() - t0, "runs": runs,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("RESULT " + json.dumps(out))


@case
def backfill_year(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``qonline backfill`` over the last ``--backfill-days`` sessions vs ``daily_routine`` replayed on each.

    Builds its own lake (synthetic ``--symbols`` x ``--years``: bars through the first as-of, Alpha158,
    LABEL0) and a first training (step 20, ``--backfill-model``, MLflow on sqlite), then copies lake and
    registry twice. Against one ``prefect server`` and one private redis-server (a Redis prefix per copy):
    (a) ``qonline backfill --start D1 --end DN --chunk 20 --json`` in its own process (wall time of the
    process, imports included; its peak RSS from ``wait4``); (b) one process calling
    ``daily_routine(as_of=d)`` for every session in order (wall time of the process; peak RSS). Both must
    end with the same model versions, task ids and fingerprints, and the same signals.
    """
    import yaml

    from flows.local_services import private_redis, stop_process_group
    from quant_core.data.lake import Lake
    from quant_core.features import get_feature_set
    from quant_core.features.labels import LABEL0
    from quant_core.features.store import update_features, update_labels

    y = _year(a)
    spec, start, first_as_of, days = y["spec"], y["start"], y["first_as_of"], y["days"]
    root = work / f"backfill-{a.symbols}x{a.years}-{len(days)}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    out: dict[str, Any] = {"rows": a.symbols, "sessions": len(days), "first_as_of": str(first_as_of),
                           "first_day": str(days[0]), "last_day": str(days[-1]), "model": a.backfill_model,
                           "model_params": y["model"], "step": 20, "segments": y["segments"]}
    server, api, startup = _prefect_server(root / "prefect-home")
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(root / "prefect-home"))
    os.environ.update(PREFECT_API_URL=api, PREFECT_HOME=str(root / "prefect-home"))  # this process's first_train
    out["prefect_server_startup_s"] = startup
    try:
        with private_redis() as redis_url:
            body = {"model": y["model"], "rolling": {"step": 20}, "segments": {"dates": y["segments"]}}

            def config(folder: Path) -> Path:
                cfg = folder / "q.yaml"
                cfg.write_text(yaml.safe_dump({"lake_uri": str(folder / "lake"), "source": spec, "redis_url": redis_url,
                                               "redis_prefix": f"bench-{folder.name}", "strategies": {"bench": body}}))
                return cfg

            base = root / "base"
            t0 = time.perf_counter()
            _ingest_fast(spec, start, first_as_of, base / "lake")
            lake = Lake(str(base / "lake"))
            cal = lake.calendar()
            update_features(lake, get_feature_set("alpha158"), cal.first, cal.last)
            update_labels(lake, LABEL0, cal.first, cal.last)
            out["setup_lake_s"] = time.perf_counter() - t0
            out["history_days"] = len(cal)
            from flows.first_train import first_train

            t0 = time.perf_counter()
            ft = first_train(as_of=first_as_of, strategy="bench", config=str(config(base)))
            out["first_train_s"] = time.perf_counter() - t0
            out["first_train_tasks"] = ft["tasks"]
            cfgs = {}
            for side in ("backfill", "replay"):
                (root / side).mkdir()
                shutil.copytree(base / "lake", root / side / "lake")
                shutil.copy(base / "lake-mlflow.db", root / side / "lake-mlflow.db")
                cfgs[side] = config(root / side)

            # (a) the backfill, in its own `qonline backfill` process
            chunk = min(20, len(days))
            cmd = [str(Path(sys.executable).parent / "qonline"), "backfill", "--start", str(days[0]), "--end",
                   str(days[-1]), "--chunk", str(chunk), "--config", str(cfgs["backfill"]), "--json"]
            wall, peak, stdout = _measured(cmd, env, root / "backfill.log")
            summary = json.loads(stdout[stdout.index("{"):])
            out.update(backfill_wall_s=wall, backfill_peak_mb=peak, backfill_chunk=chunk,
                       backfill_flow_s=summary["seconds"]["total"], backfill_stages=summary["seconds"],
                       backfill_trained=sum(not t["reused"] for t in summary["trained"]),
                       backfill_promotions=len(summary["promotions"]), backfill_report_ic=summary["ic"])

            # (b) the daily routine on every session, in order, in one process
            (root / "days.json").write_text(json.dumps([str(d) for d in days]))
            cmd = [sys.executable, "-m", "benchmarks.run", "--replay", str(cfgs["replay"]), str(root / "days.json")]
            wall, peak, stdout = _measured(cmd, env, root / "replay.log")
            line = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
            replay = json.loads(line[-1][7:])
            runs = replay["runs"]
            plain = [r["flow_s"] for r in runs if not r["trained"]]
            out.update(replay_wall_s=wall, replay_peak_mb=peak, replay_calls_s=replay["calls_s"],
                       replay_trained=sum(r["trained"] for r in runs),
                       replay_retrain_days=[r["as_of"] for r in runs if r["trained"]],
                       replay_first_call_s=runs[0]["wall_s"],
                       replay_plain_day_median_s=statistics.median(plain) if plain else None,
                       replay_retrain_day_median_s=statistics.median(r["flow_s"] for r in runs if r["trained"])
                       if any(r["trained"] for r in runs) else None)
    finally:
        stop_process_group(server)

    # the same end state: models (version, task id, test start, fingerprint, online) and signals
    from quant_core.models.registry import ModelRegistry
    from quant_core.online.monitoring import monitoring_dataset
    from quant_core.online.signals import read_signals

    models, signals, lakes = {}, {}, {}
    for side in ("backfill", "replay"):
        reg = ModelRegistry(f"sqlite:///{root / side}/lake-mlflow.db")
        models[side] = reg.list("bench")
        lakes[side] = Lake(str(root / side / "lake"))
        signals[side] = read_signals(lakes[side], "bench")
    keys = {side: [(m.version, m.task_id, m.test_start, m.fingerprint, m.online) for m in ms]
            for side, ms in models.items()}
    out["models"] = len(models["backfill"])
    out["models_replay"] = len(models["replay"])
    out["same_models"] = keys["backfill"] == keys["replay"]
    out["model_test_starts"] = [m.test_start for m in models["backfill"]]
    both = signals["backfill"].merge(signals["replay"], on=["date", "symbol"], how="outer",
                                     suffixes=("_b", "_r"), indicator=True)
    out["signal_rows"] = len(signals["backfill"])
    out["signal_rows_replay"] = len(signals["replay"])
    out["signal_rows_unmatched"] = int((both["_merge"] != "both").sum())
    out["signal_max_abs_diff"] = float((both["score_b"] - both["score_r"]).abs().max())
    out["signal_versions_equal"] = bool((both["version_b"] == both["version_r"]).all())
    out["same_signals"] = (out["signal_rows_unmatched"] == 0 and out["signal_versions_equal"]
                           and out["signal_max_abs_diff"] <= 1e-9)
    fits = {side: sum(m.metrics.get("fit_seconds", 0.0) for m in ms if m.test_start >= str(days[0]))
            for side, ms in models.items()}
    out["backfill_fit_s_sum"], out["replay_fit_s_sum"] = fits["backfill"], fits["replay"]
    # IC of the backfilled signals over the replayed sessions against the lake's raw LABEL0
    labels = _lake_labels(lakes["backfill"], days)
    out["ic"] = _ic_summary(signals["backfill"], labels, days)
    mon = monitoring_dataset(lakes["backfill"], "bench").read(days[0], days[-1]).to_pandas()
    out["monitoring_ic"] = {"dates": len(mon), "ic": float(mon["ic"].mean()), "rank_ic": float(mon["rank_ic"].mean())}
    signal_dates = sorted(set(signals["backfill"]["date"]))
    out["signal_dates_in_range"] = len([d for d in signal_dates if days[0] <= d <= days[-1]])
    out["lake"] = str(root / "backfill" / "lake")
    out["ratio_replay_over_backfill"] = out["replay_wall_s"] / out["backfill_wall_s"]
    out["case_process_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_mb"] = out["backfill_peak_mb"]
    out["total_s"] = out["backfill_wall_s"]
    return out


@case
def qlib_simulate_year(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Qlib 0.9.7's ``OnlineManager.simulate`` over backfill_year's sessions, bars, step and model (.venv-qlib).

    The peer (benchmarks/qlib_simulate_peer.py) gets every bar through the last session, the template
    of backfill_year's strategy (its test segment ends on the first as-of, so the first training
    ``simulate`` runs itself trains the same task as qonline's ``first-train``), ``RollingGen(step=20,
    expanding, trunc_days=3)``, ``LGBModel`` with the same LightGBM parameters, and
    ``begin_time`` = the first as-of, ``end_time`` = the last session. The time compared with the
    backfill is simulate's minus its first training. The IC of Qlib's signals is computed here
    against qonline's LABEL0 (same bars) with the function backfill_year uses.
    """
    import pandas as pd

    from quant_core.calendar import TradingCalendar
    from quant_core.data.lake import Lake
    from quant_core.features.labels import LABEL0
    from quant_core.models.strategy import get_strategy

    _peer_python()
    y = _year(a)
    spec, start, first_as_of, days, cal_all = y["spec"], y["start"], y["first_as_of"], y["days"], y["calendar"]
    root = work / f"qlib-simulate-{a.symbols}x{a.years}-{len(days)}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    bars = y["source"].extract(start, days[-1])
    bars.to_parquet(root / "bars.parquet", index=False)
    segments = dict(y["segments"], test=[y["segments"]["test"][0], str(first_as_of)])
    cfg = {"bars": str(root / "bars.parquet"), "calendar": [str(d) for d in cal_all + y["future"]],
           "first_as_of": str(first_as_of),
           "days": [str(d) for d in days], "segments": segments, "step": 20, "rtype": "expanding",
           "trunc_days": LABEL0.lookahead + 1, "model": y["model"], "lgb_extra": _lgb_extra(spec, root),
           "traded_only": a.qlib_universe == "traded"}
    t0 = time.perf_counter()
    result = _run_peer("qlib_simulate_peer.py", cfg, root)
    result["qlib_universe"] = a.qlib_universe
    result["peer_process_s"] = time.perf_counter() - t0
    result.update(rows=a.symbols, model=a.backfill_model, model_params=y["model"], first_as_of=str(first_as_of))
    # the same IC computation as backfill_year: qonline's LABEL0 of the same bars, quant_core's daily_ic
    from quant_core.features.store import update_labels

    lake = Lake(str(root / "lake"))
    lake.write_bars(bars, start, days[-1])
    cal = lake.calendar()
    update_labels(lake, LABEL0, cal.first, cal.last)
    sig = pd.read_parquet(result["signals_path"])
    sig["date"] = pd.to_datetime(sig["date"]).dt.date
    result["ic"] = _ic_summary(sig, _lake_labels(lake, days), days)
    # Qlib's rolling tasks against qonline's rolling of the same template (train, valid, test start)
    strategy = get_strategy("bench", {"bench": {"model": y["model"], "rolling": {"step": 20},
                                                "segments": {"dates": y["segments"]}}})
    known = TradingCalendar(cal_all[: cal_all.index(days[-1]) + 1])
    mine = [{"train": [str(t.segments.train.start), str(t.segments.train.end)],
             "valid": [str(t.segments.valid.start), str(t.segments.valid.end)], "test_start": str(t.segments.test.start)}
            for t in strategy.tasks(known, days[-1])]
    theirs = [{"train": s["train"], "valid": s["valid"], "test_start": s["test"][0]} for s in result["segments"]]
    result["qonline_models"] = len(mine)
    result["segments_match"] = mine == theirs
    if not result["segments_match"]:
        result["qonline_segments"] = mine
    result["case_process_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["total_s"] = result["simulate_after_first_train_s"]
    return result


def _signal_correlation(lake_uri: str, qlib_signals: str, first: str, last: str) -> dict[str, Any]:
    """Per-date Pearson correlation of qonline's backfilled signal and Qlib's simulated one (same rows)."""
    import pandas as pd

    from quant_core.data.lake import Lake
    from quant_core.online.signals import read_signals

    mine = read_signals(Lake(lake_uri), "bench", date.fromisoformat(first), date.fromisoformat(last))
    theirs = pd.read_parquet(qlib_signals)
    theirs["date"] = pd.to_datetime(theirs["date"]).dt.date
    both = mine.merge(theirs, on=["date", "symbol"], suffixes=("_q", "_l"))
    daily = both.groupby("date")[["score_q", "score_l"]].corr().xs("score_q", level=1)["score_l"]
    return {"dates": int(len(daily)), "rows": int(len(both)), "qonline_rows": int(len(mine)),
            "mean": float(daily.mean()), "min": float(daily.min())}


REPORT_GOAL_S = 15.0  # issue 13: the report of 2 years x 500 symbols builds in under 15 s


def _report_lake(lake_dir: Path, symbols: int) -> tuple[date, date, int]:
    """The report benchmark's lake: bars of a synthetic market, LABEL0, and two years of a served signal.

    The signal is written straight into ``predictions/<strategy>/v<N>/`` and ``signals/<strategy>/``
    (score = LABEL0 + noise, a new version every 20 sessions as a rolling step would) instead of
    training ~25 rolling models: the report only reads the lake, so how the signal got there does not
    change its cost. Returns the signal range and the number of versions.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from quant_core.data.ingest import extract
    from quant_core.data.lake import Lake
    from quant_core.features.labels import LABEL0
    from quant_core.features.store import label_dataset, update_labels
    from quant_core.online.predictions import prediction_dataset
    from quant_core.online.signals import write_signals
    from quant_core.settings import load_settings

    spec = f"synthetic:symbols={symbols},start=2020-01-01,end=2022-03-04,seed=13"
    settings = load_settings(lake_uri=str(lake_dir), source=spec)
    lake = Lake.from_settings(settings)
    first, last = date(2020, 1, 1), date(2022, 3, 4)
    lake.write_bars(extract(spec, first, last, settings), first, last)
    update_labels(lake, LABEL0, first, last)
    days = list(lake.calendar().range(date(2020, 2, 1), date(2022, 1, 31)))  # 2 years of signal dates
    labels = label_dataset(lake, LABEL0).read(days[0], days[-1]).to_pandas()
    rng = np.random.default_rng(13)
    frame = labels.assign(score=labels["LABEL0"].astype(np.float64) + rng.normal(0.0, 0.05, len(labels)))
    step = {d: 1 + i // 20 for i, d in enumerate(days)}
    frame["version"] = frame["date"].map(step)
    for v, part in frame.groupby("version", sort=True):
        table = pa.table({"date": pa.array(part["date"], pa.date32()),
                          "symbol": pa.array(part["symbol"].astype(str), pa.large_string()),
                          "score": pa.array(part["score"].to_numpy(np.float64), pa.float64())})
        prediction_dataset(lake, "lgb_alpha158", int(v)).write(table, part["date"].min(), part["date"].max())
    write_signals(lake, "lgb_alpha158", frame.assign(version=frame["version"].astype(str)), days[0], days[-1])
    return days[0], days[-1], int(pd.Series(step).max())


@case
def report_2y_500(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``qonline report`` over 2 years of a served signal of ``--symbols`` symbols (default 500).

    Setup (not timed): a lake with the market, LABEL0 and the signal (see ``_report_lake``). Timed:
    the report flow with Prefect's API already up (read the lake, every number, six charts, HTML +
    JSON written, the MLflow report run, the artifact) = ``total_s``; then the same steps called
    directly, each timed, without Prefect.
    """
    from prefect import flow

    from quant_core.runtime_env import apply_process_environment

    apply_process_environment()
    lake_dir = work / f"report-lake-{a.symbols}"
    if lake_dir.exists():
        shutil.rmtree(lake_dir)
    t0 = time.perf_counter()
    start, end, versions = _report_lake(lake_dir, a.symbols)
    setup_s = time.perf_counter() - t0

    from flows.report import report
    from quant_core.data.lake import Lake
    from quant_core.evaluation.charts import render_charts
    from quant_core.evaluation.html import render_html
    from quant_core.evaluation.report import (
        ReportConfig,
        build_report,
        load_report_inputs,
        log_report_run,
        write_report_files,
    )
    from quant_core.models.registry import ModelRegistry
    from quant_core.settings import load_settings

    @flow
    def warm_up() -> None:  # start Prefect's ephemeral API outside the timing
        return None

    warm_up()
    t0 = time.perf_counter()
    summary = report(start=start, end=end, strategy="lgb_alpha158", out=str(work / "report-flow"),
                     lake_uri=str(lake_dir))
    total = time.perf_counter() - t0

    settings = load_settings(lake_uri=str(lake_dir))
    stages: dict[str, float] = {}
    t = time.perf_counter()
    inputs = load_report_inputs(Lake.from_settings(settings), "lgb_alpha158", "LABEL0", start, end)
    stages["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    data = build_report(inputs, ReportConfig.from_settings(settings))
    stages["compute_s"] = time.perf_counter() - t
    t = time.perf_counter()
    charts = render_charts(data)
    stages["charts_s"] = time.perf_counter() - t
    t = time.perf_counter()
    files = write_report_files(work / "report-direct", render_html(data, charts), data.to_json())
    stages["html_json_write_s"] = time.perf_counter() - t
    t = time.perf_counter()
    log_report_run(ModelRegistry(settings.resolved_mlflow_tracking_uri), data, [files["html"], files["json"]])
    stages["mlflow_s"] = time.perf_counter() - t
    return {"rows": len(inputs.signals), "signal_dates": data.coverage.signal_dates, "symbols": a.symbols,
            "versions": versions, "total_s": total, "goal_s": REPORT_GOAL_S, "met": total < REPORT_GOAL_S,
            "direct_s": sum(stages.values()), **stages, "setup_s": setup_s,
            "html_mb": files["html"].stat().st_size / 1e6, "rank_ic": summary["headline"].get("rank_ic")}


def _child(name: str, a: argparse.Namespace, work: Path) -> None:
    result = CASES[name](a, work)
    result.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--train-tasks", type=int, default=4, help="rolling tasks trained by the training cases")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the selected cases, interleaved")
    ap.add_argument("--lake-rounds", type=int, default=15, help="interleaved rounds of the lake_commit cases")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--backfill-days", type=int, default=250,
                    help="sessions replayed by backfill_year and qlib_simulate_year (the last ones of the market)")
    ap.add_argument("--backfill-model", choices=sorted(BACKFILL_MODELS), default="routine",
                    help="LightGBM parameters of the backfill cases (routine = ROUTINE_MODEL)")
    ap.add_argument("--qlib-universe", choices=["traded", "span"], default="traded",
                    help="qlib_simulate_year: a day's rows are the symbols with a bar that day (traded, as qonline) "
                         "or every symbol inside its first..last bar span, suspended days included (Qlib's default)")
    ap.add_argument("--child", default=None)
    ap.add_argument("--replay", nargs=2, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.replay:
        _replay_main(*a.replay)
        return
    if a.child:
        _child(a.child, a, a.work)
        return
    work = (a.work or Path(tempfile.mkdtemp(prefix="qonline-bench-"))).resolve()
    names = a.only or list(CASES)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(max(1, a.repeat)):
        for name in names:
            cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, "--work", str(work),
                   "--symbols", str(a.symbols), "--years", str(a.years), "--train-tasks", str(a.train_tasks),
                   "--lake-rounds", str(a.lake_rounds), "--backfill-days", str(a.backfill_days),
                   "--backfill-model", a.backfill_model, "--qlib-universe", a.qlib_universe]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"benchmark {name} failed")
            runs[name].append(json.loads(line[-1][7:]))
    results: dict[str, Any] = {}
    for name, done in runs.items():
        ranked = sorted(done, key=lambda r: r["total_s"])
        results[name] = dict(ranked[(len(ranked) - 1) // 2])  # the median run (lower middle)
        if len(done) > 1:
            results[name]["runs_total_s"] = [round(r["total_s"], 3) for r in done]
            for key in ("read_bars_s", "compute_s"):  # every round's stages, in round order
                if all(key in r for r in done):
                    results[name][f"runs_{key}"] = [round(r[key], 3) for r in done]
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "symbols": a.symbols, "years": a.years,
            "command": " ".join(sys.argv)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"{'case':<16} {'rows':>10} {'total s':>9} {'peak MB':>9}  details")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        extra = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                          if k not in ("rows", "total_s", "peak_rss_mb"))
        print(f"{name:<16} {r.get('rows', ''):>10} {r['total_s']:>9.3f} {r['peak_rss_mb']:>9.0f}  {extra}")
    if "features_full" in results and "qlib_alpha158" in results:
        pairs = list(zip(runs["qlib_alpha158"], runs["features_full"], strict=True))
        ratios = {
            "features": [q["total_s"] / o["total_s"] for q, o in pairs],  # read + compute + write
            "read_compute": [q["total_s"] / (o["read_bars_s"] + o["compute_s"]) for q, o in pairs],
            "compute": [q["total_s"] / o["compute_s"] for q, o in pairs],
        }
        for what, values in ratios.items():
            results[f"ratio_qlib_over_qonline_{what}"] = statistics.median(values)
            results[f"ratio_qlib_over_qonline_{what}_range"] = [min(values), max(values)]
        print("Alpha158 full recompute, Qlib's handler time / qonline's (median of the rounds, range): "
              + "; ".join(f"{what} {statistics.median(v):.1f}x ({min(v):.1f}-{max(v):.1f})" for what, v in ratios.items()))
        (a.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if "train_sequential" in results and "train_parallel" in results:
        seq, par = results["train_sequential"], results["train_parallel"]
        speedup = seq["total_s"] / par["total_s"]
        overhead = 1 - seq["fit_predict_s_sum"] / seq["total_s"]
        print(f"training: parallel speed-up {speedup:.2f}x; orchestration overhead (sequential run, everything "
              f"but LightGBM fit+predict) {overhead:.1%}")
        results["train_speedup"], results["train_overhead_share"] = speedup, overhead
        (a.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    for name in ("lake_commit_local", "lake_commit_s3"):
        if name in results:
            r = results[name]
            print(f"{name}: medians of {r['rounds']} interleaved rounds, after (this code) vs before ({BEFORE_COMMIT}): "
                  + "; ".join(f"{k} {r[f'{k}_after_s'] * 1000:.1f} vs {r[f'{k}_before_s'] * 1000:.1f} ms "
                              f"({r[f'{k}_after_over_before']:.2f}x)" for k in ("replace", "read", "switch")))
    if "routine_daily" in results and "qlib_online_routine" in results:
        if results["routine_daily"]["history_days"] != results["qlib_online_routine"]["history_days"]:
            print("WARNING: routine_daily and qlib_online_routine did not start from the same as-of date")
        if not results["qlib_online_routine"]["segments_match"]:
            print("WARNING: Qlib's rolling tasks do not have qonline's train/valid/test segments")
        pairs = list(zip(runs["qlib_online_routine"], runs["routine_daily"], strict=True))
        routine_ratios = {
            # Qlib's in-process routine (without its data update) / qonline's flow, flow start to Redis
            "routine": [q["routine_s"] / o["routine_flow_s"] for q, o in pairs],
            "routine_vs_qonline_fresh_process": [q["routine_s"] / o["fresh_process_run_s"] for q, o in pairs],
            "fresh_process": [q["fresh_process_run_s"] / o["fresh_process_run_s"] for q, o in pairs],
            "retrain_day": [q["retrain_routine_s"] / o["retrain_wall_s"] for q, o in pairs],
            "predict_1_day": [q["predict_1_day_s"] / o["predict_1_day_s"] for q, o in pairs],
            "predict_20_days": [q["predict_20_days_s"] / o["predict_20_days_s"] for q, o in pairs],
        }
        for what, values in routine_ratios.items():
            results[f"ratio_qlib_over_qonline_{what}"] = statistics.median(values)
            results[f"ratio_qlib_over_qonline_{what}_range"] = [min(values), max(values)]
        print("daily routine, Qlib's OnlineManager.routine time / qonline's (median of the rounds, range): "
              + "; ".join(f"{what} {statistics.median(v):.1f}x ({min(v):.1f}-{max(v):.1f})"
                          for what, v in routine_ratios.items()))
        met = statistics.median(routine_ratios["routine"]) >= 10
        print(f"goal (issue 11, at 500 symbols): routine without retrain at least 10x faster than Qlib's -- "
              f"{'met' if met else 'not met'} at {a.symbols} symbols x {a.years} years")
        (a.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if "backfill_year" in results:
        b = results["backfill_year"]
        if not (b["same_models"] and b["same_signals"]):
            print(f"WARNING: the backfill and the replayed daily routine did not end in the same state (models "
                  f"{b['same_models']}, signals {b['same_signals']}: max abs diff {b['signal_max_abs_diff']:.2e}, "
                  f"{b['signal_rows_unmatched']} unmatched rows)")
        bf_ratios = [r["replay_wall_s"] / r["backfill_wall_s"] for r in runs["backfill_year"]]
        results["ratio_replay_over_backfill"] = statistics.median(bf_ratios)
        results["ratio_replay_over_backfill_range"] = [min(bf_ratios), max(bf_ratios)]
        print(f"backfill of {b['sessions']} sessions ({b['model']} model, {b['models']} models, "
              f"{b['backfill_trained']} trained in the range): backfill {b['backfill_wall_s']:.1f} s "
              f"(peak {b['backfill_peak_mb']:.0f} MB) vs daily routine replayed {b['replay_wall_s']:.1f} s "
              f"(peak {b['replay_peak_mb']:.0f} MB): {statistics.median(bf_ratios):.1f}x "
              f"({min(bf_ratios):.1f}-{max(bf_ratios):.1f}); same models {b['same_models']}, same signals "
              f"{b['same_signals']} (max abs diff {b['signal_max_abs_diff']:.1e})")
        print("  backfill stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in b["backfill_stages"].items()))
        met = statistics.median(bf_ratios) >= 10
        print(f"goal (issue 12): backfill at least 10x faster than the daily routine replayed -- "
              f"{'met' if met else 'not met'} at {a.symbols} symbols x {a.years} years, {b['sessions']} sessions")
        if "qlib_simulate_year" in results:
            q = results["qlib_simulate_year"]
            if (q["first_as_of"], q["last_day"], q["sessions"]) != (b["first_as_of"], b["last_day"], b["sessions"]):
                print("WARNING: backfill_year and qlib_simulate_year did not replay the same sessions")
            if not q["segments_match"]:
                print("WARNING: Qlib's rolling tasks do not have qonline's train/valid/test segments")
            pairs = list(zip(runs["qlib_simulate_year"], runs["backfill_year"], strict=True))
            # the backfill's process (imports, the year's bars extracted, validated, stored, features) vs
            # simulate in a warm process over a data dir written beforehand, its first training excluded
            sim = [x["simulate_after_first_train_s"] / o["backfill_wall_s"] for x, o in pairs]
            sim_flow = [x["simulate_after_first_train_s"] / o["backfill_flow_s"] for x, o in pairs]
            results["ratio_qlib_simulate_over_backfill"] = statistics.median(sim)
            results["ratio_qlib_simulate_over_backfill_range"] = [min(sim), max(sim)]
            results["ratio_qlib_simulate_over_backfill_flow"] = statistics.median(sim_flow)
            corr = _signal_correlation(b["lake"], q["signals_path"], b["first_day"], b["last_day"])
            results["signal_correlation_qlib_vs_backfill"] = corr
            ic_diff = abs(q["ic"]["ic"] - b["ic"]["ic"])
            ric_diff = abs(q["ic"]["rank_ic"] - b["ic"]["rank_ic"])
            results["ic_diff_qlib_vs_backfill"], results["rank_ic_diff_qlib_vs_backfill"] = ic_diff, ric_diff
            same_count = q["models"] == b["models"]
            print(f"Qlib OnlineManager.simulate over the same sessions: {q['simulate_s']:.1f} s, of which first "
                  f"training {q['first_train_s']:.1f} s; without it {q['simulate_after_first_train_s']:.1f} s "
                  f"(peak {q['peak_rss_mb']:.0f} MB + {q['children_peak_rss_mb']:.0f} MB workers) -> Qlib / backfill "
                  f"{statistics.median(sim):.1f}x ({min(sim):.1f}-{max(sim):.1f}); over the backfill flow alone "
                  f"({b['backfill_flow_s']:.1f} s) {statistics.median(sim_flow):.1f}x")
            print(f"  models: Qlib {q['models']}, qonline {b['models']}; IC over {b['ic']['dates']} vs "
                  f"{q['ic']['dates']} dates: qonline {b['ic']['ic']:.4f} (rank {b['ic']['rank_ic']:.4f}), Qlib "
                  f"{q['ic']['ic']:.4f} (rank {q['ic']['rank_ic']:.4f}); |diff| {ic_diff:.4f} (rank {ric_diff:.4f}); "
                  f"Qlib universe: {q['qlib_universe']}; daily correlation of the two signals: mean "
                  f"{corr['mean']:.3f}, min {corr['min']:.3f} over {corr['dates']} dates")
            met = statistics.median(sim) > 1 and same_count and ic_diff <= 0.003
            print(f"goal (issue 12): faster than Qlib's simulate with the same number of models and an IC within "
                  f"0.003 -- {'met' if met else 'not met'} (faster {statistics.median(sim) > 1}, same model count "
                  f"{same_count}, IC within 0.003 {ic_diff <= 0.003})")
        (a.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if "report_2y_500" in results:
        r = results["report_2y_500"]
        print(f"goal (issue 13): the report of 2 years x {r['symbols']} symbols in under {r['goal_s']:.0f} s -- "
              f"{'met' if r['met'] else 'not met'} ({r['total_s']:.1f} s as a flow; direct: load {r['load_s']:.1f}, "
              f"compute {r['compute_s']:.1f}, charts {r['charts_s']:.1f}, HTML+JSON {r['html_json_write_s']:.1f}, "
              f"MLflow {r['mlflow_s']:.1f} s)")
    print(f"JSON: {a.out / 'results.json'}")


if __name__ == "__main__":
    main()
