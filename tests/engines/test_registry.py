"""The engine registry: chosen per compute, imported lazily, with an install hint when missing."""

from __future__ import annotations

import pytest

from batchpoint.engines import base
from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.exceptions import BackendNotInstalledError, ValidationError


def test_computes_without_an_engine_of_their_own_run_on_the_local_pool():
    assert isinstance(base.engine_for(None), LocalPoolEngine)
    assert base.engine_for({"type": "amlcompute"}) is base.engine_for(None)  # one instance per process


def test_an_engine_whose_extra_is_missing_names_the_install_command(monkeypatch):
    monkeypatch.setitem(base.ENGINES, "fancy", ("batchpoint_no_such_module.engine:FancyEngine", "fancy"))
    monkeypatch.setitem(base.COMPUTE_ENGINES, "fancy", "fancy")
    with pytest.raises(BackendNotInstalledError, match=r"engine 'fancy' needs a package .* pip install 'batchpoint\[fancy\]'"):
        base.engine_for({"type": "fancy"})


def test_an_unknown_engine_lists_the_known_ones():
    with pytest.raises(ValidationError, match="unknown engine 'nope'; known engines: local"):
        base.engine_class("nope")
