"""The benchmark harness, run with tiny numbers (one repetition, a storm of 20 sessions, 200
frames in process): every scenario produces figures, timed server CPU and a ratio to the peer,
and the files."""

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
    assert set(results["machine"]["versions"]) >= set(servers)
    assert results["plan"]["repetitions"] == 1 and results["plan_estimate_s"] > 0
    for row in results["rows"]:
        figure = row.get("round_trips_per_s") or row.get("handshakes_per_s") or row["connections"]
        assert figure["median"] > 0, row
        assert len(row["runs"]) == 1 and row["ratio"]["median"] > 0, row
        for run in row["runs"]:
            assert run.get("failures", 0) == run.get("refused", 0) == 0, row
            assert run["peak_kib"] > 0 and "quiet" in run["quiet"], row
        if row["scenario"] == "idle":
            assert row["second_round_held_kib"]["median"] > 0, row
            assert row["second_round_after_kib"]["median"] > 0, row
        else:  # timed: the server's tree and the load generator during the window
            assert row["server_cpu_pct"]["median"] >= 0, row
            assert row["loadgen_cpu_pct"]["median"] > 0, row
            assert isinstance(row["peer_client_bound"], bool), row
    fanout = results["fanout"]
    assert [row["subscribers"] for row in fanout] == [4]
    for row in fanout:
        for kind in ("switchboard", "switchboard_history", "peer", "switchboard_half_rate"):
            assert row[kind]["deliveries_per_s"]["median"] > 0, row
            assert [run["lost"] for run in row[kind]["runs"]] == [0], row
            assert "server_cpu_pct" in row[kind], row
        assert row["ratio"]["median"] > 0 and row["history_ratio"]["median"] > 0, row
    cost = results["frame_cost"]
    assert (cost["frames"], cost["repetitions"]) == (200, 5), cost
    for consumer in ("session", "echo", "session_minus_echo"):
        assert len(cost[consumer]["runs"]) == 5 and "cpu_us" in cost[consumer], cost
    for consumer in ("session", "echo"):
        assert cost[consumer]["wall_us"]["min"] > 0 and cost[consumer]["cpu_us"]["min"] > 0, cost
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
        "## Own work per frame",
        "## Handshakes",
        "## Idle connections",
        "## Room fan-out",
        "## Room fan-out with history",
        "## Connection storm",
    ):
        assert heading in report
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
