"""Prometheus metrics: scraped over HTTP from a runner's metrics port while it runs jobs
that succeed, fail and retry (in this process, and from CLI runners under
``--processes 2``: one port each), and from the web app's ASGI endpoint."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import aqueue.metrics
from aqueue import JobFailedError, JobStatus, Queue, Runner, RunnerConfig

from . import obs_tasks as obs_app
from .conftest import ObsEnv, free_ports, wait_for

Samples = list[Sample]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        return str(r.read().decode())


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Family name -> type, and every sample."""
    types: dict[str, str] = {}
    samples: Samples = []
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        samples.extend(fam.samples)
    return types, samples


def value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


async def run_mix(q: Queue) -> None:
    """5 jobs done, 2 failed for good, 3 failing once and then done."""
    oks = [await q.enqueue("ok", i) for i in range(5)]
    booms = [await q.enqueue("boom", f"no {i}") for i in range(2)]
    flakies = await q.enqueue_many([("flaky", (), {}) for _ in range(3)])
    for j in oks + flakies:
        await j.result(timeout=30, poll=0.05)
    for j in booms:
        try:
            await j.result(timeout=30, poll=0.05)
        except JobFailedError:
            pass
        else:
            raise AssertionError("boom did not fail")


def check_job_counters(samples: Samples, queue: str) -> None:
    started = "aqueue_jobs_started_total"
    assert value(samples, started, queue=queue, task="ok") == 5
    assert value(samples, started, queue=queue, task="boom") == 2
    assert value(samples, started, queue=queue, task="flaky") == 6
    fin = "aqueue_jobs_finished_total"
    assert value(samples, fin, queue=queue, task="ok", outcome="done") == 5
    assert value(samples, fin, queue=queue, task="boom", outcome="failed") == 2
    assert value(samples, fin, queue=queue, task="flaky", outcome="retried") == 3
    assert value(samples, fin, queue=queue, task="flaky", outcome="done") == 3
    assert value(samples, fin, queue=queue) == 13
    for task, runs in (("ok", 5), ("boom", 2), ("flaky", 6)):
        assert value(samples, "aqueue_job_run_seconds_count", queue=queue, task=task) == runs
        assert value(samples, "aqueue_job_wait_seconds_count", queue=queue, task=task) == runs
        # every run and wait falls in the last bucket, none is negative
        assert (
            value(samples, "aqueue_job_wait_seconds_bucket", queue=queue, task=task, le="+Inf")
            == runs
        )
        assert value(samples, "aqueue_job_run_seconds_sum", queue=queue, task=task) >= 0
    # waits count from when a job was due (a retry: after its backoff), so all are short
    assert 0 < value(samples, "aqueue_job_wait_seconds_sum", queue=queue) < 60
    assert value(samples, "aqueue_jobs_in_flight", queue=queue) == 0


def check_names(types: dict[str, str]) -> None:
    """Prometheus conventions: the aqueue_ prefix, counters end in _total in the
    exposition, times in seconds, the families the docs list."""
    expected = {
        "aqueue_jobs_enqueued": "counter",
        "aqueue_jobs_started": "counter",
        "aqueue_jobs_finished": "counter",
        "aqueue_jobs_reclaimed": "counter",
        "aqueue_finishes_rejected": "counter",
        "aqueue_job_run_seconds": "histogram",
        "aqueue_job_wait_seconds": "histogram",
        "aqueue_jobs": "gauge",
        "aqueue_jobs_in_flight": "gauge",
        "aqueue_runners_alive": "gauge",
    }
    # (prometheus_client's text format adds a ``<name>_created`` series per counter and
    # histogram child: the time it was made)
    ours = {
        n: t for n, t in types.items() if n.startswith("aqueue_") and not n.endswith("_created")
    }
    assert ours == expected


async def test_runner_metrics_port_in_process(obs: ObsEnv) -> None:
    port = free_ports(1)
    q = obs_app.register(obs.queue())
    cfg = RunnerConfig(handle_signals=False, metrics_port=port, lease=5, heartbeat=1)
    runner = Runner(q, cfg)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 30)
        await run_mix(q)
        name = q.name

        async def settled() -> Samples | None:
            text = await asyncio.to_thread(scrape, port)
            _, samples = parse(text)
            ready = value(samples, "aqueue_jobs", queue=name, status="done") == 8
            return samples if ready else None

        samples = await wait_for(settled, 10, "the backlog gauges to show the jobs")
        types, _ = parse(await asyncio.to_thread(scrape, port))
        check_names(types)
        check_job_counters(samples, name)
        assert value(samples, "aqueue_jobs_enqueued_total", queue=name, task="ok") == 5
        assert value(samples, "aqueue_jobs_enqueued_total", queue=name, task="flaky") == 3
        assert value(samples, "aqueue_jobs", queue=name, status=JobStatus.FAILED.value) == 2
        assert value(samples, "aqueue_jobs", queue=name, status="todo") == 0
        assert value(samples, "aqueue_runners_alive", queue=name) == 1
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await q.close()
    # the port is closed with the runner
    try:
        await asyncio.to_thread(scrape, port)
    except OSError:
        pass
    else:
        raise AssertionError("metrics port still open after the runner stopped")


async def test_cli_processes_serve_one_port_each(obs: ObsEnv) -> None:
    port = free_ports(2)
    p = obs.run_cli("--processes", "2", "--metrics-port", str(port), "--lease", "5")
    q = obs_app.register(obs.queue())
    try:

        def both_up() -> bool:
            try:
                scrape(port)
                scrape(port + 1)
            except OSError:
                return False
            return True

        await wait_for(lambda: asyncio.to_thread(both_up), 60, "both metrics ports")
        await run_mix(q)
        texts = [await asyncio.to_thread(scrape, port + i) for i in range(2)]
        per_process = [parse(t)[1] for t in texts]
        merged = [s for samples in per_process for s in samples]
        # counters summed over the processes' ports
        check_job_counters(merged, q.name)

        def alive() -> list[float]:
            texts = [scrape(port + i) for i in range(2)]
            return [value(parse(t)[1], "aqueue_runners_alive", queue=q.name) for t in texts]

        # each process reads the runners alive (cached for a second)
        await wait_for(
            lambda: asyncio.to_thread(lambda: alive() == [2, 2]), 10, "2 runners alive on both"
        )
    finally:
        err = obs.stop(p)
        await q.close()
    assert "Traceback" not in err, err[-3000:]


async def test_asgi_app_serves_metrics(obs: ObsEnv) -> None:
    q = obs_app.register(obs.queue())
    try:
        app = aqueue.metrics.metrics_asgi_app(q)
        try:
            await q.enqueue("ok", 1)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.get("/metrics")
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/plain")
                _, samples = parse(r.text)
                assert value(samples, "aqueue_jobs_enqueued_total", queue=q.name, task="ok") == 1
                assert value(samples, "aqueue_jobs", queue=q.name, status="todo") == 1
                assert value(samples, "aqueue_runners_alive", queue=q.name) == 0
                assert (await client.post("/metrics")).status_code == 405
        finally:
            aqueue.metrics.uninstall()
    finally:
        await q.close()
