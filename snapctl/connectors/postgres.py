"""PostgreSQL (and PostGIS), with pg_dump and pg_restore, and the driver for the rest.

Connection: DATABASES NAME, USER, HOST (a host name or a unix socket directory), PORT and every
libpq keyword in OPTIONS (sslmode, sslrootcert, sslcert, sslkey, service, passfile, ...) become
libpq environment variables of the programs, and the same keywords of snapctl's own driver
connections (pg_session.py), which run every query: versions, privileges, sessions, the swap,
leftovers. PASSWORD goes to the programs in a 0600 passfile named by PGPASSFILE and to the
driver in memory, never onto a command line, and is masked out of every error message.

Dump: ``pg_dump --format=custom`` inside one repeatable-read transaction, so the snapshot is
consistent while the application writes, and it restores in parallel. It is the only program
a dump runs: the server's and pg_dump's versions are read from the archive's header. pg_dump
must be at least the server's major version; it refuses an older one, and snapctl names the
package to install. A database that does not exist is a ``ConfigurationError`` (exit 2) saying
how to create it, or to correct NAME.

Restore replaces the database with exactly the snapshot: rows, tables, views, functions,
triggers, extensions and sequence positions; whatever was created since is gone. Two paths:

- Swap (needs CREATEDB and ownership of the database, or superuser): the snapshot is restored
  with ``pg_restore --jobs N`` into a new database made from template0 with the original's
  owner, encoding, locale, connection limit, tablespace, grants and comment. Only when that
  has succeeded are, in ONE transaction issued from the ``postgres`` (else ``template1``)
  database, the other sessions of our role (of every role, for a
  superuser) on the original terminated and the two databases exchanged by two renames; the
  old one is then dropped. Nothing is committed before that transaction, so the original is
  untouched until it commits, and a kill at any moment leaves either the original or the
  snapshot in place, never a database refusing connections; any failure before it drops the
  new database. A session we may not terminate (another role's) would make the rename fail,
  so it is looked for before the new database is made: the restore waits for such sessions
  up to the lock timeout (``other_sessions``), saying so, then fails naming them, the
  original untouched; the same again right before the renames. One that connects in
  between makes the rename fail: it is rolled back and retried twice, half a second apart,
  and then the restore fails, harmlessly, naming it. The database gets a new OID, so this
  path is taken only when nothing would be lost: no ``ALTER DATABASE ... SET`` settings, no
  logical replication slot, and (unless superuser) no extension that another role (a
  superuser) installed and we could not create again. A restore killed part-way leaves
  ``<NAME>_snapctl_new_<8 hex>`` (before the renames) or ``<NAME>_snapctl_old_<8 hex>``
  (after); the next swap restore drops such databases of our role that nobody is connected
  to (never the postgres-template connector's snapshot copies, named
  ``<NAME>_snapctl_<8 hex>``).
- In place (otherwise, and for archives under ``in_place_below`` bytes, 16 MiB by default,
  when everything in the database is our role's so that the result is the same; needs only
  ownership of the objects): in ONE transaction (``psql
  --single-transaction``) the objects our role owns are dropped (its own schemas whole, its
  relations, routines, types, extensions and large objects elsewhere, e.g. in public) and the
  snapshot's SQL is replayed; transactional DDL rolls all of it back if any statement fails.
  Serial, so slower on big databases. The other sessions of our role on the database are
  terminated first; other roles' sessions are left alone, as are objects our role cannot
  drop. Before anything is run, a session of another role holding a lock on one of our
  relations is waited for up to the lock timeout, then named in the failure; the script
  itself waits for locks (``SET lock_timeout``) as long.

Other sessions (``other_sessions``): before the sessions of our role are terminated, snapctl
says how many and whose (pid, application_name, client, state); with ``--no-terminate`` (or
``SNAPSHOTS["TERMINATE_SESSIONS"] = False``) it waits up to the lock timeout for them to end,
then fails naming them, the database unchanged. Django's own connection is closed first.
Clients of our role whose sessions end must reconnect (Django does so by itself at its next
request).

A database that does not exist is created when our role has CREATEDB (from the maintenance
database, owned by our role, with the encoding and locale pg_dump recorded in the archive
where this server has them, else its defaults), and the snapshot loaded into it with
``pg_restore --jobs N``; a failure drops it again. Without CREATEDB it is a
``ConfigurationError`` (exit 2) saying how an admin creates it.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapctl import other_sessions
from snapctl.connectors import _process
from snapctl.connectors.pg_session import Sessions
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed

_CLIENT_HINT = "the PostgreSQL client tools (postgresql-client)"
_ARCHIVE_MAGIC = b"PGDMP"
_ARCHIVE_HEAD = 4096  # enough for the header: magic, versions, time, database name
_MAINTENANCE_DATABASES = ("postgres", "template1")
# Archives smaller than this restore in place even where the swap is possible: one
# transaction beats a new database, a parallel load, the renames and a DROP DATABASE below
# about 20 MB (a 1 MB snapshot: 0.35 s against 0.46 s; a 22 MB archive: the same time).
IN_PLACE_BELOW = 16 * 1024 * 1024
_MAX_JOBS = 8
# The swap's transaction tries its renames this often, this many seconds apart.
_SWAP_ATTEMPTS = 3
_SWAP_PAUSE = 0.5
# How often the restore looks again while it waits for other sessions to leave: cheap (one
# statement), and often enough that nobody waits for the look.
_SESSIONS_POLL = 0.2
# At most this many sessions are described in a message; the rest are counted.
_SESSIONS_SHOWN = 5

# libpq connection keywords that have an environment variable. Django passes OPTIONS to the
# driver as libpq keywords, so the tools see exactly the connection Django makes.
_LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "service": "PGSERVICE",
}
# A host that does not answer should fail the command, not hang it.
_DEFAULT_CONNECT_TIMEOUT = "10"
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


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + value.replace("'", "''") + "'"


def _passfile_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def libpq_keywords(settings: dict[str, Any]) -> dict[str, str]:
    """The libpq connection keywords for one DATABASES entry, without its password."""
    options = dict(settings.get("OPTIONS") or {})
    if options.get("sslpassword"):
        raise ConfigurationError(
            "OPTIONS 'sslpassword' cannot be given to pg_dump without a command line; "
            "use an unencrypted client key, readable only by you"
        )
    if not settings.get("NAME") and not options.get("service"):
        raise ConfigurationError("DATABASES NAME is empty; name the database to snapshot")
    keywords: dict[str, Any] = {
        "dbname": settings.get("NAME"),
        "user": settings.get("USER"),
        "host": settings.get("HOST"),
        "port": settings.get("PORT"),
    }
    keywords.update(options)
    found = {
        key: str(value)
        for key, value in keywords.items()
        if key in _LIBPQ_ENV and value not in (None, "")
    }
    for key, default in (
        ("connect_timeout", _DEFAULT_CONNECT_TIMEOUT),
        ("application_name", "snapctl"),
    ):
        found.setdefault(key, os.environ.get(_LIBPQ_ENV[key], default))
    return found


def libpq_environment(settings: dict[str, Any]) -> dict[str, str]:
    """The libpq environment for one DATABASES entry, without its password."""
    return {_LIBPQ_ENV[key]: value for key, value in libpq_keywords(settings).items()}


def _major_num(version_num: int) -> int:
    """The major part of a server_version_num: 150004 -> 150000, 90624 -> 90600."""
    return version_num - version_num % (10000 if version_num >= 100000 else 100)


def _major_name(major_num: int) -> str:
    return (
        str(major_num // 10000)
        if major_num >= 100000
        else f"{major_num // 10000}.{major_num // 100 % 100}"
    )


@dataclass(frozen=True)
class Libpq:
    """One alias's server during one command: the programs' environment (with PGPASSFILE),
    the driver's sessions for snapctl's own queries (see pg_session.py), and the secrets to
    mask."""

    alias: str
    env: dict[str, str]
    secrets: tuple[str, ...]
    server: Sessions

    def run(self, argv: Sequence[str], what: str, stdout: Path | None = None) -> str:
        return _process.run(argv, what=what, env=self.env, stdout=stdout, secrets=self.secrets)

    def run_into(self, argv: Sequence[str], dest: Path, what: str, head: int) -> bytes:
        return _process.run_into(
            argv, dest, what=what, env=self.env, secrets=self.secrets, head=head
        )


@contextlib.contextmanager
def connect(db_alias: str, *, programs: bool = True) -> Iterator[Libpq]:
    """The server of ``db_alias``. With ``programs``, its password is in a private passfile
    meanwhile, for pg_dump, pg_restore and psql; the driver has it in memory."""
    from snapctl.django_env import database_settings

    settings = database_settings(db_alias)
    env = libpq_environment(settings)
    password = str(settings.get("PASSWORD") or "")
    server = Sessions(libpq_keywords(settings), password)
    with contextlib.ExitStack() as stack:
        stack.callback(server.close)
        if programs and password and "\n" in password:
            env = {**env, "PGPASSWORD": password}  # a passfile cannot hold it
        elif programs and password:
            passfile = stack.enter_context(
                _process.private_file(_passfile_line(password), suffix=".pgpass")
            )
            # An empty PGPASSWORD counts as unset, so an inherited one cannot override ours.
            env = {**env, "PGPASSFILE": str(passfile), "PGPASSWORD": ""}
        yield Libpq(db_alias, env, (password,) if password else (), server)


def first_query(pg: Libpq, sql: str) -> Any:
    """The value of ``sql`` on the database of ``pg``, as the first connection of a command:
    a database left refusing connections (by an admin, or by an earlier snapctl killed
    during a restore) is said so, with the fix; snapctl cannot tell which, so it never undoes
    it."""
    try:
        return pg.server.value(sql, what=f"connecting to PostgreSQL for '{pg.alias}'")
    except OperationFailed as exc:
        if "is not currently accepting connections" not in str(exc):
            raise
        name = pg.env.get("PGDATABASE")
        raise OperationFailed(
            f"{exc} (unless an admin meant this: an earlier snapctl killed during a restore "
            f"could leave it so; its owner can run ALTER DATABASE "
            f"{ident(name) if name else '<name>'} WITH ALLOW_CONNECTIONS true)"
        ) from exc


# --- dump -------------------------------------------------------------------------------


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


def archive_versions(header: bytes) -> tuple[str, str]:
    """(server version, pg_dump version) from the start of a custom-format archive, where
    pg_dump records both: no query and no ``pg_dump --version`` needed for the metadata."""

    def read_int(at: int) -> tuple[int, int]:
        sign, raw = header[at], header[at + 1 : at + 1 + int_size]
        value = int.from_bytes(raw, "little")
        return (-value if sign else value), at + 1 + int_size

    def read_str(at: int) -> tuple[str, int]:
        length, at = read_int(at)
        if length < 0:
            return "", at
        return header[at : at + length].decode("utf-8", "replace"), at + length

    try:
        if not header.startswith(_ARCHIVE_MAGIC):
            raise ValueError("no archive magic")
        at = len(_ARCHIVE_MAGIC)
        version = (header[at], header[at + 1])
        int_size = header[at + 3]
        at += 6  # major, minor, revision, int size, offset size, format
        if version >= (1, 15):
            at += 1  # the compression algorithm, one byte
        else:
            _, at = read_int(at)  # the compression level
        for _ in range(7):  # the creation time: seconds ... year, isdst
            _, at = read_int(at)
        _, at = read_str(at)  # the database name
        if version < (1, 10):
            raise ValueError("archive too old to record versions")
        server, at = read_str(at)
        dumper, at = read_str(at)
    except (IndexError, ValueError) as exc:
        raise OperationFailed(f"cannot read the pg_dump archive's header: {exc}") from exc
    return server, f"pg_dump (PostgreSQL) {dumper}"


# --- restore: shared ------------------------------------------------------------------------

# Everything the restore decides on, in one round trip. {owners} is a list of literals.
_TARGET_INFO = """
SELECT json_build_object(
  'server_version_num', current_setting('server_version_num')::int,
  'owners_ok', (SELECT count(*) FROM pg_roles
                WHERE rolname IN ({owners}) AND pg_has_role(oid, 'MEMBER')) = {owner_count},
  'database', current_database(),
  'user', current_user,
  'superuser', r.rolsuper,
  'createdb', r.rolcreatedb,
  'owner', pg_get_userbyid(d.datdba),
  'owns', pg_has_role(d.datdba, 'USAGE'),
  'encoding', pg_encoding_to_char(d.encoding),
  'tablespace', t.spcname,
  'comment', shobj_description(d.oid, 'pg_database'),
  'settings', (SELECT count(*) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid),
  'slots', (SELECT count(*) FROM pg_replication_slots s WHERE s.database = d.datname),
  'foreign_extensions', (SELECT count(*) FROM pg_extension e
                         WHERE NOT pg_has_role(e.extowner, 'USAGE') AND e.extname <> 'plpgsql'),
  'in_place_blockers', ({in_place_blockers}),
  'has_acl', d.datacl IS NOT NULL,
  'acl', (SELECT coalesce(json_agg(json_build_object(
            'grantee', CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
            'privilege', a.privilege_type, 'grantable', a.is_grantable)), '[]')
          FROM aclexplode(d.datacl) a),
  'row', to_jsonb(d) - 'datacl')
FROM pg_database d
JOIN pg_roles r ON r.rolname = current_user
JOIN pg_tablespace t ON t.oid = d.dattablespace
WHERE d.datname = current_database()
"""


def archive_owners(pg_restore: str, src: Path) -> set[str]:
    """The roles that own objects in the archive (last field of each ``pg_restore -l`` line)."""
    try:
        listing = _process.run([pg_restore, "-l", str(src)], what="reading the snapshot")
    except OperationFailed as exc:
        if "unsupported version" in str(exc):
            raise ConfigurationError(
                f"{exc}; this pg_restore is older than the pg_dump that made the snapshot, "
                "install a newer postgresql-client"
            ) from exc
        raise
    owners = set()
    for line in listing.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        owner = line.rsplit(" ", 1)[-1]
        if owner and owner != "-":
            owners.add(owner)
    return owners


# Counts what an in-place restore would not drop (see in_place_is_exact): in the schemas a
# dump covers, objects of other roles of the kinds _DROP_OWNED drops, and objects of anyone
# of the kinds it does not; members of extensions aside.
_USER_SCHEMA = "{ns} !~ '^pg_' AND {ns} <> 'information_schema'"
_NOT_EXTENSION_MEMBER = """NOT EXISTS (SELECT 1 FROM pg_depend x
  WHERE x.classid = '{catalog}'::regclass AND x.objid = {oid} AND x.deptype = 'e')"""
_IN_PLACE_BLOCKERS = [
    """SELECT count(*) FROM pg_namespace n WHERE NOT pg_has_role(n.nspowner, 'USAGE')
       AND n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'public')""",
    """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE NOT pg_has_role(c.relowner, 'USAGE') AND {user_schema}""",
    """SELECT count(*) FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
       WHERE NOT pg_has_role(f.proowner, 'USAGE') AND {user_schema}""",
    """SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE NOT pg_has_role(t.typowner, 'USAGE') AND t.typtype IN ('d', 'e', 'r', 'm')
         AND {user_schema}""",
    """SELECT count(*) FROM pg_largeobject_metadata l
       WHERE NOT pg_has_role(l.lomowner, 'USAGE')""",
]
for _catalog, _namespace in (
    ("pg_collation", "collnamespace"),
    ("pg_operator", "oprnamespace"),
    ("pg_opclass", "opcnamespace"),
    ("pg_opfamily", "opfnamespace"),
    ("pg_conversion", "connamespace"),
    ("pg_ts_config", "cfgnamespace"),
    ("pg_ts_dict", "dictnamespace"),
    ("pg_ts_parser", "prsnamespace"),
    ("pg_ts_template", "tmplnamespace"),
):
    _IN_PLACE_BLOCKERS.append(
        f"SELECT count(*) FROM {_catalog} o JOIN pg_namespace n ON n.oid = o.{_namespace} "
        "WHERE {user_schema} AND " + _NOT_EXTENSION_MEMBER.format(catalog=_catalog, oid="o.oid")
    )
for _catalog in ("pg_foreign_data_wrapper", "pg_foreign_server", "pg_publication",
                 "pg_event_trigger"):  # fmt: skip
    _IN_PLACE_BLOCKERS.append(
        f"SELECT count(*) FROM {_catalog} o WHERE "
        + _NOT_EXTENSION_MEMBER.format(catalog=_catalog, oid="o.oid")
    )
IN_PLACE_BLOCKERS_SQL = " + ".join(
    f"({query.format(user_schema=_USER_SCHEMA.format(ns='n.nspname'))})"
    for query in _IN_PLACE_BLOCKERS
)


def inspect_target(pg: Libpq, owners: set[str]) -> dict[str, Any]:
    """The database, our role's privileges on it, and whether we may keep the archive's
    owners (superuser, or a member of each); otherwise ``--no-owner`` makes us the owner,
    which is the same for the usual single-role Django database."""
    names = ", ".join(literal(owner) for owner in sorted(owners)) or "NULL"
    sql = _TARGET_INFO.format(
        owners=names, owner_count=len(owners), in_place_blockers=IN_PLACE_BLOCKERS_SQL
    )
    info: dict[str, Any] = first_query(pg, sql)
    return info


# The other sessions of our role (and roles we belong to) on {database}, ended.
_TERMINATE_LOOP = """
  FOR session IN SELECT pid FROM pg_stat_activity
                 WHERE datname = {database} AND pid <> pg_backend_pid()
                   AND pg_has_role(usesysid, 'MEMBER')
  LOOP
    BEGIN
      PERFORM pg_terminate_backend(session.pid);
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
  END LOOP;
"""
_TERMINATE = """
DO $snapctl$
DECLARE session record;
BEGIN
{terminate}
END
$snapctl$
"""


def terminate_sessions_sql(database: str) -> str:
    """End the other sessions of our role (and roles we belong to) on ``database``."""
    return _TERMINATE.format(terminate=_TERMINATE_LOOP.format(database=literal(database)))


# --- restore: the other sessions on the database ---------------------------------------------

# The client sessions on {database} but this command's own ({mine}), with what the restore
# decides on and names them by. ``ours``: our role may end it (its role is one we are a member
# of; every role, for a superuser). ``locks``: it holds a lock on a relation of our role, which
# an in-place restore drops ({locks} is false when the query runs on another database, whose
# pg_class does not know them). Background processes (autovacuum, ...) have no role or are no
# client backend. State, client and times of another role's session read NULL unless we have
# pg_read_all_stats; its role, application_name and pid always show.
_SESSIONS = """
SELECT coalesce(json_agg(json_build_object(
  'pid', a.pid, 'role', a.usename, 'application', a.application_name,
  'client', coalesce(host(a.client_addr), CASE WHEN a.client_port = -1 THEN 'local' END),
  'state', a.state,
  'seconds', floor(extract(epoch FROM clock_timestamp()
                           - coalesce(a.xact_start, a.state_change, a.backend_start))),
  'ours', pg_has_role(a.usesysid, 'MEMBER'),
  'locks', {locks}) ORDER BY a.pid), '[]')
FROM pg_stat_activity a
WHERE a.datname = {database} AND a.pid <> pg_backend_pid() AND a.pid <> ALL ({mine})
  AND a.usesysid IS NOT NULL
  AND coalesce(to_jsonb(a) ->> 'backend_type', 'client backend') = 'client backend'
"""
_HOLDS_OUR_LOCKS = """EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                 WHERE l.pid = a.pid AND l.database = a.datid
                   AND pg_has_role(c.relowner, 'USAGE'))"""


@dataclass(frozen=True)
class OtherSession:
    """Another session on the database, as a message names it to the person who can end it."""

    pid: int
    role: str
    application: str
    client: str | None
    state: str | None
    seconds: float | None
    ours: bool
    locks: bool

    def describe(self, *, role: bool = True) -> str:
        """``pid 123 of role 'app' 'manage.py shell' from 10.0.0.5 idle in transaction for
        3 min``: what its owner recognises it by; what the server hides from us is left out."""
        parts = [f"pid {self.pid}"]
        if role:
            parts.append(f"of role '{self.role}'")
        if self.application:
            parts.append(f"'{self.application}'")
        if self.client:
            parts.append(
                "from the local socket" if self.client == "local" else f"from {self.client}"
            )
        if self.state:
            since = f" for {_duration(self.seconds)}" if self.seconds is not None else ""
            parts.append(f"{self.state}{since}")
        return " ".join(parts)


def _duration(seconds: float) -> str:
    """A duration as people say it: 42 s, 3 min, 5 h, 2 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _counted(count: int, noun: str) -> str:
    return f"1 {noun}" if count == 1 else f"{count} {noun}s"


def _listed(sessions: Sequence[OtherSession], *, role: bool = True) -> str:
    """The first few sessions described, the rest counted: one line however many there are."""
    shown = [session.describe(role=role) for session in sessions[:_SESSIONS_SHOWN]]
    if len(sessions) > _SESSIONS_SHOWN:
        shown.append(f"and {len(sessions) - _SESSIONS_SHOWN} more")
    return ", ".join(shown)


def _roles(sessions: Sequence[OtherSession]) -> str:
    roles = sorted({session.role for session in sessions})
    return ("role " if len(roles) == 1 else "roles ") + ", ".join(f"'{r}'" for r in roles)


def sessions_on(
    pg: Libpq, database: str, admin_db: str | None, *, locks: bool
) -> list[OtherSession]:
    """The other client sessions on ``database``, looked at from ``admin_db`` (None: from
    the database itself, which ``locks`` needs); never this command's own, which the server
    may still list for a moment after they are closed."""
    mine = ", ".join(str(pid) for pid in sorted(pg.server.pids))
    sql = _SESSIONS.format(
        database=literal(database),
        mine=f"ARRAY[{mine}]::int[]" if mine else "'{}'::int[]",
        locks=_HOLDS_OUR_LOCKS if locks else "false",
    )
    found = pg.server.value(
        sql, database=admin_db, what=f"looking at the other sessions on '{pg.alias}'"
    )
    return [OtherSession(**row) for row in found]


def blocking(
    sessions: Sequence[OtherSession], *, in_place: bool, terminate: bool
) -> list[OtherSession]:
    """The sessions the restore cannot go on with and may not end: another role's (on the
    swap path any of them, which makes the rename fail; in place those holding locks on our
    relations, which the drops would wait for), and ours when ending them is not allowed."""
    return [
        session
        for session in sessions
        if (session.ours and not terminate)
        or (not session.ours and (session.locks or not in_place))
    ]


def clear_the_way(
    pg: Libpq, database: str, admin_db: str | None, *, in_place: bool
) -> list[OtherSession]:
    """Make sure no session that snapctl may not end stands in the restore's way, before
    anything is changed: wait up to the lock timeout for such sessions to go, saying so,
    then fail naming them (the database unchanged). Return the sessions of our role, which
    the restore is to end (none when the policy forbids it)."""
    policy = other_sessions.policy()
    deadline = time.monotonic() + policy.lock_timeout
    waiting = False
    while True:
        sessions = sessions_on(pg, database, admin_db, locks=in_place)
        blockers = blocking(sessions, in_place=in_place, terminate=policy.terminate)
        if not blockers:
            return [session for session in sessions if session.ours] if policy.terminate else []
        if time.monotonic() >= deadline:
            raise blocked(pg, database, blockers, in_place=in_place, waited=policy.lock_timeout)
        if not waiting:
            waiting = True
            one = len(blockers) == 1
            goal = (
                f"release {'its' if one else 'their'} locks on tables in" if in_place else "leave"
            )
            other_sessions.notice(
                f"waiting up to {_seconds(policy.lock_timeout)} for "
                f"{_counted(len(blockers), 'session')} that snapctl may not end to {goal} "
                f"'{database}' ({_listed(blockers)})"
            )
        time.sleep(_SESSIONS_POLL)


def blocked(
    pg: Libpq, database: str, blockers: Sequence[OtherSession], *, in_place: bool, waited: float
) -> OperationFailed:
    """The one line that names the sessions the restore could not get past, and what to do."""
    others = [session for session in blockers if not session.ours]
    after = f" after {_seconds(waited)}" if waited else ""
    if others:
        one = len(others) == 1
        it = "it" if one else "them"
        if in_place:
            doing = f"{'holds' if one else 'hold'} locks on tables in '{database}'{after}"
            leave = f"end {'its' if one else 'their'} transaction or disconnect"
        else:
            doing = f"{'is' if one else 'are'} connected to '{database}'{after}"
            leave = "disconnect"
        pids = ", ".join(str(session.pid) for session in others)
        return OperationFailed(
            f"cannot restore '{pg.alias}': {_counted(len(others), 'session')} that snapctl "
            f"may not end {doing} ({_listed(others)}); ask whoever runs {it} to {leave}, or "
            f"have a superuser end {it} with SELECT pg_terminate_backend(pid) FROM "
            f"pg_stat_activity WHERE pid IN ({pids}); then retry (database unchanged)"
        )
    return OperationFailed(
        f"cannot restore '{pg.alias}' without ending {_counted(len(blockers), 'other session')} "
        f"of {_roles(blockers)} on '{database}' ({_listed(blockers, role=False)}), which "
        "--no-terminate (or SNAPSHOTS['TERMINATE_SESSIONS'] = False) forbids; close "
        f"{'it' if len(blockers) == 1 else 'them'} and retry (database unchanged)"
    )


def announce_ending(database: str, sessions: Sequence[OtherSession]) -> None:
    """Say which sessions the restore is about to end, before it ends them: their users
    will see an error and must reconnect."""
    if sessions:
        other_sessions.notice(
            f"ending {_counted(len(sessions), 'other session')} of {_roles(sessions)} on "
            f"'{database}' ({_listed(sessions, role=len({s.role for s in sessions}) > 1)}); "
            "they must reconnect"
        )


def close_django_connection(db_alias: str) -> None:
    from snapctl.django_env import close_connection

    close_connection(db_alias)


def check_archive(
    path: Path,
    message: str = "not a pg_dump custom-format archive; it cannot be restored by the "
    "postgres connector",
    error: type[Exception] = IntegrityError,
) -> None:
    with open(path, "rb") as handle:
        if handle.read(len(_ARCHIVE_MAGIC)) != _ARCHIVE_MAGIC:
            raise error(f"{path.name}: {message}")


# --- restore: swap --------------------------------------------------------------------------


def short_name(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, so derived names stay within NAMEDATALEN."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def create_database_sql(
    name: str, info: dict[str, Any], template: str = "template0", strategy: str | None = None
) -> list[str]:
    """CREATE DATABASE like the original, then its grants and comment.

    From template0 it also takes the original's encoding and locale; from any other template
    (a copy of the original made earlier) it keeps the template's, which its indexes need.
    ``strategy`` (PostgreSQL 15+: ``wal_log`` or ``file_copy``) says how the server copies it.
    """
    row = info["row"]
    parts = [f"CREATE DATABASE {ident(name)} TEMPLATE {ident(template)}"]
    if strategy:
        parts.append(f"STRATEGY {strategy}")
    parts.append(f"OWNER {ident(info['owner'])}")
    if template == "template0":
        parts.append(f"ENCODING {literal(info['encoding'])}")
        parts.append(f"LC_COLLATE {literal(row['datcollate'])} LC_CTYPE {literal(row['datctype'])}")
        provider = row.get("datlocprovider")
        locale = row.get("datlocale") or row.get("daticulocale")
        if provider == "i":
            parts.append(f"LOCALE_PROVIDER icu ICU_LOCALE {literal(locale)}")
            if row.get("daticurules"):
                parts.append(f"ICU_RULES {literal(row['daticurules'])}")
        elif provider == "b":
            parts.append(f"LOCALE_PROVIDER builtin BUILTIN_LOCALE {literal(locale)}")
    if int(row.get("datconnlimit", -1)) != -1:
        parts.append(f"CONNECTION LIMIT {int(row['datconnlimit'])}")
    if info["tablespace"] != "pg_default":
        parts.append(f"TABLESPACE {ident(info['tablespace'])}")
    statements = [" ".join(parts)]
    if info["has_acl"]:
        statements.append(f"REVOKE ALL ON DATABASE {ident(name)} FROM PUBLIC")
        statements.append(f"REVOKE ALL ON DATABASE {ident(name)} FROM {ident(info['owner'])}")
        for grant in info["acl"]:
            grantee = ident(grant["grantee"]) if grant["grantee"] else "PUBLIC"
            option = " WITH GRANT OPTION" if grant["grantable"] else ""
            statements.append(
                f"GRANT {grant['privilege']} ON DATABASE {ident(name)} TO {grantee}{option}"
            )
    if info["comment"] is not None:
        statements.append(f"COMMENT ON DATABASE {ident(name)} IS {literal(info['comment'])}")
    return statements


def maintenance_database(pg: Libpq, database: str) -> str | None:
    """A database to stand in while ours is renamed: ``postgres``, else ``template1``."""
    for candidate in _MAINTENANCE_DATABASES:
        if candidate == database:
            continue
        try:
            pg.server.query("SELECT 1", database=candidate, what=f"connecting to {candidate}")
        except OperationFailed:
            continue
        return candidate
    return None


def in_place_is_exact(info: dict[str, Any]) -> bool:
    """Whether restoring in place leaves exactly the snapshot, as the swap would. The
    in-place path drops what our role owns of the kinds ``_DROP_OWNED`` knows; anything
    else in the database (another role's object, or a collation, operator, text search
    configuration, ... of anyone) would survive it, or make the replay fail."""
    return not info["in_place_blockers"] and not info["foreign_extensions"]


def can_swap(info: dict[str, Any]) -> bool:
    """Whether a new database would lose nothing: we may create and rename it, nothing is
    tied to the old one's OID, and no extension needs someone else (a superuser) to create
    it again; in place, such an extension simply stays."""
    if info["superuser"]:
        return not info["settings"] and not info["slots"]
    allowed = bool(info["createdb"]) and bool(info["owns"])
    return allowed and not (info["settings"] or info["slots"] or info["foreign_extensions"])


def drop_database_sql(name: str, server_version_num: int) -> str:
    force = " WITH (FORCE)" if server_version_num >= 130000 else ""
    return f"DROP DATABASE IF EXISTS {ident(name)}{force}"


def replace_by_swap(
    pg: Libpq,
    info: dict[str, Any],
    admin_db: str,
    fill: Callable[[str], None] | None = None,
    template: str = "template0",
    strategy: str | None = None,
) -> None:
    """Replace the database with a new one, made like it from ``template`` and then filled by
    ``fill(new name)``, by the renames of :func:`swap`; drop the previous one afterwards.
    First drop what killed restores of this database left (:func:`drop_leftovers`).

    A session that snapctl may not end would make the renames fail, so it fails the restore
    before the new database is made and filled (:func:`clear_the_way`), not after; the
    sessions of our role are announced right before the renames end them.

    Until the renames commit the original is untouched; any failure (or interrupt) before
    them drops the new database and leaves the original as it was.
    """
    database = info["database"]
    drop_leftovers(pg, database, admin_db)
    clear_the_way(pg, database, admin_db, in_place=False)
    token = secrets.token_hex(4)
    fresh = f"{swap_prefix(database)}new_{token}"
    old = f"{swap_prefix(database)}old_{token}"
    what = f"restore of '{pg.alias}' (database unchanged)"
    try:
        pg.server.query(
            *create_database_sql(fresh, info, template, strategy), database=admin_db, what=what
        )
        if fill is not None:
            fill(fresh)
        announce_ending(database, clear_the_way(pg, database, admin_db, in_place=False))
        swap(pg, database, fresh, old, admin_db)
    except BaseException:
        with contextlib.suppress(OperationFailed):
            pg.server.query(
                drop_database_sql(fresh, info["server_version_num"]),
                database=admin_db,
                what=f"dropping {fresh}",
            )
        raise
    pg.server.query(
        drop_database_sql(old, info["server_version_num"]),
        database=admin_db,
        what=f"restore of '{pg.alias}' succeeded, but dropping the previous database {old}",
    )


def restore_by_swap(
    pg: Libpq,
    src: Path,
    info: dict[str, Any],
    admin_db: str,
    owner_flags: list[str],
) -> None:
    what = f"restore of '{pg.alias}' (database unchanged)"

    def fill(fresh: str) -> None:
        load(pg, src, fresh, owner_flags, what)

    replace_by_swap(pg, info, admin_db, fill)


def load(pg: Libpq, src: Path, database: str, owner_flags: list[str], what: str) -> None:
    """``pg_restore --jobs N`` of the archive into the new, empty ``database``."""
    jobs = str(max(1, min(os.cpu_count() or 1, _MAX_JOBS)))
    # Not held open through a long load: an idle connection may be cut meanwhile, and one
    # to template1 would block others' CREATE DATABASE.
    pg.server.close()
    pg.run(
        [
            client_program("pg_restore"),
            "-w",
            "--exit-on-error",
            "--jobs",
            jobs,
            *owner_flags,
            "--dbname",
            database,
            str(src),
        ],
        what,
    )


# The swap, ONE transaction (a DO block is one statement): end the other sessions (unless
# the policy forbids it: then clear_the_way has made sure there are none), rename
# the original away (which waits up to 5 s for the ended sessions to go, and from then on
# holds off new connections), rename the new database in its place. A session that is still
# there (one we may not end, or one that connected in between) makes the first rename fail:
# that attempt is rolled back and, after a pause, tried again with a fresh look at
# pg_stat_activity (which is otherwise read once per transaction); the last failure is
# raised and rolls everything back.
_SWAP = """
DO $snapctl$
DECLARE session record;
BEGIN
  FOR attempt IN 1..{attempts} LOOP
    PERFORM pg_stat_clear_snapshot();
{terminate}
    BEGIN
      EXECUTE {rename_old};
      EXIT;
    EXCEPTION WHEN object_in_use THEN
      IF attempt = {attempts} THEN
        RAISE;
      END IF;
      PERFORM pg_sleep({pause});
    END;
  END LOOP;
  EXECUTE {rename_new};
END
$snapctl$
"""


def swap_sql(database: str, fresh: str, old: str, *, terminate: bool = True) -> str:
    """The one statement that puts ``fresh`` in the place of ``database`` (see ``_SWAP``)."""
    return _SWAP.format(
        attempts=_SWAP_ATTEMPTS,
        pause=_SWAP_PAUSE,
        terminate=_TERMINATE_LOOP.format(database=literal(database)) if terminate else "",
        rename_old=literal(f"ALTER DATABASE {ident(database)} RENAME TO {ident(old)}"),
        rename_new=literal(f"ALTER DATABASE {ident(fresh)} RENAME TO {ident(database)}"),
    )


def swap(pg: Libpq, database: str, fresh: str, old: str, admin_db: str) -> None:
    """Put ``fresh`` in the place of ``database``: the other sessions on it ended and both
    renames in one transaction, so a failure or a kill at any moment leaves all or nothing.
    A session that connected just before and that we may not end fails it: it is named."""
    terminate = other_sessions.policy().terminate
    try:
        pg.server.query(
            swap_sql(database, fresh, old, terminate=terminate),
            database=admin_db,
            what=f"restore of '{pg.alias}' (database unchanged)",
        )
    except OperationFailed as exc:
        blockers: list[OtherSession] = []
        with contextlib.suppress(OperationFailed):  # the server gone: its failure says so
            sessions = sessions_on(pg, database, admin_db, locks=False)
            blockers = blocking(sessions, in_place=False, terminate=terminate)
        if not blockers:
            raise
        raise blocked(pg, database, blockers, in_place=False, waited=0) from exc


# Databases that a killed swap restore of {database} may have left: ours, nobody connected.
_LEFTOVERS = """
SELECT coalesce(json_agg(d.datname), '[]') FROM pg_database d
WHERE position({prefix} in d.datname) = 1 AND d.datname <> {database}
  AND pg_has_role(d.datdba, 'USAGE')
  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
"""


def swap_prefix(database: str) -> str:
    """What the swap's temporary databases for ``database`` are named with, before
    ``new_<8 hex>`` or ``old_<8 hex>``."""
    return f"{short_name(database, 40)}_snapctl_"


def drop_leftovers(pg: Libpq, database: str, admin_db: str) -> None:
    """Drop the ``<database>_snapctl_new_<8 hex>`` and ``..._old_<8 hex>`` databases that
    killed restores left: only ours, only those nobody is connected to, and never another
    name (the postgres-template connector's snapshot copies lack ``new_``/``old_``). The
    caller holds the database's restore lock, so no other restore of ours is running here.
    Best effort: one that cannot be dropped stays for the next restore."""
    prefix = swap_prefix(database)
    pattern = re.compile(re.escape(prefix) + r"(new|old)_[0-9a-f]{8}")
    found = pg.server.value(
        _LEFTOVERS.format(prefix=literal(prefix), database=literal(database)),
        database=admin_db,
        what=f"looking for databases left by interrupted restores of '{pg.alias}'",
    )
    for name in found:
        if pattern.fullmatch(name) and name != database:
            with contextlib.suppress(OperationFailed):
                # Without FORCE: a session that appeared meanwhile keeps it.
                pg.server.query(
                    f"DROP DATABASE IF EXISTS {ident(name)}",
                    database=admin_db,
                    what=f"dropping {name}",
                )


# --- restore: in place ----------------------------------------------------------------------

# Drops what our role owns: its schemas whole (but never public, which dumps assume exists),
# and its relations, routines, types, extensions and large objects in the other schemas.
# Names are collected before the first drop: a cascade may remove later entries, hence IF
# EXISTS, and a dropped routine's regprocedure would no longer print as a name. Members of
# extensions, identity/serial sequences and partitions go with what they belong to.
_DROP_OWNED = r"""
DO $snapctl$
DECLARE
  statement text;
  statements text[];
BEGIN
  SELECT coalesce(array_agg(s ORDER BY ord, s), '{}') INTO statements FROM (
    SELECT 1 AS ord, format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname) AS s
      FROM pg_namespace n
     WHERE pg_has_role(n.nspowner, 'USAGE') AND n.nspname <> 'public'
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 2, format('DROP EXTENSION IF EXISTS %I CASCADE', e.extname)
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE pg_has_role(e.extowner, 'USAGE') AND n.nspname <> 'pg_catalog'
    UNION ALL
    SELECT 3, format('DROP %s IF EXISTS %I.%I CASCADE',
                     CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                    WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                    ELSE 'TABLE' END, n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND pg_has_role(c.relowner, 'USAGE')
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                       AND d.objid = c.oid AND d.deptype IN ('e', 'i', 'a'))
    UNION ALL
    SELECT 4, format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE pg_has_role(p.proowner, 'USAGE')
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                       AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 5, format('DROP TYPE IF EXISTS %s CASCADE', t.oid::regtype)
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE pg_has_role(t.typowner, 'USAGE') AND t.typtype IN ('d', 'e', 'r', 'c')
       AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                       AND d.objid = t.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 6, format('SELECT lo_unlink(%s)', l.oid)
      FROM pg_largeobject_metadata l WHERE pg_has_role(l.lomowner, 'USAGE')
  ) AS planned(ord, s);
  FOREACH statement IN ARRAY statements LOOP
    EXECUTE statement;
  END LOOP;
END
$snapctl$
"""


# pg_restore writes "\\restrict <random key>" first in its SQL from these releases on
# (CVE-2025-8714), and psql then refuses every meta-command until "\\unrestrict <key>", so a
# line like "\\! rm -rf ~" in a crafted archive's text is an error. An older pg_restore
# passes it on to psql, which would run it.
_RESTRICTS_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
_RESTRICT_RELEASES = "17.6, 16.10, 15.14, 14.19 or 13.22"


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


def restore_in_place(pg: Libpq, src: Path, info: dict[str, Any], owner_flags: list[str]) -> None:
    pg_restore = client_program("pg_restore")
    safe, version = restricts_meta_commands(pg_restore)
    if not safe:
        raise ConfigurationError(
            f"restoring '{pg.alias}' in place replays the snapshot through psql, and pg_restore "
            f"{version} does not stop a crafted snapshot from running commands there "
            f"(CVE-2025-8714); install postgresql-client {_RESTRICT_RELEASES} or newer, or "
            "grant the role CREATEDB so that the restore swaps databases instead"
        )
    psql = client_program("psql")
    database = info["database"]
    policy = other_sessions.policy()
    announce_ending(database, clear_the_way(pg, database, None, in_place=True))
    if policy.terminate:
        pg.server.query(terminate_sessions_sql(database), what=f"restore of '{pg.alias}'")
    try:
        _process.pipe(
            [pg_restore, *owner_flags, "--file", "-", str(src)],
            # One transaction around the drops and the whole script: all of it or none.
            [
                psql,
                "-X",
                "-w",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-c",
                f"SET lock_timeout = '{lock_timeout_ms(policy.lock_timeout)}ms'",
                "-c",
                _DROP_OWNED,
                "-f",
                "-",
            ],
            what=f"restore of '{pg.alias}' (rolled back, database unchanged)",
            env=pg.env,
            secrets=pg.secrets,
        )
    except OperationFailed as exc:
        if "lock timeout" not in str(exc):
            raise
        # A session that took a lock after clear_the_way looked: name it.
        holders: list[OtherSession] = []
        with contextlib.suppress(OperationFailed):  # the server gone: its failure says so
            holders = [s for s in sessions_on(pg, database, None, locks=True) if s.locks]
        if not holders:
            raise
        raise blocked(pg, database, holders, in_place=True, waited=policy.lock_timeout) from exc


def lock_timeout_ms(seconds: float) -> int:
    """The policy's lock timeout for ``SET lock_timeout``, where 0 would mean no limit at
    all: 0 s (do not wait) becomes 1 ms."""
    return max(1, round(seconds * 1000))


# --- a database that does not exist ---------------------------------------------------------

# From a maintenance database: whether {name} exists, and whether our role may create it and
# keep the archive's owners ({owners}, literals) in it.
_CREATOR = """
SELECT json_build_object(
  'exists', EXISTS (SELECT 1 FROM pg_database WHERE datname = {name}),
  'user', current_user,
  'superuser', r.rolsuper,
  'createdb', r.rolcreatedb,
  'owners_ok', (SELECT count(*) FROM pg_roles
                WHERE rolname IN ({owners}) AND pg_has_role(oid, 'MEMBER')) = {owner_count},
  'server_version_num', current_setting('server_version_num')::int)
FROM pg_roles r WHERE r.rolname = current_user
"""
# What CREATE DATABASE may take over from the one pg_dump wrote into the archive.
_DATABASE_OPTIONS = re.compile(
    r"\b(ENCODING|LOCALE_PROVIDER|LOCALE|LC_COLLATE|LC_CTYPE|ICU_LOCALE|ICU_RULES|BUILTIN_LOCALE)"
    r" = ('(?:[^']|'')*'|\w+)"
)
_LOCALE_PROVIDERS = ("libc", "icu", "builtin")


def server_name(pg: Libpq) -> str:
    """Where the server is, as the settings say: ``db.example.com:5432``, or the socket
    directory."""
    host = pg.env.get("PGHOST") or "the local socket"
    port = pg.env.get("PGPORT")
    if host.startswith("/"):
        return f"{host} (port {port})" if port else host
    return f"{host}:{port}" if port else host


def missing_database(
    pg: Libpq, failure: OperationFailed, owners: set[str] | None = None
) -> dict[str, Any] | None:
    """When ``failure`` (connecting to the database, ours or pg_dump's) is because the
    database does not exist: what creating it needs to know, asked from a maintenance
    database; else None. The server's message may be translated, so it is only a hint (it
    names the database); the catalog decides, or, without a maintenance database to ask,
    the English message."""
    name = pg.server.target
    if not name or name not in str(failure):
        return None  # a refused connection, a timeout, a password: not about the database
    admin_db = maintenance_database(pg, name)
    if admin_db is None:
        if f'database "{name}" does not exist' not in str(failure):
            return None
        user = pg.env.get("PGUSER") or getpass.getuser()
        return {"database": name, "admin_db": None, "user": user, "createdb": False}
    names = ", ".join(literal(owner) for owner in sorted(owners or ())) or "NULL"
    found: dict[str, Any] = pg.server.value(
        _CREATOR.format(name=literal(name), owners=names, owner_count=len(owners or ())),
        database=admin_db,
        what=f"looking for database '{name}' of '{pg.alias}'",
    )
    if found["exists"]:
        return None
    return {**found, "database": name, "admin_db": admin_db}


def missing_database_error(pg: Libpq, missing: dict[str, Any], command: str) -> ConfigurationError:
    """One line: the database of the alias does not exist, and how to create it or fix NAME."""
    name, role = missing["database"], missing["user"]
    create = f"createdb -O {shlex.quote(role)} {shlex.quote(name)}"
    where = f"database '{name}' of '{pg.alias}' does not exist on {server_name(pg)}"
    if command == "dump":
        return ConfigurationError(
            f"{where}; create it (as an admin: {create}) or set "
            f"DATABASES['{pg.alias}']['NAME'] to the database to snapshot"
        )
    if missing["admin_db"] is None:
        why = "snapctl can reach neither the 'postgres' nor the 'template1' database to create it"
    else:
        why = f"role '{role}' may not create it (no CREATEDB)"
    return ConfigurationError(
        f"{where}, and {why}; have an admin run {create}, then restore again "
        f"(or set DATABASES['{pg.alias}']['NAME'] to the right database)"
    )


def archive_database_options(pg_restore: str, src: Path) -> list[str]:
    """The encoding and locale of the database the snapshot was taken of, as CREATE DATABASE
    options: from the CREATE DATABASE that pg_dump writes into every archive (shown by
    ``pg_restore --create`` with an empty list of entries, without reading the data). Each
    value is taken apart and quoted again: the archive's text never runs. None found (an
    unusual archive): the server's defaults."""
    try:
        script = _process.run(
            [pg_restore, "--create", "--use-list", os.devnull, "--file", "-", str(src)],
            what="reading the snapshot's encoding and locale",
        )
    except OperationFailed:
        return []
    line = next((ln for ln in script.splitlines() if ln.startswith("CREATE DATABASE ")), "")
    _, found, tail = line.rpartition(" WITH TEMPLATE = template0 ")
    options = []
    for key, value in _DATABASE_OPTIONS.findall(tail if found else ""):
        if value.startswith("'"):
            unquoted = value[1:-1].replace("''", "'")
            options.append(f"{key} {literal(unquoted)}")
        elif key == "LOCALE_PROVIDER" and value in _LOCALE_PROVIDERS:
            options.append(f"{key} {value}")
    return options


def create_missing_database(pg: Libpq, missing: dict[str, Any], options: list[str]) -> None:
    """CREATE DATABASE for the restore, owned by our role, from template0 with the
    snapshot's encoding and locale; where this server lacks them (a locale not installed, an
    older server without such an option), with the server's defaults, and says so."""
    name, admin_db = missing["database"], missing["admin_db"]
    what = f"creating database '{name}' for the restore of '{pg.alias}'"
    plain = f"CREATE DATABASE {ident(name)} TEMPLATE template0"
    made = f"created database '{name}' (owner '{missing['user']}') to restore into"
    try:
        pg.server.query(" ".join([plain, *options]), database=admin_db, what=what)
    except OperationFailed as exc:
        if not options:
            raise
        pg.server.query(plain, database=admin_db, what=what)
        other_sessions.notice(
            f"{made}, with the server's default encoding and locale: the snapshot's "
            f"({' '.join(options)}) cannot be used here ({exc})"
        )
        return
    other_sessions.notice(f"{made}{', with ' if options else ''}{' '.join(options)}")


def inspect_or_missing(
    pg: Libpq, owners: set[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(:func:`inspect_target`, None), or (None, :func:`missing_database`) when the
    database does not exist."""
    try:
        return inspect_target(pg, owners), None
    except OperationFailed as exc:
        missing = missing_database(pg, exc, owners)
        if missing is None:
            raise
        return None, missing


def restore_into_missing(pg: Libpq, src: Path, missing: dict[str, Any]) -> None:
    """Restore into a database that does not exist: create it when our role may (CREATEDB,
    or superuser), then load the snapshot into it; on any failure drop it again, so that
    the database is as it was, absent. Without the privilege, say how to create it."""
    if not (missing.get("createdb") or missing.get("superuser")) or missing["admin_db"] is None:
        raise missing_database_error(pg, missing, "restore")
    name = missing["database"]
    options = archive_database_options(client_program("pg_restore"), src)
    create_missing_database(pg, missing, options)
    owner_flags = [] if missing["owners_ok"] else ["--no-owner"]
    try:
        load(pg, src, name, owner_flags, f"restore of '{pg.alias}' (new database dropped again)")
    except BaseException:
        with contextlib.suppress(OperationFailed):
            pg.server.query(
                drop_database_sql(name, missing["server_version_num"]),
                database=missing["admin_db"],
                what=f"dropping {name}",
            )
        raise


class PostgresConnector:
    """Back up and restore PostgreSQL databases using pg_dump and pg_restore."""

    name = "postgres"
    needs_app_registry = False  # reads settings.DATABASES only
    engines = ("postgresql", "postgis")
    binaries = ("pg_dump", "pg_restore", "psql")
    # Custom format without pg_dump's own compression (--compress=0): the store compresses
    # the artifact afterwards anyway. Measured on 200k rows (an 11 MB archive): -Z0 then
    # zstd -3 took 0.8 s for 4.2 MB; pg_dump's default gzip (-Z6, single-threaded) took
    # 1.1 s for 3.8 MB, which zstd cannot shrink further, and pg_restore must inflate it.
    extension = "pgdump"
    # pg_dump writes the archive front to back when its output cannot seek: the data blocks
    # then carry no offsets in the table of contents, and pg_restore (12+) finds them by
    # skipping from block to block, as fast here (2.3-2.5 s for a 300 MB archive either
    # way); the dump's compression and checksum run beside it instead of after it.
    dump_to_pipe = True

    def __init__(self, in_place_below: int = IN_PLACE_BELOW) -> None:
        self.in_place_below = in_place_below

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump the PostgreSQL database to dest (custom format) using pg_dump."""
        pg_dump = client_program("pg_dump")
        with connect(db_alias) as pg:
            # --no-sync: the store fsyncs the artifact it keeps.
            options = ["--format=custom", "--compress=0", "--no-sync"]
            what = f"pg_dump of '{db_alias}'"
            try:
                head = pg.run_into([pg_dump, "-w", *options], dest, what, _ARCHIVE_HEAD)
            except OperationFailed as exc:
                if "is not currently accepting connections" in str(exc):
                    first_query(pg, "SELECT 1")  # says what to do about it
                missing = missing_database(pg, exc)
                if missing is not None:
                    raise missing_database_error(pg, missing, "dump") from None
                raise older_pg_dump(db_alias, exc) or exc from None
        if not head.startswith(_ARCHIVE_MAGIC):
            raise OperationFailed(f"pg_dump of '{db_alias}' wrote no archive")
        server_text, pg_dump_version = archive_versions(head)
        return {
            "format": "custom",
            "server_version": server_text,
            "server_version_num": version_num(server_text),
            "pg_dump_version": pg_dump_version,
        }

    def restore(self, db_alias: str, src: Path) -> None:
        """Replace the PostgreSQL database with exactly the archive at src (see module doc)."""
        check_archive(src)
        pg_restore = client_program("pg_restore")
        owners = archive_owners(pg_restore, src)
        with connect(db_alias) as pg:
            info, missing = inspect_or_missing(pg, owners)
            if missing is not None:
                restore_into_missing(pg, src, missing)
                return
            assert info is not None
            owner_flags = [] if info["owners_ok"] else ["--no-owner"]
            close_django_connection(db_alias)
            small = src.stat().st_size < self.in_place_below and in_place_is_exact(info)
            # In place replays SQL through psql: only with a pg_restore that restricts it.
            swapping = can_swap(info) and not (small and restricts_meta_commands(pg_restore)[0])
            admin_db = maintenance_database(pg, info["database"]) if swapping else None
            if admin_db is not None:
                restore_by_swap(pg, src, info, admin_db, owner_flags)
            else:
                restore_in_place(pg, src, info, owner_flags)
