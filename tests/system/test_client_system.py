"""The Python client (switchboard_client) against real daphne workers and a real Redis: requests,
rooms, a worker restart, rooms recovered from their history across one, in-band token refresh,
the typed fatal closes, and the command line."""

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from switchboard_client import (
    Backoff,
    ConnectionLost,
    MessagesMissed,
    MissReason,
    RateLimited,
    RequestError,
    SessionRevoked,
    SwitchboardClient,
    TokenExpired,
    Tokens,
    TooManySessions,
    Unauthorized,
)
from tests.system.conftest import PASSWORD, token_refresh, user_register
from tests.system.stack import ROOT, RedisServer, Worker
from tests.system.test_room_fanout_system import group_members

TIMEOUT = 20  # every test's whole body, at most
# Two namespaces with history: one deep enough to replay a restart's messages, one too short.
HISTORY_NAMESPACES = json.dumps(
    {
        "chat": {"history_size": 100, "history_ttl": 300},
        "brief": {"history_size": 2, "history_ttl": 300},
    }
)


@pytest.fixture(scope="module")
def strict_worker(start_module_worker) -> Worker:
    """Access tokens live 3 s (expiry warning 1 s before); one session per user."""
    return start_module_worker(
        JWT_ACCESS_TTL="3", WS_EXPIRY_WARNING="1", WS_MAX_SESSIONS_PER_USER="1"
    )


def client_for(worker: Worker, user: dict, **kwargs) -> SwitchboardClient:
    """A client logging in as `user`, reconnecting fast (tests wait for it)."""
    kwargs.setdefault("password", PASSWORD)
    kwargs.setdefault("backoff", Backoff(base=0.05, cap=0.5))
    return SwitchboardClient(
        worker.http, username=user["username"], request_timeout=5, trust_env=False, **kwargs
    )


def who(user: dict) -> dict:
    return {"id": user["id"], "username": user["username"]}


def without_ts(frame: dict) -> dict:
    assert frame["ts"].endswith("Z"), frame
    return {key: value for key, value in frame.items() if key != "ts"}


async def until(condition: Callable[[], bool], *, within: float) -> None:
    """Wait until `condition()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- requests and rooms -------------------------------------------------------------------


async def test_two_clients_echo_ping_and_exchange_a_room_message(shared_worker):
    alice, bob = user_register(shared_worker), user_register(shared_worker)
    async with (
        asyncio.timeout(TIMEOUT),
        client_for(shared_worker, alice) as a,
        client_for(shared_worker, bob) as b,
    ):
        assert a.user == who(alice)
        assert a.connected
        assert await a.echo({"hello": ["world", 1, None]}) == {"hello": ["world", 1, None]}
        rtt = await a.ping()
        assert 0 < rtt < 5

        room = await a.subscribe("client-room")
        await b.publish("client-room", {"n": 1})
        message = await anext(room)
        assert without_ts(message) == {
            "type": "message",
            "channel": "client-room",
            "data": {"n": 1},
            "from": who(bob),
        }
        assert await b.presence("client-room") == [who(alice)]
        await room.aclose()
        assert await b.presence("client-room") == []


async def test_an_error_reply_raises_request_error_in_the_call_that_asked(shared_worker):
    user = user_register(shared_worker)
    async with asyncio.timeout(TIMEOUT), client_for(shared_worker, user) as client:
        with pytest.raises(RequestError) as refused:
            await client.subscribe("staff.only")
        assert (refused.value.code, refused.value.message) == (
            "forbidden",
            "Not allowed on this channel",
        )
        with pytest.raises(RequestError) as invalid:
            await client.publish("no spaces", 1)
        assert invalid.value.code == "invalid_channel"
        assert await client.ping() > 0  # the session carries on


async def test_rate_limited_requests_raise_rate_limited_and_the_rest_are_answered(shared_worker):
    # 60 pings at once against the default bucket (burst 40, 20/s): the dropped frames'
    # errors carry no id, yet each lands in the call whose frame was dropped.
    user = user_register(shared_worker)
    async with asyncio.timeout(TIMEOUT), client_for(shared_worker, user) as client:
        results = await asyncio.gather(*(client.ping() for _ in range(60)), return_exceptions=True)
    limited = [r for r in results if isinstance(r, RateLimited)]
    answered = [r for r in results if isinstance(r, float)]
    assert len(limited) + len(answered) == 60, [r for r in results if isinstance(r, Exception)]
    assert 40 <= len(answered) < 60
    assert {(e.code, e.message) for e in limited} == {
        ("rate_limited", "Too many messages; this one was dropped")
    }


# -- reconnect and refresh ----------------------------------------------------------------


# The reconnect after a worker restart: tests/system/test_servers.py, on every server.


async def test_the_session_outlives_its_first_token_by_refreshing_in_band(strict_worker, caplog):
    caplog.set_level(logging.INFO, logger="switchboard_client")
    user = user_register(strict_worker)
    async with asyncio.timeout(TIMEOUT), client_for(strict_worker, user) as client:
        first_expiry, session = client.expires_at, client.session_id
        assert first_expiry - time.time() <= 3
        await asyncio.sleep(first_expiry - time.time() + 2.5)  # past it, and a next token's

        assert await client.ping() > 0
        assert (client.session_id, client.connections) == (session, 1)  # never reconnected
        assert client.expires_at > first_expiry + 1
        assert any(m.startswith("token refreshed in band") for m in caplog.messages)
    # No token in anything the client logged.
    assert not any("eyJ" in m for m in caplog.messages)


async def test_without_a_password_a_dead_refresh_token_ends_in_token_expired_4001(strict_worker):
    user = user_register(strict_worker)
    token_refresh(strict_worker, user["refresh"])  # rotated: the client's copy is now dead
    tokens = Tokens(access=user["access"], refresh=user["refresh"])
    client = SwitchboardClient(strict_worker.http, tokens=tokens, trust_env=False)
    async with asyncio.timeout(TIMEOUT), client:
        with pytest.raises(TokenExpired) as expired:
            await client.wait_closed()
    assert (expired.value.code, expired.value.reason) == (4001, "refresh token refused")
    assert client.connections == 1


# -- rooms recovered from their history ----------------------------------------------------


@pytest.fixture
def history_workers(start_worker) -> tuple[Worker, Worker]:
    """Two workers with the history namespaces: the test restarts the first, the second stays."""
    return (
        start_worker(REALTIME_NAMESPACES=HISTORY_NAMESPACES),
        start_worker(REALTIME_NAMESPACES=HISTORY_NAMESPACES),
    )


async def restarted(client: SwitchboardClient, worker: Worker, meanwhile) -> None:
    """Stop `worker`, await `meanwhile()`, start it again on its port, and wait until `client`
    has reconnected and subscribed its rooms again."""
    connections = client.connections
    await asyncio.to_thread(worker.stop)
    await meanwhile()
    await asyncio.to_thread(worker.start)
    await until(lambda: client.connected and client.connections > connections, within=15)


async def nothing_more(room, within: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(within):
            await anext(room)


async def test_the_client_gets_what_was_published_while_its_worker_restarted_once_each(
    history_workers,
):
    worker, other = history_workers
    alice, bob = user_register(worker), user_register(worker)
    channel = f"chat.recover-{uuid.uuid4().hex[:8]}"
    async with (
        asyncio.timeout(60),
        client_for(worker, alice) as client,
        client_for(other, bob) as publisher,
    ):
        room = await client.subscribe(channel)
        await publisher.subscribe(channel)  # a namespace's rooms take subscribers' messages
        assert await publisher.publish(channel, "before") == 1
        assert (await anext(room))["offset"] == 1

        async def publish_away() -> None:
            assert [await publisher.publish(channel, d) for d in ("away 1", "away 2")] == [2, 3]

        await restarted(client, worker, publish_away)
        assert await publisher.publish(channel, "after") == 4
        received = [await anext(room) for _ in range(3)]
        assert [(m["offset"], m["data"], m["from"]) for m in received] == [
            (2, "away 1", who(bob)),
            (3, "away 2", who(bob)),
            (4, "after", who(bob)),
        ]
        assert len({m["epoch"] for m in received}) == 1
        await nothing_more(room)  # no copy of any of them, and no MessagesMissed

        history = await client.history(channel)
        assert [(m["offset"], m["data"]) for m in history] == [
            (1, "before"),
            (2, "away 1"),
            (3, "away 2"),
            (4, "after"),
        ]
        assert [m["offset"] for m in await client.history(channel, limit=2)] == [3, 4]
        assert await publisher.publish("lobby", "no history here") is None


async def test_a_gap_longer_than_the_history_raises_messages_missed_once_then_goes_on(
    history_workers,
):
    worker, other = history_workers
    alice, bob = user_register(worker), user_register(worker)
    channel = f"brief.gap-{uuid.uuid4().hex[:8]}"
    async with (
        asyncio.timeout(60),
        client_for(worker, alice) as client,
        client_for(other, bob) as publisher,
    ):
        room = await client.subscribe(channel)
        await publisher.subscribe(channel)  # a namespace's rooms take subscribers' messages
        assert await publisher.publish(channel, "before") == 1
        assert (await anext(room))["data"] == "before"

        async def publish_away() -> None:  # four in a history of two: 2 and 3 are gone
            assert [await publisher.publish(channel, n) for n in range(4)] == [2, 3, 4, 5]

        await restarted(client, worker, publish_away)
        with pytest.raises(MessagesMissed) as missed:
            await anext(room)
        assert (missed.value.channel, missed.value.reason, missed.value.offset) == (
            channel,
            MissReason.NOT_RECOVERED,
            5,
        )
        assert await publisher.publish(channel, "after") == 6
        message = await anext(room)  # once: iterating again goes on
        assert (message["offset"], message["data"]) == (6, "after")
        await nothing_more(room)


async def test_a_history_lost_with_redis_raises_messages_missed_once_in_the_new_epoch(
    start_worker, private_redis: RedisServer
):
    worker = start_worker(REDIS_URL=private_redis.url, REALTIME_NAMESPACES=HISTORY_NAMESPACES)
    alice, bob = user_register(worker), user_register(worker)
    channel = f"chat.epoch-{uuid.uuid4().hex[:8]}"
    async with (
        asyncio.timeout(60),
        client_for(worker, alice) as client,
        client_for(worker, bob) as publisher,
    ):
        room = await client.subscribe(channel)
        await publisher.subscribe(channel)  # a namespace's rooms take subscribers' messages
        assert await publisher.publish(channel, "before") == 1
        first_epoch = (await anext(room))["epoch"]

        await asyncio.to_thread(private_redis.stop)
        await asyncio.to_thread(private_redis.start)  # the same port, empty: the history is gone
        await until(lambda: group_members(private_redis, channel) != [], within=15)
        for attempt in range(50):  # until the worker's Redis clients are back
            try:
                await publisher.publish(channel, f"after {attempt}")
                break
            except RequestError as e:
                assert e.code == "unavailable", e
            except (ConnectionLost, TimeoutError):
                pass  # the session was cut with Redis: the client reconnects
            await asyncio.sleep(0.3)
        else:
            pytest.fail("no publish went through after the Redis restart")
        await publisher.publish(channel, "last")

        missed, received = [], []
        while not received or received[-1]["data"] != "last":
            try:
                received.append(await anext(room))
            except MessagesMissed as e:
                missed.append(e)
        # Live (EPOCH_CHANGED), or in the resubscribe's reply if the session was cut too.
        reason = MissReason.EPOCH_CHANGED if client.connections == 1 else MissReason.NOT_RECOVERED
        assert [(e.channel, e.reason) for e in missed] == [(channel, reason)]
        assert {m["epoch"] for m in received} == {missed[0].epoch}
        assert missed[0].epoch != first_epoch
        offsets = [m["offset"] for m in received]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))  # each once


# -- fatal closes ---------------------------------------------------------------------------


async def test_logout_all_stops_the_client_with_session_revoked_4501(shared_worker):
    user = user_register(shared_worker)
    async with asyncio.timeout(TIMEOUT), client_for(shared_worker, user) as client:
        room = await client.subscribe("revoked-room")
        async with httpx.AsyncClient(base_url=shared_worker.http, trust_env=False) as http:
            response = await http.post(
                "/api/auth/logout-all/", headers={"Authorization": f"Bearer {user['access']}"}
            )
        assert response.status_code == 204

        with pytest.raises(SessionRevoked) as revoked:
            await client.wait_closed()
        assert (revoked.value.code, revoked.value.reason) == (4501, "session revoked")
        with pytest.raises(SessionRevoked):
            await anext(room)
        with pytest.raises(SessionRevoked):
            await client.ping()
        assert client.connections == 1  # it did not try again


async def test_bad_credentials_raise_unauthorized(shared_worker):
    user = user_register(shared_worker)
    with pytest.raises(Unauthorized) as refused:
        async with client_for(shared_worker, user, password="not the password"):
            pass
    assert (refused.value.code, refused.value.reason) == (4500, "bad_credentials")


async def test_a_refused_access_token_raises_unauthorized_from_close_4500(shared_worker):
    tokens = Tokens(access="not.a.jwt", refresh="not.a.jwt")
    with pytest.raises(Unauthorized) as refused:
        async with SwitchboardClient(shared_worker.http, tokens=tokens, trust_env=False):
            pass
    assert (refused.value.code, refused.value.reason) == (4500, "unauthorized")


async def test_a_session_over_the_per_user_limit_raises_too_many_sessions_4502(strict_worker):
    user = user_register(strict_worker)
    async with asyncio.timeout(TIMEOUT), client_for(strict_worker, user) as first:
        with pytest.raises(TooManySessions) as refused:
            async with client_for(strict_worker, user):
                pass
        assert (refused.value.code, refused.value.reason) == (4502, "too many sessions")
        assert await first.ping() > 0


# -- the command line -------------------------------------------------------------------------


def cli_run(args: list[str], stdin: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m switchboard_client` fed `stdin`, without proxies from the environment."""
    environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    environment.pop("SWITCHBOARD_PASSWORD", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "switchboard_client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=30,
    )


def test_the_cli_sends_lines_and_prints_every_reply_as_json(shared_worker):
    user = user_register(shared_worker)
    lines = [
        PASSWORD,
        '{"type":"echo","data":"raw","id":"j1"}',
        "hello there",
        "/ping",
        "/sub cli-room",
        '/pub cli-room {"n": 1}',
        "/sub staff.nope",
    ]
    args = ["--url", shared_worker.http, "--username", user["username"], "--password-stdin"]
    done = cli_run([*args, "--json"], "\n".join(lines) + "\n")

    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    welcome = frames.pop(0)
    assert (welcome["type"], welcome["user"]) == ("welcome", who(user))
    message = next(f for f in frames if f["type"] == "message")
    frames.remove(message)  # it may come just before or after `published`
    assert without_ts(message) == {
        "type": "message",
        "channel": "cli-room",
        "data": {"n": 1},
        "from": who(user),
    }
    assert frames == [
        {"type": "echo", "data": "raw", "id": "j1"},
        {"type": "echo", "data": "hello there", "id": 1},
        {"type": "pong", "id": 2},
        {"type": "subscribed", "channel": "cli-room", "id": 3},
        {"type": "published", "channel": "cli-room", "id": 4},
        {"type": "error", "code": "forbidden", "message": "Not allowed on this channel", "id": 5},
    ]
    assert "rtt " in done.stderr
    assert "HTTP Request" not in done.stderr  # httpx's request lines: only with --verbose
    assert PASSWORD not in done.stdout + done.stderr
    assert user["access"][:20] not in done.stdout + done.stderr


def test_the_cli_prints_frames_for_people_and_takes_the_password_from_the_environment(
    shared_worker,
):
    user = user_register(shared_worker)
    done = cli_run(
        ["--url", shared_worker.http, "--username", user["username"]],
        'plain text\n{"type":"presence","channel":"empty-room"}\n/quit\nnever sent\n',
        env={"SWITCHBOARD_PASSWORD": PASSWORD},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"welcome {user['username']} (session ")
    assert lines[1:] == [
        'echo {"data":"plain text"}',
        'presence {"channel":"empty-room","users":[]}',
    ]


def test_the_cli_exits_2_on_bad_credentials_and_64_without_a_password(shared_worker):
    user = user_register(shared_worker)
    args = ["--url", shared_worker.http, "--username", user["username"]]
    refused = cli_run([*args, "--password-stdin"], "wrong password\n/ping\n")
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        2,
        "",
        "login refused: bad username or password (HTTP 401 bad_credentials)\n",
    )

    no_password = cli_run(args, "")
    assert no_password.returncode == 64
    assert "no password: use --password-stdin or $SWITCHBOARD_PASSWORD" in no_password.stderr


def test_the_cli_echo_mode_talks_to_the_anonymous_echo_endpoint(shared_worker):
    done = cli_run(["--url", shared_worker.http, "--echo"], "hello\nsecond line\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Server received: hello", "Server received: second line"]


def test_the_cli_says_a_stopped_server_cannot_be_reached_and_exits_1(start_worker):
    worker = start_worker()
    user = user_register(worker)
    worker.stop()  # the port is free now: nothing answers there
    args = ["--url", worker.http, "--username", user["username"], "--password-stdin"]
    down = cli_run(args, PASSWORD + "\n")
    echo = cli_run(["--url", worker.http, "--echo"], "hello\n")

    unreachable = f"cannot reach {worker.http}: connection refused\n"
    assert (down.returncode, down.stdout, down.stderr) == (1, "", unreachable)
    assert (echo.returncode, echo.stdout, echo.stderr) == (1, "", unreachable)
