"""Applying the rules: to a scratch database through a Django connection (read the
(pk, column) pairs, make the fakes in Python, write them back in bulk: executemany on SQLite,
a temporary table and one UPDATE ... FROM/JOIN per table on servers), or to serialized
objects as dumpdata writes them. Foreign keys, many-to-many tables and primary keys are never
touched (binding.py refuses rules on them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from snapctl.errors import OperationFailed
from snapctl.sanitizing.binding import BoundRule
from snapctl.sanitizing.fakes import Faker
from snapctl.sanitizing.rules import rules_json
from snapctl.sanitizing.scratch_alias import temporary_alias

# How many times a unique column's colliding fake is derived again before giving up.
_ATTEMPTS = 8
_FETCH = 10_000
_TEMPORARY_TABLE = "snapctl_sanitize_fakes"


class _DistinctFakes:
    """A unique column's fakes so far: a fake already given to another value is derived
    again (attempt 1, 2, ...), in the order the rows come, so distinct values keep distinct
    fakes. Collisions are rare (at least 32 bits of hash), so fakes stay the same across
    tables and runs all but always."""

    def __init__(self, bound: BoundRule, faker: Faker) -> None:
        self.bound = bound
        self.faker = faker
        self.given: dict[Any, Any] = {}

    def fake(self, value: Any) -> Any:
        bound = self.bound
        for attempt in range(_ATTEMPTS):
            fake = self.faker.fake(bound.rule, value, bound.max_length, bound.function, attempt)
            owner = self.given.setdefault(fake, value)
            if owner == value:
                return fake
        raise OperationFailed(
            f"sanitizing {bound.rule.target}: distinct values keep getting the same fake, and "
            "the column is unique; give the rule more distinct values (a longer {hash:N}, or a "
            "callable that uses its digest argument)"
        )


class _Column:
    """How one rule makes the fakes of its column."""

    def __init__(self, bound: BoundRule, faker: Faker) -> None:
        self.bound = bound
        self.faker = faker
        self.distinct = _DistinctFakes(bound, faker) if bound.unique else None
        # Values that need the field's own conversion to go into the column.
        self.prepare = bound.rule.kind in ("value", "callable")

    def fake(self, value: Any) -> Any:
        if self.distinct is not None:
            return self.distinct.fake(value)
        bound = self.bound
        return self.faker.fake(bound.rule, value, bound.max_length, bound.function)


class Sanitizing:
    """The rules and key of one dump: what snapctl gives a connector's ``dump_sanitized()``
    (``connectors.api.Sanitizer``), and what it says was applied, per alias."""

    def __init__(self, db_alias: str, bound: list[BoundRule], faker: Faker) -> None:
        self.db_alias = db_alias
        self.bound = bound
        self.faker = faker
        self.applied: list[BoundRule] = []
        self._by_model: dict[str, dict[str, _Column]] | None = None
        self._database_done = False

    @property
    def applied_rules(self) -> dict[str, Any]:
        """The rules applied, as settings wrote them: the manifest's record."""
        if self._by_model is None and not self._database_done:
            self._objects_columns()  # a dump with no objects: the rules of its tables
        return rules_json({bound.rule.target: bound.rule for bound in self.applied})

    def _present(self, alias: str) -> list[BoundRule]:
        """The rules whose model's table is in the database of ``alias``."""
        from django.db import connections

        tables = set(connections[alias].introspection.table_names(include_views=False))
        return [bound for bound in self.bound if bound.table in tables]

    def sanitize_database(self, overrides: Mapping[str, Any]) -> None:
        """Apply the rules to the scratch copy the alias's settings with ``overrides`` point
        at, in one transaction."""
        with temporary_alias(self.db_alias, overrides) as alias:
            self.applied = self._present(alias)
            apply_to_database(alias, self.applied, self.faker)
        self._database_done = True

    def _objects_columns(self) -> dict[str, dict[str, _Column]]:
        """model label (lower case) -> field name -> its column's fakes, made once."""
        if self._by_model is None:
            self.applied = self._present(self.db_alias)
            self._by_model = {}
            for bound in self.applied:
                label = bound.model_label.lower()
                self._by_model.setdefault(label, {})[bound.field.name] = _Column(bound, self.faker)
        return self._by_model

    def sanitize_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A serialized object (``model``, ``pk``, ``fields``) with sanitized fields, as a
        dumpdata serializer writes it."""
        columns = self._objects_columns().get(str(obj.get("model", "")).lower())
        if columns:
            fields = obj["fields"]
            for name, column in columns.items():
                value = fields.get(name)
                if value is not None and value != "":
                    fields[name] = column.fake(value)
        return obj


def _by_table(bound: list[BoundRule]) -> dict[str, list[BoundRule]]:
    tables: dict[str, list[BoundRule]] = defaultdict(list)
    for rule in bound:
        tables[rule.table].append(rule)
    return tables


def apply_to_database(alias: str, bound: list[BoundRule], faker: Faker) -> None:
    """Rewrite the sanitized columns of the database of ``alias``, in one transaction."""
    from django.db import connections, transaction

    connection = connections[alias]
    with transaction.atomic(using=alias):
        for table, rules in _by_table(bound).items():
            columns = [_Column(rule, faker) for rule in rules]
            changed = _fakes_of_table(connection, table, columns)
            if changed:
                _write(connection, table, rules[0].pk_column, [r.column for r in rules], changed)


def _fakes_of_table(connection: Any, table: str, columns: list[_Column]) -> list[tuple[Any, ...]]:
    """(fake, ..., pk) of every row with something to change, in primary key order (the
    order unique columns resolve their rare collisions in)."""
    quote = connection.ops.quote_name
    pk = columns[0].bound.pk_column
    names = ", ".join(quote(column.bound.column) for column in columns)
    changed: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote(pk)}, {names} FROM {quote(table)} ORDER BY {quote(pk)}")
        while rows := cursor.fetchmany(_FETCH):
            for row in rows:
                values = list(row[1:])
                dirty = False
                for index, column in enumerate(columns):
                    value = values[index]
                    if value is None or value == "":
                        continue
                    fake = column.fake(value)
                    if column.prepare:
                        field = column.bound.field
                        fake = field.get_db_prep_save(field.to_python(fake), connection)
                    values[index] = fake
                    dirty = True
                if dirty:
                    changed.append((*values, row[0]))
    return changed


def _write(
    connection: Any, table: str, pk: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    quote = connection.ops.quote_name
    if connection.vendor == "sqlite":
        sets = ", ".join(f"{quote(column)} = %s" for column in columns)
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {quote(table)} SET {sets} WHERE {quote(pk)} = %s", rows)
        return
    fakes = quote(_TEMPORARY_TABLE)
    names = [quote(column) for column in columns]
    selected = ", ".join([*names, quote(pk)])
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE TEMPORARY TABLE {fakes} ON COMMIT DROP AS "
                f"SELECT {selected} FROM {quote(table)} WITH NO DATA"
            )
            _fill_postgres(cursor, fakes, selected, rows)
            sets = ", ".join(f"{name} = f.{name}" for name in names)
            cursor.execute(
                f"UPDATE {quote(table)} AS t SET {sets} FROM {fakes} AS f "
                f"WHERE t.{quote(pk)} = f.{quote(pk)}"
            )
            cursor.execute(f"DROP TABLE {fakes}")
            return
        cursor.execute(
            f"CREATE TEMPORARY TABLE {fakes} AS SELECT {selected} FROM {quote(table)} LIMIT 0"
        )
        cursor.execute(f"ALTER TABLE {fakes} ADD PRIMARY KEY ({quote(pk)})")
        marks = ", ".join(["%s"] * (len(columns) + 1))
        cursor.executemany(f"INSERT INTO {fakes} ({selected}) VALUES ({marks})", rows)
        sets = ", ".join(f"t.{name} = f.{name}" for name in names)
        cursor.execute(
            f"UPDATE {quote(table)} AS t JOIN {fakes} AS f ON t.{quote(pk)} = f.{quote(pk)} "
            f"SET {sets}"
        )
        cursor.execute(f"DROP TEMPORARY TABLE {fakes}")


def _fill_postgres(cursor: Any, fakes: str, selected: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY the fakes in (psycopg 3), else INSERT them in batches (psycopg 2)."""
    raw = cursor.cursor
    if hasattr(raw, "copy"):
        with raw.copy(f"COPY {fakes} ({selected}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(rows[0]))
    cursor.executemany(f"INSERT INTO {fakes} ({selected}) VALUES ({marks})", rows)
