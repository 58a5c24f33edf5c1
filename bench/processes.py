"""The processes a benchmark starts: Switchboard and the peer as servers on the server's core,
one at a time and fresh for every measured run, and the load generator on the client's core.

Every server is stopped by its PID on every way out (`started`), Ctrl-C included.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.cores import CLIENT_CORE, SERVER_CORE, pinned, process_tree
from deploy.cluster import port_wait
from deploy.servers import SERVERS
from tests.system.stack import ROOT, base_env, free_port, process_stop

POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-not-a-secret-0123"  # noqa: S105  (a throwaway bench user)


@dataclass
class Server:
    """One server process on a free port, pinned to `core` (None: unpinned)."""

    name: str
    command: list[str]
    env: dict[str, str]
    workdir: Path
    core: int | None = SERVER_CORE
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [arg.replace("{port}", str(self.port)) for arg in self.command]
        if self.core is not None:
            args = pinned(args, self.core)
        with open(self.workdir / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        port_wait(self.port, timeout=60, proc=self.proc)
        return self

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds, for the process and whatever it
        started (granian's worker): the figures are taken, and uvicorn would otherwise wait
        out its whole graceful-shutdown timeout for the last sessions."""
        if self.proc is None:
            return
        below = process_tree(self.proc.pid)[1:]
        process_stop(self.proc, sig=signal.SIGTERM, timeout=grace)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

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
        for pid in process_tree(self.pid):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in fields:
                    fields[key] += int(value.split()[0])
        return {"rss_kib": fields["VmRSS"], "peak_kib": fields["VmHWM"]}


@contextlib.contextmanager
def started(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """`servers` started, and stopped again however the block ends."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def loadgen_command(scenario: str, urls: list[str], **options) -> list[str]:
    """The load generator's command line, pinned to the client's core."""
    args = [sys.executable, "-m", "bench.loadgen", scenario]
    for url in urls:
        args += ["--url", url]
    for name, value in options.items():
        name = name.replace("_", "-")
        if value is True:
            args.append(f"--{name}")
        elif isinstance(value, list | tuple):
            for item in value:
                args += [f"--{name}", str(item)]
        elif value is not False and value is not None:
            args += [f"--{name}", str(value)]
    return pinned(args, CLIENT_CORE)


def figures_run(args: list[str], what: str, *, timeout: float = 300) -> dict:
    """Run a measuring program to its end; the figures it printed last (one JSON line)."""
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def loadgen(scenario: str, urls: list[str], *, timeout: float = 300, **options) -> dict:
    """Run one scenario in its own process; its figures."""
    return figures_run(
        loadgen_command(scenario, urls, **options), f"loadgen {scenario}", timeout=timeout
    )


def frame_cost(frames: int, *, timeout: float = 300) -> dict:
    """`bench/frame_cost.py` with `frames` per repetition, pinned to the server's core (it
    plays the server); its figures."""
    args = [sys.executable, "-m", "bench.frame_cost", "--frames", str(frames)]
    return figures_run(pinned(args, SERVER_CORE), "frame cost", timeout=timeout)


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


def peer_command(mode: str) -> list[str]:
    """The bare `websockets` peer (`bench/peer.py`) in `mode`: "echo" or "broadcast"."""
    return [sys.executable, "-m", "bench.peer", "{port}", mode]


def postgres_answers() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True
