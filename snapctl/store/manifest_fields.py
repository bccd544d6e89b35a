"""Reading a manifest's fields strictly: each has one JSON type, and anything else is a
:class:`MalformedManifest` naming the field.

A manifest is input from outside. Taken loosely (``str(value)``, ``int(value)``), a boolean
passed for a format version, a list for the databases or a number for a server version, and
the snapshot broke ``list`` for the whole store later, far from the cause. Read here, a bad
field is that snapshot's error, found when it is loaded.
"""

from __future__ import annotations

import re
from typing import Any

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Control characters: a terminal would act on them (retitle, clear, rewrite the screen).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A database alias or connector name is shown in messages and tables: printable, one line.
_NAME = re.compile(r"[^\x00-\x1f\x7f/\\]{1,100}")


class MalformedManifest(ValueError):
    """A field of a manifest is missing or not what it must be."""


def mapping(data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = _get(data, key, where)
    if not isinstance(value, dict):
        raise MalformedManifest(f"{where}{key} is not an object")
    return value


def text(data: dict[str, Any], key: str, where: str = "") -> str:
    """A string without control characters: it is printed to terminals (an escape sequence
    could retitle or rewrite the screen) and into tables."""
    value = _get(data, key, where)
    if not isinstance(value, str):
        raise MalformedManifest(f"{where}{key} is not a string")
    if CONTROL_CHARACTERS.search(value):
        raise MalformedManifest(f"{where}{key} holds control characters")
    return value


def optional_text(data: dict[str, Any], key: str, where: str = "") -> str | None:
    return None if data.get(key) is None else text(data, key, where)


def name(data: dict[str, Any], key: str, where: str = "") -> str:
    """A name shown to people: printable, on one line, without a path separator."""
    value = text(data, key, where)
    if not _NAME.fullmatch(value):
        raise MalformedManifest(f"{where}{key} {value!r} is not a plain name")
    return value


def plain_name(value: object, what: str) -> str:
    """A key used as a name (a database alias): as :func:`name` checks."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise MalformedManifest(f"{what} {value!r} is not a plain name")
    return value


def whole_number(data: dict[str, Any], key: str, where: str = "") -> int:
    """A count of bytes or a version: an integer, not negative (JSON's ``true`` is not 1)."""
    value = _get(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedManifest(f"{where}{key} is not a whole number")
    return value


def optional_whole_number(data: dict[str, Any], key: str, where: str = "") -> int | None:
    return None if data.get(key) is None else whole_number(data, key, where)


def sha256(data: dict[str, Any], key: str, where: str = "") -> str:
    value = text(data, key, where)
    if not _SHA256.fullmatch(value):
        raise MalformedManifest(f"{where}{key} is not a sha256 digest")
    return value


def one_of(data: dict[str, Any], key: str, choices: tuple[str, ...], where: str = "") -> str:
    value = text(data, key, where)
    if value not in choices:
        raise MalformedManifest(f"{where}{key} {value!r} is not one of: {', '.join(choices)}")
    return value


def _get(data: dict[str, Any], key: str, where: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise MalformedManifest(f"{where}{key} is missing") from None
