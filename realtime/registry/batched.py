"""The session registry's writes from the WebSocket path, batched (`core.db_batch`):
alone, a write runs at once; the opens (or closes) that arrive while one runs share the next
transaction.

Each used to be a transaction of its own on the worker's one database thread (an open about
2.2 ms, a close about 1.3 ms on PostgreSQL, measured here), queued in front of every other
handshake. Each caller still returns once its own row is written (or refused), so what a
client sees, and when the row is visible, do not change.
"""

import asyncio

from realtime.hub import hub
from realtime.registry import services as registry
from realtime.registry.services import Close, SessionOpen, TooManySessions, UserGone


async def opens_write(opens: list[SessionOpen]) -> dict[SessionOpen, bool | None]:
    """One batch of opens (the hub's `open_batcher` runs it)."""
    # Closes of these users not recorded yet go first, in the same transaction: a session
    # that closed never counts toward its user's limit (`realtime.registry.closes`).
    closes = hub().registry_closes.of_users({o.user_id for o in opens})
    recorded = await registry.asessions_record_open(opens, closes=closes)
    hub().registry_closes.written(closes)
    return {o: recorded[o.session_id] for o in opens}


async def closes_write(closes: list[Close]) -> None:
    """One batch of closes (the hub's `close_batcher` runs it)."""
    await registry.asessions_record_close(closes)


async def session_record_open_batched(session: SessionOpen) -> None:
    """Record an accepted session. TooManySessions, with nothing recorded, when its user
    already has WS_MAX_SESSIONS_PER_USER sessions online; UserGone when the user was deleted
    meanwhile; raises what the write raised."""
    recorded = await hub().open_batcher.call(session)
    if recorded is None:
        raise UserGone  # answered like a database failure: 1013, nothing recorded
    if not recorded:
        raise TooManySessions


async def session_record_close_batched(*, session_id: str, code: int | None) -> None:
    """Record that a session closed (with the close code sent or received); raises what the
    write raised."""
    await hub().close_batcher.call((session_id, code))


async def session_record_close_retrying(
    *, session_id: str, code: int | None, user_id: int, wait: float
) -> Exception | None:
    """Record that a session closed, waiting at most `wait` seconds: None once written; else what
    the write raised, and the close is retried until written (`realtime.registry.closes`).
    Until then an open of the same user on this worker writes it first."""
    closes = hub().registry_closes
    closes.keep(session_id=session_id, code=code, user_id=user_id)
    try:
        await asyncio.wait_for(session_record_close_batched(session_id=session_id, code=code), wait)
    except Exception as e:
        closes.failed_write(session_id)
        return e
    closes.written([(session_id, code)])
    return None
