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
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename, parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from batchpoint._internal.clock import utcnow
from batchpoint.environments.index import (
    IndexClient, IndexFile, Move, NoBuild, exact_dependencies_after, exact_pin, exclude_newer, inspect_pins, plan_move, uploaded,
    uv_date,
)
from batchpoint.environments.python import Target, choose, is_older, minor, plan_key, tags_for
from batchpoint.environments.spec import EnvironmentSpec
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
        return self.root / spec.hash(self.index_urls, plan_key(self.settings, spec.python))

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
        if record.get("python_requested") or record.get("changes"):
            log(f"it was built with Python {record.get('python')} (the spec asks for "
                f"{record.get('python_requested') or 'none in particular'}), resolved for Python "
                f"{record.get('resolved_for_python')}; {record.get('rule')}")
            for change in record.get("changes") or []:
                log(f"  change: {change}")
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
            failed = failed_package(output)
            details: dict[str, Any] = {"installer_output": tail}
            if failed:
                details["failed_package"] = failed[0]
                raise EnvironmentBuildError(f"uv failed (exit {proc.returncode}): {failed[0]} {failed[1]}:\n{tail}",
                                            details=details)
            raise EnvironmentBuildError(f"uv failed (exit {proc.returncode}):\n{tail}", details=details)

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

    def _common(self, cutoff: str | None, exempt: dict[str, str] | None = None) -> list[str]:
        args = ["--no-config", "--color", "never", "--cache-dir", str(self.settings.uv_cache_dir),
                "--default-index", self.index_urls[0]]
        for extra in self.index_urls[1:]:
            args += ["--index", extra]
        if cutoff:
            args += ["--exclude-newer", cutoff]
            for name, date in sorted((exempt or {}).items()):
                args += ["--exclude-newer-package", f"{name}={date}"]
        return args

    def _build(self, spec: EnvironmentSpec, final: Path, log: Log) -> dict[str, Any]:
        started = time.monotonic()
        for stale in self.root.glob(f".building-{final.name}-*"):  # a crashed build's left-overs (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / f".building-{final.name}-{uuid.uuid4().hex[:8]}"
        target = choose(self.settings, spec.python, uv_binary(self.settings), log)
        log(f"building environment {final.name} with uv for {target.describe()}")
        log(f"index: {', '.join(self.index_urls)}")
        plan = Plan()
        try:
            tmp.mkdir(parents=True)
            try:
                self._resolve(spec, target, IndexClient(self.index_urls), tmp, log, plan)
            except EnvironmentBuildError as exc:
                if not plan.changes:
                    raise
                raise EnvironmentBuildError(f"{exc}\n(after these changes to adapt the spec to {target.describe()}: "
                                            f"{'; '.join(plan.changes)})", details=exc.details) from exc
            self._uv(["venv", "--seed", "--relocatable", "--python", target.executable, "--no-python-downloads",
                      *self._common(plan.cutoff), str(tmp / "venv")], log)
            reqs = tmp / "batchpoint-requirements.txt"
            reqs.write_text("".join(f"{n}=={v}\n" for n, v in plan.final))
            self._uv(["pip", "install", "--python", str(tmp / "venv" / "bin" / "python"), *self._common(None),
                      "-r", str(reqs)], log)
            env = tmp / "venv"
            shutil.move(str(reqs), env / "batchpoint-requirements.txt")
            self._warm_up(env, log)
            record = {"hash": final.name, "source": spec.source, "requirements": list(spec.requirements),
                      "notes": list(spec.notes), "rule": plan.rule, "exclude_newer": plan.cutoff,
                      "exclude_newer_packages": plan.exempt, "python": target.version,
                      "python_requested": spec.python, "interpreter": target.executable,
                      "interpreter_source": target.how, "resolved_for_python": plan.resolved_for,
                      "changes": plan.changes, "index": self.index_urls, "built_at": utcnow().isoformat(),
                      "seconds": round(time.monotonic() - started, 1), "packages": installed_packages(env)}
            (env / RECORD).write_text(json.dumps(record, indent=1))
            os.rename(env, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"environment {final.name} built in {record['seconds']} s: {len(record['packages'])} packages")
        return record

    # -- resolution: as Azure would, then adapted to this machine ---------------------------------
    def _compile(self, lines: list[str], out: Path, target: Target, python_version: str | None, cutoff: str | None,
                 exempt: dict[str, str], log: Log, constraints: list[str] | None = None,
                 preferences: list[tuple[str, Version]] | None = None) -> list[tuple[str, Version]]:
        """``uv pip compile`` of ``lines`` for ``python_version`` (default: the target's own) →
        [(name, version)]; ``preferences`` are kept where they fit (uv reads its output file)."""
        src = out.with_suffix(".in")
        src.write_text("".join(f"{line}\n" for line in lines))
        out.write_text("".join(f"{n}=={v}\n" for n, v in preferences or []))
        args = ["pip", "compile", "--python", target.executable, *self._common(cutoff, exempt),
                "--no-header", "--no-annotate", "-o", str(out)]
        if python_version:
            args += ["--python-version", python_version]
        if constraints:
            cfile = out.with_suffix(".constraints")
            cfile.write_text("".join(f"{c}\n" for c in constraints))
            args += ["-c", str(cfile)]
        self._uv([*args, str(src)], log)
        return parse_lock(out.read_text())

    def _rule(self, lines: list[str], client: IndexClient, source: str, log: Log
              ) -> tuple[str | None, datetime | None, str, dict[str, str]]:
        """The exclude-newer date of the pins, and the exact dependencies of pinned releases it must
        not exclude."""
        report = inspect_pins(client, lines, source)
        cutoff, rule = exclude_newer(report)
        exempt: dict[str, str] = {}
        if cutoff and report.cutoff is not None:
            pins = [p for p in (exact_pin(line) for line in lines) if p is not None]
            for name, (when, why) in exact_dependencies_after(client, pins, report.cutoff).items():
                exempt[name] = uv_date(when)
                log(f"exclude-newer: {name} is allowed up to {exempt[name]}: {why}, uploaded after the cutoff")
        return cutoff, report.cutoff, rule, exempt

    def _resolve(self, spec: EnvironmentSpec, target: Target, client: IndexClient, tmp: Path, log: Log,
                 plan: Plan) -> None:
        """Fill ``plan``: resolved as Azure would (for the requested Python, else with the exclude-newer
        rule), then each release with no wheel for the target moved, paired ones with it."""
        names = spec.names()
        lines = list(spec.requirements) + [s for s in SEED if s not in names]
        requested = spec.python
        older = bool(requested) and is_older(requested) and minor(target.version) != minor(requested)
        lock: list[tuple[str, Version]] | None = None
        if older:
            assert requested is not None
            plan.rule = (f"resolution rule: resolved for Python {requested}, as the spec asks (the releases of its "
                         f"open dependencies are those that support Python {requested}, as Azure's pip would "
                         f"choose; no exclude-newer)")
            log(plan.rule)
            try:
                lock = self._compile(lines, tmp / "resolved.txt", target, requested, None, {}, log)
                lock = self._spec_first(lines, lock, target, requested, client, tmp, log)
                plan.resolved_for = requested
            except EnvironmentBuildError as exc:
                log(f"the spec cannot be resolved for Python {requested} ({first_line(str(exc))}); it is resolved "
                    f"for Python {target.version} instead")
                plan.changes.append(f"python: the spec cannot be resolved for Python {requested}: resolved for "
                                    f"Python {target.version}")
                older = False
        if not older:
            lines, moves = self._move_pins(lines, target, client, spec.source, log)
            plan.changes += [m.line() for m in moves]
            plan.cutoff, plan.cutoff_at, plan.rule, plan.exempt = self._rule(lines, client, spec.source, log)
            log(plan.rule)
            for m in moves:
                self._allow(plan, client, m, log)
            lock = self._compile_moving(lines, tmp / "resolved.txt", target, plan, client, spec.source, log)
            plan.resolved_for = target.version
            for name, version in lock:
                if name in self._freed_pins:
                    was, movers = self._freed_pins[name]
                    if version not in SpecifierSet(was):
                        plan.changes.append(f"{name} {was.lstrip('=')} -> {version}: moves with {movers}")
        assert lock is not None
        log(f"resolved for Python {plan.resolved_for}: " + ", ".join(f"{n}=={v}" for n, v in lock))
        users = {canonicalize_name(Requirement(line).name): Requirement(line).specifier for line in lines}
        moves = []
        for name, version in lock:
            try:
                move = plan_move(client, name, version, target, spec.source, users.get(name) or None)
            except NoBuild as exc:
                raise EnvironmentBuildError(str(exc)) from None
            if move is not None:
                moves.append(move)
                log(f"moved: {move.line()}")
                self._allow(plan, client, move, log)
        if not moves and plan.resolved_for == target.version:
            plan.final = lock
        else:
            plan.changes += [m.line() for m in moves]  # so far (a failure below says what was changed)
            final = self._adapt(lines, lock, moves, target, plan, client, tmp, log)
            del plan.changes[len(plan.changes) - len(moves):]
            plan.final = final
            plan.changes += changes_between(lock, plan.final, moves, plan.freed, plan.resolved_for or "", target)
        if plan.changes:
            log(f"changes from what was resolved for Python {plan.resolved_for}:")
            for change in plan.changes:
                log(f"  {change}")
        else:
            log(f"no changes: every release resolved for Python {plan.resolved_for} installs on {target.describe()}")

    def _spec_first(self, lines: list[str], lock: list[tuple[str, Version]], target: Target, python_version: str,
                    client: IndexClient, tmp: Path, log: Log) -> list[tuple[str, Version]]:
        """pip decides the spec's own requirements before their dependencies, each the newest release
        that fits; uv may settle one lower to keep a dependency newer (beside ``pandas``, numpy 1.24.4
        holds an open ``tensorflow`` at 2.11.1, where pip takes 2.13.1 with numpy 1.24.3). So each open
        requirement of the spec is resolved alone for that Python; one whose version alone is newer
        than the joint one is raised to it, all together if they fit, else one by one in the spec's
        order (as pip would backtrack the later ones), each raise logged. A requirement already at the
        newest release on the index for that Python is not resolved again."""
        got = dict(lock)
        raises: list[tuple[str, Version, Version]] = []
        for number, line in enumerate(lines):
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if line in SEED or exact_pin(line) is not None or req.url or name not in got:
                continue
            newest = newest_for(client.files(name) or [], req.specifier, python_version)
            if newest is not None and got[name] >= newest:
                continue
            quiet: list[str] = []
            try:
                alone = dict(self._compile([line], tmp / f"alone-{number}.txt", target, python_version, None, {},
                                           quiet.append))
            except EnvironmentBuildError:
                continue
            if name in alone and alone[name] > got[name]:
                raises.append((name, alone[name], got[name]))
        if not raises:
            return lock
        for name, alone_version, joint in raises:
            log(f"{name}: {joint} was resolved with the rest, {alone_version} alone: pip, which decides the spec's "
                f"own requirements first, takes {alone_version}; resolving again with {name}>={alone_version}")
        kept: list[str] = []
        for attempt in ([[f"{n}>={a}" for n, a, _ in raises]] if len(raises) > 1 else []) + \
                [[f"{n}>={a}"] for n, a, _ in raises]:
            try:
                lock = self._compile(lines, tmp / "resolved.txt", target, python_version, None, {}, log,
                                     constraints=kept + attempt)
            except EnvironmentBuildError as exc:
                log(f"not raised: {', '.join(attempt)} does not fit with the rest ({first_line(str(exc))})")
                continue
            kept += attempt
            if len(attempt) > 1:
                break
        return lock

    def _compile_moving(self, lines: list[str], out: Path, target: Target, plan: Plan, client: IndexClient,
                        source: str, log: Log) -> list[tuple[str, Version]]:
        """Resolve under the exclude-newer date; a release of that time that uv had to build from its
        source archive and could not (no wheel for this Python) moves to the nearest version with a
        wheel, and the resolution is tried again (a few times)."""
        constraints: list[str] = []
        for attempt in range(6):
            try:
                return self._compile(lines, out, target, None, plan.cutoff, plan.exempt, log,
                                     constraints=constraints or None)
            except EnvironmentBuildError as exc:
                failed = str(exc.details.get("failed_package") or "")
                name, _, version = failed.partition("==")
                try:
                    move = plan_move(client, canonicalize_name(name), Version(version), target, source) \
                        if name and version and attempt < 5 else None
                except (NoBuild, InvalidVersion):
                    move = None
                if move is None or f"{move.name}>={move.new}" in constraints:
                    raise
                log(f"moved: {move.line()} ({failed} failed above)")
                constraints.append(f"{move.name}>={move.new}")
                plan.changes.append(move.line())
                self._allow(plan, client, move, log)
        raise AssertionError("unreachable")

    def _move_pins(self, lines: list[str], target: Target, client: IndexClient, source: str, log: Log
                   ) -> tuple[list[str], list[Move]]:
        """Exact pins with no wheel for the target Python, moved before resolving for it (with the
        packages paired with them freed)."""
        self._freed_pins: dict[str, tuple[str, str]] = {}
        moves = []
        for line in lines:
            pin = exact_pin(line)
            if pin is None:
                continue
            try:
                move = plan_move(client, pin[0], pin[1], target, source)
            except NoBuild as exc:
                raise EnvironmentBuildError(str(exc)) from None
            if move is not None:
                moves.append(move)
                log(f"moved: {move.line()}")
        if not moves:
            return lines, []
        moved = {m.name: m for m in moves}
        freed = {p for m in moves for p in paired_with(m.name)} - set(moved)
        out = []
        for line in lines:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if name in moved:
                req.specifier = SpecifierSet(f"=={moved[name].new}")
            elif name in freed and req.specifier:
                movers = ", ".join(sorted(m for m in moved if m in paired_with(name)))
                log(f"{line} is freed: it moves with {movers}")
                self._freed_pins[name] = (str(req.specifier), movers)
                req.specifier = SpecifierSet("")
            out.append(str(req))
        return out, moves

    def _allow(self, plan: Plan, client: IndexClient, move: Move, log: Log) -> None:
        """Under an exclude-newer date: a moved release, its exact dependencies and its paired
        packages (up to 30 days after it) are not excluded."""
        if not plan.cutoff or plan.cutoff_at is None:
            return
        when = uploaded(client, move.name, move.new)
        if when is None or when <= plan.cutoff_at:
            return
        plan.exempt[move.name] = max(plan.exempt.get(move.name, ""), uv_date(when))
        for name, (dep_when, why) in exact_dependencies_after(client, [(move.name, move.new)], plan.cutoff_at).items():
            plan.exempt[name] = max(plan.exempt.get(name, ""), uv_date(dep_when))
            log(f"exclude-newer: {name} is allowed up to {plan.exempt[name]}: {why}")
        for partner in paired_with(move.name):
            plan.exempt[partner] = max(plan.exempt.get(partner, ""), uv_date(when + timedelta(days=30)))
        log(f"exclude-newer: {move.name} is allowed up to {plan.exempt[move.name]} (moved), and the packages "
            f"paired with it up to 30 days later")

    def _adapt(self, lines: list[str], lock: list[tuple[str, Version]], moves: list[Move], target: Target,
               plan: Plan, client: IndexClient, tmp: Path, log: Log) -> list[tuple[str, Version]]:
        """Resolve for the target Python keeping every resolved version but the moved ones (and the
        packages paired with those, which move with them)."""
        moved = {m.name: m for m in moves}
        present = {n for n, _ in lock}
        plan.freed = {p: m.name for m in moves for p in paired_with(m.name) if p in present and p not in moved}
        new_lines = []
        for line in lines:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if name in moved:
                req.specifier = SpecifierSet(f"=={moved[name].new}")
            elif name in plan.freed:
                req.specifier = SpecifierSet("")
            new_lines.append(str(req))
        constraints = [f"{n}=={moved[n].new}" if n in moved else f"{n}=={v}" for n, v in lock if n not in plan.freed]
        log(f"resolving for {target.describe()}, keeping the versions above"
            + (" except the moved ones" if moves else "")
            + (f" and what moves with them ({', '.join(sorted(plan.freed))})" if plan.freed else ""))
        try:
            return self._compile(new_lines, tmp / "adapted.txt", target, None, plan.cutoff, plan.exempt, log,
                                 constraints=constraints)
        except EnvironmentBuildError as exc:
            if exc.details.get("failed_package"):
                raise
            log(("the moved releases need other versions of some packages" if moves else
                 f"the versions resolved for Python {plan.resolved_for} do not all fit together on {target.describe()}")
                + ": resolving again, keeping the versions above where they fit")
            kept = [(n, v) for n, v in lock if n not in moved and n not in plan.freed]
            return self._compile(new_lines, tmp / "adapted.txt", target, None, plan.cutoff, plan.exempt, log,
                                 constraints=[f"{m.name}=={m.new}" for m in moves], preferences=kept)


#: installed in every environment, as conda installs them with Python (resolved with the spec, so of
#: the same time or for the same Python: old packages import pkg_resources, which setuptools >= 81 lacks)
SEED = ("pip", "setuptools", "wheel")

#: packages released together: when one moves to another version, the others move with it
PAIRED = (frozenset({"torch", "torchvision", "torchaudio", "torchtext", "torchdata"}),
          frozenset({"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-gpu", "keras", "tf-keras",
                     "tensorflow-io", "tensorflow-io-gcs-filesystem", "tensorflow-estimator", "tensorboard",
                     "tensorflow-text", "tensorflow-hub"}),
          frozenset({"mlflow", "mlflow-skinny"}))


def newest_for(files: list[IndexFile], specifier: SpecifierSet, python_version: str) -> Version | None:
    """The newest final release within ``specifier`` with a file for CPython ``python_version`` (a
    wheel with its tags, or a source archive) whose Requires-Python admits it; None: none known."""
    tags = tags_for(python_version)
    best = None
    for f in files:
        if f.version.is_prerelease or f.version not in specifier or (best is not None and f.version <= best):
            continue
        try:
            if f.requires_python and python_version not in SpecifierSet(f.requires_python):
                continue
        except InvalidSpecifier:
            pass
        if not f.wheel or f.tags & tags:
            best = f.version
    return best


def paired_with(name: str) -> set[str]:
    for group in PAIRED:
        if name in group:
            return set(group) - {name}
    return set()


@dataclass
class Plan:
    """What the build resolved: the rule, the versions to install and every change made to them."""

    rule: str = ""
    cutoff: str | None = None
    cutoff_at: datetime | None = None
    exempt: dict[str, str] = field(default_factory=dict)
    resolved_for: str | None = None
    final: list[tuple[str, Version]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    freed: dict[str, str] = field(default_factory=dict)  # paired package -> the moved one it follows


def parse_lock(text: str) -> list[tuple[str, Version]]:
    out = []
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)", line.strip())
        if m:
            try:
                out.append((canonicalize_name(m.group(1)), Version(m.group(2))))
            except InvalidVersion:
                continue
    return out


def changes_between(before: list[tuple[str, Version]], after: list[tuple[str, Version]], moves: list[Move],
                    freed: dict[str, str], resolved_for: str, target: Target) -> list[str]:
    """Each difference between the resolution and what is installed, with its reason."""
    old, new = dict(before), dict(after)
    moved = {m.name: m for m in moves}
    out = []
    for name in sorted(set(old) | set(new)):
        if name in moved and new.get(name) == moved[name].new:
            out.append(f"{name} {old[name]} -> {moved[name].new}: {moved[name].why}")
        elif name in old and name in new and old[name] != new[name]:
            why = (f"moves with {freed[name]}" if name in freed
                   else f"needed by the moved releases on Python {target.version}" if moves
                   else f"the version resolved for Python {resolved_for} does not fit the others on Python "
                        f"{target.version} (their requirements differ by Python)")
            out.append(f"{name} {old[name]} -> {new[name]}: {why}")
        elif name in new and name not in old:
            out.append(f"{name} {new[name]}: added: a dependency of the versions installed on Python {target.version}")
        elif name in old and name not in new:
            out.append(f"{name} {old[name]}: not installed: not needed on Python {target.version}")
    return out


_FAILED = re.compile(r"Failed to (download and build|build|download|fetch|prepare|install)[^`\n]*`([^`]+)`")
_FAILED_URL = re.compile(r"Failed to (fetch|download): (\S+)")


def failed_package(output: str) -> tuple[str, str] | None:
    """(package, what happened) from uv's output: the release that failed, as uv names it."""
    m = _FAILED.search(output)
    if not m:
        url = _FAILED_URL.search(output)
        if not url:
            return None
        filename = url.group(2).split("#", 1)[0].rsplit("/", 1)[-1]
        try:
            if filename.endswith(".whl"):
                name, version, _, _ = parse_wheel_filename(filename)
            else:
                name, version = parse_sdist_filename(filename)
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            return None
        return f"{name}=={version}", f"could not be downloaded from the index ({filename})"
    what, pkg = m.group(1), m.group(2).split(" @ ", 1)[0]
    said = {"build": "did not build from its source archive (above)",
            "download and build": "did not build from its source archive (above)",
            "download": "could not be downloaded from the index", "fetch": "could not be downloaded from the index",
            }.get(what, f"failed ({what})")
    if "build" in what:
        said += ": it has no wheel for this Python; pin a version that has one"
    return pkg, said


def first_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:3])[:400]


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
