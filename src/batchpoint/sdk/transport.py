"""HTTP to the server; server errors come back as the same ``batchpoint.exceptions`` class."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from batchpoint.exceptions import ServerUnavailableError, error_from_payload


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

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailableError(f"cannot reach the Batchpoint server at {self.base_url}: {exc}") from exc
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
