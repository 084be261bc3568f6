"""The registry against a real MLflow tracking server whose artifacts live in S3 (SeaweedFS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import boto3
import httpx
import pytest

from flows.local_services import free_port, stop_process_group
from quant_core.data.lake import Lake
from quant_core.data.sources import parse_source
from quant_core.features import get_feature_set
from quant_core.features.labels import LABEL0
from quant_core.features.store import update_features, update_labels
from quant_core.models.registry import ModelRegistry
from quant_core.models.strategy import StrategyConfig
from quant_core.models.training import assemble, train_task

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_http_tracking_with_s3_artifacts(tmp_path: Path, s3_server) -> None:
    port = free_port()
    env = dict(os.environ, MLFLOW_S3_ENDPOINT_URL=s3_server.endpoint_url, AWS_ACCESS_KEY_ID=s3_server.access_key,
               AWS_SECRET_ACCESS_KEY=s3_server.secret_key, AWS_DEFAULT_REGION="us-east-1")
    log = open(tmp_path / "mlflow.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", f"s3://{s3_server.bucket}/mlflow", "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start: " + (tmp_path / "mlflow.log").read_text()[-3000:])
            time.sleep(0.5)

        bars = parse_source("synthetic:symbols=20,start=2019-01-01,end=2021-12-31,seed=7").extract(
            date(2019, 1, 1), date(2021, 12, 31))
        lake = Lake(str(tmp_path / "lake"))
        lake.write_bars(bars, "2019-01-01", "2021-12-31")
        cal = lake.calendar()
        update_features(lake, get_feature_set("alpha158"), cal.first, cal.last)
        update_labels(lake, LABEL0, cal.first, cal.last)
        strat = StrategyConfig(name="remote", model={"objective": "mse", "num_leaves": 7, "num_boost_round": 20,
                                                     "early_stopping_rounds": 5},
                               segments={"relative": {"test_years": 1, "valid_years": 1}})  # type: ignore[arg-type]
        task = strat.tasks(cal, cal.last)[0]
        trained = train_task(assemble(lake, task, cal, cal.last), task)

        # the client needs nothing but the tracking URI: artifacts go through the server to S3
        registry = ModelRegistry(f"http://127.0.0.1:{port}")
        registry.check_reachable()
        info = registry.register(trained)
        assert info.version == 1 and info.task_id == task.task_id
        assert registry.find(task, trained.fingerprint) is not None
        assert registry.load_model_text("remote", 1) == trained.model_text
        s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id=s3_server.access_key,
                          aws_secret_access_key=s3_server.secret_key, region_name="us-east-1")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_server.bucket, Prefix="mlflow/")["Contents"]]
        assert any(k.endswith("model/model.txt") for k in keys) and any(k.endswith("processors.json") for k in keys)
    finally:
        stop_process_group(proc)
        log.close()
