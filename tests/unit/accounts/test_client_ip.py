"""core.client_ip: X-Forwarded-For only from trusted proxies, read from the right."""

import ipaddress
import logging

import pytest
from django.test import RequestFactory

import core.client_ip
from core.client_ip import client_ip, request_client_ip, scope_client_ip


@pytest.fixture
def trusted(settings):
    def trust(*cidrs: str) -> None:
        settings.TRUSTED_PROXY_NETWORKS = tuple(ipaddress.ip_network(c) for c in cidrs)

    return trust


@pytest.fixture(autouse=True)
def warn_again(monkeypatch):
    monkeypatch.setattr(core.client_ip, "_warned_untrusted_forwarding", False)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.5", [], "10.0.0.5"),  # no header: the peer
        ("10.0.0.5", ["6.6.6.6"], "6.6.6.6"),  # nginx on 10.0.0.5 appended the client
        ("10.0.0.5", ["6.6.6.6, 203.0.113.7"], "203.0.113.7"),  # a client-sent value, then ours
        ("10.0.0.5", ["203.0.113.7, 10.0.0.9"], "203.0.113.7"),  # two trusted hops
        ("10.0.0.5", ["6.6.6.6", "203.0.113.7"], "203.0.113.7"),  # two header lines
        ("198.51.100.1", ["6.6.6.6"], "198.51.100.1"),  # an untrusted peer's header: ignored
        ("10.0.0.5", ["10.0.0.7, 10.0.0.9"], "10.0.0.7"),  # only proxies: the farthest
        ("10.0.0.5", ["garbage"], "10.0.0.5"),  # a trusted proxy forwarded garbage
        ("10.0.0.5", ["6.6.6.6, garbage, 10.0.0.9"], "10.0.0.9"),
        ("10.0.0.5", ["2001:db8::1"], "2001:db8::1"),
    ],
)
def test_the_client_is_the_first_untrusted_address_from_the_right(
    trusted, peer, forwarded, expected
):
    trusted("10.0.0.0/8")

    assert client_ip(peer, forwarded) == expected


def test_without_trusted_proxies_the_header_changes_nothing_and_is_logged_once(trusted, caplog):
    trusted()

    with caplog.at_level(logging.WARNING, logger="switchboard.security"):
        first = client_ip("127.0.0.1", ["6.6.6.6"])
        second = client_ip("127.0.0.1", ["7.7.7.7"])

    assert (first, second) == ("127.0.0.1", "127.0.0.1")
    assert [r.getMessage() for r in caplog.records] == [
        "X-Forwarded-For arrived from 127.0.0.1 but TRUSTED_PROXIES is empty: it is ignored, "
        "and behind a proxy every client shares the proxy's address (set TRUSTED_PROXIES)"
    ]


def test_http_requests_and_websocket_scopes_use_the_same_rule(trusted):
    trusted("127.0.0.1/32")
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    scope = {
        "client": ("127.0.0.1", 5000),
        "headers": [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4")],
    }

    assert request_client_ip(request) == scope_client_ip(scope) == "1.2.3.4"


def test_a_scope_without_a_client_is_unknown(trusted):
    assert scope_client_ip({"headers": []}) == "unknown"
