from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ExecutionsConfig(AppConfig):
    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from executions.access import ensure_groups

        # After migrate has created this app's permissions, grant them to the groups.
        post_migrate.connect(ensure_groups, sender=self, dispatch_uid="executions.ensure_groups")
