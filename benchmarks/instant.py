"""Time instant restores (issue 17): a restore that swaps in a copy prepared on the server.

    python benchmarks/instant.py                          # 200k and 2M rows, all connectors
    python benchmarks/instant.py --rows 20000 --runs 1    # a quick look
    python benchmarks/instant.py --rows 200000 --engines postgresql --json instant.json

For each size (--rows, a comma list of bulk_fill rows; default 200000,2000000) and engine
(postgresql with the postgres and postgres-template connectors, mariadb with mysql), the
example project's database is built once (run.py's build_database) and each connector in
turn takes one snapshot of it (--no-prepare) into a snapshot and state directory of its own.
Then, median of --runs rounds, each starting with no copy prepared and nothing in the
background, as whole processes (run.py's timed: a sync first, GNU time's peak RSS):

1. the floor, timed FLOOR_PER_ROUND times a round (start-up bound, ~0.2 s each):
   `snapctl --version`, and `python -c` importing the settings module and reading DATABASES;
2. `snapctl prepare`, in the foreground from nothing: what the background preparation after
   dump and restore costs, and the copy's size on the server (`snapctl list --json`,
   prepared[].server_size) beside the live database's;
3. `snapctl restore --yes --no-prepare --json` with that copy ready; its JSON must say
   "instant": ["default"];
4. `snapctl restore --yes --no-prepare --json` with SNAPCTL_PREPARE=off and no copy: the
   path a restore took before issue 17;
5. a restore straight after another: `snapctl restore --yes` (the default policy, which
   starts preparing a copy in the background), then at once (no sync between) the timed
   `snapctl restore --yes --json`, which finds the copy under way: it waits for it while
   that should be sooner than loading afresh, else loads the snapshot.
Between steps the script waits for snapctl's background processes (found by the state
directory in their environment) and, at the end of a round, drops the copies left
(`snapctl prepare --drop`, then the tidy-up dump and restore start).

A connector that keeps no prepared copies (`snapctl prepare` refuses it) shows its steps 2
and 3 as n/a with the reason. Targets, each at every size and connector: (3) at most 1.5x
(version + settings); (5) no slower than (4), median against median; every snapctl process
under 100 MB peak RSS. The table goes to stdout as Markdown, progress to stderr, --json
writes the results. The databases made are dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from run import (
    ENGINES,
    EXAMPLE,
    PYTHON,
    SETTINGS_IMPORT,
    CommandFailed,
    Engine,
    Measured,
    TextTable,
    Timing,
    build_database,
    measure_rounds,
    megabytes,
    number,
    psql,
    python_c,
    snapctl,
    timed,
)

CONNECTORS = {"postgresql": ["postgres", "postgres-template"], "mariadb": ["mysql"]}
DEFAULT_ROWS = "200000,2000000"
# The floor's runs are ~0.2 s at 10-30% noise: more of them than of the restores.
FLOOR_PER_ROUND = 5
# A background preparation that takes longer than this is taken to hang.
BACKGROUND_LIMIT = 3600.0

VERSION = "snapctl --version"
SETTINGS = "python -c settings.DATABASES"
PREPARE = "prepare (from nothing)"
READY = "restore, copy ready"
NO_COPY = "restore, no copy"
AFTER = "restore after restore"
STEPS = (VERSION, SETTINGS, PREPARE, READY, NO_COPY, AFTER)
NEEDS_COPIES = (PREPARE, READY)


class Step(Timing):
    """A step of a round: one that fails is n/a with its reason, the others go on."""

    @property
    def may_fail(self) -> bool:
        return True


# --- one connector on one engine's database ------------------------------------------------


@dataclass
class Variant:
    """A connector's snapshot of the engine's database, with its own directories."""

    engine: Engine
    connector: str
    work: Path
    server_sizes: list[int] = field(default_factory=list)
    instant_after: list[bool] = field(default_factory=list)
    # Why a restore after a restore loaded the snapshot after all: snapctl's notices.
    after_notices: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.work / "state"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.engine.env,
            "SNAPCTL_DIR": str(self.work / "snapshots"),
            "SNAPCTL_STATE_DIR": str(self.state),
            **extra,
        }

    @property
    def off(self) -> dict[str, str]:
        return self.env(SNAPCTL_PREPARE="off")


def run_untimed(argv: list[str], env: dict[str, str]) -> str:
    """Run a setup command; its stdout, or CommandFailed."""
    result = subprocess.run(
        argv, cwd=EXAMPLE, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise CommandFailed(argv, result.stderr or result.stdout)
    return result.stdout


def background_of(state: Path) -> list[int]:
    """The processes started with this state directory (snapctl's detached preparations
    and tidy-ups), found by their environment: only this benchmark's."""
    marker = f"SNAPCTL_STATE_DIR={state}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_for_background(variant: Variant) -> None:
    began = time.monotonic()
    while background_of(variant.state):
        if time.monotonic() - began > BACKGROUND_LIMIT:
            raise SystemExit(f"snapctl's background work in {variant.state} does not end")
        time.sleep(0.05)


def copies_listed(variant: Variant) -> list[dict[str, object]]:
    """The prepared copies `snapctl list --json` shows, of every snapshot."""
    listed = json.loads(run_untimed(snapctl("list", "--json"), variant.env()))
    return [copy for snapshot in listed for copy in snapshot.get("prepared", [])]


def drop_copies(variant: Variant) -> None:
    """Back to no copy and nothing in the background: the snapshot's copies dropped
    (`snapctl prepare --drop`), and the retired databases by the background tidy-up."""
    wait_for_background(variant)
    run_untimed(snapctl("prepare", "--drop", "--quiet"), variant.off)
    run_untimed(snapctl("prepare", "--background", "--quiet"), variant.off)
    wait_for_background(variant)
    left = copies_listed(variant)
    if left:
        raise SystemExit(f"prepared copies left after tidying up: {left}")


def restored_instantly(measured: Measured) -> bool:
    return json.loads(measured.output).get("instant") == ["default"]


# --- the steps -----------------------------------------------------------------------------


def prepare_step(variant: Variant) -> Measured:
    measured = timed(snapctl("prepare", "--quiet"), variant.off)
    sizes = [c.get("server_size") for c in copies_listed(variant) if c.get("state") == "ready"]
    variant.server_sizes += [size for size in sizes if isinstance(size, int)]
    return measured


def ready_step(variant: Variant) -> Measured:
    command = snapctl("restore", "--yes", "--no-prepare", "--json")
    measured = timed(command, variant.off)
    wait_for_background(variant)  # it drops the database swapped out
    if not restored_instantly(measured):
        raise CommandFailed(command, f"not restored from the prepared copy: {measured.output}")
    return measured


def no_copy_step(variant: Variant) -> Measured:
    drop_copies(variant)
    command = snapctl("restore", "--yes", "--no-prepare", "--json")
    measured = timed(command, variant.off)
    if restored_instantly(measured):
        raise CommandFailed(command, f"restored from a prepared copy: {measured.output}")
    return measured


def after_restore_step(variant: Variant) -> Measured:
    """A restore that starts preparing a copy in the background, then at once another."""
    os.sync()
    run_untimed(snapctl("restore", "--yes", "--quiet"), variant.env())
    measured = timed(snapctl("restore", "--yes", "--json"), variant.env(), sync=False)
    instant = restored_instantly(measured)
    variant.instant_after.append(instant)
    if not instant:
        said = [line for line in measured.errors.splitlines() if line.startswith("snapctl:")]
        variant.after_notices.append(
            " / ".join(said)
            or "no notice (no copy under way when it looked, or its preparation ended without one)"
        )
    drop_copies(variant)  # waits out the preparation this one started, then drops it
    return measured


def timings(variant: Variant) -> list[Timing]:
    floor = [
        Step(VERSION, lambda: timed(snapctl("--version"), variant.env()), "floor"),
        Step(
            SETTINGS,
            lambda: timed(
                python_c(SETTINGS_IMPORT),
                variant.env(DJANGO_SETTINGS_MODULE="example_project.settings"),
            ),
            "floor",
        ),
    ]
    steps: list[tuple[str, Callable[[Variant], Measured]]] = [
        (PREPARE, prepare_step),
        (READY, ready_step),
        (NO_COPY, no_copy_step),
        (AFTER, after_restore_step),
    ]
    return [
        *(floor * FLOOR_PER_ROUND),
        *(Step(name, lambda step=step: step(variant), "snapctl") for name, step in steps),
    ]


def why_not_prepared(variant: Variant) -> str | None:
    """Why the connector cannot prepare a copy (its one line), or None once it did (a
    warm-up, dropped again)."""
    try:
        run_untimed(snapctl("prepare", "--quiet"), variant.off)
    except CommandFailed as failed:
        return failed.reason.removeprefix("snapctl: error: ")
    drop_copies(variant)
    return None


# --- one engine ----------------------------------------------------------------------------


@dataclass
class Result:
    """One connector's medians at one size."""

    rows: int
    engine: str
    connector: str
    runs: int
    built_bytes: int  # the database bulk_fill made (tables and indexes)
    live_bytes: int | None  # the live database on the server after the restores
    copy_bytes: int | None  # a prepared copy on the server
    medians: dict[str, Measured]
    seconds: dict[str, list[float]]
    failures: dict[str, str]
    instant_after: list[bool]
    after_notices: list[str]

    def median(self, step: str) -> float | None:
        measured = self.medians.get(step)
        return measured.seconds if measured else None

    @property
    def floor(self) -> float | None:
        version, settings = self.median(VERSION), self.median(SETTINGS)
        return version + settings if version is not None and settings is not None else None

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {"floor": self.floor}


def live_bytes(engine: Engine) -> int:
    """The live database's size on the server, measured as the copies are: the whole
    database on PostgreSQL (pg_database_size), the tables and indexes on MariaDB."""
    name = engine.env["EXAMPLE_DB_NAME"]
    if engine.name == "postgresql":
        return int(psql(f"SELECT pg_database_size('{name}')"))
    return engine.database_bytes()


def bench_variant(
    engine: Engine, connector: str, rows: int, built: int, work: Path, runs: int
) -> Result:
    variant = Variant(engine, connector, work)
    label = f"{rows:,} rows {engine.name} {connector}"
    print(f"[{label}] dump ...", file=sys.stderr)
    run_untimed(snapctl("dump", "--quiet", "--no-prepare", "--connector", connector), variant.off)
    failed_before = {}
    reason = why_not_prepared(variant)
    if reason is not None:
        print(f"[{label}] no prepared copies: {reason}", file=sys.stderr)
        failed_before = dict.fromkeys(NEEDS_COPIES, reason)
    try:
        rounds = measure_rounds(label, "step", runs, timings(variant), failed_before)
    finally:
        wait_for_background(variant)
    drop_copies(variant)
    return Result(
        rows,
        engine.name,
        connector,
        runs,
        built,
        live_bytes(engine),
        max(variant.server_sizes) if variant.server_sizes else None,
        rounds.medians,
        {step: [m.seconds for m in taken] for step, taken in rounds.samples.items()},
        rounds.failures,
        variant.instant_after,
        variant.after_notices,
    )


def bench_engine(name: str, rows: int, connectors: set[str], runs: int, work: Path) -> list[Result]:
    results: list[Result] = []
    with ENGINES[name](work) as engine:
        print(f"[{rows:,} rows {name}] building ...", file=sys.stderr)
        began = time.monotonic()
        built = build_database(engine, rows)
        print(f"[{rows:,} rows {name}] built in {time.monotonic() - began:.0f} s", file=sys.stderr)
        for connector in CONNECTORS[name]:
            if connector in connectors:
                place = work / connector
                place.mkdir()
                results.append(bench_variant(engine, connector, rows, built, place, runs))
    return results


# --- tables and targets --------------------------------------------------------------------


def ratio(seconds: float | None, against: float | None) -> str:
    if seconds is None or not against:
        return "-"
    return f"{seconds / against:.2f}x"


def results_table(results: list[Result]) -> TextTable:
    rows, notes = [], []
    for result in results:
        no_copy = result.median(NO_COPY)
        for step in STEPS:
            measured = result.medians.get(step)
            seconds = measured.seconds if measured else None
            extra = ""
            if step == PREPARE and result.copy_bytes:
                extra = f"copy {megabytes(result.copy_bytes)}"
            if step == AFTER and result.instant_after:
                extra = f"instant {sum(result.instant_after)} of {len(result.instant_after)}"
            if step in result.failures:
                extra = "n/a: " + result.failures[step]
            rows.append(
                [
                    f"{result.rows:,}",
                    result.engine,
                    result.connector,
                    megabytes(result.live_bytes),
                    step,
                    number(seconds, ".2f") if seconds is not None else "n/a",
                    str(len(result.seconds.get(step, []))),
                    ratio(seconds, result.floor),
                    ratio(seconds, no_copy) if step in (PREPARE, READY, AFTER) else "-",
                    number(measured.peak_rss_mb if measured else None, ".0f"),
                    extra,
                ]
            )
        notes.append(
            f"{result.rows:,} rows {result.engine} {result.connector}: built "
            f"{megabytes(result.built_bytes)} of tables; seconds of each run: "
            + "; ".join(
                f"{step} " + " ".join(f"{s:.2f}" for s in result.seconds[step])
                for step in (PREPARE, READY, NO_COPY, AFTER)
                if result.seconds.get(step)
            )
            + "".join(f"; {AFTER} not instant: {notice}" for notice in result.after_notices)
        )
    return TextTable(
        "instant restores (median seconds; floor = snapctl --version + settings import)",
        [
            "rows",
            "engine",
            "connector",
            "live DB",
            "step",
            "seconds",
            "runs",
            "x floor",
            "x no copy",
            "peak RSS MB",
            "note",
        ],
        5,
        rows,
        notes,
    )


@dataclass
class Target:
    what: str
    measured: str
    met: bool | None  # None: not measurable here (n/a)


def check_targets(results: list[Result]) -> list[Target]:
    targets = []
    for result in results:
        where = f"{result.rows:,} rows {result.engine} {result.connector}"
        ready, floor = result.median(READY), result.floor
        if ready is None or floor is None:
            reason = result.failures.get(READY, "not measured")
            targets.append(
                Target(f"{where}: restore with a ready copy <= 1.5x floor", reason, None)
            )
        else:
            targets.append(
                Target(
                    f"{where}: restore with a ready copy <= 1.5x floor",
                    f"{ready / floor:.2f}x ({ready:.2f} / {floor:.2f} s)",
                    ready <= 1.5 * floor,
                )
            )
        after, no_copy = result.median(AFTER), result.median(NO_COPY)
        if after is not None and no_copy is not None:
            slowest = max(result.seconds[AFTER])
            targets.append(
                Target(
                    f"{where}: restore after restore no slower than without a copy",
                    f"{after:.2f} vs {no_copy:.2f} s ({after / no_copy:.2f}x; slowest "
                    f"{slowest:.2f} s)",
                    after <= no_copy,
                )
            )
    peaks = [
        (m.peak_rss_mb, f"{r.rows:,} rows {r.engine} {r.connector} {step}")
        for r in results
        for step, m in r.medians.items()
        if step != SETTINGS
    ]
    if peaks:
        top, where = max(peaks)
        targets.append(
            Target("peak RSS of snapctl under 100 MB", f"{top:.0f} MB ({where})", top < 100)
        )
    return targets


def targets_table(targets: list[Target]) -> TextTable:
    shown = {True: "yes", False: "NO", None: "n/a"}
    return TextTable(
        "issue 17 targets",
        ["target", "measured", "met"],
        1,
        [[t.what, t.measured, shown[t.met]] for t in targets],
    )


# --- main ----------------------------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rows", default=DEFAULT_ROWS, help=f"comma-separated sizes (default {DEFAULT_ROWS})"
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds per size (median)")
    parser.add_argument("--engines", default=",".join(CONNECTORS), help="comma-separated")
    parser.add_argument(
        "--connectors",
        default=",".join(c for cs in CONNECTORS.values() for c in cs),
        help="comma-separated, of " + ", ".join(c for cs in CONNECTORS.values() for c in cs),
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    unknown = set(options.engines.split(",")) - set(CONNECTORS)
    if unknown:
        parser.error(f"unknown engines {sorted(unknown)}; known: {', '.join(CONNECTORS)}")
    return options


def main() -> None:
    options = parse_arguments()
    sizes = [int(rows) for rows in options.rows.split(",")]
    connectors = set(options.connectors.split(","))
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="snapctl-instant-") as scratch:
        for rows in sizes:
            for name in options.engines.split(","):
                work = Path(scratch) / f"{rows}-{name}"
                work.mkdir()
                results += bench_engine(name, rows, connectors, options.runs, work)
                shutil.rmtree(work)
    targets = check_targets(results)
    tables = [results_table(results), targets_table(targets)]
    print("\n".join(table.markdown() for table in tables))
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "rows": sizes,
                    "runs": options.runs,
                    "python": PYTHON,
                    "results": [result.as_json() for result in results],
                    "targets": [asdict(t) for t in targets],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
