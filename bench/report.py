"""Turn one benchmark run into docs/BENCHMARKS.md, docs/benchmarks.png and benchmarks.json.

Every figure is median [min–max] over the repetitions; every ratio to the peer was computed
in each repetition, then summarized (`bench/summary.py`).
"""

import json
from pathlib import Path

from bench.summary import cell


def median(figure: dict | None) -> float:
    return figure["median"] if figure else 0.0


def _rows(results: dict, *scenarios: str) -> list[dict]:
    return [row for row in results["rows"] if row["scenario"] in scenarios]


def targets(results: dict) -> list[tuple[str, str, float, bool]]:
    """Each target of the issue: (target, required, the worst median ratio, met)."""
    echo = _rows(results, "echo", "session echo")
    cases = sorted({(r["scenario"], r["clients"]) for r in echo})
    servers = sorted({r["server"] for r in echo} - {"peer"})

    def ratio(scenario: str, clients: int, server: str) -> float:
        return next(
            median(r["ratio"])
            for r in echo
            if (r["scenario"], r["clients"], r["server"]) == (scenario, clients, server)
        )

    best = min(max(ratio(s, c, server) for server in servers) for s, c in cases)
    daphne = min(ratio(s, c, "daphne") for s, c in cases)
    shakes = [r for r in _rows(results, "handshakes") if r["server"] != "peer"]
    shake = max(median(r["ratio"]) for r in shakes)
    idle = min(median(r["ratio"]) for r in _rows(results, "idle") if r["server"] != "peer")
    fan_rows = [r for r in results["fanout"] if r["subscribers"] >= 100]
    fan = min((median(r["ratio"]) for r in fan_rows), default=0.0)
    half_p99 = max((median(r["switchboard_half_rate"]["p99_ms"]) for r in fan_rows), default=0.0)
    half_lost = sum(run["lost"] for r in fan_rows for run in r["switchboard_half_rate"]["runs"])
    clients = " and ".join(str(c) for c in sorted({c for _, c in cases}))
    return [
        (f"echo and session echo, {clients} clients, best server", "≥ 0.5", best, best >= 0.5),
        (f"echo and session echo, {clients} clients, daphne", "≥ 0.3", daphne, daphne >= 0.3),
        ("authenticated handshakes/s, best server", "≥ 0.5", shake, shake >= 0.5),
        ("KB per idle authenticated session, best server", "≤ 1.5", idle, idle <= 1.5),
        ("fan-out deliveries/s, 100 and 1,000 subscribers", "≥ 0.3", fan, fan >= 0.3),
        (
            "fan-out p99 ms at half the saturating rate, 100 and 1,000 subscribers",
            "< 50 ms",
            half_p99,
            half_p99 < 50,
        ),
        ("fan-out messages lost at half the saturating rate", "0", half_lost, half_lost == 0),
    ]


CLIENT_BOUND_NOTE = (
    "**Peer client-bound** marks a scenario whose peer left its core idle (server CPU under "
    "80 %) while the load generator's was busy (over 90 %): there the ratio measures the "
    "client, and the server CPU per operation beside it (× the peer's) is the figure to read."
)


def bound(row: dict) -> str:
    return "**yes**" if row["peer_client_bound"] else "no"


def round_trip_table(results: dict) -> list[str]:
    lines = [
        "## Round trips (32-byte text, ping-pong)",
        "",
        "| scenario | clients | server | round trips/s | × peer | server CPU % | "
        "load generator CPU % | server CPU µs per round trip | × peer | peer client-bound | "
        "p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in _rows(results, "echo", "session echo"):
        lines.append(
            f"| {row['scenario']} | {row['clients']} | {row['server']} | "
            f"{cell(row['round_trips_per_s'])} | {cell(row['ratio'])} | "
            f"{cell(row.get('server_cpu_pct'))} | {cell(row.get('loadgen_cpu_pct'))} | "
            f"{cell(row.get('cpu_us_per_op'))} | {cell(row['cpu_per_op_ratio'])} | "
            f"{bound(row)} | {cell(row['p50_ms'])} | {cell(row['p99_ms'])} |"
        )
    return lines


def handshake_table(results: dict) -> list[str]:
    lines = [
        "## Handshakes",
        "",
        "`/ws/session/`: token check, user lookup, session record, welcome. `/ws/echo/`: the "
        "server's own handshake, with no token and no database: the ceiling for the first.",
        "",
        "| server | endpoint | concurrent | handshakes/s | × peer | server CPU % | "
        "load generator CPU % | server CPU ms per handshake | × peer | peer client-bound | "
        "p50 ms | p99 ms | failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in _rows(results, "handshakes", "echo handshakes"):
        endpoint = {"peer": "/"}.get(row["server"]) or (
            "/ws/echo/" if row["scenario"] == "echo handshakes" else "/ws/session/"
        )
        per_op = row.get("cpu_us_per_op")
        per_op_ms = {k: round(v / 1000, 2) for k, v in per_op.items()} if per_op else None
        failures = sum(run["failures"] for run in row["runs"])
        lines.append(
            f"| {row['server']} | {endpoint} | {row['clients']} | "
            f"{cell(row['handshakes_per_s'])} | {cell(row['ratio'])} | "
            f"{cell(row.get('server_cpu_pct'))} | {cell(row.get('loadgen_cpu_pct'))} | "
            f"{cell(per_op_ms)} | {cell(row['cpu_per_op_ratio'])} | {bound(row)} | "
            f"{cell(row['p50_ms'])} | {cell(row['p99_ms'])} | {failures} |"
        )
    return lines


def mib(figure: dict) -> float:
    return round(figure["median"] / 1024, 1)


def idle_table(results: dict) -> list[str]:
    lines = [
        "## Idle connections (Switchboard: authenticated sessions)",
        "",
        "Each repetition opens the connections in a fresh server process. The same load is run "
        "twice: Python keeps freed memory for reuse instead of returning it to the system, so "
        "RSS stays up after the first round closes; a leak per connection would show as the "
        "second round growing RSS again. RSS columns are medians.",
        "",
        "| server | open | refused | KB per connection | × peer | RSS before → held → after "
        "(MiB) | 2nd round: held → after (MiB) | 2nd round growth, KB per connection |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in _rows(results, "idle"):
        first = [mib(row[k]) for k in ("rss_before_kib", "rss_held_kib", "rss_after_kib")]
        again = [mib(row[k]) for k in ("second_round_held_kib", "second_round_after_kib")]
        refused = sum(run["refused"] for run in row["runs"])
        lines.append(
            f"| {row['server']} | {cell(row['connections'])} | {refused:,} | "
            f"{cell(row['kb_per_connection'])} | {cell(row['ratio'])} | "
            f"{first[0]} → {first[1]} → {first[2]} | {again[0]} → {again[1]} | "
            f"{cell(row['second_round_kb_per_connection'])} |"
        )
    return lines


def fanout_table(fanout: list[dict]) -> list[str]:
    lines = [
        "## Room fan-out (one publisher; subscribers split over two daphne workers)",
        "",
        "Both workers share the server's core; the bare broadcaster has it alone.",
        "",
        "| subscribers | Switchboard deliveries/s | peer broadcaster | × peer | "
        "server CPU %: Switchboard / peer | load generator CPU % with the peer | "
        "Switchboard CPU µs per delivery | × peer | peer client-bound | "
        "Switchboard p50 / p99 ms | lost | at half that rate: publishes/s, p50 / p99 ms, lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in fanout:
        sb, peer, half = row["switchboard"], row["peer"], row["switchboard_half_rate"]
        lost = sum(run["lost"] for run in sb["runs"])
        half_lost = sum(run["lost"] for run in half["runs"])
        lines.append(
            f"| {row['subscribers']:,} | {cell(sb['deliveries_per_s'])} | "
            f"{cell(peer['deliveries_per_s'])} | {cell(row['ratio'])} | "
            f"{cell(sb.get('server_cpu_pct'))} / {cell(peer.get('server_cpu_pct'))} | "
            f"{cell(peer.get('loadgen_cpu_pct'))} | {cell(sb.get('cpu_us_per_op'))} | "
            f"{cell(row['cpu_per_op_ratio'])} | {bound(row)} | "
            f"{cell(sb['p50_ms'])} / {cell(sb['p99_ms'])} | {lost} | "
            f"{cell(half['publishes_per_s'])}, {cell(half['p50_ms'])} / "
            f"{cell(half['p99_ms'])}, {half_lost} |"
        )
    return lines


def tables(results: dict) -> str:
    lines = ["## Targets (the worst median in this run; ratios are × the peer)", ""]
    lines += ["| target | required | measured | met |", "|---|---|---|---|"]
    for name, required, measured, met in targets(results):
        lines.append(f"| {name} | {required} | {measured} | {'yes' if met else '**no**'} |")
    lines += [
        "",
        "What bounds each target that is not met, with flame graphs: `docs/perf/README.md`.",
        "",
        CLIENT_BOUND_NOTE,
        "",
    ]
    lines += round_trip_table(results) + [""] + handshake_table(results) + [""]
    lines += idle_table(results) + [""] + fanout_table(results["fanout"]) + [""]
    lines += history_table(results["fanout"]) + [""] + storm_table(results["storm"])
    return "\n".join(lines)


def history_table(fanout: list[dict]) -> list[str]:
    """The fan-out of a room with history beside the same without (saturating, one publisher,
    two daphne workers): what an offset and a Redis script per message cost."""
    lines = [
        "## Room fan-out with history",
        "",
        "The same fan-out to a room of a namespace with history (`hist.bench`: "
        "`history_size` 1000), beside the room without (`bench`): each publication is stored "
        "by one more Redis script, and each worker hands messages on in offset order.",
        "",
        "| subscribers | deliveries/s without | deliveries/s with history | with ÷ without | "
        "p50 / p99 ms without | p50 / p99 ms with | lost with |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in fanout:
        off, on = row["switchboard"], row["switchboard_history"]
        lost = sum(run["lost"] for run in on["runs"])
        lines.append(
            f"| {row['subscribers']:,} | {cell(off['deliveries_per_s'])} | "
            f"{cell(on['deliveries_per_s'])} | {cell(row['history_ratio'])} | "
            f"{cell(off['p50_ms'])} / {cell(off['p99_ms'])} | "
            f"{cell(on['p50_ms'])} / {cell(on['p99_ms'])} | {lost} |"
        )
    return lines


def storm_table(storm: dict) -> list[str]:
    """The connection storm's section: time to open, peak Redis connections and peak RSS of
    each worker."""
    mib = ", ".join(str(round(kib / 1024, 1)) for kib in storm["peak_rss_kib"])
    connections = ", ".join(str(n) for n in storm["peak_redis_connections"])
    return [
        "## Connection storm",
        "",
        f"{storm['sessions']:,} authenticated sessions opened in one burst over "
        f"{storm['workers']} {storm['server']} workers sharing Redis, each joining a room, then "
        "all closed at once (`tests/system/storm.py`, the machinery of "
        "`tests/system/test_storms.py`). Redis connections are counted by the name each "
        "worker gives its own (`CLIENT LIST`), sampled every 0.25 s.",
        "",
        "| server | workers | sessions | accepted | joined the room | opened in (s) | "
        "sessions/s | peak Redis connections per worker | peak RSS per worker (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {storm['server']} | {storm['workers']} | {storm['sessions']:,} | "
        f"{storm['accepted']:,} | {storm['joined']:,} | {storm['opened_s']} | "
        f"{storm['sessions_per_s']:,} | {connections} | {mib} |",
    ]


def chart_write(results: dict, path: Path) -> None:
    """Throughput and p99 for every scenario (medians, bars from min to max): round trips,
    handshakes, room fan-out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(results, "echo", "session echo")
    labels = [f"{r['scenario']}, {r['clients']} cl., {r['server']}" for r in rows]
    shakes = _rows(results, "handshakes")
    fan = results["fanout"]
    fan_labels = [f"{r['subscribers']} subs, {who}" for r in fan for who in ("switchboard", "peer")]
    fan_runs = [r[who] for r in fan for who in ("switchboard", "peer")]
    figure, axes = plt.subplots(3, 2, figsize=(13, 14))
    panels = [
        (axes[0][0], labels, [r["round_trips_per_s"] for r in rows], "round trips/s"),
        (axes[0][1], labels, [r["p99_ms"] for r in rows], "round trip p99 ms"),
        (
            axes[1][0],
            [r["server"] for r in shakes],
            [r["handshakes_per_s"] for r in shakes],
            "handshakes/s",
        ),
        (
            axes[1][1],
            [r["server"] for r in shakes],
            [r["p99_ms"] for r in shakes],
            "handshake p99 ms",
        ),
        (axes[2][0], fan_labels, [r["deliveries_per_s"] for r in fan_runs], "fan-out deliveries/s"),
        (axes[2][1], fan_labels, [r["p99_ms"] for r in fan_runs], "publish-to-delivery p99 ms"),
    ]
    for axis, names, figures, title in panels:
        medians = [f["median"] for f in figures]
        errors = [
            [f["median"] - f["min"] for f in figures],
            [f["max"] - f["median"] for f in figures],
        ]
        colour = "#3b7dd8" if "/s" in title else "#d8643b"
        axis.bar(names, medians, yerr=errors, color=colour, capsize=3)
        axis.set_title(title + (" (higher is better)" if "/s" in title else " (lower is better)"))
        axis.tick_params(axis="x", labelsize=7, labelrotation=60)
        for label in axis.get_xticklabels():
            label.set_horizontalalignment("right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def report_write(results: dict, out: Path) -> str:
    """Write the three files into `out`; the Markdown tables, for printing."""
    (out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    chart_write(results, out / "benchmarks.png")
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    plan = results["plan"]
    not_quiet = sum(windows_not_quiet(results))
    body = tables(results)
    (out / "BENCHMARKS.md").write_text(
        "# Benchmarks\n\n"
        f"One run of `make bench` on {machine['date']}: {machine['cores']} cores "
        f"({machine['cpu']}), Python {machine['python']}; {versions}. Loopback only. Every "
        "server process is fresh for each measured run and pinned to core 0; the load "
        "generator (picows on uvloop, its own process) is pinned to core 1 and times the "
        "server's process tree and itself during each window. Each window starts once both "
        f"cores were {plan['quiet']['idle_above']:.0%} idle for {plan['quiet']['for_s']} s "
        f"(waiting at most {plan['quiet']['timeout_s']} s: {not_quiet} windows started "
        f"without). {plan['repetitions']} repetitions, the servers in the opposite order each "
        "time; figures are median [min–max], and each ratio to the peer was taken within a "
        "repetition, then summarized. Database: "
        f"{results['database']}; channel layer: channels-redis (RedisChannelLayer); Redis and "
        "the database are not pinned. The peer is a bare `websockets` asyncio server on "
        "uvloop (`bench/peer.py`).\n\n"
        f"Run took {results['duration_s']} s (estimated from the plan: "
        f"{results['plan_estimate_s']} s). Raw figures, every repetition: "
        "`docs/benchmarks.json`; chart: `docs/benchmarks.png`.\n\n" + body + "\n"
    )
    return body


def windows_not_quiet(results: dict) -> list[int]:
    """How many measured windows of each row started on a machine that was not quiet."""
    counts = [row["not_quiet"] for row in results["rows"]]
    for row in results["fanout"]:
        counts += [
            row[kind]["not_quiet"]
            for kind in row
            if isinstance(row[kind], dict) and "runs" in row[kind]
        ]
    return counts
