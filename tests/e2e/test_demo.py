"""The quickstart's main job, end to end on the embedded defaults (in-process, temporary Prefect API)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from quant_core.data.lake import Lake
from quant_core.data.sources import parse_source
from quant_core.features import get_feature_set
from quant_core.features.labels import LABEL0
from quant_core.features.store import feature_dataset, label_dataset
from quant_core.online.promotion import PromotionLog
from quant_core.online.signals import read_signals
from quant_core.settings import DEFAULT_SOURCE

pytestmark = pytest.mark.integration


def test_demo_trains_runs_a_week_of_routines_and_prints_signals(tmp_path: Path, prefect_server: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QONLINE_REDIS_URL", raising=False)  # the demo starts its own redis-server
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["demo"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "QONLINE_REDIS_URL" not in os.environ
    lake = Lake(str(tmp_path / "lake"))
    days = parse_source(DEFAULT_SOURCE).calendar()  # type: ignore[attr-defined]
    cal = lake.calendar()
    assert list(cal) == days  # every trading day of the synthetic market: history, 5 daily routines, a backfill
    feats = feature_dataset(lake, get_feature_set("alpha158"))
    assert feats.dates() == days
    assert label_dataset(lake, LABEL0).dates() == days[:-LABEL0.lookahead]
    # the history, five daily routines and one backfill each validated their new bars
    assert len(list((tmp_path / "lake" / "reports" / "validation").rglob("report.json"))) == 7
    # one of the five routines retrained and promoted the new model
    log = PromotionLog(lake, "lgb_light").entries()
    assert len(log) >= 2 and {p.kind for p in log} == {"scheduled"} and log[1].from_version == log[0].to_version
    assert "backfill:" in res.stdout and f"range: {days[-10]}..{days[-1]}" in res.stdout
    # the evaluation report of the served range (the week and the backfill), beside the lake
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    assert (numbers["start"], numbers["end"]) == (days[-15].isoformat(), days[-1].isoformat())
    assert numbers["ic"]["days"] > 0 and f"html: {tmp_path / 'report' / 'report.html'}" in res.stdout
    signals = read_signals(lake, "lgb_light")
    assert max(signals["date"]) == days[-1]
    # the latest signals, read back from Redis, are printed best first
    assert f"latest signals in Redis: lgb_light {days[-1]} (models {log[-1].to_version}," in res.stdout
    rows = re.findall(r"^\s*(\d+)\.\s+(\S+)\s+([+-]\d+\.\d+)$", res.stdout, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(1, 11)), res.stdout
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    last = signals[signals["date"] == days[-1]].sort_values("score", ascending=False)
    assert [r[1] for r in rows] == last["symbol"].head(10).tolist()
