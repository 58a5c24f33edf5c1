"""`SwitchboardClient`: one `/ws/session/` kept open for a script or a service.

It logs in over REST, connects with an `Authorization: Bearer` header, renews the access
token in band before it expires, reconnects with backoff after a transient close (and
subscribes its rooms again), and stops with a typed exception after a fatal one.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from switchboard_client.backoff import Backoff
from switchboard_client.errors import (
    TOKEN_EXPIRED,
    ClientClosed,
    CloseAction,
    ConnectionLost,
    HandshakeRefused,
    RateLimited,
    RequestError,
    RestError,
    ServerUnreachable,
    SwitchboardClosed,
    SwitchboardError,
    TokenExpired,
    Unauthorized,
    close_action,
    close_error,
    request_error,
    unreachable_why,
)
from switchboard_client.rest import Tokens, origin, tokens_login, tokens_refresh, ws_url
from switchboard_client.subscription import Subscription

logger = logging.getLogger("switchboard_client")

Frame = dict[str, Any]

# Renew the access token this long before it expires at most (half its remaining life when
# that is shorter), so a slow REST call still lands before the server's 4001.
REFRESH_LEAD = 60.0
# Below this much life left, a reconnect renews the token before the handshake.
RECONNECT_MIN_LIFE = 5.0


def expiry_parse(text: str) -> float:
    """A frame's `expires_at` (ISO 8601 UTC) as a Unix timestamp."""
    return datetime.fromisoformat(text).timestamp()


def refresh_delay(*, expires_at: float, now: float) -> float:
    """Seconds until the in-band refresh: REFRESH_LEAD before expiry, or half the remaining
    life when less is left (a 3 s token is renewed about 1.5 s in)."""
    remaining = expires_at - now
    return max(0.0, remaining - min(REFRESH_LEAD, remaining / 2))


class SwitchboardClient:
    """An authenticated `/ws/session/` that survives worker restarts and token expiry.

    ```
    async with SwitchboardClient("http://127.0.0.1:8000", username="alice", password=pw) as c:
        rtt = await c.ping()
    ```
    `request_timeout` bounds every request (TimeoutError), including the wait for a
    reconnect in progress. `max_attempts` (None: forever) bounds the reconnect attempts in a
    row before the client gives up with ConnectionLost. `on_frame` is called with every
    frame received (the command line prints them). `trust_env=False` ignores proxy
    variables of the environment.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        tokens: Tokens | None = None,
        backoff: Backoff | None = None,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        max_attempts: int | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        trust_env: bool = True,
    ) -> None:
        if tokens is None and (username is None or password is None):
            raise ValueError("SwitchboardClient needs username and password, or tokens")
        self.base_url = base_url
        self.username = username
        self._password = password
        self._tokens = tokens
        self.backoff = backoff or Backoff()
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.max_attempts = max_attempts
        self.on_frame = on_frame
        self._trust_env = trust_env
        self._url = ws_url(base_url=base_url, path="/ws/session/")
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=request_timeout, trust_env=trust_env
        )
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}  # in the order sent
        self._rooms: dict[str, set[Subscription]] = {}
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # set while a session is open (or once it is over)
        self._stopped = asyncio.Event()
        self._token_lock = asyncio.Lock()  # a refresh token works once: never two at a time
        self._reader: asyncio.Task[tuple[int | None, str]] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._refreshing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._error: SwitchboardError | None = None  # why the client stopped, once it has
        self._closing = False
        self.session_id: str | None = None
        self.user: dict[str, Any] | None = None
        self.expires_at: float | None = None
        self.connections = 0  # sessions opened so far (1 + reconnects)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> "SwitchboardClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Log in (unless given tokens) and open the session. Not retried: a transient
        failure raises ConnectionLost, a fatal one its typed exception."""
        try:
            if self._tokens is None:
                await self._login()
            ws, welcome = await self._open()
        except BaseException:
            await self._http.aclose()
            raise
        self._attach(ws, welcome)
        self._ready.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="switchboard-supervisor")

    async def aclose(self) -> None:
        """Close the session (1000) and stop reconnecting; waiting calls get ClientClosed."""
        if self._closing:
            return
        self._closing = True
        ws = self._ws
        if self._error is None:
            self._stop(ClientClosed("the client was closed"))
        if ws is not None:
            await ws.close()
        for task in (self._supervisor, self._reader, self._refresher):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._http.aclose()

    async def wait_closed(self) -> None:
        """Wait until the client stops; raise why (SessionRevoked…), unless aclose() did it."""
        await self._stopped.wait()
        if self._error is not None and not isinstance(self._error, ClientClosed):
            raise self._error

    @property
    def connected(self) -> bool:
        """True while a session is open and its rooms are subscribed."""
        return self._ready.is_set() and self._error is None

    @property
    def error(self) -> SwitchboardError | None:
        """Why the client stopped, once it has (None while it runs)."""
        return self._error

    # -- requests --------------------------------------------------------------------------

    async def request(self, message: Frame) -> Frame:
        """Send `message` with a fresh `id` and return the reply carrying that id. An error
        reply raises RequestError (RateLimited for `rate_limited`)."""
        async with asyncio.timeout(self.request_timeout):
            await self._wait_ready()
            return await self._exchange(message)

    async def _exchange(self, message: Frame) -> Frame:
        """Send `message` with a fresh `id` on the open connection; its reply."""
        msg_id = next(self._ids)
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = reply
        try:
            await self._send({**message, "id": msg_id})
            frame = await reply
        finally:
            self._pending.pop(msg_id, None)
        if frame.get("type") == "error":
            raise request_error(code=str(frame.get("code")), message=str(frame.get("message")))
        return frame

    async def send_raw(self, text: str) -> None:
        """Send one text frame as it is (replies, if any, reach `on_frame` only)."""
        async with asyncio.timeout(self.request_timeout):
            await self._wait_ready()
            await self._send_text(text)

    async def echo(self, data: Any) -> Any:
        """The server's copy of `data`."""
        return (await self.request({"type": "echo", "data": data}))["data"]

    async def ping(self) -> float:
        """The round-trip time of a ping, in seconds."""
        started = time.monotonic()
        await self.request({"type": "ping"})
        return time.monotonic() - started

    async def publish(self, channel: str, data: Any) -> None:
        """Send `data` to every subscriber of `channel` (once the server confirms)."""
        await self.request({"type": "publish", "channel": channel, "data": data})

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        """The users subscribed to `channel` now, on every worker: [{"id", "username"}…]."""
        users: list[dict[str, Any]] = (
            await self.request({"type": "presence", "channel": channel})
        )["users"]
        return users

    async def subscribe(self, channel: str, *, max_queue: int = 1000) -> Subscription:
        """Join `channel`: an async iterator of its `message` frames, kept across reconnects.
        RequestError (`forbidden`, `invalid_channel`…) when the server refuses."""
        subscription = Subscription(self, channel, max_queue=max_queue)
        # Registered before asking: a message may follow `subscribed` in the same read.
        self._rooms.setdefault(channel, set()).add(subscription)
        try:
            await self.request({"type": "subscribe", "channel": channel})
        except BaseException:
            self._room_forget(subscription)
            raise
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop `subscription`; leave its room when no other subscription of it is left."""
        self._room_forget(subscription)
        subscription.end(None)
        if subscription.channel not in self._rooms and self.connected:
            with contextlib.suppress(SwitchboardError, TimeoutError):
                await self.request({"type": "unsubscribe", "channel": subscription.channel})

    def _room_forget(self, subscription: Subscription) -> None:
        subscribers = self._rooms.get(subscription.channel, set())
        subscribers.discard(subscription)
        if not subscribers:
            self._rooms.pop(subscription.channel, None)

    async def _wait_ready(self) -> None:
        if self._error is not None:
            raise self._error
        await self._ready.wait()
        if self._error is not None:
            raise self._error

    async def _send(self, message: Frame) -> None:
        await self._send_text(json.dumps(message))

    async def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionLost(None, "not connected")
        try:
            await ws.send(text)
        except ConnectionClosed as e:
            raise ConnectionLost(ws.close_code, ws.close_reason or "") from e

    # -- tokens ----------------------------------------------------------------------------

    async def _login(self) -> None:
        if self.username is None or self._password is None:
            raise Unauthorized(4500, "no password to log in again with")
        self._tokens = await tokens_login(
            http=self._http, username=self.username, password=self._password
        )

    async def _tokens_renew(self) -> Tokens:
        """A new pair over REST: refresh (storing the rotated refresh token), or log in again
        with the password when the refresh token is refused."""
        # Shielded: cancelled mid-call, the server may have spent the old refresh token
        # already, and the new one must still be stored.
        return await asyncio.shield(self._tokens_renew_locked())

    async def _tokens_renew_locked(self) -> Tokens:
        async with self._token_lock:
            assert self._tokens is not None  # logged in (or given tokens) before any renewal
            try:
                self._tokens = await tokens_refresh(http=self._http, refresh=self._tokens.refresh)
            except Unauthorized:
                if self._password is None:
                    raise TokenExpired(TOKEN_EXPIRED, "refresh token refused") from None
                logger.info("refresh token refused; logging in again")
                await self._login()
            assert self._tokens is not None  # _login() stores them
            return self._tokens

    async def _refresh_in_band(self) -> None:
        """Renew the access token, then tell the open session (`refresh` → `refreshed`)."""
        self._refreshing = True
        try:
            tokens = await self._tokens_renew()
            reply = await self.request({"type": "refresh", "token": tokens.access})
        finally:
            self._refreshing = False
        self.expires_at = expiry_parse(reply["expires_at"])
        logger.info("token refreshed in band; the session now expires at %s", reply["expires_at"])

    async def _refresh_run(self, *, now: bool = False) -> None:
        """Refresh when due; on failure try again a little later while time is left (the
        server's 4001 and the reconnect path take over after that)."""
        while True:
            if not now:
                delay = refresh_delay(expires_at=self._expires_at(), now=time.time())
                await asyncio.sleep(delay)
            now = False
            try:
                await self._refresh_in_band()
            except (SwitchboardError, TimeoutError) as e:
                logger.warning("in-band refresh failed: %s", type(e).__name__)
                if isinstance(e, SwitchboardClosed) or self._expires_at() - time.time() < 1:
                    return
                await asyncio.sleep(min(1.0, (self._expires_at() - time.time()) / 2))
                now = True

    def _expires_at(self) -> float:
        """`expires_at`, which a welcome set before anything reads it (refresh, reconnect)."""
        assert self.expires_at is not None
        return self.expires_at

    def _refresh_schedule(self, *, now: bool = False) -> None:
        """(Re)start the refresh timer; `now`: refresh at once unless one is under way."""
        if self._refresher is not None and not self._refresher.done():
            if now and self._refreshing:
                return
            self._refresher.cancel()
        self._refresher = asyncio.create_task(
            self._refresh_run(now=now), name="switchboard-refresh"
        )

    # -- connection ------------------------------------------------------------------------

    async def _open(self) -> tuple[ClientConnection, Frame]:
        """One connection attempt up to the welcome. Raises ConnectionLost (transient: the
        code says which), HandshakeRefused, or the close's typed exception."""
        assert self._tokens is not None  # connect() logs in first
        headers = {"Authorization": f"Bearer {self._tokens.access}"}
        try:
            ws = await connect(
                self._url,
                additional_headers=headers,
                open_timeout=self.open_timeout,
                proxy=True if self._trust_env else None,
            )
        except InvalidStatus as e:
            status = e.response.status_code
            if status >= 500 or status == 429:
                raise ConnectionLost(None, f"handshake answered HTTP {status}") from e
            raise HandshakeRefused(status) from e
        except (OSError, TimeoutError) as e:
            failed = f"cannot connect: {type(e).__name__}"
            raise ServerUnreachable(origin(self.base_url), unreachable_why(e), failed) from e
        except InvalidHandshake as e:
            raise ConnectionLost(None, f"cannot connect: {type(e).__name__}") from e
        try:
            async with asyncio.timeout(self.open_timeout):
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

    def _attach(self, ws: ClientConnection, welcome: Frame) -> None:
        """Make `ws` the open session: read it, and schedule the token's refresh."""
        self._ws = ws
        self.session_id = welcome.get("session_id")
        self.user = welcome.get("user")
        self.expires_at = expiry_parse(welcome["expires_at"])
        self.connections += 1
        if self.on_frame is not None:
            self.on_frame(welcome)
        self._reader = asyncio.create_task(self._read(ws), name="switchboard-reader")
        self._refresh_schedule()

    async def _read(self, ws: ClientConnection) -> tuple[int | None, str]:
        """Dispatch every frame until the connection closes; its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                self._dispatch(text)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.open_timeout):
                await ws.wait_closed()
        return ws.close_code, ws.close_reason or ""

    def _dispatch(self, text: str | bytes) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            logger.warning("a frame that is not JSON was ignored")
            return
        if not isinstance(frame, dict):
            return
        if self.on_frame is not None:
            self.on_frame(frame)
        kind = frame.get("type")
        # Any JSON value may come as the id (or none): it then matches no request.
        waiter = self._pending.get(frame.get("id"))  # type: ignore[arg-type]
        if waiter is None and kind == "error" and frame.get("code") == "rate_limited":
            # The server drops such a frame unread, so its error has no id; it handles a
            # connection's frames in order, so the oldest request still waiting is the one.
            waiter = next((w for w in self._pending.values() if not w.done()), None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(frame)
        elif kind == "message":
            # As above: a channel that is not a string matches no room.
            for subscription in list(self._rooms.get(frame.get("channel"), ())):  # type: ignore[arg-type]
                subscription.put(frame)
        elif kind == "expiring":
            self._refresh_schedule(now=True)

    async def _supervise(self) -> None:
        """After each drop: reconnect with backoff, or stop with the close's exception."""
        try:
            while True:
                assert self._reader is not None  # attached with the session it reads
                code, reason = await self._reader
                self._drop(ConnectionLost(code, reason))
                if self._closing:
                    return
                logger.info("connection closed %s %s", code, reason)
                if close_action(code) is CloseAction.STOP:
                    return self._stop(close_error(code, reason))
                ws, welcome = await self._reconnect(code)
                self._attach(ws, welcome)
                await self._resubscribe()
                self._ready.set()
                logger.info("reconnected; %d room(s) subscribed again", len(self._rooms))
        except SwitchboardError as e:
            self._stop(e)
        except Exception as e:  # a bug must not leave callers waiting forever
            logger.exception("the client stopped on an unexpected error")
            self._stop(ConnectionLost(None, f"client error: {type(e).__name__}"))

    async def _reconnect(self, code: int | None) -> tuple[ClientConnection, Frame]:
        """Attempts until one gets a welcome; raises what stops the client."""
        for attempt in itertools.count():
            if self.max_attempts is not None and attempt >= self.max_attempts:
                raise ConnectionLost(code, f"gave up after {attempt} reconnect attempts")
            delay = self.backoff.delay(attempt=attempt)
            logger.info("reconnecting in %.2f s (attempt %d, after %s)", delay, attempt + 1, code)
            await asyncio.sleep(delay)
            try:
                if code == TOKEN_EXPIRED or self._expires_at() - time.time() < RECONNECT_MIN_LIFE:
                    await self._tokens_renew()
                    self.expires_at = time.time() + RECONNECT_MIN_LIFE  # until the welcome says
                return await self._open()
            except ConnectionLost as e:
                code = e.code
                if close_action(code) is CloseAction.STOP:
                    raise close_error(code, e.reason) from e
            except RestError as e:
                if e.status < 500 and e.status != 429:  # throttled or down: try again later
                    raise
        raise AssertionError("unreachable")

    async def _resubscribe(self) -> None:
        """Join again every room that has a subscription (a refused one ends with its error)."""
        for channel, subscriptions in list(self._rooms.items()):
            for attempt in range(3):
                try:
                    async with asyncio.timeout(self.request_timeout):
                        await self._exchange({"type": "subscribe", "channel": channel})
                    break
                except RateLimited:  # many rooms at once can outrun the frame rate
                    await asyncio.sleep(0.5 * (attempt + 1))
                except (ConnectionLost, TimeoutError):
                    return  # lost again: the next reconnect resubscribes
                except RequestError as e:  # refused now (forbidden…): that room ends
                    for subscription in list(subscriptions):
                        self._room_forget(subscription)
                        subscription.end(e)
                    break

    def _drop(self, error: SwitchboardError) -> None:
        """The connection is gone: requests waiting for a reply fail with `error`."""
        self._ready.clear()
        self._ws = None
        if self._refresher is not None:
            self._refresher.cancel()
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(error)

    def _stop(self, error: SwitchboardError) -> None:
        """The client is over: every waiting call and subscription gets `error`."""
        if self._error is None:
            self._error = error
            if not isinstance(error, ClientClosed):
                logger.warning("client stopped: %s", error)
        self._drop(error)
        self._ready.set()  # wakes callers waiting for a connection, to raise the error
        self._stopped.set()
        for subscriptions in self._rooms.values():
            for subscription in subscriptions:
                subscription.end(None if isinstance(error, ClientClosed) else error)
