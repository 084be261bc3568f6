"""Training one rolling task: assemble its data point-in-time, fit LightGBM, measure it.

Pure domain code: the MLflow side is :mod:`quant_core.models.registry`; Prefect fans tasks out in
:mod:`tasks.training`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from quant_core.calendar import TradingCalendar
from quant_core.data.lake import Lake
from quant_core.errors import QonlineError
from quant_core.features import get_feature_set
from quant_core.features.labels import get_label
from quant_core.features.store import feature_dataset, label_dataset
from quant_core.models.processors import ProcessorPipeline
from quant_core.models.rolling import RollingTask, check_point_in_time, train_cutoff
from quant_core.models.strategy import TRAINING_KEYS

logger = logging.getLogger(__name__)
SEED = 20240601


class TrainingError(QonlineError, ValueError):
    """A task cannot be trained: names the task, the segment or parameter, and the rule."""


def lightgbm_parameter_names() -> frozenset[str]:
    """Every parameter name and alias LightGBM knows."""
    import lightgbm as lgb

    aliases: dict[str, list[str]] = lgb.basic._ConfigAliases._get_all_param_aliases()
    return frozenset(k for k in aliases) | frozenset(a for v in aliases.values() for a in v)


def check_model_params(task: RollingTask) -> None:
    """Refuse unknown model parameters (LightGBM itself only warns)."""
    unknown = sorted(set(task.model_params) - lightgbm_parameter_names() - TRAINING_KEYS)
    if unknown:
        raise TrainingError(
            f"task {task.task_id} ({task.strategy}): unknown LightGBM parameter(s) {unknown}; see LightGBM's "
            f"parameter list (training keys allowed besides: {sorted(TRAINING_KEYS)})"
        )


@dataclass(frozen=True)
class TaskData:
    """A task's frames, each ``[date, symbol, *features, label]``, and their fingerprint."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    feature_names: tuple[str, ...]
    label: str
    cutoff: date
    fingerprint: str


def _segment_frame(lake: Lake, task: RollingTask, start: date, end: date, *, labels_until: date | None) -> pd.DataFrame:
    fs = get_feature_set(task.feature_set)
    label = get_label(task.label)
    fds, lds = feature_dataset(lake, fs), label_dataset(lake, label)
    if not fds.exists():
        raise TrainingError(f"lake {lake.uri} has no features/{fs.name}: run `qonline features` first")
    feats = fds.read(start, end).to_pandas()
    if feats.empty:
        raise TrainingError(
            f"task {task.task_id}: features/{fs.name} has no rows in {start}..{end}; compute them first"
        )
    if lds.exists() and labels_until is not None and labels_until >= start:
        labs = lds.read(start, min(end, labels_until)).to_pandas()
    else:
        labs = pd.DataFrame({"date": pd.Series(dtype="object"), "symbol": pd.Series(dtype="object"),
                             label.name: pd.Series(dtype="float32")})
    out = feats.merge(labs, on=["date", "symbol"], how="left")
    out[label.name] = out[label.name].astype("float32")
    out["date"] = pd.to_datetime(out["date"])
    frame: pd.DataFrame = out
    return frame


def _fingerprint(task: RollingTask, *frames: pd.DataFrame) -> str:
    h = hashlib.sha256(task.task_id.encode())
    for frame in frames:
        h.update(np.int64(len(frame)).tobytes())
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:24]


def assemble(lake: Lake, task: RollingTask, calendar: TradingCalendar, as_of: date) -> TaskData:
    """Read a task's segments from the feature and label stores (column projection, float32).

    Point in time: train and valid rows are limited to dates whose label was observable at the
    task's test start (``train_cutoff``); test rows carry labels only where observable at ``as_of``.

    Raises:
        TrainingError / RollingError: a segment is empty, features are missing, or a segment ends
            after the cutoff (a label leak).
    """
    label = get_label(task.label)
    check_point_in_time(task, calendar, label.lookahead)
    cutoff = train_cutoff(task, calendar, label.lookahead)
    seg = task.segments
    assert seg.train.end is not None and seg.valid.end is not None
    train = _segment_frame(lake, task, seg.train.start, min(seg.train.end, cutoff), labels_until=cutoff)
    valid = _segment_frame(lake, task, seg.valid.start, min(seg.valid.end, cutoff), labels_until=cutoff)
    test_end = min(seg.test.end or as_of, as_of)
    labels_known = calendar.shift(calendar.align_end(as_of), -label.lookahead, clip=True)
    test = (
        _segment_frame(lake, task, seg.test.start, test_end, labels_until=labels_known)
        if seg.test.start <= test_end
        else train.iloc[0:0]
    )
    names = tuple(get_feature_set(task.feature_set).names)
    return TaskData(train, valid, test, names, label.name, cutoff, _fingerprint(task, train, valid))


@dataclass(frozen=True)
class TrainedModel:
    """What training produced: the model as LightGBM text, processor state, metrics."""

    task: RollingTask
    model_text: str
    processors_json: str
    feature_names: tuple[str, ...]
    fingerprint: str
    metrics: dict[str, float]
    fit_seconds: float
    total_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _mean_daily_corr(dates: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean over dates of the Pearson correlation of x and y within each date."""
    order = np.argsort(dates, kind="stable")
    d, x, y = dates[order], x[order].astype(np.float64), y[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    n = np.diff(np.r_[starts, len(d)]).astype(np.float64)
    sx, sy = np.add.reduceat(x, starts), np.add.reduceat(y, starts)
    cov = np.add.reduceat(x * y, starts) - sx * sy / n
    vx = np.add.reduceat(x * x, starts) - sx * sx / n
    vy = np.add.reduceat(y * y, starts) - sy * sy / n
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(vx * vy)
    r[(n < 2) | (vx <= 1e-12) | (vy <= 1e-12)] = np.nan
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def daily_ic(pred: np.ndarray, label: np.ndarray, dates: np.ndarray) -> tuple[float, float]:
    """Mean daily Pearson IC and Spearman rank IC (Qlib's calc_ic); NaN pairs dropped."""
    df = pd.DataFrame({"d": dates, "p": pred, "y": label}).dropna()
    if df.empty:
        return float("nan"), float("nan")
    d = df["d"].to_numpy()
    ic = _mean_daily_corr(d, df["p"].to_numpy(), df["y"].to_numpy())
    pr = df.groupby("d")["p"].rank().to_numpy()
    yr = df.groupby("d")["y"].rank().to_numpy()
    return ic, _mean_daily_corr(d, pr, yr)


def train_task(data: TaskData, task: RollingTask, *, num_threads: int = 1) -> TrainedModel:
    """Fit LightGBM with early stopping on the valid segment; deterministic for fixed inputs."""
    import lightgbm as lgb

    t0 = time.perf_counter()
    check_model_params(task)
    feature_cols = list(data.feature_names)
    pipeline = ProcessorPipeline.from_specs([p.model_dump() for p in task.processors])
    train = pipeline.fit_transform_learn(data.train, feature_cols, data.label)
    valid = pipeline.transform_learn(data.valid, feature_cols, data.label)
    # a NaN label is never learnable: drop it even when a strategy lists no DropnaLabel
    train, valid = train[train[data.label].notna()], valid[valid[data.label].notna()]
    if train.empty or valid.empty:
        which = "train" if train.empty else "valid"
        raise TrainingError(f"task {task.task_id}: the {which} segment has no labelled rows after processing")
    params = {k: v for k, v in task.model_params.items() if k not in TRAINING_KEYS}
    params.update(num_threads=num_threads, seed=SEED, deterministic=True, force_row_wise=True, verbosity=-1)
    rounds = int(task.model_params.get("num_boost_round", 1000))
    patience = int(task.model_params.get("early_stopping_rounds", 50))
    dtrain = lgb.Dataset(train[feature_cols].to_numpy(np.float32), label=train[data.label].to_numpy(np.float32),
                         feature_name=feature_cols, free_raw_data=True)
    dvalid = lgb.Dataset(valid[feature_cols].to_numpy(np.float32), label=valid[data.label].to_numpy(np.float32),
                         reference=dtrain)
    evals: dict[str, dict[str, list[float]]] = {}
    t_fit = time.perf_counter()
    booster = lgb.train(
        params, dtrain, num_boost_round=rounds, valid_sets=[dtrain, dvalid], valid_names=["train", "valid"],
        callbacks=[lgb.early_stopping(patience, verbose=False), lgb.record_evaluation(evals)],
    )
    best = booster.best_iteration or rounds
    metric = next(iter(evals["valid"]))
    metrics: dict[str, float] = {
        "train_l2": float(evals["train"][metric][best - 1]),
        "valid_l2": float(evals["valid"][metric][best - 1]),
        "best_iteration": float(best),
        "train_rows": float(len(train)),
        "valid_rows": float(len(valid)),
    }
    infer_valid = pipeline.transform_infer(data.valid, feature_cols)
    pv = np.asarray(booster.predict(infer_valid[feature_cols].to_numpy(np.float32), num_iteration=best))
    metrics["valid_ic"], metrics["valid_rank_ic"] = daily_ic(
        pv, infer_valid[data.label].to_numpy(), infer_valid["date"].to_numpy()
    )
    if not data.test.empty and data.test[data.label].notna().any():
        infer_test = pipeline.transform_infer(data.test, feature_cols)
        pt = np.asarray(booster.predict(infer_test[feature_cols].to_numpy(np.float32), num_iteration=best))
        metrics["test_ic"], metrics["test_rank_ic"] = daily_ic(
            pt, infer_test[data.label].to_numpy(), infer_test["date"].to_numpy()
        )
        metrics["test_rows"] = float(data.test[data.label].notna().sum())
    fit_seconds = time.perf_counter() - t_fit
    model_text = booster.model_to_string(num_iteration=best)
    logger.info("task %s: best iteration %d, valid rank IC %.4f, fit %.1fs", task.task_id, best,
                metrics["valid_rank_ic"], fit_seconds)
    return TrainedModel(task, model_text, pipeline.to_json(), tuple(feature_cols), data.fingerprint, metrics,
                        fit_seconds, time.perf_counter() - t0)


@dataclass(frozen=True)
class TrainOutcome:
    """One task's result in a training fan-out: trained now, or reused from the registry."""

    task_id: str
    test_start: date
    version: int
    reused: bool
    metrics: dict[str, float]
    fit_seconds: float
    total_seconds: float


def task_json(task: RollingTask) -> str:
    return json.dumps(task.model_dump(mode="json"), sort_keys=True, indent=1)
