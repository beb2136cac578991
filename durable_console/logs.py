"""Log formats: readable text (the default) or one JSON object per line (``DURABLE_LOG_FORMAT=json``).

With the JSON format everything a process writes is such a line: Python warnings
go through logging (``configure``), the Celery worker prints no banner, uvicorn
logs through the same handler, and the start-up notices are JSON too
(``announce``).

A JSON line always has ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message`` and ``pid``; where they apply, ``execution_arn``, ``invocation``,
``function`` and ``worker`` (``executions.log_context``), ``exception`` (the
formatted traceback) and, when traces are on, ``trace_id`` and ``span_id`` (the
execution's trace and the invocation's span, ``executions.tracing``). A
message with line breaks stays on one line (JSON escapes them), so a log
shipper reads one record per line.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.config
import os
from typing import Any

from executions import tracing
from executions.log_context import FIELDS


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in FIELDS:  # set on the record by executions.log_context.InvocationFilter
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        arn = entry.get("execution_arn")
        if arn and tracing.tracer() is not None:  # the ids the trace viewer shows
            entry["trace_id"] = format(tracing.trace_id(arn), "032x")
            if invocation := entry.get("invocation"):
                entry["span_id"] = format(tracing.invocation_span_id(arn, invocation), "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def json_format() -> bool:
    # Read from the environment, not settings: announce() runs in processes before and
    # after Django has its settings, and the setting is this variable in any case.
    return os.environ.get("DURABLE_LOG_FORMAT", "").strip().lower() == "json"


def configure(config: dict[str, Any]) -> None:
    """``settings.LOGGING_CONFIG``: Django's dictConfig, plus Python warnings as log records
    when lines must be JSON (a warning would otherwise be printed as text)."""
    logging.config.dictConfig(config)
    if json_format():
        logging.captureWarnings(True)


def announce(message: str) -> None:
    """A start-up or shut-down notice on standard output, in the log format in force."""
    if json_format():
        entry = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "durable_console",
            "message": message,
            "pid": os.getpid(),
        }
        message = json.dumps(entry, ensure_ascii=False)
    print(message, flush=True)
