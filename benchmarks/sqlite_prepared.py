"""SQLite instant restores (issue 17): what a prepared, already-unpacked file next to the
database gives, beside today's restore.

    python benchmarks/sqlite_prepared.py                         # 200,000 and 2,000,000 rows
    python benchmarks/sqlite_prepared.py --rows 20000 --runs 1   # a quick look

For each --rows (a comma list, default 200000,2000000) it fills the example project's SQLite
database with bulk_fill, takes a zstd snapshot with `snapctl dump`, and times, median of
--runs (default 3), a sync before each run, in rounds that take every step once in turn:

(a) today's `snapctl restore --yes` (the whole command: verify, then unpack and copy pages at
    once), and its floor: `snapctl --version` and `python -c` reading the settings;
(b) the copy a prepared restore would do: the backup API from a prepared, unpacked file next
    to the database into the live one, through the SQLite connector's own restore() (no
    unpacking, no hashing), in a child process: the seconds of that call, the whole child
    and its peak RSS, the largest rollback journal it left beside the database meanwhile;
    alone, beside an idle connection in another process, and beside one reading every 50 ms
    with Django's 5 s busy timeout (its longest wait and its errors);
(c) os.replace of the prepared file over the live one and a fsync of the directory, and the
    /proc scan that names the processes holding the file (snapctl.connectors._file_holders);
(d) making the prepared file: unpacking the snapshot next to the database, its sha256
    checked as restore's verification checks it, then its fsync; the disk it takes; and a
    sha256 of the prepared file, were a swap to check it again.

Then, once per size, what each way does to a connection opened before it (another process,
idle): what it reads and whether its write is kept afterwards, what the /proc scan and
fcntl's F_GETLK on SQLite's lock bytes tell beforehand, and the disk an old file keeps.

Whole processes are timed as benchmarks/run.py times them (its `timed`: the wall clock around
the process, peak RSS from GNU time); in-process steps by the clock around the step. The
machine's memory holds every file, so reads come from the page cache: a prepared file that
has been evicted would be read from disk by (b) and by the sha256.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from run import EXAMPLE, PYTHON, SETTINGS_IMPORT, base_env, python_c, snapctl, timed

SCRIPT = Path(__file__).resolve()
MB = 1024 * 1024
SETTINGS_MODULE = "example_project.settings"
# The other connection reads like a Django process: SQLite's busy timeout is 5 s by default.
DJANGO_BUSY_TIMEOUT = 5.0
POLL_SECONDS = 0.05
# SQLite's lock bytes (os_unix.c): PENDING at 1 GiB, RESERVED after it, then 510 SHARED.
SQLITE_LOCK_START, SQLITE_LOCK_LENGTH = 0x40000000, 512
# struct flock on Linux (64-bit): l_type, l_whence, l_start, l_len, l_pid, padding.
FLOCK = "hhqqi4x"
MARK_BEFORE = "prepared-bench-before"  # a row in the live database, not in the snapshot
MARK_AFTER = "prepared-bench-after"  # written through the other connection afterwards


# --- children: what runs in another process -------------------------------------------------


def child_copy(prepared: str, report: str) -> None:
    """(b): restore the live database from the prepared file as the SQLite connector restores
    any unpacked file; writes the seconds of that call and the largest journal seen."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    sys.path.insert(0, str(EXAMPLE))
    from django.conf import settings

    from snapctl.connectors.sqlite import SQLiteConnector, database_path

    settings.DATABASES  # noqa: B018 - loaded before the clock starts, as snapctl would have
    journal = Path(f"{database_path('default')}-journal")
    largest = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.01):
            with suppress(FileNotFoundError):
                largest[0] = max(largest[0], journal.stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.perf_counter()
    try:
        SQLiteConnector().restore("default", Path(prepared))
        seconds = time.perf_counter() - start
    finally:
        done.set()
        watcher.join()
    Path(report).write_text(json.dumps({"seconds": seconds, "journal": largest[0]}))


def child_prepare(artifact: str, dest: str, manifest_entry: str, report: str) -> None:
    """(d): unpack the artifact to ``dest``, its sha256 checked, then fsync it."""
    from snapctl import compression

    entry = json.loads(manifest_entry)
    start = time.perf_counter()
    with open(artifact, "rb") as stored:
        digest = compression.decompress(
            stored, entry["file"], Path(dest), entry["compression"], entry["unpacked_size"]
        )
    unpacked = time.perf_counter()
    if digest != entry["sha256"]:
        raise SystemExit(f"{artifact}: sha256 differs from the manifest's")
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    synced = time.perf_counter()
    Path(report).write_text(json.dumps({"unpack": unpacked - start, "fsync": synced - unpacked}))


def other_connection(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=DJANGO_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    connection.execute("SELECT count(*) FROM shop_tag").fetchall()
    return connection


def child_reader(path: str) -> None:
    """A connection that stays open, idle between the commands read from stdin: ``count
    NAME`` (tags so named), ``insert NAME``, ``begin`` (a read transaction), ``commit``.
    fetchall() everywhere: a statement left unfinished would hold a read lock."""
    connection = other_connection(path)
    print("ready", flush=True)
    for line in sys.stdin:
        word, _, name = line.strip().partition(" ")
        try:
            if word == "count":
                query = "SELECT count(*) FROM shop_tag WHERE name = ?"
                answer = str(connection.execute(query, (name,)).fetchall()[0][0])
            elif word == "insert":
                connection.execute("INSERT INTO shop_tag (name) VALUES (?)", (name,))
                answer = "ok"
            elif word == "begin":
                connection.execute("BEGIN")
                connection.execute("SELECT count(*) FROM shop_tag").fetchall()
                answer = "ok"
            elif word == "commit":
                connection.execute("COMMIT")
                answer = "ok"
            else:
                answer = f"error: unknown command {word!r}"
        except sqlite3.Error as exc:
            answer = f"error: {exc}"
        print(answer, flush=True)


def child_poller(path: str) -> None:
    """A connection that reads every POLL_SECONDS, each read its own transaction, until a
    line arrives on stdin; then prints its reads, errors and longest read."""
    connection = other_connection(path)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    reads = errors = 0
    longest = 0.0
    print("ready", flush=True)
    while not stop.is_set():
        start = time.perf_counter()
        try:
            connection.execute("SELECT count(*) FROM shop_tag").fetchall()
            reads += 1
        except sqlite3.OperationalError:  # database is locked, after the busy timeout
            errors += 1
        longest = max(longest, time.perf_counter() - start)
        stop.wait(POLL_SECONDS)
    print(json.dumps({"reads": reads, "errors": errors, "longest": longest}), flush=True)


CHILDREN: dict[str, Callable[..., None]] = {
    "copy": child_copy,
    "prepare": child_prepare,
    "reader": child_reader,
    "poller": child_poller,
}


def child_command(role: str, *args: str) -> list[str]:
    return [PYTHON, str(SCRIPT), "--child", role, *args]


class Peer:
    """Another process with the live database open (child_reader or child_poller)."""

    def __init__(self, role: str, path: Path) -> None:
        self.process = subprocess.Popen(
            child_command(role, str(path)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._line()
        if ready != "ready":
            raise SystemExit(f"the {role} did not start: {ready!r}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self._line()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@contextmanager
def peer(role: str, path: Path) -> Iterator[Peer]:
    opened = Peer(role, path)
    try:
        yield opened
    finally:
        opened.close()


# --- the database and its snapshot ------------------------------------------------------------


@dataclass
class Setup:
    rows: int
    work: Path
    live: Path
    prepared: Path
    env: dict[str, str]
    artifact: Path
    manifest_entry: dict[str, object]

    @property
    def report(self) -> Path:
        return self.work / "child.json"


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", *args], cwd=EXAMPLE, env=env, check=True, capture_output=True
    )


def set_up(rows: int, work: Path) -> Setup:
    """The example project's database filled with ``rows``, and a zstd snapshot of it."""
    live = work / "bench.sqlite3"
    snapshots = work / "snapshots"
    env = base_env(EXAMPLE_DB_NAME=str(live), SNAPCTL_DIR=str(snapshots))
    print(f"[{rows:,} rows] building ...", file=sys.stderr)
    manage(env, "migrate", "--no-input", "-v0")
    manage(env, "bulk_fill", "--rows", str(rows))
    subprocess.run(
        snapctl("dump", "--quiet", "--label", "bench"),
        cwd=EXAMPLE,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,  # the snapshot's name
    )
    (snapshot,) = (p for p in snapshots.iterdir() if p.name[0].isdigit())
    entry = json.loads((snapshot / "manifest.json").read_text())["databases"]["default"]
    return Setup(
        rows,
        work,
        live,
        live.with_name(live.name + ".prepared"),  # next to it: same file system for a rename
        env,
        snapshot / entry["file"],
        entry,
    )


def prepare(setup: Setup) -> dict[str, float]:
    """(d) once: the prepared file made anew in a child; its peak RSS and its timings."""
    setup.prepared.unlink(missing_ok=True)
    measured = timed(
        child_command(
            "prepare",
            str(setup.artifact),
            str(setup.prepared),
            json.dumps(setup.manifest_entry),
            str(setup.report),
        ),
        setup.env,
    )
    return {"rss": measured.peak_rss_mb, **json.loads(setup.report.read_text())}


def copy_from_prepared(setup: Setup) -> dict[str, float]:
    """(b) once: the live database restored from the prepared file, in a child."""
    measured = timed(child_command("copy", str(setup.prepared), str(setup.report)), setup.env)
    inner = json.loads(setup.report.read_text())
    return {"whole": measured.seconds, "rss": measured.peak_rss_mb, **inner}


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_over(setup: Setup) -> tuple[float, float]:
    """(c) once: the prepared file renamed over the live one, then made durable by a fsync
    of the directory; the seconds of each. The rename frees the old file's blocks."""
    os.sync()
    start = time.perf_counter()
    os.replace(setup.prepared, setup.live)
    renamed = time.perf_counter()
    fsync_directory(setup.live.parent)
    return renamed - start, time.perf_counter() - renamed


def rename_keeping_old(setup: Setup) -> tuple[float, float]:
    """(c) once, as the contract's swap_in_copy would: the live file linked under a retired
    name first, so that the rename frees nothing, then dropped later (drop_copy); the
    seconds of the link and rename, and of the drop."""
    retired = setup.live.with_name(setup.live.name + ".retired")
    os.sync()
    start = time.perf_counter()
    os.link(setup.live, retired)
    os.replace(setup.prepared, setup.live)
    swapped = time.perf_counter() - start
    os.sync()
    start = time.perf_counter()
    retired.unlink()
    return swapped, time.perf_counter() - start


def in_process(step: Callable[[], object]) -> float:
    os.sync()
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def tags_named(path: Path, name: str) -> int:
    """Through a new connection: what anyone opening the database now reads."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        query = "SELECT count(*) FROM shop_tag WHERE name = ?"
        return int(connection.execute(query, (name,)).fetchall()[0][0])
    finally:
        connection.close()


def add_tag(path: Path, name: str) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("INSERT INTO shop_tag (name) VALUES (?)", (name,))
    finally:
        connection.close()


def disk_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


# --- the rounds -------------------------------------------------------------------------------


@dataclass
class Samples:
    """Every run of every step of one size, by name."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def largest(self, name: str) -> float:
        return max(self.values[name])

    def total(self, name: str) -> float:
        return sum(self.values[name])

    def shown(self, name: str) -> tuple[str, str]:
        """The median and the range, in milliseconds where the median is under 0.1 s."""
        scale, unit = (1000, " ms") if self.median(name) < 0.1 else (1, "")
        low, high = min(self.values[name]) * scale, max(self.values[name]) * scale
        return f"{self.median(name) * scale:.2f}{unit}", f"{low:.2f}-{high:.2f}{unit}"


def one_round(setup: Setup, samples: Samples) -> None:
    from snapctl.connectors._file_holders import holders

    label = f"[{setup.rows:,} rows]"
    print(f"{label} (a) whole commands ...", file=sys.stderr)
    settings_env = {**setup.env, "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    restore = snapctl("restore", "bench", "--yes", "--quiet")
    for name, command, env in (
        ("a restore", restore, setup.env),
        ("a version", snapctl("--version"), setup.env),
        ("a settings", python_c(SETTINGS_IMPORT), settings_env),
    ):
        measured = timed(command, env)
        samples.add(f"{name} s", measured.seconds)
        samples.add(f"{name} rss", measured.peak_rss_mb)
    with peer("poller", setup.live) as other:
        measured = timed(restore, setup.env)
        for key, value in json.loads(other.ask("stop")).items():
            samples.add(f"a poll {key}", value)
    samples.add("a poll s", measured.seconds)
    samples.add("a poll rss", measured.peak_rss_mb)

    print(f"{label} (d) making the prepared file ...", file=sys.stderr)
    made = prepare(setup)
    for key, value in made.items():
        samples.add(f"d {key}", value)
    samples.add("d sha256", in_process(lambda: compression_sha256(setup.prepared)))

    print(f"{label} (b) copies from the prepared file ...", file=sys.stderr)
    for name, role in (("b alone", None), ("b idle", "reader"), ("b poll", "poller")):
        add_tag(setup.live, MARK_BEFORE)  # gone once the copy is done
        if role is None:
            copied = copy_from_prepared(setup)
        else:
            with peer(role, setup.live) as other:
                copied = copy_from_prepared(setup)
                if role == "poller":
                    for key, value in json.loads(other.ask("stop")).items():
                        samples.add(f"{name} {key}", value)
        if tags_named(setup.live, MARK_BEFORE):
            raise SystemExit(f"{label} {name}: the copy left the live database as it was")
        for key, value in copied.items():
            samples.add(f"{name} {key}", value)

    print(f"{label} (c) the rename ...", file=sys.stderr)
    samples.add("c holders", in_process(lambda: holders(setup.live)))
    renamed, synced = rename_over(setup)
    samples.add("c rename", renamed)
    samples.add("c fsync", synced)
    for key, value in prepare(setup).items():  # consumed by the rename
        samples.add(f"d {key}", value)
    swapped, dropped = rename_keeping_old(setup)
    samples.add("c swap", swapped)
    samples.add("c drop", dropped)


def compression_sha256(path: Path) -> str:
    from snapctl import compression

    return compression.file_sha256(path)


# --- what a connection opened before sees -----------------------------------------------------


def lock_holder(path: Path) -> int | None:
    """The process holding a POSIX lock on SQLite's lock bytes of ``path``, as F_GETLK sees
    it; None if none does. (Closing this descriptor drops this process's own locks on the
    file: it holds none here.)"""
    query = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, SQLITE_LOCK_START, SQLITE_LOCK_LENGTH, 0)
    fd = os.open(path, os.O_RDONLY)
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(FLOCK, answer)
    return None if kind == fcntl.F_UNLCK else pid


def replaced_file_kept(pid: int, path: Path) -> int:
    """The disk that the replaced file of ``path``, still open in ``pid``, keeps in use."""
    for descriptor in os.scandir(f"/proc/{pid}/fd"):
        if os.readlink(descriptor.path) == f"{path} (deleted)":
            return os.stat(descriptor.path).st_blocks * 512
    return 0


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def what_it_sees(setup: Setup, way: str) -> dict[str, str]:
    """One way (``copy`` or ``rename``) of putting the prepared file in place, with another
    process's connection open on the live database since before."""
    from snapctl.connectors._file_holders import holders

    add_tag(setup.live, MARK_BEFORE)  # in the live database, not in the snapshot
    facts = {}
    with peer("reader", setup.live) as reader:
        facts["/proc scan names the reader, before"] = yes_no(bool(holders(setup.live)))
        facts["F_GETLK sees a lock while it is idle"] = yes_no(lock_holder(setup.live) is not None)
        reader.ask("begin")
        facts["F_GETLK sees a lock while it is in a read transaction"] = yes_no(
            lock_holder(setup.live) is not None
        )
        reader.ask("commit")
        if way == "copy":
            copy_from_prepared(setup)
        else:
            rename_over(setup)
        stale = reader.ask(f"count {MARK_BEFORE}") == "1"
        facts["it then reads"] = "the old data" if stale else "the restored data"
        facts["a new connection reads"] = (
            "the old data" if tags_named(setup.live, MARK_BEFORE) else "the restored data"
        )
        written = reader.ask(f"insert {MARK_AFTER}-{way}")
        kept = tags_named(setup.live, f"{MARK_AFTER}-{way}") == 1
        facts["its write afterwards"] = (
            "kept" if kept else "lost" if written == "ok" else f"refused ({written[7:]})"
        )
        facts["/proc scan names the reader, after"] = yes_no(bool(holders(setup.live)))
        kept_bytes = replaced_file_kept(reader.pid, setup.live)
        facts["disk the old file keeps while it stays open"] = f"{kept_bytes / MB:.1f} MB"
    return facts


# --- the tables -------------------------------------------------------------------------------


@dataclass
class SizeResult:
    """One size's results, as the tables show them."""

    rows: int
    database_bytes: int
    artifact_bytes: int
    prepared_bytes: int
    samples: Samples
    facts: dict[str, dict[str, str]]
    # The machine's 1-minute load average as the rounds began and ended: other work on the
    # two cores shows in the timings.
    load: tuple[float, float]


def timing_rows(m: SizeResult) -> list[list[str]]:
    s = m.samples
    size = f"{m.rows:,}"

    def row(step: str, timed_as: str, key: str, rss_key: str | None, note: str = "") -> list[str]:
        rss = f"{s.largest(rss_key):.0f} MB" if rss_key else "-"
        return [size, step, timed_as, *s.shown(key), rss, note]

    def poll(step: str) -> str:
        return (
            f"the reader's longest read {s.largest(f'{step} poll longest'):.2f} s, "
            f"{s.total(f'{step} poll errors'):.0f} of {s.total(f'{step} poll reads'):.0f} "
            "reads failed"
        )

    journal = f"journal up to {s.largest('b alone journal') / MB:.0f} MB"
    return [
        row("(a) snapctl restore --yes, zstd", "whole", "a restore s", "a restore rss"),
        row("(a) the same, a reader every 50 ms", "whole", "a poll s", "a poll rss", poll("a")),
        row("(a) snapctl --version", "whole", "a version s", "a version rss"),
        row("(a) python -c settings.DATABASES", "whole", "a settings s", "a settings rss"),
        row("(b) copy from prepared, alone", "in-process", "b alone seconds", None, journal),
        row("(b) the same, whole child", "whole", "b alone whole", "b alone rss", "settings, copy"),
        row("(b) copy, an idle reader open", "in-process", "b idle seconds", "b idle rss"),
        row("(b) copy, a reader every 50 ms", "in-process", "b poll seconds", None, poll("b")),
        row("(c) os.replace", "in-process", "c rename", None, "frees the old file"),
        row("(c) then fsync of the directory", "in-process", "c fsync", None),
        row("(c) os.link old + os.replace", "in-process", "c swap", None, "keeps the old file"),
        row("(c) later unlink of the old file", "in-process", "c drop", None),
        row("(c) /proc scan for holders", "in-process", "c holders", None),
        row(
            "(d) unpack + sha256 next to the DB",
            "in-process",
            "d unpack",
            "d rss",
            f"prepared file {m.prepared_bytes / MB:.1f} MB on disk",
        ),
        row("(d) fsync of the prepared file", "in-process", "d fsync", None),
        row("(d) sha256 of the prepared file", "in-process", "d sha256", None, "if re-checked"),
    ]


def markdown(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def tables(results: list[SizeResult], runs: int) -> str:
    sizes = "; ".join(
        f"{m.rows:,} rows: database {m.database_bytes / MB:.1f} MB, zstd snapshot "
        f"{m.artifact_bytes / MB:.1f} MB, load average {m.load[0]:.1f} then {m.load[1]:.1f}"
        for m in results
    )
    timings = markdown(
        ["rows", "step", "timed", f"seconds (median of {runs})", "range", "peak RSS", "note"],
        [row for m in results for row in timing_rows(m)],
        {3, 4, 5},
    )
    facts = markdown(
        ["rows", "another process's connection, open since before", "(b) copy", "(c) rename"],
        [
            [f"{m.rows:,}", what, m.facts["copy"][what], m.facts["rename"][what]]
            for m in results
            for what in m.facts["copy"]
        ],
        set(),
    )
    return f"{sizes}\n\n{timings}\n\n{facts}\n"


# --- main -------------------------------------------------------------------------------------


def measure(rows: int, runs: int, work: Path) -> SizeResult:
    setup = set_up(rows, work)
    samples = Samples()
    load_before = os.getloadavg()[0]
    for number in range(1, runs + 1):
        print(f"[{rows:,} rows] round {number}/{runs}", file=sys.stderr)
        one_round(setup, samples)
    load_after = os.getloadavg()[0]
    prepared_bytes = 0
    facts = {}
    for way in ("copy", "rename"):
        if not setup.prepared.exists():
            prepare(setup)
        prepared_bytes = disk_bytes(setup.prepared)
        facts[way] = what_it_sees(setup, way)
    return SizeResult(
        rows,
        setup.live.stat().st_size,
        setup.artifact.stat().st_size,
        prepared_bytes,
        samples,
        facts,
        (load_before, load_after),
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rows", default="200000,2000000", help="comma-separated (default 200000,2000000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per step (median)")
    parser.add_argument("--work", type=Path, help="where the files go (default: a temp dir)")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    return parser.parse_args()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        CHILDREN[sys.argv[2]](*sys.argv[3:])
        return
    options = parse_arguments()
    results = []
    for rows in (int(n) for n in options.rows.split(",")):
        with tempfile.TemporaryDirectory(prefix="snapctl-prepared-", dir=options.work) as work:
            began = time.monotonic()
            results.append(measure(rows, options.runs, Path(work)))
            print(f"[{rows:,} rows] done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    text = tables(results, options.runs)
    print(text)
    if options.markdown:
        options.markdown.write_text(text)


if __name__ == "__main__":
    main()
