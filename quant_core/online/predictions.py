"""Incremental predictions per model version (Qlib's PredUpdater, rebuilt over the lake).

``predictions/<strategy>/v<version>/`` holds one row per (date, symbol) with the model's raw
score. A routine asks for the dates a version serves (the promotion log says which); only the
dates not stored yet are predicted, reading the features of just those dates, and their range is
replaced. When everything is there the update does nothing and says so. Cost grows with the new
days, not with the history.

Models load once per run from MLflow: the LightGBM text model and the processor state as JSON —
never a pickle. Inference is training's infer path exactly: ``transform_infer`` with the stored
processor state, then ``Booster.predict`` on float32 features in the model's feature order.
Cross-sectional processors work date by date, so a date's prediction does not depend on which
other dates were predicted with it: incremental equals full.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from quant_core.data.lake import COMMIT_RETRIES, Dataset, Lake
from quant_core.errors import QonlineError
from quant_core.features import get_feature_set
from quant_core.features.store import feature_dataset
from quant_core.models.processors import ProcessorPipeline

logger = logging.getLogger(__name__)
SCHEMA = pa.schema([pa.field("date", pa.date32(), nullable=False), pa.field("symbol", pa.large_string()),
                    pa.field("score", pa.float64())])


class PredictionError(QonlineError, ValueError):
    """A model cannot be loaded or its inputs are missing (names the model, date and rule)."""


@dataclass(frozen=True)
class ModelArtifacts:
    """A registered model's files, as text (what the registry downloads)."""

    model_text: str
    processors_json: str
    features_json: str


@dataclass
class LoadedModel:
    """A model ready to predict: booster, fitted processors, feature order."""

    strategy: str
    version: int
    feature_set: str
    features: list[str]
    booster: Any
    pipeline: ProcessorPipeline

    @classmethod
    def from_artifacts(cls, strategy: str, version: int, feature_set: str, art: ModelArtifacts) -> LoadedModel:
        """Build from the text artifacts; refuses anything that is not a LightGBM text model.

        Raises:
            PredictionError: the model text, processor JSON or feature list is not what training wrote.
        """
        import lightgbm as lgb

        where = f"{strategy} version {version}"
        head = art.model_text.lstrip()[:64]
        if not head.startswith("tree"):
            raise PredictionError(
                f"{where}: model/model.txt is not a LightGBM text model (it starts with {head[:16]!r}); "
                f"qonline loads models only from LightGBM's text format and never unpickles"
            )
        try:
            booster = lgb.Booster(model_str=art.model_text)
        except lgb.basic.LightGBMError as exc:
            raise PredictionError(f"{where}: model/model.txt cannot be parsed by LightGBM ({exc})") from exc
        try:
            features = json.loads(art.features_json)
            pipeline = ProcessorPipeline.from_json(art.processors_json)
        except (ValueError, QonlineError) as exc:
            raise PredictionError(f"{where}: its features.json or processors.json is unreadable ({exc})") from exc
        if not isinstance(features, list) or features != list(booster.feature_name()):
            raise PredictionError(f"{where}: features.json does not match the model's own feature names")
        return cls(strategy, version, feature_set, features, booster, pipeline)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Scores for a ``[date, symbol, *features]`` frame: ``[date, symbol, score]`` (float64)."""
        infer = self.pipeline.transform_infer(features, self.features)
        x = infer[self.features].to_numpy(np.float32)
        score = np.asarray(self.booster.predict(x), dtype=np.float64) if len(x) else np.zeros(0)
        return pd.DataFrame({"date": infer["date"].to_numpy(), "symbol": infer["symbol"].to_numpy(), "score": score})


def prediction_dataset(lake: Lake, strategy: str, version: int) -> Dataset:
    return lake.dataset(f"predictions/{strategy}/v{version}")


@dataclass(frozen=True)
class PredictionUpdate:
    """What one model's prediction update did."""

    strategy: str
    version: int
    start: date | None
    end: date | None
    dates: int
    rows: int
    seconds: float
    note: str = ""


def stored_dates(lake: Lake, strategy: str, version: int) -> set[date]:
    ds = prediction_dataset(lake, strategy, version)
    return set(ds.dates()) if ds.exists() else set()


def update_predictions(
    lake: Lake, model: LoadedModel, dates: list[date], *, writer: str | None = None
) -> PredictionUpdate:
    """Make ``predictions/<strategy>/v<version>`` hold the model's scores for every date in ``dates``.

    Only dates not stored yet are computed: the range from the first to the last of them is
    predicted (dates of that range the model serves) and replaces that range. Features are read
    for just that range.

    Raises:
        PredictionError: a needed date has no features in the lake.
    """
    t0 = time.perf_counter()
    have = stored_dates(lake, model.strategy, model.version)
    missing = sorted(set(dates) - have)
    if not missing:
        note = f"already up to date ({len(dates)} served date(s) stored)"
        logger.info("predictions %s v%d: %s", model.strategy, model.version, note)
        return PredictionUpdate(model.strategy, model.version, None, None, 0, 0, time.perf_counter() - t0, note)
    lo, hi = missing[0], missing[-1]
    wanted = sorted(d for d in set(dates) | have if lo <= d <= hi)
    fds = feature_dataset(lake, get_feature_set(model.feature_set))
    if not fds.exists():
        raise PredictionError(f"lake {lake.uri} has no features/{model.feature_set}: run ingest or features first")
    table = fds.read(lo, hi, columns=["date", "symbol", *model.features])
    frame = table.to_pandas()
    frame = frame[frame["date"].isin(set(wanted))]
    present = set(frame["date"].unique())
    absent = [d for d in wanted if d not in present]
    if absent:
        raise PredictionError(
            f"{model.strategy} version {model.version}: features/{model.feature_set} has no rows for "
            f"{', '.join(map(str, absent[:5]))}{' ...' if len(absent) > 5 else ''}, which it serves; "
            f"ingest the bars of those dates (their features follow) and run again"
        )
    frame["date"] = pd.to_datetime(frame["date"])
    scores = model.predict(frame)
    out = pa.table({
        "date": pa.array(scores["date"].to_numpy().astype("datetime64[D]"), pa.date32()),
        "symbol": pa.array(scores["symbol"].astype(str), pa.large_string()),
        "score": pa.array(scores["score"].to_numpy(), pa.float64()),
    })
    res = prediction_dataset(lake, model.strategy, model.version).write(out, lo, hi, writer=writer,
                                                                         retries=COMMIT_RETRIES)
    took = time.perf_counter() - t0
    logger.info("predictions %s v%d: %s..%s, %d dates, %d rows in %.2fs", model.strategy, model.version, lo, hi,
                len(wanted), res.rows, took)
    return PredictionUpdate(model.strategy, model.version, lo, hi, len(wanted), res.rows, took)


def read_predictions(lake: Lake, strategy: str, version: int, start: date, end: date) -> pd.DataFrame:
    """Stored scores of one version for ``[start, end]`` (inclusive): ``[date, symbol, score]``."""
    ds = prediction_dataset(lake, strategy, version)
    if not ds.exists():
        return pd.DataFrame({"date": pd.Series(dtype="object"), "symbol": pd.Series(dtype="str"),
                             "score": pd.Series(dtype="float64")})
    out: pd.DataFrame = ds.read(start, end).to_pandas()
    return out
