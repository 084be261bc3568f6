"""Data sources: where daily bars come from (DESIGN.md stage "extract").

A source is named by a *spec*, ``scheme:body``:

- ``synthetic:symbols=N,start=YYYY-MM-DD,end=YYYY-MM-DD,seed=S`` -- a deterministic simulated market
  with a planted, learnable signal (:mod:`quant_core.data.sources.synthetic`);
- ``parquet:PATH`` and ``csv:PATH`` -- a file, or a folder searched recursively, local or ``s3://``
  (:mod:`quant_core.data.sources.files`);
- ``qlib:PATH`` -- a Qlib binary data directory (:mod:`quant_core.data.sources.qlib_bin`).

Every source answers :meth:`Source.extract` for an *inclusive* date range ``[start, end]`` with bars in
the bar schema (:mod:`quant_core.data.bars`), sorted by ``(date, symbol)``. Sources convert types and map
column layouts; they do not judge values (NaN prices, negative volumes, broken OHLC envelopes): that is
the validation gate's job, so its report can name every offending row.

Paths go through a :data:`Resolver`. The default one reads the local filesystem only; for ``s3://``
paths pass one bound to the lake/S3 settings, e.g. ``quant_core.data.storage.make_resolver(settings.s3)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import date
from typing import Protocol, runtime_checkable

import pandas as pd
import pyarrow.fs as pafs

from quant_core.errors import QonlineError

__all__ = [
    "Resolver",
    "Source",
    "SourceError",
    "SourceFactory",
    "available_schemes",
    "check_range",
    "local_resolver",
    "parse_source",
    "register_source",
]

logger = logging.getLogger(__name__)

#: ``uri -> (filesystem, path inside it)``; handles ``s3://bucket/key`` and local paths.
Resolver = Callable[[str], tuple[pafs.FileSystem, str]]


class SourceError(QonlineError, ValueError):
    """A source cannot be read: names the input (spec, path, file), the row or field, and the rule."""


@runtime_checkable
class Source(Protocol):
    """Something that turns an inclusive date range into daily bars."""

    @property
    def spec(self) -> str:
        """The spec the source was built from (``scheme:body``)."""
        ...

    def extract(self, start: date, end: date) -> pd.DataFrame:
        """Bars for every trading date ``d`` with ``start <= d <= end`` (both ends inclusive).

        Returns:
            A frame in the bar schema (``coerce_bars``), sorted by ``(date, symbol)``; empty when the
            source has no bars in the range.

        Raises:
            SourceError: the input cannot be read, or ``start > end``.
        """
        ...


#: ``(spec, body, resolve) -> Source``; ``body`` is the spec after ``scheme:``.
SourceFactory = Callable[[str, str, Resolver], Source]

_FACTORIES: dict[str, SourceFactory] = {}
_BUILTINS_LOADED = False


def local_resolver(uri: str) -> tuple[pafs.FileSystem, str]:
    """The default :data:`Resolver`: the local filesystem, the path as given (``file://`` stripped,
    ``~`` expanded; relative paths are relative to the working directory).

    Raises:
        SourceError: for ``s3://`` (and any other remote scheme), which needs the S3 settings.
    """
    if uri.startswith("s3://"):
        raise SourceError(
            f"{uri!r} is an s3:// path but no S3 connection is configured: configure the lake/S3 "
            "settings (QONLINE_S3_ENDPOINT_URL, AWS credentials) and pass a resolver bound to them, "
            "e.g. parse_source(spec, resolve=quant_core.data.storage.make_resolver(settings.s3))"
        )
    path = uri.removeprefix("file://")
    if "://" in path:
        raise SourceError(f"{uri!r}: unsupported URI scheme (use a local path, file:// or s3://)")
    return pafs.LocalFileSystem(), os.path.expanduser(path)


def register_source(scheme: str, factory: SourceFactory, *, replace: bool = False) -> None:
    """Make ``scheme:...`` specs build sources with ``factory``.

    Raises:
        ValueError: ``scheme`` is already registered and ``replace`` is false.
    """
    key = scheme.strip().lower()
    if not key or ":" in key:
        raise ValueError(f"invalid source scheme {scheme!r}")
    if key in _FACTORIES and not replace:
        raise ValueError(f"source scheme {key!r} is already registered")
    _FACTORIES[key] = factory


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    # imported here, not at the top: the submodules import SourceError and helpers from this package
    from quant_core.data.sources import files, qlib_bin, synthetic

    for scheme, factory in (
        ("synthetic", synthetic.from_spec),
        ("parquet", files.parquet_from_spec),
        ("csv", files.csv_from_spec),
        ("qlib", qlib_bin.from_spec),
    ):
        _FACTORIES.setdefault(scheme, factory)
    _BUILTINS_LOADED = True


def available_schemes() -> list[str]:
    """Registered spec schemes, sorted."""
    _load_builtins()
    return sorted(_FACTORIES)


def parse_source(spec: str, resolve: Resolver | None = None) -> Source:
    """Build the source a spec names.

    Args:
        spec: ``scheme:body``, e.g. ``synthetic:symbols=200,seed=3``, ``parquet:data/bars``,
            ``csv:s3://bucket/drops/``, ``qlib:~/.qlib/qlib_data/cn_data``. A bare ``synthetic``
            means all defaults.
        resolve: maps paths/URIs to ``(filesystem, path)``; default :func:`local_resolver`
            (local files only).

    Returns:
        The source; nothing is read until :meth:`Source.extract` is called.

    Raises:
        SourceError: unknown scheme, or a body the scheme rejects (bad key, bad value, empty path).
    """
    _load_builtins()
    text = spec.strip()
    scheme, sep, body = text.partition(":")
    key = scheme.strip().lower()
    if key not in _FACTORIES:
        raise SourceError(
            f"source spec {spec!r}: unknown scheme {scheme!r}; use one of "
            f"{', '.join(f'{s}:...' for s in sorted(_FACTORIES))}"
        )
    if not sep and key != "synthetic":
        raise SourceError(f"source spec {spec!r}: missing ':' after the scheme (e.g. {key}:PATH)")
    source = _FACTORIES[key](text, body.strip(), resolve or local_resolver)
    logger.debug("source %s -> %s", text, type(source).__name__)
    return source


def _as_date(value: object, *, what: str, spec: str) -> date:
    from quant_core.calendar import to_date
    from quant_core.errors import CalendarError

    if isinstance(value, date | str):
        try:
            return to_date(value)
        except CalendarError:
            pass
    raise SourceError(f"{spec}: {what} {value!r} is not a date (use datetime.date or YYYY-MM-DD)")


def check_range(start: object, end: object, *, spec: str) -> tuple[date, date]:
    """Normalise an inclusive ``[start, end]`` request to dates.

    Raises:
        SourceError: a bound is not a date, or ``start > end``.
    """
    lo = _as_date(start, what="start", spec=spec)
    hi = _as_date(end, what="end", spec=spec)
    if lo > hi:
        raise SourceError(f"{spec}: start {lo} is after end {hi} (the range is inclusive: start <= end)")
    return lo, hi
