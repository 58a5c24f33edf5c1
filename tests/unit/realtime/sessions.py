"""Helpers for the session-registry tests: registry rows from a factory, sockets from an IP."""

import uuid
from typing import Any

import factory
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts.models import User
from config.asgi import application as asgi_application
from realtime.cluster.workers import WORKER_ID
from realtime.models import WebSocketSession
from tests.conftest import UserFactory, access_for

DEAD_WORKER = "gone-host:4242:deadbeef"
SESSION_REVOKED = {"type": "error", "code": "session_revoked", "message": "Session revoked"}


class WebSocketSessionFactory(factory.django.DjangoModelFactory):
    """A registry row: open, on this (alive) worker, for a new user unless one is given."""

    class Meta:
        model = WebSocketSession

    id = factory.LazyFunction(uuid.uuid4)
    user = factory.SubFactory(UserFactory)
    username = factory.LazyAttribute(lambda s: s.user.username if s.user else "deleted")
    client_ip = "198.51.100.1"
    user_agent = "factory-agent/1.0"
    worker = WORKER_ID
    channel_name = factory.Sequence(lambda n: f"specific.inmemory!factory{n}")
    connected_at = factory.LazyFunction(timezone.now)


def from_ip(ip: str, application: Any = asgi_application) -> Any:
    """The ASGI application as a connection from `ip` reaches it (daphne's `scope["client"]`)."""

    async def app(scope, receive, send):
        return await application({**scope, "client": (ip, 50000)}, receive, send)

    return app


async def session_open(
    connect, user: User, *, ip: str | None = None, headers: list | None = None
) -> tuple[WebsocketCommunicator, dict]:
    """An accepted `/ws/session/` socket for `user` and its welcome frame."""
    socket = await connect(
        f"/ws/session/?token={access_for(user)}",
        headers=headers,
        application=from_ip(ip) if ip else None,
    )
    welcome = await socket.receive_json_from()
    assert welcome["type"] == "welcome", welcome
    return socket, welcome
