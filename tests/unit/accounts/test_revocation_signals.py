"""accounts.revocation_signals: what accounts tells the apps above it, and what realtime does
on hearing it. (That sockets hear only after commit: tests/unit/accounts/test_signals.py.)"""

import pytest

from accounts.models import User
from accounts.revocation_signals import REVOKED_ALL, access_token_revoked, tokens_revoked
from accounts.services import access_token_revoke, user_revoke_tokens
from tests.conftest import access_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def heard():
    """Every revocation signal sent: (which, sender, arguments)."""
    sent = []

    def listen(signal, sender, **kwargs):
        name = "tokens_revoked" if signal is tokens_revoked else "access_token_revoked"
        sent.append((name, sender, kwargs))

    for signal in (tokens_revoked, access_token_revoked):
        signal.connect(listen, dispatch_uid="test.heard")
    yield sent
    for signal in (tokens_revoked, access_token_revoked):
        signal.disconnect(dispatch_uid="test.heard")


def test_revoking_a_users_tokens_sends_the_new_floor(user, heard):
    user_revoke_tokens(user=user, reason="test")

    assert heard == [("tokens_revoked", User, {"user_id": user.pk, "revoked_below": 1})]


def test_deleting_a_user_revokes_every_version(user, heard):
    user_id = user.pk
    user.delete()

    assert [(name, kwargs) for name, _, kwargs in heard] == [
        ("tokens_revoked", {"user_id": user_id, "revoked_below": REVOKED_ALL})
    ]


def test_a_logout_sends_the_one_access_token_it_revoked(user, heard):
    token = access_for(user)

    access_token_revoke(token=token, user_id=user.pk)

    assert heard == [("access_token_revoked", User, {"user_id": user.pk, "jti": token["jti"]})]


def test_realtime_closes_the_sessions_each_signal_names(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "realtime.receivers.user_sessions_revoke_on_commit",
        lambda **kwargs: calls.append(("revoke", kwargs)),
    )
    monkeypatch.setattr(
        "realtime.receivers.user_sessions_revoke_token_on_commit",
        lambda **kwargs: calls.append(("revoke_token", kwargs)),
    )

    tokens_revoked.send(sender=User, user_id=7, revoked_below=3)
    access_token_revoked.send(sender=User, user_id=7, jti="abc")

    assert calls == [
        ("revoke", {"user_id": 7, "revoked_below": 3}),
        ("revoke_token", {"user_id": 7, "jti": "abc"}),
    ]
