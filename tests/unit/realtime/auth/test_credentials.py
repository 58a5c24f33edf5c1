"""Credentials on `/ws/session/` besides `?token=`: the Authorization header, the bearer
subprotocol, tickets, and the first-frame `auth` message."""

import asyncio
import logging
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.services import user_revoke_tokens
from realtime.auth.tickets import TICKET_TTL
from realtime.protocol.codes import CloseCode, ErrorCode
from tests.conftest import access_for
from tests.unit.realtime.sessions import from_ip
from tests.unit.realtime.ws import assert_error_then_closed, receive_close

UNAUTHORIZED = {"type": "error", "code": "unauthorized", "message": "Unauthorized"}


async def welcome_of(socket) -> dict:
    frame = await socket.receive_json_from()
    assert frame["type"] == "welcome", frame
    return frame


def ticket_for(user, *, ip: str = "127.0.0.1", token=None) -> str:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token or access_for(user)}")
    response = client.post("/api/realtime/ticket/")
    assert response.status_code == 201, response.content
    assert set(response.json()) == {"ticket", "expires_in"}
    return response.json()["ticket"]


# -- Authorization header and subprotocol -------------------------------------------------


async def test_an_authorization_bearer_header_authenticates(connect, user):
    socket = await connect(
        "/ws/session/", headers=[(b"authorization", f"Bearer {access_for(user)}".encode())]
    )

    assert (await welcome_of(socket))["user"] == {"id": user.pk, "username": "alice"}


@pytest.mark.parametrize("value", [b"Bearer ", b"Bearer not.a.jwt", b"bearer  "])
async def test_a_bad_authorization_header_is_unauthorized(connect, user, value):
    socket = await connect("/ws/session/", headers=[(b"authorization", value)])

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


@pytest.mark.parametrize("value", [b"Basic YWxpY2U6cHc=", b"Digest abc", b"token abc"])
async def test_another_authorization_scheme_is_not_ours_and_is_ignored(connect, user, value):
    # A proxy's Basic credentials reach the upgrade request too: the ticket still counts.
    socket = await connect(
        f"/ws/session/?token={access_for(user)}", headers=[(b"authorization", value)]
    )

    assert (await welcome_of(socket))["user"]["id"] == user.pk


async def test_the_bearer_subprotocol_authenticates_and_the_server_answers_switchboard_v1(
    connect, user
):
    token = str(access_for(user))

    socket = await connect("/ws/session/", subprotocols=["switchboard.v1", f"bearer.{token}"])

    assert socket.detail == "switchboard.v1"  # never the offered token
    assert (await welcome_of(socket))["user"]["id"] == user.pk


async def test_a_bearer_subprotocol_without_switchboard_v1_is_unauthorized(connect, user):
    socket = await connect("/ws/session/", subprotocols=[f"bearer.{access_for(user)}"])

    assert socket.detail is None
    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_the_echo_endpoint_answers_switchboard_v1_when_offered(connect):
    socket = await connect("/ws/echo/", subprotocols=["switchboard.v1"])

    assert (socket.accepted, socket.detail) == (True, "switchboard.v1")


async def test_credentials_in_two_places_are_unauthorized_even_if_both_are_valid(
    connect, user, caplog
):
    token = str(access_for(user))

    with caplog.at_level(logging.WARNING, logger="switchboard.security"):
        socket = await connect(
            f"/ws/session/?token={token}", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)

    assert "credentials in more than one place (header, query)" in caplog.text
    assert token not in caplog.text


# -- tickets ------------------------------------------------------------------------------


def test_a_ticket_is_issued_to_a_bearer_for_30_seconds(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(user)}")

    response = client.post("/api/realtime/ticket/")

    assert response.status_code == 201
    assert response.json()["expires_in"] == TICKET_TTL == 30
    assert len(response.json()["ticket"]) == 43


def test_a_ticket_needs_an_access_token(db):
    response = APIClient().post("/api/realtime/ticket/")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@override_settings(WS_TICKETS_PER_MINUTE=2)
def test_tickets_per_client_ip_are_limited_with_429_and_retry_after(user):
    client = APIClient(REMOTE_ADDR="203.0.113.9")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(user)}")

    statuses = [client.post("/api/realtime/ticket/").status_code for _ in range(3)]
    other_ip = APIClient(REMOTE_ADDR="203.0.113.10")
    other_ip.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(user)}")

    assert statuses == [201, 201, 429]
    assert other_ip.post("/api/realtime/ticket/").status_code == 201


def test_a_ticket_store_that_fails_answers_503_unavailable(user, monkeypatch, worker_hub):
    def broken(key, value):
        raise ConnectionError("redis down")

    monkeypatch.setattr(worker_hub.tickets, "put", broken)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(user)}")

    response = client.post("/api/realtime/ticket/")

    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


async def test_a_ticket_opens_one_session_with_its_tokens_expiry(connect, user):
    token = access_for(user, lifetime=timedelta(seconds=200))
    ticket = await sync(ticket_for)(user, token=token)

    socket = await connect(f"/ws/session/?ticket={ticket}")

    welcome = await welcome_of(socket)
    assert welcome["user"] == {"id": user.pk, "username": "alice"}
    assert welcome["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token["exp"]))


async def test_a_ticket_works_once(connect, user, caplog):
    ticket = await sync(ticket_for)(user)
    first = await connect(f"/ws/session/?ticket={ticket}")
    await welcome_of(first)

    with caplog.at_level(logging.WARNING, logger="switchboard.security"):
        second = await connect(f"/ws/session/?ticket={ticket}")
        await assert_error_then_closed(second, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)

    assert "reason=ticket unknown, used or expired" in caplog.text
    assert ticket not in caplog.text


async def test_an_expired_ticket_is_unauthorized(connect, user, worker_hub):
    ticket = await sync(ticket_for)(user)
    store = worker_hub.tickets
    store.items = {key: (time.monotonic() - 1, value) for key, (_, value) in store.items.items()}

    socket = await connect(f"/ws/session/?ticket={ticket}")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


@pytest.mark.parametrize("ticket", ["x" * 65, "made-up-ticket"])
async def test_a_made_up_or_malformed_ticket_is_unauthorized(connect, user, ticket):
    socket = await connect(f"/ws/session/?ticket={ticket}")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_a_ticket_of_a_user_revoked_since_is_unauthorized(connect, user):
    ticket = await sync(ticket_for)(user)
    await sync(user_revoke_tokens)(user=user, reason="test")

    socket = await connect(f"/ws/session/?ticket={ticket}")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_a_ticket_whose_token_expired_meanwhile_is_token_expired(connect, user):
    token = access_for(user, lifetime=timedelta(seconds=1))
    ticket = await sync(ticket_for)(user, token=token)
    await asyncio.sleep(1.1)

    socket = await connect(f"/ws/session/?ticket={ticket}")

    await assert_error_then_closed(socket, ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED)


@override_settings(WS_TICKET_BIND_IP=True)
async def test_a_bound_ticket_works_only_from_the_address_that_asked_for_it(connect, user):
    elsewhere = await sync(ticket_for)(user, ip="198.51.100.7")
    here = await sync(ticket_for)(user, ip="198.51.100.7")

    stolen = await connect(f"/ws/session/?ticket={elsewhere}", application=from_ip("203.0.113.66"))
    await assert_error_then_closed(stolen, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
    own = await connect(f"/ws/session/?ticket={here}", application=from_ip("198.51.100.7"))
    assert (await welcome_of(own))["user"]["id"] == user.pk


async def test_without_binding_a_ticket_works_from_another_address(connect, user):
    ticket = await sync(ticket_for)(user, ip="198.51.100.7")

    socket = await connect(f"/ws/session/?ticket={ticket}", application=from_ip("203.0.113.66"))

    assert (await welcome_of(socket))["user"]["id"] == user.pk


# -- the first-frame auth message ---------------------------------------------------------


async def test_an_auth_first_frame_opens_the_session_and_its_id_comes_back(connect, user):
    socket = await connect("/ws/session/")
    await socket.send_json_to({"type": "auth", "token": str(access_for(user)), "id": "a1"})

    welcome = await welcome_of(socket)
    assert (welcome["user"]["id"], welcome["id"]) == (user.pk, "a1")
    await socket.send_json_to({"type": "ping", "id": 2})
    assert await socket.receive_json_from() == {"type": "pong", "id": 2}


async def test_an_auth_frame_with_a_bad_token_is_unauthorized_with_its_id(connect, user):
    socket = await connect("/ws/session/")
    await socket.send_json_to({"type": "auth", "token": "not.a.jwt", "id": 7})

    assert await socket.receive_json_from() == {**UNAUTHORIZED, "id": 7}
    assert await receive_close(socket) == (4500, "unauthorized")


async def test_an_auth_frame_with_an_expired_token_is_token_expired(connect, user):
    token = access_for(user, lifetime=timedelta(seconds=-5))
    socket = await connect("/ws/session/")
    await socket.send_json_to({"type": "auth", "token": str(token)})

    await assert_error_then_closed(socket, ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED)


@pytest.mark.parametrize(
    "frame", ['{"type":"ping"}', "not json", '{"type":"auth"}', '{"type":"auth","token":1}']
)
async def test_any_other_first_frame_is_unauthorized(connect, user, frame):
    socket = await connect("/ws/session/")
    await socket.send_to(text_data=frame)

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_an_auth_frame_after_the_welcome_is_an_unknown_type(connect, user):
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    await welcome_of(socket)
    await socket.send_json_to({"type": "auth", "token": str(access_for(user))})

    reply = await socket.receive_json_from()
    assert (reply["type"], reply["code"]) == ("error", "unknown_type")


async def test_a_refused_credential_does_not_wait_for_an_auth_frame(connect, user):
    socket = await connect("/ws/session/?token=not.a.jwt")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


def sync(function):
    from asgiref.sync import sync_to_async

    return sync_to_async(function)


async def test_an_auth_frame_refused_over_the_session_limit_keeps_its_id(connect, user, settings):
    settings.WS_MAX_SESSIONS_PER_USER = 1
    first = await connect(f"/ws/session/?token={access_for(user)}")
    await welcome_of(first)
    socket = await connect("/ws/session/")
    await socket.send_json_to({"type": "auth", "token": str(access_for(user)), "id": "a2"})

    assert await socket.receive_json_from() == {
        "type": "error",
        "code": "too_many_sessions",
        "message": "Too many open sessions for this user; close one first",
        "id": "a2",
    }
    assert await receive_close(socket) == (4502, "too many sessions")
