"""The operations app: its `check --deploy` checks, registered when Django starts."""

from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"

    def ready(self) -> None:
        from operations import deploy_checks  # noqa: F401  (registers `check --deploy` checks)
