from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate, pre_delete


class ExecutionsConfig(AppConfig):
    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which Django allows
        # only once the app registry is ready.
        from executions import metrics, tracing
        from executions.access import ensure_groups
        from executions.api.access_keys import revoke_keys_of_deleted_user
        from executions.engine import effects
        from executions.live import updates

        # The engine's after-commit effects reach the layers above it through sinks
        # registered here, so the engine imports none of them.
        effects.add_change_listener(updates.notify)
        metrics.install()  # executions started and finished, timer lateness
        tracing.install()  # an execution's root span, once it ends
        if settings.CELERY_BROKER_URL:
            from executions.workers.celery_sink import CeleryWorkSink

            effects.set_broker_sink(CeleryWorkSink())

        # After migrate has created this app's permissions, grant them to the groups.
        post_migrate.connect(ensure_groups, sender=self, dispatch_uid="executions.ensure_groups")
        # A deleted person's keys are revoked, never left ownerless (which means admin).
        pre_delete.connect(
            revoke_keys_of_deleted_user,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="executions.revoke_keys_of_deleted_user",
        )
