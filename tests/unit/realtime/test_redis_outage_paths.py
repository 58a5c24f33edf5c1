"""Paths that meet Redis while it is down: documented answers, never a 500 or a 1011."""

import pytest
import redis
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from realtime.protocol.codes import CloseCode, ErrorCode
from tests.conftest import access_for, refresh_for
from tests.unit.realtime.ws import assert_error_then_closed


async def test_a_ticket_store_that_fails_on_redeem_answers_unavailable_1013(
    connect, user, monkeypatch, worker_hub
):
    async def broken(key):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(worker_hub.tickets, "take", broken)

    socket = await connect("/ws/session/?ticket=" + "t" * 43)

    await assert_error_then_closed(socket, ErrorCode.UNAVAILABLE, CloseCode.TRY_AGAIN_LATER)


@pytest.mark.django_db
def test_a_logout_whose_access_token_cannot_be_revoked_answers_503_and_changes_nothing(
    user, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr("accounts.services.cache.set", broken)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(user)}")
    refresh = refresh_for(user)

    response = client.post("/api/auth/logout/", {"refresh": str(refresh)}, format="json")

    assert (response.status_code, response.json()) == (
        503,
        {"detail": "Temporarily unavailable; try again later.", "code": "unavailable"},
    )
    assert "access token not recorded as revoked (cache unreachable: ConnectionError)" in (
        caplog.text
    )
    # The refresh token is not blacklisted: the client may simply log out again.
    assert not BlacklistedToken.objects.filter(token__jti=refresh["jti"]).exists()


@pytest.mark.django_db
def test_verify_answers_503_when_the_revoked_token_list_cannot_be_read(user, monkeypatch):
    def broken(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr("accounts.tokens.cache.get", broken)

    response = APIClient().post(
        "/api/auth/token/verify/", {"token": str(access_for(user))}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (503, "unavailable")
