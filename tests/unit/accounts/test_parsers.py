"""JSON bodies nested too deeply answer 400 `parse_error` on every JSON endpoint
(accounts/parsers.py), never a 500."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import UserFactory, access_for

pytestmark = pytest.mark.django_db

DEEP = "[" * 20_000 + "]" * 20_000
NESTED_TOO_DEEPLY = {"detail": "JSON nested too deeply", "code": "parse_error"}
PUBLIC = ["/api/auth/register/", "/api/auth/token/", "/api/auth/token/refresh/"]
PUBLIC += ["/api/auth/token/verify/"]


def bearer(*, is_staff: bool = False) -> APIClient:
    client = APIClient()
    token = access_for(UserFactory(is_staff=is_staff))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.parametrize("path", PUBLIC)
def test_a_20000_deep_json_body_answers_400_nested_too_deeply_on_the_auth_endpoints(path):
    response = APIClient().post(path, data=DEEP, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == NESTED_TOO_DEEPLY


@pytest.mark.parametrize(
    ("path", "is_staff"), [("/api/auth/logout/", False), ("/api/realtime/publish/", True)]
)
def test_a_20000_deep_json_body_answers_400_on_the_authenticated_json_endpoints(path, is_staff):
    response = bearer(is_staff=is_staff).post(path, data=DEEP, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == NESTED_TOO_DEEPLY


def test_a_deep_object_inside_a_field_answers_400_nested_too_deeply():
    body = '{"username": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + ', "password": "x"}'

    response = APIClient().post("/api/auth/token/", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == NESTED_TOO_DEEPLY


def test_nesting_the_parser_can_read_reaches_the_serializer_as_before():
    body = '{"username": ' + "[" * 500 + "]" * 500 + ', "password": "x"}'

    response = APIClient().post("/api/auth/token/", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"username": ["Not a valid string."]}
