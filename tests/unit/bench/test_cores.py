"""bench/cores.py: the wait for a quiet machine ends once both cores were idle for the whole
span asked, and gives up, saying so, after its bound."""

import itertools

import pytest

from bench import cores
from bench.cores import Quiet, pinned, quiet_wait


@pytest.fixture
def proc_stat(monkeypatch):
    """Feed quiet_wait samples of idle jiffies out of 100, without sleeping."""

    def feed(idle_per_sample: list[int]) -> None:
        samples = iter(idle_per_sample)
        state = {"calls": 0, "idle": 0, "total": 0}
        clock = itertools.count(step=0.1)

        def core_times(_cores):
            state["calls"] += 1
            if state["calls"] > 1:  # the first reading is the baseline
                state["idle"] += next(samples, idle_per_sample[-1])
                state["total"] += 100
            return state["idle"], state["total"]

        monkeypatch.setattr(cores, "_core_times", core_times)
        monkeypatch.setattr(cores.time, "sleep", lambda _s: None)
        monkeypatch.setattr(cores.time, "monotonic", lambda: next(clock))

    return feed


def test_the_wait_ends_once_the_cores_were_idle_for_the_whole_span(proc_stat, capsys):
    proc_stat([50, 95, 95, 95, 95, 95])

    outcome = quiet_wait(Quiet(idle_above=0.9, for_s=1.0, timeout_s=10, sample_s=0.2), "r1 echo")

    assert outcome["quiet"] is True
    assert outcome["idle"] == 0.95
    assert "r1 echo: quiet (idle 95%" in capsys.readouterr().err


def test_one_busy_sample_in_the_span_keeps_the_wait_going_until_its_bound(proc_stat, capsys):
    proc_stat([95, 95, 40, 95, 95, 40])

    outcome = quiet_wait(Quiet(idle_above=0.9, for_s=1.0, timeout_s=1.0, sample_s=0.2), "r2 idle")

    assert outcome["quiet"] is False
    assert "r2 idle: NOT quiet after 1.0 s" in capsys.readouterr().err


def test_taskset_keeps_the_programs_own_command_line():
    assert pinned(["python", "-m", "bench.peer"], 0) == [
        "taskset",
        "-c",
        "0",
        "python",
        "-m",
        "bench.peer",
    ]
