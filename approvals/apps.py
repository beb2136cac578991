from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ApprovalsConfig(AppConfig):
    name = "approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from executions.access import ensure_groups

        # executions grants its groups on its own post_migrate, before this app's
        # permissions exist; grant again once they do.
        post_migrate.connect(ensure_groups, sender=self, dispatch_uid="approvals.ensure_groups")
