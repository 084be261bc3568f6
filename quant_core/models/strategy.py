"""Strategies: a template rolling task, RollingGen parameters and an ensemble, configured in YAML.

The default ``lgb_alpha158`` ships with the package; more come from the settings' ``strategies``
mapping (the YAML config file). Template segments are explicit dates or relative to ``as_of``.
"""

from __future__ import annotations

from datetime import date
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quant_core.calendar import TradingCalendar, to_date
from quant_core.errors import ConfigError
from quant_core.features.labels import get_label
from quant_core.models.rolling import ProcessorSpec, RollingGen, RollingTask, Segment, Segments

DEFAULT_STRATEGY = "lgb_alpha158"
#: strategies shipped in quant_core/models/strategies/ (a configured strategy of the same name overrides one)
BUILTIN_STRATEGIES = ("lgb_alpha158", "lgb_alpha158_qlib", "lgb_light")
#: keys of the model mapping that steer training rather than LightGBM itself
TRAINING_KEYS = frozenset({"num_boost_round", "early_stopping_rounds"})


class RelativeSegments(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    test_years: int = Field(default=2, ge=1)
    valid_years: int = Field(default=1, ge=1)


class SegmentTemplate(BaseModel):
    """Either explicit ``dates`` ({train: [s, e], valid: [s, e], test: [s, e|null]}) or ``relative``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    dates: dict[str, tuple[date, date | None]] | None = None
    relative: RelativeSegments | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SegmentTemplate:
        if (self.dates is None) == (self.relative is None):
            raise ValueError("segments need exactly one of 'dates' or 'relative'")
        if self.dates is not None and set(self.dates) != {"train", "valid", "test"}:
            raise ValueError(f"segments.dates needs train, valid and test, got {sorted(self.dates)}")
        return self

    def resolve(self, calendar: TradingCalendar, as_of: date) -> Segments:
        """Concrete segments for a calendar and an ``as_of`` date (relative specs count back from it)."""
        if self.dates is not None:
            d = self.dates
            return Segments(
                train=Segment(start=d["train"][0], end=d["train"][1]),
                valid=Segment(start=d["valid"][0], end=d["valid"][1]),
                test=Segment(start=d["test"][0], end=d["test"][1]),
            )
        assert self.relative is not None
        rel = self.relative
        test_start = _years_before(as_of, rel.test_years)
        valid_start = _years_before(test_start, rel.valid_years)
        first = calendar.first
        if valid_start <= first:
            raise ConfigError(
                f"relative segments need bars from before {valid_start} (train before the valid year); "
                f"the lake starts on {first}: ingest at least {rel.test_years + rel.valid_years} years plus "
                f"some training history before {as_of}"
            )
        before_valid = calendar.align_end(date.fromordinal(valid_start.toordinal() - 1))
        before_test = calendar.align_end(date.fromordinal(test_start.toordinal() - 1))
        return Segments(
            train=Segment(start=first, end=before_valid),
            valid=Segment(start=valid_start, end=before_test),
            test=Segment(start=test_start, end=None),
        )


def _years_before(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


class RollingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    step: int = 20
    rtype: Literal["expanding", "sliding"] = "expanding"
    trunc_days: int | None = None


class GateConfig(BaseModel):
    """A quality gate: a new version serves only if its validation metrics reach these bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    min_valid_rank_ic: float | None = None
    min_valid_ic: float | None = None


class StrategyConfig(BaseModel):
    """One strategy: what to learn, how to roll it, how to combine its models."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    feature_set: str = "alpha158"
    label: str = "LABEL0"
    processors: tuple[ProcessorSpec, ...] = ()
    model: dict[str, Any] = Field(default_factory=dict)
    rolling: RollingConfig = RollingConfig()
    segments: SegmentTemplate = SegmentTemplate(relative=RelativeSegments())
    ensemble: Literal["rolling", "average"] = "rolling"
    gate: GateConfig = GateConfig()

    def rolling_gen(self) -> RollingGen:
        """The RollingGen; ``trunc_days`` defaults to the label's lookahead + 1 (no leak)."""
        lookahead = get_label(self.label).lookahead
        trunc = self.rolling.trunc_days if self.rolling.trunc_days is not None else lookahead + 1
        return RollingGen(step=self.rolling.step, rtype=self.rolling.rtype, trunc_days=trunc,
                          label_lookahead=lookahead)

    def template(self, calendar: TradingCalendar, as_of: date | str) -> RollingTask:
        """The template task with segments resolved against ``calendar`` and ``as_of``."""
        return RollingTask(
            strategy=self.name, feature_set=self.feature_set, label=self.label, processors=self.processors,
            model_params=dict(self.model), segments=self.segments.resolve(calendar, to_date(as_of)),
        )

    def tasks(self, calendar: TradingCalendar, as_of: date | str) -> list[RollingTask]:
        """Every rolling task up to ``as_of`` (Qlib's ``first_tasks``), on the calendar known at ``as_of``."""
        d = calendar.align_end(to_date(as_of))
        known = TradingCalendar(calendar.range(None, d))
        return self.rolling_gen().generate(self.template(known, d), known, end=d)


def _builtin(name: str) -> dict[str, Any]:
    text = resources.files("quant_core.models.strategies").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def load_strategies(configured: dict[str, Any] | None = None) -> dict[str, StrategyConfig]:
    """The shipped strategies plus those of the settings (a configured name overrides a shipped one).

    Raises:
        ConfigError: a strategy definition breaks a rule (names the strategy and the field).
    """
    raw: dict[str, dict[str, Any]] = {name: _builtin(name) for name in BUILTIN_STRATEGIES}
    for name, body in (configured or {}).items():
        if not isinstance(body, dict):
            raise ConfigError(f"strategy {name!r}: expected a mapping, got {type(body).__name__}")
        raw[name] = {**body, "name": body.get("name", name)}
    out: dict[str, StrategyConfig] = {}
    for name, body in raw.items():
        try:
            out[name] = StrategyConfig(**body)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"strategy {name!r}: {problems}") from exc
    return out


def get_strategy(name: str, configured: dict[str, Any] | None = None) -> StrategyConfig:
    strategies = load_strategies(configured)
    if name not in strategies:
        raise ConfigError(f"unknown strategy {name!r}; configured: {sorted(strategies)}")
    return strategies[name]
