"""Operator endpoints: /healthz, /readyz, /metrics, and the OpenAPI schema and docs."""

import re

import pytest
from channels.layers import channel_layers
from django.test import Client

from operations.metrics import dead_workers_forget
from tests.conftest import UserFactory, access_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_ok_without_checking_anything(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_answers_ok_when_the_database_and_the_layer_answer(client):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"database": "ok", "channel_layer": "ok"},
    )


def test_readyz_names_the_failing_part_with_503(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    channel_layers.backends.clear()
    try:
        response = client.get("/readyz")
    finally:
        channel_layers.backends.clear()
    assert (response.status_code, response.json()) == (
        503,
        {"database": "ok", "channel_layer": "error: ConnectionError"},
    )


def test_metrics_are_served_to_loopback_clients_without_a_token(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"# TYPE switchboard_ws_connections_open gauge" in response.content


def test_without_a_metrics_token_other_clients_are_refused_even_staff(client):
    staff = UserFactory(is_staff=True)
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert response.json()["code"] == "metrics_forbidden"
    response = client.get(
        "/metrics",
        REMOTE_ADDR="203.0.113.9",
        headers={"Authorization": f"Bearer {access_for(staff)}"},
    )
    assert response.status_code == 403


def test_a_database_failure_while_checking_a_staff_jwt_answers_503(client, settings, monkeypatch):
    from django.db import OperationalError

    from operations import views

    settings.METRICS_TOKEN = "m3tr1cs-" + "x" * 24

    def broken(raw):
        raise OperationalError("connection refused")

    monkeypatch.setattr(views, "user_for_token", broken)
    response = client.get("/metrics", headers={"Authorization": "Bearer some.jwt.here"})
    assert (response.status_code, response.json()["code"]) == (503, "unavailable")


def test_with_a_metrics_token_only_that_token_or_a_staff_jwt_reads_metrics(client, settings):
    settings.METRICS_TOKEN = "m3tr1cs-" + "x" * 24
    staff, member = UserFactory(is_staff=True), UserFactory()

    def get(**headers):
        return client.get("/metrics", REMOTE_ADDR="127.0.0.1", headers=headers).status_code

    assert get() == 401  # loopback alone is no longer enough
    assert get(Authorization=f"Bearer {settings.METRICS_TOKEN}") == 200
    assert get(Authorization="Bearer wrong") == 401
    assert get(Authorization=f"Bearer {access_for(staff)}") == 200
    assert get(Authorization=f"Bearer {access_for(member)}") == 403
    assert get(Authorization=f"Basic {settings.METRICS_TOKEN}") == 401


def test_a_dead_workers_live_gauges_are_forgotten(tmp_path):
    import os

    alive = tmp_path / f"gauge_livesum_{os.getpid()}.db"
    dead = tmp_path / "gauge_livesum_4194303.db"  # above the default pid_max: never running
    counter = tmp_path / "counter_4194303.db"
    for path in (alive, dead, counter):
        path.write_bytes(b"")
    assert dead_workers_forget(str(tmp_path)) == [4194303]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, counter.name])


def test_the_openapi_schema_documents_every_rest_endpoint():
    response = Client().get("/api/schema/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert sorted(paths) == [
        "/api/auth/logout-all/",
        "/api/auth/logout/",
        "/api/auth/me/",
        "/api/auth/register/",
        "/api/auth/token/",
        "/api/auth/token/refresh/",
        "/api/auth/token/verify/",
        "/api/realtime/publish/",
        "/api/realtime/sessions/",
        "/api/realtime/sessions/{session_id}/",
        "/api/realtime/ticket/",
    ]
    login = paths["/api/auth/token/"]["post"]
    assert sorted(login["responses"]) == ["200", "400", "401", "429", "503"]


def test_the_swagger_ui_loads_its_assets_locally_not_from_a_cdn(settings):
    # Unit tests run without collectstatic, so without the production manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    html = Client().get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    # Every asset from this server: no URL names a host. (Not a search for "cdn": the page's
    # random CSRF token holds those three letters about once in 800 loads.)
    assert all(url.startswith("/") for url in re.findall(r'(?:src|href)="([^"]*)"', html))
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html.lower())
