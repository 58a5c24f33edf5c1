"""No request text stalls a worker (core/log_redaction.py): long URLs, query strings and
paths, written by daphne's access log (on the reactor thread) and in log messages.

A bystander's WebSocket pings the worker throughout; its round trip stays under 100 ms and it
is never dropped. twisted drops a connection whose request line is over 16 KB (no answer),
so the longest texts that reach a log are just under that; 64 KB ones are refused unstalled.
"""

import asyncio
import math
import socket
import threading
import time

import httpx
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_sync_connect

from tests.system.stack import Worker
from tests.system.wsclient import frame_recv, token_forge, ws_connect

PING_BUDGET = 0.100  # seconds: the bystander's worst ping round trip
PONG_WAIT = 30.0  # seconds a pong may take before the bystander counts itself dropped
LONG = 64 * 1024
NEAR_LIMIT = 15 * 1024  # with the request's other headers, just under twisted's 16 KB
ECHO_PREFIX = "Server received: "
ROUNDS = 5  # each long request is sent this many times


def long_requests(planted: str) -> list[tuple[str, str, str]]:
    """(name, kind, path and query) of each request the attacker sends, once each."""
    letters, tokens = "a" * NEAR_LIMIT, "token" * (NEAR_LIMIT // 5)
    return [
        ("letters in the query", "http", f"/healthz?{letters}"),
        ("'token' repeated in the query", "http", f"/healthz?{tokens}"),
        ("'eyJ' repeated in the query", "http", "/healthz?" + "eyJ" * (NEAR_LIMIT // 3)),
        ("'=' and '&' in the query", "http", "/healthz?" + "a=&" * (NEAR_LIMIT // 3)),
        ("a long path (logged: Not Found)", "http", f"/{letters}"),
        ("a secret after a long query", "http", f"/healthz?{letters}&token={planted}"),
        ("a 64 KB query", "raw", "/healthz?" + "a" * LONG),
        ("a 64 KB path", "raw", "/" + "a" * LONG),
        ("a WebSocket query", "ws", f"/ws/echo/?{tokens}"),
        ("a WebSocket path", "ws", f"/ws/{letters}/"),
        ("a 64 KB WebSocket query", "raw-ws", "/ws/echo/?" + "a" * LONG),
    ]


def raw_request_send(worker: Worker, target: str, *, upgrade: bool) -> str:
    """One request written on a socket (httpx and websockets refuse URLs over 64 KB): the
    status code of the answer."""
    headers = f"Host: 127.0.0.1:{worker.port}\r\n"
    if upgrade:
        headers += (
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        )
    with socket.create_connection(("127.0.0.1", worker.port), timeout=PONG_WAIT) as sock:
        try:
            sock.sendall(f"GET {target} HTTP/1.1\r\n{headers}\r\n".encode())
            answer = sock.makefile("rb").readline()
        except ConnectionResetError:
            answer = b""
    return answer.split()[1].decode() if answer else "closed"


def request_send(worker: Worker, client: httpx.Client, kind: str, target: str) -> str:
    """One request; what the server answered ("200", "101", "403", …) or the error's name."""
    try:
        if kind.startswith("raw"):
            return raw_request_send(worker, target, upgrade=kind == "raw-ws")
        if kind == "http":
            return str(client.get(target).status_code)
        with ws_sync_connect(f"{worker.ws}{target}", proxy=None, open_timeout=PONG_WAIT) as ws:
            ws.send("still here")
            return "101 " + ws.recv(timeout=PONG_WAIT)
    except InvalidStatus as e:
        return str(e.response.status_code)
    except Exception as e:  # a stalled server: the timeout says so
        return type(e).__name__


def attack_run(
    worker: Worker, requests, answers: dict[str, set[str]], stop: threading.Event
) -> None:
    """Send every request in turn, ROUNDS times or until `stop` (in a thread: the bystander's
    event loop stays free); each request's answers are collected in `answers`."""
    with httpx.Client(base_url=worker.http, timeout=PONG_WAIT, trust_env=False) as client:
        for _ in range(ROUNDS):
            for name, kind, target in requests:
                if stop.is_set():
                    return
                answers.setdefault(name, set()).add(request_send(worker, client, kind, target))


async def pings_while(ws, attacker: threading.Thread) -> list[float]:
    """Ping the worker while `attacker` runs: each round trip, in seconds; a pong that does
    not come within PONG_WAIT ends the list with infinity."""
    round_trips = []
    while attacker.is_alive():
        start = time.perf_counter()
        pong = await ws.ping()
        try:
            await asyncio.wait_for(pong, PONG_WAIT)
        except TimeoutError:
            return [*round_trips, math.inf]
        round_trips.append(time.perf_counter() - start)
        await asyncio.sleep(0.01)
    return round_trips


# The bystander pings back to back (up to ~100 a second when the worker is quick): above the
# control-frame limit (WS_MESSAGES_PER_SECOND, 20), a ping is not answered, which would read
# as a stall. This test measures stalls, not that limit (tests/system/test_control_frames.py).
NO_CONTROL_FRAME_LIMIT = {"WS_MESSAGES_PER_SECOND": "1000000", "WS_MESSAGE_BURST": "1000000"}


async def test_long_urls_and_paths_never_stall_a_bystanders_pings(start_worker):
    worker = start_worker(**NO_CONTROL_FRAME_LIMIT)
    planted = token_forge(user_id=1)
    answers: dict[str, set[str]] = {}
    stop = threading.Event()
    # Warm up with short requests: a worker's first request and first 404 load code.
    async with httpx.AsyncClient(base_url=worker.http, timeout=PONG_WAIT, trust_env=False) as c:
        assert [(await c.get(path)).status_code for path in ("/healthz", "/nowhere")] == [200, 404]
    async with ws_connect(worker, "/ws/echo/", ping_interval=None) as bystander:
        await bystander.send("before")
        assert await frame_recv(bystander) == ECHO_PREFIX + "before"
        attacker = threading.Thread(
            target=attack_run, args=(worker, long_requests(planted), answers, stop)
        )
        attacker.start()
        try:
            round_trips = await pings_while(bystander, attacker)
        finally:
            stop.set()
            await asyncio.to_thread(attacker.join, PONG_WAIT)
        slow = [round(seconds, 3) for seconds in round_trips if seconds >= PING_BUDGET]
        assert slow == [], f"ping round trips over {PING_BUDGET} s (inf: no pong in {PONG_WAIT} s)"
        await bystander.send("after")
        assert await frame_recv(bystander) == ECHO_PREFIX + "after"

    print(f"\n{len(round_trips)} pings, worst round trip {max(round_trips) * 1000:.1f} ms")
    assert answers == {
        "letters in the query": {"200"},
        "'token' repeated in the query": {"200"},
        "'eyJ' repeated in the query": {"200"},
        "'=' and '&' in the query": {"200"},
        "a long path (logged: Not Found)": {"404"},
        "a secret after a long query": {"200"},
        "a 64 KB query": {"closed"},
        "a 64 KB path": {"closed"},
        "a WebSocket query": {"101 " + ECHO_PREFIX + "still here"},
        "a WebSocket path": {"403"},
        "a 64 KB WebSocket query": {"closed"},
    }
    output = worker.output_wait("&token=[redacted]")
    assert planted.split(".")[2] not in output
    assert "WARNING django.request" in output and "Not Found: /aaaa" in output
    assert " chars cut]...aaaa" in output  # the 15 KB path, bounded in LOG_FILE
