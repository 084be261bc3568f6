"""The report's charts as PNG bytes (matplotlib, Agg canvas: no display, no pyplot global state).

Each chart is 10 x 4 inches at 100 dpi (1000 x 400 pixels: readable at a laptop's width), with a
title, axis titles with their units, dates on the x axis in matplotlib's concise date format, and a
legend. Returns are shown in percent; cumulative returns and drawdowns are compounded
(``prod(1 + r) - 1``, the value's fall from its previous peak), while the performance table also
gives Qlib's summed ("sum" mode) figures. matplotlib is imported inside the functions: importing
this module costs nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from quant_core.evaluation.report import ReportData

FIGSIZE = (10.0, 4.0)
DPI = 100
#: series colours: TopK-dropout, long-short, equal weight, rolling means
COLORS = {"topk": "#1f77b4", "long_short": "#d62728", "benchmark": "#7f7f7f", "mean": "#111111",
          "rank": "#ff7f0e", "positive": "#2ca02c", "negative": "#d62728"}
_LEGEND_VERSIONS = 12


@dataclass(frozen=True)
class Chart:
    """One rendered chart: a key (file-name safe), a title, what it shows, the PNG."""

    key: str
    title: str
    caption: str
    png: bytes


def _figure(title: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=12, loc="left")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def _dates_axis(ax: Axes) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_xlabel("signal date (the trade is made at the next close)")


def _percent_axis(ax: Axes, label: str) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    ax.set_ylabel(label)


def _legend(ax: Axes, **kwargs: Any) -> None:
    """A legend on a light box, so it stays readable where it covers data."""
    ax.legend(frameon=True, framealpha=0.88, edgecolor="#cccccc", **kwargs)


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    buf = io.BytesIO()
    canvas.print_png(buf)  # type: ignore[no-untyped-call]
    return buf.getvalue()


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _dates(frame: pd.DataFrame) -> Any:
    return pd.to_datetime(frame["date"]).to_numpy()


def daily_ic_chart(daily: pd.DataFrame, window: int) -> bytes:
    """Daily IC as bars (green above zero, red below) with its ``window``-day rolling mean and that of the rank IC.

    Args:
        daily: ``[date, ic, ic_rolling, rank_ic_rolling]``, one row per signal date.
        window: the rolling window, for the legend.
    """
    fig, ax = _figure(f"Daily IC of the served signal and its {window}-day rolling mean")
    ok = daily["ic"].notna()
    if not ok.any():
        _empty(ax, "no date of the range has an observable label")
        return _png(fig)
    d = daily.loc[ok]
    ic = d["ic"].to_numpy(dtype=float)
    # one vertical line per date (a LineCollection): as bars, but drawn at once -- 500 Rectangle patches
    # took 0.6 s; the width fills about 60% of a date's share of the axis (in points)
    width_pt = float(np.clip(0.6 * 850 / max(len(d), 1) * 72 / DPI, 0.6, 6.0))
    ax.vlines(_dates(d), 0.0, ic, colors=np.where(ic >= 0, COLORS["positive"], COLORS["negative"]).tolist(),
              alpha=0.55, linewidth=width_pt, label="daily IC (Pearson)")
    ax.plot(_dates(daily), daily["ic_rolling"], color=COLORS["mean"], linewidth=1.8,
            label=f"IC, {window}-day mean")
    ax.plot(_dates(daily), daily["rank_ic_rolling"], color=COLORS["rank"], linewidth=1.4, linestyle="--",
            label=f"rank IC, {window}-day mean")
    ax.axhline(0.0, color="#333333", linewidth=0.8)
    ax.set_ylabel("IC (correlation with the label, per day)")
    _dates_axis(ax)
    _legend(ax, loc="upper left", fontsize=9, ncols=3)
    return _png(fig)


def _compounded(r: pd.Series) -> pd.Series:
    return (1.0 + r.fillna(0.0)).cumprod() - 1.0


def _drawdown(r: pd.Series) -> pd.Series:
    value = (1.0 + r.fillna(0.0)).cumprod()
    peak = value.cummax().clip(lower=1.0)  # the start (value 1) counts as a peak
    return value / peak - 1.0


def _portfolios(topk: pd.DataFrame, long_short: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str, str]]:
    """(legend, frame, return column, colour) of the three return series the charts compare."""
    out = [("TopK-dropout, net of costs", topk, "net_return", COLORS["topk"]),
           ("long-short, net of costs", long_short, "net_return", COLORS["long_short"])]
    bench = topk if not topk.empty else long_short
    out.append(("equal weight (universe)", bench, "benchmark", COLORS["benchmark"]))
    return out


#: what the three backtest charts say when no date could be backtested
NOTHING_BACKTESTED = "no signal date has two trading dates after it: nothing was backtested"


def _portfolio_chart(title: str, topk: pd.DataFrame, long_short: pd.DataFrame, ylabel: str, legend_loc: str,
                     draw: Callable[[Axes, str, pd.DataFrame, pd.Series, str], None], *, zero_line: bool = False
                     ) -> bytes:
    """One line per backtested portfolio (``_portfolios``), drawn by ``draw(ax, name, frame, returns, colour)``,
    on a percent axis over dates; the empty-case sentence when nothing was backtested."""
    fig, ax = _figure(title)
    if topk.empty and long_short.empty:
        _empty(ax, NOTHING_BACKTESTED)
        return _png(fig)
    for name, frame, column, color in _portfolios(topk, long_short):
        if not frame.empty:
            draw(ax, name, frame, frame[column], color)
    if zero_line:
        ax.axhline(0.0, color="#333333", linewidth=0.8)
    _percent_axis(ax, ylabel)
    _dates_axis(ax)
    _legend(ax, loc=legend_loc, fontsize=9)
    return _png(fig)


def cumulative_return_chart(topk: pd.DataFrame, long_short: pd.DataFrame) -> bytes:
    """Compounded cumulative return of TopK-dropout (net), long-short (net) and the equal-weight universe."""

    def draw(ax: Axes, name: str, frame: pd.DataFrame, r: pd.Series, color: str) -> None:
        ax.plot(_dates(frame), _compounded(r), label=name, color=color, linewidth=1.6)

    return _portfolio_chart("Cumulative return: TopK-dropout and long-short vs the equal-weight universe", topk,
                            long_short, "cumulative return (compounded)", "upper left", draw, zero_line=True)


def drawdown_chart(topk: pd.DataFrame, long_short: pd.DataFrame) -> bytes:
    """Drawdown (fall of the compounded value from its previous peak) of the three portfolios."""

    def draw(ax: Axes, name: str, frame: pd.DataFrame, r: pd.Series, color: str) -> None:
        dd = _drawdown(r)
        ax.plot(_dates(frame), dd, label=name, color=color, linewidth=1.3)
        ax.fill_between(_dates(frame), dd.to_numpy(dtype=float), 0.0, color=color, alpha=0.08, linewidth=0)

    return _portfolio_chart("Drawdown from the previous peak", topk, long_short, "drawdown (compounded value)",
                            "lower left", draw)


def turnover_chart(topk: pd.DataFrame, long_short: pd.DataFrame) -> bytes:
    """Daily turnover, ``(bought + sold) / 2`` as a share of the portfolio's value, of both backtests."""
    fig, ax = _figure("Daily turnover")
    if topk.empty and long_short.empty:
        _empty(ax, NOTHING_BACKTESTED)
        return _png(fig)
    for name, frame, color in (("TopK-dropout", topk, COLORS["topk"]),
                               ("long-short (mean of the two legs)", long_short, COLORS["long_short"])):
        if not frame.empty:
            ax.plot(_dates(frame), frame["turnover"], label=name, color=color, linewidth=1.1)
    _percent_axis(ax, "turnover ((bought + sold) / 2, % of value)")
    ax.set_ylim(bottom=0.0)
    _dates_axis(ax)
    _legend(ax, loc="upper right", fontsize=9)
    return _png(fig)


def version_ic_chart(version_daily: pd.DataFrame, versions: pd.DataFrame) -> bytes:
    """Each model version's daily rank IC (dots) and its mean over the dates it predicted (a segment).

    Args:
        version_daily: ``[date, version, rank_ic]``.
        versions: ``[version, first_date, last_date, rank_ic]`` (the per-version summary).
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, ax = _figure("Rank IC per model version over time")
    d = version_daily.dropna(subset=["rank_ic"])
    if d.empty:
        _empty(ax, "no model version has predictions with an observable label in the range")
        return _png(fig)
    names = sorted(int(v) for v in d["version"].unique())
    cmap = colormaps["viridis"]
    norm = Normalize(vmin=min(names) - 0.5, vmax=max(names) + 0.5)
    for v in names:
        g = d[d["version"] == v]
        color = cmap(norm(v)) if len(names) > 1 else COLORS["topk"]
        ax.scatter(_dates(g), g["rank_ic"], s=9, color=color, alpha=0.55, linewidths=0,
                   label=f"v{v}" if len(names) <= _LEGEND_VERSIONS else None)
        row = versions[versions["version"] == v]
        if len(row) and pd.notna(row["rank_ic"].iloc[0]):
            first: Any = pd.Timestamp(row["first_date"].iloc[0])
            last: Any = pd.Timestamp(row["last_date"].iloc[0])
            ax.hlines(float(row["rank_ic"].iloc[0]), first, last, colors=[color], linewidth=2.4)
    ax.axhline(0.0, color="#333333", linewidth=0.8)
    ax.set_ylabel("rank IC (Spearman, per day)")
    _dates_axis(ax)
    if len(names) <= _LEGEND_VERSIONS:
        _legend(ax, loc="upper left", fontsize=8, ncols=min(len(names), 6),
                title="version (dots: days; bar: its mean)", title_fontsize=8, markerscale=2.0)
    else:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="model version", pad=0.01)
    return _png(fig)


def ic_decay_chart(decay: pd.DataFrame) -> bytes:
    """Mean IC and rank IC of the signal against forward returns over each horizon (bars)."""
    fig, ax = _figure("IC decay: the signal against returns over longer horizons")
    if decay.empty or decay[["ic", "rank_ic"]].isna().all().all():
        _empty(ax, "no forward return is known for the range")
        return _png(fig)
    x = np.arange(len(decay))
    width = 0.38
    ic = decay["ic"].to_numpy(dtype=float)
    ric = decay["rank_ic"].to_numpy(dtype=float)
    ax.bar(x - width / 2, np.nan_to_num(ic), width, label="mean IC (Pearson)", color=COLORS["topk"])
    ax.bar(x + width / 2, np.nan_to_num(ric), width, label="mean rank IC (Spearman)", color=COLORS["rank"])
    for xs, values in ((x - width / 2, ic), (x + width / 2, ric)):
        for xi, val in zip(xs, values, strict=True):
            if np.isfinite(val):
                ax.annotate(f"{val:.3f}", (xi, val), ha="center", va="bottom" if val >= 0 else "top", fontsize=8,
                            xytext=(0, 2 if val >= 0 else -2), textcoords="offset points")
    ax.set_xticks(x, [f"{int(h)} day{'s' if int(h) != 1 else ''}" for h in decay["horizon"]])
    ax.set_xlabel("horizon: trading days of return after the entry at t+1")
    ax.set_ylabel("mean daily IC")
    ax.axhline(0.0, color="#333333", linewidth=0.8)
    _legend(ax, loc="upper right", fontsize=9)
    return _png(fig)


def render_charts(data: ReportData) -> list[Chart]:
    """Every chart of a report, in the order the HTML shows them."""
    w = data.config.rolling_window
    specs: Sequence[tuple[str, str, str, Callable[[], bytes]]] = (
        ("daily_ic", "Daily IC", f"Bars: the served signal's IC on each date (Pearson correlation of the score with "
         f"{data.label} across symbols). Lines: its {w}-day rolling mean and that of the rank IC (Spearman). A "
         f"signal with an edge keeps the lines above zero.",
         lambda: daily_ic_chart(data.daily, w)),
        ("cumulative_return", "Cumulative return", "Compounded return of TopK-dropout and of the long-short "
         "quantile portfolio, both net of costs, next to the equal-weight portfolio of the whole universe (the "
         "benchmark). The signal of a date is traded at the next close.",
         lambda: cumulative_return_chart(data.topk, data.long_short)),
        ("drawdown", "Drawdown", "How far each portfolio's compounded value is below its previous peak: the depth "
         "and length of losing stretches.", lambda: drawdown_chart(data.topk, data.long_short)),
        ("turnover", "Turnover", "Share of the portfolio traded each date, (bought + sold) / 2: what the costs are "
         "paid on.", lambda: turnover_chart(data.topk, data.long_short)),
        ("version_ic", "Rank IC per model version", "Each rolling model version's predictions against the label: "
         "dots are daily rank ICs, the bar over a version's dates is its mean. A newer version should not do "
         "worse than the one it replaced.", lambda: version_ic_chart(data.version_daily, data.versions)),
        ("ic_decay", "IC decay", "Mean IC of the signal of date t against the return from the close of t+1 over "
         f"{', '.join(str(h) for h in data.config.horizons)} trading day(s): how long its information lasts.",
         lambda: ic_decay_chart(data.decay)),
    )
    return [Chart(key, title, caption, draw()) for key, title, caption, draw in specs]
