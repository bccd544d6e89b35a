"""The rules checked against the project's models, before any work: every target an
installed model's own column, every kind fit for that column (text for text, NULL only
where it is allowed, distinct fakes on a unique column, a format that fits max_length), every
callable importable. A bad rule is one ``ConfigurationError`` line naming it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from snapctl.sanitizing import fakes
from snapctl.sanitizing.rules import Rule, format_length, refuse

# Field types whose column holds text, as Field.get_internal_type() names them.
TEXT_TYPES = frozenset({"CharField", "TextField", "SlugField", "FilePathField", "FileField"})
_MIN_LENGTH = {
    "email": fakes.EMAIL_MIN_LENGTH,
    "phone": fakes.PHONE_MIN_LENGTH,
    "username": fakes.USERNAME_MIN_LENGTH,
    "unusable_password": len(fakes.UNUSABLE_PREFIX) + 40,
}


@dataclass(frozen=True)
class BoundRule:
    """A rule and the column it rewrites."""

    rule: Rule
    model_label: str  # app_label.Model, as Django spells it
    table: str
    column: str
    pk_column: str
    field: Any  # the Django field, to prepare values for the column
    max_length: int | None
    unique: bool
    function: Callable[[Any, bytes], Any] | None = None


def bind_rules(rules: Mapping[str, Rule]) -> list[BoundRule]:
    """Each rule checked against the installed models (the app registry must be ready)."""
    return [bind_rule(rule) for rule in rules.values()]


def bind_rule(rule: Rule) -> BoundRule:
    from django.core.exceptions import FieldDoesNotExist

    from snapctl.django_env import UnknownModel, installed_model

    target = rule.target
    try:
        model = installed_model(rule.app_label, rule.model_name)
    except UnknownModel as exc:
        raise refuse(target, str(exc)) from None
    meta = model._meta
    try:
        field: Any = meta.get_field(rule.field_name)
    except FieldDoesNotExist:
        names = ", ".join(f.name for f in meta.concrete_fields)
        raise refuse(
            target, f"{meta.label} has no field '{rule.field_name}' (its fields: {names})"
        ) from None
    if field.is_relation or not getattr(field, "concrete", False) or field.model is not model:
        raise refuse(
            target,
            "relations and inherited fields keep their values (joins need them); sanitize the "
            "fields of the model that holds the column instead",
        )
    if field.primary_key:
        raise refuse(target, "a primary key keeps its values: other tables refer to them")
    referring = _referred_to_by(model, field)
    if referring:
        raise refuse(
            target,
            f"{referring} refers to rows by this field (to_field), so its values would stay "
            "there (and the link break); sanitize another field",
        )
    return BoundRule(
        rule=rule,
        model_label=meta.label,
        table=meta.db_table,
        column=field.column,
        pk_column=meta.pk.column,
        field=field,
        max_length=field.max_length,
        unique=bool(field.unique),
        function=_check_fit(rule, field),
    )


def _referred_to_by(model: Any, field: Any) -> str | None:
    """A foreign key elsewhere that points at ``field`` (``to_field``) rather than the
    primary key: it holds the same values, which no rule rewrites."""
    for relation in model._meta.related_objects:
        if getattr(relation, "field_name", None) == field.name and not field.primary_key:
            return str(relation.field.model._meta.label) + "." + str(relation.field.name)
    return None


def _check_fit(rule: Rule, field: Any) -> Callable[[Any, bytes], Any] | None:
    """Refuse a rule its column cannot take; return a callable rule's function."""
    target = rule.target
    internal = field.get_internal_type()
    if rule.kind == "null" and not field.null:
        raise refuse(
            target,
            "the column is NOT NULL; use 'empty', 'redact' or a constant, or make the field "
            "null=True",
        )
    if rule.makes_text and internal not in TEXT_TYPES:
        raise refuse(
            target,
            f"kind '{rule.kind}' makes text and the field is a {internal}; use 'null', a "
            "constant or a callable",
        )
    if field.unique and (rule.same_for_every_row or not rule.keeps_distinct):
        raise refuse(
            target,
            f"the column is unique and '{rule.kind}' could give two rows the same value; use "
            "'email', 'username', 'phone', a format with {hash:8} or more, or a callable",
        )
    max_length = field.max_length
    if max_length is not None and rule.kind in _MIN_LENGTH and max_length < _MIN_LENGTH[rule.kind]:
        raise refuse(
            target,
            f"max_length {max_length} is too short for fake {rule.kind} values (they need "
            f"{_MIN_LENGTH[rule.kind]}); use a format or a callable",
        )
    if rule.kind == "format" and max_length is not None:
        length = format_length(rule.template)
        if length is not None and length > max_length:
            raise refuse(
                target,
                f"the format makes {length} characters and the field holds {max_length}; "
                "shorten it",
            )
    if rule.kind == "value":
        try:
            field.to_python(rule.value)  # the column's type; validators are the app's business
        except Exception as exc:
            raise refuse(target, f"the constant does not fit the field: {exc}") from None
        if isinstance(rule.value, str) and max_length is not None and len(rule.value) > max_length:
            raise refuse(target, f"the constant is longer than max_length {max_length}")
    if rule.kind == "callable":
        return import_callable(rule)
    return None


def import_callable(rule: Rule) -> Callable[[Any, bytes], Any]:
    """A callable rule's function, from the project's own code (settings are trusted; a
    manifest's rules are never imported)."""
    module_name, _, attr = rule.callable_path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise refuse(
            rule.target,
            f"cannot import {rule.callable_path} ({type(exc).__name__}: {exc}); give the "
            "dotted path of a function in your project",
        ) from None
    if not callable(function):
        raise refuse(rule.target, f"{rule.callable_path} is not callable")
    return function  # type: ignore[no-any-return]
