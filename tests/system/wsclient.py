"""A real WebSocket client for system tests: bounded waits, frames read until the close."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import jwt
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from tests.system.stack import SECRET_KEY, Worker

TIMEOUT = 10.0


def ws_connect(worker: Worker, path: str, **kwargs) -> websockets.connect:
    """`websockets.connect` to `path` on `worker`, never through a proxy from the environment."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    return websockets.connect(f"{worker.ws}{path}", proxy=None, **kwargs)


async def frame_recv(ws: ClientConnection, within: float = TIMEOUT) -> str | bytes:
    """The next frame, or a TimeoutError after `within` seconds."""
    return await asyncio.wait_for(ws.recv(), within)


async def frame_json(ws: ClientConnection, within: float = TIMEOUT) -> dict:
    """The next frame, decoded as JSON."""
    return json.loads(await frame_recv(ws, within))


@asynccontextmanager
async def session_open(
    worker: Worker, token: str, **kwargs
) -> AsyncIterator[tuple[ClientConnection, dict]]:
    """An open `/ws/session/` and its welcome frame."""
    async with ws_connect(worker, f"/ws/session/?token={token}", **kwargs) as ws:
        welcome = await frame_json(ws)
        assert welcome["type"] == "welcome", welcome
        yield ws, welcome


@dataclass
class Closed:
    """How a connection ended: the frames read before, and the close frame received, if any."""

    frames: list[str | bytes] = field(default_factory=list)
    code: int | None = None
    reason: str | None = None
    rcvd: Close | None = None

    def json(self) -> list[dict]:
        return [json.loads(frame) for frame in self.frames]


async def until_closed(
    ws: ClientConnection, *, limit: int = 300, within: float = TIMEOUT
) -> Closed:
    """Read frames until the server closes: at most `limit` frames and `within` seconds."""
    closed = Closed()
    async with asyncio.timeout(within):
        for _ in range(limit + 1):
            try:
                closed.frames.append(await ws.recv())
            except ConnectionClosed as e:
                closed.code, closed.reason, closed.rcvd = ws.close_code, ws.close_reason, e.rcvd
                return closed
    raise AssertionError(f"still open after {limit} frames: {closed.frames[-3:]!r}")


async def send_all(ws: ClientConnection, frames: list[str | bytes]) -> int:
    """Send frames until the server closes; the number sent."""
    for sent, frame in enumerate(frames):
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return sent
    return len(frames)


def token_forge(*, user_id: int, key: str = SECRET_KEY, lifetime: int = 300) -> str:
    """An access token shaped like the worker's, signed with `key`; `lifetime` < 0 is expired."""
    now = int(time.time())
    claims = {
        "token_type": "access",
        "exp": now + lifetime,
        "iat": now - 600,
        "jti": "f" * 32,
        "user_id": str(user_id),
        "ver": 0,
        "aud": "switchboard",
        "iss": "switchboard",
    }
    return jwt.encode(claims, key, algorithm="HS256")


def secret_parts(token: str) -> list[str]:
    """A JWT and its payload and signature (the header is the same for every token)."""
    _, payload, signature = token.split(".")
    return [token, payload, signature]


def token_exp(token: str) -> int:
    """The `exp` claim of a token, read without checking it (only to compare with frames)."""
    return jwt.decode(token, options={"verify_signature": False})["exp"]
