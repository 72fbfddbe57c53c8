"""What a use case works with: the app's services, built once per app by ``create_app``."""

from __future__ import annotations

from typing import Any, Protocol

from batchpoint.jobs.dispatcher import Dispatcher
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore
from batchpoint.workspace import EndpointService, WorkspaceService


class Grants(Protocol):
    """Who holds which roles (``workspace/principals.py`` ``AuthService``)."""

    def assignments(self, principal_id: str) -> list[Any]: ...


class Services(Protocol):
    """The services a use case calls; ``server.context.AppContext`` is one."""

    settings: Settings
    store: SqlMetadataStore
    workspace: WorkspaceService
    endpoints: EndpointService
    dispatcher: Dispatcher
    auth: Grants


def assignments_of(sv: Services, principal: str | None) -> list[Any]:
    """The role assignments of ``principal`` (none for an anonymous caller)."""
    return sv.auth.assignments(principal) if principal else []
