"""Issue 21 §1: the README's first install (scripts/demo.sh) can read Azure Blob data stores — this
product's first storage — and a storage kind whose extra is missing names the extra to install."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from batchpoint.exceptions import BackendNotInstalledError

ROOT = Path(__file__).resolve().parents[2]


def test_demo_installs_the_extra_azure_blob_needs():
    script = (ROOT / "scripts" / "demo.sh").read_text()
    [extras] = re.findall(r"-e '\.\[([a-z0-9,]+)\]'", script)
    extras = extras.split(",")
    assert "azure" in extras, extras
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("adlfs") for name in extras for dep in declared[name])


def test_a_missing_azure_extra_is_named(monkeypatch):
    from batchpoint.storage import registry

    monkeypatch.setitem(sys.modules, "adlfs", None)  # as if the azure extra were not installed
    monkeypatch.delitem(sys.modules, "batchpoint.storage.azure_blob", raising=False)
    monkeypatch.setattr(registry, "_cache", {})
    with pytest.raises(BackendNotInstalledError) as caught:
        registry.backend_class("azure_blob")
    assert str(caught.value) == ("storage kind 'azure_blob' needs a package that is not installed (adlfs); run: "
                                 "pip install 'batchpoint[azure]'")
