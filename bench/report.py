"""Turn one benchmark run into docs/BENCHMARKS.md, docs/benchmarks.png and benchmarks.json."""

import json
from pathlib import Path


def ratio(value: float, peer: float) -> float | None:
    return round(value / peer, 2) if peer else None


def _peer(rows: list[dict], scenario: str, clients: int) -> dict | None:
    return next(
        (
            r
            for r in rows
            if r["server"] == "peer" and r["scenario"] == scenario and r["clients"] == clients
        ),
        None,
    )


def _ratio_of(rows: list[dict], scenario: str, clients: int, server: str, key: str) -> float:
    row = next(
        r for r in rows if (r["scenario"], r["clients"], r["server"]) == (scenario, clients, server)
    )
    peer_scenario = "echo" if scenario == "session echo" else scenario
    return ratio(row[key], _peer(rows, peer_scenario, clients)[key]) or 0.0


def targets(results: dict) -> list[tuple[str, str, float, bool]]:
    """Each target of the issue: (target, required, the worst measured ratio, met)."""
    rows = results["rows"]
    many = sorted({r["clients"] for r in rows if r["scenario"] == "echo"})[-2:]  # 50 and 500
    cases = [(s, c) for s in ("echo", "session echo") for c in many]
    servers = sorted({r["server"] for r in rows} - {"peer"})
    rt = "round_trips_per_s"
    best = min(max(_ratio_of(rows, s, c, server, rt) for server in servers) for s, c in cases)
    daphne = min(_ratio_of(rows, s, c, "daphne", rt) for s, c in cases)
    shake = max(
        _ratio_of(rows, "handshakes", r["clients"], r["server"], "handshakes_per_s")
        for r in rows
        if r["scenario"] == "handshakes" and r["server"] != "peer"
    )
    idle = min(
        _ratio_of(rows, "idle", r["clients"], r["server"], "kb_per_connection")
        for r in rows
        if r["scenario"] == "idle" and r["server"] != "peer"
    )
    fan_rows = [r for r in results["fanout"] if r.get("subscribers", 0) >= 100]
    fan = (
        min(
            (ratio(r["switchboard"]["deliveries_per_s"], r["peer"]["deliveries_per_s"]) or 0.0)
            for r in fan_rows
        )
        if fan_rows
        else 0.0
    )
    half_p99 = max((r["switchboard_half_rate"]["p99_ms"] for r in fan_rows), default=0.0)
    half_lost = sum(r["switchboard_half_rate"]["lost"] for r in fan_rows)
    return [
        ("echo and session echo, 50 and 500 clients, best server", "≥ 0.5", best, best >= 0.5),
        ("echo and session echo, 50 and 500 clients, daphne", "≥ 0.3", daphne, daphne >= 0.3),
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


def tables(results: dict) -> str:
    rows = results["rows"]
    lines = ["## Targets (the worst case in this run; ratios are × the peer)", ""]
    lines += ["| target | required | measured | met |", "|---|---|---|---|"]
    for name, required, measured, met in targets(results):
        lines.append(f"| {name} | {required} | {measured} | {'yes' if met else '**no**'} |")
    lines += [
        "",
        "What bounds each target that is not met, with flame graphs: `docs/perf/README.md`.",
        "",
        "## Round trips (32-byte text, ping-pong)",
        "",
    ]
    lines += [
        "| scenario | clients | server | round trips/s | × peer | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["scenario"] not in ("echo", "session echo"):
            continue
        peer = _peer(rows, "echo", row["clients"])
        rate = row["round_trips_per_s"]
        lines.append(
            f"| {row['scenario']} | {row['clients']} | {row['server']} | {rate:,} | "
            f"{ratio(rate, peer['round_trips_per_s'])} | {row['p50_ms']} | {row['p99_ms']} |"
        )
    lines += [
        "",
        "## Handshakes",
        "",
        "`/ws/session/`: token check, user lookup, session record, welcome. `/ws/echo/`: the "
        "server's own handshake, with no token and no database: the ceiling for the first.",
        "",
    ]
    lines += [
        "| server | endpoint | concurrent | handshakes/s | × peer | p50 ms | p99 ms | failures |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["scenario"] not in ("handshakes", "echo handshakes"):
            continue
        peer = _peer(rows, "handshakes", row["clients"])
        endpoint = {"peer": "/"}.get(row["server"]) or (
            "/ws/echo/" if row["scenario"] == "echo handshakes" else "/ws/session/"
        )
        lines.append(
            f"| {row['server']} | {endpoint} | {row['clients']} | {row['handshakes_per_s']:,} | "
            f"{ratio(row['handshakes_per_s'], peer['handshakes_per_s'])} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['failures']} |"
        )
    lines += ["", "## Idle connections (Switchboard: authenticated sessions)", ""]
    lines += [
        "The same load is run twice. Python keeps freed memory for reuse instead of returning "
        "it to the system, so RSS stays up after the first round closes; a leak per "
        "connection would show as the second round growing RSS again.",
        "",
        "| server | open | refused | KB per connection | × peer | RSS before → held → after "
        "(MiB) | 2nd round: held → after (MiB) | 2nd round growth, KB per connection |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["scenario"] != "idle":
            continue
        peer = _peer(rows, "idle", row["clients"])
        keys = ("rss_before_kib", "rss_held_kib", "rss_after_kib")
        mib = [round(row[k] / 1024, 1) for k in keys]
        again = [
            round(row[k] / 1024, 1) for k in ("second_round_held_kib", "second_round_after_kib")
        ]
        lines.append(
            f"| {row['server']} | {row['connections']:,} | {row['refused']:,} | "
            f"{row['kb_per_connection']} | "
            f"{ratio(row['kb_per_connection'], peer['kb_per_connection'])} | "
            f"{mib[0]} → {mib[1]} → {mib[2]} | {again[0]} → {again[1]} | "
            f"{row['second_round_kb_per_connection']} |"
        )
    lines += ["", "## Room fan-out (one publisher; subscribers split over two daphne workers)", ""]
    lines += [
        "| subscribers | Switchboard deliveries/s | peer broadcaster | × peer | "
        "Switchboard p50 / p99 ms | peer p50 / p99 ms | lost | at half that rate: "
        "publishes/s, p50 / p99 ms, lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["fanout"]:
        if "subscribers" not in row:
            continue
        sb, peer, half = row["switchboard"], row["peer"], row["switchboard_half_rate"]
        rates = sb["deliveries_per_s"], peer["deliveries_per_s"]
        lines.append(
            f"| {row['subscribers']:,} | {rates[0]:,} | {rates[1]:,} | {ratio(*rates)} | "
            f"{sb['p50_ms']} / {sb['p99_ms']} | {peer['p50_ms']} / {peer['p99_ms']} | "
            f"{sb['lost']} | {half['publishes_per_s']}, {half['p50_ms']} / {half['p99_ms']}, "
            f"{half['lost']} |"
        )
    lines += ["", *history_table(results["fanout"])]
    lines += ["", *storm_table(results["storm"])]
    lines += ["", "## Memory per server process (MiB)", ""]
    lines += ["| server | peak | at the end |", "|---|---|---|"]
    for name, memory in results["memory"].items():
        peak, end = round(memory["peak_kib"] / 1024, 1), round(memory["rss_kib"] / 1024, 1)
        lines.append(f"| {name} | {peak} | {end} |")
    for row in results["fanout"]:
        if "memory" in row:
            lines.append(
                f"| {row['memory']} (fan-out worker) | {round(row['peak_kib'] / 1024, 1)} | "
                f"{round(row['rss_kib'] / 1024, 1)} |"
            )
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
        "| subscribers | deliveries/s without / with history | with ÷ without | "
        "p50 / p99 ms without | p50 / p99 ms with | lost with |",
        "|---|---|---|---|---|---|",
    ]
    for row in fanout:
        if "switchboard_history" not in row:
            continue
        off, on = row["switchboard"], row["switchboard_history"]
        rates = on["deliveries_per_s"], off["deliveries_per_s"]
        lines.append(
            f"| {row['subscribers']:,} | {off['deliveries_per_s']:,} / {on['deliveries_per_s']:,} "
            f"| {ratio(*rates)} | {off['p50_ms']} / {off['p99_ms']} | "
            f"{on['p50_ms']} / {on['p99_ms']} | {on['lost']} |"
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
    """Throughput and p99 for every scenario: round trips, handshakes, room fan-out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r["scenario"] in ("echo", "session echo")]
    labels = [f"{r['scenario']}, {r['clients']} cl., {r['server']}" for r in rows]
    shakes = [r for r in results["rows"] if r["scenario"] == "handshakes"]
    fan = [r for r in results["fanout"] if "subscribers" in r]
    figure, axes = plt.subplots(3, 2, figsize=(13, 14))
    panels = [
        (axes[0][0], labels, [r["round_trips_per_s"] for r in rows], "round trips/s", "#3b7dd8"),
        (axes[0][1], labels, [r["p99_ms"] for r in rows], "round trip p99 ms", "#d8643b"),
        (
            axes[1][0],
            [r["server"] for r in shakes],
            [r["handshakes_per_s"] for r in shakes],
            "handshakes/s (50 concurrent)",
            "#3b7dd8",
        ),
        (
            axes[1][1],
            [r["server"] for r in shakes],
            [r["p99_ms"] for r in shakes],
            "handshake p99 ms",
            "#d8643b",
        ),
    ]
    fan_labels = [f"{r['subscribers']} subs, {who}" for r in fan for who in ("switchboard", "peer")]
    panels += [
        (
            axes[2][0],
            fan_labels,
            [r[who]["deliveries_per_s"] for r in fan for who in ("switchboard", "peer")],
            "fan-out deliveries/s",
            "#3b7dd8",
        ),
        (
            axes[2][1],
            fan_labels,
            [r[who]["p99_ms"] for r in fan for who in ("switchboard", "peer")],
            "publish-to-delivery p99 ms",
            "#d8643b",
        ),
    ]
    for axis, names, values, title, colour in panels:
        axis.bar(names, values, color=colour)
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
    body = tables(results)
    (out / "BENCHMARKS.md").write_text(
        "# Benchmarks\n\n"
        f"One run of `make bench` on {machine['date']}: {machine['cores']} cores "
        f"({machine['cpu']}), Python {machine['python']}; {versions}. Loopback only; the "
        "load generator (picows on uvloop) runs in its own process on the same machine, so "
        f"the servers and the client share two cores. Database: {results['database']}; "
        "channel layer: channels-redis (RedisChannelLayer). Figures from a shared machine move "
        "15-25 % run to run: compare ratios within one run. The peer is a bare `websockets` "
        "asyncio server (`bench/peer.py`).\n\n"
        f"Run took {results['duration_s']} s. Raw figures: `docs/benchmarks.json`; chart: "
        "`docs/benchmarks.png`.\n\n" + body + "\n"
    )
    return body
