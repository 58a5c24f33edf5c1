"""realtime.edge.connect_rate: WS_CONNECTS_PER_MINUTE per client IP, checked before the JWT
lookup."""

import logging

import pytest
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import REGISTRY

from realtime.auth import middleware
from realtime.edge.connect_rate import REFUSED_MESSAGE
from realtime.models import WebSocketSession
from tests.conftest import access_for
from tests.unit.realtime.sessions import from_ip
from tests.unit.realtime.ws import receive_close

RATE_LIMITED_FRAME = {
    "type": "error",
    "code": "rate_limited",
    "message": "Too many connections from your address; wait a minute before reconnecting",
}
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def degraded_count(check: str) -> float:
    return sample("switchboard_redis_degraded_total", check=check, answer="local_rule")


def rate_limited_count(endpoint: str) -> float:
    return sample("switchboard_ws_connections_total", endpoint=endpoint, outcome="rate_limited")


@pytest.fixture
def per_minute(settings):
    """`per_minute(n)`: at most n connections per client IP per minute."""

    def set_limit(n: int) -> None:
        settings.WS_CONNECTS_PER_MINUTE = n

    return set_limit


@pytest.fixture
def token_lookups(monkeypatch) -> list[str]:
    """Every raw token the JWT middleware looked up, in order (the real lookup still runs)."""
    calls: list[str] = []
    real = middleware.auser_for_token

    async def spy(raw: str):
        calls.append(raw)
        return await real(raw)

    monkeypatch.setattr(middleware, "auser_for_token", spy)
    return calls


async def echo_from(connect, ip: str):
    return await connect("/ws/echo/", application=from_ip(ip))


async def assert_echo_works(socket) -> None:
    assert socket.accepted
    await socket.send_to(text_data="hi")
    assert await socket.receive_from() == "Server received: hi"


def test_the_message_is_the_documented_one():
    assert REFUSED_MESSAGE == RATE_LIMITED_FRAME["message"]


async def test_n_connections_from_one_ip_are_allowed_and_the_next_echo_is_closed_4008(
    connect, per_minute
):
    per_minute(3)
    for _ in range(3):
        await assert_echo_works(await echo_from(connect, "203.0.113.1"))

    refused = await echo_from(connect, "203.0.113.1")

    assert refused.accepted
    assert await receive_close(refused) == (4008, "rate limited")
    assert await refused.receive_nothing(0.05)


async def test_a_refused_session_gets_the_rate_limited_frame_then_4008(connect, user, per_minute):
    per_minute(1)
    allowed = await connect(f"/ws/session/?token={access_for(user)}")
    assert (await allowed.receive_json_from())["type"] == "welcome"

    refused = await connect(f"/ws/session/?token={access_for(user)}")

    assert refused.accepted
    assert await refused.receive_json_from() == RATE_LIMITED_FRAME
    assert await receive_close(refused) == (4008, "rate limited")
    assert await refused.receive_nothing(0.05)


async def test_session_and_echo_connections_share_one_count_per_ip(connect, user, per_minute):
    per_minute(2)
    await assert_echo_works(await echo_from(connect, "203.0.113.1"))
    session = await connect(
        f"/ws/session/?token={access_for(user)}", application=from_ip("203.0.113.1")
    )
    assert (await session.receive_json_from())["type"] == "welcome"

    refused = await echo_from(connect, "203.0.113.1")

    assert await receive_close(refused) == (4008, "rate limited")


async def test_other_ips_are_not_affected_by_one_ips_limit(connect, per_minute):
    per_minute(1)
    await assert_echo_works(await echo_from(connect, "203.0.113.1"))
    assert await receive_close(await echo_from(connect, "203.0.113.1")) == (4008, "rate limited")

    await assert_echo_works(await echo_from(connect, "203.0.113.2"))
    await assert_echo_works(await echo_from(connect, "2001:db8::2"))


async def test_refused_connections_count_toward_the_limit_too(connect, per_minute):
    per_minute(1)
    await echo_from(connect, "203.0.113.1")
    for _ in range(3):
        socket = await echo_from(connect, "203.0.113.1")
        assert await receive_close(socket) == (4008, "rate limited")


async def test_zero_disables_the_limit(connect, per_minute):
    per_minute(0)

    for _ in range(30):
        await assert_echo_works(await echo_from(connect, "203.0.113.1"))


async def test_a_refused_session_never_looks_up_its_token_nor_records_a_session(
    connect, user, per_minute, token_lookups
):
    per_minute(1)
    first = str(access_for(user))
    allowed = await connect(f"/ws/session/?token={first}")
    assert (await allowed.receive_json_from())["type"] == "welcome"

    refused = await connect(f"/ws/session/?token={access_for(user)}")
    assert await refused.receive_json_from() == RATE_LIMITED_FRAME
    assert await receive_close(refused) == (4008, "rate limited")

    assert token_lookups == [first]
    assert await WebSocketSession.objects.acount() == 1


async def test_one_log_line_per_ip_however_many_connections_are_refused(
    connect, per_minute, caplog
):
    per_minute(1)
    caplog.set_level(logging.WARNING, logger="switchboard.security")
    await echo_from(connect, "203.0.113.1")
    await echo_from(connect, "203.0.113.2")

    for _ in range(3):
        await receive_close(await echo_from(connect, "203.0.113.1"))
    await receive_close(await echo_from(connect, "203.0.113.2"))

    assert [r.getMessage() for r in caplog.records if r.name == "switchboard.security"] == [
        "websocket connection rate exceeded (1/minute), closing 4008: "
        "path=/ws/echo/ client=203.0.113.1",
        "websocket connection rate exceeded (1/minute), closing 4008: "
        "path=/ws/echo/ client=203.0.113.2",
    ]


async def test_refusals_are_counted_in_the_metric_per_endpoint(connect, user, per_minute):
    per_minute(1)
    echo_before, session_before = rate_limited_count("echo"), rate_limited_count("session")
    await echo_from(connect, "203.0.113.1")

    for _ in range(2):
        await receive_close(await echo_from(connect, "203.0.113.1"))
    refused = await connect(
        f"/ws/session/?token={access_for(user)}", application=from_ip("203.0.113.1")
    )
    assert await refused.receive_json_from() == RATE_LIMITED_FRAME

    assert rate_limited_count("echo") - echo_before == 2
    assert rate_limited_count("session") - session_before == 1


async def test_allowed_connections_are_not_counted_as_rate_limited(connect, per_minute):
    per_minute(5)
    before = rate_limited_count("echo")

    for _ in range(5):
        await echo_from(connect, "203.0.113.1")

    assert rate_limited_count("echo") == before


async def test_an_unreachable_storage_falls_back_to_a_per_worker_limit_with_one_warning(
    connect, per_minute, settings, caplog, worker_hub
):
    per_minute(1)
    settings.REDIS_URL = UNREACHABLE_REDIS_URL
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    await assert_echo_works(await echo_from(connect, "203.0.113.1"))
    refused = [await echo_from(connect, "203.0.113.1") for _ in range(2)]

    assert [await receive_close(ws) for ws in refused] == [(4008, "rate limited")] * 2
    assert worker_hub.connect_rate.limiter().degradation.degraded
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "switchboard.security" and r.getMessage().startswith("connect_rate")
    ]
    assert lines == [
        "connect_rate: Redis cannot answer (ConnectionError); counted in this worker only "
        "until it can"
    ]
    assert degraded_count("connect_rate") >= 3


async def test_what_this_worker_counted_still_counts_once_the_storage_fails(
    connect, per_minute, monkeypatch, worker_hub
):
    # Counted in Redis and locally all along: a failure of Redis gives no fresh allowance.
    per_minute(2)
    limiter = worker_hub.connect_rate.limiter()
    shared = MovingWindowRateLimiter(MemoryStorage())

    class Broken:
        async def hit(self, *args, **kwargs):
            raise ConnectionError("storage down")

    monkeypatch.setattr(limiter, "shared", True)
    monkeypatch.setattr(limiter, "_shared", lambda: shared)
    for _ in range(2):
        await assert_echo_works(await echo_from(connect, "203.0.113.1"))
    monkeypatch.setattr(limiter, "_shared", lambda: Broken())

    refused = await echo_from(connect, "203.0.113.1")

    assert await receive_close(refused) == (4008, "rate limited")


async def test_the_shared_limit_applies_again_once_the_storage_is_back(
    connect, per_minute, monkeypatch, caplog, worker_hub
):
    per_minute(3)
    limiter = worker_hub.connect_rate.limiter()
    # A second memory store stands for Redis, where other workers count too.
    shared = MovingWindowRateLimiter(MemoryStorage())

    class Broken:
        async def hit(self, *args, **kwargs):
            raise ConnectionError("storage down")

    caplog.set_level(logging.WARNING, logger="switchboard.security")
    monkeypatch.setattr(limiter, "shared", True)
    monkeypatch.setattr(limiter, "_shared", lambda: Broken())
    await assert_echo_works(await echo_from(connect, "203.0.113.1"))  # this worker: 1
    monkeypatch.setattr(limiter, "_shared", lambda: shared)
    for _ in range(2):  # another worker's two connections from that address
        await shared.hit(RateLimitItemPerMinute(3), "ws-connects", "203.0.113.1")

    await assert_echo_works(await echo_from(connect, "203.0.113.1"))  # shared: 3
    refused = await echo_from(connect, "203.0.113.1")  # this worker: 3, shared: over

    assert await receive_close(refused) == (4008, "rate limited")
    assert not limiter.degradation.degraded
    assert [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("connect_rate")
    ] == [
        "connect_rate: Redis cannot answer (ConnectionError); counted in this worker only "
        "until it can",
        "connect_rate: Redis answers again; checked across workers",
    ]
