"""The ASGI callables' types, for Switchboard's middleware and adapters.

Loose on purpose: a scope and its messages are dicts of whatever the server sends, and
middleware adds keys of its own (`auth`, `auth_error`), which the typed dicts of
asgiref/types-channels forbid. Values are checked where they are read.
"""

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
