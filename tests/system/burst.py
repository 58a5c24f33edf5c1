"""Many WebSocket handshakes at once, from one real client process, for the burst tests.

Each connection ends up `Held` (accepted, still open, closed by the caller) or refused with
what the server said: its first frame and close code, or how the handshake failed.
"""

import asyncio
import json
import resource
from collections import Counter
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

WITHIN = 90.0  # seconds a burst may take, all connections together
REPLY_WITHIN = 30.0  # seconds one accepted connection may take to say something


def nofile_raise(wanted: int = 20_000) -> None:
    """Let this process hold `wanted` sockets (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass
class Outcome:
    """One connection attempt: `ws` while it is held open; else what ended it."""

    first: dict | str | None = None  # the first frame (JSON decoded when it is JSON)
    code: int | None = None  # the close code received
    failure: str | None = None  # how the handshake failed (an HTTP status, a timeout)
    ws: ClientConnection | None = None

    @property
    def accepted(self) -> bool:
        return self.ws is not None


def _decoded(frame: str | bytes) -> dict | str:
    try:
        return json.loads(frame)
    except (TypeError, ValueError):
        return frame if isinstance(frame, str) else repr(frame)


async def attempt(url: str, *, headers: dict | None, accepted_when: str, probe: str | None):
    """Open one connection; keep it when its first frame's `type` (or text prefix) is
    `accepted_when`, else read until the server closes."""
    outcome = Outcome()
    try:
        ws = await websockets.connect(
            url, additional_headers=headers, proxy=None, open_timeout=WITHIN, close_timeout=5
        )
    except InvalidStatus as e:
        outcome.failure = f"HTTP {e.response.status_code}"
        return outcome
    except (OSError, TimeoutError, websockets.InvalidHandshake) as e:
        outcome.failure = type(e).__name__
        return outcome
    try:
        async with asyncio.timeout(REPLY_WITHIN):
            if probe is not None:
                await ws.send(probe)
            outcome.first = _decoded(await ws.recv())
            kind = outcome.first.get("type") if isinstance(outcome.first, dict) else outcome.first
            if isinstance(kind, str) and kind.startswith(accepted_when):
                outcome.ws = ws
                return outcome
            await ws.wait_closed()
    except ConnectionClosed:
        pass
    except TimeoutError:
        outcome.failure = "no reply"
        await ws.close()
        return outcome
    outcome.code = ws.close_code
    return outcome


async def burst(
    urls: list[str],
    *,
    headers: dict | None = None,
    accepted_when: str = "welcome",
    probe: str | None = None,
    in_flight: int = 500,
) -> list[Outcome]:
    """One attempt per URL, at most `in_flight` handshakes under way at once (the ones done
    stay open); bounded by WITHIN seconds."""
    gate = asyncio.Semaphore(in_flight)

    async def gated(url: str) -> Outcome:
        async with gate:
            return await attempt(url, headers=headers, accepted_when=accepted_when, probe=probe)

    async with asyncio.timeout(WITHIN):
        return list(await asyncio.gather(*(gated(url) for url in urls)))


def tally(outcomes: list[Outcome]) -> Counter:
    """How many were accepted, closed with each code, or failed each way."""
    return Counter(
        "accepted" if o.accepted else (o.code if o.code is not None else o.failure)
        for o in outcomes
    )


async def close_all(outcomes: list[Outcome]) -> None:
    """Close every held connection at once."""
    held = [o.ws for o in outcomes if o.ws is not None]
    async with asyncio.timeout(WITHIN):
        await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
