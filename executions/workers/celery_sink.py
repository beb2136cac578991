"""Hints to Celery workers: registered as the engine's broker sink when a broker is configured."""

from __future__ import annotations

from executions import tasks


class CeleryWorkSink:
    """Sends each hint as a task message; the database still decides what runs."""

    def submit_execution(self, execution_id: int) -> None:
        tasks.run_execution.delay(execution_id)

    def submit_plain_invoke(self, execution_id: int, operation_id: str) -> None:
        tasks.run_plain_invoke.delay(execution_id, operation_id)

    def submit_bulk_job(self, job_id: int) -> None:
        tasks.run_bulk_job.delay(job_id)
