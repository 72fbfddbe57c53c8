"""The worker side of Batchpoint inside a deployment's environment, without the server's dependencies.

Installing Batchpoint into an environment would bring FastAPI, SQLAlchemy, pydantic, httpx, … and
its own pandas/MLflow pins, which would fight the model's. Instead the environment gets a ``.pth``
file naming a **worker-only copy** of the package: ``batchpoint/__init__.py`` reduced to the
version, plus the modules ``python -m batchpoint.worker`` imports (``worker/``, ``scoring/``,
``outputs/``, ``storage/``, ``_internal/``, ``exceptions.py``, ``_version.py``). The copy lives under
``<environments>/_worker/<digest of its files>/`` — one per Batchpoint version, shared by every
environment, made with a temporary folder and a rename — and the ``.pth`` is rewritten whenever an
environment is used, so an environment built by an older server runs the current worker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import batchpoint.worker

#: what a worker imports (an import-linter contract keeps worker/ and scoring/ off the server side)
WORKER_PACKAGES = ("worker", "scoring", "outputs", "storage", "_internal")
WORKER_MODULES = ("exceptions.py", "_version.py")
PTH_NAME = "batchpoint_worker.pth"
STUB_INIT = ('"""Batchpoint\'s worker side only: a copy made for a deployment\'s environment '
             '(batchpoint.environments.worker_copy)."""\n\nfrom batchpoint._version import __version__  # noqa: F401\n')


def _sources() -> list[tuple[str, Path]]:
    root = Path(batchpoint.worker.__file__).parent.parent
    files = [(name, root / name) for name in WORKER_MODULES]
    for package in WORKER_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            files.append((str(path.relative_to(root)), path))
    return files


def worker_copy(environments_dir: Path) -> Path:
    """The folder to put on an environment's path (made once per set of worker files)."""
    sources = _sources()
    digest = hashlib.sha256()
    for rel, path in sources:
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    target = environments_dir / "_worker" / digest.hexdigest()[:16]
    if (target / "batchpoint" / "__init__.py").is_file():
        return target
    tmp = target.with_name(f".tmp-{target.name}-{uuid.uuid4().hex[:8]}")
    try:
        for rel, path in sources:
            dest = tmp / "batchpoint" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        (tmp / "batchpoint" / "__init__.py").write_text(STUB_INIT)
        try:
            os.rename(tmp, target)
        except OSError:  # another job made it first
            if not (target / "batchpoint" / "__init__.py").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python*/site-packages"))
    if not found:
        raise FileNotFoundError(f"{env} has no lib/python*/site-packages")
    return found[0]


def link_worker(env: Path, environments_dir: Path) -> None:
    """Point ``env`` at the current worker copy (atomically rewritten when it changed)."""
    copy = worker_copy(environments_dir)
    pth = site_packages(env) / PTH_NAME
    text = f"{copy}\n"
    if pth.is_file() and pth.read_text() == text:
        return
    tmp = pth.with_name(f".{PTH_NAME}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, pth)
