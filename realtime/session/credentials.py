"""What a session's credential says and when it stops counting: the token's revocation
version and id, the expiry timer (warn, then 4001), the auth timer of a connection that
brought no credential (4500), and which revocations reach it."""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
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


# A timer is a loop timer handle while it waits, then the worker task it started (`stop()`
# cancels either).
Timer = asyncio.TimerHandle | asyncio.Task[None]
# An expiry step is a function of the class, not a bound method: a waiting handle holds no
# method object of its own.
ExpiryStep = Callable[["Credentials", int], Coroutine[Any, Any, None]]


class Credentials:
    """One session's token state and its two timers; `stop()` cancels both."""

    def __init__(self, session: "SessionConsumer") -> None:
        self.session = session
        self.version: int = 0  # the token's revocation version (VERSION_CLAIM)
        self.jti: str | None = None
        self.expiry_timer: Timer | None = None
        self.auth_timer: Timer | None = None

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
        """Cancel both timers, waiting or running."""
        for timer in (self.expiry_timer, self.auth_timer):
            if timer is not None:
                timer.cancel()

    # -- the auth timer ---------------------------------------------------------------------

    def auth_timer_start(self) -> None:
        """Give the first frame WS_AUTH_TIMEOUT seconds to be `auth`."""
        loop = asyncio.get_running_loop()
        self.auth_timer = loop.call_later(settings.WS_AUTH_TIMEOUT, self.auth_timer_fire)

    def auth_timer_stop(self) -> None:
        if self.auth_timer is not None:
            self.auth_timer.cancel()

    def auth_timer_fire(self) -> None:
        self.auth_timer = worker_spawn(self.auth_timeout())

    async def auth_timeout(self) -> None:
        """Close 4500 a connection that still has no user."""
        session = self.session
        if session.user is None and not session.closing:
            metrics.WS_CONNECTIONS.labels(session.endpoint, "unauthorized").inc()
            session.security_event(f"no auth frame in time, closing {int(CloseCode.UNAUTHORIZED)}")
            await session.close_with(
                CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, reason="auth timeout"
            )

    # -- the expiry timer -------------------------------------------------------------------

    def expiry_schedule(self, exp: int) -> None:
        """(Re)start the timer that warns WS_EXPIRY_WARNING seconds before `exp` (at once when
        that moment is past) and closes 4001 at `exp`."""
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
        self.expiry_at(exp - settings.WS_EXPIRY_WARNING, Credentials.expiry_warn, exp)

    def expiry_at(self, when: float, step: ExpiryStep, exp: int) -> None:
        """Run `step(self, exp)` at `when`, a wall-clock (epoch) time; the loop's clock is
        monotonic, so the delay is taken from `time.time()`."""
        delay = max(0.0, when - time.time())
        loop = asyncio.get_running_loop()
        self.expiry_timer = loop.call_later(delay, self.expiry_fire, step, exp)

    def expiry_fire(self, step: ExpiryStep, exp: int) -> None:
        self.expiry_timer = worker_spawn(self.expiry_run(step, exp))

    async def expiry_run(self, step: ExpiryStep, exp: int) -> None:
        """`step(self, exp)`; a step that fails closes the session 1011."""
        try:
            await step(self, exp)
        except Exception:
            logger.exception(
                "expiry timer failed, closing %d: session_id=%s",
                CloseCode.INTERNAL_ERROR,
                self.session.session_id,
                extra=self.session.log_extra(),
            )
            await self.session.close_with(CloseCode.INTERNAL_ERROR)

    async def expiry_warn(self, exp: int) -> None:
        """Send `expiring`, then set the close for `exp`."""
        await self.session.send_frame("expiring", expires_at=iso_utc(exp))
        self.expiry_at(exp, Credentials.expiry_close, exp)

    async def expiry_close(self, exp: int) -> None:
        await self.session.close_for(
            "token expired", CloseCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED
        )


def worker_spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run `coro` as a task of the worker's hub (kept until done, cancelled at shutdown)."""
    # Imported here: the hub imports this module (`sessions_revalidate`).
    from realtime.hub import hub

    return hub().spawn(coro)


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
