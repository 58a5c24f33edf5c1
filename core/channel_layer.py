"""channels-redis' layer, with its connection pools made by the one Redis factory (each
shard's, or the master that the factory's sentinels name).

`RedisChannelLayer.create_pool(index)` is channels-redis' hook for making the pool of one
host (called once per host and event loop); here it returns a waiting pool
(`core.redis.AsyncWaitingPool`), so 1,500 sessions leaving their groups at once wait for a
connection instead of failing with `MaxConnectionsError` and pausing delivery for everyone.
"""

import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer

from core.redis import redis_clients


# channels-redis ships no types, so its class is Any to mypy.
class RedisChannelLayer(StockRedisChannelLayer):  # type: ignore[misc]
    """`channels_redis.core.RedisChannelLayer` on waiting pools; configured the same way
    (`hosts` entries with an `address`, or a `master_name` found through REDIS_SENTINELS,
    plus redis-py connection options)."""

    def create_pool(self, index: int) -> aioredis.ConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address", None)
        master = host.pop("master_name", None)
        if address is None and master is None:  # a host/port pair: channels-redis' own pool
            pool: aioredis.ConnectionPool = super().create_pool(index)
            return pool
        socket_timeout = host.pop("socket_timeout", None)
        host.pop("socket_connect_timeout", None)  # the factory's
        if master is not None:  # the factory's master, which its sentinels name
            if master != redis_clients().options.sentinel_master:
                raise ValueError(f"layer host {master!r} is not REDIS_SENTINEL_MASTER")
            return redis_clients().async_pool(socket_timeout=socket_timeout, **host)
        return redis_clients().async_pool(address, socket_timeout=socket_timeout, **host)
