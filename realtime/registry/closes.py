"""Session closes the registry has not recorded yet: retried until written, never counted.

A close whose write failed (the database locked past its timeout, restarting, unreachable)
used to be logged and forgotten: its row stayed open, so the session counted as online, and
toward its user's WS_MAX_SESSIONS_PER_USER, until the worker exited. Now every close of this
worker is pending here until written (`registry_batched.session_record_close_retrying`):

- a write that fails or times out leaves it to the retry task, which writes every failed
  close again RETRY_FIRST seconds later, then twice as long each time up to RETRY_MAX, until
  the database answers;
- an open of the same user on this worker writes that user's pending closes in its own
  transaction, before counting (`registry.sessions_record_open`): a closed session never
  counts toward the cap here. On another worker it counts until the retry has written it, at
  most RETRY_MAX seconds after the database answers again.

Memory is bounded: at most PENDING_MAX closes (a session id, a code and a user id each, about
200 bytes). Past it a close is not kept for the retries, and the log and a metric say so; its
row stays open until the worker's shutdown records it 1001 (`worker_sessions_close`), or, if
the worker dies, the reaper 1006. Both also cover what is still pending when the worker ends.
"""

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from realtime import metrics
from realtime.registry import services as registry
from realtime.registry.services import Close

logger = logging.getLogger("switchboard.realtime")

PENDING_MAX = 100_000
RETRY_FIRST = 0.5  # seconds
RETRY_MAX = 5.0


@dataclass(frozen=True)
class Pending:
    """A close not written yet: its code, and whose session it was."""

    code: int | None
    user_id: int


class RegistryCloses:
    """This worker's closes not recorded yet (on one event loop), and their retries (one per
    loop, held by the hub: `realtime.hub`)."""

    def __init__(self) -> None:
        self.pending: dict[str, Pending] = {}  # session id → its close: written now, or failed
        self.by_user: dict[int, set[str]] = {}
        self.failed: set[str] = set()  # the pending closes whose write failed: retried
        self.retrier: asyncio.Task[None] | None = None
        self.full = False  # PENDING_MAX reached, said once until there is room again

    def keep(self, *, session_id: str, code: int | None, user_id: int) -> None:
        """A close about to be written: pending until `written`."""
        if len(self.pending) >= PENDING_MAX and session_id not in self.pending:
            metrics.REGISTRY_CLOSES_DROPPED.inc()
            if not self.full:
                self.full = True
                logger.error(
                    "%d session closes wait for the database already: further ones are not "
                    "kept for retries (their sessions stay open in the registry until this "
                    "worker stops)",
                    PENDING_MAX,
                )
            return
        self.pending[session_id] = Pending(code, user_id)
        self.by_user.setdefault(user_id, set()).add(session_id)

    def failed_write(self, session_id: str) -> None:
        """The write of a pending close failed (or timed out): retry it until written."""
        if session_id not in self.pending:
            return  # not kept (full), or written meanwhile by an open of its user
        self.failed.add(session_id)
        metrics.REGISTRY_CLOSES_PENDING.set(len(self.failed))
        if self.retrier is None or self.retrier.done():
            self.retrier = asyncio.get_running_loop().create_task(self._retry_run())

    def written(self, closes: Iterable[Close]) -> None:
        """These closes are in the registry now."""
        for session_id, _ in closes:
            close = self.pending.pop(session_id, None)
            if close is None:
                continue
            self.failed.discard(session_id)
            sessions = self.by_user[close.user_id]
            sessions.discard(session_id)
            if not sessions:
                del self.by_user[close.user_id]
        if self.full and len(self.pending) < PENDING_MAX:
            self.full = False
        metrics.REGISTRY_CLOSES_PENDING.set(len(self.failed))

    def of_users(self, user_ids: Iterable[int]) -> list[Close]:
        """The pending closes of these users' sessions."""
        return [
            (session_id, self.pending[session_id].code)
            for user_id in user_ids
            for session_id in self.by_user.get(user_id, ())
        ]

    def tasks(self) -> list[asyncio.Task[None]]:
        """The task this runs (the retries), for the hub to cancel when it closes."""
        return [self.retrier] if self.retrier is not None else []

    async def _retry_run(self) -> None:
        delay, attempts = RETRY_FIRST, 0
        while self.failed:
            await asyncio.sleep(delay)
            closes = [(session_id, self.pending[session_id].code) for session_id in self.failed]
            attempts += 1
            try:
                await registry.asessions_record_close(closes)
            except Exception as e:
                metrics.labelled(metrics.REGISTRY_CLOSE_RETRIES, "failed").inc()
                logger.debug(
                    "%d session close(s) still not recorded (%s)", len(closes), type(e).__name__
                )
                delay = min(delay * 2, RETRY_MAX)
                continue
            metrics.labelled(metrics.REGISTRY_CLOSE_RETRIES, "recorded").inc()
            self.written(closes)
            logger.warning(
                "%d session close(s) recorded on retry (attempt %d)", len(closes), attempts
            )
            delay, attempts = RETRY_FIRST, 0
