"""The session registry's operations: record, close, find online, disconnect, reap and prune.

A session is online when its row is open and its worker's heartbeat is alive
(`realtime.cluster.workers`): a SIGKILLed worker's sessions stop counting within WS_PRESENCE_TTL
seconds, with no request to that worker. Disconnects travel through `realtime.events`.
"""

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from realtime import events
from realtime.models import WebSocketSession, WebSocketSessionQuerySet

logger = logging.getLogger("switchboard.realtime")
security_log = logging.getLogger("switchboard.security")

USER_AGENT_MAX = 512
ABNORMAL_CLOSURE = 1006  # what a session of a dead worker is recorded with
CLOSE_CHUNK = 500  # session ids per UPDATE (SQLite caps the parameters of one statement)
Close = tuple[str, int | None]  # (session id, close code)
CLOCK_SKEW_MARGIN = 5  # seconds another worker's clock may run behind this one's


class TooManySessions(Exception):
    """The user already has WS_MAX_SESSIONS_PER_USER sessions online."""


class UserGone(Exception):
    """The session's user was deleted after its handshake looked it up."""


def ip_or_none(value: str | None) -> str | None:
    """`value` when it is an IP address (what the registry stores), else None."""
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def commit_without_flush() -> None:
    """Inside a transaction, on PostgreSQL: its commit returns before the WAL reaches disk.

    A handshake commits twice (open, then close), and the worker's queries run on one thread
    in turn, so each commit's flush (1.3-2.4 ms measured here) held every other handshake.
    Session rows are bookkeeping: a PostgreSQL crash can lose the last fraction of a second
    of them (never corrupt anything), and an open row whose worker is gone is reaped anyway.
    Accounts and tokens keep their durable commits.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


@dataclass(frozen=True)
class SessionOpen:
    """One accepted session to record, and the workers alive when it was accepted (None:
    unknown, Redis could not say), read at `alive_at`."""

    session_id: str
    user_id: int
    username: str
    channel_name: str
    client_ip: str | None
    user_agent: str
    worker: str
    alive_workers: frozenset[str] | None
    alive_at: datetime


def sessions_record_open(
    opens: list[SessionOpen], *, limit: int, closes: Iterable[Close] = ()
) -> dict[str, bool | None]:
    """Record accepted sessions in one transaction: {session id: recorded}. A session that
    would take its user past `limit` sessions online is not recorded (False); of one user's
    sessions here, the later ones are refused first. None: its user no longer exists.
    `closes` (closes this worker has not recorded yet) are recorded first, so that none of
    them counts."""
    user_ids = sorted({o.user_id for o in opens})
    # Redis could not say which workers live (None): count every open row, whichever worker.
    alive: set[str] | None = None
    if all(o.alive_workers is not None for o in opens):
        alive = set().union(*(o.alive_workers | {o.worker} for o in opens))  # type: ignore[operator]
    now = timezone.now()
    # A worker that began beating after the alive workers were read still counts: its rows
    # are younger than its first beat. The margin covers another host's clock running behind.
    since = min((o.alive_at for o in opens), default=now) - timedelta(seconds=CLOCK_SKEW_MARGIN)
    with transaction.atomic():
        commit_without_flush()
        closes_update(closes, now=now)
        # One user's connects take turns (PostgreSQL locks the rows, in one order so that two
        # workers' batches cannot deadlock; SQLite's transaction holds the write lock), so
        # two racing connects cannot both pass.
        users = get_user_model().objects.select_for_update().filter(pk__in=user_ids)
        existing = set(users.order_by("pk").values_list("pk", flat=True))
        gone = {o.session_id for o in opens if o.user_id not in existing}
        # A user deleted since the handshake looked it up: its open alone fails (the
        # foreign key would fail the whole transaction at commit).
        opens = [o for o in opens if o.session_id not in gone]
        user_ids = sorted(existing)
        WebSocketSession.objects.bulk_create(
            WebSocketSession(
                id=o.session_id,
                user_id=o.user_id,
                username=o.username,
                client_ip=ip_or_none(o.client_ip),
                user_agent=o.user_agent[:USER_AGENT_MAX],
                worker=o.worker,
                channel_name=o.channel_name,
                connected_at=now,
            )
            for o in opens
        )
        counted = WebSocketSession.objects.filter(user_id__in=user_ids)
        counted = counted.open() if alive is None else counted.counted_for_cap(alive, since=since)
        online = dict(
            counted.order_by().values("user_id").annotate(n=Count("pk")).values_list("user_id", "n")
        )
        refused: list[str] = []
        for user_id in user_ids:
            mine = [o.session_id for o in opens if o.user_id == user_id]
            excess = min(len(mine), online.get(user_id, 0) - limit)
            if excess > 0:
                refused += mine[-excess:]
        if refused:
            WebSocketSession.objects.filter(pk__in=refused).delete()
    outcome: dict[str, bool | None] = dict.fromkeys(gone)
    outcome.update({o.session_id: o.session_id not in refused for o in opens})
    return outcome


def sessions_record_close(closes: Iterable[Close]) -> None:
    """Record that sessions closed, each with its code, in one transaction."""
    with transaction.atomic():
        commit_without_flush()
        closes_update(closes, now=timezone.now())


def closes_update(closes: Iterable[Close], *, now: datetime) -> None:
    """Set `closed_at` and the code of each session not recorded closed yet: one UPDATE per
    distinct code and CLOSE_CHUNK ids (a retry can carry thousands)."""
    by_code: dict[int | None, list[str]] = {}
    for session_id, code in closes:
        by_code.setdefault(code, []).append(session_id)
    for code, session_ids in by_code.items():
        for start in range(0, len(session_ids), CLOSE_CHUNK):
            chunk = session_ids[start : start + CLOSE_CHUNK]
            WebSocketSession.objects.filter(pk__in=chunk, closed_at__isnull=True).update(
                closed_at=now, close_code=code
            )


@database_sync_to_async
def asessions_record_open(
    opens: list[SessionOpen], *, closes: Iterable[Close] = ()
) -> dict[str, bool | None]:
    """`sessions_record_open` from async code, with the configured limit."""
    return sessions_record_open(opens, limit=settings.WS_MAX_SESSIONS_PER_USER, closes=closes)


@database_sync_to_async
def asessions_record_close(closes: list[Close]) -> None:
    """`sessions_record_close` from async code."""
    sessions_record_close(closes)


def worker_sessions_close(*, worker: str, code: int) -> int:
    """Record every open session of `worker` as closed with `code` (its graceful shutdown)."""
    return (
        WebSocketSession.objects.open()
        .filter(worker=worker)
        .update(closed_at=timezone.now(), close_code=code)
    )


def sessions_online(alive_workers: set[str]) -> WebSocketSessionQuerySet:
    """Every online session, newest first."""
    return WebSocketSession.objects.online(alive_workers).select_related("user")


def sessions_disconnect(*, sessions: Iterable[WebSocketSession], by: str) -> int:
    """Close each session with 4501 on whatever worker holds it (after commit); the count."""
    count = 0
    for session in sessions:
        events.session_disconnect_on_commit(
            channel_name=session.channel_name, session_id=str(session.id)
        )
        count += 1
    if count:
        security_log.warning("%d session(s) disconnected by %s", count, by)
    return count


def user_sessions_disconnect(*, user_id: int, by: str) -> None:
    """Close every session of one user with 4501, on every worker (tokens stay valid)."""
    events.user_sessions_disconnect_on_commit(user_id=user_id)
    security_log.warning("all sessions of user %s disconnected by %s", user_id, by)


def sessions_reap(*, alive_workers: set[str]) -> int:
    """Record the open sessions of dead workers as closed (1006, at the time of the reap)."""
    return (
        WebSocketSession.objects.open()
        .exclude(worker__in=sorted(alive_workers))
        .update(closed_at=timezone.now(), close_code=ABNORMAL_CLOSURE)
    )


def sessions_prune(*, closed_before: datetime) -> int:
    """Delete the sessions closed before `closed_before`; the number deleted."""
    deleted, _ = WebSocketSession.objects.filter(closed_at__lt=closed_before).delete()
    return deleted
