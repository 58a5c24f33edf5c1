"""`manage.py prune_sessions`: reap dead workers' sessions (only when Redis can tell), then
delete the sessions closed before the retention."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from realtime.management.commands import prune_sessions
from realtime.models import WebSocketSession
from tests.unit.realtime.sessions import DEAD_WORKER, WebSocketSessionFactory

pytestmark = pytest.mark.django_db

ALIVE_WORKER = "web-1:100:aaaaaaaa"
NOT_REAPED = "dead workers not reaped: no REDIS_URL, or Redis restarted less than 60 s ago"
NO_TOKENS = "0 expired refresh token(s) deleted"  # the last line (refresh tokens: accounts)


def prune(*args: str) -> tuple[list[str], list[str]]:
    """Run the command; its standard output and standard error, line by line."""
    out, err = StringIO(), StringIO()
    call_command("prune_sessions", *args, stdout=out, stderr=err)
    return out.getvalue().splitlines(), err.getvalue().splitlines()


def closed_days_ago(days: float, **fields) -> WebSocketSession:
    return WebSocketSessionFactory(
        closed_at=timezone.now() - timedelta(days=days), close_code=1000, **fields
    )


def remaining() -> set:
    return set(WebSocketSession.objects.values_list("pk", flat=True))


@pytest.fixture
def redis_knows(monkeypatch):
    """Redis is up long enough to tell dead workers; `ALIVE_WORKER` is the only one alive."""
    monkeypatch.setattr(prune_sessions, "dead_workers_knowable_sync", lambda: True)
    monkeypatch.setattr(prune_sessions, "alive_workers_sync", lambda: {ALIVE_WORKER})


# -- retention --------------------------------------------------------------------------


def test_sessions_closed_before_the_default_retention_are_deleted():
    old = closed_days_ago(31)
    recent = closed_days_ago(29)
    open_for_long = WebSocketSessionFactory(connected_at=timezone.now() - timedelta(days=90))

    out, err = prune()

    assert out == [NOT_REAPED, "1 session(s) closed more than 30 day(s) ago deleted", NO_TOKENS]
    assert err == []
    assert remaining() == {recent.pk, open_for_long.pk}
    assert not WebSocketSession.objects.filter(pk=old.pk).exists()


def test_the_retention_setting_is_the_default(settings):
    settings.WS_SESSION_RETENTION_DAYS = 7
    closed_days_ago(8)
    kept = closed_days_ago(6)

    out, _ = prune()

    assert out[-2:] == ["1 session(s) closed more than 7 day(s) ago deleted", NO_TOKENS]
    assert remaining() == {kept.pk}


def test_days_overrides_the_retention():
    closed_days_ago(3)
    closed_days_ago(2.5)
    kept = closed_days_ago(1)

    out, _ = prune("--days", "2")

    assert out[-2:] == ["2 session(s) closed more than 2 day(s) ago deleted", NO_TOKENS]
    assert remaining() == {kept.pk}


def test_zero_days_deletes_every_closed_session_and_keeps_the_open_ones():
    closed_days_ago(0.001)
    still_open = WebSocketSessionFactory()

    out, _ = prune("--days", "0")

    assert out[-2:] == ["1 session(s) closed more than 0 day(s) ago deleted", NO_TOKENS]
    assert remaining() == {still_open.pk}


def test_negative_days_are_refused_and_nothing_is_deleted():
    old = closed_days_ago(100)

    with pytest.raises(CommandError, match=r"^--days must be 0 or more$"):
        prune("--days", "-1")

    assert remaining() == {old.pk}


def test_nothing_to_delete_says_zero():
    out, _ = prune()

    assert out == [NOT_REAPED, "0 session(s) closed more than 30 day(s) ago deleted", NO_TOKENS]


# -- reaping ----------------------------------------------------------------------------


def test_without_redis_the_open_sessions_are_never_reaped(settings):
    settings.WS_PRESENCE_TTL = 45
    dead = WebSocketSessionFactory(worker=DEAD_WORKER)

    out, err = prune()

    assert out[0] == (
        "dead workers not reaped: no REDIS_URL, or Redis restarted less than 90 s ago"
    )
    assert err == []
    dead.refresh_from_db()
    assert (dead.closed_at, dead.close_code) == (None, None)


def test_redis_restarted_lately_skips_the_reap_with_the_same_message(monkeypatch):
    monkeypatch.setattr(prune_sessions, "dead_workers_knowable_sync", lambda: False)
    monkeypatch.setattr(
        prune_sessions, "alive_workers_sync", lambda: pytest.fail("alive workers asked")
    )
    dead = WebSocketSessionFactory(worker=DEAD_WORKER)

    out, _ = prune()

    assert out[0] == NOT_REAPED
    dead.refresh_from_db()
    assert dead.closed_at is None


def test_an_unreachable_redis_skips_the_reap_on_stderr_but_still_prunes(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    dead = WebSocketSessionFactory(worker=DEAD_WORKER)
    closed_days_ago(31)

    out, err = prune()

    assert err == ["dead workers not reaped: Redis unreachable (ConnectionError)"]
    assert out == ["1 session(s) closed more than 30 day(s) ago deleted", NO_TOKENS]
    assert remaining() == {dead.pk}
    dead.refresh_from_db()
    assert dead.closed_at is None


def test_the_open_sessions_of_dead_workers_are_recorded_closed_with_1006(redis_knows):
    alive = WebSocketSessionFactory(worker=ALIVE_WORKER)
    dead = WebSocketSessionFactory.create_batch(2, worker=DEAD_WORKER)
    earlier = timezone.now() - timedelta(hours=1)
    dead_closed = WebSocketSessionFactory(worker=DEAD_WORKER, closed_at=earlier, close_code=1000)
    before = timezone.now()

    out, err = prune()

    assert out == [
        "2 session(s) of dead workers recorded closed (1006)",
        "0 session(s) closed more than 30 day(s) ago deleted",
        NO_TOKENS,
    ]
    assert err == []
    rows = {row.pk: row for row in WebSocketSession.objects.all()}
    assert (rows[alive.pk].closed_at, rows[alive.pk].close_code) == (None, None)
    for session in dead:
        assert rows[session.pk].close_code == 1006
        assert before <= rows[session.pk].closed_at <= timezone.now()
    assert (rows[dead_closed.pk].closed_at, rows[dead_closed.pk].close_code) == (earlier, 1000)


def test_sessions_reaped_now_are_kept_by_the_same_run(redis_knows):
    dead = WebSocketSessionFactory(worker=DEAD_WORKER)

    out, _ = prune("--days", "1")

    assert out[-2:] == ["0 session(s) closed more than 1 day(s) ago deleted", NO_TOKENS]
    assert remaining() == {dead.pk}
    assert WebSocketSession.objects.get().close_code == 1006


def test_with_no_alive_worker_every_open_session_is_reaped(monkeypatch):
    monkeypatch.setattr(prune_sessions, "dead_workers_knowable_sync", lambda: True)
    monkeypatch.setattr(prune_sessions, "alive_workers_sync", lambda: set())
    WebSocketSessionFactory.create_batch(3, worker=ALIVE_WORKER)

    out, _ = prune()

    assert out[0] == "3 session(s) of dead workers recorded closed (1006)"
    assert WebSocketSession.objects.open().count() == 0
