"""Storage kinds describe themselves: a new kind is one module (``memory_kind.py`` here) plus one
registry line, and then the rest of Batchpoint — the conformance suite, input parsing, resolution,
the identity rules and delegation — reads what that module declares."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

from batchpoint.entities import Datastore
from batchpoint.exceptions import InputError, PermissionDeniedError, ValidationError
from batchpoint.identity.delegation import delegated_kind
from batchpoint.identity.rules import IDENTITY_FIELDS, IdentityContext
from batchpoint.settings import Settings, StorageSettings
from batchpoint.storage import registry
from batchpoint.storage.base import StorageBackend, StorageSpec
from batchpoint.storage.kind import Capabilities, Delegation, StorageKind, StorageUrl
from batchpoint.storage.registry import backend_class, open_backend
from batchpoint.uri.parse import parse_input_uri
from batchpoint.uri.resolve import InputResolver
from batchpoint.uri.storage_urls import spec_for_storage_url

from . import memory_kind
from .conformance import BackendConformance
from .conftest import unique

#: the schemes of the kinds Batchpoint ships (a fixed list: the oracle is not the registry)
SHIPPED_SCHEMES = ["abfs", "abfss", "adl", "http", "https", "s3", "wasb", "wasbs"]
SHIPPED_KINDS = ["azure_blob", "azure_data_lake_gen1", "azure_data_lake_gen2", "https", "local", "s3"]
#: the data store types the API accepted before they came from the kinds (entities' old Literal), in its order
SHIPPED_DATASTORE_TYPES = "local, azure_blob, azure_data_lake_gen2, azure_data_lake_gen1, s3"


@pytest.fixture
def memory() -> Iterator[StorageKind]:
    """The memory kind, registered for one test: the one registry line a new kind needs."""
    kind = registry.register(memory_kind.__name__)
    yield kind
    registry.unregister(kind.name)


class TestMemoryKindConformance(BackendConformance):
    """The shared storage conformance suite, on a kind registered by a test (through the registry)."""

    @pytest.fixture
    def backend(self, memory: StorageKind) -> Iterator[StorageBackend]:
        name = unique("mem")
        yield open_backend(StorageSpec("memory", {"name": name}))
        memory_kind.STORES.pop(name, None)


def test_an_unregistered_kind_cannot_be_opened():
    with pytest.raises(ValidationError, match=f"unknown storage kind 'memory'; known kinds: {', '.join(SHIPPED_KINDS)}"):
        open_backend(StorageSpec("memory", {"name": "x"}))


def test_an_unregistered_scheme_is_refused_naming_the_valid_ones():
    with pytest.raises(InputError) as refused:
        parse_input_uri("mem://inputs/folder/a.csv")
    valid = ", ".join(f"{s}://" for s in SHIPPED_SCHEMES)
    assert f"URLs starting mem:// are not supported (valid schemes: {valid})" in str(refused.value)


def test_a_registered_scheme_is_parsed_by_its_kind(memory):
    text = "mem://inputs/folder/a%20b.csv"
    assert parse_input_uri(text) == StorageUrl("memory", "", "inputs", "folder/a b.csv", None, text, "mem")
    with pytest.raises(InputError, match=r"not a valid reference: expected mem://<store>/<path>"):
        parse_input_uri("mem://user@inputs/a.csv")
    with pytest.raises(InputError) as refused:
        parse_input_uri("ftp://host/a.csv")
    assert "valid schemes: abfs://, abfss://, adl://, http://, https://, mem://, s3://, wasb://" in str(refused.value)
    assert parse_input_uri("s3://bucket/key.csv").kind == "s3"  # the other kinds are unchanged


class _UrlLookup:
    """The ``DatastoreLookup`` of a workspace without data stores: storage URLs only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def datastore_spec(self, name: str) -> StorageSpec:  # pragma: no cover - no data stores here
        raise AssertionError(name)

    def default_datastore_name(self) -> str:  # pragma: no cover
        return "workspaceblobstore"

    def get_asset(self, collection, name, version=None, label=None):  # pragma: no cover
        raise AssertionError(name)

    def storage_url_spec(self, url: StorageUrl):
        spec, path = spec_for_storage_url(url, self.settings)
        return spec, path, None, "identity"


def test_a_registered_kind_is_resolved_with_the_identity_rules_it_declares(memory, tmp_path):
    memory_kind.STORES["inputs"] = {"folder/a.csv": b"x\n1\n", "folder/b.csv": b"x\n2\n"}
    try:
        resolver = InputResolver(Settings(home=tmp_path), _UrlLookup(Settings(home=tmp_path)))
        trusted = IdentityContext(compute="gpu", compute_identity={"type": "managed_identity", "client_id": "c1"})
        resolved = resolver.resolve("mem://inputs/folder", "uri_folder", identity=trusted)
        assert (resolved.type, resolved.spec.kind, resolved.path) == ("uri_folder", "memory", "folder")
        assert resolved.spec.credential == {"kind": "managed_identity", "client_id": "c1"}
        assert resolved.credential_source == "compute identity (gpu)"

        other = IdentityContext(compute="gpu", compute_identity={"type": "aws_profile", "profile": "p"})
        with pytest.raises(ValidationError, match="the compute identity is of type aws_profile, which cannot read memory "
                                                  "storage: give the compute a managed_identity, the only identity"):
            resolver.resolve("mem://inputs/folder", "uri_folder", identity=other)

        none = IdentityContext(compute="cpu", compute_identity=None)
        with pytest.raises(PermissionDeniedError) as refused:  # declared without public access: never tried anonymously
            resolver.resolve("mem://inputs/folder", "uri_folder", identity=none)
        assert ("memory store 'inputs' is read with the identity of the job, through the managed identity of compute "
                "'cpu', but it has no identity; a memory store cannot be read anonymously (it has no public access), "
                "so nothing was tried. Give the compute a managed identity, or register a data store with "
                "credentials.") == refused.value.message
    finally:
        memory_kind.STORES.pop("inputs", None)


def test_delegation_is_what_the_kind_declares(memory):
    spec = StorageSpec("memory", {"name": "inputs"}, {"kind": "managed_identity", "client_id": "c1"})
    assert delegated_kind(spec) == "access_token"  # declared: an access token for its scope
    registry.unregister("memory")
    assert delegated_kind(spec) == "managed_identity"  # unknown kind: handed over as it is


def test_the_shipped_kinds_and_schemes():
    assert registry.known_kinds() == SHIPPED_KINDS
    assert registry.url_schemes() == SHIPPED_SCHEMES
    assert ", ".join(registry.datastore_kinds()) == SHIPPED_DATASTORE_TYPES  # https: read by URL only
    kinds = registry.storage_kinds()
    assert [k.name for k in kinds if not k.capabilities.lists_folders] == ["https"]
    assert [k.name for k in kinds if not k.capabilities.writable] == ["https"]
    assert [k.name for k in kinds if k.capabilities.local_paths] == ["local"]
    assert {k.name for k in kinds if k.capabilities.remote_writes} == {"azure_blob", "azure_data_lake_gen2", "s3"}
    assert {k.name for k in kinds if k.capabilities.hierarchical} == {"local", "azure_data_lake_gen2", "azure_data_lake_gen1"}
    assert {k.name: k.delegation for k in kinds if k.delegation != Delegation()} == {
        "azure_blob": Delegation(sas=True, token_scope="https://storage.azure.com/.default"),
        "azure_data_lake_gen2": Delegation(sas=True, token_scope="https://storage.azure.com/.default"),
        "azure_data_lake_gen1": Delegation(sas=False, token_scope="https://datalake.azure.net/.default"),
    }
    assert {k.name: k.identity.reader for k in kinds} == {
        "local": "server", "https": "anonymous", "azure_blob": "job", "azure_data_lake_gen2": "job",
        "azure_data_lake_gen1": "job", "s3": "job"}


def test_a_data_stores_type_is_any_registered_kind_and_a_bad_one_names_the_valid_ones():
    """The types a data store may have come from the registry (the kinds' own modules), not from a
    list in entities: the memory kind is refused until its one registry line runs, then accepted."""
    for bad in ("memory", "https", "ftp"):
        with pytest.raises(PydanticValidationError) as refused:
            Datastore(name="ds", type=bad)
        assert f"unknown data store type '{bad}'; valid types: {SHIPPED_DATASTORE_TYPES}" in str(refused.value)
    kind = registry.register(memory_kind.__name__)
    try:
        assert Datastore(name="ds", type="memory").type == "memory"
        with pytest.raises(PydanticValidationError, match=f"valid types: {SHIPPED_DATASTORE_TYPES}, memory"):
            Datastore(name="ds", type="ftp")
        schema = Datastore.model_json_schema()["properties"]["type"]
        assert schema["type"] == "string" and schema["enum"][-1] == "memory"
    finally:
        registry.unregister(kind.name)
    with pytest.raises(PydanticValidationError, match="unknown data store type 'memory'"):
        Datastore(name="ds", type="memory")


def _extras() -> set[str]:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    return set(tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"])


@pytest.mark.parametrize("kind", registry.storage_kinds(), ids=lambda k: k.name)
def test_every_registered_kind_declares_everything(kind: StorageKind):
    assert kind.name and kind.title and ":" in kind.backend
    cls = backend_class(kind.name)
    assert issubclass(cls, StorageBackend) and cls.kind == kind.name
    assert kind.extra is None or kind.extra in _extras()
    rules = kind.identity
    assert rules.reader in ("server", "anonymous", "job")
    if rules.reader == "job":  # the identity of the job reads it: which identities, what to do when none can
        assert rules.compute_identities and set(rules.compute_identities) <= set(IDENTITY_FIELDS)
        assert rules.compute_identity_hint and rules.grant and rules.account_fields and rules.location
        assert set(rules.account_fields) <= set(kind.config_fields)
    assert isinstance(kind.delegation, Delegation) and isinstance(kind.capabilities, Capabilities)
    assert kind.delegation.token_scope is None or kind.delegation.token_scope.startswith("https://")
    assert set(kind.settings) <= set(StorageSettings.model_fields)
    assert set(kind.config_fields) <= set(Datastore.model_fields)
    assert bool(kind.schemes) == (kind.spec_for_url is not None)
    # the capabilities agree with the backend: files by path only where the backend hands out paths
    assert kind.capabilities.local_paths == (cls.local_path is not StorageBackend.local_path)


@pytest.mark.parametrize(("kind", "missing"), [
    ("local", "path"), ("azure_blob", "account_name, container_name"), ("azure_data_lake_gen2", "account_name, filesystem"),
    ("azure_data_lake_gen1", "store_name"), ("s3", "bucket"),
])
def test_a_data_store_needs_the_fields_its_kind_declares(kind, missing):
    from batchpoint.workspace.service import _check_datastore_fields

    with pytest.raises(ValidationError, match=f"^data store 'ds' of type {kind} needs: {missing}$"):
        _check_datastore_fields(Datastore(name="ds", type=kind))
