"""Quoting for PostgreSQL's SQL: identifiers, string literals, and names cut to fit."""

from __future__ import annotations

import secrets


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + value.replace("'", "''") + "'"


def short_name(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, so derived names stay within NAMEDATALEN."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def do_block(body: str) -> str:
    """``DO`` with ``body`` (PL/pgSQL, DECLARE ... END) between dollar quotes whose tag is
    random: text from the server or the settings inside the body (a comment, a name) cannot
    end the quotes and have the rest run as SQL, or as a psql meta-command."""
    tag = f"$snapctl_{secrets.token_hex(8)}$"
    if tag in body:  # 64 random bits: never by chance
        raise ValueError("the DO block's quote tag appears in its body")
    return f"DO {tag}\n{body.strip()}\n{tag}"
