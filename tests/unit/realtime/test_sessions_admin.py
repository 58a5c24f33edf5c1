"""The session registry in the Django admin: list, filters, search, disconnects, the user page."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from realtime.admin import WebSocketSessionAdmin
from realtime.models import WebSocketSession
from realtime.protocol.codes import CloseCode, ErrorCode
from tests.conftest import UserFactory
from tests.unit.realtime.sessions import DEAD_WORKER, WebSocketSessionFactory, session_open
from tests.unit.realtime.ws import assert_error_then_closed

CHANGELIST = "/admin/realtime/websocketsession/"
USERS = "/admin/accounts/user/"


pytestmark = pytest.mark.usefixtures("plain_static_files")


def permission(app_label: str, codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def superuser_client() -> Client:
    return logged_in(UserFactory(username="root", is_staff=True, is_superuser=True))


@pytest.fixture
def admin_client(db) -> Client:
    return superuser_client()


def listed_ids(response) -> set:
    assert response.status_code == 200
    return {session.pk for session in response.context["cl"].result_list}


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def disconnect_selected(client: Client, *sessions: WebSocketSession):
    return client.post(
        CHANGELIST,
        {"action": "disconnect_selected", "_selected_action": [str(s.pk) for s in sessions]},
    )


# -- the list ---------------------------------------------------------------------------


def test_the_changelist_lists_every_session_with_its_state(admin_client, user):
    online = WebSocketSessionFactory(user=user, client_ip="203.0.113.7")
    closed = WebSocketSessionFactory(user=user, closed_at=timezone.now(), close_code=4501)

    response = admin_client.get(CHANGELIST)

    assert listed_ids(response) == {online.pk, closed.pk}
    marks = {s.pk: s.is_online for s in response.context["cl"].result_list}
    assert marks == {online.pk: True, closed.pk: False}
    body = response.content.decode()
    assert "203.0.113.7" in body and str(online.pk) in body and "4501" in body


@pytest.mark.parametrize(("value", "expected"), [("yes", {"online"}), ("no", {"closed", "dead"})])
def test_the_online_filter_shows_online_or_offline_sessions(admin_client, value, expected):
    sessions = {
        "online": WebSocketSessionFactory(),
        "closed": WebSocketSessionFactory(closed_at=timezone.now(), close_code=1000),
        "dead": WebSocketSessionFactory(worker=DEAD_WORKER),
    }

    response = admin_client.get(CHANGELIST, {"online": value})

    assert listed_ids(response) == {sessions[name].pk for name in expected}


def test_the_user_filter_shows_one_users_sessions(admin_client, user, other_user):
    mine = WebSocketSessionFactory(user=user)
    WebSocketSessionFactory(user=other_user)

    response = admin_client.get(CHANGELIST, {"user__id__exact": user.pk})

    assert listed_ids(response) == {mine.pk}


def test_search_finds_sessions_by_client_ip(admin_client):
    match = WebSocketSessionFactory(client_ip="203.0.113.7")
    WebSocketSessionFactory(client_ip="198.51.100.9")

    response = admin_client.get(CHANGELIST, {"q": "203.0.113.7"})

    assert listed_ids(response) == {match.pk}


def test_search_finds_sessions_by_username(admin_client, user, other_user):
    match = WebSocketSessionFactory(user=user)
    WebSocketSessionFactory(user=other_user)

    response = admin_client.get(CHANGELIST, {"q": "alice"})

    assert listed_ids(response) == {match.pk}


def test_search_finds_a_deleted_users_sessions_by_the_username_recorded(admin_client):
    orphan = WebSocketSessionFactory(user=None, username="departed")
    WebSocketSessionFactory()

    response = admin_client.get(CHANGELIST, {"q": "departed"})

    assert listed_ids(response) == {orphan.pk}


def test_a_session_page_is_read_only(admin_client):
    session = WebSocketSessionFactory(user_agent="Firefox/140")

    response = admin_client.get(f"{CHANGELIST}{session.pk}/change/")

    assert response.status_code == 200
    assert "Firefox/140" in response.content.decode()
    assert response.context["has_change_permission"] is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "add/"),
        ("post", "add/"),
        ("post", "{pk}/change/"),
        ("get", "{pk}/delete/"),
        ("post", "{pk}/delete/"),
    ],
)
def test_nobody_adds_changes_or_deletes_a_session(admin_client, method, path):
    session = WebSocketSessionFactory(close_code=None)

    response = getattr(admin_client, method)(
        CHANGELIST + path.format(pk=session.pk), {"close_code": "1000"}
    )

    assert response.status_code == 403
    session.refresh_from_db()
    assert session.close_code is None


def test_the_delete_action_is_not_offered(admin_client):
    WebSocketSessionFactory()

    response = admin_client.get(CHANGELIST)

    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert actions == ["", "disconnect_selected"]


@pytest.mark.django_db
def test_the_model_admin_refuses_add_change_and_delete_even_to_a_superuser(rf):
    request = rf.get(CHANGELIST)
    request.user = UserFactory(is_staff=True, is_superuser=True)
    model_admin = WebSocketSessionAdmin(WebSocketSession, None)

    assert model_admin.has_add_permission(request) is False
    assert model_admin.has_change_permission(request) is False
    assert model_admin.has_delete_permission(request) is False


# -- the disconnect action --------------------------------------------------------------


async def test_the_disconnect_action_closes_a_live_session_with_4501(connect, user):
    client = await sync_to_async(superuser_client)()
    socket, welcome = await session_open(connect, user)
    session = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    response = await sync_to_async(disconnect_selected)(client, session)

    assert response.status_code == 302
    assert await sync_to_async(messages_of)(response) == [
        ("success", "Disconnected 1 session(s) (close 4501).")
    ]
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await socket.disconnect(code=4501)
    await session.arefresh_from_db()
    assert session.close_code == 4501


async def test_the_disconnect_action_sends_only_to_the_selected_online_sessions(connect, user):
    client = await sync_to_async(superuser_client)()
    target, welcome = await session_open(connect, user)
    bystander, _ = await session_open(connect, user)
    session = await WebSocketSession.objects.aget(pk=welcome["session_id"])
    closed = await sync_to_async(WebSocketSessionFactory)(
        user=user, closed_at=timezone.now(), close_code=1000
    )
    dead = await sync_to_async(WebSocketSessionFactory)(user=user, worker=DEAD_WORKER)

    response = await sync_to_async(disconnect_selected)(client, session, closed, dead)

    assert await sync_to_async(messages_of)(response) == [
        ("success", "Disconnected 1 session(s) (close 4501); 2 selected were not online.")
    ]
    await assert_error_then_closed(target, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    assert await bystander.receive_nothing(0.1)


def test_the_disconnect_action_on_offline_sessions_only_warns(
    admin_client, django_capture_on_commit_callbacks
):
    dead = WebSocketSessionFactory(worker=DEAD_WORKER)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = disconnect_selected(admin_client, dead)

    assert messages_of(response) == [
        ("warning", "Disconnected 0 session(s) (close 4501); 1 selected were not online.")
    ]
    assert callbacks == []


async def test_staff_who_may_not_change_users_cannot_disconnect(connect, user):
    def viewer_client() -> Client:
        viewer = UserFactory(is_staff=True)
        viewer.user_permissions.add(permission("realtime", "view_websocketsession"))
        return logged_in(viewer)

    client = await sync_to_async(viewer_client)()
    socket, welcome = await session_open(connect, user)
    session = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    listing = await sync_to_async(client.get)(CHANGELIST)
    response = await sync_to_async(disconnect_selected)(client, session)

    assert listing.status_code == 200
    assert listing.context["action_form"] is None
    assert response.status_code == 200  # the list again: no action ran
    assert await socket.receive_nothing(0.1)


async def test_staff_who_may_change_users_can_disconnect(connect, user):
    def operator_client() -> Client:
        operator = UserFactory(is_staff=True)
        operator.user_permissions.add(
            permission("realtime", "view_websocketsession"),
            permission("accounts", "change_user"),
        )
        return logged_in(operator)

    client = await sync_to_async(operator_client)()
    socket, welcome = await session_open(connect, user)
    session = await WebSocketSession.objects.aget(pk=welcome["session_id"])

    response = await sync_to_async(disconnect_selected)(client, session)

    assert response.status_code == 302
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)


# -- the user page ----------------------------------------------------------------------


def test_the_user_page_shows_the_users_20_most_recent_sessions(admin_client, user, other_user):
    now = timezone.now()
    sessions = [
        WebSocketSessionFactory(user=user, connected_at=now - timedelta(minutes=n))
        for n in range(21)
    ]
    WebSocketSessionFactory(user=other_user)

    response = admin_client.get(f"{USERS}{user.pk}/change/")

    assert response.status_code == 200
    (inline,) = response.context["inline_admin_formsets"]
    assert inline.opts.verbose_name_plural == "WebSocket sessions (the 20 most recent)"
    shown = [form.instance.pk for form in inline.formset.forms]
    assert shown == [s.pk for s in sessions[:20]]
    body = response.content.decode()
    assert "WebSocket sessions (the 20 most recent)" in body
    assert str(sessions[0].pk) in body and str(sessions[20].pk) not in body


def test_the_inline_marks_online_and_offline_sessions(admin_client, user):
    online = WebSocketSessionFactory(user=user)
    dead = WebSocketSessionFactory(user=user, worker=DEAD_WORKER)

    response = admin_client.get(f"{USERS}{user.pk}/change/")

    (inline,) = response.context["inline_admin_formsets"]
    marks = {form.instance.pk: form.instance.is_online for form in inline.formset.forms}
    assert marks == {online.pk: True, dead.pk: False}


def test_the_add_user_page_has_no_sessions_inline(admin_client):
    response = admin_client.get(f"{USERS}add/")

    assert response.status_code == 200
    assert response.context["inline_admin_formsets"] == []


async def test_the_user_action_disconnects_every_session_of_the_selected_users(
    connect, user, other_user
):
    client = await sync_to_async(superuser_client)()
    first, _ = await session_open(connect, user)
    second, _ = await session_open(connect, user)
    bystander, _ = await session_open(connect, other_user)

    response = await sync_to_async(client.post)(
        USERS, {"action": "disconnect_sessions", "_selected_action": [user.pk]}
    )

    assert response.status_code == 302
    assert await sync_to_async(messages_of)(response) == [
        ("success", "Disconnected every session of 1 user(s) (close 4501).")
    ]
    await assert_error_then_closed(first, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    await assert_error_then_closed(second, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)
    assert await bystander.receive_nothing(0.1)


async def test_after_the_user_action_the_users_tokens_still_open_sessions(connect, user):
    client = await sync_to_async(superuser_client)()
    socket, _ = await session_open(connect, user)

    await sync_to_async(client.post)(
        USERS, {"action": "disconnect_sessions", "_selected_action": [user.pk]}
    )
    await assert_error_then_closed(socket, ErrorCode.SESSION_REVOKED, CloseCode.SESSION_REVOKED)

    _, welcome = await session_open(connect, user)
    assert welcome["user"] == {"id": user.pk, "username": "alice"}
