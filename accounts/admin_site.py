"""The Django admin site, with its login behind the REST login's throttle and log.

Installed the Django way (docs: "Overriding the default admin site"): INSTALLED_APPS names
`accounts.admin_apps.SwitchboardAdminConfig`, whose `default_site` is the site below, so
`admin.site`, `@admin.register` and `admin.site.urls` all mean this site.
"""

import logging
from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

from accounts.login import TooManyLoginFailures, login_authenticate, login_log_name
from accounts.models import User
from core.client_ip import request_client_ip

security_log = logging.getLogger("switchboard.security")


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form checking credentials through `accounts.login`: the same
    per-username and per-IP allowances as the REST login, the same log lines."""

    request: HttpRequest  # the admin's login view always passes it

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "login_throttled": "Too many failed logins; try again in %(wait)s seconds.",
    }
    throttled_wait: int | None = None  # set when refused by the throttle (answered 429)

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = login_authenticate(
                    request=self.request, username=username, password=password
                )
            except TooManyLoginFailures as e:
                self.throttled_wait = e.wait
                raise ValidationError(
                    self.error_messages["login_throttled"],
                    code="login_throttled",
                    params={"wait": e.wait},
                ) from e
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data

    def confirm_login_allowed(self, user: User) -> None:
        try:
            super().confirm_login_allowed(user)
        except ValidationError:
            security_log.warning(
                "admin login refused, not staff: %s client=%s",
                login_log_name(user.get_username()),
                request_client_ip(self.request),
            )
            raise


class SwitchboardAdminSite(admin.AdminSite):
    """Django's admin site; a login refused by the throttle answers 429 with Retry-After
    (the login page, its error saying when to try again)."""

    login_form = ThrottledAdminAuthenticationForm

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        wait = getattr(form, "throttled_wait", None)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
