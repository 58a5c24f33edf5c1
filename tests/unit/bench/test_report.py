"""bench/report.py: the connection storm's figures per worker, and the fan-out with history."""

from bench.report import history_table, round_trip_table, storm_table
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
