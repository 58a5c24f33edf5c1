"""A session's row in the registry: recorded before the welcome (under the per-user cap),
recorded closed after the last frame, whatever the database does meanwhile."""

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from core.client_ip import scope_client_ip
from core.degrade import Degradation
from realtime.cluster.workers import WORKER_ID
from realtime.hub import hub
from realtime.protocol.codes import CloseCode, ErrorCode, refusal_for
from realtime.registry.batched import session_record_close_retrying, session_record_open_batched
from realtime.registry.services import SessionOpen, TooManySessions
from realtime.session.user_groups import worker_channel

if TYPE_CHECKING:
    from realtime.session.consumer import SessionConsumer

logger = logging.getLogger("switchboard.realtime")

SESSION_CAP = Degradation(
    "session_cap",
    answer="local_rule",
    rule="the per-user session cap counts every open session in the registry",
)

Refusal = tuple[ErrorCode, CloseCode, str]  # error frame, close code, outcome label

# One read of the alive workers serves the handshakes of the next second (two Redis round
# trips each, before). A worker that died meanwhile still counts toward the cap for that
# long (stricter); one that started meanwhile counts anyway: its rows are younger than the
# read (`registry.services.sessions_record_open`).
ALIVE_REUSE_S = 1.0


async def workers_alive() -> tuple[frozenset[str] | None, datetime]:
    """The alive workers, this one included (its heartbeat started), and when they were read
    (at most ALIVE_REUSE_S ago); None when Redis cannot say: the session cap then counts
    every open session the registry holds, whichever worker (stricter than counting this
    worker's alone)."""
    try:
        await hub().heartbeat.ensure()
        alive, read_at = await hub().heartbeat.alive_recent(ALIVE_REUSE_S)
    except Exception as e:
        SESSION_CAP.fell_back(e)
        return None, timezone.now()
    SESSION_CAP.answered()
    return alive | {WORKER_ID}, read_at


async def session_record(session: "SessionConsumer") -> Refusal | None:
    """Record `session` in the registry; what to refuse with when it may not open."""
    alive, alive_at = await workers_alive()
    channel = await worker_channel()  # where an operator's disconnect finds it
    headers = dict(session.scope.get("headers", ()))
    opening = asyncio.ensure_future(
        session_record_open_batched(
            SessionOpen(
                session_id=session.session_id,
                user_id=session.user.pk,
                username=session.user.get_username(),
                channel_name=channel,
                client_ip=scope_client_ip(session.scope),
                user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
                worker=WORKER_ID,
                alive_workers=alive,
                alive_at=alive_at,
            )
        )
    )
    try:
        await asyncio.wait_for(asyncio.shield(opening), timeout=settings.AUTH_DB_TIMEOUT)
    except TooManySessions:
        session.security_event(
            f"more than {settings.WS_MAX_SESSIONS_PER_USER} sessions, closing "
            f"{int(CloseCode.TOO_MANY_SESSIONS)}"
        )
        return refusal_for(ErrorCode.TOO_MANY_SESSIONS)
    except Exception as e:
        logger.warning(
            "session not recorded (%s), closing %d: session_id=%s",
            type(e).__name__,
            CloseCode.TRY_AGAIN_LATER,
            session.session_id,
            extra=session.log_extra(),
        )
        # A timed-out insert may still commit later: once it has, close its row.
        hub().spawn(session_record_close_after(session, opening))
        return refusal_for(ErrorCode.UNAVAILABLE)
    session.recorded = True
    return None


async def session_record_close_after(
    session: "SessionConsumer", opening: "asyncio.Future[None]"
) -> None:
    """Record `session` closed with 1013 once its (timed-out) open is settled."""
    # Whatever the open came to (recorded, refused, failed), the close goes after it.
    await asyncio.wait([opening])
    await session_record_close(session, CloseCode.TRY_AGAIN_LATER)


async def session_record_close(session: "SessionConsumer", code: int | None) -> None:
    """Record `session` closed with `code`; a write not done in time is retried until the
    database answers (`realtime.registry.closes`)."""
    failure = await session_record_close_retrying(
        session_id=session.session_id,
        code=code,
        user_id=session.user.pk,
        wait=settings.AUTH_DB_TIMEOUT,
    )
    if failure is not None:
        logger.warning(
            "session close not recorded (%s), retrying until the database answers: "
            "session_id=%s code=%s",
            type(failure).__name__,
            session.session_id,
            code,
            extra=session.log_extra(),
        )
