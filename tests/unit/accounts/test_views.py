"""The JSON auth API (accounts/views.py, accounts/errors.py, config/urls.py)."""

import logging
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tokens import RefreshToken
from tests.conftest import PASSWORD, UserFactory, access_for, refresh_for

pytestmark = pytest.mark.django_db

INVALID_TOKEN = {"detail": "Token is invalid", "code": "unauthorized"}
EXPIRED_TOKEN = {"detail": "Token expired", "code": "token_expired"}
BAD_CREDENTIALS = {
    "detail": "No active account found with the given credentials",
    "code": "bad_credentials",
}
NOT_AUTHENTICATED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
STRONG_PASSWORD = "a long and unusual passphrase 42"


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def login(client: APIClient, username: str = "alice", password: str = PASSWORD):
    return client.post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )


# -- register -------------------------------------------------------------------------


def test_register_creates_an_active_user_and_answers_201_with_id_username_and_email(api):
    response = api.post(
        "/api/auth/register/",
        {"username": "carol", "email": "carol@example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    assert response.status_code == 201
    user = User.objects.get(username="carol")
    assert response.json() == {"id": user.pk, "username": "carol", "email": "carol@example.com"}
    assert user.is_active and user.check_password(STRONG_PASSWORD)


def test_registered_user_can_log_in(api):
    api.post(
        "/api/auth/register/",
        {"username": "carol", "email": "carol@example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    response = login(api, "carol", STRONG_PASSWORD)

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_register_refuses_an_invalid_email_with_a_field_error(api):
    response = api.post(
        "/api/auth/register/",
        {"username": "carol", "email": "not-an-email", "password": STRONG_PASSWORD},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"email": ["Enter a valid email address."]}
    assert not User.objects.filter(username="carol").exists()


def test_register_refuses_a_password_that_django_validators_reject(api):
    response = api.post(
        "/api/auth/register/",
        {"username": "carol", "email": "carol@example.com", "password": "12345678"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "password": ["This password is too common.", "This password is entirely numeric."]
    }


def test_register_refuses_a_password_too_similar_to_the_username(api):
    response = api.post(
        "/api/auth/register/",
        {"username": "carolinexyz", "email": "c@example.com", "password": "carolinexyz1"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"password": ["The password is too similar to the username."]}


@pytest.mark.parametrize("taken", ["alice", "ALICE"])
def test_register_refuses_a_taken_username_case_insensitively(api, user, taken):
    response = api.post(
        "/api/auth/register/",
        {"username": taken, "email": "new@example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"username": ["A user with that username already exists."]}


@pytest.mark.parametrize("taken", ["alice@example.com", "Alice@EXAMPLE.com"])
def test_register_refuses_a_taken_email_case_insensitively(api, user, taken):
    response = api.post(
        "/api/auth/register/",
        {"username": "carol", "email": taken, "password": STRONG_PASSWORD},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"email": ["A user with that email already exists."]}


def test_register_answers_403_when_registration_is_turned_off(api, settings):
    settings.ACCOUNTS_ALLOW_REGISTRATION = False

    response = api.post(
        "/api/auth/register/",
        {"username": "carol", "email": "carol@example.com", "password": STRONG_PASSWORD},
        format="json",
    )

    assert response.status_code == 403
    assert response.json() == {
        "detail": "Registration is disabled.",
        "code": "registration_disabled",
    }
    assert not User.objects.filter(username="carol").exists()


def test_register_lists_every_missing_field(api):
    response = api.post("/api/auth/register/", {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "username": ["This field is required."],
        "email": ["This field is required."],
        "password": ["This field is required."],
    }


# -- token/ -------------------------------------------------------------------------------


def test_login_answers_an_access_and_refresh_pair_that_work(api, user):
    response = login(api)

    assert response.status_code == 200
    pair = response.json()
    assert set(pair) == {"access", "refresh"}
    assert bearer(pair["access"]).get("/api/auth/me/").status_code == 200
    assert RefreshToken(pair["refresh"])["user_id"] == str(user.pk)


def test_login_with_a_wrong_password_answers_401(api, user):
    response = login(api, password="wrong password")

    assert response.status_code == 401
    assert response.json() == BAD_CREDENTIALS
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_login_of_an_unknown_user_answers_401(api, db):
    response = login(api, username="nobody")

    assert response.status_code == 401
    assert response.json() == BAD_CREDENTIALS


def test_login_of_an_inactive_user_answers_401(api, user):
    user.is_active = False
    user.save()

    response = login(api)

    assert response.status_code == 401
    assert response.json() == BAD_CREDENTIALS


def test_login_is_throttled_after_five_failures_for_a_username_even_with_the_right_password(
    api, user
):
    for _ in range(5):
        assert login(api, password="wrong password").status_code == 401

    response = login(api)

    assert response.status_code == 429
    retry_after = response["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 15 * 60
    assert response.json() == {
        "detail": f"Too many failed logins; try again later. "
        f"Expected available in {retry_after} seconds.",
        "code": "login_throttled",
    }


def test_login_throttle_counts_a_username_in_any_spelling_case(api, user):
    for username in ["alice", "ALICE", "Alice", "aLiCe", "alicE"]:
        login(api, username=username, password="wrong password")

    assert login(api).status_code == 429


def test_login_throttle_for_one_username_leaves_other_usernames_alone(api, user, other_user):
    for _ in range(5):
        login(api, password="wrong password")

    assert login(api, username="bob").status_code == 200


def test_a_good_login_forgets_the_usernames_earlier_failures(api, user):
    for _ in range(4):
        login(api, password="wrong password")
    assert login(api).status_code == 200
    for _ in range(4):
        login(api, password="wrong password")

    assert login(api).status_code == 200


def test_login_is_throttled_per_client_ip_across_usernames(api, user, settings):
    settings.LOGIN_FAILURES_PER_IP = "3/hour"
    for username in ["x1", "x2", "x3"]:
        assert login(api, username=username, password="wrong").status_code == 401

    response = login(api)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    elsewhere = APIClient(REMOTE_ADDR="10.0.0.2")
    assert login(elsewhere).status_code == 200


# -- token/refresh/ ---------------------------------------------------------------------


def test_refresh_answers_a_new_pair_and_blacklists_the_used_refresh_token(api, user):
    pair = login(api).json()

    response = api.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 200
    new_pair = response.json()
    assert set(new_pair) == {"access", "refresh"}
    assert new_pair["refresh"] != pair["refresh"]
    assert bearer(new_pair["access"]).get("/api/auth/me/").status_code == 200
    again = api.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert again.status_code == 401
    assert again.json() == INVALID_TOKEN


def test_refresh_with_an_expired_refresh_token_answers_401_token_expired(api, user):
    expired = refresh_for(user, lifetime=timedelta(seconds=-10))

    response = api.post("/api/auth/token/refresh/", {"refresh": str(expired)}, format="json")

    assert response.status_code == 401
    assert response.json() == EXPIRED_TOKEN
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("raw", ["garbage", "a.b.c", ""])
def test_refresh_with_a_malformed_token_answers_401(api, db, raw):
    response = api.post("/api/auth/token/refresh/", {"refresh": raw}, format="json")

    if raw == "":
        assert response.status_code == 400
        assert response.json() == {"refresh": ["This field may not be blank."]}
    else:
        assert response.status_code == 401
        assert response.json() == INVALID_TOKEN


def test_refresh_with_an_access_token_answers_401(api, user):
    response = api.post(
        "/api/auth/token/refresh/", {"refresh": str(access_for(user))}, format="json"
    )

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_refresh_with_a_token_issued_before_logout_all_answers_401(api, user):
    pair = login(api).json()
    assert bearer(pair["access"]).post("/api/auth/logout-all/").status_code == 204

    response = api.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_a_refresh_token_obtained_by_rotation_is_refused_after_logout_all(api, user):
    pair = login(api).json()
    rotated = api.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    rotated = rotated.json()
    assert bearer(rotated["access"]).post("/api/auth/logout-all/").status_code == 204

    response = api.post("/api/auth/token/refresh/", {"refresh": rotated["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_refresh_of_a_deactivated_user_answers_401(api, user):
    pair = login(api).json()
    User.objects.filter(pk=user.pk).update(is_active=False)  # no signal: the check itself

    response = api.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


# -- token/verify/ ----------------------------------------------------------------------


def test_verify_accepts_a_usable_access_token(api, user):
    response = api.post("/api/auth/token/verify/", {"token": str(access_for(user))}, format="json")

    assert response.status_code == 200
    assert response.json() == {}


def test_verify_accepts_a_usable_refresh_token(api, user):
    response = api.post("/api/auth/token/verify/", {"token": str(refresh_for(user))}, format="json")

    assert response.status_code == 200
    assert response.json() == {}


def test_verify_refuses_garbage_with_401(api, db):
    response = api.post("/api/auth/token/verify/", {"token": "garbage"}, format="json")

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_verify_refuses_an_expired_access_token_with_401_token_expired(api, user):
    expired = access_for(user, lifetime=timedelta(seconds=-10))

    response = api.post("/api/auth/token/verify/", {"token": str(expired)}, format="json")

    assert response.status_code == 401
    assert response.json() == EXPIRED_TOKEN


def test_verify_refuses_a_revoked_access_token_with_401(api, user):
    pair = login(api).json()
    bearer(pair["access"]).post("/api/auth/logout-all/")

    for raw in pair.values():
        response = api.post("/api/auth/token/verify/", {"token": raw}, format="json")
        assert response.status_code == 401
        assert response.json() == INVALID_TOKEN


# -- logout/ and logout-all/ ------------------------------------------------------------


def test_logout_answers_204_and_blacklists_the_refresh_token(api, user):
    pair = login(api).json()

    response = bearer(pair["access"]).post(
        "/api/auth/logout/", {"refresh": pair["refresh"]}, format="json"
    )

    assert response.status_code == 204
    assert response.content == b""
    again = api.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert again.status_code == 401


def test_logout_with_another_users_refresh_token_answers_403_and_leaves_it_usable(
    api, user, other_user
):
    mine = login(api).json()
    theirs = login(api, username="bob").json()

    response = bearer(mine["access"]).post(
        "/api/auth/logout/", {"refresh": theirs["refresh"]}, format="json"
    )

    assert response.status_code == 403
    assert response.json() == {
        "detail": "That refresh token belongs to another user.",
        "code": "permission_denied",
    }
    refreshed = api.post("/api/auth/token/refresh/", {"refresh": theirs["refresh"]}, format="json")
    assert refreshed.status_code == 200


def test_logout_without_a_bearer_token_answers_401(api, user):
    response = api.post("/api/auth/logout/", {"refresh": str(refresh_for(user))}, format="json")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_logout_all_refuses_every_earlier_token_and_a_new_login_works(api, user):
    first, second = login(api).json(), login(api).json()

    response = bearer(first["access"]).post("/api/auth/logout-all/")

    assert response.status_code == 204
    for pair in (first, second):
        me = bearer(pair["access"]).get("/api/auth/me/")
        assert me.status_code == 401
        assert me.json() == INVALID_TOKEN
        refreshed = api.post(
            "/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
        )
        assert refreshed.status_code == 401
    fresh = login(api).json()
    assert bearer(fresh["access"]).get("/api/auth/me/").status_code == 200
    refreshed = api.post("/api/auth/token/refresh/", {"refresh": fresh["refresh"]}, format="json")
    assert refreshed.status_code == 200


def test_logout_all_without_a_bearer_token_answers_401(api, db):
    response = api.post("/api/auth/logout-all/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


# -- me/ ----------------------------------------------------------------------------------


def test_me_answers_id_username_email_and_is_staff(api, user):
    response = bearer(str(access_for(user))).get("/api/auth/me/")

    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "username": "alice",
        "email": "alice@example.com",
        "is_staff": False,
    }


def test_me_with_an_expired_access_token_answers_401_token_expired(api, user):
    response = bearer(str(access_for(user, lifetime=timedelta(seconds=-10)))).get("/api/auth/me/")

    assert response.status_code == 401
    assert response.json() == EXPIRED_TOKEN


def test_me_with_a_refresh_token_as_bearer_answers_401(api, user):
    response = bearer(str(refresh_for(user))).get("/api/auth/me/")

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_me_without_credentials_answers_401(api, db):
    response = api.get("/api/auth/me/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


# -- malformed requests -----------------------------------------------------------------


def test_malformed_json_answers_400_with_a_json_body(api, db):
    response = api.post(
        "/api/auth/token/", data='{"username": "alice", ', content_type="application/json"
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "parse_error"
    assert body["detail"].startswith("JSON parse error - ")


def test_a_text_plain_body_answers_400_naming_the_expected_content_type(api, db):
    response = api.post(
        "/api/auth/token/", data="username=alice&password=x", content_type="text/plain"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Content-Type must be application/json, not 'text/plain'",
        "code": "unsupported_media_type",
    }


def test_a_form_encoded_body_answers_400(api, db):
    response = api.post(
        "/api/auth/token/",
        data="username=alice&password=x",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_media_type"


def test_missing_login_fields_answer_400_per_field(api, db):
    response = api.post("/api/auth/token/", {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "username": ["This field is required."],
        "password": ["This field is required."],
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/auth/register/",
        "/api/auth/token/",
        "/api/auth/token/refresh/",
        "/api/auth/token/verify/",
    ],
)
def test_a_json_array_body_answers_400_with_a_json_body(api, db, path):
    response = api.post(path, [], format="json")

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }


def test_a_string_field_given_an_object_answers_400(api, db):
    response = api.post("/api/auth/token/", {"username": {"a": 1}, "password": "x"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"username": ["Not a valid string."]}


def test_an_unknown_api_path_answers_404_in_json(api, db):
    response = api.get("/api/nothing/here/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_a_wrong_method_answers_405_in_json(api, db):
    response = api.get("/api/auth/token/")

    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "GET" not allowed.', "code": "method_not_allowed"}


# -- logging ------------------------------------------------------------------------------


def test_a_failed_login_is_logged_without_the_password(api, user, caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.security")
    secret = "a-wrong-but-secret-password"

    login(api, password=secret)

    messages = [r.getMessage() for r in caplog.records if r.name == "switchboard.security"]
    assert messages == ["login failed: username='alice' client=127.0.0.1"]
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_a_throttled_login_is_logged_without_the_password(api, user, caplog):
    for _ in range(5):
        login(api, password="wrong password")
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="switchboard.security")

    login(api)

    messages = [r.getMessage() for r in caplog.records if r.name == "switchboard.security"]
    assert messages == ["login throttled: username='alice' client=127.0.0.1"]
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_parallel_login_attempts_cannot_exceed_the_username_limit(settings):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    # The production hasher: checking a password takes long enough for attempts to overlap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    UserFactory(username="target")

    def attempt(_):
        try:
            client = APIClient()
            return client.post(
                "/api/auth/token/", {"username": "target", "password": "wrong"}, format="json"
            ).status_code
        finally:
            connections.close_all()

    # The first attempt creates the key: limits' memory storage makes its per-key lock on
    # first use, which two threads could race (its Redis storage is one atomic script).
    statuses = [attempt(0)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses += pool.map(attempt, range(19))
    assert statuses.count(401) == 5
    assert statuses.count(429) == 15
