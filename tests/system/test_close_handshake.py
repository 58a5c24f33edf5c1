"""The close handshake under load, against a real daphne: the server waits (bounded) for the
client's answer to its close frame before it cuts the TCP connection, so a client that is
still sending, and busy, reads the documented close code instead of a reset."""

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from tests.system.conftest import user_register
from tests.system.stack import Worker
from tests.system.wsclient import Closed, session_open

CLIENTS = 50
ROUNDS = 3
ROUND_SECONDS = 60.0
WORK_PER_FRAME = 0.1  # seconds a busy client spends on each frame it reads
INVALID_JSON = {"type": "error", "code": "invalid_json", "message": "Frame is not valid JSON"}


@pytest.fixture(scope="module")
def worker(start_module_worker) -> Worker:
    # 50 sessions at once, of one user, round after round.
    return start_module_worker(WS_MAX_SESSIONS_PER_USER="1000")


@pytest.fixture(scope="module")
def user(worker) -> dict:
    return user_register(worker)


async def flood_until_closed(worker: Worker, token: str) -> Closed:
    """Open a session and send frames that are not JSON until the server closes it, while
    reading what comes back at WORK_PER_FRAME per frame (a client with work of its own)."""
    # max_queue: past a few unread frames the client stops reading its socket, as a busy
    # client does; the close frame then waits in the kernel until the client gets to it.
    async with session_open(worker, token, max_queue=4) as (ws, _):

        async def flood() -> None:
            while True:
                try:
                    await ws.send("not json")
                except ConnectionClosed:
                    return
                await asyncio.sleep(0.005)

        async def read() -> Closed:
            closed = Closed()
            while True:
                try:
                    closed.frames.append(await ws.recv())
                except ConnectionClosed as e:
                    closed.code, closed.reason, closed.rcvd = ws.close_code, ws.close_reason, e.rcvd
                    return closed
                await asyncio.sleep(WORK_PER_FRAME)

        sender = asyncio.create_task(flood())
        try:
            return await read()
        finally:
            await sender


async def test_fifty_clients_still_sending_each_read_their_1008_round_after_round(worker, user):
    for round_ in range(ROUNDS):
        started = time.monotonic()
        async with asyncio.timeout(ROUND_SECONDS):
            results = await asyncio.gather(
                *(flood_until_closed(worker, user["access"]) for _ in range(CLIENTS))
            )
        missing = [r.code for r in results if r.rcvd is None]
        print(
            f"\nround {round_}: {CLIENTS} clients closed in {time.monotonic() - started:.1f} s; "
            f"without a close frame: {len(missing)} {missing[:5]}"
        )
        assert [r.rcvd for r in results] == [Close(1008, "too many protocol errors")] * CLIENTS
        assert all(r.json() == [INVALID_JSON] * 21 for r in results)
        assert {(r.code, r.reason) for r in results} == {(1008, "too many protocol errors")}
