"""Authentication and authorization: principals, API keys, signed tokens, roles and scopes.

Pure functions and dataclasses; the server stores keys and assignments and calls these.

* :mod:`batchpoint.auth.permissions` — permission strings and the role table (``ROLES``).
* :mod:`batchpoint.auth.scopes` — scopes, ``RoleAssignment``, ``authorize`` / ``check``.
* :mod:`batchpoint.auth.tokens` — ``Principal``, API keys (hashed with a pepper), signed tokens.

Every route except ``/health`` and the OpenAPI document authenticates (no credential or a bad
one: :class:`~batchpoint.exceptions.AuthenticationError`, 401) and then checks one permission on
one scope (missing: :class:`~batchpoint.exceptions.PermissionDeniedError`, 403).
"""

from batchpoint.auth.permissions import (
    ALL_PERMISSIONS,
    ASSETS_READ,
    ASSETS_WRITE,
    AUDIT_READ,
    COMPUTES_READ,
    COMPUTES_WRITE,
    DATA_READ,
    DATASTORES_READ,
    DATASTORES_SECRETS_READ,
    DATASTORES_WRITE,
    DEPLOYMENTS_READ,
    DEPLOYMENTS_WRITE,
    ENDPOINTS_INVOKE,
    ENDPOINTS_READ,
    ENDPOINTS_WRITE,
    JOBS_CANCEL,
    JOBS_READ,
    JOBS_READ_OWN,
    MODELS_READ,
    MODELS_WRITE,
    ROLES,
    ROLES_READ,
    ROLES_WRITE,
    WORKSPACE_READ,
    require_known_permission,
    role_permissions,
    roles_granting,
)
from batchpoint.auth.scopes import (
    SCOPE_KINDS,
    WORKSPACE,
    RoleAssignment,
    Scope,
    authorize,
    check,
    check_data_read,
    check_job_read,
    missing_permission_error,
    parse_scope,
)
from batchpoint.auth.tokens import (
    API_KEY_PREFIX,
    DEFAULT_API_KEY_TTL,
    TOKEN_PREFIX,
    ApiKeyRecord,
    Principal,
    PrincipalKind,
    TokenClaims,
    authenticate_api_key,
    decode_token,
    hash_secret,
    issue_token,
    new_api_key,
    parse_key_id,
    verify,
    verify_token,
)

__all__ = [
    # permissions
    "ALL_PERMISSIONS",
    "ASSETS_READ",
    "ASSETS_WRITE",
    "AUDIT_READ",
    "COMPUTES_READ",
    "COMPUTES_WRITE",
    "DATA_READ",
    "DATASTORES_READ",
    "DATASTORES_SECRETS_READ",
    "DATASTORES_WRITE",
    "DEPLOYMENTS_READ",
    "DEPLOYMENTS_WRITE",
    "ENDPOINTS_INVOKE",
    "ENDPOINTS_READ",
    "ENDPOINTS_WRITE",
    "JOBS_CANCEL",
    "JOBS_READ",
    "JOBS_READ_OWN",
    "MODELS_READ",
    "MODELS_WRITE",
    "ROLES",
    "ROLES_READ",
    "ROLES_WRITE",
    "WORKSPACE_READ",
    "require_known_permission",
    "role_permissions",
    "roles_granting",
    # scopes
    "SCOPE_KINDS",
    "WORKSPACE",
    "RoleAssignment",
    "Scope",
    "authorize",
    "check",
    "check_data_read",
    "check_job_read",
    "missing_permission_error",
    "parse_scope",
    # tokens
    "API_KEY_PREFIX",
    "DEFAULT_API_KEY_TTL",
    "TOKEN_PREFIX",
    "ApiKeyRecord",
    "Principal",
    "PrincipalKind",
    "TokenClaims",
    "authenticate_api_key",
    "decode_token",
    "hash_secret",
    "issue_token",
    "new_api_key",
    "parse_key_id",
    "verify",
    "verify_token",
]
