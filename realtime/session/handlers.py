"""The client messages of an open session: each type registered once, with its schema and
its handler (`@handles`). A handler gets a decoded, valid message; it returns, raises
`ProtocolError` (an error frame; the session stays open) or raises `SessionEnd`."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from django.conf import settings

from accounts.tokens import AuthUnavailable, TokenExpired, TokenRejected, auser_for_token
from realtime import metrics
from realtime.events import channel_layer, room_event
from realtime.hub import hub
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import (
    Echo,
    History,
    MessageId,
    Ping,
    Presence,
    ProtocolError,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
)
from realtime.rooms.history import HistoryRead, Position, history_body
from realtime.rooms.namespaces import Namespace, namespace_of
from realtime.rooms.policy import Action, channel_allowed, channel_name_valid, room_group
from realtime.session.credentials import iso_utc
from realtime.session.membership import groups_join, room_join, room_leave
from realtime.session.state import SessionEnd

if TYPE_CHECKING:
    from realtime.session.consumer import SessionConsumer

logger = logging.getLogger("switchboard.realtime")

M = TypeVar("M", bound=msgspec.Struct)
Handler = Callable[["SessionConsumer", Any], Awaitable[None]]


@dataclass(frozen=True)
class MessageType:
    schema: type[msgspec.Struct]
    handle: Handler


MESSAGE_TYPES: dict[str, MessageType] = {}


def handles(kind: str, schema: type[M]) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of client messages of type `kind`."""

    def register(handle: Handler) -> Handler:
        if kind in MESSAGE_TYPES:
            raise ValueError(f"two handlers for the message type {kind!r}")
        MESSAGE_TYPES[kind] = MessageType(schema, handle)
        return handle

    return register


@handles("echo", Echo)
async def on_echo(session: "SessionConsumer", message: Echo) -> None:
    await session.send_frame("echo", message.id, data=message.data)


@handles("ping", Ping)
async def on_ping(session: "SessionConsumer", message: Ping) -> None:
    await session.send_frame("pong", message.id)


@handles("refresh", Refresh)
async def on_refresh(session: "SessionConsumer", message: Refresh) -> None:
    try:
        auth = await auser_for_token(message.token)
    except AuthUnavailable as e:
        logger.warning(
            "refresh not checked (%s): session_id=%s",
            e.reason,
            session.session_id,
            extra=session.log_extra(),
        )
        return await session.send_error(ErrorCode.UNAVAILABLE, msg_id=message.id)
    except TokenExpired as e:
        raise SessionEnd(
            "refresh with an expired token",
            CloseCode.TOKEN_EXPIRED,
            ErrorCode.TOKEN_EXPIRED,
            message.id,
        ) from e
    except TokenRejected as e:
        raise SessionEnd(
            f"refresh refused ({e.reason})",
            CloseCode.UNAUTHORIZED,
            ErrorCode.UNAUTHORIZED,
            message.id,
        ) from e
    if session.closing:  # expired or revoked while the token was being checked
        return
    if auth.user.pk != session.user.pk:
        raise SessionEnd(
            "refresh with another user's token",
            CloseCode.UNAUTHORIZED,
            ErrorCode.UNAUTHORIZED,
            message.id,
        )
    session.credentials.adopt(auth.token)
    # Re-joining renews the group's expiry, so revocation reaches long-lived sessions.
    await groups_join(session)
    session.credentials.expiry_schedule(auth.token["exp"])
    await session.send_frame("refreshed", message.id, expires_at=iso_utc(auth.token["exp"]))


def room_checked(
    session: "SessionConsumer", channel: str, action: Action, msg_id: MessageId
) -> str:
    """`channel` when its name is valid and the policy allows `action`, else ProtocolError."""
    if not channel_name_valid(channel):
        raise ProtocolError(ErrorCode.INVALID_CHANNEL, msg_id=msg_id)
    if not channel_allowed(user=session.user, channel=channel, action=action):
        raise ProtocolError(ErrorCode.FORBIDDEN, msg_id=msg_id)
    return channel


@handles("subscribe", Subscribe)
async def on_subscribe(session: "SessionConsumer", message: Subscribe) -> None:
    channel = room_checked(session, message.channel, "subscribe", message.id)
    namespace = namespace_of(channel)
    since = None if message.since is None else Position(message.since.offset, message.since.epoch)
    if channel in session.rooms:  # again: nothing changes, nothing is replayed
        position = hub().room_fanout.position_of(channel, session)
        recovered = None if since is None else since == position
        fields = subscribed_fields(position=position, recovered=recovered)
        return await session.send_frame("subscribed", message.id, channel=channel, **fields)
    if len(session.rooms) >= settings.WS_MAX_SUBSCRIPTIONS:
        raise ProtocolError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, msg_id=message.id)
    try:
        await room_join(session, channel, hold=namespace.history)
    except Exception as e:
        hub().health.failed("group_add", e)
        await room_leave(session, channel)
        raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
    if not namespace.history:
        session.rooms.add(channel)
        fields = subscribed_fields(position=None, recovered=None if since is None else False)
        return await session.send_frame("subscribed", message.id, channel=channel, **fields)
    if since is not None and not channel_allowed(
        user=session.user, channel=channel, action="history"
    ):
        since = Position(-1, since.epoch)  # a replay reads history: the policy said no
    read = await history_read(session, channel, namespace, since=since, msg_id=message.id)
    recovered = None if since is None else read.recovers(since)
    if since is not None:
        result = "recovered" if recovered else "not_recovered"
        metrics.labelled(metrics.HISTORY_RECOVERIES, namespace.name, result).inc()
    session.rooms.add(channel)
    fields = subscribed_fields(position=read.top, recovered=recovered)
    await session.send_frame("subscribed", message.id, channel=channel, **fields)
    if recovered:
        await replay_send(session, read.frames())
        metrics.labelled(metrics.WS_SENT, "session", "message").inc(len(read.entries))
    await hub().room_fanout.release(channel, session, read.top)


REPLAY_YIELD_BYTES = 64 * 1024


async def replay_send(session: "SessionConsumer", frames: list[str]) -> None:
    """Send a recovery's frames, handing the loop back every REPLAY_YIELD_BYTES so the
    server writes them out as they go: queued all at once, a long replay would pass
    WS_MAX_SEND_BACKLOG (a slow-client close) before the client could read any of it."""
    pending = 0
    for frame in frames:
        await session.send(text_data=frame)
        pending += len(frame)
        if pending >= REPLAY_YIELD_BYTES:
            pending = 0
            await asyncio.sleep(0)


def subscribed_fields(*, position: Position | None, recovered: bool | None) -> dict[str, Any]:
    """`subscribed`'s fields beside the channel: `recovered` when `since` was given, the
    room's position where it keeps history."""
    fields: dict[str, Any] = {} if recovered is None else {"recovered": recovered}
    if position is not None:
        fields.update(offset=position.offset, epoch=position.epoch)
    return fields


async def history_read(
    session: "SessionConsumer",
    channel: str,
    namespace: Namespace,
    *,
    since: Position | None,
    msg_id: MessageId,
) -> HistoryRead:
    """The room's position and the entries after `since` (none without it); when the
    history cannot be read the subscription is undone and the client told `unavailable`."""
    try:
        if since is None or since.offset < 0:  # only the position (< 0: no replay allowed)
            return await hub().history.read(channel, namespace, limit=0)
        return await hub().history.read(
            channel,
            namespace,
            since=since.offset,
            since_epoch=since.epoch,
            limit=namespace.history_size,
        )
    except Exception as e:
        logger.warning(
            "room %s: history not read (%s); subscribe refused",
            channel,
            type(e).__name__,
            extra=session.log_extra(),
        )
        await room_leave(session, channel)
        raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=msg_id) from e


@handles("unsubscribe", Unsubscribe)
async def on_unsubscribe(session: "SessionConsumer", message: Unsubscribe) -> None:
    if not channel_name_valid(message.channel):
        raise ProtocolError(ErrorCode.INVALID_CHANNEL, msg_id=message.id)
    if message.channel in session.rooms:
        session.rooms.discard(message.channel)
        await room_leave(session, message.channel)
    await session.send_frame("unsubscribed", message.id, channel=message.channel)


@handles("publish", Publish)
async def on_publish(session: "SessionConsumer", message: Publish) -> None:
    channel = room_checked(session, message.channel, "publish", message.id)
    namespace = namespace_of(channel)
    if not publish_allowed(session, channel, namespace):
        raise ProtocolError(ErrorCode.FORBIDDEN, msg_id=message.id)
    sender = {"id": session.user.pk, "username": session.user.username}
    event = room_event(channel=channel, data=message.data, sender=sender)
    fields: dict[str, Any] = {}
    if namespace.history:
        try:
            position = await hub().history.append(channel, namespace, history_body(event))
        except Exception as e:
            metrics.labelled(metrics.HISTORY_STORE_FAILURES, namespace.name).inc()
            logger.warning(
                "room %s: a publication not stored in history (%s); refused, not delivered",
                channel,
                type(e).__name__,
                extra=session.log_extra(),
            )
            raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
        event.update(offset=position.offset, epoch=position.epoch)
        fields = {"offset": position.offset, "epoch": position.epoch}
    try:
        await channel_layer().group_send(room_group(channel), event)
    except Exception as e:
        hub().health.failed("group_send", e)
        if not fields:
            raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
        # Stored: subscribers' workers read it from history at the next message's gap, and
        # reconnecting ones recover it. Answering `unavailable` would have it published twice.
        logger.warning(
            "room %s: offset %s stored in history but not sent live (%s)",
            channel,
            fields["offset"],
            type(e).__name__,
            extra=session.log_extra(),
        )
    await session.send_frame("published", message.id, channel=channel, **fields)


def publish_allowed(session: "SessionConsumer", channel: str, namespace: Namespace) -> bool:
    """The namespace's publishing rule (the policy has allowed it already)."""
    rule = namespace.publish
    if rule == "server":
        return False
    if rule == "staff":
        return bool(session.user.is_staff)
    if rule == "subscribers":
        return channel in session.rooms
    return True


HISTORY_REPLY_SLACK = 1024  # bytes of the reply beside its messages (type, channel, position)


def newest_that_fit(frames: list[str], budget: int) -> list[msgspec.Raw]:
    """The newest of `frames` (oldest first) whose JSON, comma-separated, fits in `budget`
    bytes: a reply is one frame, held to the same bound as every frame."""
    chosen: list[msgspec.Raw] = []
    for frame in reversed(frames):
        encoded = frame.encode()
        budget -= len(encoded) + 1
        if budget < 0:
            break
        chosen.append(msgspec.Raw(encoded))
    chosen.reverse()
    return chosen


@handles("history", History)
async def on_history(session: "SessionConsumer", message: History) -> None:
    channel = room_checked(session, message.channel, "history", message.id)
    namespace = namespace_of(channel)
    if not namespace.history:
        raise ProtocolError(ErrorCode.HISTORY_UNAVAILABLE, msg_id=message.id)
    limit = min(message.limit or namespace.history_size, namespace.history_size)
    try:
        read = await hub().history.read(channel, namespace, limit=limit)
    except Exception as e:
        logger.warning(
            "room %s: history not read (%s)", channel, type(e).__name__, extra=session.log_extra()
        )
        raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
    messages = newest_that_fit(read.frames(), settings.WS_MAX_MESSAGE_BYTES - HISTORY_REPLY_SLACK)
    await session.send_frame(
        "history",
        message.id,
        channel=channel,
        messages=messages,
        offset=read.top.offset,
        epoch=read.top.epoch,
    )


@handles("presence", Presence)
async def on_presence(session: "SessionConsumer", message: Presence) -> None:
    channel = room_checked(session, message.channel, "presence", message.id)
    if not namespace_of(channel).presence:
        raise ProtocolError(
            ErrorCode.FORBIDDEN, "Presence is off in this channel's namespace", message.id
        )
    try:
        users = await hub().presence.users(channel)
    except Exception as e:
        hub().health.failed("receive", e)
        raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
    await session.send_frame(
        "presence",
        message.id,
        channel=channel,
        users=[{"id": user_id, "username": username} for user_id, username in users],
    )
