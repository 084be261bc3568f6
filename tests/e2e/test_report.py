"""``qonline report`` end to end: a real lake folder, MLflow on sqlite, the Prefect flow through the CLI.

No shared session state of tests/e2e has served signals (the routine and backfill tests keep
theirs in module fixtures), so the smallest lake with signals and observable labels is built here:
bars of a synthetic market (30 symbols, suspensions and adjustment factors included) and LABEL0
through the lake's own stores, and a served signal of three model versions written through the
prediction and signal datasets (score = label + noise, so the numbers are not trivial). The report's
JSON is then checked against a direct recomputation from the lake with pandas and scipy.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from flows.cli import app
from quant_core.data.ingest import extract
from quant_core.data.lake import Lake
from quant_core.features.labels import LABEL0
from quant_core.features.store import label_dataset, update_labels
from quant_core.models.registry import ModelRegistry
from quant_core.online.predictions import prediction_dataset
from quant_core.online.signals import write_signals
from quant_core.settings import load_settings

pytestmark = pytest.mark.integration
runner = CliRunner()

SPEC = "synthetic:symbols=30,start=2022-01-03,end=2022-09-30,seed=5"
STRATEGY = "rep"
VERSIONS = (3, 4, 5)
N_SIGNAL_DAYS = 120
TOPK, N_DROP = 10, 2


def _config(root: Path, **extra: Any) -> Path:
    cfg = root / f"q{len(list(root.glob('q*.yaml')))}.yaml"
    doc = {"lake_uri": str(root / "lake"), "source": SPEC, "strategies": {STRATEGY: {"label": "LABEL0"}},
           "backtest_topk": TOPK, "backtest_n_drop": N_DROP, **extra}
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def _cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A lake with bars, LABEL0 and three versions' served signal; the last two signal dates unlabelled."""
    root = tmp_path_factory.mktemp("report")
    cfg = _config(root)
    settings = load_settings(cfg)
    lake = Lake.from_settings(settings)
    start, end = date(2022, 1, 3), date(2022, 9, 30)
    bars = extract(SPEC, start, end, settings)
    lake.write_bars(bars, start, end)
    update_labels(lake, LABEL0, start, end)
    cal = lake.calendar()
    days = list(cal)[-N_SIGNAL_DAYS:]  # ends on the last bar: its last two dates have no label yet
    labels = label_dataset(lake, LABEL0).read(days[0], days[-1]).to_pandas()
    frame = bars[["date", "symbol"]].assign(date=pd.to_datetime(bars["date"]).dt.date)
    frame = frame[frame["date"].isin(set(days))].merge(labels, on=["date", "symbol"], how="left")
    rng = np.random.default_rng(11)
    frame["score"] = frame["LABEL0"].fillna(0.0).to_numpy() + rng.normal(0.0, 0.03, len(frame))
    frame.loc[frame.sample(frac=0.01, random_state=3).index, "score"] = np.nan  # a few symbols unscored
    third = N_SIGNAL_DAYS // 3
    serving = {d: VERSIONS[min(i // third, len(VERSIONS) - 1)] for i, d in enumerate(days)}
    frame["version"] = frame["date"].map(serving)
    for v in VERSIONS:
        part = frame[frame["version"] == v]
        table = pa.table({"date": pa.array(part["date"], pa.date32()),
                          "symbol": pa.array(part["symbol"].astype(str), pa.large_string()),
                          "score": pa.array(part["score"].to_numpy(np.float64), pa.float64())})
        prediction_dataset(lake, STRATEGY, v).write(table, part["date"].min(), part["date"].max())
    write_signals(lake, STRATEGY, frame.assign(version=frame["version"].astype(str)), days[0], days[-1])
    return {"root": root, "cfg": cfg, "lake": lake, "days": days, "bars": bars, "frame": frame}


def _report(served: dict[str, Any], out: Path, *more: str, cfg: Path | None = None) -> tuple[int, str]:
    days = served["days"]
    return _cli("report", "--start", days[0].isoformat(), "--end", days[-1].isoformat(), "--strategy", STRATEGY,
                "--out", str(out), "--config", str(cfg or served["cfg"]), *more)


def _registry(served: dict[str, Any]) -> ModelRegistry:
    return ModelRegistry(f"sqlite:///{served['root'] / 'lake'}-mlflow.db")


def _report_runs(served: dict[str, Any]) -> list[Any]:
    reg = _registry(served)
    exp = reg.client.get_experiment_by_name(STRATEGY)
    if exp is None:
        return []
    return list(reg.client.search_runs([exp.experiment_id], filter_string="tags.`qonline.kind` = 'report'"))


# -- direct recomputation -----------------------------------------------------------------------------
def _daily_ic(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for d, g in frame.groupby("date", sort=True):
        g = g.dropna(subset=["score", "label"])
        if len(g) < 2:
            rows.append((d, math.nan, math.nan))
            continue
        rows.append((d, stats.pearsonr(g["score"], g["label"])[0], stats.spearmanr(g["score"], g["label"])[0]))
    return pd.DataFrame(rows, columns=["date", "ic", "rank_ic"])


def _summary(values: pd.Series) -> tuple[float, float]:
    v = values.dropna()
    return float(v.mean()), float(v.mean() / v.std(ddof=1))


def _adj(bars: pd.DataFrame) -> pd.DataFrame:
    """Adjusted close, dates x symbols (NaN: no bar)."""
    b = bars.assign(date=pd.to_datetime(bars["date"]).dt.date, adj=bars["close"] * bars["factor"])
    return b.pivot(index="date", columns="symbol", values="adj").sort_index()


def _close(a: Any, b: Any, tol: float = 1e-10) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def test_report_numbers_equal_a_recomputation_from_the_lake(served: dict[str, Any], tmp_path: Path,
                                                           prefect_server: None) -> None:
    out = tmp_path / "out"
    code, text = _report(served, out)
    assert code == 0, text
    assert "served signal" in text and "TopK-dropout (net)" in text and "report.html" in text
    doc = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count('src="data:image/png;base64,') == 6
    assert "http://" not in html and "https://" not in html  # self-contained

    frame = served["frame"].rename(columns={"LABEL0": "label"})
    days = served["days"]
    # the served signal's IC, day by day and summarised (Qlib: mean, mean/std ddof=1)
    mine = _daily_ic(frame)
    got = pd.DataFrame(doc["daily_ic"])
    assert got["date"].tolist() == [d.isoformat() for d in days]
    np.testing.assert_allclose(got["ic"].astype(float), mine["ic"], rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got["rank_ic"].astype(float), mine["rank_ic"], rtol=0, atol=1e-12, equal_nan=True)
    ic, icir = _summary(mine["ic"])
    ric, ricir = _summary(mine["rank_ic"])
    assert _close(doc["ic"]["ic"], ic) and _close(doc["ic"]["icir"], icir)
    assert _close(doc["ic"]["rank_ic"], ric) and _close(doc["ic"]["rank_icir"], ricir)
    assert doc["ic"]["days"] == N_SIGNAL_DAYS - 2  # the last two dates' LABEL0 is not observable yet
    assert doc["coverage"]["labelled_dates"] == N_SIGNAL_DAYS - 2
    assert any("no observable LABEL0" in w for w in doc["warnings"])
    rolling = mine["ic"].rolling(20, min_periods=20).mean()
    np.testing.assert_allclose(got["ic_rolling"].astype(float), rolling, rtol=0, atol=1e-12, equal_nan=True)

    # IC per model version, from predictions/<strategy>/v<N>/
    assert doc["coverage"]["versions"] == list(VERSIONS)
    by_version = {r["version"]: r for r in doc["versions"]}
    for v in VERSIONS:
        ric_v, ricir_v = _summary(_daily_ic(frame[frame["version"] == v])["rank_ic"])
        assert _close(by_version[v]["rank_ic"], ric_v) and _close(by_version[v]["rank_icir"], ricir_v)

    # IC decay: the score of t against adj(t+1+h) / adj(t+1) - 1 on the trading calendar
    adj = _adj(served["bars"])
    for row in doc["ic_decay"]:
        h = row["horizon"]
        fwd = (adj.shift(-(1 + h)) / adj.shift(-1) - 1).stack().rename("label").reset_index()
        merged = frame[["date", "symbol", "score"]].merge(fwd, on=["date", "symbol"], how="left")
        ric_h, _ = _summary(_daily_ic(merged)["rank_ic"])
        assert _close(row["rank_ic"], ric_h), h

    # the equal-weight benchmark and the long-short legs, each a book rebalanced to equal weights over
    # its targets at the close of t+1 (a held symbol without a bar on t+1 keeps its drifted weight),
    # earning each symbol's return since its previous bar on t+2 (0 without a bar on t+2)
    ret = (adj.shift(-2) / adj.ffill().shift(-1) - 1).where(adj.shift(-2).notna(), 0.0).fillna(0.0)
    has_next = adj.shift(-1).notna()
    ls = pd.DataFrame(doc["backtest"]["long_short"]).set_index("date")
    assert list(ls.index) == [d.isoformat() for d in days[:-2]]
    books: dict[str, pd.Series] = {k: pd.Series(0.0, index=adj.columns) for k in ("bench", "long", "short")}
    for d in days[:-2]:
        scored = frame[(frame["date"] == d) & frame["score"].notna()]
        universe = scored[has_next.loc[d, scored["symbol"]].to_numpy()].sort_values(["score", "symbol"],
                                                                                     ascending=[False, True])
        q = math.floor(0.2 * len(universe))
        targets = {"bench": list(universe["symbol"]), "long": list(universe["symbol"][:q]),
                   "short": list(universe["symbol"][-q:])}
        earned = {}
        for name, w in books.items():
            new = w.where(~has_next.loc[d] & (w > 0), 0.0)
            new[targets[name]] = (1.0 - new.sum()) / len(targets[name])
            gross = float((new * ret.loc[d]).sum())
            books[name] = new * (1 + ret.loc[d]) / (1 + gross)
            earned[name] = gross
        assert _close(ls.loc[d.isoformat(), "benchmark"], earned["bench"], 1e-9), d
        assert _close(ls.loc[d.isoformat(), "gross_return"], earned["long"] - earned["short"], 1e-9), d

    # the performance table follows from the daily series (Qlib's "sum" mode, N = 238)
    for name in ("topk_dropout", "long_short"):
        net = pd.Series(doc["backtest"][name]["net_return"], dtype=float)
        perf = doc["performance"][name]["returns"]
        assert _close(perf["annualized_return"], net.mean() * 238)
        assert _close(perf["information_ratio"], net.mean() / net.std(ddof=1) * math.sqrt(238))
        assert _close(perf["max_drawdown"], float((net.cumsum() - net.cumsum().cummax()).min()))
    assert max(doc["backtest"]["topk_dropout"]["holdings"]) == TOPK
    assert doc["config"]["topk"] == TOPK and doc["config"]["n_drop"] == N_DROP

    # MLflow: a finished report run with both files, its params and the headline numbers
    runs = _report_runs(served)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["start"] == days[0].isoformat() and run.data.params["end"] == days[-1].isoformat()
    assert run.data.params["strategy"] == STRATEGY
    assert _close(run.data.metrics["rank_ic"], ric) and _close(run.data.metrics["ic"], ic)
    assert run.data.metrics.keys() == doc["headline"].keys()
    client = _registry(served).client
    names = sorted(a.path for a in client.list_artifacts(run.info.run_id, "report"))
    assert names == ["report/report.html", "report/report.json"]
    local = Path(client.download_artifacts(run.info.run_id, "report/report.json", str(tmp_path / "dl")))
    assert json.loads(local.read_text()) == doc


def _refused(served: dict[str, Any], tmp_path: Path, *args: str, cfg: Path | None = None) -> str:
    """Run a report that must fail: non-zero exit, no report folder, no new MLflow report run."""
    out = tmp_path / "refused"
    before = len(_report_runs(served))
    cfg = cfg or served["cfg"]
    code, text = _cli("report", *args, "--out", str(out), "--config", str(cfg))
    assert code != 0, text
    assert text.startswith("error: ") or "\nerror: " in text, text
    assert not out.exists()
    assert len(_report_runs(served)) == before
    return text


def test_bad_inputs_are_refused_clearly_and_write_nothing(served: dict[str, Any], tmp_path: Path,
                                                          prefect_server: None) -> None:
    days = served["days"]
    # a range without signals
    text = _refused(served, tmp_path, "--start", "2022-01-03", "--end", "2022-02-28", "--strategy", STRATEGY)
    assert f"strategy '{STRATEGY}' has no signals dated in 2022-01-03..2022-02-28" in text
    assert f"its signals cover {days[0]}..{days[-1]}" in text
    # signals whose labels are not observable yet (the last two sessions)
    text = _refused(served, tmp_path, "--start", days[-2].isoformat(), "--end", days[-1].isoformat(),
                    "--strategy", STRATEGY)
    assert "no observable LABEL0 label" in text and "2 trading days after t" in text
    # an unknown strategy
    text = _refused(served, tmp_path, "--start", days[0].isoformat(), "--end", days[-1].isoformat(),
                    "--strategy", "nope")
    assert "unknown strategy 'nope'" in text and STRATEGY in text
    # start after end
    text = _refused(served, tmp_path, "--start", days[-1].isoformat(), "--end", days[0].isoformat(),
                    "--strategy", STRATEGY)
    assert f"start {days[-1]} is after end {days[0]}" in text
    # a negative cost in bps (the settings refuse it, named)
    bad_cost = _config(served["root"], open_cost_bps=-5)
    text = _refused(served, tmp_path, "--start", days[0].isoformat(), "--end", days[-1].isoformat(),
                    "--strategy", STRATEGY, cfg=bad_cost)
    assert "open_cost_bps" in text and "greater than or equal to 0" in text
    # n_drop larger than topk
    bad_drop = _config(served["root"], backtest_topk=3, backtest_n_drop=5)
    text = _refused(served, tmp_path, "--start", days[0].isoformat(), "--end", days[-1].isoformat(),
                    "--strategy", STRATEGY, cfg=bad_drop)
    assert "n_drop=5 exceeds topk=3" in text
    # the same from the command line's options, which win over the settings
    text = _refused(served, tmp_path, "--start", days[0].isoformat(), "--end", days[-1].isoformat(),
                    "--strategy", STRATEGY, "--topk", "3", "--n-drop", "5")
    assert "n_drop=5 exceeds topk=3" in text and "topk=3 given" in text


def test_an_output_folder_that_cannot_be_written_is_refused_before_computing(served: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    days = served["days"]
    for out in (blocker, blocker / "report"):
        code, text = _cli("report", "--start", days[0].isoformat(), "--end", days[-1].isoformat(), "--strategy",
                          STRATEGY, "--out", str(out), "--config", str(served["cfg"]))
        assert code != 0 and f"output folder {out}" in text, text
        assert "must be a folder" in text
    assert blocker.read_text() == "not a folder"


def test_topk_larger_than_the_universe_is_clipped_and_said(served: dict[str, Any], tmp_path: Path,
                                                           prefect_server: None) -> None:
    topk = 28  # the market has 24..30 symbols a date
    cfg = _config(served["root"], backtest_topk=topk, backtest_n_drop=3)
    out = tmp_path / "clip"
    code, text = _report(served, out, cfg=cfg)
    assert code == 0, text
    doc = json.loads((out / "report.json").read_text())
    frame = served["frame"]
    adj = _adj(served["bars"])
    calendar = list(adj.index)
    small = []
    for d in served["days"][:-2]:  # a backtested date has two trading dates after it
        nxt = calendar[calendar.index(d) + 1]
        scored = frame[(frame["date"] == d) & frame["score"].notna()]["symbol"]
        if adj.loc[nxt, scored].notna().sum() < topk:
            small.append(d)
    assert small, "the fixture should have dates with fewer symbols than topk"
    warning = next(w for w in doc["warnings"] if "backtest_topk=28" in w)
    assert f"on {len(small)} of {N_SIGNAL_DAYS - 2} backtested date(s): {small[0]} (" in warning
    assert "on_small_universe=clip" in warning
    assert "warning:" in text and "backtest_topk=28" in text
    assert "backtest_topk=28" in (out / "report.html").read_text()
