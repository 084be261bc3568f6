"""CSV and Parquet drops: ``csv:PATH`` and ``parquet:PATH``.

``PATH`` is a file or a folder (every ``*.csv`` / ``*.parquet`` file below it, recursively, in sorted
path order; names starting with ``.`` or ``_`` are skipped, as Spark and Hive writers use them for
temporary and marker files), local or ``s3://`` through the :data:`~quant_core.data.sources.Resolver`.
Hive-style folders (``date=2020-01-02/part-0.parquet``) supply a column that the files lack.

Column names are matched case-insensitively:

=========  =====================================================================
bar field  accepted names
=========  =====================================================================
date       ``date``, ``datetime``, ``trade_date``, ``timestamp``
symbol     ``symbol``, ``instrument``, ``ticker``, ``code``, ``name``
prices     ``open``, ``high``, ``low``, ``close``; ``volume`` (or ``vol``)
vwap       ``vwap``; else ``amount`` or ``turnover`` divided by volume
factor     ``factor`` (or ``adj_factor``); else ``adj_close`` / ``adjclose`` / ``adj close``
           divided by close; else 1.0
=========  =====================================================================

When several names of one field are present the first in this order wins (a ``name`` column is only
the symbol when there is no ``symbol``/``instrument``/``ticker``/``code``). Note that a vendor's
``adj close`` anchored at its download day (Yahoo) gives a factor that is *not* point in time.

Reading converts types only. Unreadable input -- a path that does not exist, a ragged or binary CSV,
a file that is not Parquet, a missing required column, a value that is not a number in a numeric
column or not a date in the date column -- raises :class:`~quant_core.data.sources.SourceError` naming the
file, the line (CSV) or row (Parquet) and the column. Values are not judged (NaN prices, negative
volumes, duplicates): that is the validation gate's job.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from quant_core.data.bars import REQUIRED_COLUMNS, coerce_bars, empty_bars, sort_bars
from quant_core.data.sources import Resolver, SourceError, check_range

__all__ = ["COLUMN_ALIASES", "FileSource", "csv_from_spec", "map_columns", "parquet_from_spec"]

logger = logging.getLogger(__name__)

Format = Literal["csv", "parquet"]

#: bar field (or helper input) -> accepted lower-case column names, in order of preference
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "datetime", "trade_date", "timestamp"),
    "symbol": ("symbol", "instrument", "ticker", "code", "name"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume", "vol"),
    "vwap": ("vwap",),
    "amount": ("amount", "turnover"),
    "factor": ("factor", "adj_factor"),
    "adj_close": ("adj_close", "adjclose", "adj close"),
}
_NUMERIC = ("open", "high", "low", "close", "volume", "vwap", "amount", "factor", "adj_close")
_CONVERSION_RE = re.compile(r"column #(\d+): Row #(\d+): CSV conversion error to (\w+): invalid value '(.*)'")
_ROW_RE = re.compile(r"Row #(\d+)")


def map_columns(names: list[str], *, where: str) -> dict[str, str]:
    """Map a file's column names to bar fields (case-insensitive, see :data:`COLUMN_ALIASES`).

    Returns:
        ``{field: column name in the file}`` for every field found.

    Raises:
        SourceError: two columns differ only in case or surrounding spaces.
    """
    by_key: dict[str, str] = {}
    for name in names:
        key = str(name).strip().lower()
        if key in by_key:
            raise SourceError(
                f"{where}: columns {by_key[key]!r} and {name!r} are the same name up to case; "
                "rename one so the layout is unambiguous"
            )
        by_key[key] = str(name)
    found: dict[str, str] = {}
    for field, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in by_key:
                found[field] = by_key[alias]
                break
    return found


def _check_required(mapping: dict[str, str], names: list[str], *, where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in mapping]
    if missing:
        hints = "; ".join(f"{c}: one of {list(COLUMN_ALIASES[c])}" for c in missing)
        raise SourceError(
            f"{where}: missing required column(s) {missing} ({hints}); the file has columns {names}"
        )


@dataclass(frozen=True)
class _File:
    path: str  # inside the filesystem
    label: str  # for messages: s3://bucket/key or the local path
    partitions: tuple[tuple[str, str], ...]  # hive "key=value" folders below the base


class _ValueProblem(Exception):
    """A value that cannot be converted; ``index`` is its position among the rows read."""

    def __init__(self, column: str, index: int, value: object, rule: str) -> None:
        super().__init__(column, index, value, rule)
        self.column, self.index, self.value, self.rule = column, index, value, rule

    def describe(self) -> str:
        return self.rule if self.value is None else f"{self.rule} ({self.value!r})"


@dataclass(frozen=True)
class FileSource:
    """Bars from CSV or Parquet files (``csv:PATH`` / ``parquet:PATH``).

    Args:
        spec: the spec string, used in messages.
        uri: a file or folder: local path, ``file://`` or ``s3://bucket/prefix``.
        fmt: ``"csv"`` or ``"parquet"``.
        resolve: maps ``uri`` to ``(filesystem, path)``.
    """

    spec: str
    uri: str
    fmt: Format
    resolve: Resolver

    def files(self) -> list[str]:
        """Labels of the files the source reads, in reading order.

        Raises:
            SourceError: the path does not exist, or a folder holds no matching file.
        """
        return [f.label for f in self._list()[1]]

    def _list(self) -> tuple[pafs.FileSystem, list[_File]]:
        try:
            fs, path = self.resolve(self.uri)
        except SourceError as exc:
            raise SourceError(f"{self.spec}: {exc}") from None
        prefix = "s3://" if self.uri.startswith("s3://") else ""
        try:
            info = fs.get_file_info(path)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{self.spec}: cannot access {self.uri!r}: {exc}") from exc
        if info.type == pafs.FileType.NotFound:
            raise SourceError(f"{self.spec}: path {self.uri!r} does not exist")
        if info.type == pafs.FileType.File:
            return fs, [_File(path, prefix + path, ())]
        base = path.rstrip("/")
        try:
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{self.spec}: cannot list folder {self.uri!r}: {exc}") from exc
        out: list[_File] = []
        for item in infos:
            if item.type != pafs.FileType.File or not item.path.lower().endswith(f".{self.fmt}"):
                continue
            rel = item.path[len(base) :].lstrip("/").split("/")
            if any(part.startswith((".", "_")) for part in rel):
                continue
            parts = tuple(
                (k, v) for k, sep, v in (p.partition("=") for p in rel[:-1]) if sep and k and v
            )
            out.append(_File(item.path, prefix + item.path, parts))
        if not out:
            raise SourceError(f"{self.spec}: folder {self.uri!r} holds no *.{self.fmt} file")
        out.sort(key=lambda f: f.path)
        return fs, out

    def extract(self, start: date, end: date) -> pd.DataFrame:
        """Bars of every file with ``start <= date <= end`` (inclusive), sorted by ``(date, symbol)``.

        Parquet files are filtered while reading (the date predicate is pushed down to row groups)
        when their date column is a date or timestamp; CSV files are read whole and then filtered.

        Raises:
            SourceError: unreadable path or file, missing column, or a value of the wrong type.
        """
        lo, hi = check_range(start, end, spec=self.spec)
        fs, files = self._list()
        frames: list[pd.DataFrame] = []
        for f in files:
            where = f"{self.spec}: file {f.label}"
            part_date = _partition_date(f, where)
            if part_date is not None and not lo <= part_date <= hi:
                continue
            raw = _read_csv(fs, f, where) if self.fmt == "csv" else _read_parquet(fs, f, where, lo, hi)
            if raw.empty:
                continue
            bars = coerce_bars(raw, source=where)
            days = bars["date"].to_numpy()
            keep = (days >= np.datetime64(lo, "s")) & (days <= np.datetime64(hi, "s"))
            if not keep.all():
                bars = bars.loc[keep]
            if len(bars):
                frames.append(bars)
        logger.info("%s: %d file(s), %d row(s) in [%s, %s]", self.spec, len(files), sum(map(len, frames)), lo, hi)
        if not frames:
            return empty_bars()
        return sort_bars(pd.concat(frames, ignore_index=True))


def _partition_field(key: str) -> str | None:
    """The bar field a hive folder key (``date=...``, ``symbol=...``) supplies, if any."""
    return next((k for k, al in COLUMN_ALIASES.items() if key.strip().lower() in al), None)


def _with_partitions(mapping: dict[str, str], f: _File) -> dict[str, str]:
    out = dict(mapping)
    for key, _ in f.partitions:
        field = _partition_field(key)
        if field is not None:
            out.setdefault(field, f"{key}=")
    return out


def _partition_date(f: _File, where: str) -> date | None:
    for key, value in f.partitions:
        if _partition_field(key) == "date":
            try:
                return pd.Timestamp(value).date()
            except ValueError:
                raise SourceError(f"{where}: folder {key}={value!r} is not a date") from None
    return None


# --- conversion shared by both formats -------------------------------------------------------------


def _to_bar_frame(df: pd.DataFrame, mapping: dict[str, str], f: _File) -> pd.DataFrame:
    """Rename to bar fields, add hive partition columns, parse dates and numbers, derive vwap/factor.

    Raises:
        _ValueProblem: a value cannot be converted (the caller names the line or row).
    """
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for key, value in f.partitions:
        field = _partition_field(key)
        if field is not None and field not in mapping:
            out[field] = value
    for field, col in mapping.items():
        out[field] = df[col].to_numpy()
    out["date"] = _parse_dates(out["date"])
    sym = out["symbol"]
    empty = sym.isna().to_numpy() | (sym.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise _ValueProblem(mapping.get("symbol", "symbol"), i, None, "symbol is empty")
    for field in _NUMERIC:
        if field in out.columns:
            out[field] = _parse_numbers(out[field], mapping.get(field, field))
    if "vwap" not in out.columns and "amount" in out.columns:
        volume = out["volume"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            out["vwap"] = np.where(volume != 0, out["amount"].to_numpy() / volume, np.nan)
    if "factor" not in out.columns and "adj_close" in out.columns:
        close = out["close"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            out["factor"] = np.where(close != 0, out["adj_close"].to_numpy() / close, np.nan)
    return out.drop(columns=[c for c in ("amount", "adj_close") if c in out.columns])


def _parse_dates(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        local: pd.Series = col.dt.tz_localize(None)  # the exchange's local trading date
        return local
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return col
    if pd.api.types.is_integer_dtype(col.dtype):  # 20200102 style trade dates
        text = col.astype(str)
        parsed = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
    else:
        text = col
        parsed = pd.to_datetime(col, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = text.iloc[i]
        if pd.isna(value) or str(value).strip() == "":
            raise _ValueProblem("date", i, None, "date is empty")
        raise _ValueProblem("date", i, value, "value is not a date")
    return parsed


def _parse_numbers(col: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col.dtype) or not (
        pd.api.types.is_numeric_dtype(col.dtype) or col.dtype == object or pd.api.types.is_string_dtype(col.dtype)
    ):
        raise _ValueProblem(name, 0, col.iloc[0] if len(col) else None, f"column type {col.dtype} is not numeric")
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.astype("float64")
    parsed = pd.to_numeric(col, errors="coerce")
    bad = (parsed.isna() & col.notna()).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _ValueProblem(name, i, col.iloc[i], "value is not a number")
    return parsed.astype("float64")


# --- CSV ---------------------------------------------------------------------------------------


def _read_bytes(fs: pafs.FileSystem, f: _File, where: str) -> bytes:
    try:
        with fs.open_input_stream(f.path) as stream:
            data: bytes = stream.read()
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{where}: cannot be read: {exc}") from exc
    return data


def _line_of_row(data: bytes, row: int) -> int:
    """Physical 1-based line of pyarrow's ``Row #row`` (pyarrow counts non-empty lines, header = 1)."""
    seen = 0
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if line.strip(b"\r"):
            seen += 1
            if seen == row:
                return lineno
    return row


def _read_csv(fs: pafs.FileSystem, f: _File, where: str) -> pd.DataFrame:
    data = _read_bytes(fs, f, where)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SourceError(f"{where}, line {line}: binary data (a NUL byte); this is not a CSV text file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            f"{where}, line {line}: bytes that are not UTF-8 text (offset {exc.start}); "
            "CSV files must be UTF-8"
        ) from None
    first = next((ln for ln in data.split(b"\n") if ln.strip(b"\r \t")), b"")
    if not first:
        raise SourceError(f"{where}: the file is empty (no header line)")
    header = next(csv.reader([first.decode("utf-8").rstrip("\r")]))
    mapping = map_columns(header, where=where)
    _check_required(_with_partitions(mapping, f), header, where=where)
    types: dict[str, Any] = {mapping[c]: pa.string() for c in ("date", "symbol") if c in mapping}
    types.update({mapping[c]: pa.float64() for c in _NUMERIC if c in mapping})
    invalid: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        invalid.append(row)
        return "error"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=list(mapping.values()), strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise _csv_error(exc, invalid, data, header, where) from None
    df = table.to_pandas()
    try:
        return _to_bar_frame(df, mapping, f)
    except _ValueProblem as p:
        line = _line_of_row(data, p.index + 2)
        raise SourceError(f"{where}, line {line}, column {p.column!r}: {p.describe()}") from None


def _csv_error(exc: Exception, invalid: list[Any], data: bytes, header: list[str], where: str) -> SourceError:
    msg = str(exc)
    if invalid:
        row = invalid[0]
        line = _line_of_row(data, int(row.number)) if row.number is not None else "?"
        return SourceError(
            f"{where}, line {line}: malformed CSV row with {row.actual_columns} field(s) where the "
            f"header has {row.expected_columns}: {str(row.text)[:120]!r}"
        )
    m = _CONVERSION_RE.search(msg)
    if m:
        col_idx, row_no, to_type, value = int(m[1]), int(m[2]), m[3], m[4]
        column = header[col_idx] if col_idx < len(header) else f"#{col_idx}"
        line = _line_of_row(data, row_no)
        rule = "value is not a number" if to_type in ("double", "float") else f"value is not {to_type}"
        return SourceError(f"{where}, line {line}, column {column!r}: {rule} ({value!r})")
    m = _ROW_RE.search(msg)
    where_line = f", line {_line_of_row(data, int(m[1]))}" if m else ""
    return SourceError(f"{where}{where_line}: malformed CSV: {msg}")


# --- Parquet -------------------------------------------------------------------------------------


def _date_filter(field: pa.Field, lo: date, hi: date) -> Any:
    """A pushed-down ``lo <= date <= hi`` predicate for date/timestamp columns, else ``None``."""
    col = pads.field(field.name)
    typ = field.type
    if pa.types.is_date(typ):
        return (col >= pa.scalar(lo, typ)) & (col <= pa.scalar(hi, typ))
    if pa.types.is_timestamp(typ):
        lo_ts = pd.Timestamp(lo, tz=typ.tz) if typ.tz else pd.Timestamp(lo)
        hi_ts = pd.Timestamp(hi + timedelta(days=1), tz=typ.tz) if typ.tz else pd.Timestamp(hi + timedelta(days=1))
        return (col >= pa.scalar(lo_ts, typ)) & (col < pa.scalar(hi_ts, typ))
    return None


def _read_parquet(fs: pafs.FileSystem, f: _File, where: str, lo: date, hi: date) -> pd.DataFrame:
    try:
        dataset = pads.dataset(f.path, filesystem=fs, format="parquet")
        schema: pa.Schema = dataset.schema
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{where}: not a readable Parquet file: {exc}") from exc
    names = list(schema.names)
    mapping = map_columns(names, where=where)
    _check_required(_with_partitions(mapping, f), names, where=where)
    columns = [c for c in mapping.values() if c in names]
    predicate = _date_filter(schema.field(mapping["date"]), lo, hi) if "date" in mapping else None
    file_mapping = {k: v for k, v in mapping.items() if v in names}
    try:
        return _to_bar_frame(_parquet_frame(dataset, columns, predicate, where), file_mapping, f)
    except _ValueProblem as exc:
        problem = exc
    if predicate is not None:
        # name the row by its position in the file, not among the rows the filter kept
        try:
            _to_bar_frame(_parquet_frame(dataset, columns, None, where), file_mapping, f)
        except _ValueProblem as exc:
            problem = exc
    raise SourceError(
        f"{where}, row {problem.index}, column {problem.column!r}: {problem.describe()}"
    )


def _parquet_frame(dataset: Any, columns: list[str], predicate: Any, where: str) -> pd.DataFrame:
    try:
        table = dataset.to_table(columns=columns, filter=predicate)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{where}: cannot be read: {exc}") from exc
    # date32 -> timestamp: a datetime64 column instead of Python date objects
    for i, fld in enumerate(table.schema):
        if pa.types.is_date(fld.type):
            table = table.set_column(i, fld.name, table.column(i).cast(pa.timestamp("s")))
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _make(fmt: Format) -> Callable[[str, str, Resolver], FileSource]:
    def factory(spec: str, body: str, resolve: Resolver) -> FileSource:
        if not body:
            raise SourceError(f"source spec {spec!r}: {fmt}: needs a file or folder path ({fmt}:PATH)")
        return FileSource(spec=spec, uri=body, fmt=fmt, resolve=resolve)

    factory.__doc__ = f"Factory for ``{fmt}:PATH`` specs."
    return factory


parquet_from_spec = _make("parquet")
csv_from_spec = _make("csv")
