"""WebSocket consumers: `/ws/echo/` (anonymous) and `/ws/session/` (JWT)."""

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.client_ip import scope_client_ip
from accounts.tokens import Authenticated, TokenExpired, TokenRejected, auser_for_token
from realtime.events import user_group
from realtime.limits import TokenBucket, WindowCounter
from realtime.protocol import (
    CloseCode,
    Echo,
    ErrorCode,
    Ping,
    ProtocolError,
    Refresh,
    error_frame,
    frame_decode,
    frame_encode,
)

logger = logging.getLogger("switchboard.realtime")
security_log = logging.getLogger("switchboard.security")


def iso_utc(timestamp: float) -> str:
    """An epoch timestamp as ISO 8601 UTC, e.g. `2026-11-23T20:21:09Z`."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def frame_too_big(text: str | None, data: bytes | None) -> bool:
    """True when a frame exceeds WS_MAX_MESSAGE_BYTES (UTF-8 bytes for text)."""
    limit = settings.WS_MAX_MESSAGE_BYTES
    if data is not None:
        return len(data) > limit
    if text is None or len(text) * 4 <= limit:  # a character is at most 4 UTF-8 bytes
        return False
    return len(text) > limit or len(text.encode()) > limit


class LimitedConsumer(AsyncWebsocketConsumer):
    """Frame-size and message-rate limits, and one way to close with a documented code."""

    async def websocket_connect(self, message):
        self.closing = False
        self.bucket = TokenBucket(
            rate=settings.WS_MESSAGES_PER_SECOND, burst=settings.WS_MESSAGE_BURST
        )
        await super().websocket_connect(message)

    async def close_with(self, code: CloseCode, error: ErrorCode | None = None) -> None:
        """Send an error frame (optional), then close with `code` and its reason; once."""
        if self.closing:
            return
        self.closing = True
        if error is not None:
            await self.send(text_data=error_frame(error))
        await self.close(code=int(code), reason=code.reason)

    def log_context(self) -> str:
        return f"path={self.scope.get('path')} client={scope_client_ip(self.scope)}"


class EchoConsumer(LimitedConsumer):
    """Echo: text comes back behind WS_ECHO_PREFIX, binary comes back unchanged."""

    channel_layer_alias = None  # never uses the layer, so it holds no Redis connection

    async def connect(self):
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if frame_too_big(text_data, bytes_data):
            security_log.warning("websocket frame too big, closing 1009: %s", self.log_context())
            return await self.close_with(CloseCode.MESSAGE_TOO_BIG)
        if not self.bucket.take():
            security_log.warning("websocket rate limit, closing 4008: %s", self.log_context())
            return await self.close_with(CloseCode.RATE_LIMITED)
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data)
        else:
            await self.send(text_data=settings.WS_ECHO_PREFIX + text_data)


class SessionConsumer(LimitedConsumer):
    """An authenticated session: welcome, echo/ping/refresh, expiry and revocation."""

    async def connect(self):
        self.session_id = str(uuid.uuid4())
        self.expiry_task: asyncio.Task | None = None
        await self.accept()
        self.protocol_errors = WindowCounter(limit=settings.WS_MAX_PROTOCOL_ERRORS, window=60)
        self.rate_abuse = WindowCounter(
            limit=settings.WS_MESSAGE_BURST, window=settings.WS_RATE_ABUSE_WINDOW
        )
        error: TokenRejected | None = self.scope.get("auth_error")
        auth: Authenticated | None = self.scope.get("auth")
        if auth is None:
            error = error or TokenRejected("no authentication")
            security_log.warning(
                "websocket auth failed: reason=%s code=%s %s",
                error.reason,
                error.code,
                self.log_context(),
            )
            expired = isinstance(error, TokenExpired)
            return await self.close_with(
                CloseCode.TOKEN_EXPIRED if expired else CloseCode.UNAUTHORIZED,
                ErrorCode.TOKEN_EXPIRED if expired else ErrorCode.UNAUTHORIZED,
            )
        self.user = auth.user
        await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
        await self.send(
            text_data=frame_encode(
                "welcome",
                message="Authenticated!",
                session_id=self.session_id,
                user={"id": self.user.pk, "username": self.user.username},
                expires_at=iso_utc(auth.token["exp"]),
            )
        )
        self.expiry_schedule(auth.token["exp"])
        logger.info("session opened: session_id=%s user_id=%s", self.session_id, self.user.pk)

    async def disconnect(self, code):
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        if getattr(self, "user", None) is not None:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
            logger.info(
                "session closed: session_id=%s user_id=%s code=%s",
                self.session_id,
                self.user.pk,
                code,
            )

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if frame_too_big(text_data, bytes_data):
            self.security_event("frame too big, closing 1009")
            return await self.close_with(CloseCode.MESSAGE_TOO_BIG)
        if bytes_data is not None:
            self.security_event("binary frame, closing 1003")
            return await self.close_with(CloseCode.UNSUPPORTED_DATA)
        if not self.bucket.take():
            if self.rate_abuse.hit():
                self.security_event("sustained rate abuse, closing 4008")
                return await self.close_with(CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED)
            return await self.send(text_data=error_frame(ErrorCode.RATE_LIMITED))
        try:
            message = frame_decode(text_data, self.schemas)
            await self.handlers[message.type](self, message)
        except ProtocolError as e:
            await self.send(text_data=error_frame(e.code, e.message, e.msg_id))
            if self.protocol_errors.hit():
                self.security_event("too many protocol errors, closing 1008")
                await self.close_with(CloseCode.POLICY_VIOLATION)

    # -- client message handlers -------------------------------------------------------

    async def on_echo(self, message: Echo) -> None:
        await self.send(text_data=frame_encode("echo", message.id, data=message.data))

    async def on_ping(self, message: Ping) -> None:
        await self.send(text_data=frame_encode("pong", message.id))

    async def on_refresh(self, message: Refresh) -> None:
        try:
            auth = await auser_for_token(message.token)
        except TokenExpired:
            self.security_event("refresh with an expired token, closing 4001")
            return await self.close_with(CloseCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED)
        except TokenRejected as e:
            self.security_event(f"refresh refused ({e.reason}), closing 4500")
            return await self.close_with(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED)
        if auth.user.pk != self.user.pk:
            self.security_event("refresh with another user's token, closing 4500")
            return await self.close_with(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED)
        # Re-joining renews the group's expiry, so revocation reaches long-lived sessions.
        await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
        self.expiry_schedule(auth.token["exp"])
        await self.send(
            text_data=frame_encode("refreshed", message.id, expires_at=iso_utc(auth.token["exp"]))
        )

    schemas = {"echo": Echo, "ping": Ping, "refresh": Refresh}
    handlers = {"echo": on_echo, "ping": on_ping, "refresh": on_refresh}

    # -- channel-layer events ------------------------------------------------------------

    async def session_revoke(self, event: dict) -> None:
        self.security_event("session revoked, closing 4501")
        await self.close_with(CloseCode.SESSION_REVOKED, ErrorCode.SESSION_REVOKED)

    # -- expiry ---------------------------------------------------------------------------

    def expiry_schedule(self, exp: int) -> None:
        """(Re)start the timer that warns before `exp` and closes 4001 at it."""
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        self.expiry_task = asyncio.create_task(self.expiry_run(exp))

    async def expiry_run(self, exp: int) -> None:
        warn_in = exp - settings.WS_EXPIRY_WARNING - time.time()
        if warn_in > 0:
            await asyncio.sleep(warn_in)
        await self.send(text_data=frame_encode("expiring", expires_at=iso_utc(exp)))
        await asyncio.sleep(max(0.0, exp - time.time()))
        self.security_event("token expired, closing 4001")
        await self.close_with(CloseCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED)

    def security_event(self, what: str) -> None:
        security_log.warning(
            "%s: session_id=%s user_id=%s %s",
            what,
            self.session_id,
            getattr(getattr(self, "user", None), "pk", None),
            self.log_context(),
        )


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: refused at the handshake (403), never a 500."""

    channel_layer_alias = None

    async def connect(self):
        await self.close()
