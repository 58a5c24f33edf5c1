"""When the client renews its access token, from the welcome's `expires_at`."""

import pytest

from switchboard_client.session_tokens import expiry_parse, refresh_delay


def test_expires_at_is_read_as_a_utc_timestamp():
    assert expiry_parse("2026-11-23T20:35:59Z") == 1795466159.0


@pytest.mark.parametrize(
    ("remaining", "delay"),
    [
        (300.0, 240.0),  # the default 5-minute token: 60 s before it expires
        (120.0, 60.0),
        (3.0, 1.5),  # a short token: half its remaining life
        (0.0, 0.0),
        (-5.0, 0.0),  # already past: at once
    ],
)
def test_the_refresh_comes_a_minute_before_expiry_or_halfway_when_less_is_left(remaining, delay):
    assert refresh_delay(expires_at=1000.0 + remaining, now=1000.0) == delay
