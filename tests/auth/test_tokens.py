"""API keys (hash, verify, expiry, revocation) and signed tokens (expiry, tampering)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpoint.auth import (
    ApiKeyRecord,
    Principal,
    authenticate_api_key,
    decode_token,
    hash_secret,
    issue_token,
    new_api_key,
    parse_key_id,
    verify,
    verify_token,
)
from batchpoint.exceptions import AuthenticationError, BatchpointError, ValidationError

PEPPER = b"p" * 32
KEY = b"k" * 32
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _record(plaintext: str, **kw: object) -> ApiKeyRecord:
    fields: dict[str, object] = dict(
        key_id=parse_key_id(plaintext), principal_id="alice",
        hash=hash_secret(plaintext, PEPPER), created_at=NOW - timedelta(days=1),
        expires_at=NOW + timedelta(days=1),
    )
    fields.update(kw)
    return ApiKeyRecord(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- API keys


def test_new_api_key_shape_and_uniqueness() -> None:
    keys = [new_api_key() for _ in range(50)]
    for key_id, plaintext in keys:
        assert plaintext.startswith(f"bpk_{key_id}_")
        assert len(key_id) == 16 and parse_key_id(plaintext) == key_id
        assert len(plaintext) > 50
    assert len({p for _, p in keys}) == 50 and len({k for k, _ in keys}) == 50


def test_hash_and_verify() -> None:
    _, plaintext = new_api_key()
    stored = hash_secret(plaintext, PEPPER)
    assert len(stored) == 64 and plaintext not in stored
    assert stored == hmac.new(PEPPER, plaintext.encode(), hashlib.sha256).hexdigest()
    assert verify(plaintext, stored, PEPPER)
    assert not verify(plaintext + "x", stored, PEPPER)
    assert not verify(plaintext, stored, b"q" * 32)
    assert not verify(plaintext, "é" * 64, PEPPER)  # non-ASCII stored hash: no crash


def test_short_pepper_refused() -> None:
    with pytest.raises(BatchpointError, match="at least 16 bytes"):
        hash_secret("bpk_x", b"short")


@pytest.mark.parametrize("bad", ["", "bpk_", "bpk_zz_secret", "xyz_0123456789abcdef_" + "a" * 43,
                                 "bpk_0123456789abcdef_short", "Bearer abc", "bpk_0123_" + "s" * 43])
def test_parse_key_id_rejects_without_echoing(bad: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        parse_key_id(bad)
    assert info.value.message == "malformed API key: expected 'bpk_<key id>_<secret>'"


def test_record_usable_expired_revoked() -> None:
    _, plaintext = new_api_key()
    record = _record(plaintext)
    assert record.is_usable(NOW)
    assert not record.is_usable(record.expires_at)
    assert not record.is_usable(NOW + timedelta(days=2))
    revoked = _record(plaintext, revoked_at=NOW + timedelta(hours=1))
    assert not revoked.is_usable(NOW)
    assert "revoked" in (revoked.unusable_reason(NOW) or "")


def test_record_naive_datetimes_are_utc() -> None:
    _, plaintext = new_api_key()
    naive = _record(plaintext, expires_at=datetime(2024, 5, 2, 12, 0))
    assert naive.expires_at.tzinfo is timezone.utc
    assert naive.is_usable(datetime(2024, 5, 2, 11, 59))
    assert not naive.is_usable(datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc))


def test_authenticate_api_key() -> None:
    _, plaintext = new_api_key()
    record = _record(plaintext)
    assert authenticate_api_key(plaintext, record, PEPPER, NOW) == "alice"


def test_authenticate_unknown_and_wrong_secret_look_the_same() -> None:
    _, plaintext = new_api_key()
    record = _record(plaintext)
    wrong = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
    messages = []
    for presented, row in ((plaintext, None), (wrong, record)):
        with pytest.raises(AuthenticationError) as info:
            authenticate_api_key(presented, row, PEPPER, NOW)
        messages.append(info.value.message)
        assert presented not in info.value.message
    assert messages[0] == messages[1]
    # expired row: reported only once the secret is proven
    expired = _record(plaintext, expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(AuthenticationError, match="invalid API key"):
        authenticate_api_key(wrong, expired, PEPPER, NOW)
    with pytest.raises(AuthenticationError, match="expired at .*create a new key"):
        authenticate_api_key(plaintext, expired, PEPPER, NOW)
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate_api_key(plaintext, _record(plaintext, revoked_at=NOW), PEPPER, NOW)


def test_authenticate_row_of_another_key_id() -> None:
    _, one = new_api_key()
    _, other = new_api_key()
    row = _record(one)
    with pytest.raises(AuthenticationError, match="invalid API key"):
        authenticate_api_key(other, row, PEPPER, NOW)


# ---------------------------------------------------------------- signed tokens


def test_token_roundtrip_and_claims() -> None:
    token = issue_token("sp-1", KEY, 60, now=1000)
    assert token.startswith("bpt.")
    assert verify_token(token, KEY, now=1059) == "sp-1"
    claims = decode_token(token, KEY, now=1000)
    assert (claims.sub, claims.iat, claims.exp) == ("sp-1", 1000, 1060) and claims.jti
    assert decode_token(issue_token("sp-1", KEY, 60, now=1000), KEY, now=1000).jti != claims.jti


def test_token_real_clock() -> None:
    assert verify_token(issue_token("u", KEY, 30), KEY) == "u"


def test_token_expired() -> None:
    token = issue_token("sp-1", KEY, 60, now=1000)
    with pytest.raises(AuthenticationError, match="token expired at 1970-01-01T00:17:40") as info:
        verify_token(token, KEY, now=1060)
    assert token not in info.value.message


def _segments(token: str) -> tuple[str, str]:
    payload, sig = token[4:].split(".")
    return payload, sig


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_token_tampered_payload_signature_and_key() -> None:
    token = issue_token("alice", KEY, 60, now=1000)
    payload, sig = _segments(token)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    forged = f"bpt.{_b64(json.dumps(claims).encode())}.{sig}"
    bad_sig = f"bpt.{payload}.{_b64(b'x' * 32)}"
    for candidate, key in ((forged, KEY), (bad_sig, KEY), (token, b"K" * 32)):
        with pytest.raises(AuthenticationError, match="signature does not match") as info:
            verify_token(candidate, key, now=1000)
        assert candidate not in info.value.message


@pytest.mark.parametrize(
    "bad", ["", "bpt.", "bpt.a", "bpt.a.b.c", "bpk_x", "eyJ.abc", "bpt.abc.%%%", "bpt.abc.a+b/"]
)
def test_token_malformed(bad: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed token|signature does not match"):
        verify_token(bad, KEY, now=1000)


def test_token_validly_signed_but_unreadable_payload() -> None:
    for body in (b"not json", b"[]", b'{"sub": "", "jti": "j", "iat": 1, "exp": 9}',
                 b'{"sub": "a", "jti": "j", "iat": 1, "exp": "9"}', b'{"sub": "a"}'):
        payload = _b64(body)
        sig = _b64(hmac.new(KEY, payload.encode(), hashlib.sha256).digest())
        with pytest.raises(AuthenticationError, match="malformed token: the payload"):
            verify_token(f"bpt.{payload}.{sig}", KEY, now=0)


@given(st.text(max_size=200))
def test_verify_token_only_raises_authentication_error(text: str) -> None:
    with pytest.raises(AuthenticationError):
        verify_token(text, KEY, now=0)


@given(st.text(max_size=120))
def test_parse_key_id_only_raises_authentication_error(text: str) -> None:
    try:
        parse_key_id(text)
    except AuthenticationError:
        pass


def test_issue_token_validation() -> None:
    with pytest.raises(ValidationError, match="positive"):
        issue_token("a", KEY, 0)
    with pytest.raises(ValidationError):
        issue_token("", KEY, 10)
    with pytest.raises(BatchpointError, match="at least 16 bytes"):
        issue_token("a", b"short", 10)
    with pytest.raises(BatchpointError, match="at least 16 bytes"):
        verify_token("bpt.a.b", b"", now=0)


def test_principal() -> None:
    assert Principal("sp-1", "service_principal").display_name == ""
    with pytest.raises(ValidationError, match="'user' or 'service_principal'"):
        Principal("x", "robot")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Principal("", "user")
