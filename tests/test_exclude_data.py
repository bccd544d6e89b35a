"""--exclude-data and SNAPSHOTS["EXCLUDE_DATA"]: the tables stay with their schema, their rows
are not in the snapshot, and a restore gives them back empty; on every built-in connector,
with the refusals (unknown entries, a connector that cannot, a kept table referencing an
emptied one) as one line each."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXAMPLE,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    assert_one_line,
    craft_snapshot,
    edited_manifest,
    manifest_of,
    new_store,
    psql_admin,
    run_on_store,
    uncompressed_artifact,
)

from snapctl.connectors import api
from snapctl.errors import ConfigurationError

# Sessions (no table references them), and a model with its many-to-many table.
LEAVE_OUT = ("-X", "django_session", "--exclude-data", "shop.Tag", "-X", "shop_product_tags")
EMPTIED = ["django_session", "shop_product_tags", "shop_tag"]

# Rows carrying a mark that must not reach the artifact.
PLANT = """
from datetime import timedelta
from django.contrib.sessions.models import Session
from django.utils import timezone
from shop.models import Product, Tag
mark = {mark!r}
for i in range(3):
    Session.objects.create(
        session_key=f"{{mark}}-{{i}}", session_data=mark * 3,
        expire_date=timezone.now() + timedelta(days=1),
    )
tag = Tag.objects.create(name=mark + "-tag")
Product.objects.order_by("pk").first().tags.add(tag)
"""
# After the restore: the emptied tables take rows again, their unique constraint holds.
REFILL = """
import json
from datetime import timedelta
from django.contrib.sessions.models import Session
from django.db import IntegrityError, transaction
from django.utils import timezone
from shop.models import Product, Tag
tag = Tag.objects.create(name="after-restore")
try:
    with transaction.atomic():
        Tag.objects.create(name="after-restore")
    unique = False
except IntegrityError:
    unique = True
Product.objects.order_by("pk").first().tags.add(tag)
Session.objects.create(
    session_key="after-restore", session_data="x", expire_date=timezone.now() + timedelta(days=1)
)
print(json.dumps({"tag_id": tag.pk, "unique": unique}))
"""


def _shell(project: Project, code: str) -> str:
    """The last line ``code`` printed ("" if none: Django 4.2's shell says nothing else)."""
    lines = project.manage("shell", "-c", code).strip().splitlines()
    return lines[-1] if lines else ""


def _ids(digest: dict[str, Any], table: str) -> list[int]:
    content = digest["tables"][table]
    at = content["columns"].index("id")
    return [row[at] for row in content["rows"]]


def round_trip(
    project: Project, *connector: str, artifact_holds_rows: bool = True, sequences: bool = True
) -> str:
    """Dump with ``LEAVE_OUT``, change the database, restore: the emptied tables are empty
    and take rows again, every other table is row-for-row as before, and the marked rows
    are nowhere in the artifact. Returns the snapshot's name."""
    mark = f"snapctl-left-out-{secrets.token_hex(6)}"
    _shell(project, PLANT.format(mark=mark))
    before = project.digest()
    assert all(before["tables"][table]["rows"] for table in EMPTIED)
    name = project.dump("--compress", "none", *connector, *LEAVE_OUT)
    entry = manifest_of(project.snapshots / name)["databases"]["default"]
    assert entry["excluded_data"] == EMPTIED

    data = uncompressed_artifact(project.snapshots / name).read_bytes()
    assert mark.encode() not in data
    if artifact_holds_rows:  # the grep can fail: a kept table's value is there
        customer = before["tables"]["shop_customer"]
        email = customer["rows"][0][customer["columns"].index("email")]
        assert email.encode() in data

    project.manage("seed_shop", "--customers", "3", "--products", "2", "--orders", "4")
    _shell(project, PLANT.format(mark=mark + "-again"))
    restored = project.snapctl("restore", "--yes", name)
    assert restored.returncode == EXIT_OK, restored.stderr
    assert f"tables restored empty (default): {', '.join(EMPTIED)}" in restored.stderr

    after = project.digest()
    assert sorted(after["tables"]) == sorted(before["tables"])
    for table, content in before["tables"].items():
        if table in EMPTIED:
            assert after["tables"][table]["rows"] == [], table
            assert after["tables"][table]["columns"] == content["columns"], table
        else:
            assert after["tables"][table] == content, table
    if sequences:  # counters where they were: new rows never reuse an id
        assert after["sequences"] == before["sequences"]
    refilled = json.loads(_shell(project, REFILL))
    assert refilled["unique"], "the unique constraint of shop_tag is gone"
    if sequences:
        assert refilled["tag_id"] > max(_ids(before, "shop_tag"))
    return name


# --- each connector, on a real database --------------------------------------------------------


def test_sqlite_leaves_the_rows_out_of_its_file(sqlite_project: Project) -> None:
    live = Path(sqlite_project.env["EXAMPLE_DB_NAME"])
    round_trip(sqlite_project)
    # The scratch copy is gone; the live file was only read.
    assert sorted(p.name for p in live.parent.iterdir() if p.name.startswith(".snapctl")) == []


def test_sqlite_wal_and_script_formats(sqlite_project: Project, tmp_path: Path) -> None:
    with sqlite3.connect(sqlite_project.env["EXAMPLE_DB_NAME"]) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    round_trip(sqlite_project)
    settings = tmp_path / "sql_settings.py"
    settings.write_text(
        "from example_project.settings import *  # noqa\n"
        "from snapctl import SQLiteConnector\n"
        "SNAPSHOTS = {'DATABASE_CONNECTORS': {'default': SQLiteConnector(format='sql')}}\n"
    )
    sqlite_project.env.update(DJANGO_SETTINGS_MODULE="sql_settings", PYTHONPATH=str(tmp_path))
    name = round_trip(sqlite_project)
    assert manifest_of(sqlite_project.snapshots / name)["databases"]["default"]["file"] == (
        "default.sql"
    )


def test_dumpdata_leaves_the_objects_out(sqlite_project: Project) -> None:
    # The restore empties every model table and resets its counters (as flush does).
    round_trip(sqlite_project, "--connector", "dumpdata", sequences=False)


def test_dumpdata_refuses_a_table_of_no_model(sqlite_project: Project) -> None:
    with sqlite3.connect(sqlite_project.env["EXAMPLE_DB_NAME"]) as conn:
        conn.execute("CREATE TABLE audit_log (line TEXT)")
    result = sqlite_project.snapctl("dump", "--connector", "dumpdata", "-X", "audit_log")
    assert_one_line(result, EXIT_USAGE, "audit_log", "installed models")
    assert sqlite_project.store_entries() == []


def test_postgres_leaves_the_rows_out_of_the_archive(postgres_project: Project) -> None:
    round_trip(postgres_project)


def test_postgres_template_truncates_its_copy_only(postgres_project: Project) -> None:
    db = postgres_project.extra["db"]
    try:
        name = round_trip(
            postgres_project, "--connector", "postgres-template", artifact_holds_rows=False
        )
        copy = manifest_of(postgres_project.snapshots / name)["databases"]["default"]
        copy_name = copy["metadata"]["copy_database"]
        # The copy on the server is the snapshot: its emptied tables hold no row, the others do.
        psql_admin(f'ALTER DATABASE "{copy_name}" WITH ALLOW_CONNECTIONS true')
        try:
            counts = psql_admin(
                "SELECT (SELECT count(*) FROM django_session), (SELECT count(*) FROM shop_tag), "
                "(SELECT count(*) FROM shop_product_tags), (SELECT count(*) FROM shop_customer)",
                database=copy_name,
            ).strip()
        finally:
            psql_admin(f'ALTER DATABASE "{copy_name}" WITH ALLOW_CONNECTIONS false')
        assert counts.split("|")[:3] == ["0", "0", "0"] and counts.split("|")[3] != "0"
    finally:
        for row in psql_admin(
            f"SELECT datname FROM pg_database WHERE datname LIKE '{db.name}\\_snapctl\\_%'"
        ).split():
            psql_admin(f'DROP DATABASE IF EXISTS "{row}" WITH (FORCE)')


def test_postgres_names_with_pattern_characters_leave_out_exactly_themselves(
    postgres_project: Project,
) -> None:
    """pg_dump reads ``.``, ``*`` and ``"`` in patterns; snapctl's names are taken as they are."""
    db = postgres_project.extra["db"]
    tables = ['"a.b"', '"x*"', '"q""t"', "ab", "xyz", "b"]
    statements = [f"CREATE TABLE {table} (id serial PRIMARY KEY, v text)" for table in tables]
    statements += [f"INSERT INTO {table} (v) VALUES ('kept-{i}')" for i, table in enumerate(tables)]
    statements += [f"ALTER TABLE {table} OWNER TO {db.user}" for table in tables]
    psql_admin("; ".join(statements), database=db.name)
    name = postgres_project.dump("-X", "a.b", "-X", "x*", "-X", 'q"t')
    entry = manifest_of(postgres_project.snapshots / name)["databases"]["default"]
    assert entry["excluded_data"] == ["a.b", 'q"t', "x*"]
    psql_admin("; ".join(f"DELETE FROM {table}" for table in tables), database=db.name)
    postgres_project.snapctl("restore", "--yes", check=True)
    counts = psql_admin(
        " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables), database=db.name
    ).split()
    assert counts == ['"a.b"|0', '"x*"|0', '"q""t"|0', "ab|1", "xyz|1", "b|1"]


PARALLEL = """
from snapctl import MySQLConnector

SNAPSHOTS = {"DATABASE_CONNECTORS": {"default": MySQLConnector(jobs=3)}}
"""


def _parallel(project: Project, tmp_path: Path) -> None:
    """A script large enough (20 MB) for the restore to split it and load rows in parallel."""
    project.manage("bulk_fill", "--rows", "20000")
    _settings(tmp_path, project, PARALLEL)


@pytest.mark.parametrize("load", ["whole", "parallel"])
def test_mariadb_leaves_the_rows_out_in_one_transaction(
    mariadb_project: Project, tmp_path: Path, load: str
) -> None:
    if load == "parallel":
        _parallel(mariadb_project, tmp_path)
    round_trip(mariadb_project)


# Runs snapctl as a process with a dump tool that cannot leave a table's rows out in its own
# run (Oracle's mysqldump): the empty tables first, with --no-data, then the rest.
WITHOUT_IGNORE_TABLE_DATA = """
import sys

import snapctl.connectors.mysql as mysql

mysql._ignores_table_data = lambda client: False
from snapctl.console import main

sys.argv[0] = "snapctl"
main()
"""


@pytest.mark.parametrize("load", ["whole", "parallel"])
def test_mariadb_without_ignore_table_data_dumps_the_empty_tables_first(
    mariadb_project: Project, tmp_path: Path, load: str
) -> None:
    if load == "parallel":  # the two tools' output, split as one dump
        _parallel(mariadb_project, tmp_path)

    def snapctl(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_IGNORE_TABLE_DATA, *args],
            cwd=EXAMPLE,
            env=mariadb_project.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert not check or result.returncode == EXIT_OK, result.stderr
        return result

    mariadb_project.snapctl = snapctl  # type: ignore[method-assign,assignment]
    name = round_trip(mariadb_project)
    script = uncompressed_artifact(mariadb_project.snapshots / name).read_bytes()
    assert script.count(b"-- Dump completed") == 2  # the dump tool ran twice, one after the other
    assert script.index(b"CREATE TABLE `shop_tag`") < script.index(b"CREATE TABLE `shop_customer`")


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("django_sesion", ["no table 'django_sesion'", "did you mean django_session"]),
        ("shop.Basket", ["app 'shop' has no model 'Basket'", "Customer, Order"]),
        ("blog.Post", ["no installed app 'blog'", "shop"]),
        ("a.b.c", ["no table 'a.b.c'", "app_label.ModelName"]),
    ],
)
def test_an_unknown_entry_is_one_line_before_any_work(
    sqlite_project: Project, entry: str, words: list[str]
) -> None:
    result = sqlite_project.snapctl("dump", "--exclude-data", entry)
    assert_one_line(result, EXIT_USAGE, f"--exclude-data {entry}", *words)
    assert sqlite_project.store_entries() == []


def test_a_kept_table_referencing_an_emptied_one_is_refused(sqlite_project: Project) -> None:
    m2m = sqlite_project.snapctl("dump", "-X", "shop.Tag")
    assert_one_line(
        m2m, EXIT_USAGE, "shop_product_tags", "shop_tag", "--exclude-data shop_product_tags",
        "many-to-many",
    )  # fmt: skip
    # At any depth: order lines reference orders, which reference customers.
    deep = sqlite_project.snapctl("dump", "-X", "shop_customer")
    assert_one_line(
        deep, EXIT_USAGE, "shop_order", "--exclude-data shop_order --exclude-data shop_orderline"
    )
    assert sqlite_project.store_entries() == []
    sqlite_project.dump("-X", "shop_customer", "-X", "shop_order", "-X", "shop_orderline")


PLAIN_CONNECTOR = """
import shutil


class PlainConnector:
    name = "plain"
    needs_app_registry = False

    def dump(self, db_alias, dest):
        from django.db import connections

        shutil.copyfile(connections[db_alias].settings_dict["NAME"], dest)
        return {}

    def restore(self, db_alias, src):
        raise NotImplementedError
"""


def _settings(tmp_path: Path, project: Project, body: str) -> None:
    (tmp_path / "exclude_settings.py").write_text(
        f"from example_project.settings import *  # noqa: F403\n{body}\n"
    )
    (tmp_path / "plain_connector.py").write_text(PLAIN_CONNECTOR)
    project.env.update(DJANGO_SETTINGS_MODULE="exclude_settings", PYTHONPATH=str(tmp_path))


def test_a_connector_without_the_capability_is_named(
    sqlite_project: Project, tmp_path: Path
) -> None:
    _settings(
        tmp_path,
        sqlite_project,
        "SNAPSHOTS = {'DATABASE_CONNECTORS': {'default': 'plain_connector.PlainConnector'}}",
    )
    result = sqlite_project.snapctl("dump", "-X", "django_session")
    assert_one_line(result, EXIT_USAGE, "connector 'plain'", "django_session", "sqlite")
    assert sqlite_project.store_entries() == []
    sqlite_project.dump()  # without it, the plugin dumps


def test_the_setting_empties_tables_and_adds_to_the_command_line(
    sqlite_project: Project, tmp_path: Path
) -> None:
    _settings(
        tmp_path,
        sqlite_project,
        "SNAPSHOTS = {'EXCLUDE_DATA': {'default': ['django_session', 'shop.Tag']}}",
    )
    refused = sqlite_project.snapctl("dump")  # shop_product_tags references shop_tag
    assert_one_line(refused, EXIT_USAGE, "shop_product_tags")
    name = round_trip(sqlite_project, "-X", "shop_product_tags")
    assert (
        manifest_of(sqlite_project.snapshots / name)["databases"]["default"]["excluded_data"]
        == EMPTIED
    )
    shown = sqlite_project.snapctl("show", name, check=True).stdout
    assert f"default: tables restored empty: {', '.join(EMPTIED)}" in shown


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("['django_session']", ["must be a dict"]),
        ("{'default': 'django_session'}", ["['default'] must be a list"]),
        ("{'elsewhere': ['django_session']}", ["'elsewhere'", "DATABASES lacks"]),
        ("{'default': ['nosuch']}", ["SNAPSHOTS['EXCLUDE_DATA']['default'] entry 'nosuch'"]),
    ],
)
def test_a_bad_setting_is_one_line(
    sqlite_project: Project, tmp_path: Path, setting: str, words: list[str]
) -> None:
    _settings(tmp_path, sqlite_project, f"SNAPSHOTS = {{'EXCLUDE_DATA': {setting}}}")
    assert_one_line(sqlite_project.snapctl("dump"), EXIT_USAGE, *words)


PROBE_APP = """
import os
from pathlib import Path

from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "exclude_probe"

    def ready(self):
        Path(os.environ["PROBE_DIR"], "apps-ready").touch()
"""


def test_table_names_need_no_app_registry(sqlite_project: Project, tmp_path: Path) -> None:
    (tmp_path / "exclude_probe").mkdir()
    (tmp_path / "exclude_probe" / "__init__.py").write_text("")
    (tmp_path / "exclude_probe" / "apps.py").write_text(PROBE_APP)
    _settings(tmp_path, sqlite_project, "INSTALLED_APPS = [*INSTALLED_APPS, 'exclude_probe']")
    marks = tmp_path / "marks"
    marks.mkdir()
    sqlite_project.env["PROBE_DIR"] = str(marks)
    sqlite_project.dump("-X", "django_session")
    assert list(marks.iterdir()) == []
    sqlite_project.dump("-X", "sessions.Session")  # a model needs the registry
    assert [p.name for p in marks.iterdir()] == ["apps-ready"]


# --- the contract and the manifest (fast tier) ------------------------------------------------


def test_the_capability_is_read_from_the_connector() -> None:
    import snapctl
    from snapctl.connectors.postgres.template import PostgresTemplateConnector

    for connector in (
        snapctl.SQLiteConnector,
        snapctl.PostgresConnector,
        snapctl.MySQLConnector,
        snapctl.DjangoDumpDataConnector(),
        PostgresTemplateConnector,
    ):
        assert api.capabilities_of(connector).leaves_out_data, connector

    class Plain:
        def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
            return {}

        def restore(self, db_alias: str, src: Path) -> None:
            pass

    class Wrong(Plain):
        exclude_data = "django_session"

    assert not api.capabilities_of(Plain()).leaves_out_data
    with pytest.raises(ConfigurationError, match="exclude_data must be a tuple of strings"):
        api.capabilities_of(Wrong())


def test_show_and_json_carry_the_emptied_tables(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    name = craft_snapshot(store)
    older = run_on_store(store, "show", name, "--json")
    assert json.loads(older.stdout)["databases"]["default"]["excluded_data"] == []
    with edited_manifest(store / name) as manifest:
        manifest["databases"]["default"]["excluded_data"] = ["django_session", "shop.tag"]
    shown = run_on_store(store, "show", name)
    assert "default: tables restored empty: django_session, shop.tag" in shown.stdout
    listed = json.loads(run_on_store(store, "list", "--json").stdout)
    assert listed[0]["databases"]["default"]["excluded_data"] == ["django_session", "shop.tag"]


@pytest.mark.parametrize(
    "value",
    ["django_session", [1], [""], ["a\x1b]0;x"], ["t", "t"], {"t": 1}, ["x" * 256]],
    ids=["text", "number", "empty", "control", "twice", "object", "long"],
)
def test_a_malformed_excluded_data_is_the_snapshots_error(tmp_path: Path, value: object) -> None:
    store = new_store(tmp_path)
    name = craft_snapshot(store)
    with edited_manifest(store / name) as manifest:
        manifest["databases"]["default"]["excluded_data"] = value
    result = run_on_store(store, "show", name)
    assert_one_line(result, EXIT_INTEGRITY, "excluded_data")


def test_a_command_line_entry_applies_to_every_database_holding_it(
    sqlite_project: Project, tmp_path: Path
) -> None:
    other = tmp_path / "other.sqlite3"
    with (
        sqlite3.connect(sqlite_project.env["EXAMPLE_DB_NAME"]) as live,
        sqlite3.connect(other) as copy,
    ):
        live.backup(copy)
        copy.execute("CREATE TABLE only_other (v TEXT)")
        copy.execute("INSERT INTO only_other VALUES ('left-out-of-other')")
    sqlite_project.env["EXAMPLE_DB2_NAME"] = str(other)
    missing = sqlite_project.snapctl("dump", "-X", "only_other")  # default only
    assert_one_line(missing, EXIT_USAGE, "no table 'only_other' in database 'default'")
    name = sqlite_project.dump("--all", "-X", "django_session", "-X", "only_other")
    databases = manifest_of(sqlite_project.snapshots / name)["databases"]
    assert databases["default"]["excluded_data"] == ["django_session"]
    assert databases["other"]["excluded_data"] == ["django_session", "only_other"]
    restored = sqlite_project.snapctl("restore", "--yes", name)
    assert "tables restored empty (other): django_session, only_other" in restored.stderr
    with sqlite3.connect(other) as copy:
        assert copy.execute("SELECT count(*) FROM only_other").fetchone() == (0,)
