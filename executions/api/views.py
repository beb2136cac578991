"""The Lambda-compatible REST API: one APIView per operation (docs/api.md, Operations).

Each view parses and validates, calls one service or selector, and renders.
The engine's selectors already build the wire shapes, so there are no output
serializers; timestamps go out as epoch seconds (``as_epoch_seconds``).
Bodies are read raw (``parser_classes = []``): the signature covers the exact
bytes, and SendDurableExecutionCallbackSuccess's body is a raw blob.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connections
from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import metrics, operator, services
from executions.api import invoke as invocations_api
from executions.api.auth import HasAccessKey, KeyMayRunOperation, SigV4Authentication, read_body
from executions.api.errors import (
    RequestTooLarge,
    UnknownOperation,
    aws_exception_handler,
    request_id,
)
from executions.api.serializers import (
    BASE64_PATTERN,
    checkpoint_token_field,
    client_token_field,
    error_object,
    json_object_body,
    marker_field,
    max_items_field,
    parse_json_body,
    validated,
)
from executions.audit import Actor
from executions.engine.errors import InvalidParameterValue
from executions.engine.validation import TENANT_PATTERN
from executions.engine.wire import as_epoch_seconds
from executions.queries import listing, selectors

SYNC_INVOKE_MAX_BYTES = 6 * 1024 * 1024
ASYNC_INVOKE_MAX_BYTES = 1024 * 1024
# Checkpoints made over HTTP (the SDK's own client against this API): executions/metrics.py.
API_CHECKPOINTS = metrics.CheckpointRecorder("api")


class AlwaysJson(BaseContentNegotiation):
    """AWS clients send no useful Accept header; every answer is JSON."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class LambdaApiView(APIView):
    """SigV4-authenticated (so CSRF does not apply), AWS error shapes, raw bodies.

    ``operations`` names the API operation each HTTP method runs; the key's owner needs
    that operation's permissions (``executions.access.API_OPERATION_PERMISSIONS``).
    """

    authentication_classes = [SigV4Authentication]
    permission_classes = [HasAccessKey, KeyMayRunOperation]
    operations: dict[str, str] = {}
    parser_classes: list[Any] = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AlwaysJson

    def get_exception_handler(self) -> Any:
        return aws_exception_handler

    def operation_for(self, method: str) -> str | None:
        # Django answers HEAD with the GET handler, so it needs what GET needs.
        return self.operations.get("GET" if method == "HEAD" else method)

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        began = time.perf_counter()
        status = 500  # unless a response comes back
        try:
            response = super().dispatch(request, *args, **kwargs)
            status = response.status_code
            return response
        finally:
            operation = self.operation_for(request.method) or "Unknown"
            metrics.api_request(operation, status, time.perf_counter() - began)
            # Under ASGI every request runs on a thread of its own that ends with it, so
            # a persistent connection is never reused; left open it lingers until the
            # garbage collector finds it. Under WSGI keep CONN_MAX_AGE's reuse.
            if hasattr(request, "scope"):
                connections.close_all()

    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["x-amzn-RequestId"] = request_id()
        return response


def _body(request: Request) -> bytes:
    return read_body(request._request)


def _epoch(value: Any) -> float:
    return as_epoch_seconds(value)


# --- functions ---------------------------------------------------------------------------------


class ListFunctionsApi(LambdaApiView):
    operations = {"GET": "ListFunctions"}

    class InputSerializer(serializers.Serializer):
        Marker = marker_field()
        MaxItems = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
        FunctionVersion = serializers.ChoiceField(choices=["ALL"], required=False)
        MasterRegion = serializers.CharField(required=False)

    def get(self, request: Request) -> Response:
        query = validated(self.InputSerializer, request.query_params)
        return Response(
            listing.functions_list(
                marker=query.get("Marker") or None,
                max_items=query.get("MaxItems"),
                all_versions=query.get("FunctionVersion") == "ALL",
            )
        )


class GetFunctionApi(LambdaApiView):
    operations = {"GET": "GetFunction"}

    class InputSerializer(serializers.Serializer):
        Qualifier = serializers.CharField(max_length=128, required=False)

    def get(self, request: Request, function_name: str) -> Response:
        query = validated(self.InputSerializer, request.query_params)
        return Response(listing.function_get(function_name, query.get("Qualifier")))


class InvokeApi(LambdaApiView):
    operations = {"POST": "Invoke"}

    class InputSerializer(serializers.Serializer):
        Qualifier = serializers.CharField(max_length=128, required=False)
        InvocationType = serializers.ChoiceField(
            choices=sorted(invocations_api.INVOCATION_TYPES), required=False
        )
        DurableExecutionName = serializers.RegexField(r"^[A-Za-z0-9_-]{1,64}$", required=False)
        TenantId = serializers.RegexField(TENANT_PATTERN, required=False)

    def post(self, request: Request, function_name: str) -> HttpResponse:
        headers = request.headers
        query = validated(
            self.InputSerializer,
            _present(
                Qualifier=request.query_params.get("Qualifier"),
                InvocationType=headers.get("X-Amz-Invocation-Type"),
                DurableExecutionName=headers.get("X-Amz-Durable-Execution-Name"),
                TenantId=headers.get("X-Amz-Tenant-Id"),
            ),
        )
        invocation_type = query.get("InvocationType", "RequestResponse")
        result = invocations_api.invoke(
            invocations_api.InvokeRequest(
                function=function_name,
                qualifier=query.get("Qualifier"),
                payload=_invoke_payload(_body(request), invocation_type),
                invocation_type=invocation_type,
                execution_name=query.get("DurableExecutionName"),
                tenant_id=query.get("TenantId", ""),
            )
        )
        return _invoke_response(result)


def _present(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}


def _invoke_payload(body: bytes, invocation_type: str) -> str:
    limit = ASYNC_INVOKE_MAX_BYTES if invocation_type == "Event" else SYNC_INVOKE_MAX_BYTES
    if len(body) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
    parse_json_body(body)  # Lambda refuses a payload that is not JSON before anything runs
    return body.decode()


def _invoke_response(result: invocations_api.InvokeResult) -> HttpResponse:
    response = HttpResponse(
        (result.payload or "").encode(),
        status=result.status_code,
        content_type="application/json",
    )
    response["X-Amz-Executed-Version"] = result.executed_version
    if result.execution_arn:
        response["X-Amz-Durable-Execution-Arn"] = result.execution_arn
    if result.function_error:
        response["X-Amz-Function-Error"] = result.function_error
    return response


class ListDurableExecutionsByFunctionApi(LambdaApiView):
    operations = {"GET": "ListDurableExecutionsByFunction"}

    class InputSerializer(serializers.Serializer):
        Qualifier = serializers.CharField(max_length=128, required=False)
        DurableExecutionName = serializers.RegexField(r"^[A-Za-z0-9_-]{1,64}$", required=False)
        Statuses = serializers.ListField(
            child=serializers.ChoiceField(choices=sorted(listing.EXECUTION_STATUSES)),
            required=False,
        )
        StartedAfter = serializers.DateTimeField(required=False)
        StartedBefore = serializers.DateTimeField(required=False)
        ReverseOrder = serializers.BooleanField(required=False, default=False)
        Marker = marker_field()
        MaxItems = max_items_field(1000)

    def get(self, request: Request, function_name: str) -> Response:
        query = validated(self.InputSerializer, request.query_params)
        return Response(
            listing.executions_by_function(
                listing.ExecutionFilter(
                    function=function_name,
                    qualifier=query.get("Qualifier"),
                    name=query.get("DurableExecutionName"),
                    statuses=tuple(query.get("Statuses") or ()),
                    started_after=query.get("StartedAfter"),
                    started_before=query.get("StartedBefore"),
                    oldest_first=query["ReverseOrder"],
                    marker=query.get("Marker") or None,
                    max_items=query.get("MaxItems"),
                )
            )
        )


# --- one execution ---------------------------------------------------------------------------------


class DurableExecutionApi(LambdaApiView):
    """GetDurableExecution (GET) and DeleteDurableExecution (DELETE) share one URL."""

    operations = {"GET": "GetDurableExecution", "DELETE": "DeleteDurableExecution"}

    class InputSerializer(serializers.Serializer):
        IncludeExecutionData = serializers.BooleanField(required=False, default=True)

    def get(self, request: Request, arn: str) -> Response:
        query = validated(self.InputSerializer, request.query_params)
        execution = selectors.execution_get(arn)
        return Response(selectors.execution_describe(execution, include_data=query["IncludeExecutionData"]))

    def delete(self, request: Request, arn: str) -> Response:
        deleted_at = operator.delete(api_actor(request), arn)
        return Response({"DeletionRequestTimestamp": _epoch(deleted_at)}, status=202)


class CheckpointApi(LambdaApiView):
    operations = {"POST": "CheckpointDurableExecution"}

    class InputSerializer(serializers.Serializer):
        CheckpointToken = checkpoint_token_field()
        Updates = serializers.ListField(child=serializers.DictField(), required=False)
        ClientToken = client_token_field()

    def post(self, request: Request, arn: str) -> Response:
        body = json_object_body(_body(request))
        data = validated(self.InputSerializer, body)
        # The engine validates each update (docs/api.md) before applying any.
        updates = body.get("Updates") or []
        began = time.perf_counter()
        response = services.checkpoint(
            arn, data["CheckpointToken"], updates, data.get("ClientToken"), ts=as_epoch_seconds
        )
        API_CHECKPOINTS.record(time.perf_counter() - began, updates)
        return Response(response)


class GetStateApi(LambdaApiView):
    operations = {"GET": "GetDurableExecutionState"}

    class InputSerializer(serializers.Serializer):
        CheckpointToken = checkpoint_token_field()
        Marker = marker_field()
        MaxItems = max_items_field(1000)

    def get(self, request: Request, arn: str) -> Response:
        query = validated(self.InputSerializer, request.query_params)
        return Response(
            services.get_state(
                arn,
                query["CheckpointToken"],
                query.get("Marker") or None,
                query.get("MaxItems"),
                ts=as_epoch_seconds,
            )
        )


class HistoryApi(LambdaApiView):
    operations = {"GET": "GetDurableExecutionHistory"}

    class InputSerializer(serializers.Serializer):
        IncludeExecutionData = serializers.BooleanField(required=False, default=True)
        MaxItems = max_items_field(1000)
        Marker = marker_field()
        ReverseOrder = serializers.BooleanField(required=False, default=False)

    def get(self, request: Request, arn: str) -> Response:
        query = validated(self.InputSerializer, request.query_params)
        execution = selectors.execution_get(arn)
        return Response(
            selectors.execution_history(
                execution,
                include_data=query["IncludeExecutionData"],
                max_items=query.get("MaxItems"),
                marker=query.get("Marker") or None,
                reverse=query["ReverseOrder"],
            )
        )


def api_actor(request: Request) -> Actor:
    """The access key (and its owner, if any) behind a signed request, for the audit trail."""
    user = request.user if request.user.is_authenticated else None
    return Actor.api(request.auth.access_key_id, user)


class StopApi(LambdaApiView):
    operations = {"POST": "StopDurableExecution"}

    def post(self, request: Request, arn: str) -> Response:
        stopped_at = operator.stop(api_actor(request), arn, error=error_object(_body(request)))
        return Response({"StopTimestamp": _epoch(stopped_at)})


class PauseApi(LambdaApiView):
    operations = {"POST": "PauseDurableExecution"}

    class InputSerializer(serializers.Serializer):
        ClientToken = client_token_field()
        Reason = serializers.CharField(max_length=1024, required=False, allow_blank=True)
        ExecutionTimeoutPaused = serializers.BooleanField(required=False, default=False)

    def post(self, request: Request, arn: str) -> HttpResponse:
        data = validated(self.InputSerializer, json_object_body(_body(request)))
        operator.pause(
            api_actor(request), arn, data.get("Reason") or "", timeout_paused=data["ExecutionTimeoutPaused"]
        )
        return HttpResponse(status=202)


class ResumeApi(LambdaApiView):
    operations = {"POST": "ResumeDurableExecution"}

    class InputSerializer(serializers.Serializer):
        ClientToken = client_token_field()
        Reason = serializers.CharField(max_length=1024, required=False, allow_blank=True)

    def post(self, request: Request, arn: str) -> HttpResponse:
        data = validated(self.InputSerializer, json_object_body(_body(request)))
        operator.resume(api_actor(request), arn, data.get("Reason") or "")
        return HttpResponse(status=202)


# --- callbacks ----------------------------------------------------------------------------------------


def _callback_id(callback_id: str) -> str:
    validated(CallbackIdSerializer, {"CallbackId": callback_id})
    return callback_id


class CallbackIdSerializer(serializers.Serializer):
    CallbackId = serializers.RegexField(
        BASE64_PATTERN, max_length=1024, error_messages={"invalid": "must be standard base64"}
    )


class CallbackSuccessApi(LambdaApiView):
    operations = {"POST": "SendDurableExecutionCallbackSuccess"}

    def post(self, request: Request, callback_id: str) -> Response:
        # The body is the raw Result blob, not JSON (docs/api.md pitfall 9).
        operator.callback_succeed(api_actor(request), _callback_id(callback_id), _body(request))
        return Response({})


class CallbackFailureApi(LambdaApiView):
    operations = {"POST": "SendDurableExecutionCallbackFailure"}

    def post(self, request: Request, callback_id: str) -> Response:
        operator.callback_fail(api_actor(request), _callback_id(callback_id), error_object(_body(request)))
        return Response({})


class CallbackHeartbeatApi(LambdaApiView):
    operations = {"POST": "SendDurableExecutionCallbackHeartbeat"}

    def post(self, request: Request, callback_id: str) -> Response:
        services.callback_heartbeat(_callback_id(callback_id))
        return Response({})


# --- what matched no operation ------------------------------------------------------------------------


class MalformedArnApi(LambdaApiView):
    """A durable-executions path whose ARN does not have the model's shape."""

    def _refuse(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise InvalidParameterValue(
            "DurableExecutionArn must look like arn:aws:lambda:REGION:ACCOUNT:function:NAME:"
            "VERSION/durable-execution/NAME/ID"
        )

    get = post = delete = put = _refuse


class UnknownOperationApi(LambdaApiView):
    def _refuse(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise UnknownOperation(f"No operation matches {request.method} {request.path}")

    get = post = delete = put = patch = _refuse
