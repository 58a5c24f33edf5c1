"""JWT query-parameter middleware: `?token=` becomes `scope["user"]`, once per connection."""

from urllib.parse import parse_qs

from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from accounts.tokens import TokenRejected, auser_for_token


def token_from_query(scope: dict) -> str | None:
    """The raw `token` query parameter; None when absent. Several, or a broken query, raise."""
    query = scope.get("query_string", b"").decode("latin-1")
    try:
        params = parse_qs(query, max_num_fields=32)
    except ValueError as e:
        raise TokenRejected("malformed query string") from e
    values = params.get("token")
    if not values:
        return None
    if len(values) > 1:
        raise TokenRejected("more than one token")
    return values[0]


class JWTAuthMiddleware(BaseMiddleware):
    """Fills `scope["user"]`, `scope["auth"]` (Authenticated or None) and `scope["auth_error"]`.

    Keeps no state on self: one instance serves every connection.
    """

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        scope = dict(scope)
        scope["user"], scope["auth"], scope["auth_error"] = AnonymousUser(), None, None
        try:
            raw = token_from_query(scope)
            if raw is None:
                raise TokenRejected("missing token")
            auth = await auser_for_token(raw)
        except TokenRejected as e:
            scope["auth_error"] = e
        else:
            scope["user"], scope["auth"] = auth.user, auth
        return await self.inner(scope, receive, send)


def JWTAuthMiddlewareStack(inner):  # noqa: N802  (named like channels' AuthMiddlewareStack)
    """Wrap `inner` with JWT query-parameter authentication."""
    return JWTAuthMiddleware(inner)
