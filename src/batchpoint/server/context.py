"""What every request handler needs, built once per app by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from batchpoint.jobs.dispatcher import Dispatcher
from batchpoint.workspace import EndpointService, WorkspaceService
from batchpoint.workspace.principals import AuthService
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore


@dataclass
class AppContext:
    settings: Settings
    store: SqlMetadataStore
    workspace: WorkspaceService
    dispatcher: Dispatcher
    auth: AuthService
    endpoints: EndpointService


def get_context(request: Request) -> AppContext:
    return request.app.state.ctx
