"""What a command starts: the settings for the built-in connectors, the app registry only for
connectors that need models, and no module the command does not use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import EXAMPLE, EXIT_OK, Project

# An app whose ready() leaves a mark, and a logging handler that leaves one when logging is
# configured: together they show how far Django was started.
PROBE_APP = """
import os
from pathlib import Path

from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "startup_probe"

    def ready(self):
        Path(os.environ["PROBE_DIR"], "apps-ready").touch()
"""
PROBE_HANDLER = """
import logging
import os
from pathlib import Path


class ProbeHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        Path(os.environ["PROBE_DIR"], "logging-configured").touch()
"""
# A connector written for the reference API: it uses models when imported and when called.
MODEL_CONNECTOR = """
import shutil
from pathlib import Path

from django.apps import apps
from django.contrib.auth.models import User
from django.db import connections


class ModelConnector:
    name = "model-connector"

    def dump(self, db_alias, dest):
        assert apps.ready
        shutil.copyfile(connections[db_alias].settings_dict["NAME"], dest)
        return {"users": User.objects.using(db_alias).count()}

    def restore(self, db_alias, src):
        assert apps.ready
        shutil.copyfile(src, connections[db_alias].settings_dict["NAME"])
"""
# A connector whose creation uses models (its module does not): it gets them too.
INIT_MODEL_CONNECTOR = """
import shutil

from django.apps import apps
from django.db import connections


class InitModelConnector:
    name = "init-model-connector"

    def __init__(self):
        self.user_model = apps.get_model("auth", "User")

    def dump(self, db_alias, dest):
        shutil.copyfile(connections[db_alias].settings_dict["NAME"], dest)
        return {"users": self.user_model.objects.using(db_alias).count()}

    def restore(self, db_alias, src):
        shutil.copyfile(src, connections[db_alias].settings_dict["NAME"])
"""
SETTINGS = """
from example_project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "startup_probe"]  # noqa: F405
LOGGING = {
    "version": 1,
    "handlers": {"probe": {"()": "startup_probe.ProbeHandler"}},
    "loggers": {"startup_probe": {"handlers": ["probe"]}},
}
"""


@pytest.fixture
def probed(sqlite_project: Project, tmp_path: Path) -> tuple[Project, Path]:
    """The example project with the probe app and logging; returns it and the marks' dir."""
    code = tmp_path / "code"
    (code / "startup_probe").mkdir(parents=True)
    (code / "startup_probe" / "__init__.py").write_text(PROBE_HANDLER)
    (code / "startup_probe" / "apps.py").write_text(PROBE_APP)
    (code / "model_connector.py").write_text(MODEL_CONNECTOR)
    (code / "init_model_connector.py").write_text(INIT_MODEL_CONNECTOR)
    (code / "probe_settings.py").write_text(SETTINGS)
    marks = tmp_path / "marks"
    marks.mkdir()
    sqlite_project.env.update(
        DJANGO_SETTINGS_MODULE="probe_settings", PYTHONPATH=str(code), PROBE_DIR=str(marks)
    )
    return sqlite_project, marks


def _marks(marks: Path) -> set[str]:
    found = {path.name for path in marks.iterdir()}
    for path in marks.iterdir():
        path.unlink()
    return found


def test_builtin_connector_runs_from_the_settings_alone(probed: tuple[Project, Path]) -> None:
    project, marks = probed
    before = project.digest()
    _marks(marks)
    name = project.dump()
    assert _marks(marks) == {"logging-configured"}
    project.manage("seed_shop", "--customers", "3", "--products", "1", "--orders", "4")
    _marks(marks)
    project.snapctl("restore", "--yes", check=True)
    assert _marks(marks) == {"logging-configured"}
    assert project.digest() == before
    for command in (["list"], ["show", name], ["verify"], ["list-connectors"]):
        _marks(marks)  # manage.py (the digest) starts the apps itself
        project.snapctl(*command, check=True)
        assert "apps-ready" not in _marks(marks), command


def test_completion_of_snapshots_from_settings_starts_no_apps(
    probed: tuple[Project, Path],
) -> None:
    """Tab on a snapshot name, with the store named in SNAPSHOTS["DIRECTORY"]: the settings
    are read, the app registry is not."""
    project, marks = probed
    name = project.dump()
    env = {key: value for key, value in project.env.items() if key != "SNAPCTL_DIR"}
    env.update(
        EXAMPLE_SNAPSHOTS_DIR=str(project.snapshots),
        _SNAPCTL_COMPLETE="complete_bash",
        COMP_WORDS="snapctl restore ",
        COMP_CWORD="2",
    )
    _marks(marks)
    result = subprocess.run(
        [sys.executable, "-m", "snapctl"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert name in result.stdout, result.stdout + result.stderr
    assert _marks(marks) == set()  # no apps, and no log files opened for a Tab


def test_dumpdata_gets_the_app_registry(probed: tuple[Project, Path]) -> None:
    project, marks = probed
    before = project.digest()
    _marks(marks)
    project.snapctl("dump", "--connector", "dumpdata", check=True)
    assert _marks(marks) == {"logging-configured", "apps-ready"}
    project.manage("seed_shop", "--customers", "3", "--products", "1", "--orders", "4")
    _marks(marks)
    project.snapctl("restore", "--yes", check=True)
    assert _marks(marks) == {"logging-configured", "apps-ready"}
    assert project.digest() == before


@pytest.mark.parametrize(
    "connector", ["model_connector.ModelConnector", "init_model_connector.InitModelConnector"]
)
def test_reference_api_connector_that_uses_models_gets_django_setup(
    probed: tuple[Project, Path], tmp_path: Path, connector: str
) -> None:
    project, marks = probed
    (tmp_path / "code" / "probe_settings.py").write_text(
        SETTINGS + f"SNAPSHOTS = {{'DATABASE_CONNECTORS': {{'default': '{connector}'}}}}\n"
    )
    before = project.digest()
    snapshot = json.loads(project.snapctl("dump", "--json", check=True).stdout)
    assert snapshot["databases"]["default"]["metadata"]["users"] >= 0
    assert "apps-ready" in _marks(marks)
    project.manage("seed_shop", "--customers", "3", "--products", "1", "--orders", "4")
    project.snapctl("restore", "--yes", check=True)
    assert project.digest() == before


# Modules that only the app registry, a server driver or a terminal would need: a dump or a
# restore of SQLite without a terminal imports none of them.
NOT_FOR_SQLITE = (
    "django.apps.registry",
    "django.db.models",
    "django.db.backends.sqlite3",
    "django.urls",
    "django.http",
    "django.core.management",
    "django.utils.log",
    "psycopg",
    "psycopg2",
    "MySQLdb",
    "pydantic",
    "rich.progress",
    "rich.console",
    "snapctl.connectors.mysql",
    "snapctl.connectors.postgres",
    "snapctl.connectors.pg_template",
    "snapctl.connectors.dumpdata",
)


# Runs snapctl as ``python -m snapctl`` does and lists every module loaded when it exits
# (``-X importtime`` misses those loaded through importlib, as connectors are).
_LIST_MODULES = """
import atexit, json, runpy, sys
listing = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(listing, "w")))
sys.argv[0] = "snapctl"
runpy.run_module("snapctl", run_name="__main__", alter_sys=True)
"""


def _imported(project: Project, tmp_path: Path, *args: str) -> set[str]:
    listing = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", _LIST_MODULES, str(listing), *args],
        cwd=EXAMPLE,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    return set(json.loads(listing.read_text()))


@pytest.mark.parametrize("command", [("dump",), ("restore", "--yes")])
def test_sqlite_dump_and_restore_import_only_what_they_use(
    sqlite_project: Project, tmp_path: Path, command: tuple[str, ...]
) -> None:
    if command[0] == "restore":
        sqlite_project.dump()
    imported = _imported(sqlite_project, tmp_path, *command, "--quiet")
    assert "snapctl.connectors.sqlite" in imported
    unwanted = sorted(
        name
        for name in imported
        if any(name == bad or name.startswith(bad + ".") for bad in NOT_FOR_SQLITE)
    )
    assert not unwanted, textwrap.fill(", ".join(unwanted))


def test_postgres_programs_skip_debians_wrapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from snapctl.connectors.postgres import programs as postgres

    wrapper = tmp_path / "share" / "pg_wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "pg_dump").symlink_to(wrapper)
    for version in ("9.6", "13", "15"):
        program = tmp_path / "lib" / version / "bin" / "pg_dump"
        program.parent.mkdir(parents=True)
        program.write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.delenv("PGCLUSTER", raising=False)
    monkeypatch.setattr(postgres, "_WRAPPED_VERSIONS", tmp_path / "lib")
    postgres.client_program.cache_clear()
    try:
        assert postgres.client_program("pg_dump") == str(tmp_path / "lib/15/bin/pg_dump")
        postgres.client_program.cache_clear()
        monkeypatch.setenv("PGCLUSTER", "13/main")  # the user's choice of cluster stands
        assert postgres.client_program("pg_dump") == str(on_path / "pg_dump")
    finally:
        postgres.client_program.cache_clear()


@pytest.mark.parametrize(
    ("text", "number"),
    [("15.10 (Debian 15.10-1.pgdg120+1)", 150010), ("9.6.24", 90624), ("17beta1", 170000)],
)
def test_postgres_version_numbers_from_text(text: str, number: int) -> None:
    from snapctl.connectors.postgres.programs import version_num

    assert version_num(text) == number


def _archive_header(version: tuple[int, int], server: str, dumper: str) -> bytes:
    """The start of a pg_dump custom archive as ReadHead() reads it (4-byte ints)."""

    def integer(value: int) -> bytes:
        return bytes([0]) + value.to_bytes(4, "little")

    def text(value: str) -> bytes:
        return integer(len(value.encode())) + value.encode()

    head = b"PGDMP" + bytes([version[0], version[1], 0, 4, 8, 1])
    head += bytes([0]) if version >= (1, 15) else integer(0)  # compression
    head += b"".join(integer(n) for n in (0, 30, 12, 2, 11, 126, 0))  # creation time
    return head + text("shop") + text(server) + text(dumper) + b"\x00" * 64


@pytest.mark.parametrize("version", [(1, 14), (1, 15), (1, 16)])
def test_postgres_versions_from_an_archive_header(version: tuple[int, int]) -> None:
    from snapctl.connectors.postgres.archive import archive_versions

    header = _archive_header(version, "14.11 (Debian 14.11-1)", "16.2")
    assert archive_versions(header) == ("14.11 (Debian 14.11-1)", "pg_dump (PostgreSQL) 16.2")
