"""What history costs a room's fan-out: `python -m bench.fanout_history [SUBSCRIBERS…]`.

The saturating fan-out (`bench.loadgen fanout`: one publisher, subscribers split over two
workers of `make bench`'s fan-out server on one Redis) to a room with history (`hist.bench`)
and to one without (`bench`): both workers pinned to core 0 (`taskset`), this process and
the load generator to core 1, fresh workers for every run, three repetitions alternating the
order. Prints every run, then median [min–max] of deliveries/s, p99 and the workers' CPU %
in the window.
"""

import sys
import tempfile
from pathlib import Path

from bench.cores import Quiet, client_pin, quiet_wait
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
from bench.run import FANOUT_SERVER, HISTORY_ROOM
from bench.summary import cell, spread
from tests.system.stack import RedisServer, database_migrate

REPETITIONS = 3
SECONDS = 6.0
ROOMS = ("bench", HISTORY_ROOM)


def one_run(env: dict[str, str], workdir: Path, name: str, room: str, subscribers: int) -> dict:
    command = switchboard_command(FANOUT_SERVER, env)
    workers = [Server(f"{name}-{i}", command, env, workdir) for i in (1, 2)]
    with started(*workers):
        token = access_token(workers[0])
        urls = [w.ws(f"/ws/session/?token={token}") for w in workers]
        quiet_wait(Quiet(), name)
        return loadgen(
            "fanout",
            urls,
            clients=subscribers,
            seconds=SECONDS,
            session=True,
            channel=room,
            cpu_pid=[w.pid for w in workers],
        )


def main() -> int:
    sizes = [int(arg) for arg in sys.argv[1:]] or [100, 1000]
    workdir = Path(tempfile.mkdtemp(prefix="fanout-history-"))
    redis = RedisServer(workdir=workdir / "redis").start()
    database = POSTGRES if postgres_answers() else f"sqlite:///{workdir}/db.sqlite3"
    env = switchboard_env(workdir, database, redis.url)
    database_migrate(env)
    client_pin()
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
        rates = cell(spread([f["deliveries_per_s"] for f in figures]))
        print(
            f"{room:10} {subscribers:5} deliveries/s {rates}"
            f"  p99 ms {cell(spread([f['p99_ms'] for f in figures]))}"
            f"  worker CPU % {cell(spread([f['server_cpu_pct'] for f in figures]))}  lost {lost}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
