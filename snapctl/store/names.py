"""Snapshot names and labels: ``<UTC time to the millisecond>[-<label>]``, which sort as the
snapshots' times do (see docs/store.md)."""

from __future__ import annotations

import re
from datetime import datetime

from snapctl.errors import ConfigurationError

LATEST = "latest"

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME = re.compile(r"(\d{8}T\d{6}\.\d{3}Z)(?:-(" + _LABEL.pattern + r"))?")
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S"


def validate_label(label: str) -> str:
    if not _LABEL.fullmatch(label):
        raise ConfigurationError(
            f"invalid label {label!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return label


def snapshot_name(created: datetime, label: str | None) -> str:
    """A sortable name: the UTC time to the millisecond, then the label if any."""
    stamp = created.strftime(_TIMESTAMP_FORMAT) + f".{created.microsecond // 1000:03d}Z"
    return f"{stamp}-{label}" if label else stamp


def is_snapshot_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def label_of(name: str) -> str | None:
    """The label a snapshot's name carries: all of it after the time, never a tail of it
    (``b`` is not the label of ``...Z-fooZ-b``)."""
    match = _NAME.fullmatch(name)
    return match.group(2) if match else None
