"""/ws/session/ and /ws/echo/ over real daphne: the protocol table, expiry, limits, revocation."""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from websockets.exceptions import InvalidStatus

from tests.system.conftest import token_refresh, user_register
from tests.system.stack import ROOT, Worker
from tests.system.wsclient import (
    frame_json,
    send_all,
    session_open,
    token_exp,
    until_closed,
    ws_connect,
)

TOKEN_EXPIRED = {"type": "error", "code": "token_expired", "message": "Token Expired"}


def iso(exp: int) -> str:
    return datetime.fromtimestamp(exp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def sleep_until(timestamp: float) -> None:
    await asyncio.sleep(max(0.0, timestamp - time.time()))


@pytest.fixture(scope="module")
def short_ttl_worker(start_module_worker) -> Worker:
    """Access tokens live 3 s; the expiry warning comes 1 s before."""
    return start_module_worker(JWT_ACCESS_TTL="3", WS_EXPIRY_WARNING="1")


# -- the protocol table ----------------------------------------------------------------------------


async def test_session_welcomes_echoes_and_pongs(shared_worker):
    user = user_register(shared_worker)
    async with session_open(shared_worker, user["access"]) as (ws, welcome):
        assert welcome == {
            "type": "welcome",
            "message": "Authenticated!",
            "session_id": welcome["session_id"],
            "user": {"id": user["id"], "username": user["username"]},
            "expires_at": iso(token_exp(user["access"])),
        }
        assert str(uuid.UUID(welcome["session_id"])) == welcome["session_id"]
        await ws.send(json.dumps({"type": "echo", "data": [1, "two", {"3": None}], "id": "e1"}))
        assert await frame_json(ws) == {"type": "echo", "data": [1, "two", {"3": None}], "id": "e1"}
        await ws.send(json.dumps({"type": "ping", "id": 7}))
        assert await frame_json(ws) == {"type": "pong", "id": 7}
        await ws.send(json.dumps({"type": "ping"}))
        assert await frame_json(ws) == {"type": "pong"}


async def test_unknown_websocket_path_is_refused_403(shared_worker):
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(shared_worker, "/ws/nope/"):
            pass
    assert refused.value.response.status_code == 403
    assert "Exception inside application" not in shared_worker.output()


# -- expiry ---------------------------------------------------------------------------------------


async def test_session_warns_then_closes_4001_when_the_token_expires(short_ttl_worker):
    user = user_register(short_ttl_worker)
    exp = token_exp(user["access"])
    async with session_open(short_ttl_worker, user["access"]) as (ws, welcome):
        assert welcome["expires_at"] == iso(exp)
        assert await frame_json(ws) == {"type": "expiring", "expires_at": iso(exp)}
        assert time.time() >= exp - 1 - 0.1
        closed = await until_closed(ws)
    assert time.time() >= exp - 0.1
    assert closed.json() == [TOKEN_EXPIRED]
    assert (closed.code, closed.reason) == (4001, "token expired")


async def frames_until(ws, wanted: dict, *, limit: int = 3) -> list[dict]:
    """Frames read up to and including `wanted`; at most `limit`."""
    frames: list[dict] = []
    while wanted not in frames:
        assert len(frames) < limit, frames
        frames.append(await frame_json(ws))
    return frames


async def test_in_band_refresh_keeps_the_session_open_past_the_first_expiry(short_ttl_worker):
    user = user_register(short_ttl_worker)
    first_exp = token_exp(user["access"])
    async with session_open(short_ttl_worker, user["access"]) as (ws, _):
        # A token issued in the next whole second expires at least a second later.
        await sleep_until(first_exp - 2 + 0.05)
        renewed = token_refresh(short_ttl_worker, user["refresh"])
        second_exp = token_exp(renewed["access"])
        assert second_exp > first_exp
        await ws.send(json.dumps({"type": "refresh", "token": renewed["access"], "id": "r"}))
        refreshed = {"type": "refreshed", "expires_at": iso(second_exp), "id": "r"}
        before = await frames_until(ws, refreshed)
        # On a slow machine the first token's warning may come first; nothing else may.
        assert before in (
            [refreshed],
            [{"type": "expiring", "expires_at": iso(first_exp)}, refreshed],
        )

        await sleep_until(first_exp + 0.3)
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        after = await frames_until(ws, {"type": "pong", "id": "p"})
        # The renewed token's own warning (1 s before its expiry) may come first.
        expiring = {"type": "expiring", "expires_at": iso(second_exp)}
        assert after[:-1] in ([], [expiring])
        assert ws.close_code is None


# -- limits ---------------------------------------------------------------------------------------


async def test_echo_over_the_rate_limit_closes_4008(start_worker):
    worker = start_worker(WS_MESSAGES_PER_SECOND="1", WS_MESSAGE_BURST="2")
    async with ws_connect(worker, "/ws/echo/") as ws:
        await send_all(ws, ["one", "two", "three"])
        closed = await until_closed(ws)
    assert closed.frames == ["Server received: one", "Server received: two"]
    assert (closed.code, closed.reason) == (4008, "rate limited")


# -- revocation -----------------------------------------------------------------------------------


def user_deactivate(worker: Worker, username: str) -> None:
    """Deactivate a user the way an operator would: `manage.py shell`, the worker's settings."""
    code = (
        "from accounts.models import User; "
        f"user = User.objects.get(username={username!r}); "
        "user.is_active = False; user.save()"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=worker.env,
        check=True,
        timeout=60,
        capture_output=True,
    )


async def test_deactivating_a_user_closes_their_open_session_4501(shared_worker):
    user = user_register(shared_worker)
    async with session_open(shared_worker, user["access"]) as (ws, _):
        await asyncio.to_thread(user_deactivate, shared_worker, user["username"])
        closed = await until_closed(ws)
    assert closed.json() == [
        {"type": "error", "code": "session_revoked", "message": "Session revoked"}
    ]
    assert (closed.code, closed.reason) == (4501, "session revoked")
    async with ws_connect(shared_worker, f"/ws/session/?token={user['access']}") as ws:
        again = await until_closed(ws)
    assert (again.code, again.reason) == (4500, "unauthorized")
