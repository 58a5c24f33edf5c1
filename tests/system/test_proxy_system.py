"""Per-client limits over real workers: the connection rate per address across workers, a
client that stops reading shed with 4009 (on every supported server) while a reader of the
same room gets every message, and the client address as nginx passes it on."""

import asyncio
import json
import random
import socket
import string
import time

import pytest
import redis
from websockets.exceptions import InvalidStatus

from deploy.servers import SUPPORTED
from tests.system.conftest import http_client, user_register
from tests.system.test_session_registry_system import registry_closed, sessions_list
from tests.system.wsclient import frame_json, frame_recv, session_open, until_closed, ws_connect

RATE_REFUSED = {
    "type": "error",
    "code": "rate_limited",
    "message": "Too many connections from your address; wait a minute before reconnecting",
}


# -- connections per minute per address -------------------------------------------------------


async def test_the_fourth_connection_in_a_minute_from_one_address_is_refused_4008_by_any_worker(
    start_worker, redis_server
):
    # The count for 127.0.0.1 at 3/minute starts at zero (an earlier run may have left hits).
    store = redis.Redis(port=redis_server.port, socket_timeout=2)
    try:
        for key in store.scan_iter(match="*LIMITER/ws-connects/127.0.0.1/3/*"):
            store.delete(key)
    finally:
        store.close()
    worker1 = start_worker(WS_CONNECTS_PER_MINUTE="3")
    worker2 = start_worker(WS_CONNECTS_PER_MINUTE="3")
    alice = user_register(worker1)

    for worker in (worker1, worker2, worker1):
        async with session_open(worker, alice["access"]):
            pass
    # A bad token: had the connection reached authentication, the log would say so.
    async with ws_connect(worker2, "/ws/session/?token=not-a-token") as ws:
        fourth = await until_closed(ws)
    async with ws_connect(worker1, f"/ws/session/?token={alice['access']}") as ws:
        fifth = await until_closed(ws)

    for refused in (fourth, fifth):
        assert refused.json() == [RATE_REFUSED]
        assert (refused.code, refused.reason) == (4008, "rate limited")
    worker2.output_wait(
        "websocket connection rate exceeded (3/minute), closing 4008: "
        "path=/ws/session/ client=127.0.0.1"
    )
    assert "websocket auth failed" not in worker2.log_text()


# -- a client that stops reading -----------------------------------------------------------

SLOW_ENV = {
    # Shed past one largest message queued; the publisher may send as fast as it likes.
    "WS_MAX_MESSAGE_BYTES": "65536",
    "WS_MAX_SEND_BACKLOG": "65536",
    "WS_MESSAGES_PER_SECOND": "10000",
    "WS_MESSAGE_BURST": "10000",
}
# Each message ~16 kB, of letters that do not compress: a server that negotiates
# permessage-deflate must still queue what it cannot send.
PAD = "".join(random.Random(9).choices(string.ascii_letters, k=16_000))
WINDOW = 20  # messages in flight: far below the channel layer's per-channel capacity (100)
FLOOD_MAX = 2000  # ~32 MB: a bound, never reached when shedding works
AFTER_SHED = 5  # windows still published (and read by the reader) once the shed is logged


def socket_small_receive_buffer(port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` whose receive buffer (and so TCP window) is small:
    once its owner stops reading, what the server sends piles up on the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def subscribe(ws, room: str) -> None:
    await ws.send(json.dumps({"type": "subscribe", "channel": room}))
    assert await frame_json(ws) == {"type": "subscribed", "channel": room}


@pytest.mark.parametrize("server", SUPPORTED)
async def test_a_client_that_stops_reading_is_closed_4009_and_a_reader_gets_every_message(
    start_worker, server
):
    worker = start_worker(server=server, **SLOW_ENV)
    reader_user, slow_user, publisher_user = (user_register(worker) for _ in range(3))
    room = "flood"
    sock = socket_small_receive_buffer(worker.port)
    async with (
        session_open(worker, reader_user["access"]) as (reader, _),
        # max_queue=1: past one unread frame, the client stops reading its socket.
        session_open(worker, slow_user["access"], sock=sock, max_queue=1) as (slow, slow_welcome),
        session_open(worker, publisher_user["access"]) as (publisher, _),
        asyncio.timeout(60),
    ):
        for ws in (reader, slow):
            await subscribe(ws, room)
        # From here on the slow client reads nothing until it is shed.
        received: list[dict] = []
        sent, shed_at = 0, None
        while sent < FLOOD_MAX:
            batch = range(sent, sent + WINDOW)
            for n in batch:
                data = {"n": n, "pad": PAD}
                await publisher.send(json.dumps({"type": "publish", "channel": room, "data": data}))
            replies = [await frame_json(publisher) for _ in batch]
            assert replies == [{"type": "published", "channel": room}] * WINDOW
            received += [await frame_json(reader) for _ in batch]
            sent += WINDOW
            if shed_at is None and "slow client: " in worker.log_text():
                shed_at = sent
            if shed_at is not None and sent >= shed_at + AFTER_SHED * WINDOW:
                break
        assert shed_at is not None, f"no slow client shed after {sent} messages"

        # Reading again (well within its 10 s), it finds the first messages, then the close.
        closed = await until_closed(slow, limit=sent, within=8)

    assert (closed.code, closed.reason) == (4009, "slow client")
    heard = [frame["data"]["n"] for frame in closed.json()]
    assert heard == list(range(len(heard))), heard  # a whole prefix: no frame cut or skipped
    assert len(heard) < shed_at
    assert [(m["type"], m["channel"], m["data"]) for m in received] == [
        ("message", room, {"n": n, "pad": PAD}) for n in range(sent)
    ]
    assert "(limit 65536), closing 4009: path=/ws/session/ client=127.0.0.1" in worker.log_text()
    session_id = slow_welcome["session_id"]
    rows = await registry_closed(worker, [session_id])
    assert rows[session_id]["close_code"] == 4009


# -- behind nginx ------------------------------------------------------------------------------


def socket_from(address: str, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` from the loopback address `address`."""
    sock = socket.socket()
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


async def test_behind_nginx_the_registry_records_the_clients_address_not_a_forged_one(
    start_worker, start_nginx
):
    worker1 = start_worker(TRUSTED_PROXIES="127.0.0.1/32")
    worker2 = start_worker(TRUSTED_PROXIES="127.0.0.1/32")
    proxy = start_nginx([worker1.port, worker2.port])
    alice = user_register(worker1)
    token_query = f"/ws/session/?token={alice['access']}"

    async with (
        ws_connect(proxy, token_query, sock=socket_from("127.0.0.2", proxy.port)) as plain,
        ws_connect(
            proxy,
            token_query,
            sock=socket_from("127.0.0.2", proxy.port),
            additional_headers={"X-Forwarded-For": "6.6.6.6"},
        ) as forged,
    ):
        welcomes = [await frame_json(plain), await frame_json(forged)]
        assert [w["type"] for w in welcomes] == ["welcome", "welcome"]
        listed = await sessions_list(worker2, alice)
    # Both handshakes completed before either session was recorded: any order.
    assert sorted((s["id"], s["client_ip"]) for s in listed) == sorted(
        (w["session_id"], "127.0.0.2") for w in welcomes
    )

    # nginx writes a WebSocket's line when it ends.
    deadline = time.monotonic() + 5
    while (log := proxy.access_log()).count(" 101 ") < 2:
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.1)
    lines = [line for line in log.splitlines() if " 101 " in line]
    assert len(lines) == 2, log
    for line in lines:
        assert line.startswith("127.0.0.2 - "), line
        assert '"GET /ws/session/ HTTP/1.1" 101 ' in line, line  # the path, no query
    assert alice["access"] not in log


def forged_from_127_0_0_2(worker, user: dict):
    """A session opened from 127.0.0.2 that claims `X-Forwarded-For: 6.6.6.6`."""
    return ws_connect(
        worker,
        f"/ws/session/?token={user['access']}",
        sock=socket_from("127.0.0.2", worker.port),
        additional_headers={"X-Forwarded-For": "6.6.6.6"},
    )


async def test_a_forwarded_for_header_from_an_untrusted_peer_changes_nothing(start_worker):
    # The worker trusts 127.0.0.1 only; this client connects from 127.0.0.2 directly.
    worker = start_worker(TRUSTED_PROXIES="127.0.0.1/32")
    alice = user_register(worker)

    async with forged_from_127_0_0_2(worker, alice) as forged:
        welcome = await frame_json(forged)
        listed = await sessions_list(worker, alice)

    assert [(s["id"], s["client_ip"]) for s in listed] == [(welcome["session_id"], "127.0.0.2")]


async def test_without_trusted_proxies_forwarded_for_is_ignored_and_logged_once(start_worker):
    worker = start_worker()
    alice = user_register(worker)

    for _ in range(2):
        async with forged_from_127_0_0_2(worker, alice) as forged:
            welcome = await frame_json(forged)
            listed = await sessions_list(worker, alice)
            assert [s["client_ip"] for s in listed if s["id"] == welcome["session_id"]] == [
                "127.0.0.2"
            ]

    worker.output_wait("TRUSTED_PROXIES is empty")
    log = worker.log_text()
    assert log.count("X-Forwarded-For arrived from 127.0.0.2 but TRUSTED_PROXIES is empty") == 1


async def test_a_client_sent_daphne_root_path_does_not_reroute_a_request(start_worker):
    worker = start_worker()

    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(worker, "/x/ws/echo/", additional_headers={"Daphne-Root-Path": "/x"}):
            pass
    with http_client(worker) as client:
        rerouted = client.get("/x/healthz", headers={"Daphne-Root-Path": "/x"})

    assert refused.value.response.status_code == 403  # not the echo consumer: unknown path
    assert rerouted.status_code == 404
    async with ws_connect(worker, "/ws/echo/", additional_headers={"Daphne-Root-Path": "/x"}) as ws:
        await ws.send("still here")
        assert await frame_recv(ws) == "Server received: still here"
