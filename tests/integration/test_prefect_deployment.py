"""Deployments on a real Prefect server, SQLite and PostgreSQL: schedules, typed parameters, a worker.

An import-only test passes with both of Prefect 3.8.8's known pin problems (STACK.md); this one
starts `prefect server start`, deploys `deployments/prefect.yaml`, checks that the cron deployment
gets scheduled runs and that a bad parameter is refused before a run exists, then has a process
worker run ingest, first-train, daily-routine and a short backfill triggered through the API, and
checks the lake, MLflow and Redis. PostgreSQL runs when ``QONLINE_TEST_PREFECT_DB`` names a server
(``postgresql+asyncpg://user[:password]@host:port/db``; scripts/test.sh sets it when one answers on
127.0.0.1:5432); the test makes a database of its own there and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from flows.local_services import free_port, stop_process_group
from quant_core.data.lake import Lake
from quant_core.models.registry import ModelRegistry
from quant_core.online.redis_sink import SignalStore, connect
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
SPEC = "synthetic:symbols=10,start=2021-06-01,end=2022-12-30,seed=5"
STRATEGY = "dep"
BODY = {
    "processors": [{"name": "DropnaLabel"}],
    "model": {"objective": "mse", "learning_rate": 0.1, "num_leaves": 5, "min_data_in_leaf": 20,
              "num_boost_round": 20, "early_stopping_rounds": 5},
    "rolling": {"step": 10},
    "segments": {"dates": {"train": ["2021-09-01", "2022-04-29"], "valid": ["2022-05-02", "2022-08-31"],
                           "test": ["2022-10-10", None]}},
}
FIRST, DAY, BF_START, BF_END = date(2022, 10, 14), date(2022, 10, 17), date(2022, 10, 18), date(2022, 11, 4)


def _postgres_url() -> str | None:
    return os.environ.get("QONLINE_TEST_PREFECT_DB") or None


def _admin(url: str, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               redis_url: str) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp(f"prefect-{request.param}")
    port = free_port()
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_API_PORT=str(port), PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_UI_ENABLED="false",
               QONLINE_HOME=str(REPO_ROOT))
    env.pop("QONLINE_REDIS_URL", None)
    database = None
    if request.param == "postgresql":
        admin = _postgres_url()
        if admin is None:
            pytest.skip("PostgreSQL variant: set QONLINE_TEST_PREFECT_DB=postgresql+asyncpg://user@host:port/db "
                        "(scripts/test.sh does when a server answers on 127.0.0.1:5432)")
        database = f"qonline_prefect_{uuid.uuid4().hex[:10]}"
        _admin(admin, f'CREATE DATABASE "{database}"')
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = admin.rsplit("/", 1)[0] + f"/{database}"
    # what the deployments and the worker's runs read: one config file (no secret is a parameter)
    cfg = home / "qonline.yaml"
    cfg.write_text(yaml.safe_dump({"lake_uri": str(home / "lake"), "source": SPEC, "redis_url": redis_url,
                                   "redis_prefix": f"dep{uuid.uuid4().hex[:6]}", "max_workers": 2,
                                   "strategies": {STRATEGY: BODY}}))
    env["QONLINE_CONFIG"] = str(cfg)
    log = open(home / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prefect server did not start:\n" + (home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield env
    finally:
        stop_process_group(proc)
        log.close()
        if database is not None:
            admin = _postgres_url()
            assert admin is not None
            _admin(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _prefect(env: dict[str, str], *args: str) -> str:
    res = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=240, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def _runs(api: str, deployment_id: str, states: list[str] | None = None) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"deployments": {"id": {"any_": [deployment_id]}}}
    if states:
        body["flow_runs"] = {"state": {"type": {"any_": states}}}
    out: list[dict[str, Any]] = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
    return out


TRIGGER = """
import json, sys
from prefect.deployments import run_deployment
for name, params in json.loads(sys.argv[1]):
    r = run_deployment(name, parameters=params, timeout=600, poll_interval=1)
    print("STATE", name, r.state.type.value, flush=True)
    if r.state.type.value != "COMPLETED":
        break
"""


def test_deployments_schedule_validate_and_run_on_a_worker(server_env: dict[str, str]) -> None:
    env = server_env
    api = env["PREFECT_API_URL"]
    _prefect(env, "work-pool", "create", "qonline-process", "--type", "process")
    _prefect(env, "global-concurrency-limit", "create", "qonline-lake-writer", "--limit", "1")
    _prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all")
    by_name = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
    assert set(by_name) == {"daily-routine", "backfill", "first-train", "ingest", "report"}
    assert all(d["work_pool_name"] == "qonline-process" for d in by_name.values())

    # the typed parameters as the UI form sees them: a date, an enum of the configured strategies, bounds
    schema = by_name["backfill"]["parameter_openapi_schema"]["properties"]
    assert schema["start"]["format"] == "date"
    assert STRATEGY in json.dumps(schema["strategies"]) and "enum" in json.dumps(schema["strategies"])
    assert (schema["chunk"]["minimum"], schema["chunk"]["maximum"]) == (1, 260)

    # the scheduler (broken by sqlalchemy 2.1) creates future runs for the cron deployment
    daily = by_name["daily-routine"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not _runs(api, daily["id"], ["SCHEDULED"]):
        time.sleep(2)
    assert _runs(api, daily["id"], ["SCHEDULED"]), "the scheduler created no runs for daily-routine"

    # a bad value is refused by the server before any run exists
    bf = by_name["backfill"]
    for bad in ({"start": "2022-10-18", "end": "2022-11-04", "chunk": 0},
                {"start": "2022-10-18", "end": "2022-11-04", "strategies": ["nope"]},
                {"start": "last tuesday", "end": "2022-11-04"}):
        res = httpx.post(f"{api}/deployments/{bf['id']}/create_flow_run", json={"parameters": bad}, timeout=10)
        assert res.status_code in (409, 422), (bad, res.status_code, res.text[:300])
        assert "validation" in res.text.lower() or "invalid" in res.text.lower(), res.text[:300]
    assert _runs(api, bf["id"]) == []

    # ingest, first-train, daily-routine and a short backfill, triggered through the API, run by a worker
    home = Path(env["PREFECT_HOME"])
    worker_log = open(home / "worker.log", "wb")  # noqa: SIM115
    # the worker asks for runs every second rather than every 10 s: five runs in a row, each waited for
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "qonline-process", "--limit", "1"],
                              env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, cwd=REPO_ROOT, stdout=worker_log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        plan = [
            ("ingest/ingest", {"start": "2021-06-01", "end": FIRST.isoformat()}),
            ("first_train/first-train", {"as_of": FIRST.isoformat(), "strategy": STRATEGY}),
            ("daily_routine/daily-routine", {"as_of": DAY.isoformat()}),
            ("backfill/backfill", {"start": BF_START.isoformat(), "end": BF_END.isoformat(), "chunk": 5}),
            ("report/report", {"start": DAY.isoformat(), "end": BF_END.isoformat(), "strategy": STRATEGY,
                               "out": str(home / "report")}),
        ]
        res = subprocess.run([sys.executable, "-c", TRIGGER, json.dumps(plan)], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=1200)
        worker_text = (home / "worker.log").read_text(errors="replace")[-5000:]
        states = [line.split()[1:] for line in res.stdout.splitlines() if line.startswith("STATE ")]
        assert states == [[name, "COMPLETED"] for name, _ in plan], res.stdout[-2000:] + res.stderr[-3000:] + worker_text
    finally:
        stop_process_group(worker)  # workers before the server (STACK.md)
        worker_log.close()

    doc = yaml.safe_load(Path(env["QONLINE_CONFIG"]).read_text())
    lake = Lake(doc["lake_uri"])
    sig = lake.dataset(f"signals/{STRATEGY}").read().to_pandas()
    assert sig["date"].max() == BF_END and len(lake.dataset("monitoring/" + STRATEGY).dates()) > 5
    registry = ModelRegistry(f"sqlite:///{doc['lake_uri']}-mlflow.db")
    versions = registry.list(STRATEGY)
    assert len(versions) == 2 and registry.online_version(STRATEGY) == versions[-1].version  # one rolling step
    snap = SignalStore(connect(doc["redis_url"]), doc["redis_prefix"]).read(STRATEGY)
    assert snap is not None and snap.date == BF_END.isoformat() and snap.count == (sig["date"] == BF_END).sum()
    # every lake writer held the Prefect global concurrency limit, and released it
    gcl = httpx.get(f"{api}/v2/concurrency_limits/qonline-lake-writer", timeout=10).json()
    assert gcl["limit"] == 1 and gcl["active_slots"] == 0
    # the report deployment wrote its page and numbers where the run's parameter said
    numbers = json.loads((home / "report" / "report.json").read_text())
    assert numbers["strategy"] == STRATEGY and (home / "report" / "report.html").stat().st_size > 10_000
