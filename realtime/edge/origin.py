"""Origin check for WebSocket handshakes (channels' stock validator ignores ports).

A refused handshake still counts toward WS_CONNECTS_PER_MINUTE for its client address
(`realtime.edge.connect_rate`): a flood of foreign-origin handshakes is not free, and leaves that
address no fresh budget for its next, same-origin ones. Its answer stays 403 whatever the
count, so the check runs first (`config.asgi`): a page on a foreign origin is told that
origin is refused, never anything about the rate, and the rate refusal (an accepted socket,
closed 4008) is only ever given to origins that may connect.
"""

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from core.asgi_types import ASGIApp, Receive, Scope, Send
from core.client_ip import scope_client_ip
from realtime.hub import hub
from realtime.metrics import WS_CONNECTIONS, endpoint_label

security_log = logging.getLogger("switchboard.security")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_parse(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin value; None when it is not a usable origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def origin_is_same(origin: tuple[str, str, int], host_header: str) -> bool:
    """True when the origin's host and port are the Host header's, and that host is allowed."""
    domain, port = split_domain_port(host_header)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme, origin_host, origin_port = origin
    # A browser omits the port from Host exactly when it is the default for its scheme.
    wanted_port = int(port) if port else DEFAULT_PORTS[scheme]
    return origin_host == domain.strip("[]") and origin_port == wanted_port


def origin_allowed(origin: str, host_header: str, allowed: Iterable[str]) -> bool:
    """Same origin, or exactly one of `allowed` (scheme, host and port)."""
    parsed = origin_parse(origin)
    if parsed is None:
        return False
    if origin_is_same(parsed, host_header):
        return True
    return any(parsed == origin_parse(entry) for entry in allowed)


async def handshake_refuse(receive: Receive, send: Send) -> None:
    """Refuse the handshake (the server answers 403) and end at once. channels'
    WebsocketDenier instead waits for a disconnect that uvicorn never sends a refused
    handshake, and a SIGTERMed uvicorn then waits out its whole graceful timeout."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


class OriginCheckMiddleware:
    """Refuse (403) browser handshakes from foreign origins; allow clients that send no Origin."""

    def __init__(self, inner: ASGIApp, allowed_origins: Iterable[str] | None = None) -> None:
        self.inner = inner
        self.allowed_origins = tuple(
            settings.WS_ALLOWED_ORIGINS if allowed_origins is None else allowed_origins
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers", ()))
            origin = headers.get(b"origin")
            if origin is not None:
                origin_text = origin.decode("latin-1")
                host = headers.get(b"host", b"").decode("latin-1")
                if not origin_allowed(origin_text, host, self.allowed_origins):
                    endpoint = endpoint_label(scope.get("path", ""))
                    WS_CONNECTIONS.labels(endpoint, "origin_refused").inc()
                    client = scope_client_ip(scope)
                    security_log.warning(
                        "websocket origin refused: origin=%r path=%s client=%s",
                        origin_text[:200],
                        scope.get("path"),
                        client,
                    )
                    await hub().connect_rate.allowed(client)  # counted; refused 403 either way
                    return await handshake_refuse(receive, send)
        return await self.inner(scope, receive, send)
