"""The engine registry: chosen per compute from the engines' declarations, imported lazily, with an
install hint when missing."""

from __future__ import annotations

from dataclasses import fields

import pytest

from batchpoint import settings as settings_module
from batchpoint.engines import base, registry
from batchpoint.engines.kinds import EngineCapabilities, EngineKind
from batchpoint.engines.local_pool import LocalPoolEngine
from batchpoint.entities import AmlCompute
from batchpoint.exceptions import BackendNotInstalledError, ValidationError
from pydantic import ValidationError as PydanticValidationError


@pytest.fixture
def registered():
    """``registered(kind)`` adds an engine for one test (the one registry line a new engine needs)."""
    added: list[str] = []

    def add(kind: EngineKind | str) -> EngineKind:
        declared = registry.register(kind)
        added.append(declared.name)
        return declared

    yield add
    for name in added:
        registry.unregister(name)


def test_computes_without_an_engine_of_their_own_run_on_the_local_pool():
    assert isinstance(base.engine_for(None), LocalPoolEngine)
    assert base.engine_for({"type": "amlcompute"}) is base.engine_for(None)  # one instance per process


def test_an_engine_whose_extra_is_missing_names_the_install_command(registered):
    registered(EngineKind(name="fancy", title="a fancy cluster", engine="batchpoint_no_such_module.engine:FancyEngine",
                          extra="fancy", capabilities=EngineCapabilities(), compute_types=("fancy",)))
    with pytest.raises(BackendNotInstalledError, match=r"engine 'fancy' needs a package .* pip install 'batchpoint\[fancy\]'"):
        base.engine_for({"type": "fancy"})


def test_an_unknown_engine_lists_the_known_ones():
    with pytest.raises(ValidationError, match="unknown engine 'nope'; known engines: local, ray"):
        base.engine_class("nope")


class EchoEngine(base.Engine):
    """A new engine, declared beside its class as a new engine module would be."""

    name = "echo"

    def __init__(self, compute=None):
        self.compute = compute

    @classmethod
    def from_compute(cls, compute):
        return cls(compute)

    def run(self, job, batches, on_outcome, stop, credentials=None):  # pragma: no cover - not run here
        raise NotImplementedError


KIND = EngineKind(name="echo", title="an echo cluster", engine=f"{__name__}:EchoEngine", extra=None,
                  capabilities=EngineCapabilities(remote_workers=True), compute_types=("echo",), per_compute=True)


def test_a_new_engine_is_one_declaration_and_one_registry_line(registered):
    with pytest.raises(ValidationError, match="unknown engine 'echo'"):
        registry.engine_kind("echo")
    with pytest.raises(PydanticValidationError,  # a compute's type is one an engine declares
                       match="unknown compute type 'echo'; valid types: amlcompute, local, ray"):
        AmlCompute(name="e", type="echo")
    assert registry.kind_for_compute_type("echo").name == "local"  # not yet registered: the local pool runs it
    assert base.COMPUTE_ENGINES.get("echo", "local") == "local"
    registered(f"{__name__}:KIND")
    assert AmlCompute(name="e", type="echo").type == "echo"  # no list in entities to edit
    assert AmlCompute.model_json_schema()["properties"]["type"]["enum"] == ["amlcompute", "local", "ray", "echo"]
    assert base.COMPUTE_ENGINES.get("echo", "local") == "echo" and base.COMPUTE_ENGINES["ray"] == "ray"
    one, other = {"type": "echo", "name": "a"}, {"type": "echo", "name": "b"}
    engine = base.engine_for(one)
    assert isinstance(engine, EchoEngine) and engine.compute == one
    assert base.engine_for(dict(one)) is engine and base.engine_for(other) is not engine  # per compute
    assert isinstance(base.engine_for({"type": "amlcompute"}), LocalPoolEngine)


def test_the_ray_compute_type_runs_on_the_engine_that_declares_it():
    assert registry.kind_for_compute_type("ray").name == "ray"
    assert registry.kind_for_compute_type("amlcompute").name == "local"
    assert registry.kind_for_compute_type(None).name == "local"
    assert registry.engine_kind("ray").per_compute and not registry.engine_kind("local").per_compute


@pytest.mark.parametrize("kind", registry.engine_kinds(), ids=lambda k: k.name)
def test_every_engine_declaration_is_complete(kind: EngineKind):
    assert kind.name and kind.title and ":" in kind.engine
    assert kind.extra is None or kind.extra in _extras()
    assert isinstance(kind.capabilities, EngineCapabilities)
    engine_cls = registry.engine_class(kind.name)
    assert issubclass(engine_cls, base.Engine) and engine_cls.name == kind.name
    for compute_type in kind.compute_types:  # a spec may name it, and it runs on this engine
        spec = {"address": "127.0.0.1:6379"} if "address" in kind.compute_fields else {}
        assert AmlCompute(name="c", type=compute_type, **spec).type == compute_type
        assert registry.kind_for_compute_type(compute_type) is kind
    assert set(kind.compute_fields) <= set(AmlCompute.model_fields)
    if kind.settings is not None:
        assert kind.settings in settings_module.Settings.model_fields
    # what the runner asks the engine today agrees with the declaration
    assert getattr(engine_cls, "writes_parts_to_storage", False) == kind.capabilities.remote_parts
    assert [f.name for f in fields(kind)]  # a frozen dataclass


def test_exactly_one_engine_is_the_default():
    assert [k.name for k in registry.engine_kinds() if k.default] == ["local"]


def _extras() -> set[str]:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    return set(tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"])
