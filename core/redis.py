"""The one Redis client factory: every connection Switchboard makes to Redis comes from here.

Channel layers, cache reads, tickets, heartbeats, the connection rate, presence, fan-out
membership and throttles all get their clients (or pools) from `redis_clients()`, so that
pool sizes, timeouts and what counts as an outage are decided once. A worker's factory is
held by its hub (`realtime.hub`), which names itself the source here when it is installed
(core never imports the apps).

Pools wait for a free connection instead of failing. redis-py's default pool raises
`MaxConnectionsError` the moment 100 connections are in use, and a burst of handshakes
(each a few Redis round trips) took that for an outage: checks were skipped and the layer was
marked down. Here a full pool makes the caller wait, at most REDIS_POOL_TIMEOUT seconds; past
that it raises `RedisBusy`, which is *not* an outage (`redis_is_down` says False): the one
operation fails (and a security check that needed it refuses), nothing else changes.
"""

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
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


@dataclass(frozen=True)
class RedisOptions:
    """How Switchboard connects to Redis (settings, see docs/SECURITY.md and .env.example)."""

    url: str
    max_connections: int
    pool_timeout: float
    socket_timeout: float
    connect_timeout: float

    @classmethod
    def from_settings(cls) -> "RedisOptions":
        return cls(
            url=settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            pool_timeout=settings.REDIS_POOL_TIMEOUT,
            socket_timeout=settings.REDIS_COMMAND_TIMEOUT,
            connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
        )


class RedisClients:
    """One worker's Redis connections: an asyncio pool per event loop (asyncio connections
    belong to the loop that made them) and one thread-safe pool for sync code."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._async: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._sync: redis.Redis | None = None
        self._lock = threading.Lock()

    def _pool_kwargs(self, socket_timeout: float | None) -> dict[str, Any]:
        return {
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
        """A new asyncio pool for the running loop (channel layers make one per loop)."""
        kwargs = {**self._pool_kwargs(socket_timeout), **extra}
        return AsyncWaitingPool.from_url(url or self.options.url, **kwargs)

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
        loop_client = self._async.pop(asyncio.get_running_loop(), None)
        try:
            if loop_client is not None:
                await loop_client.aclose(close_connection_pool=True)
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
                pool = WaitingPool.from_url(self.options.url, **self._pool_kwargs(None))
                self._sync = redis.Redis(connection_pool=pool)
            return self._sync


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
