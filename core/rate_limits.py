"""Rate limits counted across every worker in Redis, with a per-worker fallback.

Counting is the `limits` library's moving window: on Redis one atomic Lua script per hit, so
150 concurrent requests over two workers are counted exactly (a read-then-write throttle let
all of them through). When Redis cannot answer, the same limit is counted in this worker's
memory instead: a per-worker limiter, never none (`core.degrade`).
"""

import asyncio
import time
from collections.abc import Callable

from limits import RateLimitItem, WindowStats
from limits import storage as sync_storage
from limits import strategies as sync_strategies
from limits.aio import storage as aio_storage
from limits.aio import strategies as aio_strategies

from core.degrade import Degradation
from core.limits_compat import moving_window_give_back
from core.redis import redis_clients

LOCAL_RULE = "counted in this worker only"


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
                "async+" + clients.options.url,
                implementation="redispy",
                connection_pool=clients.async_client().connection_pool,
            )
            limiter = self._limiters[loop] = aio_strategies.MovingWindowRateLimiter(store)
        return limiter

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one event; False when it is over `item`'s limit."""
        if not self.shared:
            return await self._local.hit(item, *identifiers)
        try:
            allowed = await self._shared().hit(item, *identifiers)
        except Exception as e:  # any failure of the store: Redis down, busy, or confused
            self.degradation.fell_back(e)
            return await self._local.hit(item, *identifiers)
        self.degradation.answered()
        return allowed


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
                clients.options.url, connection_pool=clients.sync_pool()
            )
            self._shared = sync_strategies.MovingWindowRateLimiter(store)

    def _call(self, action: Callable[[sync_strategies.MovingWindowRateLimiter], object]):
        if self._shared is None:
            return action(self._local)
        try:
            result = action(self._shared)
        except Exception as e:
            self.degradation.fell_back(e)
            return action(self._local)
        self.degradation.answered()
        return result

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Take `cost` from `item`'s allowance, atomically; False (nothing taken) when it
        does not fit."""
        return bool(self._call(lambda limiter: limiter.hit(item, *identifiers, cost=cost)))

    def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Whether one more event fits (nothing counted)."""
        return bool(self._call(lambda limiter: limiter.test(item, *identifiers)))

    def window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """When `item`'s window frees an event, and how many are left in it."""
        return self._call(lambda limiter: limiter.get_window_stats(item, *identifiers))

    def reset_in(self, item: RateLimitItem, *identifiers: str) -> float:
        """Seconds until the window of `item` frees an event."""
        return max(0.0, self.window_stats(item, *identifiers).reset_time - time.time())

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        """Forget what was counted against `item`."""
        self._call(lambda limiter: limiter.clear(item, *identifiers))

    def give_back(self, item: RateLimitItem, *identifiers: str) -> None:
        """Uncount the newest event counted against `item` (an attempt that turned out not
        to count, e.g. a good password)."""
        key = item.key_for(*identifiers)
        self._call(lambda limiter: moving_window_give_back(storage=limiter.storage, key=key))
