"""A Redis Sentinel topology of the test's own, on loopback: a master, one replica and three
sentinels, each a redis-server started and stopped here by PID. Short timeouts, so that a
failover takes seconds: a master is "down" after DOWN_AFTER_MS of silence."""

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from deploy.cluster import port_wait
from tests.system.stack import RedisServer, free_port, process_stop

MASTER_NAME = "switchboard"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
QUORUM = 2
# Test values only: the topology runs with passwords so that the settings for them are used.
REDIS_PASSWORD = "redis-test-password"
SENTINEL_PASSWORD = "sentinel-test-password"


def sentinel_config(port: int, master_port: int) -> str:
    return "\n".join(
        [
            f"port {port}",
            "bind 127.0.0.1",
            f"requirepass {SENTINEL_PASSWORD}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}",
            f"sentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
            "",
        ]
    )


@dataclass
class Sentinel:
    workdir: Path
    master_port: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self) -> "Sentinel":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "sentinel.conf"  # sentinel rewrites it: one per sentinel
        config.write_text(sentinel_config(self.port, self.master_port))
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (make test installs it)")
        self.proc = subprocess.Popen(
            [binary, str(config), "--sentinel", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        port_wait(self.port, proc=self.proc)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=SENTINEL_PASSWORD, socket_timeout=2)

    def stop(self) -> None:
        if self.proc is not None:
            process_stop(self.proc)
            self.proc = None


@dataclass
class SentinelTopology:
    """A master, a replica of it and three sentinels watching it."""

    workdir: Path
    master: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)
    sentinels: list[Sentinel] = field(default_factory=list)

    def __post_init__(self) -> None:
        auth = ("--requirepass", REDIS_PASSWORD, "--masterauth", REDIS_PASSWORD)
        self.master = RedisServer(self.workdir / "master", args=auth, password=REDIS_PASSWORD)
        replica_of = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica = RedisServer(
            self.workdir / "replica", args=(*auth, *replica_of), password=REDIS_PASSWORD
        )

    def start(self) -> "SentinelTopology":
        self.master.start()
        self.replica.start()
        self.replication_wait(self.replica)
        for n in range(3):
            sentinel = Sentinel(self.workdir / f"sentinel{n}", master_port=self.master.port)
            self.sentinels.append(sentinel.start())
        self.sentinels_agree_wait(self.master.port)
        return self

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()

    @property
    def env(self) -> dict[str, str]:
        """The worker settings for this topology."""
        return {
            "REDIS_URL": "",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_PASSWORD": REDIS_PASSWORD,
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }

    def master_port(self) -> int | None:
        """The port the sentinels name as master (the first that answers), or None."""
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if address:
                return int(address[1])
        return None

    def sentinels_agree_wait(self, port: int, *, within: float = 30.0) -> float:
        """Wait until every sentinel names `port` as master and sees the replica; the seconds
        it took."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            if all(self._sentinel_sees(s, port) for s in self.sentinels):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"the sentinels did not agree on master port {port} in {within} s")

    @staticmethod
    def _sentinel_sees(sentinel: Sentinel, port: int) -> bool:
        client = sentinel.client()
        try:
            address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            replicas = client.sentinel_slaves(MASTER_NAME)
        except redis.RedisError:
            return False
        finally:
            client.close()
        return bool(address) and int(address[1]) == port and bool(replicas)

    @staticmethod
    def replication_wait(replica: RedisServer, *, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            client = replica.client()
            try:
                if client.info("replication").get("master_link_status") == "up":
                    return
            except redis.RedisError:
                pass
            finally:
                client.close()
            time.sleep(0.1)
        raise AssertionError(f"the replica did not sync with its master in {within} s")

    def promotion_wait(self, *, within: float = 30.0) -> float:
        """Wait until the sentinels name the replica master; the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            if self.master_port() == self.replica.port:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"the sentinels promoted no new master within {within} s")
