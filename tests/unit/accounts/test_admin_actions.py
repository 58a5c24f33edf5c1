"""The user admin's actions need the change permission; the admin survives a Redis outage."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.conftest import UserFactory

USERS = "/admin/accounts/user/"
pytestmark = pytest.mark.usefixtures("plain_static_files")


def staff_with(*codenames: str) -> Client:
    staff = UserFactory(is_staff=True)
    for codename in codenames:
        staff.user_permissions.add(
            Permission.objects.get(content_type__app_label="accounts", codename=codename)
        )
    client = Client()
    client.force_login(staff)
    return client


@pytest.mark.django_db
def test_a_view_only_staff_user_is_offered_no_revoke_or_disconnect_action():
    page = staff_with("view_user").get(USERS)

    assert page.status_code == 200
    assert b"revoke_tokens" not in page.content
    assert b"disconnect_sessions" not in page.content


@pytest.mark.django_db
def test_a_view_only_staff_user_cannot_run_the_disconnect_action_by_posting_it(
    monkeypatch,
):
    victim = UserFactory()
    calls = []
    monkeypatch.setattr(
        "realtime.admin.user_sessions_disconnect", lambda **kwargs: calls.append(kwargs)
    )

    response = staff_with("view_user").post(
        USERS, {"action": "disconnect_sessions", "_selected_action": [victim.pk]}
    )

    assert calls == []
    assert response.status_code in (200, 302)


@pytest.mark.django_db
def test_staff_who_may_change_users_are_offered_both_actions():
    page = staff_with("view_user", "change_user").get(USERS)

    assert b"revoke_tokens" in page.content
    assert b"disconnect_sessions" in page.content


@pytest.mark.django_db
def test_a_users_admin_page_still_opens_while_redis_is_down(monkeypatch):
    def unreachable() -> set[str]:
        raise ConnectionError("redis down")

    monkeypatch.setattr("realtime.admin.alive_workers_sync", unreachable)
    superuser = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(superuser)

    page = client.get(f"{USERS}{superuser.pk}/change/")

    assert page.status_code == 200
    assert b"Redis is unreachable (ConnectionError)" in page.content
