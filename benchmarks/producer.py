"""The producer process: enqueue through one system's public API, print a JSON line.

    python producer.py MODULE awaiting KIND JOBS [--concurrency 100]
    python producer.py MODULE transaction|app-transaction noop JOBS [--concurrency 100]
    python producer.py MODULE batch KIND JOBS [--batch-size 1000]
    python producer.py MODULE rate lat --rate 500 --duration 10
    python producer.py - ceiling sleep JOBS [--concurrency 100]

``MODULE`` is an ``app_*`` module (its ``Producer`` class); ``run.py`` sets the
``BENCH_*`` environment (see ``_harness.py``). Modes:

- ``awaiting``: ``--concurrency`` coroutines, each awaiting one ``enqueue`` after another
  until JOBS are queued (W1).
- ``transaction``: as ``awaiting``, each enqueue inside an application transaction that
  also inserts a row of its own (aqueue on a SQL server: ``connection=``; W1 variant).
  ``app-transaction``: the same transactions without the job (their own cost).
- ``batch``: the system's batch API, ``--batch-size`` jobs per awaited call (W1 batch).
- ``rate``: an open-loop generator, one ``enqueue`` started every ``1/--rate`` seconds for
  ``--duration`` seconds, each given ``time.time()`` read just before the call (W4).
- ``ceiling``: no queue at all: JOBS ``asyncio.sleep(BENCH_SLEEP)`` at ``--concurrency``
  at once on a bare event loop (the no-overhead ceiling of W3).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import random
import secrets
import statistics
import sys
import time
from typing import Any

import _harness


async def awaiting(
    producer: Any,
    kind: str,
    jobs: int,
    concurrency: int,
    payload: int = 0,
    *,
    in_transaction: bool = False,
    with_job: bool = True,
    blob_kind: str = "repeat",
) -> dict[str, Any]:
    indexes = iter(range(jobs))
    blob = make_blob(payload, blob_kind)

    async def one_producer() -> None:
        for i in indexes:
            if in_transaction:
                await producer.enqueue_in_transaction(kind, i, with_job=with_job)
            else:
                await producer.enqueue(kind, blob if kind == "blob" else i)

    started_at = time.time()
    t0 = time.perf_counter()
    await asyncio.gather(*(one_producer() for _ in range(concurrency)))
    return {"seconds": time.perf_counter() - t0, "jobs": jobs, "started_at": started_at}


async def batch(producer: Any, kind: str, jobs: int, size: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for start in range(0, jobs, size):
        await producer.enqueue_batch(kind, list(range(start, min(jobs, start + size))))
    return {"seconds": time.perf_counter() - t0, "jobs": jobs}


async def rate(producer: Any, per_second: float, duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = round(per_second * duration)
    pending: set[asyncio.Task[None]] = set()
    calls: list[float] = []

    async def one() -> None:
        t = time.time()
        await producer.enqueue("lat", t)
        calls.append(time.time() - t)

    t0, cpu0 = loop.time(), time.process_time()
    for k in range(total):
        delay = t0 + k / per_second - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
    sent = loop.time() - t0
    await asyncio.gather(*pending)
    calls.sort()
    return {
        "jobs": total,
        "seconds": sent,
        "achieved_rate": total / sent if sent > 0 else None,
        "cpu_s": time.process_time() - cpu0,
        "enqueue_call_p50_ms": statistics.median(calls) * 1e3,
        "enqueue_call_p99_ms": calls[min(len(calls) - 1, int(len(calls) * 0.99))] * 1e3,
    }


async def ceiling(jobs: int, concurrency: int) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)

    async def job() -> None:
        async with sem:
            await asyncio.sleep(_harness.SLEEP)

    t0 = time.perf_counter()
    await asyncio.gather(*(job() for _ in range(jobs)))
    return {"seconds": time.perf_counter() - t0, "jobs": jobs}


async def main(a: argparse.Namespace) -> dict[str, Any]:
    if a.mode == "ceiling":
        return await ceiling(a.jobs, a.concurrency)
    producer = importlib.import_module(a.module).Producer()
    await producer.open()
    if a.mode in ("transaction", "app-transaction"):
        await producer.open_app()
    # The first full collection of a fresh process scans everything its imports left
    # (20-35 ms for aqueue's producer here, less for a smaller heap) and falls a second
    # or two after start: inside the measured window, as a stall of every system's
    # producer that a long-running one does not have. Every producer takes it now.
    gc.collect()
    try:
        if a.mode in ("awaiting", "transaction", "app-transaction"):
            return await awaiting(
                producer,
                a.kind,
                a.jobs,
                a.concurrency,
                a.payload,
                in_transaction=a.mode != "awaiting",
                with_job=a.mode != "app-transaction",
                blob_kind=a.blob,
            )
        if a.mode == "batch":
            return await batch(producer, a.kind, a.jobs, a.batch_size)
        return await rate(producer, a.rate, a.duration)
    finally:
        await producer.close()


def make_blob(size: int, kind: str) -> str:
    """W5's argument, ``size`` characters of ASCII. ``repeat``: one character repeated
    (the most compressible); ``json``: JSON records with varied names and numbers, as an
    application's document (zlib level 1 packs it ~3-5x); ``random``: URL-safe random
    characters (no compressor gains more than a quarter)."""
    if kind == "repeat":
        return "x" * size
    if kind == "random":
        return secrets.token_urlsafe(size)[:size]
    rnd = random.Random(size)
    words = ["alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "romeo", "tango"]
    parts: list[str] = []
    n = 0
    while n < size:
        rec = json.dumps(
            {
                "id": rnd.randrange(10**9),
                "name": f"{rnd.choice(words)} {rnd.choice(words)}",
                "amount": round(rnd.uniform(0, 10_000), 2),
                "tags": rnd.sample(words, 2),
                "active": rnd.random() < 0.5,
            }
        )
        parts.append(rec)
        n += len(rec) + 1
    return ",".join(parts)[:size]


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("module")
    p.add_argument(
        "mode", choices=["awaiting", "transaction", "app-transaction", "batch", "rate", "ceiling"]
    )
    p.add_argument("kind", choices=_harness.KINDS)
    p.add_argument("jobs", type=int, nargs="?", default=0)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--payload", type=int, default=0, help="bytes of the blob argument")
    p.add_argument("--blob", choices=["repeat", "json", "random"], default="repeat")
    args = p.parse_args()
    _harness.install_uvloop()
    result = asyncio.run(main(args))
    sys.stdout.write(json.dumps(result) + "\n")
