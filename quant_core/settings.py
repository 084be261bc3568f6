"""The one settings object of qonline: the only module that reads the environment.

Precedence, highest first: explicit overrides (CLI flags) > ``QONLINE_*`` environment variables >
the YAML config file (``--config FILE`` or ``QONLINE_CONFIG``) > defaults. Secrets are
:class:`pydantic.SecretStr` and never appear in ``repr``, logs or artifacts.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from quant_core.errors import ConfigError

DEFAULT_SOURCE = "synthetic:symbols=50,start=2019-01-01,end=2023-12-29,seed=7"


class S3Options(BaseModel):
    """How to reach an S3-compatible object store (AWS S3, MinIO, SeaweedFS)."""

    model_config = ConfigDict(frozen=True)

    endpoint_url: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    region: str = "us-east-1"
    connect_timeout: float = 3.0
    request_timeout: float = 30.0


class Settings(BaseSettings):
    """qonline's configuration. Every field maps to ``QONLINE_<FIELD>`` and to a YAML key."""

    model_config = SettingsConfigDict(
        env_prefix="QONLINE_", extra="forbid", frozen=True, populate_by_name=True
    )

    config: Path | None = Field(default=None, description="YAML config file that was loaded")
    lake_uri: str = Field(default="lake", description="lake root: a folder, file:// or s3://bucket/prefix")
    s3_endpoint_url: str | None = None
    aws_access_key_id: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QONLINE_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "aws_access_key_id")
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "QONLINE_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"
        ),
    )
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("QONLINE_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"),
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="default: sqlite file beside the lake (local lakes) or in .qonline/"
    )
    mlflow_artifact_uri: str | None = Field(
        default=None, description="artifact root for new experiments (file:// or s3://); default beside the sqlite db"
    )
    lake_keep_generations: int = Field(
        default=30, ge=1, description="manifest generations of each lake dataset kept readable (version=)"
    )
    exchange: str = Field(
        default="none",
        description="exchange calendar deciding which days are sessions (XSHG, XNYS, ...; none = the source's days)",
    )
    redis_url: SecretStr | None = Field(default=None, description="redis://[:password@]host:port/db")
    redis_prefix: str = Field(default="qonline", pattern=r"^[A-Za-z0-9_.\-]+$", description="Redis key prefix")
    redis_retention_days: int = Field(default=30, ge=1, description="days an older signal snapshot stays readable")
    redis_stream_maxlen: int = Field(default=10_000, ge=10, description="approximate length cap of the events stream")
    lake_lock_wait_seconds: float = Field(
        default=600.0, ge=0,
        description="how long a run that writes the lake waits for another one (backfill, daily run) to finish",
    )
    prefect_concurrency_limit: str | None = Field(
        default=None,
        description="a Prefect global concurrency limit (limit 1) that every run writing the lake holds, beside the "
                    "lake's own writer lease (deployments: qonline-lake-writer)",
    )
    combined_signals: dict[str, list[str]] = Field(
        default_factory=dict, description="{name: [strategies]}: AverageEnsemble signals across strategies"
    )
    source: str = Field(default=DEFAULT_SOURCE, description="source spec the daily routine extracts from")
    num_threads: int = Field(default=1, ge=1, description="LightGBM threads per model")
    feature_threads: int | None = Field(
        default=None, ge=1, description="threads of the feature kernels (default: every CPU; results identical)"
    )
    max_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_abs_log_return: float = Field(default=2.0, gt=0, description="validation: |log adjusted return| bound")
    row_count_tolerance: float = Field(default=0.25, ge=0, lt=1, description="validation: rows per date")
    strategies: dict[str, Any] = Field(default_factory=dict, description="strategy definitions (YAML)")
    # evaluation: reports and the backtest (defaults as Qlib's PortAnaRecord / risk_analysis)
    annualization: int = Field(default=238, ge=1, description="trading days per year for annualised figures "
                                                              "(238 as Qlib, 252 also common)")
    backtest_topk: int = Field(default=50, ge=1, description="TopK-dropout: symbols held")
    backtest_n_drop: int = Field(default=5, ge=0, description="TopK-dropout: symbols replaced per day at most")
    open_cost_bps: float = Field(default=5.0, ge=0, description="cost of buying, in basis points of the value bought")
    close_cost_bps: float = Field(default=15.0, ge=0, description="cost of selling, in basis points of the value sold")
    # live monitoring: the decay alert on the served signal's rolling rank IC
    decay_window: int = Field(default=20, ge=2, description="dates in the served signal's rolling rank IC")
    decay_threshold: float = Field(default=0.0, ge=-1, le=1,
                                   description="decay alert when the rolling rank IC stays below this value")
    decay_days: int = Field(default=5, ge=1, description="consecutive monitored dates below the threshold that "
                                                         "raise the decay alert")
    mlflow_ui_url: str | None = Field(default=None, description="base URL of the MLflow UI for links in artifacts "
                                                                "(default: the tracking URI when it is http(s))")

    @field_validator("lake_uri")
    @classmethod
    def _lake_uri_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("lake_uri must not be empty")
        return value.strip()

    @field_validator("exchange")
    @classmethod
    def _exchange_code(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == "none":
            return "none"
        if not value or not all(c.isalnum() or c in "_-/" for c in value):
            raise ValueError(f"{value!r} is not an exchange code (a MIC such as XSHG or XNYS, or none)")
        return value.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings

    @cached_property
    def s3(self) -> S3Options:
        """S3 connection options assembled from the flat settings."""
        return S3Options(
            endpoint_url=self.s3_endpoint_url,
            access_key_id=self.aws_access_key_id,
            secret_access_key=self.aws_secret_access_key,
            region=self.aws_region,
        )

    @property
    def lake_is_local(self) -> bool:
        return not self.lake_uri.startswith("s3://")

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        """The tracking URI: the configured one, or a sqlite file beside a local lake."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.lake_is_local:
            lake = Path(self.lake_uri.removeprefix("file://")).resolve()
            return f"sqlite:///{lake.parent / (lake.name + '-mlflow.db')}"
        return f"sqlite:///{Path('.qonline').resolve() / 'mlflow.db'}"

    def redacted(self) -> dict[str, Any]:
        """Settings as a JSON-able dict with secrets shown as ``**********``."""
        return self.model_dump(mode="json", exclude={"strategies"})


#: settings whose override of a config file's value is logged (once per process and value)
_SAID_ONCE = frozenset({"lake_uri", "source", "mlflow_tracking_uri"})
_said: set[str] = set()


def _say_once(message: str) -> None:
    import logging

    if message not in _said:
        _said.add(message)
        logging.getLogger(__name__).warning(message)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of setting names to values")
    return data


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and an optional YAML file.

    Args:
        config_file: YAML file with the same keys as the settings (``lake_uri``, ``source``, ...)
            and ``strategies``. ``None`` falls back to ``QONLINE_CONFIG`` when it is set.
        **overrides: values that win over everything else (``None`` values are ignored).

    Raises:
        ConfigError: the file cannot be read or parsed, or a value breaks a rule (names the key).
    """
    path_value = config_file if config_file is not None else os.environ.get("QONLINE_CONFIG")
    file_values: dict[str, Any] = {}
    if path_value:
        path = Path(path_value)
        file_values = _read_yaml(path)
        file_values["config"] = path
    env_keys = {k.lower().removeprefix("qonline_") for k in os.environ if k.startswith("QONLINE_")}
    alias_env = {
        "aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
        "aws_region": "AWS_REGION",
    }
    env_keys |= {field for field, var in alias_env.items() if var in os.environ}
    if "AWS_DEFAULT_REGION" in os.environ:
        env_keys.add("aws_region")
    # the file is the lowest layer: drop its keys the environment sets, then apply overrides
    init = {k: v for k, v in file_values.items() if k not in env_keys or k == "config"}
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        if key in file_values and file_values[key] != value and key in _SAID_ONCE:
            _say_once(f"{key}: the command line's {value!r} wins over {file_values[key]!r} from config file "
                      f"{path_value}")
    init.update(given)
    try:
        return Settings(**init)
    except ValidationError as exc:
        where = f"config file {path_value}" if path_value else "settings"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}: invalid value(s): {problems}") from exc
