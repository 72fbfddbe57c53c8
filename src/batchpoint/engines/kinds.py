"""What an engine says about itself: :class:`EngineKind`, and the declarations of the local pool and Ray.

An engine is one module holding its :class:`~batchpoint.engines.base.Engine` class and a ``KIND``
declaration, plus one line in :data:`batchpoint.engines.registry.ENGINE_KINDS`. The local pool's
and Ray's declarations live here (their modules are being reshaped around one scheduler); a new
engine declares its own beside its class. Nothing here imports an engine's libraries: the class is
named as ``"module:Class"`` and imported when a job first needs it, with ``extra`` as the install
hint.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOCAL_POOL", "RAY", "EngineCapabilities", "EngineKind"]


@dataclass(frozen=True)
class EngineCapabilities:
    """``remote_workers``: workers run on other machines (they read inputs from storage themselves and
    cannot see the server's disk); ``remote_parts``: workers write a job's parts straight to a remote
    output store (``azureml/<job>/parts/`` there); ``fenced_workers``: each worker runs in a sandbox
    of its own (bubblewrap, ``workers.isolation``)."""

    remote_workers: bool = False
    remote_parts: bool = False
    fenced_workers: bool = False


@dataclass(frozen=True)
class EngineKind:
    """Everything Batchpoint knows about one engine.

    ``compute_types``: the compute types that run on it (what ``AmlCompute.type`` accepts is every
    engine's, ``registry.compute_types``); the ``default`` engine also runs deployments without a compute. ``per_compute``: one engine instance per
    compute spec (it is bound to the compute: an address, a token); otherwise one per process.
    ``compute_fields``: the compute's own fields it reads; ``settings``: the section of
    :class:`batchpoint.settings.Settings` it reads (``BATCHPOINT_<SECTION>__*``), if any."""

    name: str
    title: str
    engine: str
    extra: str | None
    capabilities: EngineCapabilities
    compute_types: tuple[str, ...] = ()
    default: bool = False
    per_compute: bool = False
    compute_fields: tuple[str, ...] = ()
    settings: str | None = None


LOCAL_POOL = EngineKind(
    name="local",
    title="the local process pool",
    engine="batchpoint.engines.local_pool:LocalPoolEngine",
    extra=None,
    capabilities=EngineCapabilities(remote_workers=False, remote_parts=False, fenced_workers=True),
    compute_types=("amlcompute", "local"),
    default=True,
    settings="workers",
)

RAY = EngineKind(
    name="ray",
    title="a Ray cluster",
    engine="batchpoint.engines.ray_engine:RayEngine",
    extra="ray",
    capabilities=EngineCapabilities(remote_workers=True, remote_parts=True, fenced_workers=True),
    compute_types=("ray",),
    per_compute=True,
    compute_fields=("address", "auth_token", "num_cpus_per_worker"),
    settings="ray",
)
