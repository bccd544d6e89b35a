"""Fault injection against the real PostgreSQL and MariaDB servers.

A backup tool earns trust only when nothing it does can lose data. Each test runs snapctl as a
user would (a real process, real tools, real servers), injects a fault (kill -9, a server
session killed from outside, a full disk, a second restore, writers during a dump) and then
checks every snapshot and database it can see, through the shared fault ledger.

kill -9 hits the snapctl process alone in half the trials, as the OOM killer does: its children
(pg_dump, pg_restore, psql, mariadb) live on as orphans and finish or fail by themselves, and
the checks wait for them; a statement snapctl's own connection was running commits or rolls
back whole on the server. The other half kill the whole process group, as stopping a container
or a CI job does. The shared servers are never stopped: other tests use them concurrently.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXAMPLE,
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    FaultLedger,
    Project,
    ServerDatabase,
    clean_env,
    mariadb_admin,
    one_error_line,
    psql_admin,
    start_snapctl,
)

from snapctl.store import SnapshotStore

ENGINES = ["postgres", "mariadb"]
BULK_ROWS, BULK_WIDTH = 200, 1000  # 200 rows of 32 kB: a dump of 1-2 s on a CI machine
DUMP_TRIALS, RESTORE_TRIALS = 6, 4
# The moments of the kills are random; FAULTS_SEED=N repeats a run's (the reports print it).
SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(2**32))
RNG = random.Random(SEED)

# What happens to a database after its snapshot: rows changed in several tables and a new
# table, so that a restore stopped half-way between two tables shows as neither state.
CHANGES = """
INSERT INTO shop_tag (name) VALUES ('fault-1'), ('fault-2');
UPDATE shop_customer SET name = 'changed' WHERE id IN (1, 2, 3);
CREATE TABLE after_dump (id INT PRIMARY KEY);
INSERT INTO after_dump VALUES (1), (2);
"""
BULK_CHANGES = f"""
UPDATE m_bulk SET pad = CONCAT('changed', pad) WHERE id <= 20;
DELETE FROM m_bulk WHERE id > {BULK_ROWS - 10};
"""

# Writers insert one row into each table per transaction; the bulk table, dumped between
# them, makes a dump that is not one consistent read see them apart.
PAIRS = "CREATE TABLE a_pairs (tx INT PRIMARY KEY); CREATE TABLE z_pairs (tx INT PRIMARY KEY);"
PAIR_COUNTS = """SELECT (SELECT count(*) FROM a_pairs), (SELECT count(*) FROM z_pairs),
  (SELECT count(*) FROM a_pairs JOIN z_pairs USING (tx));"""


# --- the two servers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """What differs between PostgreSQL and MariaDB: clients, SQL, and the tools' sessions."""

    name: str
    fill_sql: str
    stray: str  # a regular expression for the scratch databases of a restore, after NAME

    def client(self, db: ServerDatabase) -> tuple[list[str], dict[str, str]]:
        if self.name == "postgres":
            argv = ["psql", "-X", "-h", db.host, "-p", db.port, "-U", db.user, "-d", db.name,
                    "-v", "ON_ERROR_STOP=1", "-Atq", "-F", "\t", "-f", "-"]  # fmt: skip
            return argv, clean_env(PGPASSWORD=db.password)
        binary = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        argv = [binary, "--default-character-set=utf8mb4", "-u", db.user, "-h", db.host,
                "-P", db.port, "-N", "-B", db.name]  # fmt: skip
        return argv, clean_env(MYSQL_PWD=db.password)

    def sql(self, db: ServerDatabase, sql: str) -> str:
        """Run SQL as the application's user."""
        argv, env = self.client(db)
        result = subprocess.run(
            argv, input=sql, capture_output=True, text=True, timeout=120, env=env
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def admin(self, sql: str) -> list[str]:
        out = psql_admin(sql) if self.name == "postgres" else mariadb_admin(sql)
        return out.split()

    def strays(self, db: ServerDatabase) -> list[str]:
        """Every database named like the scratch databases of a restore into ``db``."""
        if self.name == "postgres":
            query = f"SELECT datname FROM pg_database WHERE datname LIKE '{db.name}\\_snapctl\\_%'"
        else:
            query = f"SHOW DATABASES LIKE '{db.name}\\_snapctl\\_%'"
        return sorted(self.admin(query))

    def drop_strays(self, db: ServerDatabase) -> None:
        for name in self.strays(db):
            self.admin(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                if self.name == "postgres"
                else f"DROP DATABASE IF EXISTS `{name}`"
            )

    def kill_tool_sessions(self, db: ServerDatabase, restoring: bool) -> int:
        """End the sessions a dump (or the load of a restore) is streaming data through,
        from outside, as a server restart or a network cut would; return how many."""
        if self.name == "postgres":
            # pg_restore's sessions on the new database; pg_dump's in its transaction (not
            # psql asking the server's version first).
            where = (
                f"datname ~ '^{db.name}_snapctl_new_'"
                if restoring
                else f"datname = '{db.name}' AND xact_start IS NOT NULL "
                "AND query NOT LIKE '%server_version_num%'"
            )
            (count,) = self.admin(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE usename = '{db.user}' AND {where}"
            )
            return int(count)
        where = f"LIKE '{db.name}\\_snapctl\\_%'" if restoring else f"= '{db.name}'"
        verb = "INSERT" if restoring else "SELECT /*!40001 SQL_NO_CACHE */"  # rows streaming
        ids = self.admin(
            "SELECT id FROM information_schema.processlist "
            f"WHERE user = '{db.user}' AND db {where} AND info LIKE '{verb}%'"
        )
        killed = 0
        for session in ids:
            with contextlib.suppress(RuntimeError):  # it ended by itself meanwhile: not killed
                self.admin(f"KILL {session}")
                killed += 1
        return killed

    def settle(self, db: ServerDatabase, timeout: float = 60) -> None:
        """Wait until the user has no session left: a killed client's statement (CREATE
        DATABASE, RENAME, ...) runs on in the server until it notices the client is gone."""
        query = (
            f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{db.user}'"
            if self.name == "postgres"
            else f"SELECT count(*) FROM information_schema.processlist WHERE user = '{db.user}'"
        )
        deadline = time.monotonic() + timeout
        while self.admin(query) != ["0"]:
            assert time.monotonic() < deadline, "the killed tools' sessions never ended"
            time.sleep(0.05)

    def accepts_connections(self, db: ServerDatabase) -> bool:
        if self.name != "postgres":
            return True
        allowed = self.admin(f"SELECT datallowconn FROM pg_database WHERE datname = '{db.name}'")
        return allowed == ["t"]


SERVERS = {
    "postgres": Server(
        "postgres",
        fill_sql=f"""CREATE TABLE m_bulk (id INT PRIMARY KEY, pad TEXT);
            INSERT INTO m_bulk SELECT g, (SELECT string_agg(md5((g * 100000 + x)::text), '')
            FROM generate_series(1, {BULK_WIDTH}) x) FROM generate_series(1, {BULK_ROWS}) g;""",
        stray=r"_snapctl_(new|old)_[0-9a-f]{8}",
    ),
    "mariadb": Server(
        "mariadb",
        fill_sql=f"""SET SESSION group_concat_max_len = 100000000;
            CREATE TABLE m_bulk (id INT PRIMARY KEY, pad LONGTEXT);
            INSERT INTO m_bulk SELECT a.seq, (SELECT GROUP_CONCAT(MD5(a.seq * 100000 + b.seq)
            SEPARATOR '') FROM seq_1_to_{BULK_WIDTH} b) FROM seq_1_to_{BULK_ROWS} a;""",
        stray=r"_snapctl_[0-9a-f]{8}o?",
    ),
}


@dataclass
class Case:
    """A project on one server, its database, and the server's helpers."""

    project: Project
    server: Server

    @property
    def db(self) -> ServerDatabase:
        db: ServerDatabase = self.project.extra["db"]
        return db

    def sql(self, sql: str) -> str:
        return self.server.sql(self.db, sql)


@pytest.fixture(params=ENGINES)
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    server = SERVERS[request.param]
    project: Project = request.getfixturevalue(f"{request.param}_project")
    if server.name == "postgres":
        # Always the swap (a small database would restore in place): the path with the most
        # steps to interrupt.
        project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = "0"
    case = Case(project, server)
    try:
        yield case
    finally:
        server.drop_strays(case.db)  # what kills leave behind; documented where it matters


@pytest.fixture
def bulky(case: Case) -> Case:
    """The case with a bulk table, so that a dump or restore takes a second or two."""
    case.sql(case.server.fill_sql)
    return case


# --- processes ------------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group: snapctl's tools keep its group when orphaned."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # a zombie has finished
                members.append(int(entry.name))
    return members


def wait_for_orphans(pgid: int, timeout: float = 60) -> None:
    """Wait for orphaned tools (no longer our children) to finish what they were doing."""
    deadline = time.monotonic() + timeout
    while members := group_members(pgid):
        assert time.monotonic() < deadline, f"orphans {members} still running"
        time.sleep(0.05)


@dataclass
class Run:
    returncode: int | None  # None: killed
    stdout: str
    stderr: str
    seconds: float


def spawn(project: Project, *args: str, **popen: Any) -> subprocess.Popen[str]:
    return start_snapctl(
        popen.pop("env", project.env),
        *args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def finish(proc: subprocess.Popen[str], started: float, timeout: float = 300) -> Run:
    out, err = proc.communicate(timeout=timeout)
    return Run(proc.returncode, out, err, time.monotonic() - started)


def kill_after(project: Project, delay: float, group: bool, *args: str) -> Run:
    """Run snapctl and kill -9 it (or its process group) after ``delay`` seconds unless it
    ended before; then wait for the orphaned tools to finish by themselves."""
    started = time.monotonic()
    proc = spawn(project, *args)
    try:
        return finish(proc, started, delay)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        wait_for_orphans(proc.pid)  # its own group: it was started in a new session
        return Run(None, out, err, time.monotonic() - started)


def spread(count: int, duration: float, start: float = 0.1) -> list[float]:
    """``count`` random moments spread over ``duration``: one in each equal slice."""
    width = duration * (1 - start) / count
    return [duration * start + width * (i + RNG.random()) for i in range(count)]


def snapctl_json(project: Project, *args: str) -> Any:
    result = project.snapctl(*args, "--json")
    assert result.returncode in (EXIT_OK, EXIT_INTEGRITY), result.stderr
    return json.loads(result.stdout)


HEALTHY: dict[str, list[str]] = {"damaged": [], "hidden": [], "missing": []}


def store_state(project: Project, completed: set[str], cli: bool = False) -> dict[str, list[str]]:
    """What is wrong with the store: snapshots damaged, hidden from ``list`` (a directory
    named like a snapshot that it does not show), or missing though their dump completed.

    Through ``snapctl list --json`` and ``verify --all --json`` with ``cli``, else through the
    library they call (much faster, for the checks after each trial).
    """
    if cli:
        listed = {s["name"] for s in snapctl_json(project, "list")}
        ok = {v["name"]: v["ok"] for v in snapctl_json(project, "verify", "--all")}
    else:
        store = SnapshotStore(project.snapshots)
        listed = {s.name for s in store.snapshots()}
        ok = {name: not store.verify(name) for name in store.names()}
    visible = {name for name in project.store_entries() if not name.startswith(".")}
    return {
        "damaged": sorted(name for name, good in ok.items() if not good),
        "hidden": sorted(visible - listed),
        "missing": sorted(completed - listed),
    }


def temporary_entries(project: Project) -> list[str]:
    return [name for name in project.store_entries() if name.startswith(".")]


def require(condition: bool, what: str) -> None:
    """A check inside an xfail test that must hold however the known bug goes: a failure
    here is an error (RuntimeError), not the expected AssertionError."""
    if not condition:
        raise RuntimeError(what)


def report(text: str) -> None:
    """Shown with ``pytest -s``: what the faults did, for the record."""
    sys.stderr.write(f"\n[faults] {text}\n")


# --- 1 and 2. kill -9 during a dump, then during a restore ----------------------------------


def kill_dumps(case: Case, faults: FaultLedger, seconds: float, completed: set[str]) -> None:
    """Kill dumps at moments spread over a dump's duration; after each, every snapshot the
    store shows is whole, and what a killed dump left is hidden and names its process."""
    project, outcomes = case.project, []
    for i, delay in enumerate(spread(DUMP_TRIALS, seconds * 1.1)):
        run = kill_after(project, delay, i % 2 == 1, "dump")
        case.server.settle(case.db)
        faults.injected += run.returncode is None
        if run.returncode is not None:
            assert run.returncode == EXIT_OK, run.stderr
            completed.add(run.stdout.strip())
        outcomes.append(f"{delay:.2f}s {'killed' if run.returncode is None else 'done'}")
        assert faults.check(HEALTHY, store_state(project, completed))
        for entry in temporary_entries(project):
            assert re.fullmatch(r"\.tmp-\d+-\w+", entry), entry
    report(
        f"{case.server.name} (FAULTS_SEED={SEED}) dump {seconds:.2f}s; kills at "
        f"{', '.join(outcomes)}; temporary directories left: {len(temporary_entries(project))}"
    )


def kill_restores(
    case: Case, faults: FaultLedger, names: dict[str, str], digests: dict[str, Any]
) -> None:
    """Restore A and B in turn, killed at moments spread over a restore's duration: the
    database is always exactly A or B afterwards."""
    project, db, server = case.project, case.db, case.server
    first = finish(spawn(project, "restore", "--yes", names["A"]), time.monotonic())
    assert first.returncode == EXIT_OK, first.stderr
    assert faults.check(digests["A"], project.digest())
    current, outcomes, strays = "A", [], []
    for i, delay in enumerate(spread(RESTORE_TRIALS, first.seconds * 1.1, start=0.3)):
        target = "B" if current == "A" else "A"
        run = kill_after(project, delay, i % 2 == 1, "restore", "--yes", names[target])
        server.settle(db)
        faults.injected += run.returncode is None
        assert run.returncode in (None, EXIT_OK), run.stderr
        assert faults.check(True, server.accepts_connections(db)), f"trial {i}: refusing"
        now = project.digest()
        found = next((state for state, digest in digests.items() if digest == now), None)
        assert faults.check(digests[found or target], now), f"trial {i}: neither A nor B"
        assert found == target or run.returncode is None
        strays = server.strays(db)
        # Each restore first drops what killed ones left: at most this trial's remains. On
        # PostgreSQL the new database (killed before the renames) or the old one (after); on
        # MariaDB the pair <NAME>_snapctl_<8 hex> and ...o of one restore.
        most = 1 if server.name == "postgres" else 2
        assert faults.check(True, len(strays) <= most), f"trial {i}: {strays}"
        tokens = {re.sub(r"o$", "", name) for name in strays}
        assert server.name == "postgres" or faults.check(True, len(tokens) <= 1), strays
        outcomes.append(f"{delay:.2f}s {current}->{found} ({len(strays)} scratch databases)")
        current = found or target
    # Killed restores leave their scratch databases, and the unpacked snapshot in the store;
    # the next dump or restore removes the second, the next restore the first.
    pattern = re.compile(re.escape(db.name) + server.stray)
    assert all(pattern.fullmatch(name) for name in strays), strays
    unpacked = temporary_entries(project)
    assert all(re.fullmatch(r"\.tmp-\d+-\w+", entry) for entry in unpacked), unpacked
    project.dump()
    assert faults.check([], temporary_entries(project))
    assert faults.check(strays, server.strays(db))
    restored = project.snapctl("restore", "--yes", names[current])
    assert restored.returncode == EXIT_OK, restored.stderr
    assert faults.check(digests[current], project.digest())
    assert faults.check([], server.strays(db))
    report(
        f"{server.name} restore {first.seconds:.2f}s; kills at {', '.join(outcomes)}; "
        f"unpacked snapshots left in the store: {len(unpacked)}; scratch databases at the "
        f"end, also after a dump: {strays}; after the next restore: []"
    )


def test_kill_9_during_dump_and_restore(bulky: Case, faults: FaultLedger) -> None:
    """One database for both, to share its bulk and two snapshots: A before the dumps are
    killed, B (after changes) the first dump afterwards."""
    project = bulky.project
    digests = {"A": project.digest()}
    first = finish(spawn(project, "dump", "--label", "A"), time.monotonic())
    assert first.returncode == EXIT_OK, first.stderr
    names = {"A": first.stdout.strip()}
    completed = {names["A"]}
    kill_dumps(bulky, faults, first.seconds, completed)

    bulky.sql(CHANGES + BULK_CHANGES)
    digests["B"] = project.digest()
    names["B"] = project.dump("--label", "B")  # the next dump works, and cleans up
    completed.add(names["B"])
    assert faults.check([], temporary_entries(project))
    assert faults.check(HEALTHY, store_state(project, completed, cli=True))
    assert faults.check([], bulky.server.strays(bulky.db))  # a dump makes no database
    kill_restores(bulky, faults, names, digests)


# Runs snapctl with its swap (the one transaction that renames, on snapctl's own connection)
# wrapped: kill -9 just before it, after the restore has filled the new database, as far as
# it gets before committing anything; or just after it commits, before the old database is
# dropped.
SWAP_KILLER = """
import os, runpy, signal, sys
from snapctl.connectors.postgres import swap as postgres
real_swap = postgres.swap
def swap(*args, **kwargs):
    if "{moment}" == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_swap(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
postgres.swap = swap
sys.argv[0] = "snapctl"
runpy.run_module("snapctl", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("moment", ["before", "after"])
def test_postgres_kill_around_the_swap(
    postgres_project: Project, faults: FaultLedger, moment: str
) -> None:
    """kill -9 right before or after the swap's transaction: the database is the original or
    the snapshot, accepting connections; the next dump and restore work, and the restore
    drops the scratch database left, but neither a postgres-template snapshot's copy nor
    databases merely named alike."""
    db, server = postgres_project.extra["db"], SERVERS["postgres"]
    template_snapshot = postgres_project.dump("--connector", "postgres-template")
    # The swap, whatever the size (this setting names the connector: after the copy above).
    postgres_project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = "0"
    copies = server.strays(db)  # <NAME>_snapctl_<8 hex>: a snapshot, not a scratch database
    require(len(copies) == 1, f"postgres-template copies: {copies}")
    not_ours = f"{db.name}_snapctl_old_0123abcd"  # the right name, another role's database
    psql_admin(f'CREATE DATABASE "{not_ours}"')
    not_scratch = f"{db.name}_snapctl_new_0123abcdef"  # ours, but not a swap's name
    server.sql(db, f'CREATE DATABASE "{not_scratch}";')
    keep = sorted([*copies, not_ours, not_scratch])
    name = postgres_project.dump()
    snapshot = postgres_project.digest()
    server.sql(db, CHANGES)
    changed = postgres_project.digest()
    killer = subprocess.Popen(
        [sys.executable, "-c", SWAP_KILLER.format(moment=moment), "restore", "--yes", name],
        cwd=EXAMPLE,
        env=postgres_project.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    run = finish(killer, time.monotonic())
    faults.injected += 1
    try:
        require(run.returncode == -signal.SIGKILL, f"the wrapper did not kill it: {run.stderr}")
        server.settle(db)
        left = sorted(set(server.strays(db)) - set(keep))
        scratch = "new" if moment == "before" else "old"
        require(
            len(left) == 1
            and re.fullmatch(re.escape(db.name) + f"_snapctl_{scratch}_[0-9a-f]{{8}}", left[0])
            is not None,
            f"scratch databases left: {left}",
        )
        accepting = server.accepts_connections(db)
        state = postgres_project.digest()
        after = [postgres_project.snapctl(*args) for args in (("dump",), ("restore", "--yes"))]
        report(
            f"postgres killed {moment} the swap: accepting connections: {accepting}; left "
            f"{left}; next dump and restore: "
            + "; ".join(f"exit {r.returncode} {r.stderr.strip()}" for r in after)
            + f"; then left {server.strays(db)}"
        )
        assert faults.check(True, accepting)
        assert faults.check(changed if moment == "before" else snapshot, state)
        assert faults.check([EXIT_OK, EXIT_OK], [r.returncode for r in after])
        assert faults.check(state, postgres_project.digest())
        assert faults.check(keep, server.strays(db))  # the scratch database, and only it, gone
        # The postgres-template snapshot survived whole: it restores.
        restored = postgres_project.snapctl("restore", "--yes", template_snapshot)
        assert restored.returncode == EXIT_OK, restored.stderr
        assert faults.check(snapshot, postgres_project.digest())
        assert faults.check(keep, server.strays(db))
    finally:
        server.drop_strays(db)


# Acts on the one client session that swaps the tables in (its script holds the RENAME and
# the marker) and runs every other session as is. "orphan": kills snapctl (its parent) just
# before that session starts, and runs it as an orphan. "cut": runs the script only up to the
# RENAME, as a client killed right after it would, then kills snapctl. "before": kills
# snapctl without running it.
MARIADB_SHIM = """#!/bin/sh
script=$(mktemp)
cat > "$script"
if grep -q "RENAME TABLE" "$script" && grep -q snapctl_pending "$script"; then
  case "{moment}" in
    orphan) kill -9 "$PPID"; "{real}" "$@" < "$script"; status=$? ;;
    cut) sed '/^RENAME TABLE /q' "$script" > "$script.cut"
         "{real}" "$@" < "$script.cut"; status=$?; kill -9 "$PPID" ;;
    *) kill -9 "$PPID"; status=137 ;;
  esac
else
  "{real}" "$@" < "$script"
  status=$?
fi
rm -f "$script" "$script.cut"
exit $status
"""

MARIADB_OBJECTS = """
CREATE VIEW cheap_products AS SELECT id, sku FROM shop_product WHERE price < 10;
CREATE TRIGGER tag_trim BEFORE INSERT ON shop_tag FOR EACH ROW SET NEW.name = TRIM(NEW.name);
"""


def mariadb_objects(db: ServerDatabase) -> list[str]:
    return sorted(
        mariadb_admin(
            f"SELECT table_name FROM information_schema.views WHERE table_schema = '{db.name}' "
            f"UNION ALL SELECT trigger_name FROM information_schema.triggers "
            f"WHERE trigger_schema = '{db.name}'"
        ).split()
    )


def mariadb_shim_env(project: Project, tmp_path: Path, moment: str) -> dict[str, str]:
    """The project's environment with MARIADB_SHIM as the mariadb and mysql clients."""
    shims = tmp_path / f"bin-{moment}"
    shims.mkdir()
    real = shutil.which("mariadb") or shutil.which("mysql")
    for tool in ("mariadb", "mysql"):
        (shims / tool).write_text(MARIADB_SHIM.format(real=real, moment=moment))
        (shims / tool).chmod(0o755)
    return {**project.env, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}


def mariadb_restore_with_shim(project: Project, tmp_path: Path, name: str, moment: str) -> Run:
    env = mariadb_shim_env(project, tmp_path, moment)
    proc = spawn(project, "restore", "--yes", name, env=env)
    run = finish(proc, time.monotonic())
    wait_for_orphans(proc.pid)
    return run


def test_mariadb_kill_between_rename_and_recreating_views(
    mariadb_project: Project, tmp_path: Path, faults: FaultLedger
) -> None:
    """snapctl kill -9ed as the session that swaps the tables starts: that one session also
    recreates the views and triggers and drops the scratch databases, so the orphaned client
    finishes the restore whole."""
    db, server = mariadb_project.extra["db"], SERVERS["mariadb"]
    server.sql(db, MARIADB_OBJECTS)
    objects = mariadb_objects(db)
    require(objects == ["cheap_products", "tag_trim"], f"objects: {objects}")
    name = mariadb_project.dump()
    snapshot = mariadb_project.digest()
    server.sql(db, CHANGES)
    run = mariadb_restore_with_shim(mariadb_project, tmp_path, name, "orphan")
    faults.injected += 1
    server.settle(db)
    left = server.strays(db)
    report(f"mariadb killed as the swap began; the orphan left scratch databases {left}")
    require(run.returncode == -signal.SIGKILL, f"the wrapper did not kill it: {run.stderr}")
    assert faults.check(snapshot, mariadb_project.digest())
    assert faults.check(objects, mariadb_objects(db))
    assert faults.check([], left)


def test_mariadb_client_killed_right_after_the_rename(
    mariadb_project: Project, tmp_path: Path, faults: FaultLedger
) -> None:
    """The swapping client and snapctl both die right after the RENAME: the snapshot's tables
    are live, without views and triggers, until the next restore, which first finishes that
    one from the marker it left (before anything else: here it is killed before its own
    swap) and drops its scratch databases, but not databases merely named alike."""
    db, server = mariadb_project.extra["db"], SERVERS["mariadb"]
    server.sql(db, MARIADB_OBJECTS)
    objects = mariadb_objects(db)
    require(objects == ["cheap_products", "tag_trim"], f"objects: {objects}")
    alike = [f"{db.name}_snapctl_0123abcdef", f"{db.name}_snapctl_0123abcdoo"]
    try:
        for other in alike:
            server.sql(db, f"CREATE DATABASE `{other}`;")
        name = mariadb_project.dump()
        snapshot = mariadb_project.digest()
        server.sql(db, CHANGES)
        run = mariadb_restore_with_shim(mariadb_project, tmp_path, name, "cut")
        faults.injected += 1
        require(run.returncode == -signal.SIGKILL, f"the wrapper did not kill it: {run.stderr}")
        server.settle(db)
        left = sorted(set(server.strays(db)) - set(alike))
        require(faults.check(snapshot, mariadb_project.digest()), "the tables are a mix")
        require(len(left) == 2, f"scratch databases: {left}")
        assert faults.check([], mariadb_objects(db))  # the window the marker covers

        run = mariadb_restore_with_shim(mariadb_project, tmp_path, name, "before")
        faults.injected += 1
        require(run.returncode == -signal.SIGKILL, f"the wrapper did not kill it: {run.stderr}")
        server.settle(db)
        then = sorted(set(server.strays(db)) - set(alike))
        report(f"mariadb client killed after the RENAME: left {left}; next restore: {then}")
        assert faults.check(snapshot, mariadb_project.digest())
        assert faults.check(objects, mariadb_objects(db))
        assert faults.check([], sorted(set(left) & set(then)))  # the first restore's: gone
        assert faults.check(2, len(then))  # the second's, killed before its swap

        restored = mariadb_project.snapctl("restore", "--yes", name)
        assert restored.returncode == EXIT_OK, restored.stderr
        assert faults.check(snapshot, mariadb_project.digest())
        assert faults.check(objects, mariadb_objects(db))
        assert faults.check(sorted(alike), server.strays(db))
    finally:
        server.drop_strays(db)


# --- 3. the server session dies mid-dump and mid-restore ------------------------------------


def kill_sessions_during(case: Case, restoring: bool, *args: str) -> tuple[Run, int]:
    """Run snapctl and end its tools' server sessions from outside once data flows."""
    started = time.monotonic()
    proc = spawn(case.project, *args)
    killed = 0
    while proc.poll() is None and not killed and time.monotonic() - started < 60:
        killed = case.server.kill_tool_sessions(case.db, restoring)
        time.sleep(0.02)
    return finish(proc, started), killed


def clear_failure(run: Run) -> str:
    """The one error line of a failed run, naming what failed, with no Python exception
    leaking through (``ValueError: ...``), as a bug inside snapctl would show."""
    line = one_error_line(run.stderr)
    assert "failed" in line or "was killed by" in line, line
    assert not re.search(r"\b[A-Z][a-z]\w*(Error|Exception): ", line), line
    return line


TRIES_TO_SEE_A_SESSION = 6


def test_lost_server_session_fails_cleanly(bulky: Case, faults: FaultLedger) -> None:
    """The tools' sessions are ended from outside mid-dump, then mid-restore: each fails
    with one line saying so, keeps no snapshot, changes no database, leaves nothing."""
    project, db, server = bulky.project, bulky.db, bulky.server
    name = project.dump()
    # A dump can end before the poll sees its session (the faster snapctl gets, the likelier,
    # and the likelier still on a loaded machine): try again.
    for _ in range(TRIES_TO_SEE_A_SESSION):
        dumped, killed = kill_sessions_during(bulky, False, "dump")
        if killed or dumped.returncode != EXIT_OK:
            break
        shutil.rmtree(project.snapshots / dumped.stdout.strip())
    faults.injected += killed > 0
    assert killed, "the dump's session was never seen"
    assert dumped.returncode == EXIT_FAILED, dumped.stderr
    report(f"{server.name} dump, session killed: {clear_failure(dumped)}")
    assert faults.check([name], project.store_entries())  # nothing kept

    for _ in range(TRIES_TO_SEE_A_SESSION):  # a restore, too, can end before it is seen
        bulky.sql(CHANGES + BULK_CHANGES)
        before = project.digest()
        restored, killed = kill_sessions_during(bulky, True, "restore", "--yes", name)
        if killed and restored.returncode != EXIT_OK:
            break
    faults.injected += killed > 0
    assert killed, "the restore's session was never seen"
    assert restored.returncode == EXIT_FAILED, restored.stderr
    report(f"{server.name} restore, session killed: {clear_failure(restored)}")
    assert faults.check(before, project.digest())
    assert faults.check([], server.strays(db))
    assert faults.check([name], project.store_entries())


# --- 4 and 5. a full disk, two restores at once ---------------------------------------------


def file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_then_two_restores_at_once(case: Case, faults: FaultLedger) -> None:
    """A dump and a restore that run out of space fail cleanly; then two restores of the
    same snapshot at once: one waits for no one and fails clearly, or both succeed."""
    project, db, server = case.project, case.db, case.server
    snapshot = project.digest()
    name = project.dump()
    limit = 16 * 1024
    assert sum(p.stat().st_size for p in (project.snapshots / name).iterdir()) > 2 * limit
    entries = project.store_entries()
    case.sql(CHANGES)
    changed = project.digest()
    # The dump's tool writes the dump; the restore unpacks the snapshot in snapctl itself.
    for args in (("dump",), ("restore", "--yes", name)):
        run = finish(spawn(project, *args, preexec_fn=file_size_limit(limit)), time.monotonic())
        faults.injected += 1
        line = clear_failure(run)
        report(f"{server.name} {args[0]} on a full disk: exit {run.returncode}: {line}")
        assert "unexpected error" not in line
        assert run.returncode == EXIT_FAILED
        assert faults.check(entries, project.store_entries())  # no snapshot, no leftover
    assert faults.check(changed, project.digest())
    assert faults.check([], server.strays(db))

    started = time.monotonic()
    procs = [spawn(project, "restore", "--yes", name) for _ in range(2)]
    runs = [finish(proc, started) for proc in procs]
    faults.injected += 1
    codes = sorted(proc.returncode for proc in procs)
    assert codes in ([EXIT_OK, EXIT_OK], [EXIT_OK, EXIT_FAILED]), [run.stderr for run in runs]
    for run in runs:
        if run.returncode == EXIT_FAILED:
            line = one_error_line(run.stderr)
            assert "another snapctl is restoring into database 'default'" in line
    report(f"{server.name} two restores at once: exit codes {codes}")
    assert faults.check(snapshot, project.digest())
    assert faults.check([], server.strays(db))


# --- 6. a dump during heavy writes ----------------------------------------------------------


def pair_counts(case: Case) -> list[int]:
    return [int(n) for n in case.sql(PAIR_COUNTS).split()]


def test_dump_during_writes_keeps_whole_transactions(
    bulky: Case, tmp_path: Path, faults: FaultLedger
) -> None:
    """A writer commits two rows per transaction, one in each of two tables that the dump
    reads a bulk table apart; the snapshot holds every transaction whole or not at all."""
    project = bulky.project
    bulky.sql(PAIRS)
    script = tmp_path / "writes.sql"
    script.write_text(
        "".join(
            f"BEGIN;\nINSERT INTO a_pairs VALUES ({i});\nINSERT INTO z_pairs VALUES ({i});\n"
            "COMMIT;\n"
            for i in range(1, 200_001)
        )
    )
    argv, env = bulky.server.client(bulky.db)
    with open(script) as stdin:
        writer = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while pair_counts(bulky)[0] < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        during = pair_counts(bulky)[0]
        name = project.dump()
        after = pair_counts(bulky)[0]
        assert writer.poll() is None, "the writer finished before the dump did"
    finally:
        writer.kill()
        writer.wait()
    faults.injected += 1
    assert after > during  # transactions committed while the dump ran
    project.snapctl("restore", "--yes", name, check=True)
    a, z, both = pair_counts(bulky)
    report(
        f"{bulky.server.name} dump during writes: {after - during} transactions committed "
        f"while it ran; the snapshot holds {a} whole ones"
    )
    assert during <= a <= after
    assert faults.check([a, a, a], [a, z, both])
    assert (a + z) % 2 == 0


# --- instant restores: kill -9 while preparing, around the instant swap, and refilling -------

# The instant swap (one psql run) wrapped likewise: kill -9 just before psql starts, or just
# after it has committed the renames, before the restore records anything.
INSTANT_SWAP_KILLER = """
import os, runpy, signal, sys
from snapctl.connectors.postgres import prepared
real = prepared._swap_in_by_psql
def swap(*args, **kwargs):
    if "{moment}" == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    swapped = real(*args, **kwargs)
    assert swapped is not None, "the swap did not go the psql way"
    os.kill(os.getpid(), signal.SIGKILL)
prepared._swap_in_by_psql = swap
sys.argv[0] = "snapctl"
runpy.run_module("snapctl", run_name="__main__", alter_sys=True)
"""
PREPARE_TRIALS = 3


def prepared_copies(server: Server, db: ServerDatabase) -> list[str]:
    pattern = re.compile(re.escape(db.name) + r"_snapctl_prep_[0-9a-f]{8}")
    return [name for name in server.strays(db) if pattern.fullmatch(name)]


def test_postgres_kills_while_preparing_and_swapping_in(
    postgres_project: Project, faults: FaultLedger
) -> None:
    """kill -9 at moments spread over a preparation leaves the live database as it was and
    a copy the next command drops; kill -9 right before or after the instant swap leaves the
    original or the snapshot; a background refill killed leaves nothing the next restore
    does not clean up. At the end, one ready copy and no other side database."""
    project, server = postgres_project, SERVERS["postgres"]
    db = project.extra["db"]
    server.sql(db, server.fill_sql)
    snapshot = project.digest()
    name = project.dump()
    first = finish(spawn(project, "prepare"), time.monotonic())
    assert first.returncode == EXIT_OK, first.stderr
    project.snapctl("delete", "--yes", name, check=True)  # drops the copy with it
    assert faults.check([], prepared_copies(server, db))
    name = project.dump()
    outcomes = []
    for i, delay in enumerate(spread(PREPARE_TRIALS, first.seconds * 1.1, start=0.2)):
        run = kill_after(project, delay, i % 2 == 1, "prepare")
        server.settle(db)
        faults.injected += run.returncode is None
        assert faults.check(snapshot, project.digest()), f"trial {i}: live database changed"
        outcomes.append(f"{delay:.2f}s: {len(prepared_copies(server, db))} copies")
    ready = json.loads(project.snapctl("prepare", "--json", check=True).stdout)
    assert faults.check([ready["prepared"][0]["copy"]], prepared_copies(server, db))

    server.sql(db, CHANGES)
    changed = project.digest()
    for moment in ("before", "after"):
        killer = subprocess.Popen(
            [sys.executable, "-c", INSTANT_SWAP_KILLER.format(moment=moment),
             "restore", "--yes", name],
            cwd=EXAMPLE, env=project.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        run = finish(killer, time.monotonic())
        faults.injected += 1
        server.settle(db)
        assert faults.check(True, server.accepts_connections(db))
        now = project.digest()
        expected = changed if moment == "before" else snapshot
        assert faults.check(expected, now), f"{moment}: neither the original nor the snapshot"
        outcomes.append(f"swap {moment}: {'original' if now == changed else 'snapshot'}")
        if moment == "before":
            continue
        # The copy is used up; the retired database was not recorded (killed right after
        # the rename): the next restore's clean-up drops it.
    # A refill killed: the restore's background preparation, killed by killing its group.
    restored = json.loads(project.snapctl("restore", "--yes", "--json", check=True).stdout)
    assert faults.check(snapshot, project.digest())
    project.snapctl("restore", "--yes", SNAPCTL_PREPARE="latest", check=True)
    time.sleep(0.3)
    subprocess.run(["pkill", "-KILL", "-f", f"prepare {name} --background"], check=False)
    server.settle(db)
    final = json.loads(project.snapctl("prepare", "--json", check=True).stdout)
    assert faults.check("ready", final["prepared"][0]["state"])
    instant = json.loads(project.snapctl("restore", "--yes", "--json", check=True).stdout)
    assert faults.check(["default"], instant["instant"])
    assert faults.check(snapshot, project.digest())
    server.settle(db)
    deadline = time.monotonic() + 60
    while any("_old_" in s for s in server.strays(db)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = server.strays(db)
    assert faults.check([], [s for s in left if "_prep_" not in s]), left
    report(f"postgres prepare kills: {', '.join(outcomes)}; restore after: {restored['instant']}")
