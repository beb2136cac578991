"""Host a handler for Durable Console on another machine: ``python -m executions.workers.remote_runtime``.

A minimal stand-in for Lambda's runtime interface emulator, with the same
route (``POST /2015-03-31/functions/function/invocations``): it imports the
handler, calls it with the posted event and a Lambda-like context, and answers
with its output, or with Lambda's error payload and ``X-Amz-Function-Error``.
It needs no Django: only the handler's own packages. Point the SDK at the
server with ``AWS_ENDPOINT_URL_LAMBDA`` and an access key::

    AWS_ENDPOINT_URL_LAMBDA=http://console:8000 AWS_ACCESS_KEY_ID=... \\
    AWS_SECRET_ACCESS_KEY=... AWS_DEFAULT_REGION=us-east-1 \\
    python -m executions.workers.remote_runtime mymodule:handler --port 9000

then ``manage.py durable functions register NAME http://this-host:9000/2015-03-31/functions/function/invocations``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTE = "/2015-03-31/functions/function/invocations"


@dataclass
class RuntimeContext:
    aws_request_id: str
    function_name: str = "function"
    function_version: str = "$LATEST"
    invoked_function_arn: str = ""
    tenant_id: str | None = None

    def get_remaining_time_in_millis(self) -> int:
        return 900_000

    def log(self, msg: str) -> None:
        print(msg, flush=True)


def load(path: str) -> Callable[..., Any]:
    module_name, attribute = path.split(":")
    handler: Callable[..., Any] = getattr(importlib.import_module(module_name), attribute)
    return handler


def make_server(handler: Callable[..., Any], host: str, port: int) -> ThreadingHTTPServer:
    class Invocation(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?")[0] != ROUTE:
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            event = json.loads(self.rfile.read(length) or b"null")
            request_id = self.headers.get("Lambda-Runtime-Aws-Request-Id") or str(uuid.uuid4())
            try:
                body, error = json.dumps(handler(event, RuntimeContext(request_id))), False
            except Exception as exc:  # the caller sees Lambda's function-error shape
                body, error = json.dumps(_error_payload(exc)), True
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if error:
                self.send_header("X-Amz-Function-Error", "Unhandled")
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Invocation)


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(exc)[-5:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("handler", help="module.path:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    options = parser.parse_args()
    server = make_server(load(options.handler), options.host, options.port)
    print(f"serving {options.handler} on http://{options.host}:{server.server_port}{ROUTE}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
