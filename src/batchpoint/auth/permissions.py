"""Permissions and roles, as data.

A *permission* is a ``"<resource>/<verb>"`` string; a *role* is a named frozenset of permissions.
The server asks for exactly one permission per route (see :mod:`batchpoint.auth.scopes` for where
an assignment applies). Roles are fixed here; assignments of roles to principals live in the store.

Rules that are not obvious from the names:

* ``data/read`` is *data-plane* access: reading the bytes of a data store or storage account with
  the invoking principal's own identity (identity-based data). Control-plane roles (Contributor,
  Reader, Invoker) do not include it, as in Azure, where workspace Contributor does not make you a
  Storage Blob Data Reader. Grant ``DataReader`` on ``datastore:<name>`` or
  ``storageaccount:<account>`` (or Owner). Credential-based data stores do not need it.
* ``data/write`` lets an invoke write its output to a location the caller chooses (``OutputData`` /
  ``--output-path``) in a data store; checked on ``datastore:<name>`` or its
  ``storageaccount:<account>``. The default output location (``azureml/<job>/score`` in the default
  data store) needs no such grant: any Invoker gets it. Even with ``data/write`` an output may never
  overlap the upload area, another job's output, a registered data asset, a model or a
  deployment's code (see :mod:`batchpoint.jobs.output`).
* ``jobs/read`` reads every job's metadata (status, counts, failures, log names);
  ``jobs/read_own`` reads only jobs the principal created, *with* their outputs and worker logs.
  Every role with ``jobs/read`` also has ``jobs/read_own``.
* ``jobs/outputs/read`` reads the bytes of any job's outputs and worker logs (they are data: scores
  of the input rows, and whatever the scoring script logged). Reader does not have it: a Reader sees
  job metadata, never data bytes.
* ``datastores/secrets/read`` is the only way to see data store credentials, and only Owner has
  it. Secrets are never returned by the REST API anyway; the permission gates rotating or
  replacing them and the ``--show-secrets`` style admin paths.
* ``roles/write`` (creating/deleting role assignments) and ``audit/read`` are Owner-only, so a
  Contributor cannot grant itself more rights.

Role table (``x`` = granted)::

    permission                 Owner  Contributor  Invoker  Reader  DataReader  DataWriter
    workspace/read               x        x           x       x
    datastores/read              x        x                   x
    datastores/write             x        x
    datastores/secrets/read      x
    data/read                    x                                       x          x
    data/write                   x        x                                         x
    assets/read                  x        x                   x
    assets/write                 x        x
    models/read                  x        x                   x
    models/write                 x        x
    computes/read                x        x                   x
    computes/write               x        x
    endpoints/read               x        x           x       x
    endpoints/write              x        x
    endpoints/invoke             x        x           x
    deployments/read             x        x           x       x
    deployments/write            x        x
    jobs/read                    x        x                   x
    jobs/read_own                x        x           x       x
    jobs/outputs/read            x        x
    jobs/cancel                  x        x
    roles/read                   x        x                   x
    roles/write                  x
    audit/read                   x
"""

from __future__ import annotations

from batchpoint.exceptions import BatchpointError, ValidationError

__all__ = [
    "WORKSPACE_READ",
    "DATASTORES_READ",
    "DATASTORES_WRITE",
    "DATASTORES_SECRETS_READ",
    "DATA_READ",
    "DATA_WRITE",
    "ASSETS_READ",
    "ASSETS_WRITE",
    "MODELS_READ",
    "MODELS_WRITE",
    "COMPUTES_READ",
    "COMPUTES_WRITE",
    "ENDPOINTS_READ",
    "ENDPOINTS_WRITE",
    "ENDPOINTS_INVOKE",
    "DEPLOYMENTS_READ",
    "DEPLOYMENTS_WRITE",
    "JOBS_READ",
    "JOBS_READ_OWN",
    "JOBS_OUTPUTS_READ",
    "JOBS_CANCEL",
    "ROLES_READ",
    "ROLES_WRITE",
    "AUDIT_READ",
    "ALL_PERMISSIONS",
    "ROLES",
    "role_permissions",
    "roles_granting",
    "require_known_permission",
]

WORKSPACE_READ = "workspace/read"
DATASTORES_READ = "datastores/read"
DATASTORES_WRITE = "datastores/write"
DATASTORES_SECRETS_READ = "datastores/secrets/read"
DATA_READ = "data/read"
DATA_WRITE = "data/write"
ASSETS_READ = "assets/read"
ASSETS_WRITE = "assets/write"
MODELS_READ = "models/read"
MODELS_WRITE = "models/write"
COMPUTES_READ = "computes/read"
COMPUTES_WRITE = "computes/write"
ENDPOINTS_READ = "endpoints/read"
ENDPOINTS_WRITE = "endpoints/write"
ENDPOINTS_INVOKE = "endpoints/invoke"
DEPLOYMENTS_READ = "deployments/read"
DEPLOYMENTS_WRITE = "deployments/write"
JOBS_READ = "jobs/read"
JOBS_READ_OWN = "jobs/read_own"
JOBS_OUTPUTS_READ = "jobs/outputs/read"
JOBS_CANCEL = "jobs/cancel"
ROLES_READ = "roles/read"
ROLES_WRITE = "roles/write"
AUDIT_READ = "audit/read"

ALL_PERMISSIONS: frozenset[str] = frozenset(
    {
        WORKSPACE_READ, DATASTORES_READ, DATASTORES_WRITE, DATASTORES_SECRETS_READ, DATA_READ, DATA_WRITE,
        ASSETS_READ, ASSETS_WRITE, MODELS_READ, MODELS_WRITE, COMPUTES_READ, COMPUTES_WRITE,
        ENDPOINTS_READ, ENDPOINTS_WRITE, ENDPOINTS_INVOKE, DEPLOYMENTS_READ, DEPLOYMENTS_WRITE,
        JOBS_READ, JOBS_READ_OWN, JOBS_OUTPUTS_READ, JOBS_CANCEL, ROLES_READ, ROLES_WRITE, AUDIT_READ,
    }
)

_READER: frozenset[str] = frozenset(
    {
        WORKSPACE_READ, DATASTORES_READ, ASSETS_READ, MODELS_READ, COMPUTES_READ, ENDPOINTS_READ,
        DEPLOYMENTS_READ, JOBS_READ, JOBS_READ_OWN, ROLES_READ,
    }
)

ROLES: dict[str, frozenset[str]] = {
    "Owner": ALL_PERMISSIONS,
    "Contributor": ALL_PERMISSIONS - {ROLES_WRITE, DATASTORES_SECRETS_READ, AUDIT_READ, DATA_READ},
    "Invoker": frozenset(
        {WORKSPACE_READ, ENDPOINTS_READ, ENDPOINTS_INVOKE, DEPLOYMENTS_READ, JOBS_READ_OWN}
    ),
    "Reader": _READER,
    "DataReader": frozenset({DATA_READ}),
    "DataWriter": frozenset({DATA_READ, DATA_WRITE}),
}
"""Role name → permissions. Names are case-sensitive, as Azure built-in role names are shown."""


def role_permissions(role: str) -> frozenset[str]:
    """The permissions of ``role``; :class:`ValidationError` naming the valid roles if unknown."""
    try:
        return ROLES[role]
    except KeyError:
        raise ValidationError(
            f"unknown role '{role}'; valid roles: {', '.join(ROLES)}",
            details={"role": role, "valid_roles": list(ROLES)},
        ) from None


def roles_granting(permission: str) -> list[str]:
    """Roles that include ``permission``, smallest (least privileged) first."""
    require_known_permission(permission)
    found = [name for name, perms in ROLES.items() if permission in perms]
    return sorted(found, key=lambda name: (len(ROLES[name]), name))


def require_known_permission(permission: str) -> None:
    """Raise if ``permission`` is not one of :data:`ALL_PERMISSIONS`.

    Asking for an unknown permission is a bug in the caller (a typo would silently deny
    everyone), so it is an internal error (500), not a 403.
    """
    if permission not in ALL_PERMISSIONS:
        raise BatchpointError(
            f"unknown permission '{permission}' asked for; "
            f"known: {', '.join(sorted(ALL_PERMISSIONS))}"
        )
