"""Turn one benchmark run into docs/BENCHMARKS.md, docs/benchmarks.png and benchmarks.json."""

import json
from pathlib import Path

# Targets from the benchmarks issue: ratio of Switchboard's figure to the peer's.
TARGETS = {
    "echo, best server": 0.5,
    "echo, daphne": 0.3,
    "handshakes": 0.5,
    "fanout": 0.3,
}
IDLE_TARGET = 1.5  # KB per idle authenticated session: at most this many times the peer's


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


def tables(results: dict) -> str:
    rows = results["rows"]
    lines = ["## Round trips (32-byte text, ping-pong)", ""]
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
        "## Handshakes (Switchboard: token check, user lookup, session record, welcome)",
        "",
    ]
    lines += ["| server | concurrent | handshakes/s | × peer | p50 ms | p99 ms | failures |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["scenario"] != "handshakes":
            continue
        peer = _peer(rows, "handshakes", row["clients"])
        lines.append(
            f"| {row['server']} | {row['clients']} | {row['handshakes_per_s']:,} | "
            f"{ratio(row['handshakes_per_s'], peer['handshakes_per_s'])} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['failures']} |"
        )
    lines += ["", "## Idle connections (Switchboard: authenticated sessions)", ""]
    lines += [
        "| server | open | refused | KB per connection | × peer | RSS before → held → after (MiB) |"
    ]
    lines += ["|---|---|---|---|---|---|"]
    for row in rows:
        if row["scenario"] != "idle":
            continue
        peer = _peer(rows, "idle", row["clients"])
        mib = [round(row[k] / 1024, 1) for k in ("rss_before_kib", "rss_held_kib", "rss_after_kib")]
        lines.append(
            f"| {row['server']} | {row['connections']:,} | {row['refused']:,} | "
            f"{row['kb_per_connection']} | "
            f"{ratio(row['kb_per_connection'], peer['kb_per_connection'])} | "
            f"{mib[0]} → {mib[1]} → {mib[2]} |"
        )
    lines += ["", "## Room fan-out (one publisher; subscribers split over two daphne workers)", ""]
    lines += [
        "| subscribers | Switchboard deliveries/s | peer broadcaster | × peer | "
        "Switchboard p50 / p99 ms | peer p50 / p99 ms | lost |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["fanout"]:
        if "subscribers" not in row:
            continue
        sb, peer = row["switchboard"], row["peer"]
        rates = sb["deliveries_per_s"], peer["deliveries_per_s"]
        lines.append(
            f"| {row['subscribers']:,} | {rates[0]:,} | {rates[1]:,} | {ratio(*rates)} | "
            f"{sb['p50_ms']} / {sb['p99_ms']} | {peer['p50_ms']} / {peer['p99_ms']} | "
            f"{sb['lost']} |"
        )
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


def chart_write(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r["scenario"] in ("echo", "session echo")]
    labels = [f"{r['scenario']}\n{r['clients']} cl.\n{r['server']}" for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(10, len(rows) * 0.7), 8))
    top.bar(labels, [r["round_trips_per_s"] for r in rows], color="#3b7dd8")
    top.set_ylabel("round trips/s")
    top.set_title("Throughput per scenario and server (higher is better)")
    bottom.bar(labels, [r["p99_ms"] for r in rows], color="#d8643b")
    bottom.set_ylabel("p99 ms")
    bottom.set_title("p99 latency (lower is better)")
    for axis in (top, bottom):
        axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
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
