"""Pin the ASGI `root_path` to the configured one (ASGI_ROOT_PATH, default empty).

daphne takes `root_path` from a client-sent `Daphne-Root-Path` header, and both Django and
channels' URLRouter strip it from the path before routing: with `Daphne-Root-Path: /x`, a
request for `/x/ws/echo/` would reach the echo consumer, and `/x/admin/` the admin. Here the
header is ignored; a deployment under a prefix sets ASGI_ROOT_PATH instead.
"""

from django.conf import settings


class RootPathPinned:
    """ASGI middleware: every scope's `root_path` is ASGI_ROOT_PATH, whatever the client sent."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "root_path": settings.ASGI_ROOT_PATH}
        return await self.inner(scope, receive, send)
