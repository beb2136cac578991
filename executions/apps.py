from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate, pre_delete


class ExecutionsConfig(AppConfig):
    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from executions.access import ensure_groups
        from executions.api.access_keys import revoke_keys_of_deleted_user

        # After migrate has created this app's permissions, grant them to the groups.
        post_migrate.connect(ensure_groups, sender=self, dispatch_uid="executions.ensure_groups")
        # A deleted person's keys are revoked, never left ownerless (which means admin).
        pre_delete.connect(
            revoke_keys_of_deleted_user,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="executions.revoke_keys_of_deleted_user",
        )
