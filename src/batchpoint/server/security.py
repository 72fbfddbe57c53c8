"""Who is calling and what they may do.

* Every route but ``/health`` and the OpenAPI document needs ``Authorization: Bearer <key>``:
  an API key (``bpk_…``, stored as an HMAC hash, compared in constant time, with an expiry,
  revocable) or a signed token (``bpt.…``). Anonymous → 401.
* Each route declares the permission it needs with :func:`requires` and where it applies (the
  workspace, the endpoint in the URL, the data store in the URL). Missing → 403 naming it.
* The embedded server makes an owner key for the local user on first start (``<home>/owner.key``,
  mode 0600).
* Invokes and changes are written to the audit log.

The keys, principals and role assignments are ``workspace/principals.py`` ``AuthService``'s; the
checks that read a job or the default data store are use cases (``usecases/access.py``): nothing
here reads the metadata store itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import authorize, check, missing_permission_error
from batchpoint.exceptions import AuthenticationError
from batchpoint.usecases import access
from batchpoint.workspace.principals import AuthService

OPEN_PATHS = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


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
    """``jobs/read`` on the job's endpoint, or ``jobs/read_own`` for a job one started. The job's
    record it read stays on the request (:func:`checked_job`) for the route to show."""
    principal = request.state.principal_id
    request.state.checked_job = access.check_job_read(request.app.state.ctx, principal, request.path_params["name"],
                                                      grants=request_grants(request))
    return principal


require_job_read.permission = P.JOBS_READ_OWN  # type: ignore[attr-defined]
require_job_read.scope_name = "job_reader"  # type: ignore[attr-defined]


def checked_job(request: Request) -> Any:
    """The record of the job (or of a child's parent) that :func:`require_job_read` read for this
    request, or None when it did not run."""
    return getattr(request.state, "checked_job", None)


def request_grants(request: Request) -> list[Any]:
    """The caller's role assignments, read once per request (a job show checks its read permission
    and whether the caller sees server paths: one read for both)."""
    principal = request.state.principal_id
    kept = getattr(request.state, "grants", None)
    if kept is None or kept[0] != principal:
        kept = request.state.grants = (principal, request.app.state.ctx.auth.assignments(principal))
    return kept[1]


def require_job_data(request: Request) -> str:
    """A job's output files and log contents: ``jobs/outputs/read`` on the job's endpoint, or
    ``jobs/read_own`` for a job one started (they are data, not metadata: Readers do not get them)."""
    principal = request.state.principal_id
    access.check_job_data(request.app.state.ctx, principal, request.path_params["name"])
    return principal


require_job_data.permission = P.JOBS_OUTPUTS_READ  # type: ignore[attr-defined]
require_job_data.scope_name = "job_data"  # type: ignore[attr-defined]


def require_upload(request: Request) -> str:
    """The upload area (``LocalUpload/`` of the default data store, see ``workspace/uploads.py``):
    ``datastores/write`` on the default store, or an ``endpoints/invoke`` grant on any scope —
    uploading a local input is part of invoking, so an Invoker of one endpoint may do it."""
    principal = request.state.principal_id
    access.check_upload(request.app.state.ctx, principal)
    return principal


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
    principal = getattr(request.state, "principal_id", None)
    return bool(principal) and authorize(request_grants(request), P.ROLES_WRITE, "workspace")


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
