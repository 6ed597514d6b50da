"""Where a job's enqueue->start time goes, stage by stage, and what ran beside the slowest.

    python benchmarks/latency_stages.py [--rate 500] [--duration 10] [--database URL]
                                        [--redis URL] [--concurrency 100] [--json OUT]

One producer (this process) enqueues at a fixed rate, open loop, into one runner started
with the real CLI (``python -m aqueue run stages_app:queue``). Both processes import
``stages_app``, which wraps the store's and the broker's methods and records the garbage
collector's pauses (wall-clock events, shared by the two processes). Each job's time is
cut into stages:

- ``insert``: ``enqueue()`` called -> its INSERT committed (the enqueue batcher's wait
  included);
- ``push``: -> its message pushed to Redis (``enqueue()`` returns just after);
- ``wake``: -> the runner's fetch (``BLMOVE`` or ``take``) returned it;
- ``claim``: -> the claim statement returned (the handler may start then; its COMMIT is
  flushed meanwhile);
- ``start``: -> the handler started.

Prints p50/p95/p99/max per stage over all jobs, then for the slowest 1 % the stage that
took longest and, per kind of background event (dispatch marks, lease renewals, finishes,
Redis settles, GC pauses of either process...), the share of the slow jobs that one
overlapped, beside the same share for all jobs: a kind much more frequent beside the slow
ones than beside all is a suspect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAGES = ("insert", "push", "wake", "claim", "start")
PATH_EVENTS = {
    "insert_jobs": "insert",
    "dispatch": "push",
    "take": "wake",
    "wait_one": "wake",
    "claim_open": "claim",
    "claim": "claim",
    "start": "start",
}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def produce(queue: Any, task: Any, rate: float, duration: float) -> dict[str, float]:
    """Enqueue ``rate * duration`` jobs, one every ``1/rate`` s (open loop): job id ->
    wall time just before its ``enqueue()``."""
    called: dict[str, float] = {}
    pending: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one() -> None:
        t = time.time()
        job = await task.enqueue()
        called[job.id] = t

    for i in range(round(rate * duration)):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.create_task(one())
        pending.add(t)
        t.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return called


def analyse(called: dict[str, float], events: list[list[Any]]) -> dict[str, Any]:
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    background: list[tuple[str, float, float]] = []
    for kind, t0, t1, ids in events:
        stage = PATH_EVENTS.get(kind)
        if stage is None:
            background.append((kind, t0, t1))
            continue
        for i in ids:
            marks[i].setdefault(stage, t1)  # the first time it got there
    stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    per_job: list[tuple[float, str, dict[str, float]]] = []
    for job_id, t_call in called.items():
        m = marks.get(job_id, {})
        if not all(s in m for s in STAGES):
            continue
        prev, cut = t_call, {}
        for s in STAGES:
            cut[s] = (m[s] - prev) * 1000
            prev = m[s]
            stages[s].append(cut[s])
        total = (m["start"] - t_call) * 1000
        stages["total"].append(total)
        per_job.append((total, job_id, cut | {"t_call": t_call, "t_start": m["start"]}))
    per_job.sort(reverse=True)
    slow = per_job[: max(1, len(per_job) // 100)]
    kinds = sorted({k for k, _, _ in background})

    def overlaps(jobs: list[tuple[float, str, dict[str, float]]]) -> dict[str, float]:
        share = {}
        for k in kinds:
            spans = [(a, b) for kk, a, b in background if kk == k]
            hit = sum(
                1 for _, _, c in jobs if any(a < c["t_start"] and b > c["t_call"] for a, b in spans)
            )
            share[k] = hit / len(jobs) if jobs else 0.0
        return share

    durations = {
        k: [(b - a) * 1000 for kk, a, b in background if kk == k] for k in kinds
    }  # ms, for the table
    return {
        "jobs": len(per_job),
        "missing": len(called) - len(per_job),
        "stages": {
            s: {
                "p50": pct(v, 50),
                "p95": pct(v, 95),
                "p99": pct(v, 99),
                "max": max(v) if v else float("nan"),
            }
            for s, v in stages.items()
        },
        "slowest_stage": dict(
            sorted(
                (
                    (s, sum(1 for _, _, c in slow if max(STAGES, key=lambda x: c[x]) == s))
                    for s in STAGES
                ),
                key=lambda kv: -kv[1],
            )
        ),
        "slow_count": len(slow),
        "slow_stage_p50": {s: pct([c[s] for _, _, c in slow], 50) for s in STAGES},
        "overlap_slow": overlaps(slow),
        "overlap_all": overlaps(per_job),
        "background_ms": {
            k: {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99), "max": max(v)}
            for k, v in durations.items()
            if v
        },
    }


def report(r: dict[str, Any], rate: float) -> str:
    lines = [f"{r['jobs']} jobs at {rate:g}/s ({r['missing']} without every stage)", ""]
    lines.append("| stage | p50 ms | p95 ms | p99 ms | max ms |")
    lines.append("|---|---:|---:|---:|---:|")
    for s, v in r["stages"].items():
        lines.append(f"| {s} | {v['p50']:.2f} | {v['p95']:.2f} | {v['p99']:.2f} | {v['max']:.1f} |")
    lines += [
        "",
        f"slowest 1 % ({r['slow_count']} jobs): longest stage {r['slowest_stage']}; "
        "median ms per stage " + ", ".join(f"{s} {v:.2f}" for s, v in r["slow_stage_p50"].items()),
        "",
    ]
    lines.append("| beside | slowest 1 % | all jobs | its own p50 / p99 / max ms (n) |")
    lines.append("|---|---:|---:|---|")
    for k, share in sorted(r["overlap_slow"].items(), key=lambda kv: -kv[1]):
        b = r["background_ms"].get(k)
        own = f"{b['p50']:.1f} / {b['p99']:.1f} / {b['max']:.1f} ({b['n']})" if b else ""
        lines.append(f"| {k} | {share:.0%} | {r['overlap_all'][k]:.0%} | {own} |")
    return "\n".join(lines)


async def main(a: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="aqueue-stages-"))
    env = os.environ | {
        "STAGES_REDIS": a.redis,
        "STAGES_DATABASE": a.database,
        "STAGES_TABLE": f"stages_{uuid.uuid4().hex[:8]}",
        "STAGES_PREFIX": f"stages-{uuid.uuid4().hex[:8]}",
        "STAGES_READY": str(tmp / "ready"),
        "STAGES_OUT": str(tmp / "runner.json"),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    os.environ.update(env)
    sys.path.insert(0, str(HERE))
    import stages_app  # (reads the environment set just above)

    queue = stages_app.queue
    await queue.connect()  # creates the table
    runner = subprocess.Popen(
        [sys.executable, "-m", "aqueue", "run", "stages_app:queue", "-c", str(a.concurrency)],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL if not a.verbose else None,
        stderr=subprocess.DEVNULL if not a.verbose else None,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp / "ready").exists():
            if time.monotonic() > deadline or runner.poll() is not None:
                raise SystemExit("the runner did not start")
            await asyncio.sleep(0.05)
        called = await produce(queue, stages_app.lat, a.rate, a.duration)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = await queue.counts()
            if not any(counts.get(s, 0) for s in _unfinished()):
                break
            await asyncio.sleep(0.1)
    finally:
        runner.terminate()
        runner.wait(60)
    runner_events = json.loads((tmp / "runner.json").read_text())
    result = analyse(called, [*stages_app.EVENTS, *runner_events])
    await (await queue._backend()).store.drop_schema()
    await queue.close()
    return result


def _unfinished() -> tuple[Any, ...]:
    from aqueue import JobStatus

    return (JobStatus.TODO, JobStatus.RUNNING)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--database", default="mysql+asyncmy://root@127.0.0.1:3306/test")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--verbose", action="store_true", help="show the runner's output")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    res = asyncio.run(main(args))
    print(report(res, args.rate))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
