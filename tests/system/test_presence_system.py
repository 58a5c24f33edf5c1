"""Presence of a worker that stalled past WS_PRESENCE_TTL (SIGSTOP) and ran again: two real
daphne workers and a real Redis; and the presence store's own repair, on a real Redis."""

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis

from realtime.cluster.workers import WORKER_ID, WorkerHeartbeat, worker_key
from realtime.rooms.presence import RedisPresence, marker_key
from tests.system.conftest import user_register
from tests.system.test_rooms_system import ROOM_ENV, request, subscribe, who
from tests.system.wsclient import frame_json, session_open

TTL = int(ROOM_ENV["WS_PRESENCE_TTL"])  # 3 s


async def presence_of(ws, room: str) -> list[dict]:
    reply = await request(ws, {"type": "presence", "channel": room})
    assert reply["type"] == "presence", reply
    return reply["users"]


async def test_a_worker_stalled_past_the_presence_ttl_is_present_again_once_it_runs(
    start_worker,
):
    worker1, worker2 = start_worker(**ROOM_ENV), start_worker(**ROOM_ENV)
    alice, bob = user_register(worker1), user_register(worker2)
    room = "presence-stalled"
    both = [who(alice), who(bob)]  # by id: alice registered first

    async with (
        session_open(worker1, alice["access"]) as (alice_ws, _),
        session_open(worker2, bob["access"]) as (bob_ws, _),
    ):
        await subscribe(alice_ws, room)
        await subscribe(bob_ws, room)
        assert await presence_of(bob_ws, room) == both

        os.kill(worker1.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(TTL + 2)  # worker 1's heartbeat has lapsed
            # Worker 2 takes worker 1 for dead and deletes its entries.
            assert await presence_of(bob_ws, room) == [who(bob)]
        finally:
            os.kill(worker1.proc.pid, signal.SIGCONT)
        resumed = time.monotonic()

        while (now := await presence_of(bob_ws, room)) != both:
            assert now == [who(bob)], now
            assert time.monotonic() - resumed < 2 * TTL, f"alice still missing: {now}"
            await asyncio.sleep(0.1)
        back_after = time.monotonic() - resumed

        # Alice's session carried on throughout: room messages reach her, her pings answer.
        message = {"type": "publish", "channel": room, "data": "after", "id": "p"}
        assert await request(bob_ws, message) == {"type": "published", "channel": room, "id": "p"}
        heard = await frame_json(alice_ws)
        assert (heard["type"], heard["data"], heard["from"]) == ("message", "after", who(bob))
        assert await request(alice_ws, {"type": "ping", "id": "alive"}) == {
            "type": "pong",
            "id": "alive",
        }
        assert await presence_of(alice_ws, room) == both
    print(f"alice present again {back_after:.2f} s after SIGCONT")


# -- the store itself, in this process, on a Redis of the test's own -----------------------


@pytest.fixture
async def store(private_redis, settings) -> AsyncIterator[RedisPresence]:
    settings.REDIS_URL = private_redis.url  # the Redis client factory's (the test's hub's)
    presence = RedisPresence(WorkerHeartbeat())
    yield presence
    for task in [presence.workers._task, *presence._watchers.values()]:
        if task is not None:
            task.cancel()
    await presence.workers.client().aclose()


def room_hash(server, room: str) -> dict[str, str]:
    client = redis.Redis(port=server.port, socket_timeout=2, decode_responses=True)
    try:
        return client.hgetall(f"switchboard:presence:{room}")
    finally:
        client.close()


def worker_looks_dead(server) -> None:
    """Drop this process's heartbeat key, as its lapse would."""
    client = redis.Redis(port=server.port, socket_timeout=2)
    try:
        client.delete(worker_key(WORKER_ID))
    finally:
        client.close()


async def test_entries_deleted_by_a_query_that_took_the_worker_for_dead_are_written_again(
    store, private_redis, caplog
):
    caplog.set_level(logging.WARNING, logger="switchboard.realtime")
    await store.add("room-a", "conn1", (7, "alice"))
    await store.add("room-b", "conn1", (7, "alice"))
    await store.add("room-b", "conn2", (8, "bob"))
    assert await store.entries_check() == 3  # the first marker: nothing was lost
    assert await store.entries_check() == 0  # renewed

    worker_looks_dead(private_redis)
    assert await store.users("room-a") == []  # deleted, and the marker with them
    assert await store.users("room-b") == []
    assert room_hash(private_redis, "room-b") == {}

    assert await store.entries_check() == 3
    assert await store.users("room-a") == [(7, "alice")]
    assert await store.users("room-b") == [(7, "alice"), (8, "bob")]
    assert room_hash(private_redis, "room-b") == {
        f"{WORKER_ID}|conn1": '[7, "alice"]',
        f"{WORKER_ID}|conn2": '[8, "bob"]',
    }
    assert [r.getMessage() for r in caplog.records if r.name == "switchboard.realtime"] == [
        "presence: this worker's entries were deleted (it looked dead, or Redis lost them); "
        "3 written again"
    ]


async def test_an_entry_removed_before_the_repair_is_not_written_again(store, private_redis):
    await store.add("room-a", "conn1", (7, "alice"))
    await store.add("room-a", "conn2", (8, "bob"))
    await store.entries_check()
    await store.remove("room-a", "conn2", (8, "bob"))
    worker_looks_dead(private_redis)
    assert await store.users("room-a") == []

    assert await store.entries_check() == 1
    assert room_hash(private_redis, "room-a") == {f"{WORKER_ID}|conn1": '[7, "alice"]'}


async def test_the_marker_of_a_worker_found_dead_is_deleted_with_its_entries(store, private_redis):
    await store.add("room-a", "conn1", (7, "alice"))
    await store.entries_check()
    client = redis.Redis(port=private_redis.port, socket_timeout=2)
    try:
        assert client.ttl(marker_key(WORKER_ID)) > 0
        worker_looks_dead(private_redis)
        await store.users("room-a")
        assert client.exists(marker_key(WORKER_ID)) == 0
    finally:
        client.close()
