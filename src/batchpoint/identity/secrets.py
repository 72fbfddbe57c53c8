"""Encryption of data store secrets at rest, and the server key everything else derives from.

**The key file.** One Fernet key (urlsafe base64 of 32 random bytes) in a file, normally
``<home>/server.key``. :meth:`SecretBox.load_or_create` creates it with mode ``0600`` (atomically:
written to a temporary file, then hard-linked into place, so concurrent starts agree on one key).
An existing key file whose mode grants anything to group or others (``mode & 0o077``) is
*refused*, not silently fixed: the key may already have been copied, so the operator must decide
(``chmod 600 <file>``, and rotate if in doubt). Mode checks are skipped on Windows.

**Derived keys.** The raw Fernet key only encrypts. Other uses get their own key through
HKDF-SHA256 with a purpose label (:meth:`SecretBox.derive_key`): the API key pepper
(:meth:`SecretBox.server_key_bytes`, purpose ``"api-key-pepper"``) and the token signing key
(:meth:`SecretBox.token_signing_key`, purpose ``"token-signing"``).

**Secrets vs public fields.** :func:`split_secrets` separates a credential dict into what may be
stored in clear and shown (``kind``, ``tenant_id``, ``client_id``, ``account_name``, ...) and what
must be encrypted and never returned (see :func:`is_secret_field`). Errors never contain key
material, plaintext secrets or ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from batchpoint._internal.redact import SECRET_FIELDS
from batchpoint.exceptions import BatchpointError, ValidationError

__all__ = [
    "SECRET_FIELDS",
    "SecretBox",
    "is_secret_field",
    "split_secrets",
    "join_secrets",
]


_SECRET_MARKERS = ("secret", "password", "token", "sas")
_HKDF_SALT = b"batchpoint-server-key/v1"


def is_secret_field(name: str) -> bool:
    """Whether a credential field must be encrypted and never shown.

    Secret if the lowercased name is in :data:`SECRET_FIELDS`, contains ``secret``, ``password``,
    ``token`` or ``sas``, or ends with ``key`` (``account_key``, ``private_key``). Errs on the
    side of secrecy; ``tenant_id``, ``client_id``, ``account_name``, ``kind`` are public.
    """
    lowered = name.lower()
    return (
        lowered in SECRET_FIELDS
        or any(marker in lowered for marker in _SECRET_MARKERS)
        or lowered.endswith("key")
    )


def split_secrets(credentials: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(public, secret)`` halves of a flat credential dict (see :func:`is_secret_field`).

    A nested dict or list under a public name goes to the secret half whole: its fields cannot be
    judged by one name, and hiding too much is the safe mistake.
    """
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, value in credentials.items():
        hidden = is_secret_field(str(name)) or isinstance(value, (dict, list, tuple))
        (secret if hidden else public)[name] = value
    return public, secret


def join_secrets(public: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`split_secrets` (secret values win on a name clash)."""
    return {**public, **secret}


class SecretBox:
    """Fernet encryption of secret dicts with the server key; also derives purpose keys.

    Build one with :meth:`load_or_create` (or ``SecretBox(key)`` in tests). ``repr`` never shows
    the key.
    """

    def __init__(self, key: bytes, *, path: Path | None = None) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError, binascii.Error):
            where = f" in {path}" if path else ""
            raise BatchpointError(
                f"the server key{where} is not a valid Fernet key (urlsafe base64 of 32 bytes)"
            ) from None
        self._raw = base64.urlsafe_b64decode(key)
        self.path = path

    def __repr__(self) -> str:
        return f"SecretBox(path={str(self.path)!r})"

    @classmethod
    def load_or_create(cls, path: Path) -> SecretBox:
        """Load the key file at ``path``, creating it (mode 0600, parents 0700) if missing."""
        path = Path(path)
        if not path.exists():
            _create_key_file(path)
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> SecretBox:
        """Load an existing key file; refuses one that group or others may access."""
        path = Path(path)
        _check_private(path)
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise BatchpointError(
                f"cannot read the server key file {path}: {exc.strerror}"
            ) from None
        return cls(key, path=path)

    def encrypt(self, data: dict[str, Any]) -> str:
        """Ciphertext (a Fernet token, ASCII) of a JSON-serialisable dict."""
        if not isinstance(data, dict):
            raise ValidationError("only a dict of secret fields can be encrypted")
        try:
            plain = json.dumps(data, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            raise ValidationError(
                "secret fields must be JSON values (strings, numbers, booleans, lists, dicts)"
            ) from None
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> dict[str, Any]:
        """The dict sealed by :meth:`encrypt`; :class:`BatchpointError` if it cannot be opened."""
        try:
            data = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, UnicodeError, ValueError, AttributeError):
            where = f" ({self.path})" if self.path else ""
            raise BatchpointError(
                "cannot decrypt a stored secret: it is corrupted or was encrypted with a different "
                f"server key; restore the original server key file{where} or enter the data store "
                "credentials again"
            ) from None
        if not isinstance(data, dict):
            raise BatchpointError("a stored secret is not a dict of fields; enter it again")
        return data

    def derive_key(self, purpose: str, length: int = 32) -> bytes:
        """A key for ``purpose``: HKDF-SHA256 of the server key; other purpose, other key."""
        if not purpose:
            raise ValueError("derive_key needs a purpose label")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT,
                    info=purpose.encode("utf-8"))
        return hkdf.derive(self._raw)

    def server_key_bytes(self) -> bytes:
        """The pepper for API key hashes (``derive_key("api-key-pepper")``)."""
        return self.derive_key("api-key-pepper")

    def token_signing_key(self) -> bytes:
        """The HMAC key for signed tokens (``derive_key("token-signing")``)."""
        return self.derive_key("token-signing")


def _check_private(path: Path) -> None:
    """Refuse a key file with any group/other permission bit (POSIX only)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BatchpointError(f"cannot read the server key file {path}: {exc.strerror}") from None
    if os.name != "nt" and mode & 0o077:
        raise BatchpointError(
            f"the server key file {path} has mode {oct(mode & 0o777)}, so other users may read or "
            f"change it; refusing to use it. Run: chmod 600 {path} (and rotate the key if others "
            "may have read it)"
        )


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` without ever exposing it or overwriting a concurrent writer."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created the file first: keep theirs
    except FileExistsError:
        pass
    except OSError:  # no hard links on this filesystem
        if not path.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
