"""Acceptance: a handler raising ``SystemExit`` (or an exception whose ``__str__`` raises)
does not stop a real ``python -m aqueue run`` process; its job fails with a readable error
and the runner goes on with the next job."""

from __future__ import annotations

import signal
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from aqueue import JobFailedError, JobStatus, Queue

from .test_cli_acceptance import (  # noqa: F401 - fixtures used by name
    REDIS_URL,
    SQL_URLS,
    Procs,
    _bytecode_cache,
    clean_env,
    drop_table,
    procs,
    sql_url,
    wait_for,
)

pytestmark = pytest.mark.acceptance

APP = """
import os

from aqueue import Queue

queue = Queue(
    os.environ["AQT_QUEUE"],
    redis_url=os.environ["AQT_REDIS_URL"],
    database_url=os.environ["AQT_DATABASE_URL"],
    table=os.environ["AQT_TABLE"],
    key_prefix=os.environ["AQT_PREFIX"],
)


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of a bad exception")


@queue.task(retries=0)
async def exits() -> None:
    raise SystemExit(3)


@queue.task(retries=0)
async def unprintable() -> None:
    raise UnprintableError


@queue.task
async def add(a: int, b: int) -> int:
    return a + b
"""


@pytest.fixture
async def bad_app(
    tmp_path: Path,
    sql_url: str,  # noqa: F811 - the fixture imported above
) -> AsyncIterator[tuple[Path, dict[str, str], Queue]]:
    hexid = uuid.uuid4().hex
    env = {
        "AQT_QUEUE": f"q_{hexid[:8]}",
        "AQT_REDIS_URL": REDIS_URL,
        "AQT_DATABASE_URL": sql_url,
        "AQT_TABLE": f"t_{hexid[8:18]}",
        "AQT_PREFIX": f"aqt_{hexid[18:28]}",
    }
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(textwrap.dedent(APP))
    q = Queue(
        env["AQT_QUEUE"],
        redis_url=REDIS_URL,
        database_url=sql_url,
        table=env["AQT_TABLE"],
        key_prefix=env["AQT_PREFIX"],
    )
    try:
        yield app_dir, env, q
    finally:
        await q.purge()
        await q.close()
        await drop_table(sql_url, env["AQT_TABLE"])
        r = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(r.scan_iter(match=f"{{{env['AQT_PREFIX']}:*"))
            if keys:
                r.delete(*keys)
        finally:
            r.close()


async def finished(job: Any) -> bool:
    return (await job.status()) in (JobStatus.DONE, JobStatus.FAILED)


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_a_handler_raising_system_exit_fails_its_job_and_the_cli_runner_goes_on(
    bad_app: tuple[Path, dict[str, str], Queue],
    procs: Procs,  # noqa: F811 - the fixture imported above
) -> None:
    app_dir, env, q = bad_app
    runner = procs.cli(
        "runner",
        *("run", "app:queue", "--concurrency", "4"),
        cwd=app_dir,
        env=clean_env(**env, PYTHONPATH=str(app_dir)),
    )
    exiting = await q.enqueue("exits")
    unprintable = await q.enqueue("unprintable")
    for job in (exiting, unprintable):
        await wait_for(lambda job=job: finished(job), 30, f"job {job.id}", procs=(runner,))

    with pytest.raises(JobFailedError) as err:
        await exiting.result(timeout=1)
    assert (err.value.status, err.value.error_type) == ("failed", "SystemExit")
    assert (await exiting.info()).attempts == 1
    with pytest.raises(JobFailedError) as err:
        await unprintable.result(timeout=1)
    assert err.value.error_type == "UnprintableError"
    assert err.value.error_message == "<exception str() failed>"

    after = await q.enqueue("add", 2, 3)
    await wait_for(lambda: finished(after), 30, "the job after", procs=(runner,))
    assert await after.result(timeout=1) == 5
    assert runner.poll() is None
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(30) == 0
