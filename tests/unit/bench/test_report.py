"""bench/report.py's connection-storm section: the storm's three figures per worker."""

from bench.report import storm_table

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
