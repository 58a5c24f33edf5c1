"""Control frames count against a connection's limits, on every supported server (daphne,
and uvicorn through its adapter): a client that pings and never reads is closed (4008 over the
rate, 4009 past the send backlog) and the worker's memory stays flat while another client
keeps working."""

import asyncio
import socket
import time

import pytest

from deploy.servers import SUPPORTED
from tests.system.rawws import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    frame_build,
    frames_parse,
    handshake_send,
    received_until_closed,
)
from tests.system.stack import Worker
from tests.system.wsclient import frame_recv, ws_connect

FLOOD_BYTES = 100 * 1024 * 1024  # of ping frames, 131 bytes each: some 800,000 pings
FLOOD_SECONDS = 60.0  # a bound on the flood, never reached when the server closes it
RSS_GROWTH_LIMIT_KIB = 10 * 1024
PING_PAYLOAD = b"p" * 125  # the largest a control frame may carry
BURST = 40  # WS_MESSAGE_BURST's default
# What the flooder may read before the close: the send backlog, and what the kernel's socket
# buffers hold (several MiB on loopback), which no server can take back.
RECEIVED_LIMIT = 64 * 1024 * 1024
CUT_WAIT = 15.0  # seconds the server may take to cut a connection once the flood stops
# Seconds: the other client's echo keeps coming back meanwhile. A stalled loop would hold it for
# the whole flood (5 s and more); on two shared cores a pong flood on uvicorn takes it to 1.7 s
# on a quiet machine and 2.2 s under a full test run, so the bound sits above both.
BYSTANDER_SLOWEST = 3.0
NO_RATE_LIMIT = {"WS_MESSAGES_PER_SECOND": "1000000", "WS_MESSAGE_BURST": "1000000"}


def ping_flood(sock: socket.socket, *, total: int, within: float) -> tuple[int, bool]:
    """Write ping frames and never read, until `total` bytes are written, the server cuts the
    connection, or `within` seconds pass: (bytes written, whether the server cut it)."""
    chunk = frame_build(OP_PING, PING_PAYLOAD) * 500  # ~64 KiB of whole frames
    sock.settimeout(30)  # the server always reads: a write never waits that long
    sent, deadline = 0, time.monotonic() + within
    while sent < total and time.monotonic() < deadline:
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return sent, True
        sent += len(chunk)
    return sent, False


async def bystander_echo(ws, n: int) -> float:
    """One echo round trip on the bystander's connection; the seconds it took."""
    started = time.monotonic()
    await ws.send(f"bystander {n}")
    assert await frame_recv(ws) == f"Server received: bystander {n}"
    return time.monotonic() - started


async def flood_beside_a_bystander(worker: Worker) -> dict:
    """Flood /ws/echo/ with pings from a client that never reads while another client echoes
    every 0.2 s; what the flooder wrote and received, the worker's RSS growth, the bystander's
    slowest round trip."""
    async with ws_connect(worker, "/ws/echo/") as bystander:
        await bystander_echo(bystander, 0)  # warm up: the worker's first allocations
        sock, head, rest = handshake_send(worker, "/ws/echo/")
        assert head.startswith(b"HTTP/1.1 101 "), head
        rss_before = worker.rss_kib()
        started = time.monotonic()
        flood = asyncio.create_task(
            asyncio.to_thread(ping_flood, sock, total=FLOOD_BYTES, within=FLOOD_SECONDS)
        )
        slowest, n = 0.0, 0
        while not flood.done():
            n += 1
            slowest = max(slowest, await bystander_echo(bystander, n))
            await asyncio.sleep(0.2)
        sent, cut_while_flooding = await flood
        elapsed = time.monotonic() - started
        rss_after = worker.rss_kib()
        # Once the flood stops, whatever the server sent, and whether it cuts the connection.
        received, cut = await asyncio.to_thread(
            received_until_closed, sock, within=CUT_WAIT, limit=RECEIVED_LIMIT
        )
        sock.close()
        await bystander_echo(bystander, n + 1)  # still open and answering
    print(
        f"\nping flood: {sent} bytes written in {elapsed:.1f} s, cut while flooding: "
        f"{cut_while_flooding}, cut: {cut}; worker RSS {rss_before} -> {rss_after} KiB; "
        f"bystander: {n} echoes, slowest {slowest:.3f} s"
    )
    frames, leftover = frames_parse(rest + received)
    return {
        "sent": sent,
        "cut_while_flooding": cut_while_flooding,
        "cut": cut_while_flooding or cut,
        "growth_kib": rss_after - rss_before,
        "frames": frames,
        "leftover": leftover,
        "slowest": slowest,
    }


@pytest.fixture(scope="module", params=SUPPORTED)
def worker(request, start_module_worker) -> Worker:
    return start_module_worker(redis=False, server=request.param)


async def test_a_never_reading_client_flooding_pings_is_closed_4008_and_the_worker_stays_small(
    worker,
):
    flood = await flood_beside_a_bystander(worker)

    assert flood["cut"] is True
    assert flood["growth_kib"] < RSS_GROWTH_LIMIT_KIB
    *pongs, close = flood["frames"]
    assert close.opcode == OP_CLOSE
    assert close.close == (4008, "rate limited")
    assert {(f.opcode, f.payload) for f in pongs} == {(OP_PONG, PING_PAYLOAD)}
    assert BURST <= len(pongs) <= BURST + 2  # the burst, and what refilled in milliseconds
    assert flood["leftover"] == b""
    assert flood["slowest"] < BYSTANDER_SLOWEST
    worker.output_wait("websocket control frame flood, closing 4008: path=/ws/echo/")


@pytest.mark.parametrize("server", SUPPORTED)
async def test_pongs_count_against_the_send_backlog_a_never_reading_pinger_is_closed_4009(
    start_worker, server
):
    worker = start_worker(redis=False, server=server, **NO_RATE_LIMIT)

    flood = await flood_beside_a_bystander(worker)

    assert flood["cut"] is True
    assert flood["growth_kib"] < RSS_GROWTH_LIMIT_KIB
    # The 4009 close frame waits behind the unread pongs: it is read only when the client
    # happens to drain them first; the log always shows it.
    *pongs, last = flood["frames"]
    assert {f.opcode for f in pongs} == {OP_PONG}
    assert last.opcode == OP_PONG or last.close == (4009, "slow client")
    assert flood["slowest"] < BYSTANDER_SLOWEST
    worker.output_wait("slow client: ")
    assert "(limit 1048576), closing 4009: path=/ws/echo/" in worker.log_text()
