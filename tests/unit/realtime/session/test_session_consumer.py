"""realtime.session.consumer.SessionConsumer: `/ws/session/?token=…`, every row of the protocol."""

import asyncio
import json
import logging
import re
import time
import uuid
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db.models import F

from accounts.models import User
from accounts.services import user_revoke_tokens
from accounts.tokens import token_pair_for_user
from realtime.events import user_group
from realtime.protocol.codes import CloseCode, ErrorCode
from tests.conftest import access_for, refresh_for
from tests.unit.realtime.ws import assert_closed, assert_error_then_closed, receive_close
from tests.unit.token_cases import BAD_TOKENS, BadToken

pytestmark = pytest.mark.django_db(transaction=True)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def expires_at(exp: int) -> str:
    """What the server must say for a token's `exp`: ISO 8601, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))


async def open_session(connect, raw: str) -> tuple[WebsocketCommunicator, dict]:
    socket = await connect(f"/ws/session/?token={raw}")
    assert socket.accepted is True
    welcome = await socket.receive_json_from()
    assert welcome["type"] == "welcome", welcome
    return socket, welcome


@pytest.fixture
async def session(connect, user) -> WebsocketCommunicator:
    socket, _ = await open_session(connect, str(access_for(user)))
    return socket


async def exchange(socket: WebsocketCommunicator, message) -> dict:
    """Send one frame (a JSON value, or raw text) and read one JSON reply."""
    text = message if isinstance(message, str) else json.dumps(message)
    await socket.send_to(text_data=text)
    return await socket.receive_json_from()


# -- authentication at connect ----------------------------------------------------------


async def test_a_valid_token_gets_the_welcome_frame(connect, user):
    token = access_for(user)

    socket, welcome = await open_session(connect, str(token))

    assert set(welcome) == {"type", "message", "session_id", "user", "expires_at"}
    assert welcome["message"] == "Authenticated!"
    assert str(uuid.UUID(welcome["session_id"])) == welcome["session_id"]
    assert welcome["user"] == {"id": user.pk, "username": "alice"}
    assert ISO_UTC.match(welcome["expires_at"])
    assert datetime.fromisoformat(welcome["expires_at"]).timestamp() == token["exp"]
    assert await socket.receive_nothing(0.05)


async def test_a_token_pair_issued_by_login_opens_a_session(connect, user):
    pair = await database_sync_to_async(token_pair_for_user)(user=user)

    _, welcome = await open_session(connect, pair["access"])

    assert welcome["user"] == {"id": user.pk, "username": "alice"}


async def test_a_token_issued_right_after_a_revocation_opens_a_session(connect, user):
    await database_sync_to_async(user_revoke_tokens)(user=user, reason="logout-all")
    await user.arefresh_from_db()

    _, welcome = await open_session(connect, str(access_for(user)))

    assert welcome["message"] == "Authenticated!"


async def test_each_session_gets_its_own_session_id(connect, user):
    _, first = await open_session(connect, str(access_for(user)))
    _, second = await open_session(connect, str(access_for(user)))

    assert first["session_id"] != second["session_id"]


async def test_no_credential_and_no_auth_frame_is_closed_4500_auth_timeout(connect, settings):
    settings.WS_AUTH_TIMEOUT = 0.3
    socket = await connect("/ws/session/")

    assert socket.accepted is True
    assert await socket.receive_nothing(0.2)  # waiting for an auth frame
    assert await socket.receive_json_from(1) == {
        "type": "error",
        "code": "unauthorized",
        "message": "Unauthorized",
    }
    assert await receive_close(socket) == (4500, "auth timeout")


async def test_two_token_parameters_are_unauthorized_even_if_both_are_valid(connect, user):
    raw = str(access_for(user))

    socket = await connect(f"/ws/session/?token={raw}&token={raw}")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


@pytest.fixture
def bad_token_raw(case: BadToken, user) -> str:
    return case.build(user)


@pytest.mark.parametrize("case", BAD_TOKENS, ids=[case.id for case in BAD_TOKENS])
async def test_a_bad_token_is_refused_with_its_error_and_close_code_and_never_logged(
    connect, case, bad_token_raw, caplog
):
    caplog.set_level(logging.INFO)

    socket = await connect(f"/ws/session/?token={bad_token_raw}")

    if case.code == "token_expired":
        await assert_error_then_closed(socket, ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED)
    else:
        await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
    security = [r.getMessage() for r in caplog.records if r.name == "switchboard.security"]
    assert (
        f"websocket auth failed: reason={case.reason} code={case.code} "
        "path=/ws/session/ client=unknown"
    ) in security
    assert all(bad_token_raw not in r.getMessage() for r in caplog.records)


# -- echo, ping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        True,
        False,
        0,
        -17,
        2**53,
        1.5,
        -2.5e-8,
        "",
        "text",
        "héllo ✓ 😀",
        [],
        [1, "a", None, {"b": [True]}],
        {},
        {"nested": {"deeper": [1, {"deepest": None}]}, "n": 3},
    ],
    ids=repr,
)
async def test_echo_returns_any_json_data_unchanged(session, data):
    reply = await exchange(session, {"type": "echo", "data": data})

    assert reply == {"type": "echo", "data": data}


@pytest.mark.parametrize("msg_id", ["req-1", "", 0, 42, -1])
async def test_echo_copies_a_string_or_integer_id(session, msg_id):
    reply = await exchange(session, {"type": "echo", "data": "x", "id": msg_id})

    assert reply == {"type": "echo", "data": "x", "id": msg_id}


async def test_a_boolean_id_is_not_copied_but_refused(session):
    reply = await exchange(session, {"type": "echo", "data": "x", "id": True})

    assert reply == {
        "type": "error",
        "code": "invalid_message",
        "message": "Expected `int | str | null`, got `bool` - at `$.id`",
    }


async def test_ping_answers_pong(session):
    assert await exchange(session, {"type": "ping"}) == {"type": "pong"}


async def test_ping_with_an_id_answers_pong_with_that_id(session):
    assert await exchange(session, {"type": "ping", "id": "p1"}) == {"type": "pong", "id": "p1"}


# -- refresh --------------------------------------------------------------------------------


async def test_refresh_with_a_new_token_answers_refreshed_with_its_expiry(session, user):
    new = access_for(user, lifetime=timedelta(seconds=900))

    reply = await exchange(session, {"type": "refresh", "token": str(new), "id": 9})

    assert reply == {"type": "refreshed", "expires_at": expires_at(new["exp"]), "id": 9}
    assert ISO_UTC.match(reply["expires_at"])
    assert await exchange(session, {"type": "ping"}) == {"type": "pong"}


async def test_a_refresh_cancels_the_pending_expiry(connect, user, settings):
    settings.WS_EXPIRY_WARNING = 0
    short = access_for(user, lifetime=timedelta(seconds=2))
    socket, _ = await open_session(connect, str(short))

    reply = await exchange(socket, {"type": "refresh", "token": str(access_for(user))})

    assert reply["type"] == "refreshed"
    assert await socket.receive_nothing(short["exp"] - time.time() + 0.3)
    assert await exchange(socket, {"type": "ping"}) == {"type": "pong"}


async def test_refresh_with_another_users_token_is_unauthorized_and_closed_4500(
    session, other_user
):
    await session.send_json_to({"type": "refresh", "token": str(access_for(other_user))})

    await assert_error_then_closed(session, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_refresh_with_garbage_is_unauthorized_and_closed_4500(session, caplog):
    caplog.set_level(logging.INFO)

    await session.send_json_to({"type": "refresh", "token": "garbage-token-value"})

    await assert_error_then_closed(session, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
    assert all("garbage-token-value" not in r.getMessage() for r in caplog.records)


async def test_refresh_with_a_refresh_token_is_unauthorized_and_closed_4500(session, user):
    refresh = str(await database_sync_to_async(refresh_for)(user))

    await session.send_json_to({"type": "refresh", "token": refresh})

    await assert_error_then_closed(session, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_refresh_with_a_token_issued_before_the_last_revocation_is_closed_4500(session, user):
    old = str(access_for(user))
    # Bump the version without the revocation event, so the session is still open to try.
    await User.objects.filter(pk=user.pk).aupdate(token_version=F("token_version") + 1)

    await session.send_json_to({"type": "refresh", "token": old})

    await assert_error_then_closed(session, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_refresh_with_an_expired_token_is_token_expired_and_closed_4001(session, user):
    expired = access_for(user, lifetime=timedelta(seconds=-10))

    await session.send_json_to({"type": "refresh", "token": str(expired)})

    await assert_error_then_closed(session, ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED)


# -- protocol errors --------------------------------------------------------------------


async def test_a_frame_that_is_not_json_is_invalid_json_and_the_session_stays_open(session):
    reply = await exchange(session, "{not json")

    assert reply == {"type": "error", "code": "invalid_json", "message": "Frame is not valid JSON"}
    assert await exchange(session, {"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("[1, 2]", "Message must be a JSON object"),
        ('"ping"', "Message must be a JSON object"),
        ('{"data": 1}', "Field `type` must be a string"),
        ('{"type": 7}', "Field `type` must be a string"),
        ('{"type": "echo"}', "Object missing required field `data`"),
        ('{"type": "refresh"}', "Object missing required field `token`"),
        ('{"type": "refresh", "token": 5}', "Expected `str`, got `int` - at `$.token`"),
        ('{"type": "ping", "extra": 1}', "Object contains unknown field `extra`"),
        ("[" * 10_000 + "]" * 10_000, "Message is nested too deeply"),
    ],
    ids=[
        "array",
        "string",
        "missing_type",
        "type_not_a_string",
        "echo_without_data",
        "refresh_without_token",
        "token_not_a_string",
        "unknown_field",
        "nested_too_deeply",
    ],
)
async def test_an_invalid_message_is_answered_and_the_session_stays_open(session, frame, message):
    reply = await exchange(session, frame)

    assert reply == {"type": "error", "code": "invalid_message", "message": message}
    assert await exchange(session, {"type": "ping"}) == {"type": "pong"}


async def test_an_unknown_type_is_answered_and_the_session_stays_open(session):
    reply = await exchange(session, {"type": "dance"})

    assert reply == {
        "type": "error",
        "code": "unknown_type",
        "message": "Unknown message type: dance",
    }
    assert await exchange(session, {"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "dance", "id": "d1"}, "unknown_type"),
        ({"type": "echo", "id": 7}, "invalid_message"),
        ({"type": 3, "id": "t"}, "invalid_message"),
    ],
)
async def test_the_id_is_copied_into_errors(session, message, code):
    reply = await exchange(session, message)

    assert (reply["type"], reply["code"], reply["id"]) == ("error", code, message["id"])


async def test_more_than_20_protocol_errors_in_a_minute_close_1008(session):
    for _ in range(20):
        reply = await exchange(session, "nope")
        assert reply["code"] == "invalid_json"
    assert await exchange(session, {"type": "ping"}) == {"type": "pong"}

    reply = await exchange(session, {"type": "dance"})

    assert reply["code"] == "unknown_type"
    await assert_closed(session, CloseCode.POLICY_VIOLATION)


async def test_a_binary_frame_closes_1003(session):
    await session.send_to(bytes_data=b'{"type":"ping"}')

    await assert_closed(session, CloseCode.UNSUPPORTED_DATA)


@pytest.mark.parametrize(
    "frame",
    [{"text_data": "x" * 129}, {"text_data": "é" * 65}, {"bytes_data": b"x" * 129}],
    ids=["text", "multibyte_text", "binary"],
)
async def test_a_frame_over_the_size_limit_closes_1009(connect, user, settings, frame):
    settings.WS_MAX_MESSAGE_BYTES = 128
    socket, _ = await open_session(connect, str(access_for(user)))

    await socket.send_to(**frame)

    await assert_closed(socket, CloseCode.MESSAGE_TOO_BIG)


async def test_a_frame_at_the_size_limit_is_handled(connect, user, settings):
    settings.WS_MAX_MESSAGE_BYTES = 128
    socket, _ = await open_session(connect, str(access_for(user)))
    frame = json.dumps({"type": "echo", "data": ""})
    frame = frame.replace('""', '"' + "x" * (128 - len(frame)) + '"')

    assert len(frame.encode()) == 128
    assert (await exchange(socket, frame))["type"] == "echo"


# -- rate limits ------------------------------------------------------------------------


async def test_over_the_rate_a_frame_is_dropped_and_the_session_stays_open(connect, user, settings):
    settings.WS_MESSAGE_BURST = 3
    settings.WS_MESSAGES_PER_SECOND = 0.01
    socket, _ = await open_session(connect, str(access_for(user)))
    for i in range(3):
        assert await exchange(socket, {"type": "ping", "id": i}) == {"type": "pong", "id": i}

    reply = await exchange(socket, {"type": "echo", "data": "dropped", "id": 4})

    assert reply == {
        "type": "error",
        "code": "rate_limited",
        "message": "Too many messages; this one was dropped",
    }
    assert await socket.receive_nothing(0.05)


async def test_sustained_excess_over_the_rate_closes_4008(connect, user, settings):
    settings.WS_MESSAGE_BURST = 3
    settings.WS_MESSAGES_PER_SECOND = 0.01
    socket, _ = await open_session(connect, str(access_for(user)))
    for _ in range(3):
        assert await exchange(socket, {"type": "ping"}) == {"type": "pong"}
    for _ in range(3):  # WS_MESSAGE_BURST dropped frames are tolerated
        assert (await exchange(socket, {"type": "ping"}))["code"] == "rate_limited"

    await socket.send_json_to({"type": "ping"})

    await assert_error_then_closed(socket, ErrorCode.RATE_LIMITED, CloseCode.RATE_LIMITED)


# -- expiry -----------------------------------------------------------------------------


async def test_a_session_is_warned_before_expiry_then_closed_4001(connect, user, settings):
    settings.WS_EXPIRY_WARNING = 1
    token = access_for(user, lifetime=timedelta(seconds=2))
    socket, welcome = await open_session(connect, str(token))
    assert welcome["expires_at"] == expires_at(token["exp"])

    warning = await socket.receive_json_from(3)
    assert time.time() >= token["exp"] - 1 - 0.1
    assert warning == {"type": "expiring", "expires_at": expires_at(token["exp"])}

    await assert_error_then_closed(socket, ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED, wait=3)
    assert time.time() >= token["exp"]


async def test_the_warning_comes_at_once_when_less_than_the_warning_time_is_left(
    connect, user, settings
):
    settings.WS_EXPIRY_WARNING = 30
    token = access_for(user, lifetime=timedelta(seconds=20))
    socket, _ = await open_session(connect, str(token))

    assert await socket.receive_json_from(0.5) == {
        "type": "expiring",
        "expires_at": expires_at(token["exp"]),
    }


async def test_no_warning_comes_while_the_token_is_far_from_expiry(session):
    assert await session.receive_nothing(0.2)


# -- revocation -------------------------------------------------------------------------


async def test_a_session_revoke_event_to_the_users_group_closes_4501(session, user):
    await get_channel_layer().group_send(
        user_group(user.pk), {"type": "session.revoke", "user_id": user.pk}
    )

    await assert_error_then_closed(session, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_revoking_the_users_tokens_closes_every_session_of_the_user_4501(connect, user):
    first, _ = await open_session(connect, str(access_for(user)))
    second, _ = await open_session(connect, str(access_for(user)))

    await database_sync_to_async(user_revoke_tokens)(user=user, reason="logout-all")

    for socket in (first, second):
        await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_deactivating_the_user_closes_the_session_4501(session, user):
    def deactivate() -> None:
        fresh = User.objects.get(pk=user.pk)
        fresh.is_active = False
        fresh.save()

    await database_sync_to_async(deactivate)()

    await assert_error_then_closed(session, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_revoking_another_user_leaves_the_session_open(session, other_user):
    await database_sync_to_async(user_revoke_tokens)(user=other_user, reason="test")

    assert await session.receive_nothing(0.1)
    assert await exchange(session, {"type": "ping"}) == {"type": "pong"}


async def test_a_closed_session_ignores_later_frames(session, user):
    await get_channel_layer().group_send(
        user_group(user.pk), {"type": "session.revoke", "user_id": user.pk}
    )
    await assert_error_then_closed(session, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)

    await session.send_json_to({"type": "ping"})

    assert await session.receive_nothing(0.05)


async def test_a_session_leaves_the_users_group_when_it_disconnects(connect, user):
    socket, _ = await open_session(connect, str(access_for(user)))
    layer = get_channel_layer()
    assert len(layer.groups[user_group(user.pk)]) == 1

    await socket.disconnect()
    await asyncio.sleep(0)

    assert not layer.groups.get(user_group(user.pk))
