"""The lake's writer lease: one run at a time writes a lake (a backfill and the daily routine never overlap).

Every dataset commit is already a compare-and-swap, so two writers can never corrupt a dataset;
but a backfill and a daily run interleaving their *stages* would still mix their days (one serves
a date with a model the other has not promoted yet). The flows that write serving state therefore
hold this lease for their whole run.

The lease is one small JSON object, ``_locks/writer.json`` in the lake, switched by the same
compare-and-swap as the manifests (an exclusive ``flock`` locally, a conditional PUT on S3), so it
works across processes and hosts. It names its holder (what runs, flow run, host, pid) and expires
``ttl`` seconds after its last renewal; a background thread renews it every ``ttl / 4`` seconds.
A holder that died (SIGKILL, a lost host) stops renewing: its lease can be taken once expired, or
at once when it was held by a process of this host that no longer exists.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType

from quant_core.data.commit import Current, WriteConflict
from quant_core.data.lake import Lake
from quant_core.errors import QonlineError

logger = logging.getLogger(__name__)
LEASE_FOLDER = "_locks"
LEASE_NAME = "writer.json"
DEFAULT_TTL = 120.0


class LeaseBusy(QonlineError):
    """Another run holds the lake's writer lease (names it, and how long this run waited)."""


class LeaseLost(QonlineError):
    """This run's lease was taken over while it ran (it stopped renewing for longer than the ttl)."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lease, and until when (UTC seconds since the epoch)."""

    token: str
    what: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.acquired_at, UTC).isoformat(timespec="seconds")
        until = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        return f"{self.what} (host {self.host} pid {self.pid}, since {since}, lease valid until {until})"


def _parse(data: bytes | None) -> Holder | None:
    if not data:
        return None
    try:
        doc = json.loads(data)
        return None if doc.get("released") else Holder(**doc["holder"])
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable lease protects nothing: treat it as free


def _process_gone(holder: Holder) -> bool:
    """True when the holder was a process of this host that no longer exists."""
    if holder.host != socket.gethostname():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LakeLease:
    """Hold the lake's writer lease for a block of work (a context manager).

    Args:
        lake: the lake to guard.
        what: what the holder does, shown to whoever waits (``"backfill 2024-01-02..2024-12-31 (run ...)"``).
        wait: seconds to wait for a busy lease before giving up (0: refuse at once).
        ttl: seconds a lease stays valid without renewal.
        poll: seconds between attempts while waiting.

    Raises:
        LeaseBusy: on enter, when another live run still holds the lease after ``wait`` seconds.
    """

    def __init__(self, lake: Lake, what: str, *, wait: float = 0.0, ttl: float = DEFAULT_TTL,
                 poll: float = 1.0) -> None:
        if ttl <= 0 or wait < 0:
            raise ValueError(f"lease ttl must be > 0 and wait >= 0 (got ttl={ttl}, wait={wait})")
        path = posixpath.join(lake.root, LEASE_FOLDER)
        self.uri = f"{lake.uri.rstrip('/')}/{LEASE_FOLDER}/{LEASE_NAME}"
        self.store = lake.manifest_store(path, self.uri, LEASE_NAME)
        self.what, self.wait, self.ttl, self.poll = what, wait, ttl, poll
        self.token = uuid.uuid4().hex
        self._current: Current | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.lost = False

    def _payload(self, acquired_at: float) -> bytes:
        holder = Holder(self.token, self.what, socket.gethostname(), os.getpid(), acquired_at,
                        time.time() + self.ttl)
        return json.dumps({"holder": asdict(holder)}, sort_keys=True).encode()

    def holder(self) -> Holder | None:
        """The current holder, or ``None`` when the lease is free or expired."""
        held = _parse(self.store.read().data)
        return held if held is not None and held.expires_at > time.time() else None

    def try_acquire(self) -> Holder | None:
        """Take the lease if it is free, expired or left by a dead local process; else return its holder."""
        current = self.store.read()
        held = _parse(current.data)
        if held is not None and held.token != self.token and held.expires_at > time.time() and not _process_gone(held):
            return held
        if held is not None and held.token != self.token:
            logger.warning("lake writer lease %s: taking over from %s (expired or its process is gone)",
                           self.uri, held.describe())
        payload = self._payload(time.time())
        try:
            self.store.swap(current, payload)
        except WriteConflict:
            return _parse(self.store.read().data) or self.try_acquire()
        self._current = self.store.read()
        return None

    def acquire(self) -> None:
        """Wait up to ``wait`` seconds for the lease, then hold and renew it in the background."""
        t0 = time.monotonic()
        while True:
            held = self.try_acquire()
            if held is None:
                break
            waited = time.monotonic() - t0
            if waited >= self.wait:
                raise LeaseBusy(
                    f"lake {self.uri.rsplit('/', 2)[0]} is being written by {held.describe()}; "
                    f"{'waited ' + format(waited, '.0f') + ' s' if self.wait else 'refused at once'} "
                    f"(lake_lock_wait_seconds={self.wait:g}). Runs that write the lake never interleave: run "
                    f"again when it has finished, or raise the wait"
                )
            logger.info("lake writer lease held by %s; waiting (%.0f of %.0f s)", held.describe(), waited, self.wait)
            time.sleep(min(self.poll, max(0.05, self.wait - waited)))
        logger.info("lake writer lease %s acquired for %s", self.uri, self.what)
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="lake-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        acquired = time.time()
        while not self._stop.wait(self.ttl / 4):
            with self._lock:
                try:
                    assert self._current is not None
                    self.store.swap(self._current, self._payload(acquired))
                    self._current = self.store.read()
                except WriteConflict:
                    self.lost = True
                    logger.error("lake writer lease %s was taken by another run while %s held it", self.uri,
                                 self.what)
                    return
                except QonlineError as exc:  # storage briefly unreachable: try again next round
                    logger.warning("lake writer lease %s: renewal failed (%s)", self.uri, exc)

    def release(self) -> None:
        """Stop renewing and free the lease (if this run still holds it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            if self._current is None:
                return
            try:
                self.store.swap(self._current, json.dumps({"released": True}).encode())
            except WriteConflict:
                pass  # someone took it over after it expired: nothing of ours to free
            except QonlineError as exc:
                logger.warning("lake writer lease %s: release failed (%s); it expires by itself", self.uri, exc)
            self._current = None
        logger.info("lake writer lease %s released by %s", self.uri, self.what)

    def __enter__(self) -> LakeLease:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
        if self.lost and exc_type is None:
            # each commit stayed whole (compare-and-swap), but another run wrote meanwhile: say so
            raise LeaseLost(f"lake writer lease {self.uri}: {self.what} lost it to another run while it was "
                            f"still writing (no renewal for over {self.ttl:g} s); each dataset commit is whole, "
                            f"but the runs interleaved: run this one again once the other has finished")
