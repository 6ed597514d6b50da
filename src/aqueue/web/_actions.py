"""The dashboard's actions, each a POST checked against CSRF (same origin and the
token bound to the cookie): retry, cancel and delete of one job, and the same for a
selection of jobs or for every job matching a filter. Each answers with a redirect
(303) to the page it came from, a message in its query string."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._errors import AqueueError
from . import _data
from ._auth import CSRF_FIELD, CSRF_HEADER, csrf_ok
from ._core import base, render, web_of

ACTIONS = ("retry", "cancel", "delete")
BULK_LIMIT = 100_000
"""At most this many jobs per bulk action by filter (run it again for more)."""


async def _checked_form(request: Request) -> FormData | Response:
    form = await request.form()
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not csrf_ok(request, web_of(request).secret, str(given) if given else None):
        return render(
            request,
            "refused.html",
            status_code=403,
            title="Refused",
            why="This action did not come from the dashboard itself (cross-site request or "
            "a stale page): reload the page and try again.",
        )
    return form


def _back(request: Request, path: str, message: str, **params: str) -> RedirectResponse:
    query = urlencode({**params, "msg": message})
    return RedirectResponse(f"{base(request)}{path}?{query}", status_code=303)


async def job_action(request: Request) -> Response:
    if request.path_params["action"] not in ACTIONS:
        return Response("no such action", status_code=404, media_type="text/plain")
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    queue = web_of(request).queue
    job_id = request.path_params["job_id"]
    action = request.path_params["action"]
    path = f"/jobs/{job_id}"
    try:
        rec = await queue.job(job_id).info()
        if rec.queue != queue.name:
            return _back(request, "/jobs", f"no job {job_id} in this queue")
        if action == "retry":
            await queue.repush(job_id)
            message = "retried: the job is queued again"
        elif action == "cancel":
            message = "cancelled" if await queue.cancel(job_id) else "already finished"
        else:
            n = await queue.delete_jobs([job_id])
            if n:
                return _back(request, "/jobs", f"job {job_id} deleted")
            message = "not deleted: a running job is kept (cancel it first)"
    except AqueueError as exc:
        message = f"{action} failed: {exc}"
    return _back(request, path, message)


async def bulk(request: Request) -> Response:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    queue = web_of(request).queue
    # the button pressed: "retry:selected", "delete:filter", ...
    action, _, scope = str(form.get("action") or "").partition(":")
    back = "/jobs" if form.get("back") == "/jobs" else "/failed"
    # From the failed jobs page, "everything matching" means every *failed* job that
    # matches, whatever the form says.
    fixed = {"status": "failed"} if back == "/failed" else {}
    flt = _data.Filter.of({k: str(form.get(k) or "") for k in _data.FILTER_FIELDS}, **fixed)
    if action not in ACTIONS or scope not in ("selected", "filter"):
        return _back(request, back, "unknown action", **flt.params())
    do = {"retry": queue.retry_jobs, "cancel": queue.cancel_jobs, "delete": queue.delete_jobs}
    try:
        if scope == "selected":
            ids = [str(v) for v in form.getlist("ids")]
            if not ids:
                return _back(request, back, "no job selected", **flt.params())
            n = await do[action](ids)
        else:
            n = await do[action](query=flt.query(queue, paged=False), limit=BULK_LIMIT)
    except AqueueError as exc:
        return _back(request, back, f"{action} failed: {exc}", **flt.params())
    past = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[action]
    return _back(request, back, f"{n} job(s) {past}", **flt.params())


def routes() -> list[Route]:
    return [
        Route("/jobs/{job_id:str}/{action:str}", job_action, methods=["POST"]),
        Route("/bulk", bulk, methods=["POST"]),
    ]
