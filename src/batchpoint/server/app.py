"""``create_app(settings)``: the FastAPI application that owns the workspace."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from batchpoint._version import __version__
from batchpoint.engines import ray_warm, warm
from batchpoint.engines.local_pool import warm_up
from batchpoint.exceptions import BatchpointError
from batchpoint.identity.secrets import SecretBox
from batchpoint.jobs.dispatcher import Dispatcher
from batchpoint.server.context import AppContext
from batchpoint.server.errors import install_error_handlers
from batchpoint.server.errors import SafeJSONResponse, error_response, internal_error_response
from batchpoint.server.instance import HomeMismatchError, Liveness, check_home, server_identity
from batchpoint.server.limits import BodyLimitMiddleware
from batchpoint.server.openapi import describe_errors
from batchpoint.server.routers import access, assets, computes, endpoints, jobs, uploads, workspace
from batchpoint.server.routers import environments
from batchpoint.server import azure_api
from batchpoint.server import metrics
from batchpoint.server.security import authenticate_request
from batchpoint.usecases import access as access_usecases
from batchpoint.server.ui.router import router as ui_router
from batchpoint.workspace import EndpointService, WorkspaceService
from batchpoint.workspace.principals import AuthService
from batchpoint.settings import Settings
from batchpoint.store.sql import SqlMetadataStore

log = logging.getLogger("batchpoint.server")


def preflight(settings: Settings) -> None:
    """What must hold before the server starts, each refused with one line naming the fix (no
    traceback): the database URL's driver is installed (PostgreSQL needs the ``postgres`` extra)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    url = settings.resolved_database_url()
    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise BatchpointError(f"BATCHPOINT_DATABASE_URL is not a database URL Batchpoint can use ({exc}); give "
                              "sqlite:///<path> or postgresql+psycopg://user:password@host/database") from exc
    except ImportError as exc:
        extra = "postgres" if parsed.get_backend_name() == "postgresql" else None
        how = (f"run: pip install 'batchpoint[{extra}]' (from a checkout: pip install '.[{extra}]')" if extra
               else f"install the driver {parsed.get_driver_name()}")
        raise BatchpointError(f"the database {parsed.render_as_string(hide_password=True)} needs its driver, which is "
                              f"not installed ({exc}); {how}") from exc


def build_context(settings: Settings) -> AppContext:
    preflight(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    store = SqlMetadataStore(settings.resolved_database_url())
    store.migrate(in_child=True)  # Alembic never loaded in the server (store/migrate.py)
    # before anything is written to the home or the database: a server on another home than the
    # database's refuses to start (no second owner key, no jobs whose logs no other server sees)
    check_home(settings, store)
    identity = server_identity(settings, store)
    log.info("server %s starting (host %s, pid %s, home %s, Batchpoint %s)", identity.id, identity.host,
             os.getpid(), settings.home, __version__)
    secrets = SecretBox.load_or_create(settings.home / "server.key")
    ws = WorkspaceService(settings, store, secrets)
    ws.compute_changed = warm.compute_changed  # a compute's min_instances rescales its warm workers
    ws.bootstrap()
    ws.remember_secrets()
    dispatcher = Dispatcher(ws, owner=identity.id)
    dispatcher.identity = identity  # type: ignore[attr-defined]  # the liveness thread's (create_app)
    auth = AuthService(store, secrets)
    auth.bootstrap_owner(settings.home)
    return AppContext(settings=settings, store=store, workspace=ws, dispatcher=dispatcher, auth=auth,
                      endpoints=EndpointService(ws, changed=warm.release_warm))  # frees its warm workers


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            ctx = build_context(settings)
        except HomeMismatchError as exc:
            log.error("the server cannot start: %s", exc)
            raise
        app.state.ctx = ctx
        liveness = Liveness(ctx.store, ctx.dispatcher.identity, settings.jobs.heartbeat_interval_s).start()
        threading.Thread(target=warm_up, args=(settings.worker_isolation(),), name="engine-warm-up",
                         daemon=True).start()
        app.state.metrics = metrics.Metrics(ctx.store, ctx.dispatcher.owner, ctx.dispatcher.identity.host)  # before jobs run: it counts their mini-batches
        ctx.dispatcher.start()
        try:
            yield
        finally:
            liveness.close()
            ctx.dispatcher.close()
            warm.POOL.stop_all()  # the fenced workers kept for the deployments' next jobs
            ray_warm.RAY_POOL.stop_all()  # the Ray actors kept for the deployments' next jobs
            app.state.metrics.close()
            ctx.store.close()

    app = FastAPI(title="Batchpoint", version=__version__, lifespan=lifespan, default_response_class=SafeJSONResponse,
                  description="Self-hosted batch endpoints: deploy a model, invoke it on many files, collect predictions.")
    install_error_handlers(app)

    # Added before the authentication middleware, so it runs inside it: anonymous callers get 401,
    # not a body read. Chunked bodies are counted too (see batchpoint.server.limits).
    app.add_middleware(BodyLimitMiddleware, limit=settings.server.max_request_bytes)

    @app.middleware("http")
    async def authenticate_and_audit(request: Request, call_next):  # noqa: ANN001, ANN202
        try:
            principal = await run_in_threadpool(authenticate_request, app.state.ctx.auth, request)
        except BatchpointError as exc:
            return error_response(exc)
        try:
            response = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - a bug: answered here so the kept-alive connection survives
            response = internal_error_response(request, exc)
        if request.method not in ("GET", "HEAD", "OPTIONS") and principal is not None:
            details = getattr(request.state, "audit", None) or {}
            await run_in_threadpool(access_usecases.record_audit, app.state.ctx, principal, request.method,
                                    request.url.path, response.status_code, details)
        return response

    for module in (workspace, uploads, assets, computes, endpoints, jobs, access, environments):
        app.include_router(module.router)
    app.include_router(metrics.router)
    azure_api.install(app)  # the Azure-shaped API for the real azure-ai-ml (docs/azure-client.md)
    app.mount("/ui", ui_router)  # the web page: cookie sign-in, its own checks (server/ui/)
    describe_errors(app)
    return app
