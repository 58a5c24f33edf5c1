"""Bursts of handshakes against two real daphne workers on one redis-server of the test's own:
the Redis-backed checks keep checking (a busy pool is not an outage), and nothing opens that
should not.

Before the one Redis client factory (`core/redis.py`), a burst filled redis-py's pool of 100,
its `MaxConnectionsError` was read as an outage, and each check stopped checking: 337-468 of
2,000 handshakes accepted against a limit of 120 a minute, a logout-revoked token welcomed,
37 sessions for a cap of 20, delivery paused for every session of a worker.
"""

import asyncio
import itertools
from collections import Counter

import httpx
import pytest

from tests.system.burst import burst, close_all, nofile_raise, tally
from tests.system.conftest import http_client, user_register
from tests.system.stack import Worker
from tests.system.wsclient import frame_json

pytestmark = pytest.mark.load

# What a worker writes when a check stops checking or delivery pauses: none may appear.
DEGRADED_LINES = (
    "not limiting",
    "MaxConnectionsError",
    "channel layer unreachable",
    "rejoining their groups",
    "alive workers unknown",
)
# What daphne itself answers to handshakes it cannot finish in time under a burst: 403 (the
# application did not accept within its 5 s), or the handshake dropped (no HTTP response).
DAPHNE_SHED = {"HTTP 403", "InvalidMessage", "no reply"}


@pytest.fixture(autouse=True)
def many_sockets():
    nofile_raise()


@pytest.fixture
def pair(start_worker, private_redis):
    """`pair(**env)`: two workers on this test's own redis-server."""

    def start(**env: str) -> tuple[Worker, Worker]:
        env = {"REDIS_URL": private_redis.url, **env}
        return start_worker(redis=False, **env), start_worker(redis=False, **env)

    return start


def spread(workers: tuple[Worker, ...], path: str, n: int) -> list[str]:
    """`n` URLs of `path`, alternating between the workers."""
    return [f"{w.ws}{path}" for w, _ in zip(itertools.cycle(workers), range(n), strict=False)]


def assert_never_degraded(*workers: Worker) -> None:
    for worker in workers:
        found = [
            line
            for line in worker.output().splitlines()
            if any(text in line for text in DEGRADED_LINES)
        ]
        assert not found, f"{len(found)} degraded line(s) from {worker.name}: {found[:3]}"


async def test_2000_handshakes_from_one_address_let_in_at_most_the_per_minute_limit(pair):
    workers = pair(WS_CONNECTS_PER_MINUTE="120")

    outcomes = await burst(
        spread(workers, "/ws/echo/", 2000), accepted_when="Server received", probe="hi"
    )
    await close_all(outcomes)

    counts = tally(outcomes)
    assert counts["accepted"] <= 120, counts
    # Every other one was refused with the rate's close code (or, past daphne's handshake
    # timeout under this load, not answered at all): none was let in unchecked.
    assert set(counts) <= {"accepted", 4008, *DAPHNE_SHED}, counts
    assert counts[4008] >= 1000, counts
    assert_never_degraded(*workers)


async def test_600_handshakes_with_a_logged_out_token_open_no_session(pair):
    workers = pair()
    user = user_register(workers[0])
    with http_client(workers[0]) as client:
        done = client.post(
            "/api/auth/logout/",
            json={"refresh": user["refresh"]},
            headers={"Authorization": f"Bearer {user['access']}"},
        )
    assert done.status_code == 204, done.text

    outcomes = await burst(
        spread(workers, "/ws/session/", 600),
        headers={"Authorization": f"Bearer {user['access']}"},
    )

    # Refused as revoked (4500), as unavailable when the list could not be read in time
    # (1013), or shed by daphne before any of that (DAPHNE_SHED): never welcomed.
    counts = tally(outcomes)
    assert set(counts) <= {4500, 1013, *DAPHNE_SHED}, counts
    assert counts[4500] >= 400, counts
    assert {str(o.first) for o in outcomes if o.code == 4500} == {
        str({"type": "error", "code": "unauthorized", "message": "Unauthorized"})
    }
    assert_never_degraded(*workers)


async def test_300_concurrent_sessions_of_one_user_open_exactly_the_cap(pair):
    workers = pair(WS_MAX_SESSIONS_PER_USER="20")
    user = user_register(workers[0])

    outcomes = await burst(
        spread(workers, "/ws/session/", 300),
        headers={"Authorization": f"Bearer {user['access']}"},
    )
    await close_all(outcomes)

    assert tally(outcomes) == {"accepted": 20, 4502: 280}
    assert_never_degraded(*workers)


async def test_2000_sessions_open_and_1500_close_at_once_without_pausing_delivery(pair):
    workers = pair(WS_MAX_SESSIONS_PER_USER="5000")
    user = user_register(workers[0])
    headers = {"Authorization": f"Bearer {user['access']}"}

    outcomes = await burst(spread(workers, "/ws/session/", 2000), headers=headers)
    assert tally(outcomes) == {"accepted": 2000}
    await close_all(outcomes[:1500])

    # Cross-worker delivery still works for the sessions left: one on each worker.
    sender, receiver = outcomes[1500].ws, outcomes[1501].ws
    for ws in (sender, receiver):
        await ws.send('{"type":"subscribe","id":1,"channel":"burst.room"}')
        assert (await frame_json(ws))["type"] == "subscribed"
    await sender.send('{"type":"publish","id":2,"channel":"burst.room","data":"after"}')
    frames = [await frame_json(receiver), await frame_json(sender), await frame_json(sender)]
    assert frames[0]["type"] == "message" and frames[0]["data"] == "after", frames
    await close_all(outcomes[1500:])
    await asyncio.sleep(1)  # the workers' close logging
    assert_never_degraded(*workers)
    async with httpx.AsyncClient(base_url=workers[0].http, trust_env=False) as client:
        assert (await client.get("/readyz")).status_code == 200


async def test_150_concurrent_handshakes_over_two_workers_are_limited_exactly(pair):
    workers = pair(WS_CONNECTS_PER_MINUTE="120")

    outcomes = await burst(
        spread(workers, "/ws/echo/", 150), accepted_when="Server received", probe="hi"
    )
    await close_all(outcomes)

    assert tally(outcomes) == {"accepted": 120, 4008: 30}


async def test_150_concurrent_ticket_requests_over_two_workers_get_exactly_the_limit(pair):
    workers = pair(WS_TICKETS_PER_MINUTE="60")
    user = user_register(workers[0])
    headers = {"Authorization": f"Bearer {user['access']}"}

    async with (
        httpx.AsyncClient(base_url=workers[0].http, trust_env=False, timeout=30) as one,
        httpx.AsyncClient(base_url=workers[1].http, trust_env=False, timeout=30) as two,
    ):
        answers = await asyncio.gather(
            *(
                client.post("/api/realtime/ticket/", headers=headers)
                for client, _ in zip(itertools.cycle((one, two)), range(150), strict=False)
            )
        )

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {201: 60, 429: 90}
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["code"] == "throttled"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
