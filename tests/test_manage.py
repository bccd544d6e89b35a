"""Managing snapshots from scripts: list, show, verify, delete, prune; JSON, quiet, exit codes.

What needs only the store runs in-process on a store crafted by hand (``--dir``); what needs
real snapshots or a project runs snapctl as a process on the example project.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    Ran,
    craft_snapshot,
    new_store,
    run_on_store,
    store_entries,
)


@pytest.fixture
def three(sqlite_project: Project) -> tuple[Project, list[str]]:
    """A project with three snapshots, oldest first: plain, labelled 'nightly', dumpdata."""
    names = [
        sqlite_project.dump(),
        sqlite_project.dump("--label", "nightly"),
        sqlite_project.dump("--connector", "dumpdata", "--compress", "gzip"),
    ]
    return sqlite_project, names


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store with three snapshots, oldest first, as ``three``: plain, labelled 'nightly',
    gzip; crafted by hand."""
    store = new_store(tmp_path)
    data = random.Random(0).randbytes(4096)  # incompressible: artifacts of a few kB
    names = [
        craft_snapshot(store, content=data),
        craft_snapshot(store, content=data, label="nightly"),
        craft_snapshot(store, content=data, compress="gzip"),
    ]
    return store, names


def json_of(project: Project | Path, *args: str) -> object:
    """``snapctl ARGS --json`` as a process in ``project``, or in-process on a store."""
    if isinstance(project, Path):
        result: Ran | subprocess.CompletedProcess[str] = run_on_store(project, *args, "--json")
        assert result.returncode == EXIT_OK, result.stderr
    else:
        result = project.snapctl(*args, "--json", check=True)
    # What a script would do: parse with the standard tool.
    subprocess.run(
        [sys.executable, "-m", "json.tool"],
        input=result.stdout,
        text=True,
        check=True,
        capture_output=True,
    )
    return json.loads(result.stdout)


def test_list_is_newest_first_with_a_stable_json_schema(three: tuple[Project, list[str]]) -> None:
    project, names = three
    listed = json_of(project, "list")
    assert isinstance(listed, list)
    assert [s["name"] for s in listed] == names[::-1]
    newest = listed[0]
    assert set(newest) == {
        "name",
        "path",
        "created",
        "label",
        "size",
        "server_size",
        "snapctl_version",
        "django_version",
        "databases",
        "prepared",
    }
    entry = newest["databases"]["default"]
    assert set(entry) >= {
        "alias",
        "database",
        "file",
        "compression",
        "size",
        "sha256",
        "connector",
        "engine",
        "vendor",
        "server_version",
        "metadata",
    }
    assert entry["connector"]["name"] == "dumpdata" and entry["compression"] == "gzip"
    assert entry["database"] == {
        "vendor": "sqlite",
        "name": project.env["EXAMPLE_DB_NAME"],
        "host": "",
        "port": "",
    }
    assert newest["size"] == entry["size"] == Path(newest["path"], entry["file"]).stat().st_size

    table = project.snapctl("list", check=True).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "CREATED",
        "(UTC)",
        "AGE",
        "DATABASES",
        "ENGINES",
        "CONNECTORS",
        "SIZE",
        "COMPRESSION",
        "PREPARED",
    ]
    assert [line.split()[0] for line in table[1:]] == names[::-1]
    assert "dumpdata" in table[1] and "kB" in table[1] and "ago" in table[1]


def test_list_filters_by_alias(crafted: tuple[Path, list[str]]) -> None:
    store, _ = crafted
    assert json_of(store, "list", "--alias", "other") == []
    assert len(json_of(store, "list", "--alias", "default")) == 3  # type: ignore[arg-type]


def test_show_by_name_label_prefix_and_latest(three: tuple[Project, list[str]]) -> None:
    project, names = three
    assert json_of(project, "show", names[0])["name"] == names[0]  # type: ignore[index]
    assert json_of(project, "show", "nightly")["name"] == names[1]  # type: ignore[index]
    assert json_of(project, "show", "latest")["name"] == names[2]  # type: ignore[index]
    assert json_of(project, "show")["name"] == names[2]  # type: ignore[index]
    unique_prefix = names[2][: len(names[2]) - 3]
    assert json_of(project, "show", unique_prefix)["name"] == names[2]  # type: ignore[index]
    text = project.snapctl("show", "nightly", check=True).stdout
    assert names[1] in text and "sqlite (built-in)" in text and "page_size=" in text


def test_verify_names_each_damaged_artifact(crafted: tuple[Path, list[str]]) -> None:
    store, names = crafted
    verified = run_on_store(store, "verify", "--all")
    assert verified.returncode == EXIT_OK, verified.stderr
    report = verified.stdout.splitlines()
    assert [line.split() for line in report] == [
        [names[2], "ok"],
        [names[1], "ok"],
        [names[0], "ok"],
    ]
    assert len({line.index(" ok") for line in report}) == 1  # one column, labels or not
    damaged = store / names[1] / "default.sqlite3.zst"
    data = bytearray(damaged.read_bytes())
    data[10] ^= 0x01
    damaged.write_bytes(bytes(data))
    truncated = store / names[0] / "default.sqlite3.zst"
    truncated.write_bytes(truncated.read_bytes()[:100])

    result = run_on_store(store, "verify", "--all")

    assert result.returncode == EXIT_INTEGRITY
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert names[1] in errors[0] and "sha256" in errors[0] and "default.sqlite3.zst" in errors[0]
    assert names[0] in errors[1] and "100 bytes" in errors[1]
    report = json.loads(run_on_store(store, "verify", "--all", "--json").stdout)
    assert [r["ok"] for r in report] == [True, False, False]
    assert run_on_store(store, "verify", names[2]).returncode == EXIT_OK
    assert run_on_store(store, "verify", "nightly").returncode == EXIT_INTEGRITY


def test_delete_needs_yes_without_a_terminal(crafted: tuple[Path, list[str]]) -> None:
    store, names = crafted
    refused = run_on_store(store, "delete", "nightly")
    assert refused.returncode == EXIT_USAGE and "--yes" in refused.stderr
    assert len(json_of(store, "list")) == 3  # type: ignore[arg-type]

    deleted = run_on_store(store, "delete", "nightly", names[0], "--yes")
    assert deleted.returncode == EXIT_OK, deleted.stderr

    assert deleted.stdout.split() == [names[1], names[0]]
    assert [s["name"] for s in json_of(store, "list")] == [names[2]]  # type: ignore[attr-defined]
    assert store_entries(store) == [names[2]]


def test_prune_keeps_the_newest(crafted: tuple[Path, list[str]]) -> None:
    store, names = crafted
    dry = json_of(store, "prune", "--keep", "1", "--dry-run")
    assert dry == {"deleted": [], "would_delete": [names[1], names[0]]}
    said = run_on_store(store, "prune", "--keep", "1", "--dry-run")
    assert said.returncode == EXIT_OK, said.stderr
    assert said.stderr == "Would delete 2 snapshot(s), keeping the newest 1\n"
    assert len(json_of(store, "list")) == 3  # type: ignore[arg-type]

    other = run_on_store(store, "prune", "--keep", "2", "--alias", "other", "--yes")
    assert other.returncode == EXIT_OK and other.stdout == "", other.stderr
    gone = run_on_store(store, "prune", "--keep", "2", "--yes")
    assert gone.returncode == EXIT_OK, gone.stderr
    assert gone.stdout.split() == [names[0]]
    assert [s["name"] for s in json_of(store, "list")] == names[:0:-1]  # type: ignore[attr-defined]


def test_prune_never_touches_a_dump_in_progress(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    name = craft_snapshot(store)
    in_progress = store / ".tmp-1-abcd"  # pid 1 is always alive
    in_progress.mkdir()
    (in_progress / "default.sqlite3").write_bytes(b"partial")
    pruned = run_on_store(store, "prune", "--keep", "0", "--yes")
    assert pruned.returncode == EXIT_OK, pruned.stderr
    assert in_progress.is_dir()
    assert name not in {p.name for p in store.iterdir()}


def test_quiet_prints_only_results(sqlite_project: Project) -> None:
    loud = sqlite_project.snapctl("dump", check=True)
    assert loud.stderr.startswith("Dumped default")
    quiet = sqlite_project.snapctl("dump", "--quiet", check=True)
    assert quiet.stderr == "" and quiet.stdout.strip()
    before_command = sqlite_project.snapctl("-q", "restore", "--yes", check=True)
    assert before_command.stderr == "" and before_command.stdout.strip()
    failing = sqlite_project.snapctl("-q", "restore", "missing", "--yes")
    assert failing.returncode == EXIT_USAGE and failing.stderr.startswith("snapctl: error:")


def test_dir_option_needs_no_django_settings(sqlite_project: Project, tmp_path: Path) -> None:
    name = sqlite_project.dump()
    env = {k: v for k, v in sqlite_project.env.items() if k != "SNAPCTL_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "snapctl", "list", "--dir", str(sqlite_project.snapshots), "--json"],
        cwd=tmp_path,  # no manage.py, no settings: listing a directory needs neither
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [s["name"] for s in json.loads(result.stdout)] == [name]


def test_latest_means_the_newest_snapshot_of_the_database_restored(
    sqlite_project: Project, tmp_path: Path
) -> None:
    """Two sites share a store: each one's `latest` and labels are its own snapshots; the
    other's is restored only by name (said on stderr) or with --from-any."""
    own = sqlite_project.dump("--label", "nightly")
    own_data = sqlite_project.digest()
    other_db = tmp_path / "other.sqlite3"
    shutil.copy(sqlite_project.env["EXAMPLE_DB_NAME"], other_db)
    other = Project(
        env={**sqlite_project.env, "EXAMPLE_DB_NAME": str(other_db)},
        snapshots=sqlite_project.snapshots,
    )
    other.manage("seed_shop", "--customers", "4", "--products", "1", "--orders", "4")
    other_data = other.digest()
    theirs = other.dump("--label", "nightly")  # the newest in the store
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")

    listed = sqlite_project.snapctl("list", check=True).stdout
    assert "default (other.sqlite3)" in listed and "default (db.sqlite3)" in listed

    for reference in ((), ("latest",), ("nightly",)):
        restored = sqlite_project.snapctl("restore", "--yes", *reference, check=True)
        assert restored.stdout.strip() == own  # its own, though another is newer
        assert sqlite_project.digest() == own_data

    by_name = sqlite_project.snapctl("restore", "--yes", theirs, check=True)
    assert "was taken of sqlite database" in by_name.stderr and "other.sqlite3" in by_name.stderr
    assert sqlite_project.digest() == other_data
    sqlite_project.snapctl("restore", "--yes", own, check=True)
    assert (
        sqlite_project.snapctl("restore", "--yes", "--from-any", check=True).stdout.strip()
        == theirs
    )

    (tmp_path / "third").mkdir()
    third = Project(
        env={**sqlite_project.env, "EXAMPLE_DB_NAME": str(tmp_path / "third" / "db.sqlite3")},
        snapshots=sqlite_project.snapshots,
    )
    refused = third.snapctl("restore", "--yes")
    assert refused.returncode == EXIT_USAGE and "--from-any" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1


def test_prune_counts_only_this_projects_database_in_a_shared_store(
    sqlite_project: Project, tmp_path: Path
) -> None:
    """Two sites share a store: one's `prune --keep 1` keeps its newest and never touches
    the other's snapshots; --any-database counts them all."""
    other_db = tmp_path / "other.sqlite3"
    shutil.copy(sqlite_project.env["EXAMPLE_DB_NAME"], other_db)
    other = Project(
        env={**sqlite_project.env, "EXAMPLE_DB_NAME": str(other_db)},
        snapshots=sqlite_project.snapshots,
    )
    own = [sqlite_project.dump() for _ in range(2)]
    theirs = [other.dump() for _ in range(2)]

    pruned = json.loads(sqlite_project.snapctl("prune", "--keep", "1", "--yes", "--json").stdout)
    assert pruned["deleted"] == [own[0]]
    assert sqlite_project.store_entries() == sorted([own[1], *theirs])

    dry = sqlite_project.snapctl("prune", "--keep", "1", "--any-database", "--dry-run", "--json")
    assert json.loads(dry.stdout)["would_delete"] == [theirs[0], own[1]]
