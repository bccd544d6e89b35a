"""What the tests share: running snapctl (as a process, or in this process), the example
project, crafting and editing snapshots, the servers' admin clients, the exit codes.

conftest.py keeps the fixtures and the hooks that mark the tiers; docs/testing.md says
which test goes in which tier and why.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import inspect
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

# The documented exit codes (README, "Exit codes"), for tests to name in every assertion.
from snapctl.errors import EXIT_FAILED as EXIT_FAILED
from snapctl.errors import EXIT_INTEGRITY as EXIT_INTEGRITY
from snapctl.errors import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from snapctl.errors import EXIT_OK as EXIT_OK
from snapctl.errors import EXIT_TERMINATED as EXIT_TERMINATED
from snapctl.errors import EXIT_USAGE as EXIT_USAGE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
IN_CI = os.environ.get("CI") == "true"

# Environment variables that would point snapctl (or the example project) elsewhere.
_POINTING_ELSEWHERE = ("EXAMPLE_", "SNAPCTL_", "DJANGO_", "PG", "MYSQL")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point snapctl elsewhere. Preparing
    copies in the background is off unless a test turns it on (SNAPCTL_PREPARE): a
    background process outliving its test would load into databases the test drops."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(_POINTING_ELSEWHERE)
    }
    env["SNAPCTL_PREPARE"] = "off"
    env.update(extra)
    return env


# --- snapctl as a process: the end-to-end tier ----------------------------------------------


@dataclass
class Project:
    """The example project pointed at one database, with its own snapshot directory."""

    env: dict[str, str]
    snapshots: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def snapctl(
        self, *args: str, input: str | None = None, check: bool = False, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m snapctl ARGS`` in the example directory, as a user would."""
        result = subprocess.run(
            [sys.executable, "-m", "snapctl", *args],
            cwd=EXAMPLE,
            env={**self.env, **env},
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != EXIT_OK:
            raise AssertionError(
                f"snapctl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=EXAMPLE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def digest(self) -> dict[str, Any]:
        """Every table's rows and the sequences, canonical, for exact comparison."""
        return json.loads(self.manage("table_digest"))  # type: ignore[no-any-return]

    def store_entries(self) -> list[str]:
        """What the snapshot directory holds, but its lock file: snapshots and leftovers."""
        return store_entries(self.snapshots)

    def dump(self, *args: str) -> str:
        """Take a snapshot and return its name."""
        return self.snapctl("dump", *args, check=True).stdout.strip()


def project_for(env: dict[str, str], snapshots: Path) -> Project:
    """The example project with ``env`` (its database), keeping snapshots in ``snapshots``."""
    state = str(snapshots.parent / "snapctl-state")
    return Project(
        env=clean_env(**{"SNAPCTL_DIR": str(snapshots), "SNAPCTL_STATE_DIR": state, **env}),
        snapshots=snapshots,
    )


def start_snapctl(env: dict[str, str], *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """Start ``python -m snapctl ARGS`` in the example directory with ``env``, as
    :meth:`Project.snapctl` runs it, without waiting for it."""
    return subprocess.Popen([sys.executable, "-m", "snapctl", *args], cwd=EXAMPLE, env=env, **popen)


@contextlib.contextmanager
def snapctl_on_terminal(
    project: Project, *args: str, env: dict[str, str] | None = None, **popen: Any
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """snapctl started with a pseudo-terminal as stdin, stdout and stderr (unless ``popen``
    says otherwise); yields the process and the terminal's side to read and type on."""
    primary, secondary = os.openpty()
    streams = {"stdin": secondary, "stdout": secondary, "stderr": secondary, **popen}
    proc = start_snapctl({**project.env, **(env or {})}, *args, **streams)
    os.close(secondary)
    try:
        yield proc, primary
    finally:
        proc.kill()
        proc.wait()
        os.close(primary)


# --- snapctl in this process: the fast tier --------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """What an in-process run left: as a process's would be."""

    returncode: int
    stdout: str
    stderr: str


def _runner() -> Any:
    from typer.testing import CliRunner

    # click before 8.2 mixes stderr into stdout unless told not to; 8.2 keeps them apart.
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


def run_in_process(*args: str, cwd: Path, input: str = "", **env: str) -> Ran:
    """``snapctl ARGS`` run in this process, in ``cwd``, with the environment cleaned as
    :func:`clean_env` does. For commands that load no Django settings (they can be loaded
    only once per process): a run that loaded them fails the test. The import path and the
    working directory are put back afterwards."""
    from snapctl import django_env
    from snapctl.cli import app

    unset: dict[str, str | None] = {"DJANGO_SETTINGS_MODULE": None, "SNAPCTL_DIR": None}
    unset.update({key: None for key in os.environ if key.startswith(_POINTING_ELSEWHERE)})
    # The test's own state directory (conftest sets it), and no preparing.
    unset.update({"SNAPCTL_PREPARE": "off", "SNAPCTL_STATE_DIR": os.environ["SNAPCTL_STATE_DIR"]})
    saved_path, saved_cwd = list(sys.path), os.getcwd()
    os.chdir(cwd)
    try:
        result = _runner().invoke(
            app,
            list(args),
            input=input,
            env={**unset, **env},
            catch_exceptions=False,
            prog_name="snapctl",
        )
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
    assert not django_env.settings_loaded(), f"snapctl {args} loaded Django settings in-process"
    return Ran(result.exit_code, result.stdout, result.stderr)


def run_on_store(store: Path, *args: str) -> Ran:
    """``snapctl ARGS --dir STORE`` in this process, next to the store (no project there)."""
    return run_in_process(*args, "--dir", str(store), cwd=store.parent)


# --- what a command says ---------------------------------------------------------------------


def assert_one_line(result: Ran | subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """Exit ``code``, and one line on stderr, ``snapctl: error: ...``, with each of ``words``."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("snapctl: error: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def one_line(stderr: str) -> str:
    """The one line that is not blank."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def one_error_line(stderr: str) -> str:
    """The one line that is not blank, an error."""
    line = one_line(stderr)
    assert line.startswith("snapctl: error: "), line
    return line


# --- snapshots, crafted and edited -----------------------------------------------------------


def store_entries(store: Path) -> list[str]:
    """What a snapshot directory holds, but its lock file: snapshots and leftovers."""
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.iterdir() if p.name != ".lock")


def manifest_of(snapshot: Path) -> dict[str, Any]:
    return json.loads((snapshot / "manifest.json").read_text())  # type: ignore[no-any-return]


@contextlib.contextmanager
def edited_manifest(snapshot: Path) -> Iterator[dict[str, Any]]:
    """The snapshot's manifest, to change in place: written back when the block ends."""
    manifest = manifest_of(snapshot)
    yield manifest
    (snapshot / "manifest.json").write_text(json.dumps(manifest))


def artifact_path(snapshot: Path, alias: str = "default") -> Path:
    """The file the manifest names for ``alias``."""
    return snapshot / str(manifest_of(snapshot)["databases"][alias]["file"])


def uncompressed_artifact(snapshot: Path, alias: str = "default") -> Path:
    """The artifact of ``alias``, checked to be stored as it is (``--compress none``)."""
    assert manifest_of(snapshot)["databases"][alias]["compression"] == "none"
    return artifact_path(snapshot, alias)


def resign(
    snapshot: Path, alias: str = "default", content: bytes | None = None, **fields: object
) -> None:
    """Make the manifest agree with the artifact (first replaced by ``content``, if given):
    its checksum and size, so that only what the artifact holds is wrong; and set ``fields``
    of its entry."""
    with edited_manifest(snapshot) as manifest:
        entry = manifest["databases"][alias]
        path = snapshot / entry["file"]
        if content is not None:
            path.write_bytes(content)
        data = path.read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data), **fields)


def new_store(parent: Path, name: str = "snaps") -> Path:
    """An empty snapshot directory that only this user can read and write, as snapctl makes."""
    store = parent / name
    store.mkdir(mode=0o700)
    store.chmod(0o700)
    return store


_SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}
_CRAFTED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _pack(data: bytes, compress: str) -> bytes:
    if compress == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return gzip.compress(data) if compress == "gzip" else data


def craft_snapshot(
    store: Path,
    *,
    label: str | None = None,
    content: bytes = b"-- a database\n",
    compress: str = "zstd",
    connector: str = "sqlite",
    created: datetime | None = None,
) -> str:
    """Write a whole snapshot of a SQLite database into ``store`` by hand, as ``dump`` writes
    one (its name from its time, a second apart from any there; its manifest; an artifact
    with its checksum), without a project or Django. Returns its name."""
    moment = created or _CRAFTED + timedelta(seconds=len(store_entries(store)))
    name = moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}Z"
    name += f"-{label}" if label else ""
    snapshot = store / name
    snapshot.mkdir(mode=0o700)
    file = "default.sqlite3" + _SUFFIXES[compress]
    packed = _pack(content, compress)
    (snapshot / file).write_bytes(packed)
    database = {"vendor": "sqlite", "name": "/srv/db.sqlite3", "host": "", "port": ""}
    manifest = {
        "format_version": 1,
        "name": name,
        "label": label,
        "created": moment.isoformat(),
        "snapctl_version": "0.1.0",
        "django_version": "5.2",
        "databases": {
            "default": {
                "database": database,
                "unpacked_size": len(content),
                "file": file,
                "compression": compress,
                "size": len(packed),
                "sha256": hashlib.sha256(packed).hexdigest(),
                "connector": {
                    "name": connector,
                    "source": "built-in",
                    "class": "snapctl.connectors.sqlite:SQLiteConnector",
                },
                "engine": "django.db.backends.sqlite3",
                "vendor": "sqlite",
                "server_version": "3.45.1",
                "metadata": {},
            }
        },
    }
    (snapshot / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return name


# --- servers ---------------------------------------------------------------------------------


def server_unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a server test must never pass by skipping there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: server tests must run)")
    pytest.skip(reason)


def _admin(argv: list[str]) -> str:
    """Run a server's client as its superuser; its output, or RuntimeError with its error."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=clean_env())
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip())
    return result.stdout


def psql_admin(sql: str, database: str = "postgres") -> str:
    return _admin(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
         "-Atqc", sql]
    )  # fmt: skip


def mariadb_admin(sql: str) -> str:
    binary = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    return _admin([binary, "-uroot", "-h127.0.0.1", "-P3306", "-N", "-B", "-e", sql])


@dataclass(frozen=True)
class ServerDatabase:
    """A database and its owner, made by a test."""

    engine: str
    name: str
    user: str
    password: str
    host: str = "127.0.0.1"
    port: str = ""

    def env(self) -> dict[str, str]:
        return {
            "EXAMPLE_DB_ENGINE": self.engine,
            "EXAMPLE_DB_NAME": self.name,
            "EXAMPLE_DB_USER": self.user,
            "EXAMPLE_DB_PASSWORD": self.password,
            "EXAMPLE_DB_HOST": self.host,
            "EXAMPLE_DB_PORT": self.port,
        }


def fill_example(db: ServerDatabase) -> None:
    """Migrate the example project into a server database and seed it."""
    project = project_for(db.env(), Path("/nonexistent"))
    project.manage("migrate", "--no-input", "-v0")
    project.manage("seed_shop")


def new_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


# --- fault injection -------------------------------------------------------------------------


@dataclass
class FaultLedger:
    """What the fault-injection tests did, printed as one line at the end of the run."""

    injected: int = 0
    checked: int = 0
    bytes_lost: int = 0

    def check(self, expected: object, actual: object) -> bool:
        """Count one snapshot or database checked after a fault; return whether it held."""
        self.checked += 1
        if expected == actual:
            return True
        self.bytes_lost += len(json.dumps(expected, sort_keys=True, default=str))
        return False
