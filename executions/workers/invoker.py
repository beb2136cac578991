"""Runs handlers in-process: one invocation at a time per execution, as a worker.

The worker claims an invocation (lease + fresh token lineage), calls the
pinned handler with ``DurableExecutionInvocationInputWithClient`` and the
database-backed client, and reports the output. It keeps going while the
execution needs another invocation right away, saving a dispatch round trip.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_durable_execution_sdk_python import state as sdk_state
from aws_durable_execution_sdk_python.execution import (
    DurableExecutionInvocationInputWithClient,
    InitialExecutionState,
)
from aws_durable_execution_sdk_python.lambda_service import ErrorObject, Operation
from django.conf import settings
from django.db import connections

from executions import services
from executions.functions import function_arn, load_handler
from executions.models import Function
from executions.workers.client import DatabaseServiceClient

logger = logging.getLogger(__name__)

# The SDK's checkpoint thread polls its stop signal every 100 ms, so every
# invocation ends up to 100 ms after the handler returned. On Lambda that is
# hidden in the runtime; here it caps a worker at ~10 invocations/s. Polling
# every few milliseconds costs nothing measurable and changes no behaviour the
# handler can see.
sdk_state._STOP_SIGNAL_POLL_SECONDS = settings.DURABLE_SDK_STOP_POLL_SECONDS


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


@dataclass
class LambdaContext:
    """What a handler's second argument offers on Lambda (``types.py::LambdaContext``)."""

    aws_request_id: str
    function_name: str | None = None
    function_version: str | None = None
    invoked_function_arn: str | None = None
    tenant_id: str | None = None
    log_group_name: str | None = None
    log_stream_name: str | None = None
    memory_limit_in_mb: str | None = None
    client_context: Any | None = None
    identity: Any | None = None
    remaining_millis: int = field(default=900_000)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis

    def log(self, msg: str) -> None:
        logger.info("%s", msg)


class Invoker:
    """One worker's handler runner. Not thread-safe: one per worker thread or process."""

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker or default_worker_name()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-db")
        self._client = DatabaseServiceClient(self._db_thread)

    def close(self) -> None:
        self._db_thread.submit(connections.close_all).result()
        self._db_thread.shutdown(wait=True)

    def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self._db_thread.submit(fn, *args, **kwargs).result()

    def run_execution(self, execution_id: int) -> int:
        """Run invocations of the execution while one is due now; return how many ran."""
        count = 0
        while True:
            invocation = self._db(services.invocation_begin, execution_id, worker=self.worker)
            if invocation is None:
                return count
            self._run_once(invocation)
            count += 1

    def _run_once(self, invocation: services.InvocationInput) -> None:
        renewer = _LeaseRenewer(self, invocation)
        renewer.start()
        output: Any = None
        raised: dict[str, Any] | None = None
        try:
            handler = load_handler(invocation.handler)
            output = handler(self._event(invocation), self._context(invocation))
        except Exception as exc:  # a Lambda function error: retried with backoff
            logger.warning("invocation %s of %s raised: %r", invocation.invocation, invocation.arn, exc)
            raised = ErrorObject.from_exception(exc).to_dict()
        finally:
            renewer.stop()
        self._db(
            services.invocation_finish,
            invocation.execution_id,
            invocation.invocation,
            output=output,
            raised=raised,
        )

    def _event(self, invocation: services.InvocationInput) -> DurableExecutionInvocationInputWithClient:
        return DurableExecutionInvocationInputWithClient(
            durable_execution_arn=invocation.arn,
            checkpoint_token=invocation.token,
            initial_execution_state=InitialExecutionState(
                operations=[Operation.from_dict(op) for op in invocation.operations],
                next_marker=invocation.next_marker,
            ),
            updated_operation_ids=invocation.updated_operation_ids,
            service_client=self._client,
        )

    @staticmethod
    def _context(invocation: services.InvocationInput) -> LambdaContext:
        return LambdaContext(
            aws_request_id=invocation.request_id,
            function_name=invocation.function_name,
            function_version=str(invocation.function_version),
            invoked_function_arn=invocation.arn.split("/durable-execution/")[0],
            tenant_id=invocation.tenant_id or None,
        )

    def run_plain_invoke(self, execution_id: int, operation_id: str) -> None:
        """Call a plain (non-durable) chained-invoke target once and record its outcome."""
        op = self._db(services.plain_invoke_claim, execution_id, operation_id)
        if op is None:
            return
        result, error = self._call_plain(op.invoke_function_name, op.input_payload, op.invoke_tenant_id)
        self._db(services.plain_invoke_complete, execution_id, operation_id, result=result, error=error)

    def _call_plain(
        self, reference: str, payload: str | None, tenant_id: str
    ) -> tuple[str | None, dict[str, Any] | None]:
        from executions.functions import function_resolve

        try:
            function: Function = self._db(lambda: function_resolve(reference)[0])
            handler = load_handler(function.handler)
            event = json.loads(payload) if payload else None
            context = LambdaContext(
                aws_request_id=str(os.urandom(8).hex()),
                function_name=function.name,
                function_version=str(function.version),
                invoked_function_arn=function_arn(function),
                tenant_id=tenant_id or None,
            )
            return json.dumps(handler(event, context)), None
        except Exception as exc:  # the target's error is the operation's error
            return None, ErrorObject.from_exception(exc).to_dict()


class _LeaseRenewer:
    """Extends the lease every third of its length while the handler runs."""

    def __init__(self, invoker: Invoker, invocation: services.InvocationInput) -> None:
        self._invoker = invoker
        self._invocation = invocation
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="durable-lease")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        interval = settings.DURABLE_LEASE_SECONDS / 3
        while not self._stopped.wait(interval):
            renewed = self._invoker._db(
                services.lease_renew,
                self._invocation.execution_id,
                self._invocation.invocation,
                self._invoker.worker,
            )
            if not renewed:
                logger.warning("lease lost for %s", self._invocation.arn)
                return
