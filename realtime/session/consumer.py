"""`/ws/session/`: an authenticated session, as a state machine (`realtime.session.state`).

`receive` only gates (state, size, binary, rate), decodes and dispatches to the handler its
type registered (`realtime.session.handlers`); `end` is the one way a session is ended by
this server (security log, error frame, close); `disconnect` the one way it is cleaned up.
Credentials and their timers are in `realtime.session.credentials`, the registry row in
`realtime.session.lifecycle`, the groups in `realtime.session.membership`. (A little over
300 lines: what is left is the states and the order of the steps, read best in one place.)
"""

import asyncio
import logging
import uuid
from collections import deque
from typing import Any

from django.conf import settings

from accounts.tokens import (
    Authenticated,
    AuthUnavailable,
    TokenRejected,
    aaccess_token_revoked,
    auser_for_token,
)
from realtime import metrics
from realtime.auth.middleware import CredentialsMissing, scope_auth, scope_auth_error
from realtime.events import revocation_floor, user_group
from realtime.hub import hub
from realtime.protocol.codes import CloseCode, ErrorCode, refusal_for
from realtime.protocol.frames import Auth, MessageId, ProtocolError, frame_decode
from realtime.rooms.namespaces import namespace_of
from realtime.session.base import LimitedConsumer, frame_too_big
from realtime.session.credentials import Credentials, iso_utc
from realtime.session.handlers import MESSAGE_TYPES
from realtime.session.lifecycle import session_record, session_record_close
from realtime.session.limits import WindowCounter
from realtime.session.membership import groups_join, groups_leave
from realtime.session.state import SessionEnd, SessionState, move

logger = logging.getLogger("switchboard.realtime")
security_log = logging.getLogger("switchboard.security")

# Room messages a session holds back while it handles one event (see `dispatch`); past it
# they are dropped for that session, counted and logged by the fan-out.
ROOM_PENDING_LIMIT = 1000


class RoomBacklogFull(Exception):
    """A session busy for too long to take more room messages."""


class SessionConsumer(LimitedConsumer):
    """An authenticated session: welcome, the client messages, expiry and revocation."""

    endpoint = "session"
    uses_channel_layer = False  # its events come through the worker channel
    schemas = {kind: entry.schema for kind, entry in MESSAGE_TYPES.items()}
    handlers = {kind: entry.handle for kind, entry in MESSAGE_TYPES.items()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = SessionState.CONNECTING
        self.session_id = str(uuid.uuid4())
        self.user: Any = None  # the authenticated user, from `session_start` on
        self.recorded = False  # its registry row is written
        self.rooms: set[str] = set()
        self.credentials = Credentials(self)
        self.dispatch_lock = asyncio.Lock()
        # Made when the first room frame must wait (an empty deque is over 600 bytes).
        self.room_pending: deque[tuple[str, str]] | None = None

    # -- states -------------------------------------------------------------------------

    def move_to(self, state: SessionState) -> None:
        self.state = move(self.state, state)

    @property
    def closing(self) -> bool:
        return self.state in (SessionState.CLOSING, SessionState.CLOSED)

    def close_begin(self, code: CloseCode) -> bool:
        if not super().close_begin(code):
            return False
        self.move_to(SessionState.CLOSING)
        return True

    # -- the consumer loop ----------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        # One event at a time: the client's frames come through the consumer loop, this
        # session's own events (revocations, disconnects) from the worker channel's reader
        # (`realtime.session.user_groups`), each in a task that waits its turn here. Room
        # frames come from the worker's fan-out task, not through here: the ones that come
        # while this session handles an event wait until it is done, as if queued behind it
        # (a publisher's `published` precedes its own message).
        async with self.dispatch_lock:
            try:
                await super().dispatch(message)
            finally:
                pending = self.room_pending
                while pending:
                    channel, text = pending.popleft()
                    if channel in self.rooms and not self.closing:
                        await self.send(text_data=text)

    # -- connect, receive, disconnect -----------------------------------------------------

    async def connect(self) -> None:
        await self.accept()
        self.move_to(SessionState.AUTHENTICATING)
        self.protocol_errors = WindowCounter(limit=settings.WS_MAX_PROTOCOL_ERRORS, window=60)
        self.rate_abuse = WindowCounter(
            limit=settings.WS_MESSAGE_BURST, window=settings.WS_RATE_ABUSE_WINDOW
        )
        auth = scope_auth(self.scope)
        if auth is not None:
            return await self.session_start(auth)
        error = scope_auth_error(self.scope)
        if isinstance(error, CredentialsMissing):
            # No credential at all: the first frame may be {"type":"auth","token":…}.
            return self.credentials.auth_timer_start()
        await self.auth_refuse(error)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.state is SessionState.AUTHENTICATING:
            return await self.on_first_frame(text_data)
        if self.state is not SessionState.OPEN:
            return
        try:
            await self.receive_open(text_data, bytes_data)
        except SessionEnd as end:
            await self.end(end)

    async def receive_open(self, text_data: str | None, bytes_data: bytes | None) -> None:
        if frame_too_big(text_data, bytes_data):
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "other").inc()
            raise SessionEnd("frame too big", CloseCode.MESSAGE_TOO_BIG)
        if bytes_data is not None:
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "binary").inc()
            raise SessionEnd("binary frame", CloseCode.UNSUPPORTED_DATA)
        if not self.bucket.take():
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "other").inc()
            if self.rate_abuse.hit():
                raise SessionEnd(
                    "sustained rate abuse", CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED
                )
            return await self.send_error(ErrorCode.RATE_LIMITED)
        message = None
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE)
            message = frame_decode(text_data, self.schemas)
            metrics.labelled(metrics.WS_RECEIVED, self.endpoint, message.type).inc()
            await self.handlers[message.type](self, message)
        except ProtocolError as e:
            if message is None:  # the frame never parsed
                metrics.labelled(metrics.WS_RECEIVED, self.endpoint, "other").inc()
            await self.protocol_error(e)
        except SessionEnd:
            raise
        except Exception:
            logger.exception(
                "error handling a message, answered internal_error: session_id=%s",
                self.session_id,
                extra=self.log_extra(),
            )
            msg_id = message.id if message is not None else None
            await self.send_error(ErrorCode.INTERNAL_ERROR, msg_id=msg_id)

    async def protocol_error(self, e: ProtocolError) -> None:
        """Answer a client frame with its error; a client's mistakes count toward 1008."""
        await self.send_error(e.code, e.message, e.msg_id)
        if not e.code.client_mistake:
            return
        # The code only: the message can quote what the client sent.
        self.security_event(f"protocol error {e.code}")
        if self.protocol_errors.hit():
            raise SessionEnd("too many protocol errors", CloseCode.POLICY_VIOLATION)

    async def end(self, end: SessionEnd) -> None:
        """End this session: `<why>, closing <code>` in the security log, then the error
        frame (with the request's id) and the close (sent once, however often it is asked)."""
        self.security_event(f"{end.why}, closing {int(end.code)}")
        await self.close_with(end.code, end.error, end.msg_id)

    async def disconnect(self, code: int) -> None:
        self.credentials.stop()
        was_open = self.user is not None
        self.state = SessionState.CLOSED  # from any state: the connection is gone
        if not was_open:
            return
        if self.recorded:
            # The code this server sent when it closed, else the client's (1006: dropped).
            await session_record_close(self, self.close_code or code)
        await groups_leave(self)
        logger.info(
            "session closed: session_id=%s user_id=%s code=%s",
            self.session_id,
            self.user.pk,
            code,
            extra=self.log_extra(),
        )

    # -- authentication -------------------------------------------------------------------

    async def auth_refuse(self, error: TokenRejected, msg_id: MessageId = None) -> None:
        error_code, close_code, outcome = refusal_for(error.code)
        metrics.WS_CONNECTIONS.labels(self.endpoint, outcome).inc()
        security_log.warning(
            "websocket auth failed: reason=%s code=%s %s",
            error.reason,
            error.code,
            self.log_context(),
            extra=self.log_extra(),
        )
        await self.close_with(close_code, error_code, msg_id)

    async def on_first_frame(self, text_data: str | None) -> None:
        """The connection brought no credential: this frame must be `auth`."""
        self.credentials.auth_timer_stop()
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE)
            message = frame_decode(text_data, {"auth": Auth})
        except ProtocolError as e:
            return await self.auth_refuse(CredentialsMissing("first frame is not auth"), e.msg_id)
        assert isinstance(message, Auth)
        try:
            auth = await auser_for_token(message.token)
        except TokenRejected as e:
            return await self.auth_refuse(e, message.id)
        await self.session_start(auth, message.id)

    async def session_start(self, auth: Authenticated, msg_id: MessageId = None) -> None:
        """Open the session of an authenticated user: record it, join its groups, welcome."""
        self.user = auth.user
        self.credentials.adopt(auth.token)
        hub().user_sessions.register(self)  # an operator's disconnect of its row finds it
        refusal = await session_record(self)
        if refusal is not None:
            error_code, close_code, outcome = refusal
            metrics.WS_CONNECTIONS.labels(self.endpoint, outcome).inc()
            return await self.close_with(close_code, error_code, msg_id)
        # A session outside its user's group misses every revocation. During an outage the
        # recovery rejoins and rechecks it against the database; a join that failed with
        # Redis still "up" (a busy pool, an odd error) would never be repaired: refuse it.
        group = user_group(self.user.pk)
        if not await groups_join(self) and hub().health.available_for(group):
            return await self.auth_refuse(
                AuthUnavailable("user group not joined (channel layer)"), msg_id
            )
        metrics.WS_CONNECTIONS.labels(self.endpoint, "accepted").inc()
        hub().health.register(self, self.groups_rejoin)
        # A revocation committed between the user lookup and the group join was sent to a
        # group this session was not in yet; its floor is in the cache (Switchboard's own
        # Redis, not the layer: checked whatever the layer's state).
        try:
            floor = await revocation_floor(self.user.pk)
            revoked = await aaccess_token_revoked(auth.token)
        except AuthUnavailable as e:  # cannot tell: never welcome it
            return await self.auth_refuse(e, msg_id)
        if floor is not None and self.credentials.revoked_below(floor):
            return await self.revoke("session revoked while connecting")
        if revoked:
            return await self.revoke("access token revoked while connecting")
        if self.closing:  # revoked meanwhile (a recovery revalidated it during the checks)
            return
        self.move_to(SessionState.OPEN)
        await self.send_frame(
            "welcome",
            msg_id,
            message="Authenticated!",
            session_id=self.session_id,
            user={"id": self.user.pk, "username": self.user.username},
            expires_at=iso_utc(auth.token["exp"]),
        )
        self.credentials.expiry_schedule(auth.token["exp"])
        logger.info(
            "session opened: session_id=%s user_id=%s",
            self.session_id,
            self.user.pk,
            extra=self.log_extra(),
        )

    async def groups_rejoin(self) -> bool:
        """The layer's recovery rejoins this session's groups through this."""
        return await groups_join(self)

    # -- channel-layer events -------------------------------------------------------------

    async def room_send(self, channel: str, text: str) -> None:
        """Send a `message` frame of room `channel`, encoded once for the worker
        (`realtime.rooms.fanout`); held back while this session handles an event."""
        if self.closing:
            return
        if not self.dispatch_lock.locked():
            return await self.send(text_data=text)
        if self.room_pending is None:
            self.room_pending = deque()
        if len(self.room_pending) >= ROOM_PENDING_LIMIT:
            if namespace_of(channel).history:
                # Dropping it would leave a gap the client cannot see: close as a slow
                # client instead; it reconnects and recovers from its last offset.
                hub().spawn(self.end(SessionEnd("room backlog full", CloseCode.SLOW_CLIENT)))
            raise RoomBacklogFull(f"{ROOM_PENDING_LIMIT} room messages held back")
        self.room_pending.append((channel, text))

    async def session_revoke(self, event: dict[str, Any]) -> None:
        metrics.fanout_observe("session.revoke", event)
        if self.credentials.revoked_below(event.get("revoked_below")):
            await self.revoke("session revoked")

    async def session_revoke_token(self, event: dict[str, Any]) -> None:
        metrics.fanout_observe("session.revoke_token", event)
        if self.credentials.is_token(event.get("jti")):
            await self.revoke("access token revoked (logout)")

    async def session_disconnect(self, event: dict[str, Any]) -> None:
        metrics.fanout_observe("session.disconnect", event)
        await self.revoke("disconnected by an operator")

    async def revoke(self, why: str) -> None:
        """Close this session as revoked (4501)."""
        await self.end(SessionEnd(why, CloseCode.SESSION_REVOKED, ErrorCode.SESSION_REVOKED))

    # -- logs -------------------------------------------------------------------------------

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

    def log_extra(self) -> dict[str, Any]:
        user_id = self.user.pk if self.user is not None else None
        return {**super().log_extra(), "session_id": self.session_id, "user_id": user_id}
