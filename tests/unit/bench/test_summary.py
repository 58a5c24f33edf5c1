"""bench/summary.py: median [min–max] of each figure, ratios to the peer taken per repetition,
server CPU per operation, and the rule that marks a client-bound peer."""

from bench.summary import (
    cell,
    client_bound,
    cpu_us_per_op,
    fanout_summary,
    ratio_spread,
    row_summary,
    spread,
    summarize,
)


def test_the_spread_is_the_median_and_the_extremes():
    assert spread([3, 1, 2]) == {"median": 2, "min": 1, "max": 3}
    assert spread([4, 1, 2, 10]) == {"median": 3, "min": 1, "max": 10}
    assert spread([7]) == {"median": 7, "min": 7, "max": 7}


def test_every_numeric_figure_is_summarized_and_nothing_else():
    runs = [
        {"round_trips_per_s": 100, "p99_ms": 2.0, "quiet": {"quiet": True}, "ok": True},
        {"round_trips_per_s": 300, "p99_ms": 1.0, "quiet": {"quiet": False}, "ok": True},
        {"round_trips_per_s": 200, "p99_ms": 3.0, "quiet": {"quiet": True}, "ok": False},
    ]

    assert summarize(runs) == {
        "round_trips_per_s": {"median": 200, "min": 100, "max": 300},
        "p99_ms": {"median": 2.0, "min": 1.0, "max": 3.0},
    }


def test_the_ratio_is_taken_in_each_repetition_then_summarized():
    # The machine got faster for both in the second repetition: per repetition Switchboard
    # is always half the peer, which the ratio of medians (or of extremes) would not say.
    runs = [{"rate": 50}, {"rate": 100}, {"rate": 60}]
    peer = [{"rate": 100}, {"rate": 200}, {"rate": 120}]

    assert ratio_spread(runs, peer, "rate") == {"median": 0.5, "min": 0.5, "max": 0.5}


def test_a_ratio_needs_a_peer_figure_in_every_repetition():
    assert ratio_spread([{"rate": 1}, {"rate": 2}], [{"rate": 1}], "rate") is None
    assert ratio_spread([{"rate": 1}], [{"rate": 0}], "rate") is None


def test_server_cpu_per_operation_is_cpu_percent_over_the_rate():
    assert cpu_us_per_op({"server_cpu_pct": 50.0, "handshakes_per_s": 250}, "handshakes_per_s") == (
        2000.0
    )
    assert cpu_us_per_op({"handshakes_per_s": 250}, "handshakes_per_s") is None
    assert (
        cpu_us_per_op({"server_cpu_pct": 50.0, "handshakes_per_s": 0}, "handshakes_per_s") is None
    )


def test_a_peer_with_cpu_to_spare_beside_a_busy_load_generator_is_client_bound():
    def runs(server: float, client: float) -> list[dict]:
        return [{"server_cpu_pct": server, "loadgen_cpu_pct": client}] * 3

    assert client_bound(runs(server=55.0, client=99.0))
    assert not client_bound(runs(server=98.0, client=99.0))  # the peer is busy: server-bound
    assert not client_bound(runs(server=55.0, client=60.0))  # neither: latency-bound
    assert not client_bound(runs(server=80.0, client=99.0))  # "well under 100 %" is under 80
    assert client_bound(runs(server=79.9, client=90.0))
    assert not client_bound([{"round_trips_per_s": 1}])  # not timed: nothing to say


def test_the_client_bound_rule_reads_the_median_repetition():
    runs = [
        {"server_cpu_pct": 99.0, "loadgen_cpu_pct": 99.0},  # one repetition disturbed
        {"server_cpu_pct": 60.0, "loadgen_cpu_pct": 98.0},
        {"server_cpu_pct": 62.0, "loadgen_cpu_pct": 97.0},
    ]

    assert client_bound(runs)


def timed(rate: int, server: float, client: float = 70.0, quiet: bool = True) -> dict:
    return {
        "round_trips_per_s": rate,
        "server_cpu_pct": server,
        "loadgen_cpu_pct": client,
        "quiet": {"quiet": quiet},
    }


def test_a_row_gives_the_ratio_and_cpu_per_round_trip_beside_the_peers():
    peer = [timed(20_000, 60.0, 99.0), timed(25_000, 60.0, 99.0), timed(10_000, 50.0, 99.0)]
    runs = [timed(5_000, 100.0), timed(5_000, 100.0, quiet=False), timed(4_000, 100.0)]

    row = row_summary("echo", 50, "daphne", runs, peer, "round_trips_per_s")

    assert (row["scenario"], row["clients"], row["server"]) == ("echo", 50, "daphne")
    assert row["runs"] == runs
    assert row["round_trips_per_s"] == {"median": 5000, "min": 4000, "max": 5000}
    assert row["ratio"] == {"median": 0.25, "min": 0.2, "max": 0.4}
    assert row["cpu_us_per_op"] == {"median": 200.0, "min": 200.0, "max": 250.0}
    # The peer's CPU per round trip: 30, 24 and 50 µs.
    assert row["cpu_per_op_ratio"] == {"median": 6.67, "min": 5.0, "max": 8.33}
    assert row["peer_client_bound"] is True
    assert row["not_quiet"] == 1


def test_memory_rows_have_a_ratio_but_no_cpu_per_operation():
    peer = [{"kb_per_connection": 10.0}, {"kb_per_connection": 12.0}]
    runs = [{"kb_per_connection": 30.0}, {"kb_per_connection": 30.0}]

    row = row_summary("idle", 1000, "uvicorn", runs, peer, "kb_per_connection")

    assert row["ratio"] == {"median": 2.75, "min": 2.5, "max": 3.0}
    assert "cpu_us_per_op" not in row
    assert row["cpu_per_op_ratio"] is None
    assert row["peer_client_bound"] is False


def test_a_fanout_size_divides_by_the_broadcaster_and_history_by_the_room_without():
    def fan(rate: int, server: float, client: float) -> dict:
        return {"deliveries_per_s": rate, "server_cpu_pct": server, "loadgen_cpu_pct": client}

    runs = {
        "switchboard": [fan(30_000, 100.0, 40.0), fan(20_000, 100.0, 40.0)],
        "switchboard_history": [fan(15_000, 100.0, 40.0), fan(15_000, 100.0, 40.0)],
        "peer": [fan(100_000, 50.0, 100.0), fan(80_000, 40.0, 100.0)],
        "switchboard_half_rate": [fan(15_000, 50.0, 20.0), fan(10_000, 50.0, 20.0)],
    }

    row = fanout_summary(1000, runs)

    assert row["subscribers"] == 1000
    assert row["ratio"] == {"median": 0.28, "min": 0.25, "max": 0.3}
    assert row["history_ratio"] == {"median": 0.62, "min": 0.5, "max": 0.75}
    assert row["peer_client_bound"] is True
    assert row["switchboard"]["cpu_us_per_op"] == {"median": 41.65, "min": 33.3, "max": 50.0}


def test_a_cell_reads_median_then_range():
    assert cell({"median": 0.25, "min": 0.2, "max": 0.4}) == "0.25 [0.2–0.4]"
    assert cell({"median": 21_350, "min": 19_800, "max": 22_000}) == "21,350 [19,800–22,000]"
    assert cell(None) == "–"
