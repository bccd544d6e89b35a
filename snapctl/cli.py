"""The command line: parse, call the library, format what it returns.

Results go to stdout through rendering.py; messages go to stderr from here. Every expected
failure arrives here as a SnapctlError and leaves as one line on stderr with its exit code
(see errors.py); console.py, the installed command, adds signals. Django is
imported only inside the commands that need it, so --help and completion stay fast.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from snapctl import __version__, completion, rendering
from snapctl.errors import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    ConfigurationError,
    ConfirmationRequired,
    SnapctlError,
)
from snapctl.plain_values import use_plain_values

if TYPE_CHECKING:
    from snapctl.operations import RestorePlan
    from snapctl.prepared_copies import CopyRecord
    from snapctl.progress import TerminalProgress
    from snapctl.store import Artifact, Snapshot, SnapshotStore


@dataclass
class State:
    """The options every command shares, given before the command name or after it (the
    command's settings module wins; its --pythonpath directories come first)."""

    settings: str | None = None
    pythonpath: tuple[str, ...] = ()
    traceback: bool = False
    quiet: bool = False
    shared_store: bool = False
    directory: Path | None = None
    storage: str | None = None

    def add_command_options(self, options: dict[str, Any]) -> None:
        self.settings = options.pop("settings", None) or self.settings
        self.pythonpath = tuple(options.pop("pythonpath", None) or ()) + self.pythonpath
        self.quiet = bool(options.pop("quiet", False)) or self.quiet
        self.directory = options.pop("directory", None)
        self.storage = options.pop("storage", None)


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


QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but results and errors.")
]


@app.callback()
def main_options(
    ctx: typer.Context,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the full traceback on errors.")
    ] = False,
    quiet: QuietOption = False,
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


def _shared(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


# Declared once, added to every command by @command; their values go to the State.
EVERY_COMMAND = (
    _shared("settings", SettingsOption, None),
    _shared("pythonpath", PythonpathOption, None),
    _shared("quiet", QuietOption, False),
)
STORE_COMMANDS = (_shared("directory", DirOption, None), _shared("storage", StorageOption, None))

Command = TypeVar("Command", bound=Callable[..., None])


def command(name: str | None = None, *, store: bool = False) -> Callable[[Command], Command]:
    """Register a command with the options every command shares (and, for one that reads a
    snapshot ``store``, --dir and --storage), declared once: the command's own parameters
    are its own, and _load_settings, _store and _say read the shared ones from the State."""

    def register(run: Command) -> Command:
        shared = EVERY_COMMAND + (STORE_COMMANDS if store else ())
        own = inspect.signature(run, eval_str=True)

        @functools.wraps(run)
        def with_shared_options(**values: Any) -> None:
            _state(values["ctx"]).add_command_options(
                {param.name: values.pop(param.name) for param in shared}
            )
            run(**values)

        signature = own.replace(parameters=[*own.parameters.values(), *shared])
        with_shared_options.__signature__ = signature  # type: ignore[attr-defined]
        with_shared_options.__annotations__ = {
            param.name: param.annotation for param in signature.parameters.values()
        }
        app.command(name, cls=SnapctlCommand)(with_shared_options)
        return run

    return register


ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        "-x",
        metavar="APP[.MODEL]",
        help="dumpdata: leave out this app or model (repeatable).",
    ),
]
IdentityOption = Annotated[
    list[str] | None,
    typer.Option(
        "--identity",
        "-i",
        metavar="FILE",
        help="An age identity file or SSH private key to decrypt with (repeatable; default: "
        "SNAPCTL_IDENTITY, else your snapctl identity and SSH keys).",
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
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", "--no-input", help="Do not ask for confirmation."),
]
NoPrepareOption = Annotated[
    bool,
    typer.Option(
        "--no-prepare",
        help="Do not prepare a copy of this snapshot on the server for an instant restore "
        "(default: SNAPSHOTS['PREPARE']).",
    ),
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
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def _load_settings(ctx: typer.Context) -> None:
    """Load the project's settings (--settings, --pythonpath). The app registry waits until a
    connector needs it (see django_env)."""
    from snapctl.django_env import DjangoOptions, load_settings

    state = _state(ctx)
    load_settings(DjangoOptions(state.settings, state.pythonpath))


def _store(ctx: typer.Context) -> SnapshotStore:
    """The snapshot store, chosen as store/config.py says; a remote one's local scratch space
    is removed when the command ends."""
    from snapctl.store import choose_store

    def scratch() -> Path:
        import shutil
        import tempfile

        made = Path(tempfile.mkdtemp(prefix="snapctl-"))
        ctx.call_on_close(lambda: shutil.rmtree(made, ignore_errors=True))
        return made

    state = _state(ctx)
    return choose_store(
        state.directory,
        state.storage,
        shared_flag=state.shared_store,
        load_settings=lambda: _load_settings(ctx),
        scratch=scratch,
    )


def _say(ctx: typer.Context, message: str) -> None:
    """A message for the person at the terminal: stderr, and not with --quiet."""
    if not _state(ctx).quiet:
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


@contextlib.contextmanager
def _progress(ctx: typer.Context) -> Iterator[TerminalProgress | None]:
    """A live progress display when stderr is a terminal, else nothing."""
    if _state(ctx).quiet or not sys.stderr.isatty():
        yield None
        return
    from snapctl.progress import TerminalProgress

    progress = TerminalProgress()
    with progress.display:
        yield progress


@command(store=True)
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
    encrypt_to: Annotated[
        list[str] | None,
        typer.Option(
            "--encrypt-to",
            "-r",
            metavar="KEY|FILE",
            help="Encrypt with age to this public key (age1..., ssh-ed25519 ..., ssh-rsa ...) "
            "or file of them, besides SNAPSHOTS['ENCRYPT_TO'] (repeatable).",
        ),
    ] = None,
    exclude_data: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-data",
            "-X",
            metavar="TABLE|APP.MODEL",
            help="Keep this table (or model's table) but leave its rows out: a restore gives "
            "it back empty (repeatable; added to SNAPSHOTS['EXCLUDE_DATA']).",
        ),
    ] = None,
    as_json: JsonOption = False,
    no_prepare: NoPrepareOption = False,
    sanitize: Annotated[
        bool | None,
        typer.Option(
            "--sanitize/--no-sanitize",
            help="Apply SNAPSHOTS['SANITIZE'] rules to a scratch copy and dump that, or not "
            "(default: the aliases SNAPSHOTS['SANITIZE_BY_DEFAULT'] lists).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Take a snapshot of the default database (or those named) and print its name."""
    from snapctl import operations
    from snapctl.operations import preparing
    from snapctl.store import validate_label

    if label is not None:
        validate_label(label)
    _load_settings(ctx)
    preparing.policy(no_prepare)  # a bad SNAPSHOTS['PREPARE'] fails before any work
    aliases = operations.select_aliases(alias or [], all_aliases)
    store = _store(ctx)
    with _progress(ctx) as progress:
        snapshot = operations.dump(
            store,
            aliases,
            label=label,
            method=compress,
            level=level,
            connector=connector,
            exclude=exclude or (),
            encrypt_to=encrypt_to or (),
            exclude_data=exclude_data or (),
            progress=progress,
            sanitize=sanitize,
        )
    if as_json:
        rendering.print_json(rendering.snapshot_json(store, snapshot))
    else:
        typer.echo(snapshot.name)
    dumped = ", ".join(
        f"{a.alias} ({a.connector}, {rendering.human_size(a.size)}"
        f"{', sanitized' if a.sanitized is not None else ''})"
        for a in snapshot.artifacts.values()
    )
    _say(ctx, f"Dumped {dumped} into {store.location(snapshot.name)}")
    _prepare_later(ctx, snapshot, aliases, no_prepare)


@command(store=True)
def restore(
    ctx: typer.Context,
    snapshot: SnapshotArgument = None,
    alias: AliasOption = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
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
    identity: IdentityOption = None,
    no_prepare: NoPrepareOption = False,
) -> None:
    """Put the databases back as they were in a snapshot (the newest by default)."""
    from snapctl import notices, operations, other_sessions
    from snapctl.django_env import database_settings
    from snapctl.encryption import keys
    from snapctl.operations import preparing

    _require_confirmation(yes, "restore replaces the current data")
    keys.use_identities([Path(path) for path in identity or []])
    _load_settings(ctx)
    preparing.policy(no_prepare)  # a bad SNAPSHOTS['PREPARE'] fails before any work
    store = _store(ctx)
    plan = operations.plan_restore(
        store, snapshot, alias or [], from_any=from_any, exclude=exclude or ()
    )
    for note in plan.notes:
        _say(ctx, f"snapctl: {note}")

    with _progress(ctx) as progress:

        def notice(message: str) -> None:
            if progress is not None:  # above the live display, not through it
                progress.display.console.print(f"snapctl: {message}", markup=False)
            else:
                _say(ctx, f"snapctl: {message}")

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

        instant = operations.restore(store, plan, confirm, progress=progress)
    if as_json:
        rendering.print_json(rendering.restored_json(plan.snapshot, plan.aliases, instant))
    else:
        typer.echo(plan.snapshot.name)
    how = ""
    if instant:
        copies = "its prepared copy" if len(instant) == 1 else "their prepared copies"
        how = f" instantly ({', '.join(instant)} from {copies})"
    sanitized = [a for a in plan.aliases if plan.snapshot.artifacts[a].sanitized is not None]
    if sanitized:
        how += f"; sanitized data in {', '.join(sanitized)}, not the real values"
    _say(ctx, f"Restored {', '.join(plan.aliases)} from snapshot {plan.snapshot.name}{how}")
    for restored in plan.aliases:
        emptied = plan.snapshot.artifacts[restored].excluded_data
        if emptied:
            _say(ctx, f"snapctl: tables restored empty ({restored}): {', '.join(emptied)}")
    _prepare_later(ctx, plan.snapshot, plan.aliases, no_prepare)


def _prepare_later(
    ctx: typer.Context, snapshot: Snapshot, aliases: list[str], no_prepare: bool
) -> None:
    """After dump and restore: in a detached process, drop the databases restores swapped
    out and keep a copy of ``snapshot`` prepared as the policy says; this returns at once."""
    from snapctl.errors import SnapctlError
    from snapctl.notices import notice

    try:
        _start_preparing(ctx, snapshot, aliases, no_prepare)
    except (SnapctlError, OSError) as exc:  # the dump or restore itself is done
        notice(f"no copy is prepared in the background: {exc}")


def _start_preparing(
    ctx: typer.Context, snapshot: Snapshot, aliases: list[str], no_prepare: bool
) -> None:
    from snapctl.encryption import keys
    from snapctl.operations import preparing
    from snapctl.prepared_copies import Records

    chosen = preparing.policy(no_prepare)
    eligible = [
        alias
        for alias in preparing.preparable(snapshot, aliases)
        if _decryptable(snapshot.artifacts[alias])
    ]
    if not eligible:
        return
    records = Records()
    if chosen == "off" and not any(
        record.kind == "retired" for record in records.all() if record.alias in eligible
    ):
        return
    state = _state(ctx)
    argv = [*(["--settings", state.settings] if state.settings else [])]
    for directory in state.pythonpath:
        argv += ["--pythonpath", directory]
    if state.shared_store:
        argv.append("--shared-store")
    argv += ["prepare", snapshot.name, "--background", "--quiet"]
    if state.directory is not None:
        argv += ["--dir", str(state.directory)]
    if state.storage:
        argv += ["--storage", state.storage]
    for alias in eligible:
        argv += ["--alias", alias]
    for identity in keys.chosen_identities():
        argv += ["--identity", str(identity)]
    if no_prepare:
        argv.append("--no-prepare")
    preparing.start_in_background(argv, snapshot, [] if chosen == "off" else eligible, records)


def _decryptable(artifact: Artifact) -> bool:
    """Whether the user can read the artifact: stored in the clear, or encrypted to one of
    their identities (a dump on a server that only encrypts prepares nothing)."""
    from snapctl.encryption import keys

    return artifact.encryption is None or keys.can_decrypt(artifact.encryption.recipients)


@command(store=True)
def prepare(
    ctx: typer.Context,
    snapshot: SnapshotArgument = None,
    alias: AliasOption = None,
    as_json: JsonOption = False,
    drop: Annotated[
        bool,
        typer.Option(
            "--drop", help="Drop the snapshot's prepared copies instead, freeing the room."
        ),
    ] = False,
    identity: IdentityOption = None,
    background: Annotated[bool, typer.Option("--background", hidden=True)] = False,
    no_prepare: Annotated[bool, typer.Option("--no-prepare", hidden=True)] = False,
    adopt: Annotated[str | None, typer.Option("--records", hidden=True)] = None,
) -> None:
    """Prepare a copy of a snapshot (the newest by default) on the database server, so that
    restoring it is instant; waits for one being prepared. Prints the snapshot's name."""
    from snapctl import operations
    from snapctl.encryption import keys
    from snapctl.operations import preparing
    from snapctl.prepared_copies import Records

    keys.use_identities([Path(path) for path in identity or []])
    _load_settings(ctx)
    store = _store(ctx)
    plan = operations.plan_restore(store, snapshot, alias or [])
    aliases = preparing.preparable(plan.snapshot, plan.aliases)
    records = Records()
    # TOKEN:FD of each record dump or restore wrote for this process, and its lock's descriptor.
    descriptors = dict(pair.split(":", 1) for pair in (adopt or "").split(",") if ":" in pair)
    adopted = [
        (record, int(descriptors[record.token]))
        for record in records.all()
        if record.token in descriptors and descriptors[record.token].isdigit()
    ]
    if drop:
        problems = preparing.drop_copies_of(plan.snapshot, records)
        for problem in problems:
            typer.echo(f"snapctl: error: {problem}", err=True)
        if problems:
            raise typer.Exit(EXIT_FAILED)
        typer.echo(plan.snapshot.name)
        _say(ctx, f"Dropped the prepared copies of snapshot {plan.snapshot.name}")
        return
    if background:  # started by dump or restore: tidy up first, then prepare what is kept
        os.nice(10)  # the person's own work comes first
        chosen = preparing.policy(no_prepare)
        for name in aliases:
            preparing.settle(name, plan.snapshot, chosen, records, others=not no_prepare)
        if chosen == "off":
            return
    elif not aliases:
        connectors = ", ".join(sorted({plan.snapshot.artifacts[a].connector for a in plan.aliases}))
        raise ConfigurationError(
            f"snapshot {plan.snapshot.name} has no database whose connector keeps prepared "
            f"copies ({connectors}); only server databases (postgres, postgres-template, "
            "mysql) have them"
        )
    for note in plan.notes:
        _say(ctx, f"snapctl: {note}")
    with _progress(ctx) as progress:
        done = preparing.prepare(
            store, plan.snapshot, aliases, progress=progress, records=records, adopted=adopted
        )
    if as_json:
        rendering.print_json(rendering.prepared_json(plan.snapshot, done))
    else:
        typer.echo(plan.snapshot.name)
    for item in done:
        size = (
            f", {rendering.human_size(item.record.size)} on the server" if item.record.size else ""
        )
        when = "prepared earlier" if item.already else f"in {item.record.seconds or 0:.1f} s"
        _say(
            ctx,
            f"A copy of {item.alias} from snapshot {plan.snapshot.name} is ready ({when}{size})",
        )


@command("list", store=True)
def list_snapshots(
    ctx: typer.Context,
    alias: AliasOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the snapshots, newest first."""
    from snapctl.operations.preparing import copies_of

    store = _store(ctx)
    wanted = set(alias or ())
    snapshots = [s for s in store.snapshots() if not wanted or wanted & set(s.artifacts)]
    records = _copy_records()
    if as_json:
        rendering.print_json(
            [rendering.snapshot_json(store, s, copies_of(s, records)) for s in snapshots]
        )
    elif snapshots:
        rendering.print_snapshots(snapshots, lambda s: copies_of(s, records))
    else:
        _say(ctx, f"No snapshots in {store.where}")


@command(store=True)
def show(
    ctx: typer.Context,
    snapshot: SnapshotArgument = None,
    as_json: JsonOption = False,
) -> None:
    """Show a snapshot's manifest: when, what, with which connectors and versions."""
    from snapctl.operations.preparing import copies_of

    store = _store(ctx)
    snap = store.resolve(snapshot)
    copies = copies_of(snap, _copy_records())
    if as_json:
        rendering.print_json(rendering.snapshot_json(store, snap, copies))
    else:
        rendering.print_snapshot(store, snap, copies)


def _copy_records() -> list[CopyRecord]:
    """The prepared copies snapctl knows of; none when its state directory is unusable
    (listing snapshots must not fail for it)."""
    from dataclasses import replace

    from snapctl.prepared_copies import Records

    try:
        records = Records()
        return [
            record
            if record.state != "preparing" or records.under_way(record)
            else replace(record, state="interrupted")  # the next prepare or restore drops it
            for record in records.all()
        ]
    except (SnapctlError, OSError):
        return []


@command(store=True)
def verify(
    ctx: typer.Context,
    snapshot: SnapshotArgument = None,
    all_snapshots: Annotated[bool, typer.Option("--all", help="Verify every snapshot.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute every checksum of a snapshot (the newest by default) or of --all."""
    from snapctl import maintenance

    if all_snapshots and snapshot:
        raise ConfigurationError("give a snapshot or --all, not both")
    store = _store(ctx)
    names = maintenance.names_to_verify(store, snapshot, all_snapshots)
    with _progress(ctx) as progress:
        results = maintenance.verify(store, names, lambda: _load_settings(ctx), progress)
    if as_json:
        rendering.print_json(rendering.verified_json(results))
    else:
        rendering.print_verified(results)
    bad = [problem for problems in results.values() for problem in problems]
    for problem in bad:
        typer.echo(f"snapctl: error: {problem}", err=True)
    if bad:
        raise typer.Exit(EXIT_INTEGRITY)
    _say(ctx, f"Verified {len(results)} snapshot(s): all checksums match")


def _remove(
    ctx: typer.Context, store: SnapshotStore, names: list[str], *, as_json: bool, dry_run: bool
) -> None:
    """Delete (or, for a dry run, only list) snapshots and print what went."""
    from snapctl import maintenance

    if not dry_run:
        maintenance.delete(store, names, lambda: _load_settings(ctx))
    if as_json:
        rendering.print_json(rendering.removed_json(names, dry_run=dry_run))
    else:
        for name in names:
            typer.echo(name)


@command(store=True)
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
    as_json: JsonOption = False,
) -> None:
    """Delete snapshots; prints the name of each one deleted."""
    _require_confirmation(yes, "delete removes snapshots for good")
    store = _store(ctx)
    names = list(dict.fromkeys(store.resolve_name(ref) for ref in snapshots))
    if not yes:
        _ask(f"Delete {len(names)} snapshot(s): {', '.join(names)}?")
    _remove(ctx, store, names, as_json=as_json, dry_run=False)
    _say(ctx, f"Deleted {len(names)} snapshot(s) from {store.where}")


@command(store=True)
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
    as_json: JsonOption = False,
) -> None:
    """Delete all but the newest N snapshots; prints the name of each one that goes."""
    from snapctl import maintenance

    if not dry_run:
        _require_confirmation(yes, "prune removes snapshots for good")
    store = _store(ctx)
    names = maintenance.prune_candidates(
        store, keep, alias, any_database=any_database, load_settings=lambda: _load_settings(ctx)
    )
    if names and not dry_run and not yes:
        _ask(f"Delete {len(names)} snapshot(s), keeping the newest {keep}?")
    _remove(ctx, store, names, as_json=as_json, dry_run=dry_run)
    done = "Would delete {} snapshot(s), keeping" if dry_run else "Deleted {} snapshot(s), kept"
    _say(ctx, f"{done.format(len(names))} the newest {keep}")


@command()
def keygen(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write the new identity (default: your snapctl identity file).",
        ),
    ] = None,
) -> None:
    """Make a new age identity for decrypting snapshots and print its public key, the one
    to give to SNAPSHOTS['ENCRYPT_TO'] or --encrypt-to."""
    from snapctl.encryption import keys

    path = output or keys.default_identity_path()
    public = keys.new_identity(path)
    typer.echo(public)
    _say(ctx, f"Wrote a new identity to {path}: keep it secret, and keep a copy")


@command("list-connectors")
def list_connectors(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the installed connectors, where each comes from, and the aliases it serves."""
    from snapctl import connector_listing
    from snapctl.registry import FALLBACK

    _load_settings(ctx)
    rows = connector_listing.rows()
    if as_json:
        rendering.print_json(rendering.connectors_json(rows))
    else:
        rendering.print_connectors(rows, FALLBACK)
