"""The accounts app: its receivers, metrics and OpenAPI scheme, registered when Django starts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import (  # noqa: F401  (registers receivers, metrics and the OpenAPI scheme)
            metrics,
            schema,
            signals,
        )
