"""What a deployment's environment asks for, as a list of requirements uv can install — pure parsing.

Sources and what each contributes (``notes`` records every line that cannot be honoured here and
what was used instead; the job log prints them):

=========================  ====================================================================
source                     read as
=========================  ====================================================================
conda file (dict or YAML)  ``dependencies:`` pip section as given; ``python=…`` → the requested
                           Python (``python.py``); ``pip`` → the seed's pip; ``channels:`` → the package index;
                           other conda packages ``name=1.2`` → ``name==1.2.*`` from the index
                           (build strings dropped), conda-only ones (compilers, CUDA, MKL, …)
                           not installed
requirements list          PEP 508 lines; ``-r other.txt`` followed (beside the file); options
                           (``--index-url``, ``-e``, …) and URLs are not used: only the
                           configured index's packages are installed
MLflow ``python_env.yaml`` ``dependencies`` (usually ``-r requirements.txt``); ``python:`` → the
                           requested Python; ``build_dependencies`` → the seed
=========================  ====================================================================

For a model's own files, ``mlflow==X`` becomes ``mlflow-skinny==X`` (the worker only loads the
model; full MLflow would install a tracking server). The worker always needs pandas, and MLflow
for a model without a scoring script: :func:`with_worker_needs` adds them, open, when the spec
lacks them, and says so.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from batchpoint.exceptions import ValidationError

#: bump when a change here or in the builder makes older builds unfit (part of every hash)
BUILD_FORMAT = 2

#: conda packages with no PyPI counterpart the worker could use: noted, never installed
CONDA_ONLY = {"python", "pip", "libgcc", "libgcc-ng", "libstdcxx-ng", "libgomp", "_libgcc_mutex", "_openmp_mutex",
              "openssl", "ca-certificates", "cudatoolkit", "cudnn", "cuda", "cuda-version", "mkl", "mkl-service",
              "intel-openmp", "blas", "libblas", "libcblas", "liblapack", "openblas", "libopenblas", "zlib", "xz",
              "sqlite", "tk", "readline", "ncurses", "ld_impl_linux-64", "libffi", "bzip2", "tzdata-conda", "nomkl",
              "gcc", "gxx", "gcc_linux-64", "gxx_linux-64", "make", "cmake", "conda", "mamba"}
#: conda package names that PyPI spells differently
CONDA_TO_PYPI = {"pytorch": "torch", "py-xgboost": "xgboost", "pytorch-cpu": "torch", "py-lightgbm": "lightgbm",
                 "python-dateutil": "python-dateutil", "pyyaml": "pyyaml"}


def machine_python() -> str:
    return platform.python_version()


@dataclass(frozen=True)
class EnvironmentSpec:
    """A resolved environment: what to install and where it came from. ``requirements`` empty and
    ``use_server`` true means the server's own environment (no build)."""

    source: str
    requirements: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    use_server: bool = False
    from_model: bool = False
    python: str | None = None  # the Python version the spec asks for (conda python=3.8.5, python_env.yaml)

    def hash(self, index_urls: list[str], python_key: str = "") -> str:
        """The cache key: the requirements (normalized, in order-independent form), this machine's
        Python and platform, the requested Python and the interpreter chosen for it
        (``python.plan_key``), the index and the build format. Notes are not part of it."""
        key = {"requirements": sorted(normalize(r) for r in self.requirements),
               "python": [sys.implementation.name, machine_python(), platform.machine(), sys.platform],
               "index": list(index_urls), "format": BUILD_FORMAT}
        if python_key:
            key["requested_python"] = [self.python, python_key]
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]

    def names(self) -> set[str]:
        return {canonicalize_name(Requirement(r).name) for r in self.requirements}


def normalize(line: str) -> str:
    req = Requirement(line)
    req.name = canonicalize_name(req.name)
    return str(req)


def server_spec(reason: str) -> EnvironmentSpec:
    return EnvironmentSpec(source=f"the server's own environment ({reason})", use_server=True)


# ---- requirement lists ------------------------------------------------------------------------


def parse_requirement_lines(lines: list[str], where: str, base: Path | None = None,
                            depth: int = 0) -> tuple[list[str], list[str]]:
    """PEP 508 lines → (requirements, notes). ``-r`` files are read relative to ``base``."""
    reqs: list[str] = []
    notes: list[str] = []
    for raw in lines:
        line = str(raw).split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ", "-r", "--requirement=")):
            target = re.sub(r"^(-r|--requirement)[ =]?", "", line).strip()
            if base is None or depth > 3 or not (base / target).is_file():
                notes.append(f"{where}: '{line}' was not followed (no such file beside it)")
                continue
            sub, sub_notes = parse_requirement_lines((base / target).read_text().splitlines(),
                                                     f"{where} → {target}", base, depth + 1)
            reqs += sub
            notes += sub_notes
            continue
        if line.startswith("-"):
            notes.append(f"{where}: option '{line}' is not used; packages come from the server's index "
                         "(setting environments.index_url)")
            continue
        if "://" in line or line.startswith((".", "/")):
            notes.append(f"{where}: '{line}' is not installed: only packages of the configured index are installed, "
                         "not URLs or paths")
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ValidationError(f"{where}: '{line}' is not a valid requirement ({exc}); write it as "
                                  "name, name==1.2.3 or name>=1.2") from exc
        if req.url:
            notes.append(f"{where}: '{line}' is not installed: direct references are not used")
            continue
        reqs.append(str(req))
    return reqs, notes


def _conda_package(dep: str, where: str) -> tuple[str | None, str | None]:
    """One conda dependency → (pip requirement or None, note or None)."""
    text = dep.strip()
    name_part = text.split("::", 1)[-1]  # conda-forge::numpy=1.21
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", name_part)
    if not m:
        return None, f"{where}: conda dependency '{text}' was not understood and is not installed"
    name, rest = m.group(1).lower(), m.group(2).strip()
    if name == "python":
        return None, (f"{where}: '{text}': the environment is built for that Python when this machine has it, "
                      "else resolved for it and adapted to this machine's Python (the 'python:' lines say which)")
    if name == "pip":
        return None, f"{where}: '{text}': the environment's seeded pip is used instead"
    if name in CONDA_ONLY:
        return None, f"{where}: conda-only package '{text}' is not installed (no package of the index replaces it)"
    pypi = CONDA_TO_PYPI.get(name, name)
    version = rest
    build_dropped = False
    if re.match(r"^=?=?[^=<>!~ ]+=[^=]+$", version):  # name=1.2=build_0 / name==1.2=build
        version = version.rsplit("=", 1)[0]
        build_dropped = True
    version = version.replace(" ", "")
    if not version:
        spec = ""
    elif version.startswith("=") and not version.startswith("=="):
        v = version[1:]
        spec = f"=={v}" if v.endswith("*") else f"=={v}.*"
    elif re.match(r"^[0-9]", version):  # "numpy 1.21" (space form)
        spec = f"=={version}" if version.endswith("*") else f"=={version}.*"
    else:
        spec = version
    line = f"{pypi}{spec}"
    try:
        Requirement(line)
    except InvalidRequirement:
        return None, f"{where}: conda dependency '{text}' could not be turned into a package requirement; not installed"
    shown = " (build string dropped)" if build_dropped else ""
    return line, f"{where}: conda package '{text}' is installed from the package index as '{line}'{shown}"


def parse_conda(conda: dict[str, Any] | str, where: str) -> tuple[list[str], list[str]]:
    """A conda environment file (a dict, or its YAML text) → (requirements, notes)."""
    if isinstance(conda, str):
        try:
            conda = yaml.safe_load(conda) or {}
        except yaml.YAMLError as exc:
            raise ValidationError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(conda, dict):
        raise ValidationError(f"{where} must be a conda environment (a mapping with 'dependencies:')")
    reqs: list[str] = []
    notes: list[str] = []
    channels = conda.get("channels") or []
    if not isinstance(channels, list):
        raise ValidationError(f"{where}: 'channels' must be a list of channel names")
    if channels:
        notes.append(f"{where}: channels ({', '.join(map(str, channels))}) are not used; packages come from the "
                     "server's package index (setting environments.index_url)")
    deps = conda.get("dependencies") or []
    if not isinstance(deps, list):
        raise ValidationError(f"{where}: 'dependencies' must be a list")
    for dep in deps:
        if dep is None:
            continue
        if isinstance(dep, dict):
            for key, value in dep.items():
                if key != "pip":
                    notes.append(f"{where}: dependency section '{key}' is not used")
                    continue
                if not isinstance(value, list | type(None)):
                    raise ValidationError(f"{where}: the pip section must be a list of requirements")
                sub, sub_notes = parse_requirement_lines(list(value or []), f"{where} (pip)")
                reqs += sub
                notes += sub_notes
            continue
        line, note = _conda_package(str(dep), where)
        if line:
            reqs.append(line)
        if note:
            notes.append(note)
    return reqs, notes


def parse_python_env(text: str, where: str, base: Path) -> tuple[list[str], list[str]]:
    """MLflow's ``python_env.yaml`` → (requirements, notes)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValidationError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError(f"{where} must be a mapping with 'python' and 'dependencies'")
    notes = []
    wanted = str(data.get("python") or "")
    if wanted:
        notes.append(f"{where}: python {wanted}: the environment is built for that Python when this machine has "
                     "it, else resolved for it and adapted to this machine's Python (the 'python:' lines say which)")
    build = [str(b) for b in data.get("build_dependencies") or []]
    if build:
        notes.append(f"{where}: build_dependencies ({', '.join(build)}): the environment's seed (pip, setuptools, "
                     "wheel of the build date) is used instead")
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise ValidationError(f"{where}: 'dependencies' must be a list")
    reqs, more = parse_requirement_lines([str(d) for d in deps], where, base)
    return reqs, notes + more


def conda_python(conda: dict[str, Any] | str) -> str | None:
    """The Python version a conda file asks for: ``python=3.8.5``, ``python==3.8``, ``python 3.8``
    (``python>=3.8`` and the like ask for none in particular: None)."""
    if isinstance(conda, str):
        try:
            conda = yaml.safe_load(conda) or {}
        except yaml.YAMLError:
            return None
    deps = conda.get("dependencies") if isinstance(conda, dict) else None
    for dep in deps or []:
        if isinstance(dep, str):
            m = re.match(r"^\s*(?:[\w.-]+::)?python\s*(?:==?|\s)\s*([0-9]+\.[0-9]+(?:\.[0-9]+)?)\*?(?:=\S*)?\s*$", dep)
            if m:
                return m.group(1)
    return None


def python_env_python(text: str) -> str | None:
    """The ``python:`` of MLflow's ``python_env.yaml``."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None
    wanted = str(data.get("python") or "").strip() if isinstance(data, dict) else ""
    return wanted if re.match(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$", wanted) else None


# ---- what the worker needs --------------------------------------------------------------------


def mlflow_as_skinny(reqs: list[str], where: str) -> tuple[list[str], list[str]]:
    """``mlflow[...]==X`` → ``mlflow-skinny==X`` (a model's own requirements)."""
    out, notes = [], []
    for line in reqs:
        req = Requirement(line)
        if canonicalize_name(req.name) == "mlflow":
            new = f"mlflow-skinny{req.specifier}" + (f"; {req.marker}" if req.marker else "")
            notes.append(f"{where}: '{line}' is installed as '{new}': the worker only loads the model, and "
                         "mlflow-skinny is MLflow without its tracking server")
            out.append(new)
        else:
            out.append(line)
    return out, notes


def with_worker_needs(spec: EnvironmentSpec, needs_mlflow: bool) -> EnvironmentSpec:
    """Add what the worker imports when the spec lacks it: pandas (readers, writers), and
    mlflow-skinny for a model scored without a scoring script."""
    if spec.use_server:
        return spec
    names = spec.names()
    add, notes = [], []
    if "pandas" not in names:
        add.append("pandas")
        notes.append("added 'pandas': the worker reads and writes files with it")
    if needs_mlflow and not names & {"mlflow", "mlflow-skinny"}:
        add.append("mlflow-skinny")
        notes.append("added 'mlflow-skinny': a model without a scoring script is loaded with MLflow")
    if not add:
        return spec
    return EnvironmentSpec(spec.source, spec.requirements + tuple(add), spec.notes + tuple(notes),
                           from_model=spec.from_model, python=spec.python)
