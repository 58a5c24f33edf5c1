"""Switchboard's own work per session echo frame, in one process: no server, no network.

`config.asgi.application` (middleware, router, `SessionConsumer`) driven through its ASGI
interface by an in-memory receive and send, on a fresh SQLite database, the in-memory layer and
cache: after a session's `welcome`, N echo frames round trip one at a time (each reply hands
over the next frame, which the consumer's next receive takes without waiting). The same for
`/ws/echo/` (`EchoConsumer`), the reference: channels' own path per frame. Prints µs per frame
(wall, CPU), median [min–max] of the repetitions; then the figures as one JSON line.
"""

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench.processes import switchboard_env
from bench.summary import cell, summarize

DATA = "x" * 32
REPETITIONS = 5
Message = dict[str, Any]


class Connection:
    """One in-memory WebSocket connection: each text frame the server sends hands over the
    next client frame of `frames`, and counts toward `texts_wait`."""

    def __init__(self, path: str, query: str = "") -> None:
        self.scope = {
            "type": "websocket", "path": path, "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1")], "subprotocols": [], "client": ("127.0.0.1", 5000),
        }  # fmt: skip
        self.inbox: deque[Message] = deque([{"type": "websocket.connect"}])
        self.frames: deque[Message] = deque()
        self.wake: asyncio.Future[None] | None = None
        self.texts, self.last = 0, ""  # the last text frame the server sent
        self.goal: tuple[int, asyncio.Future[None]] | None = None

    async def receive(self) -> Message:
        while not self.inbox:
            self.wake = asyncio.get_running_loop().create_future()
            await self.wake
        return self.inbox.popleft()

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.close" and self.goal and not self.goal[1].done():
            self.goal[1].set_exception(RuntimeError(f"{self.scope['path']} closed: {message}"))
        if message["type"] != "websocket.send":
            return
        self.texts, self.last = self.texts + 1, message.get("text") or ""
        if self.frames:
            self.push(self.frames.popleft())
        if self.goal and self.texts == self.goal[0]:
            self.goal[1].set_result(None)

    def push(self, message: Message) -> None:
        self.inbox.append(message)
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def texts_wait(self, count: int, expected: str) -> None:
        """Until the server has sent `count` more text frames, the last holding `expected`."""
        self.goal = (self.texts + count, asyncio.get_running_loop().create_future())
        await asyncio.wait_for(self.goal[1], timeout=120)
        if expected not in self.last:
            raise RuntimeError(f"{self.scope['path']}: {expected!r} expected, got {self.last!r}")

    async def round_trips(self, count: int) -> dict[str, float]:
        """`count` echo frames, one at a time: µs per frame, wall and CPU."""
        texts = (json.dumps({"type": "echo", "data": DATA, "id": n}) for n in range(count))
        self.frames = deque({"type": "websocket.receive", "text": text} for text in texts)
        wall, cpu = time.perf_counter(), time.process_time()
        self.push(self.frames.popleft())
        await self.texts_wait(count, DATA)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall_us": round(wall / count * 1e6, 2), "cpu_us": round(cpu / count * 1e6, 2)}


def setup(workdir: Path) -> str:
    """Django on a fresh, migrated SQLite database without Redis; a user's access token."""
    os.environ.update(switchboard_env(workdir, f"sqlite:///{workdir}/frames.sqlite3", ""))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from accounts.models import User
    from accounts.tokens import token_pair_for_user

    user = User.objects.create_user(username="bench", email="bench@example.com")
    return token_pair_for_user(user=user)["access"]


async def measure(token: str, frames: int, repetitions: int, profile: bool) -> dict[str, Any]:
    """Both connections opened and warmed up, then `repetitions` of `frames` on each in turn."""
    from config.asgi import application  # once Django is set up

    connections = {"session": Connection("/ws/session/", f"token={token}")}
    connections["echo"] = Connection("/ws/echo/")
    served = asyncio.gather(
        *(application(c.scope, c.receive, c.send) for c in connections.values())
    )
    await connections["session"].texts_wait(1, '"welcome"')
    for connection in connections.values():
        await connection.round_trips(max(10, frames // 10))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in connections}
    for _ in range(repetitions):
        for name, connection in connections.items():
            runs[name].append(await connection.round_trips(frames))
    if profile:
        with cProfile.Profile() as profiler:
            await connections["session"].round_trips(frames)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    for connection in connections.values():
        connection.push({"type": "websocket.disconnect", "code": 1000})
    await served
    pairs = zip(runs["session"], runs["echo"], strict=True)
    runs["session_minus_echo"] = [{k: round(s[k] - e[k], 2) for k in s} for s, e in pairs]
    figures = {name: {"runs": runs[name], **summarize(runs[name])} for name in runs}
    return {"frames": frames, "repetitions": repetitions, **figures}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=10_000, help="per repetition")
    parser.add_argument("--repetitions", type=int, default=REPETITIONS)
    parser.add_argument("--profile", action="store_true", help="cProfile one more repetition")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchboard-frames-") as tmp:
        token = setup(Path(tmp))
        figures = asyncio.run(measure(token, args.frames, args.repetitions, args.profile))
    for name in ("session", "echo", "session_minus_echo"):
        wall, cpu = cell(figures[name]["wall_us"]), cell(figures[name]["cpu_us"])
        print(f"{name}: µs per frame {wall}, CPU {cpu}", file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
