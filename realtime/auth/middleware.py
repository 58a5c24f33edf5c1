"""WebSocket authentication middleware: the client's credential becomes `scope["user"]`, once
per connection.

A credential comes in exactly one of four places:
- `Authorization: Bearer <access token>` (non-browser clients);
- the subprotocol `bearer.<access token>`, offered beside `switchboard.v1` (browsers can set
  subprotocols, not headers; the server answers `switchboard.v1`, never the token);
- `?ticket=<ticket>` from `POST /api/realtime/ticket/` (single use, 30 s: browsers);
- `?token=<access token>` (kept working; the URL can end up in proxy and browser logs).
None at all is allowed on `/ws/session/`: the first frame may then be `{"type":"auth"}`.
"""

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from django.contrib.auth.models import AnonymousUser

from accounts.tokens import Authenticated, TokenRejected, auser_for_claims, auser_for_token
from core.asgi_types import ASGIApp, Receive, Scope, Send
from core.client_ip import scope_client_ip
from realtime.auth.tickets import ticket_redeem
from realtime.hub import hub

SUBPROTOCOL = "switchboard.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."


class CredentialsMissing(TokenRejected):
    """The client sent no credential at all (it may still send an `auth` frame)."""


def query_param(scope: Scope, name: str) -> str | None:
    """One query parameter; None when absent. Several, or a broken query, raise."""
    query: str = scope.get("query_string", b"").decode("latin-1")
    try:
        params = parse_qs(query, max_num_fields=32)
    except ValueError as e:
        raise TokenRejected("malformed query string") from e
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise TokenRejected(f"more than one {name}")
    return values[0]


def token_from_query(scope: Scope) -> str | None:
    """The raw `token` query parameter; None when absent. Several, or a broken query, raise."""
    return query_param(scope, "token")


def token_from_header(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer` header; None when absent or another scheme
    (a proxy's Basic credentials are not ours)."""
    values = [value for name, value in scope.get("headers", ()) if name.lower() == b"authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise TokenRejected("more than one Authorization header")
    header: bytes = values[0]
    scheme, _, token = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return None
    if not token.strip():
        raise TokenRejected("empty Bearer token")
    return token.strip()


def token_from_subprotocols(scope: Scope) -> str | None:
    """The token of a `bearer.<token>` subprotocol; None when absent. It must come with
    `switchboard.v1`, the subprotocol the server answers."""
    offered: list[str] = [
        p for p in scope.get("subprotocols", ()) if p.startswith(BEARER_SUBPROTOCOL_PREFIX)
    ]
    if not offered:
        return None
    if len(offered) > 1:
        raise TokenRejected("more than one bearer subprotocol")
    if SUBPROTOCOL not in scope.get("subprotocols", ()):
        raise TokenRejected(f"a bearer subprotocol without {SUBPROTOCOL}")
    return offered[0].removeprefix(BEARER_SUBPROTOCOL_PREFIX)


async def authenticate(scope: Scope) -> Authenticated:
    """The Authenticated user of the one credential in `scope`; TokenRejected (its subclass
    CredentialsMissing when there is none) otherwise."""
    found = {
        "header": token_from_header(scope),
        "subprotocol": token_from_subprotocols(scope),
        "ticket": query_param(scope, "ticket"),
        "query": token_from_query(scope),
    }
    given = {place: value for place, value in found.items() if value is not None}
    if not given:
        raise CredentialsMissing("no credentials")
    if len(given) > 1:
        raise TokenRejected(f"credentials in more than one place ({', '.join(sorted(given))})")
    place, value = given.popitem()
    if place == "ticket":
        claims = await ticket_redeem(value, store=hub().tickets, client_ip=scope_client_ip(scope))
        return await auser_for_claims(claims)
    return await auser_for_token(value)


class JWTAuthMiddleware:
    """Fills `scope["user"]`, `scope["auth"]` (Authenticated or None) and `scope["auth_error"]`.

    Keeps no state on self: one instance serves every connection (channels'
    `BaseMiddleware`, whose only job is holding `inner`, is not needed).
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        scope = dict(scope)
        scope["user"], scope["auth"], scope["auth_error"] = AnonymousUser(), None, None
        try:
            auth = await authenticate(scope)
        except TokenRejected as e:
            scope["auth_error"] = e
        else:
            scope["user"], scope["auth"] = auth.user, auth
        return await self.inner(scope, receive, send)


def JWTAuthMiddlewareStack(inner: ASGIApp) -> JWTAuthMiddleware:  # noqa: N802  (named like channels' AuthMiddlewareStack)
    """Wrap `inner` with JWT authentication (header, subprotocol, ticket or query)."""
    return JWTAuthMiddleware(inner)


def scope_auth(scope: Mapping[str, Any]) -> Authenticated | None:
    """What this middleware put in `scope["auth"]`: the authenticated user, or None."""
    auth = scope.get("auth")
    return auth if isinstance(auth, Authenticated) else None


def scope_auth_error(scope: Mapping[str, Any]) -> TokenRejected:
    """Why the handshake brought no authenticated user (CredentialsMissing: no credential)."""
    error = scope.get("auth_error")
    return error if isinstance(error, TokenRejected) else CredentialsMissing("no credentials")
