from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from quant_core.calendar import TradingCalendar, to_date
from quant_core.errors import CalendarError


@pytest.fixture(scope="module")
def csi_cal(csi300_path) -> TradingCalendar:
    return TradingCalendar(pd.read_parquet(csi300_path, columns=["date"])["date"].unique())


def test_built_from_bar_dates(csi_cal: TradingCalendar) -> None:
    # SOURCE.md: 1,273 distinct trading days, 2020-01-02 -> 2025-04-07
    assert len(csi_cal) == 1273
    assert csi_cal.first == date(2020, 1, 2) and csi_cal.last == date(2025, 4, 7)
    assert list(csi_cal) == sorted(csi_cal)


def test_align_start_and_end_over_a_holiday(csi_cal: TradingCalendar) -> None:
    # Spring Festival 2020: trading stopped after 2020-01-23 and resumed 2020-02-03
    assert csi_cal.align_start(date(2020, 1, 25)) == date(2020, 2, 3)
    assert csi_cal.align_end(date(2020, 1, 25)) == date(2020, 1, 23)
    assert csi_cal.align_start("2020-02-03") == date(2020, 2, 3)
    assert csi_cal.align_end("2020-02-03") == date(2020, 2, 3)


def test_align_outside_the_calendar_is_an_error_not_a_wrap(csi_cal: TradingCalendar) -> None:
    with pytest.raises(CalendarError, match="on or before 2019-12-31"):
        csi_cal.align_end(date(2019, 12, 31))  # Qlib returns the last day here
    with pytest.raises(CalendarError, match="on or after 2025-04-08"):
        csi_cal.align_start(date(2025, 4, 8))  # Qlib raises IndexError
    with pytest.raises(CalendarError):
        csi_cal[-1]  # no negative-index wrap-around


def test_shift_semantics(csi_cal: TradingCalendar) -> None:
    assert csi_cal.shift("2020-01-23", 1) == date(2020, 2, 3)
    assert csi_cal.shift("2020-02-03", -1) == date(2020, 1, 23)
    with pytest.raises(CalendarError, match="not a trading day"):
        csi_cal.shift("2020-01-25", 1)
    # Qlib's align="left"/"right" map to align="end"/"start"
    assert csi_cal.shift("2020-01-25", 1, align="end") == date(2020, 2, 3)
    assert csi_cal.shift("2020-01-25", 0, align="start") == date(2020, 2, 3)
    # landing exactly one past the end is an error, not None/TypeError (Qlib #1660)
    with pytest.raises(CalendarError, match="after the last"):
        csi_cal.shift(csi_cal.last, 1)
    assert csi_cal.shift(csi_cal.last, 5, clip=True) == csi_cal.last
    assert csi_cal.shift(csi_cal.first, -5, clip=True) == csi_cal.first


def test_ranges_and_intervals(csi_cal: TradingCalendar) -> None:
    days = csi_cal.range("2020-01-20", "2020-02-05")
    assert days[0] == date(2020, 1, 20) and days[-1] == date(2020, 2, 5)
    assert date(2020, 1, 27) not in days
    assert csi_cal.count("2020-01-20", "2020-02-05") == len(days)
    assert csi_cal.interval("2020-02-03", "2020-01-23") == 1
    assert csi_cal.range("2030-01-01", None) == ()


def test_window_start_is_the_hist_ref_buffer(csi_cal: TradingCalendar) -> None:
    d = csi_cal[100]
    assert csi_cal.window_start(d, 60) == csi_cal[40]
    with pytest.raises(CalendarError, match="only 10 trading days of history"):
        csi_cal.window_start(csi_cal[10], 60)


def test_to_date_errors() -> None:
    assert to_date("2020-01-02") == date(2020, 1, 2)
    assert to_date(pd.Timestamp("2020-01-02 15:00")) == date(2020, 1, 2)
    with pytest.raises(CalendarError, match="not an ISO date"):
        to_date("02/01/2020")


def test_empty_calendar_errors() -> None:
    cal = TradingCalendar([])
    with pytest.raises(CalendarError, match="empty"):
        _ = cal.last
