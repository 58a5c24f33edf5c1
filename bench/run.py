"""`make bench`: Switchboard under daphne, uvicorn and granian beside a bare `websockets` peer,
one run.

Starts (on 127.0.0.1, free ports) the peer, a redis-server, and a daphne, a uvicorn and a
granian worker (each with deploy/servers.py's command line, logs quiet) on a fresh database;
drives each with `bench.loadgen` in its own process; records every figure, the ratio to the
peer, and the servers' memory (a granian worker is two processes: its supervisor and the
process serving, summed); then a connection storm over two uvicorn workers, driven from this
process with the storm test's machinery (`tests/system/storm.py`); writes
`docs/BENCHMARKS.md`, `docs/benchmarks.png` and `docs/benchmarks.json`. Stops everything it
started, by PID.
`--smoke` runs the same harness with tiny numbers (seconds, not minutes) into `--out`.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.report import report_write
from deploy.servers import SERVERS
from tests.system.burst import close_all, nofile_raise
from tests.system.databases import database_create, database_drop
from tests.system.stack import (
    ROOT,
    SECRET_KEY,
    RedisServer,
    base_env,
    database_migrate,
    free_port,
    port_wait,
    process_stop,
)
from tests.system.storm import Peaks, rooms_join, storm_figures, storm_open

POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-not-a-secret-0123"  # noqa: S105  (a throwaway bench user)


@dataclass(frozen=True)
class Plan:
    seconds: float
    clients: tuple[int, ...]
    handshake_concurrency: int
    idle: int
    fanout_subscribers: tuple[int, ...]
    fanout_seconds: float
    storm: int  # sessions opened in one burst


FULL = Plan(5.0, (1, 50, 500), 50, 5000, (1, 100, 1000), 6.0, 5000)
SMOKE = Plan(0.5, (1, 4), 2, 10, (1, 4), 0.5, 20)


@dataclass
class Server:
    """One server process on a free port."""

    name: str
    command: list[str]
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [arg.replace("{port}", str(self.port)) for arg in self.command]
        with open(self.workdir / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        port_wait(self.port, timeout=60, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            process_stop(self.proc, sig=signal.SIGTERM, timeout=15)
            self.proc = None

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def rss_kib(self) -> int:
        """Current resident memory of the process and its children (what the storm's
        peaks sample)."""
        return self.memory_kib()["rss_kib"]

    def memory_kib(self) -> dict[str, int]:
        """Current (VmRSS) and peak (VmHWM) resident memory of the process and its children
        (granian serves from a child process)."""
        fields = {"VmRSS": 0, "VmHWM": 0}
        for pid in process_tree(self.proc.pid):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in fields:
                    fields[key] += int(value.split()[0])
        return {"rss_kib": fields["VmRSS"], "peak_kib": fields["VmHWM"]}


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone since the listing
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def loadgen(scenario: str, urls: list[str], *, timeout: float = 300, **options) -> dict:
    """Run one scenario in its own process; its figures."""
    args = [sys.executable, "-m", "bench.loadgen", scenario]
    for url in urls:
        args += ["--url", url]
    for name, value in options.items():
        if value is True:
            args.append(f"--{name}")
        elif value is not False:
            args += [f"--{name}", str(value)]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"loadgen {scenario} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def idle_round(server: Server, url: str, count: int, *, session: bool) -> dict:
    """Open `count` connections, hold them, close them: RSS before, held and after."""
    before = server.memory_kib()["rss_kib"]
    args = [sys.executable, "-m", "bench.loadgen", "idle", "--url", url]
    args += ["--clients", str(count), "--hold", "3"] + (["--session"] if session else [])
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())["ready"]
        time.sleep(1)
        held = server.memory_kib()["rss_kib"]
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(2)
    return {"ready": ready, "before": before, "held": held, "after": server.memory_kib()["rss_kib"]}


def idle_memory(server: Server, url: str, count: int, *, session: bool) -> dict:
    """KB per idle connection (first round), and a second identical round: Python keeps
    freed memory for reuse rather than returning it, so "after" stays up; what shows a leak
    is the second round growing RSS again."""
    first = idle_round(server, url, count, session=session)
    second = idle_round(server, url, count, session=session)
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


def switchboard_env(workdir: Path, database_url: str, redis_url: str) -> dict[str, str]:
    env = base_env(database_url=database_url, log_file=workdir / "errors.log", redis_url=redis_url)
    env.update(
        # Production settings, with the abuse limits lifted for one client process that
        # opens thousands of connections and sends as fast as it can.
        WS_MESSAGES_PER_SECOND="1000000000",
        WS_MESSAGE_BURST="1000000000",
        WS_CONNECTS_PER_MINUTE="0",
        WS_MAX_SESSIONS_PER_USER="1000000",
        JWT_ACCESS_TTL="3600",
        LOG_LEVEL="WARNING",
        # The fan-out with history (`HISTORY_ROOM`) beside the same without it.
        REALTIME_NAMESPACES=json.dumps({"hist": {"history_size": 1000, "history_ttl": 300}}),
    )
    return env


def access_token(server: Server) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", trust_env=False) as client:
        client.post(
            "/api/auth/register/",
            json={"username": "bench", "email": "bench@example.com", "password": PASSWORD},
        )
        response = client.post("/api/auth/token/", json={"username": "bench", "password": PASSWORD})
    response.raise_for_status()
    return response.json()["access"]


# What each server runs with besides deploy/servers.py's command line: quiet logs (a
# line per connection would be part of what is measured).
QUIET_ARGS = {
    "daphne": (),
    "uvicorn": ("--log-level", "warning", "--no-access-log"),
    "granian": ("--log-level", "warning", "--no-access-log"),
}
SWITCHBOARD_SERVERS = tuple(QUIET_ARGS)  # in the order the tables list them


def switchboard_command(server: str, env: dict[str, str]) -> list[str]:
    """Switchboard under `server`, started as production starts it (deploy/servers.py)."""
    program, *args = SERVERS[server].argv(
        host="127.0.0.1",
        port="{port}",
        max_message_bytes=env.get("WS_MAX_MESSAGE_BYTES", "65536"),
        extra=QUIET_ARGS[server],
    )
    return [sys.executable, "-m", program, *args]


def servers_for(workdir: Path, env: dict[str, str]) -> dict[str, Server]:
    peer = Server("peer", [sys.executable, "-m", "bench.peer", "{port}", "echo"], env, workdir)
    return {"peer": peer} | {
        name: Server(name, switchboard_command(name, env), env, workdir)
        for name in SWITCHBOARD_SERVERS
    }


def run(plan: Plan, workdir: Path, database_url: str) -> dict:
    results: dict = {"rows": [], "memory": {}, "fanout": []}
    redis = RedisServer(workdir=workdir / "redis").start()
    env = switchboard_env(workdir, database_url, redis.url)
    database_migrate(env)
    servers = servers_for(workdir, env)
    try:
        for server in servers.values():
            server.start()
        token = access_token(servers["daphne"])
        session_path = f"/ws/session/?token={token}"
        for clients in plan.clients:
            for scenario, name, path, session in (
                ("echo", "peer", "/", False),
                *(("echo", name, "/ws/echo/", False) for name in SWITCHBOARD_SERVERS),
                *(("session echo", name, session_path, True) for name in SWITCHBOARD_SERVERS),
            ):
                figures = loadgen(
                    "pingpong",
                    [servers[name].ws(path)],
                    clients=clients,
                    seconds=plan.seconds,
                    session=session,
                )
                results["rows"].append(
                    {"scenario": scenario, "clients": clients, "server": name, **figures}
                )
        for scenario, name, path, session in (
            ("handshakes", "peer", "/", False),
            *(("handshakes", name, session_path, True) for name in SWITCHBOARD_SERVERS),
            # The server's own ceiling: a bare /ws/echo/ handshake (no token, no database).
            *(("echo handshakes", name, "/ws/echo/", False) for name in SWITCHBOARD_SERVERS),
        ):
            figures = loadgen(
                "handshakes",
                [servers[name].ws(path)],
                clients=plan.handshake_concurrency,
                seconds=plan.seconds,
                session=session,
            )
            results["rows"].append(
                {"scenario": scenario, "clients": plan.handshake_concurrency, "server": name}
                | figures
            )
        for name, path, session in (
            ("peer", "/", False),
            *((name, session_path, True) for name in SWITCHBOARD_SERVERS),
        ):
            results["rows"].append(
                {"scenario": "idle", "clients": plan.idle, "server": name}
                | idle_memory(servers[name], servers[name].ws(path), plan.idle, session=session)
            )
        for name, server in servers.items():
            results["memory"][name] = server.memory_kib()
    finally:
        for server in servers.values():
            server.stop()
    results["fanout"] = fanout(plan, workdir, env, redis, token)
    results["storm"] = storm(plan, workdir, env, redis, token)
    redis.stop()
    return results


HISTORY_ROOM = "hist.bench"  # in a namespace with history: offsets, one more Redis script


def fanout(plan: Plan, workdir: Path, env: dict[str, str], redis, token: str) -> list[dict]:
    """One publisher, subscribers split over two daphne workers (Redis), and the peer
    broadcaster."""
    rows = []
    workers = [
        Server(f"fanout{i}", switchboard_command("daphne", env), env, workdir) for i in (1, 2)
    ]
    broadcaster = Server(
        "broadcaster", [sys.executable, "-m", "bench.peer", "{port}", "broadcast"], env, workdir
    )
    try:
        for server in (*workers, broadcaster):
            server.start()
        for subscribers in plan.fanout_subscribers:
            urls = [w.ws(f"/ws/session/?token={token}") for w in workers]
            switchboard = loadgen(
                "fanout", urls, clients=subscribers, seconds=plan.fanout_seconds, session=True
            )
            with_history = loadgen(
                "fanout",
                urls,
                clients=subscribers,
                seconds=plan.fanout_seconds,
                session=True,
                channel=HISTORY_ROOM,
            )
            peer = loadgen(
                "fanout", [broadcaster.ws("/")], clients=subscribers, seconds=plan.fanout_seconds
            )
            # The same, published at half the rate Switchboard just sustained: its latency
            # when it is not saturated.
            half_rate = max(1.0, switchboard["messages"] / plan.fanout_seconds / 2)
            half = loadgen(
                "fanout",
                urls,
                clients=subscribers,
                seconds=plan.fanout_seconds,
                session=True,
                rate=round(half_rate, 1),
            )
            rows.append(
                {
                    "subscribers": subscribers,
                    "switchboard": switchboard,
                    "switchboard_history": with_history,
                    "peer": peer,
                    "switchboard_half_rate": {"publishes_per_s": round(half_rate, 1), **half},
                }
            )
        for server in workers:
            rows.append({"memory": server.name, **server.memory_kib()})
    finally:
        for server in (*workers, broadcaster):
            server.stop()
    return rows


# The storm test's server (tests/system/test_storms.py): daphne sheds handshakes under a
# burst of thousands (tests/system/test_bursts.py), so its time to open would say little.
STORM_SERVER = "uvicorn"
STORM_WORKERS = 2
STORM_ROOM = "storm"


def storm(plan: Plan, workdir: Path, env: dict[str, str], redis: RedisServer, token: str) -> dict:
    """`plan.storm` sessions opened in one burst over two uvicorn workers (Redis), each
    joining a room, then all closed at once, as the storm test does: the time to open, and
    each worker's peak Redis connections and RSS."""
    nofile_raise()
    workers = tuple(
        Server(f"storm{n}", switchboard_command(STORM_SERVER, env), env, workdir)
        for n in range(1, STORM_WORKERS + 1)
    )
    try:
        for server in workers:
            server.start()
        return asyncio.run(storm_run(plan.storm, workers, redis, token))
    finally:
        for server in workers:
            server.stop()


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


def postgres_answers() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


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
    started = time.monotonic()
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
    results["plan"] = plan.__dict__
    results["duration_s"] = round(time.monotonic() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    print(report_write(results, args.out))
    return 0


if __name__ == "__main__":
    assert SECRET_KEY  # the workers run with the test stack's settings (DEBUG off)
    sys.exit(main())
