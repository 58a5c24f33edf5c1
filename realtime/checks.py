"""System checks for the realtime app, run by `manage.py check` and at startup of commands."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.utils.module_loading import import_string

from realtime.rooms.policy import MOVED_POLICIES


@register()
def channel_policy_check(app_configs: Any, **kwargs: Any) -> list[Error | Warning]:
    """REALTIME_CHANNEL_POLICY must name an importable function."""
    moved = MOVED_POLICIES.get(settings.REALTIME_CHANNEL_POLICY)
    if moved is not None:
        return [
            Warning(
                f"REALTIME_CHANNEL_POLICY names {settings.REALTIME_CHANNEL_POLICY!r}, which moved "
                f"to {moved!r}; the new path is used.",
                hint=f"Set REALTIME_CHANNEL_POLICY={moved} (or leave it unset for the default).",
                id="realtime.W001",
            )
        ]
    try:
        policy = import_string(settings.REALTIME_CHANNEL_POLICY)
    except ImportError as e:
        return [
            Error(
                f"REALTIME_CHANNEL_POLICY {settings.REALTIME_CHANNEL_POLICY!r} cannot be "
                f"imported: {e}",
                hint="Name a function (*, user, channel, action) -> bool by its dotted path.",
                id="realtime.E001",
            )
        ]
    if not callable(policy):
        return [Error("REALTIME_CHANNEL_POLICY is not callable.", id="realtime.E001")]
    return []
