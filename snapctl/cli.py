"""The command line: parse, call the library, format what it returns.

This is the only module that prints or exits. Every expected failure arrives here as a
SnapctlError and leaves as one line on stderr with its exit code (see errors.py). Django is
imported only inside the commands that need it, so --help and completion stay fast.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from snapctl import __version__
from snapctl.errors import EXIT_FAILED, ConfigurationError, ConfirmationRequired, SnapctlError

if TYPE_CHECKING:
    from rich.console import Console

    from snapctl.operations import RestorePlan
    from snapctl.snapshots import Snapshot, SnapshotStore


@dataclass
class State:
    settings: str | None = None
    pythonpath: tuple[str, ...] = ()
    traceback: bool = False


def _show_tracebacks(ctx: typer.Context) -> bool:
    state = ctx.obj if isinstance(ctx.obj, State) else None
    return bool(state and state.traceback) or os.environ.get("SNAPCTL_DEBUG") == "1"


class SnapctlGroup(TyperGroup):
    """The one error boundary: SnapctlError becomes a message and an exit code."""

    # typer.Context is what click hands us; its base class is private to typer.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
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
    ctx.obj = State(settings, tuple(pythonpath or ()), show_traceback)


# Options shared by several commands.
AliasOption = Annotated[
    list[str] | None,
    typer.Option("--alias", "-a", help="Database alias from DATABASES (repeatable)."),
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
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def _start_django(ctx: typer.Context, settings: str | None, pythonpath: list[str] | None) -> None:
    """Start Django with the command's --settings/--pythonpath, else the global ones."""
    from snapctl.django_env import DjangoOptions, setup

    state = _state(ctx)
    setup(DjangoOptions(settings or state.settings, tuple(pythonpath or ()) + state.pythonpath))


def _store(directory: Path | None) -> SnapshotStore:
    from snapctl.snapshots import SnapshotStore, store_root

    return SnapshotStore(store_root(directory, django_ready=True))


def _out_console() -> Console:
    """Tables on stdout; in a pipe they keep whole lines instead of wrapping at 80 columns."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 1000)


def _human_size(size: int) -> str:
    from rich.filesize import decimal

    return decimal(size)


def _snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "name": snapshot.name,
        "path": str(snapshot.path),
        "created": snapshot.created.isoformat(),
        "label": snapshot.label,
        "size": snapshot.size,
        "databases": {
            alias: {"alias": alias, **artifact.to_json()}
            for alias, artifact in snapshot.artifacts.items()
        },
    }


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@app.command()
def dump(
    ctx: typer.Context,
    alias: AliasOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    all_aliases: Annotated[
        bool, typer.Option("--all", help="Dump every database in DATABASES.")
    ] = False,
    label: Annotated[
        str | None, typer.Option("--label", "-l", help="A label appended to the name.")
    ] = None,
    directory: DirOption = None,
    compress: Annotated[
        str, typer.Option("--compress", help="Compression: zstd, gzip or none.")
    ] = "zstd",
    level: Annotated[
        int | None,
        typer.Option("--level", help="Compression level (zstd 1-22, default 3; gzip 1-9)."),
    ] = None,
    connector: Annotated[
        str | None,
        typer.Option("--connector", "-c", help="Use this connector (see list-connectors)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Take a snapshot of the default database (or those named) and print its name."""
    from snapctl import operations
    from snapctl.snapshots import validate_label

    if label is not None:
        validate_label(label)
    _start_django(ctx, settings, pythonpath)
    aliases = operations.select_aliases(alias or [], all_aliases)
    store = _store(directory)
    snapshot = operations.dump(
        store, aliases, label=label, method=compress, level=level, connector=connector
    )
    if as_json:
        _print_json(_snapshot_json(snapshot))
    else:
        typer.echo(snapshot.name)
    dumped = ", ".join(
        f"{a.alias} ({a.connector}, {_human_size(a.size)})" for a in snapshot.artifacts.values()
    )
    typer.echo(f"Dumped {dumped} into {snapshot.path}", err=True)


def _confirm_restore(plan: RestorePlan) -> None:
    from snapctl.django_env import database_settings

    targets = ", ".join(
        f"'{alias}' ({database_settings(alias).get('NAME')})" for alias in plan.aliases
    )
    question = (
        f"Restore snapshot {plan.snapshot.name} into {targets}? "
        "This replaces all of its current data."
    )
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def restore(
    ctx: typer.Context,
    snapshot: Annotated[
        str | None,
        typer.Argument(help="Snapshot name, unique prefix, or 'latest' (the default)."),
    ] = None,
    alias: AliasOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    directory: DirOption = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", "--no-input", help="Do not ask for confirmation."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Put the databases back as they were in a snapshot (the newest by default)."""
    from snapctl import operations

    if not yes and not sys.stdin.isatty():
        raise ConfirmationRequired(
            "restore replaces the current data and stdin is not a terminal; pass --yes to confirm"
        )
    _start_django(ctx, settings, pythonpath)
    store = _store(directory)
    plan = operations.plan_restore(store, snapshot, alias or [])
    operations.restore(store, plan, (lambda _plan: None) if yes else _confirm_restore)
    if as_json:
        _print_json({"snapshot": plan.snapshot.name, "restored": plan.aliases})
    else:
        typer.echo(plan.snapshot.name)
    typer.echo(f"Restored {', '.join(plan.aliases)} from snapshot {plan.snapshot.name}", err=True)


@app.command("list")
def list_snapshots(
    ctx: typer.Context,
    directory: DirOption = None,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the snapshots, newest first."""
    from snapctl.snapshots import SnapshotStore, store_root

    if directory is None and not os.environ.get("SNAPCTL_DIR"):
        _start_django(ctx, settings, pythonpath)
    store = SnapshotStore(store_root(directory, django_ready=directory is None))
    snapshots = store.list()
    if as_json:
        _print_json([_snapshot_json(s) for s in snapshots])
        return
    if not snapshots:
        typer.echo(f"No snapshots in {store.root}", err=True)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "CREATED (UTC)", "DATABASES", "SIZE"):
        table.add_column(column, justify="right" if column == "SIZE" else "left")
    for snap in snapshots:
        table.add_row(
            snap.name,
            snap.created.strftime("%Y-%m-%d %H:%M:%S"),
            ", ".join(f"{a.alias} ({a.connector})" for a in snap.artifacts.values()),
            _human_size(snap.size),
        )
    _out_console().print(table)


@app.command("list-connectors")
def list_connectors(
    ctx: typer.Context,
    settings: SettingsOption = None,
    pythonpath: PythonpathOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the installed connectors, where each comes from, and the aliases it serves."""
    from snapctl import connector_listing

    _start_django(ctx, settings, pythonpath)
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
            ", ".join(row.engines) or "any",
            ", ".join(f"{a} ({why})" for a, why in row.aliases.items()) or "-",
            binaries if row.binaries else "-",
        )
    _out_console().print(table)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="snapctl")


__all__ = ["ConfigurationError", "app", "main"]
