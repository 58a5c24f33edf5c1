"""core.channel_layer: over several hosts, a direct send to a process-local channel goes to
the host its receiver reads (channels-redis hashed the whole name: django/channels#1492),
and the fix is checked against the channels-redis it was written for."""

import uuid

from core import channel_layer
from core.channel_layer import RedisChannelLayer

HOSTS = [{"address": "redis://127.0.0.1:1/0"}, {"address": "redis://127.0.0.1:2/0"}]


def test_the_installed_channels_redis_is_the_one_the_fix_was_checked_against():
    assert channel_layer.versions_uncovered() == [], (
        "channels-redis changed: check RedisChannelLayer.send()'s host choice against "
        "core/channel_layer.py, then add the version to COVERED_VERSIONS"
    )


def test_an_unknown_channels_redis_is_named(monkeypatch):
    monkeypatch.setattr(channel_layer, "version", lambda name: "5.0.0")
    assert channel_layer.versions_uncovered() == ["channels-redis 5.0.0"]


def test_a_process_local_channel_hashes_to_its_receivers_host_whatever_its_local_part():
    layer = RedisChannelLayer(hosts=HOSTS)
    prefixes = [f"specific.{uuid.uuid4().hex[:12]}!" for _ in range(200)]
    for prefix in prefixes:
        full = prefix + uuid.uuid4().hex
        assert layer.consistent_hash(full) == layer.consistent_hash(prefix)
    # Both hosts are used (the names spread), and a group name hashes as before.
    assert {layer.consistent_hash(p) for p in prefixes} == {0, 1}
    stock = super(RedisChannelLayer, layer).consistent_hash
    assert layer.consistent_hash("room.lobby") == stock("room.lobby")
