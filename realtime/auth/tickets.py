"""WebSocket tickets: single-use, 30-second stand-ins for an access token in `?ticket=`.

A browser cannot set headers on a WebSocket handshake, and a token in the URL ends up in
proxy and browser logs. A ticket is useless once used or 30 s old. It is bound to the user
and to the access token's version and expiry (a revocation in between still wins), and to
the client IP when WS_TICKET_BIND_IP is on. Redeeming is one Redis GETDEL, so two workers
racing on one ticket let exactly one in. Without Redis, tickets live in this process.
"""

import hashlib
import json
import secrets
import time
from typing import Any

from django.conf import settings
from rest_framework_simplejwt.settings import api_settings

from accounts.tokens import (
    VERSION_CLAIM,
    Authenticated,
    AuthUnavailable,
    TokenExpired,
    TokenRejected,
)
from core.redis import redis_clients, text

TICKET_TTL = 30  # seconds
TICKET_BYTES = 32
TICKET_MAX_CHARS = 64  # token_urlsafe(32) is 43 characters


def _key(ticket: str) -> str:
    # Stored under a hash: whoever can list Redis keys still holds no usable ticket.
    return "switchboard:ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


class RedisTickets:
    """Tickets in Redis: SET with a TTL to issue, GETDEL to redeem (`core.redis` clients)."""

    def put(self, key: str, value: str) -> None:
        redis_clients().sync_client().set(key, value, ex=TICKET_TTL)

    async def take(self, key: str) -> str | None:
        value = await redis_clients().async_client().getdel(key)
        return text(value) if value is not None else None


class MemoryTickets:
    """Tickets in this process (no REDIS_URL: there is only one worker)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[float, str]] = {}

    def put(self, key: str, value: str) -> None:
        now = time.monotonic()
        self.items = {k: item for k, item in self.items.items() if item[0] > now}
        self.items[key] = (now + TICKET_TTL, value)

    async def take(self, key: str) -> str | None:
        expires, value = self.items.pop(key, (0.0, None))
        return value if expires > time.monotonic() else None


TicketStore = RedisTickets | MemoryTickets  # the worker's is its hub's (`realtime.hub`)


def ticket_issue(*, store: TicketStore, auth: Authenticated, client_ip: str) -> str:
    """A new ticket for the user of `auth`, valid once within TICKET_TTL seconds (sync)."""
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    claims = {
        api_settings.USER_ID_CLAIM: auth.user.pk,
        VERSION_CLAIM: auth.token[VERSION_CLAIM],
        "exp": int(auth.token["exp"]),
        "jti": auth.token.get("jti"),
        "ip": client_ip if settings.WS_TICKET_BIND_IP else None,
    }
    store.put(_key(ticket), json.dumps(claims))
    return ticket


async def ticket_redeem(ticket: str, *, store: TicketStore, client_ip: str) -> dict[str, Any]:
    """The claims a ticket stands for, consuming it; TokenRejected when it is unknown,
    used, expired, or (bound to an IP) presented from another address."""
    if not ticket or len(ticket) > TICKET_MAX_CHARS:
        raise TokenRejected("malformed ticket")
    try:
        value = await store.take(_key(ticket))
    except Exception as e:  # Redis down or busy, a socket error: the ticket cannot be checked
        raise AuthUnavailable(f"ticket store unavailable ({type(e).__name__})") from e
    if value is None:
        raise TokenRejected("ticket unknown, used or expired")
    claims: dict[str, Any] = json.loads(value)
    if claims["ip"] is not None and claims["ip"] != client_ip:
        raise TokenRejected("ticket presented from another address")
    if claims["exp"] <= time.time():
        raise TokenExpired("the ticket's access token expired")
    return claims
