"""Classify every acknowledged job of a soak run from its files alone
(``python -m tests.soak.checker RUN_DIR`` re-checks a kept run).

Inputs in the run directory, all written insert-only while the soak ran:

- ``exec/exec-<pid>.jsonl``: the handlers' executions (``app.py``);
- ``producer.jsonl``: which enqueues were acknowledged (``producer.py``);
- ``timeline.jsonl``: every fault injected, with its start and end (``soak.py``);
- ``runners.jsonl``: every runner process (pid, start, exit);
- ``sql.json``: the final row of every job of the queue, read after the drain;
- ``settings.json``: lease, heartbeat and margin of the runners.

Classes (docs/explanation/reliability.md, "Delivery semantics"):

- **lost**: acknowledged, but missing from SQL, or final in another status than ``done``,
  or ``done`` without any execution that returned;
- **stuck**: acknowledged and not final after the drain;
- **concurrent**: two executions of one job overlapping in time while both processes ran,
  and the earlier one had not lost its lease by a documented cause;
- **duplicate inside the window**: an execution no planned retry explains (one more than
  the attempts account for), after an earlier execution whose lease was lost by a
  documented cause *while its runner held it* (the handler ran, or had returned and its
  outcome was not recorded yet; at most a lease after the return): its runner was
  SIGKILLed, SIGSTOPped past the lease (alone or in a machine pause), or cut from SQL
  longer than the runner's local deadline allows; or it was cancelled by a graceful stop
  (SIGTERM, past ``--grace``) and put back;
- **duplicate outside the window**: such an execution with no documented cause;
- **unexpected**: an execution, or a row, of a job nobody acknowledged that is not a job
  an unknown outcome left behind (a refused enqueue must store nothing).

The verdict fails on lost, stuck, concurrent, outside-window, unexpected, and on a runner
that exited by itself (no fault stopped it: a crash).
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINAL = frozenset({"done", "failed", "cancelled"})
SQL_FAULTS = frozenset({"mariadb_sigkill", "postgres_sigkill", "sql_cut"})
FREEZES = frozenset({"runner_sigstop", "machine_pause"})
VIOLATIONS = ("lost", "stuck", "concurrent", "outside_window", "unexpected", "runner_crashes")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a SIGKILL mid-write (os.write of one line: never seen)
    return out


@dataclass
class Execution:
    job: str
    n: int
    pid: int
    runner: str
    attempt: int
    token: str
    start: int  # wall-clock us
    end: int | None = None
    outcome: str = ""  # e (returned), f (planned failure), c (cancelled), x (other)

    def describe(self) -> str:
        end = f"{self.outcome}@{self.end}" if self.end is not None else "open"
        return (
            f"pid {self.pid} runner {self.runner} attempt {self.attempt} "
            f"token {self.token[:8]} start {self.start} end {end}"
        )


@dataclass
class Fault:
    kind: str
    start: int
    end: int
    pids: list[int]
    detail: dict[str, Any]


@dataclass
class Finding:
    job: str
    n: int
    cls: str  # inside / outside / concurrent
    cause: str
    earlier: str
    later: str
    overlap_ms: float = 0.0
    after_thaw_ms: float = 0.0
    """How long the earlier execution ran on after its runner was thawed."""


@dataclass
class Report:
    seed: int | None
    settings: dict[str, Any]
    faults: Counter[str]
    jobs: dict[str, int]
    classes: dict[str, int]
    inside_by_cause: Counter[str]
    findings: list[Finding] = field(default_factory=list)
    lists: dict[str, list[str]] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.classes.get(k, 0) == 0 for k in VIOLATIONS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "settings": self.settings,
            "faults": dict(self.faults),
            "jobs": self.jobs,
            "classes": self.classes,
            "inside_by_cause": dict(self.inside_by_cause),
            "recovery": self.recovery,
            "lists": self.lists,
            "findings": [f.__dict__ for f in self.findings],
        }

    def text(self) -> str:
        lines = [
            f"soak seed {self.seed}: {'OK' if self.ok else 'FAILED'}",
            "faults injected: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
            + f" (total {sum(self.faults.values())})",
            "jobs: " + ", ".join(f"{k} {v}" for k, v in self.jobs.items()),
            "classes: " + ", ".join(f"{k} {v}" for k, v in self.classes.items()),
            "duplicates inside the window by cause: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.inside_by_cause.items())) or "none"),
            "recovery: " + ", ".join(f"{k} {v}" for k, v in self.recovery.items()),
        ]
        for name, ids in self.lists.items():
            if ids:
                lines.append(f"  {name} ({len(ids)}): {', '.join(ids[:8])}")
        bad = [f for f in self.findings if f.cls != "inside"]
        for f in bad[:20]:
            lines.append(
                f"  {f.cls.upper()} job {f.job} (n {f.n}), cause: {f.cause}, "
                f"overlap {f.overlap_ms:.0f} ms\n    earlier: {f.earlier}\n    later:   {f.later}"
            )
        return "\n".join(lines)


def load_executions(exec_dir: Path) -> dict[str, list[Execution]]:
    runs: dict[tuple[str, str, int], Execution] = {}
    for path in sorted(exec_dir.glob("exec-*.jsonl")):
        for ev in read_jsonl(path):
            key = (ev["j"], ev["t"], ev["p"])
            if ev["k"] == "s":
                runs[key] = Execution(ev["j"], ev["n"], ev["p"], ev["r"], ev["a"], ev["t"], ev["w"])
            elif key in runs and runs[key].end is None:
                runs[key].end = ev["w"]
                runs[key].outcome = ev["k"]
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for e in runs.values():
        by_job[e.job].append(e)
    for es in by_job.values():
        es.sort(key=lambda e: e.start)
    return by_job


class Timeline:
    def __init__(
        self,
        faults: list[Fault],
        procs: list[dict[str, Any]],
        settings: dict[str, Any],
    ) -> None:
        self.faults = faults
        self.exits: dict[int, int] = {p["pid"]: p["exit"] for p in procs if p.get("exit")}
        # Runners that exited by themselves: no fault and not the end of the soak.
        self.crashes = {p["pid"]: p for p in procs if p.get("exit") and not p.get("stopped_by")}
        lease = float(settings["lease"])
        margin = float(settings.get("margin", lease / 3))
        heartbeat = float(settings["heartbeat"])
        self.lease_us = int(lease * 1e6)
        # The shortest SQL outage that can carry a live runner past its local deadline: its
        # last acknowledged renewal is at most one heartbeat older than the outage's start.
        self.sql_past_deadline_us = int((lease - margin - heartbeat) * 1e6)
        # A thawed runner cancels a handler whose lease is gone at its next renewal (one
        # heartbeat); twice that plus half a second for a loaded machine.
        self.thaw_slack_us = int((2 * heartbeat + 0.5) * 1e6)

    def end_of(self, e: Execution) -> int | None:
        """When the execution stopped running: its recorded end, else its process's death."""
        return e.end if e.end is not None else self.exits.get(e.pid)

    def cause(self, a: Execution, b: Execution) -> tuple[str | None, int | None]:
        """Why ``a`` lost its lease while it ran, before ``b`` started; and until when that
        cause lets ``a`` go on running after ``b`` started (None: not at all). Only a
        frozen runner may: it cannot cancel its handler before it is thawed, and then does
        at its next renewal. A documented cause wins over a crash."""
        documented = self._documented(a, b)
        if documented[0] is not None:
            return documented
        crash = self.crashes.get(a.pid)
        if crash is not None and a.start <= crash["exit"] <= b.start:
            return f"CRASH: {crash['name']} exited by itself (rc {crash['rc']})", None
        return None, None

    def _documented(self, a: Execution, b: Execution) -> tuple[str | None, int | None]:
        a_end = self.end_of(a)
        for f in self.faults:
            if a.pid not in f.pids and f.kind not in SQL_FAULTS:
                continue
            # The runner holds a job until its outcome is recorded, not only while the
            # handler runs: a fault just after the handler returned, before the finish
            # reached SQL, costs the lease the same way (the chaos suite's "crash after
            # the handler"). Bounded by a lease past the handler's end.
            held_until = b.start if a_end is None else min(b.start, a_end + self.lease_us)
            while_held = a.start <= f.start <= held_until
            unrecorded = (
                " (after the handler returned, before its outcome was recorded)"
                if a_end is not None and f.start > a_end
                else ""
            )
            if f.kind == "runner_sigkill" and while_held:
                return "runner SIGKILLed" + unrecorded, None
            if f.kind in FREEZES and while_held:
                what = "machine pause" if f.kind == "machine_pause" else "runner SIGSTOPped"
                return f"{what} past the lease{unrecorded}", f.end + self.thaw_slack_us
            if (
                f.kind in SQL_FAULTS
                and f.start <= held_until
                and f.end >= a.start
                and f.end - f.start >= self.sql_past_deadline_us
            ):
                return f"SQL unreachable past the local deadline ({f.kind})", None
            if (
                f.kind == "runner_sigterm"
                and a.start <= f.start <= b.start
                and a.outcome in ("c", "")
                and a_end is not None
                and a_end <= b.start
            ):
                return "SIGTERM: cancelled after the grace and put back", None
        return None, None


def documented(cause: str | None) -> bool:
    return cause is not None and not cause.startswith("CRASH")


def classify(run_dir: Path) -> Report:
    settings = json.loads((run_dir / "settings.json").read_text())
    faults = [
        Fault(f["kind"], f["start"], f["end"], f.get("pids", []), f.get("detail", {}))
        for f in read_jsonl(run_dir / "timeline.jsonl")
    ]
    procs = read_jsonl(run_dir / "runners.jsonl")
    tl = Timeline(faults, procs, settings)
    by_job = load_executions(run_dir / "exec")
    rows: dict[str, dict[str, Any]] = json.loads((run_dir / "sql.json").read_text())

    acked: dict[str, int] = {}
    ack_time: dict[str, int] = {}
    unknown_ids: set[str] = set()
    refused_ids: set[str] = set()
    given_up = 0
    producer = read_jsonl(run_dir / "producer.jsonl")
    for ev in producer:
        if ev["k"] == "a":
            acked[ev["j"]] = ev["n"]
            ack_time[ev["j"]] = ev["w"]
        elif ev["k"] == "u":
            unknown_ids.add(ev["j"])
        elif ev["k"] == "r" and ev.get("j"):
            unknown_ids.add(ev["j"])  # a retry of an unknown outcome that failed again
        elif ev["k"] == "r":
            refused_ids.add(str(ev["n"]))
        elif ev["k"] == "g":
            given_up += 1

    lost, stuck, failed = [], [], []
    for j in acked:
        row = rows.get(j)
        if row is None:
            lost.append(j)
        elif row["status"] not in FINAL:
            stuck.append(j)
        elif row["status"] != "done":
            lost.append(j)
            failed.append(f"{j}: {row['status']} {str(row.get('error'))[:120]}")
        elif not any(e.outcome == "e" for e in by_job.get(j, [])):
            lost.append(j)

    unexpected = sorted(
        j for j in set(by_job) | set(rows) if j not in acked and j not in unknown_ids
    )
    unacked_stored = sorted(j for j in unknown_ids if j in rows and j not in acked)

    findings: list[Finding] = []
    reruns = 0
    for j, es in by_job.items():
        for i in range(1, len(es)):
            b, prev = es[i], es[i - 1]
            planned_retry = prev.outcome == "f" and b.attempt == prev.attempt + 1
            if planned_retry and prev.end is not None and b.start >= prev.end:
                continue  # the planned retry
            reruns += 1
            # Every earlier execution still running when b started must have lost its
            # lease by a documented cause that lets it run on; else it is a concurrent run.
            overlapping = [a for a in es[:i] if (end := tl.end_of(a)) is None or end > b.start]
            finding: Finding | None = None
            for a in overlapping:
                cause, until = tl.cause(a, b)
                end = tl.end_of(a)
                ms = ((end if end is not None else b.start) - b.start) / 1000
                if not documented(cause) or until is None or end is None or end > until:
                    why = cause or "no documented cause"
                    if documented(cause) and until is not None:
                        why += ", but it ran on past its next renewal after the thaw"
                    finding = Finding(
                        j,
                        b.n,
                        "concurrent",
                        why,
                        a.describe(),
                        b.describe(),
                        ms,
                    )
                    break
                if finding is None:
                    thawed = until - tl.thaw_slack_us
                    finding = Finding(
                        j, b.n, "inside", str(cause), a.describe(), b.describe(), ms,
                        max(0.0, (end - thawed) / 1000),
                    )  # fmt: skip
            if finding is None:
                cause, _ = tl.cause(prev, b)
                finding = Finding(
                    j,
                    b.n,
                    "inside" if documented(cause) else "outside",
                    cause or "no documented cause",
                    prev.describe(),
                    b.describe(),
                )
            findings.append(finding)

    hung = sorted(
        f"{e.job} pid {e.pid}" for es in by_job.values() for e in es if tl.end_of(e) is None
    )
    jobs_with = {
        c: sorted({f.job for f in findings if f.cls == c})
        for c in ("inside", "outside", "concurrent")
    }
    inside_by_cause = Counter(f.cause for f in findings if f.cls == "inside")
    executions = sum(len(es) for es in by_job.values())
    completed = sum(e.outcome == "e" for es in by_job.values() for e in es)

    # Recovery figures: enqueue acknowledgement -> first return of the handler.
    lat = []
    for j, t in ack_time.items():
        ends = [e.end for e in by_job.get(j, []) if e.outcome == "e" and e.end is not None]
        if ends:
            lat.append((min(ends) - t) / 1e6)
    lat.sort()
    recovery: dict[str, Any] = {}
    if lat:
        recovery["ack_to_done_p50_s"] = round(statistics.median(lat), 3)
        recovery["ack_to_done_p99_s"] = round(lat[int(0.99 * (len(lat) - 1))], 3)
        recovery["ack_to_done_max_s"] = round(lat[-1], 3)
    recovery.update(settings.get("recovery", {}))
    recovery["ran_after_thaw_max_ms"] = round(max((f.after_thaw_ms for f in findings), default=0))
    first_start_after: dict[str, float] = {}
    starts = sorted(e.start for es in by_job.values() for e in es)
    for f in faults:
        k = bisect.bisect_left(starts, f.end)
        if k < len(starts):
            gap = (starts[k] - f.end) / 1e6
            first_start_after[f.kind] = max(first_start_after.get(f.kind, 0.0), gap)
    # An enqueue acknowledged again after SQL came back (stale connections, finding 4).
    acks = sorted(ack_time.values())
    sql_back = []
    for f in faults:
        if f.kind in SQL_FAULTS:
            k = bisect.bisect_left(acks, f.end)
            if k < len(acks):
                sql_back.append((acks[k] - f.end) / 1e6)
    if sql_back:
        recovery["first_ack_after_sql_back_max_s"] = round(max(sql_back), 2)
    recovery["first_start_after_fault_max_s"] = {
        k: round(v, 2) for k, v in sorted(first_start_after.items())
    }

    jobs = {
        "acknowledged": len(acked),
        "unknown_outcome_raised": sum(ev["k"] == "u" for ev in producer),
        "refused_raised": sum(ev["k"] == "r" for ev in producer),
        "jobs_with_unknown_outcome": len(unknown_ids),
        "most_tries_of_one_enqueue": max((ev.get("tries", 1) for ev in producer), default=0),
        "given_up": given_up,
        "stored_unacknowledged": len(unacked_stored),
        "executions": executions,
        "returned": completed,
        "reruns": reruns,
    }
    classes = {
        "lost": len(lost),
        "stuck": len(stuck),
        "concurrent": len(jobs_with["concurrent"]),
        "outside_window": len(jobs_with["outside"]),
        "inside_window": len(jobs_with["inside"]),
        "unexpected": len(unexpected),
        "hung_executions": len(hung),
        "runner_crashes": len(tl.crashes),
    }
    return Report(
        seed=settings.get("seed"),
        settings={k: v for k, v in settings.items() if k != "recovery"},
        faults=Counter(f.kind for f in faults),
        jobs=jobs,
        classes=classes,
        inside_by_cause=inside_by_cause,
        findings=findings,
        lists={
            "lost": lost,
            "failed": failed,
            "stuck": stuck,
            "unexpected": unexpected,
            "concurrent": jobs_with["concurrent"],
            "outside_window": jobs_with["outside"],
            "hung_executions": hung,
            "runner_crashes": [
                f"{c['name']} pid {c['pid']} rc {c['rc']}" for c in tl.crashes.values()
            ],
        },
        recovery=recovery,
    )


def main() -> None:
    p = argparse.ArgumentParser(description="Re-check a kept soak run directory.")
    p.add_argument("run_dir", type=Path)
    args = p.parse_args()
    report = classify(args.run_dir)
    print(report.text())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
