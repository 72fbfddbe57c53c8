"""Registered environments (azure-ai-ml's ``Environment``) and the environments built for them.

A registered environment is a row of the generic asset table (``collection = 'environments'``,
versioned, label ``latest``) whose ``path`` is a JSON file under
``<home>/environment-assets/<name>/<version>/environment.json`` holding ``conda_file``, ``image``
and ``properties`` (the table has no columns for them; no migration needed). The file is written
before the row is committed to stay, and removed with it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from batchpoint._internal.clock import as_utc
from batchpoint.entities import Environment
from batchpoint.environments.build import LAST_USED, RECORD, Builder, read_record
from batchpoint.environments.spec import EnvironmentSpec
from batchpoint.exceptions import ConflictError, NotFoundError, ValidationError
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.store.tables import AssetRow

COLLECTION = "environments"


class EnvironmentAssets:
    def __init__(self, settings: Settings, store: SqlMetadataStore) -> None:
        self.settings = settings
        self.store = store

    @property
    def assets_dir(self) -> Path:
        return self.settings.home / "environment-assets"

    def _id(self, name: str, version: str) -> str:
        return f"{self.settings.arm_prefix}/environments/{name}/versions/{version}"

    # -- registered environments ----------------------------------------------------------------
    def create(self, env: Environment) -> Environment:
        from batchpoint.environments.resolve import from_inline  # validate the conda file now, not at a job

        if env.conda_file is None and not env.image:
            raise ValidationError(f"environment '{env.name}' needs conda_file (a conda environment with a pip section) "
                           "or image")
        from_inline({"conda_file": env.conda_file, "image": env.image}, f"environment '{env.name}'")
        try:
            row = self.store.create_asset(COLLECTION, name=env.name, version=env.version, type="environment",
                                          path=str(self.assets_dir / env.name), description=env.description,
                                          tags=env.tags)
        except ConflictError:
            raise ConflictError(f"environment '{env.name}' version {env.version} already exists; versions are "
                                "immutable: create a new version (omit version to get the next number)") from None
        folder = self.assets_dir / row.name / row.version
        try:
            folder.mkdir(parents=True, exist_ok=True)
            body = {"conda_file": env.conda_file, "image": env.image, "properties": env.properties}
            tmp = folder / ".environment.json.tmp"
            tmp.write_text(json.dumps(body, indent=1))
            os.replace(tmp, folder / "environment.json")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            self.store.delete_asset(COLLECTION, row.name, row.version)
            raise
        return self.entity(self._row(row.name, row.version))

    def _row(self, name: str, version: str | None = None, label: str | None = None) -> AssetRow:
        rows = self.store.list_assets(COLLECTION, name)
        if not rows:
            raise NotFoundError(f"environment '{name}' was not found; list them with 'batchpoint environment list', "
                                "register one with 'batchpoint environment create -f env.yml'")
        if version is not None:
            for row in rows:
                if row.version == str(version):
                    return row
            known = ", ".join(r.version for r in rows)
            raise NotFoundError(f"environment '{name}' has no version '{version}'; known versions: {known}")
        if label not in (None, "latest"):
            raise NotFoundError(f"environment '{name}' has no label '{label}'; the only label is 'latest'")
        return self.store.get_asset(COLLECTION, name, label="latest")

    def get(self, name: str, version: str | None = None, label: str | None = None, with_build: bool = False
            ) -> Environment:
        env = self.entity(self._row(name, version, label))
        if with_build:
            env.build = self.build_of(env)
        return env

    def list(self, name: str | None = None) -> list[Environment]:
        return [self.entity(r) for r in self.store.list_assets(COLLECTION, name)]

    def delete(self, name: str, version: str) -> None:
        row = self._row(name, version)
        deployments = [f"{e}/{d}" for e, d, spec in self.store_deployments()
                       if _refers_to(spec.get("environment"), row.name, row.version)]
        if deployments:
            raise ConflictError(f"environment '{name}:{version}' is used by deployment(s) {', '.join(deployments)}; "
                                "change or delete them first")
        self.store.delete_asset(COLLECTION, row.name, row.version)
        shutil.rmtree(self.assets_dir / row.name / row.version, ignore_errors=True)

    def store_deployments(self) -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for endpoint in self.store.list_endpoints():
            for dep in self.store.list_deployments(endpoint.name):
                out.append((endpoint.name, dep.name, dep.spec or {}))
        return out

    def entity(self, row: AssetRow) -> Environment:
        body: dict[str, Any] = {}
        path = self.assets_dir / row.name / row.version / "environment.json"
        if path.is_file():
            body = json.loads(path.read_text())
        return Environment(name=row.name, version=row.version, description=row.description, tags=row.tags or {},
                           conda_file=body.get("conda_file"), image=body.get("image"),
                           properties=body.get("properties") or {}, id=self._id(row.name, row.version),
                           created_at=as_utc(row.created_at))

    # -- what was built -------------------------------------------------------------------------
    def spec_of(self, env: Environment) -> EnvironmentSpec:
        from batchpoint.environments.resolve import from_inline

        return from_inline({"conda_file": env.conda_file, "image": env.image},
                           f"environment '{env.name}:{env.version}'")

    def build_of(self, env: Environment) -> dict[str, Any]:
        from batchpoint.environments.spec import with_worker_needs

        spec = with_worker_needs(self.spec_of(env), needs_mlflow=False)
        if spec.use_server:
            return {"built": False, "reason": "no conda_file: jobs use the server's own environment"}
        path = Builder(self.settings).path_for(spec)
        info = build_info(path)
        if info is None:
            return {"built": False, "hash": path.name, "path": str(path),
                    "reason": "not built yet: the first job that needs it builds it"}
        return info


def _refers_to(value: Any, name: str, version: str) -> bool:
    if not isinstance(value, str):
        return False
    text = value.removeprefix("azureml:")
    return text in (f"{name}:{version}",)


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def last_used(path: Path) -> float | None:
    try:
        return (path / LAST_USED).stat().st_mtime
    except OSError:
        return None


def build_info(path: Path, with_size: bool = True) -> dict[str, Any] | None:
    record = read_record(path)
    if record is None:
        return None
    used = last_used(path)
    info = {"built": True, "hash": path.name, "path": str(path), "source": record.get("source"),
            "built_at": record.get("built_at"), "build_seconds": record.get("seconds"), "rule": record.get("rule"),
            "python": record.get("python"), "python_requested": record.get("python_requested"),
            "interpreter": record.get("interpreter"), "resolved_for_python": record.get("resolved_for_python"),
            "changes": record.get("changes", []), "exclude_newer_packages": record.get("exclude_newer_packages", {}),
            "requirements": record.get("requirements", []),
            "notes": record.get("notes", []), "packages": record.get("packages", []),
            "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(used)) if used else None}
    if with_size:
        info["size_bytes"] = dir_size(path)
    return info


def list_builds(settings: Settings) -> list[dict[str, Any]]:
    root = settings.environments_dir
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if path.is_dir() and (path / RECORD).is_file():
            info = build_info(path)
            if info:
                out.append(info)
    return out


def prune_builds(settings: Settings, older_than_days: float | None = None) -> list[dict[str, Any]]:
    """Remove builds not used for ``older_than_days`` (default: the setting); a build whose lock is
    held (being built or waited for) is kept. Returns what was removed."""
    import fcntl

    days = settings.environments.prune_after_days if older_than_days is None else older_than_days
    cutoff = time.time() - days * 86400
    removed = []
    for info in list_builds(settings):
        path = Path(info["path"])
        used = last_used(path) or 0.0
        if used > cutoff:
            continue
        with open(path.parent / f"{path.name}.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            trash = path.with_name(f".pruning-{path.name}")
            os.rename(path, trash)  # atomic: a job never sees half an environment
            shutil.rmtree(trash, ignore_errors=True)
        removed.append({"hash": info["hash"], "path": info["path"], "size_bytes": info.get("size_bytes"),
                        "last_used": info.get("last_used")})
    return removed
