"""The report of a strategy over a date range: every number of ``qonline report``, from the lake.

Two steps, so each can be tested alone:

- :func:`load_report_inputs` reads what the range needs from the lake (it never writes it): the
  served signal ``signals/<strategy>/`` dated in ``[start, end]`` (inclusive), the strategy's label
  ``labels/<label>/`` of those dates, every model version's predictions
  ``predictions/<strategy>/v<N>/`` of the range, and the bars from ``start`` through
  ``max(horizons) + 1`` trading days after ``end`` (forward returns and the backtests reach past
  the last signal date; what the lake does not hold yet is simply not known).
- :func:`build_report` computes: the IC summary of the served signal against its label (Qlib's
  ``SigAnaRecord``), the daily IC and its rolling mean, the IC of each model version over time, the
  IC decay over 1/5/10/20 days, a TopK-dropout and a long-short backtest next to the universe's
  equal weight, and their performance table. The result is a frozen :class:`ReportData`.

Date semantics: the signal of ``t`` is known after the close of ``t``; its label (LABEL0) is the
return from the close of ``t+1`` to the close of ``t+2`` and is observable two trading days later.
Dates of the range whose label is not observable yet count as no IC (they are named in the
coverage), exactly as Qlib skips the last two days of a test segment.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quant_core.calendar import to_date
from quant_core.data.lake import Lake
from quant_core.errors import ConfigError, QonlineError
from quant_core.evaluation.backtest import (
    BacktestConfig,
    BacktestResult,
    long_short,
    performance,
    topk_dropout,
)
from quant_core.evaluation.metrics import (
    DEFAULT_HORIZONS,
    ICSummary,
    daily_ic,
    forward_returns,
    ic_by_version,
    ic_decay,
    rolling_mean,
    summarize_ic,
)
from quant_core.features.labels import get_label
from quant_core.features.store import label_dataset
from quant_core.online.predictions import prediction_dataset, read_predictions
from quant_core.online.signals import read_signals, signal_dataset

if TYPE_CHECKING:
    from quant_core.models.registry import ModelRegistry
    from quant_core.settings import Settings

logger = logging.getLogger(__name__)

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
#: the tag that tells a report run from the training runs of a strategy's experiment
KIND_TAG = "qonline.kind"
KIND_REPORT = "report"
_VERSION_DIR = re.compile(r"^v(\d+)$")
#: the performance numbers (paths into ``Performance.to_dict()``) that become headline metrics
HEADLINE_PERFORMANCE: tuple[str, ...] = (
    "returns.annualized_return", "returns.information_ratio", "returns.max_drawdown", "cagr", "sharpe",
    "max_drawdown", "mean_turnover", "excess_return_with_cost.annualized_return",
    "excess_return_with_cost.information_ratio", "excess_return_with_cost.max_drawdown",
)
_SMALL_UNIVERSE_SHOWN = 5


class ReportError(QonlineError, ValueError):
    """A report cannot be built: no signals or no observable labels in the range, an unwritable folder."""


# -- configuration ----------------------------------------------------------------------------------
class ReportConfig(BaseModel):
    """What the report computes beyond the data: the backtests' settings, the rolling window, the horizons.

    Attributes:
        backtest: TopK-dropout and long-short settings (costs in bps, annualisation, small universe).
        rolling_window: dates in the rolling mean of the daily IC (20: about a trading month).
        horizons: trading-day horizons of the IC decay (forward returns entered at ``t+1``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    rolling_window: int = Field(default=20, ge=2)
    horizons: tuple[int, ...] = DEFAULT_HORIZONS

    @field_validator("horizons")
    @classmethod
    def _positive_horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(h < 1 for h in value) or len(set(value)) != len(value):
            raise ValueError(f"horizons {list(value)}: give distinct positive numbers of trading days")
        return tuple(sorted(value))

    @classmethod
    def from_settings(cls, settings: Settings, **backtest: Any) -> ReportConfig:
        """The report's configuration from the settings (``backtest`` overrides, e.g. ``on_small_universe``).

        Raises:
            ConfigError: the settings break a rule of the backtest (``n_drop`` larger than ``topk``).
        """
        values: dict[str, Any] = {
            "topk": settings.backtest_topk, "n_drop": settings.backtest_n_drop,
            "open_cost_bps": settings.open_cost_bps, "close_cost_bps": settings.close_cost_bps,
            "annualization": settings.annualization, **backtest,
        }
        try:
            return cls(backtest=BacktestConfig(**values))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'backtest'}: {e['msg']}" for e in exc.errors())
            given = "".join(f", {k}={v} given" for k, v in backtest.items())
            raise ConfigError(f"backtest settings (backtest_topk={settings.backtest_topk}, backtest_n_drop="
                              f"{settings.backtest_n_drop}, open_cost_bps={settings.open_cost_bps}, close_cost_bps="
                              f"{settings.close_cost_bps}{given}): {problems}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The settings the numbers depend on, JSON-ready."""
        bt = self.backtest
        return {
            "topk": bt.topk, "n_drop": bt.n_drop, "open_cost_bps": bt.open_cost_bps,
            "close_cost_bps": bt.close_cost_bps, "quantile": bt.quantile, "annualization": bt.annualization,
            "on_small_universe": bt.on_small_universe, "rolling_window": self.rolling_window,
            "horizons": list(self.horizons),
        }


# -- inputs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportInputs:
    """What a report reads from the lake; every ``date`` column is ``datetime64[s]``.

    Attributes:
        strategy: the strategy whose served signal is reported.
        label: the strategy's label (``LABEL0``), the IC's target.
        start: first signal date of the range, inclusive.
        end: last signal date of the range, inclusive.
        lake: the lake's URI.
        signals: ``[date, symbol, score, version]``, the served signal dated in ``[start, end]``.
        labels: ``[date, symbol, label]`` of the signal dates whose label is observable.
        bars: ``[date, symbol, close, factor]`` from ``start`` through the horizons after ``end``.
        predictions: ``[date, symbol, score, version]`` (``version`` an int) of every version's
            predictions dated in ``[start, end]``.
        generations: the manifest generation of each dataset read (to reread the same data later).
    """

    strategy: str
    label: str
    start: date
    end: date
    lake: str
    signals: pd.DataFrame
    labels: pd.DataFrame
    bars: pd.DataFrame
    predictions: pd.DataFrame
    generations: Mapping[str, int]


def _as_day64(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["date"] = pd.to_datetime(out["date"]).astype("datetime64[s]")
    return out


def prediction_versions(lake: Lake, strategy: str) -> list[int]:
    """The versions that have a ``predictions/<strategy>/v<N>/`` dataset, ascending."""
    import pyarrow.fs as pafs

    base = posixpath.join(lake.root, "predictions", strategy)
    try:
        infos = lake.fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
    except OSError as exc:
        raise ReportError(f"lake {lake.uri}: predictions/{strategy}/ cannot be listed: {exc}") from exc
    found = (_VERSION_DIR.match(posixpath.basename(i.path.rstrip("/"))) for i in infos
             if i.type == pafs.FileType.Directory)
    versions = sorted(int(m.group(1)) for m in found if m)
    return [v for v in versions if prediction_dataset(lake, strategy, v).exists()]


def _span(days: Sequence[Any]) -> str:
    return f"{min(days)}..{max(days)}" if len(days) else "nothing"


def load_report_inputs(lake: Lake, strategy: str, label_name: str, start: date | str, end: date | str,
                       horizons: Sequence[int] = DEFAULT_HORIZONS) -> ReportInputs:
    """Read a report's data from the lake (read only; no writer lock needed).

    Args:
        lake: the lake.
        strategy: the strategy (its signals are ``signals/<strategy>/``).
        label_name: the strategy's label, e.g. ``"LABEL0"``.
        start: first signal date, inclusive.
        end: last signal date, inclusive.
        horizons: the IC decay's horizons: bars are read through ``max(horizons) + 1`` trading
            days after the last signal date (clipped to the last stored bar).

    Returns:
        The inputs, with ``date`` columns as ``datetime64[s]``.

    Raises:
        ReportError: ``start`` after ``end``; no signal dated in the range; no observable label for
            any of its signal dates; no bars.
    """
    lo, hi = to_date(start), to_date(end)
    if lo > hi:
        raise ReportError(f"report range: start {lo} is after end {hi}; give start <= end (both inclusive)")
    sds = signal_dataset(lake, strategy)
    signals = read_signals(lake, strategy, lo, hi)
    if signals.empty:
        held = sds.dates() if sds.exists() else []
        raise ReportError(
            f"strategy {strategy!r} has no signals dated in {lo}..{hi} in lake {lake.uri} (its signals cover "
            f"{_span(held)}); the rule: a report needs served signals in its range -- run the daily routine or a "
            f"backfill over the range first, or choose a range inside what is served")
    signals = _as_day64(signals[["date", "symbol", "score", "version"]])
    first, last = signals["date"].min().date(), signals["date"].max().date()
    label = get_label(label_name)
    lds = label_dataset(lake, label)
    labels = lds.read(first, last).to_pandas() if lds.exists() else pd.DataFrame()
    if not labels.empty:
        labels = _as_day64(labels.rename(columns={label.name: "label"})[["date", "symbol", "label"]])
        labels = labels[labels["label"].notna() & labels["date"].isin(set(signals["date"]))]
    if labels.empty:
        known = lds.dates() if lds.exists() else []
        raise ReportError(
            f"strategy {strategy!r}: no observable {label.name} label for its signals of {first}..{last} in lake "
            f"{lake.uri} (labels/{label.name} covers {_span(known)}); the rule: a label of date t is known "
            f"{label.lookahead} trading days after t, and a report needs at least one signal date with a known "
            f"label -- choose an end at least {label.lookahead} sessions before the last stored bar")
    labels = labels.reset_index(drop=True)
    calendar = lake.calendar()
    bars_hi = calendar.shift(calendar.align_end(last), max(horizons) + 1, clip=True)
    bars = lake.read_bars(first, bars_hi, columns=["date", "symbol", "close", "factor"])
    if bars.empty:
        raise ReportError(f"lake {lake.uri} has no bars in {first}..{bars_hi}: the backtests need prices")
    bars = _as_day64(bars)
    parts = []
    versions = prediction_versions(lake, strategy)
    for v in versions:
        preds = read_predictions(lake, strategy, v, first, last)
        if not preds.empty:
            parts.append(_as_day64(preds[["date", "symbol", "score"]]).assign(version=v))
    predictions = (pd.concat(parts, ignore_index=True) if parts else
                   pd.DataFrame({"date": pd.Series(dtype="datetime64[s]"), "symbol": pd.Series(dtype=str),
                                 "score": pd.Series(dtype=np.float64), "version": pd.Series(dtype=np.int64)}))
    generations = {f"signals/{strategy}": sds.manifest().generation,
                   f"labels/{label.name}": lds.manifest().generation, "bars": lake.bars.manifest().generation}
    for v in versions:
        generations[f"predictions/{strategy}/v{v}"] = prediction_dataset(lake, strategy, v).manifest().generation
    logger.info("report %s %s..%s: %d signal rows, %d labels, %d bar rows, %d prediction rows of %d version(s)",
                strategy, lo, hi, len(signals), len(labels), len(bars), len(predictions), len(versions))
    return ReportInputs(strategy, label.name, lo, hi, lake.uri, signals.reset_index(drop=True), labels,
                        bars.reset_index(drop=True), predictions, generations)


# -- the numbers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coverage:
    """What the range holds: signal dates, dates with an observable label, symbols per date."""

    signal_dates: int
    first_signal: str
    last_signal: str
    labelled_dates: int
    last_labelled: str | None
    symbols_min: int
    symbols_max: int
    versions: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"signal_dates": self.signal_dates, "first_signal": self.first_signal,
                "last_signal": self.last_signal, "labelled_dates": self.labelled_dates,
                "last_labelled": self.last_labelled, "symbols_min": self.symbols_min,
                "symbols_max": self.symbols_max, "versions": list(self.versions)}


@dataclass(frozen=True)
class ReportData:
    """Every number of a report (frames are read-only by convention: charts and JSON read them).

    Attributes:
        strategy, label, start, end, lake: what was reported (dates inclusive).
        generated_at: when the numbers were computed (UTC, ISO 8601).
        generations: the manifest generation of each lake dataset read.
        config: the backtests' settings, the rolling window, the horizons.
        coverage: signal and labelled dates, symbols per date, versions.
        ic: the served signal's IC summary (Qlib's: ICIR not annualised).
        daily: ``[date, ic, rank_ic, n, ic_rolling, rank_ic_rolling]``, one row per signal date.
        version_daily: ``[date, version, ic, rank_ic, n]``: each version's predictions against the label.
        versions: ``[version, first_date, last_date, days, ic, icir, rank_ic, rank_icir]``.
        decay: ``[horizon, ic, icir, rank_ic, rank_icir, days]``.
        topk: TopK-dropout's daily frame (``date, gross_return, cost, net_return, turnover, holdings,
            benchmark``).
        long_short: the long-short portfolio's daily frame (same columns).
        performance: ``{"topk_dropout": ..., "long_short": ..., "benchmark": ...}``, each
            ``Performance.to_dict()`` (TopK-dropout net of costs).
        warnings: what a reader must know (a clipped TopK, dates without a label, ...).
    """

    strategy: str
    label: str
    start: date
    end: date
    lake: str
    generated_at: str
    generations: Mapping[str, int]
    config: ReportConfig
    coverage: Coverage
    ic: ICSummary
    daily: pd.DataFrame
    version_daily: pd.DataFrame
    versions: pd.DataFrame
    decay: pd.DataFrame
    topk: pd.DataFrame
    long_short: pd.DataFrame
    performance: Mapping[str, Mapping[str, Any]]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def headline(self) -> dict[str, float]:
        """The numbers runs are compared by (the MLflow metrics), flat: the IC summary, then per
        portfolio ``<portfolio>.<path>`` of :data:`HEADLINE_PERFORMANCE` (undefined ones left out)."""
        out: dict[str, float] = {}
        for key, value in self.ic.to_dict().items():
            if value is not None and _finite(value):
                out[key] = float(value)
        for name, perf in self.performance.items():
            for path in HEADLINE_PERFORMANCE:
                value = lookup(perf, path)
                if _finite(value):
                    out[f"{name}.{path}"] = float(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every number, JSON-ready (NaN and infinities are ``None``; dates ISO)."""
        return {
            "strategy": self.strategy, "label": self.label, "start": self.start.isoformat(),
            "end": self.end.isoformat(), "generated_at": self.generated_at, "lake": self.lake,
            "generations": dict(self.generations), "config": self.config.to_dict(),
            "coverage": self.coverage.to_dict(), "ic": _clean(self.ic.to_dict()),
            "performance": {k: _clean(dict(v)) for k, v in self.performance.items()},
            "ic_decay": _records(self.decay), "versions": _records(self.versions),
            "warnings": list(self.warnings), "headline": self.headline(),
            "daily_ic": _columns(self.daily), "version_ic": _columns(self.version_daily),
            "backtest": {"topk_dropout": _columns(self.topk), "long_short": _columns(self.long_short)},
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (floats as Python prints them: round-trips exactly)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    """``doc["a"]["b"]`` for ``path="a.b"``; ``None`` where a step is missing or ``None``."""
    value: Any = doc
    for step in path.split("."):
        if not isinstance(value, Mapping) or value.get(step) is None:
            return None
        value = value[step]
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) and \
        math.isfinite(float(value))


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).date().isoformat() if not pd.isna(value) else None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return _clean(value)
    return str(value)


def _clean(doc: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): _json_value(v) for k, v in doc.items()}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(row) for row in frame.to_dict(orient="records")]


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A frame as ``{column: [values]}`` (compact for long daily series)."""
    out: dict[str, list[Any]] = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            out[str(name)] = [d.isoformat() if d is not None else None
                              for d in (x.date() if not pd.isna(x) else None for x in col)]
        else:
            out[str(name)] = [_json_value(v) for v in col.tolist()]
    return out


def _version_summary(version_daily: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _version, g in version_daily.groupby("version", sort=True):
        s = summarize_ic(g)
        rows.append({"version": int(g["version"].iloc[0]), "first_date": g["date"].min(), "last_date": g["date"].max(),
                     "days": s.days, "ic": s.ic, "icir": s.icir, "rank_ic": s.rank_ic, "rank_icir": s.rank_icir})
    columns = ["version", "first_date", "last_date", "days", "ic", "icir", "rank_ic", "rank_icir"]
    return pd.DataFrame(rows, columns=columns)


def universe_sizes(signals: pd.DataFrame, bars: pd.DataFrame) -> pd.Series:
    """The backtests' universe size per signal date: symbols with a finite score on ``t`` and a bar on
    the execution date ``t+1`` (the next date of the bars' calendar). Only the dates a backtest
    covers: those with two trading dates after them.

    Args:
        signals: ``[date, symbol, score]`` (``date`` as ``datetime64``).
        bars: ``[date, symbol, close, factor]``; a NaN close or factor is no bar.

    Returns:
        An int Series indexed by signal date, ascending.
    """
    present = bars.loc[bars["close"].notna() & bars["factor"].notna(), ["date", "symbol"]]
    calendar = np.unique(bars["date"].to_numpy())
    days = np.unique(signals["date"].to_numpy())
    pos = np.searchsorted(calendar, days)
    nxt = {d: calendar[p + 1] for d, p in zip(days, pos, strict=True)
           if p + 2 < len(calendar) and calendar[p] == d}
    scored = signals.loc[signals["score"].notna() & signals["date"].isin(list(nxt)), ["date", "symbol"]]
    scored = scored.assign(exec_date=scored["date"].map(nxt).astype(present["date"].dtype))
    traded = scored.merge(present.rename(columns={"date": "exec_date"}), on=["exec_date", "symbol"], how="inner")
    sizes = traded.groupby("date")["symbol"].nunique().reindex(list(nxt), fill_value=0)
    return sizes.astype(np.int64).sort_index()


def _small_universe_text(small: pd.Series, total: int, cfg: BacktestConfig) -> str:
    head = small.head(_SMALL_UNIVERSE_SHOWN)
    shown = ", ".join(f"{pd.Timestamp(d).date()} ({int(n)} symbols)"
                      for d, n in zip(head.index.to_numpy(), head.to_numpy(), strict=True))
    more = f" and {len(small) - _SMALL_UNIVERSE_SHOWN} more" if len(small) > _SMALL_UNIVERSE_SHOWN else ""
    return (f"backtest_topk={cfg.topk} (n_drop={cfg.n_drop}) is larger than the universe (symbols with a signal "
            f"and a bar on the next trading date) on {len(small)} of {total} backtested date(s): {shown}{more}")


def build_report(inputs: ReportInputs, config: ReportConfig | None = None, *,
                 generated_at: datetime | None = None) -> ReportData:
    """Compute every number of the report from its inputs (pure: no I/O).

    Args:
        inputs: from :func:`load_report_inputs`.
        config: backtest settings, rolling window, horizons (default: :class:`ReportConfig` defaults).
        generated_at: the timestamp shown (default: now, UTC).

    Returns:
        The report's numbers.

    Raises:
        ReportError: ``topk`` larger than the universe on some date and ``on_small_universe`` is
            ``"refuse"`` (names the dates).
    """
    cfg = config or ReportConfig()
    bt = cfg.backtest
    sig = inputs.signals[["date", "symbol", "score"]]
    warnings: list[str] = []

    frame = sig.merge(inputs.labels, on=["date", "symbol"], how="left")
    daily = daily_ic(frame)
    summary = summarize_ic(daily)
    daily["ic_rolling"] = rolling_mean(daily, "ic", cfg.rolling_window).to_numpy()
    daily["rank_ic_rolling"] = rolling_mean(daily, "rank_ic", cfg.rolling_window).to_numpy()
    unlabelled = daily.loc[daily["n"] == 0, "date"]
    if len(unlabelled):
        warnings.append(f"{len(unlabelled)} signal date(s) have no observable {inputs.label} yet "
                        f"({_span([d.date() for d in unlabelled])}): they count as no IC")

    if inputs.predictions.empty:
        version_daily = pd.DataFrame({"date": pd.Series(dtype="datetime64[s]"), "version": pd.Series(dtype=np.int64),
                                      "ic": pd.Series(dtype=np.float64), "rank_ic": pd.Series(dtype=np.float64),
                                      "n": pd.Series(dtype=np.int64)})
        warnings.append(f"no predictions/{inputs.strategy}/v<N>/ rows in the range: no IC per model version")
    else:
        version_daily = ic_by_version(inputs.predictions, inputs.labels)
    versions = _version_summary(version_daily)

    fwd = forward_returns(inputs.bars, cfg.horizons)
    decay = ic_decay(sig, fwd)

    sizes_traded = universe_sizes(sig, inputs.bars)
    small = sizes_traded[sizes_traded < bt.topk]
    n_dates = int(sig["date"].nunique())
    if len(small):
        text = _small_universe_text(small, len(sizes_traded), bt)
        if bt.on_small_universe == "refuse":
            raise ReportError(f"{text}; on_small_universe=refuse: lower backtest_topk (and backtest_n_drop) to at "
                              f"most {int(small.min())}, or let the backtest clip")
        warnings.append(f"{text}: TopK-dropout uses all of them on those dates (on_small_universe=clip)")
    topk = topk_dropout(sig, inputs.bars, bt)
    ls = long_short(sig, inputs.bars, bt)
    bench = topk.daily.set_index("date")["benchmark"]
    perf = {"topk_dropout": _perf_dict(topk, bt.annualization), "long_short": _perf_dict(ls, bt.annualization),
            "benchmark": performance(bench, None, bt.annualization).to_dict()}

    sizes = sig.dropna(subset=["score"]).groupby("date")["symbol"].nunique()
    labelled = daily.loc[daily["n"] > 0, "date"]
    coverage = Coverage(
        signal_dates=n_dates, first_signal=str(sig["date"].min().date()), last_signal=str(sig["date"].max().date()),
        labelled_dates=int(len(labelled)), last_labelled=str(labelled.max().date()) if len(labelled) else None,
        symbols_min=int(sizes.min()) if len(sizes) else 0, symbols_max=int(sizes.max()) if len(sizes) else 0,
        versions=tuple(int(v) for v in sorted(inputs.predictions["version"].unique())),
    )
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    return ReportData(
        strategy=inputs.strategy, label=inputs.label, start=inputs.start, end=inputs.end, lake=inputs.lake,
        generated_at=when, generations=dict(inputs.generations), config=cfg, coverage=coverage, ic=summary,
        daily=daily, version_daily=version_daily, versions=versions, decay=decay, topk=topk.daily,
        long_short=ls.daily, performance=perf, warnings=tuple(warnings),
    )


def _perf_dict(result: BacktestResult, annualization: int) -> dict[str, Any]:
    return dict(result.summary(annualization).to_dict())


# -- files ------------------------------------------------------------------------------------------
Kind = Literal["html", "json"]


def default_output_dir(strategy: str, start: date, end: date, cwd: Path | None = None) -> Path:
    """``reports/<strategy>_<start>_<end>/`` under the working directory."""
    return (cwd or Path.cwd()) / "reports" / f"{strategy}_{start.isoformat()}_{end.isoformat()}"


def check_output_dir(out: Path) -> Path:
    """Make sure the report's files can be written under ``out`` without creating anything yet.

    The folder need not exist: its nearest existing ancestor must be a folder a file can be
    created in (checked with a probe file, removed at once, so a read-only mount is caught too).

    Raises:
        ReportError: ``out`` or an ancestor is a file, the report's files are folders, or nothing
            can be created there (names the folder and the reason).
    """
    out = out.expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ReportError(f"output folder {out} is a file; the rule: --out must be a folder (new or existing) "
                          f"the report can write {REPORT_HTML} and {REPORT_JSON} in")
    for name in (REPORT_HTML, REPORT_JSON):
        if (out / name).is_dir():
            raise ReportError(f"output folder {out}: {name} there is a folder; the report cannot replace it")
    probe_dir = out
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise ReportError(f"output folder {out} cannot be created: {probe_dir} is a file, not a folder; the rule: "
                          f"--out must be a folder the report can write in")
    try:
        fd, probe = tempfile.mkstemp(prefix=".qonline-report-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ReportError(f"output folder {out} cannot be written: creating a file in {probe_dir} failed "
                          f"({exc.strerror or exc}); choose another --out") from exc
    return out


def write_report_files(out: Path, html: str, json_text: str) -> dict[Kind, Path]:
    """Write ``report.html`` and ``report.json`` into ``out`` (created), each atomically (temp file + rename).

    Raises:
        ReportError: the folder or a file cannot be written.
    """
    written: dict[Kind, Path] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for kind, name, text in (("json", REPORT_JSON, json_text), ("html", REPORT_HTML, html)):
            target = out / name
            tmp = out / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
            written[kind] = target  # type: ignore[index]
    except OSError as exc:
        raise ReportError(f"output folder {out} cannot be written: {exc}") from exc
    return written


# -- MLflow -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportRun:
    """The MLflow run that keeps a report: its ids and a link to it (``None`` without a UI URL)."""

    run_id: str
    experiment_id: str
    url: str | None


def run_url(ui_url: str | None, tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI's page of a run: ``ui_url``, else the tracking URI when it is a server (http/https)."""
    base = ui_url or (tracking_uri if tracking_uri.startswith(("http://", "https://")) else None)
    if base is None:
        return None
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def log_report_run(registry: ModelRegistry, data: ReportData, files: Sequence[Path],
                   ui_url: str | None = None) -> ReportRun:
    """Log a report as a finished run of the strategy's experiment: tag ``qonline.kind=report``,
    params ``start``/``end``/``strategy``/``label`` and the backtest settings, the headline numbers as
    metrics, ``files`` as artifacts under ``report/``.

    A failure deletes the half-made run and raises :class:`ReportError`.
    """
    from mlflow.entities import Metric, Param

    exp_id = registry.experiment_id(data.strategy)
    client = registry.client
    run = client.create_run(exp_id, run_name=f"report {data.strategy} {data.start}..{data.end}",
                            tags={KIND_TAG: KIND_REPORT, "strategy": data.strategy})
    run_id = run.info.run_id
    try:
        params = {"start": data.start.isoformat(), "end": data.end.isoformat(), "strategy": data.strategy,
                  "label": data.label, **{k: json.dumps(v) if isinstance(v, list) else str(v)
                                          for k, v in data.config.to_dict().items()}}
        now = int(datetime.now(UTC).timestamp() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in data.headline().items()]
        client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path="report")
        client.set_terminated(run_id, "FINISHED")
    except Exception as exc:
        try:
            client.set_terminated(run_id, "FAILED")
            client.delete_run(run_id)
        except Exception:  # the original error matters more
            logger.warning("could not delete the failed report run %s", run_id, exc_info=True)
        raise ReportError(f"MLflow ({registry.tracking_uri}): logging the report run failed: {exc}") from exc
    return ReportRun(run_id, exp_id, run_url(ui_url, registry.tracking_uri, exp_id, run_id))


# -- summary tables (HTML, terminal, Prefect artifact) ----------------------------------------------
Fmt = Literal["pct", "num", "ic", "int"]
#: the performance table's rows: (label, path into ``Performance.to_dict()``, format)
PERFORMANCE_ROWS: tuple[tuple[str, str, Fmt], ...] = (
    ("annualised return (mean daily return x N)", "returns.annualized_return", "pct"),
    ("information ratio (mean / std x sqrt N)", "returns.information_ratio", "num"),
    ("max drawdown (summed returns, Qlib)", "returns.max_drawdown", "pct"),
    ("CAGR (compounded)", "cagr", "pct"),
    ("Sharpe ratio (no risk-free rate)", "sharpe", "num"),
    ("max drawdown (compounded value)", "max_drawdown", "pct"),
    ("excess annualised return vs equal weight", "excess_return_with_cost.annualized_return", "pct"),
    ("excess information ratio vs equal weight", "excess_return_with_cost.information_ratio", "num"),
    ("excess annualised return, before costs", "excess_return_without_cost.annualized_return", "pct"),
    ("mean daily turnover", "mean_turnover", "pct"),
    ("days", "days", "int"),
)
#: the portfolios of the performance table: (key in ``ReportData.performance``, column title)
PORTFOLIOS: tuple[tuple[str, str], ...] = (
    ("topk_dropout", "TopK-dropout (net)"), ("long_short", "long-short (net)"), ("benchmark", "equal weight"),
)
IC_ROWS: tuple[tuple[str, str, Fmt], ...] = (
    ("IC (mean daily Pearson)", "ic", "ic"), ("ICIR (mean / std, not annualised)", "icir", "num"),
    ("rank IC (mean daily Spearman)", "rank_ic", "ic"), ("rank ICIR", "rank_icir", "num"),
    ("share of days with IC > 0", "ic_positive", "pct"), ("share of days with rank IC > 0", "rank_ic_positive", "pct"),
    ("days with an IC", "days", "int"),
)


def fmt(value: Any, kind: Fmt) -> str:
    """A number as the report shows it; an undefined one as an en dash."""
    if not _finite(value):
        return "\u2013"
    v = float(value)
    if kind == "pct":
        return f"{v * 100:.2f}%"
    if kind == "ic":
        return f"{v:.4f}"
    if kind == "int":
        return f"{int(v)}"
    return f"{v:.2f}"


def ic_table(data: ReportData) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the served signal's IC summary."""
    doc = data.ic.to_dict()
    return [(label, fmt(doc.get(key), kind)) for label, key, kind in IC_ROWS]


def performance_table(data: ReportData) -> list[tuple[str, ...]]:
    """``(label, TopK-dropout, long-short, equal weight)`` rows of the performance table."""
    rows: list[tuple[str, ...]] = []
    for label, path, kind in PERFORMANCE_ROWS:
        cells = [fmt(lookup(data.performance.get(key, {}), path), kind) for key, _title in PORTFOLIOS]
        rows.append((label, *cells))
    return rows
