"""The one Redis client factory: every connection Switchboard makes to Redis comes from here.

Channel layers, cache reads, tickets, heartbeats, the connection rate, presence, fan-out
membership and throttles all get their clients (or pools) from `redis_clients()`, so that
pool sizes, timeouts and what counts as an outage are decided once. A worker's factory is
held by its hub (`realtime.hub`), which names itself the source here when it is installed
(core never imports the apps).

With Sentinel (REDIS_SENTINELS), every pool follows the current master of
REDIS_SENTINEL_MASTER: a connection asks the sentinels where the master is when it connects,
and one that finds a demoted master drops and asks again, so after a failover each user of
Redis reconnects to the new master through the same pools.

Pools wait for a free connection instead of failing. redis-py's default pool raises
`MaxConnectionsError` the moment 100 connections are in use, and a burst of handshakes
(each a few Redis round trips) took that for an outage: checks were skipped and the layer was
marked down. Here a full pool makes the caller wait, at most REDIS_POOL_TIMEOUT seconds; past
that it raises `RedisBusy`, which is *not* an outage (`redis_is_down` says False): the one
operation fails (and a security check that needed it refuses), nothing else changes.
"""

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aio_sentinel
import redis.sentinel as sync_sentinel
from django.conf import settings
from redis.asyncio.connection import parse_url as aio_parse_url
from redis.connection import parse_url as sync_parse_url
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.once import once

# What redis-py's blocking pools raise when no connection was freed in time (redis-py 5-8;
# tests/unit/core/test_redis.py fails if a release changes it).
POOL_EMPTY_MESSAGE = "No connection available."


class RedisBusy(RedisError):
    """Every connection of a pool stayed in use for REDIS_POOL_TIMEOUT seconds: Redis (or this
    worker) is busy, not down."""


def redis_is_down(error: BaseException) -> bool:
    """Whether `error` means Redis cannot be reached (a connection error or a timeout), as
    opposed to a busy pool or a command error."""
    if isinstance(error, RedisBusy):
        return False
    return isinstance(error, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError)


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `error` (redis-py raises its ConnectionError while handling it)."""
    for _ in range(5):  # a short chain: a wrapper or two around the socket's error
        if isinstance(error, ssl.SSLError):
            return error
        cause = error.__cause__ or error.__context__
        if cause is None:
            return None
        error = cause
    return None


def redis_error_reason(error: BaseException) -> str:
    """Why Redis could not answer, for a log line: the error's class, and for a refused TLS
    handshake or password what failed and which setting to look at. Never the error's own
    text (a reply may quote a command), so never a credential."""
    name = type(error).__name__
    if isinstance(error, AuthenticationError):
        return f"{name}: password missing or refused, check REDIS_PASSWORD"
    tls = _tls_failure(error)
    if isinstance(tls, ssl.SSLCertVerificationError):  # OpenSSL's verdict: never a secret
        verdict = getattr(tls, "verify_message", None) or "the certificate is not trusted"
        return (
            f"{name}: TLS certificate verify failed: {verdict}, check the Redis URL's host and "
            "ssl_ca_certs"
        )
    if tls is not None:
        return f"{name}: TLS handshake failed: {getattr(tls, 'reason', None) or type(tls).__name__}"
    return name


def tls_kwargs(url: str) -> dict[str, Any]:
    """The TLS options of a rediss:// URL (ssl=True and its ssl_* query options, as redis-py
    reads them), for connections that take no URL: the sentinels'. {} for redis://."""
    if not url.startswith("rediss://"):
        return {}
    parsed = sync_parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    return {"ssl": True, **{name: v for name, v in parsed.items() if name.startswith("ssl")}}


def _pool_empty(error: RedisConnectionError) -> bool:
    return str(error) == POOL_EMPTY_MESSAGE


class AsyncWaitingPool(aioredis.BlockingConnectionPool):
    """redis-py's asyncio blocking pool, raising `RedisBusy` when its wait runs out."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> aioredis.Connection:
        try:
            # redis-py leaves BlockingConnectionPool.get_connection unannotated.
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]
        except RedisConnectionError as e:
            if _pool_empty(e):
                raise RedisBusy(f"no free Redis connection within {self.timeout} s") from e
            raise


class WaitingPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool (threads: admin, REST), raising `RedisBusy` when its wait
    runs out."""

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.Connection:
        try:
            # redis-py leaves BlockingConnectionPool.get_connection unannotated.
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]
        except RedisConnectionError as e:
            if _pool_empty(e):
                raise RedisBusy(f"no free Redis connection within {self.timeout} s") from e
            raise


class AsyncWaitingSentinelPool(aio_sentinel.SentinelConnectionPool, AsyncWaitingPool):
    """A waiting asyncio pool whose connections go to the master the sentinels name."""


class WaitingSentinelPool(sync_sentinel.SentinelConnectionPool, WaitingPool):
    """A waiting pool for sync code whose connections go to the master the sentinels name."""


@dataclass(frozen=True)
class RedisOptions:
    """How Switchboard connects to Redis (settings, see docs/CONFIGURATION.md#redis).
    `sentinels` empty: `url` is the server; else the sentinels name the master of
    `sentinel_master`, and `url` gives the database, TLS and options."""

    url: str
    max_connections: int
    pool_timeout: float
    socket_timeout: float
    connect_timeout: float
    password: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = ""
    sentinel_password: str = ""
    # What each connection tells Redis it is (CLIENT SETNAME): a worker's hub names its
    # connections after the worker, so that `CLIENT LIST` shows who holds which.
    client_name: str = ""

    @classmethod
    def from_settings(cls) -> "RedisOptions":
        return cls(
            url=settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            pool_timeout=settings.REDIS_POOL_TIMEOUT,
            socket_timeout=settings.REDIS_COMMAND_TIMEOUT,
            connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            password=settings.REDIS_PASSWORD,
            sentinels=settings.REDIS_SENTINELS,
            sentinel_master=settings.REDIS_SENTINEL_MASTER,
            sentinel_password=settings.REDIS_SENTINEL_PASSWORD,
        )

    def limits_uri(self) -> str:
        """REDIS_URL as the `limits` library's storages take it: they parse a host and a
        port from it (a sentinel master's name has no port), then use the factory's pool."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"

    def password_kwargs(self, url: str) -> dict[str, Any]:
        """REDIS_PASSWORD, for a server whose URL names no password."""
        if self.password and not urlsplit(url).password:
            return {"password": self.password}
        return {}

    def sentinel_kwargs(self) -> dict[str, Any]:
        """How to talk to the sentinels themselves: their password, TLS as the servers' (the
        CA, client certificate and checks of REDIS_URL's query)."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            **tls_kwargs(self.url),
        }
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs


class RedisClients:
    """One worker's Redis connections: an asyncio pool per event loop (asyncio connections
    belong to the loop that made them) and one thread-safe pool for sync code."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._async: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._async_sentinels: dict[asyncio.AbstractEventLoop, aio_sentinel.Sentinel] = {}
        self._sync: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def sentinel(self) -> bool:
        """Whether the server is found through sentinels."""
        return bool(self.options.sentinels)

    def _sentinel_pool_kwargs(
        self, parse_url: Callable[[str], Any], socket_timeout: float | None
    ) -> dict[str, Any]:
        """A sentinel pool's connection options: REDIS_URL's (database, password, TLS
        options) without its address, which the sentinels give, and the factory's timeouts."""
        url = self.options.url
        kwargs = dict(parse_url(url))
        for address_part in ("host", "port", "path", "connection_class"):
            kwargs.pop(address_part, None)
        if url.startswith("rediss://"):
            kwargs["ssl"] = True  # the sentinel pool picks its TLS connection class
        return {**kwargs, **self.options.password_kwargs(url), **self._pool_kwargs(socket_timeout)}

    def _async_sentinel(self) -> aio_sentinel.Sentinel:
        loop = asyncio.get_running_loop()
        manager = self._async_sentinels.get(loop)
        if manager is None:
            for closed in [other for other in self._async_sentinels if other.is_closed()]:
                del self._async_sentinels[closed]
            # redis-py leaves Sentinel and its pools unannotated.
            manager = self._async_sentinels[loop] = aio_sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(self.options.sentinels), sentinel_kwargs=self.options.sentinel_kwargs()
            )
        return manager

    def _pool_kwargs(self, socket_timeout: float | None) -> dict[str, Any]:
        named = {"client_name": self.options.client_name} if self.options.client_name else {}
        return {
            **named,
            "max_connections": self.options.max_connections,
            "timeout": self.options.pool_timeout,
            "socket_timeout": self.options.socket_timeout
            if socket_timeout is None
            else socket_timeout,
            "socket_connect_timeout": self.options.connect_timeout,
        }

    def async_pool(
        self, url: str | None = None, *, socket_timeout: float | None = None, **extra: Any
    ) -> AsyncWaitingPool:
        """A new asyncio pool for the running loop (channel layers make one per loop): to
        `url` (a shard of the channel layer), else to REDIS_URL's server or the sentinels'
        master."""
        if url is None and self.sentinel:
            kwargs = self._sentinel_pool_kwargs(aio_parse_url, socket_timeout)
            return AsyncWaitingSentinelPool(  # type: ignore[no-untyped-call]
                self.options.sentinel_master, self._async_sentinel(), **kwargs, **extra
            )
        url = url or self.options.url
        kwargs = {**self.options.password_kwargs(url), **self._pool_kwargs(socket_timeout)}
        return AsyncWaitingPool.from_url(url, **kwargs, **extra)

    def async_client(self) -> aioredis.Redis:
        """The running event loop's client (Switchboard's own keys: tickets, heartbeats,
        presence, fan-out membership, cache reads, the connection rate)."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            for closed in [other for other in self._async if other.is_closed()]:
                del self._async[closed]
            client = self._async[loop] = aioredis.Redis(connection_pool=self.async_pool())
        return client

    def sync_pool(self) -> WaitingPool:
        """The process's pool for sync code (shared by its threads)."""
        return self.sync_client().connection_pool  # type: ignore[return-value]

    async def aclose(self) -> None:
        """Close the running loop's client and the sync one (a worker's shutdown); a later
        use builds new ones."""
        loop = asyncio.get_running_loop()
        loop_client = self._async.pop(loop, None)
        manager = self._async_sentinels.pop(loop, None)
        try:
            if loop_client is not None:
                await loop_client.aclose(close_connection_pool=True)
            for sentinel in manager.sentinels if manager is not None else ():
                await sentinel.aclose(close_connection_pool=True)
        finally:
            with self._lock:
                sync, self._sync = self._sync, None
            if sync is not None:
                sync.close()
                sync.connection_pool.disconnect()

    def sync_client(self) -> redis.Redis:
        """The process's client for sync code: REST views, the admin, commands."""
        with self._lock:
            if self._sync is None:
                self._sync = redis.Redis(connection_pool=self._sync_pool_new())
            return self._sync

    def _sync_pool_new(self) -> WaitingPool:
        if self.sentinel:
            manager = sync_sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(self.options.sentinels), sentinel_kwargs=self.options.sentinel_kwargs()
            )
            kwargs = self._sentinel_pool_kwargs(sync_parse_url, None)
            return WaitingSentinelPool(self.options.sentinel_master, manager, **kwargs)  # type: ignore[no-untyped-call]
        url = self.options.url
        kwargs = {**self.options.password_kwargs(url), **self._pool_kwargs(None)}
        return WaitingPool.from_url(url, **kwargs)


@once
def _process_clients() -> RedisClients:
    """The process's own factory, for code that runs without a hub (a management command)."""
    return RedisClients(RedisOptions.from_settings())


_source: Callable[[], RedisClients] = _process_clients


def redis_clients() -> RedisClients:
    """This worker's Redis client factory: its hub's (`realtime.hub`), else the process's own,
    built from settings on first use."""
    return _source()


def redis_clients_source(source: Callable[[], RedisClients] | None) -> None:
    """Where `redis_clients()` takes the factory from (the installed hub's); None: the
    process's own."""
    global _source
    _source = _process_clients if source is None else source


def text(value: bytes | str) -> str:
    """A Redis reply as text (the clients answer bytes: they do not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value
