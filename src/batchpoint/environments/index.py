"""What the package index says about pinned releases: their files, upload times and whether any
of them installs on this machine's Python — for the exclude-newer rule and the "no build" message.

Reads the simple API (PEP 691 JSON, with PEP 700's ``upload-time``; PEP 503 HTML as a fallback,
which has no upload times) of the first configured index that knows the project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import httpx
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import sys_tags
from packaging.utils import (
    InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename, parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from batchpoint.environments.spec import machine_python

ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


@dataclass(frozen=True)
class IndexFile:
    filename: str
    version: Version
    wheel: bool
    tags: frozenset[str]
    requires_python: str | None
    upload_time: datetime | None

    def installs_here(self) -> bool:
        if self.requires_python:
            try:
                if machine_python() not in SpecifierSet(self.requires_python):
                    return False
            except InvalidSpecifier:
                pass
        return self.wheel and bool(self.tags & _here())


_HERE: frozenset[str] | None = None


def _here() -> frozenset[str]:
    global _HERE
    if _HERE is None:
        _HERE = frozenset(str(t) for t in sys_tags())
    return _HERE


def _parse_file(filename: str, requires_python: str | None, upload: str | None) -> IndexFile | None:
    when = None
    if upload:
        try:
            when = datetime.fromisoformat(upload.replace("Z", "+00:00"))
        except ValueError:
            when = None
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            return IndexFile(filename, version, True, frozenset(str(t) for t in tags), requires_python, when)
        _, version = parse_sdist_filename(filename)
        return IndexFile(filename, version, False, frozenset(), requires_python, when)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[tuple[str, str | None]] = []
        self._rp: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._rp = dict(attrs).get("data-requires-python")

    def handle_data(self, data: str) -> None:
        if self._rp is not None or data.strip().endswith((".whl", ".tar.gz", ".zip")):
            if data.strip():
                self.files.append((data.strip(), self._rp))
        self._rp = None


class IndexClient:
    def __init__(self, index_urls: list[str], timeout: float = 30.0) -> None:
        self.index_urls = [u.rstrip("/") for u in index_urls]
        self.timeout = timeout

    def files(self, project: str) -> list[IndexFile] | None:
        """The project's files, or None when no index knows it (or none answers)."""
        name = canonicalize_name(project)
        for base in self.index_urls:
            try:
                resp = httpx.get(f"{base}/{name}/", headers={"Accept": ACCEPT}, timeout=self.timeout,
                                 follow_redirects=True)
            except httpx.HTTPError:
                continue
            if resp.status_code != 200:
                continue
            if "json" in resp.headers.get("content-type", ""):
                data = resp.json()
                raw = [(f["filename"], f.get("requires-python"), f.get("upload-time")) for f in data.get("files", [])
                       if not f.get("yanked")]
            else:
                parser = _Links()
                parser.feed(resp.text)
                raw = [(n, rp, None) for n, rp in parser.files]
            return [f for f in (_parse_file(*r) for r in raw) if f is not None]
        return None


def exact_pin(line: str) -> tuple[str, Version] | None:
    """``name==1.2.3`` (not a wildcard) → (name, version)."""
    from packaging.requirements import Requirement

    req = Requirement(line)
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        try:
            return canonicalize_name(req.name), Version(specs[0].version)
        except InvalidVersion:
            return None
    return None


@dataclass
class PinReport:
    """The pins the index knows, their newest upload time, and the pins with no build here."""

    cutoff: datetime | None = None
    newest_pin: str | None = None
    no_upload_time: list[str] | None = None
    no_build: list[str] | None = None  # messages
    sdist_only: list[str] | None = None  # pins that would have to be built from source


def nearest(files: list[IndexFile], pinned: Version, count: int = 2) -> tuple[list[str], list[str]]:
    """Versions with a wheel that installs here: up to ``count`` older and newer than ``pinned``."""
    ok = sorted({f.version for f in files if f.installs_here() and not f.version.is_prerelease})
    older = [str(v) for v in ok if v < pinned][-count:][::-1]
    newer = [str(v) for v in ok if v > pinned][:count]
    return older, newer


def no_build_message(name: str, version: Version, files: list[IndexFile], where: str) -> str:
    mine = [f for f in files if f.version == version]
    tags = sorted({t.split("-")[0] for f in mine if f.wheel for t in f.tags})
    older, newer = nearest(files, version)
    near = ", ".join([f"{v} (newer)" for v in newer] + [f"{v} (older)" for v in older]) or "none"
    what = f"its wheels are for {', '.join(tags)}" if tags else "it has no wheels"
    py = machine_python()
    return (f"{name}=={version} (from {where}) has no build for Python {py} on this machine "
            f"({sys_tag_summary()}): {what} and no source archive. Nearest versions that install here: {near}. "
            f"Pin one of them, or use a machine with a Python that {name} {version} supports.")


def sys_tag_summary() -> str:
    first = next(iter(sys_tags()))
    return f"{first.interpreter}, {re.sub(r'_[0-9]+_[0-9]+', '', first.platform)}"


def inspect_pins(client: IndexClient, requirements: list[str], where: str) -> PinReport:
    """Look up every exact pin: its upload time (for exclude-newer) and whether it installs here."""
    report = PinReport(no_upload_time=[], no_build=[], sdist_only=[])
    for line in requirements:
        pin = exact_pin(line)
        if pin is None:
            continue
        name, version = pin
        files = client.files(name)
        if files is None:
            continue  # uv will say the package was not found
        mine = [f for f in files if f.version == version]
        if not mine:
            continue  # uv will name the missing version and the ones that exist
        if not any(f.installs_here() for f in mine):
            if any(not f.wheel for f in mine):
                report.sdist_only.append(f"{name}=={version}")
            else:
                report.no_build.append(no_build_message(name, version, files, where))
        times = [f.upload_time for f in mine if f.upload_time is not None]
        if not times:
            report.no_upload_time.append(f"{name}=={version}")
            continue
        newest = max(times)
        if report.cutoff is None or newest > report.cutoff:
            report.cutoff, report.newest_pin = newest, f"{name}=={version}"
    return report


def exclude_newer(report: PinReport) -> tuple[str | None, str]:
    """The exclude-newer date to give uv, and the sentence for the log saying which rule was used."""
    if report.no_upload_time:
        return None, (f"resolution rule: newest releases (no exclude-newer): the index gives no upload times for "
                      f"{', '.join(report.no_upload_time)}")
    if report.cutoff is None:
        return None, "resolution rule: newest releases (no exclude-newer): the spec pins no exact versions"
    cutoff = (report.cutoff.astimezone(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return cutoff, (f"resolution rule: exclude-newer {cutoff}, the upload date of the newest pinned release "
                    f"({report.newest_pin}), so open dependencies resolve to releases of that time")
