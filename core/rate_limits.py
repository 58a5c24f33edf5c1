"""Rate limits counted across every worker in Redis, with a per-worker fallback.

Counting is the `limits` library's moving window: on Redis one atomic Lua script per hit, so
150 concurrent requests over two workers are counted exactly (a read-then-write throttle let
all of them through). Every event is also counted in this worker's memory, against the same
limit: when Redis cannot answer, that count decides (a per-worker limiter, never none:
`core.degrade`), and since it was kept all along, falling back never starts a fresh allowance
(an attacker who can make Redis fail for a moment gains nothing by it). While Redis answers
the local count never binds first: a worker never counts more than every worker together.
"""

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from limits import RateLimitItem, WindowStats
from limits import storage as sync_storage
from limits import strategies as sync_strategies
from limits.aio import storage as aio_storage
from limits.aio import strategies as aio_strategies

from core.degrade import Degradation
from core.limits_compat import moving_window_give_back
from core.redis import redis_clients

LOCAL_RULE = "counted in this worker only"
T = TypeVar("T")


def _local_async() -> aio_strategies.MovingWindowRateLimiter:
    return aio_strategies.MovingWindowRateLimiter(aio_storage.MemoryStorage())


class AsyncSharedLimiter:
    """A moving-window limiter for async code: Redis when `shared` (REDIS_URL set), else or
    meanwhile this worker's memory."""

    def __init__(self, check: str, *, shared: bool) -> None:
        self.shared = shared
        self.degradation = Degradation(check, answer="local_rule", rule=LOCAL_RULE)
        self._limiters: dict[asyncio.AbstractEventLoop, aio_strategies.MovingWindowRateLimiter] = {}
        self._local = _local_async()

    def _shared(self) -> aio_strategies.MovingWindowRateLimiter:
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            for closed in [other for other in self._limiters if other.is_closed()]:
                del self._limiters[closed]
            clients = redis_clients()
            store = aio_storage.RedisStorage(
                "async+" + clients.options.limits_uri(),
                implementation="redispy",
                # limits types its storage options as scalars; redis-py takes a pool here.
                connection_pool=clients.async_client().connection_pool,  # type: ignore[arg-type]
            )
            limiter = self._limiters[loop] = aio_strategies.MovingWindowRateLimiter(store)
        return limiter

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one event; False when it is over `item`'s limit."""
        local = await self._local.hit(item, *identifiers)
        if not self.shared:
            return local
        try:
            shared = await self._shared().hit(item, *identifiers)
        except Exception as e:  # any failure of the store: Redis down, busy, or confused
            self.degradation.fell_back(e)
            return local
        self.degradation.answered()
        return local and shared


class SharedLimiter:
    """A moving-window limiter for sync code (REST views, the admin), like
    `AsyncSharedLimiter`: Redis, or this worker's memory when Redis cannot answer."""

    def __init__(self, check: str, *, shared: bool) -> None:
        self.degradation = Degradation(check, answer="local_rule", rule=LOCAL_RULE)
        self._local = sync_strategies.MovingWindowRateLimiter(sync_storage.MemoryStorage())
        self._shared: sync_strategies.MovingWindowRateLimiter | None = None
        if shared:
            clients = redis_clients()
            store = sync_storage.RedisStorage(
                clients.options.limits_uri(), connection_pool=clients.sync_pool()
            )
            self._shared = sync_strategies.MovingWindowRateLimiter(store)

    def _both(
        self, action: Callable[[sync_strategies.MovingWindowRateLimiter], T]
    ) -> tuple[T, T | None]:
        """`action` on this worker's count, and on the shared one when there is Redis:
        (local result, shared result or None when Redis did not answer)."""
        local = action(self._local)
        if self._shared is None:
            return local, None
        try:
            shared = action(self._shared)
        except Exception as e:
            self.degradation.fell_back(e)
            return local, None
        self.degradation.answered()
        return local, shared

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Take `cost` from `item`'s allowance, atomically; False when it does not fit."""
        local, shared = self._both(lambda limiter: limiter.hit(item, *identifiers, cost=cost))
        return bool(local) and shared is not False

    def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Whether one more event fits (nothing counted)."""
        local, shared = self._both(lambda limiter: limiter.test(item, *identifiers))
        return bool(local) and shared is not False

    def window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """When `item`'s window frees an event, and how many are left in it (the shared
        window's, when Redis answers)."""
        local, shared = self._both(lambda limiter: limiter.get_window_stats(item, *identifiers))
        return shared if shared is not None else local

    def reset_in(self, item: RateLimitItem, *identifiers: str) -> float:
        """Seconds until the window of `item` frees an event."""
        return max(0.0, self.window_stats(item, *identifiers).reset_time - time.time())

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        """Forget what was counted against `item`."""
        self._both(lambda limiter: limiter.clear(item, *identifiers))

    def give_back(self, item: RateLimitItem, *identifiers: str) -> None:
        """Uncount the newest event counted against `item` (an attempt that turned out not
        to count, e.g. a good password)."""
        key = item.key_for(*identifiers)
        self._both(lambda limiter: moving_window_give_back(storage=limiter.storage, key=key))
