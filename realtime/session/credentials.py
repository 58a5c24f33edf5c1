"""What a session's credential says and when it stops counting: the token's revocation
version and id, the expiry timer (warn, then 4001), the auth timer of a connection that
brought no credential (4500), and which revocations reach it."""

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

from accounts.tokens import VERSION_CLAIM, users_token_state
from realtime import metrics
from realtime.protocol.codes import CloseCode, ErrorCode

if TYPE_CHECKING:
    from realtime.session.consumer import SessionConsumer

logger = logging.getLogger("switchboard.realtime")


def iso_utc(timestamp: float) -> str:
    """An epoch timestamp as ISO 8601 UTC, e.g. `2026-11-23T20:21:09Z`."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Credentials:
    """One session's token state and its two timers; `stop()` cancels both."""

    def __init__(self, session: "SessionConsumer") -> None:
        self.session = session
        self.version: int = 0  # the token's revocation version (VERSION_CLAIM)
        self.jti: str | None = None
        self.expiry_task: asyncio.Task[None] | None = None
        self.auth_timer: asyncio.Task[None] | None = None

    def adopt(self, token: Any) -> None:
        """From now on this session stands on `token` (a validated simplejwt AccessToken)."""
        self.version = token[VERSION_CLAIM]
        self.jti = token.get("jti")

    def revoked_below(self, floor: object) -> bool:
        """Whether a revocation of every token below version `floor` covers this one (a
        floor that is not an integer covers every token)."""
        return not (isinstance(floor, int) and self.version >= floor)

    def is_token(self, jti: object) -> bool:
        """Whether `jti` names this session's own access token."""
        return jti is not None and jti == self.jti

    def stop(self) -> None:
        for task in (self.expiry_task, self.auth_timer):
            if task is not None:
                task.cancel()

    # -- the auth timer ---------------------------------------------------------------------

    def auth_timer_start(self) -> None:
        """Give the first frame WS_AUTH_TIMEOUT seconds to be `auth`."""
        self.auth_timer = asyncio.create_task(self.auth_timeout())

    def auth_timer_stop(self) -> None:
        if self.auth_timer is not None:
            self.auth_timer.cancel()

    async def auth_timeout(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT)
        session = self.session
        if session.user is None and not session.closing:
            metrics.WS_CONNECTIONS.labels(session.endpoint, "unauthorized").inc()
            session.security_event(f"no auth frame in time, closing {int(CloseCode.UNAUTHORIZED)}")
            await session.close_with(
                CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, reason="auth timeout"
            )

    # -- the expiry timer -------------------------------------------------------------------

    def expiry_schedule(self, exp: int) -> None:
        """(Re)start the timer that warns before `exp` and closes 4001 at it."""
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        self.expiry_task = asyncio.create_task(self.expiry_run(exp))

    async def expiry_run(self, exp: int) -> None:
        try:
            await self.expiry_wait(exp)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "expiry timer failed, closing %d: session_id=%s",
                CloseCode.INTERNAL_ERROR,
                self.session.session_id,
                extra=self.session.log_extra(),
            )
            await self.session.close_with(CloseCode.INTERNAL_ERROR)

    async def expiry_wait(self, exp: int) -> None:
        warn_in = exp - settings.WS_EXPIRY_WARNING - time.time()
        if warn_in > 0:
            await asyncio.sleep(warn_in)
        await self.session.send_frame("expiring", expires_at=iso_utc(exp))
        await asyncio.sleep(max(0.0, exp - time.time()))
        await self.session.close_for(
            "token expired", CloseCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED
        )


async def sessions_revalidate(sessions: list["SessionConsumer"]) -> None:
    """After a channel-layer outage: close the sessions revoked meanwhile (the events were
    lost), with one query for all of this worker's sessions."""
    sessions = [s for s in sessions if s.user is not None and not s.closing]
    if not sessions:
        return
    state = await users_token_state(sorted({s.user.pk for s in sessions}))
    for session in sessions:
        version, active = state.get(session.user.pk, (None, False))
        if not active or version != session.credentials.version:
            await session.revoke("session revoked during a channel-layer outage")
