"""`/ws/echo/` (anonymous echo) and every other WebSocket path (refused)."""

from django.conf import settings

from realtime import metrics
from realtime.protocol.codes import CloseCode
from realtime.server.channels_adapter import EventLoopConsumer
from realtime.session.base import LimitedConsumer, frame_too_big


class EchoConsumer(LimitedConsumer):
    """Echo: text comes back behind WS_ECHO_PREFIX, binary comes back unchanged."""

    endpoint = "echo"
    uses_channel_layer = False  # it holds no Redis connection

    async def connect(self) -> None:
        await self.accept()
        metrics.WS_CONNECTIONS.labels(self.endpoint, "accepted").inc()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        kind = "binary" if bytes_data is not None else "text"
        metrics.labelled(metrics.WS_RECEIVED, self.endpoint, kind).inc()
        if frame_too_big(text_data, bytes_data):
            return await self.close_for("websocket frame too big", CloseCode.MESSAGE_TOO_BIG)
        if not self.bucket.take():
            return await self.close_for("websocket rate limit", CloseCode.RATE_LIMITED)
        metrics.labelled(metrics.WS_SENT, self.endpoint, kind).inc()
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data)
        else:
            await self.send(text_data=settings.WS_ECHO_PREFIX + (text_data or ""))


class NotFoundConsumer(EventLoopConsumer):
    """Any other WebSocket path: refused at the handshake (403), never a 500."""

    uses_channel_layer = False

    async def connect(self) -> None:
        await self.close()
