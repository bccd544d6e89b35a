"""Time snapctl against the engines' own tools and its peers, as whole processes.

    python benchmarks/run.py                          # 1 MB and 30 MB, all engines, snapctl only
    python benchmarks/run.py --with-peers --runs 3    # django-dbbackup and django-snapshots too
    python benchmarks/run.py --sizes 1mb,30mb,300mb,2gb --with-peers --json results.json
    python benchmarks/run.py --engines sqlite --sizes 1mb --with-wagtail
    python benchmarks/run.py --engines sqlite --rows 50000 --variants all

Sizes (--sizes, a comma list; default 1mb,30mb) are the sizes developers have: the example
project's database filled by its bulk_fill command with the rows that make the SQLite file
about that size (measured: 790, 27,200, 264,000 and 1,730,000 rows give 1.0, 30.0, 300.0 and
1997 MB). The same rows take other room on PostgreSQL and MariaDB; the table shows each
engine's database size. --rows N (or --large, 2,000,000 rows) times one size given in rows.

Peers (pip install -e ".[bench]"), timed in the same rounds:
- --with-peers: both below;
- --with-dbbackup: django-dbbackup's `dbbackup` / `dbrestore`, plain (its gzip, -z, too with
  --variants ...,dbbackup-z);
- --with-django-snapshots: django-snapshots' `snapshots backup --name bench database` /
  `snapshots restore --name bench database`, the database alone (no media, no separate
  pip-freeze artifact; its manifest still records pip freeze on every backup).
A peer that fails on an engine is shown as n/a with its error instead of ending the run.

For each size and engine it builds the database (customers with JSON and long text, orders,
order lines, products with binary images, many-to-many tags, indexes and foreign keys), then
times, median of --runs, in rounds that run every tool once in turn:
- snapctl dump and restore, its default (zstd) only unless --variants names more (zstd, gzip,
  none, sql-zstd, template, age: zstd encrypted with age, or all);
- the engine's own tool: SQLite's `.backup`/`.restore`, `pg_dump -Fc` / `pg_restore -j`, and
  `mariadb-dump` / `mariadb < dump.sql`;
- the peers asked for;
- at 1mb, where a run takes well under a second: at least 15 rounds, and beside the tools the
  floor of any Django command, `python -c` importing the settings module and reading
  DATABASES, and `python -c "import django; django.setup()"`.
Before them, `snapctl --version` against `python -c "import typer"` (start-up, 15 rounds).

--with-wagtail builds a Wagtail site (`wagtail start`, migrated on SQLite; pip install
wagtail) and times snapctl dump and restore in it against the same two Django commands: the
cost of a large app registry. Skipped, with the reason printed, when Wagtail is missing.

Every run is a whole process, timed from start to exit, its peak RSS taken by GNU time (the
largest resident set of the process and of the children it waited for). The table gives, per
size, engine and operation, each tool's seconds and peak RSS, its ratio to and difference
from the engine's tool, and for snapctl its ratio to the best peer; then issue 13's targets,
each met or not. --json and --markdown write the same results to files.

A run's clock stops when the command exits, as a developer waits for it; what it left to
write back is not counted (a sync comes before each run). Tools differ there: snapctl
fsyncs its snapshots, django-dbbackup's SQLite restore copies the file over the database
without a sync. --durable stops each clock after a sync instead, counting that write-back.

PostgreSQL and MariaDB are reached as their superusers on 127.0.0.1 without a password (the
machine's trust setup); the databases it creates are dropped afterwards.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
PYTHON = sys.executable
GNU_TIME = "/usr/bin/time"
SETTINGS_IMPORT = "from django.conf import settings; settings.DATABASES"
DJANGO_SETUP = "import django; django.setup()"
SETTINGS_TOOL = "python -c 'settings.DATABASES'"
SETUP_TOOL = "python -c 'django.setup()'"
# Start-up bound runs are timed at least this often: a few runs of ~0.1-1 s leave a ratio
# between two of them to chance.
MIN_ROUNDS_STARTUP = 15
# --durable: each run's clock stops only once what it wrote is on disk (set by main()).
DURABLE = False


@dataclass(frozen=True)
class Size:
    """A database size developers have, as the rows bulk_fill needs for it on SQLite."""

    name: str
    rows: int
    # Its runs take well under a second: time them at least MIN_ROUNDS_STARTUP times, with
    # the Django start-up commands beside them as the floor.
    startup_bound: bool = False
    # Checked against the engine's tool by the difference in seconds (issue 13).
    small: bool = False


SIZES = {
    size.name: size
    for size in (
        Size("1mb", 790, startup_bound=True, small=True),
        Size("30mb", 27_200, small=True),
        Size("300mb", 264_000),
        Size("2gb", 1_730_000),
    )
}


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    # What the command printed (instant.py reads its --json and its notices).
    output: str = ""
    errors: str = ""


class CommandFailed(Exception):
    """A timed command exited with an error; the message ends with its stderr."""

    def __init__(self, command: list[str] | str, stderr: str) -> None:
        super().__init__(f"benchmark command failed: {command}\n{stderr[-2000:]}")
        lines = stderr.strip().splitlines()
        self.reason = lines[-1] if lines else "exited with an error"


def timed(
    command: list[str] | str, env: dict[str, str], cwd: Path = EXAMPLE, *, sync: bool = True
) -> Measured:
    """Run a command (a shell string for redirections); its wall seconds and peak RSS.

    The seconds are the benchmark's own clock around the run (GNU time's %e counts in
    10 ms steps, coarse for runs of 0.1 s); the peak RSS is GNU time's %M. GNU time, not
    this process's wait4: a child forked from this Python counts its parent's pages until
    it executes the tool. Dirty pages of the previous run are written out first, so no run
    pays for another's (unless ``sync`` is false: a run meant to follow another at once);
    with --durable the write-back of its own is counted. stdin is /dev/null: some tools ask
    for confirmation at a terminal."""
    if sync:
        os.sync()
    with tempfile.NamedTemporaryFile("r") as report:
        argv = [GNU_TIME, "-f", "%M", "-o", report.name]
        argv += ["sh", "-c", command] if isinstance(command, str) else command
        start = time.perf_counter()
        result = subprocess.run(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if DURABLE:
            os.sync()
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise CommandFailed(command, result.stderr)
        kilobytes = report.read().split()[-1]
    return Measured(seconds, int(kilobytes) / 1024, result.stdout, result.stderr)


def snapctl(*args: str) -> list[str]:
    return [PYTHON, "-m", "snapctl", *args]


def python_c(code: str) -> list[str]:
    return [PYTHON, "-c", code]


def file_size(path: Path) -> int:
    return path.stat().st_size


def last_snapshot_size(snapshots: Path) -> int:
    newest = max((p for p in snapshots.iterdir() if p.name[0].isdigit()), key=lambda p: p.name)
    return sum(f.stat().st_size for f in newest.iterdir() if f.name != "manifest.json")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAMPLE_", "SNAPCTL_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # Bytecode is cached, as for an installed package: with PYTHONDONTWRITEBYTECODE set (as
    # in some sessions) and a fresh editable checkout, every run compiled snapctl's modules
    # from source, some 0.2 s of CPU per command.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Plain dumps and restores: a copy prepared in the background after each dump would load
    # the server while the next tool is timed (benchmarks/instant.py times prepared copies).
    env["SNAPCTL_PREPARE"] = "off"
    env.update(extra)
    return env


def age_variant(work: Path) -> tuple[str, list[str], dict[str, str]]:
    """The default dump encrypted with age to a new identity, restored with it."""
    import pyrage

    path = work / "age-identity.txt"
    identity = pyrage.x25519.Identity.generate()
    path.write_text(f"{identity}\n")
    path.chmod(0o600)
    return ("age", ["--encrypt-to", str(identity.to_public())], {"SNAPCTL_IDENTITY": str(path)})


# --- engines -------------------------------------------------------------------------------


@dataclass
class Engine:
    """How to make, fill, size and time one engine's database."""

    name: str
    env: dict[str, str]
    # (label, extra snapctl dump arguments, extra environment)
    variants: list[tuple[str, list[str], dict[str, str]]]
    reference_dump: Callable[[Path], str | list[str]]
    reference_restore: Callable[[Path], str | list[str]]
    reference_file: str
    # What the table calls the engine's tool, for the dump and for the restore.
    reference_names: tuple[str, str]
    database_bytes: Callable[[], int]
    # Waits out the background work a bulk load leaves (vacuum, purge), so no timed run
    # pays for it.
    settle: Callable[[], object] = lambda: None


PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres"]


def psql(sql: str, database: str = "postgres") -> str:
    result = subprocess.run(
        [*PSQL, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def mariadb(sql: str) -> str:
    client = shutil.which("mariadb") or "mysql"
    result = subprocess.run(
        [client, "-uroot", "-h127.0.0.1", "-N", "-e", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


@contextmanager
def sqlite_engine(work: Path) -> Iterator[Engine]:
    db = work / "bench.sqlite3"
    yield Engine(
        name="sqlite",
        env=base_env(EXAMPLE_DB_NAME=str(db)),
        variants=[
            ("zstd", [], {}),
            ("gzip", ["--compress", "gzip"], {}),
            ("none", ["--compress", "none"], {}),
            # The SQL-script format, chosen in the example's settings.
            ("sql-zstd", [], {"EXAMPLE_SQLITE_FORMAT": "sql"}),
            age_variant(work),
        ],
        reference_dump=lambda out: ["sqlite3", str(db), f".backup '{out}'"],
        reference_restore=lambda out: ["sqlite3", str(db), f".restore '{out}'"],
        reference_file="reference.sqlite3",
        reference_names=("sqlite3 .backup", "sqlite3 .restore"),
        database_bytes=lambda: db.stat().st_size,
    )


# The tables with their indexes and TOAST, as on the other engines: pg_database_size would
# add the 7 MB of an empty database's catalogs.
POSTGRES_TABLES_SIZE = """
    SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


@contextmanager
def postgres_engine(work: Path) -> Iterator[Engine]:
    name = f"snapctl_bench_{secrets.token_hex(3)}"
    psql(f"CREATE DATABASE {name}")
    scratch = f"{name}_ref"
    pg = "-h 127.0.0.1 -U postgres"
    jobs = os.cpu_count() or 2
    try:
        yield Engine(
            name="postgresql",
            env=base_env(
                EXAMPLE_DB_ENGINE="postgresql",
                EXAMPLE_DB_NAME=name,
                EXAMPLE_DB_USER="postgres",
                EXAMPLE_DB_HOST="127.0.0.1",
                EXAMPLE_DB_PORT="5432",
            ),
            variants=[
                ("zstd", [], {}),
                ("gzip", ["--compress", "gzip"], {}),
                ("none", ["--compress", "none"], {}),
                ("template", ["--connector", "postgres-template"], {}),
                age_variant(work),
            ],
            reference_dump=lambda out: f"pg_dump {pg} -Fc -f '{out}' {name}",
            # Like snapctl's swap: a new database restored in parallel from the file.
            reference_restore=lambda out: (
                f"dropdb {pg} --if-exists {scratch} && createdb {pg} {scratch} && "
                f"pg_restore {pg} -j {jobs} -d {scratch} '{out}'"
            ),
            reference_file="reference.pgdump",
            reference_names=("pg_dump -Fc", f"pg_restore -j{jobs}"),
            database_bytes=lambda: int(psql(POSTGRES_TABLES_SIZE, name)),
            settle=lambda: psql("VACUUM ANALYZE", name),
        )
    finally:
        # The postgres-template connector's copies, <name>_snapctl_<hex>, go too.
        listed = psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{name}%'")
        for database in listed.split():
            psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextmanager
def mariadb_engine(work: Path) -> Iterator[Engine]:
    name = f"snapctl_bench_{secrets.token_hex(3)}"
    mariadb(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    dump = shutil.which("mariadb-dump") or "mysqldump"
    client = shutil.which("mariadb") or "mysql"

    def database_bytes() -> int:
        # InnoDB's sizes are estimates until its statistics are recomputed.
        mariadb(f"ANALYZE TABLE {tables_of(name)}")
        return int(
            mariadb(
                "SELECT COALESCE(SUM(data_length + index_length), 0) "
                f"FROM information_schema.tables WHERE table_schema = '{name}'"
            )
        )

    try:
        yield Engine(
            name="mariadb",
            env=base_env(
                EXAMPLE_DB_ENGINE="mysql",
                EXAMPLE_DB_NAME=name,
                EXAMPLE_DB_USER="root",
                EXAMPLE_DB_HOST="127.0.0.1",
                EXAMPLE_DB_PORT="3306",
            ),
            variants=[
                ("zstd", [], {}),
                ("gzip", ["--compress", "gzip"], {}),
                ("none", ["--compress", "none"], {}),
                age_variant(work),
            ],
            reference_dump=lambda out: (
                f"{dump} -uroot -h127.0.0.1 --single-transaction --routines --triggers "
                f"--events --hex-blob {name} > '{out}'"
            ),
            reference_restore=lambda out: f"{client} -uroot -h127.0.0.1 {name} < '{out}'",
            reference_file="reference.sql",
            reference_names=(Path(dump).name, f"{Path(client).name} < dump.sql"),
            database_bytes=database_bytes,
            # MariaDB 10.5.7+: returns once InnoDB has purged the load's undo history.
            settle=lambda: mariadb("SET GLOBAL innodb_max_purge_lag_wait=0"),
        )
    finally:
        # The mysql connector's side databases, <name>_snapctl_<hex>..., go too.
        listed = mariadb(
            "SELECT schema_name FROM information_schema.schemata "
            f"WHERE schema_name = '{name}' OR schema_name LIKE '{name}\\_%'"
        )
        for database in listed.split():
            mariadb(f"DROP DATABASE IF EXISTS `{database}`")


def tables_of(schema: str) -> str:
    """The schema's tables, as a list for ANALYZE TABLE."""
    listed = mariadb(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'"
    )
    return ", ".join(f"{schema}.`{table}`" for table in listed.split())


ENGINES = {"sqlite": sqlite_engine, "postgresql": postgres_engine, "mariadb": mariadb_engine}


# --- what is timed -------------------------------------------------------------------------


@dataclass
class Contender:
    """One way to dump and restore the engine's database, timed against its tool."""

    tool: str
    kind: str  # "snapctl" or "peer"
    dump: list[str]
    restore: list[str]
    env: dict[str, str]
    artifact_size: Callable[[], int]


def snapctl_contenders(
    engine: Engine, env: dict[str, str], snapshots: Path, variants: set[str]
) -> list[Contender]:
    return [
        Contender(
            f"snapctl {label}",
            "snapctl",
            snapctl("dump", "--quiet", "--label", label, *extra),
            snapctl("restore", label, "--yes", "--quiet"),
            {**env, **extra_env},
            partial(last_snapshot_size, snapshots),
        )
        for label, extra, extra_env in engine.variants
        if "all" in variants or label in variants
    ]


def dbbackup_contenders(env: dict[str, str], work: Path, gzip: bool) -> list[Contender]:
    """django-dbbackup's dbbackup and dbrestore, plain (and with its gzip, -z)."""
    backups = work / "dbbackup"
    backups.mkdir()
    env = {**env, "EXAMPLE_DBBACKUP_DIR": str(backups)}
    manage = [PYTHON, "manage.py"]
    runs: list[tuple[str, str, list[str]]] = [("django-dbbackup", "plain.dump", [])]
    if gzip:
        runs.append(("django-dbbackup -z", "packed.dump.gz", ["-z"]))
    return [
        Contender(
            tool,
            "peer",
            [*manage, "dbbackup", "--noinput", "-q", *flags, "-o", name],
            [*manage, "dbrestore", "--noinput", "-q", *flags, "-i", name],
            env,
            partial(file_size, backups / name),
        )
        for tool, name, flags in runs
    ]


def django_snapshots_contenders(env: dict[str, str], work: Path) -> list[Contender]:
    """django-snapshots' backup and restore of the database alone.

    Its plain `snapshots backup` adds MEDIA_ROOT (unset here) and an environment artifact
    (pip freeze, which its manifest records anyway): naming the database artifact times
    what the other tools do. Its SQL dump is gzipped at level 9; it has no other option."""
    store = work / "django-snapshots"
    env = {**env, "EXAMPLE_SNAPSHOTS_APP_DIR": str(store)}
    command = [PYTHON, "manage.py", "snapshots"]
    return [
        Contender(
            "django-snapshots",
            "peer",
            [*command, "backup", "--name", "bench", "--overwrite", "database"],
            [*command, "restore", "--name", "bench", "database"],
            env,
            partial(file_size, store / "bench" / "default.sql.gz"),
        )
    ]


@dataclass
class Timing:
    """One tool in the rounds."""

    tool: str
    measure: Callable[[], Measured]
    kind: str  # "reference", "snapctl", "peer", "baseline"

    @property
    def may_fail(self) -> bool:
        """A peer that fails is recorded as n/a; anything else failing ends the run."""
        return self.kind == "peer"


def django_floor(env: dict[str, str], settings_module: str, cwd: Path) -> list[Timing]:
    """The two commands any Django tool costs at least: reading the settings, and the app
    registry on top. Timed beside the tools where a run is start-up bound."""
    env = {**env, "DJANGO_SETTINGS_MODULE": settings_module}
    return [
        Timing(tool, partial(timed, python_c(code), env, cwd), "baseline")
        for tool, code in ((SETTINGS_TOOL, SETTINGS_IMPORT), (SETUP_TOOL, DJANGO_SETUP))
    ]


@dataclass
class Rounds:
    medians: dict[str, Measured]
    failures: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[Measured]] = field(default_factory=dict)  # every run, in order


def measure_rounds(
    label: str,
    operation: str,
    rounds: int,
    timings: list[Timing],
    failed_before: dict[str, str] | None = None,
) -> Rounds:
    """The median of ``rounds`` runs of each tool, taken in rounds that run every tool once
    in turn: a drift of the machine (write-back of earlier files, a server's background
    work) then spreads over all tools rather than falling on the ones timed last.

    Each tool's last run is the one its artifact comes from (restores use it). A peer that
    fails, or failed before (a restore after a failed dump), is left out with its reason."""
    samples: dict[str, list[Measured]] = {timing.tool: [] for timing in timings}
    failures = dict(failed_before or {})
    for round_number in range(1, rounds + 1):
        for timing in timings:
            if timing.tool in failures:
                continue
            print(
                f"[{label}] {operation} {timing.tool} (round {round_number}/{rounds}) ...",
                file=sys.stderr,
            )
            try:
                samples[timing.tool].append(timing.measure())
            except CommandFailed as error:
                if not timing.may_fail:
                    raise SystemExit(str(error)) from None
                print(f"[{label}] {timing.tool} is n/a: {error}", file=sys.stderr)
                failures[timing.tool] = error.reason
    medians = {tool: median_of(taken) for tool, taken in samples.items() if tool not in failures}
    return Rounds(medians, failures, samples)


def median_of(taken: list[Measured]) -> Measured:
    """The median seconds of some runs, and the largest peak RSS among them."""
    return Measured(statistics.median(s.seconds for s in taken), max(s.peak_rss_mb for s in taken))


# --- results -------------------------------------------------------------------------------


@dataclass
class Row:
    """One tool's median for one operation on one database."""

    size: str
    engine: str
    operation: str
    tool: str
    kind: str  # "reference", "snapctl", "peer", "baseline", "start-up"
    seconds: float | None  # None: the tool could not do it (note says why)
    peak_rss_mb: float | None
    database_bytes: int | None = None
    artifact_bytes: int | None = None
    # What the ratio and the difference are taken against: the engine's tool (start-up:
    # python -c 'import typer'; the Wagtail site: the settings import).
    reference_seconds: float | None = None
    best_peer_seconds: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.seconds is not None and self.reference_seconds:
            return self.seconds / self.reference_seconds
        return None

    @property
    def minus_reference(self) -> float | None:
        if self.seconds is not None and self.reference_seconds is not None:
            return self.seconds - self.reference_seconds
        return None

    @property
    def peer_ratio(self) -> float | None:
        """Against the fastest peer."""
        if self.seconds is not None and self.best_peer_seconds:
            return self.seconds / self.best_peer_seconds
        return None

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {
            "ratio": self.ratio,
            "minus_reference": self.minus_reference,
            "peer_ratio": self.peer_ratio,
        }


@dataclass
class Case:
    """One operation on one database, and what the table shows next to its tools."""

    size: str
    engine: Engine
    operation: str
    database_bytes: int


def operation_rows(
    case: Case, timings: list[Timing], rounds: Rounds, artifacts: dict[str, int]
) -> list[Row]:
    """The rows of one operation, each tool set against the engine's tool and the peers."""
    reference = rounds.medians["reference"].seconds
    peers = [
        rounds.medians[t.tool].seconds
        for t in timings
        if t.kind == "peer" and t.tool in rounds.medians
    ]
    best_peer = min(peers) if peers else None
    names = dict(zip(("dump", "restore"), case.engine.reference_names, strict=True))
    rows = []
    for timing in timings:
        measured = rounds.medians.get(timing.tool)
        rows.append(
            Row(
                case.size,
                case.engine.name,
                case.operation,
                names[case.operation] if timing.kind == "reference" else timing.tool,
                timing.kind,
                measured.seconds if measured else None,
                measured.peak_rss_mb if measured else None,
                case.database_bytes,
                artifacts.get(timing.tool),
                reference if timing.kind in ("snapctl", "peer") else None,
                best_peer if timing.kind == "snapctl" else None,
                rounds.failures.get(timing.tool, ""),
            )
        )
    return rows


# --- one database --------------------------------------------------------------------------


@dataclass
class Options:
    runs: int
    variants: set[str]
    with_dbbackup: bool
    with_django_snapshots: bool


def build_database(engine: Engine, rows: int) -> int:
    """Migrate and fill the engine's database; its size in bytes, once settled."""
    for args in (["migrate", "--no-input", "-v0"], ["bulk_fill", "--rows", str(rows)]):
        subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=EXAMPLE,
            env=engine.env,
            check=True,
            capture_output=True,
        )
    engine.settle()
    os.sync()
    return engine.database_bytes()


def contenders_for(engine: Engine, work: Path, options: Options) -> list[Contender]:
    snapshots = work / "snapctl"
    env = {**engine.env, "SNAPCTL_DIR": str(snapshots)}
    contenders = snapctl_contenders(engine, env, snapshots, options.variants)
    if options.with_dbbackup:
        gzip = "dbbackup-z" in options.variants
        contenders += dbbackup_contenders(engine.env, work, gzip)
    if options.with_django_snapshots:
        contenders += django_snapshots_contenders(engine.env, work)
    return contenders


def bench_engine(engine: Engine, size: Size, work: Path, options: Options) -> list[Row]:
    """Build one database, then time every tool's dump, then every tool's restore."""
    label = f"{size.name} {engine.name}"
    print(f"[{label}] building {size.rows} rows ...", file=sys.stderr)
    database_bytes = build_database(engine, size.rows)
    contenders = contenders_for(engine, work, options)
    floor = django_floor(engine.env, "example_project.settings", EXAMPLE)
    beside = floor if size.startup_bound else []
    rounds = max(options.runs, MIN_ROUNDS_STARTUP if size.startup_bound else 1)

    reference = work / engine.reference_file
    artifacts: dict[str, int] = {}

    def dump_reference() -> Measured:
        measured = timed(engine.reference_dump(reference), engine.env)
        artifacts["reference"] = reference.stat().st_size
        return measured

    def dump(contender: Contender) -> Measured:
        measured = timed(contender.dump, contender.env)
        artifacts[contender.tool] = contender.artifact_size()  # before the next tool dumps
        return measured

    dump_timings = [
        Timing("reference", dump_reference, "reference"),
        *(Timing(c.tool, partial(dump, c), c.kind) for c in contenders),
        *beside,
    ]
    restore_timings = [
        Timing(
            "reference",
            partial(timed, engine.reference_restore(reference), engine.env),
            "reference",
        ),
        *(Timing(c.tool, partial(timed, c.restore, c.env), c.kind) for c in contenders),
        *beside,
    ]
    dumps = measure_rounds(label, "dump", rounds, dump_timings)
    restores = measure_rounds(label, "restore", rounds, restore_timings, dumps.failures)
    return operation_rows(
        Case(size.name, engine, "dump", database_bytes), dump_timings, dumps, artifacts
    ) + operation_rows(
        Case(size.name, engine, "restore", database_bytes), restore_timings, restores, {}
    )


def bench_startup(runs: int) -> list[Row]:
    """snapctl's own start-up, against the import of the CLI library it is built on."""
    env = base_env()
    typer_tool = "python -c 'import typer'"
    measured = measure_rounds(
        "-",
        "start-up",
        max(runs, MIN_ROUNDS_STARTUP),
        [
            Timing(typer_tool, partial(timed, python_c("import typer"), env), "baseline"),
            Timing("snapctl --version", partial(timed, snapctl("--version"), env), "snapctl"),
        ],
    ).medians
    typer = measured[typer_tool].seconds
    return [
        Row(
            "-",
            "-",
            "start-up",
            tool,
            "start-up",
            m.seconds,
            m.peak_rss_mb,
            reference_seconds=typer if tool != typer_tool else None,
        )
        for tool, m in measured.items()
    ]


# --- Wagtail -------------------------------------------------------------------------------


class Skipped(Exception):
    """A part of the benchmark that cannot run here; the message says why."""


def run_step(argv: list[str], cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, env=base_env(), capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise Skipped(f"{' '.join(argv[1:])} failed: {lines[-1] if lines else '?'}")


def build_wagtail_site(work: Path) -> tuple[Path, str]:
    """A new site from `wagtail start`, migrated on SQLite: its directory and settings."""
    if importlib.util.find_spec("wagtail") is None:
        raise Skipped(f"wagtail is not installed (pip install wagtail into {sys.prefix})")
    site = work / "wagtail-site"
    site.mkdir()
    start = python_c("from wagtail.bin.wagtail import main; main()")
    run_step([*start, "start", "benchsite", str(site)], work)
    run_step([PYTHON, "manage.py", "migrate", "--no-input", "-v0"], site)
    named = re.search(
        r"DJANGO_SETTINGS_MODULE['\"],\s*['\"]([\w.]+)", (site / "manage.py").read_text()
    )
    if named is None:
        raise Skipped("the Wagtail site's manage.py names no settings module")
    return site, named.group(1)


def bench_wagtail(runs: int, work: Path) -> list[Row]:
    """snapctl dump and restore in a Wagtail site (some 60 apps), beside the settings
    import and django.setup(): what a large app registry costs each command."""
    site, settings_module = build_wagtail_site(work)
    env = base_env(DJANGO_SETTINGS_MODULE=settings_module)
    snapshots = str(work / "wagtail-snapshots")
    dump = snapctl("dump", "--quiet", "--dir", snapshots)
    restore = snapctl("restore", "--yes", "--quiet", "--dir", snapshots)
    timings = [
        *django_floor(env, settings_module, site),
        Timing("snapctl dump", partial(timed, dump, env, site), "snapctl"),
        Timing("snapctl restore", partial(timed, restore, env, site), "snapctl"),
    ]
    # Each round dumps, then restores that dump.
    medians = measure_rounds("wagtail", "run", max(runs, MIN_ROUNDS_STARTUP), timings).medians
    settings_seconds = medians[SETTINGS_TOOL].seconds
    database = site / "db.sqlite3"
    database_bytes = database.stat().st_size if database.exists() else None
    operations = {"snapctl dump": "dump", "snapctl restore": "restore"}
    return [
        Row(
            "wagtail site",
            "sqlite",
            operations.get(tool, "start-up"),
            tool,
            timing.kind,
            medians[tool].seconds,
            medians[tool].peak_rss_mb,
            database_bytes,
            reference_seconds=settings_seconds if tool != SETTINGS_TOOL else None,
        )
        for timing in timings
        for tool in [timing.tool]
    ]


# --- tables --------------------------------------------------------------------------------


@dataclass
class TextTable:
    """A table printed with rich and written as Markdown, from the same strings."""

    title: str
    headers: list[str]
    left: int  # the first columns are text, the others numbers
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=self.title)
        for i, header in enumerate(self.headers):
            table.add_column(header, justify="left" if i < self.left else "right")
        for row in self.rows:
            table.add_row(*row)
        console = Console(width=180)
        console.print(table)
        for note in self.notes:
            console.print(note)

    def markdown(self) -> str:
        aligns = ["---" if i < self.left else "---:" for i in range(len(self.headers))]
        lines = [f"**{self.title}**", ""]
        for cells in (self.headers, aligns, *self.rows):
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def megabytes(size: int | None) -> str:
    return f"{size / 1e6:.1f} MB" if size is not None else "-"


def number(value: float | None, form: str) -> str:
    return format(value, form) if value is not None else "-"


def results_table(rows: list[Row]) -> TextTable:
    notes = {
        f"{row.tool} n/a at {row.size} on {row.engine}: {row.note}"
        for row in rows
        if row.seconds is None
    }
    return TextTable(
        "snapctl and its peers (median seconds; x = ratio, - = difference; start-up rows "
        "against python -c 'import typer')",
        [
            "size",
            "engine",
            "DB",
            "operation",
            "tool",
            "seconds",
            "x engine tool",
            "- engine tool",
            "x best peer",
            "artifact",
            "peak RSS MB",
        ],
        5,
        [
            [
                row.size,
                row.engine,
                megabytes(row.database_bytes) if row.database_bytes else "-",
                row.operation,
                row.tool,
                number(row.seconds, ".2f") if row.seconds is not None else "n/a",
                number(row.ratio, ".2f") + ("x" if row.ratio is not None else ""),
                number(row.minus_reference, "+.2f"),
                number(row.peer_ratio, ".2f") + ("x" if row.peer_ratio is not None else ""),
                megabytes(row.artifact_bytes),
                number(row.peak_rss_mb, ".0f"),
            ]
            for row in rows
        ],
        sorted(notes),
    )


def wagtail_table(rows: list[Row]) -> TextTable:
    database = rows[0].database_bytes if rows else None
    return TextTable(
        f"snapctl in a new Wagtail site on SQLite ({megabytes(database)}): median seconds",
        ["tool", "seconds", "x settings import", "peak RSS MB"],
        1,
        [
            [
                row.tool,
                number(row.seconds, ".2f"),
                number(row.ratio, ".2f") + ("x" if row.ratio is not None else ""),
                number(row.peak_rss_mb, ".0f"),
            ]
            for row in rows
        ],
    )


# --- targets -------------------------------------------------------------------------------


@dataclass
class Target:
    what: str
    measured: str
    met: bool | None  # None: nothing to compare with


def by_case(rows: list[Row]) -> dict[tuple[str, str, str], list[Row]]:
    cases: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        if row.kind != "start-up":
            cases.setdefault((row.size, row.engine, row.operation), []).append(row)
    return cases


def peer_target(where: str, snap: Row, case: list[Row]) -> list[Target]:
    peers = [r for r in case if r.kind == "peer"]
    if not peers:
        return []
    what = f"{where}: faster than " + " and ".join(r.tool for r in peers)
    timed_peers = [r for r in peers if r.seconds is not None]
    missing = "".join(f"; {r.tool} n/a" for r in peers if r.seconds is None)
    if not timed_peers or snap.seconds is None:
        return [Target(what, "n/a" + missing, None)]
    best = min(timed_peers, key=lambda r: r.seconds or 0.0)
    assert best.seconds is not None
    return [
        Target(
            what,
            f"{snap.seconds:.2f} s vs {best.tool} {best.seconds:.2f} s "
            f"({snap.seconds / best.seconds:.2f}x){missing}",
            snap.seconds < best.seconds,
        )
    ]


def engine_tool_target(where: str, snap: Row, case: list[Row]) -> list[Target]:
    reference = next(r for r in case if r.kind == "reference")
    minus = snap.minus_reference
    assert minus is not None and reference.seconds is not None
    return [
        Target(
            f"{where}: under 0.3 s more than {reference.tool}",
            f"{minus:+.2f} s ({snap.seconds:.2f} - {reference.seconds:.2f})",
            minus < 0.3,
        )
    ]


def floor_target(where: str, snap: Row, case: list[Row]) -> list[Target]:
    floor = next((r for r in case if r.tool == SETTINGS_TOOL), None)
    if floor is None or floor.seconds is None or snap.seconds is None:
        return []
    ratio = snap.seconds / floor.seconds
    return [
        Target(
            f"{where}: at most 2.5x {SETTINGS_TOOL}",
            f"{ratio:.2f}x ({snap.seconds:.2f} / {floor.seconds:.2f} s)",
            ratio <= 2.5,
        )
    ]


def check_targets(rows: list[Row]) -> list[Target]:
    """Issue 13's targets, each against this run's numbers, for snapctl's default (zstd)."""
    targets = []
    for (size, engine, operation), case in by_case(rows).items():
        snap = next((r for r in case if r.tool == "snapctl zstd"), None)
        if snap is None or snap.seconds is None:  # not timed (--variants)
            continue
        where = f"{size} {engine} {operation}"
        targets += peer_target(where, snap, case)
        if size in SIZES and SIZES[size].small:
            targets += engine_tool_target(where, snap, case)
        if engine == "sqlite" and size == "1mb":
            targets += floor_target(where, snap, case)
    peaks = [r for r in rows if r.kind == "snapctl" and r.peak_rss_mb is not None]
    if peaks:
        top = max(peaks, key=lambda r: r.peak_rss_mb or 0.0)
        assert top.peak_rss_mb is not None
        targets.append(
            Target(
                "peak RSS of snapctl under 100 MB",
                f"{top.peak_rss_mb:.0f} MB ({top.size} {top.engine} {top.operation})",
                top.peak_rss_mb < 100,
            )
        )
    return targets


def targets_table(targets: list[Target]) -> TextTable:
    shown = {True: "yes", False: "NO", None: "n/a"}
    return TextTable(
        "issue 13 targets (snapctl's default, zstd)",
        ["target", "measured", "met"],
        1,
        [[t.what, t.measured, shown[t.met]] for t in targets],
    )


# --- main ----------------------------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="1mb,30mb",
        help=f"comma-separated, of {', '.join(SIZES)} (default 1mb,30mb)",
    )
    parser.add_argument("--rows", type=int, help="one size, in rows (overrides --sizes)")
    parser.add_argument("--large", action="store_true", help="one size: 2,000,000 rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument(
        "--variants",
        default="zstd",
        help="comma-separated snapctl variants to time: zstd (default), gzip, none, "
        "sql-zstd (SQLite), template (PostgreSQL) or all; dbbackup-z adds django-dbbackup -z",
    )
    parser.add_argument("--with-peers", action="store_true", help="both peers below")
    parser.add_argument("--with-dbbackup", action="store_true", help="time django-dbbackup")
    parser.add_argument(
        "--with-django-snapshots", action="store_true", help="time django-snapshots"
    )
    parser.add_argument(
        "--with-wagtail", action="store_true", help="time snapctl in a new Wagtail site"
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="stop each run's clock after a sync: count the write-back a tool leaves",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    options = parser.parse_args()
    unknown = set(options.sizes.split(",")) - set(SIZES)
    if unknown and options.rows is None and not options.large:
        parser.error(f"unknown sizes {sorted(unknown)}; known: {', '.join(SIZES)}")
    unknown = set(options.engines.split(",")) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {sorted(unknown)}; known: {', '.join(ENGINES)}")
    return options


def chosen_sizes(options: argparse.Namespace) -> list[Size]:
    rows = 2_000_000 if options.large else options.rows
    if rows is not None:
        return [Size(f"{rows:,} rows", rows)]
    return [SIZES[name] for name in options.sizes.split(",")]


def run_wagtail(runs: int, work: Path) -> tuple[list[Row], str | None]:
    """The Wagtail rows, or none and the reason they could not be taken."""
    try:
        return bench_wagtail(runs, work), None
    except Skipped as skipped:
        print(f"--with-wagtail skipped: {skipped}", file=sys.stderr)
        return [], str(skipped)


def main() -> None:
    global DURABLE
    arguments = parse_arguments()
    DURABLE = arguments.durable
    sizes = chosen_sizes(arguments)
    options = Options(
        arguments.runs,
        set(arguments.variants.split(",")),
        arguments.with_peers or arguments.with_dbbackup,
        arguments.with_peers or arguments.with_django_snapshots,
    )
    results = bench_startup(options.runs)
    wagtail: list[Row] = []
    wagtail_skipped = None
    with tempfile.TemporaryDirectory(prefix="snapctl-bench-") as scratch:
        for size in sizes:
            for name in arguments.engines.split(","):
                work = Path(scratch) / f"{size.name}-{name}".replace(" ", "-")
                work.mkdir()
                began = time.monotonic()
                with ENGINES[name](work) as engine:
                    results += bench_engine(engine, size, work, options)
                took = time.monotonic() - began
                print(f"[{size.name} {name}] done in {took:.0f} s", file=sys.stderr)
                shutil.rmtree(work)  # a 2gb database leaves gigabytes
        if arguments.with_wagtail:
            wagtail, wagtail_skipped = run_wagtail(options.runs, Path(scratch))

    targets = check_targets(results)
    tables = [results_table(results), targets_table(targets)]
    if wagtail:
        tables.append(wagtail_table(wagtail))
    for table in tables:
        table.print()
    if wagtail_skipped:
        print(f"Wagtail: skipped, {wagtail_skipped}")
    if arguments.markdown:
        arguments.markdown.write_text("\n".join(table.markdown() for table in tables))
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "sizes": {size.name: size.rows for size in sizes},
                    "runs": options.runs,
                    "durable": DURABLE,
                    "results": [row.as_json() for row in results],
                    "targets": [asdict(t) for t in targets],
                    "wagtail": [row.as_json() for row in wagtail],
                    "wagtail_skipped": wagtail_skipped,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
