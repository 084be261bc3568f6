"""Data processors: Qlib's math on hand-computed frames, fit-on-train, JSON state, pipeline rules."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant_core.errors import QonlineError
from quant_core.models.processors import (
    LGB_DEFAULT_PROCESSORS,
    PROCESSORS,
    CSRankNorm,
    CSZScoreNorm,
    DropnaLabel,
    Fillna,
    Processor,
    ProcessorError,
    ProcessorPipeline,
    RobustZScoreNorm,
    build_processor,
)

FEATURES = ["f1", "f2"]
LABEL = "LABEL0"
NAN = float("nan")
INF = float("inf")


def make_frame(
    dates: list[str], features: dict[str, list[float]], label: list[float] | None = None, start: int = 0
) -> pd.DataFrame:
    """A processor frame: ``date``, ``symbol``, float32 features and an optional float32 label.

    Args:
        dates: one ISO date per row.
        features: column name -> values, one per row.
        label: label values, or ``None`` for a frame without label column.
        start: first index label (a non-default index checks that processors keep it).
    """
    data: dict[str, Any] = {
        "date": pd.to_datetime(dates),
        "symbol": [f"S{i:03d}" for i in range(len(dates))],
    }
    for name, values in features.items():
        data[name] = np.asarray(values, dtype=np.float32)
    if label is not None:
        data[LABEL] = np.asarray(label, dtype=np.float32)
    return pd.DataFrame(data, index=pd.RangeIndex(start, start + len(dates)))


def random_frame(seed: int, n_dates: int = 6, n_symbols: int = 7) -> pd.DataFrame:
    """A larger frame with NaN and inf sprinkled in features and NaN in the label."""
    rng = np.random.default_rng(seed)
    dates = [str(d.date()) for d in pd.bdate_range("2024-01-01", periods=n_dates) for _ in range(n_symbols)]
    n = len(dates)
    f1 = rng.normal(size=n) * 3
    f2 = rng.lognormal(size=n)
    f1[rng.choice(n, 4, replace=False)] = np.nan
    f2[rng.choice(n, 2, replace=False)] = np.inf
    f2[rng.choice(n, 2, replace=False)] = -np.inf
    label = rng.normal(size=n) * 0.02
    label[rng.choice(n, 5, replace=False)] = np.nan
    return make_frame(dates, {"f1": list(f1), "f2": list(f2)}, list(label))


def values(frame: pd.DataFrame, col: str) -> np.ndarray[Any, Any]:
    """A column as float64 numpy values."""
    return frame[col].to_numpy(dtype=np.float64)


# -- single processors ------------------------------------------------------------------------------
def test_dropna_label_drops_nan_labels_only_and_keeps_the_index() -> None:
    frame = make_frame(["2024-01-02"] * 4, {"f1": [1, 2, NAN, 4], "f2": [1, 2, 3, 4]}, [0.1, NAN, INF, 0.2], start=10)
    proc = DropnaLabel()
    out = proc.transform(frame, FEATURES, LABEL)
    assert list(out.index) == [10, 12, 13]  # NaN label dropped, inf label kept (Qlib), NaN feature kept
    assert np.isnan(values(out, "f1")[1])  # index 12: a NaN feature does not drop the row
    assert proc.learn_only and not proc.applies_at_inference
    assert proc.fields_group == "label"
    assert all(not cls.learn_only for name, cls in PROCESSORS.items() if name != "DropnaLabel")


def test_cs_zscore_matches_numpy_per_date_with_nan_and_single_row_date() -> None:
    frame = make_frame(
        ["2024-01-02"] * 4 + ["2024-01-03"],
        {"f1": [1, 2, 4, NAN, 5], "f2": [0.5, 0.5, 0.5, 0.5, 1]},
    )
    out = CSZScoreNorm("feature").transform(frame, FEATURES, None)
    x = np.array([1.0, 2.0, 4.0])
    expected = (x - x.mean()) / x.std(ddof=1)
    np.testing.assert_allclose(values(out, "f1")[:3], expected, rtol=1e-6)
    np.testing.assert_allclose(expected, np.array([-4, -1, 5]) / math.sqrt(21), rtol=1e-12)  # by hand
    assert math.isnan(out["f1"].iloc[3])  # NaN preserved
    assert math.isnan(out["f1"].iloc[4])  # a date with one row: std (ddof=1) is NaN
    assert np.isnan(values(out, "f2")).all()  # constant cross-section: 0/0, and a single row
    assert out["f1"].dtype == np.float32 and out["f2"].dtype == np.float32


def test_cs_zscore_on_label_leaves_features_alone_and_keeps_label_dtype() -> None:
    frame = make_frame(["2024-01-02"] * 3, {"f1": [1, 2, 3], "f2": [4, 5, 6]}, [0.01, 0.02, 0.06])
    out = CSZScoreNorm(fields_group="label").transform(frame, FEATURES, LABEL)
    y = np.array([0.01, 0.02, 0.06], dtype=np.float32).astype(np.float64)
    np.testing.assert_allclose(values(out, LABEL), (y - y.mean()) / y.std(ddof=1), rtol=1e-6)
    assert out[LABEL].dtype == np.float32
    pd.testing.assert_frame_equal(out[FEATURES], frame[FEATURES], check_exact=True)


def test_cs_zscore_robust_clips_and_maps_inf_to_three() -> None:
    frame = make_frame(
        ["2024-01-02"] * 5 + ["2024-01-03"] * 2,
        {"f1": [1, 2, 3, 4, 100, 7, 9], "f2": [1, 2, 3, 4, INF, NAN, 1]},
    )
    out = CSZScoreNorm("feature", method="robust").transform(frame, FEATURES, None)
    # date 1: median 3, |x - 3| = [2, 1, 0, 1, 97] -> MAD 1
    expected = np.clip(np.array([-2, -1, 0, 1, 97]) / 1.4826, -3, 3)
    np.testing.assert_allclose(values(out, "f1")[:5], expected, rtol=1e-6)
    assert out["f1"].iloc[4] == 3.0
    # inf: median 3 and MAD 1 as well, inf -> +3
    np.testing.assert_allclose(values(out, "f2")[:5], expected, rtol=1e-6)
    # date 2: [7, 9] -> median 8, MAD 1 -> -1/1.4826, +1/1.4826; f2: NaN stays, single value -> 0/0
    np.testing.assert_allclose(values(out, "f1")[5:], [-1 / 1.4826, 1 / 1.4826], rtol=1e-6)
    assert math.isnan(out["f2"].iloc[5]) and math.isnan(out["f2"].iloc[6])


def test_cs_rank_norm_average_ties_nan_and_single_row() -> None:
    frame = make_frame(
        ["2024-01-02"] * 5 + ["2024-01-03"],
        {"f1": [3, 1, 3, NAN, 2, 5], "f2": [-INF, 0, INF, 1, 1, NAN]},
    )
    out = CSRankNorm("feature").transform(frame, FEATURES, None)
    # f1 date 1: four values; 1 -> rank 1, 2 -> rank 2, the two 3s share (3 + 4) / 2
    pct = np.array([3.5, 1, 3.5, 2]) / 4
    np.testing.assert_allclose(values(out, "f1")[[0, 1, 2, 4]], (pct - 0.5) * 3.46, rtol=1e-6)
    assert math.isnan(out["f1"].iloc[3])
    assert out["f1"].iloc[5] == pytest.approx(0.5 * 3.46)  # one row: pct rank 1
    # infinities rank as extreme values; the two 1s tie at (3 + 4) / 2
    pct2 = np.array([1, 2, 5, 3.5, 3.5]) / 5
    np.testing.assert_allclose(values(out, "f2")[:5], (pct2 - 0.5) * 3.46, rtol=1e-6)
    assert math.isnan(out["f2"].iloc[5])
    assert out["f1"].dtype == np.float32


def test_robust_zscore_fits_on_train_and_transforms_valid_with_train_stats() -> None:
    train = make_frame(["2024-01-02"] * 3 + ["2024-01-03"] * 3, {"f1": [1, 2, 3, 4, 100, NAN], "f2": [5, 5, 5, 5, 5, 6]})
    valid = make_frame(["2024-02-01"] * 6, {"f1": [3, 4.4826, INF, -INF, NAN, 1000], "f2": [50, 60, 70, 80, 90, 5]})
    proc = RobustZScoreNorm()
    with pytest.raises(ProcessorError, match="not fitted"):
        proc.transform(valid, FEATURES, None)
    proc.fit(train, FEATURES, None)

    x = values(train, "f1")
    med = np.nanmedian(x)
    std = (np.nanmedian(np.abs(x - med)) + 1e-12) * 1.4826
    assert (med, std) == (3.0, (1.0 + 1e-12) * 1.4826)  # by hand: median 3, MAD 1
    assert proc.median == {"f1": 3.0, "f2": 5.0}
    assert proc.std["f2"] == 1e-12 * 1.4826  # MAD 0: only the epsilon

    out = proc.transform(valid, FEATURES, None)
    v = values(valid, "f1")
    expected = np.clip((v - med) / std, -3, 3)
    np.testing.assert_allclose(values(out, "f1"), expected, rtol=1e-6)
    assert list(values(out, "f1")[2:4]) == [3.0, -3.0]  # +-inf -> +-3
    assert math.isnan(out["f1"].iloc[4])  # NaN stays NaN
    assert values(out, "f1")[5] == 3.0  # clipped
    # the valid frame's own statistics would give a different result: train stats were used
    own = np.nanmedian(v[np.isfinite(v)])
    assert own != med
    assert list(values(out, "f2")) == [3.0] * 5 + [0.0]
    assert out["f1"].dtype == np.float32

    unclipped = RobustZScoreNorm(clip_outlier=False)
    unclipped.fit(train, FEATURES, None)
    raw = unclipped.transform(valid, FEATURES, None)
    assert values(raw, "f1")[5] == pytest.approx((1000 - 3) / std, rel=1e-6)
    assert values(raw, "f1")[2] == INF


def test_robust_zscore_state_encodes_nan_and_round_trips() -> None:
    train = make_frame(["2024-01-02"] * 3, {"f1": [1, 2, 7], "f2": [NAN, NAN, NAN]})
    proc = RobustZScoreNorm()
    proc.fit(train, FEATURES, None)
    state = proc.state()
    assert state == {"columns": ["f1", "f2"], "median": [2.0, None], "std": [(1.0 + 1e-12) * 1.4826, None]}  # |x - 2| = [1, 0, 5]
    json.dumps(state, allow_nan=False)  # strict JSON
    restored = RobustZScoreNorm.from_state(proc.kwargs(), state)
    a = proc.transform(train, FEATURES, None)
    b = restored.transform(train, FEATURES, None)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert np.isnan(values(b, "f2")).all()
    with pytest.raises(ProcessorError, match="one value per column"):
        RobustZScoreNorm.from_state({}, {"columns": ["f1"], "median": [1.0, 2.0], "std": [1.0]})
    with pytest.raises(ProcessorError, match="stateless"):
        Fillna.from_state({}, {"median": [1.0]})


def test_fillna_fills_nan_but_not_inf_and_leaves_label() -> None:
    frame = make_frame(["2024-01-02"] * 3, {"f1": [NAN, 1, INF], "f2": [2, NAN, NAN]}, [NAN, 0.1, 0.2])
    out = Fillna(fill_value=-1).transform(frame, FEATURES, LABEL)
    assert list(values(out, "f1")) == [-1.0, 1.0, INF]
    assert list(values(out, "f2")) == [2.0, -1.0, -1.0]
    assert math.isnan(out[LABEL].iloc[0])
    assert out["f1"].dtype == np.float32
    assert list(values(Fillna().transform(frame, FEATURES, LABEL), "f2")) == [2.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "proc",
    [
        DropnaLabel(),
        CSZScoreNorm("feature"),
        CSZScoreNorm("label", method="robust"),
        CSRankNorm("feature"),
        RobustZScoreNorm(),
        Fillna(),
    ],
    ids=repr,
)
def test_fit_and_transform_never_mutate_the_input(proc: Processor) -> None:
    frame = random_frame(1)
    before = frame.copy(deep=True)
    proc.fit(frame, FEATURES, LABEL)
    out = proc.transform(frame, FEATURES, LABEL)
    pd.testing.assert_frame_equal(frame, before, check_exact=True)
    assert out is not frame
    out.loc[out.index[0], "f1"] = 12345.0  # writing to the result does not reach the input
    out.loc[out.index[0], LABEL] = 12345.0
    pd.testing.assert_frame_equal(frame, before, check_exact=True)


# -- specs and errors -------------------------------------------------------------------------------
def test_unknown_processor_and_kwarg_errors_name_them_and_the_allowed_ones() -> None:
    with pytest.raises(ProcessorError, match=r"'ZScoreNorm'.*allowed.*CSRankNorm.*RobustZScoreNorm"):
        ProcessorPipeline([{"name": "ZScoreNorm", "kwargs": {}}])
    with pytest.raises(ProcessorError, match=r"fit_start_time.*allowed.*fields_group.*clip_outlier"):
        ProcessorPipeline([{"name": "RobustZScoreNorm", "kwargs": {"fit_start_time": "2008-01-01"}}])
    with pytest.raises(ProcessorError, match=r"\['fields_group'\].*allowed: \[\]"):
        ProcessorPipeline([{"name": "DropnaLabel", "kwargs": {"fields_group": "label"}}])
    with pytest.raises(ProcessorError, match="fields_group must be one of"):
        build_processor("CSRankNorm", {"fields_group": "features"})
    with pytest.raises(ProcessorError, match="method must be one of"):
        build_processor("CSZScoreNorm", {"method": "rank"})
    with pytest.raises(ProcessorError, match="clip_outlier"):
        build_processor("RobustZScoreNorm", {"clip_outlier": "yes"})
    with pytest.raises(ProcessorError, match="fill_value"):
        build_processor("Fillna", {"fill_value": NAN})
    with pytest.raises(ProcessorError, match=r"unknown key\(s\) \['class'\]"):
        ProcessorPipeline([{"name": "Fillna", "class": "Fillna"}])
    with pytest.raises(ProcessorError, match="list of mappings"):
        ProcessorPipeline("DropnaLabel")  # type: ignore[arg-type]
    err = pytest.raises(ProcessorError, ProcessorPipeline, [{"name": "Nope"}]).value
    assert isinstance(err, QonlineError) and isinstance(err, ValueError)


def test_specs_are_normalised_with_defaults_and_kwargs_is_optional() -> None:
    pipeline = ProcessorPipeline.from_specs([{"name": "Fillna"}, *LGB_DEFAULT_PROCESSORS])
    assert pipeline.specs == [
        {"name": "Fillna", "kwargs": {"fields_group": "feature", "fill_value": 0.0}},
        {"name": "DropnaLabel", "kwargs": {}},
        {"name": "CSZScoreNorm", "kwargs": {"fields_group": "label", "method": "zscore"}},
    ]


def test_pipeline_refuses_use_before_fit_and_other_columns() -> None:
    pipeline = ProcessorPipeline([{"name": "RobustZScoreNorm"}])
    frame = random_frame(2)
    with pytest.raises(ProcessorError, match="not fitted"):
        pipeline.transform_learn(frame)
    with pytest.raises(ProcessorError, match="not fitted"):
        pipeline.transform_infer(frame)
    with pytest.raises(ProcessorError, match=r"no column\(s\) \['f3'\]"):
        pipeline.fit_transform_learn(frame, ["f1", "f3"], LABEL)
    assert not pipeline.is_fitted  # a failed fit leaves nothing behind
    pipeline.fit_transform_learn(frame, FEATURES, LABEL)
    with pytest.raises(ProcessorError, match="fitted with feature columns"):
        pipeline.transform_infer(frame, ["f2", "f1"])
    with pytest.raises(ProcessorError, match="fitted with label column"):
        pipeline.transform_learn(frame, FEATURES, "LABEL1")
    with pytest.raises(ProcessorError, match="must be datetime64"):
        pipeline.transform_infer(frame.assign(date=frame["date"].astype(str)))
    with pytest.raises(ProcessorError, match="label_col is None"):
        ProcessorPipeline(LGB_DEFAULT_PROCESSORS).fit_transform_learn(frame, FEATURES, None)


# -- pipeline -----------------------------------------------------------------------------------------
def test_lgb_default_pipeline_drops_nan_labels_and_zscores_label_per_date() -> None:
    frame = make_frame(
        ["2024-01-02"] * 4 + ["2024-01-03"] * 3,
        {"f1": [1, NAN, 3, 4, 5, 6, INF], "f2": [7, 8, 9, 10, 11, 12, 13]},
        [0.01, NAN, 0.03, 0.08, -0.02, 0.02, NAN],
        start=100,
    )
    pipeline = ProcessorPipeline(LGB_DEFAULT_PROCESSORS)
    out = pipeline.fit_transform_learn(frame, FEATURES, LABEL)
    assert list(out.index) == [100, 102, 103, 104, 105]
    for day in ("2024-01-02", "2024-01-03"):
        rows = out.index[out["date"] == pd.Timestamp(day)]
        y = values(frame.loc[rows], LABEL)
        np.testing.assert_allclose(values(out.loc[rows], LABEL), (y - y.mean()) / y.std(ddof=1), rtol=1e-6)
    pd.testing.assert_frame_equal(out[FEATURES], frame.loc[out.index, FEATURES], check_exact=True)  # raw features
    assert all(out[c].dtype == np.float32 for c in [*FEATURES, LABEL])

    infer = pipeline.transform_infer(frame.drop(columns=[LABEL]))  # no label column at inference
    pd.testing.assert_frame_equal(infer, frame.drop(columns=[LABEL]), check_exact=True)
    with_label = pipeline.transform_infer(frame)  # a label present at inference stays raw, no row dropped
    pd.testing.assert_frame_equal(with_label, frame, check_exact=True)
    assert with_label is not frame


def test_pipeline_fits_each_processor_on_the_previous_output() -> None:
    train = make_frame(["2024-01-02"] * 5, {"f1": [NAN, NAN, NAN, 1, 2], "f2": [1, 2, 3, 4, 5]}, [0.1] * 5)
    specs: list[dict[str, Any]] = [{"name": "Fillna", "kwargs": {"fill_value": 100}}, {"name": "RobustZScoreNorm"}]
    pipeline = ProcessorPipeline(specs)
    out = pipeline.fit_transform_learn(train, FEATURES, LABEL)
    robust = pipeline.processors[1]
    assert isinstance(robust, RobustZScoreNorm)
    assert robust.median == {"f1": 100.0, "f2": 3.0}  # fitted on the filled values
    assert list(values(out, "f1")) == [0.0, 0.0, 0.0, -3.0, -3.0]


def test_pipeline_valid_uses_train_state_and_infer_skips_label_processors() -> None:
    train = random_frame(3)
    valid = random_frame(4)
    valid[["f1", "f2"]] = valid[["f1", "f2"]] * 10 + 50  # very different statistics
    specs: list[dict[str, Any]] = [
        {"name": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
        {"name": "Fillna", "kwargs": {"fields_group": "feature"}},
        {"name": "DropnaLabel"},
        {"name": "CSRankNorm", "kwargs": {"fields_group": "label"}},
    ]
    pipeline = ProcessorPipeline(specs)
    pipeline.fit_transform_learn(train, FEATURES, LABEL)
    proc = RobustZScoreNorm()
    proc.fit(train, FEATURES, LABEL)
    expected = Fillna().transform(proc.transform(valid, FEATURES, LABEL), FEATURES, LABEL)

    learn = pipeline.transform_learn(valid)
    assert learn[LABEL].notna().all() and len(learn) == valid[LABEL].notna().sum()
    pd.testing.assert_frame_equal(learn[FEATURES], expected.loc[learn.index, FEATURES], check_exact=True)

    infer = pipeline.transform_infer(valid.drop(columns=[LABEL]), FEATURES)
    assert len(infer) == len(valid) and LABEL not in infer.columns
    pd.testing.assert_frame_equal(infer[FEATURES], expected[FEATURES], check_exact=True)
    assert (values(infer, "f1") > 2.9).mean() > 0.5  # valid is far off train's median: mostly clipped at 3


def _plain(value: Any) -> bool:
    """Whether a decoded JSON value holds only plain types and no encoded blob."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, str):
        return len(value) < 64 and not re.fullmatch(r"[A-Za-z0-9+/=]{24,}", value)
    return value is None or isinstance(value, bool | int | float)


def test_json_round_trip_is_plain_deterministic_and_bit_identical() -> None:
    train = random_frame(5)
    train["f2"] = np.float32(np.nan)  # an all-NaN column: NaN state must survive JSON
    valid = random_frame(6)
    specs: list[dict[str, Any]] = [
        {"name": "RobustZScoreNorm"},
        {"name": "Fillna", "kwargs": {"fill_value": 0}},
        {"name": "DropnaLabel", "kwargs": {}},
        {"name": "CSZScoreNorm", "kwargs": {"fields_group": "label", "method": "robust"}},
    ]
    pipeline = ProcessorPipeline(specs)
    pipeline.fit_transform_learn(train, FEATURES, LABEL)
    text = pipeline.to_json()

    data = json.loads(text)
    assert _plain(data)
    assert "pickle" not in text.lower() and "NaN" not in text and "Infinity" not in text
    state = data["processors"][0]["state"]
    assert state["columns"] == FEATURES and state["median"][1] is None and isinstance(state["median"][0], float)
    assert text == json.dumps(data, sort_keys=True, allow_nan=False, separators=(",", ":"))  # sorted, canonical

    restored = ProcessorPipeline.from_json(text)
    assert restored.to_json() == text
    assert restored.feature_cols == FEATURES and restored.label_col == LABEL and restored.is_fitted
    for method in ("transform_learn", "transform_infer"):
        a = getattr(pipeline, method)(valid)
        b = getattr(restored, method)(valid)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        for col in [*FEATURES, LABEL]:
            assert np.array_equal(a[col].to_numpy().view(np.uint32), b[col].to_numpy().view(np.uint32))

    unfitted = ProcessorPipeline(specs)
    assert ProcessorPipeline.from_json(unfitted.to_json()).to_json() == unfitted.to_json()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "cannot be parsed"),
        ("[]", "must be an object"),
        ('{"format": "x"}', "expected keys"),
    ],
)
def test_from_json_rejects_malformed_text(text: str, match: str) -> None:
    with pytest.raises(ProcessorError, match=match):
        ProcessorPipeline.from_json(text)


def test_from_json_rejects_unknown_version_and_missing_state() -> None:
    pipeline = ProcessorPipeline([{"name": "RobustZScoreNorm"}])
    pipeline.fit_transform_learn(random_frame(7), FEATURES, LABEL)
    data = json.loads(pipeline.to_json())
    with pytest.raises(ProcessorError, match="version"):
        ProcessorPipeline.from_json(json.dumps({**data, "version": 99}))
    data["processors"][0]["state"] = {}
    with pytest.raises(ProcessorError, match="no fitted state"):
        ProcessorPipeline.from_json(json.dumps(data))


def test_inference_processor_after_learn_only_one_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="quant_core.models.processors"):
        ProcessorPipeline([{"name": "DropnaLabel"}, {"name": "CSZScoreNorm"}])
    assert "after the learn-only" in caplog.text
