"""Timer triggers: NCRONTAB/TimeSpan parsing, %SETTING% schedules, fire_timer, runOnStartup, singleton."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sample_app

from devtools.localhost import ConfigError
from devtools.localhost.config import parse_timespan, resolve_settings
from devtools.localhost.ncrontab import Schedule, to_croniter

seen = sample_app.seen
NOON = datetime(2026, 11, 23, 12, 0, 3, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("ncrontab", "cron"),
    [
        ("0 */15 * * * *", "*/15 * * * * 0"),
        ("30 15 10 * * 1-5", "15 10 * * 1-5 30"),
        ("*/10 * * * * *", "* * * * * */10"),
        ("0 0 9 * * Mon", "0 9 * * Mon 0"),
        ("5 * * * *", "5 * * * *"),
    ],
)
def test_ncrontab_moves_seconds_last(ncrontab: str, cron: str) -> None:
    assert to_croniter(ncrontab) == cron


@pytest.mark.parametrize("bad", ["* * * *", "0 0 0 * * * *", "61 * * * * *", "x y z a b c"])
def test_bad_ncrontab_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        to_croniter(bad)


@pytest.mark.parametrize(
    ("expression", "after"),
    [
        ("*/10 * * * * *", NOON.replace(second=10)),
        ("0 */15 * * * *", NOON.replace(minute=15, second=0)),
        ("30 15 10 * * *", NOON.replace(day=24, hour=10, minute=15, second=30)),
        ("0 0 9 * * Sat", datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)),
        ("00:05:00", NOON + timedelta(minutes=5)),
        ("1.00:00:00", NOON + timedelta(days=1)),
    ],
)
def test_schedule_next_occurrence(expression: str, after: datetime) -> None:
    assert Schedule.parse(expression).next_after(NOON) == after


def test_timespan_and_setting_resolution() -> None:
    assert parse_timespan("00:00:00.250") == 0.25
    assert parse_timespan("01:02:03") == 3723
    assert resolve_settings("%A%-x-%B%", {"A": "1", "B": "2"}, "what") == "1-x-2"
    with pytest.raises(ConfigError, match="'MISSING'"):
        resolve_settings("%MISSING%", {}, "function 'tick' schedule")


def test_fire_timer_runs_now_and_returns(make_host) -> None:
    host = make_host()
    assert host.fire_timer("tick", past_due=True) == "ticked"
    assert ("tick", True) in seen.timers
    assert [i.outcome for i in host.invocations if i.function == "tick"] == ["succeeded"]
    with pytest.raises(KeyError):
        host.fire_timer("items")


def test_schedule_comes_from_the_setting(make_host) -> None:
    host = make_host(SAMPLE_SCHEDULE="*/1 * * * * *")
    deadline = time.monotonic() + 30
    while seen.timers.count(("tick", False)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen.timers.count(("tick", False)) >= 2
    host.stop()
    assert all(i.outcome == "succeeded" for i in host.invocations if i.function == "tick")


def test_run_on_startup(make_host) -> None:
    host = make_host()
    host.wait_idle(10)
    assert seen.timers.count(("on_startup", False)) == 1
    assert ("tick", False) not in seen.timers  # its schedule is far away and it has no runOnStartup


def test_timer_never_overlaps_itself(make_host) -> None:
    host = make_host()
    seen.tick_seconds = 0.3
    threads = [threading.Thread(target=host.fire_timer, args=("tick",)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen.timers.count(("tick", False)) == 3
    assert seen.max_running == 1
