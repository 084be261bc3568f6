"""Shared fixtures: where ../shared lives, and tests that need it are skipped nowhere (they fail loudly)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's shared folder: ``$QONLINE_SHARED_DIR`` or ``../shared`` beside the checkout."""
    path = Path(os.environ.get("QONLINE_SHARED_DIR", REPO_ROOT.parent / "shared"))
    if not (path / "data").is_dir():
        raise RuntimeError(f"shared data folder not found at {path} (set QONLINE_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()


@pytest.fixture(scope="session")
def golden_dir(shared: Path) -> Path:
    return shared / "data" / "golden"


@pytest.fixture(scope="session")
def csi300_path(shared: Path) -> Path:
    return shared / "data" / "real" / "csi300_2020_2025" / "csi300_2020_2025.parquet"


# -- services ---------------------------------------------------------------------------------------
from collections.abc import Iterator  # noqa: E402

from quant_core.runtime_env import apply_process_environment  # noqa: E402

apply_process_environment()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for tests: ``QONLINE_REDIS_URL`` when set (never its db 0), else a private server."""
    configured = os.environ.get("QONLINE_REDIS_URL")
    if configured:
        from urllib.parse import urlparse

        parsed = urlparse(configured)
        db = parsed.path.lstrip("/") or "0"
        if db == "0":
            # we did not start this server: never touch its database 0
            configured = parsed._replace(path="/15").geturl()
        yield configured
        return
    from flows.local_services import private_redis

    with private_redis() as url:
        yield url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    """A real S3-compatible server (SeaweedFS) on free loopback ports, for the whole session."""
    from tests.support.s3_server import seaweedfs

    with seaweedfs() as server:
        yield server


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API (sqlite) for flow tests; started once per session."""
    from prefect.logging.configuration import setup_logging
    from prefect.testing.utilities import prefect_test_harness

    # configure Prefect's console handlers now, on pytest's streams: configured lazily inside a
    # CliRunner invocation they would keep writing to that invocation's closed stream
    setup_logging()
    with prefect_test_harness(server_startup_timeout=180):
        yield
