"""`make bench`: Switchboard under daphne, uvicorn and granian beside a bare `websockets` peer
(on uvloop), in repetitions whose ratios hold.

Every measured run starts a fresh server process (idle memory included) pinned to the server's
core, waits until both cores are quiet (bounded, logged), and drives it with `bench.loadgen`
pinned to the other core, which also times the server's process tree and itself during the
window. Each repetition runs every scenario, the servers in the opposite order to the last
one. Then the room fan-out (two uvicorn workers on one Redis, with and without history, beside
the bare broadcaster) in the same way; Switchboard's own work per echo frame, in one process on
the server's core with no server or network (`bench/frame_cost.py`); and one connection storm
over two uvicorn workers, driven from this process with the storm test's machinery
(`tests/system/storm.py`). Writes `docs/BENCHMARKS.md`, `docs/benchmarks.png` and
`docs/benchmarks.json`: median [min–max] of each figure and of each ratio to the peer (computed
per repetition). Stops everything it started, by PID, however it ends (Ctrl-C and SIGTERM
included).
`--smoke` runs the same harness with tiny numbers (seconds, not minutes) into `--out`.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.cores import Quiet, client_pin, quiet_wait
from bench.frame_cost import REPETITIONS as FRAME_REPETITIONS
from bench.processes import (
    POSTGRES,
    SWITCHBOARD_SERVERS,
    Server,
    access_token,
    frame_cost,
    loadgen,
    loadgen_command,
    peer_command,
    postgres_answers,
    started,
    switchboard_command,
    switchboard_env,
)
from bench.report import report_write
from bench.summary import fanout_summary, row_summary
from tests.system.burst import close_all, nofile_raise
from tests.system.databases import database_create, database_drop
from tests.system.stack import ROOT, SECRET_KEY, RedisServer, database_migrate
from tests.system.storm import Peaks, rooms_join, storm_figures, storm_open


@dataclass(frozen=True)
class Plan:
    repetitions: int
    warmup: float  # before each echo and handshake window
    seconds: float  # each echo and handshake window
    clients: tuple[int, ...]
    handshake_concurrency: int
    idle: int  # sessions held open per idle round
    idle_hold: float
    fanout_subscribers: tuple[int, ...]
    fanout_seconds: float
    storm: int  # sessions opened in one burst
    frames: int  # echo frames per repetition of the in-process frame cost (bench/frame_cost.py)
    quiet: Quiet


FULL = Plan(3, 1.0, 2.0, (50,), 50, 1000, 1.5, (100, 1000), 2.0, 5000, 10_000, Quiet(timeout_s=2.5))
# One repetition (two would double the smoke test's time; the alternation and the summaries are
# unit-tested) and no wait for quiet: `make test` shares the machine with its other tests, and
# the smoke test checks the harness, not the figures.
SMOKE = Plan(
    1, 0.1, 0.3, (4,), 2, 10, 0.3, (4,), 0.3, 20, 200,
    Quiet(idle_above=0.0, for_s=0.2, timeout_s=0.2),
)  # fmt: skip

PEER = "peer"
SERVERS = (PEER, *SWITCHBOARD_SERVERS)
ROUND_TRIPS, HANDSHAKES, IDLE_KB = "round_trips_per_s", "handshakes_per_s", "kb_per_connection"
SESSION_PATH = "/ws/session/?token={token}"
HISTORY_ROOM = "hist.bench"  # in a namespace with history: offsets, one more Redis script
FANOUT_KINDS = ("switchboard", "switchboard_history", "peer")
# The fan-out's workers: the server docs/DEPLOYMENT.md recommends (its sends cost a quarter of
# daphne's: 13 against 55 µs of server CPU per delivery at 1,000 subscribers, measured here).
FANOUT_SERVER = "uvicorn"


@dataclass(frozen=True)
class Case:
    """One scenario at one size, run on each of `servers` in every repetition."""

    scenario: str
    loadgen: str  # bench.loadgen's scenario
    clients: int
    servers: tuple[str, ...]
    path: str  # Switchboard's; the peer serves "/" and speaks no session protocol
    session: bool
    key: str  # the figure divided by the peer's
    peer_scenario: str  # the peer's row it is divided by


def cases(plan: Plan) -> list[Case]:
    """Every point-to-point scenario of `plan`, in the order the report lists them."""
    shakes = plan.handshake_concurrency
    return [
        *(
            case
            for n in plan.clients
            for case in (
                Case("echo", "pingpong", n, SERVERS, "/ws/echo/", False, ROUND_TRIPS, "echo"),
                Case(
                    "session echo", "pingpong", n, SWITCHBOARD_SERVERS, SESSION_PATH, True,
                    ROUND_TRIPS, "echo",
                ),
            )
        ),
        Case("handshakes", "handshakes", shakes, SERVERS, SESSION_PATH, True, HANDSHAKES,
             "handshakes"),
        # The server's own ceiling: a bare /ws/echo/ handshake (no token, no database).
        Case("echo handshakes", "handshakes", shakes, SWITCHBOARD_SERVERS, "/ws/echo/", False,
             HANDSHAKES, "handshakes"),
        Case("idle", "idle", plan.idle, SERVERS, SESSION_PATH, True, IDLE_KB, "idle"),
    ]  # fmt: skip


def in_turn(names: tuple[str, ...], repetition: int) -> tuple[str, ...]:
    """`names` in repetition order: as given, then reversed, then as given…"""
    return names if repetition % 2 == 0 else names[::-1]


# What a run costs besides its window, for the estimate (measured on the two-core machine the
# figures come from, with another test run beside): starting and stopping the server(s), the
# load generator's start, connects and close.
START_S = {PEER: 0.3, "daphne": 1.6, "uvicorn": 1.5, "granian": 1.5, "fanout": 3.2}
LOADGEN_S = 0.5
CONNECTS_PER_S = 200  # authenticated sessions opened per second (idle, fan-out)
SETUP_S = 8.0  # migrations, and a server to register the bench user and get its token
# bench/frame_cost.py: its own migrations, then each round trip (session or echo) of its
# repetitions and warm-ups.
FRAME_SETUP_S, FRAME_ROUND_TRIP_US = 2.5, 30


def estimate_s(plan: Plan) -> float:
    """How long `run` takes with `plan` on a quiet machine, from the plan alone."""
    quiet = min(plan.quiet.for_s, plan.quiet.timeout_s) + 0.05
    total = 0.0
    for case in cases(plan):
        for server in case.servers:
            if case.loadgen == "idle":
                window = 2 * (LOADGEN_S + plan.idle / CONNECTS_PER_S + 2 * plan.idle_hold)
            else:
                window = LOADGEN_S + plan.warmup + plan.seconds + case.clients / 1000
            total += START_S[server] + quiet + window
    for subscribers in plan.fanout_subscribers:
        for kind in (*FANOUT_KINDS, "switchboard"):  # the last: at half the rate
            start, rate = (START_S[PEER], 1000) if kind == "peer" else (START_S["fanout"], 0)
            connects = subscribers / (rate or CONNECTS_PER_S)
            total += start + quiet + LOADGEN_S + connects + 0.5 + plan.fanout_seconds + 0.2
    storm = 2 * START_S[STORM_SERVER] + quiet + 2 + plan.storm / CONNECTS_PER_S
    trips = 2 * (FRAME_REPETITIONS + 0.1) * plan.frames
    frames = quiet + FRAME_SETUP_S + trips * FRAME_ROUND_TRIP_US / 1e6
    return SETUP_S + plan.repetitions * total + frames + storm


def estimate_line(plan: Plan) -> str:
    runs = sum(len(case.servers) for case in cases(plan))
    runs += (len(FANOUT_KINDS) + 1) * len(plan.fanout_subscribers)
    worst = plan.repetitions * runs * max(0.0, plan.quiet.timeout_s - plan.quiet.for_s)
    return (
        f"[bench] plan: {plan.repetitions} repetitions of {runs} runs, each on a fresh server, "
        f"the frame cost and a storm of {plan.storm:,}: about {estimate_s(plan) / 60:.1f} min "
        f"on a quiet machine, up to {worst / 60:.1f} min more if it is never quiet"
    )


@dataclass
class Bench:
    """What every run of one `make bench` shares."""

    plan: Plan
    workdir: Path
    env: dict[str, str]
    token: str = ""
    runs: int = 0

    def server(self, name: str) -> Server:
        command = peer_command("echo") if name == PEER else switchboard_command(name, self.env)
        self.runs += 1
        return Server(f"{self.runs:03}-{name}", command, self.env, self.workdir)

    def url(self, server: Server, name: str, case: Case) -> str:
        return server.ws("/" if name == PEER else case.path.format(token=self.token))


def idle_round(server: Server, url: str, count: int, *, session: bool, hold: float) -> dict:
    """Open `count` connections, hold them, close them: RSS before, held and after."""
    before = server.memory_kib()["rss_kib"]
    args = loadgen_command("idle", [url], clients=count, hold=hold, session=session)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())["ready"]
        time.sleep(hold / 2)
        held = server.memory_kib()["rss_kib"]
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(hold)  # the closes handled
    return {"ready": ready, "before": before, "held": held, "after": server.memory_kib()["rss_kib"]}


def idle_memory(server: Server, url: str, count: int, *, session: bool, hold: float) -> dict:
    """KB per idle connection (first round, in a fresh process), and a second identical
    round: Python keeps freed memory for reuse rather than returning it, so "after" stays up;
    what shows a leak is the second round growing RSS again."""
    first = idle_round(server, url, count, session=session, hold=hold)
    second = idle_round(server, url, count, session=session, hold=hold)
    return {
        "connections": first["ready"],
        "refused": count - first["ready"],
        "kb_per_connection": round((first["held"] - first["before"]) / max(1, first["ready"]), 1),
        "rss_before_kib": first["before"],
        "rss_held_kib": first["held"],
        "rss_after_kib": first["after"],
        "second_round_held_kib": second["held"],
        "second_round_after_kib": second["after"],
        "second_round_kb_per_connection": round(
            (second["held"] - first["after"]) / max(1, second["ready"]), 1
        ),
    }


def took(label: str, began: float) -> None:
    print(f"[bench] {label}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)


def case_run(bench: Bench, case: Case, name: str, repetition: int) -> dict:
    """One measured run of `case` on a fresh `name` server; its figures."""
    plan, server = bench.plan, bench.server(name)
    session = case.session and name != PEER
    label = f"r{repetition + 1} {case.scenario} {case.clients} {name}"
    began = time.monotonic()
    with started(server):
        url = bench.url(server, name, case)
        quiet = quiet_wait(plan.quiet, label)
        if case.loadgen == "idle":
            figures = idle_memory(server, url, case.clients, session=session, hold=plan.idle_hold)
        else:
            figures = loadgen(
                case.loadgen,
                [url],
                clients=case.clients,
                warmup=plan.warmup,
                seconds=plan.seconds,
                session=session,
                cpu_pid=[server.pid],
            )
        figures |= server.memory_kib()
    took(label, began)
    return figures | {"repetition": repetition, "quiet": quiet}


def fanout_run(bench: Bench, kind: str, subscribers: int, repetition: int, rate: float = 0):
    """One fan-out on fresh servers: two FANOUT_SERVER workers (`room` with or without history), or
    the bare broadcaster; `rate` publishes/s, or 0 for the saturating closed loop."""
    bench.runs += 1
    if kind == "peer":
        names, command = ["broadcaster"], peer_command("broadcast")
    else:
        names, command = ["fanout1", "fanout2"], switchboard_command(FANOUT_SERVER, bench.env)
    servers = [Server(f"{bench.runs:03}-{n}", command, bench.env, bench.workdir) for n in names]
    label = f"r{repetition + 1} fan-out {subscribers} {kind}{' at half rate' if rate else ''}"
    began = time.monotonic()
    with started(*servers):
        if kind == "peer":
            urls, options = [servers[0].ws("/")], {}
        else:
            urls = [s.ws(f"/ws/session/?token={bench.token}") for s in servers]
            options = {"session": True, "channel": HISTORY_ROOM if "history" in kind else "bench"}
        quiet = quiet_wait(bench.plan.quiet, label)
        figures = loadgen(
            "fanout",
            urls,
            clients=subscribers,
            seconds=bench.plan.fanout_seconds,
            rate=round(rate, 1) if rate else None,
            cpu_pid=[s.pid for s in servers],
            **options,
        )
    took(label, began)
    return figures | {"repetition": repetition, "quiet": quiet}


def fanout_repetition(bench: Bench, repetition: int, raw: dict) -> None:
    """Every fan-out size once, the kinds in repetition order; then Switchboard again at half
    the rate it just sustained (its latency when not saturated)."""
    for subscribers in bench.plan.fanout_subscribers:
        runs = raw.setdefault(subscribers, {})
        for kind in in_turn(FANOUT_KINDS, repetition):
            runs.setdefault(kind, []).append(fanout_run(bench, kind, subscribers, repetition))
        half = max(1.0, runs["switchboard"][-1]["messages"] / bench.plan.fanout_seconds / 2)
        figures = fanout_run(bench, "switchboard", subscribers, repetition, rate=half)
        runs.setdefault("switchboard_half_rate", []).append(figures | {"publishes_per_s": half})


def run(plan: Plan, workdir: Path, database_url: str) -> dict:
    redis = RedisServer(workdir=workdir / "redis").start()
    try:
        env = switchboard_env(workdir, database_url, redis.url)
        database_migrate(env)
        client_pin()  # from here on, this process and the load generators: the client's core
        bench = Bench(plan, workdir, env)
        with started(bench.server("daphne")) as (server,):
            bench.token = access_token(server)
        raw: dict[tuple[str, int, str], list[dict]] = {}
        fan: dict[int, dict[str, list[dict]]] = {}
        for repetition in range(plan.repetitions):
            for case in cases(plan):
                for name in in_turn(case.servers, repetition):
                    figures = case_run(bench, case, name, repetition)
                    raw.setdefault((case.scenario, case.clients, name), []).append(figures)
            fanout_repetition(bench, repetition, fan)
        results: dict = {"rows": [], "fanout": [], "plan_estimate_s": round(estimate_s(plan))}
        for case in cases(plan):
            peer_runs = raw[(case.peer_scenario, case.clients, PEER)]
            for name in case.servers:
                runs = raw[(case.scenario, case.clients, name)]
                results["rows"].append(
                    row_summary(case.scenario, case.clients, name, runs, peer_runs, case.key)
                )
        results["fanout"] = [fanout_summary(n, runs) for n, runs in fan.items()]
        results["fanout_server"] = FANOUT_SERVER
        quiet = quiet_wait(plan.quiet, "frame cost")
        results["frame_cost"] = frame_cost(plan.frames) | {"quiet": quiet}
        quiet_wait(plan.quiet, "storm")
        results["storm"] = storm(plan, bench, redis)
    finally:
        redis.stop()
    return results


# The storm test's server (tests/system/test_storms.py): daphne sheds handshakes under a
# burst of thousands (tests/system/test_bursts.py), so its time to open would say little.
STORM_SERVER = "uvicorn"
STORM_WORKERS = 2
STORM_ROOM = "storm"


def storm(plan: Plan, bench: Bench, redis: RedisServer) -> dict:
    """`plan.storm` sessions opened in one burst over two uvicorn workers (Redis), each
    joining a room, then all closed at once, as the storm test does: the time to open, and
    each worker's peak Redis connections and RSS."""
    nofile_raise()
    command = switchboard_command(STORM_SERVER, bench.env)
    workers = tuple(
        Server(f"storm{n}", command, bench.env, bench.workdir) for n in range(1, STORM_WORKERS + 1)
    )
    with started(*workers):
        return asyncio.run(storm_run(plan.storm, workers, redis, bench.token))


async def storm_run(
    count: int, workers: tuple[Server, ...], redis: RedisServer, token: str
) -> dict:
    """The storm itself, from this process; its figures."""
    urls = [workers[n % len(workers)].ws("/ws/session/") for n in range(count)]
    with Peaks(redis, workers) as peaks:
        outcomes, opened_s = await storm_open(urls, headers={"Authorization": f"Bearer {token}"})
        replies = await rooms_join(outcomes, STORM_ROOM)
        await close_all(outcomes)
    joined = replies.count({"type": "subscribed", "channel": STORM_ROOM})
    figures = storm_figures(outcomes, opened_s, peaks)
    return {"server": STORM_SERVER, "workers": len(workers), "joined": joined, **figures}


def machine() -> dict:
    import channels
    import daphne
    import django
    import granian
    import uvicorn
    import websockets

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            "django": django.__version__,
            "channels": channels.__version__,
            "daphne": daphne.__version__,
            "uvicorn": uvicorn.__version__,
            "granian": granian.__version__,
            "websockets": websockets.__version__,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: checks the harness")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--postgres",
        default=POSTGRES,
        help="PostgreSQL server URL for a fresh database (production's choice); 'none': SQLite",
    )
    args = parser.parse_args()
    plan = SMOKE if args.smoke else FULL
    print(estimate_line(plan), file=sys.stderr, flush=True)
    # SIGTERM unwinds like Ctrl-C: every `started` block stops its servers on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        postgres = args.postgres if args.postgres != "none" and postgres_answers() else None
        database_url = database_create(postgres) if postgres else f"sqlite:///{tmp}/bench.sqlite3"
        try:
            results = run(plan, Path(tmp), database_url)
        finally:
            if postgres:
                database_drop(database_url)
    results["database"] = "PostgreSQL" if postgres else "SQLite"
    results["machine"] = machine()
    results["plan"] = dataclasses.asdict(plan)
    results["duration_s"] = round(time.monotonic() - began)
    args.out.mkdir(parents=True, exist_ok=True)
    print(report_write(results, args.out))
    return 0


if __name__ == "__main__":
    assert SECRET_KEY  # the workers run with the test stack's settings (DEBUG off)
    sys.exit(main())
