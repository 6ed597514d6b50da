"""Enqueue jobs from a Starlette web app and report their status.

Needs ``pip install starlette uvicorn``. From the repository root, start the app and a
runner (two shells)::

    uvicorn examples.starlette_app:app
    python -m aqueue run examples.quickstart_app:queue

then::

    curl -X POST localhost:8000/signup -H 'content-type: application/json' \\
        -d '{"user_id": 42}'
    # {"job_id": "0190..."}
    curl localhost:8000/jobs/0190...
    # {"id": "0190...", "task": "send_welcome", "status": "done", ..., "result": "<1@...>"}

The web process only enqueues: the tasks, hooks and middleware of
``examples/quickstart_app.py`` run in the runner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from examples.quickstart_app import queue, send_welcome
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import aqueue
from aqueue import JobStatus


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Connect at startup (creating the jobs table if needed) so the first request does
    # not pay for it and a bad configuration fails the start, not a request.
    await queue.connect()
    try:
        yield
    finally:
        await queue.close()


def error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


async def signup(request: Request) -> JSONResponse:
    """``POST /signup`` with ``{"user_id": 42}``: queue the welcome e-mail."""
    try:
        body = await request.json()
    except ValueError:
        return error(400, "the body must be JSON")
    user_id = body.get("user_id") if isinstance(body, dict) else None
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        return error(422, "user_id must be an integer")
    # ... create the user here ...
    try:
        job = await send_welcome.enqueue(user_id)
    except aqueue.BackendError as exc:
        # EnqueueOutcomeUnknownError (a subclass) carries the job id to retry with.
        return error(503, f"could not queue the welcome e-mail: {exc}")
    return JSONResponse({"job_id": job.id}, status_code=202)


async def job_status(request: Request) -> JSONResponse:
    """``GET /jobs/{job_id}``: the job's status, and its result once done."""
    job = queue.job(request.path_params["job_id"])
    try:
        info = await job.info()
    except aqueue.JobNotFoundError:
        return error(404, f"no job {job.id}")
    except aqueue.BackendError as exc:
        return error(503, f"could not read the job: {exc}")
    body: dict[str, Any] = {
        "id": info.id,
        "task": info.task,
        "status": info.status.value,
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
    }
    if info.status is JobStatus.DONE:
        body["result"] = await job.result()
    elif info.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        try:
            await job.result()
        except aqueue.JobFailedError as exc:
            body["error"] = {"type": exc.error_type, "message": exc.error_message}
    return JSONResponse(body)


app = Starlette(
    routes=[
        Route("/signup", signup, methods=["POST"]),
        Route("/jobs/{job_id}", job_status, methods=["GET"]),
    ],
    lifespan=lifespan,
)
