"""Two real workers on each Redis topology an operator outgrows one Redis with: a Sentinel
topology (tests/system/sentinel.py) and a channel layer sharded over two servers. Revocation,
rooms and presence work across the workers on each, and workers that shard differently are
told apart (an error in the log, `check --deploy` E007)."""

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from websockets.frames import Close

from tests.system.conftest import http_client, user_register
from tests.system.sentinel import SentinelTopology
from tests.system.stack import ROOT, RedisServer, Worker
from tests.system.wsclient import frame_json, session_open, until_closed

ROOM_ENV = {"WS_MESSAGES_PER_SECOND": "2000", "WS_MESSAGE_BURST": "2000"}
pytestmark = pytest.mark.load  # once per CI run (.ci/run): Redis topologies, not databases

SESSION_REVOKED = {"type": "error", "code": "session_revoked", "message": "Session revoked"}
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


async def request_reply(ws, message: dict) -> dict:
    await ws.send(json.dumps(message))
    return await frame_json(ws)


async def test_logout_all_through_worker_2_closes_a_session_on_worker_1(topology_workers):
    worker1, worker2 = topology_workers
    user = user_register(worker1)
    async with session_open(worker1, user["access"]) as (ws, _):
        with http_client(worker2) as client:
            response = client.post(
                "/api/auth/logout-all/", headers={"Authorization": f"Bearer {user['access']}"}
            )
        assert response.status_code == 204
        closed = await until_closed(ws)
    assert (closed.json(), closed.rcvd) == ([SESSION_REVOKED], Close(4501, "session revoked"))


async def test_room_messages_from_worker_2_reach_both_workers_in_order(topology_workers):
    worker1, worker2 = topology_workers
    alice, bob = user_register(worker1), user_register(worker2)
    room = f"topology-{worker1.name}"
    async with (
        session_open(worker1, alice["access"]) as (alice1, _),
        session_open(worker2, bob["access"]) as (bob2, _),
    ):
        for ws in (alice1, bob2):
            assert await request_reply(ws, {"type": "subscribe", "channel": room}) == {
                "type": "subscribed",
                "channel": room,
            }
        for n in range(MESSAGES):
            await bob2.send(json.dumps({"type": "publish", "channel": room, "data": n}))
        bob_frames = [await frame_json(bob2) for _ in range(2 * MESSAGES)]
        alice_frames = [await frame_json(alice1) for _ in range(MESSAGES)]
    assert [f["data"] for f in alice_frames] == list(range(MESSAGES))
    assert [f["data"] for f in bob_frames if f["type"] == "message"] == list(range(MESSAGES))
    assert [f for f in bob_frames if f["type"] != "message"] == [
        {"type": "published", "channel": room}
    ] * MESSAGES


async def test_presence_lists_the_users_of_both_workers_on_both(topology_workers):
    worker1, worker2 = topology_workers
    alice, bob = user_register(worker1), user_register(worker2)
    room = f"presence-{worker1.name}"
    async with (
        session_open(worker1, alice["access"]) as (alice1, _),
        session_open(worker2, bob["access"]) as (bob2, _),
    ):
        for ws in (alice1, bob2):
            await request_reply(ws, {"type": "subscribe", "channel": room})
        users = [
            {"id": alice["id"], "username": alice["username"]},
            {"id": bob["id"], "username": bob["username"]},
        ]
        for ws in (alice1, bob2):
            reply = await request_reply(ws, {"type": "presence", "channel": room, "id": 3})
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
    for worker in topology_workers:
        with http_client(worker) as client:
            answers = [client.get("/readyz") for _ in range(20)]
        assert [(a.status_code, a.json()) for a in answers] == [
            (200, {"database": "ok", "channel_layer": "ok"})
        ] * 20
