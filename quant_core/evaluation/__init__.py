"""Evaluation of signals and portfolios: pure functions on pandas frames (docs/evaluation.md).

``metrics``: daily IC and rank IC exactly as Qlib's ``SigAnaRecord`` (``calc_ic``), their summary
(ICIR not annualised), forward returns on the trading calendar, IC decay over horizons, IC per model
version and rolling means. ``backtest``: Qlib's ``TopkDropoutStrategy`` and a daily long-short
quantile portfolio with costs, an equal-weight benchmark, and Qlib's "sum" mode risk numbers next to
compounded ones from empyrical.

Date semantics shared by both: a signal dated ``t`` uses information up to the close of ``t``; it is
traded at the close of the next trading date ``t+1`` and earns ``adjclose(t+2) / adjclose(t+1) - 1``,
which is attributed to ``t`` (Qlib's LABEL0). The trading calendar is the sorted set of dates in the
bars.
"""
