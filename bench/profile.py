"""`make profile`: flame graphs of one Switchboard worker under each benchmark load.

The harness of `make bench` (`bench/cores.py`, `bench/processes.py`): a redis-server and a
fresh database (PostgreSQL when it answers), then for each scenario a fresh worker of
`--server` (uvicorn, the best server, unless told daphne) pinned to the server's core, with the
load generator and py-spy on the client's core. Once both cores are quiet, py-spy samples the
worker (`py-spy record --pid`, 200 Hz, native frames off, idle frames off) while
`bench.loadgen` runs the load, twice: collapsed stacks, then the SVG. Writes
`docs/perf/<server>-<scenario>.svg` and `docs/perf/<server>-<scenario>-top.txt`, the hottest
functions with the load's figures on the first line. Stops what it started, by PID.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cores import CLIENT_CORE, Quiet, client_pin, pinned, quiet_wait
from bench.processes import (
    POSTGRES,
    Server,
    access_token,
    loadgen,
    postgres_answers,
    started,
    switchboard_command,
    switchboard_env,
)
from tests.system.databases import database_create, database_drop
from tests.system.stack import ROOT, RedisServer, database_migrate

SCENARIOS = {
    # name: (loadgen scenario, path, loadgen options)
    "handshakes": ("handshakes", "/ws/session/?token={token}", {"clients": 50, "session": True}),
    "session_echo": ("pingpong", "/ws/session/?token={token}", {"clients": 50, "session": True}),
    "echo": ("pingpong", "/ws/echo/", {"clients": 50}),
    # One worker holding every subscriber of the room, the publisher among them.
    "fanout": (
        "fanout",
        "/ws/session/?token={token}",
        {"clients": 100, "session": True, "channel": "bench"},
    ),
}
PROFILED_SERVERS = ("uvicorn", "daphne")  # the first: the best server, the default


def py_spy(pid: int, seconds: float, out: Path, fmt: str) -> subprocess.Popen:
    """Sample `pid` for `seconds` into `out` (`raw` collapsed stacks or a `flamegraph` SVG),
    from the client's core."""
    command = [
        str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
        "--duration", str(int(seconds)), "--rate", "200", "--format", fmt, "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(
        pinned(command, CLIENT_CORE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def hottest(collapsed: Path, *, top: int = 25) -> list[tuple[str, float]]:
    """Functions by inclusive share of samples (each counted once per stack)."""
    total = 0
    inclusive: dict[str, int] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + samples
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return [(frame, round(100 * samples / max(1, total), 1)) for frame, samples in ranked]


def profile_one(server: Server, name: str, url: str, out: Path, seconds: float) -> dict:
    """Two identical passes of scenario `name` on `server`: collapsed stacks (for the summary
    written to `<server>-<name>-top.txt`), then the SVG flame graph."""
    scenario, _, options = SCENARIOS[name]
    stem = f"{server.name}-{name}"
    raw = server.workdir / f"{stem}.collapsed"
    passes = []
    for fmt, target in (("raw", raw), ("flamegraph", out / f"{stem}.svg")):
        quiet_wait(Quiet(), f"{stem} {fmt}")
        spy = py_spy(server.pid, seconds, target, fmt)
        passes.append(loadgen(scenario, [url], seconds=seconds, cpu_pid=[server.pid], **options))
        spy.wait(timeout=seconds + 30)
    top = hottest(raw, top=60)
    (out / f"{stem}-top.txt").write_text(
        f"# {stem}: {json.dumps(passes[0])}\n# inclusive % of samples, function\n"
        + "".join(f"{share:5.1f}  {frame}\n" for frame, share in top)
    )
    return {"figures": passes, "hottest": top[:15]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=PROFILED_SERVERS, default=PROFILED_SERVERS[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=", ".join(SCENARIOS))
    args = parser.parse_args()
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="switchboard-profile-") as tmp:
        workdir = Path(tmp)
        postgres = args.postgres if args.postgres != "none" and postgres_answers() else None
        database_url = database_create(postgres) if postgres else f"sqlite:///{tmp}/p.sqlite3"
        redis = RedisServer(workdir=workdir / "redis").start()
        try:
            env = switchboard_env(workdir, database_url, redis.url)
            database_migrate(env)
            client_pin()  # this process, py-spy and the load generator: the client's core
            command = switchboard_command(args.server, env)
            with started(Server("register", command, env, workdir)) as (server,):
                token = access_token(server)
            for name in args.scenarios:
                with started(Server(args.server, command, env, workdir)) as (server,):
                    url = server.ws(SCENARIOS[name][1].format(token=token))
                    report = profile_one(server, name, url, args.out, args.seconds)
                print(json.dumps({f"{args.server}-{name}": report}, indent=1), flush=True)
        finally:
            redis.stop()
            if postgres:
                database_drop(database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
