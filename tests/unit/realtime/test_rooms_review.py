"""Rooms edge cases: leaves replayed after an outage, look-alike prefixes, startup checks."""

import pytest
from django.core.checks import run_checks

from realtime.events import publish
from realtime.rooms.policy import channel_policy, default_channel_policy
from realtime.rooms.presence import distinct_users
from tests.conftest import access_for


async def test_a_leave_while_the_layer_is_down_is_replayed_on_recovery(
    connect, user, worker_hub, monkeypatch
):
    socket = await connect(f"/ws/session/?token={access_for(user)}")
    assert (await socket.receive_json_from())["type"] == "welcome"
    await socket.send_json_to({"type": "subscribe", "channel": "lobby"})
    assert (await socket.receive_json_from())["type"] == "subscribed"
    health = worker_hub.health
    # No monitor for this test: it performs the recovery step itself, after looking.
    monkeypatch.setattr(health, "monitor_start", lambda: None)
    health.failed("receive", ConnectionError("test outage"))

    await socket.send_json_to({"type": "unsubscribe", "channel": "lobby"})
    assert await socket.receive_json_from() == {"type": "unsubscribed", "channel": "lobby"}
    # The leave could not reach the store yet: the member is still listed.
    assert await worker_hub.presence.users("lobby") == [(user.pk, user.username)]

    health.available = True
    health.up.set()
    await health._rejoin_all()
    assert await worker_hub.presence.users("lobby") == []
    assert health.pending_leaves == []


@pytest.mark.parametrize("channel", ["Staff.ops", "STAFF.ops", "User.1", "USER.1"])
def test_look_alikes_of_protected_prefixes_are_protected_too(channel, db):
    from tests.conftest import UserFactory

    member = UserFactory()
    assert default_channel_policy(user=member, channel=channel, action="subscribe") is False


def test_publishing_to_a_non_string_channel_raises_value_error():
    with pytest.raises(ValueError, match="invalid channel name: 'None'"):
        publish(None, {"x": 1})


def test_an_unimportable_channel_policy_fails_the_system_check(settings):
    settings.REALTIME_CHANNEL_POLICY = "realtime.nowhere.policy"
    channel_policy.cache_clear()
    try:
        errors = [e for e in run_checks() if e.id == "realtime.E001"]
    finally:
        channel_policy.cache_clear()
    assert len(errors) == 1
    assert "realtime.nowhere.policy" in errors[0].msg


def test_presence_lists_a_renamed_user_once():
    assert distinct_users([(2, "bob"), (1, "old"), (1, "new")]) == [(1, "new"), (2, "bob")]
