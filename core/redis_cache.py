"""Django's Redis cache backend on the one Redis factory's pool (`core.redis`).

Django's `RedisCacheClient._get_connection_pool` is its hook for the pool of one server;
here it is the factory's sync pool, so the cache (revocations, revocation floors) waits for a
free connection under a burst instead of failing, and shares the process's connections.
"""

from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from core.redis import redis_clients


class FactoryCacheClient(RedisCacheClient):
    """Django's cache client, every server's pool taken from `redis_clients()`."""

    def _get_connection_pool(self, write: bool) -> redis.ConnectionPool:
        return redis_clients().sync_pool()


class FactoryRedisCache(RedisCache):
    """`django.core.cache.backends.redis.RedisCache` on the factory's pool (one server: the
    LOCATION must be REDIS_URL)."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = FactoryCacheClient
