"""Pin the ASGI `root_path` to the configured one (ASGI_ROOT_PATH, default empty).

daphne takes `root_path` from a client-sent `Daphne-Root-Path` header, and both Django and
channels' URLRouter strip it from the path before routing: with `Daphne-Root-Path: /x`, a
request for `/x/ws/echo/` would reach the echo consumer, and `/x/admin/` the admin. Here the
header is ignored; a deployment under a prefix sets ASGI_ROOT_PATH instead.
"""

from typing import cast

from asgiref.typing import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from django.conf import settings


class RootPathPinned:
    """ASGI middleware: every scope's `root_path` is ASGI_ROOT_PATH, whatever the client sent."""

    def __init__(self, inner: ASGI3Application) -> None:
        self.inner = inner

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            # The same kind of scope, one key changed: mypy only sees a dict after the **.
            scope = cast(Scope, {**scope, "root_path": settings.ASGI_ROOT_PATH})
        return await self.inner(scope, receive, send)
