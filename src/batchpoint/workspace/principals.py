"""Who is who in the workspace: principals, their API keys and role assignments, and who a bearer
credential belongs to (``AuthService``). The server builds one per app (``server/app.py``) and its
request checks (``server/security.py``) and the web page's sign-in (``server/ui/session.py``) call
it; the rules themselves (key format and hashing, tokens, roles and scopes) are ``batchpoint.auth``'s.
"""

from __future__ import annotations

import getpass
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from batchpoint._internal.clock import as_utc, utcnow
from batchpoint.auth.scopes import RoleAssignment
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
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import ApiKeyRow

OWNER_KEY_TTL = timedelta(days=3650)


class AuthService:
    """Principals, their API keys (stored as an HMAC hash under the server's pepper) and role
    assignments; who a bearer credential (an API key or a signed token) is."""

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

    # -- the web page's sessions (``server/ui/session.py``) ------------------------------
    def key_expiry(self, key_id: str) -> float | None:
        """When API key ``key_id`` expires (a POSIX time), or None (never, or no such key)."""
        row = self.store.find_api_key(key_id)
        return row.expires_at.timestamp() if row is not None and row.expires_at else None

    def key_usable(self, key_id: str, principal_id: str) -> bool:
        """Whether API key ``key_id`` is ``principal_id``'s and neither revoked nor expired."""
        row = self.store.find_api_key(key_id)
        return not (row is None or row.revoked_at is not None or row.principal_id != principal_id or (
            row.expires_at is not None and as_utc(row.expires_at) <= utcnow()))
