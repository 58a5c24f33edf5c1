"""realtime.rooms.policy: the channel-name rule and the default policy, without sockets or a
database."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.checks import run_checks

from accounts.models import User
from realtime.rooms.policy import (
    channel_allowed,
    channel_name_valid,
    channel_policy,
    default_channel_policy,
    room_group,
)

ACTIONS = ["subscribe", "publish", "presence"]


def member(pk: int = 5, **fields) -> User:
    """An unsaved user: the policy reads only its attributes."""
    return User(pk=pk, username=f"user{pk}", **fields)


@pytest.fixture
def fresh_policy():
    channel_policy.cache_clear()
    yield
    channel_policy.cache_clear()


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "lobby", "Room_1", "a.b-c_d", "...", "-", "user.5", "staff.ops", "x" * 80, "0" * 80],
)
def test_names_of_1_to_80_allowed_characters_are_valid(name):
    assert channel_name_valid(name) is True


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 81,
        "two words",
        " lobby",
        "lobby ",
        "room/1",
        "room\\1",
        "room:1",
        "room#1",
        "room*",
        "café",
        "ｌobby",  # a fullwidth letter
        "١٢٣",  # Arabic-Indic digits: \d would take them, the rule does not
        "lobby\n",
        "\nlobby",
        "lob\tby",
        "lobby\x00",
    ],
)
def test_other_names_are_invalid(name):
    assert channel_name_valid(name) is False


def test_a_room_group_is_the_name_behind_a_prefix_within_the_layers_limit():
    assert room_group("lobby") == "room.lobby"
    assert len(room_group("x" * 80)) < 100  # channels refuses group names of 100 or more


# -- the default policy ---------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("channel", ["lobby", "users.6", "user", "staff", "my.staff.room"])
def test_any_active_user_may_use_public_names(channel, action):
    assert default_channel_policy(user=member(), channel=channel, action=action) is True


@pytest.mark.parametrize("action", ACTIONS)
def test_a_user_may_use_their_own_user_channel(action):
    assert default_channel_policy(user=member(5), channel="user.5", action=action) is True


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("channel", ["user.6", "user.50", "user.05", "user.5.x", "user.", "user.x"])
def test_every_other_user_channel_is_refused(channel, action):
    assert default_channel_policy(user=member(5), channel=channel, action=action) is False


@pytest.mark.parametrize("action", ACTIONS)
def test_staff_do_not_get_other_users_channels(action):
    staff = member(5, is_staff=True)

    assert default_channel_policy(user=staff, channel="user.6", action=action) is False


@pytest.mark.parametrize("action", ACTIONS)
def test_staff_names_are_refused_to_non_staff(action):
    assert default_channel_policy(user=member(), channel="staff.ops", action=action) is False


@pytest.mark.parametrize("action", ACTIONS)
def test_staff_names_are_allowed_to_staff(action):
    staff = member(is_staff=True)

    assert default_channel_policy(user=staff, channel="staff.ops", action=action) is True
    assert default_channel_policy(user=staff, channel="staff.", action=action) is True


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("channel", ["lobby", "user.5", "staff.ops"])
def test_an_inactive_user_is_refused_everything(channel, action):
    inactive = member(5, is_active=False, is_staff=True)

    assert default_channel_policy(user=inactive, channel=channel, action=action) is False


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("user", [AnonymousUser(), None], ids=["anonymous", "none"])
def test_no_authenticated_user_is_refused_everything(user, action):
    assert default_channel_policy(user=user, channel="lobby", action=action) is False


# -- the configured policy ------------------------------------------------------------------


def allow_everything(*, user, channel, action):
    return "yes"  # truthy, not True


def test_the_default_setting_names_the_default_policy(fresh_policy):
    assert channel_policy() is default_channel_policy
    assert channel_allowed(user=member(), channel="staff.ops", action="subscribe") is False


def test_a_policy_named_in_settings_replaces_the_default_and_its_answer_becomes_a_bool(
    settings, fresh_policy
):
    settings.REALTIME_CHANNEL_POLICY = f"{__name__}.allow_everything"

    assert channel_policy() is allow_everything
    assert channel_allowed(user=member(), channel="staff.ops", action="publish") is True


def test_the_policy_is_loaded_once_until_the_cache_is_cleared(settings, fresh_policy):
    assert channel_policy() is default_channel_policy

    settings.REALTIME_CHANNEL_POLICY = f"{__name__}.allow_everything"

    assert channel_policy() is default_channel_policy
    channel_policy.cache_clear()
    assert channel_policy() is allow_everything


def test_a_policy_path_that_names_nothing_fails_loudly(settings, fresh_policy):
    settings.REALTIME_CHANNEL_POLICY = "realtime.rooms.policy.no_such_policy"

    with pytest.raises(ImportError, match="no_such_policy"):
        channel_allowed(user=member(), channel="lobby", action="subscribe")


@pytest.mark.parametrize("channel", ["Staff.ops", "STAFF.ops", "User.1", "USER.1"])
def test_look_alikes_of_protected_prefixes_are_protected_too(channel):
    assert default_channel_policy(user=member(), channel=channel, action="subscribe") is False


def test_an_unimportable_channel_policy_fails_the_system_check(settings, fresh_policy):
    settings.REALTIME_CHANNEL_POLICY = "realtime.nowhere.policy"
    errors = [e for e in run_checks() if e.id == "realtime.E001"]
    assert len(errors) == 1
    assert "realtime.nowhere.policy" in errors[0].msg


def test_the_default_policys_path_before_its_module_moved_still_works_with_a_warning(settings):
    from django.core.checks import Warning as CheckWarning

    from realtime.checks import channel_policy_check
    from realtime.rooms.policy import channel_policy, default_channel_policy

    settings.REALTIME_CHANNEL_POLICY = "realtime.rooms.default_channel_policy"
    channel_policy.cache_clear()
    try:
        assert channel_policy() is default_channel_policy
        assert channel_policy_check(None) == [
            CheckWarning(
                "REALTIME_CHANNEL_POLICY names 'realtime.rooms.default_channel_policy', which "
                "moved to 'realtime.rooms.policy.default_channel_policy'; the new path is used.",
                hint="Set REALTIME_CHANNEL_POLICY=realtime.rooms.policy.default_channel_policy "
                "(or leave it unset for the default).",
                id="realtime.W001",
            )
        ]
    finally:
        channel_policy.cache_clear()
