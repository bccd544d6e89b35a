"""Tables whose rows a dump leaves out (``exclude_data``), named exactly: schema-qualified
with the schema the search_path finds them in, each part quoted. Quoted so, a name is taken
literally both by SQL and by pg_dump's patterns, where ``*``, ``?``, ``.`` and ``"`` are
special outside double quotes (``x*`` would match ``xyz`` too, ``a.b`` table ``b`` of
schema ``a``)."""

from __future__ import annotations

from collections.abc import Sequence

from snapctl.connectors.postgres.connection import Libpq
from snapctl.connectors.postgres.quoting import ident, literal
from snapctl.errors import ConfigurationError

# The tables of those names the session's search_path finds, as Django's introspection
# lists them (ordinary and partitioned tables).
_VISIBLE_TABLES = """
SELECT c.relname, n.nspname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname IN ({names}) AND c.relkind IN ('r', 'p') AND pg_catalog.pg_table_is_visible(c.oid)
"""


def qualified_tables(pg: Libpq, tables: Sequence[str], database: str | None = None) -> list[str]:
    """``"schema"."table"`` for each of ``tables``, in the alias's database (or ``database``,
    a copy of it); a table not found is a ``ConfigurationError``."""
    if not tables:
        return []
    rows = pg.server.query(
        _VISIBLE_TABLES.format(names=", ".join(literal(table) for table in tables)),
        database=database,
        what=f"finding the tables whose rows the dump of '{pg.alias}' leaves out",
    )
    schemas = {str(name): str(schema) for name, schema in rows}
    missing = [table for table in tables if table not in schemas]
    if missing:
        raise ConfigurationError(
            f"no table {', '.join(missing)} in the search_path of '{pg.alias}'; "
            "give the tables as the database has them"
        )
    return [f"{ident(schemas[table])}.{ident(table)}" for table in tables]
