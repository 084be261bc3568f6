"""Rolling training on a real lake with MLflow on sqlite: CLI, reuse, Dask, determinism, bad input."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from quant_core.data.lake import Lake
from quant_core.data.sources import parse_source
from quant_core.features import get_feature_set
from quant_core.features.labels import LABEL0
from quant_core.features.store import update_features, update_labels
from quant_core.models.registry import ModelRegistry
from quant_core.models.strategy import get_strategy
from quant_core.models.training import assemble, train_task

pytestmark = pytest.mark.integration
runner = CliRunner()
AS_OF = "2022-12-30"
SMALL = {
    "feature_set": "alpha158", "label": "LABEL0",
    "processors": [{"name": "DropnaLabel"}, {"name": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
    "model": {"objective": "mse", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50,
              "colsample_bytree": 0.8, "num_boost_round": 120, "early_stopping_rounds": 20},
    "rolling": {"step": 60},
    "segments": {"relative": {"test_years": 1, "valid_years": 1}},
}


@pytest.fixture(scope="module")
def lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-lake") / "lake"
    bars = parse_source("synthetic:symbols=30,start=2019-01-01,end=2022-12-30,seed=7").extract(
        date(2019, 1, 1), date(2022, 12, 30))
    lake = Lake(str(root))
    lake.write_bars(bars, "2019-01-01", "2022-12-30")
    cal = lake.calendar()
    update_features(lake, get_feature_set("alpha158"), cal.first, cal.last)
    update_labels(lake, LABEL0, cal.first, cal.last)
    return root


@pytest.fixture()
def env(tmp_path: Path, lake_template: Path) -> Path:
    """A private copy of the lake and a config with the light strategy; returns the config path."""
    shutil.copytree(lake_template, tmp_path / "lake")
    cfg = tmp_path / "q.yaml"
    cfg.write_text(yaml.safe_dump({"lake_uri": str(tmp_path / "lake"), "strategies": {"lgb_small": SMALL}}))
    return cfg


def _cli(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def _registry(cfg: Path) -> ModelRegistry:
    lake = yaml.safe_load(cfg.read_text())["lake_uri"]
    return ModelRegistry(f"sqlite:///{lake}-mlflow.db")


def test_first_train_registers_a_version_per_task_and_reuses_them(env: Path, prefect_server: None) -> None:
    code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "lgb_small", "--config", str(env), "--json")
    assert code == 0, out + err
    first = json.loads(out)
    assert first["tasks"] == first["trained"] == 5 and first["reused"] == 0
    code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "lgb_small", "--config", str(env), "--json")
    again = json.loads(out)
    assert again["reused"] == 5 and again["trained"] == 0
    assert sorted(v["version"] for v in again["versions"]) == [1, 2, 3, 4, 5]

    code, out, err = _cli("models", "list", "--strategy", "lgb_small", "--config", str(env), "--json")
    assert code == 0, out + err
    models = json.loads(out)
    assert len(models) == 5
    for m in models:
        assert {"version", "task_id", "segments", "metrics", "online"} <= set(m)
        assert set(m["segments"]) == {"train", "valid", "test"}
        assert m["metrics"]["best_iteration"] >= 1 and "valid_rank_ic" in m["metrics"]
    # first training puts its newest model online, and logs it
    assert [m["version"] for m in models if m["online"]] == [5] and first["online"] == 5
    assert sum(m["segments"]["test"][1] is None for m in models) == 1  # the latest task's test is open
    # the planted signal is learnable: a clearly positive mean valid rank IC
    assert sum(m["metrics"]["valid_rank_ic"] for m in models) / 5 > 0.02

    # artifacts: LightGBM text model, JSON processor state, features, task; no pickle anywhere
    reg = _registry(env)
    mv = reg.client.get_model_version("lgb_small", "1")
    arts = {a.path for a in reg.client.list_artifacts(mv.run_id, "model")}
    assert arts == {"model/model.txt", "model/processors.json", "model/features.json", "model/task.json"}
    assert reg.load_model_text("lgb_small", 1).startswith("tree")
    art_root = Path(yaml.safe_load(env.read_text())["lake_uri"]).parent / "mlartifacts"
    assert not [p for p in art_root.rglob("*") if p.suffix in (".pkl", ".pickle")]


def _configured_registry(env: Path, tmp_path: Path) -> Path:
    """Point the config at an MLflow store that is not the default one; returns the db path."""
    db = tmp_path / "registry" / "configured.db"
    db.parent.mkdir()
    cfg = yaml.safe_load(env.read_text())
    cfg["mlflow_tracking_uri"] = f"sqlite:///{db}"
    env.write_text(yaml.safe_dump(cfg))
    return db


def _assert_all_in_configured_registry(env: Path, db: Path, summary: dict[str, object]) -> None:
    assert summary["trained"] == 5
    versions = ModelRegistry(f"sqlite:///{db}").list("lgb_small")
    assert [m.version for m in versions] == [1, 2, 3, 4, 5]
    assert len({m.task_id for m in versions}) == 5
    lake = Path(yaml.safe_load(env.read_text())["lake_uri"])
    assert not Path(f"{lake}-mlflow.db").exists(), "a worker used the default registry instead of the configured one"


def test_dask_local_cluster_path(env: Path, tmp_path: Path, prefect_server: None) -> None:
    """Two Dask worker processes register the first versions at once: the registry is created first."""
    db = _configured_registry(env, tmp_path)
    code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "lgb_small", "--config", str(env), "--json",
                          "--dask", "--workers", "2")
    assert code == 0, out + err
    _assert_all_in_configured_registry(env, db, json.loads(out))


def test_remote_dask_workers_get_the_flows_settings(env: Path, tmp_path: Path, prefect_server: None) -> None:
    """Workers started before the command (another environment, as on another host) see the config too."""
    from distributed import LocalCluster

    db = _configured_registry(env, tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "lgb_small", "--config", str(env),
                              "--json", "--dask-address", cluster.scheduler_address)
    assert code == 0, out + err
    _assert_all_in_configured_registry(env, db, json.loads(out))


def test_online_alias_lookups_and_no_orphans(env: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "lgb_small", "--config", str(env), "--json")
    assert code == 0, out + err
    reg = _registry(env)
    # promoted by alias: `models list --json` shows it online (search_model_versions alone says no alias)
    reg.set_alias("lgb_small", 3)
    code, out, err = _cli("models", "list", "--strategy", "lgb_small", "--config", str(env), "--json")
    rows = json.loads(out)
    assert [r["version"] for r in rows if r["online"]] == [3] and reg.online_version("lgb_small") == 3
    reg.set_alias("lgb_small", 5)
    assert reg.online_version("lgb_small") == 5 and [m.version for m in reg.list("lgb_small") if m.online] == [5]

    # lookups by tag and the latest task, which the daily routine rolls on from
    latest = reg.latest("lgb_small")
    assert latest is not None
    info, task = latest
    assert info.version == 5 and task.task_id == info.task_id and task.segments.test.end is None
    assert [m.version for m in reg.by_task("lgb_small", info.task_id)] == [5]
    assert [m.version for m in reg.by_test_start("lgb_small", info.test_start)] == [5]

    # a lost reply to create_model_version: the version exists, the caller saw an error
    lake = Lake(yaml.safe_load(env.read_text())["lake_uri"])
    cal = lake.calendar()
    t = get_strategy("lgb_small", {"lgb_small": {**SMALL, "model": {**SMALL["model"], "num_leaves": 7}}}).tasks(
        cal, AS_OF)[0]
    trained = train_task(assemble(lake, t, cal, date(2022, 12, 30)), t)
    real = reg.client.create_model_version

    def lost_reply(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        raise ConnectionResetError("the reply was lost (simulated)")

    monkeypatch.setattr(reg.client, "create_model_version", lost_reply)
    from quant_core.models.registry import RegistryError

    with pytest.raises(RegistryError, match="registering in MLflow .* failed: the reply was lost"):
        reg.register(trained)
    monkeypatch.undo()
    assert reg.find(t, trained.fingerprint) is None
    assert [m.version for m in reg.list("lgb_small")] == [1, 2, 3, 4, 5]
    assert sorted(int(v.version) for v in reg.client.search_model_versions("name='lgb_small'")) == [1, 2, 3, 4, 5]
    runs = reg.client.search_runs([reg.experiment_id("lgb_small")], filter_string=f"tags.task_id = '{t.task_id}'")
    assert runs == []  # the run is deleted
    art_root = Path(yaml.safe_load(env.read_text())["lake_uri"]).parent / "mlartifacts"
    leftovers = list(art_root.rglob("model.txt"))
    assert len(leftovers) == 5, leftovers  # the failed run's artifacts are gone too


def test_transient_registry_errors_are_retried_and_others_raised(env: Path) -> None:
    from mlflow.exceptions import MlflowException

    from quant_core.models.registry import RegistryError

    reg = ModelRegistry(f"sqlite:///{env.parent / 'transient.db'}", retry_delays=(0.01, 0.01, 0.01))
    reg.prepare("s")
    calls = {"n": 0}
    real = reg.client.search_model_versions

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] < 3:
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return real(*args, **kwargs)

    reg.client.search_model_versions = flaky  # type: ignore[method-assign]
    assert reg.list("s") == [] and calls["n"] == 3

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise MlflowException("Invalid filter string", error_code="INVALID_PARAMETER_VALUE")

    reg.client.search_model_versions = broken  # type: ignore[method-assign]
    with pytest.raises(RegistryError, match="Invalid filter string"):
        reg.by_task("s", "abc")  # an error is never "not found" (which would train the task twice)


def test_training_is_deterministic(env: Path) -> None:
    lake = Lake(yaml.safe_load(env.read_text())["lake_uri"])
    cal = lake.calendar()
    task = get_strategy("lgb_small", {"lgb_small": SMALL}).tasks(cal, AS_OF)[2]
    data = assemble(lake, task, cal, date(2022, 12, 30))
    a, b = train_task(data, task), train_task(data, task)
    assert a.model_text == b.model_text and a.metrics == b.metrics
    # point in time: no training row is dated after the cutoff, and the cutoff leaves the label gap
    cutoff = pd.Timestamp(data.cutoff)
    assert data.train["date"].max() <= cutoff and data.valid["date"].max() <= cutoff
    assert cal.index(data.cutoff) + LABEL0.lookahead < cal.index(task.segments.test.start)


def _bad(env: Path, **strategy_changes: object) -> tuple[int, str]:
    body = {**SMALL, **strategy_changes}
    cfg = yaml.safe_load(env.read_text())
    cfg["strategies"] = {"bad": body}
    env.write_text(yaml.safe_dump(cfg))
    code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "bad", "--config", str(env))
    return code, out + err


@pytest.mark.parametrize(
    "changes,pattern",
    [
        ({"model": {**SMALL["model"], "learnin_rate": 0.1}}, r"unknown LightGBM parameter.*learnin_rate"),  # type: ignore[dict-item]
        ({"rolling": {"step": 0}}, r"step"),
        ({"rolling": {"step": 20, "trunc_days": 1}}, r"leak"),
        ({"segments": {"dates": {"train": ["2019-01-01", "2020-12-31"], "valid": ["2020-06-01", "2021-06-30"],
                                 "test": ["2021-08-01", None]}}}, r"overlap|order"),
        ({"segments": {"dates": {"train": ["2019-01-01", "2020-12-31"], "valid": ["2021-01-02", "2021-01-03"],
                                 "test": ["2021-08-01", None]}}}, r"valid.*trading day|no trading day"),
        ({"feature_set": "alpha999"}, r"alpha999"),
    ],
    ids=["unknown_param", "step_zero", "trunc_leak", "overlapping_segments", "empty_segment", "unknown_feature_set"],
)
def test_bad_strategies_fail_clearly_and_register_nothing(env: Path, prefect_server: None, changes: dict[str, object],
                                                           pattern: str) -> None:
    import re

    code, out = _bad(env, **changes)
    assert code == 1, out
    assert re.search(pattern, out, flags=re.I | re.S), out
    assert _registry(env).list("bad") == []


def test_features_missing_from_the_lake(env: Path, prefect_server: None) -> None:
    lake_dir = Path(yaml.safe_load(env.read_text())["lake_uri"])
    shutil.rmtree(lake_dir / "features")
    code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "lgb_small", "--config", str(env))
    assert code == 1 and "features/alpha158" in out + err, out + err
    assert _registry(env).list("lgb_small") == []


def test_unreachable_mlflow_server(env: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.local_services import free_port

    monkeypatch.setenv("QONLINE_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    code, out, err = _cli("first-train", "--as-of", AS_OF, "--strategy", "lgb_small", "--config", str(env))
    assert code == 1 and "cannot be reached" in out + err, out + err
