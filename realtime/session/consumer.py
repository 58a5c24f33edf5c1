"""WebSocket consumers: `/ws/echo/` (anonymous) and `/ws/session/` (JWT)."""

import asyncio
import logging
import time
import uuid
from collections import deque
from datetime import UTC, datetime

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from accounts.tokens import (
    VERSION_CLAIM,
    Authenticated,
    AuthUnavailable,
    TokenExpired,
    TokenRejected,
    aaccess_token_revoked,
    auser_for_token,
    users_token_state,
)
from core.client_ip import scope_client_ip
from core.degrade import Degradation
from operations import metrics
from realtime.auth.middleware import SUBPROTOCOL, CredentialsMissing
from realtime.cluster.workers import WORKER_ID
from realtime.events import revocation_floor, room_event, user_group
from realtime.hub import hub
from realtime.protocol.frames import (
    ERROR_MESSAGES,
    NOT_CLIENT_MISTAKES,
    Auth,
    CloseCode,
    Echo,
    ErrorCode,
    MessageId,
    Ping,
    Presence,
    ProtocolError,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    frame_decode,
    frame_encode,
)
from realtime.registry.batched import session_record_close_retrying, session_record_open_batched
from realtime.registry.services import SessionOpen, TooManySessions
from realtime.rooms.policy import channel_allowed, channel_name_valid, room_group
from realtime.session.limits import TokenBucket, WindowCounter

logger = logging.getLogger("switchboard.realtime")
security_log = logging.getLogger("switchboard.security")

SESSION_CAP = Degradation(
    "session_cap",
    answer="local_rule",
    rule="the per-user session cap counts every open session in the registry",
)

# Room messages a session holds back while it handles one event (see `dispatch`); past it
# they are dropped for that session, counted and logged by the fan-out.
ROOM_PENDING_LIMIT = 1000


class RoomBacklogFull(Exception):
    """A session busy for too long to take more room messages."""


# What a refused handshake answers: (error code, close code, connection-outcome metric label).
AUTH_FAILURES: dict[str, tuple[ErrorCode, CloseCode, str]] = {
    "token_expired": (ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED, "expired"),
    "unavailable": (ErrorCode.UNAVAILABLE, CloseCode.TRY_AGAIN_LATER, "unavailable"),
    "unauthorized": (ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, "unauthorized"),
}


def iso_utc(timestamp: float) -> str:
    """An epoch timestamp as ISO 8601 UTC, e.g. `2026-11-23T20:21:09Z`."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fanout_observe(kind: str, event: dict) -> None:
    """Record how long a server-side event took to reach this worker."""
    sent_at = event.get("sent_at")
    if isinstance(sent_at, int | float):
        metrics.FANOUT_LATENCY.labels(kind).observe(max(0.0, time.time() - sent_at))


async def workers_alive() -> frozenset[str] | None:
    """The alive workers, this one included (its heartbeat started); None when Redis cannot
    say: the session cap then counts every open session the registry holds, whichever
    worker (stricter than counting this worker's alone)."""
    try:
        await hub().heartbeat.ensure()
        alive = await hub().heartbeat.alive_all() | {WORKER_ID}
    except Exception as e:
        SESSION_CAP.fell_back(e)
        return None
    SESSION_CAP.answered()
    return frozenset(alive)


def frame_too_big(text: str | None, data: bytes | None) -> bool:
    """True when a frame exceeds WS_MAX_MESSAGE_BYTES (UTF-8 bytes for text)."""
    limit = settings.WS_MAX_MESSAGE_BYTES
    if data is not None:
        return len(data) > limit
    if text is None or len(text) * 4 <= limit:  # a character is at most 4 UTF-8 bytes
        return False
    return len(text) > limit or len(text.encode()) > limit


class EventLoopConsumer(AsyncWebsocketConsumer):
    """A consumer whose events never wait for Django's sync thread.

    channels runs `close_old_connections` on that one thread before every event. These
    consumers reach the database only through `database_sync_to_async` (which does that
    itself), so the hop buys nothing, and while the thread is busy (a locked database, a
    login hashing a password) it would stall every socket of the worker.
    """

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class LimitedConsumer(EventLoopConsumer):
    """Frame-size and message-rate limits, counted frames, and one way to close."""

    endpoint = "other"  # metrics label

    async def websocket_connect(self, message):
        self.closing = False
        self.close_code: int | None = None  # the code this server closed with, if it did
        self.counted_open = False
        self.bucket = TokenBucket(
            rate=settings.WS_MESSAGES_PER_SECOND, burst=settings.WS_MESSAGE_BURST
        )
        await super().websocket_connect(message)

    async def accept(self, subprotocol=None, headers=None):
        if subprotocol is None and SUBPROTOCOL in self.scope.get("subprotocols", ()):
            subprotocol = SUBPROTOCOL  # never the offered `bearer.<token>`
        await super().accept(subprotocol, headers)
        metrics.WS_OPEN.labels(self.endpoint).inc()
        self.counted_open = True

    async def websocket_disconnect(self, message):
        if self.counted_open:
            metrics.WS_OPEN.labels(self.endpoint).dec()
            self.counted_open = False
        code = message.get("code")
        metrics.WS_CLOSES.labels(self.endpoint, metrics.label(code, metrics.CLOSE_CODES)).inc()
        await super().websocket_disconnect(message)

    async def send_frame(self, kind: str, msg_id: MessageId = None, **fields) -> None:
        """Send one JSON frame of type `kind`."""
        try:
            text = frame_encode(kind, msg_id, **fields)
        except RecursionError as e:
            # Echoed data that decoded near the recursion limit can fail to encode here,
            # deeper in the stack: the same answer as data too deep to decode at all.
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "Message is nested too deeply", msg_id
            ) from e
        metrics.labelled(
            metrics.WS_SENT, self.endpoint, metrics.label(kind, metrics.SERVER_TYPES)
        ).inc()
        await self.send(text_data=text)

    async def send_error(
        self, code: ErrorCode, message: str | None = None, msg_id: MessageId = None
    ) -> None:
        """Send `{"type":"error","code":…,"message":…}` (the connection stays open)."""
        metrics.WS_PROTOCOL_ERRORS.labels(str(code)).inc()
        await self.send_frame(
            "error", msg_id, code=str(code), message=message or ERROR_MESSAGES[code]
        )

    async def close_with(
        self,
        code: CloseCode,
        error: ErrorCode | None = None,
        msg_id: MessageId = None,
        reason: str | None = None,
    ) -> None:
        """Send an error frame (optional, with the request's id), then close with `code` and
        its reason (or `reason`); once."""
        if self.closing:
            return
        self.closing = True
        self.close_code = int(code)
        if error is not None:
            await self.send_error(error, msg_id=msg_id)
        await self.close(code=int(code), reason=reason or code.reason)

    def log_extra(self) -> dict:
        """Structured context for log records (fields of the JSON log format)."""
        return {"client_ip": scope_client_ip(self.scope), "path": self.scope.get("path")}

    def log_context(self) -> str:
        return f"path={self.scope.get('path')} client={scope_client_ip(self.scope)}"


class EchoConsumer(LimitedConsumer):
    """Echo: text comes back behind WS_ECHO_PREFIX, binary comes back unchanged."""

    endpoint = "echo"
    channel_layer_alias = None  # never uses the layer: it holds no Redis connection

    async def connect(self):
        await self.accept()
        metrics.WS_CONNECTIONS.labels(self.endpoint, "accepted").inc()

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        kind = "binary" if bytes_data is not None else "text"
        metrics.labelled(metrics.WS_RECEIVED, self.endpoint, kind).inc()
        if frame_too_big(text_data, bytes_data):
            security_log.warning(
                "websocket frame too big, closing 1009: %s",
                self.log_context(),
                extra=self.log_extra(),
            )
            return await self.close_with(CloseCode.MESSAGE_TOO_BIG)
        if not self.bucket.take():
            security_log.warning(
                "websocket rate limit, closing 4008: %s", self.log_context(), extra=self.log_extra()
            )
            return await self.close_with(CloseCode.RATE_LIMITED)
        metrics.labelled(metrics.WS_SENT, self.endpoint, kind).inc()
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data)
        else:
            await self.send(text_data=settings.WS_ECHO_PREFIX + text_data)


class SessionConsumer(LimitedConsumer):
    """An authenticated session: welcome, echo/ping/refresh, expiry and revocation."""

    endpoint = "session"

    async def __call__(self, scope, receive, send):
        # channels' AsyncConsumer.__call__, except that a failing channel layer (Redis down)
        # pauses cross-worker delivery instead of killing the socket with 1011.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        self.dispatching = False
        self.room_pending: deque[tuple[str, str]] = deque()
        try:
            await await_many_dispatch([receive, self.layer_receive], self.dispatch)
        except StopConsumer:
            pass

    async def dispatch(self, message):
        # Room frames arrive from the worker's fan-out task, not through this loop: the ones
        # that come while this session handles an event of its own wait until it is done,
        # as if queued behind it (a publisher's `published` precedes its own message).
        self.dispatching = True
        try:
            await super().dispatch(message)
        finally:
            while self.room_pending:
                channel, text = self.room_pending.popleft()
                if channel in self.rooms and not self.closing:
                    await self.send(text_data=text)
            self.dispatching = False

    async def layer_receive(self) -> dict:
        """The next channel-layer event for this session; waits out layer outages."""
        while True:
            await hub().health.wait_up()
            try:
                return await self.channel_layer.receive(self.channel_name)
            except Exception as e:
                hub().health.failed("receive", e)

    async def groups_join(self) -> bool:
        """Join (or renew) the user's group and this session's presence in every subscribed
        room (after an outage Redis may have lost all of it; the worker's room fan-out
        rejoins the room groups itself); whether it joined. Failures are recorded, not
        raised. While the layer is known to be down this waits for nothing: recovery
        rejoins."""
        if not hub().health.available:
            return False
        try:
            await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
            for channel in list(self.rooms):
                await self.presence_add(channel)
        except Exception as e:
            hub().health.failed("group_add", e)
            return False
        return True

    async def presence_add(self, channel: str) -> None:
        await hub().presence.add(channel, self.channel_name, (self.user.pk, self.user.username))

    async def room_join(self, channel: str) -> None:
        """Receive the room's messages (through this worker's fan-out) and be present in it."""
        await hub().room_fanout.subscribe(channel, self, self.room_send)
        await self.presence_add(channel)

    async def room_leave(self, channel: str) -> None:
        """Leave a room; while the layer is unreachable the leave waits for its recovery."""
        await hub().room_fanout.unsubscribe(channel, self)
        name = self.channel_name

        async def leave() -> None:
            await hub().presence.remove(channel, name)

        await hub().health.leave_now_or_later(leave)

    async def connect(self):
        self.session_id = str(uuid.uuid4())
        self.user = None
        self.recorded = False
        self.rooms: set[str] = set()
        self.expiry_task: asyncio.Task | None = None
        self.auth_timer: asyncio.Task | None = None
        await self.accept()
        self.protocol_errors = WindowCounter(limit=settings.WS_MAX_PROTOCOL_ERRORS, window=60)
        self.rate_abuse = WindowCounter(
            limit=settings.WS_MESSAGE_BURST, window=settings.WS_RATE_ABUSE_WINDOW
        )
        auth: Authenticated | None = self.scope.get("auth")
        if auth is not None:
            return await self.session_start(auth)
        error = self.scope.get("auth_error") or CredentialsMissing("no credentials")
        if isinstance(error, CredentialsMissing):
            # No credential at all: the first frame may be {"type":"auth","token":…}.
            self.auth_timer = asyncio.create_task(self.auth_timeout())
            return
        await self.auth_refuse(error)

    async def auth_refuse(self, error: TokenRejected, msg_id: MessageId = None) -> None:
        error_code, close_code, outcome = AUTH_FAILURES.get(
            error.code, AUTH_FAILURES["unauthorized"]
        )
        metrics.WS_CONNECTIONS.labels(self.endpoint, outcome).inc()
        security_log.warning(
            "websocket auth failed: reason=%s code=%s %s",
            error.reason,
            error.code,
            self.log_context(),
            extra=self.log_extra(),
        )
        await self.close_with(close_code, error_code, msg_id)

    async def auth_timeout(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT)
        if self.user is None and not self.closing:
            metrics.WS_CONNECTIONS.labels(self.endpoint, "unauthorized").inc()
            self.security_event("no auth frame in time, closing 4500")
            await self.close_with(
                CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, reason="auth timeout"
            )

    async def on_first_frame(self, text_data: str | None) -> None:
        """The connection brought no credential: this frame must be `auth`."""
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE)
            message = frame_decode(text_data, {"auth": Auth})
        except ProtocolError as e:
            return await self.auth_refuse(CredentialsMissing("first frame is not auth"), e.msg_id)
        try:
            auth = await auser_for_token(message.token)
        except TokenRejected as e:
            return await self.auth_refuse(e, message.id)
        await self.session_start(auth, message.id)

    async def session_start(self, auth: Authenticated, msg_id: MessageId = None) -> None:
        """Open the session of an authenticated user: record it, join its groups, welcome."""
        self.user = auth.user
        self.token_version = auth.token[VERSION_CLAIM]
        self.token_jti = auth.token.get("jti")
        refusal = await self.session_record()
        if refusal is not None:
            error_code, close_code, outcome = refusal
            metrics.WS_CONNECTIONS.labels(self.endpoint, outcome).inc()
            return await self.close_with(close_code, error_code, msg_id)
        # A session outside its user's group misses every revocation. During an outage the
        # recovery rejoins and rechecks it against the database; a join that failed with
        # Redis still "up" (a busy pool, an odd error) would never be repaired: refuse it.
        if not await self.groups_join() and hub().health.available:
            return await self.auth_refuse(
                AuthUnavailable("user group not joined (channel layer)"), msg_id
            )
        metrics.WS_CONNECTIONS.labels(self.endpoint, "accepted").inc()
        hub().health.register(self, self.groups_join)
        # A revocation committed between the user lookup and the group join was sent to a
        # group this session was not in yet; its floor is in the cache.
        if hub().health.available:
            try:
                floor = await revocation_floor(self.user.pk)
                revoked = await aaccess_token_revoked(auth.token)
            except AuthUnavailable as e:  # cannot tell: never welcome it
                return await self.auth_refuse(e, msg_id)
            if floor is not None and self.token_version < floor:
                return await self.revoke("session revoked while connecting")
            if revoked:
                return await self.revoke("access token revoked while connecting")
        await self.send_frame(
            "welcome",
            msg_id,
            message="Authenticated!",
            session_id=self.session_id,
            user={"id": self.user.pk, "username": self.user.username},
            expires_at=iso_utc(auth.token["exp"]),
        )
        self.expiry_schedule(auth.token["exp"])
        logger.info(
            "session opened: session_id=%s user_id=%s",
            self.session_id,
            self.user.pk,
            extra=self.log_extra(),
        )

    async def session_record(self) -> tuple[ErrorCode, CloseCode, str] | None:
        """Record this session in the registry; what to refuse with when it may not open."""
        alive = await workers_alive()
        headers = dict(self.scope.get("headers", ()))
        opening = asyncio.ensure_future(
            session_record_open_batched(
                SessionOpen(
                    session_id=self.session_id,
                    user_id=self.user.pk,
                    username=self.user.get_username(),
                    channel_name=self.channel_name,
                    client_ip=scope_client_ip(self.scope),
                    user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
                    worker=WORKER_ID,
                    alive_workers=alive,
                )
            )
        )
        try:
            await asyncio.wait_for(asyncio.shield(opening), timeout=settings.AUTH_DB_TIMEOUT)
        except TooManySessions:
            self.security_event(
                f"more than {settings.WS_MAX_SESSIONS_PER_USER} sessions, closing 4502"
            )
            return ErrorCode.TOO_MANY_SESSIONS, CloseCode.TOO_MANY_SESSIONS, "too_many_sessions"
        except Exception as e:
            logger.warning(
                "session not recorded (%s), closing 1013: session_id=%s",
                type(e).__name__,
                self.session_id,
                extra=self.log_extra(),
            )
            # A timed-out insert may still commit later: once it has, close its row.
            hub().spawn(self.session_record_close_after(opening))
            return AUTH_FAILURES["unavailable"]
        self.recorded = True
        return None

    async def session_record_close_after(self, opening: asyncio.Future) -> None:
        """Record this session closed with 1013 once its (timed-out) open is settled."""
        # Whatever the open came to (recorded, refused, failed), the close goes after it.
        await asyncio.wait([opening])
        await self.session_record_close(CloseCode.TRY_AGAIN_LATER)

    async def session_record_close(self, code: int | None) -> None:
        # Not written in time: retried until the database answers (`realtime.registry.closes`).
        failure = await session_record_close_retrying(
            session_id=self.session_id,
            code=code,
            user_id=self.user.pk,
            wait=settings.AUTH_DB_TIMEOUT,
        )
        if failure is not None:
            logger.warning(
                "session close not recorded (%s), retrying until the database answers: "
                "session_id=%s code=%s",
                type(failure).__name__,
                self.session_id,
                code,
                extra=self.log_extra(),
            )

    async def disconnect(self, code):
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        if self.user is None:
            return
        if self.recorded:
            # The code this server sent when it closed, else the client's (1006: dropped).
            await self.session_record_close(self.close_code or code)
        hub().health.unregister(self)
        for channel in list(self.rooms):
            await self.room_leave(channel)
        self.rooms.clear()
        if hub().health.available:
            try:
                await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
            except Exception as e:
                hub().health.failed("group_discard", e)
        logger.info(
            "session closed: session_id=%s user_id=%s code=%s",
            self.session_id,
            self.user.pk,
            code,
            extra=self.log_extra(),
        )

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if self.user is None:
            return await self.on_first_frame(text_data)
        if frame_too_big(text_data, bytes_data):
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "other").inc()
            self.security_event("frame too big, closing 1009")
            return await self.close_with(CloseCode.MESSAGE_TOO_BIG)
        if bytes_data is not None:
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "binary").inc()
            self.security_event("binary frame, closing 1003")
            return await self.close_with(CloseCode.UNSUPPORTED_DATA)
        if not self.bucket.take():
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "other").inc()
            if self.rate_abuse.hit():
                self.security_event("sustained rate abuse, closing 4008")
                return await self.close_with(CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED)
            return await self.send_error(ErrorCode.RATE_LIMITED)
        message = None
        try:
            message = frame_decode(text_data, self.schemas)
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, message.type).inc()
            await self.handlers[message.type](self, message)
        except ProtocolError as e:
            if message is None:  # the frame never parsed
                metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "other").inc()
            await self.send_error(e.code, e.message, e.msg_id)
            if e.code in NOT_CLIENT_MISTAKES:
                return
            # The code only: the message can quote what the client sent.
            self.security_event(f"protocol error {e.code}")
            if self.protocol_errors.hit():
                self.security_event("too many protocol errors, closing 1008")
                await self.close_with(CloseCode.POLICY_VIOLATION)
        except Exception:
            logger.exception(
                "error handling a message, answered internal_error: session_id=%s",
                self.session_id,
                extra=self.log_extra(),
            )
            msg_id = message.id if message is not None else None
            await self.send_error(ErrorCode.INTERNAL_ERROR, msg_id=msg_id)

    # -- client message handlers -------------------------------------------------------

    async def on_echo(self, message: Echo) -> None:
        await self.send_frame("echo", message.id, data=message.data)

    async def on_ping(self, message: Ping) -> None:
        await self.send_frame("pong", message.id)

    async def on_refresh(self, message: Refresh) -> None:
        try:
            auth = await auser_for_token(message.token)
        except AuthUnavailable as e:
            logger.warning(
                "refresh not checked (%s): session_id=%s",
                e.reason,
                self.session_id,
                extra=self.log_extra(),
            )
            return await self.send_error(ErrorCode.UNAVAILABLE, msg_id=message.id)
        except TokenExpired:
            self.security_event("refresh with an expired token, closing 4001")
            return await self.close_with(
                CloseCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED, message.id
            )
        except TokenRejected as e:
            self.security_event(f"refresh refused ({e.reason}), closing 4500")
            return await self.close_with(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, message.id)
        if self.closing:  # expired or revoked while the token was being checked
            return
        if auth.user.pk != self.user.pk:
            self.security_event("refresh with another user's token, closing 4500")
            return await self.close_with(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, message.id)
        self.token_version = auth.token[VERSION_CLAIM]
        self.token_jti = auth.token.get("jti")
        # Re-joining renews the group's expiry, so revocation reaches long-lived sessions.
        await self.groups_join()
        self.expiry_schedule(auth.token["exp"])
        await self.send_frame("refreshed", message.id, expires_at=iso_utc(auth.token["exp"]))

    def room_checked(self, channel: str, action: str, msg_id: MessageId) -> str:
        """`channel` when its name is valid and the policy allows `action`, else ProtocolError."""
        if not channel_name_valid(channel):
            raise ProtocolError(ErrorCode.INVALID_CHANNEL, msg_id=msg_id)
        if not channel_allowed(user=self.user, channel=channel, action=action):
            raise ProtocolError(ErrorCode.FORBIDDEN, msg_id=msg_id)
        return channel

    async def on_subscribe(self, message: Subscribe) -> None:
        channel = self.room_checked(message.channel, "subscribe", message.id)
        if channel not in self.rooms:
            if len(self.rooms) >= settings.WS_MAX_SUBSCRIPTIONS:
                raise ProtocolError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, msg_id=message.id)
            try:
                await self.room_join(channel)
            except Exception as e:
                hub().health.failed("group_add", e)
                await self.room_leave(channel)
                raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
            self.rooms.add(channel)
        await self.send_frame("subscribed", message.id, channel=channel)

    async def on_unsubscribe(self, message: Unsubscribe) -> None:
        if not channel_name_valid(message.channel):
            raise ProtocolError(ErrorCode.INVALID_CHANNEL, msg_id=message.id)
        if message.channel in self.rooms:
            self.rooms.discard(message.channel)
            await self.room_leave(message.channel)
        await self.send_frame("unsubscribed", message.id, channel=message.channel)

    async def on_publish(self, message: Publish) -> None:
        channel = self.room_checked(message.channel, "publish", message.id)
        sender = {"id": self.user.pk, "username": self.user.username}
        try:
            await self.channel_layer.group_send(
                room_group(channel), room_event(channel=channel, data=message.data, sender=sender)
            )
        except Exception as e:
            hub().health.failed("group_send", e)
            raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
        await self.send_frame("published", message.id, channel=channel)

    async def on_presence(self, message: Presence) -> None:
        channel = self.room_checked(message.channel, "presence", message.id)
        try:
            users = await hub().presence.users(channel)
        except Exception as e:
            hub().health.failed("receive", e)
            raise ProtocolError(ErrorCode.UNAVAILABLE, msg_id=message.id) from e
        await self.send_frame(
            "presence",
            message.id,
            channel=channel,
            users=[{"id": user_id, "username": username} for user_id, username in users],
        )

    schemas = {
        "echo": Echo,
        "ping": Ping,
        "refresh": Refresh,
        "subscribe": Subscribe,
        "unsubscribe": Unsubscribe,
        "publish": Publish,
        "presence": Presence,
    }
    handlers = {
        "echo": on_echo,
        "ping": on_ping,
        "refresh": on_refresh,
        "subscribe": on_subscribe,
        "unsubscribe": on_unsubscribe,
        "publish": on_publish,
        "presence": on_presence,
    }

    # -- channel-layer events ------------------------------------------------------------

    async def room_send(self, channel: str, text: str) -> None:
        """Send a `message` frame of room `channel`, encoded once for the worker
        (`realtime.rooms.fanout`); held back while this session handles an event."""
        if self.closing:
            return
        if not self.dispatching:
            return await self.send(text_data=text)
        if len(self.room_pending) >= ROOM_PENDING_LIMIT:
            raise RoomBacklogFull(f"{ROOM_PENDING_LIMIT} room messages held back")
        self.room_pending.append((channel, text))

    async def session_revoke(self, event: dict) -> None:
        fanout_observe("session.revoke", event)
        revoked_below = event.get("revoked_below")
        if isinstance(revoked_below, int) and self.token_version >= revoked_below:
            return  # this session's token was issued after that revocation
        await self.revoke("session revoked")

    async def session_revoke_token(self, event: dict) -> None:
        fanout_observe("session.revoke_token", event)
        if event.get("jti") is not None and event.get("jti") == self.token_jti:
            await self.revoke("access token revoked (logout)")

    async def session_disconnect(self, event: dict) -> None:
        fanout_observe("session.disconnect", event)
        await self.revoke("disconnected by an operator")

    async def revoke(self, why: str) -> None:
        """Close this session as revoked (4501)."""
        self.security_event(f"{why}, closing 4501")
        await self.close_with(CloseCode.SESSION_REVOKED, ErrorCode.SESSION_REVOKED)

    # -- expiry ---------------------------------------------------------------------------

    def expiry_schedule(self, exp: int) -> None:
        """(Re)start the timer that warns before `exp` and closes 4001 at it."""
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        self.expiry_task = asyncio.create_task(self.expiry_run(exp))

    async def expiry_run(self, exp: int) -> None:
        try:
            await self.expiry_wait(exp)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "expiry timer failed, closing 1011: session_id=%s",
                self.session_id,
                extra=self.log_extra(),
            )
            await self.close_with(CloseCode.INTERNAL_ERROR)

    async def expiry_wait(self, exp: int) -> None:
        warn_in = exp - settings.WS_EXPIRY_WARNING - time.time()
        if warn_in > 0:
            await asyncio.sleep(warn_in)
        await self.send_frame("expiring", expires_at=iso_utc(exp))
        await asyncio.sleep(max(0.0, exp - time.time()))
        self.security_event("token expired, closing 4001")
        await self.close_with(CloseCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED)

    def security_event(self, what: str) -> None:
        user_id = self.user.pk if self.user is not None else None
        security_log.warning(
            "%s: session_id=%s user_id=%s %s",
            what,
            self.session_id,
            user_id,
            self.log_context(),
            extra=self.log_extra(),
        )

    def log_extra(self) -> dict:
        user_id = self.user.pk if getattr(self, "user", None) is not None else None
        return {**super().log_extra(), "session_id": self.session_id, "user_id": user_id}


async def sessions_revalidate(sessions: list["SessionConsumer"]) -> None:
    """After a channel-layer outage: close the sessions revoked meanwhile (the events were
    lost), with one query for all of this worker's sessions."""
    sessions = [s for s in sessions if s.user is not None and not s.closing]
    if not sessions:
        return
    state = await users_token_state(sorted({s.user.pk for s in sessions}))
    for session in sessions:
        version, active = state.get(session.user.pk, (None, False))
        if not active or version != session.token_version:
            await session.revoke("session revoked during a channel-layer outage")


async def heartbeat_renew(sessions: list["SessionConsumer"]) -> None:
    """After an outage: beat at once (a restarted Redis has forgotten every heartbeat, and
    this worker's sessions must not look offline until the next regular beat)."""
    await hub().heartbeat.beat()


class NotFoundConsumer(EventLoopConsumer):
    """Any other WebSocket path: refused at the handshake (403), never a 500."""

    channel_layer_alias = None

    async def connect(self):
        await self.close()
