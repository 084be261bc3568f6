"""Named, ordered lists of feature expressions, and the registry of built-in sets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from quant_core.features.expressions import Expr, FeatureSetError
from quant_core.features.parser import parse_expression

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FeatureSet:
    """A named, ordered set of features: column ``names[i]`` is ``expressions[i]``.

    Features must be point in time: an expression that looks into the future (``Ref(x, -1)``) is
    rejected; future-looking expressions belong to labels (:mod:`quant_core.features.labels`).

    Attributes:
        name: the set's name (``"alpha158"``); it names the lake folder ``features/<name>/``.
        names: column names, unique, in output order (the order models train on).
        expressions: one expression per name.

    Raises:
        FeatureSetError: empty set, lengths differ, a duplicate or malformed name, a non-expression,
            or an expression that looks ahead.
    """

    name: str
    names: tuple[str, ...]
    expressions: tuple[Expr, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "expressions", tuple(self.expressions))
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise FeatureSetError(f"a feature set needs a name of letters, digits and '_', got {self.name!r}")
        if not self.names:
            raise FeatureSetError(f"feature set {self.name!r} has no features")
        if len(self.names) != len(self.expressions):
            raise FeatureSetError(
                f"feature set {self.name!r}: {len(self.names)} names but {len(self.expressions)} expressions"
            )
        seen: set[str] = set()
        for feature, expr in zip(self.names, self.expressions, strict=True):
            if not isinstance(feature, str) or not _NAME_RE.match(feature) or feature in ("date", "symbol"):
                raise FeatureSetError(
                    f"feature set {self.name!r}: invalid feature name {feature!r} (letters, digits and "
                    "'_'; not 'date' or 'symbol')"
                )
            if feature in seen:
                raise FeatureSetError(f"feature set {self.name!r}: duplicate feature name {feature!r}")
            seen.add(feature)
            if not isinstance(expr, Expr):
                raise FeatureSetError(
                    f"feature {feature!r} of set {self.name!r}: expected an Expr, got {type(expr).__name__}"
                )
            if expr.right_lookahead > 0:
                raise FeatureSetError(
                    f"feature {feature!r} of set {self.name!r} looks {expr.right_lookahead} trading day(s) "
                    f"into the future ({expr}); features must be point in time (use a label instead)"
                )

    @classmethod
    def from_pairs(cls, name: str, pairs: Iterable[tuple[str, Expr | str]]) -> FeatureSet:
        """Build a set from ``(feature name, expression)`` pairs; strings are parsed Qlib-style.

        Example::

            FeatureSet.from_pairs("mine", [("MA5", "Mean($close, 5)/$close"),
                                           ("VOL", Std(Field("volume"), 20))])

        Raises:
            FeatureSetError: as the constructor, and for any expression that does not parse
                (unknown field or operator, window below 1, ...); the message names the feature.
        """
        names: list[str] = []
        exprs: list[Expr] = []
        for feature, expr in pairs:
            if isinstance(expr, str):
                try:
                    expr = parse_expression(expr)
                except FeatureSetError as exc:
                    raise FeatureSetError(f"feature {feature!r} of set {name!r}: {exc}") from exc
            names.append(feature)
            exprs.append(expr)
        return cls(name, tuple(names), tuple(exprs))

    @classmethod
    def from_mapping(cls, name: str, features: Mapping[str, Expr | str]) -> FeatureSet:
        """:meth:`from_pairs` over a mapping (insertion order is the column order)."""
        return cls.from_pairs(name, features.items())

    @property
    def hist_ref(self) -> int:
        """Warm-up in trading days: the value on day ``d`` needs bars from ``d - hist_ref`` to ``d``.

        The maximum left lookback over the expressions (60 for Alpha158: ``ROC60`` and every
        60-day window over ``Ref(x, 1)``).
        """
        return max(e.left_lookback for e in self.expressions)

    @property
    def fields(self) -> frozenset[str]:
        """Bar fields the expressions read (``"open"``, ``"close"``, ``"vwap"``, ...)."""
        return frozenset().union(*(e.fields for e in self.expressions))

    def __len__(self) -> int:
        return len(self.names)

    def expression_strings(self) -> dict[str, str]:
        """``{feature name: Qlib-style expression string}``, in column order."""
        return {n: str(e) for n, e in zip(self.names, self.expressions, strict=True)}


def _alpha158() -> FeatureSet:
    from quant_core.features.alpha158 import alpha158

    return alpha158()


_BUILTIN: dict[str, Callable[[], FeatureSet]] = {"alpha158": _alpha158}


def known_feature_sets() -> tuple[str, ...]:
    """Names accepted by :func:`get_feature_set`."""
    return tuple(sorted(_BUILTIN))


@cache
def get_feature_set(name: str) -> FeatureSet:
    """The built-in feature set called ``name`` (``"alpha158"``).

    Raises:
        FeatureSetError: no such set; the message lists the known ones.
    """
    try:
        factory = _BUILTIN[name]
    except (KeyError, TypeError):
        raise FeatureSetError(
            f"unknown feature set {name!r}; known feature sets: {', '.join(known_feature_sets())}"
        ) from None
    return factory()
