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

from batchpoint.environments.python import Target, machine_target

ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


@dataclass(frozen=True)
class IndexFile:
    filename: str
    version: Version
    wheel: bool
    tags: frozenset[str]
    requires_python: str | None
    upload_time: datetime | None
    url: str | None = None
    has_metadata: bool = False  # PEP 658: the index serves <url>.metadata

    def installs_on(self, target: Target) -> bool:
        if self.requires_python:
            try:
                if target.version not in SpecifierSet(self.requires_python):
                    return False
            except InvalidSpecifier:
                pass
        return self.wheel and bool(self.tags & target.tags)

    def installs_here(self) -> bool:
        return self.installs_on(machine_target())


def _parse_file(filename: str, requires_python: str | None, upload: str | None, url: str | None = None,
                has_metadata: bool = False) -> IndexFile | None:
    when = None
    if upload:
        try:
            when = datetime.fromisoformat(upload.replace("Z", "+00:00"))
        except ValueError:
            when = None
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            return IndexFile(filename, version, True, frozenset(str(t) for t in tags), requires_python, when, url,
                             has_metadata)
        _, version = parse_sdist_filename(filename)
        return IndexFile(filename, version, False, frozenset(), requires_python, when, url, has_metadata)
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
        self._files: dict[str, list[IndexFile] | None] = {}
        self._requires: dict[tuple[str, Version], list[str] | None] = {}

    def files(self, project: str) -> list[IndexFile] | None:
        """The project's files, or None when no index knows it (or none answers); asked once."""
        name = canonicalize_name(project)
        if name not in self._files:
            self._files[name] = self._fetch(name)
        return self._files[name]

    def requires(self, project: str, version: Version) -> list[str] | None:
        """``Requires-Dist`` of a release, from a wheel's PEP 658 metadata (None: not served)."""
        key = (canonicalize_name(project), version)
        if key not in self._requires:
            self._requires[key] = None
            for f in self.files(project) or []:
                if f.version != version or not f.wheel or not f.has_metadata or not f.url:
                    continue
                try:
                    resp = httpx.get(f.url.split("#", 1)[0] + ".metadata", timeout=self.timeout,
                                     follow_redirects=True)
                except httpx.HTTPError:
                    continue
                if resp.status_code == 200:
                    from email.parser import HeaderParser

                    meta = HeaderParser().parsestr(resp.text)
                    self._requires[key] = [str(r) for r in meta.get_all("Requires-Dist") or []]
                    break
        return self._requires[key]

    def _fetch(self, name: str) -> list[IndexFile] | None:
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
                raw = [(f["filename"], f.get("requires-python"), f.get("upload-time"),
                        httpx.URL(str(resp.url)).join(f["url"]).__str__() if f.get("url") else None,
                        bool(f.get("core-metadata") or f.get("dist-info-metadata"))) for f in data.get("files", [])
                       if not f.get("yanked")]
            else:
                parser = _Links()
                parser.feed(resp.text)
                raw = [(n, rp, None, None, False) for n, rp in parser.files]
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
    """The pins the index knows and their newest upload time (for the exclude-newer rule)."""

    cutoff: datetime | None = None
    newest_pin: str | None = None
    no_upload_time: list[str] | None = None


def nearest(files: list[IndexFile], pinned: Version, count: int = 2,
            target: Target | None = None) -> tuple[list[str], list[str]]:
    """Versions with a wheel that installs on ``target`` (default: this machine's Python): up to
    ``count`` older and newer than ``pinned``."""
    target = target or machine_target()
    ok = sorted({f.version for f in files if f.installs_on(target) and not f.version.is_prerelease})
    older = [str(v) for v in ok if v < pinned][-count:][::-1]
    newer = [str(v) for v in ok if v > pinned][:count]
    return older, newer


def _wheel_tags(files: list[IndexFile], version: Version) -> list[str]:
    return sorted({t.split("-")[0] for f in files if f.version == version and f.wheel for t in f.tags})


def no_build_message(name: str, version: Version, files: list[IndexFile], where: str,
                     target: Target | None = None) -> str:
    target = target or machine_target()
    tags = _wheel_tags(files, version)
    older, newer = nearest(files, version, target=target)
    near = ", ".join([f"{v} (newer)" for v in newer] + [f"{v} (older)" for v in older]) or "none"
    what = f"its wheels are for {', '.join(tags)}" if tags else "it has no wheels"
    return (f"{name}=={version} (from {where}) has no build for Python {target.version} on this machine "
            f"({target.tag_summary()}): {what} and no source archive. Nearest versions that install here: {near}. "
            f"Pin one of them, or use a machine with a Python that {name} {version} supports.")


def sys_tag_summary() -> str:
    first = next(iter(sys_tags()))
    return f"{first.interpreter}, {re.sub(r'_[0-9]+_[0-9]+', '', first.platform)}"


class NoBuild(Exception):
    """A release with no wheel for the target Python, no source archive and no version that has one."""


@dataclass(frozen=True)
class Move:
    """A release moved to the nearest version with a wheel for the target Python."""

    name: str
    old: Version
    new: Version
    why: str

    def line(self) -> str:
        return f"{self.name} {self.old} -> {self.new}: {self.why}"


def plan_move(client: IndexClient, name: str, version: Version, target: Target, where: str,
              allowed: SpecifierSet | None = None) -> Move | None:
    """None when ``name==version`` has a wheel for ``target`` (or the index does not know it, or no
    version has one but this one has a source archive: uv builds it); else the move to the nearest
    version that has one — newer first, within ``allowed`` when that leaves one. :class:`NoBuild`
    when nothing installs."""
    files = client.files(name)
    if files is None:
        return None
    mine = [f for f in files if f.version == version]
    if not mine or any(f.installs_on(target) for f in mine):
        return None
    ok = sorted({f.version for f in files if f.installs_on(target)
                 and (not f.version.is_prerelease or version.is_prerelease)})
    if allowed is not None and [v for v in ok if allowed.contains(v, prereleases=True)]:
        ok = [v for v in ok if allowed.contains(v, prereleases=True)]
    sdist = any(not f.wheel for f in mine)
    if not ok:
        if sdist:
            return None
        raise NoBuild(no_build_message(name, version, files, where, target))
    newer = [v for v in ok if v > version]
    new = newer[0] if newer else ok[-1]
    tags = _wheel_tags(files, version)
    what = (f"its wheels are for {', '.join(tags)}" if tags else "it has no wheels") + \
        (" and its source archive would have to be built" if sdist else "")
    return Move(name, version, new, f"{version} has no wheel for Python {target.version} ({target.tag_summary()}): "
                f"{what}; {new} is the nearest version that has one ({'newer' if newer else 'older'})")


def inspect_pins(client: IndexClient, requirements: list[str], where: str) -> PinReport:
    """Look up every exact pin's upload time (for exclude-newer)."""
    report = PinReport(no_upload_time=[])
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
        times = [f.upload_time for f in mine if f.upload_time is not None]
        if not times:
            report.no_upload_time.append(f"{name}=={version}")
            continue
        newest = max(times)
        if report.cutoff is None or newest > report.cutoff:
            report.cutoff, report.newest_pin = newest, f"{name}=={version}"
    return report


def uploaded(client: IndexClient, name: str, version: Version) -> datetime | None:
    """When the last file of ``name==version`` was uploaded."""
    times = [f.upload_time for f in client.files(name) or [] if f.version == version and f.upload_time]
    return max(times) if times else None


def exact_dependencies_after(client: IndexClient, releases: list[tuple[str, Version]],
                             cutoff: datetime) -> dict[str, tuple[datetime, str]]:
    """The exact dependencies (``name==X`` in ``Requires-Dist``), followed down, of ``releases``
    that were uploaded after ``cutoff`` (mlflow 2.17.2 pins mlflow-skinny 2.17.2, uploaded 2.5 min
    later; torch 2.0.0 pins triton 2.0.0, uploaded 3 days later): name → (upload time, which
    release pins it). An exclude-newer date must not exclude them."""
    out: dict[str, tuple[datetime, str]] = {}
    todo = list(releases)
    seen: set[tuple[str, Version]] = set()
    while todo and len(seen) < 200:
        name, version = todo.pop()
        if (name, version) in seen:
            continue
        seen.add((name, version))
        for raw in client.requires(name, version) or []:
            try:
                pin = exact_pin(raw.split(";", 1)[0])
            except Exception:  # noqa: BLE001 - a requirement packaging cannot read is uv's to report
                continue
            if pin is None:
                continue
            when = uploaded(client, *pin)
            if when is not None and when > cutoff and (pin[0] not in out or when > out[pin[0]][0]):
                out[pin[0]] = (when, f"{name}=={version} pins {pin[0]}=={pin[1]}")
            todo.append(pin)
    return out


def uv_date(when: datetime) -> str:
    """``when`` + 1 s in uv's format (uv excludes files uploaded at or after the date)."""
    return (when.astimezone(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def exclude_newer(report: PinReport) -> tuple[str | None, str]:
    """The exclude-newer date to give uv, and the sentence for the log saying which rule was used."""
    if report.no_upload_time:
        return None, (f"resolution rule: newest releases (no exclude-newer): the index gives no upload times for "
                      f"{', '.join(report.no_upload_time)}")
    if report.cutoff is None:
        return None, "resolution rule: newest releases (no exclude-newer): the spec pins no exact versions"
    cutoff = uv_date(report.cutoff)
    return cutoff, (f"resolution rule: exclude-newer {cutoff}, the upload date of the newest pinned release "
                    f"({report.newest_pin}), so open dependencies resolve to releases of that time")
