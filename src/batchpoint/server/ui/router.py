"""``/ui``: server-rendered pages of endpoints, jobs (filters, paging; live progress over the job
events' SSE stream, charts and a per-worker timeline drawn as SVG on the server), a job's log and
errors file, data assets and models, servers and Ray clusters. See docs/observability.md.

Mounted as a Starlette router (``server/app.py``), so the API's hand-written authorization table
lists API routes only; every page here checks the same permissions as the API route that shows
the same thing (``ui/auth.py``). Anonymous: the sign-in page, no data (SSE and files: 401)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from batchpoint.auth import permissions as P
from batchpoint.exceptions import AuthenticationError, BatchpointError, NotFoundError, ValidationError
from batchpoint.server.ui import pages
from batchpoint.server.ui.auth import Access, current_session, signer_of
from batchpoint.server.ui.session import COOKIE_PATH, PRE_CSRF_COOKIE, SESSION_COOKIE, sign_in
from batchpoint.usecases import cancel as cancel_use, events, logs, outputs, reads

HERE = Path(__file__).parent
STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    session = current_session(request)
    principal = getattr(request.state, "principal_id", None)
    csrf = signer_of(request.app.state.ctx.auth).csrf(session) if session else None
    html = templates.get_template(template).render(principal=principal, csrf=csrf, **values)
    return HTMLResponse(html, status, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                               "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})


def _to_sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/sign-in?next={quote(target)}", 303)


def page(fn: Any) -> Any:
    """A page: signed in (else the sign-in page), errors shown as a page that names them."""

    async def endpoint(request: Request) -> Response:
        if not getattr(request.state, "principal_id", None):
            return _to_sign_in(request)
        try:
            return await run_in_threadpool(fn, request, Access(request))
        except BatchpointError as exc:
            return render(request, "error.html", exc.status_code, message=str(exc))

    return endpoint


def data_route(fn: Any) -> Any:
    """A stream or a file: signed in (else 401, no redirect), errors as plain text."""

    async def endpoint(request: Request) -> Response:
        if not getattr(request.state, "principal_id", None):
            return PlainTextResponse("sign in first: /ui/sign-in", 401)
        try:
            result = fn(request, Access(request))
            return await result if hasattr(result, "__await__") else result
        except BatchpointError as exc:
            return PlainTextResponse(str(exc), exc.status_code)

    return endpoint


MAX_FORM_BYTES = 16 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """A small URL-encoded form (the pages' forms are): each field's first value."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES or "multipart" in request.headers.get("content-type", ""):
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _same_site(request: Request) -> bool:
    """A POST from another site (its Origin, else its Referer, names another host) is refused."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlparse(origin).netloc == request.url.netloc


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/ui/") and not value.startswith("//") else "/ui/endpoints"


# -- sign-in / sign-out -------------------------------------------------------------------------


async def sign_in_page(request: Request) -> Response:
    if request.method == "GET":
        token = request.cookies.get(PRE_CSRF_COOKIE) or pages.new_token()
        response = render(request, "sign_in.html", next=_safe_next(request.query_params.get("next")), pre_csrf=token)
        response.set_cookie(PRE_CSRF_COOKIE, token, max_age=3600, path=COOKIE_PATH, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response
    form = await read_form(request)
    next_url = _safe_next(str(form.get("next") or ""))
    given, expected = str(form.get("csrf") or ""), request.cookies.get(PRE_CSRF_COOKIE)
    if not _same_site(request) or not expected or not pages.same(given, expected):
        return PlainTextResponse("refused: the sign-in form's CSRF token is missing or wrong (reload /ui/sign-in)", 403)
    auth = request.app.state.ctx.auth
    try:
        principal, key_id, expires = await run_in_threadpool(sign_in, auth, str(form.get("api_key") or ""))
    except AuthenticationError as exc:
        return render(request, "sign_in.html", 401, next=next_url, pre_csrf=expected, error=str(exc))
    response = RedirectResponse(next_url, 303)
    response.set_cookie(SESSION_COOKIE, signer_of(auth).issue(principal, key_id, expires), path=COOKIE_PATH,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=int(min(8 * 3600, max(60, (expires or 1e12) - time.time()))))
    response.delete_cookie(PRE_CSRF_COOKIE, path=COOKIE_PATH)
    return response


def check_csrf(request: Request, form: Any) -> Response | None:
    session = current_session(request)
    if session is None:
        return PlainTextResponse("sign in first: /ui/sign-in", 401)
    if not _same_site(request) or not signer_of(request.app.state.ctx.auth).csrf_ok(session, form.get("csrf")):
        return PlainTextResponse("refused: the form's CSRF token is missing or not this session's (reload the page)", 403)
    return None


async def sign_out(request: Request) -> Response:
    refused = check_csrf(request, await read_form(request))
    if refused is not None:
        return refused
    response = RedirectResponse("/ui/sign-in", 303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


async def cancel_job(request: Request) -> Response:
    refused = check_csrf(request, await read_form(request))
    if refused is not None:
        return refused
    name = request.path_params["name"]
    ctx = request.app.state.ctx
    access = Access(request)

    def cancel() -> Response:
        job = reads.get_job(ctx, name)
        if not access.may(P.JOBS_CANCEL, access.job_scope(job)):
            return render(request, "error.html", 403, message=f"{access.principal} may not cancel job '{name}': "
                          f"it needs {P.JOBS_CANCEL} on {access.job_scope(job)}")
        cancel_use.cancel(ctx, name)
        return RedirectResponse(f"/ui/jobs/{quote(name)}", 303)

    try:
        return await run_in_threadpool(cancel)
    except BatchpointError as exc:
        return render(request, "error.html", exc.status_code, message=str(exc))


# -- pages --------------------------------------------------------------------------------------


def home(request: Request, access: Access) -> Response:
    return RedirectResponse("/ui/endpoints", 303)


def endpoints_page(request: Request, access: Access) -> Response:
    return render(request, "endpoints.html", nav="endpoints", **pages.endpoints(request.app.state.ctx, access))


def jobs_page(request: Request, access: Access) -> Response:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in pages.STATUSES:
        raise ValidationError(f"status '{status}' is not a job status; use one of {', '.join(pages.STATUSES)}")
    try:
        page_number, size = int(q.get("page") or 1), int(q.get("size") or pages.PAGE_SIZE)
    except ValueError:
        raise ValidationError(f"page '{q.get('page')}' and size '{q.get('size')}' must be whole numbers") from None
    if not 1 <= size <= pages.MAX_PAGE_SIZE or page_number < 1:
        raise ValidationError(f"size must be 1 to {pages.MAX_PAGE_SIZE} jobs a page, and page 1 or more")
    return render(request, "jobs.html", nav="jobs", **pages.jobs(
        request.app.state.ctx, access, endpoint=q.get("endpoint") or None, status=status,
        user=(q.get("user") or "").strip() or None, page=page_number, size=size))


def servers_page(request: Request, access: Access) -> Response:
    return render(request, "servers.html", nav="servers", **pages.servers(request.app.state.ctx, access))


def job_page(request: Request, access: Access) -> Response:
    return render(request, "job.html", nav="jobs", **pages.job(request.app.state.ctx, access, request.path_params["name"]))


def job_summary(request: Request, access: Access) -> Response:
    """The job page's parts that change, as JSON (its script refreshes them when the job ends)."""
    return JSONResponse(pages.job_json(request.app.state.ctx, access, request.path_params["name"]))


def job_errors_page(request: Request, access: Access) -> Response:
    values = pages.job_errors(request.app.state.ctx, access, request.path_params["name"])
    return render(request, "job_errors.html", nav="jobs", **values)


def job_log_page(request: Request, access: Access) -> Response:
    ctx, name, log = request.app.state.ctx, request.path_params["name"], request.path_params["log"]
    job = pages.readable_job(ctx, access, name, data=True)
    data = logs.log_bytes(ctx, job, log)
    if data is None:
        raise NotFoundError(f"job '{name}' has no log '{log}'")
    return render(request, "job_log.html", nav="jobs", job=job, log=log, text=data.decode("utf-8", "replace"))


def assets_page(request: Request, access: Access) -> Response:
    return render(request, "assets.html", nav="assets", **pages.assets(request.app.state.ctx, access))


def job_events(request: Request, access: Access) -> Any:
    from starlette.responses import StreamingResponse

    ctx, name = request.app.state.ctx, request.path_params["name"]
    pages.readable_job(ctx, access, name)
    start = events.stream_start(request.headers.get("last-event-id"), request.query_params.get("after"))
    return StreamingResponse(events.stream_events(ctx, name, start), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def job_output_file(request: Request, access: Access) -> Response:
    from starlette.responses import StreamingResponse

    ctx, params = request.app.state.ctx, request.path_params
    job = await run_in_threadpool(pages.readable_job, ctx, access, params["name"], True)
    if params["output"] not in (job.outputs or {}):
        raise NotFoundError(f"job '{job.name}' has no output '{params['output']}'")
    rel, chunks = await run_in_threadpool(outputs.open_file, ctx, job, params["output"], params["path"])
    return StreamingResponse(chunks, media_type="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename=\"{rel.rsplit('/', 1)[-1]}\""})


async def static(request: Request) -> Response:
    name = request.path_params["file"]
    if name not in STATIC:
        return PlainTextResponse("not found", 404)
    return FileResponse(HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


router = Router(routes=[
    Route("/", page(home)),
    Route("/sign-in", sign_in_page, methods=["GET", "POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
    Route("/static/{file}", static),
    Route("/endpoints", page(endpoints_page)),
    Route("/jobs", page(jobs_page)),
    Route("/jobs/{name}", page(job_page)),
    Route("/jobs/{name}/summary.json", page(job_summary)),
    Route("/jobs/{name}/events", data_route(job_events)),
    Route("/jobs/{name}/errors", page(job_errors_page)),
    Route("/jobs/{name}/logs/{log}", page(job_log_page)),
    Route("/jobs/{name}/outputs/{output}/files/{path:path}", data_route(job_output_file)),
    Route("/jobs/{name}/cancel", cancel_job, methods=["POST"]),
    Route("/assets", page(assets_page)),
    Route("/servers", page(servers_page)),
])

