"""The pages (GET only): overview, jobs list (filters, keyset pages), failed jobs (with
bulk actions), job detail, runners, schedules."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import ConfigurationError, JobNotFoundError
from .._models import JobRecord, JobStatus
from .._queue.admin import COUNT_CAP
from . import _data, _format
from ._core import render, web_of


async def overview(request: Request) -> Response:
    web = web_of(request)
    queue = web.queue
    counts, backlog, runners, throughput = await asyncio.gather(
        web.counts.get(), queue.backlog_age(), _data.runners(queue), _data.throughput(queue)
    )
    return render(
        request,
        "overview.html",
        title="Overview",
        counts=[(s.value, *counts.get(s, (0, True))) for s in JobStatus],
        total=sum(n for n, _ in counts.values()),
        total_exact=all(exact for _, exact in counts.values()),
        count_cap=f"{COUNT_CAP:,}",
        counts_age=web.counts.age,
        backlog=backlog,
        throughput=throughput,
        runners=runners,
        alive=sum(r.alive for r in runners),
        in_flight=sum(r.in_flight or 0 for r in runners if r.alive),
    )


async def _list(request: Request, template: str, title: str, **fixed: str) -> Response:
    web = web_of(request)
    flt = _data.Filter.of(request.query_params, **fixed)
    error = ""
    jobs: list[JobRecord] = []
    resume = None
    try:
        jobs, resume = await web.queue.search_jobs(
            flt.query(web.queue), web.page_size, scan=web.scan
        )
    except ConfigurationError as exc:
        error = str(exc)
    return render(
        request,
        template,
        status_code=400 if error else 200,
        title=title,
        flt=flt,
        jobs=jobs,
        error=error,
        statuses=_data.STATUSES,
        next_before=jobs[-1].id if len(jobs) == web.page_size else resume or "",
        resume=resume or "",
        scan=web.scan,
    )


async def jobs(request: Request) -> Response:
    return await _list(request, "jobs.html", "Jobs")


async def failed(request: Request) -> Response:
    return await _list(request, "failed.html", "Failed jobs", status="failed")


async def job(request: Request) -> Response:
    queue = web_of(request).queue
    job_id = request.path_params["job_id"]
    try:
        rec = await queue.job(job_id).info()
    except JobNotFoundError:
        return render(request, "missing.html", status_code=404, title="No such job", job_id=job_id)
    if rec.queue != queue.name:
        return render(request, "missing.html", status_code=404, title="No such job", job_id=job_id)
    args, kwargs, opts = _format.arguments(rec)
    return render(
        request,
        "job.html",
        title=f"Job {rec.id}",
        job=rec,
        args=args,
        kwargs=kwargs,
        opts=opts,
        result=_format.parse_json(rec.result),
        error=_format.error_of(rec),
        origin=_format.origin(rec),
    )


async def runners(request: Request) -> Response:
    return render(
        request, "runners.html", title="Runners", runners=await _data.runners(web_of(request).queue)
    )


async def schedules(request: Request) -> Response:
    return render(
        request,
        "schedules.html",
        title="Schedules",
        schedules=await _data.schedules(web_of(request).queue),
    )


def routes() -> list[Route]:
    return [
        Route("/", overview, name="overview"),
        Route("/jobs", jobs, name="jobs"),
        Route("/failed", failed, name="failed"),
        Route("/jobs/{job_id:str}", job, name="job"),
        Route("/runners", runners, name="runners"),
        Route("/schedules", schedules, name="schedules"),
    ]
