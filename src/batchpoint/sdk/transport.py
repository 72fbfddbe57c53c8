"""HTTP to the server; server errors come back as the same ``batchpoint.exceptions`` class.

Transport retries (:data:`RETRY_DELAYS_S`): a request that never reached the server (connection
refused or timed out while connecting: a server restarting) is sent again, whatever its method. A
request that may have reached it — the connection dropped before the answer, or a 502/503/504 from
a proxy (not the server's own error answer: that one already says what failed, e.g. a storage account
it cannot reach, and repeating it would only make the user wait) — is sent again only when repeating it is harmless: GET, HEAD, PUT, DELETE, or a request
that carries a ``repeatability-request-id`` (invoke: :func:`repeatability_headers`), which is sent
again *unchanged*, so the server answers the repeat with the job the first attempt created. A
streamed body (an upload) is never sent twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx

from batchpoint.exceptions import ServerUnavailableError, error_from_payload

#: the pause before each transport retry
RETRY_DELAYS_S = (0.2, 0.5, 1.0)
RETRY_STATUSES = frozenset({502, 503, 504})
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
REPEATABILITY_HEADER = "repeatability-request-id"


def repeatability_headers(request_id: str | None = None) -> dict[str, str]:
    """The idempotency headers of one call (Azure's repeatable requests): a fresh id unless one is
    given, and when it was first sent. Re-sent as they are on every transport retry."""
    return {REPEATABILITY_HEADER: request_id or str(uuid.uuid4()),
            "repeatability-first-sent": formatdate(usegmt=True)}


def _is_server_error_answer(response: httpx.Response) -> bool:
    """Whether a 5xx is Batchpoint's own ``{"error": {"code", "message"}}`` answer (not a proxy's)."""
    if "json" not in response.headers.get("content-type", ""):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "code" in body["error"]


class Transport:
    def __init__(self, base_url: str, credential: Any = None, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        if self.credential is None:
            return {}
        token = self.credential.get_token("batchpoint")
        return {"Authorization": f"Bearer {getattr(token, 'token', token)}"}

    def _send(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        """One request, with the transport retries of the module docstring."""
        content = kwargs.get("content")
        streamed = content is not None and not isinstance(content, (bytes, str))
        replayable = not streamed and (method in REPLAYABLE_METHODS or REPEATABILITY_HEADER in
                                       {k.lower() for k in headers})
        for delay in (*RETRY_DELAYS_S, None):
            try:
                response = self.client.request(method, path, headers=headers, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # it never reached the server
                if delay is None or streamed:
                    raise ServerUnavailableError(f"cannot reach the Batchpoint server at {self.base_url}: {exc}") from exc
            except httpx.TransportError as exc:  # it may have reached it
                if delay is None or not replayable:
                    raise ServerUnavailableError(f"cannot reach the Batchpoint server at {self.base_url}: {exc}") from exc
            else:
                if (delay is None or not replayable or response.status_code not in RETRY_STATUSES
                        or _is_server_error_answer(response)):
                    return response
            time.sleep(delay)
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        response = self._send(method, path, headers, **kwargs)
        if response.status_code >= 400 and method != "HEAD":
            try:
                payload = response.json()
            except ValueError:
                payload = response.text
            raise error_from_payload(response.status_code, payload)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def stream_to(self, path: str, target: Any) -> None:
        headers = self._headers()
        with self.client.stream("GET", path, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from_payload(response.status_code, response.json())
            for chunk in response.iter_bytes(1 << 20):
                target.write(chunk)

    def upload(self, path: str, chunks: Iterator[bytes]) -> Any:
        return self.json("PUT", path, content=chunks, headers={"Content-Type": "application/octet-stream"})

    def exists(self, path: str) -> bool:
        return self.request("HEAD", path).status_code == 200

    def close(self) -> None:
        self.client.close()
