"""The decay alert on tiny hand-made monitoring frames, the monitoring IC, and the alert's docs."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from quant_core.errors import ConfigError
from quant_core.online.monitoring import DecayStatus, daily_ic, decay_history, decay_status

D0 = date(2024, 1, 2)


def _rows(rank_ics: list[float], versions: list[str] | None = None) -> pd.DataFrame:
    n = len(rank_ics)
    return pd.DataFrame({"date": [D0 + timedelta(days=i) for i in range(n)],
                         "version": versions or ["3"] * n, "ic": rank_ics, "rank_ic": rank_ics, "n": [30] * n})


def _status(values: list[float], window: int = 2, threshold: float = 0.0, decay_days: int = 2,
            versions: list[str] | None = None) -> DecayStatus:
    return decay_status("s", _rows(values, versions), window=window, threshold=threshold, decay_days=decay_days)


def test_fewer_dates_than_the_window_give_no_value_and_no_alert() -> None:
    st = _status([-0.5, -0.5], window=3, decay_days=1)
    assert (st.rolling_rank_ic, st.alert, st.days_below, st.since, st.dates) == (None, False, 0, None, 2)
    assert "no rolling 3-date rank IC yet" in st.message and "no decay alert" in st.message
    empty = decay_status("s", _rows([]), window=2, threshold=0.0, decay_days=1)
    assert (empty.alert, empty.rolling_rank_ic, empty.version, empty.dates, empty.last_date) == (False, None, None, 0,
                                                                                                   None)


def test_the_rolling_value_is_the_mean_of_the_last_window_dates() -> None:
    st = _status([0.5, 0.25, -0.25, 0.75], window=3)
    assert st.rolling_rank_ic == pytest.approx((0.25 - 0.25 + 0.75) / 3, abs=1e-15)
    hist = decay_history("s", _rows([0.5, 0.25, -0.25, 0.75]), window=3, threshold=0.0, decay_days=2)
    assert [h.rolling_rank_ic for h in hist][:2] == [None, None] and len(hist) == 4


def test_equal_to_the_threshold_is_not_below() -> None:
    st = _status([0.5, 0.5, 0.5], threshold=0.5, decay_days=1)
    assert st.rolling_rank_ic == 0.5 and not st.alert and st.days_below == 0 and st.since is None
    assert _status([0.5, 0.5, 0.25], threshold=0.5, decay_days=1).alert  # (0.5 + 0.25) / 2 < 0.5


def test_the_alert_needs_decay_days_consecutive_dates_below() -> None:
    values = [0.5, 0.5, -0.5, -0.5, -0.5, -0.5]  # rolling (w=2): -, 0.5, 0, -0.5, -0.5, -0.5
    hist = decay_history("s", _rows(values), window=2, threshold=0.0, decay_days=3)
    assert [h.days_below for h in hist] == [0, 0, 0, 1, 2, 3]
    assert [h.alert for h in hist] == [False] * 5 + [True]
    st = hist[-1]
    assert st.since == D0 + timedelta(days=3) and st.last_date == D0 + timedelta(days=5) and st.version == "3"
    assert st.message.startswith("s: signal decay: the rolling 2-date rank IC has been below 0 on 3 consecutive")
    assert f"since {D0 + timedelta(days=3)}" in st.message and "serving version 3" in st.message
    assert st.to_dict()["since"] == (D0 + timedelta(days=3)).isoformat() and st.to_dict()["alert"] is True


def test_one_date_above_resets_the_count() -> None:
    values = [-0.5, -0.5, -0.5, 1.0, -1.5, -0.5]  # rolling (w=2): -, -0.5, -0.5, 0.25, -0.25, -1.0
    hist = decay_history("s", _rows(values), window=2, threshold=0.0, decay_days=2)
    assert [h.days_below for h in hist] == [0, 1, 2, 0, 1, 2]
    assert [h.alert for h in hist] == [False, False, True, False, False, True]  # one date above: counted anew
    assert hist[2].since == D0 + timedelta(days=1) and hist[5].since == D0 + timedelta(days=4)


def test_a_date_without_rank_ic_gives_no_value_and_resets() -> None:
    values = [-0.5, -0.5, float("nan"), -0.5, -0.5]
    hist = decay_history("s", _rows(values), window=2, threshold=0.0, decay_days=2)
    assert [h.rolling_rank_ic for h in hist] == [None, -0.5, None, None, -0.5]
    assert [h.days_below for h in hist] == [0, 1, 0, 0, 1] and not any(h.alert for h in hist)


def test_the_version_is_the_one_serving_the_last_monitored_date_and_order_does_not_matter() -> None:
    rows = _rows([-0.5, -0.5, -0.5], versions=["3", "3", "4"])
    st = decay_status("s", rows.iloc[::-1], window=2, threshold=0.0, decay_days=2)
    assert (st.version, st.alert, st.days_below, st.since) == ("4", True, 2, D0 + timedelta(days=1))


def test_bad_rules_are_refused() -> None:
    for kw in ({"window": 0}, {"decay_days": 0}, {"threshold": float("nan")}):
        args = {"window": 2, "threshold": 0.0, "decay_days": 1, **kw}
        with pytest.raises(ConfigError):
            decay_status("s", _rows([0.1, 0.2]), **args)  # type: ignore[arg-type]


def _old_daily_ic(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """monitoring.daily_ic as it was before it used quant_core.evaluation.metrics (the reference)."""
    rows = []
    for day, g in frame.dropna(subset=["score", label]).groupby("date", sort=True):
        n = len(g)
        ic = rank = float("nan")
        if n >= 2 and g["score"].std() > 0 and g[label].std() > 0:
            ic = float(np.corrcoef(g["score"], g[label])[0, 1])
            rank = float(np.corrcoef(g["score"].rank(), g[label].rank())[0, 1])
        rows.append({"date": day, "ic": ic, "rank_ic": rank, "n": n})
    return pd.DataFrame(rows, columns=["date", "ic", "rank_ic", "n"])


def test_monitoring_ic_is_the_evaluation_ic_with_the_rows_it_always_had() -> None:
    rng = np.random.default_rng(3)
    days = [D0 + timedelta(days=i) for i in range(6)]
    frame = pd.DataFrame({"date": [d for d in days for _ in range(25)], "symbol": [f"S{i}" for i in range(25)] * 6,
                          "score": rng.normal(size=150), "LABEL0": rng.normal(size=150)})
    frame.loc[frame.index[:3], "LABEL0"] = np.nan  # dropped pairs
    frame.loc[frame["date"] == days[4], "LABEL0"] = np.nan  # no pair at all: no row
    frame.loc[frame["date"] == days[1], "score"] = 1.0  # a constant side: NaN
    frame.loc[frame.index[50:60], "score"] = np.round(frame.loc[frame.index[50:60], "score"], 0)  # ties
    got, ref = daily_ic(frame, "LABEL0"), _old_daily_ic(frame, "LABEL0")
    assert got["date"].tolist() == ref["date"].tolist() and got["n"].tolist() == ref["n"].tolist()
    assert days[4] not in got["date"].tolist() and len(got) == 5
    for col in ("ic", "rank_ic"):
        assert np.allclose(got[col], ref[col], rtol=0, atol=1e-12, equal_nan=True), col


# -- the routine's decay check: tags on versions, the serving run's link ------------------------------
class _Registry:
    """The registry calls check_decay makes, in memory."""

    tracking_uri = "sqlite:////srv/mlflow.db"

    def __init__(self) -> None:
        self.tags: dict[int, dict[str, str]] = {}

    def tag_version(self, strategy: str, version: int, key: str, value: str) -> None:
        self.tags.setdefault(version, {})[key] = value

    def version_info(self, strategy: str, version: int) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(version=version, run_id=f"run{version}")

    def experiment_id(self, strategy: str) -> str:
        return "7"


def _lake_with(tmp_path: object, rows: pd.DataFrame) -> object:
    import pyarrow as pa

    from quant_core.data.lake import Lake
    from quant_core.online.monitoring import monitoring_dataset

    lake = Lake(str(tmp_path))
    table = pa.table({"date": pa.array(rows["date"], pa.date32()), "symbol": pa.array(rows["version"], pa.large_string()),
                      "version": pa.array(rows["version"], pa.large_string()), "ic": rows["ic"].to_numpy(float),
                      "rank_ic": rows["rank_ic"].to_numpy(float), "n": rows["n"].to_numpy("int64")})
    monitoring_dataset(lake, "s").write(table, rows["date"].min(), rows["date"].max())
    return lake


def test_check_decay_tags_each_version_scored_since_start_with_its_last_state(tmp_path: object) -> None:
    from quant_core.online.routine import check_decay

    rows = _rows([-0.5, -0.5, -0.5, 0.5, 0.5], versions=["3", "3", "3", "4", "4"])  # rolling: -, -.5, -.5, 0, .5
    lake = _lake_with(tmp_path, rows)
    reg = _Registry()
    check = check_decay(lake, reg, "s", window=2, threshold=0.0, decay_days=2,  # type: ignore[arg-type]
                        start=D0 + timedelta(days=2))
    assert check.tagged == [3, 4] and not check.status.alert and check.status.version == "4"
    assert reg.tags[3] == {"qonline.decay_alert": "true", "qonline.decay_alert_since": str(D0 + timedelta(days=1)),
                           "qonline.rolling_rank_ic": "-0.500000"}  # version 3 stopped serving while alerting
    assert reg.tags[4] == {"qonline.decay_alert": "false", "qonline.decay_alert_since": "",
                           "qonline.rolling_rank_ic": "0.500000"}
    assert check.history["rolling_rank_ic"].tolist()[1:] == [-0.5, -0.5, 0.0, 0.5]
    # nothing scored in the run: only the version serving the last monitored date; no registry: no tags
    assert check_decay(lake, _Registry(), "s", window=2, threshold=0.0, decay_days=2).tagged == [4]  # type: ignore[arg-type]
    assert check_decay(lake, None, "s", window=2, threshold=0.0, decay_days=2).serving is None  # type: ignore[arg-type]
    assert check.serving is not None and check.serving.run_id == "run4"


def test_the_serving_run_link() -> None:
    from quant_core.online.routine import ServingRun

    local = ServingRun("s", 4, "abc", "7", "sqlite:////srv/mlflow.db")
    assert local.url() is None and local.url("http://ui:5000/") == "http://ui:5000/#/experiments/7/runs/abc"
    assert local.markdown() == "`runs:/abc` (s v4, tracking `sqlite:////srv/mlflow.db`)"
    served = ServingRun("s", 4, "abc", "7", "https://bob:secret@mlflow.example")
    assert served.url() == "https://mlflow.example/#/experiments/7/runs/abc"  # never the credentials
    assert served.markdown() == "[s v4](https://mlflow.example/#/experiments/7/runs/abc)"
    assert ServingRun("s", 4, "abc", "7", "http://h:1/mlflow/").url() == "http://h:1/mlflow/#/experiments/7/runs/abc"


# -- the automation example of docs/operations.md ----------------------------------------------------
def _doc_automation() -> str:
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    start = text.index("```yaml\n# decay-automation.yaml") + len("```yaml\n")
    return text[start:text.index("```", start)]


def test_the_automation_example_of_the_operations_guide_is_valid() -> None:
    """The YAML of section 8.5, as `prefect automation create` and the server read it, rendered on a real event."""
    import yaml
    from prefect.events import Event
    from prefect.events.schemas.automations import AutomationCore, EventTrigger
    from prefect.events.schemas.events import Resource, ResourceSpecification
    from prefect.server.events.schemas.automations import AutomationCreate
    from prefect.server.utilities.user_templates import render_user_template_sync

    from quant_core.online.monitoring import DECAY_EVENT
    from quant_core.online.routine import DecayCheck, ServingRun

    doc = yaml.safe_load(_doc_automation())
    automation = AutomationCore.model_validate(doc)  # what `prefect automation create --from-file` does
    AutomationCreate.model_validate(automation.model_dump(mode="json"))  # what the API does (templates checked)
    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger) and trigger.expect == {DECAY_EVENT}
    assert [a.type for a in automation.actions] == ["send-notification", "run-deployment"]
    # the templates, on the event a decay check of strategy "s" emits
    rows = _rows([-0.5, -0.5, -0.5])
    status = decay_status("s", rows, window=2, threshold=0.0, decay_days=2)
    check = DecayCheck(status, rows, ServingRun("s", 3, "abc", "7", "sqlite:///m.db"), [3])
    resource, payload = check.event("http://ui:5000")
    event = Event(event=DECAY_EVENT, resource=Resource(resource), payload=payload)
    assert isinstance(trigger.match, ResourceSpecification)
    assert trigger.match.matches(event.resource)  # "qonline.signal.*" matches "qonline.signal.s"
    assert not trigger.match.matches(Resource({"prefect.resource.id": "other.s"}))
    notify, run = automation.actions
    subject = render_user_template_sync(notify.subject, {"event": event})  # type: ignore[union-attr]
    body = render_user_template_sync(notify.body, {"event": event})  # type: ignore[union-attr]
    assert subject == "qonline: s signal decay"
    assert body == f"{status.message} MLflow run: http://ui:5000/#/experiments/7/runs/abc"
    params = {k: render_user_template_sync(v, {"event": event}) for k, v in run.parameters.items()}  # type: ignore[union-attr]
    assert params == {"as_of": str(D0 + timedelta(days=2)), "strategy": "lgb_light"}
