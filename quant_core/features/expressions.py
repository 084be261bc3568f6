"""A small expression language for per-symbol time-series features, Qlib-style.

An expression is an immutable tree of :class:`Expr` nodes: bar fields (:class:`Field`), constants,
element-wise arithmetic and comparisons, :class:`Ref` (shift in trading days) and rolling-window
operators (:class:`Mean`, :class:`Std`, :class:`Slope`, :class:`Corr`, ...). Build trees in
Python::

    close = Field("close")
    ma5 = Mean(close, 5) / close

or parse Qlib's string syntax with :func:`parse_expression` (``"Mean($close, 5)/$close"``).

Every node knows how far it reaches into the past (:attr:`Expr.left_lookback`, in trading days:
a rolling window of ``N`` adds ``N - 1``, ``Ref(x, N)`` adds ``N``, nesting adds up) and into the
future (:attr:`Expr.right_lookahead`: ``Ref`` with a negative ``N``). A feature set's ``hist_ref``
warm-up is derived from these, never typed by hand.

Semantics follow QLIB_SEMANTICS.md §8 (operators run per symbol on the trading calendar, windows are
partial at the start of a series, NaN is skipped by rolling reductions) with one deliberate fix:
:class:`IdxMax` / :class:`IdxMin` ignore NaN days instead of treating them as the extreme.
``docs/features.md`` lists every deviation from Qlib.

Nodes are validated when built: an unknown field, a window below 1 or a quantile outside
``[0, 1]`` raises :class:`FeatureSetError` naming the operator and the offending value.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from quant_core.errors import QonlineError
from quant_core.features import kernels

#: Bar fields an expression may read (``$close`` ...). Prices are adjusted (``price * factor``),
#: volume is adjusted the other way (``volume / factor``); ``factor`` itself is the raw factor.
FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "vwap", "factor")

#: What evaluating a node gives: a ``(symbols, dates)`` array, or a plain number for constants.
Value: TypeAlias = npt.NDArray[Any] | float
FloatPanel: TypeAlias = npt.NDArray[np.float64]


class FeatureSetError(QonlineError, ValueError):
    """A feature expression or feature set is invalid: names the feature, operator and value."""


class EvalContext(Protocol):
    """What a node needs from the engine to evaluate itself on a panel.

    ``value(expr)`` gives a child's value (memoised by the engine), ``exists`` marks the cells
    inside each series' span (first to last bar), ``start`` is each series' first day index,
    ``needed_from(expr)`` the first day index whose value anyone needs (rolling kernels skip
    the days before it).
    """

    @property
    def exists(self) -> npt.NDArray[np.bool_]: ...

    @property
    def start(self) -> npt.NDArray[np.int64]: ...

    def value(self, expr: Expr) -> Value: ...

    def needed_from(self, expr: Expr) -> int: ...

    def field(self, name: str) -> npt.NDArray[Any]: ...


Operand: TypeAlias = "Expr | int | float"


def as_expr(value: Operand) -> Expr:
    """An :class:`Expr` as is; a number as a :class:`Const`.

    Raises:
        FeatureSetError: ``value`` is neither (a string, a bool, ...).
    """
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise FeatureSetError(
            f"expected an expression or a number, got {value!r} ({type(value).__name__}); "
            "use parse_expression() for strings"
        )
    return Const(float(value))


def _fmt_number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Expr(ABC):
    """Base of all expression nodes: immutable, hashable, structurally comparable.

    Python operators build nodes: ``+ - * /``, unary ``-``, ``abs()``, and ``>`` / ``<`` (which
    give :class:`Gt` / :class:`Lt`, not booleans). ``==`` stays structural equality, so
    expressions can be dictionary keys (the engine shares common sub-expressions that way).
    """

    __slots__ = ()

    @property
    @abstractmethod
    def children(self) -> tuple[Expr, ...]:
        """Direct sub-expressions."""

    @property
    def own_lookback(self) -> int:
        """Trading days this node itself reaches back beyond its children's reach."""
        return 0

    @property
    def own_lookahead(self) -> int:
        """Trading days this node itself reaches forward beyond its children's reach."""
        return 0

    @property
    def fusion_key(self) -> tuple[object, ...] | None:
        """Nodes with the same key are computed together by :func:`evaluate_fused` (one kernel
        call, each value bit-identical to the node's own :meth:`evaluate`); ``None``: alone."""
        return None

    @property
    def left_lookback(self) -> int:
        """Trading days before ``t`` whose inputs the value at ``t`` may depend on.

        Reaches add up along the tree (an upper bound, as Qlib's ``get_extended_window_size``:
        ``Ref(Ref(x, -3), 1)`` counts 1 back and 3 ahead).
        """
        return max((c.left_lookback for c in self.children), default=0) + self.own_lookback

    @property
    def right_lookahead(self) -> int:
        """Trading days after ``t`` whose inputs the value at ``t`` may depend on (0: point in time)."""
        return max((c.right_lookahead for c in self.children), default=0) + self.own_lookahead

    @property
    def fields(self) -> frozenset[str]:
        """Bar fields read anywhere in the tree."""
        return frozenset().union(*(c.fields for c in self.children))

    def walk(self) -> Iterator[Expr]:
        """This node and all its descendants, depth first (shared sub-trees repeat)."""
        yield self
        for c in self.children:
            yield from c.walk()

    @abstractmethod
    def evaluate(self, ctx: EvalContext) -> Value:
        """The node's value on the context's panel (children come from ``ctx.value``)."""

    # -- operator sugar ------------------------------------------------------------------------
    def __add__(self, other: Operand) -> Expr:
        return Add(self, as_expr(other))

    def __radd__(self, other: Operand) -> Expr:
        return Add(as_expr(other), self)

    def __sub__(self, other: Operand) -> Expr:
        return Sub(self, as_expr(other))

    def __rsub__(self, other: Operand) -> Expr:
        return Sub(as_expr(other), self)

    def __mul__(self, other: Operand) -> Expr:
        return Mul(self, as_expr(other))

    def __rmul__(self, other: Operand) -> Expr:
        return Mul(as_expr(other), self)

    def __truediv__(self, other: Operand) -> Expr:
        return Div(self, as_expr(other))

    def __rtruediv__(self, other: Operand) -> Expr:
        return Div(as_expr(other), self)

    def __neg__(self) -> Expr:
        return Neg(self)

    def __abs__(self) -> Expr:
        return Abs(self)

    def __gt__(self, other: Operand) -> Expr:
        return Gt(self, as_expr(other))

    def __lt__(self, other: Operand) -> Expr:
        return Lt(self, as_expr(other))


# -- helpers for evaluation ------------------------------------------------------------------------


def _as_array(ctx: EvalContext, value: Value) -> npt.NDArray[Any]:
    """A panel for ``value``: constants become the constant inside each series' span, NaN outside."""
    if isinstance(value, np.ndarray):
        return value
    return np.where(ctx.exists, float(value), np.nan)


def _kernel_input(ctx: EvalContext, value: Value) -> npt.NDArray[Any]:
    """``value`` as a C-contiguous float32 or float64 panel for a kernel (the kernels widen float32
    to float64 as they read it, exactly as ``astype(float64)`` would, without the copy)."""
    array = _as_array(ctx, value)
    if array.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(array, dtype=np.float64)


# -- leaves ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field(Expr):
    """A bar field, adjusted: ``$open $high $low $close $vwap`` are ``price * factor``,
    ``$volume`` is ``volume / factor``, ``$factor`` is the factor."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in FIELDS:
            raise FeatureSetError(f"unknown field {self.name!r}; known fields: {', '.join(FIELDS)}")

    @property
    def children(self) -> tuple[Expr, ...]:
        return ()

    @property
    def fields(self) -> frozenset[str]:
        return frozenset({self.name})

    def evaluate(self, ctx: EvalContext) -> Value:
        return ctx.field(self.name)

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True, slots=True)
class Const(Expr):
    """A number."""

    value: float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool | np.bool_) or not isinstance(self.value, numbers.Real):
            raise FeatureSetError(f"Const needs a number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @property
    def children(self) -> tuple[Expr, ...]:
        return ()

    def evaluate(self, ctx: EvalContext) -> Value:
        return self.value

    def __str__(self) -> str:
        return _fmt_number(self.value)


# -- element-wise operators ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Unary(Expr):
    x: Expr
    op_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not isinstance(self.x, Expr):
            object.__setattr__(self, "x", as_expr(self.x))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.x,)

    def __str__(self) -> str:
        return f"{self.op_name}({self.x})"


@dataclass(frozen=True, slots=True)
class Abs(_Unary):
    """Absolute value."""

    op_name: ClassVar[str] = "Abs"

    def evaluate(self, ctx: EvalContext) -> Value:
        return kernels.elementwise(np.abs, ctx.value(self.x))


@dataclass(frozen=True, slots=True)
class Log(_Unary):
    """Natural logarithm (``log(0) = -inf``, negative -> NaN, as numpy)."""

    op_name: ClassVar[str] = "Log"

    def evaluate(self, ctx: EvalContext) -> Value:
        with np.errstate(divide="ignore", invalid="ignore"):
            return kernels.elementwise(np.log, ctx.value(self.x))


@dataclass(frozen=True, slots=True)
class Neg(_Unary):
    """Negation (``-x``)."""

    op_name: ClassVar[str] = "Neg"

    def evaluate(self, ctx: EvalContext) -> Value:
        return kernels.elementwise(np.negative, ctx.value(self.x))

    def __str__(self) -> str:
        return f"(-{self.x})"


@dataclass(frozen=True, slots=True)
class _Binary(Expr):
    left: Expr
    right: Expr
    op_name: ClassVar[str] = ""
    infix: ClassVar[str] = ""
    ufunc: ClassVar[np.ufunc] = np.add

    def __post_init__(self) -> None:
        for attr in ("left", "right"):
            value = getattr(self, attr)
            if not isinstance(value, Expr):
                object.__setattr__(self, attr, as_expr(value))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def evaluate(self, ctx: EvalContext) -> Value:
        a, b = ctx.value(self.left), ctx.value(self.right)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return kernels.elementwise(self.ufunc, a, b)

    def __str__(self) -> str:
        if self.infix:
            return f"({self.left}{self.infix}{self.right})"
        return f"{self.op_name}({self.left}, {self.right})"


@dataclass(frozen=True, slots=True)
class Add(_Binary):
    """``left + right``."""

    op_name: ClassVar[str] = "Add"
    infix: ClassVar[str] = "+"
    ufunc: ClassVar[np.ufunc] = np.add


@dataclass(frozen=True, slots=True)
class Sub(_Binary):
    """``left - right``."""

    op_name: ClassVar[str] = "Sub"
    infix: ClassVar[str] = "-"
    ufunc: ClassVar[np.ufunc] = np.subtract


@dataclass(frozen=True, slots=True)
class Mul(_Binary):
    """``left * right``."""

    op_name: ClassVar[str] = "Mul"
    infix: ClassVar[str] = "*"
    ufunc: ClassVar[np.ufunc] = np.multiply


@dataclass(frozen=True, slots=True)
class Div(_Binary):
    """``left / right`` (division by zero gives ±inf or NaN, as numpy)."""

    op_name: ClassVar[str] = "Div"
    infix: ClassVar[str] = "/"
    ufunc: ClassVar[np.ufunc] = np.divide


@dataclass(frozen=True, slots=True)
class Greater(_Binary):
    """Element-wise maximum; NaN if either side is NaN (``np.maximum``)."""

    op_name: ClassVar[str] = "Greater"
    ufunc: ClassVar[np.ufunc] = np.maximum


@dataclass(frozen=True, slots=True)
class Less(_Binary):
    """Element-wise minimum; NaN if either side is NaN (``np.minimum``)."""

    op_name: ClassVar[str] = "Less"
    ufunc: ClassVar[np.ufunc] = np.minimum


@dataclass(frozen=True, slots=True)
class _Compare(_Binary):
    """1.0 / 0.0 inside a series' span (a comparison with NaN is 0: "not up"), NaN outside it."""

    def evaluate(self, ctx: EvalContext) -> Value:
        a, b = ctx.value(self.left), ctx.value(self.right)
        with np.errstate(invalid="ignore"):
            hit = self.ufunc(a, b)
        return np.where(ctx.exists, hit, np.nan)


@dataclass(frozen=True, slots=True)
class Gt(_Compare):
    """``left > right`` as 1.0 / 0.0."""

    op_name: ClassVar[str] = "Gt"
    infix: ClassVar[str] = ">"
    ufunc: ClassVar[np.ufunc] = np.greater


@dataclass(frozen=True, slots=True)
class Lt(_Compare):
    """``left < right`` as 1.0 / 0.0."""

    op_name: ClassVar[str] = "Lt"
    infix: ClassVar[str] = "<"
    ufunc: ClassVar[np.ufunc] = np.less


# -- time-series operators --------------------------------------------------------------------------


def _check_int(op: str, what: str, value: object, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise FeatureSetError(f"{op}: {what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise FeatureSetError(f"{op}: {what} must be >= {minimum}, got {value}")


@dataclass(frozen=True, slots=True)
class Ref(Expr):
    """``x`` shifted by ``n`` trading days: ``Ref(x, 1)`` is yesterday's value, ``Ref(x, -2)`` the
    value two trading days ahead (a look into the future: only for labels)."""

    x: Expr
    n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", as_expr(self.x))
        _check_int("Ref", "the shift", self.n, None)
        object.__setattr__(self, "n", int(self.n))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.x,)

    @property
    def own_lookback(self) -> int:
        return max(self.n, 0)

    @property
    def own_lookahead(self) -> int:
        return max(-self.n, 0)

    def evaluate(self, ctx: EvalContext) -> Value:
        value = ctx.value(self.x)
        if not isinstance(value, np.ndarray):
            value = _as_array(ctx, value)
        if self.n == 0:
            return value
        out = np.full_like(value, np.nan)
        if self.n > 0:
            out[:, self.n :] = value[:, : -self.n]
        else:
            out[:, : self.n] = value[:, -self.n :]
        return out

    def __str__(self) -> str:
        return f"Ref({self.x}, {self.n})"


@dataclass(frozen=True, slots=True)
class _Rolling(Expr):
    """A reduction over the last ``n`` trading days (today included), NaN skipped, partial windows
    at the start of a series (pandas ``rolling(n, min_periods=1)``)."""

    x: Expr
    n: int
    op_name: ClassVar[str] = ""
    #: Operators of one kind over the same input and window share a kernel call (see
    #: :func:`evaluate_fused`); ``None``: computed alone.
    fusion_kind: ClassVar[str | None] = None
    #: The kind also shares one call across window lengths (the moments: see
    #: :func:`~quant_core.features.kernels.rolling_moments_windows`).
    fusion_across_windows: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", as_expr(self.x))
        _check_int(self.op_name, "the window", self.n, 1)
        object.__setattr__(self, "n", int(self.n))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.x,)

    @property
    def own_lookback(self) -> int:
        return self.n - 1

    @property
    def fusion_key(self) -> tuple[object, ...] | None:
        if self.fusion_kind is None:
            return None
        return (self.fusion_kind, self.x) if self.fusion_across_windows else (self.fusion_kind, self.x, self.n)

    def evaluate(self, ctx: EvalContext) -> Value:
        return self._kernel(ctx, _kernel_input(ctx, ctx.value(self.x)))

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.op_name}({self.x}, {self.n})"


@dataclass(frozen=True, slots=True)
class Mean(_Rolling):
    """Mean of the window's observations."""

    op_name: ClassVar[str] = "Mean"
    fusion_kind: ClassVar[str | None] = "moments"
    fusion_across_windows: ClassVar[bool] = True

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_mean(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Sum(_Rolling):
    """Sum of the window's observations (NaN if there are none)."""

    op_name: ClassVar[str] = "Sum"
    fusion_kind: ClassVar[str | None] = "moments"
    fusion_across_windows: ClassVar[bool] = True

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_sum(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Std(_Rolling):
    """Sample standard deviation (ddof=1): NaN with fewer than two observations."""

    op_name: ClassVar[str] = "Std"
    fusion_kind: ClassVar[str | None] = "moments"
    fusion_across_windows: ClassVar[bool] = True

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_std(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Max(_Rolling):
    """Largest observation of the window."""

    op_name: ClassVar[str] = "Max"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_max(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Min(_Rolling):
    """Smallest observation of the window."""

    op_name: ClassVar[str] = "Min"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_min(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Rank(_Rolling):
    """Percentile rank of today's value among the window's observations, ties averaged
    (window [3, 2, 2] -> 0.5); NaN if today is NaN."""

    op_name: ClassVar[str] = "Rank"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_rank(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Slope(_Rolling):
    """OLS slope of the observations on their positions 1..n in the window (today at n)."""

    op_name: ClassVar[str] = "Slope"
    fusion_kind: ClassVar[str | None] = "ols"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_slope(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Rsquare(_Rolling):
    """R² of that OLS fit; NaN where the window's std is within 2e-5 of 0."""

    op_name: ClassVar[str] = "Rsquare"
    fusion_kind: ClassVar[str | None] = "ols"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_rsquare(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Resi(_Rolling):
    """Today's value minus the OLS fit at today's position; NaN if today is NaN."""

    op_name: ClassVar[str] = "Resi"
    fusion_kind: ClassVar[str | None] = "ols"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_resi(x, self.n, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class IdxMax(_Rolling):
    """1-based position of the window's maximum counted from its oldest day (``n`` = today).

    Deviation from Qlib (deliberate fix): NaN days are ignored, where Qlib's ``argmax`` reports
    the first NaN day as the maximum. At the start of a series the window is partial and counts
    from the series' first day. Ties go to the oldest day.
    """

    op_name: ClassVar[str] = "IdxMax"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_idxmax(x, self.n, ctx.start, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class IdxMin(_Rolling):
    """1-based position of the window's minimum (see :class:`IdxMax`, same NaN fix)."""

    op_name: ClassVar[str] = "IdxMin"

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_idxmin(x, self.n, ctx.start, ctx.needed_from(self))


@dataclass(frozen=True, slots=True)
class Quantile(_Rolling):
    """Quantile ``q`` of the window's observations, linear interpolation."""

    q: float = 0.5
    op_name: ClassVar[str] = "Quantile"
    fusion_kind: ClassVar[str | None] = "quantile"

    def __post_init__(self) -> None:
        _Rolling.__post_init__(self)
        if isinstance(self.q, bool) or not isinstance(self.q, int | float) or not 0.0 <= self.q <= 1.0:
            raise FeatureSetError(f"Quantile: q must be a number in [0, 1], got {self.q!r}")
        object.__setattr__(self, "q", float(self.q))

    def _kernel(self, ctx: EvalContext, x: npt.NDArray[Any]) -> FloatPanel:
        return kernels.rolling_quantile(x, self.n, self.q, ctx.needed_from(self))

    def __str__(self) -> str:
        return f"Quantile({self.x}, {self.n}, {_fmt_number(self.q)})"


@dataclass(frozen=True, slots=True)
class Corr(Expr):
    """Pearson correlation of ``left`` and ``right`` over the window's days where both are observed;
    NaN where either side's own window std is within 2e-5 of 0."""

    left: Expr
    right: Expr
    n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "left", as_expr(self.left))
        object.__setattr__(self, "right", as_expr(self.right))
        _check_int("Corr", "the window", self.n, 1)
        object.__setattr__(self, "n", int(self.n))

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    @property
    def own_lookback(self) -> int:
        return self.n - 1

    def evaluate(self, ctx: EvalContext) -> Value:
        a = _kernel_input(ctx, ctx.value(self.left))
        b = _kernel_input(ctx, ctx.value(self.right))
        return kernels.rolling_corr(a, b, self.n, ctx.needed_from(self))

    def __str__(self) -> str:
        return f"Corr({self.left}, {self.right}, {self.n})"


def evaluate_fused(ctx: EvalContext, nodes: Sequence[Expr]) -> list[Value]:
    """The values of ``nodes``, which share a :attr:`Expr.fusion_key`, from one kernel call.

    ``Mean``/``Sum``/``Std`` of one input share their additions (all window lengths in one
    pass), ``Slope``/
    ``Rsquare``/``Resi`` all their sums, quantiles of one window their sorted window. Every value
    is computed by the same floating-point operations as the node alone. Days are computed from
    the earliest day any of the nodes is needed (a day's value does not depend on that).
    """
    keys = {node.fusion_key for node in nodes}
    if len(keys) != 1 or None in keys:
        raise ValueError(f"cannot fuse {[str(node) for node in nodes]}: their fusion keys differ")
    rolling = [node for node in nodes if isinstance(node, _Rolling)]
    if len(rolling) != len(nodes):  # pragma: no cover - every fusing node is a _Rolling
        raise ValueError("only rolling operators fuse")
    # one use of the input per node, as if each node had been evaluated alone
    inputs = [ctx.value(node.x) for node in rolling]
    x = _kernel_input(ctx, inputs[0])
    n = rolling[0].n
    t0 = min(ctx.needed_from(node) for node in rolling)
    kind = keys.pop()[0]  # type: ignore[index]
    if kind == "moments":  # one pass for every window length of the input
        slot: dict[type[Expr], int] = {Sum: 0, Mean: 1, Std: 2}
        wants: dict[int, list[bool]] = {}
        for node in rolling:
            wants.setdefault(node.n, [False, False, False])[slot[type(node)]] = True
        moments = kernels.rolling_moments_windows(x, {w: (a, b, c) for w, (a, b, c) in wants.items()}, t0)
        return [moments[node.n][slot[type(node)]] for node in rolling]
    if kind == "ols":
        fit = kernels.rolling_ols(x, n, t0, rsquare=any(isinstance(node, Rsquare) for node in rolling))
        slot = {Slope: 0, Rsquare: 1, Resi: 2}
        return [fit[slot[type(node)]] for node in rolling]
    if kind == "quantile":
        qs = [node.q for node in rolling if isinstance(node, Quantile)]
        return list(kernels.rolling_quantiles(x, n, qs, t0))
    raise ValueError(f"unknown fusion kind {kind!r}")  # pragma: no cover


#: Operators by their name in Qlib's string syntax: ``name -> (class, arity kind)``.
#: Kinds: "unary" (x), "binary" (a, b), "rolling" (x, n), "shift" (x, n), "quantile" (x, n, q),
#: "pair" (a, b, n).
OPERATORS: dict[str, tuple[type[Expr], str]] = {
    "Abs": (Abs, "unary"),
    "Log": (Log, "unary"),
    "Neg": (Neg, "unary"),
    "Add": (Add, "binary"),
    "Sub": (Sub, "binary"),
    "Mul": (Mul, "binary"),
    "Div": (Div, "binary"),
    "Greater": (Greater, "binary"),
    "Less": (Less, "binary"),
    "Gt": (Gt, "binary"),
    "Lt": (Lt, "binary"),
    "Ref": (Ref, "shift"),
    "Mean": (Mean, "rolling"),
    "Sum": (Sum, "rolling"),
    "Std": (Std, "rolling"),
    "Max": (Max, "rolling"),
    "Min": (Min, "rolling"),
    "Rank": (Rank, "rolling"),
    "IdxMax": (IdxMax, "rolling"),
    "IdxMin": (IdxMin, "rolling"),
    "Slope": (Slope, "rolling"),
    "Rsquare": (Rsquare, "rolling"),
    "Resi": (Resi, "rolling"),
    "Quantile": (Quantile, "quantile"),
    "Corr": (Corr, "pair"),
}
