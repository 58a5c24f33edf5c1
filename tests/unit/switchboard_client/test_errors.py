"""The close-code policy (reconnect, refresh first, or stop) and the typed exceptions."""

import pytest

from switchboard_client.errors import (
    CloseAction,
    RateLimited,
    RequestError,
    SessionRevoked,
    SwitchboardClosed,
    TokenExpired,
    TooManySessions,
    Unauthorized,
    close_action,
    close_error,
    request_error,
)


@pytest.mark.parametrize("code", [None, 1001, 1006, 1011, 1012, 1013, 4000, 4008, 4009, 4499])
def test_transient_closes_reconnect(code):
    assert close_action(code) is CloseAction.RECONNECT


def test_an_expired_token_is_refreshed_before_reconnecting():
    assert close_action(4001) is CloseAction.REFRESH


@pytest.mark.parametrize("code", [1000, 1002, 1003, 1008, 1009, 3000, 4500, 4501, 4502, 4999])
def test_every_other_close_stops_the_client(code):
    assert close_action(code) is CloseAction.STOP


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (4500, Unauthorized),
        (4501, SessionRevoked),
        (4502, TooManySessions),
        (4001, TokenExpired),
        (4600, SwitchboardClosed),
        (1008, SwitchboardClosed),
    ],
)
def test_a_fatal_close_becomes_its_typed_exception_with_code_and_reason(code, kind):
    error = close_error(code, "why")
    assert type(error) is kind
    assert isinstance(error, SwitchboardClosed)
    assert (error.code, error.reason, str(error)) == (code, "why", f"closed {code}: why")


def test_an_error_reply_becomes_request_error_and_rate_limited_its_own_type():
    forbidden = request_error(code="forbidden", message="Not allowed on this channel")
    assert type(forbidden) is RequestError
    assert (forbidden.code, forbidden.message) == ("forbidden", "Not allowed on this channel")
    limited = request_error(code="rate_limited", message="Too many messages")
    assert type(limited) is RateLimited
    assert isinstance(limited, RequestError)
    assert limited.code == "rate_limited"
