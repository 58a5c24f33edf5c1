"""Session closes written together (`realtime.db_batch`): a close alone is written at once;
the closes that arrive while a write runs share the next transaction.

A close used to be a transaction of its own (about 1.3 ms of the worker's database thread on
PostgreSQL, measured here), queued in front of the next handshake's user lookup. Each caller
still returns once its own row is written, so when a close is visible does not change.
"""

from realtime import registry
from realtime.db_batch import loop_batcher

Close = tuple[str, int | None]  # (session id, close code)
_batchers: dict = {}


async def _write(closes: list[Close]) -> None:
    await registry.asessions_record_close(closes)


async def session_record_close_batched(*, session_id: str, code: int | None) -> None:
    """Record that a session closed (with the close code sent or received), batched with
    the closes that arrive meanwhile on this event loop; raises what the write raised."""
    await loop_batcher(_batchers, _write).call((session_id, code))
