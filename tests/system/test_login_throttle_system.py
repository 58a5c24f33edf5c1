"""Login limits hold across two real daphne workers sharing one redis-server: concurrent
wrong logins get exactly the allowance, the admin and the REST login share it, and the
security log names accounts only (accounts/login.py, accounts/login_throttle.py).

Each test has a redis-server of its own: every login here comes from 127.0.0.1, and the
session's shared Redis holds other tests' failures for that address."""

import asyncio
import re
import uuid
from collections import Counter

import httpx
import pytest
from django.utils.crypto import salted_hmac

from tests.system.conftest import PASSWORD, http_client, user_register
from tests.system.stack import SECRET_KEY, Worker

WRONG = "wrong horse battery staple"
LOGIN_TIMEOUT = 60


def two_workers(start_worker, redis_url: str, **env: str) -> tuple[Worker, Worker]:
    return (
        start_worker(name=f"login-a-{uuid.uuid4().hex[:6]}", REDIS_URL=redis_url, **env),
        start_worker(name=f"login-b-{uuid.uuid4().hex[:6]}", REDIS_URL=redis_url, **env),
    )


async def concurrent_logins(workers, usernames: list[str], *, in_flight: int = 12) -> Counter:
    """POST the logins alternately to the workers, `in_flight` at a time; the status codes.

    12 at a time: a worker on PostgreSQL holds 8 pooled connections (a login holds one while
    it hashes), so more would be refused 503 by the pool, not by the throttle under test;
    12 overlapping checks are plenty for a check-then-count throttle to let extra ones by.
    """
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=0)
    clients = [
        httpx.AsyncClient(base_url=w.http, timeout=LOGIN_TIMEOUT, limits=limits, trust_env=False)
        for w in workers
    ]
    gate = asyncio.Semaphore(in_flight)

    async def login(i: int, name: str) -> int:
        async with gate:
            client = clients[i % len(clients)]
            body = {"username": name, "password": WRONG}
            return (await client.post("/api/auth/token/", json=body)).status_code

    try:
        statuses = await asyncio.gather(*(login(i, n) for i, n in enumerate(usernames)))
    finally:
        for client in clients:
            await client.aclose()
    return Counter(statuses)


async def test_150_concurrent_wrong_logins_from_one_ip_over_two_workers_get_exactly_100(
    start_worker, private_redis
):
    workers = two_workers(
        start_worker,
        private_redis.url,
        LOGIN_FAILURES_PER_IP="100/hour",
        LOGIN_FAILURES_PER_USERNAME="1000/hour",
    )

    statuses = await concurrent_logins(workers, [f"nobody{i}" for i in range(150)])

    assert statuses == {401: 100, 429: 50}


async def test_30_concurrent_wrong_logins_for_one_username_over_two_workers_get_exactly_5(
    start_worker, private_redis
):
    workers = two_workers(
        start_worker,
        private_redis.url,
        LOGIN_FAILURES_PER_IP="10000/hour",
        LOGIN_FAILURES_PER_USERNAME="5/15minutes",
    )

    statuses = await concurrent_logins(workers, ["target"] * 30)

    assert statuses == {401: 5, 429: 25}


@pytest.mark.parametrize(
    ("limit", "env"),
    [
        ("username", {"LOGIN_FAILURES_PER_USERNAME": "4/15minutes"}),
        ("ip", {"LOGIN_FAILURES_PER_IP": "4/hour", "LOGIN_FAILURES_PER_USERNAME": "1000/hour"}),
    ],
)
def test_wrong_logins_taking_turns_on_two_workers_hit_one_shared_limit_at_its_count(
    start_worker, private_redis, limit, env
):
    # Each worker alone sees only every other failure: a limit counted per worker would let
    # 8 through, 4 on each, where the one shared limit lets exactly 4.
    one, other = two_workers(start_worker, private_redis.url, **env)
    names = ["target"] * 8 if limit == "username" else [f"nobody-{i}" for i in range(8)]

    answers = [rest_login(w, name, WRONG) for w, name in zip((one, other) * 4, names, strict=True)]

    assert [a.status_code for a in answers] == [401] * 4 + [429] * 4
    assert {a.json()["code"] for a in answers[4:]} == {"login_throttled"}
    assert all(1 <= int(a.headers["Retry-After"]) <= 60 * 60 for a in answers[4:])


def test_good_logins_on_either_worker_give_their_attempt_back_to_the_ip(
    start_worker, private_redis
):
    one, other = two_workers(start_worker, private_redis.url, LOGIN_FAILURES_PER_IP="3/hour")
    username = user_register(one)["username"]  # its login is a good one too

    good = [rest_login(w, username, PASSWORD).status_code for w in (one, other) * 5]
    wrong = [
        rest_login(w, f"nobody-{i}", WRONG).status_code for i, w in enumerate((one, other) * 2)
    ]

    assert good == [200] * 10
    assert wrong == [401, 401, 401, 429]


# -- the admin's login ----------------------------------------------------------------------


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def admin_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """Post the admin's login form as a browser does (its CSRF cookie and token)."""
    form = client.get("/admin/login/")
    assert form.status_code == 200
    return client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": csrf_token(form.text),
            "username": username,
            "password": password,
            "next": "/admin/",
        },
    )


def rest_login(worker: Worker, username: str, password: str) -> httpx.Response:
    with http_client(worker) as client:
        return client.post("/api/auth/token/", json={"username": username, "password": password})


def username_hash(typed: str) -> str:
    """The keyed hash a worker writes for a username of no account (the typed text folded)."""
    digest = salted_hmac(
        "switchboard.accounts.login.username",
        typed.casefold(),
        secret=SECRET_KEY,
        algorithm="sha256",
    )
    return digest.hexdigest()[:16]


@pytest.fixture
def admin_workers(start_worker, private_redis, collected_static) -> tuple[Worker, Worker]:
    """Two workers serving the admin (its static files collected; cookies over plain HTTP)."""
    env = {"DJANGO_STATIC_ROOT": str(collected_static), "DJANGO_SECURE_COOKIES": "0"}
    return two_workers(start_worker, private_redis.url, **env)


def test_admin_failures_on_one_worker_lock_the_rest_and_admin_logins_on_the_other(
    admin_workers,
):
    one, other = admin_workers
    username = user_register(one)["username"]
    with http_client(one) as browser:
        pages = [admin_login(browser, username, WRONG) for _ in range(5)]
    assert [page.status_code for page in pages] == [200] * 5

    rest = rest_login(other, username, PASSWORD)
    with http_client(other) as browser:
        page = admin_login(browser, username, PASSWORD)

    assert rest.status_code == 429
    assert rest.json()["code"] == "login_throttled"
    assert page.status_code == 429
    wait = int(page.headers["Retry-After"])
    assert 1 <= wait <= 15 * 60
    assert f"Too many failed logins; try again in {wait} seconds." in page.text
    failed = f"login failed: username='{username}' client=127.0.0.1"
    throttled = f"login throttled: username='{username}' client=127.0.0.1"
    one.output_wait(failed)
    other.output_wait(throttled)
    assert one.log_text().count(failed) == 5
    assert other.log_text().count(throttled) == 2


def test_rest_failures_on_one_worker_lock_the_admin_login_on_the_other(admin_workers):
    one, other = admin_workers
    username = user_register(one)["username"]
    for _ in range(5):
        assert rest_login(one, username, WRONG).status_code == 401

    with http_client(other) as browser:
        page = admin_login(browser, username, PASSWORD)
        session = browser.get("/admin/", follow_redirects=False)

    assert page.status_code == 429
    assert (session.status_code, session.headers["location"]) == (
        302,
        "/admin/login/?next=/admin/",
    )


def test_a_password_typed_as_a_username_is_logged_as_a_keyed_hash_by_both_doors(admin_workers):
    one, other = admin_workers
    typed_rest, typed_admin = "Rest-S3cret-passphrase!", "Admin-S3cret-passphrase!"

    assert rest_login(one, typed_rest, WRONG).status_code == 401
    with http_client(other) as browser:
        assert admin_login(browser, typed_admin, WRONG).status_code == 200

    rest_line = f"login failed: username_hash={username_hash(typed_rest)} client=127.0.0.1"
    admin_line = f"login failed: username_hash={username_hash(typed_admin)} client=127.0.0.1"
    one.output_wait(rest_line)
    other.output_wait(admin_line)
    for worker in (one, other):
        output = worker.output()
        assert typed_rest not in output and typed_admin not in output
