"""with_retries, the kind registry and the shared stream/redaction helpers (no servers needed)."""

from __future__ import annotations

import io

import pytest

from batchpoint.exceptions import (
    StorageAuthError, StorageError, TransientStorageError, ValidationError,
)
from batchpoint.storage._support import ReadStream, WriteStream, redact
from batchpoint.storage.base import StorageBackend, with_retries
from batchpoint.storage.registry import backend_class, known_kinds, storage_kind


class Flaky:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_transient_errors_are_retried_with_backoff():
    sleeps: list[float] = []
    flaky = Flaky(2, TransientStorageError("503 from storage"))
    assert with_retries(flaky, sleep=sleeps.append) == "done"
    assert flaky.calls == 3 and sleeps == [0.2, 0.4]


def test_retries_give_up_after_the_last_attempt():
    sleeps: list[float] = []
    flaky = Flaky(10, TransientStorageError("still down"))
    with pytest.raises(TransientStorageError, match="still down"):
        with_retries(flaky, attempts=3, sleep=sleeps.append)
    assert flaky.calls == 3 and len(sleeps) == 2


def test_other_errors_are_not_retried():
    flaky = Flaky(1, StorageAuthError("bad key"))
    with pytest.raises(StorageAuthError):
        with_retries(flaky, sleep=lambda s: None)
    assert flaky.calls == 1


def test_every_kind_is_registered_with_its_extra():
    assert set(known_kinds()) >= {"local", "azure_blob", "azure_data_lake_gen2",
                                  "azure_data_lake_gen1", "s3", "https"}
    assert storage_kind("azure_blob").extra == storage_kind("azure_data_lake_gen1").extra == "azure"
    assert storage_kind("s3").extra == "s3" and storage_kind("https").extra is None
    for kind in known_kinds():
        cls = backend_class(kind)
        assert issubclass(cls, StorageBackend) and cls.kind == kind


def test_unknown_kind():
    with pytest.raises(ValidationError, match="known kinds"):
        backend_class("ftp")


def test_redact_removes_secrets_and_signatures():
    cred = {"kind": "sas", "sas_token": "?sv=2024&sig=abcdEFGH"}
    text = "GET https://a.blob.core.windows.net/c/x?sv=2024&sig=abcdEFGH failed; key=sv=2024&sig=abcdEFGH"
    cleaned = redact(text, cred)
    assert "abcdEFGH" not in cleaned and "sv=2024" not in cleaned
    assert redact("https://h/c/x?sv=1&sig=abc123", None) == "https://h/c/x?sv=1&sig=***"
    assert redact("x-amz-signature=deadbeef1", None) == "x-amz-signature=***"


def test_read_stream_translates_errors():
    class Broken(io.BytesIO):
        def read(self, *args):
            raise ConnectionResetError("peer reset")

    stream = ReadStream(Broken(b""), lambda e, _path: TransientStorageError(f"translated: {e}"))
    with pytest.raises(TransientStorageError, match="translated: peer reset") as info:
        stream.read(10)
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_write_stream_commits_on_close_and_discards_on_error():
    class Target(io.BytesIO):
        committed = False

        def close(self):
            self.committed = True

    discarded: list[object] = []
    ok = Target()
    with WriteStream(ok, StorageError, discarded.append) as f:
        f.write(b"abc")
    assert ok.committed and ok.getvalue() == b"abc" and not discarded

    bad = Target()
    with pytest.raises(KeyError):
        with WriteStream(bad, StorageError, discarded.append) as f:
            f.write(b"half")
            raise KeyError("boom")
    assert not bad.committed and discarded == [bad]


def test_redact_connection_string_parts():
    conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=S3cr3tK3y==;EndpointSuffix=core.windows.net"
    cleaned = redact("signing with S3cr3tK3y== failed", {"kind": "connection_string", "connection_string": conn})
    assert "S3cr3tK3y" not in cleaned


def test_numeric_settings_are_validated():
    from batchpoint.storage.base import StorageSpec
    from batchpoint.storage.http import HttpBackend

    with pytest.raises(ValidationError, match="'read_timeout' must be a number"):
        HttpBackend(StorageSpec("https", {"base_url": "https://x.org", "read_timeout": "soon"}))


def test_translated_is_the_one_error_boundary():
    """Every backend goes through storage.base.translated: library errors become Batchpoint's,
    named by the backend's translate function, Batchpoint errors pass through, retries only when asked."""
    from batchpoint.exceptions import StorageNotFoundError
    from batchpoint.storage.base import translated

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    def translate(exc, path):
        return TransientStorageError(f"{path}: {exc}") if isinstance(exc, TimeoutError) else StorageNotFoundError(path)

    with pytest.raises(TransientStorageError, match="a.csv: slow") as info:
        translated(flaky, translate, "a.csv")
    assert isinstance(info.value.__cause__, TimeoutError) and len(calls) == 1
    calls.clear()
    assert translated(flaky, translate, "a.csv", retries=2) == "ok" and len(calls) == 3
    with pytest.raises(StorageNotFoundError):  # passes through untouched, never retried
        translated(lambda: (_ for _ in ()).throw(StorageNotFoundError("gone")), translate, "a.csv", retries=3)
    import batchpoint.storage as storage_pkg
    from pathlib import Path

    for module in ("azure_blob", "adls_gen1", "s3", "http", "_support"):
        text = (Path(storage_pkg.__file__).parent / f"{module}.py").read_text()
        assert "except BatchpointError" not in text, f"{module}.py translates errors by hand again"
