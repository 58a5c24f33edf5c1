"""channels-redis' layer, with its connection pools made by the one Redis factory (each
shard's, or the master that the factory's sentinels name).

`RedisChannelLayer.create_pool(index)` is channels-redis' hook for making the pool of one
host (called once per host and event loop); here it returns a waiting pool
(`core.redis.AsyncWaitingPool`), so 1,500 sessions leaving their groups at once wait for a
connection instead of failing with `MaxConnectionsError` and pausing delivery for everyone.

One fix, for a layer sharded over several hosts (REDIS_LAYER_URLS): channels-redis 4.3's
`send()` picks the host of a process-local channel (`specific.<id>!<local>`) by hashing the
whole name, while `receive()` and `group_send()` hash its non-local part (`specific.<id>!`),
so a direct send reached the receiver's host only by chance (django/channels#1492; /readyz's
round trip failed on about half its calls over two shards). `consistent_hash` here hashes
the non-local part of any such name, which makes `send()` agree with the rest and changes
nothing for the names the rest already passes. Checked against channels-redis 4.3
(`versions_uncovered()`; a unit test fails on another version).
"""

from importlib.metadata import version

import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer

from core.redis import redis_clients

COVERED_VERSIONS = ("4.3.",)


def versions_uncovered() -> list[str]:
    """The installed channels-redis, when this module was not checked against it."""
    installed = version("channels-redis")
    return [] if installed.startswith(COVERED_VERSIONS) else [f"channels-redis {installed}"]


# channels-redis ships no types, so its class is Any to mypy.
class RedisChannelLayer(StockRedisChannelLayer):  # type: ignore[misc]
    """`channels_redis.core.RedisChannelLayer` on waiting pools; configured the same way
    (`hosts` entries with an `address`, or a `master_name` found through REDIS_SENTINELS,
    plus redis-py connection options)."""

    def consistent_hash(self, value: str | bytes) -> int:
        """The host of `value`: for a process-local channel, its non-local part's."""
        if isinstance(value, str) and "!" in value:
            value = self.non_local_name(value)
        index: int = super().consistent_hash(value)
        return index

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
