"""The benchmark harness, run with tiny numbers (a storm of 20 sessions): every scenario
produces figures and files."""

import json
import subprocess
import sys

from tests.system.stack import ROOT


def test_the_benchmark_harness_runs_every_scenario_and_writes_its_report(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} == {
        "BENCHMARKS.md",
        "benchmarks.json",
        "benchmarks.png",
    }
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    seen = {(row["scenario"], row["server"]) for row in results["rows"]}
    servers = ("daphne", "uvicorn", "granian")
    assert seen == {
        (scenario, server)
        for scenario in ("echo", "handshakes", "idle")
        for server in ("peer", *servers)
    } | {
        (scenario, server) for scenario in ("session echo", "echo handshakes") for server in servers
    }
    assert set(results["memory"]) == {"peer", *servers}
    assert set(results["machine"]["versions"]) >= set(servers)
    for row in results["rows"]:
        figure = row.get("round_trips_per_s") or row.get("handshakes_per_s") or row["connections"]
        assert figure > 0, row
        assert row.get("failures", 0) == row.get("refused", 0) == 0, row
        if row["scenario"] == "idle":
            assert row["second_round_held_kib"] > 0, row
            assert row["second_round_after_kib"] > 0, row
    fanout = [row for row in results["fanout"] if "subscribers" in row]
    assert [row["subscribers"] for row in fanout] == [1, 4]
    for row in fanout:
        assert row["switchboard"]["lost"] == row["peer"]["lost"] == 0, row
        assert row["switchboard_history"]["lost"] == 0, row
        for run in ("switchboard", "switchboard_history"):
            assert row[run]["deliveries_per_s"] > 0, row
        assert row["switchboard_half_rate"]["messages"] > 0, row
        assert row["switchboard_half_rate"]["lost"] == 0, row
    storm = results["storm"]
    assert (storm["server"], storm["workers"], storm["sessions"]) == ("uvicorn", 2, 20)
    assert storm["accepted"] == storm["joined"] == 20, storm
    assert storm["opened_s"] > 0 and storm["sessions_per_s"] > 0, storm
    for peaks in (storm["peak_redis_connections"], storm["peak_rss_kib"]):
        assert len(peaks) == 2 and min(peaks) > 0, storm  # one figure per worker
    report = (tmp_path / "BENCHMARKS.md").read_text()
    for heading in (
        "## Targets",
        "## Round trips",
        "## Handshakes",
        "## Idle connections",
        "## Room fan-out",
        "## Room fan-out with history",
        "## Connection storm",
    ):
        assert heading in report
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
