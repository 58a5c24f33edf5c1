"""The browser console app (a page and its static files)."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Browser console"
