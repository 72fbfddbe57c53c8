"""Every error leaves the server as ``{"error": {"code", "message"}}`` with the status its class
fixes — never a stack trace. Request-shape errors become 400s that name the field."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from batchpoint.exceptions import BatchpointError

log = logging.getLogger("batchpoint.server")


def describe_validation(exc: PydanticValidationError | RequestValidationError, what: str = "request") -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        parts.append(f"{loc or what}: {msg}")
    return f"invalid {what}: " + "; ".join(parts)


class SafeJSONResponse(JSONResponse):
    """The server's JSON response: UTF-8 as usual, but text that cannot be encoded (a lone
    surrogate stored before such input was refused) is sent as a ``\\uXXXX`` escape instead of
    failing the whole response — one bad row never breaks a list for everyone."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


#: what an error quotes of a caller's value: a run of text without spaces longer than this (a 60 MiB
#: URI) is cut to its first QUOTE_CHARS characters + "…(N chars)"; a whole message to MESSAGE_CHARS
QUOTE_CHARS = 200
MESSAGE_CHARS = 4000
_LONG_RUN = re.compile(r"\S{%d,}" % (QUOTE_CHARS + 1))


def capped(value: Any) -> Any:
    """An error body's text with long quoted values cut (``QUOTE_CHARS``, ``MESSAGE_CHARS``)."""
    if isinstance(value, str):
        text = _LONG_RUN.sub(lambda m: f"{m.group()[:QUOTE_CHARS]}…({len(m.group())} chars)", value)
        return text if len(text) <= MESSAGE_CHARS else f"{text[:MESSAGE_CHARS]}…({len(text)} chars)"
    if isinstance(value, dict):
        return {k: capped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [capped(v) for v in value[:100]]
    return value


def error_response(exc: BatchpointError) -> JSONResponse:
    return JSONResponse(capped(exc.to_payload()), status_code=exc.status_code)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BatchpointError)
    async def _batchpoint(_: Request, exc: BatchpointError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": {"code": "validation_error", "message": describe_validation(exc)}}, 400)

    @app.exception_handler(PydanticValidationError)
    async def _pydantic(_: Request, exc: PydanticValidationError) -> JSONResponse:
        return JSONResponse({"error": {"code": "validation_error", "message": describe_validation(exc)}}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        if exc.status_code == 405 and headers.get("Allow"):
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
        return JSONResponse({"error": {"code": code, "message": message}}, exc.status_code, headers=headers or None)

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse({"error": {"code": "validation_error", "message": (
            "the request body is nested too deeply to read (JSON objects and arrays nested hundreds of levels); "
            "send a flatter body: the invoke body is {\"properties\": {\"InputData\": {...}}}")}}, 400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error_response(request, exc)


def allowed_methods(request: Request) -> str:
    """Every method some route of the app answers on this path (the router's own 405 names only the
    first route whose path matched, e.g. ``Allow: PUT`` for a path that also has GET and DELETE)."""
    path, methods = request.url.path, set()
    for route in _routes(request.app.router.routes):
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


def _routes(routes: Any) -> Any:
    """The app's routes, flat: an included router (FastAPI's ``_IncludedRouter``) lists its own."""
    for route in routes:
        nested = getattr(route, "effective_candidates", None)
        if callable(nested):
            yield from _routes(nested())
        else:
            yield route


def internal_error_response(request: Request, exc: Exception) -> JSONResponse:
    """A bug's 500: logged with its traceback, answered without one. Returned by the server's own
    middleware (see ``create_app``), so the connection stays open for the client's next request."""
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": {"code": "internal_error",
                   "message": f"the server failed on {request.method} {request.url.path} "
                              f"({exc.__class__.__name__}); see the server log"}},
        status_code=500,
    )
