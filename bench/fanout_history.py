"""What history costs a room's fan-out: `python -m bench.fanout_history [SUBSCRIBERS…]`.

The saturating fan-out (`bench.loadgen fanout`: one publisher, subscribers split over two
daphne workers on one Redis) to a room with history (`hist.bench`) and to one without
(`bench`): both workers pinned to core 0 (`taskset`), this process and the load generator to
core 1, fresh workers for every run, three repetitions alternating the order. Prints every
run, then median [min–max] of deliveries/s, p99 and the workers' CPU seconds.
"""

import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.run import (
    HISTORY_ROOM,
    POSTGRES,
    Server,
    access_token,
    loadgen,
    postgres_answers,
    process_tree,
    switchboard_command,
    switchboard_env,
)
from tests.system.stack import RedisServer, database_migrate

REPETITIONS = 3
SECONDS = 6.0
ROOMS = ("bench", HISTORY_ROOM)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of `pids` so far."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def one_run(env: dict[str, str], workdir: Path, name: str, room: str, subscribers: int) -> dict:
    command = ["taskset", "-c", "0", *switchboard_command("daphne", env)]
    workers = [Server(f"{name}-{i}", command, env, workdir) for i in (1, 2)]
    for worker in workers:
        worker.start()
    try:
        token = access_token(workers[0])
        urls = [w.ws(f"/ws/session/?token={token}") for w in workers]
        pids = [pid for w in workers if w.proc for pid in process_tree(w.proc.pid)]
        before = cpu_seconds(pids)
        figures = loadgen(
            "fanout", urls, clients=subscribers, seconds=SECONDS, session=True, channel=room
        )
        figures["server_cpu_s"] = round(cpu_seconds(pids) - before, 2)
    finally:
        for worker in workers:
            worker.stop()
    return figures


def spread(values: list[float]) -> str:
    return f"{statistics.median(values)} [{min(values)}–{max(values)}]"


def main() -> int:
    os.sched_setaffinity(0, {1})
    sizes = [int(arg) for arg in sys.argv[1:]] or [100, 1000]
    workdir = Path(tempfile.mkdtemp(prefix="fanout-history-"))
    redis = RedisServer(workdir=workdir / "redis").start()
    database = POSTGRES if postgres_answers() else f"sqlite:///{workdir}/db.sqlite3"
    env = switchboard_env(workdir, database, redis.url)
    database_migrate(env)
    runs: dict[tuple[str, int], list[dict]] = {}
    try:
        for repetition in range(REPETITIONS):
            order = ROOMS if repetition % 2 == 0 else ROOMS[::-1]
            for room in order:
                for subscribers in sizes:
                    name = f"r{repetition}-{room}-{subscribers}"
                    figures = one_run(env, workdir, name, room, subscribers)
                    runs.setdefault((room, subscribers), []).append(figures)
                    print(room, subscribers, figures, flush=True)
    finally:
        redis.stop()
    for (room, subscribers), figures in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lost = sum(f["lost"] for f in figures)
        rates = spread([f["deliveries_per_s"] for f in figures])
        print(
            f"{room:10} {subscribers:5} deliveries/s {rates}"
            f"  p99 ms {spread([f['p99_ms'] for f in figures])}"
            f"  worker CPU s {spread([f['server_cpu_s'] for f in figures])}  lost {lost}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
