"""Fixtures for WebSocket tests: sockets opened on config.asgi.application, closed at teardown."""

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application as asgi_application

Connect = Callable[..., Coroutine[Any, Any, WebsocketCommunicator]]


@pytest.fixture
async def connect(transactional_db) -> AsyncIterator[Connect]:
    """`await connect(path, headers=[...], subprotocols=[...], application=...)`: a socket
    after its handshake.

    Consumers reach the database from worker threads (channels checks its connections on
    every event), so every socket test runs with a transactional database.

    The handshake result is on the socket: `socket.accepted` (bool) and `socket.detail`
    (the subprotocol when accepted, the close code when refused).
    """
    opened: list[WebsocketCommunicator] = []

    async def open_socket(
        path: str,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
        application: Any = None,
    ) -> WebsocketCommunicator:
        socket = WebsocketCommunicator(
            application or asgi_application, path, headers=headers, subprotocols=subprotocols
        )
        opened.append(socket)
        socket.accepted, socket.detail = await socket.connect()
        return socket

    yield open_socket
    for socket in opened:
        await socket.disconnect()
