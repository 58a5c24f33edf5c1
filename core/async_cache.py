"""Reads of Django's default cache from async code that never wait for the sync thread.

Django's `cache.aget` on the Redis backend is `sync_to_async(cache.get)`: it queues behind
every database call of the worker's one sync thread, so each WebSocket handshake's two cache
reads (revoked token, revocation floor) waited for other handshakes' queries. Here the same
key is read with redis-py's asyncio client on the event loop; values are decoded with
Django's own serializer, so whatever `cache.set` wrote reads back the same. Any other cache
backend (local memory without REDIS_URL) is in-process: read directly.
"""

from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisSerializer

from core.redis import redis_clients

_serializer = RedisSerializer()


async def cache_get(key: str) -> Any:
    """`cache.get(key)`, without a thread hop; raises what the cache raises."""
    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        return cache.get(key)
    value = await redis_clients().async_client().get(cache.make_and_validate_key(key))
    # redis-py types a reply as bytes | str; this client does not decode, so it is bytes.
    return None if value is None else _serializer.loads(value)  # type: ignore[arg-type]
