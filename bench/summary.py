"""Repetitions summarized: median [min–max] of each figure, of each ratio to the peer (one
ratio per repetition, then summarized), and the rule that marks a client-bound peer."""

import statistics

# A peer is client-bound when its server has CPU to spare while the load generator has none:
# its figure then measures the client, and a ratio to it says little about the server.
SERVER_SPARE_BELOW_PCT = 80.0
CLIENT_BUSY_ABOVE_PCT = 90.0


def spread(values: list[float]) -> dict[str, float]:
    """{"median", "min", "max"} of `values` (at least one)."""
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def summarize(runs: list[dict]) -> dict[str, dict[str, float]]:
    """The spread of every numeric figure the runs share (booleans are not figures)."""
    keys = [
        key
        for key, value in runs[0].items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return {
        key: spread([run[key] for run in runs])
        for key in keys
        if all(isinstance(run.get(key), int | float) for run in runs)
    }


def ratio_spread(runs: list[dict], peer_runs: list[dict], key: str) -> dict[str, float] | None:
    """The ratio of `key` to the peer's in each repetition (run i beside peer run i), then its
    spread; None when a repetition has no peer figure to divide by."""
    if len(runs) != len(peer_runs) or not all(peer.get(key) for peer in peer_runs):
        return None
    return spread([run[key] / peer[key] for run, peer in zip(runs, peer_runs, strict=True)])


def cpu_us_per_op(run: dict, rate_key: str) -> float | None:
    """Server CPU microseconds per operation in one run's window (CPU % over operations/s)."""
    rate = run.get(rate_key)
    if not rate or "server_cpu_pct" not in run:
        return None
    return round(run["server_cpu_pct"] / 100 / rate * 1e6, 1)


def client_bound(peer_runs: list[dict]) -> bool:
    """Whether the peer's figure is the load generator's ceiling: in the median repetition its
    server's CPU is well under 100 % while the load generator's is near 100 %."""
    server = [run["server_cpu_pct"] for run in peer_runs if "server_cpu_pct" in run]
    client = [run["loadgen_cpu_pct"] for run in peer_runs if "loadgen_cpu_pct" in run]
    if not server or not client:
        return False
    return (
        statistics.median(server) < SERVER_SPARE_BELOW_PCT
        and statistics.median(client) >= CLIENT_BUSY_ABOVE_PCT
    )


def cell(figure: dict[str, float] | None, unit: str = "") -> str:
    """`median [min–max]` for a table (`–` when there is no figure)."""
    if figure is None:
        return "–"

    def number(value: float) -> str:
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"

    low, high = number(figure["min"]), number(figure["max"])
    return f"{number(figure['median'])}{unit} [{low}–{high}]"


def measured(runs: list[dict], rate_key: str | None) -> dict:
    """The runs of one server in one scenario with the spread of each figure, of its server
    CPU per operation (µs, when the runs were timed), and how many windows began on a machine
    that was not quiet."""
    summary: dict = {"runs": runs, **summarize(runs)}
    per_op = [cpu_us_per_op(run, rate_key) for run in runs] if rate_key else []
    if per_op and all(value is not None for value in per_op):
        summary["cpu_us_per_op"] = spread([v for v in per_op if v is not None])
    summary["not_quiet"] = sum(1 for run in runs if not run.get("quiet", {}).get("quiet", True))
    return summary


def per_op_ratio(runs: list[dict], peer_runs: list[dict], rate_key: str) -> dict | None:
    """Server CPU per operation over the peer's, per repetition, then its spread (above 1:
    more CPU than the peer for the same work)."""
    pairs = [
        (cpu_us_per_op(run, rate_key), cpu_us_per_op(peer, rate_key))
        for run, peer in zip(runs, peer_runs, strict=False)
    ]
    ratios = [mine / peer for mine, peer in pairs if mine and peer]
    if len(runs) != len(peer_runs) or len(ratios) != len(runs):
        return None
    return spread(ratios)


RATE_KEYS = ("round_trips_per_s", "handshakes_per_s", "deliveries_per_s")


def row_summary(
    scenario: str, clients: int, server: str, runs: list[dict], peer_runs: list[dict], key: str
) -> dict:
    """One table row: the server's figures, its ratio of `key` to the peer's (one per
    repetition), CPU per operation beside the peer's, and whether the peer is client-bound."""
    rate_key = key if key in RATE_KEYS else None
    row = {"scenario": scenario, "clients": clients, "server": server}
    row |= measured(runs, rate_key)
    row["ratio"] = ratio_spread(runs, peer_runs, key)
    row["cpu_per_op_ratio"] = per_op_ratio(runs, peer_runs, rate_key) if rate_key else None
    row["peer_client_bound"] = bool(rate_key) and client_bound(peer_runs)
    return row


def fanout_summary(subscribers: int, runs: dict[str, list[dict]]) -> dict:
    """One fan-out size: each kind's figures, Switchboard's deliveries/s over the bare
    broadcaster's and with history over without (per repetition), CPU per delivery."""
    key = "deliveries_per_s"
    row: dict = {"subscribers": subscribers}
    row |= {kind: measured(kind_runs, key) for kind, kind_runs in runs.items()}
    row["ratio"] = ratio_spread(runs["switchboard"], runs["peer"], key)
    row["history_ratio"] = ratio_spread(runs["switchboard_history"], runs["switchboard"], key)
    row["cpu_per_op_ratio"] = per_op_ratio(runs["switchboard"], runs["peer"], key)
    row["peer_client_bound"] = client_bound(runs["peer"])
    return row
