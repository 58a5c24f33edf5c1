"""Per-client-IP WebSocket connection rate, counted across every worker (WS_CONNECTS_PER_MINUTE).

Checked before the JWT middleware, so a flood of handshakes costs no database work. Counted
by `core.rate_limits` (one atomic Redis script per handshake, exact across workers); when
Redis cannot answer, counted in this worker instead: a per-worker limit, never none.
"""

import logging
import time

from django.conf import settings
from limits import RateLimitItemPerMinute

from core.asgi_types import ASGIApp, Receive, Scope, Send
from core.client_ip import scope_client_ip
from core.rate_limits import AsyncSharedLimiter
from realtime.hub import hub
from realtime.metrics import WS_CONNECTIONS, endpoint_label
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import frame_encode

logger = logging.getLogger("switchboard.realtime")
security_log = logging.getLogger("switchboard.security")

REFUSED_MESSAGE = "Too many connections from your address; wait a minute before reconnecting"
LOG_EVERY = 60.0  # seconds between two log lines about one address
LOGGED_MAX = 10_000  # addresses remembered for LOG_EVERY (bounded under a distributed flood)


class ConnectRate:
    """The limiter of this worker, and when it last logged each address (held by the hub,
    `realtime.hub`)."""

    def __init__(self) -> None:
        self._limiter: AsyncSharedLimiter | None = None
        self._logged: dict[str, float] = {}

    def limiter(self) -> AsyncSharedLimiter:
        if self._limiter is None:
            self._limiter = AsyncSharedLimiter("connect_rate", shared=bool(settings.REDIS_URL))
        return self._limiter

    async def allowed(self, ip: str) -> bool:
        """Count one connection from `ip`; False when it is over the per-minute limit."""
        per_minute = settings.WS_CONNECTS_PER_MINUTE
        if per_minute <= 0:
            return True
        return await self.limiter().hit(RateLimitItemPerMinute(per_minute), "ws-connects", ip)

    def should_log(self, ip: str) -> bool:
        """At most one log line per address per LOG_EVERY seconds."""
        now = time.monotonic()
        if now - self._logged.get(ip, -LOG_EVERY) < LOG_EVERY:
            return False
        if len(self._logged) >= LOGGED_MAX:
            self._logged.clear()
        self._logged[ip] = now
        return True


async def refuse_rate_limited(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, say why (`rate_limited`, on `/ws/session/` whose protocol has error frames),
    and close with 4008; no consumer runs."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    if endpoint_label(scope.get("path", "")) == "session":
        text = frame_encode(
            "error", None, code=str(ErrorCode.RATE_LIMITED), message=REFUSED_MESSAGE
        )
        await send({"type": "websocket.send", "text": text})
    code = CloseCode.RATE_LIMITED
    await send({"type": "websocket.close", "code": int(code), "reason": code.reason})


class ConnectRateMiddleware:
    """Refuse connections over WS_CONNECTS_PER_MINUTE per client IP (4008)."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            ip = scope_client_ip(scope)
            connect_rate = hub().connect_rate
            if not await connect_rate.allowed(ip):
                WS_CONNECTIONS.labels(endpoint_label(scope.get("path", "")), "rate_limited").inc()
                if connect_rate.should_log(ip):
                    security_log.warning(
                        "websocket connection rate exceeded (%d/minute), closing %d: "
                        "path=%s client=%s",
                        settings.WS_CONNECTS_PER_MINUTE,
                        CloseCode.RATE_LIMITED,
                        scope.get("path"),
                        ip,
                    )
                return await refuse_rate_limited(scope, receive, send)
        return await self.inner(scope, receive, send)
