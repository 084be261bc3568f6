"""Filesystems behind URIs: local folders (``file://`` or plain paths) and S3-compatible stores.

Everything that touches object storage goes through :func:`resolve`, which returns a
``pyarrow.fs.FileSystem`` and a path inside it. We use pyarrow's filesystems for both reading and
writing (STACK.md: mixing pyarrow's S3 writes with s3fs reads breaks on directory markers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from quant_core.errors import ConfigError
from quant_core.settings import S3Options

Resolver = Callable[[str], tuple[pafs.FileSystem, str]]


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def s3_filesystem(options: S3Options) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem for AWS or an S3-compatible endpoint (MinIO, SeaweedFS)."""
    kwargs: dict[str, object] = {
        "region": options.region,
        "connect_timeout": options.connect_timeout,
        "request_timeout": options.request_timeout,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    if options.endpoint_url:
        parsed = urlparse(options.endpoint_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f"s3_endpoint_url {options.endpoint_url!r} must look like http(s)://host:port"
            )
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    if options.access_key_id is not None and options.secret_access_key is not None:
        kwargs["access_key"] = options.access_key_id.get_secret_value()
        kwargs["secret_key"] = options.secret_access_key.get_secret_value()
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str, s3: S3Options | None = None) -> tuple[pafs.FileSystem, str]:
    """Turn a URI into ``(filesystem, path)``.

    Args:
        uri: ``s3://bucket/prefix``, ``file:///abs/path`` or a local path (relative paths are
            resolved against the working directory).
        s3: connection options for ``s3://`` URIs (endpoint, credentials, region).
    """
    if is_s3(uri):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ConfigError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        path = f"{parsed.netloc}/{parsed.path.lstrip('/')}".rstrip("/")
        return s3_filesystem(s3 or S3Options()), path
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"{uri!r}: unsupported URI scheme (use a path, file:// or s3://)")
    local = Path(uri.removeprefix("file://")).expanduser().resolve()
    return pafs.LocalFileSystem(), local.as_posix()


def make_resolver(s3: S3Options | None) -> Resolver:
    """A :data:`Resolver` bound to S3 options, for sources that read ``s3://`` paths."""

    def _resolve(uri: str) -> tuple[pafs.FileSystem, str]:
        return resolve(uri, s3)

    return _resolve
