"""The daily routine end to end: real lake folder, MLflow on sqlite, a private redis-server, Prefect flows.

One trained state is shared: a synthetic lake through ``FIRST`` with the rolling models of a light
strategy (step 10, so a retrain falls inside the replayed sessions). From copies of it the tests
replay sessions day by day, catch up in one run, fail, rerun, roll back — and compare.
"""

from __future__ import annotations

import json
import shutil
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
from quant_core.data.sources import parse_source
from quant_core.models.registry import ModelRegistry
from quant_core.online.predictions import LoadedModel
from quant_core.online.promotion import PromotionLog
from quant_core.online.redis_sink import SignalStore, connect
from quant_core.online.signals import read_signals

pytestmark = pytest.mark.integration
runner = CliRunner()

SPEC = "synthetic:symbols=30,start=2019-01-01,end=2022-12-30,seed=7"
STRATEGY = "lgb_t"
BODY = {
    "feature_set": "alpha158", "label": "LABEL0",
    "processors": [{"name": "DropnaLabel"}, {"name": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
    "model": {"objective": "mse", "learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 40,
              "colsample_bytree": 0.8, "num_boost_round": 40, "early_stopping_rounds": 10},
    "rolling": {"step": 10},
    "segments": {"dates": {"train": ["2019-01-01", "2020-12-31"], "valid": ["2021-01-01", "2021-12-31"],
                           "test": ["2022-09-01", None]}},
}
N_DAYS = 8


def _cal() -> TradingCalendar:
    return TradingCalendar(parse_source(SPEC).calendar())  # type: ignore[attr-defined]


def _sessions() -> tuple[date, list[date]]:
    """First training's as-of and the replayed sessions: a retrain (step 10) falls inside them."""
    cal = _cal()
    i0 = cal.index(cal.align_start(date(2022, 9, 1)))
    first = cal[i0 + 2 * 10 + 4]  # three tasks trained; the fourth is due 6 sessions later
    i = cal.index(first)
    return first, list(cal[i + 1:i + 1 + N_DAYS])


def _config(root: Path, redis_url: str, prefix: str, **extra: Any) -> Path:
    cfg = root / "q.yaml"
    doc = {"lake_uri": str(root / "lake"), "source": SPEC, "redis_url": redis_url, "redis_prefix": prefix,
           "strategies": {STRATEGY: BODY}, **extra}
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def _cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def _copy(src: Path, dst: Path, redis_url: str, **extra: Any) -> Path:
    """A private copy of a trained state (lake + sqlite registry; artifacts are shared read-only)."""
    shutil.copytree(src / "lake", dst / "lake")
    shutil.copy(src / "lake-mlflow.db", dst / "lake-mlflow.db")
    return _config(dst, redis_url, f"t{uuid.uuid4().hex[:8]}", **extra)


def _run(cfg: Path, day: date, *more: str) -> dict[str, Any]:
    code, out = _cli("run", "--as-of", day.isoformat(), "--config", str(cfg), "--json", *more)
    assert code == 0, out
    return json.loads(out[out.index("{"):])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, redis_url: str, prefect_server: None) -> Path:
    root = tmp_path_factory.mktemp("routine-base")
    cfg = _config(root, redis_url, "unused")
    first, _days = _sessions()
    code, out = _cli("ingest", "--start", "2019-01-01", "--end", first.isoformat(), "--config", str(cfg))
    assert code == 0, out
    code, out = _cli("first-train", "--as-of", first.isoformat(), "--strategy", STRATEGY, "--config", str(cfg))
    assert code == 0, out
    return root


@pytest.fixture(scope="module")
def daily(trained: Path, tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> dict[str, Any]:
    """The sessions replayed one routine at a time (as a scheduled deployment would)."""
    root = tmp_path_factory.mktemp("routine-daily")
    cfg = _copy(trained, root, redis_url)
    _first, days = _sessions()
    summaries = [_run(cfg, d) for d in days]
    return {"root": root, "cfg": cfg, "days": days, "summaries": summaries, "report": _report_markdown()}


def _lake(cfg: Path) -> Lake:
    return Lake(yaml.safe_load(cfg.read_text())["lake_uri"])


def _registry(cfg: Path) -> ModelRegistry:
    return ModelRegistry(f"sqlite:///{yaml.safe_load(cfg.read_text())['lake_uri']}-mlflow.db")


def _store(cfg: Path) -> SignalStore:
    doc = yaml.safe_load(cfg.read_text())
    return SignalStore(connect(doc["redis_url"]), doc["redis_prefix"])


def _lake_state(cfg: Path) -> dict[str, str]:
    return {k: v for k, v in _lake(cfg).snapshot().items() if not k.startswith("reports/")}


def test_day_by_day_retrains_promotes_and_publishes(daily: dict[str, Any]) -> None:
    cfg, days, summaries = daily["cfg"], daily["days"], daily["summaries"]
    retrains = [s for s in summaries if s["trained"][STRATEGY]]
    assert len(retrains) == 1, [s["trained"] for s in summaries]
    log = PromotionLog(_lake(cfg), STRATEGY).entries()
    assert [(p.kind, p.from_version, p.to_version) for p in log] == [("scheduled", None, 3), ("scheduled", 3, 4)]
    assert _registry(cfg).online_version(STRATEGY) == 4
    sig = read_signals(_lake(cfg), STRATEGY)
    assert sorted(sig["date"].unique()) == [d for d in _cal().range(log[0].applies_after, days[-1])
                                            if d > log[0].applies_after]
    new_start = log[1].applies_after
    assert set(sig[sig["date"] > new_start]["version"]) == {"4"} and set(sig[sig["date"] <= new_start]["version"]) == {"3"}
    snap = _store(cfg).read(STRATEGY, top=5)
    assert snap is not None and snap.date == days[-1].isoformat() and snap.meta["models"] == "4"
    assert snap.count == (sig["date"] == days[-1]).sum()
    # live monitoring: labels become observable two sessions late
    mon = _lake(cfg).dataset(f"monitoring/{STRATEGY}").read().to_pandas()
    assert max(mon["date"]) == _cal()[_cal().index(days[-1]) - 2]
    assert summaries[-1]["live_rank_ic_20d"][STRATEGY] is not None
    hist = _registry(cfg).client.get_metric_history(_registry(cfg).version_info(STRATEGY, 3).run_id, "live_rank_ic")
    assert len(hist) >= 5 and all(20220000 < m.step < 20230000 for m in hist)


def test_catch_up_equals_day_by_day_and_a_one_pass_computation(daily: dict[str, Any], trained: Path,
                                                               tmp_path: Path, redis_url: str) -> None:
    cfg_d, days = daily["cfg"], daily["days"]
    cfg_c = _copy(trained, tmp_path, redis_url)
    _run(cfg_c, days[-1])  # every missed session at once
    a, b = read_signals(_lake(cfg_d), STRATEGY), read_signals(_lake(cfg_c), STRATEGY)
    assert a[["date", "symbol", "version"]].equals(b[["date", "symbol", "version"]])
    assert np.abs(a["score"].to_numpy() - b["score"].to_numpy()).max() <= 1e-9
    ra, rb = _registry(cfg_d), _registry(cfg_c)
    assert [(m.version, m.task_id, m.fingerprint) for m in ra.list(STRATEGY)] == \
        [(m.version, m.task_id, m.fingerprint) for m in rb.list(STRATEGY)]
    assert ra.load_model_text(STRATEGY, 4) == rb.load_model_text(STRATEGY, 4)
    key = [(p.applies_after, p.kind, p.from_version, p.to_version)
           for p in PromotionLog(_lake(cfg_d), STRATEGY).entries()]
    assert key == [(p.applies_after, p.kind, p.from_version, p.to_version)
                   for p in PromotionLog(_lake(cfg_c), STRATEGY).entries()]
    sa, sb = _store(cfg_d).read(STRATEGY), _store(cfg_c).read(STRATEGY)
    assert sa is not None and sb is not None and (sa.date, sa.digest) == (sb.date, sb.digest)
    for m in ra.list(STRATEGY):  # the decay tags too: each version with its state as of its last monitored date
        ta, tb = (r.client.get_model_version(STRATEGY, str(m.version)).tags for r in (ra, rb))
        assert {k: v for k, v in ta.items() if k.startswith("qonline.")} == \
            {k: v for k, v in tb.items() if k.startswith("qonline.")}, m.version
    # one pass: each serving version predicts all of its dates at once, straight from the features
    lake = _lake(cfg_d)
    feats = lake.dataset("features/alpha158").read(a["date"].min(), a["date"].max()).to_pandas()
    feats["date"] = pd.to_datetime(feats["date"])
    parts = []
    for version, g in a.groupby("version"):
        model = LoadedModel.from_artifacts(STRATEGY, int(version), "alpha158", ra.artifacts(STRATEGY, int(version)))
        f = feats[feats["date"].dt.date.isin(set(g["date"]))]
        parts.append(model.predict(f))
    full = pd.concat(parts).assign(date=lambda f: pd.to_datetime(f["date"]).dt.date).sort_values(["date", "symbol"])
    assert full["symbol"].tolist() == a["symbol"].tolist()
    assert np.abs(full["score"].to_numpy() - a["score"].to_numpy()).max() <= 1e-9


def test_a_second_run_for_the_same_day_changes_nothing(daily: dict[str, Any]) -> None:
    cfg, days = daily["cfg"], daily["days"]
    lake_before = _lake_state(cfg)
    reg = _registry(cfg)
    versions = [(m.version, m.run_id) for m in reg.list(STRATEGY)]
    store = _store(cfg)
    keys = sorted(store.client.scan_iter(match=f"{store.prefix}:*"))
    events = store.client.xlen(store.k_events)
    again = _run(cfg, days[-1])
    assert again["trained"][STRATEGY] == [] and again["promotions"][STRATEGY] == []
    assert all(not r["published"] for r in again["published"][STRATEGY])
    assert _lake_state(cfg) == lake_before
    assert [(m.version, m.run_id) for m in reg.list(STRATEGY)] == versions
    assert sorted(store.client.scan_iter(match=f"{store.prefix}:*")) == keys
    assert store.client.xlen(store.k_events) == events


def test_bad_input_is_refused_and_writes_nothing(daily: dict[str, Any], tmp_path: Path, redis_url: str) -> None:
    cfg, days = daily["cfg"], daily["days"]
    before = _lake_state(cfg)
    cases = [
        (("run", "--as-of", days[-1].isoformat(), "--strategy", "nope"), r"unknown strategy 'nope'"),
        (("run", "--as-of", "2018-06-01"), r"before the lake's first bar"),
        (("run", "--as-of", "2023-03-01"), r"after the last session the source .* has"),
        (("models", "promote", "99", "--strategy", STRATEGY, "--reason", "x"), r"lgb_t has no version 99"),
        (("models", "promote", "4", "--strategy", STRATEGY, "--reason", "x"), r"version 4 is already the one serving"),
    ]
    for args, pattern in cases:
        code, out = _cli(*args, "--config", str(cfg))
        assert code == 1, (args, out)
        import re

        assert re.search(pattern, out), (args, out)
    assert _lake_state(cfg) == before
    # a malformed Redis URL is refused before anything is written
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load(cfg.read_text())
    bad.write_text(yaml.safe_dump({**doc, "redis_url": "http://nowhere"}))
    code, out = _cli("run", "--as-of", days[-1].isoformat(), "--config", str(bad))
    assert code == 1 and "must look like redis://" in out, out
    # a quality gate of the wrong type names the strategy and the field
    doc["strategies"][STRATEGY] = {**BODY, "gate": {"min_valid_rank_ic": "high"}}
    bad.write_text(yaml.safe_dump(doc))
    code, out = _cli("run", "--as-of", days[-1].isoformat(), "--config", str(bad))
    assert code == 1 and "lgb_t" in out and "gate.min_valid_rank_ic" in out, out
    assert _lake_state(cfg) == before


def test_run_without_a_trained_model_says_first_train(tmp_path: Path, redis_url: str, prefect_server: None) -> None:
    cfg = _config(tmp_path, redis_url, "x")
    code, out = _cli("ingest", "--start", "2022-06-01", "--end", "2022-08-31", "--config", str(cfg))
    assert code == 0, out
    code, out = _cli("run", "--as-of", "2022-08-31", "--config", str(cfg))
    assert code == 1 and "no trained model" in out and "first-train" in out, out


def test_gate_rollback_and_redis_outage(trained: Path, tmp_path: Path, redis_url: str) -> None:
    from flows.local_services import private_redis

    first, days = _sessions()
    cfg = _copy(trained, tmp_path, redis_url)
    doc = yaml.safe_load(cfg.read_text())
    # a gate no model passes: the retrained version 4 stays offline, version 3 keeps serving
    doc["strategies"][STRATEGY] = {**BODY, "gate": {"min_valid_rank_ic": 0.99}}
    cfg.write_text(yaml.safe_dump(doc))
    out = _run(cfg, days[-1])
    assert out["serving"][STRATEGY] == 3 and any("gate failed for version 4" in w for w in out["warnings"]), out
    kinds = [p.kind for p in PromotionLog(_lake(cfg), STRATEGY).entries()]
    assert kinds == ["scheduled", "gate_failed"]
    sig = read_signals(_lake(cfg), STRATEGY)
    assert set(sig["version"]) == {"3"}
    # a manual promotion of 4 applies from the next date, then a rollback returns to 3 — both logged
    code, text = _cli("models", "promote", "4", "--strategy", STRATEGY, "--reason", "reviewed", "--config", str(cfg))
    assert code == 0 and f"version 4 serves the dates after {days[-1]}" in text, text
    code, text = _cli("models", "rollback", "--strategy", STRATEGY, "--config", str(cfg))
    assert code == 0 and "rolled back to version 3" in text, text
    entries = PromotionLog(_lake(cfg), STRATEGY).entries()
    assert [(p.kind, p.to_version) for p in entries][-2:] == [("manual", 4), ("rollback", 3)]
    assert _registry(cfg).online_version(STRATEGY) == 3
    code, text = _cli("models", "promote", "4", "--strategy", STRATEGY, "--reason", "again", "--config", str(cfg))
    assert code == 0, text
    # Redis goes away: the run retries, fails clearly, and keeps the lake's signals
    nxt = _cal()[_cal().index(days[-1]) + 1]
    with private_redis() as temp_url:
        doc = yaml.safe_load(cfg.read_text())
        doc["redis_url"] = temp_url
        cfg.write_text(yaml.safe_dump(doc))
    code, text = _cli("run", "--as-of", nxt.isoformat(), "--config", str(cfg))
    assert code == 1 and "signal pointer of lgb_t from Redis failed" in text and "Connection refused" in text, text
    sig = read_signals(_lake(cfg), STRATEGY)
    assert max(sig["date"]) == nxt and set(sig[sig["date"] == nxt]["version"]) == {"4"}  # the manual move serves
    assert set(sig[sig["date"] <= days[-1]]["version"]) == {"3"}  # published history unchanged
    # Redis is back (the shared server): the next run publishes what the lake holds
    doc["redis_url"] = redis_url
    cfg.write_text(yaml.safe_dump(doc))
    again = _run(cfg, nxt)
    assert [r["date"] for r in again["published"][STRATEGY] if r["published"]] == [nxt.isoformat()]
    code, text = _cli("signals", "show", "--strategy", STRATEGY, "--top", "3", "--json", "--config", str(cfg))
    assert code == 0, text
    shown = json.loads(text)
    assert shown["date"] == nxt.isoformat() and shown["models"] == "4" and len(shown["signals"]) == 3
    assert set(shown) >= {"strategy", "date", "models", "count", "signals"}


def _drop(path: Path, start: date, end: date, scale: float = 1.0, break_day: date | None = None) -> str:
    """The synthetic market's bars of [start, end] as a Parquet drop, optionally perturbed or broken."""
    bars = parse_source(SPEC).extract(start, end)
    for col in ("open", "high", "low", "close", "vwap"):
        if col in bars:
            bars[col] = bars[col] * scale
    if break_day is not None:  # one bar with a negative close: the validation gate must stop the run
        i = bars.index[bars["date"] == pd.Timestamp(break_day)][0]
        bars.loc[i, "close"] = -1.0
    bars.to_parquet(path, index=False)
    return f"parquet:{path}"


def test_point_in_time_and_a_failed_validation(daily: dict[str, Any], trained: Path, tmp_path: Path,
                                               redis_url: str) -> None:
    days = daily["days"]
    k = len(days) - 4
    d = days[k - 1]
    cfg = _copy(trained, tmp_path, redis_url)
    _run(cfg, d)
    before_sig = read_signals(_lake(cfg), STRATEGY)
    store = _store(cfg)
    snap_d = store.read(STRATEGY)
    assert snap_d is not None and snap_d.date == d.isoformat()
    # day d+1 arrives broken: the run fails at the gate, nothing downstream moves, d's snapshot stays
    doc = yaml.safe_load(cfg.read_text())
    doc["source"] = _drop(tmp_path / "broken.parquet", days[k], days[k], break_day=days[k])
    cfg.write_text(yaml.safe_dump(doc))
    lake_before = {k2: v for k2, v in _lake_state(cfg).items()}
    code, out = _cli("run", "--as-of", days[k].isoformat(), "--config", str(cfg))
    assert code == 1 and "close" in out and "report" in out.lower(), out
    after = {k2: v for k2, v in _lake_state(cfg).items()}
    assert after == lake_before
    again = store.read(STRATEGY)
    assert again is not None and (again.date, again.digest) == (snap_d.date, snap_d.digest)
    # the feed is fixed, but every bar after d is different (+3% prices): nothing at or before d changes
    doc["source"] = _drop(tmp_path / "perturbed.parquet", days[k], days[-1], scale=1.03)
    cfg.write_text(yaml.safe_dump(doc))
    _run(cfg, days[-1])
    sig = read_signals(_lake(cfg), STRATEGY)
    pd.testing.assert_frame_equal(sig[sig["date"] <= d].reset_index(drop=True), before_sig.reset_index(drop=True))
    ref = read_signals(_lake(daily["cfg"]), STRATEGY)
    pd.testing.assert_frame_equal(ref[ref["date"] <= d].reset_index(drop=True), before_sig.reset_index(drop=True))
    changed = sig[sig["date"] > d].merge(ref[ref["date"] > d], on=["date", "symbol"])
    assert (changed["score_x"] != changed["score_y"]).any()  # the perturbation did reach the later dates


def _decay_event(event_id: str, timeout: float = 30.0) -> Any:
    """The ``qonline.signal.decay`` event of this id, read back from the Prefect API (persisted asynchronously)."""
    import time
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter, EventNameFilter

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(filter=EventFilter(event=EventNameFilter(name=["qonline.signal.decay"]),
                                                         id=EventIDFilter(id=[UUID(event_id)])), limit=10)
            if page.events:
                return page.events[0]
            assert time.monotonic() < deadline, f"event {event_id} not found through the events API in {timeout} s"
            time.sleep(0.3)


def _report_markdown(flow_run_id: str | None = None) -> str:
    """The daily routine's keyed report artifact, read back from the Prefect API (of one flow run, or the latest)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    flt = ArtifactFilter(key=ArtifactFilterKey(any_=["daily-routine-report"]))
    if flow_run_id is not None:
        flt = ArtifactFilter(key=flt.key, flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=flt, sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, "no daily-routine-report artifact"
    return str(found[0].data)


def test_decay_alert_warns_tags_the_serving_version_and_emits_an_event(daily: dict[str, Any], tmp_path: Path,
                                                                        redis_url: str) -> None:
    """A copy of the replayed lake (monitored dates already there) rerun for its last day: nothing is trained or
    served again; only the decay rule differs."""
    days = daily["days"]
    assert daily["summaries"][-1]["decay"][STRATEGY]["alert"] is False  # the defaults: no alert in the replay
    cfg = _copy(daily["root"], tmp_path, redis_url, decay_threshold=0.99, decay_days=1, decay_window=2)
    out = _run(cfg, days[-1])
    decay = out["decay"][STRATEGY]
    assert decay["alert"] is True and decay["days_below"] >= 1 and decay["version"] == "4", decay
    assert decay["rolling_rank_ic"] < 0.99 and decay["window"] == 2 and decay["event_id"], decay
    warning = next(w for w in out["warnings"] if "signal decay" in w)
    assert warning.startswith(f"{STRATEGY}: signal decay: the rolling 2-date rank IC has been below 0.99"), warning
    # the MLflow tags: on the version that served the last monitored date (this run scored no new date)
    reg = _registry(cfg)
    tags = reg.client.get_model_version(STRATEGY, "4").tags
    assert tags["qonline.decay_alert"] == "true" and tags["qonline.decay_alert_since"] == decay["since"]
    assert float(tags["qonline.rolling_rank_ic"]) == pytest.approx(decay["rolling_rank_ic"], abs=1e-6)
    assert decay["tagged_versions"] == [4]
    # the event, read back from the Prefect API: name, resource, payload, and the flow run that emitted it
    event = _decay_event(decay["event_id"])
    assert event.resource.id == f"qonline.signal.{STRATEGY}" and event.resource["qonline.version"] == "4"
    assert event.payload["alert"] is True and event.payload["since"] == decay["since"]
    assert event.payload["rolling_rank_ic"] == pytest.approx(decay["rolling_rank_ic"])
    run_id = reg.version_info(STRATEGY, 4).run_id
    assert event.payload["mlflow_run_id"] == run_id and event.payload["mlflow_run_url"] is None  # sqlite: no UI
    flow_runs = [r.id.removeprefix("prefect.flow-run.") for r in event.related if r.role == "flow-run"]
    assert len(flow_runs) == 1, event.related
    # the run's keyed report artifact: the warning, the status table, the links
    md = _report_markdown(flow_runs[0])
    assert f"# Daily routine {days[-1]}" in md and "## Warnings" in md and warning in md, md
    assert "**ALERT** since" in md and f"`runs:/{run_id}`" in md, md
    assert "No label became observable in this run." in md and "Bars: already stored" in md, md

    # the default threshold (0.0) over 5 dates: the alert clears, the tag says so, no event
    doc = yaml.safe_load(cfg.read_text())
    del doc["decay_threshold"], doc["decay_days"]
    doc["mlflow_ui_url"] = "http://mlflow.example:5000/"
    cfg.write_text(yaml.safe_dump(doc))
    again = _run(cfg, days[-1])
    cleared = again["decay"][STRATEGY]
    assert cleared["alert"] is False and cleared["event_id"] is None and cleared["threshold"] == 0.0, cleared
    assert not any("signal decay" in w for w in again["warnings"])
    tags = reg.client.get_model_version(STRATEGY, "4").tags
    assert tags["qonline.decay_alert"] == "false" and tags["qonline.decay_alert_since"] == ""
    exp = reg.experiment_id(STRATEGY)
    assert cleared["mlflow_run"] == f"http://mlflow.example:5000/#/experiments/{exp}/runs/{run_id}"
    md = _report_markdown()
    assert "## Warnings" not in md or "signal decay" not in md
    assert f"[{STRATEGY} v4](http://mlflow.example:5000/#/experiments/{exp}/runs/{run_id})" in md, md


def test_the_report_shows_the_dates_scored_in_the_run_and_the_decay_status(daily: dict[str, Any]) -> None:
    """The last replayed day scored one more monitored date: its IC row, the status and the Data Docs link."""
    days, last, md = daily["days"], daily["summaries"][-1], daily["report"]
    scored = _cal()[_cal().index(days[-1]) - 2]
    decay = last["decay"][STRATEGY]
    assert decay["last_date"] == scored.isoformat() and decay["tagged_versions"] == [4], decay
    assert decay["rolling_rank_ic"] is None and decay["window"] == 20  # fewer monitored dates than the window
    assert f"# Daily routine {days[-1]}" in md and "### Dates scored in this run" in md, md
    assert f"| {STRATEGY} | {scored} | 4 |" in md and "no value yet" in md, md
    assert "[Data Docs](" in md and "index.html" in md, md
    reg = _registry(daily["cfg"])
    for version in (3, 4):  # every version that served a monitored date carries its last state
        assert reg.client.get_model_version(STRATEGY, str(version)).tags["qonline.decay_alert"] == "false"
