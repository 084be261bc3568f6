"""The report as one self-contained HTML file: inline CSS, charts as base64 PNG data URIs.

Nothing is loaded from elsewhere (no script, font, stylesheet or image URL), so the file can be
mailed, archived as an MLflow artifact or opened offline and always shows the same thing. Every
text from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import Any

import pandas as pd

from quant_core.evaluation.charts import DPI, FIGSIZE, Chart, render_charts
from quant_core.evaluation.report import (
    PORTFOLIOS,
    ReportData,
    fmt,
    ic_table,
    performance_table,
)

_CSS = """
:root { --ink: #1d232a; --muted: #5b6570; --line: #d9dee3; --band: #f4f6f8; --warn: #fff4d6; --warn-line: #e0b84c; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 28px 48px; }
header { border-bottom: 2px solid var(--ink); margin-bottom: 18px; padding-bottom: 10px; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 28px 0 8px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; font-size: 13px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; margin: 6px 0 4px; font-size: 14px; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
thead th { background: var(--band); font-weight: 600; }
.cols { display: flex; flex-wrap: wrap; gap: 8px 36px; align-items: flex-start; }
.warnings { background: var(--warn); border: 1px solid var(--warn-line); border-radius: 6px; padding: 8px 16px; }
.warnings li { margin: 4px 0; }
figure { margin: 18px 0 8px; }
figure img { display: block; width: 100%; max-width: 1000px; height: auto; border: 1px solid var(--line); }
figcaption, .note { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 1000px; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(chart: Chart) -> str:
    data = base64.b64encode(chart.png).decode("ascii")
    width, height = int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)
    return (f'<figure id="{escape(chart.key)}"><h2>{escape(chart.title)}</h2>'
            f'<img src="data:image/png;base64,{data}" alt="{escape(chart.title)}" width="{width}" '
            f'height="{height}"><figcaption>{escape(chart.caption)}</figcaption></figure>')


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _decay_rows(decay: pd.DataFrame) -> list[list[str]]:
    return [[fmt(r["horizon"], "int"), fmt(r["ic"], "ic"), fmt(r["icir"], "num"), fmt(r["rank_ic"], "ic"),
             fmt(r["rank_icir"], "num"), fmt(r["days"], "int")] for r in _records(decay)]


def _day(value: Any) -> str:
    return str(pd.Timestamp(value).date())


def _version_rows(versions: pd.DataFrame) -> list[list[str]]:
    return [[f"v{int(r['version'])}", _day(r["first_date"]), _day(r["last_date"]), fmt(r["days"], "int"),
             fmt(r["ic"], "ic"), fmt(r["rank_ic"], "ic"), fmt(r["rank_icir"], "num")] for r in _records(versions)]


def _header(data: ReportData) -> str:
    cfg = data.config.backtest
    cov = data.coverage
    meta = [
        ("strategy", data.strategy),
        ("range", f"{data.start} .. {data.end} (signal dates, both inclusive)"),
        ("signals", f"{cov.signal_dates} dates, {cov.first_signal} .. {cov.last_signal}; "
                    f"{cov.symbols_min}\u2013{cov.symbols_max} symbols a date"),
        ("label", f"{data.label}: {cov.labelled_dates} date(s) observable"
                  + (f", the last {cov.last_labelled}" if cov.last_labelled else "")),
        ("model versions", ", ".join(f"v{v}" for v in cov.versions) or "none"),
        ("backtests", f"TopK-dropout topk={cfg.topk}, n_drop={cfg.n_drop}; long-short quantile {cfg.quantile:g}; "
                      f"costs {cfg.open_cost_bps:g} bps to buy, {cfg.close_cost_bps:g} bps to sell; "
                      f"N={cfg.annualization} days a year; small universe: {cfg.on_small_universe}"),
        ("generated", f"{data.generated_at} (UTC)"),
        ("lake", data.lake),
        ("data read", ", ".join(f"{k} gen {v}" for k, v in sorted(data.generations.items()))),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta)
    return (f"<header><h1>qonline report: {escape(data.strategy)}, {data.start} .. {data.end}</h1>"
            f'<dl class="meta">{items}</dl></header>')


def render_html(data: ReportData, charts: Sequence[Chart] | None = None) -> str:
    """The report's HTML page (one string, no external resources).

    Args:
        data: the report's numbers.
        charts: the rendered charts (default: :func:`quant_core.evaluation.charts.render_charts`).
    """
    shown = list(charts) if charts is not None else render_charts(data)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>qonline report: {escape(data.strategy)} {data.start}..{data.end}</title>",
             f"<style>{_CSS}</style></head><body><main>", _header(data)]
    if data.warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in data.warnings)
        parts.append(f'<section class="warnings"><strong>Warnings</strong><ul>{items}</ul></section>')
    parts.append("<h2>Summary</h2><div class=\"cols\">")
    parts.append("<div>" + _table(["served signal", "value"], ic_table(data)) + "</div>")
    parts.append("<div>" + _table(["portfolio", *(title for _k, title in PORTFOLIOS)], performance_table(data))
                 + "</div></div>")
    parts.append('<p class="note">IC: the signal of date t against the return from the close of t+1 to the close '
                 'of t+2 (Qlib\'s LABEL0), per date across symbols; ICIR is mean / std of the daily values, not '
                 'annualised. Returns are daily, attributed to the signal date; "annualised" and the information '
                 'ratio sum them as Qlib\'s risk_analysis does, CAGR and Sharpe compound them.</p>')
    parts += [_figure(c) for c in shown]
    parts.append("<h2>IC decay</h2>" + _table(["horizon (days)", "IC", "ICIR", "rank IC", "rank ICIR", "days"],
                                              _decay_rows(data.decay)))
    parts.append("<h2>Model versions</h2>")
    if len(data.versions):
        parts.append(_table(["version", "first date", "last date", "days", "IC", "rank IC", "rank ICIR"],
                            _version_rows(data.versions)))
    else:
        parts.append('<p class="note">No model version has predictions in the range.</p>')
    parts.append("<footer>Generated by qonline. Every number of this page is in report.json beside it (and in the "
                 "report run's artifacts in MLflow); docs/reports.md explains each one.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts)
