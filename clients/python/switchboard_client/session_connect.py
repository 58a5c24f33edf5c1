"""Connection attempts to `/ws/session/`: one up to the server's welcome (`session_open`), and
the reconnect loop with backoff after a transient close (`session_reconnect`)."""

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from switchboard_client.backoff import Backoff
from switchboard_client.errors import (
    TOKEN_EXPIRED,
    CloseAction,
    ConnectionLost,
    HandshakeRefused,
    RestError,
    ServerUnreachable,
    close_action,
    close_error,
    unreachable_why,
)
from switchboard_client.rest import origin
from switchboard_client.session_tokens import Frame, SessionTokens

logger = logging.getLogger("switchboard_client")

# Below this much life left, a reconnect renews the token before the handshake.
RECONNECT_MIN_LIFE = 5.0


async def session_open(
    *, url: str, base_url: str, access: str, open_timeout: float, trust_env: bool
) -> tuple[ClientConnection, Frame]:
    """Connect to `url` with the `access` token; the connection and its welcome. Raises
    ConnectionLost (transient: the code says which), HandshakeRefused, or the close's
    typed exception."""
    headers = {"Authorization": f"Bearer {access}"}
    try:
        ws = await connect(
            url,
            additional_headers=headers,
            open_timeout=open_timeout,
            proxy=True if trust_env else None,
        )
    except InvalidStatus as e:
        status = e.response.status_code
        if status >= 500 or status == 429:
            raise ConnectionLost(None, f"handshake answered HTTP {status}") from e
        raise HandshakeRefused(status) from e
    except (OSError, TimeoutError) as e:
        failed = f"cannot connect: {type(e).__name__}"
        raise ServerUnreachable(origin(base_url), unreachable_why(e), failed) from e
    except InvalidHandshake as e:
        raise ConnectionLost(None, f"cannot connect: {type(e).__name__}") from e
    try:
        async with asyncio.timeout(open_timeout):
            first = json.loads(await ws.recv())
            if first.get("type") == "welcome":
                return ws, first
            await ws.wait_closed()  # an error frame comes before the close
    except ConnectionClosed:
        pass
    except (TimeoutError, ValueError) as e:
        await ws.close()
        raise ConnectionLost(None, f"no welcome: {type(e).__name__}") from e
    code, reason = ws.close_code, ws.close_reason or ""
    if close_action(code) is CloseAction.STOP:
        raise close_error(code, reason)
    raise ConnectionLost(code, reason)


async def session_reconnect(
    *,
    code: int | None,
    session_open: Callable[[], Awaitable[tuple[ClientConnection, Frame]]],
    tokens: SessionTokens,
    backoff: Backoff,
    max_attempts: int | None,
) -> tuple[ClientConnection, Frame]:
    """Attempts (`session_open`) after a close with `code` until one gets a welcome, renewing
    the token first when it is expired or nearly; raises what stops the client."""
    for attempt in itertools.count():
        if max_attempts is not None and attempt >= max_attempts:
            raise ConnectionLost(code, f"gave up after {attempt} reconnect attempts")
        delay = backoff.delay(attempt=attempt)
        logger.info("reconnecting in %.2f s (attempt %d, after %s)", delay, attempt + 1, code)
        await asyncio.sleep(delay)
        try:
            if (
                code == TOKEN_EXPIRED
                or tokens.expires_at_known() - time.time() < RECONNECT_MIN_LIFE
            ):
                await tokens.renew()
                tokens.expires_at = time.time() + RECONNECT_MIN_LIFE  # until the welcome says
            return await session_open()
        except ConnectionLost as e:
            code = e.code
            if close_action(code) is CloseAction.STOP:
                raise close_error(code, e.reason) from e
        except RestError as e:
            if e.status < 500 and e.status != 429:  # throttled or down: try again later
                raise
    raise AssertionError("unreachable")
