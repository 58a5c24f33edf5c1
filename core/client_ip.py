"""The client's IP address: the one key every per-IP limit uses (logins, connections, tickets).

Proxies are trusted only when listed in TRUSTED_PROXIES (CIDRs, default none). Only then is
X-Forwarded-For read, and from the right: the client is the first address that is not a
trusted proxy. A client-sent X-Forwarded-For with no trusted proxy in front changes nothing.
Run daphne without --proxy-headers (it trusts the leftmost address, which the client wrote).
"""

import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest

logger = logging.getLogger("switchboard.security")
_warned_untrusted_forwarding = False


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXY_NETWORKS)


def _warn_untrusted_forwarding(peer: str) -> None:
    global _warned_untrusted_forwarding
    if not _warned_untrusted_forwarding:
        _warned_untrusted_forwarding = True
        logger.warning(
            "X-Forwarded-For arrived from %s but TRUSTED_PROXIES is empty: it is ignored, and "
            "behind a proxy every client shares the proxy's address (set TRUSTED_PROXIES)",
            peer,
        )


def client_ip(peer: str, forwarded_for: list[str]) -> str:
    """The client address of a connection from `peer` carrying these X-Forwarded-For values."""
    if not forwarded_for:
        return peer
    if not settings.TRUSTED_PROXY_NETWORKS:
        _warn_untrusted_forwarding(peer)
        return peer
    if not _trusted(peer):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    nearest = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return nearest  # a trusted proxy forwarded garbage: stop at that proxy
        if not _trusted(hop):
            return hop
        nearest = hop
    return nearest


def request_client_ip(request: HttpRequest) -> str:
    """The client IP of an HTTP request."""
    peer = request.META.get("REMOTE_ADDR") or "unknown"
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_ip(peer, [forwarded] if forwarded else [])


def scope_client_ip(scope: Mapping[str, Any]) -> str:
    """The client IP of an ASGI scope."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    forwarded = [
        value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name.lower() == b"x-forwarded-for"
    ]
    return client_ip(peer, forwarded)
