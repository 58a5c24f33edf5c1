"""operations.deploy_checks: each `check --deploy` finding, with its id, and silence when fine."""

import pytest
from channels.routing import ProtocolTypeRouter, URLRouter

from operations.deploy_checks import switchboard_deploy_checks
from realtime.edge.origin import OriginCheckMiddleware

# ASGI applications for ASGI_APPLICATION to name.
unprotected = ProtocolTypeRouter({"websocket": URLRouter([])})
protected = ProtocolTypeRouter({"websocket": OriginCheckMiddleware(URLRouter([]))})

REDIS_LAYER = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"], "group_expiry": 86400},
    }
}


@pytest.fixture
def production(settings):
    """Settings that pass every check; each test breaks one thing."""
    settings.DEBUG = False
    settings.CHANNEL_LAYERS = REDIS_LAYER
    settings.ASGI_APPLICATION = "tests.unit.operations.test_deploy_checks.protected"
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "SIGNING_KEY": "k" * 40}
    settings.ACCOUNTS_ALLOW_REGISTRATION = False
    settings.DAPHNE_WEBSOCKET_TIMEOUT = 86400
    return settings


def ids(settings) -> list[str]:
    return [message.id for message in switchboard_deploy_checks(None)]


def test_production_settings_pass(production):
    assert ids(production) == []


def test_the_in_memory_layer_with_debug_off_is_w001(production):
    production.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    [message] = switchboard_deploy_checks(None)

    assert message.id == "switchboard.W001"
    assert message.hint == "Set REDIS_URL (every worker the same)."


def test_websocket_routes_without_the_origin_check_are_e002(production):
    production.ASGI_APPLICATION = "tests.unit.operations.test_deploy_checks.unprotected"

    assert ids(production) == ["switchboard.E002"]


def test_the_shipped_asgi_application_has_the_origin_check(production):
    production.ASGI_APPLICATION = "config.asgi.application"

    assert ids(production) == []


def test_a_jwt_key_equal_to_the_secret_key_is_w003(production):
    production.SIMPLE_JWT = {**production.SIMPLE_JWT, "SIGNING_KEY": production.SECRET_KEY}

    assert ids(production) == ["switchboard.W003"]


@pytest.mark.parametrize(
    "change",
    [{"BLACKLIST_AFTER_ROTATION": False}],
)
def test_rotation_without_the_blacklist_is_e004(production, change):
    production.SIMPLE_JWT = {**production.SIMPLE_JWT, **change}

    assert ids(production) == ["switchboard.E004"]


def test_rotation_without_the_blacklist_app_installed_is_e004(production):
    production.INSTALLED_APPS = [
        app
        for app in production.INSTALLED_APPS
        if app != "rest_framework_simplejwt.token_blacklist"
    ]

    assert ids(production) == ["switchboard.E004"]


def test_a_group_expiry_shorter_than_daphnes_websocket_timeout_is_w005(production):
    production.DAPHNE_WEBSOCKET_TIMEOUT = 2 * 86400

    assert ids(production) == ["switchboard.W005"]


def test_open_registration_with_debug_off_is_w006(production):
    production.ACCOUNTS_ALLOW_REGISTRATION = True

    assert ids(production) == ["switchboard.W006"]


def test_with_debug_on_neither_the_memory_layer_nor_registration_is_reported(production):
    production.DEBUG = True
    production.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    production.ACCOUNTS_ALLOW_REGISTRATION = True

    assert ids(production) == []


def test_a_running_worker_with_another_channel_layer_is_e007(production, monkeypatch):
    from realtime.cluster import workers

    production.REDIS_URL = "redis://127.0.0.1:1/0"
    mine = workers.layer_fingerprint()
    monkeypatch.setattr(
        workers, "layer_fingerprints_sync", lambda: {"w1": mine, "w2": "0123456789abcdef"}
    )

    [message] = switchboard_deploy_checks(None)

    assert message.id == "switchboard.E007"
    assert message.msg.startswith("1 running worker(s) use a different channel layer than this")
    assert message.hint.startswith("Give every worker the same REDIS_LAYER_URLS, in the same")


def test_workers_agreeing_on_the_layer_pass_and_unreadable_heartbeats_are_w008(
    production, monkeypatch
):
    from realtime.cluster import workers

    production.REDIS_URL = "redis://127.0.0.1:1/0"
    mine = workers.layer_fingerprint()
    monkeypatch.setattr(workers, "layer_fingerprints_sync", lambda: {"w1": mine, "w2": mine})
    assert ids(production) == []

    def unreachable() -> dict[str, str]:
        raise ConnectionError("refused")

    monkeypatch.setattr(workers, "layer_fingerprints_sync", unreachable)
    assert ids(production) == ["switchboard.W008"]
