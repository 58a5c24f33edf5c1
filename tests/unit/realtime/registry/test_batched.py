"""realtime.registry.batched: a close alone is written at once; closes that arrive while a
write runs share the next one; each caller returns once its own row is written."""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.utils import timezone

from realtime.cluster.workers import WORKER_ID
from realtime.models import WebSocketSession
from realtime.registry import services as registry
from realtime.registry.batched import session_record_close_batched, session_record_open_batched
from realtime.registry.services import SessionOpen
from tests.conftest import UserFactory, access_for
from tests.unit.realtime.sessions import WebSocketSessionFactory
from tests.unit.realtime.ws import receive_close

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def writes(monkeypatch) -> list[list[tuple[str, int | None]]]:
    """Every batch handed to the database, in order (the real write still runs)."""
    seen: list[list[tuple[str, int | None]]] = []
    real = registry.asessions_record_close

    async def spy(closes):
        seen.append(list(closes))
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", spy)
    return seen


async def rows(n: int) -> list[str]:
    """`n` open sessions; their ids."""
    return await sync_to_async(lambda: [str(WebSocketSessionFactory().id) for _ in range(n)])()


async def close_codes(ids: list[str]) -> dict[str, int | None]:
    found = WebSocketSession.objects.filter(pk__in=ids, closed_at__isnull=False)
    return {str(pk): code async for pk, code in found.values_list("pk", "close_code")}


async def test_a_close_alone_is_written_before_the_call_returns(writes):
    (session_id,) = await rows(1)

    await session_record_close_batched(session_id=session_id, code=4501)

    assert await close_codes([session_id]) == {session_id: 4501}
    assert writes == [[(session_id, 4501)]]


async def test_closes_issued_together_are_one_write(writes):
    ids = await rows(12)
    codes = [1000, 1001, 4501] * 4

    await asyncio.gather(
        *(
            session_record_close_batched(session_id=i, code=c)
            for i, c in zip(ids, codes, strict=True)
        )
    )

    assert await close_codes(ids) == dict(zip(ids, codes, strict=True))
    assert [len(batch) for batch in writes] == [12]


async def test_closes_arriving_during_a_write_share_the_next_one(monkeypatch):
    ids = await rows(6)
    real = registry.asessions_record_close
    batches: list[int] = []
    writing, release = asyncio.Event(), asyncio.Event()

    async def gated(closes):
        batches.append(len(closes))
        writing.set()
        await release.wait()
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", gated)

    first = asyncio.ensure_future(session_record_close_batched(session_id=ids[0], code=1000))
    await writing.wait()  # the first close's write is running
    later = [
        asyncio.ensure_future(session_record_close_batched(session_id=i, code=1006))
        for i in ids[1:]
    ]
    await asyncio.sleep(0)
    assert not first.done() and not any(task.done() for task in later)
    release.set()
    await asyncio.gather(first, *later)

    assert batches == [1, 5]
    assert await close_codes(ids) == {ids[0]: 1000} | {i: 1006 for i in ids[1:]}


async def test_a_failed_write_raises_to_its_callers_and_the_next_batch_is_written(monkeypatch):
    ids = await rows(2)
    real = registry.asessions_record_close
    calls = 0

    async def fail_once(closes):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("database is locked")
        await real(closes)

    monkeypatch.setattr(registry, "asessions_record_close", fail_once)

    with pytest.raises(OperationalError, match="database is locked"):
        await session_record_close_batched(session_id=ids[0], code=1000)
    await session_record_close_batched(session_id=ids[1], code=1006)

    assert await close_codes(ids) == {ids[1]: 1006}


def opening(user, **changes) -> SessionOpen:
    """An open of `user`'s on this worker, with a new session id."""
    session_id = str(uuid.uuid4())
    fields = {
        "session_id": session_id,
        "user_id": user.pk,
        "username": user.username,
        "channel_name": f"specific.inmemory!{session_id[:8]}",
        "client_ip": "198.51.100.7",
        "user_agent": "agent/1",
        "worker": WORKER_ID,
        "alive_workers": frozenset({WORKER_ID}),
        "alive_at": timezone.now(),
    }
    return SessionOpen(**{**fields, **changes})


async def test_opens_issued_together_are_one_transaction_and_the_later_ones_over_the_limit_fail(
    settings, monkeypatch
):
    settings.WS_MAX_SESSIONS_PER_USER = 2
    alice, bob = await sync_to_async(lambda: (UserFactory(), UserFactory()))()
    await sync_to_async(WebSocketSessionFactory)(user=bob, worker=WORKER_ID)  # bob: 1 online
    batches: list[int] = []
    real = registry.asessions_record_open

    async def spy(opens, **kwargs):
        batches.append(len(opens))
        return await real(opens, **kwargs)

    monkeypatch.setattr(registry, "asessions_record_open", spy)
    opens = [opening(alice), opening(bob), opening(alice), opening(bob), opening(alice)]

    outcomes = await asyncio.gather(
        *(session_record_open_batched(o) for o in opens), return_exceptions=True
    )

    assert [type(outcome).__name__ for outcome in outcomes] == [
        "NoneType",
        "NoneType",
        "NoneType",
        "TooManySessions",
        "TooManySessions",
    ]
    assert batches == [5]
    recorded = {o.session_id for o, outcome in zip(opens, outcomes, strict=True) if not outcome}
    stored = WebSocketSession.objects.filter(pk__in=[o.session_id for o in opens])
    assert {str(pk) async for pk in stored.values_list("pk", flat=True)} == recorded


async def test_a_timed_out_open_is_closed_with_1013_only_after_it_commits(
    connect, settings, monkeypatch
):
    """The handshake gives up (1013) while its open is still on its way: the close must not
    overtake it, or the row would stay open for good."""
    settings.AUTH_DB_TIMEOUT = 0.2
    alice = await sync_to_async(UserFactory)()
    release = asyncio.Event()
    real = registry.asessions_record_open

    async def slow(opens, **kwargs):
        await release.wait()
        return await real(opens, **kwargs)

    monkeypatch.setattr(registry, "asessions_record_open", slow)

    socket = await connect(f"/ws/session/?token={access_for(alice)}")
    assert (await socket.receive_json_from())["code"] == "unavailable"
    assert await receive_close(socket) == (1013, "try again later")
    await socket.disconnect(code=1013)
    assert await WebSocketSession.objects.acount() == 0  # the open has not run yet

    release.set()
    for _ in range(100):  # the open commits, then its close follows
        rows = [r async for r in WebSocketSession.objects.values_list("close_code", flat=True)]
        if rows == [1013]:
            break
        await asyncio.sleep(0.02)
    assert rows == [1013]


async def test_an_open_whose_user_was_deleted_fails_alone(monkeypatch):
    alice, doomed = await sync_to_async(lambda: (UserFactory(), UserFactory()))()
    kept, lost = opening(alice), opening(doomed)
    await sync_to_async(doomed.delete)()

    outcomes = await asyncio.gather(
        session_record_open_batched(kept),
        session_record_open_batched(lost),
        return_exceptions=True,
    )

    assert [type(o).__name__ for o in outcomes] == ["NoneType", "UserGone"]
    stored = WebSocketSession.objects.values_list("pk", flat=True)
    assert [str(pk) async for pk in stored] == [kept.session_id]
