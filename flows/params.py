"""What flows share at their boundary: typed parameters for the Prefect UI, and the run's settings.

Deployment parameters are validated by the Prefect server against the flow's parameter schema
before a run is created, so the schema carries the rules a person filling the UI form must meet:
dates are dates, a chunk size has bounds, and a strategy is one of the strategies configured
where the deployment was made (an enum; redeploy after adding one). In-process calls (the CLI)
keep plain strings and get qonline's own error for an unknown name.

Secrets never travel as parameters: they come from the environment, the config file or a Prefect
Secret block, named in a setting as ``prefect-secret:<block name>`` and resolved here, in the flow.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Any

from pydantic import Field, SecretStr, WithJsonSchema

from quant_core.errors import ConfigError, QonlineError
from quant_core.models.strategy import load_strategies
from quant_core.online.backfill import MAX_CHUNK
from quant_core.settings import Settings, load_settings

logger = logging.getLogger(__name__)
SECRET_PREFIX = "prefect-secret:"
SECRET_FIELDS = ("redis_url", "aws_access_key_id", "aws_secret_access_key")


def configured_strategy_names() -> list[str]:
    """The strategies of this environment's settings (shipped ones too); the shipped ones if those are broken."""
    try:
        return sorted(load_strategies(load_settings().strategies))
    except (QonlineError, ValueError) as exc:
        logger.warning("deployment parameter schema: the configured strategies cannot be read (%s); "
                       "offering the shipped ones", exc)
        return sorted(load_strategies(None))


StrategyName = Annotated[str, WithJsonSchema({"type": "string", "title": "Strategy",
                                              "enum": configured_strategy_names()})]
ChunkSize = Annotated[int, Field(ge=1, le=MAX_CHUNK, description="sessions served per batch")]
#: an ISO date; the pattern makes the server refuse anything else (it does not enforce "format")
Day = Annotated[date, WithJsonSchema({"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"})]


def flow_settings(config: str | None, **overrides: Any) -> Settings:
    """The run's settings: ``load_settings`` plus any ``prefect-secret:<name>`` reference resolved.

    Raises:
        ConfigError: a referenced Secret block does not exist or cannot be read (names the setting).
    """
    settings = load_settings(config, **overrides)
    update: dict[str, SecretStr] = {}
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value().startswith(SECRET_PREFIX):
            block = value.get_secret_value()[len(SECRET_PREFIX):]
            update[name] = SecretStr(_read_secret_block(name, block))
    return settings.model_copy(update=update) if update else settings


def _read_secret_block(setting: str, block: str) -> str:
    from prefect.blocks.system import Secret

    try:
        loaded: Any = Secret.load(block)  # the sync call outside an event loop
        value = loaded.get()
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"setting {setting} names the Prefect Secret block {block!r}, which cannot be loaded "
                          f"({type(exc).__name__}); create it with `prefect block create secret` or the UI") from exc
    return str(value)
