"""A connection storm, for tests/system/test_storms.py and `make bench` (bench/run.py): many
authenticated sessions opened in one burst (`tests.system.burst`), each joining a room, all
closed at once, while `Peaks` samples each worker's RSS and the Redis connections each
holds. `storm_figures` says what issue 15 asks of it: the time to open, the peak Redis
connections per worker, the peak RSS per worker."""

import asyncio
import json
import time
from collections import Counter
from typing import Protocol

from websockets.asyncio.client import ClientConnection

from tests.system.burst import Outcome, burst, tally
from tests.system.stack import RedisServer
from tests.system.wsclient import frame_json

SAMPLE_EVERY = 0.25  # seconds between two samples of the peaks


class Sampled(Protocol):
    """A worker process whose memory the peaks sample (a system test's Worker, a bench
    Server)."""

    name: str

    def rss_kib(self) -> int: ...


class Peaks:
    """Samples, every SAMPLE_EVERY seconds while it runs, of each worker's RSS and of the
    Redis connections each worker holds (`CLIENT LIST`, by the name each worker gives its
    connections, `switchboard:<worker id>`); the peaks."""

    def __init__(self, redis_server: RedisServer, workers: tuple[Sampled, ...]) -> None:
        self.redis_server, self.workers = redis_server, workers
        self.rss_kib: Counter[str] = Counter()
        self.redis_connections: Counter[str] = Counter()
        self._task: asyncio.Task | None = None

    def _sample(self) -> None:
        for worker in self.workers:
            self.rss_kib[worker.name] = max(self.rss_kib[worker.name], worker.rss_kib())
        client = self.redis_server.client()
        try:
            names = Counter(c.get("name", "") for c in client.client_list())
        finally:
            client.close()
        for name, count in names.items():
            if name.startswith("switchboard:"):
                self.redis_connections[name] = max(self.redis_connections[name], count)

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self._sample)
            await asyncio.sleep(SAMPLE_EVERY)

    def __enter__(self) -> "Peaks":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self._sample()  # a last one: a storm shorter than SAMPLE_EVERY still has its peaks


async def reply_to(ws: ClientConnection, message: dict) -> dict:
    """Send `message` and return the reply carrying its `id` (room traffic may come first)."""
    await ws.send(json.dumps(message))
    while (frame := await frame_json(ws, within=30)).get("id") != message.get("id"):
        pass
    return frame


async def storm_open(urls: list[str], *, headers: dict) -> tuple[list[Outcome], float]:
    """One session per URL, in one burst: the outcomes (the accepted ones held open) and the
    seconds the burst took."""
    started = time.monotonic()
    outcomes = await burst(urls, headers=headers)
    return outcomes, time.monotonic() - started


async def rooms_join(outcomes: list[Outcome], room: str) -> list[dict]:
    """Subscribe every held session to `room` at once; the replies."""
    held = [o.ws for o in outcomes if o.ws is not None]
    return list(
        await asyncio.gather(*(reply_to(ws, {"type": "subscribe", "channel": room}) for ws in held))
    )


def storm_figures(outcomes: list[Outcome], opened_s: float, peaks: Peaks) -> dict:
    """What a storm measured: how many sessions were tried and let in, the seconds to open
    them, and each worker's peak Redis connections and RSS (sorted, workers unnamed)."""
    accepted = tally(outcomes)["accepted"]
    return {
        "sessions": len(outcomes),
        "accepted": accepted,
        "opened_s": round(opened_s, 2),
        "sessions_per_s": round(accepted / opened_s, 1) if opened_s else 0.0,
        "peak_redis_connections": sorted(peaks.redis_connections.values()),
        "peak_rss_kib": sorted(peaks.rss_kib.values()),
    }
