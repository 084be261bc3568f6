"""Qlib binary data directories: ``qlib:PATH``.

Layout (what Qlib's ``dump_bin`` writes and ``D.features`` reads)::

    PATH/calendars/day.txt                      one trading date per line, ascending
    PATH/instruments/all.txt                    SYMBOL<TAB>first day<TAB>last day, one span per line
    PATH/features/<symbol lower>/<field>.day.bin

Each ``.bin`` file is little-endian float32: the first value is the calendar index of the series'
first day, then one value per calendar day; days inside the span with no bar (suspensions) are NaN.
Qlib stores *adjusted* fields -- ``price * factor`` and ``volume / factor`` -- plus ``factor`` itself,
so this source converts back to raw bars: ``price = stored / factor``, ``volume = stored * factor``.
Without a ``factor.day.bin`` the factor is 1.0 and prices are taken as stored. ``vwap`` is optional.
Rows whose four prices are all NaN (suspended days) are dropped, as are days outside the symbol's
spans in ``all.txt``; symbols are upper-cased. Values are float32, so raw prices carry float32
rounding (relative error ~1e-7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from quant_core.data.bars import coerce_bars, empty_bars, sort_bars
from quant_core.data.sources import Resolver, SourceError, check_range

__all__ = ["QlibBinSource", "from_spec"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

PRICE_FIELDS = ("open", "high", "low", "close")
REQUIRED_FIELDS = (*PRICE_FIELDS, "volume")
OPTIONAL_FIELDS = ("vwap", "factor")
# Qlib prefixes file names that Windows reserves (qlib.utils.code_to_fname)
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


@dataclass(frozen=True)
class QlibBinSource:
    """Bars from a Qlib binary data directory (daily frequency).

    Args:
        spec: the spec string, used in messages.
        uri: the directory: local path, ``file://`` or ``s3://bucket/prefix``.
        resolve: maps ``uri`` to ``(filesystem, path)``.
    """

    spec: str
    uri: str
    resolve: Resolver

    def extract(self, start: date, end: date) -> pd.DataFrame:
        """Raw bars for calendar days ``start <= d <= end`` (inclusive), sorted by ``(date, symbol)``.

        Only the needed part of each ``.bin`` file is read.

        Raises:
            SourceError: the directory, calendar, instruments file or a required field file is
                missing, or a file is malformed or truncated.
        """
        lo, hi = check_range(start, end, spec=self.spec)
        try:
            fs, root = self.resolve(self.uri)
        except SourceError as exc:
            raise SourceError(f"{self.spec}: {exc}") from None
        root = root.rstrip("/")
        kind = fs.get_file_info(root).type
        if kind == pafs.FileType.NotFound:
            raise SourceError(f"{self.spec}: path {self.uri!r} does not exist")
        if kind != pafs.FileType.Directory:
            raise SourceError(f"{self.spec}: {self.uri!r} is not a directory (a Qlib data dir is expected)")
        cal = _read_calendar(fs, root, self.spec)
        spans = _read_instruments(fs, root, self.spec, cal)
        a = int(np.searchsorted(cal, np.datetime64(lo, "D"), side="left"))
        b = int(np.searchsorted(cal, np.datetime64(hi, "D"), side="right"))
        if a >= b:
            return empty_bars()
        days = cal[a:b]
        frames: list[pd.DataFrame] = []
        for symbol, sym_spans in spans.items():
            in_span = np.zeros(b - a, dtype=bool)
            for s0, s1 in sym_spans:
                in_span |= (days >= s0) & (days <= s1)
            if not in_span.any():
                continue
            folder = _feature_dir(fs, root, symbol, self.spec)
            last_day = max(s1 for _, s1 in sym_spans)
            last_idx = int(np.searchsorted(cal, last_day, side="right")) - 1
            values: dict[str, F64] = {}
            for name in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS):
                arr = _read_field(fs, f"{folder}/{name}.day.bin", (a, b), cal, last_idx, self.spec)
                if arr is None:
                    if name in REQUIRED_FIELDS:
                        raise SourceError(
                            f"{self.spec}: {symbol}: required field file {folder}/{name}.day.bin is missing"
                        )
                    continue
                values[name] = arr
            factor = values.get("factor", np.ones(b - a))
            keep = in_span & ~np.all([np.isnan(values[p]) for p in PRICE_FIELDS], axis=0)
            if not keep.any():
                continue
            frame = pd.DataFrame({"date": days[keep].astype("datetime64[s]"), "symbol": symbol})
            for p in (*PRICE_FIELDS, "vwap"):
                if p in values:
                    frame[p] = values[p][keep] / factor[keep]
            frame["volume"] = values["volume"][keep] * factor[keep]
            frame["factor"] = factor[keep]
            frames.append(frame)
        logger.info("%s: %d symbol(s) with bars in [%s, %s]", self.spec, len(frames), lo, hi)
        if not frames:
            return empty_bars()
        return sort_bars(coerce_bars(pd.concat(frames, ignore_index=True), source=self.spec))


def _read_text(fs: pafs.FileSystem, path: str, spec: str, what: str) -> list[str]:
    try:
        with fs.open_input_stream(path) as stream:
            data: bytes = stream.read()
    except FileNotFoundError:
        raise SourceError(f"{spec}: {what} {path} is missing (not a Qlib data dir?)") from None
    except (OSError, pa.ArrowException) as exc:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise SourceError(f"{spec}: {what} {path} is missing (not a Qlib data dir?)") from None
        raise SourceError(f"{spec}: {what} {path} cannot be read: {exc}") from exc
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SourceError(f"{spec}: {what} {path} is not UTF-8 text") from None


def _read_calendar(fs: pafs.FileSystem, root: str, spec: str) -> npt.NDArray[np.datetime64]:
    path = f"{root}/calendars/day.txt"
    lines = _read_text(fs, path, spec, "calendar")
    out: list[np.datetime64] = []
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            out.append(np.datetime64(pd.Timestamp(text).date(), "D"))
        except ValueError:
            raise SourceError(f"{spec}: calendar {path}, line {lineno}: {text!r} is not a date") from None
        if len(out) > 1 and out[-1] <= out[-2]:
            raise SourceError(f"{spec}: calendar {path}, line {lineno}: {text} is not after the previous day")
    if not out:
        raise SourceError(f"{spec}: calendar {path} is empty")
    return np.array(out, dtype="datetime64[D]")


def _read_instruments(
    fs: pafs.FileSystem, root: str, spec: str, cal: npt.NDArray[np.datetime64]
) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    path = f"{root}/instruments/all.txt"
    spans: dict[str, list[tuple[np.datetime64, np.datetime64]]] = {}
    for lineno, line in enumerate(_read_text(fs, path, spec, "instruments file"), start=1):
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts if p.strip()]
        if not parts:
            continue
        if len(parts) < 3:
            raise SourceError(
                f"{spec}: instruments file {path}, line {lineno}: expected SYMBOL<TAB>start<TAB>end, got {line!r}"
            )
        try:
            s0 = np.datetime64(pd.Timestamp(parts[1]).date(), "D")
            s1 = np.datetime64(pd.Timestamp(parts[2]).date(), "D")
        except ValueError:
            raise SourceError(
                f"{spec}: instruments file {path}, line {lineno}: start/end {parts[1]!r}, {parts[2]!r} are not dates"
            ) from None
        spans.setdefault(parts[0].upper(), []).append((s0, s1))
    if not spans:
        raise SourceError(f"{spec}: instruments file {path} lists no instrument")
    return dict(sorted(spans.items()))


def _feature_dir(fs: pafs.FileSystem, root: str, symbol: str, spec: str) -> str:
    names = [symbol.lower()]
    if symbol.upper() in _RESERVED:
        names.insert(0, f"_qlib_{symbol.lower()}")
    for name in names:
        folder = f"{root}/features/{name}"
        if fs.get_file_info(folder).type == pafs.FileType.Directory:
            return folder
    raise SourceError(f"{spec}: {symbol} is listed in instruments/all.txt but {root}/features/{names[-1]} is missing")


def _read_field(
    fs: pafs.FileSystem,
    path: str,
    window: tuple[int, int],
    cal: npt.NDArray[np.datetime64],
    last_idx: int,
    spec: str,
) -> F64 | None:
    """Values for calendar indices ``[a, b)`` (NaN outside the stored series), or ``None`` if absent.

    ``last_idx`` is the calendar index of the symbol's last day in ``all.txt``: a series that stops
    before it is a truncated file.
    """
    a, b = window
    n_cal = len(cal)
    try:
        handle = fs.open_input_file(path)
    except (OSError, pa.ArrowException) as exc:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        raise SourceError(f"{spec}: {path} cannot be read: {exc}") from exc
    with handle:
        size = int(handle.size())
        if size < 4 or size % 4:
            raise SourceError(
                f"{spec}: {path} is truncated: {size} bytes is not a 4-byte header plus float32 values"
            )
        first = float(np.frombuffer(handle.read_at(4, 0), dtype="<f4")[0])
        if not (np.isfinite(first) and first == int(first) and 0 <= first < n_cal):
            raise SourceError(
                f"{spec}: {path} has a corrupt header: first value {first!r} is not a calendar index "
                f"in 0..{n_cal - 1}"
            )
        start, count = int(first), size // 4 - 1
        if start + count > n_cal:
            raise SourceError(
                f"{spec}: {path} holds {count} values from calendar index {start}, past the calendar's "
                f"{n_cal} days (calendar truncated or file corrupt)"
            )
        if start + count - 1 < last_idx:
            stop = cal[start + count - 1] if count else "before its first day"
            raise SourceError(
                f"{spec}: {path} is truncated: its values stop at {stop} but instruments/all.txt lists "
                f"the symbol until {cal[last_idx]}"
            )
        out = np.full(b - a, np.nan)
        lo, hi = max(a, start), min(b, start + count)
        if lo < hi:
            raw = handle.read_at(4 * (hi - lo), 4 * (1 + lo - start))
            if len(raw) != 4 * (hi - lo):
                raise SourceError(f"{spec}: {path} is truncated: short read at calendar index {lo}")
            out[lo - a : hi - a] = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    return out


def from_spec(spec: str, body: str, resolve: Resolver) -> QlibBinSource:
    """Factory for ``qlib:PATH`` specs."""
    if not body:
        raise SourceError(f"source spec {spec!r}: qlib: needs the data directory (qlib:PATH)")
    return QlibBinSource(spec=spec, uri=body, resolve=resolve)
