"""`core.async_cache.cache_get` against a real redis-server: it reads what Django's Redis
cache wrote, byte for byte the same value, without Django's thread hop."""

import pytest
from django.core.cache import caches

from core.async_cache import cache_get

VALUES = [7, -3, 2**40, "text", {"nested": [1, 2.5, None]}, b"\x00bytes", True]


@pytest.fixture
def redis_cache(settings, redis_server):
    settings.REDIS_URL = redis_server.url
    settings.CACHES = {
        "default": {
            "BACKEND": "core.redis_cache.FactoryRedisCache",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": "async-cache-test",
        }
    }
    cache = caches["default"]  # its pool: the test's hub's Redis factory, built from these
    assert type(cache).__name__ == "FactoryRedisCache"
    yield cache
    cache.clear()


@pytest.mark.asyncio
@pytest.mark.parametrize("value", VALUES, ids=repr)
async def test_a_value_set_by_django_reads_back_equal(redis_cache, value):
    redis_cache.set("switchboard:test-key", value, timeout=30)
    assert await cache_get("switchboard:test-key") == value


@pytest.mark.asyncio
async def test_a_missing_key_reads_none(redis_cache):
    redis_cache.set("switchboard:other-key", 1, timeout=30)
    assert await cache_get("switchboard:missing-key") is None


@pytest.mark.asyncio
async def test_the_key_prefix_and_version_are_applied(redis_cache):
    # Written under the cache's prefixed, versioned key: the raw key holds nothing.
    redis_cache.set("switchboard:floor", 3, timeout=30)
    raw = redis_cache._cache.get_client("switchboard:floor", write=False)
    assert raw.get("switchboard:floor") is None
    assert raw.get(redis_cache.make_key("switchboard:floor")) == b"3"
    assert await cache_get("switchboard:floor") == 3


@pytest.mark.asyncio
async def test_without_redis_the_local_cache_is_read(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    caches["default"].set("switchboard:local", {"a": 1})
    assert await cache_get("switchboard:local") == {"a": 1}
