"""Choosing connectors: the seed API, settings overrides, --connector, and real plugins."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import EXIT_USAGE, Project, manifest_of

import snapctl
from snapctl.connectors.auto import get_connector_class
from snapctl.connectors.protocols import DatabaseConnector


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("django.db.backends.sqlite3", "SQLiteConnector"),
        ("django.db.backends.postgresql", "PostgresConnector"),
        ("django.contrib.gis.db.backends.postgis", "PostgresConnector"),
        ("django.db.backends.mysql", "MySQLConnector"),
        ("django.contrib.gis.db.backends.mysql", "MySQLConnector"),
        ("django.db.backends.oracle", "DjangoDumpDataConnector"),
        ("mssql", "DjangoDumpDataConnector"),
    ],
)
def test_get_connector_class_follows_the_engine_mapping(engine: str, expected: str) -> None:
    cls = get_connector_class(engine)
    assert cls is getattr(snapctl, expected)
    assert isinstance(cls(), DatabaseConnector)


def test_get_connector_for_alias_in_a_project(sqlite_project: Project) -> None:
    out = sqlite_project.manage(
        "shell",
        "-c",
        "from snapctl.connectors.auto import get_connector_for_alias as g; "
        "print(type(g('default')).__name__)",
    )
    assert out.strip().splitlines()[-1] == "SQLiteConnector"


SEED_EXAMPLE = """
from example_project.settings import *  # noqa

from pathlib import Path
from typing import Any

class OracleConnector:
    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        # Run expdp, return metadata dict
        return {"format": "dmp"}

    def restore(self, db_alias: str, src: Path) -> None:
        # Run impdp
        pass

# In Django settings:
SNAPSHOTS = {
    "DATABASE_CONNECTORS": {"default": OracleConnector()},
}
"""


def _settings(tmp_path: Path, name: str, text: str) -> tuple[str, ...]:
    (tmp_path / f"{name}.py").write_text(text)
    return ("--settings", name, "--pythonpath", str(tmp_path))


def test_seed_custom_connector_example_works_verbatim(
    sqlite_project: Project, tmp_path: Path
) -> None:
    args = _settings(tmp_path, "seed_settings", SEED_EXAMPLE)
    name = sqlite_project.snapctl(*args, "dump", check=True).stdout.strip()
    entry = manifest_of(sqlite_project.snapshots / name)["databases"]["default"]
    assert entry["connector"]["name"] == "OracleConnector"
    assert entry["connector"]["source"] == "settings"
    assert entry["metadata"] == {"format": "dmp"}
    sqlite_project.snapctl(*args, "restore", "--yes", check=True)


@pytest.mark.parametrize(
    "value",
    [
        "'dumpdata'",
        "'snapctl.connectors.dumpdata.DjangoDumpDataConnector'",
        "__import__('snapctl').DjangoDumpDataConnector",
        "__import__('snapctl').DjangoDumpDataConnector()",
    ],
    ids=["registered-name", "dotted-path", "class", "instance"],
)
def test_settings_override_takes_every_form_and_beats_the_command_line(
    sqlite_project: Project, tmp_path: Path, value: str
) -> None:
    text = (
        "from example_project.settings import *  # noqa\n"
        f"SNAPSHOTS = {{'DATABASE_CONNECTORS': {{'default': {value}}}}}\n"
    )
    args = _settings(tmp_path, "override_settings", text)
    result = sqlite_project.snapctl(*args, "dump", "--connector", "sqlite", "--json", check=True)
    entry = json.loads(result.stdout)["databases"]["default"]
    assert entry["connector"]["name"] == "dumpdata"
    assert entry["connector"]["source"] == "settings"


def test_connector_option_chooses_for_this_run(sqlite_project: Project) -> None:
    before = sqlite_project.digest()
    result = sqlite_project.snapctl("dump", "--connector", "dumpdata", "--json", check=True)
    snapshot = json.loads(result.stdout)
    assert snapshot["databases"]["default"]["connector"]["name"] == "dumpdata"
    assert snapshot["databases"]["default"]["file"] == "default.jsonl.zst"
    sqlite_project.manage("seed_shop", "--customers", "4", "--products", "2", "--orders", "9")
    # Restore uses the connector recorded in the manifest, without being told.
    sqlite_project.snapctl("restore", "--yes", check=True)
    assert sqlite_project.digest() == before


PLUGIN_MODULE = '''
"""A third-party connector: copies the SQLite file as it is."""
import shutil
from pathlib import Path
from typing import Any

from django.db import connections


class FancyConnector:
    name = "fancy"
    engines = ("sqlite3",)
    binaries = ("sh",)
    extension = "raw"

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        shutil.copyfile(connections[db_alias].settings_dict["NAME"], dest)
        return {"format": "raw-copy"}

    def restore(self, db_alias: str, src: Path) -> None:
        shutil.copyfile(src, connections[db_alias].settings_dict["NAME"])
'''


def _install_plugin(tmp_path: Path, dist: str, target: Path) -> None:
    source = tmp_path / dist
    module = dist.replace("-", "_")
    source.mkdir()
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "1.0"

            [tool.setuptools]
            py-modules = ["{module}"]

            [project.entry-points."snapctl.connectors"]
            fancy = "{module}:FancyConnector"
            """
        )
    )
    (source / f"{module}.py").write_text(PLUGIN_MODULE)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real distribution, built and installed where only the tests' PYTHONPATH sees it."""
    base = tmp_path_factory.mktemp("plugin")
    target = base / "site"
    _install_plugin(base, "snapctl-fancy", target)
    return target


def test_installed_plugin_is_listed_and_chosen(sqlite_project: Project, plugin_path: Path) -> None:
    env = {"PYTHONPATH": str(plugin_path)}
    listing = json.loads(
        sqlite_project.snapctl("list-connectors", "--json", check=True, **env).stdout
    )
    by_name = {row["name"]: row for row in listing}
    assert {"sqlite", "postgres", "mysql", "dumpdata", "fancy"} <= set(by_name)
    assert by_name["fancy"]["source"] == "plugin (snapctl-fancy)"
    assert by_name["fancy"]["distribution"] == "snapctl-fancy"
    assert by_name["fancy"]["aliases"] == {"default": "plugin"}
    assert by_name["sqlite"]["aliases"] == {}
    assert by_name["sqlite"]["source"] == "built-in"

    table = sqlite_project.snapctl("list-connectors", check=True, **env).stdout
    assert "plugin (snapctl-fancy)" in table and "default (plugin)" in table

    before = sqlite_project.digest()
    snapshot = json.loads(sqlite_project.snapctl("dump", "--json", check=True, **env).stdout)
    assert snapshot["databases"]["default"]["connector"]["name"] == "fancy"
    sqlite_project.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    sqlite_project.snapctl("restore", "--yes", check=True, **env)
    assert sqlite_project.digest() == before

    # --connector still wins over a plugin's claim on the engine.
    forced = sqlite_project.snapctl("dump", "--connector", "sqlite", "--json", check=True, **env)
    assert json.loads(forced.stdout)["databases"]["default"]["connector"]["name"] == "sqlite"


def test_restore_names_a_missing_plugin(sqlite_project: Project, plugin_path: Path) -> None:
    sqlite_project.snapctl("dump", check=True, PYTHONPATH=str(plugin_path))
    result = sqlite_project.snapctl("restore", "--yes")
    assert result.returncode == EXIT_USAGE
    assert "'fancy'" in result.stderr and "not installed" in result.stderr


def test_two_plugins_with_one_name_is_an_error_naming_both(
    sqlite_project: Project, tmp_path: Path, plugin_path: Path
) -> None:
    second = tmp_path / "second"
    _install_plugin(tmp_path, "snapctl-fancy-copy", second)
    result = sqlite_project.snapctl("dump", PYTHONPATH=f"{plugin_path}:{second}")
    assert result.returncode == EXIT_USAGE
    assert "snapctl-fancy" in result.stderr and "snapctl-fancy-copy" in result.stderr
    assert result.stderr.count("\n") == 1


def test_builtin_engine_table_matches_the_classes() -> None:
    """The registry knows what the built-ins claim without importing them; it must say what
    the classes themselves say."""
    from snapctl import registry

    builtins = {name: entry for name, entry in registry.registered().items() if entry.builtin}
    assert set(builtins) == set(registry.BUILTIN_ENGINES)
    for name, entry in builtins.items():
        assert registry.engines_of(entry.import_class()) == registry.BUILTIN_ENGINES[name], name
