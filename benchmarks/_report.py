"""Medians, the results table, docs/benchmarks.md, and py-spy profile summaries."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from _report_sql import pg_sql_table, transactional_table

LABELS = {
    "aqueue": "aqueue (MariaDB)",
    "aqueue-postgres": "aqueue (PostgreSQL)",
    "aqueue-embedded": "aqueue (embedded: SQLite)",
    "arq": "arq",
    "saq": "SAQ",
    "taskiq": "taskiq",
    "streaq": "streaQ",
}
REFERENCE = "aqueue"
AQUEUE_ROWS = (REFERENCE, "aqueue-postgres", "aqueue-embedded")
W5_LABELS = ("noop", "100 B", "10 KB", "100 KB")
_BLOBS = {  # W5's argument (producer.make_blob)
    "json": "JSON records with varied names and numbers, as an application's document",
    "repeat": "one character repeated, the most compressible",
    "random": "random characters, which no compressor packs",
}
_CODECS = {  # Queue(compression=...)
    "zlib": "zlib, its default",
    "zstd": 'Zstandard (`Queue(compression="zstd")`, `aqueue[zstd]`), as the docs advise '
    "for large arguments",
}
SQL_SHOWN = (
    "Com_insert",
    "Com_update",
    "Com_select",
    "Com_commit",
    "Com_rollback",
    "Com_begin",
    "Com_set_option",
    "Questions",
)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ok(runs: list[dict[str, Any]], w: str) -> list[dict[str, Any]]:
    return [r[w] for r in runs if isinstance(r.get(w), dict) and "error" not in r[w]]


def summarize(results: dict[str, Any]) -> None:
    """Add ``median`` to each system (and the ceiling): the median over the repeats."""
    for entry in results["systems"].values():
        runs = entry.get("runs") or []
        med: dict[str, Any] = {}
        for w in ("W1", "W1b", "W1t", "W2", "W3"):
            med[w] = _median([x["rate"] for x in _ok(runs, w) if "rate" in x])
        w4 = _ok(runs, "W4")
        med["W1t_app_only"] = _median(
            [x["app_only_rate"] for x in _ok(runs, "W1t") if "app_only_rate" in x]
        )
        med["W4"] = {p: _median([x[p] for x in w4]) for p in ("p50_ms", "p95_ms", "p99_ms")}
        med["W5"] = {
            label: _median([x["W5"][label]["rate"] for x in runs if label in x.get("W5", {})])
            for label in W5_LABELS
        }
        med["rss_mb"] = _median([x["peak_rss_mb"] for x in _ok(runs, "W2") if x["peak_rss_mb"]])
        red = [x["redis"] for x in _ok(runs, "W2") if "redis" in x]
        if red:
            med["redis_per_job"] = _median([x["commands_per_job"] for x in red])
            med["redis_scripts_per_job"] = _median([x["script_calls_per_job"] for x in red])
            last = red[len(red) // 2]["top_per_job"]
            med["redis_top"] = ", ".join(f"{k} {v:.2f}" for k, v in list(last.items())[:4])
        for w, key in (("W2", "cpu_us_per_job"), ("W4", "w4_cpu_us_per_job")):
            cpu = [x["cpu_us_per_job"] for x in _ok(runs, w) if "cpu_us_per_job" in x]
            if cpu:
                med[key] = {k: _median([c[k] for c in cpu if k in c]) for k in cpu[0]}
        sql = [x["sql"] for x in _ok(runs, "W2") if "sql" in x]
        if sql:
            med["sql_per_job"] = {
                k: _median([s["per_job"][k] for s in sql]) for k in sql[0]["per_job"]
            }
            med["sql_background_per_job"] = {
                k: _median([s["background_estimate_per_job"][k] for s in sql])
                for k in sql[0]["background_estimate_per_job"]
            }
        med["errors"] = sum(
            1 for r in runs for v in r.values() if isinstance(v, dict) and "error" in v
        )
        entry["median"] = med
    ceiling = results["ceiling"]
    ceiling["median"] = _median([r["rate"] for r in ceiling["runs"] if "rate" in r])


def brief(rec: dict[str, Any]) -> str:
    parts = []
    for w, name in (
        ("W1", "W1"),
        ("W1b", "W1 batch"),
        ("W1t", "W1 in caller's transaction"),
        ("W2", "W2"),
        ("W3", "W3"),
    ):
        x = rec.get(w)
        if isinstance(x, dict) and "rate" in x:
            parts.append(f"{name} {x['rate']:,.0f}/s")
        elif isinstance(x, dict) and "error" in x:
            parts.append(f"{name} FAILED")
    x = rec.get("W4")
    if isinstance(x, dict) and "p50_ms" in x:
        parts.append(f"W4 p50/p99 {x['p50_ms']:.1f}/{x['p99_ms']:.1f} ms")
    for label, y in (rec.get("W5") or {}).items():
        parts.append(f"W5 {label} {y['rate']:,.0f}/s")
    return ", ".join(parts) or "nothing measured"


def _rate(v: float | None, ref: float | None) -> str:
    if v is None:
        return "—"
    s = f"{v:,.0f}"
    if ref is not None and v:
        s += f" (x{ref / v:.2f})"
    return s


def table(results: dict[str, Any]) -> str:
    """One markdown table: a column per workload; in each peer's cells, aqueue's (MariaDB)
    ratio to that peer."""
    systems = results["systems"]
    ref = systems.get(REFERENCE, {}).get("median")
    head = (
        "| system | W1 enqueue, 100 awaiting producers (jobs/s) | W1 batch API (jobs/s) "
        "| W2 drain no-op (jobs/s) | W3 sleep 10 ms (jobs/s) "
        "| W4 enqueue→start p50 / p95 / p99 (ms) | worker peak RSS, W2 (MiB) |"
    )
    lines = [head, "|" + "---|" * 7]
    for name, entry in systems.items():
        label = LABELS.get(name, name)
        if entry.get("status") != "ok":
            lines.append(f"| {label} | unavailable here: {entry.get('reason', '?')} |||||| ")
            continue
        med = entry["median"]
        peer = ref if (ref is not None and name not in AQUEUE_ROWS) else None
        cells = [_rate(med[w], peer[w] if peer else None) for w in ("W1", "W1b", "W2", "W3")]
        w4 = med["W4"]
        if w4["p50_ms"] is None:
            cells.append("—")
        else:
            c = f"{w4['p50_ms']:.1f} / {w4['p95_ms']:.1f} / {w4['p99_ms']:.1f}"
            if peer and peer["W4"]["p99_ms"] is not None and w4["p99_ms"]:
                c += f" (p99 x{peer['W4']['p99_ms'] / w4['p99_ms']:.2f})"
            cells.append(c)
        cells.append(f"{med['rss_mb']:.0f}" if med["rss_mb"] else "—")
        if med["errors"]:
            label += f" ({med['errors']} failed)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ceiling = results["ceiling"].get("median")
    if ceiling:
        lines.append(f"| bare asyncio loop (no queue: the ceiling) | | | | {ceiling:,.0f} | | |")
    lines.append("")
    lines.append(
        "In a peer's row, (x1.50) means aqueue (MariaDB) did 1.50 times that peer's "
        "throughput; for W4, that the peer's p99 was 1.50 times aqueue's (above 1: aqueue "
        "better, below 1: the peer better)."
    )
    return "\n".join(lines)


def table_w5(results: dict[str, Any]) -> str:
    """W5: the producer and two worker processes together, by payload size."""
    systems = results["systems"]
    if not any(
        e.get("median", {}).get("W5", {}).get(x) for e in systems.values() for x in W5_LABELS
    ):
        return ""
    ref = systems.get(REFERENCE, {}).get("median")
    jobs = {
        label: run["W5"][label]["jobs"]
        for e in systems.values()
        for run in e.get("runs") or []
        for label in W5_LABELS
        if label in (run.get("W5") or {})
    }
    head = (
        "| system | "
        + " | ".join(f"W5 {x} ({jobs.get(x, 0):,} jobs, jobs/s)" for x in W5_LABELS)
        + " |"
    )
    lines = [head, "|" + "---|" * (len(W5_LABELS) + 1)]
    for name, entry in systems.items():
        if entry.get("status") != "ok":
            continue
        med = entry["median"]["W5"]
        peer = ref if (ref is not None and name not in AQUEUE_ROWS) else None
        cells = [_rate(med.get(x), peer["W5"].get(x) if peer else None) for x in W5_LABELS]
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def redis_table(results: dict[str, Any]) -> str:
    rows = [
        "| system | Redis commands per job, W2 | of which script/function calls | most frequent |",
        "|---|---|---|---|",
    ]
    for name, entry in results["systems"].items():
        med = entry.get("median") or {}
        if med.get("redis_per_job") is None:
            continue
        rows.append(
            f"| {LABELS.get(name, name)} | {med['redis_per_job']:.2f} | "
            f"{med['redis_scripts_per_job']:.2f} | {med.get('redis_top', '')} |"
        )
    if len(rows) == 2:
        return "(no Redis command counts in these results)"
    return "\n".join(rows)


def cpu_table(results: dict[str, Any], key: str = "cpu_us_per_job") -> str:
    cols = ["worker", "redis", "mariadb"]
    head = "| system | worker | Redis server | MariaDB server |"
    if any(
        "postgres" in ((e.get("median") or {}).get(key) or {}) for e in results["systems"].values()
    ):
        cols.append("postgres")
        head += " PostgreSQL server |"
    if key == "w4_cpu_us_per_job":
        cols.append("producer")
        head += " producer |"
    rows = [head + " all |", "|---" * (len(cols) + 2) + "|"]
    ref = (results["systems"].get(REFERENCE, {}).get("median") or {}).get(key)
    ref_all = sum(ref.values()) if ref else None
    for name, entry in results["systems"].items():
        cpu = (entry.get("median") or {}).get(key)
        if not cpu:
            continue
        total = sum(cpu.values())
        cells = [f"{cpu[k]:,.0f}" if k in cpu else "—" for k in cols]
        ratio = f" (x{total / ref_all:.2f})" if ref_all and total and name != REFERENCE else ""
        rows.append(f"| {LABELS.get(name, name)} | {' | '.join(cells)} | {total:,.0f}{ratio} |")
    if len(rows) == 2:
        return "(no CPU times in these results)"
    return "\n".join(rows)


def sql_table(results: dict[str, Any]) -> str:
    med = results["systems"].get(REFERENCE, {}).get("median") or {}
    per_job = med.get("sql_per_job")
    if not per_job:
        return "(no SQL statement counts: aqueue on MariaDB did not run W2)"
    bg = med.get("sql_background_per_job") or {}
    lines = [
        "| MariaDB counter (SHOW GLOBAL STATUS) | per job, W2 | background on the server "
        "(estimate, per job) |",
        "|---|---|---|",
    ]
    for k in SQL_SHOWN:
        if k in per_job:
            lines.append(f"| {k} | {per_job[k]:.4f} | {bg.get(k, 0.0):.4f} |")
    return "\n".join(lines)


def _version_line(meta: dict[str, Any]) -> str:
    v = meta.get("versions", {})
    return ", ".join(f"{k} {x}" for k, x in v.items() if x)


def _source(meta: dict[str, Any]) -> str:
    start = meta.get("aqueue_source_at_start") or {}
    end = meta.get("aqueue_source_at_end") or {}
    if not start.get("commit"):
        return "not recorded"
    out = f"commit `{start['commit']}`"
    if end.get("commit") and end["commit"] != start["commit"]:
        out += f" at the start, `{end['commit']}` at the end (a commit landed during the run)"
    if start.get("src_dirty") or end.get("src_dirty"):
        out += ", with uncommitted changes in src/"
    if start.get("note"):
        out += f" ({start['note']})"
    return out


def _costs(results: dict[str, Any]) -> str:
    out = []
    if any((e.get("median") or {}).get("redis_per_job") for e in results["systems"].values()):
        out.append(
            "Redis commands per job in W2 (from `INFO commandstats` on the shared server, "
            "less the benchmark's own counter `INCR` and waits; commands run inside Lua "
            "scripts or functions count too; other clients of the server add noise):\n\n"
            + redis_table(results)
        )
    if any((e.get("median") or {}).get("cpu_us_per_job") for e in results["systems"].values()):
        out.append(
            "CPU time per job in W2, in µs (user + system, from `/proc`, from the worker's "
            "ready signal to the last completion): the worker's process tree and the "
            "servers the jobs go through. Less sensitive than throughput to the other "
            "tenants of this machine, since time spent waiting for a CPU is not counted. "
            "The Redis column includes the benchmark's own counter `INCR` (one per job, "
            "for every system); MariaDB's includes its background threads; SQLite runs "
            "inside aqueue's embedded worker; PostgreSQL's is its postmaster's process tree "
            "and the backends it reaped, every client's. (x2.00): that system used twice the "
            "CPU per job of aqueue (MariaDB):\n\n" + cpu_table(results)
        )
    if any((e.get("median") or {}).get("w4_cpu_us_per_job") for e in results["systems"].values()):
        out.append(
            "CPU time per job in W4 (500 jobs/s, one at a time: nothing to batch), in µs, "
            "the same way, from the worker's ready signal to the last job's start, and the "
            "producer's own (`time.process_time()` over its enqueue loop). At this rate "
            "every system pays its fixed costs per job; the sum times 500 is the share of "
            "the 2 CPUs the run keeps busy (1,000 µs: half a CPU):\n\n"
            + cpu_table(results, "w4_cpu_us_per_job")
        )
    if (results["systems"].get(REFERENCE, {}).get("median") or {}).get("sql_per_job"):
        out.append(
            "SQL statements per job for aqueue on MariaDB in W2, from the server's own "
            "counters (which count every client of the server: see the background "
            "column):\n\n" + sql_table(results)
        )
    if (results["systems"].get("aqueue-postgres", {}).get("median") or {}).get("sql_per_job"):
        out.append(
            "Transactions per job for aqueue on PostgreSQL in W2, from `pg_stat_database` "
            "(`xact_commit` + `xact_rollback` of the run's database; `pg_stat_statements` "
            "needs a server restart to load): every autocommitted statement is one, a "
            "`BEGIN` … `COMMIT` block (a claim) is one, a first prepare of a statement text "
            "on a connection is one. From just before the worker starts until it has exited "
            "and its backends are gone (a backend publishes its counts up to 10 s late, "
            "always at exit), less the harness's own; other clients of the database add to "
            "them (the background column). `tup_updated` counts rows changed: a claim and a "
            "finish per job.\n\n" + pg_sql_table(results)
        )
    return "\n\n".join(out)


def _durability(meta: dict[str, Any]) -> str:
    redis = meta.get("redis", {})
    maria = meta.get("mariadb", {})
    pg = meta.get("postgres", {})
    sq = meta.get("sqlite", {})
    emb = sq.get("embedded_redis", {})
    rows = [
        "| system | jobs kept in | settings |",
        "|---|---|---|",
        f"| aqueue (MariaDB) | InnoDB table, one autocommitted statement per transition | "
        f"`innodb_flush_log_at_trx_commit = {maria.get('innodb_flush_log_at_trx_commit')}` "
        f"(1: a commit is on disk before it returns), `sync_binlog = "
        f"{maria.get('sync_binlog')}`, `log_bin = {maria.get('log_bin')}` |",
        *(
            [
                '| aqueue (PostgreSQL) | table (compared text columns `COLLATE "C"`), one '
                "autocommitted statement per transition, small claims in `BEGIN` … `COMMIT` "
                f"| `synchronous_commit = {pg.get('synchronous_commit')}`, `fsync = "
                f"{pg.get('fsync')}`, `wal_sync_method = {pg.get('wal_sync_method')}`, "
                f"`full_page_writes = {pg.get('full_page_writes')}` |"
            ]
            if pg.get("version")
            else []
        ),
        f"| aqueue (embedded) | SQLite file | `synchronous = {sq.get('synchronous')}`, "
        f"`journal_mode = {sq.get('journal_mode')}` (as aqueue's connections set them); its "
        f"private Redis {emb.get('version', '?')}: `appendonly = {emb.get('appendonly')}` |",
        f"| arq, SAQ, taskiq, streaQ | Redis only (127.0.0.1:6379) | `appendonly = "
        f"{redis.get('appendonly')}`, `appendfsync = {redis.get('appendfsync')}`, `save = "
        f'"{redis.get("save")}"` |',
    ]
    out = "\n".join(rows)
    if lat := meta.get("commit_latency"):
        each = "; ".join(
            f"{x['p50_ms']} / {x['p95_ms']} / {x['p99_ms']} (max {x['max_ms']})" for x in lat
        )
        out += (
            f"\n\nOne durable single-row commit on this MariaDB, measured alone at the start "
            f"of each repeat ({lat[0]['n']} commits, 2 ms apart), p50 / p95 / p99 in ms: "
            f"{each}. Every `enqueue()` of aqueue waits for one such commit (W4's clock "
            "includes it); the Redis-only peers wait for none."
        )
    if lat := meta.get("postgres_commit_latency"):
        each = "; ".join(
            f"{x['p50_ms']} / {x['p95_ms']} / {x['p99_ms']} (max {x['max_ms']})" for x in lat
        )
        out += (
            f"\n\nThe same on this PostgreSQL ({lat[0]['n']} commits), p50 / p95 / p99 in ms: "
            f"{each}."
        )
    if redis.get("appendonly") == "no" and not redis.get("save"):
        out += (
            "\n\nThe shared Redis persists nothing here: a restart loses every queued job of "
            "arq, SAQ, taskiq and streaQ (their numbers are those of an in-memory queue), "
            "while aqueue's jobs are in SQL."
        )
    return out


def document(results: dict[str, Any]) -> str:
    meta = results["meta"]
    args = meta["args"]
    m = meta["machine"]
    redis = meta.get("redis", {})
    maria = meta.get("mariadb", {})
    unavailable = [
        f"- **{LABELS.get(n, n)}**: {e.get('reason')}"
        for n, e in results["systems"].items()
        if e.get("status") != "ok"
    ]
    loops = sorted(
        {
            r["W2"]["loop"]
            for e in results["systems"].values()
            for r in e.get("runs") or []
            if isinstance(r.get("W2"), dict) and r["W2"].get("loop")
        }
    )
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    pg_version = meta.get("postgres", {}).get("version")
    pg_version = f", PostgreSQL {pg_version}" if pg_version else ""
    out = f"""# Benchmarks

<!-- Generated by benchmarks/run.py (from benchmarks/results/latest.json): edit
benchmarks/_report.py (and benchmarks/cost_model.md), not this file. -->

aqueue against the Redis-only asyncio queues it is meant to replace (arq, SAQ, taskiq,
streaQ): the same jobs on the same machine and the same Redis, each through its own public
API, each worker started by its own CLI. Regenerate with `nox -s bench` (see
[benchmarks/README.md](../benchmarks/README.md); `--quick` for a smoke run).

## Results

Run of {meta["started"]}. N = {args["jobs"]:,} jobs for W1-W3; median of {args["repeats"]}
repeat(s); concurrency {args["concurrency"]}; W4 at {args["rate"]:g} jobs/s for
{args["duration"]:g} s. Higher is better except for W4.

{table(results)}

W5, scale: the producer (100 awaiting coroutines) and **two** worker processes run at
once; from the producer's first enqueue to the last completion. `noop` jobs, then no-ops
carrying a string argument of 100 B, 10 KB and 100 KB ({_BLOBS[args.get("w5_blob", "repeat")]};
`--w5-blob`); aqueue compresses arguments over 4 KB with
{_CODECS[args.get("aqueue_compression", "zlib")]} (`--aqueue-compression`). Median of
{args.get("w5_repeats", args["repeats"])} repeat(s): W5 runs only in the first repeat(s)
(`--w5-repeats`), its 155,000 jobs per system taking longer than W1-W4 together.

{table_w5(results)}

W1 inside the caller's transaction (aqueue on a SQL server): each of the 100 producers
runs, per job, one application transaction on its own SQLAlchemy engine (10 connections,
as aqueue's store pool) that inserts a row of the application's table and enqueues the
job with `task.options(connection=conn).enqueue(...)`, then commits; the job goes to Redis
after the COMMIT. Beside it the same transactions without the job (what the application
pays anyway), and W1 as above (aqueue's own connection: concurrent enqueues share one
INSERT).

{transactional_table(results) or "(not measured in this run)"}

{_costs(results)}

## Machine and versions

- {m["cpu_count"]} CPUs ({m["cpu_model"]}), {m.get("memory_gib")} GiB RAM, {m["os"]}.
  Servers, workers, producer and harness all share these {m["cpu_count"]} CPUs.
- Load average at start: {load}. The benchmark ran at niceness {m["niceness"]} on a
  machine shared with other work: differences under about 15 % are noise.
- Python {m["python"]}, SQLite {m["sqlite"]}, Redis {redis.get("version")}, MariaDB
  {maria.get("version")}{pg_version}.
- Libraries: {_version_line(meta)}.
- aqueue source: {_source(meta)}.
- Event loop of every worker: {", ".join(f"`{x}`" for x in loops) or "not recorded"}.

## Durability settings

{_durability(meta)}
"""
    if unavailable:
        out += "\n## Not measured here\n\n" + "\n".join(unavailable) + "\n"
    out += METHOD
    cost_model = Path(__file__).with_name("cost_model.md")
    if cost_model.exists():
        out += cost_model.read_text()
    return out


METHOD = """
## Method

- **Same jobs, same counting.** Each system registers four tasks through its own API:
  a no-op, `asyncio.sleep(0.01)`, a latency probe and a no-op with a string argument
  (W5). Each job `INCR`s one counter in a Redis DB of the harness's own and awaits the
  reply; the job whose increment reaches N pushes its wall time to a list the harness
  waits on (`BLPOP`). The `INCR` goes through a minimal RESP client of the harness
  (`benchmarks/_harness.py`, one connection per worker process, about 15 µs of CPU per
  call) rather than redis-py (about 60 µs here, as much as a whole aqueue job): the
  count is then a small, equal share of every system's no-op job. For aqueue the clock
  stops only once the last row is also `done` in SQL: the harness polls a
  `COUNT … GROUP BY status` (through `Queue.counts()`) every 2 ms after the last
  increment and stops at the later of the two.
- **Separate processes.** The producer is its own process (`benchmarks/producer.py`);
  each worker is started as its documentation says: `python -m aqueue run
  app_aqueue:queue --concurrency 100`, `arq app_arq.WorkerSettings` (`max_jobs = 100`),
  `saq app_saq.settings` (`concurrency = 100`), `taskiq worker app_taskiq:broker
  --workers 1 --max-async-tasks 100` (taskiq-redis `RedisStreamBroker`, the broker with
  acknowledgements), `streaq run app_streaq:worker` (`concurrency = 100`). Every other
  setting is the system's default.
- **Same Redis, separate namespaces.** One Redis server; each system in its own DB
  number (aqueue also under a fresh key prefix and, on MariaDB, a fresh table per run).
  Afterwards only what the run created is deleted.
- **Same event loop.** uvloop everywhere: aqueue's and taskiq's CLIs use it when it is
  installed; the arq and SAQ app modules set uvloop's event loop policy, streaQ gets
  `anyio_kwargs={"use_uvloop": True}`; producers use it too.
- **Same logging.** Warnings only. arq and streaQ log every job at INFO by default (arq
  is given `--custom-log-dict`, streaQ's logger level is set in its lifespan hook);
  aqueue, SAQ and taskiq are told by their CLI options.
- **W1 enqueue**: a fresh queue; N jobs enqueued by 100 coroutines, each awaiting one
  `enqueue` after another (aqueue `task.enqueue`, arq `enqueue_job`, SAQ
  `Queue.enqueue`, taskiq `kiq`, streaQ `task.enqueue`). Batch: the system's batch call,
  1,000 jobs per awaited call (aqueue `Queue.enqueue_many`, streaQ
  `Worker.enqueue_many`; arq, SAQ and taskiq have none). An aqueue enqueue returns once
  its row is committed. For aqueue on MariaDB and PostgreSQL also inside the caller's
  transaction: per job an application transaction (its own row + the job through
  `connection=`), checked afterwards (N rows in each table).
- **W2 drain**: the N jobs of W1 (no-ops), then one worker process at concurrency 100.
  Time from the worker's startup hook (it is connected and about to take jobs) to the
  last completion; the JSON also has the rate from process spawn (imports included).
- **W3 sleep**: as W2 with N jobs of `asyncio.sleep(0.01)`. The ceiling row is a bare
  asyncio loop (uvloop) running N such sleeps 100 at a time: 100 / 0.01 s = 10,000 jobs/s
  at most.
- **W4 latency**: a running worker; the producer starts one `enqueue` every 2 ms (open
  loop: a slow enqueue does not delay the next) for 10 s. Each job's argument is
  `time.time()` read just before `enqueue()` is called; the job records its start time
  minus it. Percentiles are nearest-rank over all jobs of a repeat.
- **SQL statements per job** (aqueue on MariaDB, W2): deltas of `SHOW GLOBAL STATUS`
  (`Com_insert`, `Com_update`, `Com_select`, `Com_commit`, `Com_begin`, `Questions`)
  from just before the worker starts until the last row is `done`, divided by N, less
  the harness's own polls. The counters are server-wide: other clients of the server add
  to them. The "background" column is the rate measured over one idle second just
  before, times the window: subtract it for an estimate of aqueue's own share. The
  W1 enqueues happen before the window and are not in it. On PostgreSQL, transactions
  per job from `pg_stat_database` (`xact_commit` + `xact_rollback`), from just before
  the worker starts until its backends have exited.
- **Worker peak RSS**: `VmHWM` of the process that ran the jobs, read at the end of W2.
- Medians over the repeats; every repeat's numbers are in
  `benchmarks/results/latest.json` (with more detail: the drain rate from process spawn,
  the time from ready to the first job, the SQL counters' raw deltas, the producer's own
  enqueue-call latency in W4).

## Reading the numbers

- Every job, including the "no-op", makes one Redis round trip (the counter), in every
  system alike: W2 is the cost of the queue plus that. (Runs before 2026-12-02 counted
  with redis-py, which cost every system about 60 µs of CPU per job: their figures are
  not comparable with later ones.)
- With 2 CPUs shared by Redis, MariaDB, the worker, the producer and the harness, the
  workers are CPU-bound: W3 (10 ms sleeps) stays far below the bare-loop ceiling for
  every system, and close to the same system's W2.
- arq's worker polls its queue every `poll_delay` (0.5 s by default): that, not its
  throughput, is its W4 latency. The benchmark keeps each system's defaults.
- A system whose drain rate (W2) is not far above the W4 rate is close to saturation in
  W4, and its latencies then measure queueing: read W4 beside W2.
- aqueue's enqueue→start (W4) includes two durable commits by design: the INSERT
  before `enqueue()` returns, and the claim `UPDATE` before the handler starts.
- One environment holds all the peers: arq (newest 0.28) needs redis-py < 6, so
  taskiq-redis resolves to 1.0.9, which needs taskiq < 0.13. Newer taskiq-redis needs
  redis-py 7 or 8.
"""


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _where(func: str, path: str) -> str:
    """The package of a frame; py-spy names files relative to their sys.path entry."""
    if func == "Runner.run" and path.startswith("asyncio/runners.py"):
        return "event loop itself (uvloop, C: polling and callbacks)"
    if path.startswith("<"):
        return path
    top = path.split("/", 1)[0].removesuffix(".py")
    return "benchmark job body (_harness)" if top == "_harness" else top


_ROOTS = (
    "<frozen runpy>",
    "click/",
    "aqueue/_cli/",
    "aqueue/__main__.py",
    "uvloop/",
    "asyncio/runners.py",
)
"""Frames on every stack of the worker's main thread: left out of the inclusive list."""


def profile_summary(path: Path, top: int = 30) -> str:
    """Where the time went, from py-spy's ``--format raw`` (collapsed stacks): by package
    of the innermost frame, by function (self), and by function (inclusive)."""
    total = 0
    by_pkg: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            frames.append((m.group("func"), m.group("file")) if m else (f, ""))
        func, file = frames[-1]
        by_pkg[_where(func, file)] += n
        self_t[f"{func} ({file})"] += n
        for key in {f"{fn} ({fl})" for fn, fl in frames if not fl.startswith(_ROOTS)}:
            incl[key] += n
    if not total:
        return f"{path}: no samples\n"
    out = [
        f"{path.name}: {total} samples (CPU only; idle waits are not sampled; SQLAlchemy's "
        "greenlet stacks are separate from the event loop's, and C code (uvloop, hiredis, "
        "asyncmy, sqlite3) shows as the Python frame that called it)",
        "",
    ]
    for title, counter in (
        ("by package (innermost frame)", by_pkg),
        ("self time by function", self_t),
        ("inclusive time by function", incl),
    ):
        out.append(title)
        for k, n in counter.most_common(top):
            out.append(f"  {100 * n / total:5.1f}%  {k}")
        out.append("")
    return "\n".join(out)
