"""SQLite end to end, through the command line as a user runs it."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    EXAMPLE,
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    edited_manifest,
    manifest_of,
    resign,
    snapctl_on_terminal,
    start_snapctl,
)


def db_path(project: Project) -> Path:
    return Path(project.env["EXAMPLE_DB_NAME"])


def make_changes(project: Project) -> None:
    """Edit a row, delete a row, add rows and a table: everything a restore must undo."""
    with sqlite3.connect(db_path(project)) as conn:
        conn.execute("UPDATE shop_customer SET name = 'changed' WHERE id = 1")
        conn.execute("DELETE FROM shop_orderline WHERE id = 2")
        conn.execute("CREATE TABLE extra (x INTEGER)")
        conn.execute("CREATE VIEW extra_view AS SELECT * FROM extra")
    project.manage("seed_shop", "--customers", "5", "--products", "3", "--orders", "7")


def test_round_trip_restores_exactly(sqlite_project: Project) -> None:
    before = sqlite_project.digest()
    name = sqlite_project.dump()
    make_changes(sqlite_project)
    assert sqlite_project.digest() != before

    result = sqlite_project.snapctl("restore", "--yes", check=True)

    assert result.stdout.strip() == name
    assert sqlite_project.digest() == before
    # The sequences came back too: the next insert through Django works.
    sqlite_project.manage("seed_shop", "--customers", "1", "--products", "1", "--orders", "1")


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
def test_every_compression_round_trips(sqlite_project: Project, compress: str) -> None:
    before = sqlite_project.digest()
    name = sqlite_project.dump("--compress", compress)
    manifest = manifest_of(sqlite_project.snapshots / name)
    assert manifest["databases"]["default"]["compression"] == compress
    make_changes(sqlite_project)
    sqlite_project.snapctl("restore", name, "--yes", check=True)
    assert sqlite_project.digest() == before


def test_sql_script_format(sqlite_project: Project, tmp_path: Path) -> None:
    settings = tmp_path / "sql_settings.py"
    settings.write_text(
        "from example_project.settings import *  # noqa\n"
        "from snapctl import SQLiteConnector\n"
        "SNAPSHOTS = {'DATABASE_CONNECTORS': {'default': SQLiteConnector(format='sql')}}\n"
    )
    args = ("--settings", "sql_settings", "--pythonpath", str(tmp_path))
    before = sqlite_project.digest()
    name = sqlite_project.snapctl(*args, "dump", check=True).stdout.strip()
    manifest = manifest_of(sqlite_project.snapshots / name)
    entry = manifest["databases"]["default"]
    assert entry["metadata"]["format"] == "sql"
    assert entry["connector"]["source"] == "settings"
    assert entry["file"] == "default.sql.zst"
    make_changes(sqlite_project)
    sqlite_project.snapctl(*args, "restore", "--yes", check=True)
    assert sqlite_project.digest() == before


def test_wal_database_round_trips_and_stays_wal(sqlite_project: Project) -> None:
    with sqlite3.connect(db_path(sqlite_project)) as conn:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    before = sqlite_project.digest()
    sqlite_project.dump()
    make_changes(sqlite_project)
    sqlite_project.snapctl("restore", "--yes", check=True)
    assert sqlite_project.digest() == before
    with sqlite3.connect(db_path(sqlite_project)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute(f"PRAGMA journal_mode={sys.argv[2]}")
# One counter at the front of the file and one at its end, 30 MB apart.
conn.execute("CREATE TABLE first (n INTEGER)")
conn.execute("INSERT INTO first VALUES (0)")
conn.execute("CREATE TABLE filler (b BLOB)")
conn.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300) "
             "INSERT INTO filler SELECT randomblob(100000) FROM c")
conn.execute("CREATE TABLE last (n INTEGER)")
conn.execute("INSERT INTO last VALUES (0)")
print("ready", flush=True)
i = 0
while True:
    i += 1
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE first SET n = ?", (i,))
    conn.execute("UPDATE filler SET b = randomblob(100000) WHERE rowid = ?", (i % 300 + 1,))
    conn.execute("UPDATE last SET n = ?", (i,))
    conn.execute("COMMIT")
"""


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_dump_is_consistent_while_another_process_writes(
    sqlite_project: Project, journal_mode: str
) -> None:
    """Each transaction sets a counter at the front of the file and one at its end; a
    consistent snapshot holds the same value in both, and is a whole database. In WAL mode
    the backup API copies it; in rollback-journal mode, the file under the read lock."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path(sqlite_project)), journal_mode],
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == b"ready"
        names = [sqlite_project.dump("--compress", "none") for _ in range(5)]
    finally:
        writer.kill()
        writer.wait()
    seen = []
    for name in names:
        artifact = sqlite_project.snapshots / name / "default.sqlite3"
        with sqlite3.connect(artifact) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            counters = conn.execute("SELECT (SELECT n FROM first), (SELECT n FROM last)")
            seen.append(counters.fetchone())
    assert all(front == end for front, end in seen), seen
    assert seen[-1][0] > 0


def test_a_rollback_journal_database_is_copied_byte_for_byte(sqlite_project: Project) -> None:
    path = db_path(sqlite_project)
    name = sqlite_project.dump("--compress", "none")
    artifact = sqlite_project.snapshots / name / "default.sqlite3"
    assert artifact.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in artifact.parent.iterdir()) == [
        "default.sqlite3",
        "manifest.json",
    ]


def test_failed_restore_leaves_database_as_it_was(sqlite_project: Project) -> None:
    sqlite_project.env["EXAMPLE_SQLITE_FORMAT"] = "sql"
    name = sqlite_project.dump("--compress", "none")
    sqlite_project.manage("seed_shop", "--customers", "3", "--products", "0", "--orders", "0")
    current = sqlite_project.digest()
    # A script that breaks half-way, with a valid checksum: only the database can tell.
    script = "BEGIN TRANSACTION;\nCREATE TABLE a (x);\nINSERT INTO a VALUES (1);\nNOT SQL;\n"
    resign(sqlite_project.snapshots / name, "default", script.encode())

    result = sqlite_project.snapctl("restore", name, "--yes")

    assert result.returncode == EXIT_FAILED, result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert sqlite_project.digest() == current


def test_damaged_artifact_is_refused_before_touching_the_database(
    sqlite_project: Project,
) -> None:
    name = sqlite_project.dump()
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "0", "--orders", "0")
    current = sqlite_project.digest()
    artifact = sqlite_project.snapshots / name / "default.sqlite3.zst"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))

    result = sqlite_project.snapctl("restore", "--yes")

    assert result.returncode == EXIT_INTEGRITY
    assert "fails its sha256 checksum; it is damaged" in result.stderr
    assert result.stderr.count("\n") == 1
    assert sqlite_project.digest() == current
    # verify says the same line of the same artifact
    verified = sqlite_project.snapctl("verify", name)
    assert verified.returncode == EXIT_INTEGRITY and verified.stderr == result.stderr


def test_a_cut_artifact_gets_one_message_from_verify_and_restore(sqlite_project: Project) -> None:
    name = sqlite_project.dump()
    artifact = sqlite_project.snapshots / name / "default.sqlite3.zst"
    artifact.write_bytes(artifact.read_bytes()[:100])
    restored = sqlite_project.snapctl("restore", "--yes", name)
    verified = sqlite_project.snapctl("verify", name)
    assert restored.returncode == verified.returncode == EXIT_INTEGRITY
    assert "is 100 bytes, its manifest says" in restored.stderr
    assert restored.stderr == verified.stderr and restored.stderr.count("\n") == 1


def test_snapshot_of_another_engine_is_refused(sqlite_project: Project) -> None:
    name = sqlite_project.dump()
    with edited_manifest(sqlite_project.snapshots / name) as manifest:
        manifest["databases"]["default"]["vendor"] = "postgresql"

    result = sqlite_project.snapctl("restore", "--yes")

    assert result.returncode == EXIT_INTEGRITY
    assert "postgresql" in result.stderr and "sqlite" in result.stderr


def test_malformed_manifest_is_an_integrity_error(sqlite_project: Project) -> None:
    name = sqlite_project.dump()
    (sqlite_project.snapshots / name / "manifest.json").write_text("{not json")
    result = sqlite_project.snapctl("restore", name, "--yes")
    assert result.returncode == EXIT_INTEGRITY
    assert result.stderr.startswith("snapctl: error: snapshot") and "manifest" in result.stderr


def test_restore_without_terminal_needs_yes(sqlite_project: Project) -> None:
    sqlite_project.dump()
    sqlite_project.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    current = sqlite_project.digest()
    result = sqlite_project.snapctl("restore")
    assert result.returncode == EXIT_USAGE
    assert "--yes" in result.stderr
    assert sqlite_project.digest() == current
    sqlite_project.snapctl("restore", "--no-input", check=True)
    assert sqlite_project.digest() != current


def _restore_on_terminal(project: Project, answer: str) -> int:
    """Run restore with a pseudo-terminal as stdin and answer its question."""
    with snapctl_on_terminal(project, "restore", stdout=subprocess.PIPE) as (proc, primary):
        seen = b""
        deadline = time.monotonic() + 60
        while b"[y/N]" not in seen and time.monotonic() < deadline:
            seen += os.read(primary, 1024)
        os.write(primary, answer.encode() + b"\n")
        return proc.wait(timeout=60)


def test_restore_asks_on_a_terminal(sqlite_project: Project) -> None:
    before = sqlite_project.digest()
    sqlite_project.dump()
    make_changes(sqlite_project)
    changed = sqlite_project.digest()

    assert _restore_on_terminal(sqlite_project, "n") == EXIT_FAILED
    assert sqlite_project.digest() == changed
    assert _restore_on_terminal(sqlite_project, "y") == EXIT_OK
    assert sqlite_project.digest() == before


def test_files_are_private_and_nothing_temporary_is_left(sqlite_project: Project) -> None:
    name = sqlite_project.dump()
    snapshot = sqlite_project.snapshots / name
    assert stat.S_IMODE(sqlite_project.snapshots.stat().st_mode) == 0o700
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o700
    for file in snapshot.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert sqlite_project.store_entries() == [name]
    sqlite_project.snapctl("restore", "--yes", check=True)
    assert sqlite_project.store_entries() == [name]


def test_killed_dump_leaves_no_snapshot(sqlite_project: Project) -> None:
    # Enough data that the dump is still running when it is killed.
    sqlite_project.manage(
        "seed_shop", "--customers", "20000", "--products", "5000", "--orders", "0"
    )
    proc = start_snapctl(
        sqlite_project.env,
        "dump",
        "--compress",
        "gzip",
        "--level",
        "9",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(sqlite_project.snapshots.glob(".tmp-*")):
        time.sleep(0.01)
    proc.kill()
    proc.wait()

    listed = sqlite_project.snapctl("list", "--json", check=True)
    assert json.loads(listed.stdout) == []
    assert sqlite_project.snapctl("restore", "--yes").returncode == EXIT_USAGE
    # The next dump works and clears what the killed one left.
    name = sqlite_project.dump()
    assert sqlite_project.store_entries() == [name]


def test_two_aliases_dump_together_and_restore_one(tmp_path: Path, sqlite_project: Project) -> None:
    other = tmp_path / "other.sqlite3"
    project = Project(
        env={**sqlite_project.env, "EXAMPLE_DB2_NAME": str(other)},
        snapshots=sqlite_project.snapshots,
    )
    project.manage("migrate", "--database", "other", "-v0")
    project.manage("seed_shop", "--database", "other", "--seed", "3")

    name = project.snapctl("dump", "--all", "--label", "both", check=True).stdout.strip()
    manifest = manifest_of(project.snapshots / name)
    assert sorted(manifest["databases"]) == ["default", "other"]
    assert name.endswith("-both")

    before_default = project.digest()
    with sqlite3.connect(other) as conn:
        before_other = conn.execute("SELECT * FROM shop_customer ORDER BY id").fetchall()
        conn.execute("DELETE FROM shop_orderline")
        conn.execute("DELETE FROM shop_order")
        conn.execute("DELETE FROM shop_customer")
    project.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    changed_default = project.digest()

    project.snapctl("restore", "both", "--alias", "other", "--yes", check=True)

    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT * FROM shop_customer ORDER BY id").fetchall() == before_other
    assert project.digest() == changed_default != before_default


NO_PIPES = """
import os, sys
from pathlib import Path
from snapctl import receiver

def refuse(path):  # as on a filesystem without named pipes; says it was asked
    Path(os.environ["ASKED_FOR_A_PIPE"]).touch()
    return False

receiver.make_pipe = refuse
from snapctl.console import main
sys.argv[0] = "snapctl"
main()
"""


def test_where_no_pipe_can_be_made_the_dump_goes_through_a_file(
    sqlite_project: Project, tmp_path: Path
) -> None:
    before = sqlite_project.digest()
    asked = tmp_path / "asked"
    dumped = subprocess.run(
        [sys.executable, "-c", NO_PIPES, "dump"],
        cwd=EXAMPLE,
        env={**sqlite_project.env, "ASKED_FOR_A_PIPE": str(asked)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dumped.returncode == EXIT_OK, dumped.stderr
    assert asked.exists()
    name = dumped.stdout.strip()
    assert sorted(p.name for p in (sqlite_project.snapshots / name).iterdir()) == [
        "default.sqlite3.zst",
        "manifest.json",
    ]
    make_changes(sqlite_project)
    sqlite_project.snapctl("restore", name, "--yes", check=True)
    assert sqlite_project.digest() == before


# Runs snapctl with small backup steps (16 pages) and a slow unpacking, logging what the
# restore did: each wait (bytes asked for, whether the unpacking had finished) and discard.
FOLLOWING = """
import atexit, errno, json, os, sys, time
from pathlib import Path
from snapctl import compression, unpacking
from snapctl.connectors import sqlite

sqlite._FOLLOW_STEP_PAGES = 16
log = {"waits": [], "discards": []}
atexit.register(lambda: Path(os.environ["FOLLOW_LOG"]).write_text(json.dumps(log)))
fail_after = int(os.environ.get("FAIL_AFTER_BYTES", "0"))
unpacked_chunks = compression.unpacked_chunks

def slow_chunks(*args):  # 16 KiB at a time, 5 ms each: slower than backup
    sent = 0
    for chunk in unpacked_chunks(*args):
        for start in range(0, len(chunk), 16384):
            if fail_after and sent >= fail_after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            time.sleep(0.005)
            sent += len(chunk[start : start + 16384])
            yield chunk[start : start + 16384]

compression.unpacked_chunks = slow_chunks
wait_for, discard = unpacking.Unpacking.wait_for, unpacking.Unpacking.discard

def logged_wait_for(self, size):
    ready = wait_for(self, size)
    log["waits"].append([size, self._done])
    return ready

def logged_discard(self, start, end):
    log["discards"].append([start, end])
    discard(self, start, end)

unpacking.Unpacking.wait_for = logged_wait_for
unpacking.Unpacking.discard = logged_discard
from snapctl.console import main
sys.argv[0] = "snapctl"
main()
"""


def restore_following(
    project: Project, tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, list[list[int]]]]:
    log = tmp_path / "follow.json"
    result = subprocess.run(
        [sys.executable, "-c", FOLLOWING, "restore", "--yes", *args],
        cwd=EXAMPLE,
        env={**project.env, "FOLLOW_LOG": str(log), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, json.loads(log.read_text())


def set_page_size(project: Project, size: int) -> None:
    with sqlite3.connect(db_path(project), isolation_level=None) as conn:
        conn.execute(f"PRAGMA page_size={size}")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA page_size").fetchone()[0] == size


def test_restore_copies_pages_while_the_snapshot_is_unpacked(
    sqlite_project: Project, tmp_path: Path
) -> None:
    before = sqlite_project.digest()
    sqlite_project.dump()
    make_changes(sqlite_project)

    result, log = restore_following(sqlite_project, tmp_path)

    assert result.returncode == EXIT_OK, result.stderr
    assert sqlite_project.digest() == before
    # Pages were copied before the unpacking ended, and the copied ones dropped.
    assert any(not done for _, done in log["waits"][1:]), log["waits"]
    assert log["discards"] and log["discards"][-1][1] > log["discards"][0][1]


@pytest.mark.parametrize(("snapshot_pages", "live_pages"), [(4096, 8192), (8192, 4096)])
def test_restore_across_page_sizes_keeps_every_page(
    sqlite_project: Project, tmp_path: Path, snapshot_pages: int, live_pages: int
) -> None:
    set_page_size(sqlite_project, snapshot_pages)
    before = sqlite_project.digest()
    sqlite_project.dump()
    make_changes(sqlite_project)
    set_page_size(sqlite_project, live_pages)

    result, log = restore_following(sqlite_project, tmp_path)

    assert result.returncode == EXIT_OK, result.stderr
    assert sqlite_project.digest() == before
    # A backup into other page sizes may read source pages again: none are dropped.
    assert log["discards"] == []
    with sqlite3.connect(db_path(sqlite_project)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_full_disk_part_way_through_leaves_the_database_as_it_was(
    sqlite_project: Project, tmp_path: Path
) -> None:
    sqlite_project.dump()
    make_changes(sqlite_project)
    current = sqlite_project.digest()
    size = db_path(sqlite_project).stat().st_size

    result, log = restore_following(sqlite_project, tmp_path, FAIL_AFTER_BYTES=str(size // 2))

    assert result.returncode == EXIT_FAILED, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "database unchanged" in result.stderr and "No space left" in result.stderr
    assert any(ready < size // 2 for ready, _ in log["waits"][1:])  # steps were copied
    assert sqlite_project.digest() == current


def test_a_snapshot_shorter_than_its_header_is_refused_unchanged(
    sqlite_project: Project, tmp_path: Path
) -> None:
    name = sqlite_project.dump("--compress", "none")
    whole = (sqlite_project.snapshots / name / "default.sqlite3").read_bytes()
    half = tmp_path / "half.sqlite3"
    half.write_bytes(whole[: len(whole) // 2])
    packed = tmp_path / "half.sqlite3.zst"
    from snapctl import compression

    compression.compress(half, packed, "zstd")
    with edited_manifest(sqlite_project.snapshots / name) as manifest:
        manifest["databases"]["default"].update(file="default.sqlite3.zst", compression="zstd")
    (sqlite_project.snapshots / name / "default.sqlite3").unlink()
    resign(sqlite_project.snapshots / name, "default", packed.read_bytes())
    make_changes(sqlite_project)
    current = sqlite_project.digest()

    result = sqlite_project.snapctl("restore", name, "--yes")

    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert "shorter than its header says" in result.stderr
    assert "unchanged" in result.stderr and result.stderr.count("\n") == 1
    assert sqlite_project.digest() == current


@pytest.mark.parametrize("declared", ["backup", "sql"])
def test_the_manifest_decides_the_format_not_the_content(
    sqlite_project: Project, tmp_path: Path, declared: str
) -> None:
    """A script where the manifest says database file, or the reverse, is refused (exit 3)
    before the live database is touched."""
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE planted (x)")
    connection.close()
    content = b"CREATE TABLE planted (x);\n" if declared == "backup" else other.read_bytes()
    sqlite_project.env["EXAMPLE_SQLITE_FORMAT"] = declared
    name = sqlite_project.dump("--compress", "none")
    sqlite_project.manage("seed_shop", "--customers", "3", "--products", "0", "--orders", "0")
    current = sqlite_project.digest()
    resign(sqlite_project.snapshots / name, "default", content)
    result = sqlite_project.snapctl("restore", name, "--yes")
    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert "as its manifest says" in result.stderr and result.stderr.count("\n") == 1
    assert sqlite_project.digest() == current


def test_a_snapshot_script_touches_no_other_file(sqlite_project: Project, tmp_path: Path) -> None:
    """A script with a valid checksum that attaches, writes or loads elsewhere fails in its
    scratch database: no file appears, the other database and the live one are unchanged."""
    victim = tmp_path / "victim.sqlite3"
    with sqlite3.connect(victim) as connection:
        connection.execute("CREATE TABLE precious (x)")
    connection.close()
    victim_bytes = victim.read_bytes()
    sqlite_project.env["EXAMPLE_SQLITE_FORMAT"] = "sql"
    name = sqlite_project.dump("--compress", "none")
    current = sqlite_project.digest()
    for attack in (
        f"ATTACH DATABASE '{tmp_path / 'planted.db'}' AS p; CREATE TABLE p.t (x);",
        f"ATTACH DATABASE '{victim}' AS v; DROP TABLE v.precious;",
        f"VACUUM INTO '{tmp_path / 'copy.db'}';",
        "SELECT load_extension('/nonexistent/evil');",
        "PRAGMA max_page_count = 4294967294;",  # its bound on the scratch database's size
        f"PRAGMA temp_store_directory = '{tmp_path}';",
    ):
        resign(sqlite_project.snapshots / name, "default", attack.encode())
        result = sqlite_project.snapctl("restore", name, "--yes")
        assert result.returncode == EXIT_FAILED, result.stderr
        assert "database unchanged" in result.stderr and result.stderr.count("\n") == 1
        assert not (tmp_path / "planted.db").exists() and not (tmp_path / "copy.db").exists()
        assert victim.read_bytes() == victim_bytes
        assert sqlite_project.digest() == current
        assert sqlite_project.store_entries() == [name]  # no scratch file left beside it
        assert sorted(p.name for p in (sqlite_project.snapshots / name).iterdir()) == [
            "default.sql",
            "manifest.json",
        ]


# --- other connections to the live database ---------------------------------------------------

# Another process in a read transaction on the database (a `manage.py shell`, a report):
# prints "ready", then keeps the transaction open for HOLD seconds.
# With "write", an exclusive write transaction instead (a long data migration, say).
HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[3] == "write":
    connection.execute("BEGIN EXCLUSIVE")
    connection.execute("UPDATE shop_tag SET name = name")
else:
    connection.execute("BEGIN")
    connection.execute("SELECT count(*) FROM shop_tag").fetchone()
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def hold_a_transaction(
    project: Project, seconds: float, kind: str = "read"
) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, project.env["EXAMPLE_DB_NAME"], str(seconds), kind],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    return holder


def read_count(project: Project) -> float:
    """Seconds a new reader of the application takes to count the tags."""
    started = time.monotonic()
    connection = sqlite3.connect(project.env["EXAMPLE_DB_NAME"], timeout=60)
    connection.execute("SELECT count(*) FROM shop_tag").fetchone()
    connection.close()
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("compress", "kind"), [("zstd", "read"), ("none", "read"), ("zstd", "write")]
)
def test_a_transaction_of_another_process_is_waited_for_a_bounded_time(
    sqlite_project: Project, compress: str, kind: str
) -> None:
    """Said on stderr with who holds it, given up after --lock-timeout with the database
    unchanged, and the application's new readers never locked out for longer."""
    name = sqlite_project.dump("--compress", compress)
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")
    before = sqlite_project.digest()
    holder = hold_a_transaction(sqlite_project, 60, kind)
    try:
        started = time.monotonic()
        restoring = start_snapctl(
            sqlite_project.env,
            "restore",
            "--yes",
            "--lock-timeout",
            "2",
            name,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        # A writer's exclusive lock keeps readers out whatever snapctl does: only then.
        reader_waited = read_count(sqlite_project) if kind == "read" else 0.0
        _, stderr = restoring.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert restoring.returncode == EXIT_FAILED, stderr
    waiting, failed = stderr.splitlines()
    assert "waiting up to 2 s for another connection's transaction" in waiting
    assert f"pid {holder.pid}" in waiting and f"pid {holder.pid}" in failed
    assert "--lock-timeout" in failed and "Traceback" not in stderr
    assert "import sqlite3" not in stderr  # a program is named, never its arguments
    assert took < 15  # bounded: 2 s of waiting, and start-up
    assert reader_waited < 5  # locked out no longer than the bound
    assert sqlite_project.digest() == before


def test_a_transaction_that_ends_in_time_lets_the_restore_through(sqlite_project: Project) -> None:
    name = sqlite_project.dump()
    wanted = sqlite_project.digest()
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")
    holder = hold_a_transaction(sqlite_project, 1.5)
    try:
        restored = sqlite_project.snapctl("restore", "--yes", "--lock-timeout", "30", name)
    finally:
        holder.wait()
    assert restored.returncode == EXIT_OK, restored.stderr
    assert "waiting up to 30 s" in restored.stderr
    assert sqlite_project.digest() == wanted
