"""Who is calling and what they may do.

* Every route but ``/health`` and the OpenAPI document needs ``Authorization: Bearer <key>``:
  an API key (``bpk_…``, stored as an HMAC hash, compared in constant time, with an expiry,
  revocable) or a signed token (``bpt.…``). Anonymous → 401.
* Each route declares the permission it needs with :func:`requires` and where it applies (the
  workspace, the endpoint in the URL, the data store in the URL). Missing → 403 naming it.
* The embedded server makes an owner key for the local user on first start (``<home>/owner.key``,
  mode 0600).
* Invokes and changes are written to the audit log.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, Request

from batchpoint._internal.clock import utcnow
from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import RoleAssignment, authorize, check, check_job_read, missing_permission_error
from batchpoint.auth.tokens import (
    API_KEY_PREFIX,
    TOKEN_PREFIX,
    ApiKeyRecord,
    authenticate_api_key,
    hash_secret,
    new_api_key,
    parse_key_id,
    verify_token,
)
from batchpoint.exceptions import AuthenticationError, NotFoundError, ValidationError
from batchpoint.identity.secrets import SecretBox
from batchpoint.jobs import children
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import ApiKeyRow

OPEN_PATHS = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
OWNER_KEY_TTL = timedelta(days=3650)


class AuthService:
    def __init__(self, store: SqlMetadataStore, secrets: SecretBox) -> None:
        self.store = store
        self.pepper = secrets.server_key_bytes()
        self.signing_key = secrets.token_signing_key()

    # -- principals and keys -------------------------------------------------------------
    def create_principal(self, principal_id: str, kind: str = "user", display_name: str | None = None) -> Any:
        if kind not in ("user", "service_principal"):
            raise ValidationError(f"principal kind '{kind}' is not valid; use user or service_principal")
        return self.store.put_principal(principal_id, kind, display_name)

    def create_key(self, principal_id: str, ttl: timedelta = timedelta(days=90)) -> tuple[str, ApiKeyRow]:
        if self.store.find_principal(principal_id) is None:
            raise NotFoundError(f"principal '{principal_id}' was not found; create it with 'batchpoint principal create'")
        key_id, plaintext = new_api_key()
        now = utcnow()
        row = self.store.add_api_key(ApiKeyRow(key_id=key_id, principal_id=principal_id,
                                               hash=hash_secret(plaintext, self.pepper),
                                               created_at=now, expires_at=now + ttl))
        return plaintext, row

    def bootstrap_owner(self, home: Path) -> None:
        """Make sure the local user has an Owner key in ``<home>/owner.key`` (0600)."""
        path = home / "owner.key"
        if path.exists():
            try:
                self.authenticate(path.read_text().strip())
                return
            except AuthenticationError:
                pass  # a key from another database: make a new one
        user = f"user:{getpass.getuser()}"
        self.create_principal(user, "user", "local owner")
        self.store.add_role_assignment(user, "Owner", "workspace")
        plaintext, _ = self.create_key(user, OWNER_KEY_TTL)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(plaintext + "\n")
        os.replace(tmp, path)

    # -- authentication ------------------------------------------------------------------
    def authenticate(self, token: str) -> str:
        """The principal id behind a bearer token, or AuthenticationError (401)."""
        if not token.startswith((API_KEY_PREFIX, TOKEN_PREFIX)):
            raise AuthenticationError(
                "the credential sent is not a Batchpoint API key or token: keys look like 'bpk_<id>_<secret>' "
                "(batchpoint principal key create prints one) and tokens like 'bpt.<payload>.<signature>'; "
                "check BATCHPOINT_API_KEY or the 'Authorization: Bearer <key>' header")
        if token.startswith(API_KEY_PREFIX):
            row = self.store.find_api_key(parse_key_id(token))
            record = None if row is None else ApiKeyRecord(row.key_id, row.principal_id, row.hash, row.created_at,
                                                           row.expires_at, row.revoked_at)
            return authenticate_api_key(token, record, self.pepper, utcnow())
        return verify_token(token, self.signing_key)

    def assignments(self, principal_id: str) -> list[RoleAssignment]:
        return [RoleAssignment(r.principal_id, r.role, r.scope) for r in self.store.list_role_assignments(principal_id)]


def authenticate_request(auth: AuthService, request: Request) -> str | None:
    """Set ``request.state.principal_id``; return None for open paths. The web page (``/ui``) signs
    in with a session cookie instead (``server/ui/session.py``; anonymous there: the sign-in page)."""
    if request.url.path in OPEN_PATHS or _metrics_open(request):
        return None
    if request.url.path == "/ui" or request.url.path.startswith("/ui/"):
        from batchpoint.server.ui.auth import ui_principal

        request.state.principal_id = principal = ui_principal(auth, request)
        return principal
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "authentication required: send 'Authorization: Bearer <API key>' (the local server's owner key is in "
            "<BATCHPOINT_HOME>/owner.key; create keys with 'batchpoint principal key create')"
        )
    principal = auth.authenticate(token.strip())
    request.state.principal_id = principal
    return principal


# -- authorization -----------------------------------------------------------------------

ScopeFn = Callable[[Request], str]


def workspace_scope(_: Request) -> str:
    return "workspace"


def endpoint_scope(request: Request) -> str:
    params = request.path_params
    return f"endpoint:{params.get('endpoint') or params.get('name')}"


def datastore_scope(request: Request) -> str:
    return f"datastore:{request.path_params['name']}"


def requires(permission: str, scope: ScopeFn = workspace_scope) -> Any:
    """A route dependency: the caller needs ``permission`` on ``scope(request)`` (or the workspace)."""
    P.require_known_permission(permission)

    def dependency(request: Request) -> str:
        ctx = request.app.state.ctx
        principal = request.state.principal_id
        check(ctx.auth.assignments(principal), principal, permission, scope(request))
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    dependency.scope_name = scope.__name__  # type: ignore[attr-defined]
    return Depends(dependency)


def require_job_read(request: Request) -> str:
    """``jobs/read`` on the job's endpoint, or ``jobs/read_own`` for a job one started."""
    ctx = request.app.state.ctx
    principal = request.state.principal_id
    job = children.job_row(ctx.store, request.path_params["name"])  # a child job: its parent's record
    scope = f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"
    check_job_read(ctx.auth.assignments(principal), principal, job.created_by or "", scope)
    return principal


require_job_read.permission = P.JOBS_READ_OWN  # type: ignore[attr-defined]
require_job_read.scope_name = "job_reader"  # type: ignore[attr-defined]


def require_job_data(request: Request) -> str:
    """A job's output files and log contents: ``jobs/outputs/read`` on the job's endpoint, or
    ``jobs/read_own`` for a job one started (they are data, not metadata: Readers do not get them)."""
    ctx = request.app.state.ctx
    principal = request.state.principal_id
    job = children.job_row(ctx.store, request.path_params["name"])  # a child job: its parent's record
    scope = f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"
    own = ctx.auth.assignments(principal)
    if authorize(own, P.JOBS_OUTPUTS_READ, scope):
        return principal
    if job.created_by and job.created_by == principal and authorize(own, P.JOBS_READ_OWN, scope):
        return principal
    raise missing_permission_error(principal, P.JOBS_OUTPUTS_READ, scope)


require_job_data.permission = P.JOBS_OUTPUTS_READ  # type: ignore[attr-defined]
require_job_data.scope_name = "job_data"  # type: ignore[attr-defined]


def require_upload(request: Request) -> str:
    """The upload area (``LocalUpload/`` of the default data store, see ``workspace/uploads.py``):
    ``datastores/write`` on the default store, or an ``endpoints/invoke`` grant on any scope —
    uploading a local input is part of invoking, so an Invoker of one endpoint may do it."""
    ctx = request.app.state.ctx
    principal = request.state.principal_id
    own = ctx.auth.assignments(principal)
    scope = f"datastore:{ctx.store.get_default_datastore().name}"
    if authorize(own, P.DATASTORES_WRITE, scope):
        return principal
    if any(P.ENDPOINTS_INVOKE in P.role_permissions(a.role) for a in own):
        return principal
    raise missing_permission_error(principal, P.DATASTORES_WRITE, scope)


require_upload.permission = P.DATASTORES_WRITE  # type: ignore[attr-defined]
require_upload.scope_name = "upload_scope"  # type: ignore[attr-defined]


def visible_job_filter(request: Request) -> str | None:
    """For job lists: None when the caller may read all jobs, else their own principal id."""
    ctx = request.app.state.ctx
    principal = request.state.principal_id
    own = ctx.auth.assignments(principal)
    if authorize(own, P.JOBS_READ, "workspace"):
        return None
    if any(P.JOBS_READ_OWN in P.role_permissions(a.role) or P.JOBS_READ in P.role_permissions(a.role) for a in own):
        return principal
    raise missing_permission_error(principal, P.JOBS_READ_OWN, "workspace")


visible_job_filter.permission = P.JOBS_READ_OWN  # type: ignore[attr-defined]
visible_job_filter.scope_name = "own_jobs"  # type: ignore[attr-defined]


def sees_server_paths(request: Request) -> bool:
    """Owners of the workspace see where things are on the server's disk; nobody else does."""
    ctx = request.app.state.ctx
    principal = getattr(request.state, "principal_id", None)
    return bool(principal) and authorize(ctx.auth.assignments(principal), P.ROLES_WRITE, "workspace")


def _metrics_open(request: Request) -> bool:
    if request.url.path != "/metrics":
        return False
    ctx = getattr(request.app.state, "ctx", None)
    return bool(ctx is not None and ctx.settings.server.metrics_public)


def check_metrics_access(request: Request, permission: str) -> None:
    """``/metrics``: ``permission`` on the workspace (a Reader key), unless the setting opens it."""
    if _metrics_open(request):
        return
    ctx = request.app.state.ctx
    principal = request.state.principal_id
    check(ctx.auth.assignments(principal), principal, permission, "workspace")
