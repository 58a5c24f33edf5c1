"""realtime.registry.services and the session consumer's use of it: one row per accepted session,
the per-user limit (4502), the close code recorded, disconnects, reaping and pruning."""

import asyncio
import logging
import time
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import OperationalError
from django.utils import timezone

from realtime.cluster.workers import WORKER_ID, LocalWorkers, alive_of
from realtime.models import WebSocketSession
from realtime.protocol.codes import CloseCode, ErrorCode
from realtime.registry import services as registry
from realtime.registry.services import (
    ABNORMAL_CLOSURE,
    SessionOpen,
    TooManySessions,
    UserGone,
    ip_or_none,
    sessions_disconnect,
    sessions_online,
    sessions_prune,
    sessions_reap,
    sessions_record_close,
    sessions_record_open,
    worker_sessions_close,
)
from tests.conftest import UserFactory, access_for
from tests.unit.realtime.sessions import (
    DEAD_WORKER,
    SESSION_REVOKED,
    WebSocketSessionFactory,
    from_ip,
    session_open,
)
from tests.unit.realtime.ws import assert_error_then_closed, receive_close


def disconnect_event(session_id: str) -> dict:
    """What an operator's disconnect sends to the worker channel recorded in a session's row."""
    return {"type": "session.disconnect", "session_id": session_id}


def record(user, *, limit: int = 5, alive: set[str] | None = None, **fields) -> str:
    """One session recorded open on this worker with plain values (as the batched open does,
    alone); the new session's id. TooManySessions over `limit`."""
    session_id = str(uuid.uuid4())
    values = {
        "session_id": session_id,
        "user_id": user.pk,
        "username": user.get_username(),
        "channel_name": f"specific.inmemory!{session_id[:8]}",
        "client_ip": "198.51.100.7",
        "user_agent": "agent/1",
        "worker": WORKER_ID,
        "alive_workers": frozenset({WORKER_ID} if alive is None else alive),
        "alive_at": timezone.now(),
    }
    recorded = sessions_record_open([SessionOpen(**{**values, **fields})], limit=limit)
    if recorded[session_id] is None:
        raise UserGone
    if not recorded[session_id]:
        raise TooManySessions
    return session_id


@pytest.fixture
def listen():
    """`listen(channel)` → a function draining the events that reached `channel`."""
    layer = get_channel_layer()

    def listener(channel: str):
        async def drain() -> list[dict]:
            events = []
            while True:
                try:
                    event = await asyncio.wait_for(layer.receive(channel), 0.1)
                except TimeoutError:
                    return events
                assert abs(event.pop("sent_at") - time.time()) < 5
                events.append(event)

        return async_to_sync(drain)

    return listener


# -- ip_or_none -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("::1", "::1"),
        ("2001:DB8:0:0::0001", "2001:db8::1"),
        ("unknown", None),
        ("203.0.113.9:443", None),
        ("", None),
        (None, None),
    ],
)
def test_ip_or_none_keeps_ip_addresses_normalized_and_drops_anything_else(value, stored):
    assert ip_or_none(value) == stored


# -- sessions_record_open ---------------------------------------------------------------


@pytest.mark.django_db
def test_recording_a_session_stores_who_from_where_and_on_which_worker(user):
    before = timezone.now()

    session_id = record(
        user, client_ip="2001:db8::0001", user_agent="Mozilla/5.0", channel_name="specific.x!y"
    )

    row = WebSocketSession.objects.get()
    assert str(row.id) == session_id
    assert (row.user, row.username, row.client_ip, row.user_agent) == (
        user,
        "alice",
        "2001:db8::1",
        "Mozilla/5.0",
    )
    assert (row.worker, row.channel_name) == (WORKER_ID, "specific.x!y")
    assert before <= row.connected_at <= timezone.now()
    assert (row.closed_at, row.close_code) == (None, None)


@pytest.mark.django_db
def test_a_client_address_that_is_not_an_ip_is_recorded_as_null(user):
    record(user, client_ip="unknown")

    assert WebSocketSession.objects.get().client_ip is None


@pytest.mark.django_db
def test_a_long_user_agent_is_cut_to_512_characters(user):
    record(user, user_agent="x" * 600)

    assert WebSocketSession.objects.get().user_agent == "x" * 512


@pytest.mark.django_db
def test_the_session_over_the_limit_raises_too_many_sessions_and_is_not_recorded(user):
    kept = {record(user, limit=2), record(user, limit=2)}

    with pytest.raises(TooManySessions):
        record(user, limit=2)

    assert {str(pk) for pk in WebSocketSession.objects.values_list("pk", flat=True)} == kept


@pytest.mark.django_db
def test_closed_sessions_and_dead_workers_sessions_do_not_count_toward_the_limit(user):
    WebSocketSessionFactory(user=user, closed_at=timezone.now(), close_code=1000)
    WebSocketSessionFactory(
        user=user, worker=DEAD_WORKER, connected_at=timezone.now() - timedelta(minutes=1)
    )

    record(user, limit=1)

    assert WebSocketSession.objects.filter(user=user).count() == 3
    with pytest.raises(TooManySessions):
        record(user, limit=1)


@pytest.mark.django_db
def test_a_session_of_a_worker_that_began_beating_after_the_alive_read_counts(user):
    # The alive workers were read before the other worker's first heartbeat; that worker's
    # session, opened since, still counts (it cannot be a dead worker's yet).
    alive_at = timezone.now()
    WebSocketSessionFactory(user=user, worker="new-host:1:0badcafe", connected_at=alive_at)

    with pytest.raises(TooManySessions):
        record(user, limit=1, alive_at=alive_at)
    assert WebSocketSession.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_another_users_sessions_do_not_count_toward_the_limit(user, other_user):
    record(other_user, limit=1)

    record(user, limit=1)

    assert WebSocketSession.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_sessions_on_another_alive_worker_count_toward_the_limit(user):
    WebSocketSessionFactory(user=user, worker="other-host:1:cafe")

    with pytest.raises(TooManySessions):
        record(user, limit=1, alive={WORKER_ID, "other-host:1:cafe"})


@pytest.mark.django_db
def test_the_recording_worker_counts_itself_alive_even_when_absent_from_the_alive_set(user):
    WebSocketSessionFactory(user=user, worker=WORKER_ID)

    with pytest.raises(TooManySessions):
        record(user, limit=1, alive=set())


@pytest.mark.django_db
def test_with_alive_workers_unknown_the_cap_counts_every_open_session(user):
    # Redis could not say which workers live: a session of a worker that may be dead still
    # counts (stricter), a closed one does not.
    WebSocketSessionFactory(user=user, worker=DEAD_WORKER)
    WebSocketSessionFactory(user=user, closed_at=timezone.now(), close_code=1000)
    opens = [
        SessionOpen(
            session_id=str(uuid.uuid4()),
            user_id=user.pk,
            username=user.username,
            channel_name=f"specific.inmemory!{n}",
            client_ip=None,
            user_agent="",
            worker=WORKER_ID,
            alive_workers=None,
            alive_at=timezone.now(),
        )
        for n in range(2)
    ]

    recorded = sessions_record_open(opens, limit=2)

    assert recorded == {opens[0].session_id: True, opens[1].session_id: False}
    assert WebSocketSession.objects.filter(user=user, closed_at__isnull=True).count() == 2


# -- closing ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_recording_a_close_sets_the_time_and_the_code_once():
    row = WebSocketSessionFactory()
    before = timezone.now()

    sessions_record_close([(str(row.id), 4501)])
    first = WebSocketSession.objects.get(pk=row.pk)
    sessions_record_close([(str(row.id), 1000)])

    again = WebSocketSession.objects.get(pk=row.pk)
    assert before <= first.closed_at <= timezone.now()
    assert (again.closed_at, again.close_code) == (first.closed_at, 4501)


@pytest.mark.django_db
def test_closing_a_worker_closes_only_its_open_sessions():
    earlier = timezone.now() - timedelta(hours=1)
    mine = WebSocketSessionFactory.create_batch(2)
    already = WebSocketSessionFactory(closed_at=earlier, close_code=1000)
    elsewhere = WebSocketSessionFactory(worker=DEAD_WORKER)

    assert worker_sessions_close(worker=WORKER_ID, code=1001) == 2

    rows = {row.pk: row for row in WebSocketSession.objects.all()}
    assert [rows[s.pk].close_code for s in mine] == [1001, 1001]
    assert all(rows[s.pk].closed_at is not None for s in mine)
    assert (rows[already.pk].closed_at, rows[already.pk].close_code) == (earlier, 1000)
    assert (rows[elsewhere.pk].closed_at, rows[elsewhere.pk].close_code) == (None, None)


# -- online -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_online_sessions_are_the_open_ones_on_alive_workers_newest_first():
    now = timezone.now()
    older = WebSocketSessionFactory(connected_at=now - timedelta(minutes=2))
    newer = WebSocketSessionFactory(connected_at=now - timedelta(minutes=1))
    WebSocketSessionFactory(closed_at=now, close_code=1000)
    WebSocketSessionFactory(worker=DEAD_WORKER)

    assert list(sessions_online({WORKER_ID})) == [newer, older]


@pytest.mark.django_db
def test_with_online_marks_each_session():
    online = WebSocketSessionFactory()
    closed = WebSocketSessionFactory(closed_at=timezone.now(), close_code=1000)
    dead = WebSocketSessionFactory(worker=DEAD_WORKER)

    marks = dict(WebSocketSession.objects.with_online({WORKER_ID}).values_list("pk", "is_online"))

    assert marks == {online.pk: True, closed.pk: False, dead.pk: False}


# -- disconnects ------------------------------------------------------------------------


@pytest.mark.django_db
def test_disconnecting_sessions_sends_one_event_to_each_after_commit_and_logs_once(
    listen, caplog, django_capture_on_commit_callbacks
):
    first, second = WebSocketSessionFactory.create_batch(2)
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        count = sessions_disconnect(sessions=[first, second], by="a test")
        assert listen(first.channel_name)() == []  # nothing before the commit

    assert (count, len(callbacks)) == (2, 2)
    for row in (first, second):
        assert listen(row.channel_name)() == [disconnect_event(str(row.pk))]
    assert [r.getMessage() for r in caplog.records if r.name == "switchboard.security"] == [
        "2 session(s) disconnected by a test"
    ]


@pytest.mark.django_db
def test_disconnecting_no_sessions_sends_nothing_and_logs_nothing(
    caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert sessions_disconnect(sessions=[], by="a test") == 0

    assert callbacks == []
    assert [r for r in caplog.records if r.name == "switchboard.security"] == []


# -- reap and prune ---------------------------------------------------------------------


@pytest.mark.django_db
def test_reaping_closes_the_open_sessions_of_dead_workers_with_1006():
    earlier = timezone.now() - timedelta(hours=1)
    alive = WebSocketSessionFactory()
    dead = WebSocketSessionFactory(worker=DEAD_WORKER)
    dead_closed = WebSocketSessionFactory(worker=DEAD_WORKER, closed_at=earlier, close_code=1000)

    assert sessions_reap(alive_workers={WORKER_ID}) == 1

    rows = {row.pk: row for row in WebSocketSession.objects.all()}
    assert (rows[alive.pk].closed_at, rows[alive.pk].close_code) == (None, None)
    assert rows[dead.pk].close_code == ABNORMAL_CLOSURE == 1006
    assert rows[dead.pk].closed_at is not None
    assert (rows[dead_closed.pk].closed_at, rows[dead_closed.pk].close_code) == (earlier, 1000)


@pytest.mark.django_db
def test_reaping_with_no_alive_worker_closes_every_open_session():
    WebSocketSessionFactory.create_batch(2)

    assert sessions_reap(alive_workers=set()) == 2
    assert WebSocketSession.objects.open().count() == 0


@pytest.mark.django_db
def test_pruning_deletes_only_sessions_closed_before_the_cutoff():
    cutoff = timezone.now() - timedelta(days=30)
    WebSocketSessionFactory(closed_at=cutoff - timedelta(seconds=1), close_code=1000)
    kept_closed = WebSocketSessionFactory(closed_at=cutoff + timedelta(seconds=1), close_code=1000)
    kept_open = WebSocketSessionFactory(connected_at=cutoff - timedelta(days=60))

    assert sessions_prune(closed_before=cutoff) == 1

    assert set(WebSocketSession.objects.values_list("pk", flat=True)) == {
        kept_closed.pk,
        kept_open.pk,
    }


@pytest.mark.django_db
def test_a_deleted_user_leaves_the_session_rows_with_their_username(user):
    row = WebSocketSessionFactory(user=user)

    user.delete()

    row.refresh_from_db()
    assert (row.user_id, row.username) == (None, "alice")


# -- workers ----------------------------------------------------------------------------


def test_alive_of_keeps_the_workers_whose_heartbeat_key_exists():
    assert alive_of(["a", "b", "c"], [b"1", None, b"1"]) == {"a", "c"}


async def test_without_redis_this_process_is_the_only_alive_worker():
    local = LocalWorkers()

    assert await local.alive_all() == {WORKER_ID}
    assert await local.alive([WORKER_ID, DEAD_WORKER]) == {WORKER_ID}


# -- the consumer: what it records ------------------------------------------------------


async def test_each_accepted_session_gets_one_row_with_the_welcome_session_id(
    connect, user, worker_hub
):
    before = timezone.now()
    first, first_welcome = await session_open(connect, user)
    second, second_welcome = await session_open(connect, user)

    rows = [row async for row in WebSocketSession.objects.order_by("connected_at")]

    assert [str(row.id) for row in rows] == [
        first_welcome["session_id"],
        second_welcome["session_id"],
    ]
    for row in rows:
        assert (row.user_id, row.username, row.worker) == (user.pk, "alice", WORKER_ID)
        assert before <= row.connected_at <= timezone.now()
        assert (row.closed_at, row.close_code) == (None, None)
    # Where an operator's disconnect goes: this worker's channel, which names the session.
    assert {row.channel_name for row in rows} == {worker_hub.user_sessions.channel_name}


async def test_the_client_ip_and_user_agent_are_recorded(connect, user):
    _, welcome = await session_open(
        connect, user, ip="203.0.113.7", headers=[(b"user-agent", b"Mozilla/5.0 (X11) Firefox")]
    )

    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    assert (row.client_ip, row.user_agent) == ("203.0.113.7", "Mozilla/5.0 (X11) Firefox")


async def test_a_connection_without_client_address_or_user_agent_records_null_and_empty(
    connect, user
):
    _, welcome = await session_open(connect, user)

    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    assert (row.client_ip, row.user_agent) == (None, "")


async def test_the_recorded_channel_name_reaches_the_session(connect, user):
    socket, welcome = await session_open(connect, user)
    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    await get_channel_layer().send(row.channel_name, disconnect_event(welcome["session_id"]))

    assert await socket.receive_json_from() == SESSION_REVOKED


async def test_a_client_close_is_recorded_with_the_clients_code(connect, user):
    socket, welcome = await session_open(connect, user)
    before = timezone.now()

    await socket.disconnect(code=1000)

    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    assert row.close_code == 1000
    assert before <= row.closed_at <= timezone.now()


async def test_a_dropped_connection_is_recorded_with_1006(connect, user):
    socket, welcome = await session_open(connect, user)

    await socket.disconnect(code=1006)

    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    assert row.close_code == 1006


async def test_a_disconnect_event_closes_4501_and_the_servers_code_is_recorded(connect, user):
    socket, welcome = await session_open(connect, user)
    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    await get_channel_layer().send(row.channel_name, disconnect_event(welcome["session_id"]))

    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await socket.disconnect(code=1000)  # the client answers the close with another code
    await row.arefresh_from_db()
    assert row.close_code == 4501
    assert row.closed_at is not None


async def test_a_disconnect_event_closes_only_the_session_it_was_sent_to(connect, user):
    target, welcome = await session_open(connect, user)
    bystander, _ = await session_open(connect, user)
    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    await get_channel_layer().send(row.channel_name, disconnect_event(welcome["session_id"]))

    await assert_error_then_closed(target, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await target.disconnect(code=4501)
    assert await bystander.receive_nothing(0.1)
    still_open = [str(row.pk) async for row in WebSocketSession.objects.open()]
    assert len(still_open) == 1 and still_open != [welcome["session_id"]]


async def test_a_server_close_for_a_binary_frame_is_recorded_as_1003(connect, user):
    socket, welcome = await session_open(connect, user)

    await socket.send_to(bytes_data=b"\x00")
    assert await receive_close(socket) == (1003, "binary frames are not supported")
    await socket.disconnect(code=1003)

    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    assert row.close_code == 1003


async def test_one_session_over_the_limit_gets_too_many_sessions_then_4502(connect, user, settings):
    settings.WS_MAX_SESSIONS_PER_USER = 2
    await session_open(connect, user)
    await session_open(connect, user)

    socket = await connect(f"/ws/session/?token={access_for(user)}")

    assert socket.accepted
    assert await socket.receive_json_from() == {
        "type": "error",
        "code": "too_many_sessions",
        "message": "Too many open sessions for this user; close one first",
    }
    assert await receive_close(socket) == (4502, "too many sessions")
    assert await socket.receive_nothing(0.05)
    await socket.disconnect(code=4502)
    assert await WebSocketSession.objects.acount() == 2


async def test_racing_connects_over_the_limit_open_exactly_the_limit(connect, user, settings):
    settings.WS_MAX_SESSIONS_PER_USER = 2
    raw = str(access_for(user))

    sockets = await asyncio.gather(*(connect(f"/ws/session/?token={raw}") for _ in range(5)))
    first_frames = await asyncio.gather(*(socket.receive_json_from() for socket in sockets))

    kinds = sorted(frame.get("code", frame["type"]) for frame in first_frames)
    assert kinds == ["too_many_sessions"] * 3 + ["welcome"] * 2
    assert await WebSocketSession.objects.acount() == 2


async def test_a_closed_session_frees_its_place_under_the_limit(connect, user, settings):
    settings.WS_MAX_SESSIONS_PER_USER = 1
    first, _ = await session_open(connect, user)
    await first.disconnect(code=1000)

    _, welcome = await session_open(connect, user)

    assert await WebSocketSession.objects.open().acount() == 1
    assert await WebSocketSession.objects.open().aget() == await WebSocketSession.objects.aget(
        pk=welcome["session_id"]
    )


async def test_the_limit_is_per_user(connect, user, settings):
    settings.WS_MAX_SESSIONS_PER_USER = 1
    other = await sync_to_async(UserFactory)()
    await session_open(connect, user)

    await session_open(connect, other)

    assert await WebSocketSession.objects.acount() == 2


async def test_the_refusal_over_the_limit_is_a_security_log_line(connect, user, settings, caplog):
    settings.WS_MAX_SESSIONS_PER_USER = 1
    caplog.set_level(logging.WARNING, logger="switchboard.security")
    await session_open(connect, user)

    socket = await connect(f"/ws/session/?token={access_for(user)}")
    await assert_error_then_closed(socket, ErrorCode.TOO_MANY_SESSIONS, CloseCode.TOO_MANY_SESSIONS)

    lines = [r.getMessage() for r in caplog.records if r.name == "switchboard.security"]
    assert len(lines) == 1
    assert lines[0].startswith("more than 1 sessions, closing 4502: session_id=")
    assert lines[0].endswith(f"user_id={user.pk} path=/ws/session/ client=unknown")


async def test_a_failing_registry_write_closes_with_unavailable_and_1013(
    connect, user, monkeypatch, caplog
):
    async def broken(opens, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(registry, "asessions_record_open", broken)
    caplog.set_level(logging.WARNING, logger="switchboard.realtime")

    socket = await connect(f"/ws/session/?token={access_for(user)}")

    assert await socket.receive_json_from() == {
        "type": "error",
        "code": "unavailable",
        "message": "Temporarily unavailable; try again later",
    }
    assert await receive_close(socket) == (1013, "try again later")
    await socket.disconnect(code=1013)
    assert await WebSocketSession.objects.acount() == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "switchboard.realtime"]
    assert any(
        line.startswith("session not recorded (OperationalError), closing 1013: session_id=")
        for line in lines
    ), lines


async def test_a_refused_token_records_nothing(connect, user):
    socket = await connect("/ws/session/?token=not-a-jwt")

    await assert_error_then_closed(socket, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
    await socket.disconnect(code=4500)

    assert await WebSocketSession.objects.acount() == 0


async def test_an_expired_token_records_nothing(connect, user):
    raw = access_for(user, lifetime=timedelta(seconds=-1))

    socket = await connect(f"/ws/session/?token={raw}")

    await assert_error_then_closed(socket, ErrorCode.TOKEN_EXPIRED, CloseCode.TOKEN_EXPIRED)
    assert await WebSocketSession.objects.acount() == 0


async def test_the_echo_endpoint_records_nothing(connect):
    socket = await connect("/ws/echo/", application=from_ip("203.0.113.7"))

    assert socket.accepted
    await socket.disconnect(code=1000)
    assert await WebSocketSession.objects.acount() == 0
