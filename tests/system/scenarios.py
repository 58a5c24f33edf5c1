"""What several system tests check the same way on whatever stack they started (a server, a
Redis topology, TLS, a failover): a revocation crossing workers, and rooms across workers."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.frames import Close

from tests.system.conftest import http_client, user_register
from tests.system.stack import Worker
from tests.system.wsclient import frame_json, session_open, until_closed

SESSION_REVOKED = {"type": "error", "code": "session_revoked", "message": "Session revoked"}


async def request_reply(ws: ClientConnection, message: dict) -> dict:
    """Send `message`; the next frame."""
    await ws.send(json.dumps(message))
    return await frame_json(ws)


async def subscribe(room: str, *sockets: ClientConnection) -> None:
    """Subscribe each of `sockets` to `room`; each is answered `subscribed`."""
    for ws in sockets:
        assert await request_reply(ws, {"type": "subscribe", "channel": room}) == {
            "type": "subscribed",
            "channel": room,
        }


async def logout_all_revokes(ws: ClientConnection, worker: Worker, user: dict) -> None:
    """`POST /api/auth/logout-all/` for `user` through `worker` is answered 204, and `ws` (a
    session of that user's, on any worker) gets one `session_revoked` and closes 4501."""
    with http_client(worker) as client:
        response = client.post(
            "/api/auth/logout-all/", headers={"Authorization": f"Bearer {user['access']}"}
        )
    assert response.status_code == 204, response.text
    closed = await until_closed(ws)
    assert (closed.json(), closed.rcvd) == ([SESSION_REVOKED], Close(4501, "session revoked"))


async def logout_all_through_worker_2_closes_a_session_on_worker_1(
    worker1: Worker, worker2: Worker
) -> None:
    """A new user's session on `worker1`, closed 4501 by a logout-all through `worker2`."""
    user = user_register(worker1)
    async with session_open(worker1, user["access"]) as (ws, _):
        await logout_all_revokes(ws, worker2, user)


@dataclass(frozen=True)
class Member:
    """A registered user (`user_register`'s answer) and one open session of theirs."""

    user: dict
    ws: ClientConnection


@asynccontextmanager
async def room_across_workers(
    room: str, worker1: Worker, worker2: Worker
) -> AsyncIterator[tuple[Member, Member]]:
    """A new user's session on each worker, both subscribed to `room`."""
    alice, bob = user_register(worker1), user_register(worker2)
    async with (
        session_open(worker1, alice["access"]) as (alice1, _),
        session_open(worker2, bob["access"]) as (bob2, _),
    ):
        await subscribe(room, alice1, bob2)
        yield Member(alice, alice1), Member(bob, bob2)


async def room_messages_from_worker_2_reach_both_workers_in_order(
    worker1: Worker, worker2: Worker, room: str, count: int
) -> None:
    """`count` messages published from a session on `worker2` to `room` reach a subscriber
    on each worker, the publisher too, in order; the publisher gets `published` for each."""
    async with room_across_workers(room, worker1, worker2) as (alice, bob):
        for n in range(count):
            await bob.ws.send(json.dumps({"type": "publish", "channel": room, "data": n}))
        bob_frames = [await frame_json(bob.ws) for _ in range(2 * count)]
        alice_frames = [await frame_json(alice.ws) for _ in range(count)]
    assert [f["data"] for f in alice_frames] == list(range(count))
    assert [f["data"] for f in bob_frames if f["type"] == "message"] == list(range(count))
    assert [f for f in bob_frames if f["type"] != "message"] == [
        {"type": "published", "channel": room}
    ] * count
