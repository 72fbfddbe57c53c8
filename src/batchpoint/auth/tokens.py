"""Principals, API keys and signed tokens.

**API keys** look like ``bpk_<key_id>_<secret>``: ``key_id`` is 16 lowercase hex characters (not
secret; it finds the stored row and may appear in logs), ``secret`` is
``secrets.token_urlsafe(32)``. Only ``hash_secret(plaintext, pepper)`` — HMAC-SHA256 of the whole
key with a server-side pepper — is stored; the plaintext is shown once, at creation. Checks use
:func:`hmac.compare_digest`. A key is usable while it is not revoked and ``now < expires_at``;
every key has an expiry (:data:`DEFAULT_API_KEY_TTL` is a sensible default).

**Signed tokens** look like ``bpt.<payload>.<signature>``: ``payload`` is base64url (no padding)
JSON ``{"v": 1, "sub": principal_id, "jti": id, "iat": unix_s, "exp": unix_s}`` and
``signature`` is base64url HMAC-SHA256 of the payload segment. They are valid until ``exp``;
to revoke one before that, the server keeps a deny list of ``jti`` (see :func:`decode_token`).

Keys: the pepper and the token signing key are both derived from the server key and must differ
(``SecretBox.server_key_bytes()`` and ``SecretBox.derive_key("token-signing")``); each must be at
least 16 bytes. Authentication failures raise :class:`AuthenticationError` whose message says what
is wrong but never contains the presented key or token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from batchpoint.exceptions import AuthenticationError, BatchpointError, ValidationError

__all__ = [
    "Principal",
    "PrincipalKind",
    "ApiKeyRecord",
    "TokenClaims",
    "API_KEY_PREFIX",
    "TOKEN_PREFIX",
    "DEFAULT_API_KEY_TTL",
    "new_api_key",
    "parse_key_id",
    "hash_secret",
    "verify",
    "authenticate_api_key",
    "issue_token",
    "decode_token",
    "verify_token",
]

PrincipalKind = Literal["user", "service_principal"]
API_KEY_PREFIX = "bpk_"
TOKEN_PREFIX = "bpt."
DEFAULT_API_KEY_TTL = timedelta(days=90)
_KEY_RE = re.compile(r"bpk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,})")
_MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class Principal:
    """Who is calling: a ``user`` or a ``service_principal``, identified by ``id``."""

    id: str
    kind: PrincipalKind
    display_name: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValidationError("principal id must not be empty")
        if self.kind not in ("user", "service_principal"):
            raise ValidationError(
                f"principal kind '{self.kind}' is not valid; use 'user' or 'service_principal'"
            )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


@dataclass(frozen=True)
class ApiKeyRecord:
    """The stored row of an API key.

    Naive datetimes (SQLite returns them) are taken as UTC, as everything Batchpoint stores is UTC.
    """

    key_id: str
    principal_id: str
    hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("created_at", "expires_at", "revoked_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _as_utc(value))

    def is_usable(self, now: datetime) -> bool:
        """True if not revoked (any ``revoked_at`` counts) and ``now < expires_at``."""
        return self.unusable_reason(now) is None

    def unusable_reason(self, now: datetime) -> str | None:
        """Why the key cannot be used at ``now`` (``None`` if it can)."""
        if self.revoked_at is not None:
            return f"API key {self.key_id} was revoked at {self.revoked_at.isoformat()}"
        if _as_utc(now) >= self.expires_at:
            return f"API key {self.key_id} expired at {self.expires_at.isoformat()}"
        return None


@dataclass(frozen=True)
class TokenClaims:
    """The verified content of a signed token."""

    sub: str
    jti: str
    iat: int
    exp: int


def _require_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) < _MIN_KEY_BYTES:
        raise BatchpointError(f"{what} must be at least {_MIN_KEY_BYTES} bytes")


def new_api_key() -> tuple[str, str]:
    """A fresh ``(key_id, plaintext)``: store ``hash_secret(plaintext, pepper)``, show it once."""
    key_id = secrets.token_hex(8)
    return key_id, f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_key_id(plaintext: str) -> str:
    """The ``key_id`` of an API key, to find its row; :class:`AuthenticationError` if malformed."""
    match = _KEY_RE.fullmatch(plaintext) if isinstance(plaintext, str) else None
    if match is None:
        raise AuthenticationError("malformed API key: expected 'bpk_<key id>_<secret>'")
    return match.group(1)


def hash_secret(plaintext: str, pepper: bytes) -> str:
    """HMAC-SHA256 (hex) of ``plaintext`` keyed with the server ``pepper``."""
    _require_key(pepper, "the API key pepper")
    return hmac.new(pepper, plaintext.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(plaintext: str, stored_hash: str, pepper: bytes) -> bool:
    """Whether ``plaintext`` hashes to ``stored_hash``, compared in constant time."""
    computed = hash_secret(plaintext, pepper).encode("ascii")
    return hmac.compare_digest(computed, stored_hash.encode("utf-8"))


def authenticate_api_key(
    plaintext: str, record: ApiKeyRecord | None, pepper: bytes, now: datetime
) -> str:
    """The principal id of a presented key, given its row (``None`` if no row has its key id).

    Unknown key and wrong secret give the same message; expiry/revocation are only reported once
    the secret has been proven, so they reveal nothing to someone guessing keys.
    """
    key_id = parse_key_id(plaintext)
    matches = verify(plaintext, record.hash if record else "0" * 64, pepper)
    if record is None or not matches or record.key_id != key_id:
        raise AuthenticationError("invalid API key: no active key matches it")
    reason = record.unusable_reason(now)
    if reason is not None:
        raise AuthenticationError(f"{reason}; create a new key")
    return record.principal_id


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload_segment: str, key: bytes) -> bytes:
    return hmac.new(key, payload_segment.encode("ascii"), hashlib.sha256).digest()


def issue_token(principal_id: str, key: bytes, ttl_s: int, *, now: float | None = None) -> str:
    """A signed token for ``principal_id`` valid for ``ttl_s`` seconds (> 0)."""
    _require_key(key, "the token signing key")
    if not principal_id:
        raise ValidationError("cannot issue a token for an empty principal id")
    if ttl_s <= 0:
        raise ValidationError(f"token lifetime must be positive, got {ttl_s} s")
    iat = int(time.time() if now is None else now)
    claims = {
        "v": 1, "sub": principal_id, "jti": secrets.token_hex(12), "iat": iat,
        "exp": iat + int(ttl_s),
    }
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{TOKEN_PREFIX}{payload}.{_b64encode(_sign(payload, key))}"


def decode_token(token: str, key: bytes, *, now: float | None = None) -> TokenClaims:
    """Verify signature and expiry of ``token`` and return its claims.

    Raises :class:`AuthenticationError`: malformed, signature mismatch (altered, or signed with
    another server key), or expired. The signature is checked before the payload is parsed.
    """
    _require_key(key, "the token signing key")
    valid_shape = isinstance(token, str) and token.startswith(TOKEN_PREFIX)
    parts = token[len(TOKEN_PREFIX):].split(".") if valid_shape else []
    if len(parts) != 2:
        raise AuthenticationError("malformed token: expected 'bpt.<payload>.<signature>'")
    payload, signature = parts
    try:
        given = _b64decode(signature)
    except (ValueError, binascii.Error):
        raise AuthenticationError("malformed token: the signature is not base64url") from None
    if not hmac.compare_digest(given, _sign(payload, key)):
        raise AuthenticationError(
            "invalid token: the signature does not match (altered, or issued by another server key)"
        )
    claims = _parse_claims(payload)
    current = time.time() if now is None else now
    if current >= claims.exp:
        expired = datetime.fromtimestamp(claims.exp, tz=timezone.utc).isoformat()
        raise AuthenticationError(f"token expired at {expired}; request a new token")
    return claims


def _parse_claims(payload: str) -> TokenClaims:
    try:
        data = json.loads(_b64decode(payload))
        claims = TokenClaims(sub=data["sub"], jti=data["jti"], iat=data["iat"], exp=data["exp"])
    except (ValueError, binascii.Error, KeyError, TypeError):
        raise AuthenticationError("malformed token: the payload cannot be read") from None
    if not isinstance(claims.sub, str) or not claims.sub or not isinstance(claims.exp, int):
        raise AuthenticationError("malformed token: the payload cannot be read")
    return claims


def verify_token(token: str, key: bytes, *, now: float | None = None) -> str:
    """The principal id of a valid ``token`` (see :func:`decode_token` for the checks)."""
    return decode_token(token, key, now=now).sub
