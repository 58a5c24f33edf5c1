"""The server-facing suite, on every ASGI server: each test runs on daphne and uvicorn (the
supported ones) and on granian (evaluated: where it fails, the test is a strict xfail naming
why, so that a granian release that passes turns it red and the evaluation is done again).

Each worker is started with deploy/servers.py's command line for its server.
"""

import asyncio
import contextlib
import json
import re
import signal
import socket
import struct
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.frames import Close

from deploy.servers import GRACEFUL_SHUTDOWN_SECONDS, SERVER_NAMES, SUPPORTED
from realtime.server.connection_limits import MAX_FRAGMENTS
from tests.system.conftest import user_register
from tests.system.rawws import (
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    frame_build,
    frames_parse,
    handshake_send,
    received_until_closed,
)
from tests.system.scenarios import logout_all_through_worker_2_closes_a_session_on_worker_1
from tests.system.stack import Worker
from tests.system.test_client_system import client_for, until, who
from tests.system.test_session_registry_system import registry_closed
from tests.system.wsclient import (
    frame_json,
    frame_recv,
    send_all,
    session_open,
    token_forge,
    until_closed,
    ws_connect,
)

GRANIAN_DROPS_ON_SIGTERM = (
    "granian closes every WebSocket without a close frame on SIGTERM, before the "
    "application's lifespan shutdown can send 1001 (emmett-framework/granian#796)"
)
GRANIAN_NO_FRAGMENT_CAP = "granian keeps every fragment of a message, with no cap"
FRAGMENTS = 200_000  # empty continuation frames, 6 bytes each: a 1.2 MB message of 1 byte
GRANIAN_NO_1007 = "granian closes a text frame of invalid UTF-8 1005, without a code or reason"
# The close every server sends its open sockets on SIGTERM (uvicorn's adapter replaces its
# own 1012 with no reason, daphne's adapter its dropped connections).
SIGTERM_CLOSE = (1001, "server going away")
UNAUTHORIZED = {"type": "error", "code": "unauthorized", "message": "Unauthorized"}
WRONG_KEY = "not-the-signing-key-but-just-as-long-0123456789"


def servers(*, granian_fails: str | None = None) -> pytest.MarkDecorator:
    """Run the test on every server; on granian as a strict xfail when `granian_fails`."""
    params = [pytest.param(name, id=name) for name in SUPPORTED]
    for name in SERVER_NAMES:
        if name not in SUPPORTED:
            xfail = pytest.mark.xfail(strict=True, raises=AssertionError, reason=granian_fails)
            marks = [xfail] if granian_fails else []
            params.append(pytest.param(name, id=name, marks=marks))
    return pytest.mark.parametrize("server", params)


@pytest.fixture(scope="module", params=SERVER_NAMES)
def module_worker(request, start_module_worker) -> Worker:
    """One worker per server for the module's tests that need no settings of their own."""
    return start_module_worker(server=request.param, name=f"servers-{request.param}")


@pytest.fixture(scope="module")
def user(module_worker) -> dict:
    return user_register(module_worker)


# -- the protocol, on a worker per server ---------------------------------------------------


async def test_echo_prefixes_text_and_returns_binary_unchanged(module_worker):
    async with ws_connect(module_worker, "/ws/echo/") as ws:
        await ws.send("hello")
        assert await frame_recv(ws) == "Server received: hello"
        await ws.send(b"\x00\xffbinary")
        assert await frame_recv(ws) == b"\x00\xffbinary"


async def test_a_session_welcomes_echoes_and_pongs(module_worker, user):
    async with session_open(module_worker, user["access"]) as (ws, welcome):
        assert (welcome["message"], welcome["user"]) == (
            "Authenticated!",
            {"id": user["id"], "username": user["username"]},
        )
        await ws.send(json.dumps({"type": "echo", "data": [1, "two"], "id": "e1"}))
        assert await frame_json(ws) == {"type": "echo", "data": [1, "two"], "id": "e1"}
        await ws.send(json.dumps({"type": "ping", "id": 7}))
        assert await frame_json(ws) == {"type": "pong", "id": 7}


async def test_a_binary_frame_closes_1003_with_its_reason(module_worker, user):
    async with session_open(module_worker, user["access"]) as (ws, _):
        await ws.send(b"\x00\x01binary")
        closed = await until_closed(ws)
    assert closed.rcvd == Close(1003, "binary frames are not supported")


async def test_21_protocol_errors_close_1008_with_its_reason(module_worker, user):
    async with session_open(module_worker, user["access"]) as (ws, _):
        assert await send_all(ws, ["not json"] * 21) == 21
        closed = await until_closed(ws)
    invalid_json = {"type": "error", "code": "invalid_json", "message": "Frame is not valid JSON"}
    assert closed.json() == [invalid_json] * 21
    assert closed.rcvd == Close(1008, "too many protocol errors")


async def test_an_oversized_frame_closes_1009_and_the_worker_serves_on(module_worker, user):
    async with session_open(module_worker, user["access"]) as (ws, _):
        await send_all(ws, ["x" * 70_000])
        closed = await until_closed(ws)
    assert (closed.frames, closed.rcvd) == ([], Close(1009, "message too big"))
    output = module_worker.output_wait("closing 1009: ")
    assert re.search(r"too big.*, closing 1009: .*path=/ws/session/ client=127\.0\.0\.1", output)
    async with session_open(module_worker, user["access"]) as (ws, _):
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        assert await frame_json(ws) == {"type": "pong", "id": 1}


async def test_invalid_utf8_closes_1007_records_it_and_says_so_in_the_log(
    module_worker, user, request
):
    if module_worker.server == "granian":
        request.applymarker(
            pytest.mark.xfail(strict=True, raises=AssertionError, reason=GRANIAN_NO_1007)
        )
    async with session_open(module_worker, user["access"]) as (ws, welcome):
        ws.transport.write(frame_build(OP_TEXT, "caf\u00e9".encode("latin-1")))  # not UTF-8
        closed = await until_closed(ws)
    assert (closed.frames, closed.rcvd) == ([], Close(1007, "invalid UTF-8"))
    rows = await registry_closed(module_worker, [welcome["session_id"]])
    assert rows[welcome["session_id"]]["close_code"] == 1007
    module_worker.output_wait("closing 1007: path=/ws/session/ client=127.0.0.1")
    assert "Traceback" not in module_worker.log_text()


def test_a_message_in_endless_empty_fragments_closes_1009_and_the_worker_serves_on(
    module_worker, request
):
    if module_worker.server == "granian":
        request.applymarker(
            pytest.mark.xfail(strict=True, raises=AssertionError, reason=GRANIAN_NO_FRAGMENT_CAP)
        )
    sock, head, rest = handshake_send(module_worker, "/ws/echo/")
    assert head.startswith(b"HTTP/1.1 101 "), head
    flood = frame_build(OP_TEXT, b"x", fin=False) + frame_build(OP_CONT, fin=False) * FRAGMENTS
    sock.settimeout(30)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(flood)
    received, _ = received_until_closed(sock, within=15)
    sock.close()
    frames, _ = frames_parse(rest + received)
    assert [f.close for f in frames if f.opcode == OP_CLOSE] == [(1009, "message too big")]
    module_worker.output_wait("closing 1009: path=/ws/echo/")


# A message whose last fragment comes after the bound, and the client's close after it, in one
# write. daphne reads frame by frame: it closes 1009 at the fragment past the bound, and the
# client's close answers that. uvicorn's websockets parses the whole read first: the client's
# close came first, and is echoed. Either way one close frame, and nothing of the message.
CLOSE_AFTER_THE_FRAGMENT_BOUND = {"daphne": (1009, "message too big"), "uvicorn": (1000, "bye")}
DAPHNE_ABORTS_ITS_CLOSE = (
    "autobahn takes the client's close for the answer to its 1009 and aborts the TCP "
    "connection, which discards that 1009 while it is still unsent (same read)"
)


def test_a_close_in_the_write_of_the_fragment_past_the_bound_gets_one_close_frame_back(
    module_worker, request
):
    reason = {"daphne": DAPHNE_ABORTS_ITS_CLOSE, "granian": GRANIAN_NO_FRAGMENT_CAP}
    if module_worker.server in reason:
        xfail = pytest.mark.xfail(
            strict=True, raises=AssertionError, reason=reason[module_worker.server]
        )
        request.applymarker(xfail)
    sock, head, rest = handshake_send(module_worker, "/ws/echo/")
    assert head.startswith(b"HTTP/1.1 101 "), head
    message = frame_build(OP_TEXT, b"x", fin=False)
    message += frame_build(OP_CONT, fin=False) * MAX_FRAGMENTS  # the last: fragment 1,025
    message += frame_build(OP_CONT)
    sock.sendall(message + frame_build(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
    received, cut = received_until_closed(sock, within=15)
    sock.close()
    frames, left = frames_parse(rest + received)
    expected = CLOSE_AFTER_THE_FRAGMENT_BOUND.get(module_worker.server, (1000, "bye"))
    assert [(f.opcode, f.payload) for f in frames] == [
        (OP_CLOSE, struct.pack("!H", expected[0]) + expected[1].encode())
    ]
    assert (left, cut) == (b"", True)


async def test_a_forged_token_closes_4500_and_an_expired_one_4001(module_worker, user):
    forged = token_forge(user_id=user["id"], key=WRONG_KEY)
    async with ws_connect(module_worker, f"/ws/session/?token={forged}") as ws:
        closed = await until_closed(ws)
    assert (closed.json(), closed.rcvd) == ([UNAUTHORIZED], Close(4500, "unauthorized"))
    expired = token_forge(user_id=user["id"], lifetime=-60)
    async with ws_connect(module_worker, f"/ws/session/?token={expired}") as ws:
        closed = await until_closed(ws)
    token_expired = {"type": "error", "code": "token_expired", "message": "Token Expired"}
    assert (closed.json(), closed.rcvd) == ([token_expired], Close(4001, "token expired"))


# -- two workers, restarts and SIGTERM: workers of the test's own ---------------------------


@servers()
async def test_logout_all_through_worker_2_closes_a_session_on_worker_1(start_worker, server):
    workers = start_worker(server=server), start_worker(server=server)
    await logout_all_through_worker_2_closes_a_session_on_worker_1(*workers)


@servers(granian_fails=GRANIAN_DROPS_ON_SIGTERM)
async def test_sigterm_closes_each_socket_records_it_refuses_new_ones_and_exits(
    start_worker, server
):
    worker = start_worker(server=server)
    user = user_register(worker)
    # Refused handshakes must not hold the shutdown up (channels' denier kept uvicorn
    # waiting for a disconnect until its graceful timeout ran out: 10.2 s).
    for _ in range(3):
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(worker, "/ws/echo/", origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
    async with (
        session_open(worker, user["access"]) as (session, welcome),
        ws_connect(worker, "/ws/echo/") as echo,
    ):
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        closes = [
            await until_closed(ws, within=GRACEFUL_SHUTDOWN_SECONDS) for ws in (session, echo)
        ]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", worker.port), timeout=5).close()
    worker.proc.wait(timeout=GRACEFUL_SHUTDOWN_SECONDS + 5)
    stopped = time.monotonic() - started

    code, reason = SIGTERM_CLOSE
    assert [c.rcvd for c in closes] == [Close(code, reason)] * 2
    rows = await registry_closed(worker, [welcome["session_id"]])
    assert rows[welcome["session_id"]]["close_code"] == code
    assert worker.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert stopped < GRACEFUL_SHUTDOWN_SECONDS
    # The shutdown ran to its end: the worker's sessions recorded, its heartbeat dropped.
    assert re.search(
        r"shutting down: \d+ session\(s\) recorded closed with 1001", worker.log_text()
    )
    assert "could not" not in worker.log_text()


@servers(granian_fails=GRANIAN_DROPS_ON_SIGTERM)
async def test_the_python_client_reconnects_after_a_restart_and_resubscribes(
    start_worker, server, caplog
):
    caplog.set_level("INFO", logger="switchboard_client")
    worker = start_worker(server=server)
    alice, bob = user_register(worker), user_register(worker)
    async with asyncio.timeout(60), client_for(worker, alice) as client:
        room = await client.subscribe("restart-room")
        first_session = client.session_id
        await asyncio.to_thread(worker.stop)
        connections = client.connections
        await asyncio.to_thread(worker.start)  # the same port
        await until(lambda: client.connected and client.connections > connections, within=15)

        assert client.session_id != first_session
        code, reason = SIGTERM_CLOSE
        assert f"connection closed {code} {reason}" in caplog.messages
        async with client_for(worker, bob) as publisher:
            await publisher.publish("restart-room", "after the restart")
        message = await anext(room)
        assert (message["data"], message["from"]) == ("after the restart", who(bob))
