"""The engines: one line per engine, naming its declaration (an :class:`~batchpoint.engines.kinds.EngineKind`).

Adding an engine is one module (its :class:`~batchpoint.engines.base.Engine` class and ``KIND``) and
one line in :data:`ENGINE_KINDS` (or, for a plug-in outside Batchpoint, one :func:`register` call).
A compute's ``type`` picks the engine that declares it in ``compute_types``; every other compute,
and a deployment without one, runs on the ``default`` engine (the local pool).
"""

from __future__ import annotations

import threading

from batchpoint import entities
from batchpoint._internal.plugins import load
from batchpoint.engines.kinds import EngineKind
from batchpoint.exceptions import ValidationError

#: ``"module:ATTRIBUTE"`` of each engine's declaration
ENGINE_KINDS: tuple[str, ...] = (
    "batchpoint.engines.kinds:LOCAL_POOL",
    "batchpoint.engines.kinds:RAY",
)

_kinds: dict[str, EngineKind] = {}
_loaded = False
_lock = threading.RLock()


def _declared(target: str) -> EngineKind:
    kind = load(target, None, f"engine declaration '{target}'")
    if not isinstance(kind, EngineKind):
        raise ValidationError(f"'{target}' is not an engine declaration (an EngineKind)")
    return kind


def _all() -> dict[str, EngineKind]:
    global _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                for target in ENGINE_KINDS:
                    kind = _declared(target)
                    _kinds.setdefault(kind.name, kind)
                _loaded = True
    return _kinds


def register(kind: EngineKind | str) -> EngineKind:
    """Add an engine: its declaration, or ``"module:ATTRIBUTE"`` naming it. One of the same name is replaced."""
    declared = _declared(kind) if isinstance(kind, str) else kind
    with _lock:
        _all()[declared.name] = declared
    return declared


def unregister(name: str) -> None:
    with _lock:
        _all().pop(name, None)


def engine_kinds() -> list[EngineKind]:
    return list(_all().values())


def known_engines() -> list[str]:
    return sorted(_all())


def compute_types() -> list[str]:
    """Every compute type some engine declares, in registration order: the types
    ``entities.AmlCompute`` accepts."""
    return list(dict.fromkeys(t for kind in _all().values() for t in kind.compute_types))


entities.accept_types("compute", compute_types)


def engine_kind(name: str) -> EngineKind:
    """The declaration of engine ``name``; an unknown name is refused, listing the known ones."""
    kind = _all().get(name)
    if kind is None:
        raise ValidationError(f"unknown engine '{name}'; known engines: {', '.join(known_engines())}")
    return kind


def kind_for_compute_type(compute_type: str | None) -> EngineKind:
    """The engine that runs computes of ``compute_type`` (None: no compute): the one declaring it,
    else the default engine."""
    kinds = _all().values()
    for kind in kinds:
        if compute_type and compute_type in kind.compute_types:
            return kind
    defaults = [k for k in kinds if k.default]
    if len(defaults) != 1:
        raise ValidationError(f"exactly one engine must be the default; found: {', '.join(k.name for k in defaults)}")
    return defaults[0]


def engine_class(name: str) -> type:
    kind = engine_kind(name)
    return load(kind.engine, kind.extra, f"engine '{name}'")  # type: ignore[no-any-return]
