"""Training labels: forward returns on the adjusted close, Qlib-style.

``LABEL0 = Ref($close, -2)/Ref($close, -1) - 1`` (QLIB_SEMANTICS §8): the return from the close of
``t+1`` to the close of ``t+2``, because a signal computed after the close of ``t`` can trade at
``t+1`` at the earliest. A label of horizon ``h`` is ``Ref($close, -(h+1))/Ref($close, -1) - 1``,
the return over the ``h`` trading days after ``t+1``; ``LABEL0`` is horizon 1. A label's
``lookahead`` (``h + 1`` trading days) is how far it reaches into the future: the label of ``t`` is
known after the close of ``t + lookahead``, which is why training segments are truncated by
``lookahead`` days before a test segment starts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pandas as pd

from quant_core.errors import QonlineError
from quant_core.features.engine import DateLike, Precision, evaluate_plan, plan_panel
from quant_core.features.expressions import Expr, Field, Ref

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HORIZON_NAME_RE = re.compile(r"^LABEL_H(\d+)$")


class LabelError(QonlineError, ValueError):
    """An unknown or invalid label (name, horizon)."""


@dataclass(frozen=True)
class Label:
    """A forward-return label: ``Ref($close, -(horizon+1))/Ref($close, -1) - 1``.

    Attributes:
        name: the column name (``"LABEL0"`` for horizon 1, ``"LABEL_H20"`` for horizon 20).
        horizon: trading days the return spans, counted from ``t+1``; at least 1.

    Raises:
        LabelError: a horizon below 1 or a malformed name.
    """

    name: str
    horizon: int

    def __post_init__(self) -> None:
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1:
            raise LabelError(
                f"label {self.name!r}: the horizon must be an integer >= 1, got {self.horizon!r}"
            )
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name) or self.name in ("date", "symbol"):
            raise LabelError(f"invalid label name {self.name!r} (letters, digits and '_')")

    @property
    def expression(self) -> Expr:
        """``Ref($close, -(h+1))/Ref($close, -1) - 1`` on the adjusted close."""
        close = Field("close")
        return Ref(close, -(self.horizon + 1)) / Ref(close, -1) - 1

    @property
    def lookahead(self) -> int:
        """Trading days after ``t`` the label of ``t`` needs (``horizon + 1``; 2 for LABEL0)."""
        return self.expression.right_lookahead


#: Qlib's default Alpha158 label.
LABEL0 = Label("LABEL0", 1)


def label_for_horizon(horizon: int) -> Label:
    """The label of a horizon: ``LABEL0`` for 1, ``LABEL_H<h>`` otherwise."""
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise LabelError(f"a label horizon must be an integer >= 1, got {horizon!r}")
    return LABEL0 if horizon == 1 else Label(f"LABEL_H{horizon}", horizon)


def get_label(name_or_horizon: str | int) -> Label:
    """A label by name (``"LABEL0"``, ``"LABEL_H20"``) or by horizon (``1``, ``20``).

    Raises:
        LabelError: an unknown name or an invalid horizon.
    """
    if isinstance(name_or_horizon, int) and not isinstance(name_or_horizon, bool):
        return label_for_horizon(name_or_horizon)
    if isinstance(name_or_horizon, str):
        if name_or_horizon == LABEL0.name:
            return LABEL0
        m = _HORIZON_NAME_RE.match(name_or_horizon)
        if m:
            return label_for_horizon(int(m.group(1)))
    raise LabelError(
        f"unknown label {name_or_horizon!r}; use 'LABEL0', 'LABEL_H<horizon>' or a horizon (int >= 1)"
    )


def compute_labels(
    bars: pd.DataFrame,
    label: Label,
    *,
    start: DateLike | None = None,
    end: DateLike | None = None,
    precision: Precision = "qlib",
) -> pd.DataFrame:
    """Compute a label for every bar dated in ``[start, end]`` whose label is observable.

    Args:
        bars: frame in the bar schema; the label reads the adjusted close (``close * factor``).
            The trading calendar is the sorted set of dates in ``bars``.
        label: e.g. ``LABEL0`` or ``get_label(20)``.
        start: first date, inclusive (``None``: the first date of ``bars``).
        end: last date, inclusive (``None``: the last date of ``bars``).
        precision: as in :func:`quant_core.features.compute_features` (``"qlib"``: float32 fields).

    Returns:
        ``[date, symbol, label.name]``, sorted by (date, symbol), float32, ``date`` as
        ``datetime64[s]``. Dates with fewer than ``label.lookahead`` trading days after them in the
        calendar are omitted (their label is not known yet). A symbol without a bar on ``t+1`` or
        on ``t+lookahead`` (suspended, delisted) gets NaN, as Qlib.

    Raises:
        FeatureInputError: empty bars, or no bar in ``[start, end]`` with an observable label.
    """
    if not isinstance(label, Label):
        raise LabelError(f"expected a Label, got {type(label).__name__}")
    expr = label.expression
    plan = plan_panel(
        bars,
        expr.fields,
        lookback=expr.left_lookback,
        lookahead=label.lookahead,
        start=start,
        end=end,
        precision=precision,
        source=f"labels/{label.name}",
        observable_only=True,
    )
    frame = evaluate_plan(plan, [label.name], [expr])
    log.debug("computed label %s for %d rows", label.name, len(frame))
    return frame
