"""bench/report.py: the targets of the issue, the connection storm's figures per worker, the
fan-out with history and the in-process frame cost."""

from bench.report import (
    frame_cost_table,
    history_table,
    round_trip_table,
    storm_table,
    targets,
    targets_table,
)
from bench.summary import fanout_summary, row_summary

STORM = {
    "server": "uvicorn",
    "workers": 2,
    "joined": 5000,
    "sessions": 5000,
    "accepted": 5000,
    "opened_s": 17.31,
    "sessions_per_s": 288.9,
    "peak_redis_connections": [202, 203],
    "peak_rss_kib": [184_320, 190_054],
}


def test_the_storm_section_gives_the_time_to_open_and_each_workers_peaks():
    lines = storm_table(STORM)

    assert lines[0] == "## Connection storm"
    assert lines[2].startswith(
        "5,000 authenticated sessions opened in one burst over 2 uvicorn workers sharing Redis"
    )
    assert (
        lines[-1]
        == "| uvicorn | 2 | 5,000 | 5,000 | 5,000 | 17.31 | 288.9 | 202, 203 | 180.0, 185.6 |"
    )
    assert lines[-3].count("|") == lines[-1].count("|")


def fan(rate: int, p99: float, lost: int = 0) -> dict:
    return {"deliveries_per_s": rate, "p50_ms": 1.5, "p99_ms": p99, "lost": lost}


def test_the_history_section_puts_the_fanout_with_history_beside_the_same_without():
    runs = {
        "switchboard": [fan(9000, 20.0), fan(10_000, 22.0), fan(8000, 21.0)],
        "switchboard_history": [fan(8100, 24.5), fan(8000, 25.0), fan(8000, 26.0, lost=1)],
        "peer": [fan(30_000, 5.0)] * 3,
        "switchboard_half_rate": [fan(4000, 3.0)] * 3,
    }

    lines = history_table([fanout_summary(100, runs)])

    assert lines[0] == "## Room fan-out with history"
    assert lines[-1] == (
        "| 100 | 9,000 [8,000–10,000] | 8,000 [8,000–8,100] | 0.9 [0.8–1] | "
        "1.5 [1.5–1.5] / 21 [20–22] | 1.5 [1.5–1.5] / 25 [24.5–26] | 1 |"
    )
    assert lines[-2].count("|") == lines[-1].count("|")


def timed(rate: int, server_cpu: float, client_cpu: float) -> dict:
    return {
        "round_trips_per_s": rate,
        "p50_ms": 0.5,
        "p99_ms": 1.0,
        "server_cpu_pct": server_cpu,
        "loadgen_cpu_pct": client_cpu,
    }


def test_a_client_bound_peer_is_marked_with_the_cpu_per_round_trip_beside_the_ratio():
    peer = [timed(40_000, 60.0, 99.0), timed(50_000, 60.0, 98.0), timed(40_000, 62.0, 99.0)]
    daphne = [timed(10_000, 100.0, 30.0), timed(10_000, 99.0, 30.0), timed(12_000, 100.0, 31.0)]
    results = {
        "rows": [
            row_summary("echo", 50, "peer", peer, peer, "round_trips_per_s"),
            row_summary("echo", 50, "daphne", daphne, peer, "round_trips_per_s"),
        ]
    }

    lines = round_trip_table(results)

    assert lines[-2].startswith("| echo | 50 | peer | 40,000 [40,000–50,000] | 1 [1–1] | ")
    assert lines[-1] == (
        "| echo | 50 | daphne | 10,000 [10,000–12,000] | 0.25 [0.2–0.3] | 100 [99–100] | "
        "30 [30–31] | 99 [83.3–100] | 6.67 [5.37–8.25] | **yes** | 0.5 [0.5–0.5] | 1 [1–1] |"
    )
    assert lines[2].count("|") == lines[-1].count("|")


def figure(value: float) -> dict:
    return {"median": value, "min": value, "max": value}


def row(scenario: str, server: str, ratio: float, cpu_us: float | None = None) -> dict:
    return {
        "scenario": scenario,
        "clients": 50,
        "server": server,
        "ratio": figure(ratio),
        "cpu_us_per_op": figure(cpu_us) if cpu_us else None,
    }


def fanout_row(subscribers: int, ratio: float, half_p99: float, history_lost: int = 0) -> dict:
    def kind(lost: int = 0, p99: float = 2.0) -> dict:
        return {"runs": [{"lost": lost}], "p99_ms": figure(p99)}

    return {
        "subscribers": subscribers,
        "ratio": figure(ratio),
        "switchboard": kind(),
        "switchboard_history": kind(history_lost),
        "switchboard_half_rate": kind(p99=half_p99),
        "peer": kind(lost=5),  # the broadcaster's losses are not Switchboard's
    }


RUN = {
    "rows": [
        row("echo", "peer", 1.0),
        row("echo", "daphne", 0.25),
        row("echo", "uvicorn", 0.7),
        row("session echo", "daphne", 0.2),
        row("session echo", "uvicorn", 0.55),
        row("handshakes", "peer", 1.0, cpu_us=600),
        row("handshakes", "daphne", 0.3, cpu_us=2400),
        row("handshakes", "uvicorn", 0.42, cpu_us=1800),
        row("handshakes", "granian", 0.6, cpu_us=1200),  # measured, not supported
        row("echo handshakes", "uvicorn", 0.9, cpu_us=700),  # not authenticated: no target
        row("idle", "peer", 1.0),
        row("idle", "daphne", 3.2),
        row("idle", "uvicorn", 1.4),
    ],
    "fanout": [fanout_row(1000, 0.45, 40.0), fanout_row(100, 0.6, 70.0, history_lost=1)],
    "frame_cost": {"session_minus_echo": {"wall_us": figure(14.0), "cpu_us": figure(12.5)}},
}


def test_the_targets_table_gives_each_target_of_the_issue_decided_by_its_median():
    """Best server: the best supported one; elsewhere the worst size."""
    lines = targets_table(RUN)

    assert lines[0] == "## Targets (medians of this run; ratios are × the peer)"
    rows = lines[lines.index("|---|---|---|---|") + 1 : -2]
    assert rows == [
        "| authenticated handshake: server CPU ms per handshake, best server | ≤ 1.5 | "
        "1.8 (uvicorn) | **no** |",
        "| authenticated handshakes/s × the peer's plain handshakes/s, best server | ≥ 0.5 | "
        "0.42 (uvicorn) | **no** |",
        "| KB per idle authenticated session × the peer's, best server | ≤ 1.5 | "
        "1.4 (uvicorn) | yes |",
        "| Switchboard's own work per session echo frame, CPU µs (in process: the session "
        "consumer's minus the bare echo consumer's) | ≤ 10 | 12.5 | **no** |",
        "| session echo round trips/s × the peer's echo, 50 clients, best server | ≥ 0.5 | "
        "0.55 (uvicorn) | yes |",
        "| echo round trips/s × the peer's, 50 clients, daphne | ≥ 0.3 | 0.25 | **no** |",
        "| fan-out deliveries/s × the bare broadcaster's, 100 and 1,000 subscribers | ≥ 0.5 | "
        "0.45 (1,000 subscribers) | **no** |",
        "| fan-out p99 ms at half the saturating rate, 1,000 subscribers | < 50 | 40 | yes |",
        "| fan-out messages lost, every Switchboard run | = 0 | 1 | **no** |",
    ]
    assert lines[-1].startswith("What bounds each target that is not met")


def test_a_target_the_run_did_not_measure_is_not_met():
    run = {**RUN, "frame_cost": {}}

    own = next(t for t in targets(run) if t.name.startswith("Switchboard's own work"))

    assert (own.measured, own.met) == (None, False)
    assert "| ≤ 10 | – | **no** |" in "\n".join(targets_table(run))


def test_the_frame_cost_section_gives_both_consumers_and_the_sessions_work_beyond_echo():
    cost = {
        "frames": 10_000,
        "repetitions": 5,
        "session": {"wall_us": figure(31.5), "cpu_us": figure(31.0)},
        "echo": {"wall_us": figure(18.0), "cpu_us": figure(17.9)},
        "session_minus_echo": {
            "wall_us": {"median": 13.5, "min": 12.9, "max": 14.2},
            "cpu_us": {"median": 13.1, "min": 12.9, "max": 13.3},
        },
    }

    lines = frame_cost_table(cost)

    assert lines[0] == "## Own work per frame (in process, no server)"
    assert lines[-3:] == [
        "| `/ws/session/` (`SessionConsumer`) | 31.5 [31.5–31.5] | 31 [31–31] |",
        "| `/ws/echo/` (`EchoConsumer`) | 18 [18–18] | 17.9 [17.9–17.9] |",
        "| session minus echo, per repetition: Switchboard's own work | 13.5 [12.9–14.2] | "
        "13.1 [12.9–13.3] |",
    ]
    assert lines[-4] == "|---|---|---|"
