"""``create_app(settings)``: the FastAPI application that owns the workspace."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from batchpoint import __version__
from batchpoint.engines.local_pool import LocalPoolEngine, warm_up
from batchpoint.exceptions import BatchpointError
from batchpoint.identity.secrets import SecretBox
from batchpoint.jobs.dispatcher import Dispatcher
from batchpoint.server.context import AppContext
from batchpoint.server.errors import install_error_handlers
from batchpoint.server.errors import error_response
from batchpoint.server.routers import access, assets, computes, endpoints, jobs, workspace
from batchpoint.server.security import AuthService, authenticate_request
from batchpoint.server.workspace import WorkspaceService
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore

log = logging.getLogger("batchpoint.server")


def build_context(settings: Settings) -> AppContext:
    settings.home.mkdir(parents=True, exist_ok=True)
    store = SqlMetadataStore(settings.resolved_database_url())
    store.migrate()
    secrets = SecretBox.load_or_create(settings.home / "server.key")
    ws = WorkspaceService(settings, store, secrets)
    ws.bootstrap()
    dispatcher = Dispatcher(ws, LocalPoolEngine())
    auth = AuthService(store, secrets)
    auth.bootstrap_owner(settings.home)
    return AppContext(settings=settings, store=store, workspace=ws, dispatcher=dispatcher, auth=auth)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(settings)
        app.state.ctx = ctx
        threading.Thread(target=warm_up, name="engine-warm-up", daemon=True).start()
        ctx.dispatcher.start()
        try:
            yield
        finally:
            ctx.dispatcher.close()
            ctx.store.close()

    app = FastAPI(title="Batchpoint", version=__version__, lifespan=lifespan,
                  description="Self-hosted batch endpoints: deploy a model, invoke it on many files, collect predictions.")
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # noqa: ANN001, ANN202
        length = request.headers.get("content-length")
        is_upload = request.method == "PUT" and "/files/" in request.url.path
        if length and length.isdigit() and not is_upload and int(length) > settings.server.max_request_bytes:
            return JSONResponse({"error": {"code": "payload_too_large", "message":
                                 f"request body of {length} bytes exceeds the limit of "
                                 f"{settings.server.max_request_bytes} bytes"}}, status_code=413)
        return await call_next(request)

    @app.middleware("http")
    async def authenticate_and_audit(request: Request, call_next):  # noqa: ANN001, ANN202
        try:
            principal = await run_in_threadpool(authenticate_request, app.state.ctx.auth, request)
        except BatchpointError as exc:
            return error_response(exc)
        response = await call_next(request)
        if request.method not in ("GET", "HEAD", "OPTIONS") and principal is not None:
            details = getattr(request.state, "audit", None) or {}
            await run_in_threadpool(app.state.ctx.store.add_audit, principal, request.method,
                                    request.url.path, response.status_code, details)
        return response

    for module in (workspace, assets, computes, endpoints, jobs, access):
        app.include_router(module.router)
    return app
