"""Build an environment with uv, once per resolved spec, safe when two jobs need it at once.

Layout under ``<environments>/`` (setting ``environments.root``, default ``<home>/environments``):

=======================  ==========================================================================
``<hash>/``              a finished environment (a relocatable virtualenv of this machine's Python)
``<hash>/batchpoint-env.json``  what it was built from and what it holds (spec, notes, rule, packages,
                         seconds); its presence marks a finished build
``<hash>/.last-used``    touched each time a job uses it (``prune`` reads its time)
``<hash>.lock``          the build lock (``fcntl.flock``): one builder per hash, across threads and
                         processes; the others wait, then find the finished build
``.building-<hash>-*/``  a build in progress, renamed to ``<hash>/`` when it is complete, so a
                         half-built environment is never used; left-overs of a crash are removed
                         by the next build of that hash
``_worker/<digest>/``    the worker-only copy of Batchpoint (``worker_copy.py``)
=======================  ==========================================================================

Steps: ``uv venv --seed --relocatable`` with this machine's Python (pip, setuptools and wheel
seeded, as conda would: old packages import ``pkg_resources``), then ``uv pip install`` of the
spec — both with the exclude-newer date of :func:`batchpoint.environments.index.exclude_newer` —
from the configured index only, with uv's cache under ``environments.uv_cache_dir``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from batchpoint._internal.clock import utcnow
from batchpoint.environments.index import IndexClient, exclude_newer, inspect_pins
from batchpoint.environments.spec import EnvironmentSpec, machine_python
from batchpoint.environments.worker_copy import link_worker, site_packages
from batchpoint.exceptions import JobError
from batchpoint.settings import Settings

RECORD = "batchpoint-env.json"
LAST_USED = ".last-used"
#: lines of the installer's output kept in the job's error (the whole output is in the log)
ERROR_LINES = 25


class EnvironmentBuildError(JobError):
    """An environment could not be built (the installer's error is the root cause)."""

    code = "environment_build_failed"
    status_code = 400


@dataclass
class Built:
    path: Path
    python: str
    built_now: bool
    seconds: float
    record: dict[str, Any]


Log = Callable[[str], None]


def uv_binary(settings: Settings) -> str:
    if settings.environments.uv_path:
        return settings.environments.uv_path
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
        if not found:
            raise EnvironmentBuildError("uv is not installed: install it with 'pip install uv' (it is a dependency "
                                        "of Batchpoint) or set BATCHPOINT_ENVIRONMENTS__UV_PATH") from None
        return found


def base_python() -> str:
    """This machine's Python (the server's interpreter, outside any virtualenv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def read_record(env: Path) -> dict[str, Any] | None:
    try:
        return json.loads((env / RECORD).read_text())
    except (OSError, ValueError):
        return None


def touch_last_used(env: Path) -> None:
    (env / LAST_USED).touch()


class Builder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.environments_dir
        self.index_urls = settings.environments.index_urls()

    def path_for(self, spec: EnvironmentSpec) -> Path:
        return self.root / spec.hash(self.index_urls)

    def ensure(self, spec: EnvironmentSpec, log: Log, on_wait: Callable[[], None] | None = None) -> Built:
        """The environment of ``spec``: found in the cache, or built now (under its lock)."""
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path_for(spec)
        if read_record(final) is None:
            with open(self.root / f"{final.name}.lock", "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log(f"environment {final.name} is being built by another job; waiting for it")
                    if on_wait:
                        on_wait()
                    fcntl.flock(lock, fcntl.LOCK_EX)
                if read_record(final) is None:
                    record = self._build(spec, final, log)
                    link_worker(final, self.root)
                    touch_last_used(final)
                    return Built(final, str(env_python(final)), True, time.monotonic() - started, record)
        record = read_record(final) or {}
        log(f"environment {final.name} found in the cache (built {record.get('built_at', '?')}); no build")
        link_worker(final, self.root)
        touch_last_used(final)
        return Built(final, str(env_python(final)), False, time.monotonic() - started, record)

    # -- the build -----------------------------------------------------------------------------
    def _uv(self, args: list[str], log: Log) -> None:
        cmd = [uv_binary(self.settings), *args]
        log("$ " + " ".join(cmd))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV", "CONDA_"))}
        env.update(UV_NO_PROGRESS="1", UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                                  timeout=self.settings.environments.build_timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise EnvironmentBuildError(
                f"building the environment took longer than {self.settings.environments.build_timeout_s:.0f} s "
                "(setting environments.build_timeout_s) and was stopped") from exc
        except OSError as exc:
            raise EnvironmentBuildError(f"cannot run uv ({cmd[0]}): {exc}") from exc
        output = (proc.stdout or "") + (proc.stderr or "")
        for line in output.splitlines():
            log("  " + line)
        if proc.returncode != 0:
            lines = [ln for ln in output.strip().splitlines() if ln.strip()]
            tail = "\n".join(lines[-ERROR_LINES:])
            raise EnvironmentBuildError(f"uv failed (exit {proc.returncode}):\n{tail}",
                                        details={"installer_output": tail})

    def _warm_up(self, env: Path, log: Log) -> None:
        """Import pandas and MLflow once, so their bytecode is written now (part of the build) and
        not by every worker of the first job; a failure here is the worker's to report."""
        try:
            proc = subprocess.run(_warm_up_cmd(env), capture_output=True, text=True, timeout=600,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log(f"warm-up import skipped: {exc}")
            return
        if proc.returncode == 0:
            log(f"warm-up: {proc.stdout.strip()}")
            return
        out = (proc.stdout + proc.stderr).strip().splitlines()
        log("warm-up import failed (the workers will report it):\n  " + "\n  ".join(out[-10:]))

    def _common(self, cutoff: str | None) -> list[str]:
        args = ["--no-config", "--color", "never", "--cache-dir", str(self.settings.uv_cache_dir),
                "--default-index", self.index_urls[0]]
        for extra in self.index_urls[1:]:
            args += ["--index", extra]
        if cutoff:
            args += ["--exclude-newer", cutoff]
        return args

    def _build(self, spec: EnvironmentSpec, final: Path, log: Log) -> dict[str, Any]:
        started = time.monotonic()
        for stale in self.root.glob(f".building-{final.name}-*"):  # a crashed build's left-overs (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / f".building-{final.name}-{uuid.uuid4().hex[:8]}"
        log(f"building environment {final.name} with uv for Python {machine_python()} ({base_python()})")
        log(f"index: {', '.join(self.index_urls)}")
        report = inspect_pins(IndexClient(self.index_urls), list(spec.requirements), spec.source)
        if report.no_build:
            raise EnvironmentBuildError("; ".join(report.no_build))
        cutoff, rule = exclude_newer(report)
        log(rule)
        try:
            tmp.mkdir(parents=True)
            reqs = tmp / "batchpoint-requirements.txt"
            self._uv(["venv", "--seed", "--relocatable", "--python", base_python(), "--no-python-downloads",
                      *self._common(cutoff), str(tmp / "venv")], log)
            reqs.write_text("".join(f"{r}\n" for r in spec.requirements))
            try:
                self._uv(["pip", "install", "--python", str(tmp / "venv" / "bin" / "python"),
                          *self._common(cutoff), "-r", str(reqs)], log)
            except EnvironmentBuildError as exc:
                if report.sdist_only:
                    raise EnvironmentBuildError(
                        f"{exc}\n{', '.join(report.sdist_only)} (from {spec.source}) has no wheel for Python "
                        f"{machine_python()} on this machine and its source archive did not build (above); pin a "
                        "version with a wheel for this Python", details=exc.details) from exc
                raise
            env = tmp / "venv"
            shutil.move(str(reqs), env / "batchpoint-requirements.txt")
            self._warm_up(env, log)
            record = {"hash": final.name, "source": spec.source, "requirements": list(spec.requirements),
                      "notes": list(spec.notes), "rule": rule, "exclude_newer": cutoff,
                      "python": machine_python(), "index": self.index_urls, "built_at": utcnow().isoformat(),
                      "seconds": round(time.monotonic() - started, 1), "packages": installed_packages(env)}
            (env / RECORD).write_text(json.dumps(record, indent=1))
            os.rename(env, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"environment {final.name} built in {record['seconds']} s: {len(record['packages'])} packages")
        return record


WARM_UP = ("import importlib.util, time\n"
           "t = time.monotonic()\n"
           "names = [n for n in ('pandas', 'mlflow.pyfunc') if importlib.util.find_spec(n.split('.')[0])]\n"
           "for n in names:\n"
           "    __import__(n)\n"
           "print('imported', ', '.join(names), 'in %.1f s' % (time.monotonic() - t))\n")


def _warm_up_cmd(env: Path) -> list[str]:
    return [str(env / "bin" / "python"), "-c", WARM_UP]


def installed_packages(env: Path) -> list[str]:
    """``name==version`` of every distribution in the environment, sorted."""
    try:
        sp = site_packages(env)
    except FileNotFoundError:
        return []
    return sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions(path=[str(sp)])
                   if d.metadata["Name"]}, key=str.lower)
