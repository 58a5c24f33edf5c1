"""Redis Sentinel failover under two real workers: a master, a replica and three sentinels of
the test's own (tests/system/sentinel.py), the master SIGKILLed while sessions are open.

Within FAILOVER_BOUND seconds of the sentinels promoting the replica, everything works again
through the same settings: open sessions stayed open, new ones are accepted, logout-all
through worker 2 closes a session on worker 1 (4501), a room message reaches subscribers on
both workers, a ticket issued by one worker is redeemed on the other, and the connection rate
is counted on the new master. A publish that found no master was answered `unavailable` and
counted, never dropped silently.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest
from websockets.exceptions import WebSocketException

from tests.system.conftest import user_register
from tests.system.scenarios import logout_all_revokes, subscribe
from tests.system.sentinel import SentinelTopology
from tests.system.test_metrics_system import metric, scrape
from tests.system.test_tickets_system import ticket_issue
from tests.system.wsclient import frame_json, session_open, ws_connect

FAILOVER_BOUND = 10.0  # seconds after the promotion until every check below passes
ROOM = "failover"
pytestmark = pytest.mark.load  # once per CI run (.ci/run): Redis topologies, not databases

UNAVAILABLE = "unavailable"


@pytest.fixture
def sentinel_topology(tmp_path):
    topology = SentinelTopology(tmp_path / "sentinel").start()
    yield topology
    topology.stop()


async def until_ok(action: Callable[[], Awaitable[object]], *, within: float) -> object:
    """`action()`'s result once it stops failing (an assertion, a refused or failed
    handshake), trying every 0.2 s for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await action()
        except (AssertionError, OSError, WebSocketException):
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.2)


async def welcome_on(worker, access: str) -> dict:
    async with session_open(worker, access) as (_, welcome):
        return welcome


def connect_window_length(topology: SentinelTopology) -> int:
    """How many connections the new master's connection-rate window holds for 127.0.0.1."""
    client = topology.replica.client()
    try:
        keys = [key for key in client.keys("*ws-connects*") if b"127.0.0.1" in key]
        return sum(client.llen(key) for key in keys)
    finally:
        client.close()


async def test_a_killed_master_is_replaced_and_two_workers_work_on_through_the_new_one(
    start_worker, sentinel_topology
):
    worker1 = start_worker(redis=False, **sentinel_topology.env)
    worker2 = start_worker(redis=False, **sentinel_topology.env)
    alice, bob, carol = (user_register(worker1) for _ in range(3))
    async with (
        asyncio.timeout(120),
        session_open(worker1, alice["access"]) as (alice1, _),
        session_open(worker1, bob["access"]) as (bob1, _),
        session_open(worker2, carol["access"]) as (carol2, _),
    ):
        await subscribe(ROOM, bob1, carol2)

        sentinel_topology.master.kill()
        killed_at = time.monotonic()
        # No master: a publish is answered `unavailable` (and counted), not dropped.
        await carol2.send(json.dumps({"type": "publish", "channel": ROOM, "data": "lost"}))
        reply = await frame_json(carol2)
        assert (reply["type"], reply["code"]) == ("error", UNAVAILABLE), reply
        unavailable = 1
        await asyncio.to_thread(sentinel_topology.promotion_wait)
        promoted_at = time.monotonic()
        promoted_after = promoted_at - killed_at

        # New sessions, on both workers.
        for worker in (worker1, worker2):
            welcome = await until_ok(lambda w=worker: welcome_on(w, carol["access"]), within=30)
            assert welcome["type"] == "welcome"
        accepted_after = time.monotonic() - promoted_at

        # A room publish: `unavailable` until the workers reach the new master, then
        # delivered on both.
        for attempt in range(100):
            await carol2.send(json.dumps({"type": "publish", "channel": ROOM, "data": attempt}))
            reply = await frame_json(carol2)
            if reply == {"type": "published", "channel": ROOM}:
                break
            assert (reply["type"], reply["code"]) == ("error", UNAVAILABLE), reply
            unavailable += 1
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("no publish succeeded after the failover")
        for ws in (carol2, bob1):
            message = await frame_json(ws)
            assert (message["type"], message["channel"], message["data"]) == (
                "message",
                ROOM,
                attempt,
            )
        published_after = time.monotonic() - promoted_at

        # Revocation across workers: logout-all through worker 2 closes alice on worker 1.
        await logout_all_revokes(alice1, worker2, alice)

        # A ticket issued by worker 2 lets one session in on worker 1.
        ticket = ticket_issue(worker2, bob["access"])
        async with ws_connect(worker1, f"/ws/session/?ticket={ticket}") as ws:
            welcome = await frame_json(ws)
        assert (welcome["type"], welcome["user"]["id"]) == ("welcome", bob["id"])

        # The connection rate counts on the new master.
        before = connect_window_length(sentinel_topology)
        await welcome_on(worker2, bob["access"])
        assert connect_window_length(sentinel_topology) == before + 1

        # The sessions open across the failover are still open and answering.
        for ws in (bob1, carol2):
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            assert await frame_json(ws) == {"type": "pong", "id": 7}
        everything_after = time.monotonic() - promoted_at

    failures = metric(
        scrape(worker2), "switchboard_channel_layer_failures_total", operation="group_send"
    )
    assert failures >= unavailable >= 1
    print(
        f"\nfailover: promoted {promoted_after:.1f} s after the kill; new sessions "
        f"{accepted_after:.1f} s ({promoted_after + accepted_after:.1f} s after the kill), "
        f"publish {published_after:.1f} s, everything "
        f"{everything_after:.1f} s after the promotion; {unavailable} publish(es) answered "
        f"unavailable, {failures:.0f} counted"
    )
    assert everything_after < FAILOVER_BOUND
    for worker in (worker1, worker2):
        assert "1011" not in worker.log_text()
