"""The pure pieces under the observability features: a recorded failure's text → the errors
file's fields, and the web page's session cookie and CSRF tokens (no server needed)."""

from __future__ import annotations

import json
import time

from batchpoint.jobs.errors_file import parse_failure_text
from batchpoint.server.ui.session import SessionSigner, _b64, _unb64


def test_a_user_failure_splits_into_type_message_where_and_frames() -> None:
    text = ('KeyError: "no column \'thal\' (or \'ca\') in a.csv" (score.py, line 20, in check)\n'
            '  File "score.py", line 29, in run\n    check(name)\n  File "score.py", line 20, in check\n'
            '    raise KeyError(...)\n')
    parsed = parse_failure_text(text)
    assert parsed["exception_type"] == "KeyError"
    assert parsed["message"] == '"no column \'thal\' (or \'ca\') in a.csv"'
    assert parsed["where"] == "score.py, line 20, in check"
    assert parsed["frames"].startswith('  File "score.py", line 29, in run\n') and "raise KeyError" in parsed["frames"]


def test_a_failure_without_frames_or_type_keeps_its_message() -> None:
    parsed = parse_failure_text("FileReadError: heart.csv is not a table: line 3 has 2 fields, 13 expected")
    assert parsed == {"exception_type": "FileReadError", "where": None, "frames": "",
                      "message": "heart.csv is not a table: line 3 has 2 fields, 13 expected"}
    assert parse_failure_text("the worker died")["message"] == "the worker died"
    assert parse_failure_text("the worker died")["exception_type"] is None


def test_a_session_cookie_is_signed_expires_and_names_no_key() -> None:
    signer = SessionSigner(b"k" * 32)
    cookie = signer.issue("user:alice", "0123456789abcdef")
    session = signer.read(cookie)
    assert session is not None and session.principal == "user:alice" and session.key_id == "0123456789abcdef"
    assert "bpk_" not in cookie
    payload, mac = cookie.split(".")
    forged = json.loads(_unb64(payload))
    forged["p"] = "user:owner"
    assert signer.read(f"{_b64(json.dumps(forged).encode())}.{mac}") is None  # altered
    assert SessionSigner(b"o" * 32).read(cookie) is None  # another server's key
    assert signer.read(signer.issue("user:alice", None, expires_at=time.time() - 1)) is None  # expired
    assert signer.read("garbage") is None and signer.read(None) is None


def test_a_csrf_token_belongs_to_one_session() -> None:
    signer = SessionSigner(b"k" * 32)
    one, two = (signer.read(signer.issue("user:alice", None)) for _ in range(2))
    assert signer.csrf_ok(one, signer.csrf(one))
    assert not signer.csrf_ok(one, signer.csrf(two)) and not signer.csrf_ok(one, "") and not signer.csrf_ok(one, None)
