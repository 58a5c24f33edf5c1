"""The one line a worker logs at startup about its channel layer."""

import logging

import pytest

from realtime.server.startup import startup_log

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS = {"default": {"BACKEND": "core.channel_layer.RedisChannelLayer", "CONFIG": {}}}


def startup_records(caplog) -> list[tuple[str, str]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="switchboard.realtime"):
        startup_log()
    return [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "switchboard.realtime"
    ]


def test_a_development_start_without_redis_says_it_is_one_worker_as_info(settings, caplog):
    settings.DEBUG, settings.CHANNEL_LAYERS = True, IN_MEMORY

    assert startup_records(caplog) == [
        (
            "INFO",
            "using the in-memory channel layer: one worker "
            "(set REDIS_URL to run several behind one Redis).",
        )
    ]


def test_a_production_start_without_redis_warns_that_revocations_reach_one_worker(settings, caplog):
    settings.DEBUG, settings.CHANNEL_LAYERS = False, IN_MEMORY

    assert startup_records(caplog) == [
        (
            "WARNING",
            "REDIS_URL is not set: using the in-memory channel layer, so messages and "
            "revocations reach only this worker. Set REDIS_URL to run several workers.",
        )
    ]


@pytest.mark.parametrize("debug", [True, False])
def test_a_start_on_redis_says_nothing(settings, caplog, debug):
    settings.DEBUG, settings.CHANNEL_LAYERS = debug, REDIS

    assert startup_records(caplog) == []
