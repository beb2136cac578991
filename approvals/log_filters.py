"""A logging filter that keeps the e-mail links' signed tokens out of log lines.

A token in ``/approvals/review/<token>/`` or ``/approvals/verify/<token>/`` acts for the person
it was sent to until it is used or expires. Django's request logger writes the path of every
4xx and 5xx response ("Not Found: /approvals/review/..."), so an expired or mistyped link, or
a scanner's probe, would otherwise leave a usable-looking token in the logs.

settings.LOGGING puts the filter on the console handler (every record that reaches it);
``ApprovalsConfig.ready`` also puts it on uvicorn's access logger, which has handlers of its
own and logs every path when uvicorn runs at INFO (``uvicorn durable_console.asgi:application``).
"""

from __future__ import annotations

import logging
import re

# approvals/urls.py mounted at /approvals/ (durable_console/urls.py).
LINK_TOKEN = re.compile(r"(/approvals/(?:review|verify)/)[^/\s?#\"']+")
REDACTED = "[redacted]"


def redact_links(text: str) -> str:
    return LINK_TOKEN.sub(rf"\g<1>{REDACTED}", text)


class RedactLinkTokens(logging.Filter):
    """Replaces link tokens in a record's message and arguments; never drops a record.

    Arguments are redacted one by one rather than merged into the message, so formatters
    that read them (uvicorn's access log unpacks its tuple) keep working.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_links(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        return True


def _redacted(value: object) -> object:
    return redact_links(value) if isinstance(value, str) else value
