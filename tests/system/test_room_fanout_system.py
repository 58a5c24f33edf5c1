"""Room fan-out across two real daphne workers and a real Redis: one group member per worker,
every subscriber served in order, the members back after a Redis restart, overload counted."""

import asyncio
import json
import os
import signal
import socket
import time
from contextlib import AsyncExitStack

import redis

from tests.system.conftest import user_register
from tests.system.stack import RedisServer, Worker, base_env
from tests.system.test_metrics_system import metric, scrape
from tests.system.test_rooms_system import ROOM_ENV, request, subscribe, who, without_ts
from tests.system.wsclient import frame_json, session_open

PER_WORKER = 4


def group_members(server: RedisServer, channel: str) -> list[str]:
    """The channels in a room's channel-layer group, as channels-redis stores it."""
    client = redis.Redis(port=server.port, socket_timeout=2)
    try:
        return sorted(m.decode() for m in client.zrange(f"asgi:group:room.{channel}", 0, -1))
    finally:
        client.close()


def workers_on(tmp_path, database_url, server: RedisServer, started: list, **env) -> tuple:
    """Two workers on `server` (stopped by the caller through `started`)."""
    pair = []
    for n in (1, 2):
        workdir = tmp_path / f"fanout-w{n}"
        environment = base_env(
            database_url=database_url, log_file=workdir / "errors.log", redis_url=server.url
        )
        environment.update(ROOM_ENV, **env)
        worker = Worker(env=environment, workdir=workdir, name=f"fanout-w{n}")
        started.append(worker)
        pair.append(worker.start())
    return tuple(pair)


async def subscribers_open(stack: AsyncExitStack, workers, room: str) -> list:
    """PER_WORKER subscribed sessions on each worker, each of its own user."""
    sockets = []
    for worker in workers:
        for _ in range(PER_WORKER):
            user = user_register(worker)
            ws, _ = await stack.enter_async_context(session_open(worker, user["access"]))
            await subscribe(ws, room)
            sockets.append(ws)
    return sockets


async def test_every_subscriber_on_both_workers_receives_every_message_in_order(
    tmp_path, database_url, private_redis
):
    started: list[Worker] = []
    try:
        worker1, worker2 = workers_on(tmp_path, database_url, private_redis, started)
        room, count, window = "fanout-order", 300, 50
        publisher_user = user_register(worker2)
        async with AsyncExitStack() as stack, asyncio.timeout(60):
            subscribers = await subscribers_open(stack, (worker1, worker2), room)
            publisher, _ = await stack.enter_async_context(
                session_open(worker2, publisher_user["access"])
            )
            # One member per worker, however many sessions subscribed there.
            members = group_members(private_redis, room)
            assert len(members) == 2 and all(m.startswith("rooms.") for m in members), members

            received: list[list[dict]] = [[] for _ in subscribers]
            for first in range(0, count, window):
                batch = range(first, first + window)
                for n in batch:
                    message = {"type": "publish", "channel": room, "data": {"n": n}, "id": n}
                    await publisher.send(json.dumps(message))
                assert [await frame_json(publisher) for _ in batch] == [
                    {"type": "published", "channel": room, "id": n} for n in batch
                ]
                for ws, frames in zip(subscribers, received, strict=True):
                    frames += [without_ts(await frame_json(ws)) for _ in batch]

            expected = [
                {"type": "message", "channel": room, "data": {"n": n}, "from": who(publisher_user)}
                for n in range(count)
            ]
            assert all(frames == expected for frames in received)
            # The last one out takes its worker's channel out of the group.
            for ws in subscribers[:PER_WORKER]:
                await request(ws, {"type": "unsubscribe", "channel": room})
            assert len(group_members(private_redis, room)) == 1
    finally:
        for worker in started:
            worker.stop()


async def test_a_redis_restart_puts_each_workers_channel_back_in_the_room_group(
    tmp_path, database_url, private_redis
):
    started: list[Worker] = []
    try:
        worker1, worker2 = workers_on(tmp_path, database_url, private_redis, started)
        room = "fanout-restart"
        publisher_user = user_register(worker1)
        async with AsyncExitStack() as stack:
            subscribers = await subscribers_open(stack, (worker1, worker2), room)
            publisher, _ = await stack.enter_async_context(
                session_open(worker1, publisher_user["access"])
            )
            members = group_members(private_redis, room)
            assert len(members) == 2

            private_redis.stop()
            private_redis.start()  # same port, empty: the group is gone

            deadline = time.monotonic() + 10
            while group_members(private_redis, room) != members:
                assert time.monotonic() < deadline, group_members(private_redis, room)
                await asyncio.sleep(0.1)

            message = {"type": "publish", "channel": room, "data": "after", "id": "a"}
            while (reply := await request(publisher, message)).get("code") == "unavailable":
                assert time.monotonic() < deadline + 5, reply
                await asyncio.sleep(0.2)
            assert reply == {"type": "published", "channel": room, "id": "a"}
            for ws in subscribers:
                assert without_ts(await frame_json(ws, 5)) == {
                    "type": "message",
                    "channel": room,
                    "data": "after",
                    "from": who(publisher_user),
                }
    finally:
        for worker in started:
            worker.stop()
    assert "channel layer reachable again" in worker1.log_text()


async def test_messages_a_full_worker_channel_refuses_are_counted_and_logged(
    tmp_path, database_url, private_redis
):
    started: list[Worker] = []
    try:
        worker1, worker2 = workers_on(
            tmp_path, database_url, private_redis, started, WS_ROOM_FANOUT_CAPACITY="2"
        )
        room, count = "fanout-full", 6
        subscriber_user, publisher_user = user_register(worker1), user_register(worker2)
        async with (
            session_open(worker1, subscriber_user["access"]) as (subscriber, _),
            session_open(worker2, publisher_user["access"]) as (publisher, _),
        ):
            await subscribe(subscriber, room)
            await subscribe(publisher, room)  # worker 2's channel is in the group too

            os.kill(worker1.proc.pid, signal.SIGSTOP)  # worker 1 stops reading its channel
            try:
                for n in range(count):
                    message = {"type": "publish", "channel": room, "data": n, "id": n}
                    assert await request(publisher, message) == {
                        "type": "published",
                        "channel": room,
                        "id": n,
                    }
                    assert (await frame_json(publisher))["data"] == n  # worker 2 keeps up
            finally:
                os.kill(worker1.proc.pid, signal.SIGCONT)

            heard = []
            try:
                while True:
                    heard.append((await frame_json(subscriber, 2))["data"])
            except TimeoutError:
                pass
        lost = count - len(heard)
        assert heard == list(range(len(heard)))  # the first ones, in order
        assert 1 <= lost <= count - 2, heard  # at least the capacity got through

        text = scrape(worker2)
        assert metric(
            text, "switchboard_room_fanout_dropped_total", reason="worker_channel_full"
        ) == float(lost)
        assert (
            f'switchboard_room_fanout_dropped_total{{reason="worker_channel_full"}} {lost}.0'
            in text.splitlines()
        )
        overloads = [
            line for line in worker2.log_text().splitlines() if "room fan-out overload" in line
        ]
        assert len(overloads) == lost
        assert all(
            line.endswith(
                f"room fan-out overload: a message to room {room} dropped for 1 of 2 "
                "worker(s), their channel full (WS_ROOM_FANOUT_CAPACITY=2)"
            )
            for line in overloads
        ), overloads
        assert "room fan-out overload" not in worker1.log_text()
    finally:
        for worker in started:
            worker.stop()


async def test_a_sigkilled_workers_channel_leaves_its_rooms_and_drops_nothing_after(
    tmp_path, database_url, private_redis
):
    started: list[Worker] = []
    try:
        worker1, doomed = workers_on(
            tmp_path, database_url, private_redis, started, WS_ROOM_FANOUT_CAPACITY="3"
        )
        room, count = "fanout-dead-worker", 8
        subscriber_user, publisher_user = user_register(worker1), user_register(worker1)
        doomed_user = user_register(doomed)
        async with (
            session_open(worker1, subscriber_user["access"]) as (subscriber, _),
            session_open(worker1, publisher_user["access"]) as (publisher, _),
            session_open(doomed, doomed_user["access"]) as (doomed_ws, _),
        ):
            await subscribe(subscriber, room)
            await subscribe(doomed_ws, room)
            assert len(group_members(private_redis, room)) == 2

            # realtime.cluster.workers.WORKER_ID
            doomed_id = f"{socket.gethostname()}:{doomed.proc.pid}:"
            doomed.stop(signal.SIGKILL)  # no chance to leave its rooms
            # Its heartbeat lapses within WS_PRESENCE_TTL (3 s); worker 1 reaps every 3 s.
            worker1.output_wait("taken out of 1 room(s)", timeout=15)
            members = group_members(private_redis, room)
            assert len(members) == 1, members

            # Worker 1 reaped in turn by someone (as if it had stalled past its heartbeat):
            # its own reap pass finds its record gone and puts its channel back.
            client = redis.Redis(port=private_redis.port, socket_timeout=2)
            try:
                client.delete("switchboard:fanout-channels")
                client.delete(f"asgi:group:room.{room}")
            finally:
                client.close()
            worker1.output_wait("this worker's record was gone; rejoining rooms", timeout=15)
            assert group_members(private_redis, room) == members

            for n in range(count):  # more than the dead worker's channel could have held
                message = {"type": "publish", "channel": room, "data": n, "id": n}
                assert await request(publisher, message) == {
                    "type": "published",
                    "channel": room,
                    "id": n,
                }
            assert [(await frame_json(subscriber))["data"] for _ in range(count)] == list(
                range(count)
            )
        assert "room fan-out overload" not in worker1.log_text()
        assert f"room fan-out: dead worker {doomed_id}" in worker1.log_text()
    finally:
        for worker in started:
            worker.stop()
