"""`make profile`: flame graphs of one daphne worker under each benchmark load.

Starts (127.0.0.1, free ports) a redis-server and one daphne worker on a fresh database (the
same settings and cores as `make bench`), then for each scenario runs `bench.loadgen` while
py-spy samples the worker (`py-spy record --pid`, native frames off, idle frames off), and writes
`docs/perf/<scenario>.svg` plus `docs/perf/<scenario>-top.txt`, the hottest functions. Stops what it
started, by PID.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.processes import (
    POSTGRES,
    Server,
    access_token,
    loadgen,
    postgres_answers,
    switchboard_command,
    switchboard_env,
)
from tests.system.databases import database_create, database_drop
from tests.system.stack import ROOT, RedisServer, database_migrate

SCENARIOS = {
    # name: (loadgen scenario, path kind, loadgen options)
    "handshakes": ("handshakes", "session", {"clients": 50, "session": True}),
    "session_echo": ("pingpong", "session", {"clients": 50, "session": True}),
    "echo": ("pingpong", "echo", {"clients": 50}),
}


def py_spy(pid: int, seconds: float, out: Path, fmt: str) -> subprocess.Popen:
    """Sample `pid` for `seconds` into `out`: `raw` collapsed stacks or a `flamegraph` SVG."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            fmt,
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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


def profile_one(
    server: Server, name: str, url: str, out: Path, seconds: float, workdir: Path
) -> dict:
    """Two identical passes of one scenario: collapsed stacks (for the summary written to
    `<name>-top.txt`), then the SVG flame graph."""
    scenario, _, options = SCENARIOS[name]
    passes = []
    raw = workdir / f"{name}.collapsed"
    for fmt, target in (("raw", raw), ("flamegraph", out / f"{name}.svg")):
        spy = py_spy(server.pid, seconds, target, fmt)
        passes.append(loadgen(scenario, [url], seconds=seconds, **options))
        spy.wait(timeout=seconds + 30)
    top = hottest(raw, top=60)
    (out / f"{name}-top.txt").write_text(
        f"# {name}: {json.dumps(passes[0])}\n# inclusive % of samples, function\n"
        + "".join(f"{share:5.1f}  {frame}\n" for frame, share in top)
    )
    return {"figures": passes, "hottest": top[:15]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="switchboard-profile-") as tmp:
        workdir = Path(tmp)
        postgres = args.postgres if args.postgres != "none" and postgres_answers() else None
        database_url = database_create(postgres) if postgres else f"sqlite:///{tmp}/p.sqlite3"
        redis = RedisServer(workdir=workdir / "redis").start()
        server = None
        try:
            env = switchboard_env(workdir, database_url, redis.url)
            database_migrate(env)
            server = Server("daphne", switchboard_command("daphne", env), env, workdir)
            server.start()
            token = access_token(server)
            paths = {"session": f"/ws/session/?token={token}", "echo": "/ws/echo/"}
            report = {}
            for name in args.scenarios:
                url = server.ws(paths[SCENARIOS[name][1]])
                report[name] = profile_one(server, name, url, args.out, args.seconds, workdir)
                print(json.dumps({name: report[name]}, indent=1), flush=True)
        finally:
            if server is not None:
                server.stop()
            redis.stop()
            if postgres:
                database_drop(database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
