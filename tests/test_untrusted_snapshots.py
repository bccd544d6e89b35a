"""A snapshot is input from outside: what a crafted one can make snapctl do (issue 14).

Each test plants what an attacker who can write the snapshot directory could, then runs the
installed command as its user would, and checks that nothing ran and nothing else changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Project

# Importing the standard library's ``this`` prints the Zen of Python: proof that a module
# named in a manifest was imported, as any module's import-time code would have run.
ZEN = "Beautiful is better than ugly"


def _name_connector(snapshot: Path, name: str, class_path: str) -> None:
    manifest_path = snapshot / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["databases"].values():
        entry["connector"]["name"] = name
        entry["connector"]["class"] = class_path
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (("restore", "--yes"), 2),
        (("verify",), 0),
        (("show", "--json"), 0),
        (("delete", "--yes", "--json"), 0),
        (("prune", "--keep", "0", "--yes", "--json"), 0),
    ],
)
def test_a_manifest_never_makes_snapctl_import_a_module(
    sqlite_project: Project, command: tuple[str, ...], code: int
) -> None:
    name = sqlite_project.dump()
    _name_connector(sqlite_project.snapshots / name, "not-installed", "this:s")
    before = sqlite_project.digest()
    args = (*command[:1], name, *command[1:]) if command[0] in ("restore", "delete") else command
    result = sqlite_project.snapctl(*args)
    assert ZEN not in result.stdout + result.stderr
    assert result.returncode == code, result.stderr
    if code == 2:
        assert "'not-installed'" in result.stderr and "install it first" in result.stderr
        assert len(result.stderr.splitlines()) == 1
    if "--json" in command:
        json.loads(result.stdout)  # nothing printed into it
    assert sqlite_project.digest() == before


def test_a_manifest_naming_an_installed_connector_uses_it_not_its_path(
    sqlite_project: Project,
) -> None:
    """The name decides: the class path beside it is not even looked at."""
    name = sqlite_project.dump()
    _name_connector(sqlite_project.snapshots / name, "sqlite", "this:s")
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")
    result = sqlite_project.snapctl("restore", "--yes", name)
    assert result.returncode == 0, result.stderr
    assert ZEN not in result.stdout + result.stderr
