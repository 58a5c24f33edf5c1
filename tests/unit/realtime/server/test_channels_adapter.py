"""realtime.server.channels_adapter's version guard: its copy of channels' consumer loop was
checked against the channels installed, and says so when it was not."""

from importlib.metadata import version

from realtime.server import channels_adapter


def test_the_installed_channels_is_the_one_the_copied_consumer_loop_was_checked_against():
    assert channels_adapter.versions_uncovered() == [], (
        "channels changed: compare channels.consumer.AsyncConsumer.__call__ and dispatch with "
        "realtime/server/channels_adapter.py, then add the version to COVERED_VERSIONS"
    )


def test_an_unknown_channels_is_named(monkeypatch):
    monkeypatch.setattr(channels_adapter, "version", lambda name: "5.0.0")
    assert channels_adapter.versions_uncovered() == ["channels 5.0.0"]


def test_the_guard_reads_the_real_distribution_version():
    assert version("channels").startswith(channels_adapter.COVERED_VERSIONS)
