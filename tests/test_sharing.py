"""Sharing production data (issue 18) with every safeguard at once, as a team would: one dump
sanitized, with a table's rows left out, encrypted to a developer; the developer restores
it with their key and gets exactly that, on SQLite and on both servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyrage
import zstandard
from helpers import EXIT_OK, Project, artifact_path, manifest_of
from sanitize_checks import (
    ADD_USERS,
    JOIN_SQL,
    RULES,
    assert_no_original_in,
    originals,
    query_via_django,
    sanitize_env,
)

LEFT_OUT = "shop_orderline"
# An audit trigger, as django-pghistory or a hand-written history table has: fired by the
# sanitizing UPDATEs, it would copy every original email into the snapshot.
AUDIT = {
    "sqlite": [
        "CREATE TABLE audit (old_email TEXT)",
        "CREATE TRIGGER audit_customer AFTER UPDATE ON shop_customer "
        "BEGIN INSERT INTO audit VALUES (OLD.email); END",
    ],
    "postgresql": [
        "CREATE TABLE audit (old_email text)",
        "CREATE FUNCTION audit_customer() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO audit VALUES (OLD.email); RETURN NEW; END $$",
        "CREATE TRIGGER audit_customer AFTER UPDATE ON shop_customer "
        "FOR EACH ROW EXECUTE FUNCTION audit_customer()",
    ],
    "mysql": [
        "CREATE TABLE audit (old_email varchar(254))",
        "CREATE TRIGGER audit_customer AFTER UPDATE ON shop_customer "
        "FOR EACH ROW INSERT INTO audit VALUES (OLD.email)",
    ],
}


def _add_audit_trigger(project: Project) -> None:
    code = (
        "from django.db import connection; c = connection.cursor(); "
        f"[c.execute(s) for s in {AUDIT!r}[connection.vendor]]"
    )
    project.manage("shell", "-c", code)


def _share_and_restore(project: Project, tmp_path: Path) -> None:
    project.manage("shell", "-c", ADD_USERS)
    _add_audit_trigger(project)
    before = originals(lambda sql: query_via_django(project, sql))
    joined = query_via_django(project, JOIN_SQL)[0][0]
    identity = tmp_path / "developer.txt"
    public = project.snapctl("keygen", "--output", str(identity), check=True).stdout.strip()

    dumped = project.snapctl(
        "dump",
        "--sanitize",
        "--exclude-data",
        LEFT_OUT,
        "--encrypt-to",
        public,
        "--json",
        check=True,
        **sanitize_env(),
    )
    document = json.loads(dumped.stdout)
    entry, name = document["databases"]["default"], document["name"]
    assert entry["excluded_data"] == [LEFT_OUT]
    assert entry["sanitized"] == {"rules": RULES}
    assert entry["encryption"]["recipients"] == [public]
    assert "key-one" not in dumped.stdout + dumped.stderr  # the sanitizing key

    # What the bucket holds: ciphertext; what the key opens: no original value, no row left out.
    stored = artifact_path(project.snapshots / name).read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n")
    content = _opened(stored, identity)
    assert_no_original_in(content, before)

    project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "3")
    restored = project.snapctl("restore", "--yes", "--identity", str(identity))
    assert restored.returncode == EXIT_OK, restored.stderr
    assert LEFT_OUT in restored.stderr and "sanitized" in restored.stderr
    assert query_via_django(project, f"SELECT count(*) FROM {LEFT_OUT}")[0][0] == 0
    after = originals(lambda sql: query_via_django(project, sql))
    for column, values in after.items():
        assert not set(values) & set(before[column]), column
    assert query_via_django(project, JOIN_SQL)[0][0] == joined  # joins still match
    assert query_via_django(project, "SELECT count(*) FROM audit")[0][0] == 0  # it never fired
    # ...and it is back, unchanged: an update on the restored database is audited.
    project.manage(
        "shell", "-c", "from shop.models import Customer; Customer.objects.update(name='x')"
    )
    assert query_via_django(project, "SELECT count(*) FROM audit")[0][0] > 0
    assert manifest_of(project.snapshots / name)["databases"]["default"]["sanitized"]


def _opened(stored: bytes, identity: Path) -> bytes:
    secret = next(line for line in identity.read_text().splitlines() if line.startswith("AGE-"))
    packed = pyrage.decrypt(stored, [pyrage.x25519.Identity.from_str(secret)])
    reader: Any = zstandard.ZstdDecompressor().stream_reader(packed, read_across_frames=True)
    return reader.read()  # type: ignore[no-any-return]


def test_sqlite(sqlite_project: Project, tmp_path: Path) -> None:
    _share_and_restore(sqlite_project, tmp_path)


def test_postgres(postgres_project: Project, tmp_path: Path) -> None:
    _share_and_restore(postgres_project, tmp_path)


def test_mariadb(mariadb_project: Project, tmp_path: Path) -> None:
    _share_and_restore(mariadb_project, tmp_path)
