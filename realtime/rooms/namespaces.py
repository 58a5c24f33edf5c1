"""Channel namespaces: the part of a room's name before its first `.`, and what it keeps.

`REALTIME_NAMESPACES` (settings; a JSON object in the environment) maps a namespace to its
options. A room whose name has no configured namespace keeps the defaults: no history,
presence on, no join/leave events, and any user the policy lets publish may publish.
`namespaces_validate()` runs when the app starts (`realtime.apps`): a bad entry stops it with
a message naming the fix.
"""

from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PublishRule = Literal["subscribers", "staff", "server"]
MAX_HISTORY_SIZE = 10_000  # a recovery reads at most this many entries in one round trip
MAX_HISTORY_TTL = 30 * 24 * 3600


class NamespaceOptions(msgspec.Struct, forbid_unknown_fields=True):
    """One namespace's options, as configured (every one optional)."""

    history_size: int = 0
    history_ttl: int = 0
    presence: bool = True
    join_leave: bool = False
    publish: PublishRule = "subscribers"


@dataclass(frozen=True)
class Namespace:
    """The rules of one namespace (`name` "" for rooms outside every configured one)."""

    name: str
    history_size: int = 0
    history_ttl: int = 0
    presence: bool = True
    join_leave: bool = False
    # "subscribers": a session subscribed to the room; "staff": staff users; "server": only
    # server-side publishing. Rooms outside a namespace: whoever the policy allows (`None`).
    publish: PublishRule | None = None

    @property
    def history(self) -> bool:
        return self.history_size > 0


NO_NAMESPACE = Namespace(name="")


def _namespace_of(name: str, raw: object) -> Namespace:
    if not isinstance(name, str) or not name or "." in name:
        raise ImproperlyConfigured(
            f"REALTIME_NAMESPACES: {str(name)[:40]!r} is not a namespace name; use the part "
            "of a channel name before its first '.' (for `chat.lobby`: `chat`)."
        )
    try:
        options = msgspec.convert(raw, NamespaceOptions)
    except msgspec.ValidationError as e:
        raise ImproperlyConfigured(
            f"REALTIME_NAMESPACES[{name!r}]: {e}. Options: history_size (int), history_ttl "
            "(seconds), presence (bool), join_leave (bool), publish "
            '("subscribers", "staff" or "server").'
        ) from e
    if not 0 <= options.history_size <= MAX_HISTORY_SIZE:
        raise ImproperlyConfigured(
            f"REALTIME_NAMESPACES[{name!r}]: history_size must be between 0 (no history) and "
            f"{MAX_HISTORY_SIZE}."
        )
    if options.history_size and not 0 < options.history_ttl <= MAX_HISTORY_TTL:
        raise ImproperlyConfigured(
            f"REALTIME_NAMESPACES[{name!r}]: a namespace with history_size needs history_ttl, "
            f"the seconds its history is kept (1 to {MAX_HISTORY_TTL})."
        )
    if options.join_leave and not options.presence:
        raise ImproperlyConfigured(
            f"REALTIME_NAMESPACES[{name!r}]: join_leave needs presence; set presence to true "
            "or join_leave to false."
        )
    return Namespace(
        name=name,
        history_size=options.history_size,
        history_ttl=options.history_ttl if options.history_size else 0,
        presence=options.presence,
        join_leave=options.join_leave,
        publish=options.publish,
    )


def namespaces_parse(raw: Any) -> dict[str, Namespace]:
    """`REALTIME_NAMESPACES` checked; ImproperlyConfigured naming the fix when it is wrong."""
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(
            'REALTIME_NAMESPACES must be a JSON object: {"chat": {"history_size": 100, '
            '"history_ttl": 300}}.'
        )
    return {name: _namespace_of(name, options) for name, options in raw.items()}


_parsed: tuple[object, dict[str, Namespace]] | None = None


def namespaces() -> dict[str, Namespace]:
    """The configured namespaces (parsed again when the setting is replaced, as tests do)."""
    global _parsed
    raw = settings.REALTIME_NAMESPACES
    parsed = _parsed
    if parsed is None or parsed[0] is not raw:
        parsed = _parsed = (raw, namespaces_parse(raw))
    return parsed[1]


def namespaces_validate() -> None:
    """Raise ImproperlyConfigured when `REALTIME_NAMESPACES` is wrong (at startup)."""
    namespaces()


def namespace_of(channel: str) -> Namespace:
    """The namespace of room `channel` (NO_NAMESPACE when its prefix is not configured)."""
    name, dot, _ = channel.partition(".")
    if not dot:
        return NO_NAMESPACE
    return namespaces().get(name, NO_NAMESPACE)
