"""Backfills end to end: real lake folder, MLflow on sqlite, a private redis-server, Prefect flows.

One trained state is shared: a synthetic lake through ``FIRST`` with the first training of a light
strategy rolling every 5 sessions, so the 16 replayed sessions hold three rolling steps. From copies
of it the tests replay the sessions with the daily routine, backfill them, kill a backfill, perturb
the future and feed bad arguments — and compare.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from quant_core.calendar import TradingCalendar
from quant_core.data.lake import Lake
from quant_core.data.lease import LakeLease
from quant_core.data.sources import parse_source
from quant_core.models.registry import ModelRegistry
from quant_core.online.promotion import PromotionLog
from quant_core.online.redis_sink import SignalStore, connect
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration
runner = CliRunner()

SPEC = "synthetic:symbols=30,start=2019-01-01,end=2022-12-30,seed=7"
STRATEGY = "bf"
BODY = {
    "feature_set": "alpha158", "label": "LABEL0",
    "processors": [{"name": "DropnaLabel"}, {"name": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
    "model": {"objective": "mse", "learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 40,
              "colsample_bytree": 0.8, "num_boost_round": 40, "early_stopping_rounds": 10},
    "rolling": {"step": 5},
    "segments": {"dates": {"train": ["2019-01-01", "2020-12-31"], "valid": ["2021-01-01", "2021-12-31"],
                           "test": ["2022-09-01", None]}},
}
N_DAYS = 16
# what differs between two runs by nature: who and when (the promotion log), and nothing else
VOLATILE = {"run_id", "user", "created_at"}


def _cal() -> TradingCalendar:
    return TradingCalendar(parse_source(SPEC).calendar())  # type: ignore[attr-defined]


def _sessions() -> tuple[date, list[date]]:
    cal = _cal()
    first = cal[cal.index(cal.align_start(date(2022, 9, 1))) + 2]
    i = cal.index(first)
    return first, list(cal[i + 1:i + 1 + N_DAYS])


def _config(root: Path, redis_url: str, **extra: Any) -> Path:
    cfg = root / "q.yaml"
    doc = {"lake_uri": str(root / "lake"), "source": SPEC, "redis_url": redis_url,
           "redis_prefix": f"b{uuid.uuid4().hex[:8]}", "strategies": {STRATEGY: BODY}, **extra}
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def _cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def _json(*args: str) -> dict[str, Any]:
    code, out = _cli(*args, "--json")
    assert code == 0, out
    return json.loads(out[out.index("{"):])  # type: ignore[no-any-return]


def _copy(src: Path, dst: Path, redis_url: str, **extra: Any) -> Path:
    shutil.copytree(src / "lake", dst / "lake")
    shutil.copy(src / "lake-mlflow.db", dst / "lake-mlflow.db")
    return _config(dst, redis_url, **extra)


def _doc(cfg: Path) -> dict[str, Any]:
    return yaml.safe_load(cfg.read_text())  # type: ignore[no-any-return]


def _lake(cfg: Path) -> Lake:
    return Lake(_doc(cfg)["lake_uri"])


def _registry(cfg: Path) -> ModelRegistry:
    return ModelRegistry(f"sqlite:///{_doc(cfg)['lake_uri']}-mlflow.db")


def _store(cfg: Path) -> SignalStore:
    return SignalStore(connect(_doc(cfg)["redis_url"]), _doc(cfg)["redis_prefix"])


def _lake_files(cfg: Path) -> dict[str, str]:
    """Every object of the lake but the validation reports and the writer lease."""
    return {k: v for k, v in _lake(cfg).snapshot().items() if not k.startswith(("reports/", "_locks/"))}


def _backfill(cfg: Path, start: date, end: date, *more: str) -> dict[str, Any]:
    return _json("backfill", "--start", start.isoformat(), "--end", end.isoformat(), "--config", str(cfg), *more)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, redis_url: str, prefect_server: None) -> Path:
    root = tmp_path_factory.mktemp("backfill-base")
    cfg = _config(root, redis_url)
    first, _days = _sessions()
    code, out = _cli("ingest", "--start", "2019-01-01", "--end", first.isoformat(), "--config", str(cfg))
    assert code == 0, out
    code, out = _cli("first-train", "--as-of", first.isoformat(), "--strategy", STRATEGY, "--config", str(cfg))
    assert code == 0, out
    return root


@pytest.fixture(scope="module")
def replayed(base: Path, tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Path:
    """The daily routine on every session of the range, in order (what a schedule would have done)."""
    cfg = _copy(base, tmp_path_factory.mktemp("backfill-replay"), redis_url)
    for d in _sessions()[1]:
        _json("run", "--as-of", d.isoformat(), "--config", str(cfg))
    return cfg


@pytest.fixture(scope="module")
def backfilled(base: Path, tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> tuple[Path, dict[str, Any]]:
    cfg = _copy(base, tmp_path_factory.mktemp("backfill-once"), redis_url)
    _first, days = _sessions()
    return cfg, _backfill(cfg, days[0], days[-1], "--chunk", "5")


def _datasets(cfg: Path) -> dict[str, pd.DataFrame]:
    lake = _lake(cfg)
    names = sorted({k.rsplit("/", 1)[0] for k in _lake_files(cfg) if k.endswith("_manifest.json")})
    return {n: lake.dataset(n).read().to_pandas() for n in names if n != "bars"}


def _assert_same_state(a: Path, b: Path) -> None:
    """Lake (bars aside), MLflow and Redis hold the same results (scores within 1e-9)."""
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        x, y = da[name], db[name]
        if name.startswith("promotions/"):
            x, y = x.drop(columns=list(VOLATILE)), y.drop(columns=list(VOLATILE))
        assert list(x.columns) == list(y.columns) and len(x) == len(y), name
        for col in x.columns:
            if x[col].dtype.kind == "f" and name.startswith(("predictions/", "signals/", "monitoring/")):
                assert np.allclose(x[col].to_numpy(), y[col].to_numpy(), rtol=0, atol=1e-9, equal_nan=True), (name, col)
            else:
                assert x[col].equals(y[col]), (name, col)
    ra, rb = _registry(a), _registry(b)
    ma, mb = ra.list(STRATEGY), rb.list(STRATEGY)
    assert [(m.version, m.task_id, m.fingerprint, m.test_start, m.online) for m in ma] == \
        [(m.version, m.task_id, m.fingerprint, m.test_start, m.online) for m in mb]
    for m, n in zip(ma, mb, strict=True):
        # the same model text; LightGBM's l2 of a fit may differ in the 15th digit (its summation order)
        timed = {"fit_seconds"}
        assert {k: v for k, v in m.metrics.items() if k not in timed} == \
            pytest.approx({k: v for k, v in n.metrics.items() if k not in timed}, rel=1e-12, abs=1e-12)
        assert ra.load_model_text(STRATEGY, m.version) == rb.load_model_text(STRATEGY, n.version)
        live_a = dict(sorted((x.step, x.value) for x in ra.client.get_metric_history(m.run_id, "live_rank_ic")))
        live_b = dict(sorted((x.step, x.value) for x in rb.client.get_metric_history(n.run_id, "live_rank_ic")))
        assert live_a == pytest.approx(live_b, abs=1e-9)
    sa, sb = _store(a).read(STRATEGY), _store(b).read(STRATEGY)
    assert sa is not None and sb is not None
    assert (sa.date, sa.digest, sa.meta["models"], sa.count) == (sb.date, sb.digest, sb.meta["models"], sb.count)


def test_backfill_equals_the_daily_routine_replayed(replayed: Path, backfilled: tuple[Path, dict[str, Any]]) -> None:
    cfg, summary = backfilled
    _first, days = _sessions()
    trained = summary["trained"]
    assert len(trained) == 3 and not any(t["reused"] for t in trained), trained  # three rolling steps
    assert [p["kind"] for p in summary["promotions"]] == ["scheduled"] * 3
    # the first training's model serves from its test start: the first chunk catches those dates up too
    first_served = PromotionLog(_lake(cfg), STRATEGY).entries()[0].applies_after
    assert summary["dates_written"] == {STRATEGY: len([d for d in _cal().range(first_served, days[-1])
                                                       if d > first_served])} and summary["chunks"] == 4
    assert summary["ic"][STRATEGY]["dates"] == N_DAYS - 2  # labels of the last two sessions are not known yet
    _assert_same_state(replayed, cfg)
    log = PromotionLog(_lake(cfg), STRATEGY).entries()
    assert [p.decided_on for p in log[1:]] == [p.test_start for p in log[1:]]  # decided on their due days
    snap = _store(cfg).read(STRATEGY)
    assert snap is not None and snap.date == days[-1].isoformat()
    from prefect.artifacts import Artifact

    report = Artifact.get("backfill-report")
    assert report is not None and f"Backfill {days[0]} .. {days[-1]}" in str(report.data)
    assert "mean rank IC" in str(report.data) and "Time per stage" in str(report.data)
    progress = Artifact.get("backfill-progress")
    assert progress is not None and float(progress.data) == pytest.approx(100.0)  # type: ignore[arg-type]
    # the range's IC summary (IC, ICIR, rank IC, rank ICIR, shares positive), the decay status and the links
    ic = summary["ic"][STRATEGY]
    assert set(ic) == {"dates", "days", "ic", "icir", "rank_ic", "rank_icir", "ic_positive", "rank_ic_positive"}
    mon = _lake(cfg).dataset(f"monitoring/{STRATEGY}").read(days[0], days[-1]).to_pandas()
    assert ic["rank_ic"] == pytest.approx(mon["rank_ic"].mean(), abs=1e-6)
    assert ic["rank_ic_positive"] == pytest.approx((mon["rank_ic"] > 0).mean())
    md = str(report.data)
    assert "| signal | dates | mean IC | ICIR | mean rank IC | rank ICIR | share IC > 0 | share rank IC > 0 |" in md
    assert "## Live monitoring at the end of the range" in md and "[Data Docs](" in md, md
    assert summary["validation"]["data_docs"].endswith("index.html"), summary["validation"]
    decay = summary["decay"][STRATEGY]
    assert decay["alert"] is False and decay["event_id"] is None and decay["last_date"] == days[-3].isoformat()
    assert f"`runs:/{_registry(cfg).version_info(STRATEGY, int(decay['version'])).run_id}`" in md, md
    # the decay tags of every version equal those one daily run per session left (backfill equals replay)
    every = _lake(cfg).dataset(f"monitoring/{STRATEGY}").read().to_pandas()
    assert decay["tagged_versions"] == sorted({int(v) for v in every["version"]})  # all scored by this backfill
    for m in _registry(cfg).list(STRATEGY):
        assert _decay_tags(cfg, m.version) == _decay_tags(replayed, m.version), m.version


def _decay_tags(cfg: Path, version: int) -> dict[str, str]:
    tags = _registry(cfg).client.get_model_version(STRATEGY, str(version)).tags
    return {k: v for k, v in tags.items() if k.startswith("qonline.")}


def test_a_decay_alert_is_raised_once_at_the_end_with_tags_warning_and_event(
        backfilled: tuple[Path, dict[str, Any]], tmp_path: Path, redis_url: str) -> None:
    """A copy of the backfilled lake backfilled again (nothing to do) under a rule every rolling value breaks."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    _first, days = _sessions()
    cfg = _copy(backfilled[0].parent, tmp_path, redis_url, decay_threshold=0.99, decay_days=1, decay_window=2)
    out = _backfill(cfg, days[0], days[-1], "--chunk", "5")
    assert out["nothing_to_do"], out
    decay = out["decay"][STRATEGY]
    assert decay["alert"] is True and decay["event_id"] and decay["window"] == 2, decay
    assert [w for w in out["warnings"] if "signal decay" in w] == [
        f"{STRATEGY}: signal decay: the rolling 2-date rank IC has been below 0.99 on {decay['days_below']} "
        f"consecutive monitored dates since {decay['since']} (now {decay['rolling_rank_ic']:.4f} on "
        f"{decay['last_date']}; the alert needs 1); serving version {decay['version']}"]
    # nothing was scored again: only the version serving the last monitored date gets the alert's tags
    assert decay["tagged_versions"] == [int(decay["version"])]
    tags = _decay_tags(cfg, int(decay["version"]))
    assert tags["qonline.decay_alert"] == "true" and tags["qonline.decay_alert_since"] == decay["since"]
    assert float(tags["qonline.rolling_rank_ic"]) == pytest.approx(decay["rolling_rank_ic"], abs=1e-6)
    # the event, read back through the events API: exactly one for this run
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(filter=EventFilter(
                event=EventNameFilter(name=["qonline.signal.decay"]),
                resource=EventResourceFilter(id=[f"qonline.signal.{STRATEGY}"])), limit=50)
            mine = [e for e in page.events if str(e.id) == decay["event_id"]]
            if mine:
                break
            assert time.monotonic() < deadline, "the decay event was not found through the events API"
            time.sleep(0.3)
        flow_run = next(r.id for r in mine[0].related if r.role == "flow-run").removeprefix("prefect.flow-run.")
        same_run = [e for e in page.events if any(r.id == f"prefect.flow-run.{flow_run}" for r in e.related)]
        assert len(same_run) == 1, same_run
        assert mine[0].payload["alert"] is True and mine[0].payload["version"] == decay["version"]
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["backfill-report"]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run)])))
    assert len(found) == 1
    md = str(found[0].data)
    assert "## Warnings" in md and "signal decay" in md and "**ALERT** since" in md, md


def test_rerunning_a_finished_backfill_does_nothing(backfilled: tuple[Path, dict[str, Any]]) -> None:
    cfg, _summary = backfilled
    _first, days = _sessions()
    files = _lake_files(cfg)
    runs = [(m.version, m.run_id) for m in _registry(cfg).list(STRATEGY)]
    store = _store(cfg)
    keys = sorted(store.client.scan_iter(match=f"{store.prefix}:*"))
    events = store.client.xlen(store.k_events)
    again = _backfill(cfg, days[0], days[-1], "--chunk", "5")
    assert again["nothing_to_do"] and "already served" in again["nothing_to_do"], again
    assert again["trained"] == [] and again["promotions"] == [] and again["dates_written"] == {STRATEGY: 0}
    assert _lake_files(cfg) == files
    assert [(m.version, m.run_id) for m in _registry(cfg).list(STRATEGY)] == runs
    assert sorted(store.client.scan_iter(match=f"{store.prefix}:*")) == keys
    assert store.client.xlen(store.k_events) == events


def _api_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `qonline` subprocess that reports to the tests' Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_HOME=str(tmp_path / "phome"))
    env.pop("QONLINE_REDIS_URL", None)
    return env


def test_killed_backfill_resumes_and_blocks_other_writers_meanwhile(
        base: Path, backfilled: tuple[Path, dict[str, Any]], tmp_path: Path, redis_url: str) -> None:
    _first, days = _sessions()
    cfg = _copy(base, tmp_path, redis_url, lake_lock_wait_seconds=0)
    lake = _lake(cfg)
    signals = lake.dataset(f"signals/{STRATEGY}")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "qonline"), "backfill", "--start", days[0].isoformat(), "--end",
         days[-1].isoformat(), "--chunk", "1", "--config", str(cfg)],
        env=_api_env(tmp_path), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "bf.log", "wb"),  # noqa: SIM115
        start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (signals.exists() and signals.dates()):
            assert proc.poll() is None, (tmp_path / "bf.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the backfill stored no signals in 240 s"
            time.sleep(0.05)
        # frozen mid-way (it keeps its lease), so what follows does not depend on timing
        os.killpg(proc.pid, signal.SIGSTOP)
        files = _lake_files(cfg)
        # while it holds the lake, another writer is refused (the daily run, a second backfill), writing nothing
        holder = LakeLease(lake, "probe").holder()
        assert holder is not None and holder.what.startswith(f"backfill {days[0]}..{days[-1]}")
        code, out = _cli("run", "--as-of", days[-1].isoformat(), "--config", str(cfg))
        assert code == 1 and "is being written by backfill" in out and "refused at once" in out, out
        code, out = _cli("backfill", "--start", days[4].isoformat(), "--end", days[-1].isoformat(), "--config",
                         str(cfg))
        assert code == 1 and "is being written by backfill" in out, out
        assert _lake_files(cfg) == files
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    served = signals.dates()
    assert served and served[-1] < days[-1], "the backfill finished before it was killed: nothing to resume"
    gens_before = {c.generation for c in signals.history()}
    registered = {m.task_id for m in _registry(cfg).list(STRATEGY)}
    # started again with the same arguments: the dead holder's lease is taken over, finished work is kept
    resumed = _backfill(cfg, days[0], days[-1], "--chunk", "1")
    assert resumed["resumed_after"] == served[-1].isoformat(), resumed
    assert all(t["reused"] for t in resumed["trained"] if t["test_start"] <= served[-1].isoformat()), resumed
    assert {m.task_id for m in _registry(cfg).list(STRATEGY)} >= registered
    new_commits = [c for c in signals.history() if c.generation not in gens_before]
    assert new_commits and all(date.fromisoformat(c.start) > served[-1] for c in new_commits), new_commits
    _assert_same_state(backfilled[0], cfg)


def _drop(path: Path, start: date, end: date, perturb_after: date) -> str:
    """The synthetic bars of [start, end] as a Parquet drop, prices after ``perturb_after`` +3 %."""
    bars = parse_source(SPEC).extract(start, end)
    later = bars["date"] > pd.Timestamp(perturb_after)
    for col in ("open", "high", "low", "close", "vwap"):
        if col in bars:
            bars.loc[later, col] = bars.loc[later, col] * 1.03
    bars.to_parquet(path, index=False)
    return f"parquet:{path}"


def test_point_in_time_bars_after_d_change_nothing_at_or_before_d(
        base: Path, backfilled: tuple[Path, dict[str, Any]], tmp_path: Path, redis_url: str) -> None:
    first, days = _sessions()
    d = days[9]
    cfg = _copy(base, tmp_path, redis_url)
    doc = _doc(cfg)
    doc["source"] = _drop(tmp_path / "perturbed.parquet", days[0], days[-1], d)
    cfg.write_text(yaml.safe_dump(doc))
    _backfill(cfg, days[0], days[-1], "--chunk", "16")
    ref = backfilled[0]
    for name in (f"signals/{STRATEGY}", "features/alpha158"):
        a = _lake(cfg).dataset(name).read(end=d).to_pandas()
        b = _lake(ref).dataset(name).read(end=d).to_pandas()
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    later_a = _lake(cfg).dataset(f"signals/{STRATEGY}").read(start=days[10]).to_pandas()
    later_b = _lake(ref).dataset(f"signals/{STRATEGY}").read(start=days[10]).to_pandas()
    assert not np.allclose(later_a["score"], later_b["score"])  # the perturbation did reach the later dates
    # the models serving dates up to d were trained on exactly the same data (same fingerprints)
    served = {int(v) for v in _lake(ref).dataset(f"signals/{STRATEGY}").read(end=d).to_pandas()["version"]}
    fa = {m.version: m.fingerprint for m in _registry(cfg).list(STRATEGY)}
    fb = {m.version: m.fingerprint for m in _registry(ref).list(STRATEGY)}
    assert all(fa[v] == fb[v] for v in served), (served, fa, fb)
    log_a = [(p.applies_after, p.to_version) for p in PromotionLog(_lake(cfg), STRATEGY).entries()
             if p.applies_after < d]
    assert log_a == [(p.applies_after, p.to_version) for p in PromotionLog(_lake(ref), STRATEGY).entries()
                     if p.applies_after < d]
    assert first < d


def test_bad_arguments_are_refused_and_write_nothing(base: Path, tmp_path: Path, redis_url: str) -> None:
    first, days = _sessions()
    cfg = _copy(base, tmp_path, redis_url)
    before = _lake_files(cfg)
    versions = [m.version for m in _registry(cfg).list(STRATEGY)]
    s, e = days[0].isoformat(), days[-1].isoformat()
    cases = [
        (("--start", e, "--end", s), r"backfill start .* is after its end"),
        (("--start", s, "--end", e, "--chunk", "0"), r"chunk=0: the chunk size is a number of sessions from 1 to"),
        (("--start", s, "--end", days[2].isoformat(), "--chunk", "5"), r"chunk=5 is larger than the 3 session"),
        (("--start", first.isoformat(), "--end", e), r"is not after strategy 'bf'.s first training \(as of"),
        (("--start", "2022-06-01", "--end", e), r"not after strategy 'bf'.s first training"),
        (("--start", s, "--end", "2023-03-01"), r"--end 2023-03-01 is after the last session the source .* has"),
        (("--start", s, "--end", e, "--strategy", "nope"), r"unknown strategy 'nope'"),
        (("--start", "2018-01-01", "--end", e), r"before the lake's first bar"),
    ]
    for args, pattern in cases:
        code, out = _cli("backfill", *args, "--config", str(cfg))
        assert code == 1, (args, out)
        assert re.search(pattern, " ".join(out.split())), (args, out)
    assert _lake_files(cfg) == before
    assert [m.version for m in _registry(cfg).list(STRATEGY)] == versions
