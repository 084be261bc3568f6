"""Secrets from Prefect Secret blocks: a setting names the block, the flow resolves it, nothing else sees it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from flows.params import flow_settings
from quant_core.errors import ConfigError

pytestmark = pytest.mark.integration


def test_a_setting_naming_a_secret_block_is_resolved_in_the_flow(tmp_path: Path, prefect_server: None,
                                                                  redis_url: str) -> None:
    from prefect.blocks.system import Secret

    from quant_core.online.redis_sink import connect

    name = f"qonline-redis-{uuid.uuid4().hex[:8]}"
    Secret(value=redis_url).save(name)
    cfg = tmp_path / "q.yaml"
    cfg.write_text(yaml.safe_dump({"lake_uri": str(tmp_path / "lake"), "redis_url": f"prefect-secret:{name}",
                                   "aws_secret_access_key": f"prefect-secret:{name}"}))
    settings = flow_settings(str(cfg))
    assert settings.redis_url is not None and settings.redis_url.get_secret_value() == redis_url
    assert connect(settings.redis_url.get_secret_value()).ping()
    assert redis_url not in repr(settings) and redis_url not in str(settings.redacted())
    # a block that does not exist is named, with how to create it
    cfg.write_text(yaml.safe_dump({"lake_uri": str(tmp_path / "lake"), "redis_url": "prefect-secret:no-such-block"}))
    with pytest.raises(ConfigError, match=r"setting redis_url names the Prefect Secret block 'no-such-block'"):
        flow_settings(str(cfg))
