"""Where Redis is, read from the environment once (config/settings.py): one server
(REDIS_URL), or a master found through Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER),
and the channel layer on the same Redis or sharded over several (REDIS_LAYER_URLS).

Every mistake stops startup with a message that names the fix; docs/CONFIGURATION.md#redis
says what each setting does.
"""

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from core.redis_address import address_of

SCHEMES = ("redis", "rediss")
SENTINEL_PORT = 26379


def _url_checked(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must be a redis:// or rediss:// URL with a host (redis://host:6379/0)."
        )
    return url


def _sentinels_parsed(value: str) -> tuple[tuple[str, int], ...]:
    sentinels = []
    for item in (part.strip() for part in value.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", str(SENTINEL_PORT))
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS must be a comma-separated list of host:port, not {item!r}."
            )
        sentinels.append((host, int(port)))
    return tuple(sentinels)


@dataclass(frozen=True)
class RedisTopology:
    """Where Switchboard's Redis is. `url` is "" when there is none (one worker, in memory);
    with sentinels it names the master by service name (redis://<master>/<db>)."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = ""
    layer_urls: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls, *, url: str, sentinels: str, sentinel_master: str, layer_urls: str
    ) -> "RedisTopology":
        url, sentinels, sentinel_master = url.strip(), sentinels.strip(), sentinel_master.strip()
        parsed_sentinels: tuple[tuple[str, int], ...] = ()
        if sentinels or sentinel_master:
            if not (sentinels and sentinel_master):
                raise ImproperlyConfigured(
                    "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both (the "
                    "sentinels' host:port list and the master's service name), or neither."
                )
            parsed_sentinels = _sentinels_parsed(sentinels)
            if url:
                _url_checked("REDIS_URL", url)
                if urlsplit(url).hostname != sentinel_master.lower():
                    raise ImproperlyConfigured(
                        "With REDIS_SENTINELS, REDIS_URL names the master by its service name "
                        f"(redis://{sentinel_master}/0, or rediss:// for TLS): the sentinels "
                        "say where it is."
                    )
            else:
                url = f"redis://{sentinel_master}/0"
        elif url:
            _url_checked("REDIS_URL", url)
        shards = tuple(u.strip() for u in layer_urls.split(",") if u.strip())
        for shard in shards:
            _url_checked("Each of REDIS_LAYER_URLS", shard)
        if shards and not url:
            raise ImproperlyConfigured(
                "REDIS_LAYER_URLS shards the channel layer, but Switchboard's own keys "
                "(tickets, heartbeats, presence) need REDIS_URL or REDIS_SENTINELS too."
            )
        if len({address_of(shard) for shard in shards}) != len(shards):
            raise ImproperlyConfigured("REDIS_LAYER_URLS names one server twice.")
        return cls(url, parsed_sentinels, sentinel_master, shards)

    def layer_hosts(self, **options: Any) -> list[dict[str, Any]]:
        """channels-redis' `hosts`: each shard, else the one server or the sentinels'
        master; `options` (timeouts) on each."""
        if self.layer_urls:
            return [{"address": shard, **options} for shard in self.layer_urls]
        if self.sentinels:
            return [{"master_name": self.sentinel_master, **options}]
        return [{"address": self.url, **options}]

    def layer_fingerprint(self) -> str:
        """What every worker's channel layer must agree on: its servers, in order (the
        consistent hashing maps a channel to a position in the list)."""
        if self.layer_urls:
            servers = [address_of(shard) for shard in self.layer_urls]
        elif self.sentinels:
            servers = [f"sentinel:{self.sentinel_master}"]
        else:
            servers = [address_of(self.url)] if self.url else []
        return hashlib.sha256("\n".join(servers).encode()).hexdigest()[:16]
