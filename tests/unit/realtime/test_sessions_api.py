"""The sessions REST API: GET /api/realtime/sessions/ and DELETE /api/realtime/sessions/<id>/."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from realtime import views
from realtime.cluster.workers import WORKER_ID
from realtime.models import WebSocketSession
from realtime.protocol.codes import CloseCode, ErrorCode
from tests.conftest import UserFactory, access_for
from tests.unit.realtime.sessions import DEAD_WORKER, WebSocketSessionFactory, session_open
from tests.unit.realtime.ws import assert_error_then_closed

SESSIONS = "/api/realtime/sessions/"
NOT_AUTHENTICATED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
NOT_ONLINE = {"detail": "No such online session.", "code": "not_found"}
UNAVAILABLE = {"detail": "Temporarily unavailable; try again later.", "code": "unavailable"}
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_for(user)}")
    return client


def listed(session: WebSocketSession) -> dict:
    """A session as the API lists it (its fields spelled out, not re-serialized); its
    `connected_at` must be a whole second."""
    assert session.connected_at.microsecond == 0
    return {
        "id": str(session.id),
        "user": None
        if session.user is None
        else {"id": session.user.pk, "username": session.username},
        "client_ip": session.client_ip,
        "user_agent": session.user_agent,
        "worker": session.worker,
        "connected_at": session.connected_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def operator_create(*permissions: str) -> object:
    """A staff user with the permissions the sessions API asks of operators (or `permissions`)."""
    from django.contrib.auth.models import Permission

    staff = UserFactory(is_staff=True)
    wanted = permissions or ("realtime.view_websocketsession", "accounts.change_user")
    for name in wanted:
        app_label, codename = name.split(".")
        staff.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(staff).objects.get(pk=staff.pk)  # a fresh object: permissions are cached


def delete(user, session_id) -> object:
    return api(user).delete(f"{SESSIONS}{session_id}/")


@pytest.fixture
def redis_down(monkeypatch):
    """The alive workers cannot be known (Redis unreachable)."""

    def unreachable() -> set[str]:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(views, "alive_workers_sync", unreachable)


# -- GET --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_lists_the_callers_online_sessions_oldest_first(user, other_user):
    later = WebSocketSessionFactory(
        user=user, connected_at=T0 + timedelta(minutes=5), client_ip="2001:db8::5"
    )
    earlier = WebSocketSessionFactory(user=user, connected_at=T0, user_agent="Firefox/140")
    WebSocketSessionFactory(user=other_user, connected_at=T0)

    response = api(user).get(SESSIONS)

    assert response.status_code == 200
    assert response.json() == [listed(earlier), listed(later)]
    assert response.json()[0] == {
        "id": str(earlier.id),
        "user": {"id": user.pk, "username": "alice"},
        "client_ip": "198.51.100.1",
        "user_agent": "Firefox/140",
        "worker": WORKER_ID,
        "connected_at": "2026-03-01T12:00:00Z",
    }


@pytest.mark.django_db
def test_get_leaves_out_closed_sessions_and_those_of_dead_workers(user):
    WebSocketSessionFactory(user=user, closed_at=T0, close_code=1000)
    WebSocketSessionFactory(user=user, worker=DEAD_WORKER)

    response = api(user).get(SESSIONS)

    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.django_db
@pytest.mark.parametrize("flag", ["1", "true"])
def test_staff_with_all_get_every_users_online_sessions(user, other_user, flag):
    staff = operator_create()
    mine = WebSocketSessionFactory(user=user, connected_at=T0)
    theirs = WebSocketSessionFactory(user=other_user, connected_at=T0 + timedelta(seconds=1))
    orphan = WebSocketSessionFactory(
        user=None, username="gone", connected_at=T0 + timedelta(seconds=2)
    )
    WebSocketSessionFactory(user=other_user, worker=DEAD_WORKER)

    response = api(staff).get(SESSIONS, {"all": flag})

    assert response.status_code == 200
    assert response.json() == [listed(mine), listed(theirs), listed(orphan)]
    assert response.json()[2]["user"] is None


@pytest.mark.django_db
def test_staff_without_all_get_only_their_own_sessions(user):
    staff = operator_create()
    own = WebSocketSessionFactory(user=staff, connected_at=T0)
    WebSocketSessionFactory(user=user, connected_at=T0)

    response = api(staff).get(SESSIONS)

    assert response.json() == [listed(own)]


@pytest.mark.django_db
@pytest.mark.parametrize("flag", ["1", "true"])
def test_all_from_a_user_who_is_not_staff_is_403(user, other_user, flag):
    WebSocketSessionFactory(user=other_user)

    response = api(user).get(SESSIONS, {"all": flag})

    assert (response.status_code, response.json()) == (
        403,
        {
            "detail": "Only staff with the permission to view sessions may list every user's "
            "sessions.",
            "code": "permission_denied",
        },
    )


@pytest.mark.django_db
def test_get_without_a_token_is_401(user):
    response = api().get(SESSIONS)

    assert (response.status_code, response.json()) == (401, NOT_AUTHENTICATED)


@pytest.mark.django_db
def test_get_answers_503_unavailable_when_the_alive_workers_cannot_be_known(user, redis_down):
    WebSocketSessionFactory(user=user)

    response = api(user).get(SESSIONS)

    assert (response.status_code, response.json()) == (503, UNAVAILABLE)
    assert response["Retry-After"] == "5"


# -- DELETE -----------------------------------------------------------------------------


async def test_delete_answers_204_and_the_session_closes_4501(connect, user):
    socket, welcome = await session_open(connect, user)

    response = await sync_to_async(delete)(user, welcome["session_id"])

    assert (response.status_code, response.content) == (204, b"")
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await socket.disconnect(code=4501)
    row = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    assert row.close_code == 4501


async def test_delete_closes_only_the_named_session(connect, user):
    target, welcome = await session_open(connect, user)
    bystander, _ = await session_open(connect, user)

    response = await sync_to_async(delete)(user, welcome["session_id"])

    assert response.status_code == 204
    await assert_error_then_closed(target, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    assert await bystander.receive_nothing(0.1)


async def test_staff_may_delete_another_users_session(connect, user):
    staff = await sync_to_async(operator_create)()
    socket, welcome = await session_open(connect, user)

    response = await sync_to_async(delete)(staff, welcome["session_id"])

    assert response.status_code == 204
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


async def test_deleting_another_users_session_is_404_and_closes_nothing(connect, user, other_user):
    socket, welcome = await session_open(connect, other_user)

    response = await sync_to_async(delete)(user, welcome["session_id"])

    assert (response.status_code, response.json()) == (404, NOT_ONLINE)
    assert await socket.receive_nothing(0.1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state",
    [{"closed_at": T0, "close_code": 1000}, {"worker": DEAD_WORKER}],
    ids=["closed", "dead-worker"],
)
def test_deleting_a_session_that_is_not_online_is_404(
    user, state, django_capture_on_commit_callbacks
):
    session = WebSocketSessionFactory(user=user, **state)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = delete(user, session.id)

    assert (response.status_code, response.json()) == (404, NOT_ONLINE)
    assert callbacks == []


@pytest.mark.django_db
def test_staff_deleting_a_session_that_is_not_online_is_404(user):
    session = WebSocketSessionFactory(user=user, worker=DEAD_WORKER)

    response = delete(operator_create(), session.id)

    assert (response.status_code, response.json()) == (404, NOT_ONLINE)


@pytest.mark.django_db
def test_deleting_an_unknown_session_is_404(user):
    response = delete(user, uuid.uuid4())

    assert (response.status_code, response.json()) == (404, NOT_ONLINE)


@pytest.mark.django_db
@pytest.mark.parametrize("session_id", ["not-a-uuid", "123", "%00"])
def test_a_session_id_that_is_not_a_uuid_is_a_json_404(user, session_id):
    response = delete(user, session_id)

    assert (response.status_code, response.json()) == (
        404,
        {"detail": "Not found.", "code": "not_found"},
    )


@pytest.mark.django_db
def test_delete_without_a_token_is_401_and_closes_nothing(user, django_capture_on_commit_callbacks):
    session = WebSocketSessionFactory(user=user)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api().delete(f"{SESSIONS}{session.id}/")

    assert (response.status_code, response.json()) == (401, NOT_AUTHENTICATED)
    assert callbacks == []


@pytest.mark.django_db
def test_delete_answers_503_unavailable_when_the_alive_workers_cannot_be_known(
    user, redis_down, django_capture_on_commit_callbacks
):
    session = WebSocketSessionFactory(user=user)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = delete(user, session.id)

    assert (response.status_code, response.json()) == (503, UNAVAILABLE)
    assert callbacks == []


@pytest.mark.django_db
def test_staff_without_the_view_permission_may_not_list_everyone(user):
    staff = UserFactory(is_staff=True)

    assert api(staff).get(SESSIONS, {"all": "1"}).status_code == 403


@pytest.mark.django_db
def test_staff_who_may_not_change_users_cannot_disconnect_another_users_session(user):
    session = WebSocketSessionFactory(user=user)
    viewer = operator_create("realtime.view_websocketsession")

    response = delete(viewer, session.id)

    assert (response.status_code, response.json()) == (404, NOT_ONLINE)
