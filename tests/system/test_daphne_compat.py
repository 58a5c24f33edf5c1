"""realtime/server/daphne_adapter.py against a real daphne: each documented close arrives
as written.

A worker started with WS_DAPHNE_COMPAT=0 runs stock daphne 4.2.3 and shows each fix is needed.
"""

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from tests.system.conftest import http_client, user_register
from tests.system.rawws import OP_TEXT, frame_build, handshake_send
from tests.system.stack import Worker
from tests.system.test_session_registry_system import registry_closed
from tests.system.wsclient import (
    frame_json,
    send_all,
    session_open,
    token_forge,
    until_closed,
    ws_connect,
)

DAPHNE_MAX_MESSAGE = 1024 * 1024
OVERSIZED = [70_000, 2 * DAPHNE_MAX_MESSAGE]
UNAUTHORIZED = {"type": "error", "code": "unauthorized", "message": "Unauthorized"}
RSS_GROWTH_LIMIT_KIB = 20 * 1024
WRONG_KEY = "not-the-signing-key-but-just-as-long-0123456789"
INVALID_UTF8 = b'{"type": "echo", "data": "caf\xc3"}'  # a code point cut short
NON_ASCII_SUBPROTOCOL = "Sec-WebSocket-Protocol: switchboard, café".encode()


@pytest.fixture(scope="module")
def user(shared_worker) -> dict:
    return user_register(shared_worker)


@pytest.fixture(scope="module")
def stock_worker(start_module_worker) -> Worker:
    """Stock daphne: the compatibility module is not installed.

    No Redis: stock daphne turns a refused close into 1011 only once the application instance
    has ended, and on Redis that end sometimes waits for a cancelled channel-layer read.
    """
    return start_module_worker(redis=False, WS_DAPHNE_COMPAT="0")


@pytest.fixture(scope="module")
def stock_user(stock_worker) -> dict:
    return user_register(stock_worker)


# -- the fixed worker: every close as documented --------------------------------------------------


@pytest.mark.parametrize("size", OVERSIZED, ids=["70000-bytes", "2-MiB"])
async def test_oversized_text_frame_closes_1009_with_a_close_frame(shared_worker, user, size):
    async with session_open(shared_worker, user["access"]) as (ws, _):
        await send_all(ws, ["x" * size])
        closed = await until_closed(ws)
    assert closed.frames == []
    assert (closed.code, closed.reason) == (1009, "message too big")
    assert closed.rcvd == Close(1009, "message too big")


async def test_fragmented_message_over_the_limit_closes_1009(shared_worker, user):
    async with session_open(shared_worker, user["access"]) as (ws, _):
        try:
            await ws.send(["z" * 10_000 for _ in range(10)])  # 10 frames, one 100 kB message
        except ConnectionClosed:
            pass
        closed = await until_closed(ws)
    assert closed.frames == []
    assert closed.rcvd == Close(1009, "message too big")


async def test_invalid_utf8_on_echo_closes_1007_with_a_close_frame(shared_worker):
    async with ws_connect(shared_worker, "/ws/echo/") as ws:
        ws.transport.write(frame_build(OP_TEXT, INVALID_UTF8))  # websockets will not send it
        closed = await until_closed(ws)
    assert closed.frames == []
    assert (closed.code, closed.reason) == (1007, "invalid UTF-8")
    assert closed.rcvd == Close(1007, "invalid UTF-8")


async def test_invalid_utf8_in_a_session_closes_1007_and_the_registry_records_1007(
    shared_worker, user
):
    async with session_open(shared_worker, user["access"]) as (ws, welcome):
        ws.transport.write(frame_build(OP_TEXT, INVALID_UTF8))
        closed = await until_closed(ws)
    assert closed.frames == []
    assert closed.rcvd == Close(1007, "invalid UTF-8")
    rows = await registry_closed(shared_worker, [welcome["session_id"]])
    assert rows[welcome["session_id"]]["close_code"] == 1007
    shared_worker.output_wait(
        "websocket protocol failure (encountered invalid UTF-8 while processing text message "
        "at payload octet index 30), closing 1007: path=/ws/session/ client=127.0.0.1"
    )


def test_a_non_ascii_subprotocol_is_refused_400_at_the_handshake(shared_worker):
    sock, head, rest = handshake_send(shared_worker, "/ws/echo/", (NON_ASCII_SUBPROTOCOL,))
    sock.close()
    assert head == b"HTTP/1.1 400 Invalid Sec-WebSocket-Protocol"
    assert rest == b""
    shared_worker.output_wait(
        "websocket handshake refused 400: non-ASCII Sec-WebSocket-Protocol: "
        "path=/ws/echo/ client=127.0.0.1"
    )


async def test_sustained_rate_abuse_closes_4008_with_its_reason(shared_worker, user):
    async with session_open(shared_worker, user["access"]) as (ws, _):
        await send_all(ws, [json.dumps({"type": "ping"})] * 150)
        closed = await until_closed(ws)
    frames = closed.json()
    rate_limited = {
        "type": "error",
        "code": "rate_limited",
        "message": "Too many messages; this one was dropped",
    }
    assert {"type": "pong"} in frames
    assert frames[-1] == rate_limited
    assert set(map(json.dumps, frames)) == {json.dumps({"type": "pong"}), json.dumps(rate_limited)}
    assert (closed.code, closed.reason) == (4008, "rate limited")


# -- stock daphne: why the fixes exist ------------------------------------------------------------


async def test_stock_daphne_turns_1003_into_1011_without_a_reason(stock_worker, stock_user):
    async with session_open(stock_worker, stock_user["access"]) as (ws, _):
        await ws.send(b"\x00\x01binary")
        closed = await until_closed(ws)
    assert (closed.code, closed.reason) == (1011, "")
    assert "invalid close code 1003" in stock_worker.output_wait("invalid close code 1003")


async def test_stock_daphne_turns_1009_into_1011_below_its_own_limit(stock_worker, stock_user):
    async with session_open(stock_worker, stock_user["access"]) as (ws, _):
        await send_all(ws, ["x" * 70_000])
        closed = await until_closed(ws)
    assert (closed.code, closed.reason) == (1011, "")


async def test_stock_daphne_drops_the_connection_above_its_own_limit(stock_worker, stock_user):
    async with session_open(stock_worker, stock_user["access"]) as (ws, _):
        await send_all(ws, ["x" * 2 * DAPHNE_MAX_MESSAGE])
        closed = await until_closed(ws)
    assert closed.rcvd is None  # no close frame at all
    assert closed.code == 1006


async def test_stock_daphne_drops_the_connection_on_invalid_utf8(stock_worker):
    async with ws_connect(stock_worker, "/ws/echo/") as ws:
        ws.transport.write(frame_build(OP_TEXT, INVALID_UTF8))
        closed = await until_closed(ws)
    assert closed.rcvd is None  # no close frame at all
    assert closed.code == 1006


def test_stock_daphne_answers_a_non_ascii_subprotocol_500(stock_worker):
    sock, head, _ = handshake_send(stock_worker, "/ws/echo/", (NON_ASCII_SUBPROTOCOL,))
    sock.close()
    assert head.startswith(b"HTTP/1.1 500 Internal server error: 'ascii' codec can't decode")


async def test_stock_daphne_drops_the_close_reason(stock_worker, stock_user):
    forged = token_forge(user_id=stock_user["id"], key=WRONG_KEY)
    async with ws_connect(stock_worker, f"/ws/session/?token={forged}") as ws:
        closed = await until_closed(ws)
    assert closed.json() == [UNAUTHORIZED]
    assert (closed.code, closed.reason) == (4500, "")


# -- memory ---------------------------------------------------------------------------------------


async def oversized_send(worker: Worker, size: int) -> Close | None:
    """Send one `size`-byte text frame to /ws/echo/ on a new connection; the close received."""
    async with ws_connect(worker, "/ws/echo/") as ws:
        await send_all(ws, ["y" * size])
        return (await until_closed(ws)).rcvd


async def test_memory_stays_flat_over_30_oversized_messages(start_worker):
    worker = start_worker()
    size = 900 * 1024
    for _ in range(3):  # warm up: imports, first allocations
        assert await oversized_send(worker, size) == Close(1009, "message too big")
    before = worker.rss_kib()
    for _ in range(30):
        assert await oversized_send(worker, size) == Close(1009, "message too big")
    await asyncio.sleep(0.5)
    after = worker.rss_kib()
    print(f"\nworker RSS: {before} KiB before, {after} KiB after 30 x {size} bytes")
    assert after - before < RSS_GROWTH_LIMIT_KIB


# -- access log -----------------------------------------------------------------------------------


async def test_token_in_the_query_string_never_reaches_any_output(shared_worker, user):
    with http_client(shared_worker) as client:
        response = client.get(f"/ws/session/?token={user['access']}")
    assert response.status_code == 404
    async with session_open(shared_worker, user["access"]) as (_, welcome):
        assert welcome["message"] == "Authenticated!"
    output = shared_worker.output_wait('"GET /ws/session/?token=[redacted]" 404')
    assert "WSDISCONNECT /ws/session/" in shared_worker.output_wait("WSDISCONNECT /ws/session/")
    assert user["access"] not in output
    assert user["access"].split(".")[2] not in output


def test_a_token_in_the_url_path_is_blanked_in_the_access_log_too(shared_worker, user):
    with http_client(shared_worker) as client:
        response = client.get(f"/api/tokens/{user['access']}/")
    assert response.status_code == 404
    output = shared_worker.output_wait('"GET /api/tokens/[redacted]/" 404')
    assert user["access"].split(".")[2] not in output


async def test_each_protocol_error_is_logged_with_its_code_but_not_the_clients_text(
    shared_worker, user
):
    secret_looking = "client-text-" + user["access"].split(".")[2][:20]
    async with session_open(shared_worker, user["access"]) as (ws, welcome):
        await ws.send(json.dumps({"type": secret_looking}))
        assert (await frame_json(ws))["code"] == "unknown_type"
    log = shared_worker.output_wait(
        f"protocol error unknown_type: session_id={welcome['session_id']}"
    )
    assert secret_looking not in log


def test_stock_daphne_writes_the_token_into_its_access_log(stock_worker, stock_user):
    with http_client(stock_worker) as client:
        response = client.get(f"/ws/session/?token={stock_user['access']}")
    assert response.status_code == 404
    output = stock_worker.output_wait(f"GET /ws/session/?token={stock_user['access']}")
    assert f'"GET /ws/session/?token={stock_user["access"]}" 404' in output
