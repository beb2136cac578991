import logging

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ApprovalsConfig(AppConfig):
    name = "approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they import models, which Django allows only once the
        # app registry is ready.
        from approvals.log_filters import RedactLinkTokens
        from executions.access import ensure_groups

        # uvicorn's access log has its own handlers, outside settings.LOGGING's console one.
        access_log = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, RedactLinkTokens) for f in access_log.filters):
            access_log.addFilter(RedactLinkTokens())

        # executions grants its groups on its own post_migrate, before this app's
        # permissions exist; grant again once they do.
        post_migrate.connect(ensure_groups, sender=self, dispatch_uid="approvals.ensure_groups")
