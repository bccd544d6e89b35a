"""Time snapctl against the engines' own tools, as whole processes, and print one table.

    python benchmarks/run.py                    # 200k rows in the main table, all engines
    python benchmarks/run.py --large            # 2M rows
    python benchmarks/run.py --engines sqlite --rows 50000 --runs 5 --json results.json
    python benchmarks/run.py --with-dbbackup    # django-dbbackup too (pip install -e .[bench])

For each engine it builds the example project's database (customers with JSON and long text,
orders, order lines, products with binary images, many-to-many tags, indexes and foreign
keys), then times, median of --runs runs:
- snapctl dump and restore with each compression (and connector) it offers;
- the reference: SQLite's `.backup`/`.restore`, `pg_dump -Fc` / `pg_restore -j`, and
  `mariadb-dump` / `mariadb < dump.sql`;
- with --with-dbbackup, django-dbbackup's dbbackup/dbrestore, plain and with its gzip (-z);
- `snapctl --version` against `python -c "import typer"` (start-up cost).
Seconds, the ratio to the reference, snapshot size and peak RSS (GNU time's maximum resident
set size) go into one table on stdout and, with --json, a file.

PostgreSQL and MariaDB are reached as their superusers on 127.0.0.1 without a password (the
machine's trust setup); the databases it creates are dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
PYTHON = sys.executable
GNU_TIME = "/usr/bin/time"


@dataclass
class Row:
    engine: str
    operation: str
    tool: str
    seconds: float
    reference_seconds: float | None
    size_bytes: int | None
    peak_rss_mb: float

    @property
    def ratio(self) -> float | None:
        if self.reference_seconds:
            return self.seconds / self.reference_seconds
        return None


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float


def timed(command: list[str] | str, env: dict[str, str], cwd: Path = EXAMPLE) -> Measured:
    """Run a command (a shell string for redirections) and measure it with GNU time.

    Dirty pages of the previous run are written out first, so no run pays for another's.
    """
    os.sync()
    with tempfile.NamedTemporaryFile("r") as report:
        argv = [GNU_TIME, "-f", "%e %M", "-o", report.name]
        argv += ["sh", "-c", command] if isinstance(command, str) else command
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"benchmark command failed: {command}\n{result.stderr[-2000:]}")
        seconds, kilobytes = report.read().split()[-2:]
    return Measured(float(seconds), int(kilobytes) / 1024)


def median_of(runs: int, measure: Callable[[], Measured]) -> Measured:
    samples = [measure() for _ in range(runs)]
    return Measured(
        statistics.median(s.seconds for s in samples),
        max(s.peak_rss_mb for s in samples),
    )


def snapctl(*args: str) -> list[str]:
    return [PYTHON, "-m", "snapctl", *args]


def last_snapshot_size(snapshots: Path) -> int:
    newest = max((p for p in snapshots.iterdir() if p.name[0].isdigit()), key=lambda p: p.name)
    return sum(f.stat().st_size for f in newest.iterdir() if f.name != "manifest.json")


@dataclass
class Engine:
    """How to make, fill and time one engine's database."""

    name: str
    env: dict[str, str]
    # (label, extra snapctl dump arguments, extra environment)
    variants: list[tuple[str, list[str], dict[str, str]]]
    reference_dump: Callable[[Path], str | list[str]]
    reference_restore: Callable[[Path], str | list[str]]
    reference_file: str
    # Waits out the background work a bulk load leaves (vacuum, purge), so no timed run
    # pays for it.
    settle: Callable[[], None] = lambda: None


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAMPLE_", "SNAPCTL_"))}
    env.update(extra)
    return env


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ],
        check=True,
        capture_output=True,
    )


def mariadb(sql: str) -> None:
    client = shutil.which("mariadb") or "mysql"
    subprocess.run([client, "-uroot", "-h127.0.0.1", "-e", sql], check=True, capture_output=True)


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
        ],
        reference_dump=lambda out: ["sqlite3", str(db), f".backup '{out}'"],
        reference_restore=lambda out: ["sqlite3", str(db), f".restore '{out}'"],
        reference_file="reference.sqlite3",
    )


@contextmanager
def postgres_engine(work: Path) -> Iterator[Engine]:
    name = f"snapctl_bench_{secrets.token_hex(3)}"
    psql(f"CREATE DATABASE {name}")
    scratch = f"{name}_ref"
    pg = "-h 127.0.0.1 -U postgres"
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
            ],
            reference_dump=lambda out: f"pg_dump {pg} -Fc -f '{out}' {name}",
            # Like snapctl's swap: a new database restored in parallel from the file.
            reference_restore=lambda out: (
                f"dropdb {pg} --if-exists {scratch} && createdb {pg} {scratch} && "
                f"pg_restore {pg} -j {os.cpu_count() or 2} -d {scratch} '{out}'"
            ),
            reference_file="reference.pgdump",
            settle=lambda: psql("VACUUM ANALYZE", name),
        )
    finally:
        psql(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        # The postgres-template connector's copies, <name>_snapctl_<hex>, go too.
        copies = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atc",
                f"SELECT datname FROM pg_database WHERE datname LIKE '{name}%'",
            ],
            capture_output=True,
            text=True,
        )
        for copy in copies.stdout.split():
            psql(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


@contextmanager
def mariadb_engine(work: Path) -> Iterator[Engine]:
    name = f"snapctl_bench_{secrets.token_hex(3)}"
    mariadb(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    dump = shutil.which("mariadb-dump") or "mysqldump"
    client = shutil.which("mariadb") or "mysql"
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
            ],
            reference_dump=lambda out: (
                f"{dump} -uroot -h127.0.0.1 --single-transaction --routines --triggers "
                f"--events --hex-blob {name} > '{out}'"
            ),
            reference_restore=lambda out: f"{client} -uroot -h127.0.0.1 {name} < '{out}'",
            reference_file="reference.sql",
            # MariaDB 10.5.7+: returns once InnoDB has purged the load's undo history.
            settle=lambda: mariadb("SET GLOBAL innodb_max_purge_lag_wait=0"),
        )
    finally:
        mariadb(f"DROP DATABASE IF EXISTS {name}")


ENGINES = {"sqlite": sqlite_engine, "postgresql": postgres_engine, "mariadb": mariadb_engine}


@dataclass
class Contender:
    """One way to dump and restore the engine's database, timed against the reference."""

    tool: str
    dump: list[str]
    restore: list[str]
    env: dict[str, str]
    artifact_size: Callable[[], int]


def snapctl_contenders(
    engine: Engine, env: dict[str, str], snapshots: Path, variants: set[str] | None = None
) -> list[Contender]:
    return [
        Contender(
            f"snapctl {label}",
            snapctl("dump", "--quiet", "--label", label, *extra),
            snapctl("restore", label, "--yes", "--quiet"),
            {**env, **extra_env},
            partial(last_snapshot_size, snapshots),
        )
        for label, extra, extra_env in engine.variants
        if variants is None or label in variants
    ]


def dbbackup_contenders(engine: Engine, env: dict[str, str], work: Path) -> list[Contender]:
    """django-dbbackup's dbbackup and dbrestore, plain and with its gzip (-z)."""
    backups = work / f"dbbackup-{engine.name}"
    backups.mkdir()
    env = {**env, "EXAMPLE_DBBACKUP_DIR": str(backups)}
    manage = [PYTHON, "manage.py"]
    contenders = []
    for tool, name, flags in (
        ("django-dbbackup", "plain.dump", []),
        ("django-dbbackup -z", "packed.dump.gz", ["-z"]),
    ):
        contenders.append(
            Contender(
                tool,
                [*manage, "dbbackup", "--noinput", "-q", *flags, "-o", name],
                [*manage, "dbrestore", "--noinput", "-q", *flags, "-i", name],
                env,
                lambda name=name: (backups / name).stat().st_size,
            )
        )
    return contenders


def bench_engine(
    engine: Engine,
    rows: int,
    runs: int,
    work: Path,
    with_dbbackup: bool = False,
    variants: set[str] | None = None,
) -> list[Row]:
    snapshots = work / f"snaps-{engine.name}"
    env = {**engine.env, "SNAPCTL_DIR": str(snapshots)}
    print(f"[{engine.name}] building {rows} rows ...", file=sys.stderr)
    for args in (["migrate", "--no-input", "-v0"], ["bulk_fill", "--rows", str(rows)]):
        subprocess.run(
            [PYTHON, "manage.py", *args], cwd=EXAMPLE, env=env, check=True, capture_output=True
        )
    engine.settle()
    os.sync()
    contenders = snapctl_contenders(engine, env, snapshots, variants)
    if with_dbbackup:
        contenders += dbbackup_contenders(engine, env, work)

    reference = work / engine.reference_file
    sizes: dict[str, int] = {}

    def dump_and_size(contender: Contender) -> Measured:
        measured = timed(contender.dump, contender.env)
        sizes[contender.tool] = contender.artifact_size()  # before the next tool dumps
        return measured

    dumps = measure_rounds(
        engine.name,
        "dump",
        runs,
        [("reference", partial(timed, engine.reference_dump(reference), env))]
        + [(c.tool, partial(dump_and_size, c)) for c in contenders],
    )
    ref_size = reference.stat().st_size
    restores = measure_rounds(
        engine.name,
        "restore",
        runs,
        [("reference", partial(timed, engine.reference_restore(reference), env))]
        + [(c.tool, partial(timed, c.restore, c.env)) for c in contenders],
    )
    results = []
    for operation, measured in (("dump", dumps), ("restore", restores)):
        reference_seconds = measured["reference"].seconds
        for tool, m in measured.items():
            is_reference = tool == "reference"
            if operation == "dump":
                size: int | None = ref_size if is_reference else sizes[tool]
            else:
                size = ref_size if is_reference else None
            results.append(
                Row(
                    engine.name,
                    operation,
                    tool,
                    m.seconds,
                    None if is_reference else reference_seconds,
                    size,
                    m.peak_rss_mb,
                )
            )
    return results


def measure_rounds(
    engine: str, operation: str, runs: int, tools: list[tuple[str, Callable[[], Measured]]]
) -> dict[str, Measured]:
    """The median of ``runs`` runs of each tool, taken in rounds that run every tool once
    in turn: a drift of the machine (write-back of earlier files, a server's background
    work) then spreads over all tools rather than falling on the ones timed last.

    Each tool's last run is the one its artifact comes from (restores use it)."""
    samples: dict[str, list[Measured]] = {tool: [] for tool, _ in tools}
    for round_number in range(1, runs + 1):
        for tool, measure in tools:
            print(
                f"[{engine}] {operation} {tool} (round {round_number}/{runs}) ...", file=sys.stderr
            )
            samples[tool].append(measure())
    return {
        tool: Measured(
            statistics.median(s.seconds for s in taken), max(s.peak_rss_mb for s in taken)
        )
        for tool, taken in samples.items()
    }


def bench_startup(runs: int) -> list[Row]:
    """Start-up in interleaved rounds, at least 15: a run takes about 0.1 s, close to GNU
    time's 10 ms resolution, so three runs leave the ratio to chance."""
    env = base_env()
    measured = measure_rounds(
        "-",
        "start-up",
        max(runs, 15),
        [
            ("typer", partial(timed, [PYTHON, "-c", "import typer"], env)),
            ("snapctl", partial(timed, snapctl("--version"), env)),
        ],
    )
    typer, version = measured["typer"], measured["snapctl"]
    return [
        Row(
            "-",
            "start-up",
            "python -c 'import typer'",
            typer.seconds,
            None,
            None,
            typer.peak_rss_mb,
        ),
        Row(
            "-",
            "start-up",
            "snapctl --version",
            version.seconds,
            typer.seconds,
            None,
            version.peak_rss_mb,
        ),
    ]


def print_table(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="snapctl benchmark (median seconds; ratio = snapctl / reference)")
    for column in ("engine", "operation", "tool", "seconds", "ratio", "size", "peak RSS MB"):
        table.add_column(
            column, justify="left" if column in ("engine", "operation", "tool") else "right"
        )
    for row in rows:
        table.add_row(
            row.engine,
            row.operation,
            row.tool,
            f"{row.seconds:.2f}",
            f"{row.ratio:.2f}x" if row.ratio is not None else "-",
            f"{row.size_bytes / 1e6:.1f} MB" if row.size_bytes is not None else "-",
            f"{row.peak_rss_mb:.0f}",
        )
    Console(width=140).print(table)


@dataclass
class Target:
    what: str
    measured: str
    met: bool


def _seconds(rows: list[Row], engine: str, operation: str, tool: str) -> float | None:
    for row in rows:
        if (row.engine, row.operation, row.tool) == (engine, operation, tool):
            return row.seconds
    return None


def check_targets(rows: list[Row]) -> list[Target]:
    """The issue's targets, each against this run's numbers."""
    targets = []
    startup = next(r for r in rows if r.tool == "snapctl --version")
    assert startup.ratio is not None
    targets.append(
        Target(
            "snapctl --version within 1.5x of import typer",
            f"{startup.ratio:.2f}x",
            startup.ratio <= 1.5,
        )
    )
    for engine in dict.fromkeys(r.engine for r in rows if r.engine != "-"):
        for operation in ("dump", "restore"):
            ratio = next(
                (
                    r.ratio
                    for r in rows
                    if (r.engine, r.operation, r.tool) == (engine, operation, "snapctl zstd")
                ),
                None,
            )
            if ratio is None:  # not timed (--variants)
                continue
            targets.append(
                Target(
                    f"{engine} {operation} (default zstd) within 1.2x of the reference",
                    f"{ratio:.2f}x",
                    ratio <= 1.2,
                )
            )
        zstd = _seconds(rows, engine, "dump", "snapctl zstd")
        plain = _seconds(rows, engine, "dump", "snapctl none")
        if zstd and plain:
            share = max(0.0, (zstd - plain) / zstd)
            targets.append(
                Target(
                    f"{engine}: default compression under 15% of dump time",
                    f"{share:.0%}",
                    share < 0.15,
                )
            )
    peak = max(r.peak_rss_mb for r in rows if r.tool.startswith("snapctl"))
    targets.append(Target("peak RSS of snapctl under 100 MB", f"{peak:.0f} MB", peak < 100))
    return targets


def print_targets(targets: list[Target]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="targets")
    table.add_column("target")
    table.add_column("measured", justify="right")
    table.add_column("met")
    for target in targets:
        table.add_row(target.what, target.measured, "yes" if target.met else "NO")
    Console(width=140).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the main table")
    parser.add_argument("--large", action="store_true", help="2,000,000 rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--variants",
        help="comma-separated snapctl variants to time (default all), e.g. zstd,none",
    )
    parser.add_argument(
        "--with-dbbackup",
        action="store_true",
        help="also time django-dbbackup (pip install django-dbbackup)",
    )
    options = parser.parse_args()
    rows = 2_000_000 if options.large else options.rows
    variants = set(options.variants.split(",")) if options.variants else None

    results = bench_startup(options.runs)
    with tempfile.TemporaryDirectory(prefix="snapctl-bench-") as scratch:
        for name in options.engines.split(","):
            with ENGINES[name](Path(scratch)) as engine:
                results += bench_engine(
                    engine, rows, options.runs, Path(scratch), options.with_dbbackup, variants
                )
    print_table(results)
    targets = check_targets(results)
    print_targets(targets)
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "runs": options.runs,
                    "results": [asdict(r) | {"ratio": r.ratio} for r in results],
                    "targets": [asdict(t) for t in targets],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
