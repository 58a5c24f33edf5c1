"""config.redis_topology: every way of naming Redis is read into one topology, and every
mistake stops startup with a message that names the fix."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.redis_topology import RedisTopology


def topology(**env: str) -> RedisTopology:
    values = {"url": "", "sentinels": "", "sentinel_master": "", "layer_urls": ""}
    return RedisTopology.from_env(**{**values, **env})


def test_no_redis_is_no_url_and_an_in_memory_layer():
    assert topology() == RedisTopology()


def test_one_server_is_the_layers_only_host():
    redis = topology(url="redis://10.0.0.5:6379/2")
    assert redis.layer_hosts(socket_timeout=15) == [
        {"address": "redis://10.0.0.5:6379/2", "socket_timeout": 15}
    ]


def test_sentinels_name_the_master_and_the_url_defaults_to_its_service_name():
    redis = topology(sentinels="10.0.0.1:26379, 10.0.0.2:26380,10.0.0.3", sentinel_master="main")
    assert redis.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert redis.url == "redis://main/0"
    assert redis.layer_hosts() == [{"master_name": "main"}]


def test_with_sentinels_a_tls_url_naming_the_master_keeps_its_scheme_and_database():
    redis = topology(url="rediss://main/3", sentinels="h:1", sentinel_master="main")
    assert redis.url == "rediss://main/3"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"sentinels": "h:26379"},
            "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both",
        ),
        ({"sentinel_master": "main"}, "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together"),
        (
            {"sentinels": "h:port", "sentinel_master": "main"},
            "REDIS_SENTINELS must be a comma-separated list of host:port, not 'h:port'.",
        ),
        (
            {"url": "redis://10.0.0.5/0", "sentinels": "h:1", "sentinel_master": "main"},
            "With REDIS_SENTINELS, REDIS_URL names the master by its service name "
            "(redis://main/0, or rediss:// for TLS)",
        ),
        ({"url": "http://10.0.0.5/0"}, "REDIS_URL must be a redis:// or rediss:// URL"),
        ({"layer_urls": "redis://a/0"}, "REDIS_LAYER_URLS shards the channel layer, but"),
        (
            {"url": "redis://a/0", "layer_urls": "redis://b:6379/0,redis://b/0"},
            "REDIS_LAYER_URLS names one server twice.",
        ),
        (
            {"url": "redis://a/0", "layer_urls": "b:6379"},
            "Each of REDIS_LAYER_URLS must be a redis:// or rediss:// URL",
        ),
    ],
)
def test_a_mistake_stops_startup_naming_the_fix(env, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        topology(**env)
    assert str(refused.value).startswith(message)


def test_shards_are_the_layers_hosts_in_order():
    redis = topology(url="redis://a/0", layer_urls="redis://b:6379/0, rediss://c:6380/1")
    assert [host["address"] for host in redis.layer_hosts()] == [
        "redis://b:6379/0",
        "rediss://c:6380/1",
    ]


def test_the_layer_fingerprint_changes_with_the_shards_and_their_order_not_their_passwords():
    one = topology(url="redis://a/0", layer_urls="redis://b/0,redis://c/0")
    same = topology(url="redis://a/0", layer_urls="redis://:secret@b:6379/0,redis://c/0")
    swapped = topology(url="redis://a/0", layer_urls="redis://c/0,redis://b/0")
    fewer = topology(url="redis://a/0", layer_urls="redis://b/0")
    assert one.layer_fingerprint() == same.layer_fingerprint()
    assert (
        len({one.layer_fingerprint(), swapped.layer_fingerprint(), fewer.layer_fingerprint()}) == 3
    )
