"""core.redis: full pools wait and then say busy (not down); what counts as an outage."""

import asyncio
import socket
import ssl

import pytest
import redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis import (
    AsyncWaitingPool,
    RedisBusy,
    RedisClients,
    RedisOptions,
    WaitingPool,
    redis_error_reason,
    redis_is_down,
    tls_kwargs,
)


def options(**changes) -> RedisOptions:
    values = {
        "url": "redis://127.0.0.1:1/0",
        "max_connections": 2,
        "pool_timeout": 0.05,
        "socket_timeout": 1,
        "connect_timeout": 1,
    }
    return RedisOptions(**{**values, **changes})


@pytest.fixture
def listener():
    """A TCP port that accepts connections and never answers (so connections stay busy)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


async def test_an_async_pool_full_for_its_timeout_raises_busy_not_a_connection_error(
    listener, monkeypatch
):
    pool = AsyncWaitingPool.from_url(
        f"redis://127.0.0.1:{listener}/0", max_connections=1, timeout=0.05
    )
    monkeypatch.setattr(pool, "ensure_connection", _connected)
    first = await pool.get_connection()

    with pytest.raises(RedisBusy) as raised:
        await pool.get_connection()

    assert str(raised.value) == "no free Redis connection within 0.05 s"
    assert not isinstance(raised.value, RedisConnectionError)
    assert not redis_is_down(raised.value)
    await pool.release(first)


async def _connected(connection) -> None:  # a connection that needs no server
    return None


def test_a_sync_pool_full_for_its_timeout_raises_busy(listener, monkeypatch):
    pool = WaitingPool.from_url(f"redis://127.0.0.1:{listener}/0", max_connections=1, timeout=0.05)
    monkeypatch.setattr(redis.connection.Connection, "connect", lambda self: None)
    first = pool.get_connection()

    with pytest.raises(RedisBusy, match=r"^no free Redis connection within 0.05 s$"):
        pool.get_connection()

    pool.release(first)


@pytest.mark.parametrize(
    ("error", "down"),
    [
        (RedisConnectionError("Connection refused"), True),
        (RedisTimeoutError("Timeout reading from socket"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (RedisBusy("no free Redis connection within 10 s"), False),
        (redis.ResponseError("WRONGTYPE"), False),
        (ValueError("encoding"), False),
    ],
    ids=repr,
)
def test_only_connection_errors_and_timeouts_mean_redis_is_down(error, down):
    assert redis_is_down(error) is down


async def test_an_unreachable_redis_is_a_connection_error_not_busy():
    client = RedisClients(options()).async_client()
    with pytest.raises(RedisConnectionError) as raised:
        await client.get("key")
    assert redis_is_down(raised.value)


def test_each_event_loop_gets_its_own_client_and_closed_loops_are_dropped():
    clients = RedisClients(options())

    async def client() -> object:
        return clients.async_client()

    mine_loop, other_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        mine = mine_loop.run_until_complete(client())
        assert mine_loop.run_until_complete(client()) is mine
        theirs = other_loop.run_until_complete(client())
        other_loop.close()
        assert theirs is not mine
        assert mine_loop.run_until_complete(client()) is mine
        third_loop = asyncio.new_event_loop()  # a new loop's first client drops closed ones
        third = third_loop.run_until_complete(client())
        third_loop.close()
        assert list(clients._async.values()) == [mine, third]
    finally:
        mine_loop.close()


def test_pools_take_their_size_and_timeouts_from_the_options():
    clients = RedisClients(options(max_connections=7, pool_timeout=3.5, socket_timeout=4))
    pool = clients.sync_pool()
    assert (pool.max_connections, pool.timeout) == (7, 3.5)
    assert pool.connection_kwargs["socket_timeout"] == 4
    assert pool.connection_kwargs["socket_connect_timeout"] == 1


def test_the_limits_uri_always_names_a_port_and_keeps_the_scheme_and_database():
    def uri(url: str) -> str:
        return RedisOptions(
            url=url, max_connections=2, pool_timeout=1, socket_timeout=1, connect_timeout=1
        ).limits_uri()

    assert uri("redis://switchboard/0") == "redis://switchboard:6379/0"
    assert uri("rediss://cache.example:6380/2") == "rediss://cache.example:6380/2"


def test_redis_password_fills_in_only_where_the_url_names_none():
    options = RedisOptions(
        url="redis://a/0",
        max_connections=2,
        pool_timeout=1,
        socket_timeout=1,
        connect_timeout=1,
        password="from-the-setting",
    )
    assert options.password_kwargs("redis://a/0") == {"password": "from-the-setting"}
    assert options.password_kwargs("redis://:in-the-url@a/0") == {}


def raised_while_handling(error: Exception, cause: BaseException) -> Exception:
    """`error` as redis-py raises it: inside the `except` that caught `cause`."""
    try:
        try:
            raise cause
        except BaseException:
            raise error  # noqa: B904 (redis-py raises without `from`: the context is implicit)
    except Exception as raised:
        return raised


def verify_failed(verdict: str) -> ssl.SSLCertVerificationError:
    """A certificate check's failure, as OpenSSL reports it (it sets `verify_message`)."""
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {verdict}")
    error.verify_message = verdict
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RedisConnectionError("Error 111 connecting to 10.0.0.5:6379."), "ConnectionError"),
        (
            raised_while_handling(
                RedisConnectionError("Error 1 connecting to 10.0.0.5:6380. [SSL: …]"),
                verify_failed("unable to get local issuer certificate"),
            ),
            "ConnectionError: TLS certificate verify failed: unable to get local issuer "
            "certificate, check the Redis URL's host and ssl_ca_certs",
        ),
        (
            raised_while_handling(RedisConnectionError("…"), ssl.SSLCertVerificationError()),
            "ConnectionError: TLS certificate verify failed: the certificate is not trusted, "
            "check the Redis URL's host and ssl_ca_certs",
        ),
        (
            raised_while_handling(RedisConnectionError("…"), ssl.SSLError(1, "wrong version")),
            "ConnectionError: TLS handshake failed: SSLError",
        ),
        (
            AuthenticationError("WRONGPASS invalid username-password pair"),
            "AuthenticationError: password missing or refused, check REDIS_PASSWORD",
        ),
        (RedisBusy("no free Redis connection within 10 s"), "RedisBusy"),
        (redis.ResponseError("ERR unknown command 'hunter2'"), "ResponseError"),
    ],
    ids=repr,
)
def test_the_reason_logged_for_a_redis_error_says_what_failed_and_never_quotes_it(error, reason):
    assert redis_error_reason(error) == reason


def test_a_rediss_url_gives_its_tls_options_and_a_redis_url_none():
    url = (
        "rediss://:pw@10.0.0.5:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
        "&ssl_certfile=/etc/client.pem&ssl_keyfile=/etc/client.key&ssl_check_hostname=false"
        "&socket_keepalive=true"
    )
    assert tls_kwargs(url) == {
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_cert_reqs": "required",
        "ssl_certfile": "/etc/client.pem",
        "ssl_keyfile": "/etc/client.key",
        "ssl_check_hostname": False,
    }
    assert tls_kwargs("rediss://10.0.0.5/0") == {"ssl": True}
    assert tls_kwargs("redis://10.0.0.5/0?ssl_ca_certs=/etc/ca.pem") == {}


def test_the_sentinels_are_reached_with_the_servers_tls_options_and_their_own_password():
    sentinel = options(
        url="rediss://main/0?ssl_ca_certs=/etc/ca.pem",
        sentinels=(("10.0.0.1", 26379),),
        sentinel_master="main",
        password="servers",
        sentinel_password="sentinels",
    )
    assert sentinel.sentinel_kwargs() == {
        "socket_timeout": 1,
        "socket_connect_timeout": 1,
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "password": "sentinels",
    }
