"""The sanitizing key: what makes fakes unguessable and the same from run to run.

First found wins: the ``SNAPCTL_SANITIZE_KEY`` environment variable, ``SNAPSHOTS
["SANITIZE_KEY"]``, else a key derived from ``settings.SECRET_KEY`` as
HMAC-SHA256(SECRET_KEY, "snapctl sanitize key v1"), so a project gets a stable key without
configuring one and the SECRET_KEY itself is never used as is. The key is never written to
a manifest, JSON, a log or a command line.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from typing import Any

from snapctl.errors import ConfigurationError

ENVIRONMENT = "SNAPCTL_SANITIZE_KEY"
SETTING = "SANITIZE_KEY"
DERIVATION_LABEL = b"snapctl sanitize key v1"


def _as_bytes(value: object, where: str) -> bytes:
    if isinstance(value, bytes) and value:
        return value
    if isinstance(value, str) and value:
        return value.encode("utf-8")
    raise ConfigurationError(f"{where} must be a non-empty string")


def sanitize_key(
    snapshots: Mapping[str, Any], secret_key: object, environ: Mapping[str, str] | None = None
) -> bytes:
    """The key, from the environment, ``SNAPSHOTS`` or ``SECRET_KEY``, in that order."""
    environ = os.environ if environ is None else environ
    if environ.get(ENVIRONMENT):
        return _as_bytes(environ[ENVIRONMENT], ENVIRONMENT)
    if snapshots.get(SETTING) is not None:
        return _as_bytes(snapshots[SETTING], f"SNAPSHOTS['{SETTING}']")
    if not secret_key:
        raise ConfigurationError(
            f"sanitizing needs a key: set {ENVIRONMENT}, SNAPSHOTS['{SETTING}'] or SECRET_KEY"
        )
    return hmac.digest(_as_bytes(secret_key, "SECRET_KEY"), DERIVATION_LABEL, "sha256")
