"""Data processors: Qlib's learn/infer normalisation steps, with plain-JSON fitted state.

A frame here is a pandas DataFrame with the columns ``date`` (datetime64), ``symbol``, the feature
columns (float32) and optionally one label column. A processor acts on a *fields group*:
``"feature"`` (every feature column) or ``"label"`` (the label column). The semantics follow Qlib's
``qlib/data/dataset/processor.py`` (QLIB_SEMANTICS §8):

* :class:`DropnaLabel` drops the rows whose label is NaN. It is *learn only*: it runs on training
  and validation data, never at inference.
* :class:`CSZScoreNorm` normalises each date's cross-section: ``(x - mean) / std`` (``ddof=1``), or
  with ``method="robust"`` ``(x - median) / (MAD * 1.4826)`` clipped to ``[-3, 3]``.
* :class:`CSRankNorm`: per date ``(pct_rank - 0.5) * 3.46`` with average ranks for ties.
* :class:`RobustZScoreNorm` is fitted on the train segment, pooled over symbols and dates: per
  column ``median`` and ``std = (MAD + 1e-12) * 1.4826``; the transform is ``(x - median) / std``
  clipped to ``[-3, 3]`` (NaN stays NaN, ``±inf`` becomes ``±3``).
* :class:`Fillna` replaces NaN (not ``±inf``) with a constant.

Arithmetic runs in float64; each result is cast back to the column's floating dtype, so float32
features stay float32 (a non-floating column becomes float64). Values can therefore differ from
Qlib's pure-float32 arithmetic in the last float32 bit.

:class:`ProcessorPipeline` chains processors built from specs (``{"name": ..., "kwargs": {...}}``),
fits them in Qlib's ``IT_FIT_SEQ`` order (each on the previous one's output, train segment only),
and serialises specs and fitted state as deterministic plain JSON (no pickle): a pipeline restored
with :meth:`ProcessorPipeline.from_json` transforms bit-identically.

The pipeline is one ordered list. Qlib's handler keeps two lists and runs the infer processors
before the learn processors (``PTYPE_A``); to reproduce that, put the processors that also run at
inference (feature group, not learn-only) first. At inference the pipeline skips the learn-only
processors and every label-group processor, so a label column present at inference stays raw.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, Self

import numpy as np
import pandas as pd

from quant_core.errors import QonlineError

logger = logging.getLogger(__name__)

FieldsGroup = Literal["feature", "label"]
FIELDS_GROUPS: Final[tuple[str, ...]] = ("feature", "label")
DATE_COLUMN: Final = "date"
SYMBOL_COLUMN: Final = "symbol"

#: Scale from the median absolute deviation to a normal distribution's standard deviation.
MAD_TO_STD: Final = 1.4826
#: Added to the pooled MAD by RobustZScoreNorm, so a constant column divides by a tiny number.
ROBUST_EPS: Final = 1e-12
#: Clip bound of the robust normalisations.
CLIP_BOUND: Final = 3.0
#: Scale of CSRankNorm: ``(pct_rank - 0.5) * 3.46`` has roughly unit standard deviation.
RANK_SCALE: Final = 3.46

JSON_FORMAT: Final = "qonline.processor_pipeline"
JSON_VERSION: Final = 1


class ProcessorError(QonlineError, ValueError):
    """An invalid processor spec, state or input frame; names the processor, field and rule."""


# -- helpers ----------------------------------------------------------------------------------------
def _encode_float(value: float) -> float | str | None:
    """A float as plain JSON: NaN as ``None``, ``±inf`` as ``"inf"``/``"-inf"``."""
    x = float(value)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _decode_float(value: Any, where: str) -> float:
    """The inverse of :func:`_encode_float`."""
    if value is None:
        return math.nan
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProcessorError(f"{where}: expected a number, null (NaN), 'inf' or '-inf', got {value!r}")
    return float(value)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    """Raise when a column the processor needs is missing."""
    if not isinstance(frame, pd.DataFrame):
        raise ProcessorError(f"{who}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ProcessorError(f"{who}: the frame has no column(s) {missing} (columns: {list(frame.columns)})")


def _date_key(frame: pd.DataFrame, who: str) -> np.ndarray[Any, Any]:
    """The ``date`` column as an array to group by (an array: no index alignment)."""
    _require_columns(frame, [DATE_COLUMN], who)
    dates = frame[DATE_COLUMN]
    if not pd.api.types.is_datetime64_any_dtype(dates.dtype):
        raise ProcessorError(f"{who}: column 'date' must be datetime64, got {dates.dtype}")
    if dates.isna().any():
        raise ProcessorError(f"{who}: column 'date' has {int(dates.isna().sum())} missing value(s)")
    return dates.to_numpy()


def _out_dtype(dtype: Any) -> np.dtype[Any]:
    """The dtype a processed column keeps: its own floating dtype, else float64."""
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return dtype
    return np.dtype("float64")


def _as_float64(frame: pd.DataFrame, columns: Sequence[str], who: str) -> pd.DataFrame:
    """The columns as a float64 copy; non-numeric columns are an error."""
    for c in columns:
        dtype = frame[c].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            raise ProcessorError(f"{who}: column {c!r} must be numeric, got {dtype}")
    return frame[list(columns)].astype("float64")


def _replace_columns(frame: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """A new frame: ``frame`` with the columns of ``values`` replaced, each cast to its kept dtype.

    ``values`` has ``frame``'s index. The input frame is not modified (pandas copy-on-write: the
    shallow copy shares the untouched columns only until someone writes to them).
    """
    out = frame.copy(deep=False)
    with np.errstate(over="ignore", invalid="ignore"):
        for c in values.columns:
            out[c] = values[c].to_numpy().astype(_out_dtype(frame[c].dtype))
    return out


# -- processors -------------------------------------------------------------------------------------
class Processor(ABC):
    """A data processor: fitted (or not) on the train frame, then applied to any frame.

    Attributes:
        name: the registered name used in specs.
        learn_only: ``True`` when the processor only runs on learn data (train, valid), never at
            inference (Qlib's ``is_for_infer() == False``).
        fields_group: ``"feature"`` or ``"label"``, the columns the processor acts on.
    """

    name: ClassVar[str]
    learn_only: ClassVar[bool] = False
    fields_group: str

    @classmethod
    def allowed_kwargs(cls) -> tuple[str, ...]:
        """The keyword arguments the processor accepts (from its constructor)."""
        params = inspect.signature(cls.__init__).parameters
        return tuple(p for p in params if p != "self")

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Self:
        """Build the processor from a spec's keyword arguments.

        Raises:
            ProcessorError: an unknown keyword argument (the message lists the allowed ones) or an
                invalid value.
        """
        if not isinstance(kwargs, Mapping):
            raise ProcessorError(f"{cls.name}: kwargs must be a mapping, got {type(kwargs).__name__}")
        allowed = cls.allowed_kwargs()
        unknown = sorted(str(k) for k in kwargs if k not in allowed)
        if unknown:
            hint = ""
            if {"fit_start_time", "fit_end_time"} & set(unknown):
                hint = "; the pipeline fits on the train segment it is given, so no fit window is needed"
            raise ProcessorError(
                f"processor {cls.name}: unknown keyword argument(s) {unknown}; allowed: {list(allowed)}{hint}"
            )
        return cls(**dict(kwargs))

    @classmethod
    def from_state(cls, kwargs: Mapping[str, Any], state: Mapping[str, Any]) -> Self:
        """Rebuild a processor from its keyword arguments and :meth:`state`.

        Raises:
            ProcessorError: invalid kwargs or state.
        """
        if not isinstance(state, Mapping):
            raise ProcessorError(f"{cls.name}: state must be a mapping, got {type(state).__name__}")
        proc = cls.from_kwargs(kwargs)
        proc._load_state(state)
        return proc

    @abstractmethod
    def kwargs(self) -> dict[str, Any]:
        """The full keyword arguments (defaults included) as plain JSON values."""

    @property
    def applies_at_inference(self) -> bool:
        """Whether :meth:`ProcessorPipeline.transform_infer` runs it (not learn-only, not label)."""
        return not self.learn_only and self.fields_group != "label"

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`transform` can run (stateless processors always can)."""
        return True

    def columns(self, feature_cols: Sequence[str], label_col: str | None) -> list[str]:
        """The columns of the processor's fields group.

        Raises:
            ProcessorError: a label-group processor without a label column.
        """
        if self.fields_group == "feature":
            return list(feature_cols)
        if label_col is None:
            raise ProcessorError(f"processor {self.name} acts on the label, but no label column was given")
        return [label_col]

    def fit(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> None:
        """Learn the processor's state from a train frame; a no-op for stateless processors."""
        return None

    @abstractmethod
    def transform(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> pd.DataFrame:
        """A new, processed frame; ``frame`` itself is never modified."""

    def state(self) -> dict[str, Any]:
        """The fitted state as plain JSON (NaN as ``None``); empty for stateless processors."""
        return {}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state`; stateless processors accept only an empty state."""
        if state:
            raise ProcessorError(f"processor {self.name} is stateless but got state keys {sorted(state)}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items())
        return f"{self.name}({args})"


def _check_fields_group(name: str, fields_group: Any) -> str:
    if fields_group not in FIELDS_GROUPS:
        raise ProcessorError(f"processor {name}: fields_group must be one of {list(FIELDS_GROUPS)}, got {fields_group!r}")
    return str(fields_group)


class DropnaLabel(Processor):
    """Drop the rows whose label is NaN (``±inf`` labels are kept, as in Qlib). Learn only.

    The index of the kept rows is preserved.
    """

    name: ClassVar[str] = "DropnaLabel"
    learn_only: ClassVar[bool] = True

    def __init__(self) -> None:
        self.fields_group = "label"

    def kwargs(self) -> dict[str, Any]:
        """No keyword arguments."""
        return {}

    def transform(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> pd.DataFrame:
        """The rows of ``frame`` with a non-NaN label."""
        cols = self.columns(feature_cols, label_col)
        _require_columns(frame, cols, self.name)
        keep = frame[cols[0]].notna().to_numpy()
        return frame.loc[keep].copy(deep=False)


class _CrossSectional(Processor):
    """A processor that works on each date's cross-section of its columns."""

    def _cross_section(
        self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None
    ) -> tuple[pd.DataFrame, np.ndarray[Any, Any]] | None:
        """The group's columns as float64 and each row's date key; ``None`` if the group has no
        columns (the frame's columns and date key are checked either way)."""
        cols = self.columns(feature_cols, label_col)
        _require_columns(frame, cols, self.name)
        key = _date_key(frame, self.name)
        if not cols:
            return None
        return _as_float64(frame, cols, self.name), key


class CSZScoreNorm(_CrossSectional):
    """Cross-sectional z-score per date.

    ``method="zscore"``: ``(x - mean) / std`` with ``ddof=1`` over the date's non-NaN values, so a
    date with one value gives NaN. ``method="robust"``: ``(x - median) / (MAD * 1.4826)`` clipped to
    ``[-3, 3]``. NaN stays NaN.

    Args:
        fields_group: ``"feature"`` or ``"label"``.
        method: ``"zscore"`` or ``"robust"``.
    """

    name: ClassVar[str] = "CSZScoreNorm"
    METHODS: ClassVar[tuple[str, ...]] = ("zscore", "robust")

    def __init__(self, fields_group: FieldsGroup = "feature", method: str = "zscore") -> None:
        self.fields_group = _check_fields_group(self.name, fields_group)
        if method not in self.METHODS:
            raise ProcessorError(f"processor {self.name}: method must be one of {list(self.METHODS)}, got {method!r}")
        self.method = method

    def kwargs(self) -> dict[str, Any]:
        """``fields_group`` and ``method``."""
        return {"fields_group": self.fields_group, "method": self.method}

    def transform(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> pd.DataFrame:
        """Normalise each date's cross-section of the group's columns."""
        section = self._cross_section(frame, feature_cols, label_col)
        if section is None:
            return frame.copy(deep=False)
        values, key = section
        if self.method == "zscore":
            grouped = values.groupby(key, sort=False)
            result = (values - grouped.transform("mean")) / grouped.transform("std")
        else:
            dev = values - values.groupby(key, sort=False).transform("median")
            mad = dev.abs().groupby(key, sort=False).transform("median")
            result = (dev / mad / MAD_TO_STD).clip(-CLIP_BOUND, CLIP_BOUND)
        return _replace_columns(frame, result)


class CSRankNorm(_CrossSectional):
    """Cross-sectional rank per date: ``(pct_rank - 0.5) * 3.46``.

    ``pct_rank`` is the average rank of ties divided by the date's count of non-NaN values; NaN
    stays NaN, ``±inf`` ranks as the largest/smallest value.

    Args:
        fields_group: ``"feature"`` or ``"label"``.
    """

    name: ClassVar[str] = "CSRankNorm"

    def __init__(self, fields_group: FieldsGroup = "feature") -> None:
        self.fields_group = _check_fields_group(self.name, fields_group)

    def kwargs(self) -> dict[str, Any]:
        """``fields_group``."""
        return {"fields_group": self.fields_group}

    def transform(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> pd.DataFrame:
        """Rank-normalise each date's cross-section of the group's columns."""
        section = self._cross_section(frame, feature_cols, label_col)
        if section is None:
            return frame.copy(deep=False)
        values, key = section
        ranks = values.groupby(key, sort=False).rank(method="average", pct=True, na_option="keep")
        return _replace_columns(frame, (ranks - 0.5) * RANK_SCALE)


class RobustZScoreNorm(Processor):
    """Robust z-score with statistics fitted on the train frame, pooled over symbols and dates.

    Fit, per column: ``median = nanmedian(x)``, ``MAD = nanmedian(|x - median|)``,
    ``std = (MAD + 1e-12) * 1.4826`` (``±inf`` values take part as values). Transform:
    ``(x - median) / std``, clipped to ``[-3, 3]`` when ``clip_outlier`` (then ``±inf`` becomes
    ``±3``); NaN stays NaN. A column without any non-NaN train value has NaN statistics and
    transforms to NaN.

    Args:
        fields_group: ``"feature"`` or ``"label"``.
        clip_outlier: clip the result to ``[-3, 3]``.
    """

    name: ClassVar[str] = "RobustZScoreNorm"

    def __init__(self, fields_group: FieldsGroup = "feature", clip_outlier: bool = True) -> None:
        self.fields_group = _check_fields_group(self.name, fields_group)
        if not isinstance(clip_outlier, bool):
            raise ProcessorError(f"processor {self.name}: clip_outlier must be true or false, got {clip_outlier!r}")
        self.clip_outlier = clip_outlier
        self._columns: list[str] | None = None
        self._median: np.ndarray[Any, np.dtype[np.float64]] | None = None
        self._std: np.ndarray[Any, np.dtype[np.float64]] | None = None

    def kwargs(self) -> dict[str, Any]:
        """``fields_group`` and ``clip_outlier``."""
        return {"fields_group": self.fields_group, "clip_outlier": self.clip_outlier}

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` ran (or a fitted state was loaded)."""
        return self._columns is not None

    @property
    def median(self) -> dict[str, float]:
        """The fitted median per column (empty before fitting)."""
        if self._columns is None or self._median is None:
            return {}
        return {c: float(v) for c, v in zip(self._columns, self._median, strict=True)}

    @property
    def std(self) -> dict[str, float]:
        """The fitted robust std per column (empty before fitting)."""
        if self._columns is None or self._std is None:
            return {}
        return {c: float(v) for c, v in zip(self._columns, self._std, strict=True)}

    def fit(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> None:
        """Learn the pooled median and robust std of each column of the group.

        Raises:
            ProcessorError: an empty frame or a missing/non-numeric column.
        """
        cols = self.columns(feature_cols, label_col)
        _require_columns(frame, cols, self.name)
        if len(frame) == 0:
            raise ProcessorError(f"processor {self.name}: cannot fit on an empty frame")
        x = _as_float64(frame, cols, self.name).to_numpy()
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN stats, logged below
            median = np.nanmedian(x, axis=0)
            mad = np.nanmedian(np.abs(x - median), axis=0)
        std = (mad + ROBUST_EPS) * MAD_TO_STD
        empty = [c for c, m in zip(cols, median, strict=True) if math.isnan(m)]
        if empty:
            logger.warning("%s: column(s) %s have no value in the train frame; they will transform to NaN",
                           self.name, empty)
        self._columns = list(cols)
        self._median = median.astype(np.float64)
        self._std = std.astype(np.float64)
        logger.debug("%s fitted on %d rows x %d columns", self.name, len(frame), len(cols))

    def transform(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> pd.DataFrame:
        """Normalise with the fitted statistics.

        Raises:
            ProcessorError: not fitted, or the group's columns differ from the fitted ones.
        """
        if self._columns is None or self._median is None or self._std is None:
            raise ProcessorError(f"processor {self.name} is not fitted: fit it on the train frame first")
        cols = self.columns(feature_cols, label_col)
        if sorted(cols) != sorted(self._columns):
            raise ProcessorError(
                f"processor {self.name} was fitted on columns {self._columns}, but is asked to transform {cols}"
            )
        _require_columns(frame, self._columns, self.name)
        if not self._columns:
            return frame.copy(deep=False)
        x = _as_float64(frame, self._columns, self.name).to_numpy()
        with np.errstate(invalid="ignore", over="ignore"):
            z = (x - self._median) / self._std
            if self.clip_outlier:
                z = np.clip(z, -CLIP_BOUND, CLIP_BOUND)
        return _replace_columns(frame, pd.DataFrame(z, index=frame.index, columns=self._columns))

    def state(self) -> dict[str, Any]:
        """``{"columns", "median", "std"}`` once fitted (NaN as ``None``), else ``{}``."""
        if self._columns is None or self._median is None or self._std is None:
            return {}
        return {
            "columns": list(self._columns),
            "median": [_encode_float(v) for v in self._median],
            "std": [_encode_float(v) for v in self._std],
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        where = f"processor {self.name} state"
        if set(state) != {"columns", "median", "std"}:
            raise ProcessorError(f"{where}: expected keys ['columns', 'median', 'std'], got {sorted(state)}")
        columns, median, std = state["columns"], state["median"], state["std"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ProcessorError(f"{where}: 'columns' must be a list of strings")
        if len(set(columns)) != len(columns):
            raise ProcessorError(f"{where}: 'columns' has duplicates")
        for key, values in (("median", median), ("std", std)):
            if not isinstance(values, list) or len(values) != len(columns):
                raise ProcessorError(f"{where}: {key!r} must be a list with one value per column ({len(columns)})")
        self._columns = list(columns)
        self._median = np.array([_decode_float(v, f"{where} median") for v in median], dtype=np.float64)
        self._std = np.array([_decode_float(v, f"{where} std") for v in std], dtype=np.float64)


class Fillna(Processor):
    """Replace NaN in the group's columns with ``fill_value`` (``±inf`` is left alone).

    Args:
        fields_group: ``"feature"`` or ``"label"``.
        fill_value: a finite number.
    """

    name: ClassVar[str] = "Fillna"

    def __init__(self, fields_group: FieldsGroup = "feature", fill_value: float = 0) -> None:
        self.fields_group = _check_fields_group(self.name, fields_group)
        if isinstance(fill_value, bool) or not isinstance(fill_value, int | float) or not math.isfinite(fill_value):
            raise ProcessorError(f"processor {self.name}: fill_value must be a finite number, got {fill_value!r}")
        self.fill_value = float(fill_value)

    def kwargs(self) -> dict[str, Any]:
        """``fields_group`` and ``fill_value``."""
        return {"fields_group": self.fields_group, "fill_value": self.fill_value}

    def transform(self, frame: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None) -> pd.DataFrame:
        """Fill the NaN values of the group's columns."""
        cols = self.columns(feature_cols, label_col)
        _require_columns(frame, cols, self.name)
        if not cols:
            return frame.copy(deep=False)
        values = _as_float64(frame, cols, self.name)
        return _replace_columns(frame, values.fillna(self.fill_value))


#: The processors a spec can name.
PROCESSORS: Final[Mapping[str, type[Processor]]] = MappingProxyType(
    {cls.name: cls for cls in (DropnaLabel, CSZScoreNorm, CSRankNorm, RobustZScoreNorm, Fillna)}
)

#: Qlib's Alpha158 defaults for LightGBM (QLIB_SEMANTICS §8): learn processors DropnaLabel and
#: CSZScoreNorm on the label; no infer processors, so features reach the model raw.
LGB_DEFAULT_PROCESSORS: Final[tuple[Mapping[str, Any], ...]] = (
    MappingProxyType({"name": "DropnaLabel", "kwargs": MappingProxyType({})}),
    MappingProxyType({"name": "CSZScoreNorm", "kwargs": MappingProxyType({"fields_group": "label"})}),
)


def processor_class(name: str) -> type[Processor]:
    """The processor class registered under ``name``.

    Raises:
        ProcessorError: an unknown name (the message lists the known ones).
    """
    cls = PROCESSORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ProcessorError(f"unknown processor {name!r}; allowed: {sorted(PROCESSORS)}")
    return cls


def build_processor(name: str, kwargs: Mapping[str, Any] | None = None,
                    state: Mapping[str, Any] | None = None) -> Processor:
    """A processor from its name, keyword arguments and (optionally) fitted state.

    Raises:
        ProcessorError: unknown name or keyword argument, invalid value or state.
    """
    return processor_class(name).from_state(kwargs or {}, state or {})


def _parse_spec(spec: Any, position: int) -> tuple[str, Mapping[str, Any]]:
    """``(name, kwargs)`` of a spec ``{"name": ..., "kwargs": {...}}`` (kwargs optional)."""
    if not isinstance(spec, Mapping):
        raise ProcessorError(f"processor spec #{position}: expected a mapping with 'name' and 'kwargs', got {spec!r}")
    extra = sorted(str(k) for k in spec if k not in ("name", "kwargs"))
    if extra:
        raise ProcessorError(f"processor spec #{position}: unknown key(s) {extra}; allowed: ['name', 'kwargs']")
    if "name" not in spec:
        raise ProcessorError(f"processor spec #{position}: missing 'name'; allowed: {sorted(PROCESSORS)}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ProcessorError(f"processor spec #{position} ({spec['name']!r}): 'kwargs' must be a mapping")
    return spec["name"], kwargs


# -- pipeline ---------------------------------------------------------------------------------------
class ProcessorPipeline:
    """An ordered chain of processors: fitted on the train segment, applied to learn and infer data.

    Args:
        specs: ``[{"name": "DropnaLabel", "kwargs": {}}, ...]``, applied in order (``kwargs`` may be
            omitted).

    Raises:
        ProcessorError: an unknown processor or keyword argument, or an invalid value.
    """

    def __init__(self, specs: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Sequence):
            raise ProcessorError(f"processor specs must be a list of mappings, got {type(specs).__name__}")
        processors: list[Processor] = []
        for i, spec in enumerate(specs):
            name, kwargs = _parse_spec(spec, i)
            processors.append(processor_class(name).from_kwargs(copy.deepcopy(dict(kwargs))))
        self._init(processors, None, None)

    def _init(self, processors: list[Processor], feature_cols: list[str] | None, label_col: str | None) -> None:
        self._processors = tuple(processors)
        self._feature_cols = feature_cols
        self._label_col = label_col
        seen_learn_only = next((p for p in processors if p.learn_only), None)
        if seen_learn_only is not None:
            after = [p for p in processors[processors.index(seen_learn_only) + 1:] if p.applies_at_inference]
            if after:
                logger.warning(
                    "processors %s run at inference but come after the learn-only %s: learn data is then "
                    "processed on fewer rows than inference data (Qlib runs infer processors first)",
                    after, seen_learn_only,
                )

    @classmethod
    def from_specs(cls, specs: Sequence[Mapping[str, Any]]) -> ProcessorPipeline:
        """The same as the constructor."""
        return cls(specs)

    # -- introspection --------------------------------------------------------------------------------
    @property
    def processors(self) -> tuple[Processor, ...]:
        """The processors, in order."""
        return self._processors

    @property
    def specs(self) -> list[dict[str, Any]]:
        """The normalised specs: ``{"name", "kwargs"}`` with every keyword argument (defaults too)."""
        return [{"name": p.name, "kwargs": p.kwargs()} for p in self._processors]

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit_transform_learn` ran (or a fitted pipeline was loaded)."""
        return self._feature_cols is not None

    @property
    def feature_cols(self) -> list[str] | None:
        """The feature columns the pipeline was fitted with (``None`` before fitting)."""
        return None if self._feature_cols is None else list(self._feature_cols)

    @property
    def label_col(self) -> str | None:
        """The label column the pipeline was fitted with (``None`` before fitting or without label)."""
        return self._label_col

    def __repr__(self) -> str:
        return f"ProcessorPipeline({list(self._processors)!r}, fitted={self.is_fitted})"

    # -- fitting and transforming ---------------------------------------------------------------------
    @staticmethod
    def _check_columns(feature_cols: Any, label_col: Any) -> tuple[list[str], str | None]:
        if isinstance(feature_cols, str) or not isinstance(feature_cols, Sequence):
            raise ProcessorError(f"feature_cols must be a list of column names, got {feature_cols!r}")
        cols = list(feature_cols)
        if not all(isinstance(c, str) for c in cols):
            raise ProcessorError(f"feature_cols must be column names (strings), got {cols!r}")
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise ProcessorError(f"feature_cols has duplicate column(s) {dup}")
        if label_col is not None and not isinstance(label_col, str):
            raise ProcessorError(f"label_col must be a column name or None, got {label_col!r}")
        reserved = sorted({DATE_COLUMN, SYMBOL_COLUMN, *([label_col] if label_col else [])} & set(cols))
        if reserved:
            raise ProcessorError(f"feature_cols must not contain 'date', 'symbol' or the label; found {reserved}")
        return cols, label_col

    @staticmethod
    def _check_frame(frame: Any, feature_cols: Sequence[str], label_col: str | None, segment: str) -> None:
        who = f"processor pipeline ({segment})"
        _require_columns(frame, [DATE_COLUMN, SYMBOL_COLUMN, *feature_cols, *([label_col] if label_col else [])], who)
        if not frame.columns.is_unique:
            dup = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise ProcessorError(f"{who}: the frame has duplicate column(s) {dup}")
        _date_key(frame, who)

    def _resolve(self, feature_cols: Sequence[str] | None, label_col: str | None,
                 check_label: bool) -> tuple[list[str], str | None]:
        if self._feature_cols is None:
            raise ProcessorError("the processor pipeline is not fitted: call fit_transform_learn on the train frame first")
        if feature_cols is not None and list(feature_cols) != self._feature_cols:
            raise ProcessorError(
                f"the processor pipeline was fitted with feature columns {self._feature_cols}, got {list(feature_cols)}"
            )
        if check_label and label_col is not None and label_col != self._label_col:
            raise ProcessorError(
                f"the processor pipeline was fitted with label column {self._label_col!r}, got {label_col!r}"
            )
        return self._feature_cols, self._label_col

    def fit_transform_learn(self, train_frame: pd.DataFrame, feature_cols: Sequence[str],
                            label_col: str | None) -> pd.DataFrame:
        """Fit every processor on the train segment and return the processed learn frame.

        Each processor is fitted on the previous one's output (Qlib's ``IT_FIT_SEQ``). Fitting again
        replaces all fitted state; on error the pipeline keeps its previous state.

        Args:
            train_frame: the train segment ``[date, symbol, *feature_cols, label_col]``.
            feature_cols: the feature columns, in model order.
            label_col: the label column, or ``None`` when no processor acts on the label.

        Raises:
            ProcessorError: a missing or invalid column, or a processor that cannot be fitted.
        """
        cols, label = self._check_columns(feature_cols, label_col)
        needs_label = any(p.fields_group == "label" for p in self._processors)
        if needs_label and label is None:
            raise ProcessorError(f"processors {[p for p in self._processors if p.fields_group == 'label']} act on "
                                 "the label, but label_col is None")
        self._check_frame(train_frame, cols, label, "train")
        fresh = [type(p).from_kwargs(p.kwargs()) for p in self._processors]
        out = train_frame
        for proc in fresh:
            proc.fit(out, cols, label)
            out = proc.transform(out, cols, label)
            logger.debug("%r fitted and applied: %d rows", proc, len(out))
        self._init(fresh, cols, label)
        logger.info("processor pipeline fitted on %d train rows (%d after processing), %d features",
                    len(train_frame), len(out), len(cols))
        return out if out is not train_frame else train_frame.copy(deep=False)

    def transform_learn(self, frame: pd.DataFrame, feature_cols: Sequence[str] | None = None,
                        label_col: str | None = None) -> pd.DataFrame:
        """Process learn data (e.g. the valid segment) with every processor and the fitted state.

        Args:
            frame: ``[date, symbol, *feature_cols, label_col]``.
            feature_cols: optional; must equal the fitted feature columns.
            label_col: optional; must equal the fitted label column.

        Raises:
            ProcessorError: not fitted, different columns, or a missing column.
        """
        cols, label = self._resolve(feature_cols, label_col, check_label=True)
        self._check_frame(frame, cols, label, "learn")
        return self._apply(frame, cols, label, self._processors)

    def transform_infer(self, frame: pd.DataFrame, feature_cols: Sequence[str] | None = None) -> pd.DataFrame:
        """Process inference data: skips learn-only and label-group processors.

        The frame needs no label column; if it has one, the label is left raw.

        Args:
            frame: ``[date, symbol, *feature_cols]`` (a label column is optional).
            feature_cols: optional; must equal the fitted feature columns.

        Raises:
            ProcessorError: not fitted, different columns, or a missing column.
        """
        cols, label = self._resolve(feature_cols, None, check_label=False)
        self._check_frame(frame, cols, None, "infer")
        return self._apply(frame, cols, label, [p for p in self._processors if p.applies_at_inference])

    @staticmethod
    def _apply(
        frame: pd.DataFrame, cols: Sequence[str], label: str | None, processors: Sequence[Processor]
    ) -> pd.DataFrame:
        """Run processors in order; always return a new frame (never the caller's object)."""
        out = frame
        for proc in processors:
            out = proc.transform(out, cols, label)
        return out if out is not frame else frame.copy(deep=False)

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Specs, columns and fitted states as plain JSON values."""
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "fitted": self.is_fitted,
            "feature_cols": self.feature_cols,
            "label_col": self._label_col,
            "processors": [{"name": p.name, "kwargs": p.kwargs(), "state": p.state()} for p in self._processors],
        }

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, strict: no NaN/Infinity literals) of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ProcessorPipeline:
        """Restore a pipeline written by :meth:`to_json`; it transforms bit-identically.

        Raises:
            ProcessorError: malformed JSON, unknown format/version, or invalid specs/state.
        """
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ProcessorError(f"processor pipeline JSON cannot be parsed: {exc}") from exc
        if not isinstance(data, dict):
            raise ProcessorError("processor pipeline JSON must be an object")
        expected = {"format", "version", "fitted", "feature_cols", "label_col", "processors"}
        if set(data) != expected:
            raise ProcessorError(f"processor pipeline JSON: expected keys {sorted(expected)}, got {sorted(data)}")
        if data["format"] != JSON_FORMAT or data["version"] != JSON_VERSION:
            raise ProcessorError(
                f"processor pipeline JSON: format {data['format']!r} version {data['version']!r} is not "
                f"{JSON_FORMAT!r} version {JSON_VERSION}"
            )
        if not isinstance(data["processors"], list):
            raise ProcessorError("processor pipeline JSON: 'processors' must be a list")
        processors: list[Processor] = []
        for i, entry in enumerate(data["processors"]):
            if not isinstance(entry, dict) or set(entry) != {"name", "kwargs", "state"}:
                raise ProcessorError(f"processor pipeline JSON: processor #{i} must have keys name, kwargs, state")
            processors.append(build_processor(entry["name"], entry["kwargs"], entry["state"]))
        fitted = data["fitted"]
        if fitted is not True and fitted is not False:
            raise ProcessorError("processor pipeline JSON: 'fitted' must be true or false")
        feature_cols: list[str] | None = None
        label_col: str | None = None
        if fitted:
            feature_cols, label_col = cls._check_columns(data["feature_cols"], data["label_col"])
            unfitted = [p for p in processors if not p.is_fitted]
            if unfitted:
                raise ProcessorError(f"processor pipeline JSON: fitted, but {unfitted} have no fitted state")
        elif data["feature_cols"] is not None or data["label_col"] is not None:
            raise ProcessorError("processor pipeline JSON: an unfitted pipeline has no feature_cols/label_col")
        pipeline = cls.__new__(cls)
        pipeline._init(processors, feature_cols, label_col)
        return pipeline
