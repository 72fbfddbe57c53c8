"""The one error tree of Batchpoint.

Every error a user can meet is a :class:`BatchpointError`. Each class fixes a stable ``code``
(sent in the REST error body) and the HTTP status the server answers with; the SDK rebuilds the
same class from the server's JSON, so ``except NotFoundError`` works the same in-process and over
HTTP::

    BatchpointError (500, internal_error)
    ├── ValidationError (400, validation_error)          bad field, bad YAML, bad value
    │   ├── SpecError (400, spec_error)                  a YAML spec file with an unknown/mistyped field
    │   └── InputError (400, invalid_input)              an invoke input that cannot be used
    │       ├── UnsupportedInputError (400, unsupported_input)   MLTable, V1 FileDataset
    │       └── UnsafeInputError (400, unsafe_input)      traversal, SSRF, absolute paths
    ├── AuthenticationError (401, unauthenticated)
    ├── PermissionDeniedError (403, permission_denied)
    ├── NotFoundError (404, not_found)
    ├── ConflictError (409, conflict)
    ├── PayloadTooLargeError (413, payload_too_large)
    ├── StorageError (502, storage_error)                 the storage service failed
    │   ├── StorageAuthError (403, storage_auth_failed)   the storage rejected the credential
    │   ├── StorageNotFoundError (404, storage_not_found) container / path missing
    │   └── TransientStorageError (503, storage_unavailable)  retried with backoff first
    ├── BackendNotInstalledError (501, backend_not_installed)  optional extra missing
    ├── ServerUnavailableError (503, server_unavailable)  the SDK cannot reach a server
    └── JobError (500, job_error)                         the platform failed a job
        ├── UserCodeError (500, user_code_error)          the scoring script raised
        └── PlatformError (500, platform_error)           workers, storage or disk kept failing

Messages say what failed, on which object, and what is valid or what to do next.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BatchpointError",
    "ValidationError",
    "SpecError",
    "InputError",
    "UnsupportedInputError",
    "UnsafeInputError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "StorageError",
    "StorageAuthError",
    "StorageNotFoundError",
    "TransientStorageError",
    "BackendNotInstalledError",
    "ServerUnavailableError",
    "JobError",
    "UserCodeError",
    "PlatformError",
    "error_from_payload",
]


class BatchpointError(Exception):
    """Base of every Batchpoint error."""

    code = "internal_error"
    status_code = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def __str__(self) -> str:
        return self.message


class ValidationError(BatchpointError):
    code = "validation_error"
    status_code = 400


class SpecError(ValidationError):
    code = "spec_error"


class InputError(ValidationError):
    code = "invalid_input"


class UnsupportedInputError(InputError):
    code = "unsupported_input"


class UnsafeInputError(InputError):
    code = "unsafe_input"


class AuthenticationError(BatchpointError):
    code = "unauthenticated"
    status_code = 401


class PermissionDeniedError(BatchpointError):
    code = "permission_denied"
    status_code = 403


class NotFoundError(BatchpointError):
    code = "not_found"
    status_code = 404


class ConflictError(BatchpointError):
    code = "conflict"
    status_code = 409


class PayloadTooLargeError(BatchpointError):
    code = "payload_too_large"
    status_code = 413


class StorageError(BatchpointError):
    code = "storage_error"
    status_code = 502


class StorageAuthError(StorageError):
    code = "storage_auth_failed"
    status_code = 403


class StorageNotFoundError(StorageError):
    code = "storage_not_found"
    status_code = 404


class TransientStorageError(StorageError):
    code = "storage_unavailable"
    status_code = 503


class BackendNotInstalledError(BatchpointError):
    code = "backend_not_installed"
    status_code = 501


class ServerUnavailableError(BatchpointError):
    code = "server_unavailable"
    status_code = 503


class JobError(BatchpointError):
    code = "job_error"


class UserCodeError(JobError):
    code = "user_code_error"


class PlatformError(JobError):
    """The platform failed the job — workers keep dying, storage or disk keeps failing — not the
    user's code (failure kind ``platform``; never charged to ``error_threshold``)."""

    code = "platform_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={"kind": "platform", **(details or {})})


def _all_subclasses(cls: type[BatchpointError]) -> list[type[BatchpointError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_from_payload(status_code: int, payload: Any) -> BatchpointError:
    """Rebuild the server's error as the same class on the client side."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return BatchpointError(f"server answered HTTP {status_code}: {str(payload)[:500]}")
    code = error.get("code", "")
    message = error.get("message", f"HTTP {status_code}")
    by_code: dict[str, type[BatchpointError]] = {}
    for sub in _all_subclasses(BatchpointError):  # a subclass that keeps its parent's code is not the parent
        by_code.setdefault(sub.code, sub)
    cls = by_code.get(code)
    if cls is None:
        by_status = {c.status_code: c for c in reversed(_all_subclasses(BatchpointError))}
        cls = by_status.get(status_code, BatchpointError)
    return cls(message, details=error.get("details"))
