"""The one door from Django code into the sockets: group names and the events sent to them."""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from accounts.tokens import AuthUnavailable
from core.async_cache import cache_get
from realtime.metrics import HISTORY_STORE_FAILURES, LAYER_FAILURES, labelled
from realtime.rooms.history import history_body
from realtime.rooms.namespaces import namespace_of
from realtime.rooms.policy import channel_name_valid, room_group

logger = logging.getLogger("switchboard.realtime")

Event = dict[str, Any]


def channel_layer() -> BaseChannelLayer:
    """The default channel layer (settings always configure one: Redis or in memory)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS has no default layer")
    return layer


def room_event(*, channel: str, data: Any, sender: dict[str, Any] | None) -> Event:
    """The channel-layer event that delivers one published message to a room's subscribers."""
    now = time.time()
    return {
        "type": "room.message",
        "channel": channel,
        "data": data,
        "from": sender,
        "ts": datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "sent_at": now,
    }


class PublishUnavailable(Exception):
    """A publication to a room with history could not be stored (Redis cannot answer): it
    was not delivered either."""


def publish(channel: str, data: Any) -> int | None:
    """Deliver `data` to every subscriber of room `channel` on every worker, `"from": null`,
    once the surrounding transaction commits (at once outside one). Server code is not
    subject to the rooms policy, nor to its namespace's `publish` rule. ValueError for an
    invalid channel name.

    Published at once, in a room with history: the offset it got (None in a room without);
    PublishUnavailable when its history cannot store it (nothing was delivered). Inside a
    transaction it waits for the commit and returns None; a failure then is logged and
    counted (`switchboard_history_store_failures`)."""
    if not channel_name_valid(channel):
        raise ValueError(f"invalid channel name: {str(channel)[:80]!r}")
    if not transaction.get_connection().in_atomic_block:
        return publish_now(channel, data)

    def send() -> None:
        try:
            publish_now(channel, data)
        except PublishUnavailable:
            logger.exception("could not publish to %s after the commit", channel)

    transaction.on_commit(send, robust=True)
    return None


def publish_now(channel: str, data: Any) -> int | None:
    """`publish` without waiting for a commit (sync): the offset, in a room with history."""
    # Imported here: the hub imports this module's neighbours (events is the sync door).
    from realtime.hub import hub

    event = room_event(channel=channel, data=data, sender=None)
    namespace = namespace_of(channel)
    offset = None
    if namespace.history:
        try:
            position = hub().history.append_sync(channel, namespace, history_body(event))
        except Exception as e:
            labelled(HISTORY_STORE_FAILURES, namespace.name).inc()
            raise PublishUnavailable(f"history of {channel} not stored ({type(e).__name__})") from e
        event.update(offset=position.offset, epoch=position.epoch)
        offset = position.offset
    layer = channel_layer()
    try:
        async_to_sync(layer.group_send)(room_group(channel), event)
    except Exception:
        LAYER_FAILURES.labels("group_send").inc()
        if offset is None:
            logger.exception("could not publish to %s", channel)
        else:  # stored: workers read it from history at the next gap, reconnects recover it
            logger.exception("offset %s of %s stored in history but not sent live", offset, channel)
    return offset


def user_group(user_id: int) -> str:
    """The channel-layer group that holds the channel of every worker with one of the user's
    sessions open (`realtime.session.user_groups`)."""
    return f"sessions.user.{user_id}"


def _floor_key(user_id: int) -> str:
    return f"switchboard:revoked-below:{user_id}"


def user_sessions_revoke(*, user_id: int, revoked_below: int) -> None:
    """Close, on every worker, the user's sessions whose token version is below
    `revoked_below` (sync; use after commit).

    The floor goes to the shared cache first: a session that joins the user's group just
    after this send reads it there (see `revocation_floor`), so no connect can slip through.
    """
    try:
        cache.set(_floor_key(user_id), revoked_below, timeout=settings.JWT_ACCESS_TTL + 60)
    except Exception:
        logger.exception("could not record the revocation of user %s in the cache", user_id)
    layer = channel_layer()
    event = {
        "type": "session.revoke",
        "user_id": user_id,
        "revoked_below": revoked_below,
        "sent_at": time.time(),
    }
    try:
        async_to_sync(layer.group_send)(user_group(user_id), event)
    except Exception:
        LAYER_FAILURES.labels("group_send").inc()
        raise


def user_sessions_revoke_on_commit(*, user_id: int, revoked_below: int) -> None:
    """`user_sessions_revoke` once the surrounding transaction commits (at once outside one).

    A failure to reach the channel layer is logged, not raised: the revocation itself is
    committed, and each worker rechecks its open sessions when the layer is back.
    """

    def send() -> None:
        try:
            user_sessions_revoke(user_id=user_id, revoked_below=revoked_below)
        except Exception:
            logger.exception("could not reach the channel layer to close user %s", user_id)

    transaction.on_commit(send)


async def revocation_floor(user_id: int) -> int | None:
    """The version below which the user's tokens were revoked lately, if the cache knows."""
    try:
        floor: int | None = await cache_get(_floor_key(user_id))
    except Exception as e:  # a connect racing a revocation could slip through: refuse it
        raise AuthUnavailable(f"revocation floor unreadable ({type(e).__name__})") from e
    return floor


def _disconnect_event(**target: int | str) -> Event:
    """A disconnect of the sessions `target` names: a `user_id`'s, or one `session_id`."""
    return {"type": "session.disconnect", **target, "sent_at": time.time()}


def _send_on_commit(what: str, send: Callable[[], object]) -> None:
    """Run `send` (one channel-layer call) after commit; a failure is logged, not raised."""

    def run() -> None:
        try:
            send()
        except Exception:
            LAYER_FAILURES.labels("send").inc()
            logger.exception("could not reach the channel layer to %s", what)

    transaction.on_commit(run)


def session_disconnect_on_commit(*, channel_name: str, session_id: str) -> None:
    """Close one session (4501) on the worker whose channel is `channel_name`, once the
    transaction commits."""
    layer = channel_layer()
    event = _disconnect_event(session_id=session_id)
    _send_on_commit("disconnect a session", lambda: async_to_sync(layer.send)(channel_name, event))


def user_sessions_revoke_token_on_commit(*, user_id: int, jti: str) -> None:
    """Close (4501), on every worker, the user's sessions opened or refreshed with the access
    token `jti`, once the transaction commits."""
    layer = channel_layer()
    event = {"type": "session.revoke_token", "user_id": user_id, "jti": jti, "sent_at": time.time()}
    _send_on_commit(
        f"close the sessions of one token of user {user_id}",
        lambda: async_to_sync(layer.group_send)(user_group(user_id), event),
    )


def user_sessions_disconnect_on_commit(*, user_id: int) -> None:
    """Close every open session of one user (4501) on every worker, once the transaction
    commits. Unlike a revocation, the user's tokens stay valid: they may reconnect."""
    layer = channel_layer()
    _send_on_commit(
        f"disconnect the sessions of user {user_id}",
        lambda: async_to_sync(layer.group_send)(
            user_group(user_id), _disconnect_event(user_id=user_id)
        ),
    )
