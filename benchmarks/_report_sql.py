"""The tables of the aqueue rows on a SQL server beyond the main one: PostgreSQL's
transactions per job (W2), and W1 with each enqueue inside the caller's transaction."""

from __future__ import annotations

from typing import Any

PG_ROW = "aqueue-postgres"
PG_SHOWN = ("transactions", "xact_commit", "xact_rollback", "tup_inserted", "tup_updated")
SERVER_ROWS = (("aqueue", "aqueue (MariaDB)"), (PG_ROW, "aqueue (PostgreSQL)"))


def pg_sql_table(results: dict[str, Any]) -> str:
    med = results["systems"].get(PG_ROW, {}).get("median") or {}
    per_job = med.get("sql_per_job")
    if not per_job:
        return "(no transaction counts: aqueue on PostgreSQL did not run W2)"
    bg = med.get("sql_background_per_job") or {}
    lines = [
        "| PostgreSQL counter (pg_stat_database, database of the run) | per job, W2 "
        "| background on the database (estimate, per job) |",
        "|---|---|---|",
    ]
    for k in PG_SHOWN:
        if k in per_job:
            lines.append(f"| {k} | {per_job[k]:.4f} | {bg.get(k, 0.0):.4f} |")
    return "\n".join(lines)


def transactional_table(results: dict[str, Any]) -> str:
    """W1 through aqueue's own connection beside W1 inside the application's transaction
    (``connection=``: the application's INSERT and the job's in one transaction)."""
    lines = [
        "| system | W1 enqueue (jobs/s) | app transaction alone: its row, no job (per s) "
        "| app transaction + job (jobs/s) | with the job / alone |",
        "|---|---|---|---|---|",
    ]
    for name, label in SERVER_ROWS:
        med = results["systems"].get(name, {}).get("median") or {}
        plain, alone, tx = med.get("W1"), med.get("W1t_app_only"), med.get("W1t")
        if tx is None:
            continue
        ratio = f"{tx / alone:.2f}" if alone else "—"
        cells = [f"{x:,.0f}" if x else "—" for x in (plain, alone, tx)]
        lines.append(f"| {label} | {' | '.join(cells)} | {ratio} |")
    if len(lines) == 2:
        return ""
    return "\n".join(lines)
