"""An async Python client for Switchboard (see clients/python/README.md)."""

from switchboard_client.backoff import Backoff, backoff_delay
from switchboard_client.client import SwitchboardClient
from switchboard_client.errors import (
    ClientClosed,
    ConnectionLost,
    HandshakeRefused,
    LoginRefused,
    MessagesMissed,
    MissReason,
    RateLimited,
    RequestError,
    RestError,
    ServerUnreachable,
    SessionRevoked,
    SwitchboardClosed,
    SwitchboardError,
    TokenExpired,
    TooManySessions,
    Unauthorized,
)
from switchboard_client.rest import Tokens
from switchboard_client.subscription import Subscription

# The distribution's version (pyproject.toml reads it): the server's, core/version.py.
__version__ = "1.0.0"

__all__ = [
    "Backoff",
    "ClientClosed",
    "ConnectionLost",
    "HandshakeRefused",
    "LoginRefused",
    "MessagesMissed",
    "MissReason",
    "RateLimited",
    "RequestError",
    "RestError",
    "ServerUnreachable",
    "SessionRevoked",
    "Subscription",
    "SwitchboardClient",
    "SwitchboardClosed",
    "SwitchboardError",
    "TokenExpired",
    "Tokens",
    "TooManySessions",
    "Unauthorized",
    "__version__",
    "backoff_delay",
]
