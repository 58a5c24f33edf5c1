"""realtime.registry.closes: a close the database did not take is retried until written, and
never counts toward its user's WS_MAX_SESSIONS_PER_USER meanwhile."""

import asyncio
import logging
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY

from realtime.cluster.workers import WORKER_ID
from realtime.models import WebSocketSession
from realtime.registry import closes as registry_closes
from realtime.registry import services as registry
from realtime.registry.batched import session_record_close_retrying
from realtime.registry.services import SessionOpen, sessions_record_close, sessions_record_open
from tests.unit.realtime.sessions import WebSocketSessionFactory, session_open

pytestmark = pytest.mark.django_db(transaction=True)

NOT_RECORDED = (
    "session close not recorded (OperationalError), retrying until the database answers: "
    "session_id={} code=1000"
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def retries(outcome: str) -> float:
    return sample("switchboard_registry_close_retries_total", outcome=outcome)


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(registry_closes, "RETRY_FIRST", 0.01)
    monkeypatch.setattr(registry_closes, "RETRY_MAX", 0.04)


@pytest.fixture
def database_down(monkeypatch) -> dict:
    """Session-close writes fail while `state["down"]` is true; every attempt is counted
    (`state["third"]` is set on the third)."""
    state = {"down": True, "attempts": 0, "third": asyncio.Event()}
    real = registry.asessions_record_close

    async def flaky(closes):
        state["attempts"] += 1
        if state["attempts"] == 3:
            state["third"].set()
        if state["down"]:
            raise OperationalError("database is locked")
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", flaky)
    return state


async def closed_row(session_id: str, *, within: float = 2) -> WebSocketSession:
    """The row of `session_id` once it is recorded closed; fails after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            row = await WebSocketSession.objects.aget(pk=session_id)
            if row.closed_at is not None:
                return row
            await asyncio.sleep(0.01)


async def test_a_close_the_database_refused_is_written_by_a_retry_once_it_answers(
    connect, user, fast_retries, database_down, caplog
):
    caplog.set_level(logging.WARNING, logger="switchboard.realtime")
    failed_before, recorded_before = retries("failed"), retries("recorded")
    socket, welcome = await session_open(connect, user)
    session_id = welcome["session_id"]

    await socket.disconnect(code=1000)
    # The first write, then two retries, all refused.
    await asyncio.wait_for(database_down["third"].wait(), 2)
    row = await WebSocketSession.objects.aget(pk=session_id)
    assert (row.closed_at, row.close_code) == (None, None)
    assert sample("switchboard_registry_closes_pending") == 1

    database_down["down"] = False
    row = await closed_row(session_id)

    assert row.close_code == 1000
    assert retries("failed") - failed_before >= 2
    assert retries("recorded") - recorded_before == 1
    assert sample("switchboard_registry_closes_pending") == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "switchboard.realtime"]
    assert lines[0] == NOT_RECORDED.format(session_id)
    assert lines[-1].startswith("1 session close(s) recorded on retry (attempt ")
    attempts = database_down["attempts"]
    await asyncio.sleep(0.1)
    assert database_down["attempts"] == attempts  # written: no more retries


async def test_a_close_that_timed_out_is_retried_too(connect, user, fast_retries, monkeypatch):
    real = registry.asessions_record_close
    writes: list[list] = []

    async def slow_once(closes):
        writes.append(list(closes))
        if len(writes) == 1:
            await asyncio.sleep(0.3)  # longer than the wait: the caller gives up
            raise OperationalError("database is locked")
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", slow_once)
    row = await sync_to_async(WebSocketSessionFactory)(user=user)

    failure = await session_record_close_retrying(
        session_id=str(row.pk), code=4501, user_id=user.pk, wait=0.05
    )

    assert type(failure) is TimeoutError
    row = await closed_row(str(row.pk))
    assert row.close_code == 4501
    assert writes[1] == [(str(row.pk), 4501)]


async def test_a_session_whose_close_is_not_written_yet_does_not_count_toward_the_limit(
    connect, user, settings, monkeypatch, database_down, worker_hub
):
    settings.WS_MAX_SESSIONS_PER_USER = 1
    monkeypatch.setattr(registry_closes, "RETRY_FIRST", 60.0)  # only the open can write it
    first, welcome = await session_open(connect, user)
    await first.disconnect(code=1000)
    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    assert row.closed_at is None

    _, second = await session_open(connect, user)  # the limit is 1: the first one is closed

    await row.arefresh_from_db()
    assert row.close_code == 1000 and row.closed_at is not None
    open_ids = [
        str(pk) async for pk in WebSocketSession.objects.open().values_list("pk", flat=True)
    ]
    assert open_ids == [second["session_id"]]
    assert worker_hub.registry_closes.pending == {}
    assert worker_hub.registry_closes.failed == set()
    assert sample("switchboard_registry_closes_pending") == 0


def test_an_open_records_the_closes_it_is_given_before_counting(user):
    stale = WebSocketSessionFactory(user=user)
    other = WebSocketSessionFactory(user=user)
    opening = SessionOpen(
        session_id=str(uuid.uuid4()),
        user_id=user.pk,
        username=user.username,
        channel_name="specific.inmemory!new",
        client_ip=None,
        user_agent="",
        worker=WORKER_ID,
        alive_workers=frozenset({WORKER_ID}),
        alive_at=timezone.now(),
    )

    recorded = sessions_record_open([opening], limit=2, closes=[(str(stale.pk), 1001)])

    assert recorded == {opening.session_id: True}
    stale.refresh_from_db()
    assert stale.close_code == 1001
    assert set(WebSocketSession.objects.open().values_list("pk", flat=True)) == {
        other.pk,
        uuid.UUID(opening.session_id),
    }


def test_many_closes_are_written_in_updates_of_at_most_the_chunk_size():
    rows = [str(WebSocketSessionFactory().pk) for _ in range(registry.CLOSE_CHUNK * 2 + 1)]

    with CaptureQueriesContext(connection) as queries:
        sessions_record_close([(pk, 1000) for pk in rows])

    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 3
    assert WebSocketSession.objects.filter(close_code=1000).count() == len(rows)


async def test_past_the_bound_a_close_is_not_kept_and_the_log_and_metric_say_so(
    user, monkeypatch, database_down, caplog, worker_hub
):
    monkeypatch.setattr(registry_closes, "PENDING_MAX", 2)
    monkeypatch.setattr(registry_closes, "RETRY_FIRST", 60.0)
    caplog.set_level(logging.ERROR, logger="switchboard.realtime")
    dropped_before = sample("switchboard_registry_closes_dropped_total")
    ids = [str(uuid.uuid4()) for _ in range(4)]

    for session_id in ids:
        failure = await session_record_close_retrying(
            session_id=session_id, code=1000, user_id=user.pk, wait=1
        )
        assert type(failure) is OperationalError

    owner = worker_hub.registry_closes
    assert list(owner.pending) == ids[:2]
    assert owner.failed == set(ids[:2])
    assert sample("switchboard_registry_closes_dropped_total") - dropped_before == 2
    assert [r.getMessage() for r in caplog.records if r.name == "switchboard.realtime"] == [
        "2 session closes wait for the database already: further ones are not kept for "
        "retries (their sessions stay open in the registry until this worker stops)"
    ]
    owner.retrier.cancel()
