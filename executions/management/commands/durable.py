"""``manage.py durable``: the operator CLI and the production processes.

Every subcommand is a thin call into ``executions`` services or selectors;
errors print as ``Code: message`` and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import operator, services
from executions.api import access_keys
from executions.audit import Actor
from executions.engine.errors import ServiceError
from executions.engine.functions import parse_environment_lines
from executions.models import Execution, ExecutionStatus, Function, Operation
from executions.queries import selectors

Handler = Callable[[argparse.Namespace], Any]


class Command(BaseCommand):
    help = "Durable Console: functions, executions, callbacks, and the worker/scheduler processes."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=argparse.ArgumentParser)

        functions = sub.add_parser("functions", help="Manage registered functions")
        fsub = functions.add_subparsers(dest="functions_command", required=True)
        register = fsub.add_parser("register", help="Register or update a function")
        register.add_argument("name")
        register.add_argument("handler", help="module.path:attribute")
        register.add_argument("--plain", action="store_true", help="A plain (non-durable) function")
        register.add_argument("--description", default="")
        register.add_argument(
            "--timeout-seconds", type=int, metavar="N", help="Lambda Timeout per invocation, 1-900 s"
        )
        register.add_argument("--memory-mb", type=int, metavar="N", help="Lambda MemorySize, 128-10240 MB")
        register.add_argument(
            "--env",
            action="append",
            metavar="KEY=VALUE",
            help="An environment variable; repeat for more. Replaces the whole set; omit to keep it",
        )
        register.add_argument("--clear-env", action="store_true", help="Remove every environment variable")
        register.add_argument(
            "--execution-timeout", type=int, metavar="N", help="Durable execution timeout in seconds"
        )
        register.add_argument("--timeout", type=int, help="Deprecated: use --execution-timeout")
        register.add_argument(
            "--label-field",
            metavar="KEY",
            help="The input field that labels each execution in the console (order_id, or "
            'customer.id for a nested one); "" for none; omit to keep it',
        )
        register.set_defaults(run=self.functions_register)
        listing = fsub.add_parser("list", help="List registered functions")
        listing.set_defaults(run=self.functions_list)

        start = sub.add_parser("start", help="Start an execution; prints its ARN")
        start.add_argument("function")
        start.add_argument("--input", default="{}", help="JSON input")
        start.add_argument("--name", help="Execution name (idempotency key)")
        start.add_argument("--wait", type=float, metavar="SECONDS", help="Block until it ends")
        start.set_defaults(run=self.start)

        describe = sub.add_parser("describe", help="Execution and operations as JSON")
        describe.add_argument("arn")
        describe.set_defaults(run=self.describe)
        history = sub.add_parser("history", help="History events as JSON")
        history.add_argument("arn")
        history.set_defaults(run=self.history)

        callback = sub.add_parser("callback", help="Complete or heartbeat a callback")
        csub = callback.add_subparsers(dest="callback_command", required=True)
        succeed = csub.add_parser("succeed")
        succeed.add_argument("callback_id")
        succeed.add_argument("--result", default="", help="Raw result string")
        succeed.set_defaults(run=self.callback_succeed)
        fail = csub.add_parser("fail")
        fail.add_argument("callback_id")
        fail.add_argument("--error-type")
        fail.add_argument("--error-message")
        fail.set_defaults(run=self.callback_fail)
        heartbeat = csub.add_parser("heartbeat")
        heartbeat.add_argument("callback_id")
        heartbeat.set_defaults(run=self.callback_heartbeat)

        stop = sub.add_parser("stop", help="Stop an execution")
        stop.add_argument("arn")
        stop.add_argument("--reason", default="")
        stop.set_defaults(run=self.stop)
        redrive = sub.add_parser(
            "redrive", help="Run a FAILED/TIMED_OUT execution again from its last good checkpoint"
        )
        redrive.add_argument("arn")
        redrive.add_argument("--reason", default="")
        redrive.add_argument(
            "--rerun-interrupted",
            action="store_true",
            help="Also run again the interrupted AT_MOST_ONCE steps and lost plain calls, which may "
            "have taken effect already (without it they stay failed and the handler decides)",
        )
        redrive.set_defaults(run=self.redrive)
        rerun = sub.add_parser("rerun", help="Start a new execution with the same (or another) input")
        rerun.add_argument("arn")
        rerun.add_argument("--input", help="JSON input (default: the original's)")
        rerun.set_defaults(run=self.rerun)
        for name, run in (("pause", self.pause), ("resume", self.resume)):
            action = sub.add_parser(name, help=f"{name.capitalize()} an execution")
            action.add_argument("arn")
            action.set_defaults(run=run)

        worker = sub.add_parser("worker", help="Run a Celery worker (production)")
        worker.add_argument("--concurrency", type=int, default=2)
        worker.add_argument("--loglevel", default="warning")
        worker.add_argument("--pool", default="prefork", help="Celery pool: prefork, solo, threads")
        worker.set_defaults(run=self.worker)
        scheduler = sub.add_parser("scheduler", help="Run the scheduler loop (production)")
        scheduler.set_defaults(run=self.scheduler)
        serve = sub.add_parser("serve", help="Web server (+ embedded worker and scheduler)")
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, default=8000)
        serve.add_argument(
            "--no-embedded",
            action="store_true",
            help="Web only; workers and scheduler run as their own processes",
        )
        serve.set_defaults(run=self.serve)
        exporter = sub.add_parser(
            "metrics-server",
            help="Serve this host's processes' Prometheus metrics (for hosts without a web process)",
        )
        exporter.add_argument("--host", default="0.0.0.0")
        exporter.add_argument("--port", type=int, default=9464)
        exporter.set_defaults(run=self.metrics_server)
        demo = sub.add_parser("demo-setup", help="Register demo functions; create the admin once")
        demo.set_defaults(run=self.demo_setup)

        keys = sub.add_parser("keys", help="Access keys for the Lambda-compatible API")
        ksub = keys.add_subparsers(dest="keys_command", required=True)
        create = ksub.add_parser("create", help="Issue a key; prints it as JSON (the only time)")
        create.add_argument("--description", default="")
        create.add_argument(
            "--user",
            help="Username the key belongs to; it acts with their groups' permissions. "
            "Without it: the deployment's admin key (every operation)",
        )
        create.set_defaults(run=self.keys_create)
        klist = ksub.add_parser("list", help="List keys (never their secrets)")
        klist.set_defaults(run=self.keys_list)
        revoke = ksub.add_parser("revoke", help="Revoke a key; requests signed with it are refused")
        revoke.add_argument("access_key_id")
        revoke.set_defaults(run=self.keys_revoke)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        try:
            options["run"](namespace)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc

    def emit(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, indent=2, default=str))

    # --- functions -----------------------------------------------------------------
    def functions_register(self, options: argparse.Namespace) -> None:
        function = operator.function_save(
            Actor.cli(),
            name=options.name,
            handler=options.handler,
            durable=not options.plain,
            description=options.description,
            execution_timeout=self._execution_timeout(options),
            timeout_seconds=options.timeout_seconds,
            memory_mb=options.memory_mb,
            environment=_environment(options),
            label_field=options.label_field,
        )
        self.stdout.write(
            f"{function.name} v{function.version} -> {function.handler} "
            f"({function.timeout_seconds} s, {function.memory_mb} MB, "
            f"{len(function.environment)} environment variables)"
        )

    def _execution_timeout(self, options: argparse.Namespace) -> int | None:
        """``--execution-timeout``, or the old ``--timeout`` (kept one release) with a warning."""
        if options.timeout is None:
            return options.execution_timeout
        if options.execution_timeout is not None:
            raise CommandError(
                "--timeout is the deprecated name of --execution-timeout: give only the latter"
            )
        self.stderr.write(
            "--timeout is deprecated and will be removed: it sets the execution timeout, so use "
            "--execution-timeout (--timeout-seconds is the Lambda timeout of each invocation)"
        )
        return options.timeout

    def functions_list(self, options: argparse.Namespace) -> None:
        for function in Function.objects.all():
            kind = "durable" if function.durable else "plain"
            state = "" if function.enabled else " (disabled)"
            limits = f"{function.timeout_seconds}s\t{function.memory_mb}MB"
            self.stdout.write(
                f"{function.name}\tv{function.version}\t{kind}\t{limits}\t{function.handler}{state}"
            )

    # --- executions --------------------------------------------------------------------
    def start(self, options: argparse.Namespace) -> None:
        started = operator.start(Actor.cli(), options.function, options.input, name=options.name)
        arn = started.execution.arn
        if options.wait is None:
            self.stdout.write(arn)
            return
        self.stderr.write(arn)
        execution = _wait_for_end(started.execution.pk, options.wait)
        outcome = {"Status": execution.status, "Result": execution.result, "Error": execution.error}
        self.stdout.write(json.dumps(outcome))
        if execution.status != ExecutionStatus.SUCCEEDED:
            sys.exit(1)

    def describe(self, options: argparse.Namespace) -> None:
        execution = selectors.execution_get(options.arn)
        self.emit(
            {
                "Execution": selectors.execution_describe(execution),
                "Operations": selectors.execution_operations(execution),
            }
        )

    def history(self, options: argparse.Namespace) -> None:
        execution = selectors.execution_get(options.arn)
        events: list[dict[str, Any]] = []
        marker = None
        while True:
            page = selectors.execution_history(execution, max_items=1000, marker=marker)
            events += page["Events"]
            if not (marker := page.get("NextMarker")):
                break
        self.emit({"Events": events})

    def callback_succeed(self, options: argparse.Namespace) -> None:
        operator.callback_succeed(Actor.cli(), options.callback_id, options.result)
        self.stdout.write("callback succeeded")

    def callback_fail(self, options: argparse.Namespace) -> None:
        error = {
            key: value
            for key, value in (("ErrorType", options.error_type), ("ErrorMessage", options.error_message))
            if value is not None
        }
        operator.callback_fail(Actor.cli(), options.callback_id, error or None)
        self.stdout.write("callback failed")

    def callback_heartbeat(self, options: argparse.Namespace) -> None:
        services.callback_heartbeat(options.callback_id)
        self.stdout.write("heartbeat recorded")

    def stop(self, options: argparse.Namespace) -> None:
        stopped_at = operator.stop(Actor.cli(), options.arn, options.reason)
        self.stdout.write(f"stopped at {stopped_at.isoformat()}")

    def redrive(self, options: argparse.Namespace) -> None:
        accept = options.rerun_interrupted
        plan = operator.redrive(Actor.cli(), options.arn, options.reason, rerun_interrupted=accept).plan
        self.stdout.write(f"redriven; operations that run again: {_op_names(plan.rerun)}")
        self.stdout.write(f"replayed from checkpoints: {len(plan.replayed)}; left open: {len(plan.resumed)}")
        if plan.interrupted and accept:
            self.stdout.write(f"interrupted, run again as accepted: {_op_names(plan.interrupted)}")
        elif plan.interrupted:
            self.stdout.write(
                f"interrupted, may have run, kept failed: {_op_names(plan.interrupted)} "
                "(the handler gets the same error; --rerun-interrupted runs them again)"
            )

    def rerun(self, options: argparse.Namespace) -> None:
        self.stdout.write(operator.rerun(Actor.cli(), options.arn, options.input).arn)

    def pause(self, options: argparse.Namespace) -> None:
        operator.pause(Actor.cli(), options.arn)
        self.stdout.write("paused")

    def resume(self, options: argparse.Namespace) -> None:
        operator.resume(Actor.cli(), options.arn)
        self.stdout.write("resumed")

    # --- processes -----------------------------------------------------------------------
    def worker(self, options: argparse.Namespace) -> None:
        if not settings.CELERY_BROKER_URL:
            raise CommandError("CELERY_BROKER_URL is not set; `durable serve` runs embedded workers")
        # Imported by the one subcommand that needs it: every other CLI call starts faster
        # without loading Celery, uvicorn or the workers.
        from durable_console.celery import run_worker
        from durable_console.logs import json_format
        from executions import metrics

        # Each thread (or prefork child) runs one handler at a time: the busy ratio's denominator.
        metrics.declare_worker_threads(1 if options.pool == "solo" else options.concurrency)
        # Restarted in this process if it exits on its own (see run_worker); the worker needs
        # no events between workers (gossip, mingle, heartbeat): the database coordinates them.
        code = run_worker(
            [
                f"--concurrency={options.concurrency}",
                f"--loglevel={options.loglevel}",
                f"--pool={options.pool}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            quiet=json_format(),
        )
        if code:
            sys.exit(code)

    def scheduler(self, options: argparse.Namespace) -> None:
        # Imported by the one subcommand that needs it: every other CLI call starts faster
        # without loading Celery, uvicorn or the workers.
        from durable_console.logs import announce
        from executions.workers.scheduler import run_forever

        stop = _stop_on_signals()
        announce("scheduler running; Ctrl-C stops it")
        run_forever(stop)

    def serve(self, options: argparse.Namespace) -> None:
        # Imported by the one subcommand that needs it: every other CLI call starts faster
        # without loading Celery, uvicorn or the workers.
        from durable_console.serve import serve

        serve(host=options.host, port=options.port, embedded=not options.no_embedded)

    def metrics_server(self, options: argparse.Namespace) -> None:
        from durable_console.logs import announce
        from executions import metrics

        if not settings.DURABLE_METRICS:
            raise CommandError("metrics are switched off (DURABLE_METRICS=0)")
        stop = _stop_on_signals()
        server, _ = metrics.serve_host(options.port, options.host)
        announce(f"metrics on http://{options.host}:{server.server_port}/metrics; Ctrl-C stops it")
        stop.wait()
        server.shutdown()

    def demo_setup(self, options: argparse.Namespace) -> None:
        # Imported by the one subcommand that needs it: every other CLI call starts faster
        # without loading Celery, uvicorn or the workers.
        from durable_console.bootstrap import demo_setup

        for line in demo_setup():
            self.stdout.write(line)

    # --- API access keys ---------------------------------------------------------------------
    def keys_create(self, options: argparse.Namespace) -> None:
        user = None
        if options.user:
            user = get_user_model().objects.filter(username=options.user).first()
            if user is None:
                raise CommandError(f"No user named {options.user!r}")
        issued = access_keys.key_create(description=options.description, user=user)
        self.emit(issued.as_json())

    def keys_list(self, options: argparse.Namespace) -> None:
        for key in access_keys.key_list():
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
            acts_as = access_keys.key_acts_as(key)
            self.stdout.write(f"{key.access_key_id}\t{state}\t{used}\t{acts_as}\t{key.description}")

    def keys_revoke(self, options: argparse.Namespace) -> None:
        key = access_keys.key_revoke(options.access_key_id)
        self.stdout.write(f"{key.access_key_id} revoked at {key.revoked_at.isoformat()}")


def _op_names(ops: list[Operation]) -> str:
    return ", ".join(op.name or op.operation_id[:12] for op in ops) or "none"


def _environment(options: argparse.Namespace) -> dict[str, str] | None:
    """The variables ``--env`` / ``--clear-env`` ask for; None keeps the function's current set."""
    if options.clear_env and options.env:
        raise CommandError("Give --env or --clear-env, not both")
    if options.clear_env:
        return {}
    return None if options.env is None else parse_environment_lines(options.env)


def _wait_for_end(execution_id: int, timeout: float) -> Execution:
    deadline = time.monotonic() + timeout
    while True:
        execution = Execution.objects.get(pk=execution_id)
        if execution.is_terminal:
            return execution
        if time.monotonic() > deadline:
            raise CommandError(f"Execution still {execution.status} after {timeout:g} s: {execution.arn}")
        time.sleep(0.1)  # polling the database row; the wait has a deadline


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
