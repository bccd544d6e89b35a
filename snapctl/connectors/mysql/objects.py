"""What a schema holds (tables, views, triggers, routines, events), dropping the objects a
RENAME cannot move, and scripts, written by the dump tool, that recreate them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snapctl.connectors.mysql.quoting import as_text, quote_name, quote_text
from snapctl.connectors.mysql.session import Client

_OBJECT_FLAGS = ("--no-data", "--skip-lock-tables", "--skip-dump-date", "--add-drop-trigger")


@dataclass
class Objects:
    """What one schema holds, by kind."""

    tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    routines: list[tuple[str, str]] = field(default_factory=list)  # (PROCEDURE, name)...
    events: list[str] = field(default_factory=list)

    @property
    def programs(self) -> bool:
        """Anything beyond tables and views, which a second dump must carry."""
        return bool(self.triggers or self.routines or self.events)

    def names(self) -> set[tuple[str, ...]]:
        """Every object by kind and name, whatever order the server listed them in."""
        return {
            *(("TABLE", name) for name in self.tables),
            *(("VIEW", name) for name in self.views),
            *(("TRIGGER", name) for name in self.triggers),
            *self.routines,
            *(("EVENT", name) for name in self.events),
        }


def _in_list(names: Sequence[str]) -> str:
    return "(" + ", ".join(quote_text(name) for name in names) + ")"


def list_objects(client: Client, schemas: Sequence[str]) -> dict[str, Objects]:
    """Every table, view, trigger, routine and event of ``schemas``, in one query."""
    where = _in_list(schemas)
    sql = (
        "SELECT 'T', TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM "
        f"information_schema.TABLES WHERE TABLE_SCHEMA IN {where} "
        "UNION ALL SELECT 'G', TRIGGER_SCHEMA, TRIGGER_NAME, '' FROM "
        f"information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN {where} "
        "UNION ALL SELECT 'R', ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE FROM "
        f"information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN {where} "
        "UNION ALL SELECT 'E', EVENT_SCHEMA, EVENT_NAME, '' FROM "
        f"information_schema.EVENTS WHERE EVENT_SCHEMA IN {where}"
    )
    found = {schema: Objects() for schema in schemas}
    for row in client.query(sql, f"listing the objects of '{client.database}'"):
        kind, schema, name, detail = (as_text(value) for value in row)
        objects = found[schema]
        if kind == "T":
            (objects.views if detail == "VIEW" else objects.tables).append(name)
        elif kind == "G":
            objects.triggers.append(name)
        elif kind == "R":
            objects.routines.append((detail, name))
        else:
            objects.events.append(name)
    return found


def drop_programs(schema: str, objects: Objects) -> list[str]:
    """Statements dropping a schema's triggers, views, routines and events."""
    where = quote_name(schema)
    statements = [f"DROP TRIGGER IF EXISTS {where}.{quote_name(t)};" for t in objects.triggers]
    statements += [f"DROP VIEW IF EXISTS {where}.{quote_name(v)};" for v in objects.views]
    statements += [
        f"DROP {kind} IF EXISTS {where}.{quote_name(name)};" for kind, name in objects.routines
    ]
    statements += [f"DROP EVENT IF EXISTS {where}.{quote_name(e)};" for e in objects.events]
    return statements


def programs_script(client: Client, schema: str, objects: Objects, dest: Path) -> Path | None:
    """A script recreating a schema's views, triggers, routines and events, naming no schema,
    written by the dump tool itself (it knows each object's sql_mode and character sets)."""
    parts = []
    if objects.views:
        views = dest.with_suffix(".views.sql")
        args = [*_OBJECT_FLAGS, "--skip-triggers", f"--result-file={views}", schema]
        client.run(client.dumper_path, [*args, *objects.views], f"reading the views of '{schema}'")
        parts.append(views)
    if objects.programs:
        programs = dest.with_suffix(".programs.sql")
        args = [*_OBJECT_FLAGS, "--no-create-info", "--triggers", "--routines", "--events"]
        client.run(
            client.dumper_path,
            [*args, f"--result-file={programs}", schema],
            f"reading the triggers, routines and events of '{schema}'",
        )
        parts.append(programs)
    if not parts:
        return None
    with open(dest, "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
            out.write(b"\n")
    return dest
