"""The bars validation gate, with real Great Expectations (no mocks).

Each bad input must fail the error suite with a message naming the rule and the offending
(date, symbol); real CSI 300 data must pass it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import shutil
from collections.abc import Sequence
from pathlib import Path

for _var, _value in {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_var, _value)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from quant_core.data.validation import (  # noqa: E402
    BarsValidationError,
    RuleFailure,
    SuiteLoadError,
    ValidationConfig,
    ValidationResult,
    validate_bars,
)

SYMBOLS = ("SH600000", "SH600519", "SZ000001", "SZ300750", "AAPL", "BRK.B", "S00042", "SH688981")
DAYS = tuple(d.date() for d in pd.bdate_range("2024-03-04", periods=10))  # Mon 4 .. Fri 15 March
START, END, TODAY = DAYS[0], DAYS[-1], dt.date(2024, 3, 18)


def make_bars(
    symbols: Sequence[str] = SYMBOLS, days: Sequence[dt.date] = DAYS, seed: int = 7
) -> pd.DataFrame:
    """Clean bars in the bar schema: a random walk per symbol, OHLC envelope respected."""
    rng = np.random.default_rng(seed)
    n_days = len(days)
    frames = []
    for i, symbol in enumerate(symbols):
        close = (10.0 + 5 * i) * np.exp(np.cumsum(rng.normal(0.0, 0.01, n_days)))
        open_ = close * (1 + rng.normal(0.0, 0.003, n_days))
        frames.append(
            pd.DataFrame(
                {
                    "date": pd.to_datetime(list(days)).astype("datetime64[s]"),
                    "symbol": symbol,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.01,
                    "low": np.minimum(open_, close) * 0.99,
                    "close": close,
                    "volume": rng.integers(1_000, 100_000, n_days).astype("float64"),
                    "vwap": (open_ + close) / 2,
                    "factor": 1.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["date", "symbol"], ignore_index=True)


def row_of(bars: pd.DataFrame, day: dt.date, symbol: str) -> int:
    hits = bars.index[(bars["date"] == pd.Timestamp(day)) & (bars["symbol"] == symbol)]
    assert len(hits) == 1
    return int(hits[0])


def expect_failure(
    bars: pd.DataFrame,
    rule: str,
    day: dt.date,
    symbol: str,
    *,
    check: str | None = None,
    **kwargs: object,
) -> RuleFailure:
    """Validate, expect the error suite to fail on ``rule`` at (day, symbol); return that failure."""
    args: dict[str, object] = {"start": START, "end": END, "today": TODAY, **kwargs}
    with pytest.raises(BarsValidationError) as caught:
        validate_bars(bars, **args)  # type: ignore[arg-type]
    err = caught.value
    message = str(err)
    assert rule in message
    assert f"{day.isoformat()} {symbol}" in message, message
    matching = [f for f in err.result.failures if f.rule == rule and (check is None or f.check == check)]
    assert matching, [f.rule for f in err.result.failures]
    failure = matching[0]
    assert (day.isoformat(), symbol) in {(r.date, r.symbol) for r in failure.rows}
    assert failure.unexpected_count >= 1
    assert err.result.level == "error" and not err.result.success
    return failure


def test_clean_bars_pass_both_suites() -> None:
    error, warning = validate_bars(make_bars(), start=START, end=END, today=TODAY, source="synthetic")
    assert error.success and error.failures == [] and error.level == "error"
    assert warning is not None and warning.success and warning.level == "warning"
    assert error.rows_checked == len(SYMBOLS) * len(DAYS)
    assert error.statistics["evaluated_expectations"] == error.statistics["successful_expectations"] > 30


def test_nan_price_fails() -> None:
    bars = make_bars()
    i = row_of(bars, DAYS[3], "SH600519")
    bars.loc[i, "close"] = np.nan
    failure = expect_failure(bars, "expect_column_values_to_not_be_null(close)", DAYS[3], "SH600519")
    assert failure.rows[0].row == i


def test_inf_price_fails() -> None:
    bars = make_bars()
    bars.loc[row_of(bars, DAYS[2], "SZ000001"), "high"] = np.inf
    failure = expect_failure(bars, "expect_column_values_to_be_between(high)", DAYS[2], "SZ000001")
    assert failure.rows[0].value == np.inf


def test_negative_volume_fails() -> None:
    bars = make_bars()
    bars.loc[row_of(bars, DAYS[5], "AAPL"), "volume"] = -100.0
    failure = expect_failure(bars, "expect_column_values_to_be_between(volume)", DAYS[5], "AAPL")
    assert failure.rows[0].value == -100.0


def test_nan_volume_is_only_a_warning() -> None:
    bars = make_bars()
    bars.loc[row_of(bars, DAYS[5], "AAPL"), "volume"] = np.nan
    error, warning = validate_bars(bars, start=START, end=END, today=TODAY)
    assert error.success
    assert warning is not None and not warning.success
    assert [f.rule for f in warning.failures] == ["expect_column_values_to_not_be_null(volume)"]


def test_high_below_low_fails() -> None:
    bars = make_bars()
    i = row_of(bars, DAYS[4], "SH600000")
    high, low = float(bars.loc[i, "high"]), float(bars.loc[i, "low"])
    bars.loc[i, "high"], bars.loc[i, "low"] = low, high
    expect_failure(bars, "expect_column_pair_values_a_to_be_greater_than_b(high, low)", DAYS[4], "SH600000")


def test_close_above_high_fails() -> None:
    bars = make_bars()
    i = row_of(bars, DAYS[6], "BRK.B")
    bars.loc[i, "close"] = bars.loc[i, "high"] * 1.05
    failure = expect_failure(
        bars, "expect_column_pair_values_a_to_be_greater_than_b(high, close)", DAYS[6], "BRK.B"
    )
    assert set(failure.rows[0].value) == {"high", "close"}


def test_duplicate_date_symbol_fails() -> None:
    bars = make_bars()
    i = row_of(bars, DAYS[1], "SZ300750")
    bars = pd.concat([bars, bars.loc[[i]]], ignore_index=True)
    failure = expect_failure(bars, "expect_compound_columns_to_be_unique(date, symbol)", DAYS[1], "SZ300750")
    assert {r.row for r in failure.rows} == {i, len(bars) - 1}


def test_weekend_date_fails() -> None:
    bars = make_bars()
    saturday = dt.date(2024, 3, 9)
    bars.loc[row_of(bars, DAYS[4], "S00042"), "date"] = pd.Timestamp(saturday)
    failure = expect_failure(bars, "expect_column_values_to_be_in_set(weekday)", saturday, "S00042")
    assert failure.rows[0].value == "Saturday"


def test_future_date_fails() -> None:
    bars = make_bars()
    today = DAYS[-2]
    expect_failure(
        bars,
        "expect_column_values_to_be_between(date_key)",
        DAYS[-1],
        "AAPL",
        check="date_not_in_future",
        today=today,
    )


def test_date_outside_requested_range_fails() -> None:
    bars = make_bars()
    failure = expect_failure(
        bars,
        "expect_column_values_to_be_between(date_key)",
        DAYS[0],
        "AAPL",
        check="date_in_requested_range",
        start=DAYS[1],
    )
    assert failure.unexpected_count == len(SYMBOLS)


@pytest.mark.parametrize("bad_symbol", ["sh.600000", "aapl"])
def test_unknown_symbol_format_fails(bad_symbol: str) -> None:
    bars = make_bars()
    bars["symbol"] = bars["symbol"].replace({"SH600000": bad_symbol})
    failure = expect_failure(bars, "expect_column_values_to_match_regex(symbol)", DAYS[0], bad_symbol)
    assert failure.unexpected_count == len(DAYS)
    assert failure.rows[0].value == bad_symbol


def test_decimal_shift_glitch_fails_the_return_bound() -> None:
    bars = make_bars()
    i = row_of(bars, DAYS[5], "SH600519")
    bars.loc[i, ["open", "high", "low", "close", "vwap"]] *= 10.0  # envelope intact, price x10
    failure = expect_failure(bars, "expect_column_values_to_be_between(abs_log_return)", DAYS[5], "SH600519")
    # the jump up and the jump back down: both bars of that symbol are named
    assert [(r.date, r.symbol) for r in failure.rows] == [
        (DAYS[5].isoformat(), "SH600519"),
        (DAYS[6].isoformat(), "SH600519"),
    ]
    assert failure.rows[0].value == pytest.approx(np.log(10.0), abs=0.05)


def test_return_bound_uses_previous_bars_and_adjustment() -> None:
    bars = make_bars()
    # a 2:1 split on the second day: raw prices halve, factor doubles: not a glitch
    split = (bars["symbol"] == "SZ000001") & (bars["date"] >= pd.Timestamp(DAYS[1]))
    bars.loc[split, ["open", "high", "low", "close", "vwap"]] /= 2.0
    bars.loc[split, "factor"] = 2.0
    validate_bars(bars, start=START, end=END, today=TODAY)

    # the first bar of the batch is only judged against the stored bar before ``start``
    previous = make_bars(days=[dt.date(2024, 3, 1)])
    previous.loc[previous["symbol"] == "AAPL", "close"] /= 10.0
    expect_failure(
        bars, "expect_column_values_to_be_between(abs_log_return)", DAYS[0], "AAPL", previous=previous
    )


def test_date_with_too_few_rows_fails() -> None:
    bars = make_bars()
    short_day = DAYS[7]
    drop = (bars["date"] == pd.Timestamp(short_day)) & bars["symbol"].isin(SYMBOLS[:4])
    bars = bars[~drop].reset_index(drop=True)
    first_left = sorted(SYMBOLS[4:])[0]
    failure = expect_failure(
        bars, "expect_column_values_to_be_between(symbols_on_date)", short_day, first_left
    )
    assert failure.unexpected_count == 1  # one short date, reported once
    assert failure.rows[0].value == 4.0
    # a given universe makes a single-date batch checkable too
    one_day = make_bars(days=[DAYS[0]]).iloc[:5]
    expect_failure(
        one_day,
        "expect_column_values_to_be_between(symbols_on_date)",
        DAYS[0],
        str(one_day["symbol"].iloc[0]),
        universe=len(SYMBOLS),
    )


def test_empty_frame_fails_clearly() -> None:
    with pytest.raises(
        BarsValidationError, match=r"source demo returned no bars for \[2024-03-04, 2024-03-15\]"
    ):
        validate_bars(make_bars().iloc[0:0], start=START, end=END, today=TODAY, source="demo")
    with pytest.raises(BarsValidationError, match="returned no bars") as caught:
        validate_bars(pd.DataFrame(), start=START, end=END, today=TODAY, source="demo")
    assert [f.rule for f in caught.value.result.failures] == ["expect_table_row_count_to_be_between(table)"]


def test_missing_column_is_named() -> None:
    with pytest.raises(BarsValidationError, match=r"missing column\(s\) \['factor'\]") as caught:
        validate_bars(make_bars().drop(columns=["factor"]), start=START, end=END, today=TODAY)
    assert caught.value.result.failures[0].rule == "expect_table_columns_to_match_set(table)"


def test_real_csi300_passes_the_error_suite(csi300_path: Path) -> None:
    raw = pd.read_parquet(csi300_path)
    bars = raw[["date", "symbol", "open", "high", "low", "close", "volume", "factor"]].assign(
        vwap=raw["amount"] / raw["volume"]
    )
    start, end = raw["date"].min(), raw["date"].max()
    error, warning = validate_bars(bars, start=start, end=end, today=dt.date(2025, 4, 8), source="csi300")
    assert error.success, error.report_markdown()
    assert error.rows_checked == 368_626
    # the +306% bar of SZ000792 after its 15-month suspension passes the error bound, not the warning one
    assert warning is not None
    returns = [f for f in warning.failures if f.check == "adjusted_return_bound"]
    assert [(r.date, r.symbol) for r in returns[0].rows] == [("2021-08-10", "SZ000792")]


def test_results_are_json_and_markdown() -> None:
    bars = make_bars()
    i = row_of(bars, DAYS[3], "SH600519")
    bars.loc[i, "close"] = np.nan
    bars.loc[row_of(bars, DAYS[2], "AAPL"), "open"] = np.inf
    with pytest.raises(BarsValidationError) as caught:
        validate_bars(bars, start=START, end=END, today=TODAY, source="demo")
    err = caught.value
    assert isinstance(err.result, ValidationResult) and err.warning_result is not None
    for result in (err.result, err.warning_result):
        data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert data["suite"] == result.suite and data["level"] == result.level
    data = err.result.to_dict()
    rules = {f["rule"]: f for f in data["failures"]}
    assert rules["expect_column_values_to_not_be_null(close)"]["rows"][0] == {
        "row": i,
        "date": DAYS[3].isoformat(),
        "symbol": "SH600519",
        "value": "nan",
    }
    assert data["parameters"]["max_abs_log_return"] == 2.0
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err) and clone.result.to_dict() == err.result.to_dict()
    report = err.result.report_markdown()
    assert "### `expect_column_values_to_not_be_null(close)`" in report
    assert f"| {i} | {DAYS[3].isoformat()} | SH600519 |" in report


def test_data_docs_written_for_a_failing_run(tmp_path: Path) -> None:
    bars = make_bars()
    bars.loc[row_of(bars, DAYS[2], "SZ000001"), "low"] = -1.0
    docs = tmp_path / "reports"
    with pytest.raises(BarsValidationError) as caught:
        validate_bars(bars, start=START, end=END, today=TODAY, source="demo", docs_dir=docs)
    result = caught.value.result
    assert result.docs_path == str(docs.resolve() / "index.html")
    assert Path(result.docs_path).is_file()
    assert str(result.docs_path) in str(caught.value)
    pages = list((docs / "validations" / "bars").rglob("*.html"))
    assert len(pages) == 1
    assert "SZ000001" in pages[0].read_text(encoding="utf-8")
    assert list((docs / "validations" / "bars_warning").rglob("*.html"))


def test_suite_that_loses_expectations_is_rejected(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).resolve().parents[2] / "expectations" / "bars_warning.json", tmp_path)
    suite = json.loads((Path(__file__).resolve().parents[2] / "expectations" / "bars.json").read_text())
    suite["expectations"].append({"type": "expect_bars_to_be_lovely", "kwargs": {"column": "close"}})
    (tmp_path / "bars.json").write_text(json.dumps(suite))
    config = ValidationConfig(expectations_dir=tmp_path)
    with pytest.raises(SuiteLoadError, match="expect_bars_to_be_lovely"):
        validate_bars(make_bars(), start=START, end=END, today=TODAY, config=config)


def test_config_is_frozen_and_checked() -> None:
    config = ValidationConfig()
    with pytest.raises(ValueError):
        config.max_abs_log_return = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        ValidationConfig(row_count_tolerance=1.5)
    assert (
        config.expectations_dir.name == "expectations" and (config.expectations_dir / "bars.json").is_file()
    )
