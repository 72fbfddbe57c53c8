"""The request-body limit: a body above ``server.max_request_bytes`` gets 413 before any route
reads it — whether it announces its size (``Content-Length``) or not (``Transfer-Encoding:
chunked``). File uploads (``PUT /datastores/<name>/files/<path>``) stream to storage instead and
are held to ``server.max_upload_bytes`` by their route.

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

UPLOAD_PATH = re.compile(r"/datastores/[^/]+/files/.+")
LIMIT_SETTING = "server.max_request_bytes (BATCHPOINT_SERVER__MAX_REQUEST_BYTES)"


def is_upload(method: str, path: str) -> bool:
    """The upload route, which streams and has its own limit (``server.max_upload_bytes``)."""
    return method == "PUT" and UPLOAD_PATH.fullmatch(path) is not None


def too_large_body(limit: int, size: int | None) -> bytes:
    shown = f"of {size} bytes" if size is not None else f"of more than {limit} bytes"
    message = (f"request body {shown} exceeds the limit of {limit} bytes ({LIMIT_SETTING}); send a smaller "
               "body, or upload large files with PUT /datastores/<name>/files/<path> and pass their path")
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
        if length is not None:
            if length.strip().isdigit() and int(length) > self.limit:
                await _refuse(send, too_large_body(self.limit, int(length)))
                return
            await self.app(scope, receive, send)  # the server reads exactly Content-Length bytes
            return
        if b"transfer-encoding" not in headers:  # no body at all
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
                await _refuse(send, too_large_body(self.limit, None))
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
