"""A snapshot is input from outside: what a crafted one can make snapctl do (issue 14).

Each test plants what an attacker who can write the snapshot directory could, then runs
snapctl as its user would, and checks that nothing ran and nothing else changed: in-process
on a store crafted by hand for the commands that read only the store (list, show, verify,
delete, prune with --dir), as a process on the example project for those that need it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    artifact_path,
    craft_snapshot,
    edited_manifest,
    manifest_of,
    new_store,
    resign,
    run_in_process,
    run_on_store,
    snapctl_on_terminal,
    store_entries,
)

# Importing the standard library's ``this`` prints the Zen of Python: proof that a module
# named in a manifest was imported, as any module's import-time code would have run.
ZEN = "Beautiful is better than ugly"


def _name_connector(snapshot: Path, name: str, class_path: str) -> None:
    with edited_manifest(snapshot) as manifest:
        for entry in manifest["databases"].values():
            entry["connector"]["name"] = name
            entry["connector"]["class"] = class_path


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (("restore", "--yes"), EXIT_USAGE),
        (("verify",), EXIT_OK),
        (("show", "--json"), EXIT_OK),
        (("delete", "--yes", "--json"), EXIT_OK),
        (("prune", "--keep", "0", "--yes", "--json"), EXIT_OK),
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
    if code == EXIT_USAGE:
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
    assert result.returncode == EXIT_OK, result.stderr
    assert ZEN not in result.stdout + result.stderr


def _second_snapshot(project: Project) -> tuple[str, str]:
    """Two snapshots: the one to plant things in, and one that must stay visible."""
    return project.dump("--label", "planted"), project.dump("--label", "kept")


def _crafted_pair(tmp_path: Path) -> tuple[Path, str, str]:
    """A store crafted by hand, and in it the snapshot to plant things in and one that must
    stay visible (as :func:`_second_snapshot`, without a project)."""
    store = new_store(tmp_path)
    return store, craft_snapshot(store, label="planted"), craft_snapshot(store, label="kept")


@pytest.mark.parametrize("planted", ["endless-link", "pipe", "naive-time"])
def test_a_planted_manifest_breaks_neither_list_nor_prune(tmp_path: Path, planted: str) -> None:
    """A manifest that is a link to an endless device, a named pipe, or names a time
    without a zone: list and prune carry on with the rest; verify says what is wrong."""
    store, bad, good = _crafted_pair(tmp_path)
    manifest = store / bad / "manifest.json"
    if planted == "naive-time":
        with edited_manifest(store / bad) as data:
            data["created"] = data["created"].replace("+00:00", "")
    else:
        manifest.unlink()
        if planted == "pipe":
            os.mkfifo(manifest)
        else:
            manifest.symlink_to("/dev/zero")
    listed = run_on_store(store, "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == [good]
    verified = run_on_store(store, "verify", bad)
    assert verified.returncode == EXIT_INTEGRITY, verified.stderr
    assert len(verified.stderr.splitlines()) == 1 and bad in verified.stderr
    pruned = run_on_store(store, "prune", "--keep", "1", "--dry-run", "--json")
    assert pruned.returncode == EXIT_OK, pruned.stderr
    assert json.loads(pruned.stdout)["would_delete"] == []


def test_an_artifact_that_is_a_link_is_never_read(sqlite_project: Project, tmp_path: Path) -> None:
    name = sqlite_project.dump("--compress", "none")
    artifact = sqlite_project.snapshots / name / "default.sqlite3"
    elsewhere = tmp_path / "elsewhere.sqlite3"
    elsewhere.write_bytes(artifact.read_bytes())
    artifact.unlink()
    artifact.symlink_to(elsewhere)
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "0", "--orders", "0")
    current = sqlite_project.digest()
    for command in (("verify", name), ("restore", name, "--yes")):
        result = sqlite_project.snapctl(*command)
        assert result.returncode == EXIT_INTEGRITY, result.stderr
        assert "not a regular file" in result.stderr
    assert sqlite_project.digest() == current


def test_a_planted_lock_directory_or_lock_file_is_refused(
    sqlite_project: Project, tmp_path: Path
) -> None:
    """In a shared temporary directory another user can create snapctl's lock directory
    first, or a link where a lock file goes: refused with one line, nothing made elsewhere."""
    name = sqlite_project.dump()
    temp = tmp_path / "tmp"
    temp.mkdir()
    sqlite_project.env["TMPDIR"] = str(temp)
    locks = temp / f"snapctl-{os.getuid()}"
    target = tmp_path / "target"
    locks.symlink_to(target, target_is_directory=True)
    result = sqlite_project.snapctl("restore", name, "--yes")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "not a private directory" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not target.exists()
    locks.unlink()
    locks.mkdir(mode=0o777)
    locks.chmod(0o777)  # anyone may write into it
    result = sqlite_project.snapctl("restore", name, "--yes")
    assert result.returncode == EXIT_USAGE and "not a private directory" in result.stderr
    locks.chmod(0o700)
    if os.geteuid() == 0:  # as root (CI), make it another user's
        os.chown(locks, 65534, 65534)
        result = sqlite_project.snapctl("restore", name, "--yes")
        assert result.returncode == EXIT_USAGE and "not a private directory" in result.stderr
        os.chown(locks, os.getuid(), os.getgid())
    # A link where the store's lock file goes.
    store_lock = sqlite_project.snapshots / ".lock"
    store_lock.unlink(missing_ok=True)
    store_lock.symlink_to(tmp_path / "created-elsewhere")
    result = sqlite_project.snapctl("restore", name, "--yes")
    assert result.returncode == EXIT_USAGE and "lock file" in result.stderr, result.stderr
    assert not (tmp_path / "created-elsewhere").exists()


def test_a_new_store_and_its_parents_are_private_whatever_the_umask(
    sqlite_project: Project, tmp_path: Path
) -> None:
    store = tmp_path / "a" / "b" / "snaps"
    result = sqlite_project.snapctl("dump", "--dir", str(store), "--quiet")
    assert result.returncode == EXIT_OK, result.stderr
    for directory in (tmp_path / "a", tmp_path / "a" / "b", store):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_a_leftover_that_is_a_link_is_removed_not_followed(
    sqlite_project: Project, tmp_path: Path
) -> None:
    name = sqlite_project.dump()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    (sqlite_project.snapshots / ".tmp-999999999-planted").symlink_to(precious)
    sqlite_project.dump()  # cleans up what killed dumps left
    assert (precious / "keep.txt").read_text() == "keep"
    assert not os.path.lexists(sqlite_project.snapshots / ".tmp-999999999-planted")
    assert name in sqlite_project.store_entries()


def test_unpacking_stops_at_the_size_the_manifest_records(sqlite_project: Project) -> None:
    """64 MiB of zeros in 2 KB of zstd, with a checksum that matches: the restore stops at
    the recorded size (exit 3) and leaves nothing unpacked behind."""
    import zstandard

    name = sqlite_project.dump()
    recorded = manifest_of(sqlite_project.snapshots / name)
    assert recorded["databases"]["default"]["unpacked_size"] > 0  # dumps record it
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 * 1024 * 1024))
    resign(sqlite_project.snapshots / name, content=bomb, unpacked_size=1024 * 1024)
    current = sqlite_project.digest()
    result = sqlite_project.snapctl("restore", name, "--yes")
    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert "more than the 1048576 bytes" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert sqlite_project.digest() == current
    assert [e for e in sqlite_project.store_entries() if e.startswith(".")] == []


def test_a_snapshot_larger_than_the_free_room_is_refused_up_front(
    sqlite_project: Project,
) -> None:
    """Unpacked whole before the restore (dumpdata; the SQLite connector copies pages as they
    are unpacked and drops them, so it needs no such room): refused before any work."""
    name = sqlite_project.dump("--connector", "dumpdata")
    with edited_manifest(sqlite_project.snapshots / name) as manifest:
        manifest["databases"]["default"]["unpacked_size"] = 10**18
    result = sqlite_project.snapctl("restore", name, "--yes")
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "needs 1000000000000000000 bytes" in result.stderr and "make room" in result.stderr


def test_a_store_others_can_write_is_refused_unless_shared(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    name = craft_snapshot(store)
    store.chmod(0o777)
    result = run_on_store(store, "list")
    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert "is writable by others" in result.stderr and "--shared-store" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    shared = run_in_process("--shared-store", "list", "--json", "--dir", str(store), cwd=tmp_path)
    assert shared.returncode == EXIT_OK, shared.stderr
    assert [s["name"] for s in json.loads(shared.stdout)] == [name]


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's files needs root")
def test_another_users_planted_snapshot_is_neither_listed_nor_restored(
    sqlite_project: Project,
) -> None:
    """Another user drops a newer snapshot into the store (a shared directory, a bucket's
    copy): list leaves it out, restore of it is refused, and nothing is touched."""

    own = sqlite_project.dump("--label", "own")
    planted = sqlite_project.dump("--label", "planted")
    for path in [
        sqlite_project.snapshots / planted,
        *(sqlite_project.snapshots / planted).iterdir(),
    ]:
        os.chown(path, 65534, 65534)
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "0", "--orders", "0")
    current = sqlite_project.digest()
    listed = sqlite_project.snapctl("list", "--json", check=True)
    assert [s["name"] for s in json.loads(listed.stdout)] == [own]
    for reference in (planted, "latest"):
        result = sqlite_project.snapctl("restore", reference, "--yes")
        assert result.returncode == EXIT_INTEGRITY, result.stderr
        assert "belongs to another user" in result.stderr
    assert sqlite_project.digest() == current
    shutil.rmtree(sqlite_project.snapshots / planted)


def test_a_store_writable_by_the_users_own_group_is_accepted(sqlite_project: Project) -> None:
    """With a user private group (Debian, Ubuntu) a umask of 002 makes directories
    group-writable: that group is the user alone, so the store is still theirs."""
    import grp
    import pwd

    user = pwd.getpwuid(os.getuid())
    group = grp.getgrgid(user.pw_gid)
    if group.gr_name != user.pw_name or group.gr_mem:
        pytest.skip("this user's primary group is not a private one")
    name = sqlite_project.dump()
    sqlite_project.snapshots.chmod(0o775)
    try:
        listed = sqlite_project.snapctl("list", "--json", check=True)
        assert [s["name"] for s in json.loads(listed.stdout)] == [name]
    finally:
        sqlite_project.snapshots.chmod(0o700)


@pytest.mark.parametrize(
    "manifest_text",
    [
        '{"format_version": 1, "databases": {"default": {"size": 1e400}}}',
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["huge-number", "deep-nesting"],
)
def test_a_crafted_manifest_is_one_snapshot_reported_not_a_broken_store(
    tmp_path: Path, manifest_text: str
) -> None:
    store, bad, good = _crafted_pair(tmp_path)
    (store / bad / "manifest.json").write_text(manifest_text)
    listed = run_on_store(store, "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == [good]
    verified = run_on_store(store, "verify", bad)
    assert verified.returncode == EXIT_INTEGRITY, verified.stderr
    assert len(verified.stderr.splitlines()) == 1, verified.stderr
    deleted = run_on_store(store, "delete", bad, "--yes")
    assert deleted.returncode == EXIT_OK, deleted.stderr
    assert store_entries(store) == [good]


def test_the_shared_store_setting_counts_when_the_settings_are_loaded(
    sqlite_project: Project, tmp_path: Path
) -> None:
    (tmp_path / "shared_settings.py").write_text(
        "from example_project.settings import *  # noqa: F403\nSNAPSHOTS = {'SHARED_STORE': True}\n"
    )
    name = sqlite_project.dump()
    sqlite_project.snapshots.chmod(0o777)
    try:
        args = ("--settings", "shared_settings", "--pythonpath", str(tmp_path))
        restored = sqlite_project.snapctl(*args, "restore", name, "--yes")
        assert restored.returncode == EXIT_OK, restored.stderr
        refused = sqlite_project.snapctl("restore", name, "--yes")
        assert refused.returncode == EXIT_INTEGRITY and "writable by others" in refused.stderr
    finally:
        sqlite_project.snapshots.chmod(0o700)


def _restore_swapping_at_the_prompt(
    project: Project, name: str, swap: Callable[[], None], *options: str
) -> tuple[int, str]:
    """``restore`` on a terminal: while it asks for confirmation (its checksums verified),
    ``swap`` changes the artifact, then the question is answered yes."""
    terminal = snapctl_on_terminal(project, *options, "restore", name, env={"TERM": "dumb"})
    with terminal as (proc, primary):
        shown = b""
        while b"replaces all of its current data" not in shown:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # it ended without asking
                chunk = b""
            assert chunk, shown.decode("utf-8", "replace")
            shown += chunk
        swap()
        os.write(primary, b"y\n")
        with contextlib.suppress(OSError):  # the child closed the terminal
            while chunk := os.read(primary, 65536):
                shown += chunk
        return proc.wait(timeout=120), shown.decode("utf-8", "replace")


def _swap(artifact: Path, content: bytes) -> None:
    """Another artifact renamed over ``artifact``, as whoever can write the directory can."""
    planted = artifact.with_name(".planted")
    planted.write_bytes(content)
    os.rename(planted, artifact)


def _rewrite(artifact: Path, content: bytes) -> None:
    """``artifact`` rewritten in place, as whoever can write the file can."""
    with open(artifact, "r+b") as same_file:
        same_file.write(content)
        same_file.truncate()


def _two_snapshots(project: Project, compress: str) -> tuple[str, Path, bytes, dict[str, object]]:
    """A snapshot's name, its artifact, another (smaller, so no bound on the unpacked size
    stops it) artifact to plant there, and the data the snapshot holds; the database has
    changed since."""
    other = project.dump("--compress", compress, "--label", "other")
    project.manage("seed_shop", "--customers", "3", "--products", "2", "--orders", "3")
    wanted = project.digest()
    name = project.dump("--compress", compress)
    project.manage("seed_shop", "--customers", "1", "--products", "1", "--orders", "1")
    artifact = artifact_path(project.snapshots / name)
    planted = (project.snapshots / other / artifact.name).read_bytes()
    return name, artifact, planted, wanted


@pytest.mark.parametrize("compress", ["none", "zstd", "gzip"])
def test_an_artifact_swapped_after_verification_is_never_restored(
    sqlite_project: Project, compress: str
) -> None:
    """Another valid artifact renamed over the verified one while the prompt waits: what is
    restored is still exactly what was verified."""
    name, artifact, planted, wanted = _two_snapshots(sqlite_project, compress)
    code, shown = _restore_swapping_at_the_prompt(
        sqlite_project, name, lambda: _swap(artifact, planted)
    )
    assert code == EXIT_OK, shown
    assert sqlite_project.digest() == wanted


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_an_artifact_rewritten_in_place_after_verification_is_never_restored(
    sqlite_project: Project, compress: str
) -> None:
    """In a shared store whoever owns the file can rewrite it in place, the very file that
    was hashed: the SQLite restore hashes it again as it reads it, and fails with the
    database unchanged."""
    name, artifact, planted, _ = _two_snapshots(sqlite_project, compress)
    before = sqlite_project.digest()
    code, shown = _restore_swapping_at_the_prompt(
        sqlite_project, name, lambda: _rewrite(artifact, planted), "--shared-store"
    )
    assert code == EXIT_INTEGRITY, shown
    assert "changed after it was verified" in shown and "Traceback" not in shown
    assert sqlite_project.digest() == before


@pytest.mark.parametrize("attack", ["swap", "rewrite"])
@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_a_server_restore_uses_what_it_verified(
    postgres_project: Project, compress: str, attack: str
) -> None:
    """pg_restore reads a file by path: in the user's own store a link to the open, hashed
    file (a rename changes nothing), in a shared store a private copy made while hashing
    (a rewrite changes nothing either)."""
    name, artifact, planted, wanted = _two_snapshots(postgres_project, compress)
    change = _swap if attack == "swap" else _rewrite
    options = ("--shared-store",) if attack == "rewrite" else ()
    code, shown = _restore_swapping_at_the_prompt(
        postgres_project, name, lambda: change(artifact, planted), *options
    )
    assert code == EXIT_OK, shown
    assert postgres_project.digest() == wanted


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A change to a manifest: the field at dotted ``path`` set to ``value``."""

    def change(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            manifest = manifest[key]
        manifest[last] = value

    return change


MANIFEST_FIELDS = [
    pytest.param(_set("format_version", True), "format_version is not a whole number"),
    pytest.param(_set("created", "2026-12-03T06:00:00"), "has no time zone"),
    pytest.param(_set("created", "2020-01-01T00:00:00+00:00"), "do not give the name"),
    pytest.param(_set("databases", [["default", {}]]), "databases is not an object"),
    pytest.param(_set("databases", {}), "databases is empty"),
    pytest.param(_set("databases.default.server_version", 15), "server_version is not a string"),
    pytest.param(_set("databases.default.compression", "lz4"), "compression 'lz4' is not one of"),
    pytest.param(_set("databases.default.size", True), "size is not a whole number"),
    pytest.param(_set("databases.default.size", "12"), "size is not a whole number"),
    pytest.param(_set("databases.default.sha256", "x" * 64), "sha256 is not a sha256 digest"),
    pytest.param(_set("databases.default.file", "default.sqlite3"), "ending as its compression"),
    pytest.param(_set("databases.default.connector", "sqlite"), "connector is not an object"),
    pytest.param(_set("databases.default.connector.name", "a/b"), "is not a plain name"),
    pytest.param(_set("databases.default.metadata", [1]), "metadata is not an object"),
    pytest.param(_set("label", 7), "label is not a string"),
    pytest.param(_set("databases.default.engine", "x\x1b]0;retitled\x07"), "control characters"),
    pytest.param(_set("databases.default.database.name", "x\x1b[2J"), "control characters"),
]
# A few of them again end to end, through restore on the example project: one of the
# snapshot itself, one of an artifact's fields, one of what is printed to a terminal.
MANIFEST_FIELDS_END_TO_END = [MANIFEST_FIELDS[i] for i in (0, 2, 7, 15)]


@pytest.mark.parametrize(("change", "says"), MANIFEST_FIELDS)
def test_every_manifest_field_is_checked_when_the_snapshot_is_read(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], says: str
) -> None:
    """A field of the wrong type or value: list and prune carry on with the rest, show
    reports it in one line (exit 3), and nothing is touched."""
    store, bad, good = _crafted_pair(tmp_path)
    with edited_manifest(store / bad) as manifest:
        change(manifest)
    listed = run_on_store(store, "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == [good]
    result = run_on_store(store, "show", bad)
    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert says in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    pruned = run_on_store(store, "prune", "--keep", "1", "--yes", "--json")
    assert pruned.returncode == EXIT_OK, pruned.stderr
    assert store_entries(store) == sorted([bad, good])  # a broken one is not chosen


@pytest.mark.parametrize(("change", "says"), MANIFEST_FIELDS_END_TO_END)
def test_a_manifest_field_is_checked_before_a_restore(
    sqlite_project: Project, change: Callable[[dict[str, Any]], None], says: str
) -> None:
    """As above, on the example project: restore reports it in one line (exit 3) too, and
    neither the database nor the store is touched."""
    bad, good = _second_snapshot(sqlite_project)
    with edited_manifest(sqlite_project.snapshots / bad) as manifest:
        change(manifest)
    before = sqlite_project.digest()
    listed = sqlite_project.snapctl("list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == [good]
    for command in (("show", bad), ("restore", "--yes", bad)):
        result = sqlite_project.snapctl(*command)
        assert result.returncode == EXIT_INTEGRITY, result.stderr
        assert says in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    pruned = sqlite_project.snapctl("prune", "--keep", "1", "--yes", "--json")
    assert pruned.returncode == EXIT_OK, pruned.stderr
    assert sqlite_project.store_entries() == sorted([bad, good])  # a broken one is not chosen
    assert sqlite_project.digest() == before


def test_latest_list_and_prune_agree_on_which_snapshot_is_newest(tmp_path: Path) -> None:
    """Names order snapshots, and a manifest's time must agree with its name: one made
    to look newer than its name says is refused, not restored as newest by one command
    and kept as oldest by another."""
    store = new_store(tmp_path)
    older, newer = craft_snapshot(store, label="older"), craft_snapshot(store, label="newer")
    listed = run_on_store(store, "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == [newer, older]
    shown = run_on_store(store, "show", "latest", "--json")
    assert shown.returncode == EXIT_OK, shown.stderr
    assert json.loads(shown.stdout)["name"] == newer
    dry = run_on_store(store, "prune", "--keep", "1", "--dry-run", "--json")
    assert json.loads(dry.stdout)["would_delete"] == [older]


def test_text_in_a_manifest_is_never_read_as_markup(tmp_path: Path) -> None:
    """Square brackets are plain text in a version or a database name: list and show print
    them as they are instead of failing the whole store."""
    store = new_store(tmp_path)
    name = craft_snapshot(store)
    with edited_manifest(store / name) as manifest:
        manifest["django_version"] = "[/y]"
        manifest["databases"]["default"]["database"]["name"] = "/srv/[bold]db"
        manifest["databases"]["default"]["metadata"]["note"] = "[bold]\x1b[2Jx"
    listed = run_on_store(store, "list")
    assert listed.returncode == EXIT_OK and "default ([bold]db)" in listed.stdout, listed.stderr
    shown = run_on_store(store, "show", name)
    assert shown.returncode == EXIT_OK and "Django [/y]" in shown.stdout, shown.stderr
    assert "\x1b" not in shown.stdout and "note=[bold]?[2Jx" in shown.stdout


def test_a_label_is_never_matched_by_its_tail(sqlite_project: Project) -> None:
    longer = sqlite_project.dump("--label", "fooZ-b")
    assert sqlite_project.snapctl("show", "fooZ-b", "--json", check=True).stdout.count(longer)
    refused = sqlite_project.snapctl("restore", "--yes", "b")
    assert refused.returncode == EXIT_USAGE and "no snapshot 'b'" in refused.stderr, refused.stderr
