"""Refresh-token records stay bounded and private: the daily prune deletes expired ones
(outstanding and blacklisted), and the admin never shows a raw refresh token
(accounts/services.py::refresh_tokens_flush, realtime prune_sessions, accounts/admin.py)."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.services import refresh_tokens_flush
from accounts.tokens import RefreshToken
from tests.conftest import UserFactory, refresh_for

pytestmark = pytest.mark.django_db

OUTSTANDING = "/admin/token_blacklist/outstandingtoken/"
BLACKLISTED = "/admin/token_blacklist/blacklistedtoken/"


def prune() -> list[str]:
    out = StringIO()
    call_command("prune_sessions", stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def token_parts(raw: str) -> list[str]:
    """A JWT, its payload and its signature (the header is the same for every token)."""
    _, payload, signature = raw.split(".")
    return [raw, payload, signature]


# -- the prune ------------------------------------------------------------------------------


def recorded(token: RefreshToken) -> RefreshToken:
    """`token` with its outstanding record expiring when it does (simplejwt records the
    expiry before a test edits it)."""
    expires_at = datetime.fromtimestamp(token["exp"], UTC)
    OutstandingToken.objects.filter(jti=token["jti"]).update(expires_at=expires_at)
    return token


def test_the_daily_prune_deletes_expired_refresh_tokens_and_keeps_live_ones(user):
    expired, expired_blacklisted = (
        recorded(refresh_for(user, lifetime=timedelta(seconds=-1))) for _ in range(2)
    )
    live, live_blacklisted = refresh_for(user), refresh_for(user)
    expired_blacklisted.blacklist()
    live_blacklisted.blacklist()

    out = prune()

    assert out[-1] == "2 expired refresh token(s) deleted"
    assert set(OutstandingToken.objects.values_list("jti", flat=True)) == {
        live["jti"],
        live_blacklisted["jti"],
    }
    assert list(BlacklistedToken.objects.values_list("token__jti", flat=True)) == [
        live_blacklisted["jti"]
    ]


def test_the_flush_works_in_batches_and_counts_every_row(user):
    tokens = [recorded(refresh_for(user, lifetime=timedelta(seconds=-1))) for _ in range(7)]
    for token in tokens[:3]:
        token.blacklist()

    assert refresh_tokens_flush(expired_before=timezone.now(), batch=2) == 7
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (0, 0)


# -- the admin ------------------------------------------------------------------------------


@pytest.fixture
def superuser_client(plain_static_files, db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def blacklisted(user) -> tuple[str, OutstandingToken]:
    """A refresh token of alice, blacklisted: its raw value and its outstanding record."""
    token = refresh_for(user)
    token.blacklist()
    return str(token), OutstandingToken.objects.get(jti=token["jti"])


@pytest.mark.parametrize(
    "page",
    ["outstanding list", "outstanding change", "blacklisted list", "blacklisted change"],
)
def test_no_admin_page_of_a_refresh_token_shows_the_raw_token(superuser_client, blacklisted, page):
    raw, record = blacklisted
    path = {
        "outstanding list": OUTSTANDING,
        "outstanding change": f"{OUTSTANDING}{record.pk}/change/",
        "blacklisted list": BLACKLISTED,
        "blacklisted change": f"{BLACKLISTED}{record.blacklistedtoken.pk}/change/",
    }[page]

    response = superuser_client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    assert record.jti in html
    # The token as issued, and as simplejwt recorded it (before our `ver` claim was added).
    secrets = token_parts(raw) + token_parts(record.token)
    assert [part for part in secrets if part in html] == []


@pytest.mark.parametrize(
    ("changelist", "lookup"),
    [(OUTSTANDING, "token__startswith"), (OUTSTANDING, "token"), (BLACKLISTED, "token__token")],
)
def test_filtering_by_the_raw_token_in_the_url_is_refused_with_400(
    superuser_client, blacklisted, changelist, lookup
):
    _, record = blacklisted

    response = superuser_client.get(changelist, {lookup: record.token[:40]})

    assert response.status_code == 400


def test_the_admin_still_searches_refresh_tokens_by_jti(superuser_client, blacklisted, user):
    _, record = blacklisted
    other = refresh_for(user)

    response = superuser_client.get(OUTSTANDING, {"q": record.jti})

    assert response.status_code == 200
    html = response.content.decode()
    assert "1 result (" in html
    assert (record.jti in html, other["jti"] in html) == (True, False)
