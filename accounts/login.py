"""Password logins: one door for the REST login (`POST /api/auth/token/`) and the admin's
login form, so their throttle, check, log line and metric cannot drift apart."""

import logging

from django.contrib.auth import authenticate
from django.db import DatabaseError
from django.http import HttpRequest
from django.utils.crypto import salted_hmac
from rest_framework.request import Request

from accounts.identity import username_key
from accounts.login_throttle import login_throttle
from accounts.metrics import LOGINS
from accounts.models import User
from core.client_ip import request_client_ip

security_log = logging.getLogger("switchboard.security")
USERNAME_HASH_SALT = "switchboard.accounts.login.username"


class TooManyLoginFailures(Exception):
    """The username or the client IP has no login attempt left for now."""

    def __init__(self, wait: int):
        super().__init__(f"try again in {wait} s")
        self.wait = wait


def login_log_name(username: str) -> str:
    """How a login's username is written in the security log: `username='alice'` when it
    names an account (compared normalised, so the account's own spelling is written), else
    `username_hash=…`, a keyed hash: a password typed into the username field must not reach
    the log, yet repeated attempts with one name stay recognisable."""
    key = username_key(username)
    try:
        found = User._default_manager.filter(username_key=key).values_list("username", flat=True)
        name = found.first()
    except DatabaseError:
        name = None  # the hash is always safe to write
    if name is not None:
        return f"username={name[:150]!r}"
    digest = salted_hmac(USERNAME_HASH_SALT, key, algorithm="sha256").hexdigest()
    return f"username_hash={digest[:16]}"


def login_authenticate(
    *, request: HttpRequest | Request, username: str, password: str
) -> User | None:
    """The active user these credentials belong to, or None (a failure, counted and logged).

    The attempt is first taken from the username's and the client IP's allowances (see
    accounts/login_throttle.py); TooManyLoginFailures when either has none left, and then no
    password is checked at all. A good password gives the attempt back.
    """
    ip = request_client_ip(request)
    throttle = login_throttle()
    wait = throttle.attempt_take(username=username, ip=ip)
    if wait is not None:
        LOGINS.labels("throttled").inc()
        security_log.warning("login throttled: %s client=%s", login_log_name(username), ip)
        raise TooManyLoginFailures(wait)
    user = authenticate(request, username=username, password=password)
    if user is None:
        LOGINS.labels("failure").inc()
        security_log.warning("login failed: %s client=%s", login_log_name(username), ip)
        return None
    throttle.attempt_succeeded(username=username, ip=ip)
    LOGINS.labels("success").inc()
    return user
