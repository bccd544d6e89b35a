"""Bad input: one line on stderr, the documented exit code, no traceback, nothing touched.

Errors found before any settings are loaded are checked in-process (the fast tier); the
rest run snapctl as a process on the example project (the e2e tier).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    EXAMPLE,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    assert_one_line,
    clean_env,
    craft_snapshot,
    new_store,
    run_in_process,
    store_entries,
)


def test_no_settings_anywhere(tmp_path: Path) -> None:
    result = run_in_process("dump", cwd=tmp_path)
    assert_one_line(
        result, EXIT_USAGE, "no Django settings", "--settings", "DJANGO_SETTINGS_MODULE"
    )


@pytest.mark.e2e  # loads the example project's settings: once per process
def test_settings_found_through_manage_py() -> None:
    # The example directory's manage.py names its settings; nothing else is needed.
    result = subprocess.run(
        [sys.executable, "-m", "snapctl", "list-connectors", "--json"],
        cwd=EXAMPLE,
        env=clean_env(),
        capture_output=True,
        text=True,
        input="",
        timeout=120,
    )
    assert result.returncode == EXIT_OK, result.stderr


def test_settings_module_that_does_not_exist(tmp_path: Path) -> None:
    result = run_in_process("dump", "--settings", "nowhere.settings", cwd=tmp_path)
    assert_one_line(result, EXIT_USAGE, "'nowhere.settings' not found", "--pythonpath")


def test_settings_module_with_a_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("DATABASES = {\n  'default': \n")
    result = run_in_process(
        "dump", "--settings", "broken", "--pythonpath", str(tmp_path), cwd=EXAMPLE
    )
    assert_one_line(result, EXIT_USAGE, "'broken' failed to import", "SyntaxError", "line")


def test_settings_module_that_needs_a_missing_package(tmp_path: Path) -> None:
    (tmp_path / "needy.py").write_text("import not_installed_anywhere\n")
    result = run_in_process(
        "dump", "--settings", "needy", "--pythonpath", str(tmp_path), cwd=EXAMPLE
    )
    assert_one_line(result, EXIT_USAGE, "not_installed_anywhere")


def test_settings_from_the_environment_variable(tmp_path: Path) -> None:
    result = run_in_process("dump", cwd=tmp_path, DJANGO_SETTINGS_MODULE="elsewhere.settings")
    assert_one_line(result, EXIT_USAGE, "'elsewhere.settings' not found")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("dump", "--alias", "nope"), EXIT_USAGE, ("unknown database alias 'nope'", "default")),
        (("dump", "--connector", "nope"), EXIT_USAGE, ("unknown connector 'nope'", "sqlite")),
        (("dump", "--label", "../escape"), EXIT_USAGE, ("invalid label",)),
        (("dump", "--compress", "lzma"), EXIT_USAGE, ("unknown compression 'lzma'",)),
        (("dump", "--level", "30"), EXIT_USAGE, ("zstd has levels -7 to 22, not 30",)),
        (("dump", "--compress", "none", "--level", "3"), EXIT_USAGE, ("--level does not apply",)),
        (("dump", "--alias", "default", "--all"), EXIT_USAGE, ("either --alias or --all",)),
        (("restore", "--yes"), EXIT_USAGE, ("no snapshots",)),
        (
            ("restore", "nothing-like-this", "--yes"),
            EXIT_USAGE,
            ("no snapshot 'nothing-like-this'",),
        ),
    ],
)
def test_usage_errors(
    sqlite_project: Project, args: tuple[str, ...], code: int, words: tuple[str, ...]
) -> None:
    assert_one_line(sqlite_project.snapctl(*args), code, *words)


def test_missing_binary_is_a_configuration_error(sqlite_project: Project, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = sqlite_project.snapctl("dump", "--connector", "postgres", PATH=str(empty))
    assert_one_line(result, EXIT_USAGE, "pg_dump", "install")
    assert not sqlite_project.snapshots.exists() or not any(sqlite_project.snapshots.iterdir())


def test_restore_of_unknown_alias_in_snapshot(sqlite_project: Project) -> None:
    sqlite_project.dump()
    result = sqlite_project.snapctl("restore", "--alias", "other", "--yes")
    assert_one_line(result, EXIT_USAGE, "holds no database 'other'")


def test_ambiguous_prefix_lists_the_candidates(sqlite_project: Project) -> None:
    first = sqlite_project.dump()
    second = sqlite_project.dump()
    result = sqlite_project.snapctl("restore", first[:4], "--yes")
    assert_one_line(result, EXIT_USAGE, "ambiguous", first, second)


def test_traceback_option_shows_the_traceback(tmp_path: Path) -> None:
    result = run_in_process("--traceback", "dump", cwd=tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("(or run snapctl in the directory that holds manage.py)")


@pytest.mark.e2e  # a new process, to see what it imports
@pytest.mark.parametrize("args", [("--help",), ("--version",), ("dump", "--help")])
def test_help_and_version_do_not_import_django(args: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snapctl", *args],
        cwd=EXAMPLE,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_OK, result.stderr
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert "snapctl.cli" in imported
    assert not [name for name in imported if name.split(".")[0] == "django"]


def test_version_is_printed() -> None:
    from snapctl import __version__

    result = run_in_process("--version", cwd=EXAMPLE)
    assert result.stdout.strip() == f"snapctl {__version__}"


def test_spaces_and_unicode_in_paths_work(sqlite_project: Project, tmp_path: Path) -> None:
    odd = tmp_path / "dir with spaces é 数据"
    odd.mkdir()
    database = odd / "my db ü.sqlite3"
    Path(sqlite_project.env["EXAMPLE_DB_NAME"]).rename(database)
    snapshots = odd / "snap shots ✓"
    env = {"EXAMPLE_DB_NAME": str(database), "SNAPCTL_DIR": str(snapshots)}
    project = Project(env={**sqlite_project.env, **env}, snapshots=snapshots)
    before = project.digest()
    name = project.dump("--label", "plain-label")
    project.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    project.snapctl("restore", name, "--yes", check=True)
    assert project.digest() == before
    refused = project.snapctl("dump", "--label", "ünïcode")
    assert_one_line(refused, EXIT_USAGE, "invalid label")


def test_snapshot_directory_that_is_a_file(sqlite_project: Project, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = sqlite_project.snapctl("dump", SNAPCTL_DIR=str(blocker))
    assert_one_line(result, EXIT_USAGE, "snapshot directory", str(blocker))
    by_option = sqlite_project.snapctl("dump", "--dir", str(blocker))
    assert by_option.returncode == EXIT_USAGE and "is a file" in by_option.stderr


def test_an_empty_snapshot_reference_restores_nothing(sqlite_project: Project) -> None:
    """An unset shell variable ("$SNAP") must not stand for every snapshot."""
    name = sqlite_project.dump()
    before = sqlite_project.digest()
    result = sqlite_project.snapctl("restore", "--yes", "")
    assert_one_line(result, EXIT_USAGE, "empty snapshot reference")
    assert sqlite_project.store_entries() == [name]
    assert sqlite_project.digest() == before


@pytest.mark.parametrize("args", [("delete", "--yes", ""), ("show", " "), ("verify", "")])
def test_an_empty_snapshot_reference_matches_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    """As for restore: the store is as it was (these commands read no settings and touch no
    database)."""
    store = new_store(tmp_path)
    name = craft_snapshot(store)
    result = run_in_process(*args, "--dir", str(store), cwd=tmp_path)
    assert_one_line(result, EXIT_USAGE, "empty snapshot reference")
    assert store_entries(store) == [name]


def test_verify_all_without_snapshots_is_an_error(tmp_path: Path) -> None:
    for store in (tmp_path / "missing", tmp_path):
        result = run_in_process("verify", "--all", "--dir", str(store), cwd=EXAMPLE)
        assert_one_line(result, EXIT_USAGE, "no snapshots in", "nothing to verify")
        assert result.stdout == ""
