"""What every engine's sanitized-dump tests check, shared: the rules, the original values read
from the live database, and the search for them in an artifact's bytes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import zstandard
from helpers import Project, artifact_path, manifest_of

# The example project's text columns, each rewritten; auth.User's too (tests add a user).
RULES: dict[str, Any] = {
    "shop.Customer.email": "email",
    "shop.Customer.name": "name",
    "shop.Customer.notes": "text",
    "shop.Product.title": {"format": "P-{hash:12}"},
    "auth.User.email": "email",
    "auth.User.username": "username",
    "auth.User.password": "unusable_password",
    "auth.User.first_name": "first_name",
    "auth.User.last_name": "last_name",
}
# (table, column) of each rule, and which are unique.
COLUMNS = [
    ("shop_customer", "email"),
    ("shop_customer", "name"),
    ("shop_customer", "notes"),
    ("shop_product", "title"),
    ("auth_user", "email"),
    ("auth_user", "username"),
    ("auth_user", "password"),
    ("auth_user", "first_name"),
    ("auth_user", "last_name"),
]
UNIQUE = [("shop_customer", "email"), ("auth_user", "username")]
# A user whose email is a customer's: the join through sanitized emails must still match.
JOINED_EMAIL = "customer3@example.com"
ADD_USERS = (
    "from django.contrib.auth.models import User; "
    f"User.objects.create_user('alice.real', '{JOINED_EMAIL}', 'pw-alice', "
    "first_name='Alice', last_name='Realperson'); "
    "User.objects.create_user('bob.real', 'bob@real-company.example', 'pw-bob', "
    "first_name='Bobby', last_name='Actualname')"
)
JOIN_SQL = "SELECT count(*) FROM auth_user u JOIN shop_customer c ON u.email = c.email"


def sanitize_env(key: str = "key-one", **extra: str) -> dict[str, str]:
    return {"EXAMPLE_SANITIZE": json.dumps(RULES), "SNAPCTL_SANITIZE_KEY": key, **extra}


def originals(query: Callable[[str], Sequence[Sequence[Any]]]) -> dict[tuple[str, str], list[str]]:
    """Every non-empty value of each sanitized column, read from the live database."""
    values: dict[tuple[str, str], list[str]] = {}
    for table, column in COLUMNS:
        rows = query(f"SELECT {column} FROM {table}")
        values[(table, column)] = [str(row[0]) for row in rows if row[0] not in (None, "")]
    return values


def unpacked_bytes(project: Project, name: str, alias: str = "default") -> bytes:
    path = artifact_path(project.snapshots / name, alias)
    data = path.read_bytes()
    method = manifest_of(project.snapshots / name)["databases"][alias]["compression"]
    if method == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(data).read()
    return gzip.decompress(data) if method == "gzip" else data


def _spellings(value: str) -> Iterable[bytes]:
    """How a value can appear in a dump: as is, JSON-escaped, SQL-quoted, COPY-escaped."""
    yield value.encode()
    yield json.dumps(value)[1:-1].encode()
    yield json.dumps(value, ensure_ascii=False)[1:-1].encode()
    yield value.replace("'", "''").encode()
    copy_text = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    yield copy_text.replace("\t", "\\t").encode()


def assert_no_original_in(data: bytes, values: dict[tuple[str, str], list[str]]) -> None:
    """No original value of a sanitized column is anywhere in ``data``, in any spelling."""
    found = []
    for column, column_values in values.items():
        for value in set(column_values):
            if any(spelling in data for spelling in _spellings(value)):
                found.append((column, value))
    assert not found, found
    assert sum(len(v) for v in values.values()) > 100  # the check had something to find


def leftovers(root: Path) -> list[str]:
    """Scratch files of a sanitized dump anywhere under ``root``."""
    return [str(path) for path in root.rglob("*") if ".sanitize-" in str(path)]


def query_via_django(project: Project, sql: str) -> list[list[Any]]:
    """Rows of ``sql`` on the project's database, through Django (any engine)."""
    code = (
        "import json; from django.db import connection; c = connection.cursor(); "
        f"c.execute({sql!r}); print(json.dumps([list(r) for r in c.fetchall()], default=str))"
    )
    out = project.manage("shell", "-v", "0", "-c", code)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def restored_sanitized(project: Project, first: str, second: str) -> dict[str, Any]:
    """Restore ``first``, a sanitized snapshot, and check what a sanitized restore must be:
    said so, unique columns unique, the join through sanitized emails intact; then restore
    ``second``, dumped with the same key, and check it gives the same data. That data's
    digest."""
    restored = project.snapctl("restore", first, "--yes", check=True)
    assert "sanitized data in default" in restored.stderr
    one: dict[str, Any] = project.digest()
    for table, column in UNIQUE:
        ((distinct, total),) = query_via_django(
            project, f"SELECT count(DISTINCT {column}), count(*) FROM {table}"
        )
        assert distinct == total > 0
    assert query_via_django(project, JOIN_SQL) == [[1]]
    project.snapctl("restore", second, "--yes", check=True)
    assert project.digest() == one
    return one
