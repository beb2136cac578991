"""Input fields shared by the API's serializers, with the model's patterns (docs/api.md, Validation).

botocore checks only required fields and minimums, so lengths and patterns are
enforced here, before any service runs.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from executions.api.errors import InvalidRequestContent
from executions.engine.errors import InvalidParameterValue

BASE64_PATTERN = r"^[A-Za-z0-9+/]+={0,2}$"
CLIENT_TOKEN_PATTERN = r"^[\x21-\x7e]{1,64}$"


def checkpoint_token_field(**kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(
        BASE64_PATTERN,
        max_length=2048,
        error_messages={"invalid": "must be standard base64"},
        **kwargs,
    )


def client_token_field() -> serializers.RegexField:
    return serializers.RegexField(
        CLIENT_TOKEN_PATTERN,
        required=False,
        error_messages={"invalid": "must be 1-64 printable ASCII characters"},
    )


def max_items_field(maximum: int) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=maximum, required=False)


def marker_field() -> serializers.CharField:
    return serializers.CharField(max_length=4096, required=False, allow_blank=True)


class ErrorObjectSerializer(serializers.Serializer):
    """Lambda's ErrorObject; every field optional, absent stays absent."""

    ErrorMessage = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    ErrorType = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    ErrorData = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    StackTrace = serializers.ListField(child=serializers.CharField(trim_whitespace=False), required=False)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError({"Error": f"unknown field(s) {sorted(unknown)}"})
        return super().to_internal_value(data)


def parse_json_body(body: bytes) -> Any:
    """The JSON document in a request body; an empty body is an empty object."""
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from exc
    except RecursionError as exc:
        # A client error, not ours: answered as a 5xx, boto3 would send it again and again.
        raise InvalidRequestContent(
            "Could not parse request body into json: it is nested too deeply"
        ) from exc


def json_object_body(body: bytes) -> dict[str, Any]:
    document = parse_json_body(body)
    if not isinstance(document, dict):
        raise InvalidRequestContent("The request body must be a JSON object")
    return document


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Run a serializer; its errors become InvalidParameterValueException."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def error_object(body: bytes) -> dict[str, Any] | None:
    """An optional ErrorObject payload (Stop, SendCallbackFailure), kept exactly as sent."""
    document = parse_json_body(body)
    if document in ({}, None):
        return None
    if not isinstance(document, dict):
        raise InvalidParameterValue("Error must be a JSON object")
    validated(ErrorObjectSerializer, document)
    return document
