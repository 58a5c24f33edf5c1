"""Failures inside the session: database and channel layer outages, handler exceptions."""

import asyncio
import logging

import pytest
from channels.layers import channel_layers
from django.db import OperationalError
from prometheus_client import REGISTRY

from accounts import tokens
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.session.consumer import SessionConsumer
from tests.conftest import access_for
from tests.unit.realtime.ws import assert_error_then_closed

UNREACHABLE_REDIS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Port 1 on loopback: nothing listens, every operation fails at once.
        "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5}]},
    }
}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def unreachable_layer(settings):
    settings.CHANNEL_LAYERS = UNREACHABLE_REDIS
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def welcome(connect, user):
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    frame = await socket.receive_json_from(2)
    assert frame["type"] == "welcome"
    return socket


async def test_a_failing_database_refuses_new_sessions_with_unavailable_and_1013(
    connect, user, monkeypatch
):
    async def broken(user_id):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tokens, "user_by_id", broken)
    before = sample("switchboard_ws_connections_total", endpoint="session", outcome="unavailable")
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    await assert_error_then_closed(socket, ErrorCode.UNAVAILABLE, CloseCode.TRY_AGAIN_LATER)
    after = sample("switchboard_ws_connections_total", endpoint="session", outcome="unavailable")
    assert after == before + 1


async def test_a_database_slower_than_the_timeout_refuses_with_unavailable(
    connect, user, monkeypatch, settings
):
    settings.AUTH_DB_TIMEOUT = 0.2

    async def stuck(user_id):
        await asyncio.sleep(5)

    monkeypatch.setattr(tokens, "user_by_id", stuck)
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    await assert_error_then_closed(socket, ErrorCode.UNAVAILABLE, CloseCode.TRY_AGAIN_LATER)


async def test_a_refresh_during_a_database_outage_answers_unavailable_and_keeps_the_session(
    connect, user, monkeypatch
):
    socket = await welcome(connect, user)

    async def broken(user_id):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tokens, "user_by_id", broken)
    await socket.send_json_to({"type": "refresh", "token": str(access_for(user)), "id": "r1"})
    assert await socket.receive_json_from() == {
        "type": "error",
        "code": "unavailable",
        "message": "Temporarily unavailable; try again later",
        "id": "r1",
    }
    await socket.send_json_to({"type": "ping", "id": 2})
    assert await socket.receive_json_from() == {"type": "pong", "id": 2}


async def test_an_exception_in_a_handler_answers_internal_error_logs_it_and_carries_on(
    connect, user, monkeypatch, caplog
):
    socket = await welcome(connect, user)

    async def explode(self, message):
        raise RuntimeError("boom")

    monkeypatch.setitem(SessionConsumer.handlers, "echo", explode)
    with caplog.at_level(logging.ERROR, logger="switchboard.realtime"):
        await socket.send_json_to({"type": "echo", "data": 1, "id": 9})
        assert await socket.receive_json_from() == {
            "type": "error",
            "code": "internal_error",
            "message": "Internal error; the request was not completed",
            "id": 9,
        }
    record = next(r for r in caplog.records if "internal_error" in r.getMessage())
    assert record.exc_info[0] is RuntimeError
    assert record.session_id in record.getMessage()
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}


async def test_an_unreachable_channel_layer_still_welcomes_and_serves_the_session(
    connect, user, unreachable_layer, worker_hub
):
    def failures() -> float:
        # Whichever fails first (the join, or the receive loop while the session is being
        # recorded) marks the layer down; after that nothing else is tried.
        return sum(
            sample("switchboard_channel_layer_failures_total", operation=operation)
            for operation in ("group_add", "receive")
        )

    before = failures()
    socket = await welcome(connect, user)
    await socket.send_json_to({"type": "echo", "data": [1, "two"]})
    assert await socket.receive_json_from(2) == {"type": "echo", "data": [1, "two"]}
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(2) == {"type": "pong"}
    assert worker_hub.health.available is False
    assert failures() == before + 1


async def test_the_echo_endpoint_never_touches_the_channel_layer(
    connect, unreachable_layer, worker_hub
):
    socket = await connect("/ws/echo/")
    await socket.send_to(text_data="hello")
    assert await socket.receive_from() == "Server received: hello"
    assert worker_hub.health.available is True


async def test_a_session_whose_group_join_finds_redis_busy_is_refused_1013_not_welcomed(
    connect, user, monkeypatch, worker_hub
):
    # Busy is not an outage: no recovery would ever put it in its user's group, and it would
    # miss every revocation. So it never opens.
    from channels.layers import InMemoryChannelLayer

    from core.redis import RedisBusy

    async def busy(self, group, channel):
        raise RedisBusy("no free Redis connection within 10 s")

    monkeypatch.setattr(InMemoryChannelLayer, "group_add", busy)
    socket = await connect(f"/ws/session/?token={access_for(user)}")

    await assert_error_then_closed(socket, ErrorCode.UNAVAILABLE, CloseCode.TRY_AGAIN_LATER)
    assert worker_hub.health.available is True


async def test_an_outage_no_operation_noticed_is_seen_by_the_monitor(monkeypatch, worker_hub):
    # Redis gone while every session is idle: the monitor marks it, so that recovery rejoins
    # the sessions and rechecks them (revocations sent meanwhile were lost).
    import redis

    from realtime.cluster import health as module

    async def refused(layer):
        return [
            redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        ]

    monkeypatch.setattr(module, "shard_probes", refused)
    monkeypatch.setattr(module, "MONITOR_INTERVAL", 0.01)

    async def rejoin() -> None:
        return None

    worker_hub.health.register(object(), rejoin)
    for _ in range(50):
        if not worker_hub.health.available:
            break
        await asyncio.sleep(0.01)

    assert worker_hub.health.available is False
