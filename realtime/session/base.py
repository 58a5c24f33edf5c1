"""What every Switchboard WebSocket consumer shares: counted opens, frames and closes, the
frame-size rule, and one way to close."""

import logging
from typing import Any

from asgiref.typing import WebSocketConnectEvent, WebSocketDisconnectEvent
from django.conf import settings

from core.client_ip import scope_client_ip
from realtime import metrics
from realtime.auth.middleware import SUBPROTOCOL
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import MessageId, ProtocolError, frame_encode
from realtime.server.channels_adapter import EventLoopConsumer
from realtime.session.limits import TokenBucket

security_log = logging.getLogger("switchboard.security")


def frame_too_big(text: str | None, data: bytes | None) -> bool:
    """True when a frame exceeds WS_MAX_MESSAGE_BYTES (UTF-8 bytes for text)."""
    limit: int = settings.WS_MAX_MESSAGE_BYTES
    if data is not None:
        return len(data) > limit
    if text is None or len(text) * 4 <= limit:  # a character is at most 4 UTF-8 bytes
        return False
    return len(text) > limit or len(text.encode()) > limit


class LimitedConsumer(EventLoopConsumer):
    """Frame-size and message-rate limits, counted frames, and one way to close."""

    endpoint = "other"  # metrics label

    async def websocket_connect(self, message: WebSocketConnectEvent) -> None:
        self.close_code: int | None = None  # the code this server closed with, if it did
        self.counted_open = False
        self.bucket = TokenBucket(
            rate=settings.WS_MESSAGES_PER_SECOND, burst=settings.WS_MESSAGE_BURST
        )
        await super().websocket_connect(message)

    @property
    def closing(self) -> bool:
        """Whether this server has begun closing the connection."""
        return self.close_code is not None

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        if subprotocol is None and SUBPROTOCOL in self.scope.get("subprotocols", ()):
            subprotocol = SUBPROTOCOL  # never the offered `bearer.<token>`
        await super().accept(subprotocol, headers)
        metrics.WS_OPEN.labels(self.endpoint).inc()
        self.counted_open = True

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        if self.counted_open:
            metrics.WS_OPEN.labels(self.endpoint).dec()
            self.counted_open = False
        code = message.get("code")
        metrics.WS_CLOSES.labels(self.endpoint, metrics.label(code, metrics.CLOSE_CODES)).inc()
        await super().websocket_disconnect(message)

    async def send_frame(self, kind: str, msg_id: MessageId = None, **fields: Any) -> None:
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
        await self.send_frame("error", msg_id, code=str(code), message=message or code.message)

    def close_begin(self, code: CloseCode) -> bool:
        """Mark the connection closing with `code`; False when it already was."""
        if self.closing:
            return False
        self.close_code = int(code)
        return True

    async def close_with(
        self,
        code: CloseCode,
        error: ErrorCode | None = None,
        msg_id: MessageId = None,
        reason: str | None = None,
    ) -> None:
        """Send an error frame (optional, with the request's id), then close with `code` and
        its reason (or `reason`); once."""
        if not self.close_begin(code):
            return
        if error is not None:
            await self.send_error(error, msg_id=msg_id)
        await self.close(code=int(code), reason=reason or code.reason)

    async def close_for(self, why: str, code: CloseCode, error: ErrorCode | None = None) -> None:
        """Say `<why>, closing <code>` in the security log, then close with `code`."""
        self.security_event(f"{why}, closing {int(code)}")
        await self.close_with(code, error)

    def log_extra(self) -> dict[str, Any]:
        """Structured context for log records (fields of the JSON log format)."""
        return {"client_ip": scope_client_ip(self.scope), "path": self.scope.get("path")}

    def log_context(self) -> str:
        """The same context as text, for the plain log format."""
        extra = self.log_extra()
        return f"path={extra['path']} client={extra['client_ip']}"

    def security_event(self, what: str) -> None:
        security_log.warning("%s: %s", what, self.log_context(), extra=self.log_extra())
