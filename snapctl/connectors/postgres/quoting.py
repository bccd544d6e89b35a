"""Quoting for PostgreSQL's SQL: identifiers, string literals, and names cut to fit."""

from __future__ import annotations


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + value.replace("'", "''") + "'"


def short_name(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, so derived names stay within NAMEDATALEN."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")
