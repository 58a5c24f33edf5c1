"""`SessionTokens`: a client's token pair, and the in-band refresh that keeps its session alive.

It logs in over REST, renews the pair (refresh, or log in again when the refresh token is
refused), one renewal at a time, and refreshes the open session's token before it expires.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx

from switchboard_client.errors import (
    TOKEN_EXPIRED,
    SwitchboardClosed,
    SwitchboardError,
    TokenExpired,
    Unauthorized,
)
from switchboard_client.rest import Tokens, tokens_login, tokens_refresh

logger = logging.getLogger("switchboard_client")

Frame = dict[str, Any]

# Renew the access token this long before it expires at most (half its remaining life when
# that is shorter), so a slow REST call still lands before the server's 4001.
REFRESH_LEAD = 60.0


def expiry_parse(text: str) -> float:
    """A frame's `expires_at` (ISO 8601 UTC) as a Unix timestamp."""
    return datetime.fromisoformat(text).timestamp()


def refresh_delay(*, expires_at: float, now: float) -> float:
    """Seconds until the in-band refresh: REFRESH_LEAD before expiry, or half the remaining
    life when less is left (a 3 s token is renewed about 1.5 s in)."""
    remaining = expires_at - now
    return max(0.0, remaining - min(REFRESH_LEAD, remaining / 2))


class SessionTokens:
    """The token pair of one client and its session's expiry.

    `request` sends a frame on the open session and returns its reply (the client's
    `request`); the in-band refresh tells the session its new token through it.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        username: str | None,
        password: str | None,
        tokens: Tokens | None,
        request: Callable[[Frame], Awaitable[Frame]],
    ) -> None:
        self._http = http
        self.username = username
        self._password = password
        self.tokens = tokens
        self._request = request
        self._lock = asyncio.Lock()  # a refresh token works once: never two at a time
        self.refresher: asyncio.Task[None] | None = None
        self._refreshing = False
        self.expires_at: float | None = None

    async def login(self) -> None:
        """Log in with the password over REST and keep the pair."""
        if self.username is None or self._password is None:
            raise Unauthorized(4500, "no password to log in again with")
        self.tokens = await tokens_login(
            http=self._http, username=self.username, password=self._password
        )

    def access(self) -> str:
        """The access token, which a login (or the caller) gave before any connection."""
        assert self.tokens is not None  # connect() logs in first
        return self.tokens.access

    async def renew(self) -> Tokens:
        """A new pair over REST: refresh (storing the rotated refresh token), or log in again
        with the password when the refresh token is refused."""
        # Shielded: cancelled mid-call, the server may have spent the old refresh token
        # already, and the new one must still be stored.
        return await asyncio.shield(self._renew_locked())

    async def _renew_locked(self) -> Tokens:
        async with self._lock:
            assert self.tokens is not None  # logged in (or given tokens) before any renewal
            try:
                self.tokens = await tokens_refresh(http=self._http, refresh=self.tokens.refresh)
            except Unauthorized:
                if self._password is None:
                    raise TokenExpired(TOKEN_EXPIRED, "refresh token refused") from None
                logger.info("refresh token refused; logging in again")
                await self.login()
            assert self.tokens is not None  # login() stores them
            return self.tokens

    def expires_at_known(self) -> float:
        """`expires_at`, which a welcome set before anything reads it (refresh, reconnect)."""
        assert self.expires_at is not None
        return self.expires_at

    def refresh_schedule(self, *, now: bool = False) -> None:
        """(Re)start the refresh timer; `now`: refresh at once unless one is under way."""
        if self.refresher is not None and not self.refresher.done():
            if now and self._refreshing:
                return
            self.refresher.cancel()
        self.refresher = asyncio.create_task(self._refresh_run(now=now), name="switchboard-refresh")

    def refresh_cancel(self) -> None:
        """Stop the refresh timer (the connection is gone)."""
        if self.refresher is not None:
            self.refresher.cancel()

    async def _refresh_in_band(self) -> None:
        """Renew the access token, then tell the open session (`refresh` → `refreshed`)."""
        self._refreshing = True
        try:
            tokens = await self.renew()
            reply = await self._request({"type": "refresh", "token": tokens.access})
        finally:
            self._refreshing = False
        self.expires_at = expiry_parse(reply["expires_at"])
        logger.info("token refreshed in band; the session now expires at %s", reply["expires_at"])

    async def _refresh_run(self, *, now: bool = False) -> None:
        """Refresh when due; on failure try again a little later while time is left (the
        server's 4001 and the reconnect path take over after that)."""
        while True:
            if not now:
                delay = refresh_delay(expires_at=self.expires_at_known(), now=time.time())
                await asyncio.sleep(delay)
            now = False
            try:
                await self._refresh_in_band()
            except (SwitchboardError, TimeoutError) as e:
                logger.warning("in-band refresh failed: %s", type(e).__name__)
                if isinstance(e, SwitchboardClosed) or self.expires_at_known() - time.time() < 1:
                    return
                await asyncio.sleep(min(1.0, (self.expires_at_known() - time.time()) / 2))
                now = True
