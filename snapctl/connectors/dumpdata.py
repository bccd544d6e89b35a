"""Any engine, through Django's own dumpdata and loaddata.

The dump is JSON Lines (with full-precision times), so both directions stream one object at a
time instead of holding the whole database in memory. It covers the tables of installed models
(not tables Django does not know), with primary keys as they were, so foreign keys need no
natural keys.

Restore empties those tables first (as flush does, without post-migrate signals, so
contenttypes and permissions are not recreated under other ids; excluded models' tables keep
their rows) and loads the snapshot, all inside one transaction: on engines with
transactional DDL and DELETE-based flush a failure leaves the database as it was. On
MySQL/MariaDB, whose flush TRUNCATEs (an implicit commit), the tables are emptied with
DELETE instead, so a failed load rolls back there too (InnoDB tables); the AUTO_INCREMENT
counters are then set to highest id + 1 after the commit.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snapctl.connectors.api import Sanitizer
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed
from snapctl.notices import notice


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            count += chunk.count(b"\n")
    return count


def _excluded(label: str, exclude: Sequence[str]) -> bool:
    """Whether model ``label`` (``app.Model``) is left out by ``exclude``: app labels and
    model labels, compared as Django does (the model name in any case)."""
    app, _, model = label.partition(".")
    return any(entry == app or entry.lower() == f"{app}.{model}".lower() for entry in exclude)


def _models(exclude: Sequence[str], *, excluded: bool) -> list[Any]:
    """The concrete models, with the auto-created many-to-many through models that dumpdata
    leaves out by default (see _exact_jsonl), that ``exclude`` leaves out (``excluded``) or
    keeps: a through model goes with the model that declares the field."""
    from django.apps import apps

    chosen = []
    for model in apps.get_models(include_auto_created=True):
        owner = model._meta.auto_created
        label = owner._meta.label if isinstance(owner, type) else model._meta.label
        if not model._meta.proxy and _excluded(label, exclude) == excluded:
            chosen.append(model)
    return chosen


def _model_labels(exclude: Sequence[str], empty_tables: Sequence[str] = ()) -> list[str]:
    """What a dump covers: every model that ``exclude`` keeps, but those whose table is in
    ``empty_tables`` (their rows are left out; a restore empties every model table)."""
    return [
        model._meta.label
        for model in _models(exclude, excluded=False)
        if model._meta.db_table not in empty_tables
    ]


def _check_model_tables(db_alias: str, tables: Sequence[str], exclude: Sequence[str]) -> None:
    """Each table whose rows are left out must be a dumped model's: a restore empties only
    those, and the rows of any other table would stay as they are, not come back empty."""
    covered = {model._meta.db_table for model in _models(exclude, excluded=False)}
    other = [table for table in tables if table not in covered]
    if other:
        raise ConfigurationError(
            f"the dumpdata connector cannot leave out the rows of {', '.join(other)} in "
            f"'{db_alias}': it dumps and restores only the tables of installed models that "
            "--exclude keeps; leave them out of --exclude-data"
        )


def _kept_tables(exclude: Sequence[str]) -> frozenset[str]:
    """The tables of excluded models: a restore leaves their rows as they are."""
    return frozenset(model._meta.db_table for model in _models(exclude, excluded=True))


def _check_labels(exclude: Sequence[str]) -> None:
    """An exclusion must name an installed app or model: a typo would exclude nothing."""
    from django.apps import apps

    known = {config.label for config in apps.get_app_configs()}
    known |= {model._meta.label.lower() for model in apps.get_models()}
    unknown = [entry for entry in exclude if entry not in known and entry.lower() not in known]
    if unknown:
        raise ConfigurationError(
            f"cannot exclude {', '.join(unknown)}: no such app or model here; give app labels "
            "or app.Model"
        )


# Loaded before every other object: a signal handler that runs while the others load (an
# app's search indexing, say) may look up a content type, and would create it under another
# id than the snapshot's, which then cannot be loaded.
_LOADED_FIRST = frozenset({"contenttypes.contenttype"})


def _loadable(db_alias: str, src: Path, dest: Path, exclude: Sequence[str]) -> dict[str, int]:
    """Copy the objects of ``src`` that can be loaded here into ``dest``: not excluded, of an
    installed model whose table exists (apps ship engine-specific models, like Wagtail's
    SQLite search index). Returns how many objects of each model were left out."""
    from django.apps import apps
    from django.db import connections

    tables = set(connections[db_alias].introspection.table_names(include_views=False))
    verdicts: dict[str, bool] = {}
    field_names: dict[str, frozenset[str]] = {}  # of each model loaded
    skipped: dict[str, int] = {}
    later = dest.with_name(dest.name + ".later")
    with open(src, "rb") as reader, open(dest, "wb") as first, open(later, "wb") as rest:
        for number, line in enumerate(reader, 1):
            label, fields = _model_of(line)
            if not label:
                raise IntegrityError(
                    f"line {number} of the snapshot of '{db_alias}' is not an object of a "
                    "model; it is damaged or crafted, restore another snapshot"
                )
            if label not in verdicts:
                try:
                    model = apps.get_model(label)
                except (LookupError, ValueError):
                    verdicts[label] = False  # not installed here: another engine's model
                else:
                    verdicts[label] = not _excluded(model._meta.label, exclude)
                    if verdicts[label] and model._meta.db_table not in tables:
                        raise ConfigurationError(
                            f"table {model._meta.db_table} of {model._meta.label} does not "
                            f"exist in '{db_alias}': migrate it first, or leave the model "
                            f"out with --exclude {model._meta.label}"
                        )
                    field_names[label] = frozenset(
                        field.name for field in model._meta.get_fields(include_hidden=True)
                    )
            if verdicts[label] and not field_names[label].issuperset(fields):
                _refuse_fields(label, sorted(set(fields) - field_names[label]))
            if not verdicts[label]:
                skipped[label] = skipped.get(label, 0) + 1
            else:
                (first if label in _LOADED_FIRST else rest).write(line)
    with open(later, "rb") as remaining, open(dest, "ab") as after_first:
        shutil.copyfileobj(remaining, after_first)
    later.unlink()
    return skipped


def _model_of(line: bytes) -> tuple[str, list[str]]:
    """The ``model`` of one JSON Lines object and the names of its fields; "" for a line
    that is no such object."""
    try:
        data = json.loads(line)
    except ValueError:
        return "", []
    if not isinstance(data, dict):
        return "", []
    model, fields = data.get("model"), data.get("fields")
    names = [str(name) for name in fields] if isinstance(fields, dict) else []
    return (model if isinstance(model, str) else ""), names


def _refuse_fields(label: str, missing: list[str]) -> None:
    """Refuse, before the database is touched, objects with fields this project's model
    lacks: the same model differs between engines (Wagtail's search index) or versions."""
    from django.apps import apps

    label = apps.get_model(label)._meta.label
    raise ConfigurationError(
        f"the snapshot's {label} objects have fields this project's {label} lacks "
        f"({', '.join(missing)}); leave it out with --exclude {label} (rebuild it after, "
        "if it is an index), or migrate this database to the snapshot's code first"
    )


def _is_mysql(db_alias: str) -> bool:
    from django.db import connections

    return bool(connections[db_alias].vendor == "mysql")


def _flushed_tables(db_alias: str, kept: frozenset[str] = frozenset()) -> list[str]:
    """The tables Django's flush would empty, but those ``kept``."""
    from django.db import connections

    introspection = connections[db_alias].introspection
    tables = introspection.django_table_names(only_existing=True, include_views=False)
    return sorted(table for table in tables if table not in kept)


def _flush(db_alias: str, kept: frozenset[str]) -> None:
    """Empty the tables as Django's flush does (its own statements for the engine, sequences
    reset), but those ``kept``; inside the caller's transaction, without post-migrate
    signals, so contenttypes and permissions are not recreated under other ids."""
    from django.core.management.color import no_style
    from django.db import connections

    connection = connections[db_alias]
    tables = _flushed_tables(db_alias, kept)
    statements = connection.ops.sql_flush(no_style(), tables, reset_sequences=True)
    connection.ops.execute_sql_flush(statements)


def _delete_all_mysql(db_alias: str, kept: frozenset[str]) -> None:
    """Empty the tables with DELETE, which stays inside the transaction: Django's flush uses
    TRUNCATE on MySQL, which commits on its own and would make a failed load irreversible."""
    from django.db import connections

    connection = connections[db_alias]
    with connection.cursor() as cursor:
        cursor.execute("SET FOREIGN_KEY_CHECKS = 0")  # a session setting, no implicit commit
        try:
            for table in _flushed_tables(db_alias, kept):
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
        finally:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")


def _reset_auto_increment_mysql(db_alias: str) -> None:
    """Set each AUTO_INCREMENT counter to the lowest it can be (highest id + 1), as TRUNCATE and
    a fresh load would; DELETE leaves them where they were. ALTER TABLE commits implicitly, so
    this runs after the data is committed: it changes counters only, never rows."""
    from django.db import connections

    connection = connections[db_alias]
    tables = set(_flushed_tables(db_alias))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND auto_increment IS NOT NULL"
        )
        counted = [row[0] for row in cursor.fetchall() if row[0] in tables]
        for table in counted:
            cursor.execute(f"ALTER TABLE {connection.ops.quote_name(table)} AUTO_INCREMENT = 1")


class DjangoDumpDataConnector:
    """Back up and restore using dumpdata / loaddata."""

    name = "dumpdata"
    engines: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    extension = "jsonl"
    portable = True  # the format is the same whatever the engine
    exclude_data: tuple[str, ...] = ()  # model tables whose objects are left out

    def __init__(self, exclude: Sequence[str] = ()) -> None:
        # Apps or models (``wagtailsearch``, ``wagtailsearch.IndexEntry``) left out of dumps
        # and restores: search indexes, caches, engine-specific models.
        self.exclude = tuple(exclude)

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump all data for db_alias to a JSON Lines file at dest.

        Returns metadata dict with format key.
        """
        from django.core import serializers
        from django.core.management import call_command

        from snapctl.connectors import _exact_jsonl

        _check_labels(self.exclude)
        _check_model_tables(db_alias, self.exclude_data, self.exclude)
        serializers.register_serializer(_exact_jsonl.FORMAT, _exact_jsonl.__name__)
        labels = _model_labels(self.exclude, self.exclude_data)
        try:
            if labels:
                call_command(
                    "dumpdata",
                    *labels,
                    database=db_alias,
                    format=_exact_jsonl.FORMAT,
                    output=str(dest),
                    use_base_manager=True,
                    verbosity=0,
                )
            else:  # dumpdata without labels would dump every model
                dest.write_bytes(b"")
        except Exception as exc:
            raise OperationFailed(f"dumpdata of '{db_alias}' failed: {exc}") from exc
        metadata: dict[str, Any] = {"format": "jsonl", "objects": _count_lines(dest)}
        if self.exclude:
            metadata["excluded"] = list(self.exclude)
        return metadata

    def dump_sanitized(self, db_alias: str, dest: Path, sanitizer: Sanitizer) -> dict[str, Any]:
        """Dump as ``dump()`` does, each object's sanitized fields replaced as it is
        serialized: the real values are never written, and no scratch copy is needed."""
        from snapctl.connectors import _exact_jsonl

        token = _exact_jsonl.TRANSFORM.set(sanitizer.sanitize_object)
        try:
            return self.dump(db_alias, dest)
        finally:
            _exact_jsonl.TRANSFORM.reset(token)

    def restore(self, db_alias: str, src: Path) -> None:
        """Restore all data for db_alias from the JSON Lines dump at src."""
        from django.core.management import call_command
        from django.db import transaction

        _check_labels(self.exclude)
        with tempfile.TemporaryDirectory(prefix="snapctl-") as scratch:
            # loaddata picks the format from the file name, whatever the store called it.
            fixture = Path(scratch) / "snapshot.jsonl"
            skipped = _loadable(db_alias, src, fixture, self.exclude)
            try:
                with transaction.atomic(using=db_alias):
                    kept = _kept_tables(self.exclude)  # excluded models keep their rows
                    if _is_mysql(db_alias):
                        _delete_all_mysql(db_alias, kept)
                    else:
                        _flush(db_alias, kept)
                    call_command("loaddata", str(fixture), database=db_alias, verbosity=0)
            except Exception as exc:
                raise OperationFailed(
                    f"loaddata into '{db_alias}' failed, changes rolled back: {exc}"
                ) from exc
            if _is_mysql(db_alias):
                _reset_auto_increment_mysql(db_alias)
        if skipped:
            left_out = ", ".join(f"{count} of {label}" for label, count in sorted(skipped.items()))
            notice(
                f"restored '{db_alias}' without the objects of excluded models and of models "
                f"not installed here: {left_out}"
            )
