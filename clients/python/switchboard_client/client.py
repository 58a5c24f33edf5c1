"""`SwitchboardClient`: one `/ws/session/` kept open for a script or a service.

It logs in over REST, connects with an `Authorization: Bearer` header, renews the access
token in band before it expires, reconnects with backoff after a transient close (and
subscribes its rooms again), and stops with a typed exception after a fatal one. The parts
with a job of their own live beside it: session_tokens.py (login, renewal, the in-band
refresh), session_connect.py (one attempt up to the welcome, the reconnect loop), rooms.py.

Over 300 lines because the public API and the connection state it guards are one class.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from switchboard_client.backoff import Backoff
from switchboard_client.errors import (
    ClientClosed,
    CloseAction,
    ConnectionLost,
    MessagesMissed,
    SwitchboardError,
    close_action,
    close_error,
    request_error,
)
from switchboard_client.rest import Tokens, ws_url
from switchboard_client.rooms import Rooms
from switchboard_client.session_connect import session_open, session_reconnect
from switchboard_client.session_tokens import Frame, SessionTokens, expiry_parse
from switchboard_client.subscription import Subscription

logger = logging.getLogger("switchboard_client")


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
        self._session_tokens = SessionTokens(
            http=self._http,
            username=username,
            password=password,
            tokens=tokens,
            request=self.request,
        )
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}  # in the order sent
        self._rooms = Rooms()
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # set while a session is open (or once it is over)
        self._stopped = asyncio.Event()
        self._reader: asyncio.Task[tuple[int | None, str]] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._error: SwitchboardError | None = None  # why the client stopped, once it has
        self._closing = False
        self.session_id: str | None = None
        self.user: dict[str, Any] | None = None
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
            if self._session_tokens.tokens is None:
                await self._session_tokens.login()
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
        for task in (self._supervisor, self._reader, self._session_tokens.refresher):
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
    def username(self) -> str | None:
        """The user the client logs in as (None when given tokens only)."""
        return self._session_tokens.username

    @username.setter
    def username(self, value: str | None) -> None:
        self._session_tokens.username = value

    @property
    def expires_at(self) -> float | None:
        """When the open session's access token expires (Unix time), as the server said."""
        return self._session_tokens.expires_at

    @expires_at.setter
    def expires_at(self, value: float | None) -> None:
        self._session_tokens.expires_at = value

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

    async def publish(self, channel: str, data: Any) -> int | None:
        """Send `data` to every subscriber of `channel` (once the server confirms); the offset
        the server gave the message, or None in a channel that keeps no history."""
        reply = await self.request({"type": "publish", "channel": channel, "data": data})
        offset = reply.get("offset")
        return offset if isinstance(offset, int) and not isinstance(offset, bool) else None

    async def history(self, channel: str, *, limit: int | None = None) -> list[Frame]:
        """The last messages kept in `channel`'s history (at most `limit`; the server's
        default and cap: the namespace's history_size), oldest first, as `message` frames.
        RequestError `history_unavailable` in a channel that keeps no history."""
        message: Frame = {"type": "history", "channel": channel}
        if limit is not None:
            message["limit"] = limit
        messages: list[Frame] = (await self.request(message))["messages"]
        return messages

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        """The users subscribed to `channel` now, on every worker: [{"id", "username"}…]."""
        users: list[dict[str, Any]] = (
            await self.request({"type": "presence", "channel": channel})
        )["users"]
        return users

    async def subscribe(
        self,
        channel: str,
        *,
        max_queue: int = 1000,
        on_missed: Callable[[MessagesMissed], object] | None = None,
    ) -> Subscription:
        """Join `channel`: an async iterator of its `message` frames, kept across reconnects
        (recovered from the channel's history, when it keeps one). Where messages may be
        missing, the iterator raises MessagesMissed once, or `on_missed` is called with it
        instead (from the client's reader: it must not block). RequestError (`forbidden`,
        `invalid_channel`…) when the server refuses."""
        subscription = Subscription(self, channel, max_queue=max_queue, on_missed=on_missed)
        # Registered before asking: a message may follow `subscribed` in the same read.
        self._rooms.add(subscription)
        try:
            await self.request({"type": "subscribe", "channel": channel})
        except BaseException:
            self._rooms.forget(subscription)
            raise
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop `subscription`; leave its room when no other subscription of it is left."""
        self._rooms.forget(subscription)
        subscription.end(None)
        if subscription.channel not in self._rooms and self.connected:
            with contextlib.suppress(SwitchboardError, TimeoutError):
                await self.request({"type": "unsubscribe", "channel": subscription.channel})

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

    # -- connection ------------------------------------------------------------------------

    async def _open(self) -> tuple[ClientConnection, Frame]:
        """One connection attempt up to the welcome (handshake.session_open)."""
        return await session_open(
            url=self._url,
            base_url=self.base_url,
            access=self._session_tokens.access(),
            open_timeout=self.open_timeout,
            trust_env=self._trust_env,
        )

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
        self._session_tokens.refresh_schedule()

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
        if kind == "subscribed":
            # Here, not in the caller that asked: a replay may follow in the same read.
            self._rooms.subscribed(frame)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(frame)
        elif kind == "message":
            self._rooms.deliver(frame)
        elif kind == "expiring":
            self._session_tokens.refresh_schedule(now=True)

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
                ws, welcome = await session_reconnect(
                    code=code,
                    session_open=self._open,
                    tokens=self._session_tokens,
                    backoff=self.backoff,
                    max_attempts=self.max_attempts,
                )
                self._attach(ws, welcome)
                await self._rooms.resubscribe(
                    exchange=self._exchange, request_timeout=self.request_timeout
                )
                self._ready.set()
                logger.info("reconnected; %d room(s) subscribed again", len(self._rooms))
        except SwitchboardError as e:
            self._stop(e)
        except Exception as e:  # a bug must not leave callers waiting forever
            logger.exception("the client stopped on an unexpected error")
            self._stop(ConnectionLost(None, f"client error: {type(e).__name__}"))

    def _drop(self, error: SwitchboardError) -> None:
        """The connection is gone: requests waiting for a reply fail with `error`."""
        self._ready.clear()
        self._ws = None
        self._session_tokens.refresh_cancel()
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
        self._rooms.end_all(None if isinstance(error, ClientClosed) else error)
