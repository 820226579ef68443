"""The instruction-count driver (bench/instructions.py) measures what its labels say:
run natively on a few requests, each case answers with its status, signed in or not, JSON or
the widget fragment, and a case that does not is reported, never counted silently."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_ARGON2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import instructions


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One instance folder for the module: sign-ins and stores take a while to make."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAST_ARGON2.items():
            env.setenv(f"WEBAPP_{name}", str(value))
        cases = instructions.CASES + instructions.store_cases(5, 30)
        return instructions.prepare(tmp_path_factory.mktemp("bench"), cases, small=5, big=30)


@pytest.fixture
def plan(prepared: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(prepared)


def drive(plan: dict[str, Any], mode: str = "check") -> dict[str, dict[str, Any]]:
    report = instructions.drive(plan, requests=3, warmup=2, mode=mode)
    return {case["label"]: case for case in report["cases"]}


def test_every_case_hits_its_scenario(plan):
    results = drive(plan, mode="time")
    assert all(len(r["cpu_ns"]) == instructions.TIME_ROUNDS for r in results.values())
    assert {label: (r["status"], r["problems"], r["wrong"]) for label, r in results.items()} == {
        case.label: (case.expect, [], 0) for case in instructions.CASES
    } | {
        label: (200, [], 0)
        for label in ("poll JSON, 5 sessions stored", "poll JSON, 30 sessions stored")
    }


def test_the_cases_differ_as_named(plan):
    by_label = {case["label"]: case for case in plan["cases"]}
    fragment, json_poll = by_label["poll fragment"], by_label["poll JSON"]
    assert fragment["headers"]["HX-Request"] == "true" and "HX-Request" not in json_poll["headers"]
    assert "X-Session-State" in by_label["poll unchanged (204)"]["headers"]
    assert "Cookie" not in by_label[instructions.BARE.label]["headers"]
    assert "Cookie" not in by_label[instructions.BARE_FLASK.label]["headers"]
    assert by_label[instructions.REFERENCE.label]["path"] == json_poll["path"] == "/session"
    for label in ("poll JSON", "poll fragment", "poll JSON, idle tab"):
        assert by_label[label]["headers"]["Cookie"].startswith(f"{instructions.COOKIE}=")
    assert by_label["poll JSON, idle tab"]["headers"] != json_poll["headers"]


@pytest.mark.parametrize(
    ("label", "change"),
    [
        ("poll JSON", lambda case: case["headers"].pop("Cookie")),  # signed out: {}
        ("poll fragment", lambda case: case["headers"].pop("HX-Request")),  # JSON instead
        ("poll unchanged (204)", lambda case: case["headers"].pop("X-Session-State")),  # 200
        ("poll JSON", lambda case: case["headers"].update(Cookie="session=made-up")),
        ("Flask-Login + Flask-Session poll", lambda case: case["headers"].pop("Cookie")),  # 401
    ],
)
def test_a_case_that_misses_its_scenario_is_reported(plan, label, change):
    case = next(case for case in plan["cases"] if case["label"] == label)
    change(case)
    assert drive(plan)[label]["problems"]


def test_region_counts_read_callgrinds_dumps_in_order(tmp_path):
    for number, total in [(2, 700), (1, 300), (10, 9000)]:
        (tmp_path / f"callgrind.out.42.{number}").write_bytes(
            b"# callgrind format\nevents: Ir\nsummary: %d\n" % total
        )
    (tmp_path / "callgrind.out.42").write_bytes(b"summary: 0\n")  # the final, empty dump
    assert instructions.region_counts(tmp_path) == [300, 700, 9000]
