"""The OpenAPI document says what the server takes and answers.

* Answers: besides each route's success, every operation may answer the error body
  ``{"error": {"code", "message", "details"}}`` with the statuses below (FastAPI's own 422 is not
  used: request-shape errors are 400 here).
* Request bodies: the routes read their bodies themselves (so that a bad field gets the server's own
  400 naming it, not FastAPI's 422), which leaves FastAPI to call them free objects. :data:`BODIES`
  names the schema of each: the entity's own pydantic model (``PATCH``: the same, every field
  optional — a deep merge), the spec's invoke body, and an upload's manifest.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from batchpoint import entities as E

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
_INPUT = {
    "type": "object",
    "required": ["Uri"],
    "properties": {
        "JobInputType": {"type": "string", "enum": ["UriFolder", "UriFile"],
                         "description": "matched without regard to case or underscores"},
        "Uri": {"type": "string", "minLength": 1,
                "description": "azureml://datastores/<name>/paths/<path>, azureml:<asset>:<version>, a storage URL"},
    },
}
INVOKE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["properties"],
    "description": "the spec's invoke body; keys are matched without regard to case or underscores",
    "properties": {"properties": {
        "type": "object",
        "required": ["InputData"],
        "additionalProperties": False,
        "properties": {
            "InputData": {"type": "object", "minProperties": 1, "additionalProperties": _INPUT},
            "OutputData": {"type": "object", "maxProperties": 1, "properties": {"score": {
                "type": "object", "required": ["Uri"],
                "properties": {"JobOutputType": {"type": "string", "enum": ["UriFolder", "UriFile"]},
                               "Uri": {"type": "string", "minLength": 1}}}}},
            "DeploymentName": {"type": "string"},
            "JobName": {"type": "string"},
            "ExperimentName": {"type": "string", "description": "default: the endpoint's name"},
            "OutputFileName": {"type": "string"},
            "Description": {"type": "string"},
            "Settings": {"type": "object", "description": "deployment settings to override for this job"},
        },
    }},
}
UPLOAD_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["name", "type", "files"],
    "properties": {
        "name": {"type": "string"},
        "type": {"type": "string", "enum": ["uri_file", "uri_folder"]},
        "files": {"type": "array", "items": {
            "type": "object", "required": ["path", "size", "sha256"],
            "properties": {"path": {"type": "string"}, "size": {"type": "integer", "minimum": 0},
                           "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    },
}
#: (method, path) → the body's schema: an entity (``partial``: every field optional) or a JSON schema
BODIES: dict[tuple[str, str], type[BaseModel] | dict[str, Any]] = {
    ("put", "/datastores/{name}"): E.Datastore,
    ("post", "/data/{name}/versions"): E.Data,
    ("post", "/models/{name}/versions"): E.Model,
    ("put", "/computes/{name}"): E.AmlCompute,
    ("put", "/batchEndpoints/{name}"): E.BatchEndpoint,
    ("patch", "/batchEndpoints/{name}"): E.BatchEndpoint,
    ("put", "/batchEndpoints/{endpoint}/deployments/{name}"): E.BatchDeployment,
    ("patch", "/batchEndpoints/{endpoint}/deployments/{name}"): E.BatchDeployment,
    ("post", "/batchEndpoints/{name}/invoke"): INVOKE_BODY,
    ("post", "/uploads"): UPLOAD_BODY,
}
#: (method, path) → the media type of its success answer, where it is not JSON
MEDIA: dict[tuple[str, str], str] = {
    ("get", "/datastores/{name}/files/{path}"): "application/octet-stream",
    ("get", "/jobs/{name}/outputs/{output_name}/files/{path}"): "application/octet-stream",
    ("get", "/jobs/{name}/logs/{log_name}"): "text/plain",
    ("get", "/jobs/{name}/events/stream"): "text/event-stream",
}
OPEN = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def describe_errors(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so every operation lists the error answers it may give."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                body = BODIES.get((method, path))
                if body is not None:
                    operation["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": _body_schema(body, components, partial=method == "patch")}}}
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                media = MEDIA.get((method, path))
                if media is not None:
                    responses["200"] = {"description": responses.get("200", {}).get("description", "OK"),
                                        "content": {media: {"schema": {"type": "string"}}}}
                if method == "head":  # an answer without a body: 200 it exists, 404 it does not
                    operation["responses"] = {"200": {"description": "the file or folder exists"},
                                              "404": {"description": "nothing at that path"},
                                              **{k: {"description": v} for k, v in ERRORS.items() if k != "404"}}
                    continue
                for status, text in ERRORS.items():
                    if path in OPEN and status in ("401", "403"):
                        continue
                    responses.setdefault(status, {"description": text,
                                                  "content": {"application/json": {"schema": ERROR_BODY}}})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _body_schema(body: type[BaseModel] | dict[str, Any], components: dict[str, Any], partial: bool) -> dict[str, Any]:
    """The schema of a request body; an entity's nested models go to ``components/schemas``."""
    if isinstance(body, dict):
        return body
    schema = body.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    name = f"{body.__name__}Update" if partial else body.__name__
    # the names in the URL fill these in (a body may leave them out, but must not disagree)
    schema["required"] = [f for f in schema.get("required", []) if f not in ("name", "endpoint_name")]
    if not schema["required"]:
        del schema["required"]
    if partial:
        schema = {**schema, "title": name, "description": "the fields to change; nested objects are merged"}
        schema.pop("required", None)
    components[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}
