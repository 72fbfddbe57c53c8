"""Who is at the browser: the session cookie → principal (``request.state``), and the same
permission checks as the API (``auth.scopes``), answered as booleans so a page can say what the
signed-in principal may not see instead of failing."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from batchpoint.auth import permissions as P
from batchpoint.auth.scopes import authorize
from batchpoint.server.ui.session import SESSION_COOKIE, Session, SessionSigner, session_principal


def signer_of(auth: Any) -> SessionSigner:
    signer = getattr(auth, "_ui_signer", None)
    if signer is None:
        signer = auth._ui_signer = SessionSigner(auth.signing_key)
    return signer


def ui_principal(auth: Any, request: Request) -> str | None:
    """The signed-in principal (None: anonymous); the session is kept on ``request.state``."""
    principal, session = session_principal(auth, signer_of(auth), request.cookies.get(SESSION_COOKIE))
    request.state.ui_session = session
    return principal


def current_session(request: Request) -> Session | None:
    return getattr(request.state, "ui_session", None)


class Access:
    """The signed-in principal's grants, asked as ``may(permission, scope)``."""

    def __init__(self, request: Request) -> None:
        ctx = request.app.state.ctx
        self.principal: str = request.state.principal_id
        self.grants = ctx.auth.assignments(self.principal)

    def may(self, permission: str, scope: str = "workspace") -> bool:
        return authorize(self.grants, permission, scope)

    def may_anywhere(self, permission: str) -> bool:
        """Whether some role of the principal, on any scope, grants ``permission``."""
        return any(permission in P.role_permissions(a.role) for a in self.grants)

    def job_scope(self, job: Any) -> str:
        return f"endpoint:{job.endpoint_name}" if job.endpoint_name else "workspace"

    def may_read_job(self, job: Any) -> bool:
        """As ``require_job_read``: jobs/read on its endpoint, or jobs/read_own for one's own job."""
        scope = self.job_scope(job)
        return self.may(P.JOBS_READ, scope) or (job.created_by == self.principal and self.may(P.JOBS_READ_OWN, scope))

    def may_read_job_data(self, job: Any) -> bool:
        """As ``require_job_data``: outputs, logs and the errors file (data, not metadata)."""
        scope = self.job_scope(job)
        return self.may(P.JOBS_OUTPUTS_READ, scope) or (
            job.created_by == self.principal and self.may(P.JOBS_READ_OWN, scope))

    def job_filter(self) -> str | None | bool:
        """For the job list: None all jobs, a principal id its own, False none."""
        if self.may(P.JOBS_READ):
            return None
        roles = [P.role_permissions(a.role) for a in self.grants]
        if any(P.JOBS_READ_OWN in perms or P.JOBS_READ in perms for perms in roles):
            return self.principal
        return False

    def sees_server_paths(self) -> bool:
        return self.may(P.ROLES_WRITE)
