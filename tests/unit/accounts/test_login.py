"""One login door for REST and the admin (accounts/login.py, accounts/admin_site.py): the
same per-username and per-IP allowances, the same security log lines, usernames of no
account written as a keyed hash; the throttle takes each attempt before the password check
and a good password gives it back (accounts/login_throttle.py)."""

import logging
import re

import pytest
from django.contrib import admin
from django.test import Client
from django.utils.crypto import salted_hmac
from rest_framework.test import APIClient

from accounts.admin_site import SwitchboardAdminSite
from accounts.login import login_log_name
from accounts.login_throttle import login_throttle
from accounts.models import User
from tests.conftest import PASSWORD, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_files")]

WRONG = "wrong password"


@pytest.fixture
def staff(db):
    return UserFactory(username="root", email="root@example.com", is_staff=True)


def rest_login(username: str, password: str, client: APIClient | None = None):
    client = client or APIClient()
    body = {"username": username, "password": password}
    return client.post("/api/auth/token/", body, format="json")


def admin_login(username: str, password: str, client: Client | None = None):
    """Post the admin's login form as a browser does (Django's test client skips CSRF)."""
    client = client or Client()
    form = {"username": username, "password": password, "next": "/admin/"}
    return client.post("/admin/login/?next=/admin/", form)


def admin_errors(response) -> list[str]:
    return re.findall(r'<p class="errornote">\s*([^<]+?)\s*</p>', response.content.decode())


def security_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "switchboard.security"]


def username_hash(key: str) -> str:
    digest = salted_hmac("switchboard.accounts.login.username", key, algorithm="sha256")
    return digest.hexdigest()[:16]


# -- the admin site is installed the Django way -------------------------------------------


def test_admin_site_is_switchboards_site():
    assert isinstance(admin.site, SwitchboardAdminSite)
    assert admin.site._registry  # every ModelAdmin registered on it


def test_the_right_admin_password_logs_a_staff_user_in(staff):
    response = admin_login("root", PASSWORD)

    assert (response.status_code, response["Location"]) == (302, "/admin/")


# -- one throttle for both doors ----------------------------------------------------------


def test_eight_wrong_admin_passwords_then_the_right_one_answers_429_and_does_not_log_in(staff):
    client = Client()
    statuses = [admin_login("root", WRONG, client).status_code for _ in range(8)]

    response = admin_login("root", PASSWORD, client)

    assert statuses == [200] * 5 + [429] * 3
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 15 * 60
    assert admin_errors(response) == [f"Too many failed logins; try again in {wait} seconds."]
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_a_username_locked_by_admin_failures_is_locked_for_the_rest_login(staff):
    for _ in range(5):
        assert admin_login("root", WRONG).status_code == 200

    response = rest_login("root", PASSWORD)

    assert response.status_code == 429
    assert response.json()["code"] == "login_throttled"


def test_a_username_locked_by_rest_failures_is_locked_for_the_admin_login(staff):
    for _ in range(5):
        assert rest_login("root", WRONG).status_code == 401

    response = admin_login("root", PASSWORD)

    assert response.status_code == 429
    assert "_auth_user_id" not in response.client.session


def test_admin_and_rest_failures_count_against_one_per_ip_allowance(staff, settings):
    settings.LOGIN_FAILURES_PER_IP = "4/hour"
    assert [admin_login(f"a{i}", WRONG).status_code for i in range(2)] == [200, 200]
    assert [rest_login(f"r{i}", WRONG).status_code for i in range(2)] == [401, 401]

    assert admin_login("root", PASSWORD).status_code == 429
    assert rest_login("root", PASSWORD).status_code == 429


def test_a_good_admin_login_forgets_the_usernames_failures_like_the_rest_login(staff):
    for _ in range(4):
        rest_login("root", WRONG)
    assert admin_login("root", PASSWORD).status_code == 302
    for _ in range(4):
        admin_login("root", WRONG)

    assert rest_login("root", PASSWORD).status_code == 200


def test_an_admin_login_of_a_non_staff_user_is_refused_and_logged(user, caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    response = admin_login("alice", PASSWORD)

    assert response.status_code == 200
    assert admin_errors(response) == [
        "Please enter the correct username and password for a staff account. Note that both "
        "fields may be case-sensitive."
    ]
    assert security_lines(caplog) == [
        "admin login refused, not staff: username='alice' client=127.0.0.1"
    ]


# -- the throttle takes before it checks; a success gives back ----------------------------


def test_good_logins_take_nothing_from_the_ip_allowance(user, settings):
    settings.LOGIN_FAILURES_PER_IP = "3/hour"
    for _ in range(10):
        assert rest_login("alice", PASSWORD).status_code == 200
    assert [rest_login(f"x{i}", WRONG).status_code for i in range(4)] == [401] * 3 + [429]


def test_an_attempt_refused_for_its_username_takes_nothing_from_the_ip(user, settings):
    settings.LOGIN_FAILURES_PER_IP = "7/hour"
    for _ in range(5):
        rest_login("alice", WRONG)
    for _ in range(10):
        assert rest_login("alice", PASSWORD).status_code == 429

    assert [rest_login("bob", WRONG).status_code for _ in range(3)] == [401, 401, 429]


def test_an_attempt_refused_for_its_ip_takes_nothing_from_the_username(user, settings):
    settings.LOGIN_FAILURES_PER_IP = "6/hour"
    for i in range(6):
        rest_login(f"x{i}", WRONG)
    for _ in range(10):
        assert rest_login("alice", WRONG).status_code == 429

    elsewhere = APIClient(REMOTE_ADDR="10.0.0.2")
    statuses = [rest_login("alice", WRONG, elsewhere).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_the_attempt_is_taken_before_the_password_is_checked(user, settings, monkeypatch):
    settings.LOGIN_FAILURES_PER_IP = "5/hour"
    seen = []

    def authenticate(request, username, password):
        throttle = login_throttle()
        stats = throttle.limiter.window_stats(throttle.per_ip, "login-failures", "ip", "127.0.0.1")
        seen.append(stats.remaining)

    monkeypatch.setattr("accounts.login.authenticate", authenticate)
    rest_login("alice", WRONG)
    rest_login("alice", WRONG)

    assert seen == [4, 3]


# -- the log ------------------------------------------------------------------------------


@pytest.mark.parametrize("door", [rest_login, admin_login], ids=["rest", "admin"])
def test_a_password_typed_as_the_username_of_no_account_is_logged_as_a_keyed_hash(door, db, caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.security")
    typed = "Tr0ub4dor&3-my-real-password"

    door(typed, WRONG)

    assert security_lines(caplog) == [
        f"login failed: username_hash={username_hash(typed.casefold())} client=127.0.0.1"
    ]
    assert all(typed not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("door", [rest_login, admin_login], ids=["rest", "admin"])
def test_a_failed_login_of_an_existing_account_is_logged_with_its_username(door, user, caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    door("ALICE", WRONG)

    assert security_lines(caplog) == ["login failed: username='alice' client=127.0.0.1"]


@pytest.mark.parametrize("door", [rest_login, admin_login], ids=["rest", "admin"])
def test_a_throttled_login_of_no_account_is_logged_as_a_keyed_hash(door, db, settings, caplog):
    settings.LOGIN_FAILURES_PER_IP = "1/hour"
    rest_login("someone", WRONG)
    caplog.clear()
    typed = "hunter2-secret"

    response = door(typed, WRONG)

    assert response.status_code == 429
    assert security_lines(caplog) == [
        f"login throttled: username_hash={username_hash(typed)} client=127.0.0.1"
    ]


def test_the_keyed_hash_is_the_same_for_every_spelling_and_depends_on_the_secret_key(db, settings):
    spellings = {login_log_name(name) for name in ["Ｎobody", "nobody", "NOBODY"]}
    assert spellings == {f"username_hash={username_hash('nobody')}"}

    settings.SECRET_KEY = "another-secret-key-that-is-long-enough-0123456789"
    assert login_log_name("nobody") not in spellings


@pytest.mark.parametrize(
    ("door", "logged_in"), [(rest_login, 200), (admin_login, 302)], ids=["rest", "admin"]
)
def test_both_doors_match_the_username_nfkc_normalised_and_otherwise_exactly(door, logged_in):
    User.objects.create_user(  # stored as "Rtcase": Django NFKC-normalises usernames
        username="Ｒtcase", email="r@example.com", password=PASSWORD, is_staff=True
    )

    statuses = [door(name, PASSWORD).status_code for name in ["Ｒtcase", "Rtcase", "rtcase"]]

    assert statuses == [logged_in, logged_in, 401 if door is rest_login else 200]
