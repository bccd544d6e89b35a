"""What the commands print on stdout: JSON documents and tables.

The JSON shapes are a contract with scripts (README, "JSON output"); tests/test_json_contract.py
pins every key and type, so a change here is a change people will notice. Tables are for
people: rich, without markup (names and metadata come from manifests, and ``[/x]`` in one
would be read as markup and fail the whole table).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from snapctl.connector_listing import ConnectorRow
    from snapctl.operations.preparing import Prepared
    from snapctl.prepared_copies import CopyRecord
    from snapctl.store import Artifact, Snapshot, SnapshotStore


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def copies_json(copies: Sequence[CopyRecord]) -> list[dict[str, Any]]:
    """Prepared copies of a snapshot on their servers."""
    return [
        {
            "alias": record.alias,
            "database": record.database.get("name"),
            "state": record.state,
            "copy": record.copy.get("name"),
            "server_size": record.size,
            "seconds": record.seconds,
        }
        for record in copies
    ]


def describe_copies(copies: Sequence[CopyRecord]) -> str:
    """``default ready (12.3 MB on the server)``, ``default preparing``, or ``-``."""
    parts = []
    for record in copies:
        size = f" ({human_size(record.size)} on the server)" if record.size else ""
        parts.append(f"{record.alias} {record.state}{size}")
    return ", ".join(parts) or "-"


def snapshot_json(
    store: SnapshotStore, snapshot: Snapshot, copies: Sequence[CopyRecord] = ()
) -> dict[str, Any]:
    """A snapshot, as ``dump``, ``list`` and ``show`` print it, with its prepared copies."""
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
        "prepared": copies_json(copies),
    }


def restored_json(
    snapshot: Snapshot, aliases: Sequence[str], instant: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "snapshot": snapshot.name,
        "restored": list(aliases),
        "instant": list(instant),
        # Those restored from sanitized data (fakes, not the real values).
        "sanitized": [a for a in aliases if snapshot.artifacts[a].sanitized is not None],
    }


def prepared_json(snapshot: Snapshot, prepared: Sequence[Prepared]) -> dict[str, Any]:
    return {
        "snapshot": snapshot.name,
        "prepared": [
            {**copies_json([done.record])[0], "already": done.already} for done in prepared
        ],
    }


def verified_json(results: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    return [
        {"name": name, "ok": not problems, "problems": list(problems)}
        for name, problems in results.items()
    ]


def removed_json(names: Sequence[str], *, dry_run: bool) -> dict[str, Any]:
    return {
        "deleted": [] if dry_run else list(names),
        "would_delete": list(names) if dry_run else [],
    }


def connectors_json(rows: Sequence[ConnectorRow]) -> list[dict[str, Any]]:
    return [
        {
            "name": row.name,
            "source": row.source,
            "distribution": row.distribution,
            "class": row.class_path,
            "engines": list(row.engines),
            "binaries": list(row.binaries),
            "binaries_missing": row.missing_binaries,
            "aliases": row.aliases,
        }
        for row in rows
    ]


def human_size(size: int, server_size: int = 0) -> str:
    """A size for people, with what connectors keep on the server beside it."""
    from rich.filesize import decimal

    return decimal(size) + (f" + {decimal(server_size)} on the server" if server_size else "")


def age(created: datetime) -> str:
    seconds = max(0, int((datetime.now(timezone.utc) - created).total_seconds()))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"


def _console() -> Console:
    """Tables on stdout; in a pipe they keep whole lines instead of wrapping at 80 columns."""
    from rich.console import Console

    return Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 1000)


def print_snapshots(
    snapshots: Sequence[Snapshot], copies: Callable[[Snapshot], Sequence[CopyRecord]]
) -> None:
    """``list``: one row per snapshot."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "CREATED (UTC)", "AGE", "DATABASES", "ENGINES", "CONNECTORS"):
        table.add_column(column)
    table.add_column("SIZE", justify="right")
    table.add_column("COMPRESSION")
    table.add_column("PREPARED")
    for snap in snapshots:
        artifacts = list(snap.artifacts.values())
        table.add_row(
            snap.name,
            f"{snap.created:%Y-%m-%d %H:%M:%S}",
            age(snap.created),
            ", ".join(
                f"{a.alias} ({a.database_name}){' sanitized' if a.sanitized else ''}"
                for a in artifacts
            ),
            ", ".join(sorted({a.vendor for a in artifacts})),
            ", ".join(sorted({a.connector for a in artifacts})),
            human_size(snap.size, snap.server_size),
            ", ".join(sorted({stored_as(a) for a in artifacts})),
            describe_copies(copies(snap)),
        )
    _console().print(table)


def stored_as(artifact: Artifact) -> str:
    """How an artifact is stored: its compression, ``+age`` if encrypted."""
    return artifact.compression + ("+age" if artifact.encryption else "")


def describe_encryption(snap: Snapshot) -> str:
    """To whom a snapshot's artifacts are encrypted, public keys as people know them."""
    from snapctl.encryption.keys import describe

    recipients = {
        recipient: None
        for artifact in snap.artifacts.values()
        if artifact.encryption
        for recipient in artifact.encryption.recipients
    }
    if not recipients:
        return "no"
    return "with age, to " + ", ".join(describe(recipient) for recipient in recipients)


def print_snapshot(store: SnapshotStore, snap: Snapshot, copies: Sequence[CopyRecord] = ()) -> None:
    """``show``: the manifest, a row per database, then each connector's metadata."""
    from rich.table import Table

    from snapctl.store.manifest_fields import CONTROL_CHARACTERS

    console = _console()
    console.print(f"Snapshot  {snap.name}")
    console.print(f"Path      {store.location(snap.name)}")
    console.print(f"Created   {snap.created:%Y-%m-%d %H:%M:%S} UTC ({age(snap.created)})")
    console.print(f"Label     {snap.label or '-'}")
    console.print(f"Versions  snapctl {snap.snapctl_version}, Django {snap.django_version}")
    console.print(f"Size      {human_size(snap.size, snap.server_size)} ({snap.size} bytes)")
    console.print(f"Prepared  {describe_copies(copies)}")
    console.print(f"Encrypted {describe_encryption(snap)}")
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
            human_size(a.size, a.server_size),
            a.sha256[:16],
        )
    console.print(table)
    for a in snap.artifacts.values():
        details = ", ".join(f"{k}={v}" for k, v in sorted(a.metadata.items()))
        # Metadata is any JSON a connector returned: its control characters are not sent.
        printable = CONTROL_CHARACTERS.sub("?", details)
        console.print(f"{a.alias}: {printable or 'no metadata'}")
    for a in snap.artifacts.values():
        if a.excluded_data:
            console.print(f"{a.alias}: tables restored empty: {', '.join(a.excluded_data)}")
        if a.sanitized is not None:
            console.print(f"{a.alias}: sanitized, {describe_rules(a.sanitized)}")


def describe_rules(sanitized: Mapping[str, Any]) -> str:
    """A sanitized artifact's rules on one line (checked free of control characters when
    the manifest was read)."""
    rules = sanitized.get("rules") or {}
    if not rules:
        return "no rule applied to its tables"
    return "rules: " + ", ".join(
        f"{target}={spec if isinstance(spec, str) else json.dumps(spec, ensure_ascii=False)}"
        for target, spec in sorted(rules.items())
    )


def print_verified(results: Mapping[str, Sequence[str]]) -> None:
    """``verify``: a line per snapshot, names aligned (labels make names of many lengths)."""
    width = max(len(name) for name in results)
    for name, problems in results.items():
        typer.echo(f"{name:<{width}}  {'ok' if not problems else 'DAMAGED'}")


def print_connectors(rows: Sequence[ConnectorRow], fallback: str) -> None:
    """``list-connectors``: what each connector serves and whether its programs are there."""
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
            ", ".join(row.engines) or ("any" if row.name == fallback else "by name only"),
            ", ".join(f"{a} ({why})" for a, why in row.aliases.items()) or "-",
            binaries if row.binaries else "-",
        )
    _console().print(table)
