"""ARM paths, ids and pages: what every Azure-shaped route shares.

The real client calls ``/subscriptions/<sub>/resourceGroups/<rg>/providers/
Microsoft.MachineLearningServices/workspaces/<ws>/<collection>/<name>/...`` (and the same under
``/mferp/managementfrontend`` once it has read the workspace's discovery document). ARM paths are
case-insensitive; :class:`ArmPathMiddleware` rewrites such a path, before routing, to
``/_arm/ws/<collection in lower case>/<name>/...`` (also from under ``/history/v1.0`` and
``/data/v1.0``, the run-history and data-plane services ``jobs.download`` calls) and keeps the caller's own prefix in
``request.state.arm_prefix``: any subscription, resource group and workspace name reach this
server's one workspace, and every id in an answer is spelled with the caller's prefix (the client
parses ids back).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

BASE = "/_arm/ws"
_WORKSPACE = re.compile(
    r"^(?:/mferp/managementfrontend|/history/v1\.0|/data/v1\.0)?(/subscriptions/[^/]+/resourcegroups/[^/]+/providers/"
    r"microsoft\.machinelearningservices/workspaces/[^/]+)(/.*)?$", re.IGNORECASE)
RESOURCE_TYPE = "Microsoft.MachineLearningServices/workspaces"


class ArmPathMiddleware:
    """Pure ASGI: rewrites ARM workspace paths (any letter case) to the routes under :data:`BASE`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            match = _WORKSPACE.match(scope["path"])
            if match:
                prefix, rest = match.group(1), (match.group(2) or "").rstrip("/")
                parts = rest.split("/")[1:]
                # collections sit at even places (datastores/<name>/listSecrets, models/<n>/versions/<v>)
                canonical = [p.lower() if i % 2 == 0 else p for i, p in enumerate(parts)]
                path = BASE + "".join("/" + p for p in canonical)
                scope = dict(scope, path=path, raw_path=path.encode())
                scope.setdefault("state", {})
                scope["state"] = dict(scope["state"], arm_prefix=_spelled(prefix), arm_path=match.group(0))
        await self.app(scope, receive, send)


def _spelled(prefix: str) -> str:
    """The caller's prefix with ARM's spelling of the fixed words (ids are compared case-insensitively
    by Azure, but the client's id parsers look for ``resourceGroups`` and ``workspaces``)."""
    parts = prefix.split("/")
    return f"/subscriptions/{parts[2]}/resourceGroups/{parts[4]}/providers/{RESOURCE_TYPE}/{parts[8]}"


def prefix(request: Request) -> str:
    return request.state.arm_prefix


def arm_id(request: Request, *path: str) -> str:
    return prefix(request) + "".join(f"/{p}" for p in path)


def workspace_name(request: Request) -> str:
    return prefix(request).rsplit("/", 1)[1]


def resource(request: Request, kind: str, name: str, properties: dict[str, Any], *path: str,
             **extra: Any) -> dict[str, Any]:
    """One ARM resource: ``{id, name, type, properties, systemData}``."""
    body: dict[str, Any] = {"id": arm_id(request, *path), "name": name, "type": f"{RESOURCE_TYPE}/{kind}",
                            "properties": properties}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def page(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A list answer: every item on one page (``nextLink`` null)."""
    return {"value": items, "nextLink": None}


def system_data(created_at: Any, created_by: str | None = None) -> dict[str, Any] | None:
    if created_at is None:
        return None
    stamp = created_at.isoformat().replace("+00:00", "Z")
    return {"createdAt": stamp, "createdBy": created_by or "batchpoint", "createdByType": "User",
            "lastModifiedAt": stamp}


def iso_duration(seconds: int | float | None) -> str | None:
    return None if seconds is None else f"PT{int(seconds)}S"


_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def seconds_of(value: Any, field: str) -> int | None:
    """An ISO-8601 duration (``PT30S``, ``PT1M``, ``P1DT2H``) or a number of seconds → seconds."""
    from batchpoint.exceptions import ValidationError

    if value is None or isinstance(value, (int, float)):
        return None if value is None else int(value)
    match = _DURATION.match(str(value).upper()) if isinstance(value, str) else None
    if not match or not any(match.groupdict().values()):
        raise ValidationError(f"{field} '{value}' is not an ISO-8601 duration; give e.g. PT30S or PT5M")
    d, h, m, s = (float(match.group(k) or 0) for k in "dhms")
    return int(d * 86400 + h * 3600 + m * 60 + s)
