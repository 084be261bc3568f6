"""Signal snapshots in Redis: the serving copy of the lake's signals.

Key layout under a prefix ``P`` (setting ``redis_prefix``, default ``qonline``), for a strategy (or
combined signal) ``S`` and a date ``D`` (ISO):

=================================  ======  ===========================================================
``P:S:snap:D:<digest>``            ZSET    member = symbol, score = signal (one snapshot, never changed)
``P:S:meta:D:<digest>``            HASH    date, models, data_as_of, run_id, count, created_at, digest
``P:S:date:D``                     STRING  ``<digest>`` of the snapshot that stands for date D
``P:S:latest``                     STRING  ``D:<digest>`` of the latest date's snapshot
``P:events``                       STREAM  one entry per publish: strategy, date, digest, count, run_id
=================================  ======  ===========================================================

A snapshot's keys are named by the digest of its content and written once; publishing switches
the pointers, the new snapshot and its metadata in one ``MULTI``/``EXEC`` (guarded by ``WATCH`` on
the pointers, so two publishers never move ``latest`` backwards or interleave). Readers follow a
pointer to an immutable snapshot, so they see the old snapshot or the new one, never a mix. Old
snapshots are not deleted under a reader: they get a time to live (``redis_retention_days`` for
earlier dates, one hour for a same-date snapshot that was replaced). Publishing the same content
again changes nothing (no write, no stream entry).

The lake is the source of truth; Redis is the serving copy: a publish that fails leaves the lake's
signals in place, and the next run publishes what the lake holds.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from quant_core.errors import ConfigError, QonlineError

logger = logging.getLogger(__name__)
REPLACED_GRACE_SECONDS = 3600
_WATCH_ATTEMPTS = 20


class RedisError(QonlineError):
    """Redis cannot be reached or refused a command (the URL is shown without its password)."""


def mask_url(url: str) -> str:
    """The URL with any password (and ACL user's password) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def connect(url: str, *, timeout: float = 5.0) -> Any:
    """A Redis client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs, ACL user and password included.

    Raises:
        ConfigError: the URL is malformed (names it, password masked).
    """
    import redis

    shown = mask_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError(f"redis_url {shown!r} must look like redis://[user:password@]host:port/db "
                          f"(rediss:// for TLS)")
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    decode_responses=True)
    except ValueError as exc:
        raise ConfigError(f"redis_url {shown!r} is invalid: {exc}") from exc


@dataclass(frozen=True)
class Snapshot:
    """A published snapshot as a consumer sees it: metadata and the signals, best first."""

    strategy: str
    date: str
    digest: str
    meta: dict[str, str]
    signals: list[tuple[str, float]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.meta.get("count", len(self.signals)))

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "date": self.date, "models": self.meta.get("models", ""),
                "count": self.count, "data_as_of": self.meta.get("data_as_of"), "run_id": self.meta.get("run_id"),
                "created_at": self.meta.get("created_at"), "digest": self.digest,
                "signals": [{"symbol": s, "score": v} for s, v in self.signals]}


@dataclass(frozen=True)
class PublishResult:
    strategy: str
    date: str
    digest: str
    count: int
    published: bool
    latest: bool
    seconds: float


def digest_of(day: str, symbols: list[str], scores: np.ndarray, models: str) -> str:
    h = hashlib.sha256(f"{day}|{models}|".encode())
    h.update("\n".join(symbols).encode())
    h.update(np.ascontiguousarray(scores, dtype=np.float64).tobytes())
    return h.hexdigest()[:20]


class SignalStore:
    """Publishes and reads signal snapshots under a key prefix.

    Args:
        client: a ``redis.Redis`` with ``decode_responses=True`` (:func:`connect`).
        prefix: the key prefix.
        retention_days: how long a snapshot stays readable once a later date is published.
        stream_maxlen: approximate cap of the events stream.
    """

    def __init__(self, client: Any, prefix: str = "qonline", retention_days: int = 30,
                 stream_maxlen: int = 10_000) -> None:
        self.client = client
        self.prefix = prefix
        self.retention_seconds = int(retention_days * 86400)
        self.stream_maxlen = stream_maxlen

    # -- keys -------------------------------------------------------------------------------------
    def k_snap(self, s: str, d: str, digest: str) -> str:
        return f"{self.prefix}:{s}:snap:{d}:{digest}"

    def k_meta(self, s: str, d: str, digest: str) -> str:
        return f"{self.prefix}:{s}:meta:{d}:{digest}"

    def k_date(self, s: str, d: str) -> str:
        return f"{self.prefix}:{s}:date:{d}"

    def k_latest(self, s: str) -> str:
        return f"{self.prefix}:{s}:latest"

    @property
    def k_events(self) -> str:
        return f"{self.prefix}:events"

    # -- publish ----------------------------------------------------------------------------------
    def publish(self, strategy: str, day: date, frame: pd.DataFrame, meta: Mapping[str, str]) -> PublishResult:
        """Publish one date's signals (``frame``: ``symbol``, ``score``) and switch the pointers atomically.

        ``latest`` moves only forward in dates. Re-publishing identical content is a no-op.
        """
        import redis

        t0 = time.perf_counter()
        d = day.isoformat()
        frame = frame.sort_values("symbol", kind="stable")
        symbols = frame["symbol"].astype(str).tolist()
        scores = frame["score"].to_numpy(np.float64)
        if not np.isfinite(scores).all():
            bad = symbols[int(np.flatnonzero(~np.isfinite(scores))[0])]
            raise RedisError(f"signals {strategy} {d}: symbol {bad} has a non-finite score; nothing was published")
        models = str(meta.get("models", ""))
        digest = digest_of(d, symbols, scores, models)
        snap, mkey, dkey, lkey = self.k_snap(strategy, d, digest), self.k_meta(strategy, d, digest), \
            self.k_date(strategy, d), self.k_latest(strategy)
        full_meta = {**{k: str(v) for k, v in meta.items()}, "date": d, "digest": digest, "count": str(len(symbols)),
                     "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        try:
            for _ in range(_WATCH_ATTEMPTS):
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(dkey, lkey)
                        old_digest = pipe.get(dkey)
                        latest = pipe.get(lkey)
                        latest_day = latest.split(":", 1)[0] if latest else None
                        is_latest = latest_day is None or d >= latest_day
                        unchanged = old_digest == digest and pipe.exists(snap) and (
                            not is_latest or latest == f"{d}:{digest}")
                        if unchanged:
                            pipe.unwatch()
                            return PublishResult(strategy, d, digest, len(symbols), False, is_latest,
                                                 time.perf_counter() - t0)
                        pipe.multi()
                        pipe.delete(snap)
                        if symbols:
                            pipe.zadd(snap, dict(zip(symbols, scores.tolist(), strict=True)))
                        pipe.delete(mkey)
                        pipe.hset(mkey, mapping=full_meta)
                        pipe.set(dkey, digest)
                        if old_digest and old_digest != digest:  # a replaced same-date snapshot
                            pipe.expire(self.k_snap(strategy, d, old_digest), REPLACED_GRACE_SECONDS)
                            pipe.expire(self.k_meta(strategy, d, old_digest), REPLACED_GRACE_SECONDS)
                        if is_latest:
                            pipe.set(lkey, f"{d}:{digest}")
                            pipe.persist(dkey)
                            if latest_day and latest_day != d:  # the previous latest date starts to age
                                prev_digest = latest.split(":", 1)[1]
                                for key in (self.k_snap(strategy, latest_day, prev_digest),
                                            self.k_meta(strategy, latest_day, prev_digest),
                                            self.k_date(strategy, latest_day)):
                                    pipe.expire(key, self.retention_seconds)
                        else:  # an earlier date (a backfill): readable for the retention period
                            for key in (snap, mkey, dkey):
                                pipe.expire(key, self.retention_seconds)
                        pipe.xadd(self.k_events, {"strategy": strategy, "date": d, "digest": digest,
                                                  "count": str(len(symbols)), "run_id": str(meta.get("run_id", "")),
                                                  "latest": "1" if is_latest else "0"},
                                  maxlen=self.stream_maxlen, approximate=True)
                        pipe.execute()
                        return PublishResult(strategy, d, digest, len(symbols), True, is_latest,
                                             time.perf_counter() - t0)
                    except redis.WatchError:
                        continue  # another publisher moved a pointer: look again
            raise RedisError(f"signals {strategy} {d}: {_WATCH_ATTEMPTS} attempts lost to concurrent publishers")
        except redis.RedisError as exc:
            raise RedisError(f"publishing signals {strategy} {d} to Redis failed: {exc}") from exc

    # -- read -------------------------------------------------------------------------------------
    def pointer(self, strategy: str, day: date | str | None = None) -> tuple[str, str] | None:
        """``(date, digest)`` of the latest snapshot, or of a date's snapshot."""
        import redis

        try:
            return self._pointer(strategy, day)
        except redis.RedisError as exc:
            raise RedisError(f"reading the signal pointer of {strategy} from Redis failed: {exc}") from exc

    def _pointer(self, strategy: str, day: date | str | None) -> tuple[str, str] | None:
        if day is None:
            value = self.client.get(self.k_latest(strategy))
            if not value:
                return None
            d, digest = value.split(":", 1)
            return d, digest
        d = day.isoformat() if isinstance(day, date) else str(day)
        digest = self.client.get(self.k_date(strategy, d))
        return (d, digest) if digest else None

    def read(self, strategy: str, day: date | str | None = None, top: int | None = None) -> Snapshot | None:
        """The snapshot of ``day`` (default: the latest), its best ``top`` signals (all when ``None``)."""
        import redis

        try:
            for _ in range(3):
                ptr = self._pointer(strategy, day)
                if ptr is None:
                    return None
                d, digest = ptr
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.zrevrange(self.k_snap(strategy, d, digest), 0, -1 if top is None else top - 1,
                                   withscores=True)
                    pipe.hgetall(self.k_meta(strategy, d, digest))
                    rows, meta = pipe.execute()
                if meta:
                    return Snapshot(strategy, d, digest, dict(meta), [(s, float(v)) for s, v in rows])
                # the pointer moved on and this snapshot expired between the two reads: follow it again
            return None
        except redis.RedisError as exc:
            raise RedisError(f"reading signals {strategy} from Redis failed: {exc}") from exc

    def strategies(self) -> list[str]:
        """Names that have a ``latest`` pointer under the prefix."""
        import redis

        try:
            keys = list(self.client.scan_iter(match=f"{self.prefix}:*:latest", count=500))
        except redis.RedisError as exc:
            raise RedisError(f"listing signals in Redis failed: {exc}") from exc
        return sorted(key[len(self.prefix) + 1:-len(":latest")] for key in keys)


def read_signals(url: str, strategy: str, day: date | str | None = None, top: int | None = None,
                 prefix: str = "qonline") -> Snapshot | None:
    """The consumer's view: the latest (or ``day``'s) snapshot of ``strategy``, best first.

    Example::

        from quant_core.online.redis_sink import read_signals
        snap = read_signals("redis://127.0.0.1:6379/0", "lgb_alpha158", top=10)
        print(snap.date, snap.meta["models"], snap.signals[:3])
    """
    return SignalStore(connect(url), prefix).read(strategy, day, top)
