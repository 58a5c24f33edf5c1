"""realtime.events: the door from Django code into the sockets, after commit."""

import logging

import pytest
from django.db import transaction

from accounts.services import user_revoke_tokens
from accounts.tokens import TokenRejected, user_for_token
from realtime.events import publish, user_group, user_sessions_revoke_on_commit
from tests.conftest import access_for


def test_the_user_group_name_is_stable_and_per_user():
    assert user_group(7) == "sessions.user.7"
    assert user_group(7) != user_group(17)


@pytest.fixture
def unreachable_layer(settings):
    """A Redis channel layer pointing at a port nobody listens on."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1", "socket_connect_timeout": 1}]},
        }
    }


@pytest.mark.django_db
def test_an_unreachable_channel_layer_is_logged_and_the_revocation_still_commits(
    user, unreachable_layer, caplog, django_capture_on_commit_callbacks
):
    access = str(access_for(user))
    caplog.set_level(logging.ERROR, logger="switchboard.realtime")

    with django_capture_on_commit_callbacks(execute=True):
        user_revoke_tokens(user=user, reason="test")

    with pytest.raises(TokenRejected, match="token revoked"):
        user_for_token(access)
    errors = [r for r in caplog.records if r.name == "switchboard.realtime"]
    assert [r.getMessage() for r in errors] == [
        f"could not reach the channel layer to close user {user.pk}"
    ]
    assert errors[0].exc_info is not None


@pytest.mark.django_db
def test_nothing_is_sent_when_the_transaction_rolls_back(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            user_sessions_revoke_on_commit(user_id=user.pk, revoked_below=1)
            raise RuntimeError("rolled back")

    assert callbacks == []


def test_publishing_to_a_non_string_channel_raises_value_error():
    with pytest.raises(ValueError, match="invalid channel name: 'None'"):
        publish(None, {"x": 1})
