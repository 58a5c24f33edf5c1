"""accounts.signals: password changes, deactivation and deletion revoke tokens and close sessions.

Sessions are reached through a real in-memory channel layer: each test listens on the
user's group the way a session does, and sees exactly the events sent after commit.
"""

import asyncio
import time
from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import aauthenticate, authenticate
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.hashers import make_password
from django.test import Client
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from accounts.models import User
from accounts.revocation_signals import REVOKED_ALL
from accounts.services import user_revoke_tokens
from accounts.tokens import TokenRejected, auser_for_token, user_for_token
from realtime.events import user_group
from tests.conftest import PASSWORD, UserFactory, access_for, refresh_for

pytestmark = pytest.mark.django_db

REVOKE_EVENT = {"type": "session.revoke"}
NEW_PASSWORD = "another long passphrase 77"


@pytest.fixture
def session_events(user) -> Callable[[], list[dict]]:
    """Join a channel to the user's group; the returned function drains what arrived."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    user_id = user.pk  # a deleted user's instance forgets it
    async_to_sync(layer.group_add)(user_group(user_id), channel)

    async def drain() -> list[dict]:
        events = []
        while True:
            try:
                event = await asyncio.wait_for(layer.receive(channel), 0.1)
            except TimeoutError:
                return events
            # The send time (for the fan-out latency metric) is checked, then set aside.
            assert abs(event.pop("sent_at") - time.time()) < 5
            # Sessions whose token version is below this floor close: the new version, or
            # every version for a deleted user.
            stored = (
                await User.objects.filter(pk=user.pk)
                .values_list("token_version", flat=True)
                .afirst()
            )
            assert event.pop("revoked_below") == (REVOKED_ALL if stored is None else stored)
            # The user it names: each worker hands it to that user's sessions.
            assert event.pop("user_id") == user_id
            events.append(event)

    return async_to_sync(drain)


def assert_revoked(raw: str, reason: str = "token revoked") -> None:
    with pytest.raises(TokenRejected) as refused:
        user_for_token(raw)
    assert (refused.value.code, refused.value.reason) == ("unauthorized", reason)


def test_changing_the_password_revokes_tokens_and_closes_sessions(
    user, session_events, django_capture_on_commit_callbacks
):
    access, refresh = str(access_for(user)), refresh_for(user)

    with django_capture_on_commit_callbacks(execute=True):
        user.set_password(NEW_PASSWORD)
        user.save()

    assert_revoked(access)
    assert BlacklistedToken.objects.filter(token__jti=refresh["jti"]).exists()
    user.refresh_from_db()
    assert user.token_version == 1
    assert user.tokens_revoked_at is not None
    assert session_events() == [REVOKE_EVENT]
    assert user_for_token(str(access_for(user))).user == user


def test_changing_the_password_with_update_fields_revokes_tokens(
    user, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        user.set_password(NEW_PASSWORD)
        user.save(update_fields=["password"])

    assert_revoked(access)
    assert session_events() == [REVOKE_EVENT]


def test_a_set_password_form_revokes_tokens(
    user, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))
    form = SetPasswordForm(user, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert form.is_valid(), form.errors

    with django_capture_on_commit_callbacks(execute=True):
        form.save()

    assert_revoked(access)
    assert session_events() == [REVOKE_EVENT]


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_changing_the_password_in_the_admin_revokes_tokens(
    user, admin_client, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/accounts/user/{user.pk}/password/",
            {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )

    assert response.status_code == 302
    assert_revoked(access)
    assert session_events() == [REVOKE_EVENT]


def test_making_the_password_unusable_in_the_admin_revokes_tokens(
    user, admin_client, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/accounts/user/{user.pk}/password/",
            {"usable_password": "false", "unset-password": "1"},
        )

    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.has_usable_password()
    assert_revoked(access)
    assert session_events() == [REVOKE_EVENT]


def test_the_admin_revoke_action_revokes_tokens_and_closes_sessions(
    user, admin_client, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/accounts/user/", {"action": "revoke_tokens", "_selected_action": [user.pk]}
        )

    assert response.status_code == 302
    assert_revoked(access)
    assert session_events() == [REVOKE_EVENT]


def test_a_password_hash_upgrade_at_login_does_not_revoke_tokens(
    user, settings, session_events, django_capture_on_commit_callbacks
):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.ScryptPasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    User.objects.filter(pk=user.pk).update(password=make_password(PASSWORD, hasher="md5"))
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        logged_in = authenticate(username="alice", password=PASSWORD)

    assert logged_in == user
    logged_in.refresh_from_db()
    assert logged_in.password.startswith("scrypt$")  # the hash really was upgraded
    assert logged_in.token_version == 0
    assert user_for_token(access).user == user
    assert callbacks == []
    assert session_events() == []


def test_re_saving_the_same_password_does_not_revoke_tokens(
    user, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        user.set_password(PASSWORD)
        user.save()

    assert user_for_token(access).user == user
    assert session_events() == []


def test_saving_other_fields_does_not_revoke_tokens(
    user, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        user.email = "alice@new.example.com"
        user.first_name = "Alice"
        user.save()
        user.save(update_fields=["last_login"])

    assert user_for_token(access).user == user
    assert session_events() == []


@pytest.mark.parametrize("update_fields", [None, ["is_active"]])
def test_deactivating_a_user_revokes_tokens_and_closes_sessions(
    user, session_events, django_capture_on_commit_callbacks, update_fields
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save(update_fields=update_fields)

    assert_revoked(access, "inactive user")
    user.refresh_from_db()
    assert user.token_version == 1
    assert session_events() == [REVOKE_EVENT]


def test_reactivating_a_user_does_not_bring_old_tokens_back(
    user, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
        user.is_active = True
        user.save()

    assert_revoked(access)
    assert session_events() == [REVOKE_EVENT]


def test_deleting_a_user_makes_tokens_fail_and_closes_sessions(
    user, session_events, django_capture_on_commit_callbacks
):
    access = str(access_for(user))

    with django_capture_on_commit_callbacks(execute=True):
        user.delete()

    assert_revoked(access, "unknown user")
    assert session_events() == [REVOKE_EVENT]


def test_nothing_is_sent_before_the_transaction_commits(
    user, session_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        user.is_active = False
        user.save()

    assert session_events() == []
    assert len(callbacks) == 1


def test_creating_a_user_does_not_send_anything(session_events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        UserFactory(username="carol")

    assert callbacks == []
    assert session_events() == []


@pytest.mark.django_db(transaction=True)
async def test_a_password_hash_upgrade_at_async_login_does_not_revoke_tokens(user, settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.ScryptPasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    await User.objects.filter(pk=user.pk).aupdate(password=make_password(PASSWORD, hasher="md5"))
    access = str(access_for(user))

    logged_in = await aauthenticate(username="alice", password=PASSWORD)

    assert logged_in == user
    await logged_in.arefresh_from_db()
    assert logged_in.password.startswith("scrypt$")
    assert logged_in.token_version == 0
    assert (await auser_for_token(access)).user == user


def test_saving_a_stale_copy_does_not_bring_revoked_tokens_back(user):
    stale = User.objects.get(pk=user.pk)  # e.g. an admin form opened before the revocation
    old_access = str(access_for(user))
    user_revoke_tokens(user=user, reason="test")

    stale.first_name = "Edited"
    stale.save()

    stored = User.objects.get(pk=user.pk)
    assert (stored.first_name, stored.token_version) == ("Edited", user.token_version)
    assert user.token_version == 1
    assert_revoked(old_access)
