"""The tutorial's app (docs/tutorial/index.md includes it piece by piece): a FastAPI app
that hands slow work to aqueue, a task that fails once and is retried, and an endpoint
that reports the job's status and result.

From this directory::

    python -m aqueue run tutorial_app:queue           # the runner, in one shell
    uvicorn tutorial_app:app --port 8000              # the web app, in another

tests/docs/test_tutorial.py runs both and walks the tutorial's requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# --8<-- [start:queue]
import aqueue
from aqueue import Backoff, current_job

# No URLs given: aqueue uses AQUEUE_REDIS_URL / AQUEUE_DATABASE_URL when they are set,
# else its embedded default (SQLite and a private Redis under ./.aqueue/).
queue = aqueue.Queue("tutorial")
# --8<-- [end:queue]


# --8<-- [start:task]
class StorageUnavailable(Exception):
    """Stands in for a network error of a real image store."""


@queue.task(retries=3, backoff=Backoff.sequence(0.5, 1, 2))
async def make_thumbnail(image_id: int, width: int = 128) -> dict[str, Any]:
    """Render the thumbnail of an image. The first attempt fails, as a flaky image
    store would: aqueue records the error and runs the job again 0.5 s later."""
    job = current_job()
    if job.attempt == 1:
        raise StorageUnavailable("image store timed out")
    return {"image": image_id, "url": f"/thumbs/{image_id}-{width}.png", "attempt": job.attempt}


# --8<-- [end:task]


# --8<-- [start:app]
from fastapi import FastAPI, HTTPException  # noqa: E402


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await queue.connect()  # connect (and create the jobs table) at startup
    yield
    await queue.close()


app = FastAPI(lifespan=lifespan)


@app.post("/images/{image_id}/thumbnail", status_code=202)
async def request_thumbnail(image_id: int, width: int = 128) -> dict[str, str]:
    job = await make_thumbnail.enqueue(image_id, width=width)  # durable in SQL on return
    return {"job_id": job.id}


# --8<-- [end:app]


# --8<-- [start:status]
@app.get("/jobs/{job_id}")
async def job_status(job_id: str, wait: float = 0) -> dict[str, Any]:
    job = queue.job(job_id)
    try:
        if wait > 0:  # wait up to `wait` seconds for the job to finish
            result = await job.result(timeout=wait)
            return {"status": "done", "result": result}
        info = await job.info()
    except aqueue.JobNotFoundError:
        raise HTTPException(404, "no such job") from None
    except aqueue.ResultTimeoutError:
        info = await job.info()
    except aqueue.JobFailedError as exc:
        return {"status": "failed", "error": f"{exc.error_type}: {exc.error_message}"}
    return {"status": info.status.value, "attempts": info.attempts}


# --8<-- [end:status]
