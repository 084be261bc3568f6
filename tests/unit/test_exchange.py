"""Exchange calendars (the real exchange-calendars package): sessions, local dates, missing feeds."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from quant_core.errors import ConfigError
from quant_core.exchange import MissingFeedError, business_day, check_feed, get_exchange, require_feed


def test_sessions_and_holidays() -> None:
    xshg = get_exchange("XSHG")
    assert xshg is not None and xshg.tz.key == "Asia/Shanghai"
    assert not xshg.is_session("2024-10-01") and xshg.is_session("2024-10-08")  # National Day week
    assert xshg.sessions("2024-09-27", "2024-10-09") == [date(2024, 9, 27), date(2024, 9, 30), date(2024, 10, 8),
                                                         date(2024, 10, 9)]
    assert xshg.latest_session("2024-10-05") == date(2024, 9, 30)
    assert get_exchange("none") is None and get_exchange("xnys") is get_exchange("XNYS")


def test_business_day_is_the_exchanges_local_date_not_utcs() -> None:
    # 02:00 UTC on 5 July is still 4 July (Independence Day) in New York: nothing to do
    nyse = business_day("XNYS", datetime(2024, 7, 5, 2, 0, tzinfo=UTC))
    assert (nyse.day, nyse.is_session) == (date(2024, 7, 4), False)
    assert nyse.reason == "nothing to do: 2024-07-04 is not a session of XNYS"
    # 20:00 UTC on 7 October is already 8 October in Shanghai, the first session after the holiday
    sh = business_day("XSHG", datetime(2024, 10, 7, 20, 0, tzinfo=UTC))
    assert (sh.day, sh.is_session) == (date(2024, 10, 8), True)
    # with exchange none the UTC date is the business date, as before
    assert business_day("none", datetime(2024, 7, 5, 2, 0, tzinfo=UTC)).day == date(2024, 7, 5)


def test_unknown_exchange_and_dates_outside_the_calendar() -> None:
    with pytest.raises(ConfigError, match=r"exchange 'XXXX' .* is not a known exchange calendar; use a MIC such as"):
        get_exchange("XXXX")
    xshg = get_exchange("XSHG")
    assert xshg is not None
    with pytest.raises(ConfigError, match=r"1990-01-02 is outside the XSHG calendar"):
        xshg.is_session("1990-01-02")


def test_a_session_without_bars_is_a_missing_feed() -> None:
    got = {date(2024, 10, 8), date(2024, 10, 10), date(2024, 10, 12)}  # the 12th is a Saturday
    check = check_feed("XSHG", date(2024, 10, 1), date(2024, 10, 12), got)
    assert check is not None
    assert check.missing == (date(2024, 10, 9), date(2024, 10, 11)) and check.extra == (date(2024, 10, 12),)
    with pytest.raises(MissingFeedError, match=r"source csv:/drops: no bars for 2 session\(s\) of XSHG: 2024-10-09, "
                                               r"2024-10-11\. .*not a holiday; nothing was stored"):
        require_feed(check, "csv:/drops")
    assert check_feed("none", date(2024, 10, 1), date(2024, 10, 12), got) is None
    require_feed(check_feed("XSHG", date(2024, 10, 8), date(2024, 10, 8), {date(2024, 10, 8)}), "x")
