"""Room history and recovery across real daphne workers and a real Redis: a subscriber back on
either worker gets what it missed, in order, then live messages; 50 subscribers recover while
a publisher keeps publishing, with no gap and no duplicate; a trimmed or expired history and
a Redis restart answer `recovered: false` (the restart with a new epoch); join and leave
across workers, a SIGKILLed worker's users leaving within WS_PRESENCE_TTL and a reap pass.
Run once (`load`): a few hundred connections and two Redis restarts."""

import asyncio
import json
import signal
import time

import pytest
from websockets.asyncio.client import ClientConnection

from tests.system.conftest import user_register
from tests.system.stack import Worker, base_env, process_stop
from tests.system.test_rooms_system import ROOM_ENV, UNAVAILABLE, request, who, without_ts
from tests.system.wsclient import frame_json, session_open

pytestmark = pytest.mark.load

NAMESPACES = {
    "log": {"history_size": 1000, "history_ttl": 300},
    "chat": {"history_size": 10, "history_ttl": 300, "join_leave": True},
    "short": {"history_size": 3, "history_ttl": 2},
    "big": {"history_size": 2000, "history_ttl": 300},
}
ENV = {
    **ROOM_ENV,
    "REALTIME_NAMESPACES": json.dumps(NAMESPACES),
    "WS_CONNECTS_PER_MINUTE": "0",
    "WS_MAX_SESSIONS_PER_USER": "100",
}
TTL = int(ROOM_ENV["WS_PRESENCE_TTL"])


@pytest.fixture(scope="module")
def two_workers(start_module_worker) -> tuple[Worker, Worker]:
    return start_module_worker(**ENV), start_module_worker(**ENV)


async def subscribed(ws: ClientConnection, channel: str, **fields) -> dict:
    reply = await request(ws, {"type": "subscribe", "channel": channel, **fields})
    assert reply["type"] == "subscribed", reply
    return reply


async def publish(ws: ClientConnection, channel: str, data) -> dict:
    """Publish from a subscribed session: its `published`, then its own message."""
    reply = await request(ws, {"type": "publish", "channel": channel, "data": data})
    assert reply["type"] == "published", reply
    own = await frame_json(ws)
    assert (own["type"], own["data"], own["offset"]) == ("message", data, reply["offset"]), own
    return reply


async def messages(ws: ClientConnection, count: int) -> list[dict]:
    return [without_ts(await frame_json(ws)) for _ in range(count)]


def message(channel: str, data, offset: int, epoch: str, user: dict) -> dict:
    frame = {"type": "message", "channel": channel, "data": data, "from": who(user)}
    return {**frame, "offset": offset, "epoch": epoch}


@pytest.mark.parametrize("back_on", [0, 1], ids=["same-worker", "other-worker"])
async def test_a_subscriber_back_on_either_worker_gets_the_five_it_missed_then_live_ones(
    two_workers, back_on
):
    worker1, worker2 = two_workers
    alice, bob = user_register(worker1), user_register(worker2)
    room = f"log.missed-{back_on}"

    async with session_open(worker2, bob["access"]) as (publisher, _):
        async with session_open(worker1, alice["access"]) as (subscriber, _):
            first = await subscribed(subscriber, room)
            epoch = first["epoch"]
            await subscribed(publisher, room)  # "subscribers" publish: bob subscribes too
            await publish(publisher, room, "before")
            seen = await frame_json(subscriber)
        # Alice is gone (a network blip); five are published meanwhile, through worker 2.
        for n in range(1, 6):
            await publish(publisher, room, {"n": n})
        async with session_open(two_workers[back_on], alice["access"]) as (subscriber, _):
            since = {"offset": seen["offset"], "epoch": seen["epoch"]}
            reply = await subscribed(subscriber, room, since=since)
            missed = await messages(subscriber, 5)
            await publish(publisher, room, "live")
            live = await messages(subscriber, 1)

    assert first == {"type": "subscribed", "channel": room, "offset": 0, "epoch": epoch}
    assert (seen["offset"], seen["epoch"]) == (1, epoch)
    assert reply == {
        "type": "subscribed",
        "channel": room,
        "recovered": True,
        "offset": 6,
        "epoch": epoch,
    }
    assert missed == [message(room, {"n": n}, n + 1, epoch, bob) for n in range(1, 6)]
    assert live == [message(room, "live", 7, epoch, bob)]


async def test_50_subscribers_recover_while_a_publisher_keeps_publishing_with_no_gap_or_duplicate(
    two_workers,
):
    worker1, worker2 = two_workers
    publisher_user = user_register(worker2)
    readers = [user_register(worker) for worker in (worker1, worker2)]
    room, total = "log.handover", 400

    async def reader_position(index: int) -> dict:
        worker = two_workers[index % 2]
        async with session_open(worker, readers[index % 2]["access"]) as (ws, _):
            return await subscribed(ws, room)

    async def recover(index: int, since: dict, final: asyncio.Future) -> list[int]:
        """Back on the other worker with `since`: every offset until the last one."""
        worker = two_workers[(index + 1) % 2]
        async with session_open(worker, readers[index % 2]["access"]) as (ws, _):
            reply = await subscribed(ws, room, since=since)
            assert reply["recovered"] is True, reply
            offsets = []
            while not (final.done() and offsets and offsets[-1] >= final.result()):
                try:
                    frame = await frame_json(ws, 0.5)
                except TimeoutError:
                    continue
                assert frame["type"] == "message" and frame["epoch"] == since["epoch"], frame
                offsets.append(frame["offset"])
            return offsets

    async with (
        session_open(worker2, publisher_user["access"]) as (publisher, _),
        asyncio.timeout(120),
    ):
        await subscribed(publisher, room)
        await publish(publisher, room, "start")  # offset 1: everyone's position
        positions = await asyncio.gather(*(reader_position(i) for i in range(50)))
        assert {(p["offset"], p["epoch"]) for p in positions} == {(1, positions[0]["epoch"])}
        final: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def publish_all() -> None:
            for n in range(total):
                reply = await request(publisher, {"type": "publish", "channel": room, "data": n})
                assert reply["type"] == "published", reply
                while (await frame_json(publisher))["type"] != "message":
                    pass  # its own message (the publisher is subscribed)
                await asyncio.sleep(0.002)
            final.set_result(reply["offset"])

        publishing = asyncio.create_task(publish_all())
        await asyncio.sleep(0.3)  # the hand-overs happen while messages keep coming
        since = {"offset": 1, "epoch": positions[0]["epoch"]}
        received = await asyncio.gather(*(recover(i, since, final) for i in range(50)))
        await publishing

    last = final.result()
    assert last == total + 1
    for offsets in received:
        assert offsets == list(range(2, last + 1))  # each offset once, in order, none missing


async def test_a_replay_larger_than_the_send_backlog_reaches_the_client_whole(two_workers):
    worker1, worker2 = two_workers
    alice, bob = user_register(worker1), user_register(worker2)
    room, count, data = "big.replay", 1500, "x" * 1000  # 1.5 MB: over WS_MAX_SEND_BACKLOG

    async with session_open(worker2, bob["access"]) as (publisher, _):
        epoch = (await subscribed(publisher, room))["epoch"]
        for _ in range(count):
            await publisher.send(json.dumps({"type": "publish", "channel": room, "data": data}))
        for _ in range(2 * count):  # its `published` and its own message, each
            await frame_json(publisher)
    async with session_open(worker1, alice["access"]) as (reader, _):
        reply = await subscribed(reader, room, since={"offset": 0, "epoch": epoch})
        offsets = [(await frame_json(reader))["offset"] for _ in range(count)]
        history = await request(reader, {"type": "history", "channel": room, "limit": count})

    assert reply["recovered"] is True
    assert offsets == list(range(1, count + 1))
    kept = [m["offset"] for m in history["messages"]]
    assert kept == list(range(count - len(kept) + 1, count + 1))  # the newest, in order
    assert 0 < len(kept) < 64  # the newest that fit in one frame (WS_MAX_MESSAGE_BYTES 64 KB)


@pytest.fixture
def private_workers(tmp_path, database_url, private_redis):
    """Two workers on the test's own Redis (it is restarted)."""
    started: list[Worker] = []
    for name in ("history-w1", "history-w2"):
        workdir = tmp_path / name
        env = base_env(
            database_url=database_url, log_file=workdir / "errors.log", redis_url=private_redis.url
        )
        env.update(ENV)
        started.append(Worker(env=env, workdir=workdir, name=name).start())
    yield started
    for worker in started:
        worker.stop()


async def test_a_trimmed_history_an_expired_one_and_a_redis_restart_answer_not_recovered(
    private_redis, private_workers
):
    worker1, worker2 = private_workers
    alice, bob = user_register(worker1), user_register(worker2)

    async with (
        session_open(worker2, bob["access"]) as (publisher, _),
        session_open(worker1, alice["access"]) as (reader, _),
    ):
        # Trimmed: history_size 3 of 5 published; offset 1 is not there any more.
        epoch = (await subscribed(publisher, "short.trim"))["epoch"]
        for n in range(5):
            await publish(publisher, "short.trim", n)
        trimmed = await subscribed(reader, "short.trim", since={"offset": 1, "epoch": epoch})
        nothing_replayed = await _quiet(reader)
        # Expired: history_ttl 2 s; the room keeps its epoch and offset, not its messages.
        ttl_epoch = (await subscribed(publisher, "short.ttl"))["epoch"]
        await publish(publisher, "short.ttl", "old")
        await asyncio.sleep(3)
        expired = await subscribed(reader, "short.ttl", since={"offset": 0, "epoch": ttl_epoch})

        # A Redis restart: stored publications fail while it is down, never dropped silently.
        room = "log.restart"
        old_epoch = (await subscribed(publisher, room))["epoch"]
        await publish(publisher, room, "before")
        private_redis.stop()
        down = await request(publisher, {"type": "publish", "channel": room, "data": "x", "id": 1})
        private_redis.start()  # same port, empty: the history is gone
        restarted = time.monotonic()
        while True:  # once Redis is back, publications are stored under a new epoch
            reply = await request(publisher, {"type": "publish", "channel": room, "data": "new"})
            if reply["type"] == "published":
                break
            assert reply == UNAVAILABLE, reply
            assert time.monotonic() - restarted < 15, "publishing did not come back"
            await asyncio.sleep(0.2)
        # Until the workers have put their channels back in the room's group (Redis forgot
        # it), live delivery misses some; the first that arrives brings the missed ones from
        # history before it: the publisher hears every offset of the new epoch, in order.
        last, heard = reply["offset"], []
        while not heard or heard[-1] < last:
            try:
                frame = await frame_json(publisher, 0.3)
            except TimeoutError:
                assert time.monotonic() - restarted < 20, f"nothing heard after {heard}"
                await publisher.send(json.dumps({"type": "publish", "channel": room, "data": 0}))
                continue
            if frame["type"] == "message":
                heard.append(frame["offset"])
            elif frame["type"] == "published":
                last = frame["offset"]
        after_restart = await subscribed(reader, room, since={"offset": 1, "epoch": old_epoch})

    assert trimmed == {
        "type": "subscribed",
        "channel": "short.trim",
        "recovered": False,
        "offset": 5,
        "epoch": epoch,
    }
    assert nothing_replayed
    assert expired == {
        "type": "subscribed",
        "channel": "short.ttl",
        "recovered": False,
        "offset": 1,
        "epoch": ttl_epoch,
    }
    assert down == {**UNAVAILABLE, "id": 1}
    assert reply["epoch"] != old_epoch
    assert heard == list(range(1, last + 1))
    assert after_restart == {
        "type": "subscribed",
        "channel": room,
        "recovered": False,
        "offset": last,
        "epoch": reply["epoch"],
    }


async def _quiet(ws: ClientConnection, within: float = 0.3) -> bool:
    try:
        frame = await frame_json(ws, within)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected frame: {frame}")


async def test_join_and_leave_cross_workers_and_a_killed_workers_users_leave(start_worker):
    worker1, worker2 = start_worker(**ENV), start_worker(**ENV)
    alice, bob, carol = user_register(worker1), user_register(worker2), user_register(worker2)
    room = "chat.members"

    async with session_open(worker1, alice["access"]) as (watcher, _):
        await subscribed(watcher, room)
        own = await frame_json(watcher)
        async with session_open(worker2, bob["access"]) as (bob_ws, _):
            await subscribed(bob_ws, room)
            bob_joined = await frame_json(watcher)
        bob_left = await frame_json(watcher)  # his last (only) session closed

        async with session_open(worker2, carol["access"]) as (carol_ws, _):
            await subscribed(carol_ws, room)
            carol_joined = await frame_json(watcher)
            process_stop(worker2.proc, sig=signal.SIGKILL)
            killed = time.monotonic()
            carol_left = await frame_json(watcher, TTL * 3)
            left_after = time.monotonic() - killed

    assert own == {"type": "join", "channel": room, "user": who(alice)}
    assert bob_joined == {"type": "join", "channel": room, "user": who(bob)}
    assert bob_left == {"type": "leave", "channel": room, "user": who(bob)}
    assert carol_joined == {"type": "join", "channel": room, "user": who(carol)}
    assert carol_left == {"type": "leave", "channel": room, "user": who(carol)}
    # The heartbeat lapses within WS_PRESENCE_TTL; a reap pass runs every tenth of it.
    assert left_after < TTL * 1.1 + 1, left_after
    print(f"a SIGKILLed worker's user left {left_after:.2f} s after the kill (TTL {TTL} s)")
