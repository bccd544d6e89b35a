"""Connectors that keep data outside the snapshot: check() before restore and in verify,
forget() when the snapshot is deleted or pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import EXIT_FAILED, EXIT_INTEGRITY, Project, manifest_of

SETTINGS = '''
import json
import os
import shutil
import uuid
from pathlib import Path

from example_project.settings import *  # noqa: F403

from snapctl.errors import IntegrityError

OUTSIDE = Path(os.environ["OUTSIDE"])


class OutsideConnector:
    """Keeps the database file in OUTSIDE; the artifact only names it."""

    name = "outside"

    def dump(self, db_alias, dest):
        key = uuid.uuid4().hex
        shutil.copyfile(DATABASES[db_alias]["NAME"], OUTSIDE / key)  # noqa: F405
        dest.write_text(json.dumps({"key": key}))
        return {"format": "outside", "key": key}

    def restore(self, db_alias, src):
        key = json.loads(src.read_text())["key"]
        shutil.copyfile(OUTSIDE / key, DATABASES[db_alias]["NAME"])  # noqa: F405

    def check(self, db_alias, src):
        key = json.loads(src.read_text())["key"]
        if not (OUTSIDE / key).exists():
            raise IntegrityError(f"the outside copy {key} is gone")

    def forget(self, db_alias, src):
        (OUTSIDE / json.loads(src.read_text())["key"]).unlink(missing_ok=True)


class BrokenMetadataConnector(OutsideConnector):
    """Fails after its dump: its metadata is not JSON."""

    def dump(self, db_alias, dest):
        super().dump(db_alias, dest)
        return {"when": object()}


CHOSEN = BrokenMetadataConnector if os.environ.get("BROKEN") else OutsideConnector
SNAPSHOTS = {"DATABASE_CONNECTORS": {"default": CHOSEN()}}
'''


@pytest.fixture
def outside(sqlite_project: Project, tmp_path: Path) -> tuple[Project, Path]:
    (tmp_path / "outside_settings.py").write_text(SETTINGS)
    store = tmp_path / "outside"
    store.mkdir()
    sqlite_project.env.update(
        OUTSIDE=str(store), DJANGO_SETTINGS_MODULE="outside_settings", PYTHONPATH=str(tmp_path)
    )
    return sqlite_project, store


def key_of(project: Project, name: str) -> str:
    manifest = manifest_of(project.snapshots / name)
    return str(manifest["databases"]["default"]["metadata"]["key"])


def test_check_guards_verify_and_restore(outside: tuple[Project, Path]) -> None:
    project, store = outside
    name = project.dump()
    assert project.snapctl("verify", check=True).stdout.split() == [name, "ok"]
    project.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    current = project.digest()
    (store / key_of(project, name)).unlink()

    verified = project.snapctl("verify")
    restored = project.snapctl("restore", "--yes")

    assert verified.returncode == EXIT_INTEGRITY and "outside copy" in verified.stderr
    assert restored.returncode == EXIT_INTEGRITY and "outside copy" in restored.stderr
    assert project.digest() == current


def test_forget_on_delete_and_prune(outside: tuple[Project, Path]) -> None:
    project, store = outside
    names = [project.dump() for _ in range(3)]
    keys = [key_of(project, name) for name in names]

    project.snapctl("delete", names[0], "--yes", check=True)
    assert sorted(p.name for p in store.iterdir()) == sorted(keys[1:])
    project.snapctl("prune", "--keep", "1", "--dry-run", check=True)
    assert len(list(store.iterdir())) == 2
    project.snapctl("prune", "--keep", "1", "--yes", check=True)
    assert [p.name for p in store.iterdir()] == [keys[2]]
    assert project.store_entries() == [names[2]]


def test_a_failed_dump_releases_what_it_kept_outside(outside: tuple[Project, Path]) -> None:
    project, store = outside
    result = project.snapctl("dump", BROKEN="1")
    assert result.returncode == EXIT_FAILED and "not JSON" in result.stderr
    assert list(store.iterdir()) == []  # the copy outside was released
    assert project.store_entries() == []
