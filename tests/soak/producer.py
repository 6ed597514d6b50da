"""The soak's producer process: ``python -m tests.soak.producer --seed N --count C
--duration S --out FILE`` with the ``SOAK_*`` environment of ``app.py``.

Job ``n`` is due at ``start + n * duration / count`` (an open loop: an outage delays
enqueues, it does not thin the load out) and is enqueued by name with ``(n, sleep_s,
fail_until)`` drawn from ``random.Random(seed)``. Every outcome is appended to ``--out``
(one JSON line per event, ``O_APPEND``):

- ``a``: acknowledged (``enqueue`` returned) — the job ``j`` must now reach ``done``;
- ``u``: ``EnqueueOutcomeUnknownError``: enqueued again with its ``job_id`` (README), which
  makes it acknowledged once that returns;
- ``r``: refused with another error (nothing stored): enqueued again as a new job;
- ``g``: given up after ``--give-up`` seconds of failures (not acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass

from aqueue import AqueueError, EnqueueOutcomeUnknownError, Queue


@dataclass(frozen=True)
class JobSpec:
    n: int
    sleep_s: float
    fail_until: int


def job_specs(seed: int, count: int) -> list[JobSpec]:
    """The jobs of a run: mostly short handlers, some longer than a heartbeat (so leases
    are renewed while they run), some failing once or twice before they succeed."""
    rng = random.Random(f"jobs-{seed}")
    specs = []
    for n in range(count):
        r = rng.random()
        sleep_s = (
            rng.uniform(0.01, 0.2)
            if r < 0.7
            else rng.uniform(0.2, 1.0)
            if r < 0.95
            else rng.uniform(1.0, 2.5)
        )
        f = rng.random()
        fail_until = 0 if f < 0.85 else 1 if f < 0.97 else 2
        specs.append(JobSpec(n, round(sleep_s, 3), fail_until))
    return specs


class Out:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **event: object) -> None:
        event["w"] = time.time_ns() // 1000
        os.write(self.fd, (json.dumps(event, separators=(",", ":")) + "\n").encode())


async def enqueue_one(queue: Queue, spec: JobSpec, out: Out, give_up_at: float) -> None:
    job_id: str | None = None  # set once an outcome was unknown: retry with that id
    pause = 0.05
    tries = 0
    while True:
        tries += 1
        try:
            q = queue.options(job_id=job_id) if job_id is not None else queue
            job = await q.enqueue("work", spec.n, spec.sleep_s, spec.fail_until)
        except EnqueueOutcomeUnknownError as exc:
            job_id = exc.job_id
            out.write(k="u", n=spec.n, j=job_id, e=str(exc)[:300])
        except AqueueError as exc:
            out.write(k="r", n=spec.n, j=job_id, e=f"{type(exc).__name__}: {str(exc)[:300]}")
        else:
            out.write(k="a", n=spec.n, j=job.id, tries=tries)
            return
        if time.monotonic() > give_up_at:
            out.write(k="g", n=spec.n, j=job_id)
            return
        # Back off between tries of one job while SQL is away (a retry pace, not a wait
        # for anything: the next try tells whether SQL is back).
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def produce(args: argparse.Namespace) -> None:
    queue = Queue(
        os.environ["SOAK_QUEUE"],
        redis_url=os.environ["SOAK_REDIS_URL"],
        database_url=os.environ["SOAK_DATABASE_URL"],
        table=os.environ["SOAK_TABLE"],
        key_prefix=os.environ["SOAK_PREFIX"],
    )
    out = Out(args.out)
    specs = job_specs(args.seed, args.count)
    gap = args.duration / max(1, args.count)
    slots = asyncio.Semaphore(args.in_flight)
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    give_up_at = start + args.duration + args.give_up
    out.write(k="start", count=args.count, duration=args.duration)

    def done(t: asyncio.Task[None]) -> None:
        tasks.discard(t)
        slots.release()

    for spec in specs:
        due = start + spec.n * gap
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the producer's schedule, not synchronisation
        await slots.acquire()
        t = asyncio.create_task(enqueue_one(queue, spec, out, give_up_at))
        tasks.add(t)
        t.add_done_callback(done)
    if tasks:
        await asyncio.gather(*tasks)
    await queue.close()
    out.write(k="end")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--give-up", type=float, default=60.0)
    asyncio.run(produce(p.parse_args()))


if __name__ == "__main__":
    main()
