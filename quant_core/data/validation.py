"""The validation gate for daily bars (DESIGN.md stage "validate", invariant 5).

Two Great Expectations suites, kept as JSON in ``expectations/``, judge a frame of bars:

* ``bars`` (error level): a failure raises :class:`BarsValidationError`, so the run stops before
  anything downstream is written;
* ``bars_warning`` (warning level): failures are logged and reported, never raised.

The suites run with an ephemeral GX context against the in-memory frame. Rules that need more than
one row (returns against the previous bar, rows per date) or a calendar (weekday, date range) run on
helper columns derived here first: ``row`` (position in the input), ``date_key`` (``YYYYMMDD``),
``weekday`` (day name), ``abs_log_return`` and ``symbols_on_date``. Runtime values (the requested
range, today, bounds, universe size, the symbol pattern) reach the suites as GX expectation
parameters (``{"$PARAMETER": "name"}`` in the JSON), so the JSON in the repository stays the single
source of truth for the rules.

``great_expectations`` costs seconds to import: it is imported on the first validation only, and
the context and loaded suites are cached for the life of the process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from quant_core.data.bars import BAR_COLUMNS, SYMBOL_PATTERN

logger = logging.getLogger(__name__)

#: Columns GX returns for every offending row (``unexpected_index_column_names``): the bar's key,
#: plus the row's position in the input so a report can point at it even when keys repeat.
KEY_COLUMNS: tuple[str, ...] = ("date", "symbol")
ROW_COLUMN = "row"
INDEX_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, ROW_COLUMN)

#: Parameters the suites may reference with ``{"$PARAMETER": ...}``; anything else is a suite error.
SUITE_PARAMETERS: frozenset[str] = frozenset(
    {
        "symbol_pattern",
        "start_date_key",
        "end_date_key",
        "today_date_key",
        "max_abs_log_return",
        "min_symbols_per_date",
        "max_symbols_per_date",
    }
)

_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_GX_LOCK = threading.RLock()


def default_expectations_dir() -> Path:
    """``<repo>/expectations``, found relative to this package."""
    return Path(__file__).resolve().parents[2] / "expectations"


class ValidationConfig(BaseModel):
    """Bounds and suite names of the gate.

    Attributes:
        max_abs_log_return: error bound on ``|log(adj_close_t / adj_close_prev)|``; 2.0 is a move of
            x7.4 or /7.4, which catches decimal-shift glitches (x10 = 2.30) but passes real CSI 300
            data (its largest bar is +306% = 1.40, after a 15-month suspension).
        row_count_tolerance: a date fails when it has fewer than ``(1 - tolerance) * universe``
            distinct symbols (real CSI 300 2020 data has 265 of 300 symbols listed: 0.88).
        warning_max_abs_log_return: the same bound for the warning suite.
        warning_row_count_tolerance: the same tolerance for the warning suite.
        suite: error-level suite, ``<expectations_dir>/<suite>.json``.
        warning_suite: warning-level suite, or ``None`` to skip it.
        expectations_dir: folder holding the suite JSON files.
        max_examples: offending rows kept per broken rule (GX ``partial_unexpected_count``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_abs_log_return: float = Field(default=2.0, gt=0)
    row_count_tolerance: float = Field(default=0.25, ge=0, lt=1)
    warning_max_abs_log_return: float = Field(default=0.35, gt=0)
    warning_row_count_tolerance: float = Field(default=0.10, ge=0, lt=1)
    suite: str = "bars"
    warning_suite: str | None = "bars_warning"
    expectations_dir: Path = Field(default_factory=default_expectations_dir)
    max_examples: int = Field(default=20, ge=1, le=1000)

    @field_validator("suite", "warning_suite")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
            raise ValueError(f"suite name {value!r} must be a plain file stem")
        return value


DEFAULT_VALIDATION_CONFIG = ValidationConfig()


class OffendingRow(NamedTuple):
    """One row that broke a rule: its position in the input, its key and the value judged."""

    row: int | None
    date: str | None
    symbol: str | None
    value: Any


@dataclass(frozen=True)
class RuleFailure:
    """One broken expectation.

    Attributes:
        rule: expectation type and column(s), e.g. ``expect_column_values_to_not_be_null(close)``.
        description: what the rule asks, with its bound(s) and what was observed.
        unexpected_count: number of offending rows (0 for table-level rules).
        rows: at most ``ValidationConfig.max_examples`` offending rows.
        check: the rule's short name from the suite JSON (``meta.check``), e.g. ``close_not_null``.
    """

    rule: str
    description: str
    unexpected_count: int
    rows: list[OffendingRow]
    check: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (non-finite floats become strings)."""
        return {
            "rule": self.rule,
            "check": self.check,
            "description": self.description,
            "unexpected_count": self.unexpected_count,
            "rows": [
                {"row": r.row, "date": r.date, "symbol": r.symbol, "value": _jsonable(r.value)}
                for r in self.rows
            ],
        }


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of one suite on one frame of bars.

    Attributes:
        success: every expectation of the suite passed.
        suite: suite name.
        level: ``"error"`` or ``"warning"``.
        failures: the broken rules, in suite order.
        rows_checked: rows in the validated frame.
        statistics: GX's counts (evaluated / successful expectations) plus timings and sizes.
        source: name of the input.
        start: first requested date.
        end: last requested date.
        parameters: the runtime values substituted into the suite's ``$PARAMETER`` references.
        docs_path: Data Docs index page, when Data Docs were written.
    """

    success: bool
    suite: str
    level: str
    failures: list[RuleFailure]
    rows_checked: int
    statistics: dict[str, Any]
    source: str = "bars"
    start: dt.date | None = None
    end: dt.date | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    docs_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form: only JSON types (``json.dumps(..., allow_nan=False)`` works)."""
        return {
            "success": self.success,
            "suite": self.suite,
            "level": self.level,
            "source": self.source,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "rows_checked": self.rows_checked,
            "statistics": _jsonable(self.statistics),
            "parameters": _jsonable(self.parameters),
            "docs_path": self.docs_path,
            "failures": [f.to_dict() for f in self.failures],
        }

    def report_markdown(self) -> str:
        """Human report: one section per broken rule with a table of offending rows."""
        status = "passed" if self.success else "FAILED"
        stats = self.statistics
        lines = [
            f"## Validation of `{self.source}` — suite `{self.suite}` ({self.level}): {status}",
            "",
            f"- requested range: {self.start} → {self.end}",
            f"- rows checked: {self.rows_checked:,}",
            f"- expectations: {stats.get('evaluated_expectations', '?')} evaluated, "
            f"{stats.get('successful_expectations', '?')} passed, "
            f"{stats.get('unsuccessful_expectations', '?')} failed",
        ]
        if self.docs_path:
            lines.append(f"- Data Docs: {self.docs_path}")
        for failure in self.failures:
            lines += [
                "",
                f"### `{failure.rule}`",
                "",
                f"{failure.description}",
                "",
                f"Offending rows: {failure.unexpected_count:,}"
                + (f" (first {len(failure.rows)} below)" if failure.rows else ""),
            ]
            if failure.rows:
                lines += ["", "| row | date | symbol | value |", "|---:|---|---|---|"]
                lines += [
                    f"| {r.row if r.row is not None else ''} | {r.date or ''} | {r.symbol or ''} | "
                    f"{_short(r.value)} |"
                    for r in failure.rows
                ]
        return "\n".join(lines) + "\n"


class BarsValidationError(Exception):
    """The error-level suite failed: the run must stop before anything downstream is written.

    Attributes:
        result: the error-level result.
        warning_result: the warning-level result, when that suite ran.
    """

    def __init__(
        self, message: str, result: ValidationResult, warning_result: ValidationResult | None = None
    ) -> None:
        super().__init__(message)
        self.result = result
        self.warning_result = warning_result

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable with its results (task runners ship exceptions between processes)
        return (type(self), (str(self), self.result, self.warning_result))


class SuiteLoadError(RuntimeError):
    """A suite JSON file is missing, malformed, or lost expectations when GX parsed it."""


# --------------------------------------------------------------------------------------------------
# public entry point


def validate_bars(
    bars: pd.DataFrame,
    *,
    start: dt.date,
    end: dt.date,
    today: dt.date | None = None,
    previous: pd.DataFrame | None = None,
    config: ValidationConfig = DEFAULT_VALIDATION_CONFIG,
    source: str = "bars",
    docs_dir: Path | None = None,
    universe: int | None = None,
) -> tuple[ValidationResult, ValidationResult | None]:
    """Run the error suite (and the warning suite) on a frame of bars.

    Args:
        bars: the bars to judge (columns of :data:`quant_core.data.bars.BAR_COLUMNS`; ``vwap`` optional).
        start: first requested date; every bar must lie in ``[start, end]``.
        end: last requested date.
        today: no bar may be dated after it; defaults to the local calendar date.
        previous: stored bars before ``start`` (at least each symbol's last one), so the first bar
            of each symbol in ``bars`` gets a return too. Rows dated ``>= start`` are ignored.
        config: bounds and suite names.
        source: the input's name, used in messages and reports.
        docs_dir: when given, GX Data Docs HTML for the validation(s) is written into this folder
            and the index page is recorded in ``result.docs_path``.
        universe: number of symbols expected per date; defaults to the distinct symbols in ``bars``.

    Returns:
        ``(error_result, warning_result)``; ``warning_result`` is ``None`` when
        ``config.warning_suite`` is ``None``.

    Raises:
        BarsValidationError: the error suite failed, or ``bars`` is empty (after Data Docs were
            written, when ``docs_dir`` is given).
        SuiteLoadError: a suite file cannot be loaded completely.
        ValueError: ``start > end`` or ``universe < 1``.
    """
    if start > end:
        raise ValueError(f"{source}: start {start} is after end {end}")
    if universe is not None and universe < 1:
        raise ValueError(f"{source}: universe must be >= 1, got {universe}")
    today = today or dt.date.today()
    t0 = time.perf_counter()
    frame = build_validation_frame(bars, previous=previous, start=start)
    t_frame = time.perf_counter() - t0

    n_symbols = int(frame["symbol"].nunique()) if len(frame) else 0
    universe_size = universe if universe is not None else max(n_symbols, 1)
    base_params: dict[str, Any] = {
        "symbol_pattern": SYMBOL_PATTERN,
        "start_date_key": _date_key(start),
        "end_date_key": _date_key(end),
        "today_date_key": _date_key(today),
        "max_symbols_per_date": universe_size,
    }
    levels: list[tuple[str, str, dict[str, Any]]] = [
        (
            "error",
            config.suite,
            {
                **base_params,
                "max_abs_log_return": config.max_abs_log_return,
                "min_symbols_per_date": _min_symbols(universe_size, config.row_count_tolerance),
            },
        )
    ]
    if config.warning_suite is not None:
        levels.append(
            (
                "warning",
                config.warning_suite,
                {
                    **base_params,
                    "max_abs_log_return": config.warning_max_abs_log_return,
                    "min_symbols_per_date": _min_symbols(universe_size, config.warning_row_count_tolerance),
                },
            )
        )

    with _GX_LOCK:
        t1 = time.perf_counter()
        state = _gx_state()
        t_ctx = time.perf_counter() - t1
        suites = [state.suite(config.expectations_dir / f"{name}.json") for _, name, _ in levels]
        validator = state.validator(frame, config.max_examples)
        raw_results: list[tuple[str, str, dict[str, Any], Any, float]] = []
        for (level, _name, params), suite in zip(levels, suites, strict=True):
            t2 = time.perf_counter()
            raw = state.validate(frame, validator, suite, params, config.max_examples)
            raw_results.append((level, str(suite.name), params, raw, time.perf_counter() - t2))
        docs_path: str | None = None
        t_docs = 0.0
        if docs_dir is not None:
            t3 = time.perf_counter()
            docs_path = state.write_docs(
                Path(docs_dir),
                [(raw, suite_name) for _, suite_name, _, raw, _ in raw_results],
                run_name=f"{source}_{start.isoformat()}_{end.isoformat()}",
                batch_name=source,
            )
            t_docs = time.perf_counter() - t3

    results = []
    for (level, suite_name, params, raw, seconds), suite in zip(raw_results, suites, strict=True):
        order = {str((e.meta or {}).get("check", "")): i for i, e in enumerate(suite.expectations)}
        results.append(
            _to_result(
                raw,
                frame=frame,
                suite=suite_name,
                level=level,
                source=source,
                start=start,
                end=end,
                params=params,
                docs_path=docs_path,
                timings={
                    "frame_seconds": round(t_frame, 4),
                    "context_seconds": round(t_ctx, 4),
                    "validate_seconds": round(seconds, 4),
                    "docs_seconds": round(t_docs, 4),
                },
                n_symbols=n_symbols,
                order=order,
            )
        )
    error_result = results[0]
    warning_result = results[1] if len(results) > 1 else None
    logger.info(
        "%s: validated %d rows [%s, %s] with suite %r in %.2fs: %s",
        source,
        len(frame),
        start,
        end,
        config.suite,
        time.perf_counter() - t0,
        "passed" if error_result.success else f"{len(error_result.failures)} rule(s) broken",
    )
    if warning_result is not None and not warning_result.success:
        logger.warning(
            "%s: warning suite %r: %s",
            source,
            warning_result.suite,
            "; ".join(f"{f.rule} ({f.unexpected_count} rows)" for f in warning_result.failures),
        )
    if not error_result.success:
        raise BarsValidationError(
            _error_message(error_result, empty=len(frame) == 0), error_result, warning_result
        )
    return error_result, warning_result


# --------------------------------------------------------------------------------------------------
# helper columns


def build_validation_frame(
    bars: pd.DataFrame, *, previous: pd.DataFrame | None = None, start: dt.date | None = None
) -> pd.DataFrame:
    """The frame GX validates: the bar columns plus the helper columns the suites refer to.

    The bar columns are taken as they are (types are judged by the suite), except that a pandas
    string-dtype ``symbol`` becomes ``object`` (GX 1.24 cannot match pandas 3's ``str`` dtype to
    any type name) and a missing optional ``vwap`` becomes an all-NaN column.

    Args:
        bars: the bars to judge.
        previous: stored bars before ``start``; each symbol's last one seeds its first return.
        start: rows of ``previous`` dated on or after it are ignored.

    Returns:
        A new frame with a fresh ``RangeIndex``; ``row`` is the position in ``bars``.
    """
    n = len(bars)
    cols: dict[str, Any] = {}
    for col in BAR_COLUMNS:
        if col == "symbol" and col in bars.columns:
            # pandas 3 would infer its ``str`` dtype again from an object array: say object explicitly
            cols[col] = pd.Series(bars[col].to_numpy(dtype=object), dtype=object)
        elif col == "date" and col in bars.columns:
            cols[col] = _dates_for_gx(bars[col])
        elif col in bars.columns:
            cols[col] = bars[col].to_numpy()
        elif col == "vwap":
            cols[col] = np.full(n, np.nan)
    if n == 0:  # nothing to judge but the row count: give the empty frame every bar column
        for col in BAR_COLUMNS:
            if col not in cols:
                cols[col] = pd.Series([], dtype=object) if col == "symbol" else np.array([], dtype=np.float64)
        if len(bars.columns) == 0 or "date" not in bars.columns:
            cols["date"] = np.array([], dtype="datetime64[s]")
    frame = pd.DataFrame(
        {k: v.set_axis(pd.RangeIndex(n)) if isinstance(v, pd.Series) else v for k, v in cols.items()},
        index=pd.RangeIndex(n),
    )
    frame[ROW_COLUMN] = np.arange(n, dtype=np.int64)

    dates = _to_datetime(bars["date"]) if "date" in bars.columns else pd.Series(pd.NaT, index=frame.index)
    valid = dates.notna().to_numpy()
    year = dates.dt.year.to_numpy(dtype="float64", na_value=np.nan)
    key = year * 10000 + dates.dt.month.to_numpy(dtype="float64", na_value=np.nan) * 100
    key = key + dates.dt.day.to_numpy(dtype="float64", na_value=np.nan)
    frame["date_key"] = key
    dow = dates.dt.dayofweek.to_numpy(dtype="float64", na_value=np.nan)
    # categorical: GX's set and null checks on it are vectorised (an object column is not)
    frame["weekday"] = pd.Categorical.from_codes(
        np.where(valid, np.nan_to_num(dow, nan=-1), -1).astype(np.int64),
        categories=pd.Index(list(_WEEKDAY_NAMES)),
    )

    symbols = (
        frame["symbol"] if "symbol" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    )
    frame["abs_log_return"] = _abs_log_returns(bars, dates, symbols, previous=previous, start=start)
    frame["symbols_on_date"] = _symbols_on_date(key, symbols)
    return frame


def _dates_for_gx(values: pd.Series) -> Any:
    """``date`` as GX will see it.

    An object column that holds nothing but ``datetime.date`` objects (as pyarrow gives for
    ``date32``) becomes ``datetime64[s]``: same values, and GX checks the type from the dtype
    instead of value by value (0.15 s per 400k rows). Anything else is passed through untouched,
    so the type rule reports the values that are not dates.
    """
    if values.dtype == object and len(values):
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind == "date":
            return pd.to_datetime(values, errors="raise").astype("datetime64[s]").to_numpy()
    return values.to_numpy()


def _to_datetime(values: pd.Series) -> pd.Series:
    """Dates as naive ``datetime64``; unparseable values become ``NaT`` (the type rule reports them)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = values
    else:
        out = pd.to_datetime(values, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(None)
    normalized: pd.Series = out.dt.normalize()
    return normalized


def _abs_log_returns(
    bars: pd.DataFrame,
    dates: pd.Series,
    symbols: pd.Series,
    *,
    previous: pd.DataFrame | None,
    start: dt.date | None,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``|log(adj_close / previous adj_close)|`` per symbol, ordered by date; NaN without a prior bar."""
    n = len(bars)
    out = np.full(n, np.nan)
    if n == 0 or "close" not in bars.columns:
        return out
    adj = _adjusted_close(bars)
    day = dates.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    sym = symbols.to_numpy(dtype=object)
    seeds = _last_previous_bars(previous, start)
    n_seed = len(seeds)
    if n_seed:
        adj = np.concatenate([seeds["adj"].to_numpy(dtype=np.float64), adj])
        day = np.concatenate([seeds["day"].to_numpy(dtype=np.int64), day])
        sym = np.concatenate([seeds["symbol"].to_numpy(dtype=object), sym])
    codes, _ = pd.factorize(pd.Series(sym, dtype=object), use_na_sentinel=True)
    order = np.lexsort((np.arange(len(codes)), day, codes))
    adj_sorted = adj[order]
    codes_sorted = codes[order]
    prev = np.empty_like(adj_sorted)
    prev[0] = np.nan
    prev[1:] = adj_sorted[:-1]
    same = np.zeros(len(codes_sorted), dtype=bool)
    same[1:] = (codes_sorted[1:] == codes_sorted[:-1]) & (codes_sorted[1:] >= 0)
    ok = same & np.isfinite(adj_sorted) & np.isfinite(prev) & (adj_sorted > 0) & (prev > 0)
    ret = np.full(len(adj_sorted), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ret[ok] = np.abs(np.log(adj_sorted[ok] / prev[ok]))
    unsorted = np.empty_like(ret)
    unsorted[order] = ret
    out[:] = unsorted[n_seed:]
    return out


def _adjusted_close(bars: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float64]]:
    close = pd.to_numeric(bars["close"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if "factor" in bars.columns:
        factor = pd.to_numeric(bars["factor"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        adjusted: np.ndarray[Any, np.dtype[np.float64]] = close * factor
        return adjusted
    return close


def _last_previous_bars(previous: pd.DataFrame | None, start: dt.date | None) -> pd.DataFrame:
    """Each symbol's last bar of ``previous`` before ``start``: columns symbol, day (ns), adj."""
    empty = pd.DataFrame({"symbol": [], "day": np.array([], dtype=np.int64), "adj": []})
    if previous is None or len(previous) == 0:
        return empty
    missing = {"date", "symbol", "close"} - set(previous.columns)
    if missing:
        raise ValueError(f"previous bars lack column(s) {sorted(missing)}")
    dates = _to_datetime(previous["date"])
    seeds = pd.DataFrame(
        {
            "symbol": previous["symbol"].astype(object).to_numpy(),
            "date": dates.to_numpy(),
            "adj": _adjusted_close(previous),
        }
    )
    keep = seeds["date"].notna()
    if start is not None:
        keep &= seeds["date"] < pd.Timestamp(start)
    seeds = seeds[keep].sort_values(["symbol", "date"], kind="stable").groupby("symbol", sort=False).tail(1)
    return pd.DataFrame(
        {
            "symbol": seeds["symbol"].to_numpy(),
            "day": seeds["date"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
            "adj": seeds["adj"].to_numpy(),
        }
    )


def _symbols_on_date(
    date_key: np.ndarray[Any, np.dtype[np.float64]], symbols: pd.Series
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Distinct symbols per date, carried by the date's first row only (NaN elsewhere).

    The rows-per-date rule judges dates, not rows: one row per date carries the count, so a short
    date counts once (and is reported with its first row's key), however many bars it has.
    """
    if len(date_key) == 0:
        return np.array([], dtype=np.float64)
    keys = pd.Series(date_key)
    pairs = pd.DataFrame({"k": date_key, "s": symbols.to_numpy(dtype=object)}).dropna()
    counts = pairs.drop_duplicates()["k"].value_counts()
    first = (~keys.duplicated() & keys.notna()).to_numpy()
    out = np.full(len(date_key), np.nan)
    out[first] = keys[first].map(counts).to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _date_key(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def _min_symbols(universe: int, tolerance: float) -> int:
    return max(1, math.ceil((1.0 - tolerance) * universe - 1e-9))


# --------------------------------------------------------------------------------------------------
# Great Expectations boundary (loosely typed: Any)


@dataclass
class _SuiteEntry:
    stamp: tuple[int, int]
    suite: Any


class _GxState:
    """One ephemeral GX context per process, with its pandas asset, loaded suites and docs sites."""

    def __init__(self) -> None:
        t0 = time.perf_counter()
        gx: Any = importlib.import_module("great_expectations")
        base: Any = importlib.import_module("great_expectations.data_context.types.base")
        self.ids: Any = importlib.import_module("great_expectations.data_context.types.resource_identifiers")
        self.run_ids: Any = importlib.import_module("great_expectations.core.run_identifier")
        # the validator ValidationDefinition.run uses, minus storing every result in the context
        self.validator_cls: Any = importlib.import_module(
            "great_expectations.validator.v1_validator"
        ).Validator
        self.gx = gx
        self.context: Any = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = base.ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        datasource = self.context.data_sources.add_pandas("qonline_bars")
        asset = datasource.add_dataframe_asset("bars")
        self.batch_definition: Any = asset.add_batch_definition_whole_dataframe("whole_frame")
        self.suites: dict[Path, _SuiteEntry] = {}
        self.sites: dict[Path, str] = {}
        logger.info("great_expectations %s ready in %.1fs", gx.__version__, time.perf_counter() - t0)

    def suite(self, path: Path) -> Any:
        """The suite stored at ``path``; reloaded when the file changes."""
        path = path.resolve()
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise SuiteLoadError(f"expectation suite file {path} not found") from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        entry = self.suites.get(path)
        if entry is None or entry.stamp != stamp:
            entry = _SuiteEntry(stamp, self._load_suite(path))
            self.suites[path] = entry
        return entry.suite

    def _load_suite(self, path: Path) -> Any:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SuiteLoadError(f"expectation suite {path} is not readable JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
            raise SuiteLoadError(f"expectation suite {path} has no 'expectations' list")
        declared = [str(e.get("type")) for e in data["expectations"] if isinstance(e, dict)]
        unknown = sorted(_parameter_names(data) - SUITE_PARAMETERS)
        if unknown:
            raise SuiteLoadError(
                f"expectation suite {path} uses unknown $PARAMETER(s) {unknown}; "
                f"known: {sorted(SUITE_PARAMETERS)}"
            )
        suite = self.gx.ExpectationSuite(**data)
        loaded = [str(e.expectation_type) for e in suite.expectations]
        if len(loaded) != len(data["expectations"]):
            dropped = list(declared)
            for name in loaded:
                if name in dropped:
                    dropped.remove(name)
            raise SuiteLoadError(
                f"expectation suite {path} declares {len(data['expectations'])} expectations but GX "
                f"loaded {len(loaded)}; dropped: {dropped} (see the GX log for the parse error)"
            )
        suite = self.context.suites.add_or_update(suite)
        logger.info("loaded expectation suite %r (%d expectations) from %s", suite.name, len(loaded), path)
        return suite

    def validator(self, frame: pd.DataFrame, max_examples: int, *, keyed: bool = False) -> Any:
        """A GX validator over the in-memory ``frame``, reusable for several suites.

        One validator serves both suites: GX fingerprints (hashes) the whole frame each time it
        builds a batch, 0.07 s per 500k rows.
        """
        result_format: dict[str, Any] = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": max_examples,
            "return_unexpected_index_query": False,
        }
        if keyed:
            result_format["unexpected_index_column_names"] = list(INDEX_COLUMNS)
        return self.validator_cls(
            batch_definition=self.batch_definition,
            batch_parameters={"dataframe": frame},
            result_format=result_format,
        )

    def validate(
        self, frame: pd.DataFrame, validator: Any, suite: Any, params: Mapping[str, Any], max_examples: int
    ) -> Any:
        """Validate ``frame`` (through ``validator``) with ``suite``; offending rows keyed by date and symbol.

        GX builds ``unexpected_index_column_names`` entries row by row in Python (about 15 us
        per offending row, *all* of them, before keeping the first few): a batch whose 250k
        rows are all duplicated took 30 s. So the gate runs in two passes:

        1. the whole suite on the whole frame, ``SUMMARY`` without index columns: success,
           counts and the positions of the first ``max_examples`` offending rows per rule, all
           vectorised;
        2. only if something failed: the failed expectations again, on the few rows pass 1 named
           (plus their key partners for the uniqueness rule), with
           ``unexpected_index_column_names`` = date, symbol, row. Their keyed lists replace
           pass 1's positional ones, so results and Data Docs name rows by (date, symbol).

        Every rule GX evaluates here is row-local (multi-row quantities are precomputed helper
        columns) except compound uniqueness, so pass 2 returns exactly the rows a single keyed
        pass would have returned.
        """
        raw = validator.validate_expectation_suite(suite, expectation_parameters=dict(params))
        failed = [
            r for r in raw.results if not r.success and (r.result or {}).get("partial_unexpected_index_list")
        ]
        if failed:
            self._add_keyed_rows(frame, failed, suite.name, params, max_examples)
        return raw

    def _add_keyed_rows(
        self,
        frame: pd.DataFrame,
        failed: Sequence[Any],
        suite_name: str,
        params: Mapping[str, Any],
        max_examples: int,
    ) -> None:
        positions: set[int] = set()
        unique_keys: list[Any] = []
        for r in failed:
            rows = [int(i) for i in r.result["partial_unexpected_index_list"]]
            positions.update(rows)
            if r.expectation_config.type == "expect_compound_columns_to_be_unique":
                unique_keys.append(frame.iloc[rows][list(r.expectation_config.kwargs["column_list"])])
        take = np.zeros(len(frame), dtype=bool)
        take[sorted(positions)] = True
        for keys in unique_keys:  # a duplicate needs its partner rows to stay a duplicate
            cols = list(keys.columns)
            partners = frame[cols].reset_index().merge(keys.drop_duplicates(), on=cols)["index"]
            ordered = (
                frame.loc[partners.to_numpy(), cols]
                .groupby(cols, sort=False, dropna=False)
                .head(max_examples + 1)
            )
            take[ordered.index.to_numpy()] = True
        detail_frame = frame[take].reset_index(drop=True)
        detail_suite = self.gx.ExpectationSuite(
            name=f"{suite_name}__offending_rows", expectations=[r.expectation_config for r in failed]
        )
        if len(detail_suite.expectations) != len(failed):
            logger.warning("could not re-run %d failed expectation(s) for keyed rows", len(failed))
            return
        keyed = self.validator(detail_frame, max_examples, keyed=True).validate_expectation_suite(
            detail_suite, expectation_parameters=dict(params)
        )
        for original, detail in zip(failed, keyed.results, strict=True):
            if original.expectation_config.type != detail.expectation_config.type:
                logger.warning("keyed-row pass out of order; keeping row positions only")
                return
            keyed_rows = detail.result.get("partial_unexpected_index_list", [])
            original.result["partial_unexpected_index_list"] = keyed_rows
            original.result["unexpected_index_column_names"] = list(INDEX_COLUMNS)
            if not set(_domain_columns(original.expectation_config.kwargs)) <= set(INDEX_COLUMNS):
                # Data Docs draw their "value | count | date | symbol" table from this list only
                original.result["unexpected_index_list"] = keyed_rows

    def write_docs(
        self, docs_dir: Path, results: Sequence[tuple[Any, str]], *, run_name: str, batch_name: str
    ) -> str:
        """Render GX Data Docs for ``results`` into ``docs_dir``; return the index page path."""
        docs_dir = docs_dir.resolve()
        docs_dir.mkdir(parents=True, exist_ok=True)
        site = self.sites.get(docs_dir)
        if site is None:
            site = "local_" + hashlib.sha1(str(docs_dir).encode()).hexdigest()[:12]
            self.context.add_data_docs_site(
                site_name=site,
                site_config={
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs_dir),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
            self.sites[docs_dir] = site
        store = self.context.validation_results_store
        run_id = self.run_ids.RunIdentifier(run_name=_safe_name(run_name), run_time=dt.datetime.now(dt.UTC))
        keys: list[Any] = []
        for raw, suite_name in results:
            suite_id = self.ids.ExpectationSuiteIdentifier(name=suite_name)
            key = self.ids.ValidationResultIdentifier(
                expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=_safe_name(batch_name)
            )
            store.set(key, raw)
            keys += [key, suite_id]
        try:
            urls: dict[str, str] = self.context.build_data_docs(site_names=[site], resource_identifiers=keys)
        finally:
            for key in keys[::2]:  # the in-memory store must not grow with every run
                store.remove_key(key)
        index = docs_dir / "index.html"
        logger.info("Data Docs written: %s", urls.get(site, index))
        return str(index)


_STATE: _GxState | None = None


def _gx_state() -> _GxState:
    global _STATE
    if _STATE is None:
        _STATE = _GxState()
    return _STATE


def _parameter_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        names = {str(node["$PARAMETER"])} if "$PARAMETER" in node else set()
        for value in node.values():
            names |= _parameter_names(value)
        return names
    if isinstance(node, list):
        out: set[str] = set()
        for value in node:
            out |= _parameter_names(value)
        return out
    return set()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_") or "bars"


# --------------------------------------------------------------------------------------------------
# GX result -> ValidationResult

_BOUND_KWARGS = (
    "min_value",
    "max_value",
    "strict_min",
    "strict_max",
    "or_equal",
    "value_set",
    "regex",
    "type_list",
    "column_set",
    "mostly",
)


def _to_result(
    raw: Any,
    *,
    frame: pd.DataFrame,
    suite: str,
    level: str,
    source: str,
    start: dt.date,
    end: dt.date,
    params: dict[str, Any],
    docs_path: str | None,
    timings: dict[str, float],
    n_symbols: int,
    order: Mapping[str, int],
) -> ValidationResult:
    failures = [_to_failure(r, frame) for r in raw.results if not r.success]
    failures.sort(key=lambda f: order.get(f.check, len(order)))  # GX groups results by column
    gx_stats: dict[str, Any] = dict(raw.statistics)
    statistics = {
        "evaluated_expectations": int(gx_stats.get("evaluated_expectations", 0)),
        "successful_expectations": int(gx_stats.get("successful_expectations", 0)),
        "unsuccessful_expectations": int(gx_stats.get("unsuccessful_expectations", 0)),
        "success_percent": gx_stats.get("success_percent"),
        "symbols": n_symbols,
        "dates": int(pd.Series(frame["date_key"]).nunique()),
        **timings,
    }
    return ValidationResult(
        success=bool(raw.success),
        suite=suite,
        level=level,
        failures=failures,
        rows_checked=len(frame),
        statistics=statistics,
        source=source,
        start=start,
        end=end,
        parameters=dict(params),
        docs_path=docs_path,
    )


def _to_failure(result: Any, frame: pd.DataFrame) -> RuleFailure:
    config = result.expectation_config
    kwargs: dict[str, Any] = dict(config.kwargs)
    body: dict[str, Any] = dict(result.result or {})
    columns = _domain_columns(kwargs)
    rule = f"{config.type}({', '.join(columns) if columns else 'table'})"
    meta: dict[str, Any] = dict(config.meta or {})
    text = str(meta.get("description") or config.description or rule)
    bounds = ", ".join(
        f"{k}={_short(kwargs[k])}" for k in _BOUND_KWARGS if k in kwargs and kwargs[k] is not None
    )
    if bounds:
        text += f" [{bounds}]"
    missing = [c for c in columns if c not in frame.columns]
    error = _exception_message(result.exception_info)
    if missing:
        text += f"; could not be evaluated: column(s) {missing} missing"
    elif error:
        text += f"; could not be evaluated: {error}"
    mismatched = (body.get("details") or {}).get("mismatched")
    if isinstance(mismatched, Mapping) and "missing" in mismatched:  # helper columns are "unexpected"
        text += f"; missing column(s) {list(mismatched['missing'])}"
    elif body.get("observed_value") is not None:
        text += f"; observed {_short(body['observed_value'])}"
    count = int(body.get("unexpected_count") or 0)
    rows = [_to_row(item, columns, frame) for item in body.get("partial_unexpected_index_list") or []]
    if count:
        text += f"; {count:,} offending row(s)"
        if body.get("unexpected_percent") is not None:
            text += f" ({float(body['unexpected_percent']):.3g}% of non-null rows)"
    return RuleFailure(
        rule=rule, description=text, unexpected_count=count, rows=rows, check=str(meta.get("check", ""))
    )


def _exception_message(info: Any) -> str | None:
    """GX puts an exception either flat in ``exception_info`` or under one key per failed metric."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _domain_columns(kwargs: Mapping[str, Any]) -> list[str]:
    if "column" in kwargs:
        return [str(kwargs["column"])]
    if "column_A" in kwargs and "column_B" in kwargs:
        return [str(kwargs["column_A"]), str(kwargs["column_B"])]
    if "column_list" in kwargs:
        return [str(c) for c in kwargs["column_list"]]
    return []


def _to_row(item: Any, columns: Sequence[str], frame: pd.DataFrame) -> OffendingRow:
    if not isinstance(item, Mapping):  # a bare position (the keyed pass did not run): look it up
        item = {c: frame[c].iloc[int(item)] for c in (*columns, *INDEX_COLUMNS) if c in frame.columns}
    value: Any = None
    if len(columns) == 1:  # the judged value, even when it is a key column (symbol format)
        value = _plain(item.get(columns[0]))
    else:
        values = {c: _plain(item[c]) for c in columns if c in item and c not in INDEX_COLUMNS}
        value = values or None
    row = item.get(ROW_COLUMN)
    symbol = item.get("symbol")
    return OffendingRow(
        row=int(row) if row is not None else None,
        date=_iso_date(item.get("date")),
        symbol=None if symbol is None or _is_missing(symbol) else str(symbol),
        value=value,
    )


def _iso_date(value: Any) -> str | None:
    if value is None or _is_missing(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="D"))
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """numpy/pandas scalars -> Python scalars (dates to ISO strings)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp | dt.date):
        return _iso_date(value)
    if value is pd.NaT:
        return None
    return value


def _jsonable(value: Any) -> Any:
    """Only JSON types: non-finite floats become ``"nan"``/``"inf"``/``"-inf"`` strings."""
    value = _plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(_plain(value)) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(result: ValidationResult, *, empty: bool) -> str:
    """One paragraph: the input, each broken rule and its first offending rows."""
    where = f"{result.source} [{result.start}, {result.end}]"
    if empty:
        head = f"source {result.source} returned no bars for [{result.start}, {result.end}]"
    else:
        head = (
            f"bars from {where} failed validation suite '{result.suite}' "
            f"({len(result.failures)} rule(s) broken, {result.rows_checked:,} rows checked)"
        )
    parts = []
    for failure in result.failures:
        shown = ", ".join(
            f"{r.date} {r.symbol}"
            + (f" (row {r.row}, value {_short(r.value, 40)})" if r.row is not None else "")
            for r in failure.rows[:3]
        )
        more = failure.unexpected_count - min(3, len(failure.rows))
        part = f"{failure.rule} — {failure.description}"
        if shown:
            part += f"; first rows: {shown}" + (f" and {more:,} more" if more > 0 else "")
        parts.append(part)
    message = head + ": " + " | ".join(parts) + "."
    if result.docs_path:
        message += f" Data Docs: {result.docs_path}."
    return message
