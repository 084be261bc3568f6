"""The lake: date-partitioned Parquet datasets in a local folder or an S3 bucket.

Layout under the lake root (DESIGN.md "Data model")::

    bars/                      _manifest.json + month=YYYY-MM/<content-hash>.parquet
    features/<set>/            same layout
    labels/<label>/            same layout
    reports/                   validation Data Docs and run reports

Each dataset is a set of month files plus one small ``_manifest.json`` that names the current file
of every month. A write of the inclusive date range ``[start, end]`` rewrites the months it touches
into *new* files (named by the hash of their content), then commits a new *generation* of the
manifest by a compare-and-swap (:mod:`quant_core.data.commit`: a lock locally, a conditional PUT on S3).
So a reader sees the old dates or the new ones, never half a date; two writers that read the same
manifest cannot both succeed (the loser re-applies its replace, or fails with
:class:`~quant_core.data.commit.WriteConflict`); a failed writer removes the files it uploaded.
Rewriting exactly the stored data commits nothing and changes no byte.

The last ``keep_generations`` generations stay readable (``Dataset.read(..., version=K)``,
``Dataset.history()``): each superseded manifest is kept under ``_history/`` and its month files
are deleted only when no kept generation references them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import posixpath
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from quant_core.calendar import TradingCalendar, to_date
from quant_core.data.bars import BAR_SCHEMA, bars_from_table, bars_to_table
from quant_core.data.commit import (
    Current,
    LocalManifestStore,
    ManifestStore,
    S3ManifestStore,
    WriteConflict,
    s3_client,
    write_file_atomic,
)
from quant_core.data.storage import resolve
from quant_core.errors import LakeError
from quant_core.settings import S3Options, Settings

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
HISTORY = "_history"
MANIFEST_FORMAT = 2
#: manifest generations (and the files they reference) a dataset keeps by default
DEFAULT_KEEP_GENERATIONS = 30
#: how often the writing stages re-apply a date-range replace that lost the commit race
COMMIT_RETRIES = 5
_READ_RETRIES = 3
_MANIFEST_READS = 6


@dataclass(frozen=True)
class Partition:
    """One month file of a dataset."""

    file: str
    rows: int
    dates: tuple[str, ...]


@dataclass(frozen=True)
class Commit:
    """What the write that made one manifest generation did (``qonline lake history`` rows)."""

    generation: int
    committed_at: str
    writer: str
    start: str | None
    end: str | None
    rows_written: int
    months: tuple[str, ...]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "committed_at": self.committed_at, "writer": self.writer,
                "start": self.start, "end": self.end, "rows_written": self.rows_written,
                "months": list(self.months), "rows": self.rows}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Commit:
        return cls(int(doc["generation"]), str(doc["committed_at"]), str(doc.get("writer", "")),
                   doc.get("start"), doc.get("end"), int(doc.get("rows_written", 0)),
                   tuple(doc.get("months", ())), int(doc.get("rows", 0)))


@dataclass(frozen=True)
class Manifest:
    """One generation of a dataset: its schema, month files and per-symbol first dates.

    ``retired`` maps each file that is no longer current, but still referenced by a kept earlier
    generation, to the first generation that stopped referencing it; ``history`` summarises the
    kept earlier generations (oldest first), whose full manifests live in ``_history/``.
    """

    schema_b64: str = ""
    partitions: dict[str, Partition] = field(default_factory=dict)
    first_dates: dict[str, str] = field(default_factory=dict)
    retired: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    commit: Commit | None = None
    history: tuple[Commit, ...] = ()

    @property
    def schema(self) -> pa.Schema | None:
        if not self.schema_b64:
            return None
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema_b64)))

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())

    @property
    def oldest_kept(self) -> int:
        """The oldest generation still readable (``version=``)."""
        return self.history[0].generation if self.history else self.generation

    def files(self) -> set[str]:
        return {p.file for p in self.partitions.values()}

    def same_content(self, other: Manifest) -> bool:
        """Same data: schema, month files and first dates (commit metadata aside)."""
        return (self.schema_b64, self.partitions, self.first_dates) == (
            other.schema_b64, other.partitions, other.first_dates)

    def dates(self) -> list[date]:
        return [date.fromisoformat(d) for key in sorted(self.partitions) for d in self.partitions[key].dates]

    def to_bytes(self) -> bytes:
        schema = self.schema
        doc = {
            "format": MANIFEST_FORMAT,
            "generation": self.generation,
            "commit": self.commit.to_dict() if self.commit else None,
            "history": [c.to_dict() for c in self.history],
            "columns": [[f.name, str(f.type)] for f in schema] if schema is not None else [],
            "schema": self.schema_b64,
            "partitions": {
                k: {"file": p.file, "rows": p.rows, "dates": list(p.dates)}
                for k, p in sorted(self.partitions.items())
            },
            "first_dates": dict(sorted(self.first_dates.items())),
            "retired": dict(sorted(self.retired.items())),
        }
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        try:
            doc = json.loads(data)
            parts = {
                k: Partition(file=v["file"], rows=int(v["rows"]), dates=tuple(v["dates"]))
                for k, v in doc["partitions"].items()
            }
            retired = doc.get("retired", {})
            if isinstance(retired, list):  # format 1: files retired by the last write
                retired = dict.fromkeys(retired, 0)
            return cls(
                schema_b64=doc["schema"],
                partitions=parts,
                first_dates=dict(doc.get("first_dates", {})),
                retired={str(k): int(v) for k, v in retired.items()},
                generation=int(doc.get("generation", 0)),
                commit=Commit.from_dict(doc["commit"]) if doc.get("commit") else None,
                history=tuple(Commit.from_dict(c) for c in doc.get("history", ())),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LakeError(f"{where}: the manifest is corrupt ({exc}); restore it from a backup") from exc


@dataclass(frozen=True)
class WriteResult:
    """What a write changed; ``generation`` is the dataset's generation after it."""

    dataset: str
    start: date
    end: date
    rows: int
    dates: int
    symbols: int
    months: tuple[str, ...]
    unchanged: bool
    generation: int = 0


def _month_keys(start: date, end: date) -> list[str]:
    months = np.arange(np.datetime64(start, "M"), np.datetime64(end, "M") + 1)
    return [str(m) for m in months]


def _is_sorted(table: pa.Table) -> bool:
    """True when rows are in (date, symbol) order."""
    if table.num_rows < 2:
        return True
    d = table.column("date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    sym = np.asarray(table.column("symbol").to_pylist(), dtype=object)
    same = d[1:] == d[:-1]
    return bool(np.all(d[1:] >= d[:-1]) and np.all(sym[1:][same] > sym[:-1][same]))


def _write_object(fs: pafs.FileSystem, path: str, payload: bytes, *, create_only: bool = False) -> bool:
    """Write one object so that readers see all of it or none; True if this call wrote it.

    Locally: temporary file, fsync, rename (or a create-only link), fsync of the folder. On object
    stores a single PUT (an object appears only when its upload completes); ``create_only`` skips
    an object that exists already (content-addressed files: same name, same bytes).
    """
    if isinstance(fs, pafs.LocalFileSystem):
        return write_file_atomic(path, payload, create_only=create_only)
    if create_only and fs.get_file_info(path).type == pafs.FileType.File:
        return False
    with fs.open_output_stream(path) as f:
        f.write(payload)
    return True


def _first_dates_of(table: pa.Table) -> dict[str, str]:
    """``{symbol: ISO date of its first row}`` of a table with ``date`` (date32) and ``symbol``."""
    grouped = table.select(["symbol", "date"]).group_by("symbol").aggregate([("date", "min")])
    days = grouped.column("date_min").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    return dict(zip(grouped.column("symbol").to_pylist(), np.datetime_as_string(days).tolist(), strict=True))


_KEY_COLUMNS = ["date", "symbol"]
_ORDER = [("date", "ascending"), ("symbol", "ascending")]


def _serialize(table: pa.Table) -> bytes:
    # Dictionary-encoding 158 float columns made writes 4x slower and files larger (measured on
    # Alpha158 months): dictionaries and statistics only for the key columns that filters use.
    sink = io.BytesIO()
    pq.write_table(
        table, sink, compression="zstd", row_group_size=256_000,
        use_dictionary=["symbol"], write_statistics=_KEY_COLUMNS,
    )
    return sink.getvalue()


def _normalise_table(table: pa.Table) -> pa.Table:
    """Strip pandas metadata and make ``date`` a date32 column, so writes are deterministic."""
    table = table.replace_schema_metadata(None)
    if "date" not in table.column_names or "symbol" not in table.column_names:
        raise LakeError(f"a lake table needs 'date' and 'symbol' columns, got {table.column_names}")
    i = table.column_names.index("date")
    col = table.column(i)
    if not pa.types.is_date32(col.type):
        table = table.set_column(i, pa.field("date", pa.date32(), nullable=False), pc.cast(col, pa.date32()))
    return table


def _days_of(table: pa.Table) -> np.ndarray:
    days: np.ndarray = table.column("date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    return days


def default_writer() -> str:
    """Who writes, when the caller does not say: ``host pid N``."""
    import os
    import socket

    return f"{socket.gethostname()} pid {os.getpid()}"


@dataclass
class _Plan:
    """A write in preparation: the new month files, and which of them this write created."""

    parts: dict[str, Partition]
    touched: list[str]
    created: list[str] = field(default_factory=list)
    reused: dict[str, bytes] = field(default_factory=dict)


class Dataset:
    """A date-partitioned dataset of the lake (``bars``, ``features/alpha158``, ...).

    Every write commits a new *generation* by a compare-and-swap of ``_manifest.json``
    (:mod:`quant_core.data.commit`); the last ``keep_generations`` generations stay readable with
    ``read(..., version=K)``, and their files are deleted only once no kept generation names them.
    """

    def __init__(self, lake: Lake, name: str) -> None:
        self.lake = lake
        self.fs = lake.fs
        self.name = name
        self.path = posixpath.join(lake.root, name)
        self.uri = f"{lake.uri.rstrip('/')}/{name}"
        self.store = lake.manifest_store(self.path, self.uri)

    # -- manifest ---------------------------------------------------------------------------------
    def _load_manifest(self) -> tuple[Current, Manifest]:
        """The manifest as read (bytes + swap token) and parsed, retrying a torn read.

        Some S3-compatible stores (SeaweedFS, measured in tests/integration/test_s3_lake.py) can serve
        a partly written object while it is being overwritten. Data files are immutable, so only the
        manifest can be torn; a truncated read fails to parse and is simply read again.
        """
        last: LakeError | None = None
        for attempt in range(_MANIFEST_READS):
            current = self.store.read()
            if current.data is None:
                return current, Manifest()
            try:
                return current, Manifest.from_bytes(current.data, f"lake dataset {self.uri}")
            except LakeError as exc:
                last = exc
                time.sleep(0.02 * (attempt + 1))
        assert last is not None
        raise last

    def manifest(self, version: int | None = None) -> Manifest:
        """The current manifest (empty if nothing was written yet), or kept generation ``version``.

        Raises:
            LakeError: ``version`` is not a kept generation (names the kept range).
        """
        current = self._load_manifest()[1]
        if version is None or version == current.generation:
            return current
        kept = [c.generation for c in current.history]
        if version not in kept:
            span = f"{current.oldest_kept}..{current.generation}" if current.generation else "none yet"
            raise LakeError(
                f"lake dataset {self.uri}: generation {version} was not kept (kept generations: {span}; "
                f"the lake keeps the last {self.lake.keep_generations})"
            )
        rel = f"{HISTORY}/{version:08d}.json"
        try:
            with self.fs.open_input_stream(posixpath.join(self.path, rel)) as f:
                data = bytes(f.read())
        except OSError as exc:
            raise LakeError(f"lake dataset {self.uri}: generation {version} ({rel}) cannot be read: {exc}") from exc
        return Manifest.from_bytes(data, f"lake dataset {self.uri} generation {version}")

    def history(self) -> list[Commit]:
        """The kept generations, oldest first: when, by whom, which range and months, rows after."""
        m = self.manifest()
        return [*m.history, *([m.commit] if m.commit else [])]

    def exists(self) -> bool:
        return bool(self.manifest().partitions)

    def dates(self, version: int | None = None) -> list[date]:
        """Every date with at least one row, sorted."""
        return self.manifest(version).dates()

    def calendar(self) -> TradingCalendar:
        """The trading calendar of this dataset: its dates."""
        return TradingCalendar(self.dates())

    def first_dates(self) -> dict[str, date]:
        """Each symbol's first date in the dataset (for the ``hist_ref`` buffer's span rule)."""
        return {s: date.fromisoformat(d) for s, d in self.manifest().first_dates.items()}

    @property
    def schema(self) -> pa.Schema | None:
        return self.manifest().schema

    # -- read -------------------------------------------------------------------------------------
    def read(
        self,
        start: date | str | None = None,
        end: date | str | None = None,
        *,
        symbols: Iterable[str] | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Rows with ``start <= date <= end`` (inclusive; ``None`` = open), optionally of some symbols.

        Only the month files that overlap the range are opened (partition pruning) and only the
        requested columns are decoded (projection). Sorted by (date, symbol). ``version`` reads a
        kept earlier generation (``history()`` lists them) instead of the current one.
        """
        lo = to_date(start) if start is not None else None
        hi = to_date(end) if end is not None else None
        wanted = sorted(set(symbols)) if symbols is not None else None
        for attempt in range(_READ_RETRIES):
            manifest = self.manifest(version)
            schema = manifest.schema
            if schema is None:
                raise LakeError(f"lake dataset {self.uri} is empty: nothing has been written to it yet")
            if columns is not None:
                unknown = [c for c in columns if c not in schema.names]
                if unknown:
                    raise LakeError(f"lake dataset {self.uri} has no column(s) {unknown}; it has {schema.names}")
            files = []
            for _key, part in sorted(manifest.partitions.items()):
                if (lo is not None and part.dates[-1] < lo.isoformat()) or (
                    hi is not None and part.dates[0] > hi.isoformat()
                ):
                    continue
                files.append(posixpath.join(self.path, part.file))
            cols = list(columns) if columns is not None else schema.names
            if not files:
                return schema.empty_table().select(cols)
            expr = None
            if lo is not None:
                expr = pc.field("date") >= pa.scalar(lo, pa.date32())
            if hi is not None:
                e = pc.field("date") <= pa.scalar(hi, pa.date32())
                expr = e if expr is None else expr & e
            if wanted is not None:
                e = pc.field("symbol").isin(pa.array(wanted, pa.string()))
                expr = e if expr is None else expr & e
            try:
                table = self._read_files(files, schema, cols, expr)
            except FileNotFoundError:
                # a concurrent write retired a file after we read the manifest: read the new one
                logger.debug("lake %s: file vanished during read, retrying (%d)", self.uri, attempt + 1)
                continue
            except (pa.ArrowInvalid, OSError) as exc:
                raise LakeError(
                    f"lake dataset {self.uri}: a data file is unreadable or corrupt ({exc}); "
                    f"rewrite the affected dates from the source"
                ) from exc
            # month files are sorted by (date, symbol) and read in month order: no re-sort needed
            return table
        raise LakeError(f"lake dataset {self.uri}: files kept changing under {_READ_RETRIES} reads")

    def to_pyarrow_dataset(self, version: int | None = None) -> pads.Dataset:
        """A pyarrow dataset of exactly the files of the current (or a kept) generation.

        For external engines: DuckDB and Polars query it directly. Globbing the folder instead
        would also pick up files that are no longer current (kept for history, or left by a failed
        writer). The files stay valid while the generation is kept.
        """
        manifest = self.manifest(version)
        if manifest.schema is None:
            raise LakeError(f"lake dataset {self.uri} is empty: nothing has been written to it yet")
        files = [posixpath.join(self.path, p.file) for _k, p in sorted(manifest.partitions.items())]
        return pads.dataset(files, schema=manifest.schema, filesystem=self.fs, format="parquet")

    def _read_files(
        self, files: list[str], schema: pa.Schema, cols: list[str], expr: pc.Expression | None
    ) -> pa.Table:
        """Read month files in order (concurrently: S3 latency), each filtered and projected."""
        from concurrent.futures import ThreadPoolExecutor

        needed = sorted(set(cols) | ({"date", "symbol"} if expr is not None else set()), key=schema.names.index)

        def one(path: str) -> pa.Table:
            frag = pads.dataset(path, schema=schema, filesystem=self.fs, format="parquet")
            return frag.to_table(columns=needed, filter=expr)

        if len(files) == 1:
            parts = [one(files[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
                parts = list(pool.map(one, files))
        return pa.concat_tables(parts).select(cols)

    def _read_file(self, rel: str) -> pa.Table:
        path = posixpath.join(self.path, rel)
        try:
            with self.fs.open_input_file(path) as f:
                return pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise LakeError(
                f"lake dataset {self.uri}: file {rel} is unreadable or corrupt ({exc}); "
                f"nothing was written. Rewrite that month from the source after removing it"
            ) from exc

    # -- write ------------------------------------------------------------------------------------
    def write(
        self, table: pa.Table, start: date | str, end: date | str, *, writer: str | None = None, retries: int = 0
    ) -> WriteResult:
        """Replace every row with ``start <= date <= end`` by ``table`` (inclusive range).

        Dates of the range that ``table`` does not cover end up empty; rows outside the range are
        untouched. The commit is a compare-and-swap of the manifest: if another writer committed
        after this write read the manifest, nothing is switched and :class:`WriteConflict` is
        raised — or, with ``retries``, the whole replace is re-applied on the new manifest up to
        that many more times (a date-range replace is safe to re-apply). Rewriting exactly the
        stored data commits nothing and changes no byte (``unchanged``).

        Args:
            writer: who writes (a run id), recorded in the dataset's history; default host and pid.
            retries: how many times to re-apply the write after losing the commit race.

        Raises:
            WriteConflict: the commit race was lost ``retries + 1`` times.
            LakeError: a row lies outside ``[start, end]``, the columns differ from the dataset's,
                an existing file is corrupt, or the store cannot be reached. In every case the
                dataset is left as it was, and month files this write uploaded are removed.
        """
        lo, hi = to_date(start), to_date(end)
        if lo > hi:
            raise LakeError(f"lake dataset {self.uri}: write range start {lo} is after its end {hi}")
        table = self._prepared(_normalise_table(table), lo, hi)
        who = writer or default_writer()
        for attempt in range(retries + 1):
            try:
                return self._write_once(table, lo, hi, who)
            except WriteConflict as exc:
                if attempt == retries:
                    if retries:
                        raise WriteConflict(
                            f"lake dataset {self.uri}: the write of {lo}..{hi} lost the commit race to other "
                            f"writers {retries + 1} times in a row; nothing was written — run it again"
                        ) from exc
                    raise
                delay = 0.05 * 2**attempt * (1 + random.random())
                logger.info("lake %s: commit conflict, re-applying %s..%s in %.2fs (%d/%d)", self.uri, lo, hi,
                            delay, attempt + 1, retries)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepared(self, table: pa.Table, lo: date, hi: date) -> pa.Table:
        """The table checked against the range and sorted by (date, symbol)."""
        days = _days_of(table)
        if len(days):
            outside = (days < np.datetime64(lo)) | (days > np.datetime64(hi))
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise LakeError(
                    f"lake dataset {self.uri}: row {i} has date {days[i]} outside the write range {lo}..{hi}"
                )
            if np.any(days[1:] < days[:-1]):
                table = table.sort_by(_ORDER)
        return table

    def _write_once(self, table: pa.Table, lo: date, hi: date, writer: str) -> WriteResult:
        current, manifest = self._load_manifest()
        old_schema = manifest.schema
        if old_schema is not None and manifest.partitions and not old_schema.equals(table.schema):
            raise LakeError(
                f"lake dataset {self.uri}: columns {[f'{f.name}:{f.type}' for f in table.schema]} differ "
                f"from the stored ones {[f'{f.name}:{f.type}' for f in old_schema]}"
            )
        plan = _Plan(parts=dict(manifest.partitions), touched=[])
        try:
            self._upload_months(plan, self._merged_months(manifest, table, lo, hi, plan))
            days = _days_of(table)
            symbols = len(pc.unique(table.column("symbol"))) if table.num_rows else 0
            schema_b64 = base64.b64encode(table.schema.serialize().to_pybytes()).decode()
            content = Manifest(
                schema_b64=schema_b64 if (plan.parts or not old_schema) else manifest.schema_b64,
                partitions=plan.parts,
                first_dates=self._updated_first_dates(manifest, plan.parts, table, lo, hi),
            )
            result = WriteResult(self.name, lo, hi, table.num_rows, len(np.unique(days)), symbols,
                                 tuple(sorted(plan.touched)), False, manifest.generation)
            if content.same_content(manifest):
                logger.info("lake %s: %s..%s already holds exactly this data", self.uri, lo, hi)
                return replace(result, months=(), unchanged=True)
            new = self._next_generation(manifest, content, result, writer)
            if current.data is not None and manifest.generation and self.lake.keep_generations > 1:
                # the parent stays readable as a kept generation; same bytes from any writer
                self._put_history(manifest.generation, current.data)
            self.store.swap(current, new.to_bytes())
        except BaseException:
            self._remove_uploads(plan.created)
            raise
        self._after_commit(manifest, new, plan)
        logger.info("lake %s: replaced %s..%s with %d rows (%d months rewritten), generation %d", self.uri, lo, hi,
                    table.num_rows, len(plan.touched), new.generation)
        return replace(result, generation=new.generation)

    def _merged_months(
        self, manifest: Manifest, table: pa.Table, lo: date, hi: date, plan: _Plan
    ) -> list[tuple[str, pa.Table, Partition | None]]:
        """Each touched month's new content: its rows outside the range kept, the new rows added."""
        month_of_row = _days_of(table).astype("datetime64[M]")
        pending: list[tuple[str, pa.Table, Partition | None]] = []
        for key in _month_keys(lo, hi):
            m = np.datetime64(key, "M")
            # rows are in date order: each month is one zero-copy slice
            a, b = np.searchsorted(month_of_row, m, "left"), np.searchsorted(month_of_row, m, "right")
            new_rows = table.slice(int(a), int(b - a))
            old = manifest.partitions.get(key)
            if old is None:
                combined = new_rows if _is_sorted(new_rows) else new_rows.sort_by(_ORDER)
            else:
                existing = self._read_file(old.file)
                if not existing.schema.equals(table.schema):
                    existing = existing.cast(table.schema)
                d = existing.column("date")
                keep = pc.or_(pc.less(d, pa.scalar(lo, pa.date32())), pc.greater(d, pa.scalar(hi, pa.date32())))
                combined = pa.concat_tables([existing.filter(keep), new_rows]).sort_by(_ORDER)
            if combined.num_rows == 0:
                if plan.parts.pop(key, None) is not None:
                    plan.touched.append(key)
                continue
            pending.append((key, combined, old))
        return pending

    def _upload_months(self, plan: _Plan, pending: list[tuple[str, pa.Table, Partition | None]]) -> None:
        """Encode and upload the changed months as content-addressed files (concurrently)."""
        from concurrent.futures import ThreadPoolExecutor

        def encode(item: tuple[str, pa.Table, Partition | None]) -> tuple[str, Partition, bytes, bool] | None:
            key, combined, old = item
            payload = _serialize(combined)
            rel = f"month={key}/{hashlib.sha256(payload).hexdigest()[:24]}.parquet"
            if old is not None and old.file == rel:
                return None
            # an existing file of this name has these very bytes (a kept generation's): reuse it
            created = self._put_file(rel, payload)
            uniq = pc.unique(combined.column("date")).to_numpy(zero_copy_only=False).astype("datetime64[D]")
            part = Partition(file=rel, rows=combined.num_rows, dates=tuple(sorted(map(str, uniq))))
            return key, part, payload, created

        # Parquet encoding releases the GIL: encode and upload months concurrently
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(pending)))) as pool:
            futures = [pool.submit(encode, item) for item in pending]
            errors: list[BaseException] = []
            for fut in futures:
                try:
                    done = fut.result()
                except BaseException as exc:  # collect: the created files of the others are cleaned up
                    errors.append(exc)
                    continue
                if done is not None:
                    key, part, payload, created = done
                    plan.parts[key] = part
                    plan.touched.append(key)
                    if created:
                        plan.created.append(part.file)
                    else:
                        plan.reused[part.file] = payload
        if errors:
            raise errors[0]

    def _next_generation(self, manifest: Manifest, content: Manifest, result: WriteResult, writer: str) -> Manifest:
        """The new generation: content, commit record, kept history and retired files."""
        gen = manifest.generation + 1
        keep = self.lake.keep_generations
        history = (*manifest.history, *([manifest.commit] if manifest.commit else ()))[-(keep - 1):] if keep > 1 else ()
        oldest = history[0].generation if history else gen
        referenced = content.files()
        retired = {f: g for f, g in manifest.retired.items() if f not in referenced and g > oldest}
        for f in manifest.files() - referenced:
            retired[f] = gen
        if oldest == gen:  # nothing earlier is kept: no file needs to stay
            retired = {}
        commit = Commit(gen, datetime.now(UTC).isoformat(timespec="milliseconds"), writer,
                        result.start.isoformat(), result.end.isoformat(), result.rows, result.months,
                        content.rows)
        return replace(content, retired=retired, generation=gen, commit=commit, history=tuple(history))

    def _after_commit(self, old: Manifest, new: Manifest, plan: _Plan) -> None:
        """Repair and clean up once the new generation is committed.

        A failed concurrent writer removes the files it created; if this write reused one of them
        (same name, same bytes) it puts it back. Then it deletes what no kept generation references
        any more: files retired before the oldest kept generation, and manifests of dropped ones.
        """
        for rel, payload in plan.reused.items():
            if not self._exists(rel):
                logger.warning("lake %s: %s was removed by a failed concurrent writer; re-created", self.uri, rel)
                self._put_file(rel, payload)
        gone = (old.files() | set(old.retired)) - (new.files() | set(new.retired))
        for rel in sorted(gone):
            self._delete_quietly(rel)
        for c in old.history:
            if c.generation < new.oldest_kept:
                self._delete_quietly(f"{HISTORY}/{c.generation:08d}.json")

    def _updated_first_dates(
        self, manifest: Manifest, parts: dict[str, Partition], table: pa.Table, lo: date, hi: date
    ) -> dict[str, str]:
        first = {s: d for s, d in manifest.first_dates.items() if d < lo.isoformat()}
        if table.num_rows:
            for sym, d in _first_dates_of(table).items():
                first.setdefault(sym, d)
        lost = [s for s in manifest.first_dates if s not in first]
        if lost:
            # their first rows were inside the replaced range and the new data lacks them:
            # look at later months for their next first date (rare: only on historical rewrites)
            later = [p.file for k, p in sorted(parts.items()) if p.dates[-1] > hi.isoformat()]
            for rel in later:
                if not lost:
                    break
                t = self._read_file(rel).select(["date", "symbol"])
                t = t.filter(pc.field("date") > pa.scalar(hi, pa.date32()))
                t = t.filter(pc.field("symbol").isin(pa.array(lost, pa.string())))
                if t.num_rows:
                    first.update(_first_dates_of(t))
                    lost = [s for s in lost if s not in first]
        return first

    def _put_file(self, rel: str, payload: bytes) -> bool:
        try:
            return _write_object(self.fs, posixpath.join(self.path, rel), payload, create_only=True)
        except OSError as exc:
            raise LakeError(f"lake dataset {self.uri}: cannot write {rel}: {exc}") from exc

    def _put_history(self, generation: int, data: bytes) -> None:
        rel = f"{HISTORY}/{generation:08d}.json"
        try:
            _write_object(self.fs, posixpath.join(self.path, rel), data)
        except OSError as exc:
            raise LakeError(f"lake dataset {self.uri}: cannot write {rel}: {exc}") from exc

    def _exists(self, rel: str) -> bool:
        try:
            return bool(self.fs.get_file_info(posixpath.join(self.path, rel)).type == pafs.FileType.File)
        except OSError:
            return True  # cannot tell: do not raise an alarm over a listing error

    def _remove_uploads(self, created: list[str]) -> None:
        """Delete the month files a failed write created, unless a committed generation uses them."""
        if not created:
            return
        try:
            now = self._load_manifest()[1]
        except LakeError:
            logger.warning("lake %s: cannot re-read the manifest; %d uploaded file(s) left", self.uri, len(created))
            return
        used = now.files() | set(now.retired)
        for rel in created:
            if rel not in used:
                self._delete_quietly(rel)

    def _delete_quietly(self, rel: str) -> None:
        try:
            self.fs.delete_file(posixpath.join(self.path, rel))
        except FileNotFoundError:
            pass
        except OSError:
            logger.debug("lake %s: could not delete %s", self.uri, rel)


class Lake:
    """The lake root and its datasets.

    Args:
        uri: a folder, ``file://`` path or ``s3://bucket/prefix``.
        s3: endpoint and credentials for ``s3://`` lakes.
        keep_generations: how many manifest generations of each dataset stay readable (>= 1).
    """

    def __init__(self, uri: str, s3: S3Options | None = None, *,
                 keep_generations: int = DEFAULT_KEEP_GENERATIONS) -> None:
        if isinstance(keep_generations, bool) or not isinstance(keep_generations, int) or keep_generations < 1:
            raise LakeError(f"keep_generations must be an integer >= 1, got {keep_generations!r}")
        self.uri = uri
        self.s3 = s3 or S3Options()
        self.keep_generations = keep_generations
        self.fs, self.root = resolve(uri, s3)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        if self.is_local:
            self.uri = f"file://{self.root}"
        self._s3_client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        return cls(settings.lake_uri, settings.s3, keep_generations=settings.lake_keep_generations)

    def manifest_store(self, path: str, uri: str, name: str = MANIFEST) -> ManifestStore:
        """The compare-and-swap store of a small object ``path/name`` (lock locally, conditional PUT on S3).

        A dataset's manifest by default; the lake's writer lease (:mod:`quant_core.data.lease`) too.
        """
        if self.is_local:
            return LocalManifestStore(path, name, uri)
        return S3ManifestStore(self._boto3, f"{path}", name, uri)

    def _boto3(self) -> Any:
        # one client per lake, built on first use (boto3 clients are thread-safe)
        if self._s3_client is None:
            self._s3_client = s3_client(self.s3)
        return self._s3_client

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    def dataset(self, name: str) -> Dataset:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise LakeError(f"{name!r} is not a valid dataset name")
        return Dataset(self, name)

    @property
    def bars(self) -> Dataset:
        return self.dataset("bars")

    def check_reachable(self) -> None:
        """Fail fast with a clear message when the store cannot be reached."""
        try:
            self.fs.get_file_info(self.root)
        except OSError as exc:
            raise LakeError(f"lake {self.uri} cannot be reached: {exc}") from exc

    # -- bars -------------------------------------------------------------------------------------
    def calendar(self) -> TradingCalendar:
        """The trading calendar: every date that has bars."""
        return self.bars.calendar()

    def write_bars(
        self, bars: pd.DataFrame, start: date | str, end: date | str, *, writer: str | None = None
    ) -> WriteResult:
        """Replace the bars of ``[start, end]`` (inclusive) with ``bars`` (re-applied on a commit conflict)."""
        return self.bars.write(bars_to_table(bars), start, end, writer=writer, retries=COMMIT_RETRIES)

    def read_bars(
        self,
        start: date | str | None = None,
        end: date | str | None = None,
        *,
        symbols: Iterable[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Bars of ``[start, end]`` (inclusive) as a frame in the bar schema."""
        if not self.bars.exists():
            from quant_core.data.bars import empty_bars

            return empty_bars()
        table = self.bars.read(start, end, symbols=symbols, columns=columns)
        if columns is None:
            return bars_from_table(table.cast(BAR_SCHEMA))
        df: pd.DataFrame = table.to_pandas()
        if "date" in df:
            df["date"] = pd.to_datetime(df["date"]).astype("datetime64[s]")
        return df

    def last_bars_before(self, day: date | str, symbols: Iterable[str] | None = None) -> pd.DataFrame:
        """The last stored bar before ``day`` of each symbol (for return checks across writes)."""
        cal = self.calendar() if self.bars.exists() else TradingCalendar([])
        d = to_date(day)
        prior = [x for x in cal.range(None, d) if x < d]
        if not prior:
            from quant_core.data.bars import empty_bars

            return empty_bars()
        lo = prior[max(0, len(prior) - 40)]
        df = self.read_bars(lo, prior[-1], symbols=symbols)
        return df.groupby("symbol", sort=True).tail(1).reset_index(drop=True)

    # -- reports ----------------------------------------------------------------------------------
    def put_bytes(self, rel: str, payload: bytes) -> str:
        """Write one object under the lake root (atomic); returns its URI."""
        try:
            _write_object(self.fs, posixpath.join(self.root, rel), payload)
        except OSError as exc:
            raise LakeError(f"lake {self.uri}: cannot write {rel}: {exc}") from exc
        return f"{self.uri.rstrip('/')}/{rel}"

    def put_tree(self, local_dir: str, rel: str) -> str:
        """Copy a local folder (e.g. Data Docs) under ``rel``; returns the folder's URI."""
        import os

        for dirpath, _dirs, names in os.walk(local_dir):
            for n in names:
                src = os.path.join(dirpath, n)
                sub = os.path.relpath(src, local_dir).replace(os.sep, "/")
                with open(src, "rb") as f:
                    self.put_bytes(f"{rel}/{sub}", f.read())
        return f"{self.uri.rstrip('/')}/{rel}"

    def get_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(posixpath.join(self.root, rel)) as f:
            return bytes(f.read())

    def snapshot(self, prefix: str = "") -> dict[str, str]:
        """``{relative path: sha256}`` of every object under ``prefix`` (tests and audits)."""
        base = posixpath.join(self.root, prefix) if prefix else self.root
        out: dict[str, str] = {}
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise LakeError(f"lake {self.uri} cannot be listed: {exc}") from exc
        for info in infos:
            if info.type == pafs.FileType.File:
                rel = info.path[len(self.root) :].lstrip("/")
                with self.fs.open_input_stream(info.path) as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
        return out


def describe(manifest: Manifest) -> dict[str, Any]:
    """A small JSON-able summary of a dataset (rows, dates, symbols, range, generation)."""
    dates = manifest.dates()
    return {
        "generation": manifest.generation,
        "rows": sum(p.rows for p in manifest.partitions.values()),
        "dates": len(dates),
        "symbols": len(manifest.first_dates),
        "first_date": dates[0].isoformat() if dates else None,
        "last_date": dates[-1].isoformat() if dates else None,
        "months": len(manifest.partitions),
    }
