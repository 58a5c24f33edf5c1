"""Turn one benchmark run into docs/BENCHMARKS.md, docs/benchmarks.png and benchmarks.json.

Every figure is median [min–max] over the repetitions; every ratio to the peer was computed
in each repetition, then summarized (`bench/summary.py`).
"""

import json
import operator
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from bench.summary import cell
from deploy.servers import SUPPORTED


def median(figure: dict | None) -> float:
    return figure["median"] if figure else 0.0


def _rows(results: dict, *scenarios: str) -> list[dict]:
    return [row for row in results["rows"] if row["scenario"] in scenarios]


def lost(figures: dict) -> int:
    """Messages lost in every run of one fan-out kind."""
    return sum(run["lost"] for run in figures["runs"])


def per_op_ms(row: dict) -> dict | None:
    """A handshake row's server CPU per handshake in ms (rows hold µs)."""
    per_op = row.get("cpu_us_per_op")
    return {k: round(v / 1000, 2) for k, v in per_op.items()} if per_op else None


COMPARE = {"≤": operator.le, "≥": operator.ge, "<": operator.lt, "=": operator.eq}


class Target(NamedTuple):
    """One target of issue 17 and the median of this run that decides it."""

    name: str
    bound: str  # a key of COMPARE
    threshold: float
    measured: float | None  # None: not measured in this run
    of: str = ""  # which server or size the median is, where the target picks one

    @property
    def required(self) -> str:
        return f"{self.bound} {self.threshold:g}"

    @property
    def met(self) -> bool:
        return self.measured is not None and COMPARE[self.bound](self.measured, self.threshold)


RATIO = operator.itemgetter("ratio")


def best_server(
    rows: list[dict], figure: Callable[[dict], dict | None], *, lowest: bool = False
) -> tuple[float | None, str]:
    """The best supported server's median of `figure` (the highest, or the lowest) and its
    name; (None, "") when no supported server has that figure. (granian is measured, not
    supported: docs/DEPLOYMENT.md.)"""
    medians = [
        (found["median"], row["server"])
        for row in rows
        if row["server"] in SUPPORTED and (found := figure(row))
    ]
    return (min if lowest else max)(medians, default=(None, ""))


def worst_size(results: dict, scenario: str, server: str | None) -> tuple[float | None, str]:
    """The ratio to the peer of `scenario` at its worst size: `server`'s, or (None) the best
    server's at each size, with its name."""
    rows = _rows(results, scenario)
    sizes = sorted({row["clients"] for row in rows})
    figures = [
        best_server([r for r in rows if r["clients"] == n and server in (None, r["server"])], RATIO)
        for n in sizes
    ]
    return min((f for f in figures if f[0] is not None), default=(None, ""))


def targets(results: dict) -> list[Target]:
    """The targets of issue 17, in its order: the best server's median where the target
    names it, else the worst."""
    shakes = _rows(results, "handshakes")
    cpu, cpu_on = best_server(shakes, per_op_ms, lowest=True)
    shake, shake_on = best_server(shakes, RATIO)
    idle, idle_on = best_server(_rows(results, "idle"), RATIO, lowest=True)
    own = results.get("frame_cost", {}).get("session_minus_echo", {}).get("cpu_us")
    clients = " and ".join(f"{n:,}" for n in sorted({r["clients"] for r in _rows(results, "echo")}))
    session, session_on = worst_size(results, "session echo", None)
    daphne, _ = worst_size(results, "echo", "daphne")
    fanout = sorted(results["fanout"], key=lambda r: r["subscribers"])
    sizes = " and ".join(f"{r['subscribers']:,}" for r in fanout)
    fan = min(fanout, key=lambda r: median(r["ratio"]), default=None)
    largest = fanout[-1] if fanout else None
    kinds = ("switchboard", "switchboard_history", "switchboard_half_rate")
    return [
        Target("authenticated handshake: server CPU ms per handshake, best server", "≤", 1.5,
               cpu, cpu_on),
        Target("authenticated handshakes/s × the peer's plain handshakes/s, best server",
               "≥", 0.5, shake, shake_on),
        Target("KB per idle authenticated session × the peer's, best server", "≤", 1.5,
               idle, idle_on),
        Target("Switchboard's own work per session echo frame, CPU µs (in process: the "
               "session consumer's minus the bare echo consumer's)", "≤", 10,
               median(own) if own else None),
        Target(f"session echo round trips/s × the peer's echo, {clients} clients, best server",
               "≥", 0.5, session, session_on),
        Target(f"echo round trips/s × the peer's, {clients} clients, daphne", "≥", 0.3, daphne),
        Target(f"fan-out deliveries/s × the bare broadcaster's, {sizes} subscribers", "≥", 0.5,
               median(fan["ratio"]) if fan else None,
               f"{fan['subscribers']:,} subscribers" if fan else ""),
        Target("fan-out p99 ms at half the saturating rate, "
               f"{largest['subscribers'] if largest else 0:,} subscribers", "<", 50,
               median(largest["switchboard_half_rate"]["p99_ms"]) if largest else None),
        Target("fan-out messages lost, every Switchboard run", "=", 0,
               sum(lost(r[kind]) for r in fanout for kind in kinds) if fanout else None),
    ]  # fmt: skip


def table(title: str, intro: str | None, columns: list[str]) -> list[str]:
    """A section's heading, its introduction (if any) and its table's header."""
    head = [f"## {title}", ""] + ([intro, ""] if intro else [])
    return head + [row_line(columns), "|" + "---|" * len(columns)]


def row_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def targets_table(results: dict) -> list[str]:
    lines = table(
        "Targets (medians of this run; ratios are × the peer)",
        "Where a target names the best server, the best supported server's median (the "
        "measured column says which); otherwise the worst size measured; – where this run did "
        "not measure it.",
        ["target", "required", "measured", "met"],
    )
    for t in targets(results):
        measured = "–" if t.measured is None else f"{t.measured:g}" + (f" ({t.of})" if t.of else "")
        lines.append(row_line([t.name, t.required, measured, "yes" if t.met else "**no**"]))
    return lines + [
        "",
        "What bounds each target that is not met, with flame graphs: `docs/perf/README.md`.",
    ]


CLIENT_BOUND_NOTE = (
    "**Peer client-bound** marks a scenario whose peer left its core idle (server CPU under "
    "80 %) while the load generator's was busy (over 90 %): there the ratio measures the "
    "client, and the server CPU per operation beside it (× the peer's) is the figure to read."
)


def bound(row: dict) -> str:
    return "**yes**" if row["peer_client_bound"] else "no"


def timed_columns(rate: str, per_op: str) -> list[str]:
    """The columns of a timed window: its rate beside the peer's, the CPU of both sides."""
    return [
        rate, "× peer", "server CPU %", "load generator CPU %", per_op, "× peer",
        "peer client-bound", "p50 ms", "p99 ms",
    ]  # fmt: skip


def timed_cells(row: dict, rate_key: str, per_op: dict | None) -> list[str]:
    """`timed_columns` of one row (`per_op`: its server CPU per operation, in the unit the
    column names)."""
    return [
        cell(row[rate_key]), cell(row["ratio"]), cell(row.get("server_cpu_pct")),
        cell(row.get("loadgen_cpu_pct")), cell(per_op), cell(row["cpu_per_op_ratio"]),
        bound(row), cell(row["p50_ms"]), cell(row["p99_ms"]),
    ]  # fmt: skip


def round_trip_table(results: dict) -> list[str]:
    lines = table(
        "Round trips (32-byte text, ping-pong)",
        None,
        ["scenario", "clients", "server"]
        + timed_columns("round trips/s", "server CPU µs per round trip"),
    )
    for row in _rows(results, "echo", "session echo"):
        head = [row["scenario"], str(row["clients"]), row["server"]]
        per_op = row.get("cpu_us_per_op")
        lines.append(row_line(head + timed_cells(row, "round_trips_per_s", per_op)))
    return lines


FRAME_COST_ROWS = {
    "session": "`/ws/session/` (`SessionConsumer`)",
    "echo": "`/ws/echo/` (`EchoConsumer`)",
    "session_minus_echo": "session minus echo, per repetition: Switchboard's own work",
}


def frame_cost_table(frame_cost: dict) -> list[str]:
    """Switchboard's own work per frame, from `bench/frame_cost.py` (one process, no server)."""
    lines = table(
        "Own work per frame (in process, no server)",
        f"`bench/frame_cost.py`, pinned to the server's core: {frame_cost['frames']:,} echo "
        "frames round trip, one at a time, through the ASGI application with an in-memory "
        "receive and send (no server, no network), after the session's `welcome`; "
        f"{frame_cost['repetitions']} repetitions. The bare `/ws/echo/` consumer is channels' "
        "own path per frame; the session's work beyond it is Switchboard's. CPU time is the "
        "target's figure: other processes sharing the core do not count in it.",
        ["consumer", "µs per frame", "CPU µs per frame"],
    )
    for name, label in FRAME_COST_ROWS.items():
        figures = frame_cost[name]
        lines.append(row_line([label, cell(figures["wall_us"]), cell(figures["cpu_us"])]))
    return lines


def handshake_table(results: dict) -> list[str]:
    lines = table(
        "Handshakes",
        "`/ws/session/`: token check, user lookup, session record, welcome. `/ws/echo/`: the "
        "server's own handshake, with no token and no database: the ceiling for the first.",
        ["server", "endpoint", "concurrent"]
        + timed_columns("handshakes/s", "server CPU ms per handshake")
        + ["failures"],
    )
    for row in _rows(results, "handshakes", "echo handshakes"):
        endpoint = {"peer": "/"}.get(row["server"]) or (
            "/ws/echo/" if row["scenario"] == "echo handshakes" else "/ws/session/"
        )
        failures = sum(run["failures"] for run in row["runs"])
        head = [row["server"], endpoint, str(row["clients"])]
        cells = timed_cells(row, "handshakes_per_s", per_op_ms(row))
        lines.append(row_line(head + cells + [str(failures)]))
    return lines


def mib(figure: dict) -> float:
    return round(figure["median"] / 1024, 1)


def idle_table(results: dict) -> list[str]:
    lines = table(
        "Idle connections (Switchboard: authenticated sessions)",
        "Each repetition opens the connections in a fresh server process. The same load is run "
        "twice: Python keeps freed memory for reuse instead of returning it to the system, so "
        "RSS stays up after the first round closes; a leak per connection would show as the "
        "second round growing RSS again. RSS columns are medians.",
        [
            "server", "open", "refused", "KB per connection", "× peer",
            "RSS before → held → after (MiB)", "2nd round: held → after (MiB)",
            "2nd round growth, KB per connection",
        ],
    )  # fmt: skip
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


def fanout_table(fanout: list[dict], server: str) -> list[str]:
    lines = table(
        f"Room fan-out (one publisher; subscribers split over two {server} workers)",
        "Both workers share the server's core; the bare broadcaster has it alone.",
        [
            "subscribers", "Switchboard deliveries/s", "peer broadcaster", "× peer",
            "server CPU %: Switchboard / peer", "load generator CPU % with the peer",
            "Switchboard CPU µs per delivery", "× peer", "peer client-bound",
            "Switchboard p50 / p99 ms", "lost",
            "at half that rate: publishes/s, p50 / p99 ms, lost",
        ],
    )  # fmt: skip
    for row in fanout:
        sb, peer, half = row["switchboard"], row["peer"], row["switchboard_half_rate"]
        lines.append(
            f"| {row['subscribers']:,} | {cell(sb['deliveries_per_s'])} | "
            f"{cell(peer['deliveries_per_s'])} | {cell(row['ratio'])} | "
            f"{cell(sb.get('server_cpu_pct'))} / {cell(peer.get('server_cpu_pct'))} | "
            f"{cell(peer.get('loadgen_cpu_pct'))} | {cell(sb.get('cpu_us_per_op'))} | "
            f"{cell(row['cpu_per_op_ratio'])} | {bound(row)} | "
            f"{cell(sb['p50_ms'])} / {cell(sb['p99_ms'])} | {lost(sb)} | "
            f"{cell(half['publishes_per_s'])}, {cell(half['p50_ms'])} / "
            f"{cell(half['p99_ms'])}, {lost(half)} |"
        )
    return lines


def history_table(fanout: list[dict]) -> list[str]:
    """The fan-out of a room with history beside the same without (saturating, one publisher,
    two workers): what an offset and a Redis script per message cost."""
    lines = table(
        "Room fan-out with history",
        "The same fan-out to a room of a namespace with history (`hist.bench`: "
        "`history_size` 1000), beside the room without (`bench`): each publication is stored "
        "by one more Redis script, and each worker hands messages on in offset order.",
        [
            "subscribers", "deliveries/s without", "deliveries/s with history",
            "with ÷ without", "p50 / p99 ms without", "p50 / p99 ms with", "lost with",
        ],
    )  # fmt: skip
    for row in fanout:
        off, on = row["switchboard"], row["switchboard_history"]
        lines.append(
            f"| {row['subscribers']:,} | {cell(off['deliveries_per_s'])} | "
            f"{cell(on['deliveries_per_s'])} | {cell(row['history_ratio'])} | "
            f"{cell(off['p50_ms'])} / {cell(off['p99_ms'])} | "
            f"{cell(on['p50_ms'])} / {cell(on['p99_ms'])} | {lost(on)} |"
        )
    return lines


def tables(results: dict) -> str:
    lines = targets_table(results) + ["", CLIENT_BOUND_NOTE, ""]
    lines += round_trip_table(results) + [""]
    if "frame_cost" in results:  # runs before bench/frame_cost.py have none
        lines += frame_cost_table(results["frame_cost"]) + [""]
    lines += handshake_table(results) + [""]
    lines += (
        idle_table(results)
        + [""]
        + fanout_table(results["fanout"], results.get("fanout_server", "daphne"))
    )
    lines += [""]
    lines += history_table(results["fanout"]) + [""] + storm_table(results["storm"])
    return "\n".join(lines)


def storm_table(storm: dict) -> list[str]:
    """The connection storm's section: time to open, peak Redis connections and peak RSS of
    each worker."""
    mib = ", ".join(str(round(kib / 1024, 1)) for kib in storm["peak_rss_kib"])
    connections = ", ".join(str(n) for n in storm["peak_redis_connections"])
    lines = table(
        "Connection storm",
        f"{storm['sessions']:,} authenticated sessions opened in one burst over "
        f"{storm['workers']} {storm['server']} workers sharing Redis, each joining a room, then "
        "all closed at once (`tests/system/storm.py`, the machinery of "
        "`tests/system/test_storms.py`). Redis connections are counted by the name each "
        "worker gives its own (`CLIENT LIST`), sampled every 0.25 s.",
        [
            "server", "workers", "sessions", "accepted", "joined the room", "opened in (s)",
            "sessions/s", "peak Redis connections per worker", "peak RSS per worker (MiB)",
        ],
    )  # fmt: skip
    return lines + [
        f"| {storm['server']} | {storm['workers']} | {storm['sessions']:,} | "
        f"{storm['accepted']:,} | {storm['joined']:,} | {storm['opened_s']} | "
        f"{storm['sessions_per_s']:,} | {connections} | {mib} |"
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
