"""The lake: date-partitioned Parquet datasets in a local folder or an S3 bucket.

Layout under the lake root (DESIGN.md "Data model")::

    bars/                      _manifest.json + month=YYYY-MM/<content-hash>.parquet
    features/<set>/            same layout
    labels/<label>/            same layout
    reports/                   validation Data Docs and run reports

Each dataset is a set of month files plus one small ``_manifest.json`` that names the current file
of every month. A write of the inclusive date range ``[start, end]`` rewrites the months it touches
into *new* files (named by the hash of their content), then switches the manifest in one
single-object write. That write is atomic on a local filesystem (rename) and on S3 (PUT), so a
reader sees the old dates or the new ones, never half a date, and a crashed writer leaves only
unreferenced files behind. Writing the same data twice produces byte-identical files and manifest.
Files dropped by a write stay one generation (readers in flight may still hold the old manifest)
and are deleted by the next write.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import posixpath
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from quant_core.bars import BAR_SCHEMA, bars_from_table, bars_to_table
from quant_core.calendar import TradingCalendar, to_date
from quant_core.errors import LakeError
from quant_core.settings import S3Options, Settings
from quant_core.storage import resolve

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
_READ_RETRIES = 3
_MANIFEST_READS = 6


@dataclass(frozen=True)
class Partition:
    """One month file of a dataset."""

    file: str
    rows: int
    dates: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """The current state of a dataset: its schema, month files and per-symbol first dates."""

    schema_b64: str = ""
    partitions: dict[str, Partition] = field(default_factory=dict)
    first_dates: dict[str, str] = field(default_factory=dict)
    retired: tuple[str, ...] = ()

    @property
    def schema(self) -> pa.Schema | None:
        if not self.schema_b64:
            return None
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema_b64)))

    def dates(self) -> list[date]:
        return [date.fromisoformat(d) for key in sorted(self.partitions) for d in self.partitions[key].dates]

    def to_bytes(self) -> bytes:
        schema = self.schema
        doc = {
            "format": 1,
            "columns": [[f.name, str(f.type)] for f in schema] if schema is not None else [],
            "schema": self.schema_b64,
            "partitions": {
                k: {"file": p.file, "rows": p.rows, "dates": list(p.dates)}
                for k, p in sorted(self.partitions.items())
            },
            "first_dates": dict(sorted(self.first_dates.items())),
            "retired": sorted(self.retired),
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
            return cls(
                schema_b64=doc["schema"],
                partitions=parts,
                first_dates=dict(doc.get("first_dates", {})),
                retired=tuple(doc.get("retired", ())),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LakeError(f"{where}: the manifest is corrupt ({exc}); restore it from a backup") from exc


@dataclass(frozen=True)
class WriteResult:
    """What a write changed."""

    dataset: str
    start: date
    end: date
    rows: int
    dates: int
    symbols: int
    months: tuple[str, ...]
    unchanged: bool


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


def _write_object(fs: pafs.FileSystem, path: str, payload: bytes) -> None:
    """Write one object so that readers see all of it or none: temp file + rename on a local
    filesystem; a single PUT on object stores (an object appears only when its upload completes)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(posixpath.dirname(path), recursive=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with fs.open_output_stream(tmp) as f:
            f.write(payload)
        fs.move(tmp, path)
    else:
        with fs.open_output_stream(path) as f:
            f.write(payload)


def _first_dates_of(table: pa.Table) -> dict[str, str]:
    """``{symbol: ISO date of its first row}`` of a table with ``date`` (date32) and ``symbol``."""
    grouped = table.select(["symbol", "date"]).group_by("symbol").aggregate([("date", "min")])
    days = grouped.column("date_min").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    return dict(zip(grouped.column("symbol").to_pylist(), np.datetime_as_string(days).tolist(), strict=True))


_KEY_COLUMNS = ["date", "symbol"]


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


class Dataset:
    """A date-partitioned dataset of the lake (``bars``, ``features/alpha158``, ...)."""

    def __init__(self, fs: pafs.FileSystem, root: str, name: str, uri: str) -> None:
        self.fs = fs
        self.name = name
        self.path = posixpath.join(root, name)
        self.uri = f"{uri.rstrip('/')}/{name}"

    # -- manifest ---------------------------------------------------------------------------------
    def _read_manifest_bytes(self) -> bytes | None:
        path = posixpath.join(self.path, MANIFEST)
        try:
            with self.fs.open_input_stream(path) as f:
                return bytes(f.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LakeError(f"lake dataset {self.uri}: cannot read {MANIFEST}: {exc}") from exc

    def _load_manifest(self) -> tuple[bytes | None, Manifest]:
        """The manifest's bytes and parsed form, retrying a torn read.

        Some S3-compatible stores (SeaweedFS, measured in tests/integration/test_s3_lake.py) can serve
        a partly written object while it is being overwritten. Data files are immutable, so only the
        manifest can be torn; a truncated read fails to parse and is simply read again.
        """
        last: LakeError | None = None
        for attempt in range(_MANIFEST_READS):
            data = self._read_manifest_bytes()
            if data is None:
                return None, Manifest()
            try:
                return data, Manifest.from_bytes(data, f"lake dataset {self.uri}")
            except LakeError as exc:
                last = exc
                time.sleep(0.02 * (attempt + 1))
        assert last is not None
        raise last

    def manifest(self) -> Manifest:
        """The dataset's current manifest (empty if nothing was written yet)."""
        return self._load_manifest()[1]

    def exists(self) -> bool:
        return bool(self.manifest().partitions)

    def dates(self) -> list[date]:
        """Every date with at least one row, sorted."""
        return self.manifest().dates()

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
    ) -> pa.Table:
        """Rows with ``start <= date <= end`` (inclusive; ``None`` = open), optionally of some symbols.

        Only the month files that overlap the range are opened (partition pruning) and only the
        requested columns are decoded (projection). Sorted by (date, symbol).
        """
        lo = to_date(start) if start is not None else None
        hi = to_date(end) if end is not None else None
        wanted = sorted(set(symbols)) if symbols is not None else None
        for attempt in range(_READ_RETRIES):
            manifest = self.manifest()
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
    def write(self, table: pa.Table, start: date | str, end: date | str) -> WriteResult:
        """Replace every row with ``start <= date <= end`` by ``table`` (inclusive range).

        Dates of the range that ``table`` does not cover end up empty; rows outside the range are
        untouched. The switch is atomic (see the module docstring).

        Raises:
            LakeError: a row lies outside ``[start, end]``, the columns differ from the dataset's,
                an existing file is corrupt, the store cannot be reached, or another writer switched
                the manifest first. In every case the dataset is left as it was.
        """
        lo, hi = to_date(start), to_date(end)
        if lo > hi:
            raise LakeError(f"lake dataset {self.uri}: write range start {lo} is after its end {hi}")
        table = _normalise_table(table)
        raw, manifest = self._load_manifest()
        old_schema = manifest.schema
        if old_schema is not None and manifest.partitions and not old_schema.equals(table.schema):
            raise LakeError(
                f"lake dataset {self.uri}: columns {[f'{f.name}:{f.type}' for f in table.schema]} differ "
                f"from the stored ones {[f'{f.name}:{f.type}' for f in old_schema]}"
            )
        days = table.column("date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
        if len(days):
            outside = (days < np.datetime64(lo)) | (days > np.datetime64(hi))
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise LakeError(
                    f"lake dataset {self.uri}: row {i} has date {days[i]} outside the write range {lo}..{hi}"
                )
        if len(days) and np.any(days[1:] < days[:-1]):
            table = table.sort_by([("date", "ascending"), ("symbol", "ascending")])
            days = table.column("date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
        # rows are in date order: each month is one zero-copy slice
        month_of_row = days.astype("datetime64[M]")
        schema_b64 = base64.b64encode(table.schema.serialize().to_pybytes()).decode()
        parts = dict(manifest.partitions)
        touched: list[str] = []
        pending: list[tuple[str, pa.Table, Partition | None]] = []
        for key in _month_keys(lo, hi):
            m = np.datetime64(key, "M")
            a, b = np.searchsorted(month_of_row, m, "left"), np.searchsorted(month_of_row, m, "right")
            new_rows = table.slice(int(a), int(b - a))
            old = parts.get(key)
            if old is None:
                combined = new_rows if _is_sorted(new_rows) else new_rows.sort_by(
                    [("date", "ascending"), ("symbol", "ascending")]
                )
            else:
                existing = self._read_file(old.file)
                if not existing.schema.equals(table.schema):
                    existing = existing.cast(table.schema)
                d = existing.column("date")
                keep = pc.or_(pc.less(d, pa.scalar(lo, pa.date32())), pc.greater(d, pa.scalar(hi, pa.date32())))
                combined = pa.concat_tables([existing.filter(keep), new_rows]).sort_by(
                    [("date", "ascending"), ("symbol", "ascending")]
                )
            if combined.num_rows == 0:
                if parts.pop(key, None) is not None:
                    touched.append(key)
                continue
            pending.append((key, combined, old))

        def encode(item: tuple[str, pa.Table, Partition | None]) -> tuple[str, Partition] | None:
            key, combined, old = item
            payload = _serialize(combined)
            rel = f"month={key}/{hashlib.sha256(payload).hexdigest()[:24]}.parquet"
            if old is not None and old.file == rel:
                return None
            self._put_atomic(rel, payload)
            uniq = pc.unique(combined.column("date")).to_numpy(zero_copy_only=False).astype("datetime64[D]")
            return key, Partition(file=rel, rows=combined.num_rows, dates=tuple(sorted(map(str, uniq))))

        # Parquet encoding releases the GIL: encode and upload months concurrently
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(4, len(pending)))) as pool:
            for done in pool.map(encode, pending):
                if done is not None:
                    parts[done[0]] = done[1]
                    touched.append(done[0])
        touched.sort()
        symbols = pc.unique(table.column("symbol")).to_pylist() if table.num_rows else []
        first_dates = self._updated_first_dates(manifest, parts, table, lo, hi)
        referenced = {p.file for p in parts.values()}
        dropped = {p.file for p in manifest.partitions.values()} - referenced
        new_manifest = Manifest(
            schema_b64=schema_b64 if (parts or not old_schema) else manifest.schema_b64,
            partitions=parts,
            first_dates=first_dates,
            retired=tuple(sorted(dropped)),
        )
        result = WriteResult(
            dataset=self.name,
            start=lo,
            end=hi,
            rows=table.num_rows,
            dates=len(np.unique(days)),
            symbols=len(symbols),
            months=tuple(touched),
            unchanged=not touched and manifest == new_manifest,
        )
        if result.unchanged:
            logger.info("lake %s: %s..%s already holds exactly this data", self.uri, lo, hi)
            return result
        self._switch_manifest(raw, new_manifest)
        for rel in set(manifest.retired) - referenced:
            self._delete_quietly(rel)
        logger.info(
            "lake %s: replaced %s..%s with %d rows (%d months rewritten)", self.uri, lo, hi, table.num_rows, len(touched)
        )
        return result

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

    def _put_atomic(self, rel: str, payload: bytes) -> None:
        try:
            _write_object(self.fs, posixpath.join(self.path, rel), payload)
        except OSError as exc:
            raise LakeError(f"lake dataset {self.uri}: cannot write {rel}: {exc}") from exc

    def _switch_manifest(self, expected: bytes | None, manifest: Manifest) -> None:
        current = self._read_manifest_bytes()
        if current != expected:
            raise LakeError(
                f"lake dataset {self.uri}: another writer changed the dataset during this write; "
                f"nothing was switched — run again"
            )
        self._put_atomic(MANIFEST, manifest.to_bytes())

    def _delete_quietly(self, rel: str) -> None:
        try:
            self.fs.delete_file(posixpath.join(self.path, rel))
        except OSError:
            logger.debug("lake %s: could not delete retired file %s", self.uri, rel)


class Lake:
    """The lake root and its datasets.

    Args:
        uri: a folder, ``file://`` path or ``s3://bucket/prefix``.
        s3: endpoint and credentials for ``s3://`` lakes.
    """

    def __init__(self, uri: str, s3: S3Options | None = None) -> None:
        self.uri = uri
        self.fs, self.root = resolve(uri, s3)
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.uri = f"file://{self.root}"

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        return cls(settings.lake_uri, settings.s3)

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    def dataset(self, name: str) -> Dataset:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise LakeError(f"{name!r} is not a valid dataset name")
        return Dataset(self.fs, self.root, name, self.uri)

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

    def write_bars(self, bars: pd.DataFrame, start: date | str, end: date | str) -> WriteResult:
        """Replace the bars of ``[start, end]`` (inclusive) with ``bars``."""
        return self.bars.write(bars_to_table(bars), start, end)

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
            from quant_core.bars import empty_bars

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
            from quant_core.bars import empty_bars

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
    """A small JSON-able summary of a dataset (rows, dates, symbols, range)."""
    dates = manifest.dates()
    return {
        "rows": sum(p.rows for p in manifest.partitions.values()),
        "dates": len(dates),
        "symbols": len(manifest.first_dates),
        "first_date": dates[0].isoformat() if dates else None,
        "last_date": dates[-1].isoformat() if dates else None,
        "months": len(manifest.partitions),
    }
