"""Exchange sessions and ``run paper --at-open``, on pandas_market_calendars' real calendars.

Expected figures are the exchanges' published calendars, not this code's output: NYSE
2026 closes on Thanksgiving (Thu 2026-11-26), Good Friday (2026-04-03) and Christmas
(Fri 2026-12-25) and closes early at 13:00 New York time on 2026-11-27 and 2026-12-24;
the regular session is 09:30-16:00 New York time, which is 14:30-21:00 UTC in winter and
13:30-20:00 UTC in summer time (2026: from Sun 03-08 to Sun 11-01). London is open
08:00-16:30 local; UK summer time starts on Sun 2026-03-29.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tradinglib.cli import build_parser, main
from tradinglib.exceptions import InputError
from tradinglib.modelcard import card_path
from tradinglib.schedule import (
    DEFAULT_CALENDAR,
    DEFAULT_WAIT_LIMIT,
    PlanAction,
    next_open,
    plan_at_open,
    session_at,
    session_deadline,
    wait_until,
)

NY = "America/New_York"
ROOT = Path(__file__).resolve().parents[1]


def ny(text: str) -> pd.Timestamp:
    """A New York wall-clock time (DST resolved by the timezone database)."""
    return pd.Timestamp(text).tz_localize(NY)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# ------------------------------------------------------------------ sessions


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ny("2026-11-25 09:30"), ("2026-11-25 14:30", "2026-11-25 21:00", False)),
        (ny("2026-11-25 15:59:59"), ("2026-11-25 14:30", "2026-11-25 21:00", False)),
        (ny("2026-11-27 12:59"), ("2026-11-27 14:30", "2026-11-27 18:00", True)),
        (ny("2026-12-24 10:00"), ("2026-12-24 14:30", "2026-12-24 18:00", True)),
        (ny("2026-03-09 09:30"), ("2026-03-09 13:30", "2026-03-09 20:00", False)),  # DST
        (ny("2026-03-06 09:30"), ("2026-03-06 14:30", "2026-03-06 21:00", False)),
        (ny("2026-10-30 10:00"), ("2026-10-30 13:30", "2026-10-30 20:00", False)),
        (ny("2026-11-02 10:00"), ("2026-11-02 14:30", "2026-11-02 21:00", False)),
        (ny("2026-11-25 09:29:59"), None),  # before the open
        (ny("2026-11-25 16:00"), None),  # the close is not in the session
        (ny("2026-11-26 11:00"), None),  # Thanksgiving
        (ny("2026-11-27 13:00"), None),  # after the early close
        (ny("2026-11-28 11:00"), None),  # Saturday
        (ny("2026-04-03 11:00"), None),  # Good Friday
    ],
)
def test_session_at(now: pd.Timestamp,
                    expected: tuple[str, str, bool] | None) -> None:
    session = session_at(now)
    if expected is None:
        assert session is None
        return
    assert session is not None
    assert (session.open, session.close, session.early_close) == (
        utc(expected[0]), utc(expected[1]), expected[2])
    assert session.calendar == "XNYS" and session.timezone == NY


@pytest.mark.parametrize(
    ("now", "open_utc", "close_utc"),
    [
        (ny("2026-11-26 09:25"), "2026-11-27 14:30", "2026-11-27 18:00"),  # Thanksgiving
        (ny("2026-11-25 16:30"), "2026-11-27 14:30", "2026-11-27 18:00"),  # skips it
        (ny("2026-11-27 17:00"), "2026-11-30 14:30", "2026-11-30 21:00"),  # weekend
        (ny("2026-12-24 14:00"), "2026-12-28 14:30", "2026-12-28 21:00"),  # Christmas Fri
        (ny("2026-04-02 16:30"), "2026-04-06 13:30", "2026-04-06 20:00"),  # Good Friday
        (ny("2026-03-06 17:00"), "2026-03-09 13:30", "2026-03-09 20:00"),  # DST weekend
        (ny("2026-10-30 17:00"), "2026-11-02 14:30", "2026-11-02 21:00"),  # DST ends
        (ny("2026-11-25 09:30"), "2026-11-25 14:30", "2026-11-25 21:00"),  # open itself
        (ny("2026-11-25 09:31"), "2026-11-27 14:30", "2026-11-27 18:00"),  # one running
    ],
)
def test_next_open(now: pd.Timestamp, open_utc: str, close_utc: str) -> None:
    session = next_open(now)
    assert (session.open, session.close) == (utc(open_utc), utc(close_utc))
    assert session.early_close == (utc(close_utc).hour == 18)


@pytest.mark.parametrize(("day", "open_utc"), [("2026-03-16", "08:00"),
                                               ("2026-03-30", "07:00")])
def test_other_exchanges_keep_their_own_summer_time(day: str, open_utc: str) -> None:
    # 2026-03-16: New York is on summer time (13:30 UTC), London is not yet (08:00 UTC)
    session = next_open(utc(f"{day} 00:00"), "LSE")
    assert session.open == utc(f"{day} {open_utc}") and session.timezone == "Europe/London"
    assert next_open(utc(f"{day} 00:00")).open == utc(f"{day} 13:30")


def test_session_deadline_is_the_close_minus_the_margin() -> None:
    early = next_open(ny("2026-11-27 00:00"))
    assert session_deadline(early, pd.Timedelta(minutes=5)) == ny("2026-11-27 12:55")
    assert session_deadline(early, pd.Timedelta(0)) == ny("2026-11-27 13:00")
    with pytest.raises(InputError, match="flatten margin"):
        session_deadline(early, pd.Timedelta(minutes=-1))
    with pytest.raises(InputError, match="shorter than the session"):
        session_deadline(early, pd.Timedelta(hours=4))  # the session lasts 3.5 h


def test_calendar_names_are_checked() -> None:
    with pytest.raises(InputError, match=r"unknown exchange calendar 'NYS' \(did you mean "
                                         r"'XNYS'\?\)"):
        next_open(ny("2026-11-26 09:25"), "NYS")
    assert next_open(ny("2026-11-26 09:25"), "xnys").calendar == "XNYS"


@pytest.mark.parametrize("now", ["2026-11-26 09:25", pd.Timestamp("2026-11-26 09:25"),
                                 "tomorrow"])
def test_now_needs_a_timezone(now: object) -> None:
    with pytest.raises(InputError, match="UTC offset"):
        session_at(now)  # type: ignore[arg-type]


def test_calendars_load_without_network() -> None:
    """A fresh interpreter where any network use raises still gets the right answer."""
    script = textwrap.dedent("""
        import sys
        def deny(event, args):
            if event.startswith(("socket.", "urllib.", "http.")):
                raise RuntimeError(f"network use: {event}")
        sys.addaudithook(deny)
        import pandas as pd
        from tradinglib.schedule import next_open
        print(next_open(pd.Timestamp("2026-11-26 09:25-05:00")).open.isoformat())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2026-11-27T14:30:00+00:00"


# ------------------------------------------------------------------ the --at-open plan


@pytest.mark.parametrize(
    ("now", "action", "start", "deadline", "words"),
    [
        (ny("2026-11-27 10:00"), PlanAction.RUN, ny("2026-11-27 10:00"),
         ny("2026-11-27 12:55"), "early close 13:00"),
        (ny("2026-11-25 09:30"), PlanAction.RUN, ny("2026-11-25 09:30"),
         ny("2026-11-25 15:55"), "trading now until 15:55"),
        (ny("2026-11-27 09:00"), PlanAction.WAIT, ny("2026-11-27 09:30"),
         ny("2026-11-27 12:55"), "waiting 30m"),
        (ny("2026-11-25 00:05"), PlanAction.WAIT, ny("2026-11-25 09:30"),
         ny("2026-11-25 15:55"), "waiting 9h25m"),
        (ny("2026-03-09 09:00"), PlanAction.WAIT, utc("2026-03-09 13:30"),
         utc("2026-03-09 19:55"), "2026-03-09 09:30 America/New_York"),
    ],
)
def test_plan_trades_in_market_hours(now: pd.Timestamp, action: PlanAction,
                                     start: pd.Timestamp, deadline: pd.Timestamp,
                                     words: str) -> None:
    plan = plan_at_open(now, replay=False)
    assert (plan.action, plan.start_at, plan.deadline) == (action, start, deadline)
    assert words in plan.message


@pytest.mark.parametrize(
    ("now", "next_day", "why"),
    [
        (ny("2026-11-26 09:25"), "2026-11-27 09:30 America/New_York (early close 13:00)",
         "Thu 2026-11-26 is a holiday"),
        (ny("2026-11-28 09:25"), "2026-11-30 09:30 America/New_York", "a weekend day"),
        (ny("2026-11-25 16:30"), "2026-11-27 09:30", "has closed for Wed 2026-11-25"),
        (ny("2026-11-27 12:57"), "2026-11-30 09:30", "within the 5 min flatten margin"),
    ],
)
def test_plan_skips_outside_market_hours(now: pd.Timestamp, next_day: str, why: str) -> None:
    plan = plan_at_open(now, replay=False)
    assert plan.action is PlanAction.SKIP and plan.start_at is None and plan.deadline is None
    assert plan.message.startswith(f"next XNYS open: {next_day}")
    assert "not trading now" in plan.message and why in plan.message


def test_plan_waits_no_longer_than_the_limit() -> None:
    plan = plan_at_open(ny("2026-11-25 00:05"), replay=False, wait_limit=pd.Timedelta(hours=1))
    assert plan.action is PlanAction.SKIP and "more than the wait limit 1h00m" in plan.message
    assert plan.session is not None and plan.session.open == ny("2026-11-25 09:30")


def test_plan_uses_the_flatten_margin() -> None:
    plan = plan_at_open(ny("2026-11-27 12:00"), replay=False,
                        flatten_margin=pd.Timedelta(minutes=30))
    assert plan.action is PlanAction.RUN and plan.deadline == ny("2026-11-27 12:30")


def test_replay_ignores_market_hours() -> None:
    plan = plan_at_open(ny("2026-11-26 09:25"), replay=True)  # Thanksgiving
    assert plan.action is PlanAction.RUN and plan.deadline is None
    assert plan.start_at == ny("2026-11-26 09:25") and "replay" in plan.message


# ------------------------------------------------------------------ waiting


class FakeClock:
    """A clock that moves only when slept on (``rate`` clock seconds per second slept)."""

    def __init__(self, start: pd.Timestamp, rate: float = 1.0) -> None:
        self.t, self.rate, self.sleeps = start, rate, []  # type: list[float]

    def now(self) -> pd.Timestamp:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += pd.Timedelta(seconds=seconds * self.rate)


def test_wait_until_sleeps_in_bounded_steps() -> None:
    clock = FakeClock(utc("2026-11-27 14:27:30"))
    assert wait_until(utc("2026-11-27 14:30"), now=clock.now, sleep=clock.sleep,
                      max_wait=pd.Timedelta(hours=1))
    assert clock.sleeps == [60, 60, 30] and clock.t == utc("2026-11-27 14:30")
    assert wait_until(utc("2026-11-27 14:00"), now=clock.now, sleep=clock.sleep)  # past
    assert len(clock.sleeps) == 3


def test_wait_until_gives_up_when_the_clock_stalls() -> None:
    clock = FakeClock(utc("2026-11-27 14:00"), rate=0.0)
    assert not wait_until(utc("2026-11-27 14:30"), now=clock.now, sleep=clock.sleep,
                          max_wait=pd.Timedelta(hours=1))
    assert sum(clock.sleeps) == 3600


def test_wait_until_refuses_a_longer_wait() -> None:
    clock = FakeClock(utc("2026-11-27 00:00"))
    with pytest.raises(InputError, match="more than the wait limit"):
        wait_until(utc("2026-11-27 14:30"), now=clock.now, sleep=clock.sleep,
                   max_wait=pd.Timedelta(hours=1))
    assert clock.sleeps == []


# ------------------------------------------------------------------ the command


@pytest.fixture
def model_args(tmp_path: Path) -> list[str]:
    """``-p model_path`` of a placeholder model: the parameters need the zip and its card
    to exist, and a session that does not start never loads them."""
    model = tmp_path / "placeholder.zip"
    model.write_bytes(b"")
    card_path(model).write_text("{}")
    return ["-p", "model_path", str(model), "-p", "replay", "false"]


@pytest.mark.parametrize(
    ("now", "line"),
    [
        ("2026-11-26T09:25-05:00", "next XNYS open: 2026-11-27 09:30 America/New_York "
                                   "(early close 13:00); not trading now (Thu 2026-11-26 is "
                                   "a holiday for XNYS)"),
        ("2026-11-28T14:25Z", "next XNYS open: 2026-11-30 09:30 America/New_York; not "
                              "trading now (Sat 2026-11-28 is a weekend day for XNYS)"),
    ],
)
def test_at_open_outside_hours_says_when_and_exits_0(
        now: str, line: str, model_args: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "paper", "--at-open", "--now", now, *model_args]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [line]  # no run folder printed: nothing ran


def test_an_ib_session_waits_for_the_open_whatever_replay_says(
        model_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``replay: true`` (the paper file's default) means nothing to the IB broker: its
    session is live, so market hours apply."""
    argv = ["run", "paper", "--at-open", "--now", "2026-11-26T09:25-05:00", *model_args,
            "-p", "replay", "true", "-p", "broker", "ib"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("next XNYS open: 2026-11-27 09:30")


def test_run_help_states_the_schedule_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    hours = DEFAULT_WAIT_LIMIT.total_seconds() / 3600
    assert f"(default {DEFAULT_CALENDAR})" in text and f"(at most {hours:g} h)" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "backtest", "--at-open"], "--at-open applies to 'run paper' only"),
        (["run", "paper", "--now", "2026-11-26T09:25-05:00"], "only apply with --at-open"),
        (["run", "paper", "--at-open", "--calendar", "NYS"], "did you mean 'XNYS'?"),
        (["run", "paper", "--at-open", "--now", "2026-11-26T09:25"], "has no UTC offset"),
    ],
)
def test_at_open_bad_input_exits_2(argv: list[str], message: str, model_args: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, *model_args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_ctrl_c_while_waiting_for_the_open(model_args: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradinglib.cli", "run", "paper", "--at-open", "--now",
         "2026-11-27T08:30-05:00", *model_args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:  # at most 60 s for the first line
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(60), "no output from `run paper --at-open` in 60 s"
        line = proc.stdout.readline()
        assert line.startswith("waiting 1h00m for the XNYS open: 2026-11-27 09:30"), line
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and err.strip() == "interrupted"
    assert out == "" and time.monotonic() - started < 10


def test_in_market_hours_the_session_gets_the_deadline(
        tmp_path: Path, model_args: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The paper notebook runs at once with ``stop_at`` = the early close minus 5 min (the
    simulated broker then refuses a live session; the archived parameters remain)."""
    root = tmp_path / "project"
    for folder, name in (("notebooks", "paper_session.ipynb"), ("params", "paper.yaml")):
        (root / folder).mkdir(parents=True)
        shutil.copy(ROOT / folder / name, root / folder)
    monkeypatch.setenv("TRADINGLIB_ROOT", str(root))
    main(["run", "paper", "--at-open", "--no-report", "--now", "2026-11-27T10:00-05:00",
          *model_args])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("XNYS is open: trading now until 12:55 America/New_York (early "
                        "close 13:00 minus 5 min to flatten)")
    folder = Path(lines[-1])
    assert folder.parent == root / "runs"
    params = yaml.safe_load((folder / "params.yaml").read_text())
    assert pd.Timestamp(params["stop_at"]) == ny("2026-11-27 12:55")
