"""Two real workers on each Redis topology an operator outgrows one Redis with: a Sentinel
topology (tests/system/sentinel.py) and a channel layer sharded over two servers. Revocation,
rooms and presence work across the workers on each, and workers that shard differently are
told apart (an error in the log, `check --deploy` E007)."""

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from core.channel_layer import RedisChannelLayer
from realtime.rooms.policy import room_group
from tests.system.conftest import http_client, user_register
from tests.system.scenarios import (
    logout_all_revokes,
    logout_all_through_worker_2_closes_a_session_on_worker_1,
    request_reply,
    room_across_workers,
    room_messages_from_worker_2_reach_both_workers_in_order,
    subscribe,
)
from tests.system.sentinel import SentinelTopology
from tests.system.stack import ROOT, RedisServer, Worker
from tests.system.test_metrics_system import scrape
from tests.system.wsclient import frame_json, session_open

ROOM_ENV = {"WS_MESSAGES_PER_SECOND": "2000", "WS_MESSAGE_BURST": "2000"}
pytestmark = pytest.mark.load  # once per CI run (.ci/run): Redis topologies, not databases

MESSAGES = 200


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    """Switchboard's own Redis and two shards for its channel layer, all of this module's."""
    base = tmp_path_factory.mktemp("shards")
    servers = tuple(RedisServer(workdir=base / name).start() for name in ("own", "a", "b"))
    yield servers  # type: ignore[misc]
    for server in servers:
        server.stop()


def sharded_env(own: RedisServer, *layer: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": own.url, "REDIS_LAYER_URLS": ",".join(s.url for s in layer)}


@pytest.fixture(scope="module", params=["sentinel", "two_shards"])
def topology_workers(request, tmp_path_factory, start_module_worker, shards):
    """Two workers on the topology named by the parameter."""
    if request.param == "sentinel":
        topology = SentinelTopology(tmp_path_factory.mktemp("sentinel")).start()
        request.addfinalizer(topology.stop)
        env = topology.env
    else:
        own, a, b = shards
        env = sharded_env(own, a, b)
    name = request.param
    return tuple(
        start_module_worker(redis=False, name=f"{name}-{n}", **env, **ROOM_ENV) for n in (1, 2)
    )


async def test_logout_all_through_worker_2_closes_a_session_on_worker_1(topology_workers):
    await logout_all_through_worker_2_closes_a_session_on_worker_1(*topology_workers)


async def test_room_messages_from_worker_2_reach_both_workers_in_order(topology_workers):
    room = f"topology-{topology_workers[0].name}"
    await room_messages_from_worker_2_reach_both_workers_in_order(*topology_workers, room, MESSAGES)


async def test_presence_lists_the_users_of_both_workers_on_both(topology_workers):
    room = f"presence-{topology_workers[0].name}"
    async with room_across_workers(room, *topology_workers) as members:
        users = [{"id": m.user["id"], "username": m.user["username"]} for m in members]
        for member in members:
            reply = await request_reply(member.ws, {"type": "presence", "channel": room, "id": 3})
            assert reply == {"type": "presence", "channel": room, "users": users, "id": 3}


def check_deploy(worker: Worker) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` with `worker`'s settings."""
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_worker_sharding_differently_is_an_error_in_its_log_and_in_check_deploy(
    start_worker, tmp_path
):
    own, a, b = (RedisServer(workdir=tmp_path / name).start() for name in ("own", "a", "b"))
    try:
        worker1 = start_worker(redis=False, name="shards-ab", **sharded_env(own, a, b))
        user = user_register(worker1)
        async with session_open(worker1, user["access"]):  # a session: the heartbeat beats
            assert "different REDIS_LAYER_URLS" not in check_deploy(worker1).stderr
            worker2 = start_worker(redis=False, name="shards-ba", **sharded_env(own, b, a))
            async with session_open(worker2, user["access"]):
                worker2.output_wait(
                    "channel layer: 1 other worker(s) use a different REDIS_LAYER_URLS (or "
                    "Redis) than this one"
                )
                result = check_deploy(worker1)
    finally:
        for server in (own, a, b):
            server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "(switchboard.E007) 1 running worker(s) use a different channel layer" in result.stderr
    assert "Give every worker the same REDIS_LAYER_URLS, in the same order" in result.stderr


async def test_readyz_answers_200_on_every_call(topology_workers):
    # Its round trip is a direct send to a process-local channel: over two shards,
    # channels-redis sent it to the receiver's shard only by chance (core/channel_layer.py).
    ready = {"database": "ok", "channel_layer": "ok"}
    if "shard" in topology_workers[0].name:  # a sharded layer says how its shards are
        ready["channel_layer_shards"] = "ok"
    for worker in topology_workers:
        with http_client(worker) as client:
            answers = [client.get("/readyz") for _ in range(20)]
        assert [(a.status_code, a.json()) for a in answers] == [(200, ready)] * 20


SHARDS = 5  # more shards than the two workers' four receive channels: one is always free


def receive_shards(servers: list[RedisServer], layer: RedisChannelLayer) -> set[int]:
    """The shards the workers' own channels live on: where each group member's channel
    hashes, read from every shard's groups."""
    used = set()
    for server in servers:
        client = server.client()
        try:
            for key in client.keys("asgi:group:*"):
                used |= {layer.consistent_hash(m.decode()) for m in client.zrange(key, 0, -1)}
        finally:
            client.close()
    return used


async def reply_to(ws, message: dict) -> dict:
    """Send `message`; the reply with its `id` (room messages may come first)."""
    await ws.send(json.dumps(message))
    while (frame := await frame_json(ws)).get("id") != message["id"]:
        pass
    return frame


async def message_in(ws, data: object) -> dict:
    """The next room message carrying `data` (others are skipped)."""
    while (frame := await frame_json(ws))["type"] != "message" or frame["data"] != data:
        pass
    return frame


def named_to(layer: RedisChannelLayer, shard: int, names, *, on: bool = True) -> str:
    """The first of `names` whose group lives on `shard` (or, `on=False`, elsewhere)."""
    return next(n for n in names if (layer.consistent_hash(room_group(n)) == shard) == on)


async def readyz_until(worker: Worker, shards: str, *, within: float = 10.0) -> dict:
    """/readyz's body once its `channel_layer_shards` says `shards` (a prefix)."""
    deadline = time.monotonic() + within
    while True:
        with http_client(worker) as client:
            response = client.get("/readyz")
        body = response.json()
        if body.get("channel_layer_shards", "").startswith(shards):
            assert response.status_code == 200, body
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


async def test_a_stopped_shard_pauses_only_what_lives_on_it_and_recovers(start_worker, tmp_path):
    own = RedisServer(workdir=tmp_path / "own").start()
    shards = [RedisServer(workdir=tmp_path / f"shard{n}").start() for n in range(SHARDS)]
    layer = RedisChannelLayer(hosts=[{"address": s.url} for s in shards])  # to hash names
    try:
        env = {**sharded_env(own, *shards), **ROOM_ENV}
        worker1 = start_worker(redis=False, name="five-1", **env)
        worker2 = start_worker(redis=False, name="five-2", **env)
        alice, bob = user_register(worker1), user_register(worker2)
        async with (
            session_open(worker1, alice["access"]) as (alice1, _),
            session_open(worker2, bob["access"]) as (bob2, _),
        ):
            rooms = [f"room{n}" for n in range(200)]
            await subscribe("probe", alice1, bob2)  # the workers' room channels join a group
            stopped = min(set(range(SHARDS)) - receive_shards(shards, layer))
            down_room = named_to(layer, stopped, rooms)
            up_room = named_to(layer, stopped, rooms, on=False)
            carol = user_register(worker1)
            while layer.consistent_hash(f"sessions.user.{carol['id']}") == stopped:
                carol = user_register(worker1)
            for room in (down_room, up_room):
                await subscribe(room, alice1, bob2)

            shards[stopped].stop()
            # What lives on the stopped shard is refused, and said so, by both workers.
            reply = await reply_to(
                bob2, {"type": "publish", "channel": down_room, "data": "down", "id": 2}
            )
            assert (reply["type"], reply["code"], reply["id"]) == ("error", "unavailable", 2)
            port = shards[stopped].port
            where = f"down: shard {stopped + 1} of {SHARDS} (redis://127.0.0.1:{port}/0)"
            for worker in (worker1, worker2):
                body = await readyz_until(worker, where)
                assert body == {
                    "database": "ok",
                    "channel_layer": "ok",
                    "channel_layer_shards": where,
                }
                assert "\nswitchboard_channel_layer_shards_down 1.0\n" in scrape(worker)
            # While both know it, what lives elsewhere goes on: new sessions, a room, a
            # revocation across workers.
            async with session_open(worker1, carol["access"]) as (carol1, _):
                reply = await reply_to(
                    bob2, {"type": "publish", "channel": up_room, "data": "up", "id": 1}
                )
                assert reply == {"type": "published", "channel": up_room, "id": 1}
                message = await message_in(alice1, "up")
                assert message["channel"] == up_room
                await logout_all_revokes(carol1, worker2, carol)

            shards[stopped].start()  # back, and empty
            for worker in (worker1, worker2):
                await readyz_until(worker, "ok")
            deadline = time.monotonic() + 10
            while True:  # the rooms rejoined: the message reaches both workers
                reply = await reply_to(
                    bob2, {"type": "publish", "channel": down_room, "data": "back", "id": 3}
                )
                if reply == {"type": "published", "channel": down_room, "id": 3}:
                    break
                assert time.monotonic() < deadline, reply
                await asyncio.sleep(0.5)
            for ws in (alice1, bob2):
                assert (await message_in(ws, "back"))["channel"] == down_room
    finally:
        for server in (own, *shards):
            server.stop()
