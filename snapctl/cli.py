"""The command line: parse, call the library, format what it returns.

This is the only module that prints or exits. Every expected failure arrives here as a
SnapctlError and leaves as one line on stderr with its exit code (see errors.py). Django is
imported only inside the commands that need it, so --help and completion stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from snapctl import __version__, completion
from snapctl.errors import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    ConfigurationError,
    ConfirmationRequired,
    SnapctlError,
    SnapshotNotFound,
)
from snapctl.plain_values import use_plain_values

if TYPE_CHECKING:
    from rich.console import Console

    from snapctl.operations import RestorePlan
    from snapctl.progress import TerminalProgress
    from snapctl.store import Snapshot, SnapshotStore


@dataclass
class State:
    """The options given before the command name."""

    settings: str | None = None
    pythonpath: tuple[str, ...] = ()
    traceback: bool = False
    quiet: bool = False
    shared_store: bool = False


def _show_tracebacks(ctx: typer.Context) -> bool:
    state = ctx.obj if isinstance(ctx.obj, State) else None
    return bool(state and state.traceback) or os.environ.get("SNAPCTL_DEBUG") == "1"


class PlainValues:
    """Parameters (the help option too) checked in plain code, not by pydantic: see
    plain_values.py. Mixed into the commands and the group."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        use_plain_values(params)
        return params


class SnapctlCommand(PlainValues, TyperCommand):
    """One snapctl command."""


class SnapctlGroup(PlainValues, TyperGroup):
    """The one error boundary: SnapctlError becomes a message and an exit code."""

    # typer.Context is what click hands us; its base class is private to typer.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): unwound by now
            if _show_tracebacks(ctx):
                traceback.print_exc()
            from snapctl.console import interrupted

            raise typer.Exit(interrupted(exc)) from None
        except SnapctlError as exc:
            if _show_tracebacks(ctx):
                traceback.print_exc()
            typer.echo(f"snapctl: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if _show_tracebacks(ctx):
                raise
            typer.echo(
                f"snapctl: unexpected error: {type(exc).__name__}: {exc} "
                "(run again with --traceback for details)",
                err=True,
            )
            raise typer.Exit(EXIT_FAILED) from None


app = typer.Typer(
    cls=SnapctlGroup,
    name="snapctl",
    help="Take and restore snapshots of the databases of a Django project.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"snapctl {__version__}")
        raise typer.Exit()


# --settings and --pythonpath work before or after the command name, as with manage.py.
SettingsOption = Annotated[
    str | None,
    typer.Option(
        "--settings",
        metavar="MODULE",
        help="Settings module, e.g. mysite.settings. Default: DJANGO_SETTINGS_MODULE, "
        "else what ./manage.py names.",
        show_default=False,
    ),
]
PythonpathOption = Annotated[
    list[str] | None,
    typer.Option(
        "--pythonpath",
        metavar="DIR",
        help="A directory to add to the import path (repeatable).",
        show_default=False,
    ),
]


@app.callback()
def main_options(
    ctx: typer.Context,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the full traceback on errors.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing but results and errors.")
    ] = False,
    shared_store: Annotated[
        bool,
        typer.Option(
            "--shared-store",
            help="Read snapshots that other users own or can write (a team directory you "
            "trust; see README, 'What snapctl trusts').",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    ctx.obj = State(settings, tuple(pythonpath or ()), show_traceback, quiet, shared_store)


# Options shared by several commands.
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        "-x",
        metavar="APP[.MODEL]",
        help="dumpdata: leave out this app or model (repeatable).",
    ),
]
AliasOption = Annotated[
    list[str] | None,
    typer.Option(
        "--alias",
        "-a",
        metavar="ALIAS",
        help="Database alias from DATABASES (repeatable).",
        autocompletion=completion.aliases,
    ),
]
DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Snapshot directory. Default: SNAPCTL_DIR, SNAPSHOTS['DIRECTORY'], or a "
        "per-project directory under the user data directory.",
        file_okay=False,
        metavar="DIR",
        show_default=False,
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="NAME",
        help="Keep snapshots in this storage of settings.STORAGES (default: "
        "SNAPSHOTS['STORAGE'], else a local directory).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but results and errors.")
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", "--no-input", help="Do not ask for confirmation."),
]
SnapshotArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="SNAPSHOT",
        help="Snapshot name, label, unique prefix, or 'latest' (the default).",
        autocompletion=completion.snapshots,
        show_default=False,
    ),
]


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def _load_settings(ctx: typer.Context, settings: str | None, pythonpath: list[str] | None) -> None:
    """Load the project's settings with the command's --settings/--pythonpath, else the
    global ones. The app registry waits until a connector needs it (see django_env)."""
    from snapctl.django_env import DjangoOptions, load_settings

    state = _state(ctx)
    load_settings(
        DjangoOptions(settings or state.settings, tuple(pythonpath or ()) + state.pythonpath)
    )


def _store(
    ctx: typer.Context,
    directory: Path | None,
    settings: str | None = None,
    pythonpath: list[str] | None = None,
    storage: str | None = None,
) -> SnapshotStore:
    """The snapshot store, chosen as store/config.py says; a remote one's local scratch space
    is removed when the command ends."""
    from snapctl.store import choose_store

    def scratch() -> Path:
        import shutil
        import tempfile

        made = Path(tempfile.mkdtemp(prefix="snapctl-"))
        ctx.call_on_close(lambda: shutil.rmtree(made, ignore_errors=True))
        return made

    return choose_store(
        directory,
        storage,
        shared_flag=_state(ctx).shared_store,
        load_settings=lambda: _load_settings(ctx, settings, pythonpath),
        scratch=scratch,
    )


def _is_quiet(ctx: typer.Context, quiet: bool) -> bool:
    return quiet or _state(ctx).quiet


def _say(ctx: typer.Context, quiet: bool, message: str) -> None:
    """A message for the person at the terminal: stderr, and not with --quiet."""
    if not _is_quiet(ctx, quiet):
        typer.echo(message, err=True)


def _require_confirmation(yes: bool, what: str) -> None:
    """Without a terminal to ask on, destructive commands need --yes."""
    if not yes and not sys.stdin.isatty():
        raise ConfirmationRequired(f"{what} and stdin is not a terminal; pass --yes to confirm")


def _ask(question: str) -> None:
    try:
        answer = typer.confirm(question, default=False, err=True)
    except typer.Abort as exc:
        # click turns Ctrl-C (and our SIGTERM) at a prompt into Abort: keep its exit code.
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc.__context__ from None
        raise
    if not answer:
        typer.echo("Nothing changed.", err=True)
        raise typer.Exit(EXIT_FAILED)


def _out_console() -> Console:
    """Tables on stdout; in a pipe they keep whole lines instead of wrapping at 80 columns."""
    from rich.console import Console

    # No markup: names, versions and metadata come from manifests, and "[/x]" in one
    # would be read as markup (and fail the whole table).
    return Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 1000)


def _human_size(size: int, server_size: int = 0) -> str:
    """A size for people, with what connectors keep on the server beside it."""
    from rich.filesize import decimal

    return decimal(size) + (f" + {decimal(server_size)} on the server" if server_size else "")


def _age(created: datetime) -> str:
    seconds = max(0, int((datetime.now(timezone.utc) - created).total_seconds()))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _snapshot_json(store: SnapshotStore, snapshot: Snapshot) -> dict[str, Any]:
    """The documented JSON shape of a snapshot (README, "JSON output")."""
    return {
        "name": snapshot.name,
        "path": store.location(snapshot.name),
        "created": snapshot.created.isoformat(),
        "label": snapshot.label,
        "size": snapshot.size,
        "server_size": snapshot.server_size,
        "snapctl_version": snapshot.snapctl_version,
        "django_version": snapshot.django_version,
        "databases": {
            alias: {"alias": alias, **artifact.to_json()}
            for alias, artifact in snapshot.artifacts.items()
        },
    }


@contextlib.contextmanager
def _progress(ctx: typer.Context, quiet: bool) -> Iterator[TerminalProgress | None]:
    """A live progress display when stderr is a terminal, else nothing."""
    if _is_quiet(ctx, quiet) or not sys.stderr.isatty():
        yield None
        return
    from snapctl.progress import TerminalProgress

    progress = TerminalProgress()
    with progress.display:
        yield progress


@app.command(cls=SnapctlCommand)
def dump(
    ctx: typer.Context,
    alias: AliasOption = None,
    all_aliases: Annotated[
        bool, typer.Option("--all", help="Dump every database in DATABASES.")
    ] = False,
    label: Annotated[
        str | None,
        typer.Option("--label", "-l", metavar="LABEL", help="A label appended to the name."),
    ] = None,
    directory: DirOption = None,
    storage: StorageOption = None,
    compress: Annotated[
        str,
        typer.Option(
            "--compress",
            metavar="METHOD",
            help="Compression: zstd, gzip or none.",
            autocompletion=completion.compressions,
        ),
    ] = "zstd",
    level: Annotated[
        int | None,
        typer.Option(
            "--level",
            metavar="N",
            help="Compression level (zstd -7 to 22, default 1; gzip 1-9, default 6).",
        ),
    ] = None,
    connector: Annotated[
        str | None,
        typer.Option(
            "--connector",
            "-c",
            metavar="NAME",
            help="Use this connector (see list-connectors).",
            autocompletion=completion.connectors,
        ),
    ] = None,
    exclude: ExcludeOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Take a snapshot of the default database (or those named) and print its name."""
    from snapctl import operations
    from snapctl.store import validate_label

    if label is not None:
        validate_label(label)
    _load_settings(ctx, settings, pythonpath)
    aliases = operations.select_aliases(alias or [], all_aliases)
    store = _store(ctx, directory, storage=storage)
    with _progress(ctx, quiet) as progress:
        snapshot = operations.dump(
            store,
            aliases,
            label=label,
            method=compress,
            level=level,
            connector=connector,
            exclude=exclude or (),
            progress=progress,
        )
    if as_json:
        _print_json(_snapshot_json(store, snapshot))
    else:
        typer.echo(snapshot.name)
    dumped = ", ".join(
        f"{a.alias} ({a.connector}, {_human_size(a.size)})" for a in snapshot.artifacts.values()
    )
    _say(ctx, quiet, f"Dumped {dumped} into {store.location(snapshot.name)}")


@app.command(cls=SnapctlCommand)
def restore(
    ctx: typer.Context,
    snapshot: SnapshotArgument = None,
    alias: AliasOption = None,
    directory: DirOption = None,
    storage: StorageOption = None,
    yes: YesOption = False,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    lock_timeout: Annotated[
        int | None,
        typer.Option(
            "--lock-timeout",
            metavar="SECONDS",
            min=0,
            help="Wait at most this long for other sessions' locks, saying what for "
            "(default: SNAPSHOTS['LOCK_TIMEOUT'], else 10).",
        ),
    ] = None,
    no_terminate: Annotated[
        bool,
        typer.Option(
            "--no-terminate",
            help="Fail instead of ending other sessions of the database's user.",
        ),
    ] = False,
    from_any: Annotated[
        bool,
        typer.Option(
            "--from-any",
            help="Let 'latest' and labels pick snapshots of other databases too.",
        ),
    ] = False,
    exclude: ExcludeOption = None,
) -> None:
    """Put the databases back as they were in a snapshot (the newest by default)."""
    from snapctl import notices, operations, other_sessions
    from snapctl.django_env import database_settings

    _require_confirmation(yes, "restore replaces the current data")
    _load_settings(ctx, settings, pythonpath)
    store = _store(ctx, directory, storage=storage)
    plan = operations.plan_restore(
        store, snapshot, alias or [], from_any=from_any, exclude=exclude or ()
    )
    for note in plan.notes:
        _say(ctx, quiet, f"snapctl: {note}")

    with _progress(ctx, quiet) as progress:

        def notice(message: str) -> None:
            if progress is not None:  # above the live display, not through it
                progress.display.console.print(f"snapctl: {message}", markup=False)
            else:
                _say(ctx, quiet, f"snapctl: {message}")

        notices.configure(notice)
        other_sessions.configure(
            lock_timeout=lock_timeout, terminate=False if no_terminate else None
        )
        other_sessions.policy()  # a bad SNAPSHOTS['LOCK_TIMEOUT'] fails before any work

        def confirm(plan: RestorePlan) -> None:
            if yes:
                return
            targets = ", ".join(f"'{a}' ({database_settings(a).get('NAME')})" for a in plan.aliases)
            if progress is not None:
                progress.display.stop()  # the question needs the terminal to itself
            _ask(
                f"Restore snapshot {plan.snapshot.name} into {targets}? "
                "This replaces all of its current data."
            )
            if progress is not None:
                progress.display.start()

        operations.restore(store, plan, confirm, progress=progress)
    if as_json:
        _print_json({"snapshot": plan.snapshot.name, "restored": plan.aliases})
    else:
        typer.echo(plan.snapshot.name)
    _say(ctx, quiet, f"Restored {', '.join(plan.aliases)} from snapshot {plan.snapshot.name}")


@app.command("list", cls=SnapctlCommand)
def list_snapshots(
    ctx: typer.Context,
    alias: AliasOption = None,
    directory: DirOption = None,
    storage: StorageOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """List the snapshots, newest first."""
    store = _store(ctx, directory, settings, pythonpath, storage)
    wanted = set(alias or ())
    snapshots = [s for s in store.snapshots() if not wanted or wanted & set(s.artifacts)]
    if as_json:
        _print_json([_snapshot_json(store, s) for s in snapshots])
        return
    if not snapshots:
        _say(ctx, quiet, f"No snapshots in {store.where}")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "CREATED (UTC)", "AGE", "DATABASES", "ENGINES", "CONNECTORS"):
        table.add_column(column)
    table.add_column("SIZE", justify="right")
    table.add_column("COMPRESSION")
    for snap in snapshots:
        artifacts = list(snap.artifacts.values())
        table.add_row(
            snap.name,
            f"{snap.created:%Y-%m-%d %H:%M:%S}",
            _age(snap.created),
            ", ".join(f"{a.alias} ({a.database_name})" for a in artifacts),
            ", ".join(sorted({a.vendor for a in artifacts})),
            ", ".join(sorted({a.connector for a in artifacts})),
            _human_size(snap.size, snap.server_size),
            ", ".join(sorted({a.compression for a in artifacts})),
        )
    _out_console().print(table)


@app.command(cls=SnapctlCommand)
def show(
    ctx: typer.Context,
    snapshot: SnapshotArgument = None,
    directory: DirOption = None,
    storage: StorageOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a snapshot's manifest: when, what, with which connectors and versions."""
    store = _store(ctx, directory, settings, pythonpath, storage)
    snap = store.resolve(snapshot)
    if as_json:
        _print_json(_snapshot_json(store, snap))
        return
    from rich.table import Table

    from snapctl.store.manifest_fields import CONTROL_CHARACTERS

    console = _out_console()
    console.print(f"Snapshot  {snap.name}")
    console.print(f"Path      {store.location(snap.name)}")
    console.print(f"Created   {snap.created:%Y-%m-%d %H:%M:%S} UTC ({_age(snap.created)})")
    console.print(f"Label     {snap.label or '-'}")
    console.print(f"Versions  snapctl {snap.snapctl_version}, Django {snap.django_version}")
    console.print(f"Size      {_human_size(snap.size, snap.server_size)} ({snap.size} bytes)")
    console.print()
    table = Table(box=None, pad_edge=False)
    for column in ("ALIAS", "DATABASE", "CONNECTOR", "ENGINE", "SERVER", "FILE", "SIZE", "SHA256"):
        table.add_column(column, justify="right" if column == "SIZE" else "left")
    for a in snap.artifacts.values():
        table.add_row(
            a.alias,
            a.database_name,
            f"{a.connector} ({a.connector_source})",
            a.engine,
            a.server_version or "-",
            a.file,
            _human_size(a.size, a.server_size),
            a.sha256[:16],
        )
    console.print(table)
    for a in snap.artifacts.values():
        details = ", ".join(f"{k}={v}" for k, v in sorted(a.metadata.items()))
        # Metadata is any JSON a connector returned: its control characters are not sent.
        printable = CONTROL_CHARACTERS.sub("?", details)
        console.print(f"{a.alias}: {printable or 'no metadata'}")


@app.command(cls=SnapctlCommand)
def verify(
    ctx: typer.Context,
    snapshot: SnapshotArgument = None,
    all_snapshots: Annotated[bool, typer.Option("--all", help="Verify every snapshot.")] = False,
    directory: DirOption = None,
    storage: StorageOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Recompute every checksum of a snapshot (the newest by default) or of --all."""
    if all_snapshots and snapshot:
        raise ConfigurationError("give a snapshot or --all, not both")
    store = _store(ctx, directory, settings, pythonpath, storage)
    names = store.names() if all_snapshots else [store.resolve_name(snapshot)]
    if not names:  # nothing checked is not "all checksums match"
        raise SnapshotNotFound(f"no snapshots in {store.where}; nothing to verify")
    results = {}
    with _progress(ctx, quiet) as progress:
        for name in names:
            with progress.track(f"Verifying {name}") if progress else contextlib.nullcontext():
                results[name] = store.verify(name) or _external_problems(
                    ctx, store, name, settings, pythonpath
                )
    bad = {name: problems for name, problems in results.items() if problems}
    if as_json:
        _print_json([{"name": n, "ok": not p, "problems": p} for n, p in results.items()])
    else:
        width = max(len(name) for name in results)  # labels make names of many lengths
        for name, problems in results.items():
            typer.echo(f"{name:<{width}}  {'ok' if not problems else 'DAMAGED'}")
    for problems in bad.values():
        for problem in problems:
            typer.echo(f"snapctl: error: {problem}", err=True)
    if bad:
        raise typer.Exit(EXIT_INTEGRITY)
    _say(ctx, quiet, f"Verified {len(results)} snapshot(s): all checksums match")


def _external_problems(
    ctx: typer.Context,
    store: SnapshotStore,
    name: str,
    settings: str | None,
    pythonpath: list[str] | None,
) -> list[str]:
    """What connectors find wrong with data a snapshot keeps outside its files."""
    from snapctl import operations

    snapshot = store.load(name)
    try:
        if not _settings_for_hooks(ctx, snapshot, settings, pythonpath):
            return []
    except ConfigurationError as exc:
        return [f"snapshot {name}: its server-side data cannot be checked: {exc}"]
    return operations.external_problems(store, snapshot)


def _settings_for_hooks(
    ctx: typer.Context,
    snapshot: Snapshot,
    settings: str | None,
    pythonpath: list[str] | None,
) -> bool:
    """Load the settings if the snapshot's connectors may keep data elsewhere (``check`` and
    ``forget`` hooks): an installed one that has hooks (then settings that cannot be loaded
    are an error), or one not installed, which the settings may configure by that name
    (without settings there is nothing to find). Returns whether hooks may apply."""
    from snapctl import operations

    if operations.needs_project(snapshot):
        _load_settings(ctx, settings, pythonpath)
        return True
    if not operations.may_use_settings(snapshot):
        return False
    try:
        _load_settings(ctx, settings, pythonpath)
    except ConfigurationError:
        return False
    return True


def _remove(
    ctx: typer.Context,
    store: SnapshotStore,
    names: list[str],
    *,
    as_json: bool,
    dry_run: bool,
    settings: str | None,
    pythonpath: list[str] | None,
) -> None:
    """Delete (or, for a dry run, only list) snapshots, letting their connectors release
    what they keep elsewhere first."""
    from snapctl import operations

    def release(name: str) -> None:
        try:
            snapshot = store.load(name)
        except SnapctlError:
            return  # a broken manifest names nothing to release
        if _settings_for_hooks(ctx, snapshot, settings, pythonpath):
            operations.forget(store, snapshot)  # if this fails, the snapshot stays

    if not dry_run:
        store.delete(names, before=release)
    if as_json:
        _print_json({"deleted": [] if dry_run else names, "would_delete": names if dry_run else []})
    else:
        for name in names:
            typer.echo(name)


@app.command(cls=SnapctlCommand)
def delete(
    ctx: typer.Context,
    snapshots: Annotated[
        list[str],
        typer.Argument(
            metavar="SNAPSHOT",
            help="Snapshots to delete (names, labels or unique prefixes).",
            autocompletion=completion.snapshots,
            show_default=False,
        ),
    ],
    yes: YesOption = False,
    directory: DirOption = None,
    storage: StorageOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Delete snapshots; prints the name of each one deleted."""
    _require_confirmation(yes, "delete removes snapshots for good")
    store = _store(ctx, directory, settings, pythonpath, storage)
    names = list(dict.fromkeys(store.resolve_name(ref) for ref in snapshots))
    if not yes:
        _ask(f"Delete {len(names)} snapshot(s): {', '.join(names)}?")
    _remove(
        ctx, store, names, as_json=as_json, dry_run=False, settings=settings, pythonpath=pythonpath
    )
    _say(ctx, quiet, f"Deleted {len(names)} snapshot(s) from {store.where}")


@app.command(cls=SnapctlCommand)
def prune(
    ctx: typer.Context,
    keep: Annotated[
        int,
        typer.Option(
            "--keep", "-k", metavar="N", help="How many of the newest snapshots to keep.", min=0
        ),
    ],
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias",
            "-a",
            metavar="ALIAS",
            help="Only snapshots holding this alias count and go.",
            autocompletion=completion.aliases,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Only print what would be deleted.")
    ] = False,
    any_database: Annotated[
        bool,
        typer.Option(
            "--any-database",
            help="Count and delete snapshots of other databases sharing the store too.",
        ),
    ] = False,
    yes: YesOption = False,
    directory: DirOption = None,
    storage: StorageOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Delete all but the newest N snapshots; prints the name of each one that goes."""
    from snapctl import django_env, operations

    if not dry_run:
        _require_confirmation(yes, "prune removes snapshots for good")
    store = _store(ctx, directory, settings, pythonpath, storage)
    # Another site's snapshots in a shared store are not this project's to prune: which
    # databases are the project's, its settings say, when they can be found (--dir alone
    # needs none: then every snapshot counts).
    if not any_database and not django_env.settings_loaded():
        with contextlib.suppress(SnapctlError):
            _load_settings(ctx, settings, pythonpath)
    ours = not any_database and django_env.settings_loaded()
    accept = operations.of_these_databases if ours else (lambda snapshot: True)
    names = [s.name for s in store.prune_plan(keep, alias, accept)]
    if names and not dry_run and not yes:
        _ask(f"Delete {len(names)} snapshot(s), keeping the newest {keep}?")
    _remove(
        ctx,
        store,
        names,
        as_json=as_json,
        dry_run=dry_run,
        settings=settings,
        pythonpath=pythonpath,
    )
    done = "Would delete {} snapshot(s), keeping" if dry_run else "Deleted {} snapshot(s), kept"
    _say(ctx, quiet, f"{done.format(len(names))} the newest {keep}")


@app.command("list-connectors", cls=SnapctlCommand)
def list_connectors(
    ctx: typer.Context,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the installed connectors, where each comes from, and the aliases it serves."""
    from snapctl import connector_listing
    from snapctl.registry import FALLBACK

    _load_settings(ctx, settings, pythonpath)
    rows = connector_listing.rows()
    if as_json:
        _print_json([row.to_json() for row in rows])
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "SOURCE", "ENGINES", "ALIASES", "BINARIES"):
        table.add_column(column)
    for row in rows:
        binaries = (
            "ok" if not row.missing_binaries else "missing " + ", ".join(row.missing_binaries)
        )
        table.add_row(
            row.name,
            row.source,
            ", ".join(row.engines) or ("any" if row.name == FALLBACK else "by name only"),
            ", ".join(f"{a} ({why})" for a, why in row.aliases.items()) or "-",
            binaries if row.binaries else "-",
        )
    _out_console().print(table)


def main() -> None:
    """Console-script entry point (see console.py, which the installed command uses)."""
    from snapctl.console import main as console_main

    console_main()
