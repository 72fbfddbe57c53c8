"""The request-body limit: a body above ``server.max_request_bytes`` gets 413 before any route
reads it — whether it announces its size (``Content-Length``) or not (``Transfer-Encoding:
chunked``). File uploads (``PUT /uploads/<id>/files/<path>``, ``PUT /datastores/<name>/files/<path>``)
stream to storage instead and are held to ``server.max_upload_bytes`` by their routes.

JSON bodies are also checked for text that cannot be stored or served back — a lone UTF-16
surrogate escape such as ``"\ud800"`` — and refused with 400 naming where it is, before any route
sees them (a job stored with one answered 500 on every list for every user).

A pure ASGI middleware, so it sees the raw ``receive`` channel: a chunked body is read up to the
limit (never more) and handed to the application as it came.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_PATH = re.compile(r"/datastores/[^/]+/files/.+|/uploads/[^/]+/files/.+")
LIMIT_SETTING = "server.max_request_bytes (BATCHPOINT_SERVER__MAX_REQUEST_BYTES)"


def is_upload(method: str, path: str) -> bool:
    """The upload routes, which stream and have their own limit (``server.max_upload_bytes``)."""
    return method == "PUT" and UPLOAD_PATH.fullmatch(path) is not None


def too_large_body(limit: int, size: int | None) -> bytes:
    shown = f"of {size} bytes" if size is not None else f"of more than {limit} bytes"
    message = (f"request body {shown} exceeds the limit of {limit} bytes ({LIMIT_SETTING}); send a smaller "
               "body; large files go through the upload area (the CLI and SDK upload local paths for you)")
    return json.dumps({"error": {"code": "payload_too_large", "message": message}}).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_upload(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        length = headers.get(b"content-length")
        is_json = b"json" in headers.get(b"content-type", b"")
        if length is not None:
            if length.strip().isdigit() and int(length) > self.limit:
                await _refuse(send, too_large_body(self.limit, int(length)), 413)
                return
            if not is_json:
                await self.app(scope, receive, send)  # the server reads exactly Content-Length bytes
                return
        elif b"transfer-encoding" not in headers:  # no body at all
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the application see it
            size += len(message.get("body", b""))
            if size > self.limit:
                await _refuse(send, too_large_body(self.limit, None), 413)
                return
            if not message.get("more_body", False):
                break
        if is_json:
            where = lone_surrogate(b"".join(m.get("body", b"") for m in messages))
            if where is not None:
                await _refuse(send, _bad_text(where), 400)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(body: bytes) -> str | None:
    """The JSON path of the first string holding a lone UTF-16 surrogate, or None. A quick scan
    for ``\\uD800``-``\\uDFFF`` escapes first; only a body that has one is parsed."""
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers that
    return _find_surrogate(doc, "body")


def _find_surrogate(value: Any, path: str) -> str | None:
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str) and not _encodable(item):
            return where
        if isinstance(item, dict):
            for key, inner in item.items():
                if not _encodable(key):
                    return f"a key of {where}"
                stack.append((inner, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_text(where: str) -> bytes:
    message = (f"{where[:200]} holds a lone UTF-16 surrogate (an escape like \\ud800 without its pair), which is "
               "not text that can be stored or shown; send valid Unicode (UTF-8) text")
    return json.dumps({"error": {"code": "validation_error", "message": message}}).encode()


async def _refuse(send: Send, body: bytes, status: int) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
