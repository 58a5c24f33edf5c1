"""The ASGI callables' types, for middleware and adapters (the spec's shapes, loosely typed:
a scope and its messages are dicts of what the server sends)."""

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
