"""Which tables a dump keeps empty: ``--exclude-data`` and ``SNAPSHOTS["EXCLUDE_DATA"]``
resolved to table names per alias, each checked against the database before any work.

An entry is a table name as the database has it, or ``app_label.ModelName`` (its
``db_table``). A table name is looked up first, so plain names never need the app registry
(``django.setup()``, seconds on a large project); only an entry that is no table is read as
a model. A table whose rows are kept must not reference one whose rows are left out: the
restore would fail on the foreign key, or leave references to rows that are not there.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from snapctl.errors import ConfigurationError, OperationFailed

SETTING = "EXCLUDE_DATA"
_SETTING_NAME = f"SNAPSHOTS['{SETTING}']"


def configured() -> dict[str, tuple[str, ...]]:
    """``SNAPSHOTS["EXCLUDE_DATA"]``, checked: a dict from alias to a list of entries."""
    from snapctl.django_env import database_aliases, snapshot_settings

    value = snapshot_settings().get(SETTING) or {}
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"{_SETTING_NAME} must be a dict from database alias to a list of tables or "
            'app_label.ModelName, e.g. {"default": ["django_session"]}'
        )
    known = database_aliases()
    entries: dict[str, tuple[str, ...]] = {}
    for alias, listed in value.items():
        if alias not in known:
            raise ConfigurationError(
                f"{_SETTING_NAME} names database alias {alias!r}, which DATABASES lacks "
                f"(it has: {', '.join(known) or 'none'})"
            )
        if not isinstance(listed, list | tuple) or not all(
            isinstance(entry, str) and entry for entry in listed
        ):
            raise ConfigurationError(
                f"{_SETTING_NAME}[{alias!r}] must be a list of table names or "
                f"app_label.ModelName, not {listed!r}"
            )
        entries[alias] = tuple(listed)
    return entries


class _Databases:
    """The tables of each alias, read once through Django's introspection."""

    def __init__(self) -> None:
        self._tables: dict[str, frozenset[str]] = {}

    def tables(self, alias: str) -> frozenset[str]:
        if alias not in self._tables:
            self._tables[alias] = frozenset(
                _introspect(alias, lambda i, c: i.table_names(c, include_views=False))
            )
        return self._tables[alias]

    def references(self, alias: str, table: str) -> dict[str, str]:
        """The tables ``table`` has a foreign key to, each with one of its columns."""
        relations = _introspect(alias, lambda i, c: i.get_relations(c, table))
        return {target: column for column, (_, target) in sorted(relations.items())}


def _introspect(alias: str, ask: Callable[[Any, Any], Any]) -> Any:
    from django.db import connections

    connection = connections[alias]
    try:
        with warnings.catch_warnings(), connection.cursor() as cursor:
            # Django warns of queries before the app registry is ready: on purpose here, a
            # table name needs no models, and populating the registry costs seconds.
            warnings.filterwarnings("ignore", "Accessing the database", RuntimeWarning)
            return ask(connection.introspection, cursor)
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise OperationFailed(
            f"reading the tables of '{alias}' for --exclude-data failed: {detail}"
        ) from exc


def resolve(aliases: Sequence[str], command_line: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The tables whose rows the dump of each alias leaves out, sorted: the setting's entries
    for the alias, and every ``command_line`` entry in each alias that holds it. Unknown
    entries and tables that would be left referenced are a ``ConfigurationError``. Aliases
    with nothing to leave out are absent; with no entries at all, no database is read."""
    from snapctl.django_env import close_connection

    setting = configured()
    wanted = {alias: setting.get(alias, ()) for alias in aliases}
    if not command_line and not any(wanted.values()):
        return {}
    databases = _Databases()
    try:
        chosen: dict[str, set[str]] = {alias: set() for alias in aliases}
        for alias, entries in wanted.items():
            for entry in entries:
                where = f"{_SETTING_NAME}[{alias!r}] entry {entry!r}"
                for holder in _holders(databases, [alias], entry, where):
                    chosen[holder].add(_table_of(databases, holder, entry))
        for entry in dict.fromkeys(command_line):
            where = f"--exclude-data {entry}"
            for holder in _holders(databases, aliases, entry, where):
                chosen[holder].add(_table_of(databases, holder, entry))
        for alias, tables in chosen.items():
            if tables:
                _refuse_dangling(databases, alias, frozenset(tables))
    finally:
        for alias in aliases:
            # A connector may need the database to itself (postgres-template's copy does).
            close_connection(alias)
    return {alias: tuple(sorted(tables)) for alias, tables in chosen.items() if tables}


def _table_of(databases: _Databases, alias: str, entry: str) -> str:
    return entry if entry in databases.tables(alias) else _model_table(entry)


def _holders(databases: _Databases, aliases: Sequence[str], entry: str, where: str) -> list[str]:
    """The aliases that hold the table ``entry`` names (itself, or a model's table)."""
    holding = [alias for alias in aliases if entry in databases.tables(alias)]
    if holding:
        return holding
    app, dot, model = entry.partition(".")
    if not (dot and app and model and "." not in model):
        raise ConfigurationError(
            f"{where}: no table {entry!r} in {_described(aliases)}"
            f"{_near(entry, databases, aliases)}; give a table name as the database has it, "
            "or app_label.ModelName"
        )
    table = _model_table(entry, where)
    holding = [alias for alias in aliases if table in databases.tables(alias)]
    if not holding:
        raise ConfigurationError(
            f"{where}: its table {table!r} is in none of the databases dumped "
            f"({_described(aliases)}); migrate it first, or dump the alias that holds it"
        )
    return holding


def _described(aliases: Sequence[str]) -> str:
    return "database " + ", ".join(f"'{alias}'" for alias in aliases)


def _near(entry: str, databases: _Databases, aliases: Sequence[str]) -> str:
    tables = sorted({table for alias in aliases for table in databases.tables(alias)})
    close = difflib.get_close_matches(entry, tables, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _model_table(entry: str, where: str = "") -> str:
    """The ``db_table`` of model ``app_label.ModelName``; the app registry is started here,
    only for such an entry."""
    from snapctl.django_env import UnknownModel, installed_model, require_apps

    require_apps()
    app_label, _, model_name = entry.partition(".")
    try:
        model = installed_model(app_label, model_name)
    except UnknownModel as exc:
        raise ConfigurationError(
            f"{where}: it is no table of the databases dumped, nor a model: {exc}; give a "
            "table name or app_label.ModelName"
        ) from None
    return str(model._meta.db_table)


def _refuse_dangling(databases: _Databases, alias: str, excluded: frozenset[str]) -> None:
    """Refuse when a table whose rows are kept has a foreign key to one left out, naming
    every table whose rows must go too (those referencing them, at any depth)."""
    references = {
        table: databases.references(alias, table)
        for table in sorted(databases.tables(alias) - excluded)
    }
    first = next(
        (
            (table, target, column)
            for table, targets in references.items()
            for target, column in targets.items()
            if target in excluded and target != table
        ),
        None,
    )
    if first is None:
        return
    table, target, column = first
    needed = _referencing(references, excluded)
    fix = " ".join(f"--exclude-data {name}" for name in needed)
    raise ConfigurationError(
        f"table {table} of '{alias}' keeps its rows but references {target} ({column}), whose "
        f"rows are left out: the restore would fail or leave dangling references; leave out "
        f"its rows too ({fix}; the many-to-many table of a left-out model is the usual case)"
    )


def _referencing(
    references: Mapping[str, Mapping[str, str]], excluded: frozenset[str]
) -> list[str]:
    """The kept tables that reference a left-out one, directly or through each other."""
    gone = set(excluded)
    while True:
        more = {
            table
            for table, targets in references.items()
            if table not in gone and any(target in gone for target in targets if target != table)
        }
        if not more:
            return sorted(gone - excluded)
        gone |= more
