"""Masking secrets in strings, nested data and log records.

Two layers, both replacing with ``***``:

* :func:`redact_text` — patterns that look secret without knowing any value: the value of
  ``sig=`` (SAS signatures), ``AccountKey=``, ``SharedAccessSignature=``, ``client_secret``/
  ``password``/``account_key``/``sas_token``/``secret_access_key`` written as ``name=value`` or
  ``"name": "value"``, ``Authorization: <scheme> <credential>``, ``Bearer <token>``, Batchpoint
  API keys (``bpk_<key_id>_***``: the key id is kept, it is not secret) and signed tokens
  (``bpt.***``).
* :class:`Redactor` — also masks exact secret values it was given (and their URL-encoded forms;
  for a SAS token, its ``sig`` value on its own too), then applies :func:`redact_text`.
  Values shorter than :data:`MIN_SECRET_LENGTH` are ignored: masking ``"ab"`` everywhere would
  destroy logs while protecting nothing real.

:meth:`Redactor.redact` walks dicts, lists and tuples; a value whose key is a secret field name
(a name in :data:`SECRET_FIELDS`, ``authorization``, ``api_key``,
``access_token``, ``sig``, or ending in ``_secret``/``_password``/``_account_key``/...) is masked
whole; the rule is narrower than ``is_secret_field`` so records keep fields like ``max_tokens``.
Other objects are returned unchanged, so call it on plain data (e.g. ``model.model_dump()``).

:class:`RedactingFilter` rewrites a :class:`logging.LogRecord` in place (message, arguments,
exception and stack text, string ``extra`` fields). Attach it to *handlers*: a filter on a logger
does not see records propagated from child loggers. :func:`install_redacting_filter` attaches one
to every handler configured so far (the root logger's and any logger's own, e.g. uvicorn's).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote


SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "account_key", "sas_token", "client_secret", "connection_string", "secret_access_key",
        "aws_secret_access_key", "password", "token",
    }
)
"""Credential field names that are always secret (matched case-insensitively)."""

__all__ = ["MASK", "MIN_SECRET_LENGTH", "Redactor", "RedactingFilter", "install_redacting_filter", "redact_text"]

MASK = "***"
MIN_SECRET_LENGTH = 4

_SECRET_NAMES = (
    r"client_?secret|password|passwd|account_?key|sas_?token|(?:aws_)?secret_?access_?key"
    r"|access_?token|refresh_?token|api_?key"
)
_NAMED = re.compile(
    rf"""(?i)(\b(?:{_SECRET_NAMES})["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s"'&;,}}<>]+)"""
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bbpk_([0-9a-f]{16})_[A-Za-z0-9_-]+"), r"bpk_\1_" + MASK),
    (re.compile(r"\bbpt\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), "bpt." + MASK),
    (re.compile(r"(?i)\b(sig=)[^\s\"'&;<>]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;\s\"']+"),
     r"\1" + MASK),
    (re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z-]+\s+)?)[^\s\"',;]+"),
     r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + MASK),
]
_SECRET_KEY_SUFFIXES = ("_secret", "_password", "_sas_token", "_account_key", "_access_key")


def _mask_named(match: re.Match[str]) -> str:
    value = match.group(2)
    quote_char = value[0] if value[0] in "\"'" else ""
    return f"{match.group(1)}{quote_char}{MASK}{quote_char}"


def _is_secret_key(name: str) -> bool:
    """Dict keys whose values :meth:`Redactor.redact` masks whole (narrower than credentials)."""
    lowered = name.lower()
    return lowered in SECRET_FIELDS or lowered.endswith(_SECRET_KEY_SUFFIXES) or lowered in {
        "authorization", "api_key", "apikey", "access_token", "refresh_token", "sig", "secret"
    }


#: what every pattern above needs somewhere in an ASCII text, lowercased (each pattern, and each
#: name of ``_SECRET_NAMES``, contains one of these): a text with none of them is returned as it is,
#: without seven substitutions (a worker logs a line per mini-batch through the redacting filter).
#: Non-ASCII text always takes the patterns (case-insensitive matching folds more than ``lower()``).
_NEEDLES = ("bpk_", "bpt.", "sig=", "secret", "passw", "account", "token", "api", "sharedaccess", "authorization",
            "bearer")


def redact_text(text: str) -> str:
    """Mask secret-looking values in ``text`` without knowing them (see module docstring)."""
    if text.isascii():
        low = text.lower()
        if not any(needle in low for needle in _NEEDLES):
            return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _NAMED.sub(_mask_named, text)


def _variants(value: str) -> set[str]:
    """A secret and the spellings it takes in URLs; for a SAS token, its signature too."""
    found = {value, quote(value, safe=""), quote_plus(value, safe="")}
    for raw in re.findall(r"(?i)\bsig=([^&\s]+)", value):
        sig = unquote(raw)
        found |= {raw, sig, quote(sig, safe=""), quote_plus(sig, safe="")}
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


class Redactor:
    """Masks known secret values, then :func:`redact_text` patterns. Thread-safe."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        for value in secrets:
            self.add(value)

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} values)"

    def add(self, value: Any) -> None:
        """Register a secret value (non-strings are converted with ``str``; short ones ignored)."""
        if value is None:
            return
        with self._lock:
            self._values |= _variants(str(value))
            # longest first, so a secret containing another is masked whole
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def add_secrets(self, secret_fields: dict[str, Any]) -> None:
        """Register every scalar value of a dict of secret fields (e.g. from ``split_secrets``)."""
        for value in secret_fields.values():
            if isinstance(value, dict):
                self.add_secrets(value)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    self.add(item)
            else:
                self.add(value)

    def redact_str(self, text: str) -> str:
        """``text`` with known values and secret-looking patterns masked."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return redact_text(text)

    def redact(self, value: Any) -> Any:
        """A copy of strings/dicts/lists/tuples with secrets masked; other values as they are."""
        if isinstance(value, str):
            return self.redact_str(value)
        if isinstance(value, dict):
            return {
                (self.redact_str(k) if isinstance(k, str) else k):
                (MASK if isinstance(k, str) and _is_secret_key(k) and v not in (None, "")
                 else self.redact(v))
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact(v) for v in value)
        return value


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class RedactingFilter(logging.Filter):
    """A :class:`logging.Filter` that masks secrets in each record it sees; never drops records."""

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact_str
        try:
            message = record.getMessage()
        except Exception:  # bad format args: leave it to logging's own error report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and isinstance(value, (str, dict, list, tuple)):
                setattr(record, name, self.redactor.redact(value))
        return True


def install_redacting_filter(redactor: Redactor | None = None) -> RedactingFilter:
    """Attach one :class:`RedactingFilter` to every handler configured now: the root logger's and
    those of each named logger (uvicorn's ``uvicorn``/``uvicorn.access``, which do not propagate).
    Call it after logging is configured; handlers that already have a RedactingFilter keep theirs."""
    found = RedactingFilter(redactor)
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(found)
    return found


#: The values this process's log filter masks (the server installs it on every handler).
PROCESS_REDACTOR = Redactor()


def remember_secrets(fields: dict[str, Any] | None) -> None:
    """Mask these secret values (e.g. a data store's decrypted credential fields) in every log line."""
    if fields:
        PROCESS_REDACTOR.add_secrets(fields)
