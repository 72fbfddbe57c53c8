"""The web page's sign-in: an API key (or token) in a form → a session cookie; CSRF tokens.

* The cookie ``bp_session`` (HttpOnly, SameSite=Strict, Path=/ui, Secure over HTTPS) holds
  ``<payload>.<signature>``: the principal, the id of the API key signed in with (never the key),
  a random session id and an expiry (``SESSION_TTL_S``, or the key's own expiry if sooner), signed
  with HMAC-SHA256 under a key derived from the server's token-signing key. The cookie is not a
  bearer credential for the API: it is accepted only under ``/ui``.
* Each request re-checks the API key: a key revoked or expired ends its sessions at once.
* CSRF: every state-changing form carries ``csrf``, an HMAC of the session id (so it is tied to the
  session and useless in another); the sign-in form, before any session, a random value also
  set in the ``bp_csrf`` cookie (double submit). A POST whose ``Origin`` is another site is
  refused whatever it carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from batchpoint.auth.tokens import API_KEY_PREFIX, parse_key_id
from batchpoint.exceptions import AuthenticationError

SESSION_COOKIE = "bp_session"
PRE_CSRF_COOKIE = "bp_csrf"
SESSION_TTL_S = 8 * 3600
COOKIE_PATH = "/ui"


@dataclass(frozen=True)
class Session:
    principal: str
    key_id: str | None
    sid: str
    exp: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, signing_key: bytes) -> None:
        self.key = hmac.new(signing_key, b"batchpoint ui session v1", hashlib.sha256).digest()

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self.key, text.encode("ascii"), hashlib.sha256).digest())

    def issue(self, principal: str, key_id: str | None, expires_at: float | None = None) -> str:
        exp = int(time.time()) + SESSION_TTL_S
        if expires_at is not None:
            exp = min(exp, int(expires_at))
        payload = _b64(json.dumps({"p": principal, "k": key_id, "sid": secrets.token_urlsafe(18), "exp": exp},
                                  separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._mac(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None (missing, altered, expired)."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["p"]), data.get("k"), str(data["sid"]), int(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.exp > time.time() else None

    def csrf(self, session: Session) -> str:
        return self._mac(f"csrf:{session.sid}")

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf(session))


def sign_in(auth: Any, credential: str) -> tuple[str, str | None, float | None]:
    """(principal, key id, expiry) of an API key or token; AuthenticationError naming what is wrong."""
    credential = credential.strip()
    if not credential:
        raise AuthenticationError("paste an API key (bpk_…) to sign in")
    principal = auth.authenticate(credential)
    if credential.startswith(API_KEY_PREFIX):
        key_id = parse_key_id(credential)
        return principal, key_id, auth.key_expiry(key_id)
    return principal, None, None


def session_principal(auth: Any, signer: SessionSigner, cookie: str | None) -> tuple[str | None, Session | None]:
    """The principal of a session cookie whose API key is still usable; (None, None) otherwise."""
    session = signer.read(cookie)
    if session is None:
        return None, None
    if session.key_id is not None and not auth.key_usable(session.key_id, session.principal):
        return None, None
    return session.principal, session

