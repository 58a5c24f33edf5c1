"""A connection storm against two real uvicorn workers on a redis-server of the test's own:
5,000 authenticated sessions open in a burst, join a room, and close at once, while two
sessions that stay keep talking. Nothing degrades (no `MaxConnectionsError`, no "channel
layer unreachable"), every open and close is in the registry, presence is empty within 5 s,
and the sessions that stay lose nothing. Prints the figures: time to open 5,000, peak Redis
connections per worker (`CLIENT LIST`, by the name each worker gives its connections) and
peak RSS per worker; `make bench` reports the same figures from the same machinery
(tests/system/storm.py)."""

import asyncio
import json
import time

import pytest

from tests.system.burst import close_all, nofile_raise, tally
from tests.system.conftest import user_register
from tests.system.stack import Worker
from tests.system.storm import Peaks, reply_to, rooms_join, storm_figures, storm_open
from tests.system.test_bursts import assert_never_degraded, spread
from tests.system.test_session_registry_system import manage
from tests.system.wsclient import frame_json, session_open

pytestmark = pytest.mark.load

STORM = 5000
ROOM = "storm"
PRESENCE_EMPTY_WITHIN = 5.0
RECORDED_WITHIN = 30.0
MESSAGES_DURING_CLOSE = 50


@pytest.fixture(autouse=True)
def many_sockets():
    nofile_raise()


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
            assert await reply_to(ws, {"type": "subscribe", "channel": ROOM}) == {
                "type": "subscribed",
                "channel": ROOM,
            }
        with Peaks(private_redis, workers) as peaks:
            urls = spread(workers, "/ws/session/", STORM)
            outcomes, opened_in = await storm_open(urls, headers=headers)
            assert tally(outcomes) == {"accepted": STORM}
            subscribed = await rooms_join(outcomes, ROOM)
            assert subscribed == [{"type": "subscribed", "channel": ROOM}] * STORM
            present = await reply_to(alice1, {"type": "presence", "channel": ROOM, "id": 1})
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
            present = await reply_to(alice1, {"type": "presence", "channel": ROOM, "id": 2})
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
    figures = storm_figures(outcomes, opened_in, peaks)
    print(
        f"\nstorm: {STORM} sessions opened in {figures['opened_s']} s over 2 workers; presence "
        f"empty {emptied_in:.1f} s after the last close; peak Redis connections per worker "
        f"{figures['peak_redis_connections']}; peak RSS per worker (KiB) "
        f"{figures['peak_rss_kib']}"
    )
    assert len(figures["peak_redis_connections"]) == 2  # each worker's carry its name
