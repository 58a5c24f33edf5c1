"""bench/run.py's plan: at least three repetitions alternating the servers' order, every
supported server beside the peer, and a full run, the in-process frame cost in it, estimated
under 15 minutes."""

import dataclasses

from bench.run import FULL, PEER, SERVERS, SMOKE, cases, estimate_line, estimate_s, in_turn
from deploy.servers import SERVER_NAMES


def test_repetitions_alternate_the_order_of_the_servers():
    assert [in_turn(("peer", "daphne", "uvicorn"), r) for r in range(3)] == [
        ("peer", "daphne", "uvicorn"),
        ("uvicorn", "daphne", "peer"),
        ("peer", "daphne", "uvicorn"),
    ]


def test_the_full_run_has_three_repetitions_and_is_estimated_under_15_minutes():
    assert FULL.repetitions >= 3
    assert estimate_s(FULL) < 15 * 60
    assert "repetitions" in estimate_line(FULL)


def test_the_smoke_run_is_estimated_well_under_its_test_timeout():
    assert estimate_s(SMOKE) < 120


def test_every_case_is_divided_by_a_peer_row_the_plan_measures():
    measured = {(case.scenario, case.clients) for case in cases(FULL) if PEER in case.servers}

    for case in cases(FULL):
        assert (case.peer_scenario, case.clients) in measured, case
        assert set(case.servers) <= set(SERVERS) == {PEER, *SERVER_NAMES}


def test_the_in_process_frame_cost_is_measured_and_counted_in_the_estimate():
    assert FULL.frames >= 10_000 and 0 < SMOKE.frames <= 1000
    assert estimate_s(FULL) > estimate_s(dataclasses.replace(FULL, frames=0))
