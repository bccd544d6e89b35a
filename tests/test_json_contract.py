"""The JSON every command prints with --json is a contract with scripts (README, "JSON
output"): these pin each document's keys and value types, so that a change to
snapctl/rendering.py that would break a script fails here first."""

from __future__ import annotations

import json
from typing import Any

from helpers import Project

ARTIFACT = {
    "alias": str,
    "file": str,
    "compression": str,
    "size": int,
    "sha256": str,
    "connector": dict,
    "engine": str,
    "vendor": str,
    "server_version": (str, type(None)),
    "metadata": dict,
    "unpacked_size": int,
    "database": dict,
    "encryption": (dict, type(None)),
    "excluded_data": list,
    "sanitized": (dict, type(None)),
}
SNAPSHOT = {
    "name": str,
    "path": str,
    "created": str,
    "label": (str, type(None)),
    "size": int,
    "server_size": int,
    "snapctl_version": str,
    "django_version": str,
    "databases": dict,
    "prepared": list,
}
PREPARED_COPY = {
    "alias": str,
    "database": str,
    "state": str,
    "copy": (str, type(None)),
    "server_size": (int, type(None)),
    "seconds": (float, int, type(None)),
}
CONNECTOR_ROW = {
    "name": str,
    "source": str,
    "distribution": (str, type(None)),
    "class": str,
    "engines": list,
    "binaries": list,
    "binaries_missing": list,
    "aliases": dict,
}


def _shaped(document: dict[str, Any], shape: dict[str, Any]) -> None:
    assert sorted(document) == sorted(shape)
    for key, kind in shape.items():
        assert isinstance(document[key], kind), (key, document[key])


def _snapshot(document: dict[str, Any]) -> None:
    _shaped(document, SNAPSHOT)
    for alias, artifact in document["databases"].items():
        _shaped(artifact, ARTIFACT)
        assert artifact["alias"] == alias
        assert sorted(artifact["connector"]) == ["class", "name", "source"]
        assert sorted(artifact["database"]) == ["host", "name", "port", "vendor"]


def _json(project: Project, *args: str) -> Any:
    return json.loads(project.snapctl(*args, "--json", check=True).stdout)


def test_every_command_prints_its_documented_shape(sqlite_project: Project) -> None:
    dumped = _json(sqlite_project, "dump", "--label", "pinned")
    _snapshot(dumped)
    assert dumped["label"] == "pinned"

    listed = _json(sqlite_project, "list")
    assert [s["name"] for s in listed] == [dumped["name"]]
    _snapshot(listed[0])
    assert _json(sqlite_project, "show", "pinned") == listed[0]

    assert _json(sqlite_project, "verify") == [{"name": dumped["name"], "ok": True, "problems": []}]
    assert _json(sqlite_project, "restore", "--yes") == {
        "snapshot": dumped["name"],
        "restored": ["default"],
        "instant": [],
        "sanitized": [],
    }

    rows = _json(sqlite_project, "list-connectors")
    for row in rows:
        _shaped(row, CONNECTOR_ROW)
    assert {"default": "engine"} in [row["aliases"] for row in rows]

    assert _json(sqlite_project, "prune", "--keep", "0", "--dry-run") == {
        "deleted": [],
        "would_delete": [dumped["name"]],
    }
    assert _json(sqlite_project, "delete", "--yes", dumped["name"]) == {
        "deleted": [dumped["name"]],
        "would_delete": [],
    }


def test_prepared_copies_print_their_documented_shape(postgres_project: Project) -> None:
    dumped = _json(postgres_project, "dump")
    prepared = _json(postgres_project, "prepare")
    assert sorted(prepared) == ["prepared", "snapshot"]
    assert prepared["snapshot"] == dumped["name"]
    (copy,) = prepared["prepared"]
    _shaped(copy, {**PREPARED_COPY, "already": bool})
    (listed,) = _json(postgres_project, "list")
    _snapshot(listed)
    (shown,) = listed["prepared"]
    _shaped(shown, PREPARED_COPY)
    assert shown["state"] == "ready" and shown["copy"] == copy["copy"]
    assert _json(postgres_project, "restore", "--yes") == {
        "snapshot": dumped["name"],
        "restored": ["default"],
        "instant": ["default"],
        "sanitized": [],
    }
    postgres_project.snapctl("delete", "--yes", dumped["name"], check=True)
