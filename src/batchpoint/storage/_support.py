"""Pieces the remote backends share: secret redaction, error-chain walking, file wrappers that
translate library errors at the boundary, and lazy paging over an fsspec event loop.

Nothing here talks to a storage service; each backend passes its own ``translate`` function
(library exception -> :mod:`batchpoint.exceptions` error).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import IO, Any, TypeVar

from batchpoint.exceptions import ValidationError
from batchpoint.storage.base import Translate, translated

T = TypeVar("T")

_QUERY_SECRET = re.compile(r"(?i)\b(sig|signature|x-amz-signature|x-amz-security-token|code)=[^&\s'\"]+")


_CONN_SECRET_KEYS = ("accountkey", "sharedaccesssignature")


def _secret_values(credential: dict[str, Any] | None) -> Iterator[str]:
    for key, value in (credential or {}).items():
        if key == "kind" or not isinstance(value, str):
            continue
        yield value
        yield value.lstrip("?")
        for part in value.split(";"):  # the key or SAS inside a connection string
            name, _, secret = part.partition("=")
            if name.strip().lower() in _CONN_SECRET_KEYS:
                yield secret.strip()


def redact(text: str, credential: dict[str, Any] | None) -> str:
    """Remove every secret value of ``credential`` (and URL signatures) from ``text``."""
    for value in sorted(set(_secret_values(credential)), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return _QUERY_SECRET.sub(r"\1=***", text)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (``__cause__`` / ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:limit]


def require(config: dict[str, Any], key: str, what: str) -> str:
    """A required, non-empty string setting, or a ValidationError naming it."""
    value = config.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} needs '{key}' in its configuration (got {value!r})")
    return value.strip()


def number(config: dict[str, Any], key: str, default: float, what: str) -> float:
    """An optional numeric setting, or a ValidationError naming it."""
    value = config.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{what}: '{key}' must be a number, not {value!r}") from None
    if number < 0:
        raise ValidationError(f"{what}: '{key}' must not be negative (got {value!r})")
    return number


def require_secret(credential: dict[str, Any], field: str, what: str) -> str:
    """A required secret field of a credential dict; the message never shows a value."""
    value = credential.get(field)
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"{what}: credential kind '{credential.get('kind')}' needs the field '{field}', "
            "which is missing or empty"
        )
    return value


def run_on_loop(loop: Any, make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on an fsspec event loop (its IO thread) and return its result."""
    from fsspec.asyn import sync

    async def _call() -> T:
        return await make_coro()

    return sync(loop, _call)


class ReadStream(io.RawIOBase):
    """A read-only binary stream over a library file object; library errors are translated."""

    def __init__(self, raw: Any, translate: Translate, name: str = "") -> None:
        super().__init__()
        self._raw = raw
        self._translate = translate
        self.name = name

    def _guard(self, fn: Callable[[], T]) -> T:
        return translated(fn, self._translate, self.name)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        seekable = getattr(self._raw, "seekable", None)
        return bool(seekable()) if callable(seekable) else False

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._guard(lambda: self._raw.read(len(view)))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self._guard(lambda: self._raw.read())
        return self._guard(lambda: self._raw.read(size))

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._guard(lambda: self._raw.seek(offset, whence))

    def tell(self) -> int:
        return self._guard(lambda: self._raw.tell())

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            except Exception:  # closing a reader never loses data
                pass
        super().close()


class WriteStream(io.RawIOBase):
    """A write-only binary stream: the target is created or replaced when ``close`` succeeds.

    Leaving a ``with`` block by an exception calls ``discard`` instead, so a half-written
    object never replaces the old one.
    """

    def __init__(
        self, raw: Any, translate: Translate, discard: Callable[[Any], None], name: str = ""
    ) -> None:
        super().__init__()
        self._raw = raw
        self._translate = translate
        self._discard = discard
        self.name = name

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        translated(lambda: self._raw.write(data), self._translate, self.name)
        return len(memoryview(data).cast("B"))

    def close(self) -> None:
        if self.closed:
            return
        try:
            translated(self._raw.close, self._translate, self.name)
        finally:
            super().close()

    def abort(self) -> None:
        if not self.closed:
            try:
                self._discard(self._raw)
            finally:
                super().close()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def as_binary(stream: io.RawIOBase) -> IO[bytes]:
    return stream  # type: ignore[return-value]
