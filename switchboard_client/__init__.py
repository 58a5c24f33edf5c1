"""An async Python client for Switchboard (see the README's "Python client")."""

from switchboard_client.backoff import Backoff, backoff_delay
from switchboard_client.client import SwitchboardClient
from switchboard_client.errors import (
    ClientClosed,
    ConnectionLost,
    HandshakeRefused,
    LoginRefused,
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

__all__ = [
    "Backoff",
    "ClientClosed",
    "ConnectionLost",
    "HandshakeRefused",
    "LoginRefused",
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
    "backoff_delay",
]
