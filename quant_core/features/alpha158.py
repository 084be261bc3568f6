"""Alpha158: Qlib's 158 daily features, with Qlib's names, order and semantics.

The expressions are written from QLIB_SEMANTICS.md §8 with this package's builder API. Column
order is operator-major (``ROC5, ROC10, ..., ROC60, MA5, ...``): models train on columns by
position, so the order is part of the contract. Deviations from Qlib are listed in
``docs/features.md`` (the only one that changes values: IdxMax/IdxMin ignore NaN days).

``hist_ref`` is 60: ``ROC60`` and the 60-day windows over ``Ref(x, 1)`` (CORD, CNTx, SUMx, WVMA,
VSUMx) need the 60 trading days before ``d`` plus ``d`` itself.
"""

from __future__ import annotations

from collections.abc import Callable

from quant_core.features.expressions import (
    Abs,
    Const,
    Corr,
    Expr,
    Field,
    Greater,
    IdxMax,
    IdxMin,
    Less,
    Log,
    Max,
    Mean,
    Min,
    Quantile,
    Rank,
    Ref,
    Resi,
    Rsquare,
    Slope,
    Std,
    Sum,
)
from quant_core.features.feature_set import FeatureSet

WINDOWS: tuple[int, ...] = (5, 10, 20, 30, 60)

_EPS = 1e-12


def _kbar() -> list[tuple[str, Expr]]:
    o, h, lo, c = Field("open"), Field("high"), Field("low"), Field("close")
    rng = h - lo + _EPS
    return [
        ("KMID", (c - o) / o),
        ("KLEN", (h - lo) / o),
        ("KMID2", (c - o) / rng),
        ("KUP", (h - Greater(o, c)) / o),
        ("KUP2", (h - Greater(o, c)) / rng),
        ("KLOW", (Less(o, c) - lo) / o),
        ("KLOW2", (Less(o, c) - lo) / rng),
        ("KSFT", (2 * c - h - lo) / o),
        ("KSFT2", (2 * c - h - lo) / rng),
    ]


def _price() -> list[tuple[str, Expr]]:
    c = Field("close")
    return [(f"{f.upper()}0", Field(f) / c) for f in ("open", "high", "low", "vwap")]


def _rolling() -> list[tuple[str, Expr]]:
    c, h, lo, v = Field("close"), Field("high"), Field("low"), Field("volume")
    c1 = Ref(c, 1)
    v1 = Ref(v, 1)
    up, down, move = Greater(c - c1, Const(0)), Greater(c1 - c, Const(0)), Abs(c - c1)
    vup, vdown, vmove = Greater(v - v1, Const(0)), Greater(v1 - v, Const(0)), Abs(v - v1)
    wv = Abs(c / c1 - 1) * v

    def block(prefix: str, make: Callable[[int], Expr]) -> list[tuple[str, Expr]]:
        return [(f"{prefix}{d}", make(d)) for d in WINDOWS]

    blocks = [
        block("ROC", lambda d: Ref(c, d) / c),
        block("MA", lambda d: Mean(c, d) / c),
        block("STD", lambda d: Std(c, d) / c),
        block("BETA", lambda d: Slope(c, d) / c),
        block("RSQR", lambda d: Rsquare(c, d)),
        block("RESI", lambda d: Resi(c, d) / c),
        block("MAX", lambda d: Max(h, d) / c),
        block("MIN", lambda d: Min(lo, d) / c),
        block("QTLU", lambda d: Quantile(c, d, 0.8) / c),
        block("QTLD", lambda d: Quantile(c, d, 0.2) / c),
        block("RANK", lambda d: Rank(c, d)),
        block("RSV", lambda d: (c - Min(lo, d)) / (Max(h, d) - Min(lo, d) + _EPS)),
        block("IMAX", lambda d: IdxMax(h, d) / d),
        block("IMIN", lambda d: IdxMin(lo, d) / d),
        block("IMXD", lambda d: (IdxMax(h, d) - IdxMin(lo, d)) / d),
        block("CORR", lambda d: Corr(c, Log(v + 1), d)),
        block("CORD", lambda d: Corr(c / c1, Log(v / v1 + 1), d)),
        block("CNTP", lambda d: Mean(c > c1, d)),
        block("CNTN", lambda d: Mean(c < c1, d)),
        block("CNTD", lambda d: Mean(c > c1, d) - Mean(c < c1, d)),
        block("SUMP", lambda d: Sum(up, d) / (Sum(move, d) + _EPS)),
        block("SUMN", lambda d: Sum(down, d) / (Sum(move, d) + _EPS)),
        block("SUMD", lambda d: (Sum(up, d) - Sum(down, d)) / (Sum(move, d) + _EPS)),
        block("VMA", lambda d: Mean(v, d) / (v + _EPS)),
        block("VSTD", lambda d: Std(v, d) / (v + _EPS)),
        block("WVMA", lambda d: Std(wv, d) / (Mean(wv, d) + _EPS)),
        block("VSUMP", lambda d: Sum(vup, d) / (Sum(vmove, d) + _EPS)),
        block("VSUMN", lambda d: Sum(vdown, d) / (Sum(vmove, d) + _EPS)),
        block("VSUMD", lambda d: (Sum(vup, d) - Sum(vdown, d)) / (Sum(vmove, d) + _EPS)),
    ]
    return [pair for b in blocks for pair in b]


def alpha158() -> FeatureSet:
    """The Alpha158 feature set (158 features, ``hist_ref`` 60, fields OHLC + volume + vwap)."""
    return FeatureSet.from_pairs("alpha158", [*_kbar(), *_price(), *_rolling()])
