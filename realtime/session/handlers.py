"""The client messages of an open session: each type registered once, with its schema and
its handler (`@handles`). A handler gets a decoded, valid message; it returns, raises
`ProtocolError` (an error frame; the session stays open) or raises `SessionEnd`."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from django.conf import settings

from accounts.tokens import AuthUnavailable, TokenExpired, TokenRejected, auser_for_token
from realtime.events import room_event
from realtime.hub import hub
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import (
    Echo,
    MessageId,
    Ping,
    Presence,
    ProtocolError,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
)
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
    if channel not in session.rooms:
        if len(session.rooms) >= settings.WS_MAX_SUBSCRIPTIONS:
            raise ProtocolError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, msg_id=message.id)
        try:
            await room_join(session, channel)
        except Exception as e:
            hub().health.failed("group_add", e)
            await room_leave(session, channel)
            raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
        session.rooms.add(channel)
    await session.send_frame("subscribed", message.id, channel=channel)


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
    sender = {"id": session.user.pk, "username": session.user.username}
    try:
        await session.channel_layer.group_send(
            room_group(channel), room_event(channel=channel, data=message.data, sender=sender)
        )
    except Exception as e:
        hub().health.failed("group_send", e)
        raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
    await session.send_frame("published", message.id, channel=channel)


@handles("presence", Presence)
async def on_presence(session: "SessionConsumer", message: Presence) -> None:
    channel = room_checked(session, message.channel, "presence", message.id)
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
