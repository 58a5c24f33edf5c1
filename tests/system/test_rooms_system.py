"""Rooms across real daphne workers sharing a real Redis: delivery in order, presence on every
worker, a SIGKILLed worker forgotten, and a Redis restart survived."""

import asyncio
import json
import re
import signal
import time

import pytest
from websockets.asyncio.client import ClientConnection

from tests.system.conftest import user_register
from tests.system.stack import Worker, base_env
from tests.system.wsclient import frame_json, session_open, until_closed

# The default 20 messages/s would throttle a publisher sending 1000; presence forgets a
# silent worker after 3 s instead of 30.
ROOM_ENV = {"WS_MESSAGES_PER_SECOND": "2000", "WS_MESSAGE_BURST": "2000", "WS_PRESENCE_TTL": "3"}
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
UNAVAILABLE = {
    "type": "error",
    "code": "unavailable",
    "message": "Temporarily unavailable; try again later",
}


@pytest.fixture(scope="module")
def two_workers(start_module_worker) -> tuple[Worker, Worker]:
    return start_module_worker(**ROOM_ENV), start_module_worker(**ROOM_ENV)


async def request(ws: ClientConnection, message: dict, within: float = 10) -> dict:
    """Send one message and read the next frame."""
    await ws.send(json.dumps(message))
    return await frame_json(ws, within)


async def subscribe(ws: ClientConnection, channel: str) -> None:
    assert await request(ws, {"type": "subscribe", "channel": channel}) == {
        "type": "subscribed",
        "channel": channel,
    }


def who(user: dict) -> dict:
    return {"id": user["id"], "username": user["username"]}


def without_ts(frame: dict) -> dict:
    """A message frame minus its `ts`, once `ts` is checked to be ISO 8601 UTC."""
    assert ISO_UTC.match(frame["ts"]), frame
    return {key: value for key, value in frame.items() if key != "ts"}


async def test_a_subscriber_on_worker_1_receives_1000_messages_from_worker_2_in_order(
    two_workers,
):
    worker1, worker2 = two_workers
    alice, bob = user_register(worker1), user_register(worker2)
    room, window = "ordered-1000", 50

    async with (
        session_open(worker1, alice["access"]) as (subscriber, _),
        session_open(worker2, bob["access"]) as (publisher, _),
        asyncio.timeout(60),
    ):
        await subscribe(subscriber, room)
        replies, messages = [], []
        # Pipelined `window` at a time: at most that many are in flight, well under the
        # layer's per-channel capacity (100), past which channels_redis drops silently.
        for first in range(0, 1000, window):
            batch = range(first, first + window)
            for n in batch:
                message = {"type": "publish", "channel": room, "data": {"n": n}, "id": n}
                await publisher.send(json.dumps(message))
            replies += [await frame_json(publisher) for _ in batch]
            messages += [await frame_json(subscriber) for _ in batch]

        assert replies == [{"type": "published", "channel": room, "id": n} for n in range(1000)]
        assert [without_ts(m) for m in messages] == [
            {"type": "message", "channel": room, "data": {"n": n}, "from": who(bob)}
            for n in range(1000)
        ]


async def test_presence_lists_the_users_of_both_workers_on_both_workers(two_workers):
    worker1, worker2 = two_workers
    alice, bob = user_register(worker1), user_register(worker2)
    room = "presence-both"

    async with (
        session_open(worker1, alice["access"]) as (alice_1, _),
        session_open(worker2, alice["access"]) as (alice_2, _),
        session_open(worker2, bob["access"]) as (bob_2, _),
    ):
        for ws in (bob_2, alice_1, alice_2):
            await subscribe(ws, room)

        on_1 = await request(alice_1, {"type": "presence", "channel": room, "id": 1})
        on_2 = await request(bob_2, {"type": "presence", "channel": room, "id": 2})

        users = [who(alice), who(bob)]  # distinct, sorted by id (alice registered first)
        assert on_1 == {"type": "presence", "channel": room, "users": users, "id": 1}
        assert on_2 == {"type": "presence", "channel": room, "users": users, "id": 2}

        # A clean close: bob leaves presence once his worker has run its disconnect, which
        # happens after the close handshake the client waits for.
        await bob_2.close()
        alone = {"type": "presence", "channel": room, "users": [who(alice)]}
        closed = time.monotonic()
        while (after := await request(alice_1, {"type": "presence", "channel": room})) != alone:
            assert after == {"type": "presence", "channel": room, "users": users}, after
            assert time.monotonic() - closed < 2, "bob is still present after closing"
            await asyncio.sleep(0.05)


async def test_a_worker_killed_with_sigkill_drops_out_of_presence_within_the_ttl(
    two_workers, start_worker
):
    worker1, _ = two_workers
    doomed = start_worker(**ROOM_ENV)
    alice, bob = user_register(worker1), user_register(worker1)
    room = "presence-kill"

    async with (
        session_open(worker1, alice["access"]) as (watcher, _),
        session_open(doomed, bob["access"]) as (victim, _),
    ):
        await subscribe(watcher, room)
        await subscribe(victim, room)
        both = await request(watcher, {"type": "presence", "channel": room})
        assert both == {"type": "presence", "channel": room, "users": [who(alice), who(bob)]}

        doomed.stop(signal.SIGKILL)
        killed = time.monotonic()
        closed = await until_closed(victim, within=5)
        assert (closed.frames, closed.code, closed.rcvd) == ([], 1006, None)  # no close frame

        while True:
            reply = await request(watcher, {"type": "presence", "channel": room})
            if reply["users"] == [who(alice)]:
                break
            assert reply == both, reply
            assert time.monotonic() - killed < 60, "the killed worker is still present"
            await asyncio.sleep(0.25)
        gone_after = time.monotonic() - killed

        # Its heartbeat lived at most WS_PRESENCE_TTL (3 s) past the kill.
        assert gone_after < 3 + 2, gone_after
        assert reply == {"type": "presence", "channel": room, "users": [who(alice)]}


# -- a Redis restart ------------------------------------------------------------------------


@pytest.fixture
def private_workers(tmp_path, database_url, private_redis):
    """Start workers on the private Redis: `start(name)`; all stopped at teardown."""
    started: list[Worker] = []

    def start(name: str) -> Worker:
        workdir = tmp_path / name
        env = base_env(
            database_url=database_url,
            log_file=workdir / "errors.log",
            redis_url=private_redis.url,
        )
        env.update(ROOM_ENV)
        worker = Worker(env=env, workdir=workdir, name=name)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


async def test_rooms_answer_unavailable_during_a_redis_outage_and_work_again_after_it(
    private_redis, private_workers
):
    worker1, worker2 = private_workers("rooms-redis-w1"), private_workers("rooms-redis-w2")
    alice, bob = user_register(worker1), user_register(worker2)
    room = "outage"

    async with (
        session_open(worker1, alice["access"]) as (subscriber, _),
        session_open(worker2, bob["access"]) as (publisher, _),
    ):
        await subscribe(subscriber, room)
        before = {"type": "publish", "channel": room, "data": "before"}
        assert await request(publisher, before) == {"type": "published", "channel": room}
        assert without_ts(await frame_json(subscriber)) == {
            "type": "message",
            "channel": room,
            "data": "before",
            "from": who(bob),
        }

        private_redis.stop()

        # Redis is down: every room request answers unavailable with its id; sessions stay.
        down = [
            (subscriber, {"type": "subscribe", "channel": "other", "id": "s"}),
            (publisher, {"type": "publish", "channel": room, "data": "lost", "id": "p"}),
            (publisher, {"type": "presence", "channel": room, "id": "q"}),
        ]
        for ws, message in down:
            assert await request(ws, message) == {**UNAVAILABLE, "id": message["id"]}
        for ws in (subscriber, publisher):
            assert await request(ws, {"type": "ping", "id": "up"}) == {"type": "pong", "id": "up"}

        private_redis.start()  # same port, empty: every group and presence entry is gone
        restarted = time.monotonic()

        # Publish until the subscriber (who subscribed before the outage) hears one.
        published: list[int] = []
        first = None
        for n in range(1, 41):
            assert time.monotonic() - restarted < 10, "no message reached the subscriber"
            message = {"type": "publish", "channel": room, "data": {"after": n}, "id": n}
            reply = await request(publisher, message)
            assert reply in (
                {"type": "published", "channel": room, "id": n},
                {**UNAVAILABLE, "id": n},
            )
            if reply["type"] == "published":
                published.append(n)
            try:
                first = await frame_json(subscriber, 0.25)
                break
            except TimeoutError:
                continue
        recovered_after = time.monotonic() - restarted
        assert first is not None
        assert recovered_after < 10, recovered_after
        heard = without_ts(first)
        assert heard["data"]["after"] in published
        assert heard == {
            "type": "message",
            "channel": room,
            "data": heard["data"],
            "from": who(bob),
        }

        # A marker published now arrives after whatever was still in flight.
        final = {"type": "publish", "channel": room, "data": "final", "id": "f"}
        assert await request(publisher, final) == {"type": "published", "channel": room, "id": "f"}
        late = []
        async with asyncio.timeout(5):
            while (frame := await frame_json(subscriber)).get("data") != "final":
                late.append(frame["data"]["after"])
        # Once one arrived, every later one does, in order, once: nothing is lost any more.
        assert late == [n for n in published if n > heard["data"]["after"]], (late, published)

        # The rejoin re-entered the subscriber into presence on the empty Redis.
        assert await request(publisher, {"type": "presence", "channel": room}) == {
            "type": "presence",
            "channel": room,
            "users": [who(alice)],
        }
        # And a subscription made after the outage works.
        await subscribe(subscriber, "other")

    assert "channel layer reachable again" in worker1.log_text()
