"""YAML spec files in Azure ML's shapes. Safe loading only; unknown or mistyped fields are errors
that name the field and the file; relative local paths are read relative to the file (the
``path`` of a model or data asset, a deployment's ``code``, its inline ``model: {path: ...}`` and
its inline ``environment: {conda_file: ...}``); a ``$schema`` line is accepted and dropped. What of
Azure's YAML is honoured is listed in docs/azure-compatibility.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from batchpoint.exceptions import SpecError


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = doc
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SpecError(f"--set {dotted}: '{key}' is not an object")
    node[keys[-1]] = value


def parse_set(pairs: tuple[str, ...] | list[str]) -> list[tuple[str, Any]]:
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise SpecError(f"--set '{pair}' must look like key=value (e.g. settings.mini_batch_size=5)")
        key, raw = pair.split("=", 1)
        out.append((key.strip(), _set_value(pair, raw)))
    return out


def _set_value(pair: str, raw: str) -> Any:
    """A ``--set`` value read as plain YAML (numbers, true/false, lists); text that is not YAML
    stays text. Tags that build objects (``!!python/...``) are refused, never constructed."""
    if not raw:
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.constructor.ConstructorError as exc:
        raise SpecError(f"--set '{pair[:200]}': only plain YAML values are accepted; tags that build objects "
                        f"are refused ({exc.problem})") from exc
    except yaml.YAMLError:
        return raw


def read_yaml(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"spec file '{path}' does not exist")
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML (only plain YAML is accepted; tags that build objects are refused): {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: the spec must be a mapping of fields, got {type(doc).__name__}")
    doc.pop("$schema", None)
    return doc


def build(cls: type[BaseModel], doc: dict[str, Any], source: str) -> Any:
    try:
        return cls(**doc)
    except PydanticValidationError as exc:
        raise SpecError(_describe(exc, cls, source)) from exc
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{source}: {exc}") from exc


def _describe(exc: PydanticValidationError, cls: type[BaseModel], source: str) -> str:
    problems = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) or True)
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown field '{loc}' (check its spelling; valid fields: {_valid_fields(cls, err['loc'])})")
        elif err["type"] == "missing":
            problems.append(f"missing required field '{loc}'")
        else:
            problems.append(f"field '{loc}': {err['msg']}")
    return f"{source}: " + "; ".join(problems)


def _valid_fields(cls: type[BaseModel], loc: tuple[Any, ...]) -> str:
    model: Any = cls
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        annotation = getattr(field, "annotation", None)
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            break
        model = candidates[0]
    names = [n for n in getattr(model, "model_fields", {}) if n not in ("id", "created_at", "updated_at", "schema_")]
    return ", ".join(names)


def local_relative(path: str | None, spec_file: str | None) -> str | None:
    """A relative local path in a spec is relative to the spec file (as in az ml)."""
    if not path or spec_file is None or "://" in path or path.startswith(("azureml:", "/")):
        return path
    candidate = Path(spec_file).resolve().parent / path
    return str(candidate) if candidate.exists() else path


def inline_paths(doc: dict[str, Any], spec_file: str | None) -> None:
    """A deployment's inline ``model: {path: ...}`` and ``environment: {conda_file: ...}``: their
    relative paths are relative to the spec file, as the ``code`` folder's are."""
    for key, field in (("model", "path"), ("environment", "conda_file")):
        inline = doc.get(key)
        if isinstance(inline, dict):
            inline.pop("$schema", None)
            if isinstance(inline.get(field), str):
                inline[field] = local_relative(inline[field], spec_file)
