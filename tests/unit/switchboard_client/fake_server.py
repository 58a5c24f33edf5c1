"""A fake `/ws/session/` for the client's unit tests: a real WebSocket server (websockets, on
127.0.0.1 and a free port) that welcomes each connection, records every frame the client
sends, answers each by the test's `reply`, and can push frames or drop the connection."""

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from switchboard_client import Backoff, SwitchboardClient, Tokens

Frame = dict[str, Any]
Reply = Callable[[Frame], list[Frame]]

WELCOME = {
    "type": "welcome",
    "message": "Authenticated!",
    "session_id": "s1",
    "user": {"id": 1, "username": "al"},
    "expires_at": "2099-01-01T00:00:00Z",  # no refresh during a test
}


def replies(frame: Frame) -> list[Frame]:
    """What a server with no history says: `subscribed`, `published`, `pong`…, with the id."""
    kind, channel, msg_id = frame["type"], frame.get("channel"), frame["id"]
    answers = {"subscribe": "subscribed", "unsubscribe": "unsubscribed", "publish": "published"}
    answer = {**answers, "ping": "pong"}.get(kind, kind)
    reply = {"type": answer, "channel": channel} if channel is not None else {"type": answer}
    return [{**reply, "id": msg_id}]


def message(channel: str, data: Any, offset: int | None = None, epoch: str = "e1") -> Frame:
    """A room's `message` frame, with an offset and an epoch when `offset` is given."""
    frame: Frame = {
        "type": "message",
        "channel": channel,
        "data": data,
        "ts": "2026-01-01T00:00:00Z",
        "from": {"id": 2, "username": "bo"},
    }
    if offset is not None:
        frame.update(offset=offset, epoch=epoch)
    return frame


class FakeServer:
    """`async with FakeServer(reply) as server`: `server.url` for the client, then
    `server.received[n]` (the frames of connection n), `send`, `drop`."""

    def __init__(self, reply: Reply = replies) -> None:
        self.reply = reply
        self.connections: list[ServerConnection] = []
        self.received: list[list[Frame]] = []
        self._server: Server | None = None

    async def __aenter__(self) -> "FakeServer":
        self._server = await serve(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"http://{host}:{port}"

    async def _serve(self, ws: ServerConnection) -> None:
        frames: list[Frame] = []
        self.connections.append(ws)
        self.received.append(frames)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(WELCOME))
            async for text in ws:
                frame = json.loads(text)
                frames.append(frame)
                for answer in self.reply(frame):
                    await ws.send(json.dumps(answer))

    async def send(self, *frames: Frame) -> None:
        """Push `frames` on the newest connection."""
        for frame in frames:
            await self.connections[-1].send(json.dumps(frame))

    async def drop(self, code: int = 1012, reason: str = "service restart") -> None:
        """Close the newest connection with `code` (the client reconnects after 1012)."""
        await self.connections[-1].close(code, reason)


def client_for(server: FakeServer, **kwargs: Any) -> SwitchboardClient:
    """A client of `server` with tokens (no REST login), reconnecting at once."""
    return SwitchboardClient(
        server.url,
        tokens=Tokens(access="access", refresh="refresh"),
        backoff=Backoff(base=0.001, cap=0.001),
        request_timeout=5,
        trust_env=False,
        **kwargs,
    )


async def until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until `condition()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
