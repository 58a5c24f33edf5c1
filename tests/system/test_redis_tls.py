"""Two real workers on a redis-server of the test's own that speaks TLS only and wants a
password (`rediss://…?ssl_ca_certs=…&ssl_cert_reqs=required`, REDIS_PASSWORD), its CA and
certificate made here for 127.0.0.1. Every user of Redis works over it: a session opens
(revocation list, session cap, heartbeat), logout-all through worker 2 closes a session on
worker 1 (the channel layer), a room message crosses workers, a ticket issued by one worker
is redeemed on the other, the connection rate is counted in this Redis, and /readyz is 200.
A worker that trusts another CA, or has no password, opens no session and says why in its
log; the password is written in no worker's output.
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from realtime.cluster.workers import WORKERS_KEY, worker_key
from tests.system.conftest import http_client, user_register
from tests.system.scenarios import (
    logout_all_through_worker_2_closes_a_session_on_worker_1,
    request_reply,
    room_messages_from_worker_2_reach_both_workers_in_order,
)
from tests.system.stack import RedisServer, Worker
from tests.system.test_redis_degraded import UNAVAILABLE, session_outcome
from tests.system.test_tickets_system import ticket_issue
from tests.system.wsclient import frame_json, session_open, ws_connect

pytestmark = pytest.mark.load  # once per CI run (.ci/run): Redis topologies, not databases

PASSWORD = "tls-redis-test-password"  # a test value: what no worker may ever write
ROOM = "tls"
MESSAGES = 20


@dataclass(frozen=True)
class Authority:
    """A throwaway certificate authority: its certificate (in `cert_path`) and key."""

    cert_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_write(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def authority_new(directory: Path, name: str) -> Authority:
    """A self-signed CA, valid for a day, written to `directory/<name>.crt`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(_pem_write(directory / f"{name}.crt", cert), cert, key)


def server_certificate_new(authority: Authority, directory: Path) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 signed by `authority`: (certificate, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    key_path = directory / "server.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return _pem_write(directory / "server.crt", cert), key_path


@dataclass(frozen=True)
class TlsRedis:
    """The TLS-only server, the CA that signed its certificate, and one that did not."""

    server: RedisServer
    ca: Path
    other_ca: Path

    def url(self, *, ca: Path) -> str:
        """REDIS_URL for a worker that trusts `ca`."""
        return f"{self.server.url}?ssl_ca_certs={ca}&ssl_cert_reqs=required"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory) -> TlsRedis:
    pki = tmp_path_factory.mktemp("pki")
    authority = authority_new(pki, "switchboard-test-ca")
    other = authority_new(pki, "another-test-ca")
    cert, key = server_certificate_new(authority, pki)
    tls = ("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    tls += ("--tls-ca-cert-file", str(authority.cert_path), "--tls-auth-clients", "no")
    server = RedisServer(
        tmp_path_factory.mktemp("redis-tls"),
        args=(*tls, "--requirepass", PASSWORD),
        password=PASSWORD,
        tls_ca=authority.cert_path,
    ).start()
    yield TlsRedis(server, authority.cert_path, other.cert_path)
    server.stop()


@pytest.fixture(scope="module")
def tls_workers(tls_redis, start_module_worker) -> tuple[Worker, Worker]:
    """Two workers on the TLS Redis (stopped before it: the fixtures' order)."""
    env = {"REDIS_URL": tls_redis.url(ca=tls_redis.ca), "REDIS_PASSWORD": PASSWORD}
    return tuple(start_module_worker(redis=False, name=f"tls-{n}", **env) for n in (1, 2))


def connect_window_length(server: RedisServer) -> int:
    """How many connections the connection-rate window of `server` holds for 127.0.0.1."""
    client = server.client()
    try:
        keys = [key for key in client.keys("*ws-connects*") if b"127.0.0.1" in key]
        return sum(client.llen(key) for key in keys)
    finally:
        client.close()


def workers_listed(server: RedisServer) -> set[str]:
    """The workers whose heartbeat `server` holds."""
    client = server.client()
    try:
        members = [m.decode() for m in client.smembers(WORKERS_KEY)]
        return {m for m in members if client.exists(worker_key(m))}
    finally:
        client.close()


async def test_a_session_opens_on_each_worker_and_both_heartbeats_are_in_the_tls_redis(
    tls_workers, tls_redis
):
    user = user_register(tls_workers[0])
    for worker in tls_workers:
        async with session_open(worker, user["access"]) as (ws, welcome):
            assert welcome["user"]["id"] == user["id"]
            assert await request_reply(ws, {"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    assert len(workers_listed(tls_redis.server)) == 2


async def test_logout_all_through_worker_2_closes_a_session_on_worker_1(tls_workers):
    await logout_all_through_worker_2_closes_a_session_on_worker_1(*tls_workers)


async def test_room_messages_from_worker_2_reach_both_workers_in_order(tls_workers):
    await room_messages_from_worker_2_reach_both_workers_in_order(*tls_workers, ROOM, MESSAGES)


async def test_a_ticket_issued_by_worker_1_lets_a_session_in_on_worker_2(tls_workers):
    worker1, worker2 = tls_workers
    user = user_register(worker1)
    ticket = ticket_issue(worker1, user["access"])
    async with ws_connect(worker2, f"/ws/session/?ticket={ticket}") as ws:
        welcome = await frame_json(ws)
    assert (welcome["type"], welcome["user"]["id"]) == ("welcome", user["id"])


async def test_the_connection_rate_is_counted_in_the_tls_redis(tls_workers, tls_redis):
    user = user_register(tls_workers[0])
    before = connect_window_length(tls_redis.server)
    for worker in tls_workers:
        async with session_open(worker, user["access"]):
            pass
    assert connect_window_length(tls_redis.server) == before + 2


def test_readyz_is_200_on_both_workers(tls_workers):
    for worker in tls_workers:
        with http_client(worker) as client:
            response = client.get("/readyz")
        assert (response.status_code, response.json()) == (
            200,
            {"database": "ok", "channel_layer": "ok"},
        )


# What a worker's log says, once per check, when this Redis refuses it. The server sends its
# chain up to its CA (redis-server builds it from --tls-ca-cert-file), so OpenSSL finds a
# self-signed certificate that the worker's CA file does not hold.
OTHER_CA = (
    "ConnectionError: TLS certificate verify failed: self-signed certificate in certificate "
    "chain, check the Redis URL's host and ssl_ca_certs"
)
NO_PASSWORD = "AuthenticationError: password missing or refused, check REDIS_PASSWORD"


@pytest.mark.parametrize("case", ["other_ca", "no_password"])
async def test_a_worker_that_trusts_another_ca_or_has_no_password_opens_no_session_and_says_why(
    case, start_worker, tls_workers, tls_redis
):
    user = user_register(tls_workers[0])
    if case == "other_ca":
        env = {"REDIS_URL": tls_redis.url(ca=tls_redis.other_ca), "REDIS_PASSWORD": PASSWORD}
        why = OTHER_CA
    else:
        env = {"REDIS_URL": tls_redis.url(ca=tls_redis.ca)}
        why = NO_PASSWORD
    worker = start_worker(redis=False, name=f"tls-{case}", **env)

    assert await session_outcome(worker, user["access"]) == (UNAVAILABLE, 1013)
    log = worker.log_text()
    assert log.count(f"connect_rate: Redis cannot answer ({why}); counted in this worker ") == 1
    assert log.count(f"revoked_tokens: Redis cannot answer ({why}); access tokens are ") == 1
    assert PASSWORD not in worker.output()


def test_the_workers_never_fell_back_and_never_wrote_the_password(tls_workers):
    for worker in tls_workers:
        assert "Redis cannot answer" not in worker.log_text()
        assert PASSWORD not in worker.output()
