"""Revocation cannot be lost: mid-connect revocations, outages, and version-aware events."""

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db.models import F

from accounts.models import User
from realtime.events import _floor_key, user_group
from realtime.protocol.codes import CloseCode, ErrorCode
from tests.conftest import UserFactory, access_for
from tests.unit.realtime.ws import assert_error_then_closed


@pytest.fixture(autouse=True)
def clean_state():
    cache.clear()
    yield
    cache.clear()


async def open_session(connect, user):
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    assert (await socket.receive_json_from())["type"] == "welcome"
    return socket


async def test_a_revocation_committed_while_connecting_closes_the_new_session(connect, user):
    # The user lookup saw version 0, but the revocation's floor (version 1) was recorded
    # before this session joined the user's group: its event went to a group without it.
    await cache.aset(_floor_key(user.pk), 1)
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    # No welcome: the session is closed before it starts.
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_a_floor_at_or_below_the_tokens_version_lets_the_session_live(connect, user):
    await cache.aset(_floor_key(user.pk), 0)
    socket = await open_session(connect, user)
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}


async def test_after_a_layer_outage_sessions_revoked_meanwhile_are_closed(
    connect, user, worker_hub
):
    bystander = await sync_to_async(UserFactory)()
    revoked, kept = await open_session(connect, user), await open_session(connect, bystander)
    # Revoked while the layer was down: the database knows, no event arrived.
    await User.objects.filter(pk=user.pk).aupdate(token_version=F("token_version") + 1)

    await worker_hub.health._rejoin_all()

    await assert_error_then_closed(revoked, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await kept.send_json_to({"type": "ping"})
    assert await kept.receive_json_from() == {"type": "pong"}


async def test_after_a_layer_outage_a_deactivated_users_sessions_are_closed(
    connect, user, worker_hub
):
    socket = await open_session(connect, user)
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    await worker_hub.health._rejoin_all()
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_a_revoke_event_spares_a_session_whose_token_is_newer_than_the_floor(connect, user):
    socket = await open_session(connect, user)  # token version 0
    await get_channel_layer().group_send(
        user_group(user.pk), {"type": "session.revoke", "user_id": user.pk, "revoked_below": 0}
    )
    await socket.send_json_to({"type": "ping", "id": 1})
    assert await socket.receive_json_from() == {"type": "pong", "id": 1}

    await get_channel_layer().group_send(
        user_group(user.pk), {"type": "session.revoke", "user_id": user.pk, "revoked_below": 1}
    )
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_a_refused_refresh_keeps_the_requests_id_in_its_error(connect, user):
    socket = await open_session(connect, user)
    await socket.send_json_to({"type": "refresh", "token": "garbage", "id": "r9"})
    assert await socket.receive_json_from() == {
        "type": "error",
        "code": "unauthorized",
        "message": "Unauthorized",
        "id": "r9",
    }
    message = await socket.receive_output(1)
    assert (message["type"], message["code"]) == ("websocket.close", 4500)


async def test_a_session_revoked_by_a_recovery_during_its_last_checks_is_closed_not_welcomed(
    connect, user, monkeypatch, worker_hub
):
    from realtime.session import consumer

    checked = consumer.aaccess_token_revoked

    async def recovery_meanwhile(token):
        # A recovery revalidates every registered session while this one awaits its checks.
        for session in list(worker_hub.health.sessions):
            await session.revoke("session revoked during a channel-layer outage")
        return await checked(token)

    monkeypatch.setattr(consumer, "aaccess_token_revoked", recovery_meanwhile)
    socket = await connect(f"/ws/session/?token={access_for(user)}")

    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await socket.disconnect()  # the consumer lived on to clean up: nothing left to rejoin
    assert worker_hub.health.sessions == {}
