"""The PostgreSQL client programs (pg_dump, pg_restore, psql) and what their versions allow."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from snapctl.connectors import _process
from snapctl.errors import ConfigurationError, OperationFailed

_CLIENT_HINT = "the PostgreSQL client tools (postgresql-client)"

# Where Debian's postgresql-client-N packages install the programs pg_wrapper runs.
_WRAPPED_VERSIONS = Path("/usr/lib/postgresql")


@functools.cache
def client_program(name: str) -> str:
    """The PostgreSQL client program ``name`` (psql, pg_dump, pg_restore), found once per
    command.

    Debian and Ubuntu put a Perl wrapper (pg_wrapper) on PATH that chooses a version and runs
    it: 20-50 ms of every call. For a server it does not manage, it runs the newest installed
    version, which is also right for ours (a newer client reads older servers and archives),
    so that binary is run directly. ``PGCLUSTER`` asks the wrapper for a particular cluster's
    version: then it is kept.
    """
    path = _process.find_binary(name, package_hint=_CLIENT_HINT)
    if Path(path).resolve().name != "pg_wrapper" or os.environ.get("PGCLUSTER"):
        return path
    versions = sorted(
        _WRAPPED_VERSIONS.glob(f"*/bin/{name}"),
        key=lambda found: [int(part) for part in re.findall(r"\d+", found.parent.parent.name)],
    )
    return str(versions[-1]) if versions else path


def _major_num(version_num: int) -> int:
    """The major part of a server_version_num: 150004 -> 150000, 90624 -> 90600."""
    return version_num - version_num % (10000 if version_num >= 100000 else 100)


def _major_name(major_num: int) -> str:
    return (
        str(major_num // 10000)
        if major_num >= 100000
        else f"{major_num // 10000}.{major_num // 100 % 100}"
    )


def version_num(version: str) -> int:
    """A server_version_num from a version text: '15.10 (Debian ...)' -> 150010,
    '9.6.24' -> 90624, '17beta1' -> 170000."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        return 0
    major, minor, patch = (int(part or 0) for part in match.groups())
    if major >= 10:
        return major * 10000 + minor
    return major * 10000 + minor * 100 + patch


def older_pg_dump(alias: str, failure: OperationFailed) -> ConfigurationError | None:
    """pg_dump refuses a server newer than itself; say which package fixes it."""
    # "server version: 15.4; pg_dump version: 13.11" comes with the error line of pg_dump
    # 15+ ("aborting because of server version mismatch", then this as its detail) and is
    # the error line itself of older ones.
    match = re.search(r"server version: ([^;]+); pg_dump version", str(failure))
    if not match:
        return None
    server = match.group(1).strip()
    major = _major_name(_major_num(version_num(server)))
    return ConfigurationError(
        f"pg_dump is older than the PostgreSQL {server} server of '{alias}'; install "
        f"postgresql-client-{major} (or newer) and put its pg_dump first on PATH"
    )


# pg_restore writes "\\restrict <random key>" first in its SQL from these releases on
# (CVE-2025-8714), and psql then refuses every meta-command until "\\unrestrict <key>", so a
# line like "\\! rm -rf ~" in a crafted archive's text is an error. An older pg_restore
# passes it on to psql, which would run it.
_RESTRICTS_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
RESTRICT_RELEASES = "17.6, 16.10, 15.14, 14.19 or 13.22"


@functools.cache
def restricts_meta_commands(pg_restore: str) -> tuple[bool, str]:
    """Whether ``pg_restore``'s SQL output keeps psql from running meta-commands that an
    archive carries, and its version."""
    shown = _process.run([pg_restore, "--version"], what=f"{pg_restore} --version")
    match = re.search(r"\)\s*(\d+)(?:\.(\d+))?", shown)
    if match is None:
        return False, shown.strip()
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    since = _RESTRICTS_SINCE.get(major)
    safe = major > max(_RESTRICTS_SINCE) or (since is not None and minor >= since)
    return safe, f"{major}.{minor}"
