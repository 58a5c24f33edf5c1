"""Rooms: which channel names exist, who may use them, and their channel-layer groups."""

import re
from collections.abc import Callable
from functools import cache
from typing import Any, Literal

from django.conf import settings
from django.utils.module_loading import import_string

CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")
Action = Literal["subscribe", "publish", "presence", "history"]
Policy = Callable[..., bool]


def channel_name_valid(name: object) -> bool:
    """A string of 1-80 characters of `[A-Za-z0-9_.-]`."""
    return isinstance(name, str) and CHANNEL_NAME.fullmatch(name) is not None


def room_group(channel: str) -> str:
    """The channel-layer group of a room (`room.` + a valid name stays under 100 characters)."""
    return f"room.{channel}"


def default_channel_policy(*, user: Any, channel: str, action: Action) -> bool:
    """Any authenticated user may use public names; `user.<id>` only that user; `staff.*`
    only staff. Server code (`realtime.events.publish`) is not subject to this."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    prefix = channel.lower()  # `Staff.x` must not pass for a public look-alike of `staff.x`
    if prefix.startswith("user."):
        return channel == f"user.{user.pk}"
    if prefix.startswith("staff."):
        return bool(user.is_staff)
    return True


# Dotted paths of the default policy before its module moved (1.0.0's .env.example had it):
# still honoured, and `manage.py check` says the new one (realtime.W001).
MOVED_POLICIES = {
    "realtime.rooms.default_channel_policy": "realtime.rooms.policy.default_channel_policy",
}


def channel_policy_path() -> str:
    """The dotted path REALTIME_CHANNEL_POLICY names, a moved one read as its new path."""
    path: str = settings.REALTIME_CHANNEL_POLICY
    return MOVED_POLICIES.get(path, path)


@cache
def channel_policy() -> Policy:
    """The policy named by REALTIME_CHANNEL_POLICY (a dotted path), loaded once."""
    policy: Policy = import_string(channel_policy_path())
    return policy


def channel_allowed(*, user: Any, channel: str, action: Action) -> bool:
    """Whether `user` may `action` the room `channel`, by the configured policy."""
    return bool(channel_policy()(user=user, channel=channel, action=action))
