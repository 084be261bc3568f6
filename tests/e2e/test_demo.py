"""The quickstart's main job, end to end on the embedded defaults (in-process, temporary Prefect API)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from quant_core.feature_store import feature_dataset, label_dataset
from quant_core.features import get_feature_set
from quant_core.labels import LABEL0
from quant_core.lake import Lake
from quant_core.settings import DEFAULT_SOURCE
from quant_core.sources import parse_source

pytestmark = pytest.mark.integration


def test_demo_builds_the_lake_and_replays_daily_ingests(tmp_path: Path, prefect_server: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QONLINE_REDIS_URL", raising=False)  # the demo starts its own redis-server
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["demo"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "reachable (PING=True)" in res.stdout
    assert "QONLINE_REDIS_URL" not in os.environ
    lake = Lake(str(tmp_path / "lake"))
    days = parse_source(DEFAULT_SOURCE).calendar()  # type: ignore[attr-defined]
    cal = lake.calendar()
    assert list(cal) == days  # every trading day of the synthetic market, history + 3 daily ingests
    feats = feature_dataset(lake, get_feature_set("alpha158"))
    assert feats.dates() == days
    assert label_dataset(lake, LABEL0).dates() == days[:-LABEL0.lookahead]
    assert len(list((tmp_path / "lake" / "reports" / "validation").rglob("report.json"))) == 4
