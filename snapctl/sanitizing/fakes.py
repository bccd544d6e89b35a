"""Fake values from a keyed hash: the same value and key give the same fake in every table and
run (so joins and unique columns keep working), another key gives other fakes, and nothing
of the value can be read back from its fake without the key. Pure: no Django, no database.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from snapctl.sanitizing.rules import Placeholder, Rule

# A domain that can never receive mail (RFC 6761): a fake address never reaches anyone.
EMAIL_DOMAIN = "example.invalid"
# The shortest field a fake email fits in (a 12-hex-digit local part and the domain).
EMAIL_MIN_LENGTH = 13 + len(EMAIL_DOMAIN) + 1
# Fake phones: "+999" is no country's code (reserved by the ITU), then 14 digits.
PHONE_PREFIX = "+999 "
PHONE_DIGITS = 14
PHONE_MIN_LENGTH = len(PHONE_PREFIX) + 12
USERNAME_MIN_LENGTH = 12
# Django's unusable passwords: "!" then 40 characters (UNUSABLE_PASSWORD_SUFFIX_LENGTH).
UNUSABLE_PREFIX = "!"
REDACTED = "[redacted]"

FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Ana", "Arjun", "Bea", "Bruno", "Chen", "Clara", "Dara",
    "Elif", "Emil", "Farah", "Felix", "Greta", "Hana", "Ivan", "Jonas", "Kofi", "Lena",
    "Luca", "Maya", "Mei", "Nadia", "Nils", "Omar", "Priya", "Rosa", "Sami", "Tomas",
    "Yara", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Abe", "Alvarez", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
    "Ivanova", "Jensen", "Kim", "Lopez", "Martin", "Nakamura", "Novak", "Okafor", "Park",
    "Quinn", "Rossi", "Sato", "Schmidt", "Silva", "Tanaka", "Usman", "Vargas", "Weber",
    "Wong", "Xu", "Yilmaz", "Zhang", "Ziegler",
)  # fmt: skip
WORDS = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed",
    "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna",
    "aliqua", "enim", "ad", "minim", "veniam", "quis", "nostrud", "exercitation", "ullamco",
    "laboris", "nisi", "aliquip", "ex", "ea", "commodo", "consequat", "duis", "aute",
    "irure", "in", "reprehenderit", "voluptate", "velit", "esse", "cillum", "fugiat",
    "nulla", "pariatur", "excepteur", "sint", "occaecat", "cupidatat", "non", "proident",
    "sunt", "culpa", "qui", "officia", "deserunt", "mollit", "anim", "id", "est", "laborum",
)  # fmt: skip


def canonical(value: Any) -> bytes:
    """The bytes a value is hashed as: the same for the same value in any table."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass")


class Faker:
    """Makes the fakes of one key. ``attempt`` > 0 derives another fake for the same value,
    for the rare collision on a unique column (see applying.py)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, value: Any, attempt: int = 0) -> bytes:
        # Text first: nearly every value is (a hot path, 600k calls for 200k rows).
        data = value.encode("utf-8", "surrogatepass") if type(value) is str else canonical(value)
        if attempt:
            data += b"\x00snapctl-attempt-%d" % attempt
        return hmac.digest(self._key, data, "sha256")

    def fake(
        self,
        rule: Rule,
        value: Any,
        max_length: int | None = None,
        function: Callable[[Any, bytes], Any] | None = None,
        attempt: int = 0,
    ) -> Any:
        """The fake of ``value`` under ``rule``, at most ``max_length`` characters for text.
        NULL and the empty string stay as they are: they hide nothing, and a blank optional
        field stays blank. ``function`` is a callable rule's function, imported already."""
        if value is None or value == "":
            return value
        kind = rule.kind
        if kind == "null":
            return None
        if kind == "empty":
            return ""
        if kind == "value":
            return _fit(rule.value, max_length)
        if kind == "redact":
            return _fit(REDACTED, max_length)
        digest = self.digest(value, attempt)
        if kind == "callable":
            if function is None:
                raise ValueError(f"the callable of rule {rule.target} is not imported")
            return _fit(function(value, digest), max_length)
        if kind == "format":
            return _fit(render_format(rule.template, digest), max_length)
        if kind == "text":
            return lorem(digest, min(len(str(value)), max_length or len(str(value))))
        return _fit(MAKERS[kind](digest, max_length), max_length)


def _fit(value: Any, max_length: int | None) -> Any:
    if isinstance(value, str) and max_length is not None and len(value) > max_length:
        return value[:max_length]
    return value


def _pick(names: tuple[str, ...], byte: int) -> str:
    return names[byte % len(names)]


def fake_email(digest: bytes, max_length: int | None = None) -> str:
    first, last = _pick(FIRST_NAMES, digest[0]).lower(), _pick(LAST_NAMES, digest[1]).lower()
    email = f"{first}.{last}.{digest[2:].hex()[:12]}@{EMAIL_DOMAIN}"
    if max_length is None or len(email) <= max_length:
        return email
    # Too long for the field: the hash alone, as much as fits, keeps fakes distinct.
    return f"{digest.hex()[: max_length - len(EMAIL_DOMAIN) - 1]}@{EMAIL_DOMAIN}"


def fake_username(digest: bytes, max_length: int | None = None) -> str:
    first, last = _pick(FIRST_NAMES, digest[0]).lower(), _pick(LAST_NAMES, digest[1]).lower()
    username = f"{first}_{last}_{digest[2:].hex()[:12]}"
    if max_length is None or len(username) <= max_length:
        return username
    return "u" + digest.hex()[: max_length - 1]


def fake_phone(digest: bytes, max_length: int | None = None) -> str:
    number = int.from_bytes(digest[:16], "big") % 10**PHONE_DIGITS
    return f"{PHONE_PREFIX}{number:0{PHONE_DIGITS}d}"


def fake_name(digest: bytes, max_length: int | None = None) -> str:
    return f"{_pick(FIRST_NAMES, digest[0])} {_pick(LAST_NAMES, digest[1])}"


def fake_first_name(digest: bytes, max_length: int | None = None) -> str:
    return _pick(FIRST_NAMES, digest[0])


def fake_last_name(digest: bytes, max_length: int | None = None) -> str:
    return _pick(LAST_NAMES, digest[1])


def fake_unusable_password(digest: bytes, max_length: int | None = None) -> str:
    # Unusable (Django refuses any password against it) and unlike any real hash.
    return UNUSABLE_PREFIX + digest.hex()[:40]


MAKERS: dict[str, Callable[[bytes, int | None], str]] = {
    "email": fake_email,
    "username": fake_username,
    "phone": fake_phone,
    "name": fake_name,
    "first_name": fake_first_name,
    "last_name": fake_last_name,
    "unusable_password": fake_unusable_password,
}


# A long text of lorem ipsum words in a scrambled order: a fake text is a slice of it, at a
# place the digest chooses, so a fake of any length costs one slice.
_LOREM = " ".join(WORDS[(i * i * 31 + i * 7) % len(WORDS)] for i in range(16_000))


def lorem(digest: bytes, length: int) -> str:
    """Words of lorem ipsum, where the digest says, cut to ``length`` characters: a text of
    about the original's size that says nothing of it."""
    start = int.from_bytes(digest[:4], "big") % (len(_LOREM) // 2)
    start = _LOREM.index(" ", start) + 1  # a word's first letter
    text = _LOREM[start : start + length]
    while len(text) < length:  # longer than the rest of the text: go round again
        text += " " + _LOREM[: length - len(text) - 1]
    return text[:length].rstrip() or WORDS[digest[0] % len(WORDS)][: max(length, 1)]


def render_format(template: tuple[str | Placeholder, ...], digest: bytes) -> str:
    out: list[str] = []
    number = int.from_bytes(digest, "big")
    for part in template:
        if isinstance(part, str):
            out.append(part)
        elif part.name == "hash":
            out.append(digest.hex()[: part.width])
        elif part.name == "number":
            out.append(f"{number % 10**part.width:0{part.width}d}")
        elif part.name == "first_name":
            out.append(_pick(FIRST_NAMES, digest[0]))
        else:
            out.append(_pick(LAST_NAMES, digest[1]))
    return "".join(out)
