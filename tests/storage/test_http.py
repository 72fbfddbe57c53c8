"""The read-only https backend against a local HTTP server."""

from __future__ import annotations

import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from batchpoint.exceptions import (
    InputError, StorageAuthError, StorageNotFoundError, TransientStorageError, ValidationError,
)
from batchpoint.storage.base import StorageSpec
from batchpoint.storage.http import HttpBackend


class _Handler(SimpleHTTPRequestHandler):
    failures: dict[str, int] = {}

    def log_message(self, *args) -> None:
        pass

    def _refuse(self) -> bool:
        if self.path.startswith("/private/"):
            self.send_error(403)
            return True
        left = self.failures.get(self.path, 0)
        if left:
            self.failures[self.path] = left - 1
            self.send_error(503)
            return True
        return False

    def do_GET(self) -> None:
        if not self._refuse():
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._refuse():
            super().do_HEAD()


@pytest.fixture
def site(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "heart.csv").write_bytes(b"age,sex\n63,1\n" * 1000)
    (tmp_path / "data" / "with space.csv").write_bytes(b"s")
    _Handler.failures = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def backend_for(base_url: str, **config) -> HttpBackend:
    return HttpBackend(StorageSpec("https", {"base_url": base_url, **config}))


def test_reads_one_file(site):
    backend = backend_for(site + "/data")
    assert backend.is_file("heart.csv") and backend.is_file("with space.csv")
    with backend.open_read("heart.csv") as f:
        assert f.read(8) == b"age,sex\n"
        assert len(f.read()) == 13 * 1000 - 8
    backend.check_access("heart.csv")


def test_base_url_as_the_file_itself(site, tmp_path):
    backend = backend_for(site + "/data/heart.csv")
    assert backend.is_file("")
    target = tmp_path / "copy.csv"
    backend.get_file("", str(target))
    assert target.read_bytes().startswith(b"age,sex")
    assert backend.url_for("") == site + "/data/heart.csv"


def test_missing_and_forbidden(site):
    backend = backend_for(site)
    assert not backend.is_file("data/nope.csv")
    with pytest.raises(StorageNotFoundError, match="nope.csv"):
        backend.open_read("data/nope.csv")
    with pytest.raises(StorageNotFoundError):
        backend.check_access("data/nope.csv")
    with pytest.raises(StorageAuthError, match="not public"):
        backend.open_read("private/x.csv")


def test_folders_cannot_be_listed(site):
    backend = backend_for(site)
    assert not backend.is_dir("data")
    with pytest.raises(InputError, match="uri_file"):
        list(backend.iter_files("data"))


def test_read_only(site):
    backend = backend_for(site)
    with pytest.raises(InputError, match="read-only"):
        backend.open_write("data/out.csv")
    with pytest.raises(InputError, match="read-only"):
        backend.delete("data/heart.csv")


def test_server_errors_are_retried(site):
    _Handler.failures["/data/heart.csv"] = 2  # two 503s, then the file
    with backend_for(site + "/data").open_read("heart.csv") as f:
        assert f.read().startswith(b"age,sex")
    _Handler.failures["/data/heart.csv"] = 10
    with pytest.raises(TransientStorageError, match="503"):
        backend_for(site + "/data").open_read("heart.csv")


def test_closed_port_is_transient_and_quick():
    started = time.monotonic()
    with pytest.raises(TransientStorageError, match=r"127\.0\.0\.1:9"):
        backend_for("http://127.0.0.1:9/data").is_file("x.csv")
    assert time.monotonic() - started < 10


def test_sas_is_sent_but_never_shown(site):
    backend = HttpBackend(StorageSpec("https", {"base_url": site}, {"kind": "sas", "sas_token": "?sv=1&sig=SECRETSIG"}))
    assert backend.is_file("data/heart.csv")
    assert "SECRETSIG" not in backend.url_for("data/heart.csv")
    with pytest.raises(StorageNotFoundError) as info:
        backend.open_read("data/nope.csv")
    assert "SECRETSIG" not in str(info.value)


def test_validation():
    with pytest.raises(ValidationError, match="base_url"):
        HttpBackend(StorageSpec("https", {}))
    with pytest.raises(ValidationError, match="http"):
        backend_for("ftp://example.org/x")
    with pytest.raises(ValidationError, match="valid kinds"):
        HttpBackend(StorageSpec("https", {"base_url": "https://x.org"}, {"kind": "account_key", "account_key": "k"}))
