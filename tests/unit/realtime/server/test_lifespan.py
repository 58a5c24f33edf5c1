"""The ASGI lifespan (uvicorn, granian): startup, the worker's shutdown, other scopes passed on."""

import asyncio
import logging

import pytest

from config.asgi import application
from realtime.cluster.workers import WORKER_ID
from realtime.models import WebSocketSession
from realtime.server import shutdown
from realtime.server.lifespan import Lifespan
from tests.unit.realtime.sessions import session_open
from tests.unit.realtime.ws import receive_close

pytestmark = pytest.mark.django_db(transaction=True)


class LifespanServer:
    """What a server does with the lifespan scope: send events, collect the answers."""

    def __init__(self, app) -> None:
        self.inbox: asyncio.Queue[dict] = asyncio.Queue()
        self.sent: list[dict] = []
        self.answered = asyncio.Event()
        self.task = asyncio.ensure_future(app({"type": "lifespan"}, self.inbox.get, self.send))

    async def send(self, message: dict) -> None:
        self.sent.append(message)
        self.answered.set()

    async def event(self, kind: str) -> dict:
        """Send `lifespan.<kind>`, then the application's answer."""
        self.answered.clear()
        await self.inbox.put({"type": f"lifespan.{kind}"})
        await asyncio.wait_for(self.answered.wait(), 10)
        return self.sent[-1]


async def test_shutdown_closes_open_sessions_1001_and_records_every_one(connect, user, caplog):
    server = LifespanServer(application)
    assert await server.event("startup") == {"type": "lifespan.startup.complete"}
    socket, welcome = await session_open(connect, user)

    with caplog.at_level(logging.WARNING, logger="switchboard.realtime"):
        answer = await server.event("shutdown")

    assert answer == {"type": "lifespan.shutdown.complete"}
    assert await receive_close(socket) == (1001, "server going away")
    session = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    assert (session.worker, session.close_code) == (WORKER_ID, 1001)
    assert session.closed_at is not None
    assert "shutting down: closed 1 session(s) with 1001" in caplog.messages
    await server.task  # the lifespan ends once shutdown is answered


async def test_a_failing_step_is_logged_and_the_next_ones_still_run(
    connect, user, monkeypatch, caplog
):
    async def broken() -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(shutdown, "sessions_close_going_away", broken)
    server = LifespanServer(application)
    await server.event("startup")
    _, welcome = await session_open(connect, user)

    with caplog.at_level(logging.ERROR, logger="switchboard.realtime"):
        assert await server.event("shutdown") == {"type": "lifespan.shutdown.complete"}

    assert "shutting down: could not close the open sessions" in caplog.messages
    # The worker was retired all the same: its session is recorded closed.
    session = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    assert session.close_code == 1001


async def test_every_other_scope_goes_to_the_application():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    await Lifespan(inner)({"type": "http"}, None, None)
    await Lifespan(inner)({"type": "websocket"}, None, None)
    assert seen == ["http", "websocket"]
