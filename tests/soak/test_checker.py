"""The soak's checker on hand-made run directories: each job is one scenario whose class
is known (fast, no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.soak.checker import classify

S = 1_000_000  # microseconds per second


def write_run(
    root: Path,
    execs: list[tuple[str, int, int, int, int | None, str]],
    faults: list[dict[str, Any]],
    sql: dict[str, str],
    acked: list[str],
) -> Path:
    """``execs``: (job, pid, attempt, start_us, end_us or None, outcome)."""
    (root / "exec").mkdir()
    by_pid: dict[int, list[str]] = {}
    for n, (job, pid, attempt, start, end, outcome) in enumerate(execs):
        base = {"j": job, "n": n, "a": attempt, "t": f"tok{n}", "p": pid, "r": f"r{pid}"}
        lines = by_pid.setdefault(pid, [])
        lines.append(json.dumps(base | {"k": "s", "w": start}))
        if end is not None:
            lines.append(json.dumps(base | {"k": outcome, "w": end}))
    for pid, lines in by_pid.items():
        (root / "exec" / f"exec-{pid}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "timeline.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faults))
    killed = {f["pids"][0]: f["start"] for f in faults if f["kind"] == "runner_sigkill"}
    procs = [
        {"pid": pid, "name": f"runner-{pid}", "exit": killed.get(pid), "rc": -9}
        | ({"stopped_by": "runner_sigkill"} if pid in killed else {})
        for pid in by_pid
    ]
    (root / "runners.jsonl").write_text("".join(json.dumps(p) + "\n" for p in procs))
    rows = {j: {"status": st, "attempts": 1, "stalls": 0, "error": None} for j, st in sql.items()}
    (root / "sql.json").write_text(json.dumps(rows))
    (root / "producer.jsonl").write_text(
        "".join(json.dumps({"k": "a", "n": i, "j": j, "w": 0}) + "\n" for i, j in enumerate(acked))
    )
    (root / "settings.json").write_text(json.dumps({"seed": 0, "lease": 3.0, "heartbeat": 1.0}))
    return root


def fault(kind: str, start: float, end: float, *pids: int) -> dict[str, Any]:
    return {"kind": kind, "start": int(start * S), "end": int(end * S), "pids": list(pids)}


def test_each_scenario_lands_in_its_class(tmp_path: Path) -> None:
    t = 100 * S  # every scenario at its own time, far from the others' faults
    execs = [
        ("ok", 1, 1, 1 * S, 2 * S, "e"),
        # a planned failure and its retry: no duplicate
        ("retry", 1, 1, 1 * S, 2 * S, "f"),
        ("retry", 2, 2, 3 * S, 4 * S, "e"),
        # killed while running, run again elsewhere: inside
        ("killed", 10, 1, t, None, ""),
        ("killed", 2, 1, t + 4 * S, t + 5 * S, "e"),
        # run again with no fault at all: outside
        ("again", 2, 1, 2 * t, 2 * t + S, "e"),
        ("again", 3, 1, 2 * t + 5 * S, 2 * t + 6 * S, "e"),
        # two runs overlapping with no fault: concurrent
        ("twice", 2, 1, 3 * t, 3 * t + 3 * S, "e"),
        ("twice", 3, 1, 3 * t + S, 3 * t + 2 * S, "e"),
        # frozen past the lease, cancelled 0.5 s after the thaw: inside
        ("frozen", 4, 1, 4 * t, 4 * t + 5.5 * S, "c"),
        ("frozen", 2, 1, 4 * t + 4 * S, 4 * t + 4.5 * S, "e"),
        # frozen, but ran on 4 s after the thaw: concurrent
        ("ran_on", 5, 1, 5 * t, 5 * t + 9 * S, "e"),
        ("ran_on", 2, 1, 5 * t + 4 * S, 5 * t + 4.5 * S, "e"),
        # claimed before a freeze, started after the thaw although it had run elsewhere
        # meanwhile (issue 16, finding 3): outside
        ("late", 2, 1, 6 * t + 4 * S, 6 * t + 4.1 * S, "e"),
        ("late", 6, 1, 6 * t + 6.01 * S, 6 * t + 6.1 * S, "e"),
        # SQL cut 0.5 s: shorter than the local deadline allows, outside
        ("short_cut", 2, 1, 7 * t, 7 * t + 0.2 * S, "e"),
        ("short_cut", 3, 1, 7 * t + 4 * S, 7 * t + 4.2 * S, "e"),
        # MariaDB down 2 s while it ran: inside
        ("long_outage", 2, 1, 8 * t, 8 * t + 2 * S, "c"),
        ("long_outage", 3, 1, 8 * t + 4 * S, 8 * t + 4.2 * S, "e"),
        # returned 0.2 ms before its runner was frozen, outcome not yet recorded: inside
        ("unrecorded", 7, 1, 10 * t, 10 * t + 200, "e"),
        ("unrecorded", 2, 1, 10 * t + 4 * S, 10 * t + 4.1 * S, "e"),
        # returned, and its runner was killed 5 s later: that does not explain a rerun
        ("recorded", 8, 1, 11 * t, 11 * t + S, "e"),
        ("recorded", 2, 1, 11 * t + 7 * S, 11 * t + 7.1 * S, "e"),
        # executions of a job nobody enqueued: unexpected
        ("ghost", 2, 1, 9 * t, 9 * t + S, "e"),
    ]
    faults = [
        fault("runner_sigkill", 100.5, 100.5, 10),
        fault("runner_sigstop", 400.1, 405, 4),
        fault("runner_sigstop", 500.1, 505, 5),
        fault("runner_sigstop", 600, 606, 6),
        fault("sql_cut", 700.1, 700.6),
        fault("mariadb_sigkill", 800.5, 802.5),
        fault("runner_sigstop", 1000.0004, 1005, 7),
        fault("runner_sigkill", 1106, 1106, 8),
    ]
    acked = ["ok", "retry", "killed", "again", "twice", "frozen", "ran_on", "late"]
    acked += ["short_cut", "long_outage", "unrecorded", "recorded", "lost", "stuck"]
    sql = {j: "done" for j in acked if j not in ("lost", "stuck")} | {"stuck": "running"}
    report = classify(write_run(tmp_path, execs, faults, sql, acked))

    assert report.lists["lost"] == ["lost"]
    assert report.lists["stuck"] == ["stuck"]
    assert report.lists["unexpected"] == ["ghost"]
    assert sorted(report.lists["concurrent"]) == ["ran_on", "twice"]
    assert sorted(report.lists["outside_window"]) == ["again", "late", "recorded", "short_cut"]
    inside = {f.job: f.cause for f in report.findings if f.cls == "inside"}
    assert inside == {
        "killed": "runner SIGKILLed",
        "frozen": "runner SIGSTOPped past the lease",
        "long_outage": "SQL unreachable past the local deadline (mariadb_sigkill)",
        "unrecorded": "runner SIGSTOPped past the lease (after the handler returned, "
        "before its outcome was recorded)",
    }
    assert report.classes["runner_crashes"] == 0
    assert not report.ok
