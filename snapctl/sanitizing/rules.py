"""The grammar of ``SNAPSHOTS["SANITIZE"]``: one rule per model field, read and checked before
any work. Pure: nothing here needs Django (binding.py checks the rules against the models).

A rule's target is ``app_label.Model.field``; its spec is one of:

- a kind, as a string: ``"email"``, ``"username"``, ``"name"``, ``"first_name"``,
  ``"last_name"``, ``"phone"``, ``"text"``, ``"redact"``, ``"unusable_password"``,
  ``"null"``, ``"empty"``;
- ``{"value": V}``: the constant V (a string, number or boolean);
- ``{"format": "C-{hash:10}"}``: text with placeholders ``{hash:N}`` (N hex digits of the
  keyed hash, 1-64), ``{number:N}`` (N decimal digits, 1-30), ``{first_name}``,
  ``{last_name}``; ``{{`` and ``}}`` are braces;
- ``{"callable": "myproject.fakes.iban"}``: a function of the project's own code, called as
  ``f(value, digest)`` (digest: the 32-byte keyed hash of the value).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snapctl.errors import ConfigurationError

# Kinds that make a fake from the value's keyed hash, and whether the fakes of distinct
# values stay distinct (so the kind may rewrite a unique column).
GENERATED_KINDS: dict[str, bool] = {
    "email": True,
    "username": True,
    "phone": True,
    "name": False,
    "first_name": False,
    "last_name": False,
    "text": False,
    "unusable_password": False,
}
# Kinds that give every row the same value.
FIXED_KINDS = ("null", "empty", "redact")
KINDS = (*GENERATED_KINDS, *FIXED_KINDS)
SPEC_KEYS = ("value", "format", "callable")

# Placeholders of a format, and the bounds of their width.
PLACEHOLDERS: dict[str, tuple[int, int] | None] = {
    "hash": (1, 64),
    "number": (1, 30),
    "first_name": None,
    "last_name": None,
}
_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class Placeholder:
    name: str
    width: int  # 0 for names


@dataclass(frozen=True)
class Rule:
    """One rule: ``target`` (``app.Model.field``) and what replaces the field's values."""

    target: str
    kind: str  # a kind of KINDS, or "value", "format", "callable"
    spec: str | dict[str, Any]  # as written in settings: what the manifest records
    value: Any = None  # the constant of a "value" rule
    template: tuple[str | Placeholder, ...] = ()  # a "format" rule, parsed
    callable_path: str = ""  # a "callable" rule's dotted path

    @property
    def app_label(self) -> str:
        return self.target.split(".")[0]

    @property
    def model_name(self) -> str:
        return self.target.split(".")[1]

    @property
    def field_name(self) -> str:
        return self.target.split(".")[2]

    @property
    def same_for_every_row(self) -> bool:
        """Whether every row gets the same value (so a unique column would not stay so)."""
        if self.kind in FIXED_KINDS or self.kind == "value":
            return True
        if self.kind == "format":
            return not any(isinstance(part, Placeholder) for part in self.template)
        return False

    @property
    def keeps_distinct(self) -> bool:
        """Whether distinct values get distinct fakes (collisions aside, which applying
        resolves): what a unique column needs. A callable is trusted to."""
        if self.kind in GENERATED_KINDS:
            return GENERATED_KINDS[self.kind]
        if self.kind == "format":
            return format_bits(self.template) >= 32
        return self.kind == "callable"

    @property
    def makes_text(self) -> bool:
        """Whether its values are strings (so the field must hold text)."""
        return self.kind in (*GENERATED_KINDS, "empty", "redact", "format")


def refuse(target: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"SNAPSHOTS['SANITIZE'] rule '{target}': {problem}")


def parse_rules(raw: object) -> dict[str, Rule]:
    """The rules of ``SNAPSHOTS["SANITIZE"]``, each checked: the first bad one is a
    ``ConfigurationError`` (exit 2) naming it and saying what to write instead."""
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            "SNAPSHOTS['SANITIZE'] must be a dict of 'app_label.Model.field' to a rule"
        )
    return {str(target): parse_rule(target, spec) for target, spec in raw.items()}


def parse_rule(target: object, spec: object) -> Rule:
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise refuse(str(target), "name a field as 'app_label.Model.field'")
    if isinstance(spec, str):
        if spec not in KINDS:
            raise refuse(
                target,
                f"unknown kind {spec!r}; use one of {', '.join(KINDS)}, or a dict with "
                "'value', 'format' or 'callable'",
            )
        return Rule(target, spec, spec)
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in SPEC_KEYS:
        raise refuse(
            target,
            "a rule is a kind (a string) or a dict with one key: 'value', 'format' or "
            f"'callable', not {spec!r}",
        )
    ((key, argument),) = spec.items()
    written = {key: argument}
    if key == "value":
        if argument is None:
            raise refuse(target, "for NULL write the kind 'null', not {'value': None}")
        if not isinstance(argument, str | int | float | bool):
            raise refuse(target, f"a constant is a string, number or boolean, not {argument!r}")
        return Rule(target, "value", written, value=argument)
    if key == "format":
        return Rule(target, "format", written, template=parse_format(target, argument))
    if not isinstance(argument, str) or not _DOTTED.fullmatch(argument):
        raise refuse(
            target, f"a callable is a dotted path like 'myproject.fakes.iban', not {argument!r}"
        )
    return Rule(target, "callable", written, callable_path=argument)


def parse_format(target: str, text: object) -> tuple[str | Placeholder, ...]:
    """A format's literal text and placeholders, in order."""
    if not isinstance(text, str):
        raise refuse(target, f"a format is a string like 'C-{{hash:10}}', not {text!r}")
    try:
        pieces = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise refuse(
            target, f"bad format {text!r} ({exc}); write braces as {{{{ and }}}}"
        ) from None
    parts: list[str | Placeholder] = []
    for literal, name, width_text, conversion in pieces:
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if name not in PLACEHOLDERS or conversion:
            raise refuse(
                target,
                f"bad format {text!r}: unknown placeholder {{{name}"
                f"{'!' + conversion if conversion else ''}}}; use "
                "{hash:N}, {number:N}, {first_name} or {last_name}",
            )
        bounds = PLACEHOLDERS[name]
        if bounds is None:
            if width_text:
                raise refuse(target, f"bad format {text!r}: {{{name}}} takes no width")
            parts.append(Placeholder(name, 0))
            continue
        low, high = bounds
        if not width_text:
            width_text = "16" if name == "hash" else "10"
        if not width_text.isdigit() or not low <= int(width_text) <= high:
            raise refuse(
                target,
                f"bad format {text!r}: {{{name}:N}} needs a width N from {low} to {high}",
            )
        parts.append(Placeholder(name, int(width_text)))
    return tuple(parts)


def format_length(template: tuple[str | Placeholder, ...]) -> int | None:
    """The length of every value a format makes, or None when names make it vary."""
    length = 0
    for part in template:
        if isinstance(part, str):
            length += len(part)
        elif part.width == 0:
            return None
        else:
            length += part.width
    return length


def format_bits(template: tuple[str | Placeholder, ...]) -> float:
    """About how many bits of the hash a format shows: its count of distinct values."""
    bits = 0.0
    for part in template:
        if isinstance(part, Placeholder):
            bits += part.width * (4 if part.name == "hash" else 3.32) if part.width else 5
    return bits


def rules_json(rules: Mapping[str, Rule]) -> dict[str, Any]:
    """The rules as settings wrote them: what the manifest records (never the key)."""
    return {target: rule.spec for target, rule in sorted(rules.items())}
