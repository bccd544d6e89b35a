"""The database a restore replaces, as the restore decides on it: our role's privileges, its
owner, settings and grants, and whether either way of restoring leaves exactly the snapshot."""

from __future__ import annotations

from typing import Any

from snapctl.connectors.postgres.connection import Libpq, first_query
from snapctl.connectors.postgres.quoting import literal

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
