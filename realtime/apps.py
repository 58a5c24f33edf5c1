"""The realtime app: its system checks, revocation receivers and metrics, registered when
Django starts."""

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"

    def ready(self) -> None:
        from realtime import (  # noqa: F401  (registers checks, receivers and metrics)
            checks,
            metrics,
            receivers,
        )
        from realtime.rooms.namespaces import namespaces_validate

        namespaces_validate()  # a bad REALTIME_NAMESPACES stops startup, naming the fix
