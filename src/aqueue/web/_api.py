"""The HTTP API for producers in any language, under ``/api``: enqueue a job, read it,
cancel it, and the OpenAPI document of the three.

Every call carries ``Authorization: Bearer TOKEN`` (checked by the app's ``auth``): a
browser never adds that header by itself, and a cross-site page cannot without a CORS
preflight this app does not answer, so no CSRF token is needed here."""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import (
    AqueueError,
    BackendError,
    ConfigurationError,
    JobNotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    SerializationError,
    UnknownTaskError,
)
from . import _format
from ._core import base, role, web_of
from ._openapi import OPTIONS, document

log = logging.getLogger("aqueue.web")

_STATUS_OF_ERROR: list[tuple[type[AqueueError], int]] = [
    (PayloadTooLargeError, 413),
    (UnknownTaskError, 404),
    (QueueFullError, 429),
    (JobNotFoundError, 404),
    (SerializationError, 422),
    (ConfigurationError, 422),
    (BackendError, 503),
]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _failure(exc: AqueueError) -> JSONResponse:
    if isinstance(exc, BackendError):
        # Its text is the driver's, which may name a server or more: logged, not sent.
        log.warning("HTTP API: %s: %s", type(exc).__name__, exc)
        return _error(503, f"{type(exc).__name__}: the job store or Redis is unavailable")
    for kind, status in _STATUS_OF_ERROR:
        if isinstance(exc, kind):
            return _error(status, f"{type(exc).__name__}: {exc}")
    return _error(500, f"{type(exc).__name__}: {exc}")


def _bearer_missing(request: Request) -> JSONResponse | None:
    if not request.headers.get("authorization", "").lower().startswith("bearer "):
        return _error(401, "send Authorization: Bearer TOKEN")
    return None


def _can_write(request: Request) -> JSONResponse | None:
    if role(request) != "all":
        return _error(403, "this token may only read")
    return None


async def enqueue(request: Request) -> Response:
    refused = _bearer_missing(request) or _can_write(request)
    if refused is not None:
        return refused
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("task"), str):
        return _error(422, 'the body must be an object with "task" (a string)')
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    options = body.get("options") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(options, dict):
        return _error(422, '"args" must be an array, "kwargs" and "options" objects')
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        return _error(422, f"unknown option(s) {unknown}: use {sorted(OPTIONS)}")
    queue = web_of(request).queue
    try:
        job = await queue.options(**options).enqueue(body["task"], *args, **kwargs)
        rec = await job.info()
    except AqueueError as exc:
        return _failure(exc)
    except TypeError as exc:  # an option of the wrong type
        return _error(422, str(exc))
    headers = {"location": f"{base(request)}/api/jobs/{job.id}"}
    return JSONResponse(_format.job_json(rec), status_code=201, headers=headers)


async def get_job(request: Request) -> Response:
    refused = _bearer_missing(request)
    if refused is not None:
        return refused
    queue = web_of(request).queue
    job_id = request.path_params["job_id"]
    try:
        rec = await queue.job(job_id).info()
    except AqueueError as exc:
        return _failure(exc)
    if rec.queue != queue.name:
        return _error(404, f"no job {job_id} in queue {queue.name}")
    return JSONResponse(_format.job_json(rec))


async def cancel_job(request: Request) -> Response:
    refused = _bearer_missing(request) or _can_write(request)
    if refused is not None:
        return refused
    queue = web_of(request).queue
    job_id = request.path_params["job_id"]
    try:
        rec = await queue.job(job_id).info()
        if rec.queue != queue.name:
            return _error(404, f"no job {job_id} in queue {queue.name}")
        cancelled = await queue.cancel(job_id)
        rec = await queue.job(job_id).info()
    except AqueueError as exc:
        return _failure(exc)
    return JSONResponse({"cancelled": cancelled, "job": _format.job_json(rec)})


async def openapi(request: Request) -> Response:
    return JSONResponse(document(f"{base(request)}/api", web_of(request).queue.name))


def routes() -> list[Route]:
    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/jobs", enqueue, methods=["POST"]),
        Route("/jobs/{job_id:str}", get_job, methods=["GET"]),
        Route("/jobs/{job_id:str}/cancel", cancel_job, methods=["POST"]),
    ]
