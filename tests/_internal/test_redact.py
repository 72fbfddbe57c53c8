"""Redaction of secrets in text, nested data and log records."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpoint._internal.redact import MASK, RedactingFilter, Redactor, redact_text

SAS = "sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-01&sig=AbC%2Bdef%2Fghi%3D"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"https://a.blob.core.windows.net/c/f.csv?{SAS}",
         "https://a.blob.core.windows.net/c/f.csv?sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-01&sig=***"),
        ("?sig=abc&se=1", "?sig=***&se=1"),
        ("a;AccountKey=abc+/d==;EndpointSuffix=x", "a;AccountKey=***;EndpointSuffix=x"),
        ("BlobEndpoint=https://x;SharedAccessSignature=sv=1&sig=z;Q=1",
         "BlobEndpoint=https://x;SharedAccessSignature=***;Q=1"),
        ("client_secret=abc&grant_type=cc", "client_secret=***&grant_type=cc"),
        ('{"client_secret": "a b c", "tenant_id": "t"}', '{"client_secret": "***", "tenant_id": "t"}'),
        ("{'password': 'p w', 'user': 'u'}", "{'password': '***', 'user': 'u'}"),
        ("aws_secret_access_key = wJalrXUtnFEMI", "aws_secret_access_key = ***"),
        ("account_key: abc123", "account_key: ***"),
        ("Authorization: Bearer eyJ.abc.def", "Authorization: Bearer ***"),
        ('{"Authorization": "Basic dXNlcjpwYXNz"}', '{"Authorization": "Basic ***"}'),
        ("authorization=SharedKey acct:abcdef==", "authorization=SharedKey ***"),
        ("sent bearer abc.def-ghi", "sent bearer ***"),
        ("key bpk_0123456789abcdef_AbCdEf-ghIJkl_mnOPqrsTUvwxyz0123456789ABC end",
         "key bpk_0123456789abcdef_*** end"),
        ("t=bpt.eyJzdWIiOiJhIn0.c2lnbmF0dXJl;", "t=bpt.***;"),
    ],
)
def test_redact_text_masks_without_knowing_values(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "signature verified", "max_tokens=5", "authorization failed for bob", "sigma=3",
    "the password policy", "tenant_id=abc client_id=def", "design=x", "",
])
def test_redact_text_leaves_ordinary_text(text: str) -> None:
    assert redact_text(text) == text


def test_redactor_masks_known_values_and_encodings() -> None:
    r = Redactor([ACCOUNT_KEY, "hunter2-pass"])
    assert r.redact_str(f"key is {ACCOUNT_KEY}!") == "key is ***!"
    assert r.redact_str(f"x={quote(ACCOUNT_KEY, safe='')}") == "x=***"
    assert r.redact_str("error: login hunter2-pass failed") == "error: login *** failed"


def test_redactor_sas_signature_alone() -> None:
    r = Redactor([SAS])
    assert r.redact_str(f"full {SAS} end") == "full *** end"
    # the signature on its own, decoded or as encoded in a URL
    assert r.redact_str("sig was AbC+def/ghi= in header") == "sig was *** in header"
    assert r.redact_str("raw AbC%2Bdef%2Fghi%3D") == "raw ***"


def test_redactor_ignores_short_values_and_none() -> None:
    r = Redactor(["ab", "", None])  # type: ignore[list-item]
    assert r.redact_str("ab abc") == "ab abc"
    assert "0 values" in repr(r)


def test_longest_secret_masked_whole() -> None:
    r = Redactor(["secretvalue", "secretvalue-extended"])
    assert r.redact_str("[secretvalue-extended]") == "[***]"


def test_redact_nested_data() -> None:
    r = Redactor()
    r.add_secrets({"client_secret": "zz-client-secret", "more": {"sas_token": "qq-sas-token"},
                   "list": ["ll-list-secret"]})
    record = {
        "status": "Failed",
        "error": "auth failed with zz-client-secret",
        "inputs": [{"uri": "https://h/c?sig=abc"}, ("qq-sas-token", 3)],
        "credentials": {"tenant_id": "t", "client_secret": "other", "account_key": ""},
        "settings": {"max_tokens": 5, "Password": 12345},
        "ll-list-secret": None,
        7: b"bytes",
    }
    assert r.redact(record) == {
        "status": "Failed",
        "error": "auth failed with ***",
        "inputs": [{"uri": "https://h/c?sig=***"}, ("***", 3)],
        "credentials": {"tenant_id": "t", "client_secret": MASK, "account_key": ""},
        "settings": {"max_tokens": 5, "Password": MASK},
        "***": None,
        7: b"bytes",
    }
    assert record["error"] == "auth failed with zz-client-secret"  # input untouched


@given(st.text(max_size=300))
def test_redaction_is_idempotent_and_total(text: str) -> None:
    r = Redactor(["s3cr3t-value"])
    once = r.redact_str(text)
    assert r.redact_str(once) == once
    assert "s3cr3t-value" not in once


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=8, max_size=60))
def test_any_registered_value_disappears(secret: str) -> None:
    r = Redactor([secret])
    assert secret not in r.redact_str(f"before {secret} after")


def _logger(redactor: Redactor) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(extra_field)s"))
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger(f"test-redact-{id(stream)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_logging_filter_redacts_message_args_exceptions_and_extras() -> None:
    logger, stream = _logger(Redactor(["zz-client-secret"]))
    logger.info("using %s for %s", "zz-client-secret", "https://h/c?sig=abc",
                extra={"extra_field": {"password": "pw", "note": "zz-client-secret"}})
    try:
        raise RuntimeError("storage said: bad key zz-client-secret")
    except RuntimeError:
        logger.exception("failed with Authorization: Bearer tok123", extra={"extra_field": "x"})
    out = stream.getvalue()
    assert "zz-client-secret" not in out and "sig=abc" not in out and "tok123" not in out
    assert "'password': '***'" in out and "RuntimeError: storage said: bad key ***" in out
    assert "INFO using *** for https://h/c?sig=***" in out


def test_logging_filter_never_drops_and_survives_bad_args() -> None:
    f = RedactingFilter()
    bad = logging.LogRecord("n", logging.INFO, __file__, 1, "%d items", ("x",), None)
    assert f.filter(bad) is True
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "sig=%s", ("abc",), None)
    record.stack_info = "Stack: client_secret=abc"
    assert f.filter(record) is True
    assert record.getMessage() == "sig=***" and record.stack_info == "Stack: client_secret=***"


def _all_patterns(text: str) -> str:
    """redact_text without its quick check: every pattern applied."""
    from batchpoint._internal import redact

    for pattern, replacement in redact._PATTERNS:
        text = pattern.sub(replacement, text)
    return redact._NAMED.sub(redact._mask_named, text)


def test_redact_text_quick_check_never_skips_a_match():
    """The quick check (no needle in the text: returned as it is) must skip only texts that no
    pattern matches: each pattern's and secret name's spellings (case, underscores, quoting) and
    random mixes of their pieces give the same result as applying every pattern."""
    import random

    pieces = ["bpk_0123456789abcdef_s3cr3tvalue", "bpt.aaa.bbb", "sig=abc%2Fdef", "SIG=xyz", "AccountKey=k3y==",
              "sharedaccesssignature=sv1", "SharedAccessKey=abc", "Authorization: Basic dXNlcjpw",
              "authorization=token1", "Bearer eyJabc", "BEARER tok", "client_secret=s1", "ClientSecret: s2",
              "password=pw", "PASSWD: x1", "account_key=k", "AccountKey: k", "sas_token='t'", "SasToken=t",
              "aws_secret_access_key=a", "SecretAccessKey: b", "access_token=c", "AccessToken: d",
              "refresh_token=e", "RefreshToken: f", "api_key=g", "APIKEY: h", '"password": "pw2"',
              "mini-batch 000001-0 (10 files) scored: 10 rows in 0.001s", "plain text", "key=value", ": ",
              "=", "_", "-", " ", "token", "api", "secret", "x", "é", "K"]
    rng = random.Random(24)
    texts = list(pieces) + ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    for text in texts:
        assert redact_text(text) == _all_patterns(text), text
    assert redact_text("mini-batch 000001-0 (10 files) scored: 10 rows in 0.001s") == \
        "mini-batch 000001-0 (10 files) scored: 10 rows in 0.001s"
