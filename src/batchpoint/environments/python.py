"""Which Python an environment is built for: the one its spec asks for when it can be had, else
this machine's.

In this order, for a spec that asks for a Python (``python=3.8.5`` in a conda file, ``python:`` in
MLflow's ``python_env.yaml``):

1. an interpreter the operator lists for that version (setting ``environments.pythons``,
   ``3.8=/opt/py38/bin/python,3.9=…``; a key ``3.8`` serves any 3.8.x, ``3.8.5`` only 3.8.5);
2. this machine's Python when it is that version (same major.minor);
3. a uv-managed Python download (setting ``environments.python_downloads``, off by default: it
   needs the internet or a mirror, ``environments.python_install_mirror``);
4. else this machine's Python, and the build adapts the resolved versions to it (``build.py``).

:class:`Target` carries the chosen interpreter's version and wheel tags (for "does this release
install here"); :func:`plan_key` is the part of the cache key that depends on the choice, computed
from the settings alone (``environment show`` finds a build without building it).
"""

from __future__ import annotations

import itertools
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging import tags as ptags

from batchpoint.settings import Settings

MACHINE = "this machine's Python"
LISTED = "listed in environments.pythons"
DOWNLOADED = "a uv-managed download (environments.python_downloads)"


def machine_python() -> str:
    return platform.python_version()


def base_python() -> str:
    """This machine's Python (the server's interpreter, outside any virtualenv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def minor(version: str | None) -> tuple[int, int] | None:
    m = re.match(r"^\s*(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def minor_text(version: str | None) -> str:
    mm = minor(version)
    return f"{mm[0]}.{mm[1]}" if mm else "?"


def is_older(requested: str | None) -> bool:
    """Does the spec ask for an older Python than this machine's? Then that Python bounds which
    releases its open dependencies resolve to (as on Azure), instead of the exclude-newer rule."""
    want, have = minor(requested), minor(machine_python())
    return bool(want and have and want < have)


@dataclass(frozen=True)
class Target:
    """The interpreter an environment is built with."""

    version: str  # 3.11.7
    executable: str
    how: str  # MACHINE | LISTED | DOWNLOADED
    tags: frozenset[str]

    def describe(self) -> str:
        return f"Python {self.version} ({self.executable}, {self.how})"

    def tag_summary(self) -> str:
        own = sorted(t for t in self.tags if t.startswith("cp") and "abi3" not in t and "none" not in t.split("-")[1])
        first = next((t for t in own if "manylinux_" in t), own[0] if own else None)
        if first is None:
            return f"cp{minor_text(self.version).replace('.', '')}"
        interp, _abi, plat = first.split("-")
        return f"{interp}, {re.sub(r'_[0-9]+_[0-9]+', '', plat)}"


_MACHINE: Target | None = None


def machine_target() -> Target:
    global _MACHINE
    if _MACHINE is None:
        _MACHINE = Target(machine_python(), base_python(), MACHINE, frozenset(str(t) for t in ptags.sys_tags()))
    return _MACHINE


def tags_for(version: str) -> frozenset[str]:
    """The wheel tags of CPython ``version`` on this machine's platform."""
    mm = minor(version)
    if mm is None or mm == minor(machine_python()):
        return machine_target().tags
    interp = f"cp{mm[0]}{mm[1]}"
    return frozenset(str(t) for t in itertools.chain(ptags.cpython_tags(mm), ptags.compatible_tags(mm, interp)))


def parse_pythons(value: dict[str, str] | str | None) -> dict[str, str]:
    """``3.8=/opt/py38/bin/python,3.9=/opt/py39/bin/python`` (or a mapping) → {version: path}."""
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k).strip(): str(v).strip() for k, v in value.items()}
    out = {}
    for part in str(value).split(","):
        if not part.strip():
            continue
        key, sep, path = part.partition("=")
        if not sep or not minor(key) or not path.strip():
            raise ValueError(f"environments.pythons: '{part.strip()}' is not VERSION=PATH (e.g. 3.8=/opt/py38/bin/python)")
        out[key.strip()] = path.strip()
    return out


def listed_for(settings: Settings, requested: str) -> tuple[str, str] | None:
    """(key, path) of the operator's interpreter for ``requested``: an exact key first, then major.minor."""
    pythons = parse_pythons(settings.environments.pythons)
    if requested in pythons:
        return requested, pythons[requested]
    for key, path in pythons.items():
        if key.count(".") == 1 and minor(key) == minor(requested):
            return key, path
    return None


def plan_key(settings: Settings, requested: str | None) -> str:
    """What the choice of interpreter depends on, for the cache key ('' for this machine's Python
    with no other Python asked for)."""
    if not requested or not minor(requested):
        return ""
    listed = listed_for(settings, requested)
    if listed:
        return f"listed:{listed[0]}={listed[1]}"
    if minor(requested) == minor(machine_python()):
        return ""
    downloads = "downloads" if settings.environments.python_downloads else "no-downloads"
    return f"requested:{requested}:{downloads}"


def probe(executable: str) -> str:
    """The version of the interpreter at ``executable`` (raises OSError/RuntimeError if it cannot run)."""
    proc = subprocess.run([executable, "-c", "import platform, sys; print(sys.implementation.name, "
                           "platform.python_version())"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1:] or f"exit {proc.returncode}")
    impl, version = proc.stdout.split()
    if impl != "cpython":
        raise RuntimeError(f"it is {impl}, not CPython")
    return version


def choose(settings: Settings, requested: str | None, uv: str, log: Callable[[str], None]) -> Target:
    """The interpreter for a spec asking for ``requested``, each step written to ``log``."""
    here = machine_target()
    if not requested:
        log(f"python: the spec asks for no Python version; {here.describe()}")
        return here
    listed = listed_for(settings, requested)
    if listed:
        key, path = listed
        try:
            version = probe(path)
        except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            log(f"python: {path} (listed for {key} in environments.pythons) cannot be used: {exc}")
        else:
            problem = worker_problem(settings, path)
            if minor(version) != minor(requested):
                log(f"python: {path} (listed for {key} in environments.pythons) is Python {version}, not "
                    f"{minor_text(requested)}; not used")
            elif problem:
                log(f"python: {path} (Python {version}, listed for {key} in environments.pythons) cannot run "
                    f"Batchpoint's worker ({problem}); not used")
            else:
                target = Target(version, path, f"{LISTED} for {key}", tags_for(version))
                log(f"python: the spec asks for Python {requested}; {target.describe()}")
                return target
    if minor(requested) == minor(here.version):
        log(f"python: the spec asks for Python {requested}; {here.describe()} is that version")
        return here
    if settings.environments.python_downloads:
        target = _download(settings, requested, uv, log)
        if target is not None:
            return target
    else:
        log(f"python: Python {requested} is not listed in environments.pythons and uv-managed downloads are off "
            "(setting environments.python_downloads)")
    log(f"python: the spec asks for Python {requested}, which this machine does not have; it is resolved for "
        f"Python {requested} (as Azure would) and adapted to {here.describe()}")
    return here


def python_install_dir(settings: Settings) -> Path:
    return settings.environments.python_install_dir or (settings.home / "cache" / "python")


def _download(settings: Settings, requested: str, uv: str, log: Callable[[str], None]) -> Target | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV", "CONDA_"))}
    env.update(UV_PYTHON_INSTALL_DIR=str(python_install_dir(settings)), UV_NO_PROGRESS="1", NO_COLOR="1")
    mirror = ["--mirror", settings.environments.python_install_mirror] \
        if settings.environments.python_install_mirror else []
    cmd = [uv, "python", "install", "--no-config", requested, *mirror]
    log("$ " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
        out = (proc.stdout + proc.stderr).strip()
        for line in out.splitlines():
            log("  " + line)
        if proc.returncode != 0:
            raise RuntimeError(out.splitlines()[-1] if out else f"exit {proc.returncode}")
        find = subprocess.run([uv, "python", "find", "--no-config", "--managed-python", "--no-python-downloads",
                               requested], capture_output=True, text=True, env=env, timeout=60,
                              stdin=subprocess.DEVNULL)
        if find.returncode != 0:
            raise RuntimeError((find.stderr or find.stdout).strip())
        path = find.stdout.strip().splitlines()[-1]
        version = probe(path)
    except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        log(f"python: downloading Python {requested} with uv failed: {exc}")
        return None
    problem = worker_problem(settings, path)
    if problem:
        log(f"python: the downloaded Python {version} ({path}) cannot run Batchpoint's worker ({problem}); not used")
        return None
    target = Target(version, path, DOWNLOADED, tags_for(version))
    log(f"python: the spec asks for Python {requested}; {target.describe()}")
    return target


WORKER_PROBE = """
import pathlib, sys
copy = sys.argv[1]
sys.path.insert(0, copy)
for path in sorted(pathlib.Path(copy, "batchpoint").rglob("*.py")):
    compile(path.read_text(), str(path), "exec")
import batchpoint._internal.clock, batchpoint.exceptions, batchpoint.worker.protocol
"""


def worker_problem(settings: Settings, executable: str) -> str | None:
    """Why the interpreter cannot run Batchpoint's worker side (its worker-only copy must compile
    and its base modules import there: the worker runs in the environment's Python), or None."""
    from batchpoint.environments.worker_copy import worker_copy

    copy = worker_copy(settings.environments_dir)
    try:
        proc = subprocess.run([executable, "-I", "-c", WORKER_PROBE, str(copy)], capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {proc.returncode}"
