"""`make stress` in small (10 users: warm-up, 8 s of load, 300 anonymous visits, 300 anonymous
baskets, files + SQLite), so that its harness (bench/stress/run.py) keeps working, and proof
that its checks count what they guard."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.live

RUN = Path(__file__).resolve().parents[2] / "bench" / "stress" / "run.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("webapp_stress_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


stress = _load()


def reply(status: int, body: str, **headers: str) -> Any:
    message = Message()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return stress.Reply("GET", "/session", status, message, body.encode())


def user(number: int = 7) -> Any:
    """A simulated user that never touches the network here."""
    return stress.User(port=1, number=number, tally=stress.Tally())


def test_small_run_counts_traffic_and_misses_no_target() -> None:
    args = argparse.Namespace(
        duration=8,
        users=10,
        config="files",
        anonymous=300,
        anonymous_baskets=300,
        sign_in_concurrency=4,
        warm_up_limit=60,
        sign_out_share=1.0,  # every user signs out once (those due early do within the 8 s)
        wrk_connections=8,
        keep=False,
    )
    results, lines, missed = stress.stress(args)

    assert missed == [], "\n".join(lines + missed)
    (result,) = results
    load, anonymous = result.load, result.anonymous
    warm = load.warm_up.tally
    assert warm.sign_ins >= 10 and warm.requests > warm.sign_ins, "no warm-up, or no polls in it"
    assert load.signed_in_at_start == 10
    assert load.tally.requests > load.tally.sign_outs >= 1 and load.tally.latencies
    assert min(load.signed_in) < 10 <= max(load.signed_in), "the sign-outs were not sampled"
    assert anonymous is not None and anonymous.visits >= 300
    assert anonymous.csrf_cookies >= 300, "anonymous pages set no signed CSRF cookie"
    assert anonymous.entries_before == anonymous.entries_after == anonymous.signed_in >= 1
    baskets = result.baskets
    assert baskets is not None and baskets.visits >= 300 and baskets.session_cookies >= 300
    growth = baskets.entries_after - baskets.entries_before
    assert baskets.visits <= growth <= baskets.visits + 8  # wrk's -c: requests in flight
    assert baskets.due_in_a_day == baskets.entries_at_due_count >= baskets.entries_after
    for label in ("| warm-up: sign-ins", "| users signed in at the start", "| store growth"):
        assert any(line.startswith(label) for line in lines), label


def test_a_warm_up_past_its_limit_fails_the_run() -> None:
    never = [user(n) for n in range(3)]  # nobody signs in
    with pytest.raises(stress.StressError, match=r"only 0 of 3 users .*--warm-up-limit"):
        stress.warm_up(never, [u.tally for u in never], time.monotonic(), limit=0.3)


def test_warm_up_errors_and_users_missing_at_the_start_miss_targets() -> None:
    warm = stress.Tally(server_errors=2, lost_sessions=1)
    result = stress.ConfigResult("files + SQLite", _load_result(stress.Tally(), warm), None, [])
    result.load.signed_in_at_start = 9  # of 10
    _lines, missed = stress.report([result])
    assert any(text.startswith("files + SQLite: warm-up: 5xx: 2") for text in missed), missed
    assert any("warm-up: sessions that should be valid but are not: 1" in t for t in missed)
    assert any("users signed in at the start of the timed load: 9" in t for t in missed)
    assert not any(text.startswith("files + SQLite: 5xx") for text in missed)


def test_another_users_data_is_counted_and_misses_the_target() -> None:
    alice = user(7)
    alice.inspect(reply(200, "Welcome, Stress stressuser0007 v0!"))  # her own: fine
    assert alice.tally.other_users_data == 0
    alice.inspect(reply(200, '{"user": {"name": "Stress stressuser0008 v2"}}'))
    assert alice.tally.other_users_data == 1
    assert "[8]" in alice.tally.examples[0]
    result = stress.ConfigResult("files + SQLite", _load_result(alice.tally), None, [])
    _lines, missed = stress.report([result])
    assert any("another user's data: 1" in text for text in missed)


def test_a_signed_in_user_answered_as_a_stranger_is_a_lost_session() -> None:
    alice = user()
    alice.signed_in = True
    assert not alice.expect(reply(302, "", Location="/login?next=%2Fprofile"), 200)
    assert alice.tally.lost_sessions == 1 and not alice.signed_in

    bob = user(8)
    bob.signed_in = True
    bob.check_user(reply(200, "{}"), None)  # /session shows nobody
    assert bob.tally.lost_sessions == 1

    carol = user(9)
    carol.signed_in = True
    carol.check_widget(reply(200, '<div data-session-status="unauthenticated" data-state="x">'))
    assert carol.tally.lost_sessions == 1


def test_unexpected_statuses_stale_names_and_poll_cookies_are_counted() -> None:
    alice = user()
    assert not alice.expect(reply(429, "Too many"), 200)
    assert alice.tally.unexpected == 1
    alice.signed_in = True
    alice.check_user(reply(200, ""), {"username": alice.username, "name": "old", "email": None})
    assert alice.tally.stale_profile == 1
    alice.check_poll_cookies(reply(200, "{}", Set_Cookie="session=abc; Path=/"))
    assert alice.tally.poll_cookies == 1


def _load_result(tally: Any, warm: Any = None) -> Any:
    """Ten users, all signed in from the start of the timed load to its end."""
    return stress.LoadResult(
        stress.WarmUp(warm or stress.Tally(sign_ins=10), seconds=3.0),
        tally,
        seconds=1.0,
        users=10,
        signed_in_at_start=10,
        signed_in=[10, 10],
        signed_in_at_end=10,
    )
