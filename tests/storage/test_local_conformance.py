"""The local folder backend keeps the shared contract."""

from __future__ import annotations

import pytest

from batchpoint.storage.base import StorageSpec
from batchpoint.storage.local import LocalBackend

from .conformance import BackendConformance


class TestLocalConformance(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path) -> LocalBackend:
        root = tmp_path / "store"
        root.mkdir()
        return LocalBackend(StorageSpec("local", {"path": str(root)}))
