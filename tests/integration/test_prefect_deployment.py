"""Deployments on a real Prefect server: the scheduler creates runs, and a manual run completes on a worker.

An import-only test passes with both of Prefect 3.8.8's known pin problems (STACK.md); this one
starts `prefect server start`, deploys `deployments/prefect.yaml`, and watches what happens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from flows.local_services import free_port, stop_process_group
from quant_core.lake import Lake
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_UI_ENABLED="false",
        QONLINE_HOME=str(REPO_ROOT),
    )
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


def _prefect(env: dict[str, str], *args: str) -> str:
    res = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=240, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_deploy_schedule_and_manual_run(server_env: dict[str, str], tmp_path: Path) -> None:
    env = server_env
    _prefect(env, "work-pool", "create", "qonline-process", "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all")

    api = env["PREFECT_API_URL"]
    deps = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    by_name = {d["name"]: d for d in deps}
    assert {"ingest-daily", "demo"} <= set(by_name)
    daily = by_name["ingest-daily"]

    # the scheduler (broken by sqlalchemy 2.1) must create future runs for the cron deployment
    deadline = time.monotonic() + 90
    scheduled: list[dict[str, object]] = []
    while time.monotonic() < deadline and not scheduled:
        scheduled = httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
            "deployments": {"id": {"any_": [daily["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        }).json()
        if not scheduled:
            time.sleep(2)
    assert scheduled, "the scheduler created no runs for ingest-daily"

    # a manual run with explicit parameters, executed by a real process worker
    lake = tmp_path / "lake"
    worker_log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "qonline-process", "--limit", "1"],
                              env=env, cwd=REPO_ROOT, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = (
            "from prefect.deployments import run_deployment\n"
            "r = run_deployment('ingest/ingest-daily', timeout=400, parameters={"
            "'source': 'synthetic:symbols=8,start=2022-01-01,end=2022-03-31,seed=2',"
            f"'start': '2022-01-03', 'end': '2022-01-31', 'lake_uri': {str(lake)!r}}})\n"
            "print('STATE', r.state.type.value)\n"
        )
        res = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=450)
        worker_text = (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
        assert "STATE COMPLETED" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:] + worker_text
    finally:
        stop_process_group(worker)  # workers before the server (STACK.md)
        worker_log.close()
    cal = Lake(str(lake)).calendar()
    assert cal.first == date(2022, 1, 3) and cal.last == date(2022, 1, 31)
