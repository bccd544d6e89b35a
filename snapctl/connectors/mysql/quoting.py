"""Quoting for MySQL/MariaDB's SQL, and names as the driver returns them."""

from __future__ import annotations


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_text(text: str) -> str:
    """A string literal that survives any sql_mode (NO_BACKSLASH_ESCAPES included)."""
    return f"CONVERT(X'{text.encode().hex()}' USING utf8mb4)"


def as_text(value: object) -> str:
    """A name or word the driver returned: text, or bytes where the server said binary."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def sql_text(value: str) -> str:
    """A string literal for MySQL/MariaDB's SQL (backslashes and quotes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
