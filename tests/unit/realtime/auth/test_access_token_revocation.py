"""Logout revokes the access token it was called with: on REST, on new sockets, and on the
sessions it opened, while the user's other tokens keep working."""

from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from realtime.protocol.codes import CloseCode, ErrorCode
from tests.conftest import access_for, refresh_for
from tests.unit.realtime.ws import assert_error_then_closed


def logout(user, access) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.post("/api/auth/logout/", {"refresh": str(refresh_for(user))}, format="json")


def me(access) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/auth/me/")


def test_after_logout_its_access_token_is_refused_and_others_still_work(user):
    used, other = access_for(user), access_for(user)

    assert logout(user, used).status_code == 204

    refused = me(used)
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
    assert me(other).status_code == 200


async def test_logout_closes_the_sessions_of_its_token_and_only_those(connect, user):
    used, other = access_for(user), access_for(user)
    on_used = await connect(f"/ws/session/?token={used}")
    on_other = await connect(f"/ws/session/?token={other}")
    for socket in (on_used, on_other):
        assert (await socket.receive_json_from())["type"] == "welcome"

    assert (await sync_to_async(logout)(user, used)).status_code == 204

    await assert_error_then_closed(on_used, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await on_other.send_json_to({"type": "ping", "id": 1})
    assert await on_other.receive_json_from() == {"type": "pong", "id": 1}


async def test_a_revoked_access_token_cannot_open_a_session(connect, user):
    used = access_for(user)
    await sync_to_async(logout)(user, used)

    socket = await connect(f"/ws/session/?token={used}")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


async def test_a_ticket_of_a_token_revoked_since_is_refused(connect, user):
    used = access_for(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {used}")
    ticket = (await sync_to_async(client.post)("/api/realtime/ticket/")).json()["ticket"]
    await sync_to_async(logout)(user, used)

    socket = await connect(f"/ws/session/?ticket={ticket}")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
