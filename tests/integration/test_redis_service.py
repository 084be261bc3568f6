"""The private redis-server the quickstart and the tests start when QONLINE_REDIS_URL is unset."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
import redis

from flows.local_services import private_redis

pytestmark = pytest.mark.integration


def test_private_redis_starts_serves_and_stops() -> None:
    with private_redis() as url:
        parsed = urlparse(url)
        assert parsed.hostname == "127.0.0.1"
        client = redis.Redis.from_url(url.replace("/0", "/1"))
        assert client.ping()
        client.set("qonline:probe", "1")
        assert client.get("qonline:probe") == b"1"
        assert client.config_get("save")["save"] == ""  # keeps nothing on disk
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(0.5)
        s.connect(("127.0.0.1", parsed.port or 0))


def test_session_redis_is_never_db0_of_a_foreign_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    db = urlparse(redis_url).path.lstrip("/") or "0"
    started_by_us = client.config_get("dir")["dir"].rsplit("/", 1)[-1].startswith("qonline-redis-")
    assert started_by_us or db != "0"
