"""What one idle authenticated session holds on the Python heap, line by line: `python -m
bench.idle_memory [SESSIONS]` (`make profile` writes its output to docs/perf/idle-memory.txt).

`config.asgi.application` in one process, as `bench.frame_cost` drives it (fresh SQLite, the
in-memory layer, no server): one session opened first (the worker's own parts start), then
SESSIONS more, each welcomed; tracemalloc compares the heap before and after them. Prints bytes
and blocks per session by the line that allocated them. What a server adds per connection (its
protocol objects, buffers, the socket) and the allocator's overhead are not in it: the
benchmark's RSS per connection (docs/BENCHMARKS.md) holds both.
"""

import asyncio
import gc
import linecache
import site
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from bench.frame_cost import Connection, setup

TOP = 30
WELCOME_WAIT_S = 30.0


Served = tuple[list[Connection], list[asyncio.Future[None]]]


async def opened(application: Any, token: str, count: int) -> Served:
    """`count` sessions served by `application`, each welcomed; and their applications."""
    connections = [Connection("/ws/session/", f"token={token}") for _ in range(count)]
    served = [asyncio.ensure_future(application(c.scope, c.receive, c.send)) for c in connections]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WELCOME_WAIT_S
    while not all('"welcome"' in c.last for c in connections):
        if loop.time() > deadline:
            raise RuntimeError("sessions not welcomed in time")
        await asyncio.sleep(0.02)
    return connections, served


def where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for prefix in (*site.getsitepackages(), f"{Path.cwd()}/", f"{sys.base_prefix}/lib/"):
        name = name.removeprefix(prefix)
    return f"{name}:{frame.lineno}  {linecache.getline(frame.filename, frame.lineno).strip()[:70]}"


async def measure(token: str, count: int) -> list[str]:
    from config.asgi import application  # once Django is set up

    first = await opened(application, token, 1)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    sessions = await opened(application, token, count)
    await asyncio.sleep(0.2)
    gc.collect()
    stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
    tracemalloc.stop()
    total = sum(s.size_diff for s in stats)
    lines = [f"# {count} idle sessions: {total / count:,.0f} bytes per session on the heap"]
    lines += ["# bytes  blocks  per session, by the line that allocated them"]
    for s in stats[:TOP]:
        lines.append(
            f"{s.size_diff / count:7.0f} {s.count_diff / count:6.1f}  {where(s.traceback[0])}"
        )
    for connections, served in (first, sessions):
        for c in connections:
            c.push({"type": "websocket.disconnect", "code": 1000})
        await asyncio.gather(*served)
    return lines


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory(prefix="switchboard-idle-") as tmp:
        token = setup(Path(tmp))
        print("\n".join(asyncio.run(measure(token, count))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
