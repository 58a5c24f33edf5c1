"""A connection storm against two real daphne workers on a redis-server of the test's own:
5,000 authenticated sessions open in a burst, join a room, and close at once, while two
sessions that stay keep talking. Nothing degrades (no `MaxConnectionsError`, no "channel
layer unreachable"), every open and close is in the registry, presence is empty within 5 s,
and the sessions that stay lose nothing. Prints the figures: time to open 5,000, peak Redis
connections per worker (`CLIENT LIST`, by the name each worker gives its connections) and
peak RSS per worker."""

import asyncio
import json
import time
from collections import Counter

import pytest

from tests.system.burst import burst, close_all, nofile_raise, tally
from tests.system.conftest import user_register
from tests.system.stack import RedisServer, Worker
from tests.system.test_bursts import assert_never_degraded, spread
from tests.system.test_session_registry_system import manage
from tests.system.wsclient import frame_json, session_open

pytestmark = pytest.mark.load

STORM = 5000
ROOM = "storm"
PRESENCE_EMPTY_WITHIN = 5.0
RECORDED_WITHIN = 30.0
MESSAGES_DURING_CLOSE = 50
SAMPLE_EVERY = 0.25


@pytest.fixture(autouse=True)
def many_sockets():
    nofile_raise()


class Peaks:
    """Samples, every SAMPLE_EVERY seconds while it runs, of each worker's RSS and of the
    Redis connections each worker holds; the peaks."""

    def __init__(self, redis_server: RedisServer, workers: tuple[Worker, ...]) -> None:
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


def registry_of(worker: Worker, user_id: int) -> dict:
    """The registry's rows of one user: how many, how many closed, by close code."""
    code = (
        "import json; from collections import Counter; "
        "from realtime.models import WebSocketSession; "
        f"rows = list(WebSocketSession.objects.filter(user_id={user_id})"
        ".values_list('closed_at', 'close_code')); "
        "print(json.dumps({'rows': len(rows), 'closed': sum(1 for c, _ in rows if c), "
        "'codes': dict(Counter(str(code) for _, code in rows))}))"
    )
    return json.loads(manage(worker, "shell", "-c", code).splitlines()[-1])


async def request(ws, message: dict) -> dict:
    """Send `message` and return the reply carrying its `id` (room traffic may come first)."""
    await ws.send(json.dumps(message))
    while (frame := await frame_json(ws, within=30)).get("id") != message.get("id"):
        pass
    return frame


@pytest.mark.parametrize("server", ["uvicorn"])
async def test_5000_sessions_open_in_a_burst_and_close_at_once_with_nothing_lost(
    start_worker, private_redis, server
):
    env = {"REDIS_URL": private_redis.url, "WS_MAX_SESSIONS_PER_USER": str(2 * STORM)}
    workers = tuple(start_worker(redis=False, server=server, **env) for _ in range(2))
    storm_user, alice, bob = (user_register(workers[0]) for _ in range(3))
    headers = {"Authorization": f"Bearer {storm_user['access']}"}
    async with (
        session_open(workers[0], alice["access"]) as (alice1, _),
        session_open(workers[1], bob["access"]) as (bob2, _),
    ):
        for ws in (alice1, bob2):
            assert await request(ws, {"type": "subscribe", "channel": ROOM}) == {
                "type": "subscribed",
                "channel": ROOM,
            }
        with Peaks(private_redis, workers) as peaks:
            started = time.monotonic()
            outcomes = await burst(spread(workers, "/ws/session/", STORM), headers=headers)
            opened_in = time.monotonic() - started
            assert tally(outcomes) == {"accepted": STORM}
            held = [o.ws for o in outcomes if o.ws is not None]
            subscribed = await asyncio.gather(
                *(request(ws, {"type": "subscribe", "channel": ROOM}) for ws in held)
            )
            assert subscribed == [{"type": "subscribed", "channel": ROOM}] * STORM
            present = await request(alice1, {"type": "presence", "channel": ROOM, "id": 1})
            assert {u["id"] for u in present["users"]} == {storm_user["id"], alice["id"], bob["id"]}

            # All 5,000 close at once while alice publishes to bob through the room.
            closing = asyncio.create_task(close_all(outcomes))
            for n in range(MESSAGES_DURING_CLOSE):
                await alice1.send(json.dumps({"type": "publish", "channel": ROOM, "data": n}))
            heard = []
            while len(heard) < MESSAGES_DURING_CLOSE:
                frame = await frame_json(bob2, within=30)
                if frame["type"] == "message":
                    heard.append(frame["data"])
            await closing
            closed_at = time.monotonic()

        stayers = {alice["id"], bob["id"]}
        while True:
            present = await request(alice1, {"type": "presence", "channel": ROOM, "id": 2})
            if {u["id"] for u in present["users"]} == stayers:
                break
            assert time.monotonic() - closed_at < PRESENCE_EMPTY_WITHIN, present
            await asyncio.sleep(0.2)
        emptied_in = time.monotonic() - closed_at

    assert heard == list(range(MESSAGES_DURING_CLOSE))
    deadline = time.monotonic() + RECORDED_WITHIN
    while (rows := registry_of(workers[0], storm_user["id"]))["closed"] < STORM:
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(1)
    assert rows == {"rows": STORM, "closed": STORM, "codes": {"1000": STORM}}
    assert_never_degraded(*workers)
    print(
        f"\nstorm: {STORM} sessions opened in {opened_in:.1f} s over 2 workers; presence empty "
        f"{emptied_in:.1f} s after the last close; peak Redis connections per worker "
        f"{sorted(peaks.redis_connections.values())}; peak RSS per worker (KiB) "
        f"{sorted(peaks.rss_kib.values())}"
    )
    assert len(peaks.redis_connections) == 2  # each worker's connections carry its name
