"""Sanitized dumps on SQLite (both formats) and through dumpdata, end to end: no original value
in the artifact, the live database unchanged, fakes deterministic per key, unique columns and
joins kept, every rule checked before any work, nothing left behind after a failure."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXAMPLE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Project,
    assert_one_line,
    manifest_of,
    start_snapctl,
)
from sanitize_checks import (
    ADD_USERS,
    JOIN_SQL,
    RULES,
    UNIQUE,
    assert_no_original_in,
    leftovers,
    originals,
    sanitize_env,
    unpacked_bytes,
)

# How each way of dumping is chosen.
WAYS = {
    "sqlite": {},
    "sqlite-sql": {"EXAMPLE_SQLITE_FORMAT": "sql"},
    "dumpdata": {"connector": "dumpdata"},
}


def db_path(project: Project) -> Path:
    return Path(project.env["EXAMPLE_DB_NAME"])


def query(project: Project, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path(project)) as connection:
        return connection.execute(sql).fetchall()


def with_users(project: Project, **env: str) -> Project:
    project.manage("shell", "-c", ADD_USERS)
    project.env.update(env)
    return project


def dump(project: Project, way: str, *args: str, **env: str) -> str:
    options = dict(WAYS[way])
    connector = options.pop("connector", None)
    extra = ["--connector", connector] if connector else []
    result = project.snapctl("dump", *extra, *args, **options, **env)
    assert result.returncode == EXIT_OK, result.stderr
    return result.stdout.strip()


def restore(project: Project, name: str) -> subprocess.CompletedProcess[str]:
    return project.snapctl("restore", name, "--yes", check=True)


@pytest.mark.parametrize("way", list(WAYS))
def test_a_sanitized_dump_holds_no_original_value(sqlite_project: Project, way: str) -> None:
    project = with_users(sqlite_project, **sanitize_env())
    before = project.digest()
    values = originals(lambda sql: query(project, sql))
    joined = query(project, JOIN_SQL)[0][0]
    assert joined == 1

    name = dump(project, way, "--sanitize")

    assert_no_original_in(unpacked_bytes(project, name), values)
    assert project.digest() == before  # the live database was only read
    assert leftovers(project.snapshots) == [] and leftovers(db_path(project).parent) == []
    entry = manifest_of(project.snapshots / name)["databases"]["default"]
    assert entry["sanitized"] == {"rules": dict(sorted(RULES.items()))}
    assert "key-one" not in json.dumps(manifest_of(project.snapshots / name))

    restored = restore(project, name)
    assert "sanitized data in default" in restored.stderr
    for table, column in UNIQUE:
        (distinct, total), *_ = query(
            project, f"SELECT count(DISTINCT {column}), count(*) FROM {table}"
        )
        assert distinct == total > 0
    emails = [row[0] for row in query(project, "SELECT email FROM shop_customer")]
    assert all(email.endswith("@example.invalid") for email in emails)
    assert query(project, JOIN_SQL)[0][0] == joined  # the join still matches
    passwords = [row[0] for row in query(project, "SELECT password FROM auth_user")]
    assert all(password.startswith("!") for password in passwords)
    # The untouched columns came back as they were.
    digest = project.digest()
    for table in ("shop_orderline", "shop_product_tags", "shop_tag", "shop_order"):
        assert digest["tables"][table] == before["tables"][table]


@pytest.mark.parametrize("way", ["sqlite", "dumpdata"])
def test_fakes_are_the_same_with_one_key_and_differ_with_another(
    sqlite_project: Project, way: str
) -> None:
    project = with_users(sqlite_project, **sanitize_env())
    original = project.digest()
    first = dump(project, way, "--sanitize")
    second = dump(project, way, "--sanitize")
    other = dump(project, way, "--sanitize", SNAPCTL_SANITIZE_KEY="key-two")

    restore(project, first)
    one = project.digest()
    restore(project, second)
    assert project.digest() == one
    restore(project, other)
    two = project.digest()
    tables = {name: digest["tables"] for name, digest in (("o", original), ("1", one), ("2", two))}
    for table in ("shop_customer", "auth_user", "shop_product"):
        assert tables["1"][table] != tables["o"][table]
        assert tables["2"][table] != tables["1"][table]
    assert tables["2"]["shop_order"] == tables["1"]["shop_order"] == tables["o"]["shop_order"]


def test_sqlite_and_dumpdata_give_the_same_fakes(sqlite_project: Project) -> None:
    project = with_users(sqlite_project, **sanitize_env())
    by_sqlite = dump(project, "sqlite", "--sanitize")
    by_dumpdata = dump(project, "dumpdata", "--sanitize")
    restore(project, by_sqlite)
    sqlite_rows = query(project, "SELECT id, email, name FROM shop_customer ORDER BY id")
    restore(project, by_dumpdata)
    assert query(project, "SELECT id, email, name FROM shop_customer ORDER BY id") == sqlite_rows


def test_sanitizing_by_default_and_no_sanitize(sqlite_project: Project) -> None:
    project = with_users(sqlite_project, **sanitize_env(EXAMPLE_SANITIZE_BY_DEFAULT="default"))
    values = originals(lambda sql: query(project, sql))
    by_default = dump(project, "sqlite")
    assert_no_original_in(unpacked_bytes(project, by_default), values)
    plain = dump(project, "sqlite", "--no-sanitize")
    assert manifest_of(project.snapshots / plain)["databases"]["default"]["sanitized"] is None
    assert b"customer3@example.com" in unpacked_bytes(project, plain)
    listed = project.snapctl("list", check=True).stdout
    assert listed.count("sanitized") == 1


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        ({"nope.Customer.email": "email"}, ["'nope.Customer.email'", "no installed app 'nope'"]),
        ({"shop.Client.email": "email"}, ["no model 'Client'", "Customer"]),
        ({"shop.Customer.mail": "email"}, ["no field 'mail'", "email"]),
        ({"shop.Customer.email": "emial"}, ["unknown kind 'emial'"]),
        ({"shop.Order.customer": "null"}, ["relations"]),
        ({"shop.Customer.id": {"value": 1}}, ["primary key"]),
        ({"shop.Customer.name": "null"}, ["NOT NULL", "'empty'"]),
        ({"shop.Customer.email": {"value": "x@example.invalid"}}, ["unique", "same value"]),
        ({"shop.Customer.email": "empty"}, ["unique", "'empty'"]),
        ({"shop.Customer.email": "name"}, ["unique"]),
        ({"shop.Customer.email": {"format": "c-{hash:4}"}}, ["unique", "{hash:8}"]),
        ({"shop.Product.price": "email"}, ["makes text", "DecimalField"]),
        ({"shop.Product.price": {"value": "abc"}}, ["constant does not fit"]),
        ({"shop.Product.title": {"value": "x" * 250}}, ["longer than max_length 200"]),
        ({"shop.Product.sku": {"format": "{hash:40}"}}, ["40 characters", "32"]),
        ({"shop.Customer.notes": {"format": "{hash"}}, ["bad format"]),
        ({"shop.Customer.notes": {"callable": "shop.nowhere.fake"}}, ["cannot import"]),
        ({"shop.Customer.notes": {"callable": "shop.models.BATCH_NOT_THERE"}}, ["cannot import"]),
    ],
)
def test_every_bad_rule_is_refused_before_any_work(
    sqlite_project: Project, rules: dict[str, Any], words: list[str]
) -> None:
    before = sqlite_project.digest()
    result = sqlite_project.snapctl("dump", "--sanitize", EXAMPLE_SANITIZE=json.dumps(rules))
    assert_one_line(result, EXIT_USAGE, *words)
    assert sqlite_project.store_entries() == []
    assert sqlite_project.digest() == before


def test_sanitize_needs_rules_and_known_aliases(sqlite_project: Project) -> None:
    assert_one_line(
        sqlite_project.snapctl("dump", "--sanitize"), EXIT_USAGE, "SNAPSHOTS['SANITIZE']"
    )
    assert_one_line(
        sqlite_project.snapctl("dump", EXAMPLE_SANITIZE_BY_DEFAULT="default,elsewhere"),
        EXIT_USAGE,
        "SANITIZE_BY_DEFAULT",
        "elsewhere",
    )
    assert sqlite_project.store_entries() == []


def _project_module(tmp_path: Path, name: str, source: str) -> Path:
    """A module of the project's own code (settings or fakes) in a directory of its own."""
    directory = tmp_path / "project_code"
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return directory


def test_a_connector_that_cannot_sanitize_is_named(sqlite_project: Project, tmp_path: Path) -> None:
    code = _project_module(
        tmp_path,
        "plain_settings",
        """
        from example_project.settings import *  # noqa: F403

        class PlainConnector:
            name = "plain"

            def dump(self, db_alias, dest):
                return {}

            def restore(self, db_alias, src):
                pass

        SNAPSHOTS["DATABASE_CONNECTORS"] = {"default": PlainConnector()}  # noqa: F405
        """,
    )
    result = sqlite_project.snapctl(
        "dump",
        "--sanitize",
        "--settings",
        "plain_settings",
        "--pythonpath",
        str(code),
        **sanitize_env(),
    )
    assert_one_line(result, EXIT_USAGE, "connector 'plain'", "cannot dump sanitized", "default")


def test_a_callable_rule_and_a_failing_one(sqlite_project: Project, tmp_path: Path) -> None:
    code = _project_module(
        tmp_path,
        "project_fakes",
        """
        def reference(value, digest):
            return "REF-" + digest.hex()[:8]

        def broken(value, digest):
            raise RuntimeError("injected failure")
        """,
    )
    project = sqlite_project
    env = {"SNAPCTL_SANITIZE_KEY": "k", "PYTHONPATH": str(code)}
    before = project.digest()
    rules = {"shop.Customer.email": "email", "shop.Customer.notes": {"callable": ""}}

    rules["shop.Customer.notes"] = {"callable": "project_fakes.broken"}
    failed = project.snapctl("dump", "--sanitize", EXAMPLE_SANITIZE=json.dumps(rules), **env)
    assert failed.returncode == EXIT_FAILED, failed.stderr
    assert "injected failure" in failed.stderr and "Traceback" not in failed.stderr
    assert project.store_entries() == [] and leftovers(project.snapshots) == []
    assert project.digest() == before

    rules["shop.Customer.notes"] = {"callable": "project_fakes.reference"}
    name = project.snapctl(
        "dump", "--sanitize", EXAMPLE_SANITIZE=json.dumps(rules), check=True, **env
    ).stdout.strip()
    restore(project, name)
    notes = {row[0] for row in query(project, "SELECT notes FROM shop_customer WHERE notes != ''")}
    assert notes and all(note.startswith("REF-") for note in notes)


def test_an_interrupted_sanitized_dump_leaves_nothing(
    sqlite_project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "sanitizing"
    code = _project_module(
        tmp_path,
        "slow_fakes",
        f"""
        import pathlib, time

        def slow(value, digest):
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(60)
        """,
    )
    project = sqlite_project
    before = project.digest()
    rules = {"shop.Customer.email": "email", "shop.Customer.notes": {"callable": "slow_fakes.slow"}}
    env = {
        **project.env,
        "EXAMPLE_SANITIZE": json.dumps(rules),
        "SNAPCTL_SANITIZE_KEY": "k",
        "PYTHONPATH": str(code),
    }
    process = start_snapctl(env, "dump", "--sanitize", stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
        time.sleep(0.05)
    assert leftovers(project.snapshots)  # the scratch copy exists while it works
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == EXIT_TERMINATED
    assert project.store_entries() == [] and leftovers(project.snapshots) == []
    assert project.digest() == before
    assert EXAMPLE.is_dir()


def test_pages_freed_by_the_rules_keep_no_old_value(sqlite_project: Project) -> None:
    # A long note lives in overflow pages; redacted, they are freed, and a file copy would
    # carry them along unless the scratch copy is vacuumed.
    with sqlite3.connect(db_path(sqlite_project)) as connection:
        connection.execute(
            "UPDATE shop_customer SET notes = ? WHERE id = 1", ("SECRET-NOTE " * 3000,)
        )
    rules = {"shop.Customer.notes": "redact"}
    name = dump(sqlite_project, "sqlite", "--sanitize", EXAMPLE_SANITIZE=json.dumps(rules))
    data = unpacked_bytes(sqlite_project, name)
    assert b"[redacted]" in data
    assert b"SECRET-NOTE" not in data
