"""The OpenAPI document says what the server answers: besides each route's success, every
operation may answer the error body ``{"error": {"code", "message", "details"}}`` with the
statuses below (FastAPI's own 422 is not used: request-shape errors are 400 here)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}},
    }},
}
ERRORS = {
    "400": "the request is not valid (the message names the field and what is valid)",
    "401": "no valid API key or token",
    "403": "the caller lacks the permission the message names",
    "404": "a resource the request names does not exist",
    "405": "the method is not allowed on this path (see the Allow header)",
    "409": "the request conflicts with what exists (a duplicate, a write-once file, an overlapping output)",
    "413": "the body is larger than the server accepts",
    "500": "a bug in the server (logged; never a traceback in the answer)",
    "502": "the storage service failed",
    "503": "the storage service or the server is unavailable; retry",
}
OPEN = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def describe_errors(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so every operation lists the error answers it may give."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status, text in ERRORS.items():
                    if path in OPEN and status in ("401", "403"):
                        continue
                    responses.setdefault(status, {"description": text,
                                                  "content": {"application/json": {"schema": ERROR_BODY}}})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
