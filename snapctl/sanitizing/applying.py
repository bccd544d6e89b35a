"""Applying the rules: to a scratch database through a Django connection (read the
(pk, column) pairs, make the fakes in Python, write them back in bulk: executemany on SQLite,
a temporary table and one UPDATE ... FROM/JOIN per table on servers), or to serialized
objects as dumpdata writes them. Foreign keys, many-to-many tables and primary keys are never
touched (binding.py refuses rules on them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from snapctl.errors import OperationFailed
from snapctl.sanitizing import triggers
from snapctl.sanitizing.binding import BoundRule
from snapctl.sanitizing.fakes import Faker
from snapctl.sanitizing.rules import rules_json
from snapctl.sanitizing.scratch_alias import temporary_alias

# How many times a unique column's colliding fake is derived again before giving up.
_ATTEMPTS = 8
_BATCH = 10_000  # rows read, faked and written at a time
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
            writer = _Writer(connection, table, rules[0].pk_column, [r.column for r in rules])
            with triggers.suspended(connection, table):
                for changed in _fakes_of_table(connection, table, columns):
                    writer.write(changed)
                writer.finish()


def _fakes_of_table(
    connection: Any, table: str, columns: list[_Column]
) -> Iterator[list[tuple[Any, ...]]]:
    """(fake, ..., pk) of the rows with something to change, a batch at a time, in primary
    key order (the order unique columns resolve their rare collisions in). Read by ranges of
    the primary key: memory stays bounded, and no read is open while a batch is written."""
    quote = connection.ops.quote_name
    pk = quote(columns[0].bound.pk_column)
    names = ", ".join(quote(column.bound.column) for column in columns)
    select = f"SELECT {pk}, {names} FROM {quote(table)}"
    last: Any = None
    while True:
        with connection.cursor() as cursor:
            if last is None:
                cursor.execute(f"{select} ORDER BY {pk} LIMIT {_BATCH}")
            else:
                cursor.execute(f"{select} WHERE {pk} > %s ORDER BY {pk} LIMIT {_BATCH}", [last])
            rows = cursor.fetchall()
        if not rows:
            return
        last = rows[-1][0]
        changed = [fakes for row in rows if (fakes := _fakes_of_row(connection, row, columns))]
        if changed:
            yield changed


def _fakes_of_row(connection: Any, row: Sequence[Any], columns: list[_Column]) -> tuple[Any, ...]:
    """(fake, ..., pk) of one row, or () when it has nothing to change."""
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
    return (*values, row[0]) if dirty else ()


class _Writer:
    """Writes a table's fakes back, batch by batch: ``executemany`` of UPDATE by primary key
    on SQLite (each a B-tree lookup in process); on servers, into a temporary table (COPY on
    PostgreSQL), then one UPDATE ... FROM/JOIN for the whole table, not a round trip a row."""

    def __init__(self, connection: Any, table: str, pk: str, columns: list[str]) -> None:
        self.connection = connection
        self.vendor = connection.vendor
        quote = connection.ops.quote_name
        self.table, self.pk = quote(table), quote(pk)
        self.names = [quote(column) for column in columns]
        self.fakes = quote(_TEMPORARY_TABLE)
        self.selected = ", ".join([*self.names, self.pk])
        self.started = False

    def _start(self, cursor: Any) -> None:
        if self.vendor == "postgresql":
            cursor.execute(
                f"CREATE TEMPORARY TABLE {self.fakes} ON COMMIT DROP AS "
                f"SELECT {self.selected} FROM {self.table} WITH NO DATA"
            )
        else:
            cursor.execute(
                f"CREATE TEMPORARY TABLE {self.fakes} AS "
                f"SELECT {self.selected} FROM {self.table} LIMIT 0"
            )
            cursor.execute(f"ALTER TABLE {self.fakes} ADD PRIMARY KEY ({self.pk})")
        self.started = True

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        with self.connection.cursor() as cursor:
            if self.vendor == "sqlite":
                sets = ", ".join(f"{name} = %s" for name in self.names)
                cursor.executemany(f"UPDATE {self.table} SET {sets} WHERE {self.pk} = %s", rows)
                return
            if not self.started:
                self._start(cursor)
            raw = cursor.cursor
            if self.vendor == "postgresql" and hasattr(raw, "copy"):  # psycopg 3
                with raw.copy(f"COPY {self.fakes} ({self.selected}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                return
            marks = ", ".join(["%s"] * len(rows[0]))
            cursor.executemany(f"INSERT INTO {self.fakes} ({self.selected}) VALUES ({marks})", rows)

    def finish(self) -> None:
        if not self.started:
            return
        with self.connection.cursor() as cursor:
            if self.vendor == "postgresql":
                sets = ", ".join(f"{name} = f.{name}" for name in self.names)
                cursor.execute(
                    f"UPDATE {self.table} AS t SET {sets} FROM {self.fakes} AS f "
                    f"WHERE t.{self.pk} = f.{self.pk}"
                )
                cursor.execute(f"DROP TABLE {self.fakes}")
                # A copy made by TEMPLATE carries the live columns' sampled values in
                # pg_statistic, which a dump with statistics (pg_dump 18's option) would show.
                cursor.execute(f"ANALYZE {self.table}")
            else:
                sets = ", ".join(f"t.{name} = f.{name}" for name in self.names)
                cursor.execute(
                    f"UPDATE {self.table} AS t JOIN {self.fakes} AS f "
                    f"ON t.{self.pk} = f.{self.pk} SET {sets}"
                )
                cursor.execute(f"DROP TEMPORARY TABLE {self.fakes}")
