"""Daily bar schema (DESIGN.md "Data model") and conversion of arbitrary frames into it.

A bar is one row per (date, symbol) with *raw* exchange prices and a point-in-time cumulative
adjustment ``factor``; features use adjusted fields (``price * factor``, ``volume / factor``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
REQUIRED_COLUMNS: tuple[str, ...] = ("date", "symbol", "open", "high", "low", "close", "volume")
BAR_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, "vwap", "factor")

BAR_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("vwap", pa.float64()),
        pa.field("factor", pa.float64()),
    ]
)

#: The dtype of a bar frame's ``symbol`` column: what pandas gives a column of Python strings
#: (``str``, Arrow-backed, in pandas 3).
STRING_DTYPE = pd.Series(np.array(["A"], dtype=object)).dtype

#: Symbols are upper-case exchange codes or tickers: ``SH600000``, ``AAPL``, ``BRK.B``, ``S00042``.
SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._\-]{0,31}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)


class BarSchemaError(ValueError):
    """A frame cannot be turned into bars: names the input, the column or row, and the rule."""


def empty_bars() -> pd.DataFrame:
    """An empty frame with the bar columns and dtypes."""
    return bars_from_table(BAR_SCHEMA.empty_table())


def bars_from_table(table: pa.Table) -> pd.DataFrame:
    """Arrow table (bar schema) -> pandas frame with ``date`` as ``datetime64[s]`` dates.

    ``symbol`` gets pandas' string dtype (``str``, Arrow-backed in pandas 3), as
    :func:`coerce_bars` gives it, and dates convert as integers, not as ``datetime.date`` objects:
    the full synthetic market (1.185M bars) converts in 0.014 s, and its symbols factorize in
    0.011 s instead of 0.023-0.025 s as Python objects.
    """
    i = table.schema.get_field_index("symbol")
    if pa.types.is_dictionary(table.schema.field(i).type):
        table = table.set_column(i, "symbol", table.column(i).cast(pa.string()))
    df: pd.DataFrame = table.to_pandas(date_as_object=False, split_blocks=True)  # no 2-D block to copy into
    df["date"] = df["date"].astype("datetime64[s]")
    if df["symbol"].dtype != STRING_DTYPE:  # pandas without the Arrow-backed default
        df["symbol"] = df["symbol"].astype(STRING_DTYPE)
    return df


def bars_to_table(df: pd.DataFrame) -> pa.Table:
    """Pandas frame of bars -> Arrow table with exactly :data:`BAR_SCHEMA`."""
    out = df.loc[:, list(BAR_COLUMNS)].copy()
    out["date"] = pd.to_datetime(out["date"]).dt.date
    out["symbol"] = out["symbol"].astype(str)
    return pa.Table.from_pandas(out, schema=BAR_SCHEMA, preserve_index=False)


def coerce_bars(df: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Check column presence and types and return a frame in the bar schema.

    Types are converted (``date`` to dates, prices to float64) but *values* are not judged here:
    NaN prices, negative volumes, broken OHLC envelopes and the like are the validation gate's job,
    so its report can name every offending row.

    Args:
        df: a frame that already uses qonline's column names (sources map their layouts first).
        source: the input's name, used in error messages.

    Raises:
        BarSchemaError: a required column is missing, or a value cannot be converted to its type.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise BarSchemaError(
            f"{source}: missing required column(s) {missing}; bars need {list(REQUIRED_COLUMNS)} "
            f"(found {list(map(str, df.columns))})"
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    try:
        out["date"] = pd.to_datetime(df["date"].to_numpy(), errors="raise").normalize().astype(
            "datetime64[s]"
        )
    except (ValueError, TypeError) as exc:
        bad = _first_unparseable(df["date"], lambda s: pd.to_datetime(s, errors="coerce"))
        raise BarSchemaError(
            f"{source}: column 'date' has a value that is not a date{bad}: {exc}"
        ) from exc
    symbols = df["symbol"]
    if symbols.isna().any():
        row = int(np.flatnonzero(symbols.isna().to_numpy())[0])
        raise BarSchemaError(f"{source}: column 'symbol' is empty at row {row}")
    out["symbol"] = symbols.astype(str).to_numpy()
    for col in ("open", "high", "low", "close", "volume", "vwap", "factor"):
        if col not in df.columns:
            out[col] = 1.0 if col == "factor" else np.nan
            continue
        try:
            out[col] = pd.to_numeric(df[col].to_numpy(), errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            bad = _first_unparseable(df[col], lambda s: pd.to_numeric(s, errors="coerce"))
            raise BarSchemaError(
                f"{source}: column '{col}' must be numeric (float64){bad}"
            ) from exc
    if "factor" in df.columns and out["factor"].isna().any():
        # a missing factor means "no adjustment known": 1.0, never NaN prices downstream
        out["factor"] = out["factor"].fillna(1.0)
    return out


def _first_unparseable(col: pd.Series, parse: object) -> str:
    assert callable(parse)
    parsed = parse(col)
    bad = parsed.isna() & col.notna()
    if not bad.any():
        return ""
    i = int(np.flatnonzero(bad.to_numpy())[0])
    return f" (row {i}: {col.iloc[i]!r})"


def invalid_symbols(symbols: Iterable[str]) -> list[str]:
    """Symbols that do not match :data:`SYMBOL_PATTERN`, sorted."""
    return sorted({s for s in symbols if not _SYMBOL_RE.match(s)})


def sort_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Bars sorted by (date, symbol) with a fresh index: the lake's storage order."""
    return df.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
