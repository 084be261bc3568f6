"""The report's charts and HTML page from a small synthetic market (no lake, no services)."""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quant_core.evaluation.backtest import BacktestConfig
from quant_core.evaluation.charts import Chart, render_charts
from quant_core.evaluation.html import render_html
from quant_core.evaluation.report import (
    ReportConfig,
    ReportData,
    ReportError,
    ReportInputs,
    build_report,
    check_output_dir,
    fmt,
    write_report_files,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _inputs(n_sym: int = 25, n_days: int = 80, seed: int = 0, versions: bool = True) -> ReportInputs:
    """A market with a planted signal (score = LABEL0 + noise), served by two versions; the last two
    signal dates without a label, one symbol suspended for a week."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2023-01-02", periods=n_days + 22).astype("datetime64[s]")
    syms = [f"S{i:02d}" for i in range(n_sym)]
    close = 10 * np.exp(np.cumsum(rng.normal(0.0002, 0.02, (len(days), n_sym)), axis=0))
    close[30:35, 3] = np.nan  # suspended
    bars = pd.DataFrame({"date": np.repeat(days, n_sym), "symbol": np.tile(syms, len(days)),
                         "close": close.ravel(), "factor": 1.0}).dropna(subset=["close"])
    label = np.full_like(close, np.nan)
    label[:-2] = close[2:] / close[1:-1] - 1
    sd = days[:n_days]
    score = np.nan_to_num(label[:n_days]) + rng.normal(0, 0.03, (n_days, n_sym))
    version = np.repeat(np.where(np.arange(n_days) < n_days // 2, 1, 2), n_sym)
    signals = pd.DataFrame({"date": np.repeat(sd, n_sym), "symbol": np.tile(syms, n_days), "score": score.ravel(),
                            "version": version.astype(str)})
    labels = pd.DataFrame({"date": np.repeat(sd, n_sym), "symbol": np.tile(syms, n_days),
                           "label": label[:n_days].ravel()}).dropna()
    labels = labels[labels["date"] < sd[-2]]  # not observable yet
    preds = signals.assign(version=version)[["date", "symbol", "score", "version"]]
    if not versions:
        preds = preds.iloc[:0]
    return ReportInputs("lgb_<test>", "LABEL0", sd[0].date(), sd[-1].date(), "file:///tmp/lake", signals,
                        labels.reset_index(drop=True), bars.reset_index(drop=True), preds, {"signals/lgb": 7})


CONFIG = ReportConfig(backtest=BacktestConfig(topk=8, n_drop=2))


@pytest.fixture(scope="module")
def data() -> ReportData:
    return build_report(_inputs(), CONFIG)


@pytest.fixture(scope="module")
def charts(data: ReportData) -> list[Chart]:
    return render_charts(data)


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_every_chart_is_a_laptop_width_png(charts: list[Chart]) -> None:
    assert [c.key for c in charts] == ["daily_ic", "cumulative_return", "drawdown", "turnover", "version_ic",
                                       "ic_decay"]
    for c in charts:
        assert _png_size(c.png) == (1000, 400), c.key
        assert len(c.png) > 15_000, c.key  # drawn, not blank
        assert c.title and len(c.caption) > 40


def test_charts_with_nothing_to_show_still_render() -> None:
    data = build_report(_inputs(versions=False), CONFIG)
    assert any("no IC per model version" in w for w in data.warnings)
    chart = {c.key: c for c in render_charts(data)}["version_ic"]
    assert _png_size(chart.png) == (1000, 400)


def test_the_page_is_self_contained_and_escaped(data: ReportData, charts: list[Chart]) -> None:
    page = render_html(data, charts)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(charts)
    for encoded, chart in zip(images, charts, strict=True):
        assert base64.b64decode(encoded) == chart.png
    # nothing loaded from elsewhere: no script, stylesheet link, remote URL or CSS url()
    for forbidden in ("<script", "<link", "http://", "https://", "url(", "@import"):
        assert forbidden not in page.lower(), forbidden
    # the strategy name is shown escaped
    assert "lgb_&lt;test&gt;" in page and "lgb_<test>" not in page
    for text in ("served signal", "TopK-dropout (net)", "long-short (net)", "equal weight", "IC decay",
                 "Model versions", "2023-01-02 .. ", "file:///tmp/lake", "signals/lgb gen 7"):
        assert text in page, text
    # the warnings are shown (two unlabelled dates)
    assert "Warnings" in page and "no observable LABEL0" in page
    assert f"{data.ic.rank_ic:.4f}" in page


def test_json_has_every_number_and_no_nan(data: ReportData) -> None:
    text = data.to_json()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["strategy"] == "lgb_<test>" and doc["label"] == "LABEL0"
    assert doc["ic"]["days"] == 78 and doc["coverage"]["labelled_dates"] == 78
    assert doc["ic"]["rank_ic"] == data.ic.rank_ic
    assert len(doc["daily_ic"]["date"]) == 80 and doc["daily_ic"]["ic"][-1] is None
    assert doc["daily_ic"]["ic_rolling"][:19] == [None] * 19 and doc["daily_ic"]["ic_rolling"][19] is not None
    assert [r["horizon"] for r in doc["ic_decay"]] == [1, 5, 10, 20]
    assert [r["version"] for r in doc["versions"]] == [1, 2]
    assert set(doc["performance"]) == {"topk_dropout", "long_short", "benchmark"}
    assert doc["performance"]["topk_dropout"]["returns"]["annualized_return"] == pytest.approx(
        np.mean(doc["backtest"]["topk_dropout"]["net_return"]) * 238, rel=1e-12)
    assert doc["headline"]["rank_ic"] == data.ic.rank_ic
    assert "topk_dropout.returns.information_ratio" in doc["headline"]
    assert doc["config"]["topk"] == 8 and doc["config"]["on_small_universe"] == "clip"


def test_a_universe_smaller_than_topk_is_clipped_with_the_dates_or_refused() -> None:
    inputs = _inputs(n_sym=10, n_days=30)
    clipped = build_report(inputs, ReportConfig(backtest=BacktestConfig(topk=12, n_drop=2)))
    warning = next(w for w in clipped.warnings if "backtest_topk=12" in w)
    assert "on 30 of 30 backtested date(s): 2023-01-02 (10 symbols)" in warning and "clip" in warning
    with pytest.raises(ReportError, match=r"backtest_topk=12 .* on_small_universe=refuse: lower backtest_topk"):
        build_report(inputs, ReportConfig(backtest=BacktestConfig(topk=12, n_drop=2, on_small_universe="refuse")))


def test_numbers_are_formatted_for_people() -> None:
    assert fmt(0.12345, "pct") == "12.35%"
    assert fmt(0.045678, "ic") == "0.0457"
    assert fmt(1.5, "num") == "1.50"
    assert fmt(238.0, "int") == "238"
    assert fmt(None, "num") == fmt(float("nan"), "pct") == "\u2013"


def test_output_folder_rules(tmp_path: Path) -> None:
    new = tmp_path / "a" / "b"
    assert check_output_dir(new) == new and not (tmp_path / "a").exists()  # checked, not created
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError, match="is a file"):
        check_output_dir(blocker)
    with pytest.raises(ReportError, match=r"cannot be created: .*file is a file, not a folder"):
        check_output_dir(blocker / "sub")
    (tmp_path / "taken" / "report.html").mkdir(parents=True)
    with pytest.raises(ReportError, match="report.html there is a folder"):
        check_output_dir(tmp_path / "taken")
    files = write_report_files(new, "<html></html>", "{}")
    assert files["html"].read_text() == "<html></html>" and files["json"].read_text() == "{}"
    assert sorted(p.name for p in new.iterdir()) == ["report.html", "report.json"]  # no temp file left


def test_report_config_from_settings_refuses_n_drop_above_topk() -> None:
    from quant_core.errors import ConfigError
    from quant_core.settings import load_settings

    cfg = ReportConfig.from_settings(load_settings(backtest_topk=30, backtest_n_drop=3, annualization=252))
    assert (cfg.backtest.topk, cfg.backtest.n_drop, cfg.backtest.annualization) == (30, 3, 252)
    with pytest.raises(ConfigError, match="n_drop=9 exceeds topk=4"):
        ReportConfig.from_settings(load_settings(backtest_topk=4, backtest_n_drop=9))
    assert date(2023, 1, 2).isoformat() in build_report(_inputs(n_days=10), CONFIG).to_json()
