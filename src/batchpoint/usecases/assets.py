"""Data assets and models by version, as the Azure-shaped API shows them (its bodies are built from
the versions' records), and registering a version idempotently (Azure's PUT of a version)."""

from __future__ import annotations

from typing import Any

from batchpoint.entities import Data, Model
from batchpoint.exceptions import ConflictError, NotFoundError
from batchpoint.store.tables import AssetRow
from batchpoint.usecases.services import Services


def versions(sv: Services, collection: str, name: str | None = None) -> list[AssetRow]:
    """Every version of the data assets (``collection`` ``data``) or models (``models``), or of one."""
    return sv.store.list_assets(collection, name)


def version(sv: Services, collection: str, name: str, number: str) -> AssetRow:
    return sv.store.get_asset(collection, name, version=number)


def register_once(sv: Services, collection: str, entity: Model | Data, principal: str | None = None,
                  assignments: Any = ()) -> AssetRow:
    """Register ``entity`` (a new version), or answer the version that exists with the same path
    and type; the same version with another path or type is a 409 (versions are immutable)."""
    try:
        existing = sv.store.get_asset(collection, entity.name or "", version=entity.version)
    except NotFoundError:
        existing = None
    if existing is not None:
        if existing.path == entity.path and existing.type == entity.type:
            return existing
        raise ConflictError(f"{collection[:-1] if collection == 'models' else 'data asset'} '{entity.name}' version "
                            f"{entity.version} already exists with another path or type; versions are immutable: "
                            "create a new version")
    if collection == "models":
        created = sv.workspace.create_model(entity, principal, assignments)  # type: ignore[arg-type]
    else:
        created = sv.workspace.create_data(entity, principal, assignments)  # type: ignore[arg-type]
    return sv.store.get_asset(collection, created.name or "", version=created.version)
