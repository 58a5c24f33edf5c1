"""A session's states, the moves between them, and how a handler ends a session.

    connecting ──accept──> authenticating ──welcome──> open
         │                      │                       │
         └──────────────────────┴──────> closing <──────┘ ──disconnect──> closed

`connecting`: the handshake is not answered yet. `authenticating`: accepted, its credential
is being checked, or (none brought) the first frame is awaited. `open`: welcomed; client
messages are handled. `closing`: this server sent its close; nothing more is handled or
sent. `closed`: the connection is gone (from any state: a client may drop at any time).
(starlette's `WebSocketState`, centrifuge's client status.)
"""

from enum import Enum

from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.protocol.frames import MessageId


class SessionState(Enum):
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


MOVES: dict[SessionState, frozenset[SessionState]] = {
    SessionState.CONNECTING: frozenset(
        {SessionState.AUTHENTICATING, SessionState.CLOSING, SessionState.CLOSED}
    ),
    SessionState.AUTHENTICATING: frozenset(
        {SessionState.OPEN, SessionState.CLOSING, SessionState.CLOSED}
    ),
    SessionState.OPEN: frozenset({SessionState.CLOSING, SessionState.CLOSED}),
    SessionState.CLOSING: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


class IllegalMove(RuntimeError):
    """A session asked to move between two states that have no edge (a bug, never input)."""


def move(current: SessionState, to: SessionState) -> SessionState:
    """`to`, when a session in `current` may move there; else IllegalMove."""
    if to not in MOVES[current]:
        raise IllegalMove(f"session cannot go from {current.value} to {to.value}")
    return to


class SessionEnd(Exception):  # noqa: N818  (not an error: how a handler ends a session)
    """Raised by a handler to end its session: `<why>, closing <code>` goes to the security
    log, then the error frame (with the request's id) and the close."""

    def __init__(
        self,
        why: str,
        code: CloseCode,
        error: ErrorCode | None = None,
        msg_id: MessageId = None,
    ) -> None:
        super().__init__(why)
        self.why = why
        self.code = code
        self.error = error
        self.msg_id = msg_id
