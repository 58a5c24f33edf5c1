"""The account defects of the fail-closed work, against a real daphne on the real database:
identities unique once normalised (400, never 503), JSON nested too deeply (400, never 500),
refresh-token records pruned and never shown raw in the admin."""

import re
import time
import uuid

import httpx
import pytest

from tests.system.conftest import PASSWORD, http_client
from tests.system.stack import Worker
from tests.system.test_login_throttle_system import admin_login
from tests.system.test_session_registry_system import manage, staff_create

USERNAME_TAKEN = {"username": ["A user with that username already exists."]}
EMAIL_TAKEN = {"email": ["A user with that email already exists."]}
TOO_DEEP = {"detail": "JSON nested too deeply", "code": "parse_error"}
AUTH_ENDPOINTS = (
    "/api/auth/register/",
    "/api/auth/token/",
    "/api/auth/token/refresh/",
    "/api/auth/token/verify/",
)


@pytest.fixture(scope="module")
def worker(start_module_worker, collected_static) -> Worker:
    # The admin renders from collected static files; its cookies travel over plain HTTP.
    return start_module_worker(
        DJANGO_STATIC_ROOT=str(collected_static), DJANGO_SECURE_COOKIES="0", JWT_REFRESH_TTL="2"
    )


def register(worker: Worker, username: str, email: str) -> httpx.Response:
    with http_client(worker) as client:
        body = {"username": username, "email": email, "password": PASSWORD}
        return client.post("/api/auth/register/", json=body)


def answer(response: httpx.Response) -> tuple[int, dict]:
    return response.status_code, response.json()


def test_spellings_of_one_name_or_email_are_one_identity_400_never_503(worker):
    tag = uuid.uuid4().hex[:6]

    assert register(worker, f"rtcase{tag}", f"a{tag}@bücher.example").status_code == 201
    assert answer(register(worker, f"Ｒtcase{tag}", f"b{tag}@example.com")) == (
        400,
        USERNAME_TAKEN,
    )
    assert register(worker, f"Ｆull{tag}", f"c{tag}@example.com").status_code == 201
    assert answer(register(worker, f"Ｆull{tag}", f"d{tag}@example.com")) == (400, USERNAME_TAKEN)
    assert register(worker, f"Ölaf{tag}", f"e{tag}@example.com").status_code == 201
    assert answer(register(worker, f"ölaf{tag}", f"f{tag}@example.com")) == (400, USERNAME_TAKEN)
    assert answer(register(worker, f"other{tag}", f"a{tag}@BÜCHER.example")) == (400, EMAIL_TAKEN)
    assert "database unavailable" not in worker.log_text()


def test_json_nested_too_deeply_is_400_on_every_auth_endpoint_and_the_worker_carries_on(worker):
    deep = "[" * 20_000 + "]" * 20_000
    headers = {"Content-Type": "application/json"}

    with http_client(worker) as client:
        answers = [
            answer(client.post(path, content=deep, headers=headers)) for path in AUTH_ENDPOINTS
        ]
        healthy = client.get("/healthz").status_code

    assert answers == [(400, TOO_DEEP)] * len(AUTH_ENDPOINTS)
    assert healthy == 200
    assert "RecursionError" not in worker.output()


def test_expired_refresh_token_records_are_pruned_and_the_admin_never_shows_one(worker):
    staff = staff_create(worker, f"tokens-staff-{uuid.uuid4().hex[:6]}")
    with httpx.Client(
        base_url=worker.http, trust_env=False, timeout=10, follow_redirects=True
    ) as client:
        assert admin_login(client, staff["username"], PASSWORD).status_code == 200
        listing = client.get("/admin/token_blacklist/outstandingtoken/")
        token_id = re.search(r"outstandingtoken/(\d+)/change/", listing.text).group(1)
        change = client.get(f"/admin/token_blacklist/outstandingtoken/{token_id}/change/")
        probe = client.get("/admin/token_blacklist/outstandingtoken/?token__startswith=eyJ")

    assert (listing.status_code, change.status_code) == (200, 200)
    assert staff["refresh"] not in listing.text + change.text
    assert "eyJ" not in listing.text + change.text  # no raw JWT on either page
    assert probe.status_code == 400

    time.sleep(2.5)  # JWT_REFRESH_TTL=2: every refresh token issued so far has expired
    pruned = manage(worker, "prune_sessions")
    deleted = int(pruned.split(" expired refresh token(s) deleted")[0].rsplit("\n", 1)[-1])
    assert deleted >= 1, pruned
    assert manage(worker, "prune_sessions").splitlines()[-1] == "0 expired refresh token(s) deleted"
