"""bench/report.py: the connection storm's figures per worker, and the fan-out with history."""

from bench.report import history_table, storm_table

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


def test_the_history_section_puts_the_fanout_with_history_beside_the_same_without():
    def figures(rate: int, p99: float, lost: int = 0) -> dict:
        return {"deliveries_per_s": rate, "p50_ms": 1.5, "p99_ms": p99, "lost": lost}

    rows = [
        {
            "subscribers": 100,
            "switchboard": figures(9000, 20.0),
            "switchboard_history": figures(8100, 24.5),
        },
        {"memory": "fanout1", "rss_kib": 1, "peak_kib": 1},
    ]

    lines = history_table(rows)

    assert lines[0] == "## Room fan-out with history"
    assert lines[-1] == "| 100 | 9,000 / 8,100 | 0.9 | 1.5 / 20.0 | 1.5 / 24.5 | 0 |"
    assert lines[-2].count("|") == lines[-1].count("|")
