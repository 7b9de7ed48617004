"""The projector: derives every read model of SPEC §4–5 from the fact relations (docs/fact-relations.md).

    project(conn)  -> ProjectReport   incremental, exactly once per fact, concurrent-safe
    project_risk(conn) -> ProjectReport  the Risk and Sales views alone, up to Finance's checkpoint
    rebuild(conn)  -> ProjectReport   from position 0 into new tables, swapped in atomically
    check(conn)    -> dict            rebuild beside the live tables and compare checksums table by table
    export(conn, name, fmt, out)      `ledger export NAME` as csv or json (never projects first)

The read models live in schema `ledger_proj`; their SQL is in `projections/*.sql`.
"""

from .exports import EXPORTS, ExportSpec, export, register_export
from .runner import LIVE_SCHEMA, ProjectReport, check, project, project_risk, rebuild

__all__ = [
    "EXPORTS", "ExportSpec", "LIVE_SCHEMA", "ProjectReport", "check", "export", "project", "project_risk",
    "rebuild", "register_export",
]
